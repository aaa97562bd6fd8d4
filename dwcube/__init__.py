"""dwcube: Dynamic World-style land-cover probability cubes on your own STAC datacubes.

Public API
----------
load
    Search a STAC catalogue and return a lazy, normalised reflectance cube.
search
    Find STAC items in an API, a local catalogue file, or a list of items.
load_dem, model_inputs, InputSpec, Feature
    Elevation on a cube's grid; a model's normalised input stack.
cloud_mask, CloudMaskParams
    Dynamic World's cloud and shadow mask for Sentinel-2 L1C (applied by ``load`` by default).
dwcube.models
    The model registry (``load_model("dynamic-world")``), weights, the Dynamic World port.
ds.lulc
    The accessor: ``ds.lulc.indices([...])``, ``.elevation(...)``, ``.model_inputs(...)``.
classify, label, confidence
    The lazy probability cube of a registered model (chunk-invariant, per-worker model
    cache, GPU when present); its label and confidence layers.
write_archive, open_archive, archive_info
    Zarr v3 archives of probability cubes: create, append dates, resume, read with CRS.
smooth, filter_update, TransitionModel, flicker
    Temporally consistent probabilities (hidden-Markov smoothing, near-real-time
    filtering) and the flicker of a label series.
changes
    Date of the lasting class change per pixel (deforestation, cropland expansion).
composite, class_area, pixel_area
    Monthly/seasonal/annual composites; class areas in km²/ha on projected or
    geographic grids, optionally per polygon.
dwcube.plot
    Label maps, before/after, time series at a point, change maps, timelapse GIFs
    (needs ``dwcube[plot]``).
CLASSES, COLORS
    The nine Dynamic World classes and their palette.

``import dwcube`` is light: it registers the ``.lulc`` accessors (xarray only) and
imports each part (torch, the Numba kernels, Zarr, odc-stac) when it is first used, e.g.
on the first ``dwcube.classify``; that first use also registers odc-geo's ``.odc`` and
rioxarray's ``.rio`` accessors on the results.

Examples
--------
>>> import sys, dwcube
>>> callable(dwcube.load), dwcube.load.__module__
(True, 'dwcube.load')
>>> import dwcube.composite            # the submodule does not hide the function of its name
>>> dwcube.composite.__module__
'dwcube.composite'
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from . import accessor as _accessor  # noqa: E402,F401 - registers ds.lulc (needs only xarray)

#: Public name -> the submodule that defines it, imported on first use.
_LAZY = {
    "load": "load", "AssetError": "load",
    "search": "stac", "CatalogError": "stac", "EmptySearchError": "stac",
    "load_dem": "elevation",
    "model_inputs": "inputs", "InputSpec": "inputs", "Feature": "inputs",
    "classify": "inference",
    "label": "probability", "confidence": "probability",
    "write_archive": "archive", "open_archive": "archive", "archive_info": "archive",
    "ArchiveEncoding": "archive", "ArchiveError": "archive", "ArchiveMismatchError": "archive",
    "smooth": "temporal", "filter_update": "temporal", "TransitionModel": "temporal", "flicker": "temporal",
    "changes": "change",
    "composite": "composite",
    "class_area": "stats", "pixel_area": "stats",
    "CLASSES": "classes", "COLORS": "classes",
    "MaskSpec": "sensors", "SensorError": "sensors", "UnknownBandError": "sensors",
    "CloudMaskParams": "clouds", "cloud_mask": "clouds",
}

__all__ = ["__version__", *_LAZY]


def _register_result_accessors() -> None:
    """odc-geo's ``.odc`` and rioxarray's ``.rio`` on the cubes dwcube returns."""
    import odc.geo.xr  # noqa: F401
    import rioxarray  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    _register_result_accessors()
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """The package module: importing the submodules ``dwcube.load`` and ``dwcube.composite``
    binds them as attributes of the package, which would hide the functions of the same
    name; the functions stay (as they did when ``__init__`` imported them eagerly)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if (_LAZY.get(name) == name and isinstance(value, types.ModuleType)
                and value.__name__ == f"{__name__}.{name}"):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

if TYPE_CHECKING:  # what the lazy names are, for type checkers and IDEs
    from .archive import ArchiveEncoding, ArchiveError, ArchiveMismatchError, archive_info, open_archive, write_archive
    from .change import changes
    from .classes import CLASSES, COLORS
    from .clouds import CloudMaskParams, cloud_mask
    from .composite import composite
    from .elevation import load_dem
    from .inference import classify
    from .inputs import Feature, InputSpec, model_inputs
    from .load import AssetError, load
    from .probability import confidence, label
    from .sensors import MaskSpec, SensorError, UnknownBandError
    from .stac import CatalogError, EmptySearchError, search
    from .stats import class_area, pixel_area
    from .temporal import TransitionModel, filter_update, flicker, smooth

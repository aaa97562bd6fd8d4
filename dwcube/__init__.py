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
write_archive, open_archive, archive_info, check_archive, export_cog
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

``import dwcube`` is light: it imports each part (xarray, torch, the Numba kernels, Zarr,
odc-stac) when it is first used, e.g. on the first ``dwcube.classify``; that first use also
registers odc-geo's ``.odc`` and rioxarray's ``.rio`` accessors on the results.  The
``.lulc`` accessors are registered on xarray's classes as soon as both dwcube and xarray
are imported, in either order (xarray alone takes about a second to import, which
``dwcube --help`` does not need).

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
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"


class _RegisterLulcAfterXarray(importlib.abc.MetaPathFinder):
    """Registers ``ds.lulc`` (:mod:`dwcube.accessor`) right after xarray is imported.

    Installed by ``import dwcube`` when xarray is not imported yet; it finds xarray's spec with
    the other finders, and when xarray is executed (not merely looked up with
    ``importlib.util.find_spec``) runs xarray's own loader, imports :mod:`dwcube.accessor` and
    removes itself.  xarray's module keeps its own loader and spec.
    """

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None) -> Any:
        if fullname != "xarray" or "xarray" in sys.modules:
            return None
        for finder in sys.meta_path:  # the finder that would have found xarray without this one
            find = None if finder is self else getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _ThenRegisterLulc(spec.loader, self)
                return spec
        return None


class _ThenRegisterLulc(importlib.abc.Loader):
    """xarray's loader, followed by the registration of ``ds.lulc``."""

    def __init__(self, loader: Any, finder: _RegisterLulcAfterXarray) -> None:
        self._loader, self._finder = loader, finder

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        if self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)
        importlib.import_module(f"{__name__}.accessor")


if "xarray" in sys.modules:
    from . import accessor as _accessor  # noqa: E402,F401 - registers ds.lulc
else:
    sys.meta_path.insert(0, _RegisterLulcAfterXarray())

#: Public name -> the submodule that defines it, imported on first use.
_LAZY = {
    "load": "load", "AssetError": "load", "read_failures": "reads",
    "search": "stac", "CatalogError": "stac", "EmptySearchError": "stac",
    "load_dem": "elevation",
    "model_inputs": "inputs", "InputSpec": "inputs", "Feature": "inputs",
    "classify": "inference",
    "label": "probability", "confidence": "probability",
    "write_archive": "archive", "open_archive": "archive", "archive_info": "archive",
    "ArchiveEncoding": "archive", "ArchiveError": "archive", "ArchiveMismatchError": "archive",
    "check_archive": "archive", "ArchiveIntegrityError": "archive", "export_cog": "export",
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
    from .archive import (ArchiveEncoding, ArchiveError, ArchiveIntegrityError, ArchiveMismatchError, archive_info,
                          check_archive, open_archive, write_archive)
    from .export import export_cog
    from .reads import read_failures
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

"""dwcube: Dynamic World-style land-cover probability cubes on your own STAC datacubes.

Public API
----------
load
    Search a STAC catalogue and return a lazy, normalised reflectance cube.
read_failures
    After computing a cube: every asset read that failed (``load(..., on_error="nan")``).
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
update_archive, reprocess, compare_versions
    Archives that keep themselves current: new scenes appended with the recorded
    settings (filter state and change alerts kept current), the history classified
    again by a new model version beside the old, and how two versions differ.
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
"""

from __future__ import annotations

__version__ = "0.1.0"

import odc.geo.xr  # noqa: E402,F401 - registers the .odc accessor on results
import rioxarray  # noqa: E402,F401 - registers the .rio accessor on results

from . import accessor as _accessor  # noqa: E402,F401 - registers ds.lulc
from .change import changes  # noqa: E402
from .composite import composite  # noqa: E402
from .archive import ArchiveEncoding, ArchiveError, ArchiveMismatchError, archive_info, open_archive, write_archive  # noqa: E402
from .classes import CLASSES, COLORS  # noqa: E402
from .clouds import CloudMaskParams, cloud_mask  # noqa: E402
from .elevation import load_dem  # noqa: E402
from .inference import classify  # noqa: E402
from .jobs import compare_versions, reprocess, update_archive  # noqa: E402
from .inputs import Feature, InputSpec, model_inputs  # noqa: E402
from .load import AssetError, load  # noqa: E402
from .sensors import MaskSpec, SensorError, UnknownBandError  # noqa: E402
from .probability import confidence, label  # noqa: E402
from .reads import read_failures  # noqa: E402
from .stac import CatalogError, EmptySearchError, search  # noqa: E402
from .stats import class_area, pixel_area  # noqa: E402
from .temporal import TransitionModel, filter_update, flicker, smooth  # noqa: E402

__all__ = [
    "__version__",
    "load",
    "read_failures",
    "search",
    "load_dem",
    "model_inputs",
    "InputSpec",
    "Feature",
    "classify",
    "label",
    "confidence",
    "write_archive",
    "open_archive",
    "archive_info",
    "update_archive",
    "reprocess",
    "compare_versions",
    "ArchiveEncoding",
    "ArchiveError",
    "ArchiveMismatchError",
    "smooth",
    "filter_update",
    "TransitionModel",
    "flicker",
    "changes",
    "composite",
    "class_area",
    "pixel_area",
    "CLASSES",
    "COLORS",
    "MaskSpec",
    "CloudMaskParams",
    "cloud_mask",
    "AssetError",
    "CatalogError",
    "EmptySearchError",
    "SensorError",
    "UnknownBandError",
]

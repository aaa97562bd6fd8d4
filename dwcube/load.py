"""``dwcube.load``: search a catalogue and build the lazy reflectance cube.

The flow is: :func:`dwcube.stac.search` → choose each item's sensor →
rewrite each item's assets under common band names (so Earth Search and
Planetary Computer items load side by side) → one time step per item with
odc-stac (default) or stackstac → :func:`dwcube.sensors.normalize` (per-item
scale/offset, no data, mask, harmonisation) → group items of one date
(``solar_day`` by default) into a single time step, taking the first *valid*
value per pixel.

Grouping happens **after** masking, not inside the loader: a cloudy pixel of
one tile never hides the clear pixel of an overlapping tile of the same day,
and items of different processing baselines are each scaled right before they
meet.

The output grid (documented rule, see :func:`output_grid`)
-----------------------------------------------------------
* ``crs``: the one given; else the CRS shared by most items (ties: the
  earliest item's); else, when items carry no projection metadata, the UTM
  zone of the area's centre.
* ``resolution``: the one given; else the sensor's native resolution (10 m for
  Sentinel-2, 30 m for Landsat) when the CRS is in metres; a geographic CRS needs
  an explicit resolution.
* extent: the bbox/geometry when given, else the union of the items' footprints
  (reprojecting to another CRS with odc-stac, GDAL's approximate transformer is
  set up per chunk, so a handful of edge-of-pixel samples can differ between
  chunkings; on the items' own CRS, and with ``loader="stackstac"``, results do
  not depend on chunking), grown outward to whole pixels.
* pixel edges (the snap rule, :func:`native_anchor`): when the output CRS and
  resolution are an item's own pixel grid (``proj:transform`` of an asset or of the
  item: north-up, pixel size equal to the resolution, in the output CRS or in one
  that differs from it by a translation only, as EPSG:32620 and EPSG:32720 do), the
  output grid's edges fall on that grid's edges, so its pixels are read as they are
  (no resampling, no shift).  Landsat grids have their edges at 15 m modulo 30 m: a
  grid aligned to multiples of 30 m started half a pixel off and resampled every
  pixel.  When items disagree, the grid of the most items wins (ties: the earliest)
  and the others are resampled; when none matches, edges are at multiples of the
  resolution (where Sentinel-2 tiles have theirs).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import inspect
import logging
import math
import os
import time
import uuid
import warnings
from collections import Counter
from dataclasses import dataclass
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import pystac
import shapely.geometry
import shapely.ops
import xarray as xr
from odc.geo.crs import CRS
from odc.geo.geobox import GeoBox
from shapely.geometry.base import BaseGeometry

from . import __version__
from .sensors import (
    MaskSpec,
    Sensor,
    SensorError,
    UnknownBandError,
    detect_sensor,
    get_sensor,
    normalize,
)
from .clouds import CLOUD_BANDS, CloudMaskParams
from .clouds import cloud_mask as _cloud_mask
from .reads import (
    MISSING_SCHEME,
    AssetError,
    AssetReadWarning,
    ReadGuard,
    odc_driver,
    read_failures,
    stackstac_reader,
)
from .stac import CatalogLike, _item_time, check_bbox, check_geometry, search

__all__ = ["load", "output_grid", "native_anchor", "date_groups", "solar_day", "ReadPlan", "AssetError",
           "DEFAULT_GDAL_ENV", "read_failures", "DEFAULT_MAX_PIXELS", "GridTooLargeError", "load_arguments"]

log = logging.getLogger(__name__)

#: GDAL settings used for every read: retries on flaky HTTP (429/5xx), no
#: directory listing on open, curl reuse.  Override any of them with ``gdal_env``.
#: GDAL doubles its delay between retries (0.2, 0.5, 1.1, 2.5, 6 s, … measured): 5 retries
#: wait ~10 s in all, where 10 waited ~10 minutes on a file that never answers right
#: (dwcube's own retries of a failed read, :class:`dwcube.reads.ReadGuard`, come on top).
DEFAULT_GDAL_ENV: dict[str, Any] = {
    "GDAL_HTTP_MAX_RETRY": 5,
    "GDAL_HTTP_RETRY_DELAY": 0.2,
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_TIMEOUT": 60,
}

#: Largest output grid (pixels per date, ``y × x``) that :func:`load` builds unless told
#: otherwise (``max_pixels=``): 4·10⁹ px is 400 000 km² at 10 m or 3.6 million km² at 30 m,
#: some 30 whole Sentinel-2 tiles (10980² px each), and 16 GB per band and date in float32;
#: bigger requests are nearly always a mistyped bbox or resolution (a west of −200 asked for
#: 936448 × 273946 px).  The cube is lazy, so a larger grid does work when meant: pass a
#: larger number, or ``None`` for no limit.
DEFAULT_MAX_PIXELS = 4_000_000_000

Groupby = Literal["solar_day", "time", "id"] | Callable[[pystac.Item], Hashable] | None
OnError = Literal["raise", "nan"]


class GridTooLargeError(ValueError):
    """The output grid has more pixels per date than ``max_pixels`` allows."""


@dataclass(frozen=True)
class ReadPlan:
    """What a loader backend reads: items whose assets are named by band, onto one grid.

    Parameters
    ----------
    items
        Items whose assets are exactly the wanted bands, keyed by common name.
    names
        Variables to load (spectral bands, then the quality layer if any).
    mask_name
        The quality-layer variable (always read with ``nearest``), or ``None``.
    geobox
        The output grid.
    chunks
        Pixels per chunk, ``{"y": ..., "x": ...}``.
    resampling
        Resampling of the spectral bands.
    on_error
        ``"raise"`` or ``"nan"`` (see :func:`load`).
    env
        GDAL options for every read.
    guard
        How reads are retried and their failures recorded.
    """

    items: Sequence[pystac.Item]
    names: Sequence[str]
    mask_name: str | None
    geobox: GeoBox
    chunks: Mapping[str, int]
    resampling: str
    on_error: OnError
    env: Mapping[str, Any]
    guard: ReadGuard

    @property
    def spectral(self) -> list[str]:
        """The names other than the quality layer."""
        return [n for n in self.names if n != self.mask_name]


def load(
    catalog: CatalogLike,
    *,
    collections: str | Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    geometry: Mapping[str, Any] | BaseGeometry | None = None,
    datetime: Any = None,
    query: Mapping[str, Any] | None = None,
    bands: str | Sequence[str] | None = None,
    resolution: float | None = None,
    crs: Any = None,
    chunks: int | Mapping[str, int] | None = None,
    groupby: Groupby = "solar_day",
    resampling: str = "bilinear",
    loader: Literal["odc-stac", "stackstac"] = "odc-stac",
    sensor: str | Sensor | None = None,
    mask: MaskSpec | Iterable[int] | bool | Literal["default"] | None = "default",
    harmonize: bool = False,
    baseline_offset: Literal["auto", "apply", "skip"] = "auto",
    on_error: OnError = "raise",
    gdal_env: Mapping[str, Any] | None = None,
    max_items: int | None = None,
    cloud_mask: bool | CloudMaskParams | Literal["auto", "fast", "exact"] = "auto",
    read_retries: int = 2,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    grid: GeoBox | None = None,
) -> xr.Dataset:
    """Search a catalogue and return a lazy reflectance cube.

    Parameters
    ----------
    catalog
        STAC API URL, local/remote catalogue file (ItemCollection JSON, ndjson,
        stac-geoparquet, static catalogue), ``pystac_client.Client``, or items.
        See :func:`dwcube.stac.search`.
    collections, bbox, geometry, datetime, query, max_items
        Search filters; ``bbox`` and ``geometry`` are in degrees (EPSG:4326) and
        also set the extent of the output grid.  ``bbox`` is ``(west, south, east,
        north)`` with longitudes in −180…180, latitudes in −90…90, ``west < east`` and
        ``south < north`` (see :func:`dwcube.stac.check_bbox`; a box across the
        antimeridian is refused: load each side separately).
    bands
        Common band names (``"red"``, ``"nir"``, ``"swir16"``) or product band ids
        (``"B04"``); ``None`` loads every band of the sensor that all items provide.
    resolution
        Output pixel size in units of ``crs`` (metres for UTM). Default: native.
    crs
        Output CRS (``"EPSG:32633"``, an EPSG int, anything odc-geo accepts).
    chunks
        Dask chunk size in pixels along ``y`` and ``x`` (int or
        ``{"x": ..., "y": ...}``); default 2048. ``time`` chunks are one date.
    groupby
        ``"solar_day"`` (items of one local solar day merge into one date),
        ``"time"`` (identical timestamps merge), ``"id"``/``None`` (one date per
        item), or a function ``item -> key``.
    resampling
        Resampling for spectral bands (``"bilinear"``, ``"nearest"``, ``"cubic"``,
        ``"average"``…); the quality layer always uses ``"nearest"``.
    loader
        ``"odc-stac"`` (default) or ``"stackstac"``.
    sensor
        Force the sensor (name from :data:`dwcube.sensors.SENSORS`); default:
        detected per item.
    mask
        ``"default"``/``True``: the sensor's documented default
        (:data:`~dwcube.sensors.SCL_DEFAULT_MASK`,
        :data:`~dwcube.sensors.QA_PIXEL_DEFAULT_MASK`); ``None``/``False``: no
        mask; a :class:`~dwcube.sensors.MaskSpec`; or SCL classes / QA_PIXEL bit
        positions to mask, e.g. ``[0, 1, 3, 8, 9, 10, 11]``.
    harmonize
        Apply the HLS v2 bandpass adjustment (Sentinel-2 → Landsat-like).
    baseline_offset
        Sentinel-2: ``"auto"`` (default), ``"apply"`` or ``"skip"``; see
        :func:`dwcube.sensors.sentinel2.baseline_offset_dn`.
    cloud_mask
        Sentinel-2 L1C has no scene classification: ``"auto"`` (default) masks clouds
        and their shadows on L1C cubes with Dynamic World's recipe
        (:func:`dwcube.clouds.cloud_mask`: s2cloudless probability, displacement index,
        cirrus, morphology, shadow projection), reading the extra bands it needs and
        dropping them afterwards; ``False`` turns it off; a
        :class:`~dwcube.clouds.CloudMaskParams` changes its thresholds (and forces it on).
        ``"fast"`` or ``"exact"``: as ``"auto"``, in that mode of
        ``CloudMaskParams.mode``.  ``"auto"`` and ``True`` use
        ``"fast"`` (:data:`DEFAULT_CLOUD_MASK_MODE`): s2cloudless on an 80 m grid, refined at
        10 m near the 0.65 threshold where the probability can change the cloud test — on
        every real L1C scene measured, ≥ 99.97 % of pixels' cloud test decided as with
        ``"exact"`` (Earth Engine's per-pixel product) and the same final mask, at a third of
        its cost (3.2× faster), where the exact mask cost ~3 times Dynamic World itself
        (benchmarks/README.md, ``bench_clouds.py``).  The mask is computed on each date's
        merged cube.
    on_error
        What a failed asset does.  Every pixel read that fails (HTTP error, a body
        cut short, a truncated or corrupt file) is first retried ``read_retries``
        times (:class:`dwcube.reads.ReadGuard`).  ``"raise"`` (default): an asset
        missing from an item raises :class:`AssetError` when loading; a read that
        still fails raises :class:`AssetError` (item, band, file, GDAL's reason) when
        computing.  ``"nan"``: every asset's header is checked when loading; missing
        and unreadable assets are NaN and listed in ``attrs["failed_assets"]``; a
        pixel read that still fails at compute time leaves that block NaN, warns
        (:class:`dwcube.reads.AssetReadWarning`) and is recorded:
        :func:`dwcube.read_failures` (``cube``) after computing lists every failure
        (attrs are written when the cube is built, before any pixel is read, so they
        cannot hold the compute-time ones).  A band that fails in every item is a
        NaN band, not an error.
    gdal_env
        GDAL options merged over :data:`DEFAULT_GDAL_ENV`.
    read_retries
        Extra attempts for a pixel read that failed (0 = once), ~0.5 s × attempt apart.
    max_pixels
        Refuse output grids of more than this many pixels per date (``y × x``);
        default :data:`DEFAULT_MAX_PIXELS` (4·10⁹); ``None``: no limit.
    grid
        Load onto exactly this grid (an odc-geo ``GeoBox``) instead of the one the rule
        below derives from ``crs``, ``resolution``, the area and the items: how
        :mod:`dwcube.jobs` puts new dates on the grid of an existing archive.

    Returns
    -------
    xarray.Dataset
        Dims ``(time, y, x)`` (``latitude``/``longitude`` for a geographic CRS with
        odc-stac); one float32 variable per band, reflectance
        (0–1 nominal), NaN for no data and masked pixels; ``spatial_ref``
        coordinate (CRS and transform, readable by odc-geo and rioxarray);
        per-date coordinates on ``time`` (``item_id``, ``collection``,
        ``platform``, ``cloud_cover``, ``sun_azimuth``, ``sun_elevation``,
        ``tile`` and, for Sentinel-2, ``processing_baseline``); provenance in
        ``attrs``, among them ``load_parameters``: this call's arguments as JSON, from
        which ``dwcube.load.load_arguments`` rebuilds it (archives keep it, so that
        ``dwcube update`` loads new dates the same way). Lazy (Dask): nothing is read
        until computed.

    Raises
    ------
    EmptySearchError
        When the search matches nothing (names collections, bbox and dates).
    UnknownBandError
        When a band is unknown (names the available bands).
    AssetError
        When an item lacks a band's asset, or an asset cannot be read
        (``on_error="raise"``).
    SensorError
        When items are of different products, or metadata needed to scale them
        is missing.
    GridTooLargeError
        When the output grid has more than ``max_pixels`` pixels per date (names the
        size, the bbox and resolution it came from, and how to allow it).
    ValueError
        When ``bbox`` or ``geometry`` is out of range, not finite or inverted.

    Examples
    --------
    A STAC API is searched the same way as a file (``dwcube.load("https://earth-search.aws.element84.com/v1",
    collections=["sentinel-2-l2a"], bbox=(-8.1, 53.2, -7.9, 53.4), datetime="2022-10", bands=["red", "nir"])``);
    here a local catalogue of two synthetic L2A dates (32 × 32 px of 10 m, baseline 05.09), cut to a
    box and read in chunks of 16 px:

    >>> import tempfile, dwcube
    >>> from dwcube.testing import synthetic_catalog, synthetic_cube
    >>> with tempfile.TemporaryDirectory() as d:
    ...     ds = dwcube.load(synthetic_catalog(d, size=32, dates=2), bands=["red", "nir"],
    ...                      bbox=(14.552, 45.873, 14.555, 45.8745), chunks=16)
    ...     print(dict(ds.sizes), ds.red.chunks[1], ds.attrs["radiometry"])
    ...     red = ds.red.compute()
    {'y': 18, 'x': 24, 'time': 2} (16, 2) ['baseline 05.09: offset -1000 DN']
    >>> truth = synthetic_cube(32, 2).red.sel(x=red.x.values, y=red.y.values)   # reflectance as made
    >>> bool(abs(red.values - truth.values).max() < 1e-4), str(red.time.values[0])
    (True, '2023-04-06T10:00:00.000000000')
    """
    if loader not in ("odc-stac", "stackstac"):
        raise ValueError(f"loader must be 'odc-stac' or 'stackstac', got {loader!r}")
    if on_error not in ("raise", "nan"):
        raise ValueError(f"on_error must be 'raise' or 'nan', got {on_error!r}")
    env = {**DEFAULT_GDAL_ENV, **(gdal_env or {})}
    if not (isinstance(read_retries, int) and 0 <= read_retries <= 20):
        raise ValueError(f"read_retries must be a whole number from 0 to 20, got {read_retries!r}")
    if max_pixels is not None and not (isinstance(max_pixels, (int, np.integer)) and max_pixels > 0):
        raise ValueError(f"max_pixels must be a positive whole number or None, got {max_pixels!r}")
    if bbox is not None:
        bbox = check_bbox(bbox)
    if geometry is not None:
        geometry = check_geometry(geometry)

    items = search(
        catalog,
        collections=collections,
        bbox=bbox,
        geometry=geometry,
        datetime=datetime,
        query=query,
        max_items=max_items,
    )
    sensors = [get_sensor(sensor) if sensor is not None else detect_sensor(it) for it in items]
    products = {(s.family, s.level) for s in sensors}
    if len(products) > 1:
        raise SensorError(
            "the search returned items of several products "
            f"({', '.join(sorted(f'{f} {lv}' for f, lv in products))}); load them separately "
            "(filter with collections=...) and combine the cubes"
        )
    band_names = _resolve_band_names(bands, sensors, items)
    cloud_params = _resolve_cloud_mask(cloud_mask, sensors[0])
    wanted = list(band_names)
    if cloud_params is not None:
        # a catalogue's own cloud probability replaces s2cloudless (same interface)
        has_prob = all("cloud_probability" in s.bands and s.bands["cloud_probability"].asset_key(it)
                       for it, s in zip(items, sensors, strict=True))
        extra = ["cloud_probability", "rededge3", "nir", "nir08", "cirrus"] if has_prob else list(CLOUD_BANDS)
        band_names = _resolve_band_names(list(dict.fromkeys(band_names + extra)), sensors, items)
        lacking = sorted({f"{it.id}: {b}" for it, s in zip(items, sensors, strict=True) for b in extra
                          if b not in s.bands or not s.bands[b].asset_key(it)})
        if lacking:
            raise AssetError(
                "the L1C cloud mask needs bands " + ", ".join(extra) + " in every item; missing: "
                + "; ".join(lacking[:6]) + ("; ..." if len(lacking) > 6 else "")
                + ". Pass cloud_mask=False to load without a cloud mask (clouds then look like snow to "
                "Dynamic World)."
            )
    mask_spec, mask_name = _resolve_mask(mask, sensors[0])
    members = date_groups(items, groupby)

    failures: list[str] = []
    canon = [
        _canonical_item(it, s, band_names, mask_name, on_error, failures)
        for it, s in zip(items, sensors, strict=True)
    ]
    unusable = _preflight(canon, env, failures, read_retries) if on_error == "nan" else {}
    load_id = uuid.uuid4().hex
    guard = ReadGuard(load_id, on_error, {a.href: (it.id, k) for it in canon for k, a in it.assets.items()},
                      unusable, retries=read_retries)

    geobox = grid if grid is not None else output_grid(
        items, sensors[0], crs=crs, resolution=resolution, bbox=bbox, geometry=geometry
    )
    _check_grid_size(geobox, max_pixels, bbox=bbox, geometry=geometry, resolution=resolution)
    chunk_xy = _chunks(chunks)
    var_names = band_names + ([mask_name] if mask_name else [])
    plan = ReadPlan(canon, var_names, mask_name, geobox, chunk_xy, resampling, on_error, env, guard)
    raw = _load_odc(plan) if loader == "odc-stac" else _load_stackstac(plan)

    cube, prov = normalize(
        raw,
        items,
        sensors,
        band_names,
        groups=members,
        mask_band=mask_name,
        mask=mask_spec,
        harmonize=harmonize,
        baseline_offset=baseline_offset,
    )
    cube = _attach_date_coords(cube, items, sensors, members)
    if cloud_params is not None:
        clouds = _cloud_mask(cube, cloud_params).mask
        cube = cube[wanted].where(~clouds)
        band_names = wanted
    cube.attrs = {
        "title": "dwcube reflectance cube",
        "sensor": ",".join(sorted({s.name for s in sensors})),
        "product_level": sensors[0].level,
        "bands": list(band_names),
        "radiometry": prov["radiometry"],
        "mask": prov["mask"],
        "harmonization": prov["harmonization"],
        "cloud_mask": cloud_params.describe() if cloud_params is not None else "none",
        "groupby": groupby if isinstance(groupby, str) or groupby is None else getattr(groupby, "__name__", "callable"),
        "resampling": resampling,
        "loader": _loader_version(loader),
        "catalog": str(catalog) if isinstance(catalog, (str, os.PathLike)) else type(catalog).__name__,
        "collections": sorted({it.collection_id or "" for it in items}),
        "n_items": len(items),
        "failed_assets": failures,
        "load_id": load_id,
        "on_error": on_error,
        "dwcube_version": __version__,
        "history": f"{dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')} dwcube.load",
        "load_parameters": _load_parameters(
            catalog=catalog, collections=collections, bbox=bbox, geometry=geometry, datetime=datetime, query=query,
            bands=bands, resolution=resolution, crs=crs, chunks=chunks, groupby=groupby, resampling=resampling,
            loader=loader, sensor=sensor, mask=mask, harmonize=harmonize, baseline_offset=baseline_offset,
            on_error=on_error, gdal_env=gdal_env, max_items=max_items, cloud_mask=cloud_mask,
            read_retries=read_retries, max_pixels=max_pixels),
    }
    if failures:
        log.warning("dwcube.load: %d asset(s) failed and are NaN: %s", len(failures), "; ".join(failures[:5]))
        warnings.warn(f"{len(failures)} asset(s) cannot be read and are NaN: {'; '.join(failures[:5])}"
                      f"{'; ...' if len(failures) > 5 else ''} (attrs['failed_assets'] lists them)",
                      AssetReadWarning, stacklevel=2)
    return cube


# -- the call, recorded -------------------------------------------------------------------------


def _load_parameters(**kw: Any) -> str:
    """The arguments of a :func:`load` call as a JSON object (see :func:`load_arguments`).

    Values that cannot be written down (a ``pystac_client.Client`` or a list of items as
    the catalogue, a grouping function) are left out and named in ``not_reproducible``.
    """
    import json

    out: dict[str, Any] = {}
    missing: list[str] = []
    catalog = kw.pop("catalog")
    if isinstance(catalog, (str, os.PathLike)):
        text = os.fspath(catalog)
        out["catalog"] = os.path.abspath(text) if "://" not in text and os.path.exists(text) else text
    else:
        out["catalog"] = None
        missing.append("catalog")
    geometry = kw.pop("geometry")
    out["geometry"] = None if geometry is None else shapely.geometry.mapping(geometry)
    dtime = kw.pop("datetime")
    out["datetime"] = (dtime if dtime is None or isinstance(dtime, str) else
                       [None if v is None else v.isoformat() if hasattr(v, "isoformat") else str(v) for v in dtime]
                       if isinstance(dtime, (list, tuple)) else dtime.isoformat() if hasattr(dtime, "isoformat")
                       else str(dtime))
    crs = kw.pop("crs")
    out["crs"] = crs if crs is None or isinstance(crs, (str, int)) else CRS(crs).to_wkt()
    groupby = kw.pop("groupby")
    if groupby is None or isinstance(groupby, str):
        out["groupby"] = groupby
    else:
        out["groupby"] = None
        missing.append("groupby")
    sensor = kw.pop("sensor")
    out["sensor"] = sensor if sensor is None or isinstance(sensor, str) else sensor.name
    mask = kw.pop("mask")
    if isinstance(mask, MaskSpec):
        out["mask"] = {"kind": mask.kind, "values": sorted(mask.values)}
    elif mask is None or isinstance(mask, (bool, str)):
        out["mask"] = mask
    else:
        out["mask"] = sorted(int(v) for v in mask)
    cloud = kw.pop("cloud_mask")
    out["cloud_mask"] = ({"params": {k: list(v) if isinstance(v, tuple) else v
                                     for k, v in dataclasses.asdict(cloud).items()}}
                         if isinstance(cloud, CloudMaskParams) else cloud)
    for key in ("collections", "bands"):
        v = kw.pop(key)
        out[key] = v if v is None or isinstance(v, str) else list(v)
    bbox = kw.pop("bbox")
    out["bbox"] = None if bbox is None else [float(v) for v in bbox]
    chunks = kw.pop("chunks")
    out["chunks"] = dict(chunks) if isinstance(chunks, Mapping) else chunks
    for key in ("query", "gdal_env"):
        v = kw.pop(key)
        out[key] = None if v is None else dict(v)
    out.update(kw)  # plain numbers, strings and booleans
    out["not_reproducible"] = missing
    return json.dumps(out, default=str)


def load_arguments(parameters: str | Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments that repeat a :func:`load` call from its ``attrs["load_parameters"]``.

    Parameters
    ----------
    parameters
        The JSON text (or its parsed object) that :func:`load` records.

    Returns
    -------
    dict
        Arguments for ``load(**arguments)``; those named in ``not_reproducible``
        (e.g. ``catalog`` when items were passed in memory) are absent and must be
        supplied by the caller.

    Examples
    --------
    >>> from dwcube.testing import synthetic_cube
    >>> record = _load_parameters(catalog="https://example.test/stac", collections=["sentinel-2-l2a"],
    ...     bbox=(14.5, 45.8, 14.6, 45.9), geometry=None, datetime="2024-05", query=None, bands=None,
    ...     resolution=10.0, crs=None, chunks=512, groupby="solar_day", resampling="bilinear",
    ...     loader="odc-stac", sensor=None, mask=MaskSpec("classes", {0, 1, 3}), harmonize=False,
    ...     baseline_offset="auto", on_error="raise", gdal_env=None, max_items=None,
    ...     cloud_mask=CloudMaskParams(probability_threshold=0.5), read_retries=2, max_pixels=10**9)
    >>> args = load_arguments(record)
    >>> args["catalog"], args["bbox"], args["mask"]
    ('https://example.test/stac', [14.5, 45.8, 14.6, 45.9], MaskSpec(kind='classes', values=frozenset({0, 1, 3})))
    >>> args["cloud_mask"].probability_threshold, "not_reproducible" in args
    (0.5, False)
    """
    import json

    rec = dict(json.loads(parameters) if isinstance(parameters, str) else parameters)
    missing = set(rec.pop("not_reproducible", []) or [])
    mask = rec.get("mask")
    if isinstance(mask, Mapping):
        rec["mask"] = MaskSpec(mask["kind"], frozenset(mask["values"]))
    cloud = rec.get("cloud_mask")
    if isinstance(cloud, Mapping):
        params = {k: tuple(v) if isinstance(v, list) else v for k, v in cloud["params"].items()}
        rec["cloud_mask"] = CloudMaskParams(**params)
    known = set(inspect.signature(load).parameters)
    return {k: v for k, v in rec.items() if k in known and k not in missing}


# -- bands, masks, items ------------------------------------------------------------------------


#: The cloud-mask mode ``load`` uses on L1C unless told otherwise (see ``cloud_mask`` in :func:`load`).
DEFAULT_CLOUD_MASK_MODE = "fast"


def _resolve_cloud_mask(value: Any, sensor: Sensor) -> CloudMaskParams | None:
    if isinstance(value, CloudMaskParams):
        return value
    if value is False or value is None:
        return None
    if isinstance(value, str) and value in ("auto", "fast", "exact"):
        mode = DEFAULT_CLOUD_MASK_MODE if value == "auto" else value
        return CloudMaskParams(mode=mode) if (sensor.family, sensor.level) == ("sentinel-2", "L1C") else None
    if value is True:
        if sensor.family != "sentinel-2":
            raise ValueError(f"cloud_mask=True is for Sentinel-2 top-of-atmosphere cubes, not {sensor.name}")
        return CloudMaskParams(mode=DEFAULT_CLOUD_MASK_MODE)
    raise ValueError(f"cloud_mask must be 'auto', 'fast', 'exact', True, False or CloudMaskParams, got {value!r}")


def _resolve_band_names(
    bands: str | Sequence[str] | None, sensors: Sequence[Sensor], items: Sequence[pystac.Item]
) -> list[str]:
    unique = list(dict.fromkeys(sensors))
    if bands is None:
        # every band of the sensor that every item actually provides
        names = [
            b
            for b in unique[0].bands
            if unique[0].bands[b].value_scale is None
            and all(b in s.bands and s.bands[b].asset_key(it) for it, s in zip(items, sensors, strict=True))
        ]
        if not names:
            raise AssetError("no band of the sensor is present in every item; pass bands=[...]")
        return names
    names: list[str] | None = None
    for s in unique:
        resolved = [spec.name for spec in s.resolve_bands(bands)]
        if names is None:
            names = resolved
        elif resolved != names:  # pragma: no cover - sensors of one family share names
            raise UnknownBandError(f"bands {bands} resolve differently for {s.name}: {resolved} vs {names}")
    assert names is not None
    return names


def _resolve_mask(mask: Any, sensor: Sensor) -> tuple[MaskSpec | None, str | None]:
    if mask is None or mask is False:
        return None, None
    if not isinstance(mask, (str, bool, MaskSpec)):
        try:  # any sequence or array of ints
            mask = [int(v) for v in np.asarray(mask).ravel()]
        except (TypeError, ValueError):
            raise ValueError(f"mask must be 'default', None, a MaskSpec or a list of ints, got {mask!r}") from None
    if isinstance(mask, str) and mask != "default":
        raise ValueError(f"mask must be 'default', None, a MaskSpec or a list of ints, got {mask!r}")
    if sensor.mask_band is None:
        if mask in ("default", True):
            return None, None
        raise SensorError(
            f"{sensor.name} products have no quality layer to mask with; pass mask=None "
            "(L1C cloud masks are computed separately)"
        )
    if mask in ("default", True):
        spec = sensor.default_mask
    elif isinstance(mask, MaskSpec):
        spec = mask
    else:
        assert sensor.default_mask is not None
        spec = sensor.default_mask.with_values(mask)
    return spec, sensor.mask_band.name


def _canonical_item(
    item: pystac.Item,
    sensor: Sensor,
    band_names: Sequence[str],
    mask_name: str | None,
    on_error: OnError,
    failures: list[str],
) -> pystac.Item:
    """A copy of ``item`` whose assets are exactly the wanted bands under common names."""
    specs = [sensor.band(b) for b in band_names]
    if mask_name:
        assert sensor.mask_band is not None
        specs.append(sensor.mask_band)
    assets: dict[str, pystac.Asset] = {}
    for spec in specs:
        key = spec.asset_key(item)
        if key is None:
            msg = (
                f"item {item.id!r} has no asset for band {spec.name!r} (looked for "
                f"{', '.join(spec.keys)}; it has {', '.join(sorted(item.assets))})"
            )
            if on_error == "raise":
                raise AssetError(msg)
            failures.append(f"{item.id}/{spec.name}: missing asset")
            # a placeholder that is never opened (reads as no data): the band stays in the
            # cube even when every item lacks it
            like = next((item.assets[k] for s in specs if (k := s.asset_key(item))), None)
            proj = {k: copy.deepcopy(v) for k, v in (like.extra_fields if like else {}).items()
                    if k.startswith("proj:")}
            src = pystac.Asset(href=f"{MISSING_SCHEME}{item.id}/{spec.name}", media_type=pystac.MediaType.COG,
                               extra_fields=proj)
        else:
            src = item.assets[key]
        extra = {k: copy.deepcopy(v) for k, v in src.extra_fields.items() if k not in ("raster:bands", "bands")}
        is_mask = spec.name == mask_name
        nodata = _mask_nodata(sensor) if is_mask else sensor.nodata
        dtype = _asset_dtype(src) or ("uint8" if spec.name == "scl" else "uint16")
        extra["raster:bands"] = [{"nodata": nodata, "data_type": dtype}]
        assets[spec.name] = pystac.Asset(
            href=src.href if src.href.startswith(MISSING_SCHEME) else (src.get_absolute_href() or src.href),
            media_type=src.media_type,
            roles=["data"],
            extra_fields=extra,
        )
    new = pystac.Item(
        id=item.id,
        geometry=item.geometry,
        bbox=item.bbox,
        datetime=_item_time(item),  # UTC, aware; start_datetime when there is no datetime
        properties=copy.deepcopy(item.properties),
        stac_extensions=list(item.stac_extensions),
        collection=item.collection_id,
    )
    for k, a in assets.items():
        new.add_asset(k, a)
    return new


def _mask_nodata(sensor: Sensor) -> int:
    # Outside an item's footprint the quality layer must read as "not usable":
    # SCL 0 is no data; QA_PIXEL 1 is the fill bit.
    return 1 if sensor.family == "landsat" else 0


def _asset_dtype(asset: pystac.Asset) -> str | None:
    for key in ("raster:bands", "bands"):
        entries = asset.extra_fields.get(key)
        if entries and isinstance(entries, list) and isinstance(entries[0], Mapping):
            t = entries[0].get("data_type")
            if t:
                return str(t)
    return None


def _preflight(items: Sequence[pystac.Item], env: Mapping[str, Any], failures: list[str],
               retries: int) -> dict[str, str]:
    """Open every asset's header (``retries`` more times when it fails); record the failed
    ones and return them as href → reason (the readers never open them)."""
    import rasterio

    jobs = [(it, key) for it in items for key, a in it.assets.items() if not a.href.startswith(MISSING_SCHEME)]

    def check(job: tuple[pystac.Item, str]) -> str | None:
        it, key = job
        href = it.assets[key].href
        reason = ""
        for k in range(retries + 1):
            if k:
                time.sleep(0.5 * k)
            try:
                opts = {**env, **({"CPL_VSIL_CURL_NON_CACHED": f"/vsicurl/{href}"} if k else {})}
                with rasterio.Env(**opts), rasterio.open(href) as src:
                    src.profile  # noqa: B018 - reading the header is the check
                return None
            except Exception as exc:  # any failure is recorded, whatever GDAL raises
                reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        return reason

    with ThreadPoolExecutor(max_workers=min(16, max(1, len(jobs)))) as pool:
        results = list(pool.map(check, jobs))
    unusable: dict[str, str] = {}
    for (it, key), err in zip(jobs, results, strict=True):
        if err is not None:
            failures.append(f"{it.id}/{key}: {err}")
            unusable[it.assets[key].href] = err
    return unusable


# -- grid ---------------------------------------------------------------------------------------


def _proj_code(fields: Mapping[str, Any]) -> str | None:
    """``proj:code`` (or the older ``proj:epsg``) of an item's properties or an asset."""
    if fields.get("proj:code"):
        return str(fields["proj:code"])
    if fields.get("proj:epsg"):
        return f"EPSG:{int(fields['proj:epsg'])}"
    return None


def _item_epsg(item: pystac.Item) -> str | None:
    for fields in [item.properties, *(a.extra_fields for a in item.assets.values())]:
        code = _proj_code(fields)
        if code:
            return code
    return None


def _footprint(item: pystac.Item) -> BaseGeometry:
    if item.geometry is not None:
        return shapely.geometry.shape(item.geometry)
    b = item.bbox
    n = len(b) // 2
    return shapely.geometry.box(b[0], b[1], b[n], b[n + 1])


def output_grid(
    items: Sequence[pystac.Item],
    sensor: Sensor,
    *,
    crs: Any = None,
    resolution: float | None = None,
    bbox: Sequence[float] | None = None,
    geometry: Mapping[str, Any] | BaseGeometry | None = None,
) -> GeoBox:
    """The output grid of a load, by the rule in this module's docstring.

    Examples
    --------
    >>> from dwcube.sensors import LANDSAT_OLI
    >>> item = pystac.Item("LC09_X", None, [-60.0, -3.2, -59.8, -3.1], dt.datetime(2023, 7, 23), {})
    >>> item.add_asset("red", pystac.Asset("red.tif", extra_fields={
    ...     "proj:code": "EPSG:32620", "proj:shape": [468, 851],
    ...     "proj:transform": [30.0, 0.0, 832485.0, 0.0, -30.0, -340995.0]}))
    >>> g = output_grid([item], LANDSAT_OLI)
    >>> g.crs.epsg, tuple(g.shape), g.transform.c, g.transform.f  # the scene's own grid
    (32620, (468, 851), 832485.0, -340995.0)
    """
    from odc.geo import xy_
    from odc.geo.geom import Geometry, box

    if crs is None:
        codes = [_item_epsg(it) for it in items]
        known = [c for c in codes if c]
        if known:
            counts = Counter(known)
            best = max(counts.values())
            crs = next(c for c in known if counts[c] == best)  # earliest among the most common
        else:
            area = shapely.ops.unary_union([_footprint(it) for it in items])
            lon, lat = area.centroid.x, area.centroid.y
            zone = int((lon + 180) // 6) % 60 + 1
            crs = f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"
    out_crs = CRS(crs)
    if resolution is None:
        if out_crs.geographic:
            raise ValueError(f"output CRS {out_crs} is geographic: pass resolution= in degrees")
        resolution = sensor.native_resolution
    res = float(resolution)
    if not (res > 0 and math.isfinite(res)):
        raise ValueError(f"resolution must be a positive number, got {resolution!r}")

    if geometry is not None:
        region = Geometry(check_geometry(geometry), "EPSG:4326")
        if bbox is not None:
            region = region & box(*check_bbox(bbox), "EPSG:4326")
    elif bbox is not None:
        region = box(*check_bbox(bbox), "EPSG:4326")
    else:
        region = _native_union(items, out_crs)
    if region.crs == CRS("EPSG:4326"):
        _check_area_of_use(region.boundingbox, out_crs)
    anchor = native_anchor(items, out_crs, res)
    try:
        projected = region.to_crs(out_crs)
        bounds = projected.boundingbox
        ok = not projected.is_empty and all(math.isfinite(v) for v in bounds)
    except (ValueError, OverflowError, ArithmeticError):
        ok = False
    if not ok:
        raise ValueError(f"the area ({'bbox ' + str(tuple(bbox)) if bbox is not None else 'geometry/footprints'}) "
                         f"cannot be projected to {out_crs}: pass a smaller area or another crs=")
    return GeoBox.from_geopolygon(projected, resolution=res, crs=out_crs,
                                  anchor="edge" if anchor is None else xy_(*anchor))


#: How far (degrees of longitude) an area may reach beyond its CRS's area of use (a UTM zone is
#: 6° wide; neighbouring zones' tiles are commonly loaded onto one zone).  Latitude is not
#: checked: USGS writes southern Landsat scenes in northern UTM zones.
AREA_OF_USE_MARGIN_DEG = 15.0


def _check_area_of_use(bounds: Any, crs: CRS) -> None:
    """Refuse an area far outside the longitudes where ``crs`` means anything (a west of −180
    in a UTM zone projects to a degenerate grid of 2021164 × 1 px)."""
    aou = crs.proj.area_of_use
    if aou is None or (aou.west <= -180 and aou.east >= 180):
        return
    west, east = (aou.west, aou.east) if aou.west <= aou.east else (aou.west - 360, aou.east)
    if bounds.left < west - AREA_OF_USE_MARGIN_DEG or bounds.right > east + AREA_OF_USE_MARGIN_DEG:
        raise ValueError(
            f"the area spans longitudes {bounds.left:g}..{bounds.right:g}, far outside {crs}'s area of use "
            f"({aou.west:g}..{aou.east:g}): pass a smaller bbox, or crs= of a CRS that covers it "
            "(e.g. crs='EPSG:4326' with resolution= in degrees)"
        )


def _check_grid_size(geobox: GeoBox, max_pixels: int | None, *, bbox: Any, geometry: Any,
                     resolution: float | None) -> None:
    ny, nx = geobox.shape.y, geobox.shape.x
    n = ny * nx
    if max_pixels is None or n <= max_pixels:
        return
    res = abs(geobox.resolution.x)
    source = (f"bbox={tuple(bbox)}" if bbox is not None else "geometry=<given>" if geometry is not None
              else "the union of the items' footprints (no bbox given)")
    raise GridTooLargeError(
        f"the output grid is {ny} × {nx} = {n:.3g} px per date, more than max_pixels={max_pixels:.3g}: it comes from "
        f"{source} at resolution={res:g} ({'given' if resolution is not None else 'native'}) in {geobox.crs}. "
        "Check the bbox (west, south, east, north in degrees) and the resolution; to load a grid this large on "
        "purpose pass max_pixels=None or a larger number"
    )


def native_anchor(items: Sequence[pystac.Item], crs: CRS, resolution: float) -> tuple[float, float] | None:
    """Where the items' own pixel grids put pixel edges on an output grid of ``crs`` and ``resolution``.

    Returns the edges' offset in fractions of a pixel ``(x, y)`` (odc-geo's ``anchor``),
    from the most common of the items' native grids that match (north-up, pixel size
    ``resolution``, in ``crs`` or in a CRS that maps onto it by a translation only);
    ``None`` when no item's grid matches.

    Examples
    --------
    >>> item = pystac.Item("X", None, [-60.0, -3.2, -59.8, -3.1], dt.datetime(2023, 7, 23), {})
    >>> item.add_asset("red", pystac.Asset("red.tif", extra_fields={
    ...     "proj:code": "EPSG:32620", "proj:transform": [30.0, 0.0, 832485.0, 0.0, -30.0, -340995.0]}))
    >>> native_anchor([item], CRS("EPSG:32620"), 30.0)
    (0.5, 0.5)
    >>> native_anchor([item], CRS("EPSG:32720"), 30.0)  # the same grid, 10 000 km further north
    (0.5, 0.8333333333)
    >>> native_anchor([item], CRS("EPSG:32620"), 10.0) is None
    True
    """
    counts: Counter[tuple[float, float]] = Counter()
    first: dict[tuple[float, float], int] = {}
    cache: dict[str, tuple[float, float] | None] = {}
    for i, it in enumerate(items):
        found: set[tuple[float, float]] = set()
        for obj in [*(a.extra_fields for a in it.assets.values()), it.properties]:
            tr = obj.get("proj:transform")
            code = _proj_code(obj) or _item_epsg(it)
            if not tr or len(tr) < 6 or not code:
                continue
            a, b, c, d, e, f = (float(v) for v in tr[:6])
            if b or d or a <= 0 or e >= 0 or not (math.isclose(a, resolution, rel_tol=1e-9)
                                                  and math.isclose(-e, resolution, rel_tol=1e-9)):
                continue
            key = f"{code} {c!r} {f!r}"
            if key not in cache:
                cache[key] = _origin_in(code, c, f, resolution, crs)
            origin = cache[key]
            if origin is not None:
                fx, fy = (round((v / resolution) % 1.0, 10) % 1.0 for v in origin)
                found.add((fx, fy))
        for frac in found:
            counts[frac] += 1
            first.setdefault(frac, i)
    if not counts:
        return None
    best = max(counts.values())
    return min((f for f, n in counts.items() if n == best), key=lambda f: first[f])


def _origin_in(code: str, x: float, y: float, res: float, crs: CRS) -> tuple[float, float] | None:
    """``(x, y)`` of CRS ``code`` in ``crs`` when the two differ by a translation only, else ``None``."""
    src = CRS(code)
    if src == crs:
        return x, y
    from pyproj import Transformer

    try:
        tr = Transformer.from_crs(src.proj, crs.proj, always_xy=True)
        span = 1000 * res
        (x0, x1, x2), (y0, y1, y2) = tr.transform([x, x + span, x], [y, y, y - span])
    except Exception:  # pyproj cannot relate them: not the same grid
        return None
    tol = 1e-6 * res
    same = abs(x1 - x0 - span) < tol and abs(y1 - y0) < tol and abs(x2 - x0) < tol and abs(y0 - y2 - span) < tol
    return (float(x0), float(y0)) if same and math.isfinite(x0) and math.isfinite(y0) else None


def _native_union(items: Sequence[pystac.Item], crs: CRS) -> Any:
    """Union of item footprints in ``crs``, from native ``proj:`` grids where they are known."""
    from odc.geo.geom import Geometry, box, unary_union

    parts = []
    for it in items:
        g = None
        for obj in [*(a.extra_fields for a in it.assets.values()), it.properties]:
            shape, tr = obj.get("proj:shape"), obj.get("proj:transform")
            code = _proj_code(obj) or _item_epsg(it)
            if shape and tr and code:
                x0, y0 = tr[2], tr[5]
                x1, y1 = x0 + tr[0] * shape[1], y0 + tr[4] * shape[0]
                g = box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1), code)
                break
        if g is None:
            g = Geometry(_footprint(it), "EPSG:4326")
        parts.append(g.to_crs(crs) if g.crs != crs else g)
    return unary_union(parts)


def _chunks(chunks: int | Mapping[str, int] | None) -> dict[str, int]:
    if chunks is None:
        return {"y": 2048, "x": 2048}
    if isinstance(chunks, int):
        chunks = {"y": chunks, "x": chunks}
    out = {"y": int(chunks.get("y", 2048)), "x": int(chunks.get("x", 2048))}
    if out["y"] <= 0 or out["x"] <= 0:
        raise ValueError(f"chunks must be positive, got {dict(chunks)}")
    return out


# -- loaders ------------------------------------------------------------------------------------


def _load_odc(plan: ReadPlan) -> xr.Dataset:
    import odc.stac

    odc.stac.configure_rio(cloud_defaults=True, **plan.env)
    # every read goes through the guard (retries, then AssetError or NaN plus a record)
    common = dict(geobox=plan.geobox, chunks=dict(plan.chunks), groupby="id", fail_on_error=True,
                  preserve_original_order=True, driver=odc_driver(plan.guard))
    raw = odc.stac.load(plan.items, bands=plan.spectral, resampling=plan.resampling, **common)
    if plan.mask_name:
        # A categorical layer is sampled at full resolution: COG overviews were built by
        # someone else's rule and would shift which source pixel "nearest" picks.
        qa = odc.stac.load(plan.items, bands=[plan.mask_name], resampling="nearest", use_overviews=False, **common)
        raw[plan.mask_name] = qa[plan.mask_name]
    return _check_order(raw, plan.items)


def _load_stackstac(plan: ReadPlan) -> xr.Dataset:
    import rasterio.enums
    import stackstac

    geobox, chunks = plan.geobox, plan.chunks
    epsg = geobox.crs.epsg
    if epsg is None:
        raise ValueError(f"the stackstac loader needs an EPSG CRS, got {geobox.crs}")
    gdal_env = stackstac.DEFAULT_GDAL_ENV.updated(always=dict(plan.env))
    bounds = geobox.boundingbox
    res = abs(geobox.resolution.x)
    reader = stackstac_reader(plan.guard)  # retries, then AssetError or NaN plus a record

    def stack(assets: list[str], method: str) -> xr.DataArray:
        return stackstac.stack(
            [it.to_dict() for it in plan.items],
            assets=assets,
            epsg=epsg,
            resolution=res,
            bounds=(bounds.left, bounds.bottom, bounds.right, bounds.top),
            snap_bounds=False,
            chunksize=(1, 1, chunks["y"], chunks["x"]),
            resampling=getattr(rasterio.enums.Resampling, method),
            rescale=False,
            dtype="float64",
            fill_value=np.nan,
            xy_coords="center",
            properties=False,
            band_coords=False,
            sortby_date=False,
            gdal_env=gdal_env,
            errors_as_nodata=(),
            reader=reader,
        )

    parts = [stack(plan.spectral, plan.resampling)]
    if plan.mask_name:
        parts.append(stack([plan.mask_name], "nearest"))
    ds = xr.concat(parts, dim="band").to_dataset(dim="band")
    ds = ds.drop_vars([c for c in ds.coords if c not in ("time", "x", "y")])
    ds = ds.assign_coords(time=[np.datetime64(_naive(it), "ns") for it in plan.items])
    from odc.geo.xr import assign_crs

    ds = assign_crs(ds, geobox.crs)
    if ds.sizes["y"] != geobox.shape.y or ds.sizes["x"] != geobox.shape.x:  # pragma: no cover
        raise RuntimeError(f"stackstac grid {dict(ds.sizes)} differs from the output grid {geobox.shape}")
    return ds


def _naive(item: pystac.Item) -> dt.datetime:
    """The item's time as naive UTC (what the loaders put on ``time``)."""
    return _item_time(item).astimezone(dt.timezone.utc).replace(tzinfo=None)


def _check_order(raw: xr.Dataset, items: Sequence[pystac.Item]) -> xr.Dataset:
    want = np.array([np.datetime64(_naive(it), "ns") for it in items])
    got = raw["time"].values.astype("datetime64[ns]")
    if len(got) != len(want) or not np.array_equal(got, want):
        raise RuntimeError(
            "internal error: the loader returned time steps in another order than the items "
            f"({len(got)} steps for {len(want)} items)"
        )
    return raw


def _loader_version(loader: str) -> str:
    from importlib.metadata import version

    pkg = "odc-stac" if loader == "odc-stac" else "stackstac"
    return f"{pkg} {version(pkg)}"


# -- dates ----------------------------------------------------------------------------------------


def _attach_date_coords(
    cube: xr.Dataset, items: Sequence[pystac.Item], sensors: Sequence[Sensor], groups: Sequence[Sequence[int]]
) -> xr.Dataset:
    """Per-date coordinates: those of each date's earliest item, ``item_id`` listing all of
    them (comma-separated) and ``cloud_cover`` their mean."""
    rows = [s.item_coords(it) for it, s in zip(items, sensors, strict=True)]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    firsts = [rows[g[0]] for g in groups]
    coords: dict[str, Any] = {
        "item_id": ("time", np.array([",".join(items[i].id for i in g) for g in groups], dtype=object)),
        "collection": ("time", np.array([items[g[0]].collection_id or "" for g in groups], dtype=object)),
    }
    for k in keys:
        vals = [r.get(k) for r in firsts]
        if all(isinstance(v, float) for v in vals if v is not None):
            if k == "cloud_cover":
                vals = [float(np.nanmean([rows[i][k] for i in g])) if any(np.isfinite(rows[i][k]) for i in g)
                        else np.nan for g in groups]
            coords[k] = ("time", np.array([np.nan if v is None else v for v in vals], dtype=np.float64))
        else:
            coords[k] = ("time", np.array(["" if v is None else str(v).lower() if k == "platform" else str(v)
                                           for v in vals], dtype=object))
    return cube.assign_coords(coords)


def solar_day(item: pystac.Item) -> dt.date:
    """The local solar date of an item: UTC time shifted by longitude/15 hours.

    Examples
    --------
    Just after midnight UTC, 8° west of Greenwich it is still the day before:

    >>> import datetime as dt, pystac
    >>> box = {"type": "Polygon", "coordinates": [[[-8.2, 53.2], [-7.8, 53.2], [-7.8, 53.4], [-8.2, 53.4], [-8.2, 53.2]]]}
    >>> item = pystac.Item("X", box, [-8.2, 53.2, -7.8, 53.4], dt.datetime(2022, 10, 6, 0, 20, tzinfo=dt.timezone.utc), {})
    >>> solar_day(item)
    datetime.date(2022, 10, 5)
    """
    t = _item_time(item)  # aware UTC (naive times are read as UTC, never as local time)
    return (t + dt.timedelta(hours=_mean_longitude(item) / 15.0)).date()


def _mean_longitude(item: pystac.Item) -> float:
    """Circular mean of the footprint's vertex longitudes: right for footprints split at ±180°."""
    geom = _footprint(item)
    parts = getattr(geom, "geoms", [geom])
    lons = np.concatenate([np.asarray(p.exterior.coords)[:, 0] if hasattr(p, "exterior") else
                           np.asarray(p.coords)[:, 0] for p in parts])
    rad = np.radians(lons)
    return float(np.degrees(np.arctan2(np.sin(rad).mean(), np.cos(rad).mean())))


def date_groups(items: Sequence[pystac.Item], groupby: Groupby) -> list[list[int]]:
    """Indices of the items that make each output date, in time order.

    Examples
    --------
    Two tiles of one overpass, one minute apart, then the next overpass:

    >>> import datetime as dt, pystac
    >>> box = {"type": "Polygon", "coordinates": [[[14, 45], [15, 45], [15, 46], [14, 46], [14, 45]]]}
    >>> items = [pystac.Item(f"T{i}", box, [14, 45, 15, 46], dt.datetime(2023, 6, d, 10, m, tzinfo=dt.timezone.utc), {})
    ...          for i, (d, m) in enumerate([(1, 0), (1, 1), (6, 0)])]
    >>> date_groups(items, "solar_day"), date_groups(items, "time"), date_groups(items, "id")
    ([[0, 1], [2]], [[0], [1], [2]], [[0], [1], [2]])
    """
    if groupby is None or groupby == "id":
        return [[i] for i in range(len(items))]
    if groupby == "solar_day":
        keys: list[Hashable] = [solar_day(it) for it in items]
    elif groupby == "time":
        keys = [_item_time(it) for it in items]
    elif callable(groupby):
        keys = [groupby(it) for it in items]
    else:
        raise ValueError(f"groupby must be 'solar_day', 'time', 'id', None or a function, got {groupby!r}")
    groups: dict[Hashable, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    return list(groups.values())

"""What the web app asks of an archive, as plain functions: its summary, one pixel's series, class areas.

Every function takes an archive opened by :func:`dwcube.archive.open_archive` and returns
JSON-ready Python values (lists, dicts, floats; ``None`` for no data), so the web face
(:mod:`dwcube.serve.app`) only routes requests to them.

A point query reads one pixel of every date: with the archive's chunks (one date × all
classes × ``chunk × chunk`` pixels, :class:`dwcube.archive.ArchiveEncoding`) that decodes one chunk
per date, so its cost grows with the number of dates times the chunk area; the server keeps
the probabilities of the last pixels asked in memory (:data:`POINT_CACHE_SIZE`) so that the
chart and the map's clicks on the same pixel read the store once.

Examples
--------
>>> import tempfile
>>> from dwcube.archive import open_archive
>>> from dwcube.testing import tiny_archive
>>> with tempfile.TemporaryDirectory() as d:
...     ds = open_archive(tiny_archive(d + "/a.zarr", size=32, dates=2))
...     s = point_series(ds, lon=14.5534, lat=45.8736)
...     s["row"], s["col"], len(s["dates"]), round(sum(s["probability"][0]), 4)
(15, 16, 2, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..classes import COLORS, NODATA_LABEL

__all__ = ["OutsideArchiveError", "QueryError", "POINT_CACHE_SIZE", "MAX_AREA_PIXELS", "archive_summary",
           "pixel_of", "point_series", "class_areas"]

#: Pixels whose series a server keeps in memory.
POINT_CACHE_SIZE = 256

#: Largest number of archive pixels (per date) an area request may cover.
MAX_AREA_PIXELS = 4096 * 4096


class QueryError(ValueError):
    """A malformed query: numbers out of their range, a bounding box or polygon that is not one."""


class OutsideArchiveError(LookupError):
    """The point or area asked for is outside the archive."""


def _iso(values: np.ndarray) -> list[str]:
    return [str(t)[:19] for t in np.asarray(values).astype("datetime64[s]")]


def archive_summary(ds: xr.Dataset, name: str, info: Mapping[str, Any] | None = None, *,
                    quicklook: bool = False) -> dict[str, Any]:
    """The archive as the web page needs it: model, dates, grid, lon/lat bounds, classes and colours.

    Parameters
    ----------
    ds
        The archive (:func:`dwcube.archive.open_archive`).
    name
        The name the server gives it.
    info
        Its :func:`dwcube.archive.archive_info` (for the model's weights hash and the encoding).
    quicklook
        Whether the archive keeps an RGB quicklook (the ``rgb`` layer).

    Examples
    --------
    >>> import tempfile
    >>> from dwcube.archive import open_archive
    >>> from dwcube.testing import tiny_archive
    >>> with tempfile.TemporaryDirectory() as d:
    ...     s = archive_summary(open_archive(tiny_archive(d + "/a.zarr", size=32, dates=2)), "a")
    ...     s["name"], s["model"]["name"], s["dates"][0], s["grid"]["crs"], s["classes"][0]
    ('a', 'tiny-test', '2023-04-06T00:00:00', 'EPSG:32633', {'name': 'water', 'color': '#419BDF', 'index': 0})
    """
    from .layers import zoom_range

    fp = dict(ds.attrs.get("dwcube_archive", {}))
    model = dict((info or {}).get("model") or {})
    gbox = ds.odc.geobox
    west, south, east, north = gbox.extent.to_crs("EPSG:4326").boundingbox
    lo, native, hi = zoom_range(ds)
    classes = [str(c) for c in ds["class"].values]
    layers = ["label", "smoothed", "change_date", *(f"probability/{c}" for c in classes)]
    if quicklook:
        layers.append("rgb")
    return {
        "name": name,
        "model": {"name": model.get("model", fp.get("model")), "version": model.get("model_version", fp.get("model_version")),
                  "weights_sha256": model.get("model_weights_sha256", fp.get("model_weights_sha256"))},
        "dates": _iso(ds["time"].values),
        "grid": {"crs": f"EPSG:{gbox.crs.epsg}" if gbox.crs.epsg else gbox.crs.to_wkt(), "shape": [int(gbox.height), int(gbox.width)],
                 "resolution": float(abs(gbox.resolution.x)), "transform": list(gbox.affine)[:6],
                 "chunk": (fp.get("encoding") or {}).get("chunk")},
        "bounds": [west, south, east, north],
        "zoom": {"min": lo, "native": native, "max": hi},
        "classes": [{"name": c, "color": COLORS.get(c, "#808080"), "index": i} for i, c in enumerate(classes)],
        "layers": layers,
        "quicklook": bool(quicklook),
    }


def _number(value: float, what: str, lo: float, hi: float) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not lo <= value <= hi:
        raise QueryError(f"{what} must be a number from {lo} to {hi}, got {value!r}")
    return float(value)


def pixel_of(ds: xr.Dataset, lon: float, lat: float) -> tuple[int, int, float, float]:
    """The archive pixel holding a lon/lat point: ``(row, col, x, y)`` with the pixel centre in the archive's CRS.

    Raises
    ------
    QueryError
        When lon/lat are not finite degrees.
    OutsideArchiveError
        When the point is outside the archive.

    Examples
    --------
    >>> import tempfile
    >>> from dwcube.archive import open_archive
    >>> from dwcube.testing import tiny_archive
    >>> with tempfile.TemporaryDirectory() as d:
    ...     pixel_of(open_archive(tiny_archive(d + "/a.zarr", size=32, dates=1)), 14.5534, 45.8736)
    (15, 16, 465345.0, 5080105.0)
    """
    from odc.geo.geom import point

    lon = _number(lon, "lon", -180.0, 180.0)
    lat = _number(lat, "lat", -90.0, 90.0)
    gbox = ds.odc.geobox
    x, y = point(lon, lat, "EPSG:4326").to_crs(gbox.crs).coords[0]
    col_f, row_f = ~gbox.affine * (x, y)
    row, col = int(math.floor(row_f)), int(math.floor(col_f))
    if not (0 <= row < gbox.height and 0 <= col < gbox.width):
        raise OutsideArchiveError(f"the point lon={lon}, lat={lat} is outside the archive")
    cx, cy = gbox.affine * (col + 0.5, row + 0.5)
    return row, col, float(cx), float(cy)


def _nan_to_none(a: np.ndarray) -> list[Any]:
    return [None if not np.isfinite(v) else float(v) for v in a.tolist()] if a.ndim == 1 else [_nan_to_none(r) for r in a]


def point_series(ds: xr.Dataset, lon: float, lat: float, *, pixel_probability: np.ndarray | None = None) -> dict[str, Any]:
    """One pixel's series: per date the nine probabilities, label, confidence, smoothed probabilities, items, validity.

    Parameters
    ----------
    ds
        The archive.
    lon, lat
        The point (degrees).
    pixel_probability
        The pixel's probabilities ``(time, class)`` when already read (the server's cache).

    Returns
    -------
    dict
        ``row``, ``col`` and ``x``/``y`` (pixel centre, archive CRS) and ``crs``; ``dates``;
        ``classes``; ``probability`` and ``smoothed`` ``[date][class]`` (``None`` = no data;
        ``smoothed`` is :func:`dwcube.temporal.smooth` of this pixel's series, which is what the
        smoothed cube holds there, since the HMM runs per pixel); ``label`` (255 = no data),
        ``confidence`` (top-1 probability), ``valid`` and ``items`` (the source item ids of
        each date, when the archive records them) per date.

    Examples
    --------
    >>> import tempfile
    >>> from dwcube.archive import open_archive
    >>> from dwcube.testing import tiny_archive
    >>> with tempfile.TemporaryDirectory() as d:
    ...     s = point_series(open_archive(tiny_archive(d + "/a.zarr", size=32, dates=2)), 14.5534, 45.8736)
    ...     s["label"], s["valid"], len(s["smoothed"][1])
    ([0, 0], [True, True], 9)
    """
    from ..temporal import smooth

    row, col, x, y = pixel_of(ds, lon, lat)
    ydim, xdim = ds.label.dims[-2:]
    if pixel_probability is None:
        pixel_probability = read_pixel(ds, row, col)
    p = np.asarray(pixel_probability, dtype=np.float32)
    prob = xr.DataArray(p[:, :, None, None], dims=("time", "class", ydim, xdim),
                        coords={"time": ds["time"].values, "class": ds["class"].values})
    valid = np.isfinite(p).all(axis=1)
    smoothed = smooth(prob).values[:, :, 0, 0] if valid.any() else np.full_like(p, np.nan)
    label = np.where(valid, np.argmax(np.where(valid[:, None], p, -1), axis=1), NODATA_LABEL)
    conf = np.where(valid, np.nanmax(np.where(valid[:, None], p, np.nan), axis=1, initial=-1.0), np.nan)
    items = None
    for key in ("item_id", "item_ids", "items"):
        if key in ds.coords and ds.coords[key].dims == ("time",):
            items = [str(v) for v in ds.coords[key].values]
            break
    return {
        "row": row, "col": col, "x": x, "y": y,
        "lon": float(lon), "lat": float(lat),
        "dates": _iso(ds["time"].values),
        "classes": [str(c) for c in ds["class"].values],
        "probability": _nan_to_none(p),
        "smoothed": _nan_to_none(np.asarray(smoothed, dtype=np.float64)),
        "label": [int(v) for v in label],
        "confidence": _nan_to_none(conf.astype(np.float64)),
        "valid": [bool(v) for v in valid],
        "items": items,
    }


def read_pixel(ds: xr.Dataset, row: int, col: int) -> np.ndarray:
    """The probabilities ``(time, class)`` float32 of one archive pixel (NaN = no data).

    Examples
    --------
    >>> import tempfile
    >>> from dwcube.archive import open_archive
    >>> from dwcube.testing import tiny_archive
    >>> with tempfile.TemporaryDirectory() as d:
    ...     read_pixel(open_archive(tiny_archive(d + "/a.zarr", size=32, dates=2)), 0, 0).shape
    (2, 9)
    """
    ydim, xdim = ds.probability.dims[-2:]
    return np.asarray(ds.probability.isel({ydim: row, xdim: col}).transpose("time", "class").values)


def _polygon(geometry: Any) -> Any:
    import shapely.geometry

    try:
        shape = shapely.geometry.shape(geometry)
    except Exception as exc:  # shapely raises several types for malformed GeoJSON
        raise QueryError(f"the polygon is not valid GeoJSON ({type(exc).__name__}: {exc})") from None
    if shape.geom_type not in ("Polygon", "MultiPolygon"):
        raise QueryError(f"the geometry must be a Polygon or MultiPolygon, got a {shape.geom_type}")
    if shape.is_empty or not shape.is_valid:
        raise QueryError("the polygon is empty or not valid (self-intersecting?)")
    return shape


def bbox_polygon(bbox: Sequence[float]) -> Any:
    """A lon/lat bounding box ``(west, south, east, north)`` as a shapely polygon, checked.

    Examples
    --------
    >>> bbox_polygon([14.5, 45.8, 14.6, 45.9]).bounds
    (14.5, 45.8, 14.6, 45.9)
    >>> bbox_polygon([14.6, 45.8, 14.5, 45.9])
    Traceback (most recent call last):
    ...
    dwcube.serve.queries.QueryError: bbox must be west,south,east,north with west < east and south < north, got [14.6, 45.8, 14.5, 45.9]
    """
    import shapely.geometry

    if len(bbox) != 4:
        raise QueryError(f"bbox must be four numbers west,south,east,north, got {len(bbox)}")
    w, s, e, n = (_number(v, "bbox", -180.0, 180.0) for v in bbox)
    _number(s, "bbox south", -90.0, 90.0)
    _number(n, "bbox north", -90.0, 90.0)
    if not (w < e and s < n):
        raise QueryError(f"bbox must be west,south,east,north with west < east and south < north, got {list(bbox)}")
    return shapely.geometry.box(w, s, e, n)


def class_areas(ds: xr.Dataset, region: Any, *, unit: str = "km2") -> dict[str, Any]:
    """Area of each class per date inside a lon/lat region ("scorecards"), by :func:`dwcube.stats.class_area`.

    Parameters
    ----------
    ds
        The archive.
    region
        A shapely polygon in lon/lat (:func:`bbox_polygon`) or a GeoJSON Polygon/MultiPolygon mapping.
    unit
        ``"km2"``, ``"ha"`` or ``"m2"``.

    Returns
    -------
    dict
        ``dates``, ``classes``, ``unit``, ``area`` ``[date][class]``, ``valid_area`` and
        ``nodata_area`` per date and ``total_area`` (the pixels whose centre is inside the region).

    Raises
    ------
    QueryError
        A malformed region, or one covering more than :data:`MAX_AREA_PIXELS` archive pixels.
    OutsideArchiveError
        When the region does not overlap the archive.

    Examples
    --------
    >>> import tempfile
    >>> from dwcube.archive import open_archive
    >>> from dwcube.testing import tiny_archive
    >>> with tempfile.TemporaryDirectory() as d:
    ...     ds = open_archive(tiny_archive(d + "/a.zarr", size=32, dates=2))
    ...     a = class_areas(ds, bbox_polygon([14, 45, 15, 46]))
    ...     round(a["total_area"], 4), round(sum(a["area"][0]) + a["nodata_area"][0], 4)
    (0.1024, 0.1024)
    """
    from odc.geo.geom import Geometry

    from ..stats import class_area

    shape = region if hasattr(region, "geom_type") else _polygon(region)
    gbox = ds.odc.geobox
    geom = Geometry(shape, "EPSG:4326")
    local = geom.to_crs(gbox.crs)
    if not local.intersects(gbox.extent):
        raise OutsideArchiveError("the region does not overlap the archive")
    from rasterio.windows import from_bounds

    win = from_bounds(*local.boundingbox, transform=gbox.affine)
    r0, c0 = max(0, math.floor(win.row_off) - 1), max(0, math.floor(win.col_off) - 1)
    r1 = min(gbox.height, math.ceil(win.row_off + win.height) + 1)
    c1 = min(gbox.width, math.ceil(win.col_off + win.width) + 1)
    label = ds.label.isel({ds.label.dims[-2]: slice(r0, r1), ds.label.dims[-1]: slice(c0, c1)})
    ny, nx = label.shape[-2:]
    if ny * nx > MAX_AREA_PIXELS:
        raise QueryError(f"the region covers {ny * nx} archive pixels, more than the {MAX_AREA_PIXELS} an area "
                         "request may; ask for a smaller region")
    area = class_area(label, unit=unit, polygons=geom).compute()
    if "polygon" in area.dims:
        area = area.isel(polygon=0)
    return {
        "dates": _iso(ds["time"].values),
        "classes": [str(c) for c in area["class"].values],
        "unit": unit,
        "area": [[float(v) for v in row] for row in area.transpose("time", "class").values],
        "valid_area": [float(v) for v in np.atleast_1d(area["valid_area"].values)],
        "nodata_area": [float(v) for v in np.atleast_1d(area["nodata_area"].values)],
        "total_area": float(area["total_area"].values),
    }

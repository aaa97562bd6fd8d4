"""Map layers of an archive as Web-Mercator XYZ tiles (PNG), reprojected by rio-tiler.

A layer is one 2-D raster of one date, on the archive's grid: the ``label`` (Dynamic World
palette), ``probability/CLASS`` (a colour ramp from 0 to 1), ``smoothed`` (the label of the
HMM-smoothed probabilities, :func:`dwcube.temporal.smooth`), ``change_date`` (the lasting
changes dated by :func:`dwcube.change.changes` up to that date, coloured by how long ago) and
``rgb`` (the archive's quicklook of the input reflectance, :mod:`dwcube.serve.quicklook`).

The tile maths (tile bounds, zoom levels) are morecantile's ``WebMercatorQuad``, and the
reprojection is rio-tiler's ``rio_tiler.io.xarray.XarrayReader`` (rioxarray's
``reproject``, i.e. GDAL's warper) with nearest-neighbour resampling for categorical layers
and bilinear for the probabilities and the quicklook.  Only the archive chunks a tile
overlaps are read (``clip_box`` on the lazy array before the reprojection).

Examples
--------
>>> from dwcube.archive import open_archive
>>> from dwcube.testing import tiny_archive
>>> import tempfile
>>> with tempfile.TemporaryDirectory() as d:
...     ds = open_archive(tiny_archive(d + "/a.zarr", size=32, dates=2))
...     z, x, y = native_tiles(ds)[0]
...     png = archive_tile(ds, "label", 0, z, x, y)
...     png[:4]
b'\\x89PNG'
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ..classes import COLORS, NODATA_LABEL

__all__ = ["LayerError", "TileOutOfRangeError", "TileOutsideArchiveError", "LAYERS", "zoom_range",
           "native_tiles", "layer_raster", "derived_layers", "archive_tile", "label_colormap"]

#: The layer names a tile request may ask for (``probability/CLASS`` takes a class name).
LAYERS: tuple[str, ...] = ("label", "probability/{class}", "smoothed", "change_date", "rgb")

#: Zoom levels served below the archive's native zoom (each halves the resolution: a tile then
#: reads up to 4^n times the pixels of a native tile) and above it (nearest-neighbour zoom-in).
ZOOM_OUT_LEVELS = 4
ZOOM_IN_LEVELS = 6


class LayerError(ValueError):
    """A tile or layer request names an unknown layer, class or date, or a layer the archive lacks."""


class TileOutOfRangeError(ValueError):
    """A tile's z/x/y are not a Web-Mercator tile, or its zoom is outside the archive's range."""


class TileOutsideArchiveError(LookupError):
    """A valid tile that does not overlap the archive (an empty tile: HTTP 404)."""


def _hex_rgba(hex_colour: str, alpha: int = 255) -> tuple[int, int, int, int]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), alpha


def label_colormap(classes: Sequence[str]) -> dict[int, tuple[int, int, int, int]]:
    """A rio-tiler colour map for labels: class index → the Dynamic World colour (RGBA).

    Examples
    --------
    >>> label_colormap(["water", "trees"])[1]
    (57, 125, 73, 255)
    """
    cmap = {i: _hex_rgba(COLORS.get(c, "#808080")) for i, c in enumerate(classes)}
    cmap[NODATA_LABEL] = (0, 0, 0, 0)
    return cmap


def _mercator() -> Any:
    import morecantile

    return morecantile.tms.get("WebMercatorQuad")


def zoom_range(ds: xr.Dataset) -> tuple[int, int, int]:
    """Zooms served for an archive: ``(minzoom, native zoom, maxzoom)``.

    The native zoom is the one whose Web-Mercator pixel is closest to the archive's pixel
    at the archive's centre latitude (morecantile's ``zoom_for_res``).

    Examples
    --------
    >>> from dwcube.archive import open_archive
    >>> from dwcube.testing import tiny_archive
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     zoom_range(open_archive(tiny_archive(d + "/a.zarr", size=32, dates=1)))
    (9, 13, 19)
    """
    tms = _mercator()
    gbox = ds.odc.geobox
    res = abs(gbox.resolution.x)
    lat = gbox.extent.centroid.to_crs("EPSG:4326").coords[0][1]
    if gbox.crs.geographic:
        res = res * 111_320.0
    res_merc = res / math.cos(math.radians(lat))  # Web-Mercator metres per ground metre
    native = int(tms.zoom_for_res(res_merc, zoom_level_strategy="lower"))
    return max(0, native - ZOOM_OUT_LEVELS), native, min(24, native + ZOOM_IN_LEVELS)


def native_tiles(ds: xr.Dataset, zoom: int | None = None) -> list[tuple[int, int, int]]:
    """The ``(z, x, y)`` tiles covering an archive at ``zoom`` (default: its native zoom).

    Examples
    --------
    >>> from dwcube.archive import open_archive
    >>> from dwcube.testing import tiny_archive
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     len(native_tiles(open_archive(tiny_archive(d + "/a.zarr", size=32, dates=1))))
    1
    """
    tms = _mercator()
    z = zoom_range(ds)[1] if zoom is None else zoom
    west, south, east, north = ds.odc.geobox.extent.to_crs("EPSG:4326").boundingbox
    return [(t.z, t.x, t.y) for t in tms.tiles(west, south, east, north, [z])]


def _date_index(ds: xr.Dataset, date: int | str) -> int:
    n = ds.sizes["time"]
    if isinstance(date, (int, np.integer)):
        if not 0 <= int(date) < n:
            raise LayerError(f"date index {date} is out of range: the archive has {n} dates (0–{n - 1})")
        return int(date)
    times = np.asarray(ds["time"].values).astype("datetime64[us]")
    text = str(date)
    try:
        if not re.match(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?$", text):
            raise ValueError(text)
        want = np.datetime64(text)
    except ValueError:
        raise LayerError(f"date {text!r} is not an ISO date (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS); "
                         "the archive's dates are listed by /api/archives") from None
    if len(text) <= 10:  # a day: it must name exactly one date of the archive
        hits = np.flatnonzero(times.astype("datetime64[D]") == want.astype("datetime64[D]"))
    else:
        hits = np.flatnonzero(times == want.astype("datetime64[us]"))
    if len(hits) != 1:
        first, last = str(times[0])[:10], str(times[-1])[:10]
        why = "is not one of" if not len(hits) else "matches several of"
        raise LayerError(f"date {text!r} {why} the archive's {n} dates ({first} … {last}); "
                         "use one listed by /api/archives")
    return int(hits[0])


def _with_grid(data: xr.DataArray, ds: xr.Dataset) -> xr.DataArray:
    """Only the grid's coordinates (fewer coordinates: less work in every rioxarray step), with the CRS."""
    ydim, xdim = ds.label.dims[-2:]
    data = data.drop_vars([c for c in data.coords if c not in (ydim, xdim, "spatial_ref")])
    if data.rio.crs is None:
        data = data.rio.write_crs(ds.odc.geobox.crs.to_wkt())
    return data.rio.set_spatial_dims(x_dim=xdim, y_dim=ydim)


def layer_raster(ds: xr.Dataset, layer: str, date: int | str, *, quicklook: xr.DataArray | None = None,
                 derived: Mapping[str, xr.DataArray] | None = None) -> tuple[xr.DataArray, str]:
    """The lazy 2-D raster ``(y, x)`` of one layer and date, and its kind.

    Parameters
    ----------
    ds
        An archive from :func:`dwcube.archive.open_archive`.
    layer
        ``"label"``, ``"probability/CLASS"``, ``"smoothed"``, ``"change_date"`` or ``"rgb"``.
    date
        Index into the archive's dates, or an ISO date that names one of them.
    quicklook
        The archive's RGB quicklook (:func:`dwcube.serve.quicklook.open_quicklook`), for ``rgb``.
    derived
        :func:`derived_layers` already computed (a server keeps them in memory); default: lazily here.

    Returns
    -------
    tuple
        The raster (``uint8`` labels with 255 = no data; ``float32`` probabilities 0–1 with
        NaN = no data; ``float32`` days before ``date`` for ``change_date``, NaN where no change;
        ``uint8`` ``(band, y, x)`` for ``rgb``) and its kind: ``"label"``, ``"ramp"``,
        ``"age"`` or ``"rgb"``.

    Raises
    ------
    LayerError
        Unknown layer, class or date, or ``rgb`` asked of an archive without a quicklook.

    Examples
    --------
    >>> from dwcube.archive import open_archive
    >>> from dwcube.testing import tiny_archive
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     ds = open_archive(tiny_archive(d + "/a.zarr", size=32, dates=2))
    ...     raster, kind = layer_raster(ds, "probability/water", 1)
    ...     raster.dims, str(raster.dtype), kind
    (('y', 'x'), 'float32', 'ramp')
    """
    classes = [str(c) for c in ds["class"].values]
    known = layer in ("label", "smoothed", "change_date", "rgb")
    if not known and not layer.startswith("probability/"):
        raise LayerError(f"unknown layer {layer!r}; the layers are label, probability/CLASS, smoothed, "
                         "change_date and rgb")
    if layer.startswith("probability/") and layer.split("/", 1)[1] not in classes:
        raise LayerError(f"unknown class {layer.split('/', 1)[1]!r} in layer {layer!r}; the classes are "
                         f"{', '.join(classes)}")
    if layer == "rgb" and quicklook is None:
        raise LayerError("this archive keeps no RGB quicklook; write one with "
                         "dwcube.serve.quicklook.write_quicklook(cube, store)")
    t = _date_index(ds, date)
    derived = derived if derived is not None else {}
    if layer == "label":
        return _with_grid(ds.label.isel(time=t), ds), "label"
    if layer.startswith("probability/"):
        k = classes.index(layer.split("/", 1)[1])
        return _with_grid(ds.probability.isel(time=t, **{"class": k}), ds), "ramp"
    if layer == "smoothed":
        smoothed = derived.get("smoothed")
        if smoothed is None:
            smoothed = derived_layers(ds)["smoothed"]
        return _with_grid(smoothed.isel(time=t), ds), "label"
    if layer == "change_date":
        when = derived.get("change_date")
        if when is None:
            when = derived_layers(ds)["change_date"]
        now = ds["time"].values[t]
        age = ((now - when) / np.timedelta64(1, "D")).astype(np.float32)
        return _with_grid(age.where(age >= 0), ds), "age"
    assert quicklook is not None
    when = ds["time"].values[t]
    if when not in quicklook["time"].values:
        raise LayerError(f"the archive's quicklook has no image for {str(when)[:19]}")
    return quicklook.sel(time=when), "rgb"


def derived_layers(ds: xr.Dataset) -> dict[str, xr.DataArray]:
    """The layers computed from the probabilities, lazily: ``smoothed`` (label of the HMM-smoothed
    cube, ``(time, y, x)`` uint8) and ``change_date`` (``(y, x)`` datetime64, NaT = no change).

    Examples
    --------
    >>> from dwcube.archive import open_archive
    >>> from dwcube.testing import tiny_archive
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     layers = derived_layers(open_archive(tiny_archive(d + "/a.zarr", size=32, dates=2)))
    ...     layers["smoothed"].dims, str(layers["change_date"].dtype)
    (('time', 'y', 'x'), 'datetime64[ns]')
    """
    from ..change import changes
    from ..probability import label
    from ..temporal import smooth

    return {"smoothed": label(smooth(ds.probability)), "change_date": changes(ds.probability).change_date}


@dataclass(frozen=True)
class _Ramp:
    """A 256-entry colour ramp as a rio-tiler colour map (index 0–255 → RGBA)."""

    name: str

    def colormap(self) -> dict[int, tuple[int, int, int, int]]:
        from rio_tiler.colormap import cmap

        return cmap.get(self.name)


PROBABILITY_RAMP = _Ramp("viridis")
AGE_RAMP = _Ramp("magma")
#: Days of change age mapped to the end of the ``change_date`` ramp (older changes saturate).
AGE_SPAN_DAYS = 365.0


def _check_tile(ds: xr.Dataset, z: int, x: int, y: int) -> None:
    if z < 0 or x < 0 or y < 0 or x >= 2 ** z or y >= 2 ** z:
        raise TileOutOfRangeError(f"tile {z}/{x}/{y} does not exist: at zoom {z} x and y run from 0 to {2 ** z - 1}")
    lo, _native, hi = zoom_range(ds)
    if not lo <= z <= hi:
        raise TileOutOfRangeError(f"zoom {z} is outside this archive's zoom range {lo}–{hi} "
                                  f"(below {lo} a tile would read more than {4 ** ZOOM_OUT_LEVELS} archive pixels per "
                                  "tile pixel)")


def archive_tile(ds: xr.Dataset, layer: str, date: int | str, z: int, x: int, y: int, *,
                 tilesize: int = 256, quicklook: xr.DataArray | None = None,
                 derived: Mapping[str, xr.DataArray] | None = None) -> bytes:
    """One Web-Mercator XYZ tile of a layer and date, as a PNG (transparent where no data).

    Parameters
    ----------
    ds
        An archive from :func:`dwcube.archive.open_archive`.
    layer, date, quicklook, derived
        As for :func:`layer_raster`.
    z, x, y
        The tile (``WebMercatorQuad``: x from the west, y from the north).
    tilesize
        Width and height of the PNG in pixels.

    Returns
    -------
    bytes
        The PNG: RGBA, the label and smoothed layers in the Dynamic World palette,
        probabilities through ``viridis`` (0 → 0, 1 → 255), change age through ``magma``
        (0–365 days), the quicklook as it is stored.

    Raises
    ------
    LayerError
        As for :func:`layer_raster`.
    TileOutOfRangeError
        When z/x/y are not a tile, or z is outside :func:`zoom_range`.
    TileOutsideArchiveError
        When the tile does not overlap the archive.

    Examples
    --------
    >>> from dwcube.archive import open_archive
    >>> from dwcube.testing import tiny_archive
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     ds = open_archive(tiny_archive(d + "/a.zarr", size=32, dates=2))
    ...     archive_tile(ds, "label", 9, *native_tiles(ds)[0])
    Traceback (most recent call last):
    ...
    dwcube.serve.layers.LayerError: date index 9 is out of range: the archive has 2 dates (0–1)
    """
    from rio_tiler.errors import TileOutsideBounds
    from rio_tiler.io.xarray import XarrayReader

    _check_tile(ds, z, x, y)
    raster, kind = layer_raster(ds, layer, date, quicklook=quicklook, derived=derived)
    classes = [str(c) for c in ds["class"].values]
    if kind == "label":
        raster = raster.rio.write_nodata(NODATA_LABEL)
    elif kind in ("ramp", "age"):
        raster = raster.rio.write_nodata(np.nan)
    else:
        raster = raster.rio.write_nodata(0)
    method = "nearest" if kind in ("label", "age") else "bilinear"
    try:
        with XarrayReader(raster) as reader:
            img = reader.tile(x, y, z, tilesize=tilesize, reproject_method=method)
    except TileOutsideBounds as exc:
        raise TileOutsideArchiveError(f"tile {z}/{x}/{y} does not overlap the archive") from exc
    if kind == "label":
        return img.render(img_format="PNG", colormap=label_colormap(classes))
    if kind == "rgb":
        return img.render(img_format="PNG")
    span = 1.0 if kind == "ramp" else AGE_SPAN_DAYS
    ramp = PROBABILITY_RAMP if kind == "ramp" else AGE_RAMP
    data = np.ma.masked_invalid(img.array.astype(np.float32))
    scaled = np.ma.clip(np.ma.round(data / span * 255.0), 0, 255).astype(np.uint8)
    img.array = np.ma.MaskedArray(scaled.filled(0), mask=np.ma.getmaskarray(data) | img.array.mask)
    return img.render(img_format="PNG", colormap=ramp.colormap())

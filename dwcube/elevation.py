"""Elevation context: a DEM mosaicked and reprojected onto a cube's grid, and its slope.

Sources: a STAC catalogue with a DEM collection laid out like Copernicus DEM
GLO-30 on Earth Search and Planetary Computer (collection ``cop-dem-glo-30``,
one asset ``data`` per 1° tile, float32 metres), or a single local/remote raster
(GeoTIFF, COG, VRT...).  Both paths go through odc-stac onto the cube's
:class:`~odc.geo.geobox.GeoBox` with the cube's chunks, so the result is lazy
and lines up pixel for pixel with the reflectance bands.  All tiles are merged
into one layer (first valid value wins).

The slope uses Horn's 3 × 3 finite differences (as GDAL's ``gdaldem slope``)
through :func:`dask.array.map_overlap`, so it does not depend on the chunking;
edge pixels, which lack a full neighbourhood, are NaN.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import odc.geo.xr  # noqa: F401 - registers .odc (used here) now that `import dwcube` is lazy
import pystac
import xarray as xr
from odc.geo.geobox import GeoBox

__all__ = ["load_dem", "slope", "DEM_COLLECTION"]

#: The Copernicus DEM GLO-30 collection id in the public catalogues.
DEM_COLLECTION = "cop-dem-glo-30"

_RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".jp2", ".img", ".nc", ".dem", ".hgt")


def _one_group(item: pystac.Item, parsed: Any, idx: int) -> int:
    return 0  # every DEM tile belongs to the same (only) layer


def _grid_of(like: xr.Dataset | xr.DataArray | GeoBox) -> tuple[GeoBox, dict[str, int]]:
    if isinstance(like, GeoBox):
        return like, {"y": 2048, "x": 2048}
    gbox = like.odc.geobox
    if gbox is None:
        raise ValueError("`like` has no grid: expected a cube from dwcube.load (with spatial_ref) or a GeoBox")
    ydim, xdim = like.odc.spatial_dims
    chunks = like.chunksizes if hasattr(like, "chunksizes") else {}
    cy = chunks.get(ydim, (2048,))[0] if chunks else 2048
    cx = chunks.get(xdim, (2048,))[0] if chunks else 2048
    return gbox, {"y": int(cy), "x": int(cx)}


def _raster_item(href: str) -> pystac.Item:
    """A one-asset STAC item describing a raster file (reads its header once)."""
    import datetime as dt

    import rasterio
    from odc.geo.geom import box

    with rasterio.open(href) as src:
        crs, tr, shape, nodata = src.crs, src.transform, (src.height, src.width), src.nodata
        dtype = src.dtypes[0]
    epsg = crs.to_epsg()
    if epsg is None:
        raise ValueError(f"{href}: the DEM's CRS has no EPSG code ({crs}); reproject it first")
    bounds = rasterio.transform.array_bounds(shape[0], shape[1], tr)  # west, south, east, north
    footprint = box(bounds[0], bounds[1], bounds[2], bounds[3], f"EPSG:{epsg}").to_crs("EPSG:4326")
    item = pystac.Item(
        os.path.basename(href) or "dem", geometry=footprint.json, bbox=list(footprint.boundingbox),
        datetime=dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc), properties={"proj:code": f"EPSG:{epsg}"},
    )
    band: dict[str, Any] = {"data_type": dtype}
    if nodata is not None:
        band["nodata"] = float(nodata)
    item.add_asset("data", pystac.Asset(href=href, roles=["data"], extra_fields={
        "proj:code": f"EPSG:{epsg}", "proj:shape": list(shape), "proj:transform": list(tr)[:6],
        "raster:bands": [band]}))
    return item


def load_dem(
    source: Any,
    like: xr.Dataset | xr.DataArray | GeoBox,
    *,
    collections: str | Sequence[str] | None = DEM_COLLECTION,
    asset: str = "data",
    resampling: str = "bilinear",
    with_slope: bool = False,
    chunks: Mapping[str, int] | None = None,
) -> xr.Dataset:
    """Elevation (and optionally slope) on the grid of ``like``, lazily.

    Parameters
    ----------
    source
        A raster path/URL (``.tif``, ``.vrt``…), or a STAC catalogue as accepted by
        :func:`dwcube.stac.search` (API URL, catalogue file, items) holding DEM tiles.
    like
        The cube (or a GeoBox) whose grid the DEM is put on.
    collections
        DEM collection(s) to search in a catalogue (default ``cop-dem-glo-30``;
        ``None`` for any).
    asset
        Asset key of the elevation raster in each item (``"data"`` in both public catalogues).
    resampling
        Resampling (default bilinear).
    with_slope
        Also return ``slope`` in degrees.
    chunks
        Pixels per chunk ``{"y", "x"}``; default: the chunks of ``like``.

    Returns
    -------
    xarray.Dataset
        ``elevation`` (float32, metres, NaN where no DEM covers) and, if asked,
        ``slope`` (float32, degrees); dims ``(y, x)`` of ``like``, its
        ``spatial_ref``; provenance in ``attrs``.

    Raises
    ------
    dwcube.EmptySearchError
        When the catalogue has no DEM tile over the grid.

    Examples
    --------
    >>> dem = load_dem("https://earth-search.aws.element84.com/v1", cube, with_slope=True)  # doctest: +SKIP
    >>> dem = load_dem("dem.tif", cube)  # doctest: +SKIP
    """
    import odc.stac

    from .load import DEFAULT_GDAL_ENV
    from .stac import search

    gbox, like_chunks = _grid_of(like)
    chunks = dict(chunks or like_chunks)
    if isinstance(source, (str, os.PathLike)) and str(source).split("?")[0].lower().endswith(_RASTER_SUFFIXES):
        items = [_raster_item(str(source))]
        asset = "data"
    else:
        footprint = gbox.extent.to_crs("EPSG:4326")
        items = search(source, collections=collections, bbox=list(footprint.boundingbox))
        missing = [it.id for it in items if asset not in it.assets]
        if missing:
            raise KeyError(f"DEM item(s) {', '.join(missing[:5])} have no asset {asset!r}")
    odc.stac.configure_rio(cloud_defaults=True, **DEFAULT_GDAL_ENV)
    raw = odc.stac.load(items, bands=[asset], geobox=gbox, chunks=chunks, groupby=_one_group,
                        resampling=resampling, dtype="float32", nodata=np.nan)
    elev = raw[asset].isel(time=0, drop=True)
    elev.attrs = {"long_name": "elevation", "units": "m", "resampling": resampling}
    out = xr.Dataset({"elevation": elev})
    if with_slope:
        out["slope"] = slope(elev)
    out.attrs = {"source": str(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__,
                 "dem_items": [it.id for it in items]}
    return out


def _horn_slope(z: np.ndarray, dx: float, dy: float) -> np.ndarray:
    p = np.pad(z.astype(np.float64), 1, constant_values=np.nan)
    a, b, c = p[:-2, :-2], p[:-2, 1:-1], p[:-2, 2:]
    d, f = p[1:-1, :-2], p[1:-1, 2:]
    g, h, i = p[2:, :-2], p[2:, 1:-1], p[2:, 2:]
    dzdx = ((c + 2 * f + i) - (a + 2 * d + g)) / (8 * dx)
    dzdy = ((g + 2 * h + i) - (a + 2 * b + c)) / (8 * dy)
    return np.degrees(np.arctan(np.hypot(dzdx, dzdy))).astype(np.float32)


def slope(elevation: xr.DataArray) -> xr.DataArray:
    """Slope in degrees (Horn's method) of an elevation layer on a projected grid.

    Parameters
    ----------
    elevation
        ``(y, x)`` elevation in metres with a projected CRS in metres (``spatial_ref``).

    Returns
    -------
    xarray.DataArray
        float32 degrees, NaN at the edges and next to NaN; lazy and chunk-invariant.

    Examples
    --------
    >>> slope(dem.elevation).max()  # doctest: +SKIP
    """
    import dask.array as da

    gbox = elevation.odc.geobox
    if gbox is None or gbox.crs is None or gbox.crs.geographic:
        raise ValueError("slope needs elevation on a projected grid in metres (reproject with crs=...)")
    dx, dy = abs(gbox.resolution.x), abs(gbox.resolution.y)
    data = da.asarray(elevation.data)
    out = data.map_overlap(_horn_slope, depth=1, boundary=np.nan, dtype=np.float32, dx=dx, dy=dy)
    return xr.DataArray(out, dims=elevation.dims, coords=elevation.coords,
                        attrs={"long_name": "slope", "units": "degree", "method": "Horn 3x3"})

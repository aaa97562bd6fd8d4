"""One date of a label map or of the class probabilities as a Cloud-Optimised GeoTIFF.

:func:`to_cog` writes what GIS software shows without further styling:

label ``(y, x)``
    One ``uint8`` band, 255 = no data, with the Dynamic World colour table (value *i*
    painted in the colour of class *i*, no data transparent), the class names as the
    band's per-value metadata (``class_0=water`` …) and CF-style ``flag_values`` /
    ``flag_meanings`` / ``flag_colors`` tags; overviews by the most frequent class
    (``MODE``).
probability ``(class, y, x)``
    One ``float32`` band per class, described by the class name, NaN = no data;
    overviews by averaging.

Both carry the grid (CRS and transform from ``odc.geobox``), the date and the model's
provenance as tags, are tiled (``blocksize``, default 512 px), DEFLATE-compressed with a
predictor, and written by GDAL's COG driver, so that their layout is a valid COG
(GDAL reports ``LAYOUT=COG``).  The raster is first written window by window to a
temporary tiled GeoTIFF beside the output (memory follows one row of Dask chunks) and
then copied into the COG layout.  :func:`export_cog` does the same from an archive.

Examples
--------
>>> import tempfile
>>> from dwcube.archive import write_archive
>>> from dwcube.inference import classify
>>> from dwcube.testing import TINY_MODEL, synthetic_cube
>>> with tempfile.TemporaryDirectory() as d:
...     _ = write_archive(classify(synthetic_cube(32, 2), TINY_MODEL, device="cpu"), d + "/a.zarr")
...     path = export_cog(d + "/a.zarr", d + "/label.tif", date="2023-04-06")
...     import rasterio
...     with rasterio.open(path) as src:
...         src.dtypes[0], src.nodata, src.colormap(1)[0], src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"]
('uint8', 255.0, (65, 155, 223, 255), 'COG')
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from .classes import COLORS, NODATA_LABEL

__all__ = ["export_cog", "to_cog"]

_PROVENANCE = ("model", "model_version", "model_weights_sha256", "model_build_options", "sensor")


def _rgba(hex_colour: str) -> tuple[int, int, int, int]:
    h = hex_colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), 255


def _date_of(data: xr.DataArray) -> str | None:
    if "time" in data.coords and data["time"].ndim == 0:
        return str(np.datetime64(data["time"].values, "s"))
    return None


def _grid(data: xr.DataArray) -> tuple[Any, Any]:
    try:
        gbox = data.odc.geobox
    except Exception:  # noqa: BLE001 - odc-geo raises several kinds here
        gbox = None
    if gbox is None or gbox.crs is None:
        raise ValueError("the layer has no grid/CRS (a spatial_ref coordinate); layers of open_archive() and "
                         "classify() carry one")
    return gbox.crs.to_wkt(), gbox.affine


def _class_names(data: xr.DataArray) -> list[str]:
    if "class" in data.coords:
        return [str(c) for c in data["class"].values]
    meanings = data.attrs.get("flag_meanings")
    if not meanings:
        raise ValueError("the label has no class names (attrs['flag_meanings']); labels of open_archive() and "
                         "dwcube.label() carry them")
    return str(meanings).split()


def to_cog(
    data: xr.DataArray,
    path: str | os.PathLike[str],
    *,
    blocksize: int = 512,
    compress: Literal["DEFLATE", "ZSTD", "LZW"] = "DEFLATE",
) -> Path:
    """Write one date of a label or of the probabilities to a Cloud-Optimised GeoTIFF.

    Parameters
    ----------
    data
        A label ``(y, x)`` (uint8, 255 = no data, with ``flag_meanings``) or the
        probabilities of one date ``(class, y, x)``, e.g. ``open_archive(…).label.sel(time=…)``;
        lazy (Dask) or in memory, on a grid with a CRS.
    path
        Output file (``.tif``); replaced if it exists.
    blocksize
        Tile size in pixels (a multiple of 16); overviews are made down to one tile.
    compress
        Compression of the tiles (with a horizontal / floating-point predictor).

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ValueError
        When ``data`` is not one date of a label or of the probabilities, or has no CRS.

    Examples
    --------
    >>> import tempfile, rasterio
    >>> from dwcube.inference import classify
    >>> from dwcube.testing import TINY_MODEL, synthetic_cube
    >>> prob = classify(synthetic_cube(32, 1), TINY_MODEL, device="cpu").isel(time=0)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     with rasterio.open(to_cog(prob, d + "/p.tif", blocksize=16)) as src:
    ...         src.count, src.dtypes[0], src.descriptions[:2], src.overviews(1)
    (9, 'float32', ('water', 'trees'), [2])
    """
    import rasterio
    import rasterio.shutil
    from rasterio.windows import Window

    if blocksize < 16 or blocksize % 16:
        raise ValueError(f"blocksize must be a positive multiple of 16 pixels, got {blocksize}")
    kind = "probability" if "class" in data.dims else "label"
    spatial = [d for d in data.dims if d != "class"]
    if len(spatial) != 2 or data.ndim != (3 if kind == "probability" else 2):
        raise ValueError(f"expected one date of a label (y, x) or of the probabilities (class, y, x), got dims "
                         f"{data.dims}; select a date first, e.g. .sel(time='2024-05-17')")
    if kind == "label" and data.dtype != np.uint8:
        raise ValueError(f"a label must be uint8 (255 = no data), got {data.dtype}; probabilities need a 'class' "
                         "dimension")
    crs, transform = _grid(data)
    names = _class_names(data)
    bands = data.transpose("class", *spatial) if kind == "probability" else data.expand_dims("band")
    height, width = bands.shape[1], bands.shape[2]
    dtype = "float32" if kind == "probability" else "uint8"
    nodata = float("nan") if kind == "probability" else NODATA_LABEL
    tags: dict[str, str] = {k: str(data.attrs[k]) for k in _PROVENANCE if k in data.attrs}
    date = _date_of(data)
    if date:
        tags["time"] = date
        tags["TIFFTAG_DATETIME"] = date.replace("-", ":").replace("T", " ")
    tags["TIFFTAG_SOFTWARE"] = "dwcube"
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(suffix=".tif", prefix=f".{out.stem}-", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        profile = {"driver": "GTiff", "width": width, "height": height, "count": bands.shape[0], "dtype": dtype,
                   "crs": crs, "transform": transform, "nodata": nodata, "tiled": True,
                   "blockxsize": blocksize, "blockysize": blocksize, "BIGTIFF": "IF_SAFER"}
        with rasterio.open(tmp, "w", **profile) as dst:
            rows = bands.chunks[1] if bands.chunks is not None else (height,)
            y0 = 0
            for h in rows:  # one row of Dask chunks in memory at a time
                block = np.asarray(bands.isel({spatial[0]: slice(y0, y0 + h)}).values, dtype=dtype)
                dst.write(block, window=Window(0, y0, width, h))
                y0 += h
            dst.update_tags(**tags)
            if kind == "label":
                colours = {i: _rgba(COLORS.get(n, "#000000")) for i, n in enumerate(names)}
                colours[NODATA_LABEL] = (0, 0, 0, 0)
                dst.write_colormap(1, colours)
                dst.set_band_description(1, "land-cover class")
                dst.update_tags(1, flag_values=" ".join(str(i) for i in range(len(names))),
                                flag_meanings=" ".join(names),
                                flag_colors=" ".join(COLORS.get(n, "#000000") for n in names),
                                **{f"class_{i}": n for i, n in enumerate(names)})
            else:
                for i, n in enumerate(names, start=1):
                    dst.set_band_description(i, n)
                    dst.update_tags(i, **{"class": n, "units": "1"})
        options: Mapping[str, Any] = {
            "BLOCKSIZE": blocksize, "COMPRESS": compress, "PREDICTOR": "YES", "OVERVIEWS": "AUTO",
            "OVERVIEW_RESAMPLING": "MODE" if kind == "label" else "AVERAGE", "BIGTIFF": "IF_SAFER",
        }
        rasterio.shutil.copy(tmp, out, driver="COG", **options)
    finally:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.aux.xml").unlink(missing_ok=True)
    return out


def _select_date(ds: xr.Dataset, date: str) -> xr.Dataset:
    times = ds["time"].values.astype("datetime64[us]")
    try:
        wanted = np.datetime64(date)
    except ValueError:
        raise ValueError(f"date {date!r} is not a date (e.g. 2024-05-17 or 2024-05-17T10:56:21)") from None
    unit = np.datetime_data(wanted.dtype)[0]
    hits = np.nonzero(times.astype(f"datetime64[{unit}]") == wanted)[0] if unit in ("Y", "M", "D", "h", "m", "s") \
        else np.nonzero(times == wanted.astype("datetime64[us]"))[0]
    listed = ", ".join(str(t)[:19] for t in times[:12]) + (" …" if times.size > 12 else "")
    if hits.size == 0:
        raise ValueError(f"the archive has no date {date}; it has {listed or 'no complete dates'}")
    if hits.size > 1:
        raise ValueError(f"{date} matches {hits.size} dates of the archive ({', '.join(str(times[i])[:19] for i in hits)}); "
                         "give the time too, e.g. 2024-05-17T10:56:21")
    return ds.isel(time=int(hits[0]))


def export_cog(
    store: str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    date: str,
    layer: Literal["label", "probability"] = "label",
    blocksize: int = 512,
    compress: Literal["DEFLATE", "ZSTD", "LZW"] = "DEFLATE",
) -> Path:
    """Write one date of an archive's label or probabilities to a Cloud-Optimised GeoTIFF.

    Parameters
    ----------
    store
        The archive (:func:`dwcube.archive.write_archive`).
    path
        Output file (``.tif``).
    date
        The date, as ``2024-05-17`` (must match one date of the archive) or with its time.
    layer
        ``"label"`` (uint8 with the Dynamic World colour table) or ``"probability"``
        (one float32 band per class).
    blocksize, compress
        See :func:`to_cog`.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ValueError
        When the archive has no such date (or several that day), or lacks the layer.

    Examples
    --------
    >>> import tempfile, rasterio
    >>> from dwcube.archive import write_archive
    >>> from dwcube.inference import classify
    >>> from dwcube.testing import TINY_MODEL, synthetic_cube
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = write_archive(classify(synthetic_cube(32, 2), TINY_MODEL, device="cpu"), d + "/a.zarr")
    ...     p = export_cog(d + "/a.zarr", d + "/p.tif", date="2023-04-18", layer="probability")
    ...     with rasterio.open(p) as src:
    ...         src.count, src.tags()["time"]
    (9, '2023-04-18T00:00:00')
    """
    from .archive import open_archive

    if layer not in ("label", "probability"):
        raise ValueError(f"layer must be 'label' or 'probability', got {layer!r}")
    ds = open_archive(store)
    if layer not in ds:
        raise ValueError(f"{store} does not store the {layer} layer (its layers: {', '.join(map(str, ds.data_vars))})")
    one = _select_date(ds, date)
    return to_cog(one[layer], path, blocksize=blocksize, compress=compress)

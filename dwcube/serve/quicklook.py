"""A small uint8 RGB quicklook of the input reflectance, kept beside an archive's probabilities.

The viewer (:mod:`dwcube.serve`) shows the image behind each date from it.  The quicklook is
the Zarr group ``quicklook`` inside the archive's store: ``rgb`` ``(time, band, y, x)`` uint8
(bands red, green, blue; 0 = no data, valid values 1–255: ``1 + 254 · clip(ρ / gain, 0, 1)``
for reflectance ``ρ``), on the archive's grid coarsened by an integer ``factor`` (mean of the
valid pixels; the grid travels as ``spatial_ref``, so rioxarray and odc-geo read it).  It is
written after the archive under the archive's write lock, and appending a later date adds
only the dates the quicklook lacks.  The archive's own arrays, metadata and checks are not
touched: :func:`dwcube.archive.check_archive` and plain ``xr.open_zarr`` see the same archive.

Examples
--------
>>> import tempfile
>>> from dwcube.archive import open_archive, write_archive
>>> from dwcube.inference import classify
>>> from dwcube.testing import TINY_MODEL, synthetic_cube
>>> cube = synthetic_cube(32, 2)
>>> with tempfile.TemporaryDirectory() as d:
...     _ = write_archive(classify(cube, TINY_MODEL, device="cpu"), d + "/a.zarr")
...     _ = write_quicklook(cube, d + "/a.zarr", factor=2)
...     rgb = open_quicklook(d + "/a.zarr")
...     rgb.dims, rgb.shape, str(rgb.dtype), rgb.rio.resolution()
(('time', 'band', 'y', 'x'), (2, 3, 16, 16), 'uint8', (20.0, -20.0))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

__all__ = ["QUICKLOOK_GROUP", "SERIES_GROUP", "quicklook_rgb", "write_quicklook", "open_quicklook", "write_series_copy",
           "open_series_copy"]

#: Name of the quicklook's Zarr group inside an archive's store.
QUICKLOOK_GROUP = "quicklook"


def quicklook_rgb(cube: xr.Dataset, *, bands: Sequence[str] = ("red", "green", "blue"), gain: float = 0.3,
                  factor: int = 1) -> xr.DataArray:
    """The uint8 quicklook of a reflectance cube, lazily (see the module notes for the coding).

    Parameters
    ----------
    cube
        Reflectance cube ``(time, y, x)`` (0–1), e.g. from :func:`dwcube.load`.
    bands
        The cube's bands shown as red, green and blue.
    gain
        Reflectance shown at full brightness (brighter pixels saturate).
    factor
        Integer coarsening of the grid (``factor × factor`` pixels averaged; edges trimmed).

    Returns
    -------
    xarray.DataArray
        ``rgb`` ``(time, band, y, x)`` uint8 with ``spatial_ref``; 0 = no data.

    Raises
    ------
    ValueError
        When a band is missing, ``gain`` is not positive or ``factor`` is not a positive integer.

    Examples
    --------
    >>> from dwcube.testing import synthetic_cube
    >>> rgb = quicklook_rgb(synthetic_cube(32, 1), factor=4)
    >>> rgb.shape, int(rgb.min()) >= 1
    ((1, 3, 8, 8), True)
    """
    missing = [b for b in bands if b not in cube.data_vars]
    if missing:
        raise ValueError(f"the cube lacks the quicklook band(s) {missing}; it has {sorted(map(str, cube.data_vars))}")
    if not gain > 0:
        raise ValueError(f"gain must be a positive reflectance, got {gain!r}")
    if int(factor) != factor or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    gbox = cube.odc.geobox
    stack = xr.concat([cube[b].astype(np.float32) for b in bands], dim="band").assign_coords(band=list(bands))
    stack = stack.transpose("time", "band", *stack.dims[-2:])
    if factor > 1:
        ydim, xdim = stack.dims[-2:]
        stack = stack.coarsen({ydim: factor, xdim: factor}, boundary="trim").mean()
        gbox = gbox.zoom_out(factor)
        ny, nx = stack.shape[-2:]
        gbox = gbox[:ny, :nx]
    coded = (1 + 254 * (stack / gain).clip(0, 1)).round()
    rgb = coded.fillna(0).astype(np.uint8)
    from odc.geo.xr import xr_coords

    rgb = rgb.drop_vars([c for c in rgb.coords if c not in ("time", "band")])
    rgb = rgb.assign_coords(xr_coords(gbox))
    rgb.name = "rgb"
    rgb.attrs = {"long_name": "RGB quicklook of the input reflectance", "bands": list(bands),
                 "coding": f"1 + 254 * clip(reflectance / {gain}, 0, 1); 0 = no data", "gain": gain,
                 "factor": int(factor), "_FillValue_meaning": "0 = no data"}
    return rgb


def write_quicklook(cube: xr.Dataset, store: str | os.PathLike[str], *, bands: Sequence[str] = ("red", "green", "blue"),
                    gain: float = 0.3, factor: int = 1, wait: float = 0.0) -> list[str]:
    """Store the quicklook of a cube's dates inside an existing archive (only the dates it lacks).

    Parameters
    ----------
    cube
        The reflectance cube the archive's probabilities came from (same grid).
    store
        The archive (a local path), written by :func:`dwcube.archive.write_archive`.
    bands, gain, factor
        As for :func:`quicklook_rgb` (an existing quicklook keeps its own ``factor``).
    wait
        Seconds to wait for another writer of the archive (its write lock).

    Returns
    -------
    list of str
        The ISO dates written.

    Raises
    ------
    ValueError
        When the cube's grid differs from the archive's, or new dates come before stored ones.

    Examples
    --------
    >>> import tempfile
    >>> from dwcube.archive import write_archive
    >>> from dwcube.inference import classify
    >>> from dwcube.testing import TINY_MODEL, synthetic_cube
    >>> cube = synthetic_cube(32, 2)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = write_archive(classify(cube, TINY_MODEL, device="cpu"), d + "/a.zarr")
    ...     first = write_quicklook(cube.isel(time=[0]), d + "/a.zarr")
    ...     again = write_quicklook(cube, d + "/a.zarr")
    ...     first, again
    (['2023-04-06T00:00:00'], ['2023-04-18T00:00:00'])
    """
    from ..archive import _write_lock, open_archive

    path = str(Path(store))
    archive = open_archive(path)
    if archive.odc.geobox != cube.odc.geobox:
        raise ValueError(f"the cube's grid {cube.odc.geobox} is not the archive's {archive.odc.geobox}")
    existing = open_quicklook(path)
    if existing is not None:
        factor = int(existing.attrs.get("factor", factor))
        have = set(existing["time"].values.astype("datetime64[ns]").tolist())
        keep = [i for i, t in enumerate(cube["time"].values.astype("datetime64[ns]")) if t.tolist() not in have]
        if keep and existing.sizes["time"] and cube["time"].values[keep[0]] <= existing["time"].values[-1]:
            raise ValueError("new quicklook dates must come after the stored ones "
                             f"(last stored: {str(existing['time'].values[-1])[:19]})")
        cube = cube.isel(time=keep)
    if not cube.sizes["time"]:
        return []
    rgb = quicklook_rgb(cube, bands=bands, gain=gain, factor=factor).to_dataset()
    chunk = min(512, rgb.sizes[rgb.rgb.dims[-1]])
    rgb = rgb.chunk({"time": 1, "band": -1, rgb.rgb.dims[-2]: chunk, rgb.rgb.dims[-1]: chunk})
    for name in rgb.variables:
        rgb[name].encoding = {}
    with _write_lock(path, wait):
        if existing is None:
            rgb.to_zarr(path, group=QUICKLOOK_GROUP, mode="w-", zarr_format=3, consolidated=False)
        else:
            rgb.to_zarr(path, group=QUICKLOOK_GROUP, mode="a", append_dim="time", zarr_format=3, consolidated=False)
    return [str(t)[:19] for t in cube["time"].values.astype("datetime64[s]")]


def open_quicklook(store: str | os.PathLike[str]) -> xr.DataArray | None:
    """The quicklook of an archive, lazily, or ``None`` when it keeps none.

    Examples
    --------
    >>> import tempfile
    >>> from dwcube.archive import write_archive
    >>> from dwcube.inference import classify
    >>> from dwcube.testing import TINY_MODEL, synthetic_cube
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = write_archive(classify(synthetic_cube(32, 1), TINY_MODEL, device="cpu"), d + "/a.zarr")
    ...     open_quicklook(d + "/a.zarr") is None
    True
    """
    path = Path(store)
    if not (path / QUICKLOOK_GROUP / "zarr.json").exists():
        return None
    ds = xr.open_zarr(path, group=QUICKLOOK_GROUP, zarr_format=3, consolidated=False)
    rgb = ds["rgb"]
    if "spatial_ref" in ds.coords:
        rgb = rgb.assign_coords(spatial_ref=ds["spatial_ref"])
    crs = rgb["spatial_ref"].attrs.get("crs_wkt") or rgb["spatial_ref"].attrs.get("spatial_ref")
    if crs:
        rgb = rgb.rio.write_crs(crs)
    return rgb.rio.set_spatial_dims(x_dim=rgb.dims[-1], y_dim=rgb.dims[-2])


#: Name of the time-chunked copy of the probabilities inside an archive's store (fast point series).
SERIES_GROUP = "series"


def write_series_copy(store: str | os.PathLike[str], *, chunk: int = 32, wait: float = 0.0) -> xr.Dataset:
    """Store a time-chunked copy of an archive's probabilities, so that a pixel's series reads few chunks.

    The archive's own chunks hold one date each (writes and appends per date), so a point
    query decodes one ``chunk² × 9`` chunk per date.  The copy (Zarr group ``series`` inside
    the store: ``probability`` ``(time, class, y, x)`` float32, chunks all dates × all classes ×
    ``chunk × chunk``) holds the same values; a pixel's series is then one chunk.  The server
    (:mod:`dwcube.serve.web`) reads points from it while its dates equal the archive's, and from
    the archive otherwise.  Rewritten whole on each call (the archive is read once).

    Parameters
    ----------
    store
        The archive (a local path).
    chunk
        Spatial chunk of the copy in pixels.
    wait
        Seconds to wait for another writer of the archive.

    Returns
    -------
    xarray.Dataset
        The copy, opened lazily.

    Examples
    --------
    >>> import tempfile
    >>> from dwcube.archive import open_archive
    >>> from dwcube.testing import tiny_archive
    >>> with tempfile.TemporaryDirectory() as d:
    ...     copy = write_series_copy(tiny_archive(d + "/a.zarr", size=32, dates=3), chunk=16)
    ...     copy.probability.encoding["chunks"], bool((copy.probability == open_archive(d + "/a.zarr").probability).all())
    ((3, 9, 16, 16), True)
    """
    from ..archive import _write_lock, open_archive

    path = str(Path(store))
    prob = open_archive(path).probability
    ydim, xdim = prob.dims[-2:]
    copy = prob.chunk({"time": -1, "class": -1, ydim: chunk, xdim: chunk}).to_dataset()
    copy = copy.drop_vars([c for c in copy.coords if c not in ("time", "class", ydim, xdim)])
    for name in copy.variables:
        copy[name].encoding = {}
    copy["probability"].attrs = {"long_name": "time-chunked copy of the archive's probabilities"}
    with _write_lock(path, wait):
        copy.to_zarr(path, group=SERIES_GROUP, mode="w", zarr_format=3, consolidated=False)
    return open_series_copy(path)  # type: ignore[return-value]


def open_series_copy(store: str | os.PathLike[str]) -> xr.Dataset | None:
    """The time-chunked copy of :func:`write_series_copy`, or ``None`` when the store has none.

    Examples
    --------
    >>> open_series_copy("/nonexistent.zarr") is None
    True
    """
    path = Path(store)
    if not (path / SERIES_GROUP / "zarr.json").exists():
        return None
    return xr.open_zarr(path, group=SERIES_GROUP, zarr_format=3, consolidated=False)

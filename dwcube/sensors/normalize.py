"""Raw digital numbers → the reflectance cube.

The per-item conversion ``reflectance = (DN + add)·scale + offset`` (no data →
NaN) is one Numba ufunc, evaluated in float64 and rounded once to float32, so
that a Sentinel-2 value is exactly the float32 nearest to ``(DN − 1000)/10000``
and no full-size temporaries are made.  Masks from the quality layer and the
optional HLS bandpass adjustment are applied in the same lazy pass.  Nothing
here reads pixels: all of it maps over Dask blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import functools

import dask.base
import numba
import numpy as np
import pystac
import xarray as xr

from .base import MaskSpec, Sensor

__all__ = ["reflectance", "normalize"]

_IN_TYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")


@numba.vectorize(
    [f"float32({t}, float64, float64, float64, float64)" for t in _IN_TYPES],
    nopython=True,
    cache=True,
)
def reflectance(dn, nodata, add, scale, offset):  # type: ignore[no-untyped-def]
    """Reflectance from digital numbers: ``(dn + add)·scale + offset``, NaN for no data.

    A NumPy ufunc (Numba): it broadcasts, works on Dask arrays block by block
    and on xarray objects through :func:`xarray.apply_ufunc`.

    Parameters
    ----------
    dn
        Digital numbers, integer or float (NaN is no data too).
    nodata
        DN that marks no data (e.g. ``0`` for Sentinel-2 and Landsat).
    add
        DN offset added first (``-1000`` for Sentinel-2 baseline ≥ 04.00, else ``0``).
    scale, offset
        Linear scaling to reflectance (``1e-4, 0`` for Sentinel-2;
        ``2.75e-5, -0.2`` for Landsat Collection 2 Level-2).

    Returns
    -------
    float32 array of reflectance (unitless, nominally 0–1).

    Examples
    --------
    >>> reflectance(np.array([0, 1000, 3000], np.uint16), 0, -1000.0, 1e-4, 0.0)
    array([nan, 0. , 0.2], dtype=float32)
    """
    if dn != dn or dn == nodata:
        return np.float32(np.nan)
    return np.float32((dn + add) * scale + offset)


def _date_block(*blocks, nodata, spec, params):  # type: ignore[no-untyped-def]
    """One output block ``(1, y, x)`` of one band for one date.

    ``blocks`` are the ``(1, y, x)`` DN blocks of the date's ``k`` items, then
    (when masking) their ``k`` quality-layer blocks; ``params`` holds each item's
    ``(add, scale, offset)``.  Each item is scaled and masked, and the first
    valid value per pixel wins (items are in time order).

    Dask tasks reach the ufunc through this module-level function: a Numba
    DUFunc put into a task graph is pickled by value and *recompiled* on the
    worker for every task (seconds each on a distributed cluster).
    """
    k = len(params)
    out = None
    for i, (add, scale, offset) in enumerate(params):
        r = reflectance(blocks[i], nodata, add, scale, offset)
        if len(blocks) > k:
            r[spec.invalid(blocks[k + i])] = np.nan
        if out is None:
            out = r
        else:
            hole = np.isnan(out)
            out[hole] = r[hole]
        if i + 1 < k and not np.isnan(out).any():
            break
    return out


def normalize(
    raw: xr.Dataset,
    items: Sequence[pystac.Item],
    sensors: Sequence[Sensor],
    bands: Sequence[str],
    *,
    groups: Sequence[Sequence[int]] | None = None,
    mask_band: str | None = None,
    mask: MaskSpec | None = None,
    harmonize: bool = False,
    baseline_offset: str = "auto",
) -> tuple[xr.Dataset, dict[str, Any]]:
    """Turn a raw DN cube, one time step per item, into reflectance (optionally merged per date).

    Parameters
    ----------
    raw
        Dask-backed dataset with dims ``(time, y, x)`` and one time chunk per
        step, one DN variable per entry of ``bands`` (and ``mask_band`` if given),
        ``time[i]`` coming from ``items[i]``.
    items, sensors
        The STAC item and its sensor for every time step, same length as ``raw.time``.
    bands
        Common band names to convert.
    groups
        Item indices that make each output date, in output order (see
        :func:`dwcube.load.date_groups`); within a date the first valid value
        per pixel wins, after each item is scaled and masked.  Default: one date
        per item.
    mask_band
        Name of the quality-layer variable in ``raw``; dropped from the result.
    mask
        Which quality values to mask; ``None`` applies no mask.
    harmonize
        Apply the HLS bandpass adjustment (Sentinel-2 → Landsat-like) to the
        bands it covers.
    baseline_offset
        Sentinel-2 only: ``"auto"``, ``"apply"`` or ``"skip"`` (see
        :func:`dwcube.sensors.sentinel2.baseline_offset_dn`).

    Returns
    -------
    (cube, provenance)
        ``cube``: float32 reflectance ``(time, y, x)``, one step per group, NaN
        for no data and masked pixels, lazy, exactly one task per output block
        and band. Coordinates other than ``y``, ``x`` and ``spatial_ref`` are
        left to the caller. ``provenance``: notes for ``attrs``.

    Examples
    --------
    Three L2A items of processing baseline 04.00 (offset −1000 DN); the first two are one
    date: its first item is no data (DN 0) on the left half and cloud (SCL 9) on the top row,
    so the second item fills those pixels:

    >>> import datetime as dt, pystac
    >>> from dwcube.sensors import SCL_DEFAULT_MASK, detect_sensor
    >>> items = [pystac.Item(f"S2B_{i}", None, None, dt.datetime(2023, 6, 1 + i // 2, 10, i), {
    ...     "platform": "sentinel-2b", "s2:product_type": "S2MSI2A", "s2:processing_baseline": "04.00"})
    ...     for i in range(3)]
    >>> dn = np.full((3, 2, 4), 3000, np.uint16)
    >>> dn[1], dn[2] = 4000, 5000
    >>> dn[0, :, :2] = 0
    >>> scl = np.full((3, 2, 4), 4, np.uint8)
    >>> scl[0, 0] = 9
    >>> raw = xr.Dataset({"red": (("time", "y", "x"), dn), "scl": (("time", "y", "x"), scl)},
    ...                  coords={"time": [it.datetime.replace(tzinfo=None) for it in items]}).chunk({"time": 1})
    >>> cube, notes = normalize(raw, items, [detect_sensor(it) for it in items], ["red"], groups=[[0, 1], [2]],
    ...                         mask_band="scl", mask=SCL_DEFAULT_MASK)
    >>> cube.red.values.astype(float).round(3).tolist()
    [[[0.3, 0.3, 0.3, 0.3], [0.3, 0.3, 0.2, 0.2]], [[0.4, 0.4, 0.4, 0.4], [0.4, 0.4, 0.4, 0.4]]]
    >>> notes["radiometry"]
    ['baseline 04.00: offset -1000 DN']
    """
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph

    if raw.sizes.get("time", 0) != len(items) or len(items) != len(sensors):
        raise ValueError(
            f"raw cube has {raw.sizes.get('time', 0)} time steps but {len(items)} items "
            f"and {len(sensors)} sensors were given"
        )
    groups = [list(g) for g in (groups if groups is not None else [[i] for i in range(len(items))])]
    if sorted(i for g in groups for i in g) != list(range(len(items))) or any(not g for g in groups):
        raise ValueError("groups must use every item index exactly once, in non-empty groups")
    rads = [s.radiometry(it, baseline_offset) for it, s in zip(items, sensors, strict=True)]
    nodata = float(sensors[0].nodata)
    use_mask = mask is not None and mask_band is not None

    hls: dict[str, list[tuple[float, float]]] = {}
    if harmonize:
        coeffs = [s.harmonization(it) for it, s in zip(items, sensors, strict=True)]
        if any(c is None for c in coeffs):
            fams = sorted({s.family for s, c in zip(sensors, coeffs, strict=True) if c is None})
            raise ValueError(f"harmonize=True: no bandpass adjustment defined for {', '.join(fams)}")
        for b in bands:
            if all(b in c for c in coeffs):  # type: ignore[operator]
                hls[b] = [c[b] for c in coeffs]  # type: ignore[index]

    def as_steps(name: str) -> da.Array:
        arr = da.asarray(raw[name].data)
        if len(raw[name].dims) != 3 or raw[name].dims[0] != "time":
            raise ValueError(f"{name}: expected dims (time, y, x), got {raw[name].dims}")
        return arr if all(c == 1 for c in arr.chunks[0]) else arr.rechunk({0: 1})

    layer = as_steps(mask_band) if use_mask else None
    out = {}
    for b in bands:
        dn = as_steps(b)
        params = []
        value_scale = sensors[0].bands[b].value_scale if b in sensors[0].bands else None
        # auxiliary layers keep the product's no-data value too: outside a tile's footprint
        # they read 0, which must not win the day's merge over the next tile's real value
        band_nodata = nodata
        for i, r in enumerate(rads):
            scale, offset = r.scale, r.offset
            if value_scale is not None:  # an auxiliary layer, not a reflectance
                params.append((0.0, float(value_scale), 0.0))
                continue
            if b in hls:
                # slope·((DN + add)·scale + offset) + intercept: the same affine map
                slope, icpt = hls[b][i]
                scale, offset = scale * slope, offset * slope + icpt
            params.append((float(r.add), float(scale), float(offset)))
        name = f"reflectance-{b}-" + dask.base.tokenize(dn.name, layer.name if layer is not None else None,
                                                     params, groups, mask, band_nodata)
        ny, nx = len(dn.chunks[1]), len(dn.chunks[2])
        graph: dict[Any, Any] = {}
        for g, members in enumerate(groups):
            func = functools.partial(_date_block, nodata=band_nodata, spec=mask,
                                     params=tuple(params[i] for i in members))
            for iy in range(ny):
                for ix in range(nx):
                    args = [(dn.name, i, iy, ix) for i in members]
                    if layer is not None:
                        args += [(layer.name, i, iy, ix) for i in members]
                    graph[(name, g, iy, ix)] = (func, *args)
        deps = [dn] + ([layer] if layer is not None else [])
        hlg = HighLevelGraph.from_collections(name, graph, dependencies=deps)
        data = da.Array(hlg, name, chunks=((1,) * len(groups), dn.chunks[1], dn.chunks[2]), dtype=np.float32)
        out[b] = xr.DataArray(
            data, dims=raw[b].dims,
            attrs={"long_name": f"{b} reflectance" if value_scale is None else b.replace("_", " "),
                   "units": "1", "nodata": float("nan")},
        )
    keep = {k: v for k, v in raw.coords.items() if "time" not in v.dims}
    times = raw["time"].values[[g[0] for g in groups]]
    cube = xr.Dataset(out, coords={**keep, "time": times}, attrs=dict(raw.attrs))
    provenance: dict[str, Any] = {
        "radiometry": sorted({r.note for r in rads}),
        "mask": mask.describe() if use_mask else "none",
        "harmonization": "HLS v2 bandpass MSI->OLI on " + ",".join(sorted(hls)) if hls else "none",
    }
    return cube, provenance

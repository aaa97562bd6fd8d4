"""Raw digital numbers → the reflectance cube.

The per-item conversion ``reflectance = (DN + add)·scale + offset`` (no data →
NaN) is one Numba ufunc, evaluated in float64 and rounded once to float32, so
that a Sentinel-2 value is exactly the float32 nearest to ``(DN − 1000)/10000``
and no full-size temporaries are made.  Masks from the quality layer and the
optional HLS bandpass adjustment are applied in the same lazy pass.  Nothing
here reads pixels: all of it maps over Dask blocks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

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


def _band_block(dn, nodata, add, scale, offset):  # type: ignore[no-untyped-def]
    """One Dask block of one band: reflectance.

    Dask tasks must reference the ufunc through this module-level function: a
    Numba DUFunc put into a task graph is pickled by value and *recompiled* on
    the worker for every task (seconds each on a distributed cluster).
    """
    return reflectance(dn, nodata, add, scale, offset)


def _masked_band_block(dn, layer, nodata, add, scale, offset, spec):  # type: ignore[no-untyped-def]
    """One Dask block of one band: reflectance and the quality mask in one task."""
    out = reflectance(dn, nodata, add, scale, offset)
    out[np.broadcast_to(spec.invalid(layer), out.shape)] = np.nan
    return out


def normalize(
    raw: xr.Dataset,
    items: Sequence[pystac.Item],
    sensors: Sequence[Sensor],
    bands: Sequence[str],
    *,
    mask_band: str | None = None,
    mask: MaskSpec | None = None,
    harmonize: bool = False,
    baseline_offset: str = "auto",
) -> tuple[xr.Dataset, dict[str, Any]]:
    """Turn a raw DN cube, one time step per item, into reflectance.

    Parameters
    ----------
    raw
        Dataset with dims ``(time, y, x)``, one DN variable per entry of
        ``bands`` (and ``mask_band`` if given), ``time[i]`` coming from ``items[i]``.
    items, sensors
        The STAC item and its sensor for every time step, same length as ``raw.time``.
    bands
        Common band names to convert.
    mask_band
        Name of the quality-layer variable in ``raw``; dropped from the result.
    mask
        Which quality values to mask; ``None`` applies no mask.
    harmonize
        Apply the HLS bandpass adjustment (Sentinel-2 → Landsat-like) to the
        bands it covers.
    baseline_offset
        Sentinel-2 only: ``"auto"`` (the item's baseline and the catalogue's
        offset-applied flag decide), ``"apply"`` (apply −1000 DN for baseline
        ≥ 04.00 even when the catalogue says it already did) or ``"skip"``.

    Returns
    -------
    (cube, provenance)
        ``cube``: float32 reflectance, NaN for no data and masked pixels, lazy
        when ``raw`` is. ``provenance``: notes for ``attrs``.

    Examples
    --------
    >>> cube, notes = normalize(raw, items, sensors, ["red", "nir"], mask_band="scl",
    ...                         mask=SCL_DEFAULT_MASK)  # doctest: +SKIP
    """
    if raw.sizes.get("time", 0) != len(items) or len(items) != len(sensors):
        raise ValueError(
            f"raw cube has {raw.sizes.get('time', 0)} time steps but {len(items)} items "
            f"and {len(sensors)} sensors were given"
        )
    adds, scales, offsets, notes = [], [], [], set()
    for item, sensor in zip(items, sensors, strict=True):
        rad = sensor.radiometry(item, baseline_offset)
        adds.append(rad.add)
        scales.append(rad.scale)
        offsets.append(rad.offset)
        notes.add(rad.note)
    nodata = float(sensors[0].nodata)

    use_mask = mask is not None and mask_band is not None
    hls: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if harmonize:
        coeffs = [s.harmonization(it) for it, s in zip(items, sensors, strict=True)]
        if any(c is None for c in coeffs):
            fams = sorted({s.family for s, c in zip(sensors, coeffs, strict=True) if c is None})
            raise ValueError(f"harmonize=True: no bandpass adjustment defined for {', '.join(fams)}")
        for b in bands:
            if all(b in c for c in coeffs):  # type: ignore[operator]
                hls[b] = (
                    np.array([c[b][0] for c in coeffs]),  # type: ignore[index]
                    np.array([c[b][1] for c in coeffs]),  # type: ignore[index]
                )

    def per_time(values: np.ndarray) -> xr.DataArray:
        return xr.DataArray(np.asarray(values, dtype=np.float64), dims="time", coords={"time": raw["time"]})

    add = per_time(np.array(adds))
    out = {}
    for b in bands:
        scale, offset = np.array(scales), np.array(offsets)
        if b in hls:
            # slope·((DN + add)·scale + offset) + intercept, folded into the same affine map
            slope, icpt = hls[b]
            scale, offset = scale * slope, offset * slope + icpt
        params = (nodata, add, per_time(scale), per_time(offset))
        if use_mask:
            arr = xr.apply_ufunc(
                _masked_band_block, raw[b], raw[mask_band], *params, kwargs={"spec": mask},
                dask="parallelized", output_dtypes=[np.float32],
            )
        else:
            arr = xr.apply_ufunc(_band_block, raw[b], *params, dask="parallelized", output_dtypes=[np.float32])
        arr.attrs = {
            "long_name": f"{b} reflectance",
            "units": "1",
            "nodata": float("nan"),
        }
        out[b] = arr
    cube = xr.Dataset(out, coords={k: v for k, v in raw.coords.items()}, attrs=dict(raw.attrs))
    provenance: dict[str, Any] = {
        "radiometry": sorted(notes),
        "mask": mask.describe() if use_mask else "none",
        "harmonization": (
            "HLS v2 bandpass MSI->OLI on " + ",".join(sorted(hls)) if hls else "none"
        ),
    }
    return cube, provenance

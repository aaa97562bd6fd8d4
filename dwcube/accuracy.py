"""Design-based accuracy and area estimation: stratified sampling of a map, sample files, estimators with CIs.

A map's pixel counts are biased estimates of area wherever the map is wrong.  The accepted
practice (Olofsson et al. 2014; Stehman 2014) is to draw a *stratified random sample* from
the map, label each sample unit from reference data, and report the error matrix in area
proportions, overall / user's / producer's accuracy and the area of each class, each with
a 95 % confidence interval.  This module does the three steps on dwcube maps:

1. **Design** — :func:`stratum_table` (pixels and area of each stratum, one pass over the
   map, any grid), :func:`sample_size` (Cochran's formula for a target standard error),
   :func:`allocate` (proportional, equal or Olofsson's "minimum per rare stratum, rest
   proportional") and :func:`stratified_sample` (a reproducible stratified random sample
   of pixels, drawn block by block from Dask-backed maps larger than memory).
   :func:`change_strata` turns a :func:`dwcube.change.changes` product into strata such as
   ``trees_to_crops`` / ``stable_trees``.
2. **Sample files** — :func:`write_samples` / :func:`read_samples`: GeoParquet (points and
   pixel footprints), GeoJSON and CSV with ``lon``/``lat`` for labelling tools; reading the
   labelled file back gives the same table with its ``reference`` column filled.
3. **Estimators** — :func:`estimate` from an error matrix of sample counts and the mapped
   area of each stratum (Olofsson et al. 2014; with a ``stratum`` dimension, strata that
   differ from the map classes, Stehman 2014), :func:`estimate_from_samples` from the
   labelled table, and :func:`summary_table`.

Notation: strata *h* with area :math:`A_h`, weight :math:`W_h = A_h/A`, :math:`N_h` pixels
and :math:`n_h` sample units; map class *i* (rows of the error matrix), reference class *j*
(columns).  95 % half-widths are :math:`1.96 \\times` the standard error, as in both papers.

References
----------
Olofsson, P., Foody, G. M., Herold, M., Stehman, S. V., Woodcock, C. E. and Wulder, M. A.
(2014). Good practices for estimating area and assessing accuracy of land change.
*Remote Sensing of Environment* 148, 42–57. doi:10.1016/j.rse.2014.02.015

Stehman, S. V. (2014). Estimating area and map accuracy for stratified random sampling when
the strata are different from the map classes. *International Journal of Remote Sensing*
35(13), 4923–4939. doi:10.1080/01431161.2014.930207

Cochran, W. G. (1977). *Sampling Techniques*, 3rd ed. Wiley.

Examples
--------
The worked example of Olofsson et al. (2014, Table 8): 640 sample pixels in four strata
that are the map classes, mapped areas in 30 m pixels.

>>> names = ["deforestation", "forest_gain", "stable_forest", "stable_non_forest"]
>>> counts = [[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]]
>>> pixels = [200_000, 150_000, 3_200_000, 6_450_000]
>>> est = estimate(counts, [p * 0.09 for p in pixels], classes=names, unit="ha")
>>> round(float(est.overall_accuracy), 3), round(float(est.overall_accuracy_ci95), 3)
(0.947, 0.018)
>>> est.area.round(0).values.tolist()
[21158.0, 11686.0, 285770.0, 581386.0]
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numba
import numpy as np
import xarray as xr

from .classes import CLASSES, NODATA_LABEL

__all__ = [
    "Z95",
    "SAMPLE_COLUMNS",
    "allocate",
    "change_strata",
    "estimate",
    "estimate_from_samples",
    "read_samples",
    "sample_size",
    "stratified_sample",
    "stratum_table",
    "summary_table",
    "write_samples",
]

#: The normal quantile both papers use for 95 % confidence intervals.
Z95: float = 1.96

#: Columns of a sample table, in order (see :func:`stratified_sample`).
SAMPLE_COLUMNS: tuple[str, ...] = (
    "sample_id", "stratum", "stratum_code", "map_class", "row", "col", "x", "y", "lon", "lat", "date",
    "stratum_pixels", "stratum_area", "area_unit", "reference",
)

_INT_COLUMNS = ("sample_id", "stratum_code", "row", "col", "stratum_pixels")
_FLOAT_COLUMNS = ("x", "y", "lon", "lat", "stratum_area")
_TEXT_COLUMNS = ("stratum", "map_class", "date", "area_unit", "reference")

_BLOCK = 2048  # block size used to walk a NumPy-backed map


# -- the map: grid, strata codes and names ---------------------------------------------------------


def _as_map(strata: xr.DataArray, what: str = "strata") -> xr.DataArray:
    """A 2-D ``(y, x)`` integer-coded map, with scalar dims dropped; clear errors otherwise."""
    if isinstance(strata, xr.Dataset):
        for name in ("label", "stratum"):
            if name in strata.data_vars:
                strata = strata[name]
                break
        else:
            raise ValueError(f"{what}: this Dataset has no 'label' or 'stratum' variable; pass the DataArray to use")
    if not isinstance(strata, xr.DataArray):
        raise TypeError(f"{what} must be an xarray DataArray (a label or strata map), got {type(strata).__name__}")
    if "class" in strata.dims:
        from .probability import label

        strata = label(strata)
    extra = [d for d in strata.dims if strata.sizes[d] == 1 and d not in (strata.odc.spatial_dims or ())]
    if extra:
        strata = strata.isel({d: 0 for d in extra})
    if strata.ndim != 2:
        others = [d for d in strata.dims if d not in (strata.odc.spatial_dims or ())]
        raise ValueError(f"{what} must be one 2-D map; it has dims {strata.dims} — select one date or period first, "
                         f"e.g. .isel({others[0] if others else 'time'}=-1) or .sel(time='2024-06-01', method='nearest')")
    if strata.dtype.kind not in "iubf":
        raise ValueError(f"{what} must hold integer codes (uint8 labels, 255 = no data), got dtype {strata.dtype}")
    return strata


def _names(strata: xr.DataArray, names: Mapping[int, str] | Sequence[str] | None) -> dict[int, str]:
    """Code → name, from ``names``, the map's CF ``flag_values``/``flag_meanings``, or the code itself."""
    if names is not None:
        if isinstance(names, Mapping):
            return {int(k): str(v) for k, v in names.items()}
        return {i: str(v) for i, v in enumerate(names)}
    meanings = strata.attrs.get("flag_meanings")
    if not meanings:
        return {}
    words = str(meanings).split()
    values = strata.attrs.get("flag_values")
    codes = [int(v) for v in np.atleast_1d(values)] if values is not None else list(range(len(words)))
    return dict(zip(codes, words, strict=False))


def _date_of(strata: xr.DataArray, date: Any) -> str | None:
    if date is not None:
        return str(np.datetime_as_string(np.datetime64(date), unit="D")) if not isinstance(date, str) else date
    for name in ("time", "period"):
        if name in strata.coords and strata[name].ndim == 0:
            v = strata[name].values
            if np.issubdtype(v.dtype, np.datetime64):
                return str(np.datetime_as_string(v, unit="D"))
            return str(v)
    return None


def _dask_array(strata: xr.DataArray) -> Any:
    import dask.array as da

    data = strata.data
    if isinstance(data, da.Array):
        return data
    return da.from_array(np.asarray(data), chunks=(_BLOCK, _BLOCK))


def _codes_block(block: np.ndarray, nodata: int | None) -> np.ndarray:
    """A block as int64 codes with ``nodata`` (and NaN) → a sentinel below every valid code."""
    b = np.asarray(block)
    if b.dtype.kind == "f":
        finite = np.isfinite(b)
        vals = b[finite]
        if vals.size and not np.array_equal(vals, np.round(vals)):
            bad = vals[vals != np.round(vals)][0]
            raise ValueError(f"strata must hold whole-number codes; found {bad!r} — round or cast the map to integers")
        out = np.where(finite, b, np.iinfo(np.int64).min).astype(np.int64)
    else:
        out = b.astype(np.int64, copy=False)
    if nodata is not None:
        out = np.where(out == nodata, np.iinfo(np.int64).min, out)
    return out


@numba.njit(cache=True, nogil=True)
def _row_counts_u8(block: np.ndarray, nodata: int) -> np.ndarray:  # pragma: no cover - compiled
    """Pixels of each of the 256 codes in each row of a uint8 block, ``nodata`` left out (-1: none)."""
    rows, cols = block.shape
    out = np.zeros((rows, 256), np.int64)
    for r in range(rows):
        for c in range(cols):
            v = block[r, c]
            if v != nodata:
                out[r, v] += 1
    return out


def _count_block(block: np.ndarray, nodata: int | None, y0: int, x0: int, gbox: Any,
                 ellipsoidal_plane: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Pass 1 on one block: the codes present, their pixel count per block row, and (ellipsoidal) their area."""
    raw = np.asarray(block)
    if raw.dtype == np.uint8:  # fast path for labels: a compiled count into 256 bins per row
        raw = np.ascontiguousarray(raw)
        cnt = _row_counts_u8(raw, -1 if nodata is None or not 0 <= nodata <= 255 else int(nodata))
        present = np.flatnonzero(cnt.any(axis=0))
        codes, row_counts = present.astype(np.int64), cnt[:, present]
        inverse = None
        rows = raw.shape[0]
        codes_b = raw.astype(np.int64) if ellipsoidal_plane is not None else raw
        if ellipsoidal_plane is not None and nodata is not None:
            codes_b = np.where(codes_b == nodata, -1, codes_b)
    else:
        codes_b = _codes_block(block, nodata)
        rows = codes_b.shape[0]
        flat = codes_b.ravel()
        valid = flat != np.iinfo(np.int64).min
        codes, inv = np.unique(flat[valid], return_inverse=True)
        row_of = np.repeat(np.arange(rows, dtype=np.int64), codes_b.shape[1])[valid]
        row_counts = np.bincount(row_of * len(codes) + inv, minlength=rows * len(codes)).reshape(rows, len(codes))
        inverse = (valid, inv)
    area = None
    if ellipsoidal_plane is not None:
        from .stats import _areal_scale_block

        ys, xs = slice(y0, y0 + rows), slice(x0, x0 + codes_b.shape[1])
        pix = (ellipsoidal_plane / _areal_scale_block(gbox, ys, xs)).ravel()
        if inverse is None:
            lut = np.full(256, -1, np.int64)
            lut[codes] = np.arange(len(codes))
            k = lut[np.clip(codes_b, 0, 255)].ravel()
            ok = (codes_b.ravel() >= 0) & (k >= 0)
            area = np.bincount(k[ok], weights=pix[ok], minlength=len(codes))
        else:
            valid, inv = inverse
            area = np.bincount(inv, weights=pix[valid], minlength=len(codes))
    return codes, row_counts, area


class _Census:
    """What pass 1 learns: per stratum code, pixel counts by (row, column block), pixels and area."""

    def __init__(self, strata: xr.DataArray, *, nodata: int | None, unit: str, ellipsoidal: bool) -> None:
        import dask

        from .stats import _grid, _pixel_area_m2, _unit_factor

        self.factor = _unit_factor(unit)
        self.unit = unit
        self.gbox, self.ydim, self.xdim = _grid(strata)
        self.darr = _dask_array(strata)
        ychunks, xchunks = self.darr.chunks
        self.y_edges = np.concatenate([[0], np.cumsum(ychunks)]).astype(np.int64)
        self.x_edges = np.concatenate([[0], np.cumsum(xchunks)]).astype(np.int64)
        area, self.area_method = _pixel_area_m2(self.gbox, self.ydim, self.xdim, ellipsoidal=False, chunks=None)
        crs = self.gbox.crs
        plane = None
        if ellipsoidal and not crs.geographic:
            plane = float(np.asarray(area))
            _, self.area_method = _pixel_area_m2(self.gbox, self.ydim, self.xdim, ellipsoidal=True,
                                                 chunks=((1,), (1,)))
        tasks = [dask.delayed(_count_block)(self.darr.blocks[i, j], nodata, int(self.y_edges[i]), int(self.x_edges[j]),
                                            self.gbox, plane)
                 for i in range(len(ychunks)) for j in range(len(xchunks))]
        results = dask.compute(*tasks)
        all_codes = np.unique(np.concatenate([r[0] for r in results])) if results else np.zeros(0, np.int64)
        self.codes = all_codes.astype(np.int64)
        ny = int(self.y_edges[-1])
        ncb = len(xchunks)
        self.row_counts = np.zeros((ny, ncb, len(self.codes)), np.int32)  # 4 B x rows x column blocks x strata
        area_m2 = np.zeros(len(self.codes))
        for (codes, counts, block_area), (i, j) in zip(results, [(i, j) for i in range(len(ychunks))
                                                                  for j in range(ncb)], strict=True):
            k = np.searchsorted(self.codes, codes)
            self.row_counts[self.y_edges[i]:self.y_edges[i + 1], j][:, k] = counts
            if block_area is not None:
                area_m2[k] += block_area
        self.pixels = self.row_counts.sum(axis=(0, 1), dtype=np.int64)
        if plane is None:
            if area.ndim == 0:
                area_m2 = self.pixels * float(area)
            else:  # geographic: one area per row
                area_m2 = np.einsum("rk,r->k", self.row_counts.sum(axis=1, dtype=np.int64).astype(np.float64),
                                    np.asarray(area.values))
        self.area = area_m2 / self.factor


def stratum_table(strata: xr.DataArray, *, unit: str = "ha", names: Mapping[int, str] | Sequence[str] | None = None,
                  nodata: int | None = NODATA_LABEL, ellipsoidal: bool = False) -> xr.Dataset:
    """Pixels and area of every stratum of a map, in one pass over it.

    Parameters
    ----------
    strata
        2-D ``(y, x)`` map of integer stratum codes with a CRS (``spatial_ref``): a label
        (uint8, 255 = no data), a composite's label, :func:`change_strata`, … — Dask-backed
        maps are read block by block.  A probability cube is reduced to its label; scalar
        dims (one date) are dropped.
    unit
        ``"m2"``, ``"ha"`` or ``"km2"``.
    names
        Stratum names: ``{code: name}`` or a sequence indexed by code.  Default: the map's
        CF ``flag_values`` / ``flag_meanings``, else the code as text.
    nodata
        Code that is no stratum (default 255; NaN always is).
    ellipsoidal
        Projected grids: areas on the ellipsoid instead of the projection plane (see
        :func:`dwcube.stats.pixel_area`).  Geographic grids are always ellipsoidal.

    Returns
    -------
    xarray.Dataset
        Over ``stratum`` (names; coordinate ``code``): ``pixels`` (int64, :math:`N_h`),
        ``area`` (:math:`A_h` in ``unit``) and ``weight`` (:math:`W_h = A_h / A`); areas
        are those of :func:`dwcube.stats.class_area` (projected: pixel count × pixel area;
        geographic: the exact cell area per row).

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from odc.geo.geobox import GeoBox
    >>> from odc.geo.xr import xr_coords
    >>> g = GeoBox.from_bbox((0, 0, 40, 20), crs="EPSG:32633", resolution=10)
    >>> lab = xr.DataArray(np.array([[0, 1, 1, 255], [1, 1, 1, 1]], np.uint8), dims=("y", "x"), coords=xr_coords(g),
    ...                    attrs={"flag_meanings": "water trees"})
    >>> t = stratum_table(lab, unit="m2")
    >>> t.stratum.values.tolist(), t.pixels.values.tolist(), t.area.values.tolist()
    (['water', 'trees'], [1, 6], [100.0, 600.0])
    """
    strata = _as_map(strata)
    census = _Census(strata, nodata=nodata, unit=unit, ellipsoidal=ellipsoidal)
    return _table(census, _names(strata, names))


def _table(census: _Census, names: Mapping[int, str]) -> xr.Dataset:
    labels = [names.get(int(c), str(int(c))) for c in census.codes]
    if len(set(labels)) != len(labels):
        raise ValueError(f"two strata share a name: {labels}; give distinct names=")
    total = float(census.area.sum())
    weight = census.area / total if total > 0 else np.full(len(labels), np.nan)
    return xr.Dataset(
        {"pixels": ("stratum", census.pixels, {"long_name": "pixels in the stratum (N_h)"}),
         "area": ("stratum", census.area, {"units": census.unit, "long_name": "mapped area of the stratum (A_h)"}),
         "weight": ("stratum", weight, {"long_name": "stratum weight W_h = A_h / A", "units": "1"})},
        coords={"stratum": labels, "code": ("stratum", census.codes)},
        attrs={"pixel_area_method": census.area_method, "units": census.unit},
    )


# -- planning: sample size and allocation -----------------------------------------------------------


def _vector(values: Any, keys: Sequence[str] | None, what: str) -> tuple[list[str] | None, np.ndarray]:
    """``(labels or None, float array)`` from a mapping, Series, DataArray or sequence."""
    if isinstance(values, xr.DataArray):
        if values.ndim != 1:
            raise ValueError(f"{what} must be 1-D, got dims {values.dims}")
        labels = [str(v) for v in values[values.dims[0]].values] if values.dims[0] in values.coords else None
        arr = np.asarray(values.values, dtype=np.float64)
    elif isinstance(values, Mapping) or hasattr(values, "index") and hasattr(values, "to_numpy"):
        items = values.items()
        labels = [str(k) for k, _ in items]
        arr = np.asarray([float(v) if v is not None else np.nan for _, v in values.items()], dtype=np.float64)
    else:
        arr = np.atleast_1d(np.asarray(values, dtype=np.float64))
        labels = None
        if arr.ndim != 1:
            raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
    if keys is not None and labels is not None:
        missing = [k for k in keys if k not in labels]
        if missing:
            raise ValueError(f"{what} has no value for {missing} (it has {labels})")
        arr = np.asarray([arr[labels.index(k)] for k in keys])
        labels = list(keys)
    return labels, arr


def sample_size(users_accuracy: Any, stratum_area: Any = None, *, target_se: float = 0.01,
                target: str | int = "overall") -> int:
    """Sample size for a target standard error of overall accuracy or of one class's user's accuracy.

    Parameters
    ----------
    users_accuracy
        Anticipated user's accuracy :math:`U_i` of each stratum (= map class), 0–1: a
        sequence, or ``{class: U}``.
    stratum_area
        Area (or weight) of each stratum, in the same order or keyed like
        ``users_accuracy``; needed for ``target="overall"``.
    target_se
        The standard error to reach, e.g. 0.01.
    target
        ``"overall"``, or a class (name or position) whose user's accuracy is the target.

    Returns
    -------
    int
        ``"overall"``: the total sample size, Olofsson et al. (2014) Eq. 13 (Cochran 1977
        Eq. 5.25, stratified random sampling, no finite-population correction)

        .. math:: n = \\left(\\frac{\\sum_i W_i S_i}{S(\\hat O)}\\right)^2,\\qquad S_i = \\sqrt{U_i (1 - U_i)}

        rounded up.  A class: the sample units needed *in its stratum*, from the variance
        of user's accuracy, Olofsson et al. (2014) Eq. 6,
        :math:`\\hat V(\\hat U_i) = \\hat U_i(1 - \\hat U_i)/(n_i - 1)` solved for
        :math:`n_i` (Cochran 1977 Eq. 4.2 plus the one that the estimator's
        :math:`n_i - 1` takes): :math:`n_i = U_i(1-U_i)/S(\\hat U_i)^2 + 1`, rounded up.

    Examples
    --------
    Olofsson et al. (2014, Section 5.1): anticipated user's accuracies 0.70, 0.60, 0.90 and
    0.95, weights 0.02, 0.015, 0.32 and 0.645, a target standard error of 0.01:

    >>> sample_size([0.70, 0.60, 0.90, 0.95], [0.02, 0.015, 0.32, 0.645], target_se=0.01)
    641
    >>> sample_size({"loss": 0.7, "stable": 0.95}, target_se=0.05, target="loss")
    85
    """
    if not (np.isfinite(target_se) and target_se > 0):
        raise ValueError(f"target_se must be a positive standard error (e.g. 0.01), got {target_se}")
    labels, u = _vector(users_accuracy, None, "users_accuracy")
    if np.any(~np.isfinite(u)) or np.any((u < 0) | (u > 1)):
        raise ValueError(f"users_accuracy must be between 0 and 1, got {u.tolist()}")
    if target != "overall":
        if isinstance(target, str):
            if labels is None or target not in labels:
                raise ValueError(f"unknown class {target!r}: users_accuracy has {labels or list(range(len(u)))}")
            i = labels.index(target)
        else:
            i = int(target)
        return int(math.ceil(u[i] * (1 - u[i]) / target_se**2 + 1 - 1e-9))
    if stratum_area is None:
        raise ValueError("target='overall' needs stratum_area (the area or weight of each stratum)")
    _, area = _vector(stratum_area, labels, "stratum_area")
    if len(area) != len(u):
        raise ValueError(f"stratum_area has {len(area)} values for {len(u)} users_accuracy values")
    _check_areas(area, labels or [str(i) for i in range(len(area))], "stratum_area")
    w = area / area.sum()
    return int(math.ceil((np.sum(w * np.sqrt(u * (1 - u))) / target_se) ** 2 - 1e-9))


def _largest_remainder(n: int, share: np.ndarray) -> np.ndarray:
    """Whole numbers proportional to ``share`` that sum to ``n`` (Hamilton's rule; ties to the first)."""
    if n == 0 or share.sum() == 0:
        return np.zeros(len(share), np.int64)
    exact = n * share / share.sum()
    base = np.floor(exact + 1e-9).astype(np.int64)
    left = n - int(base.sum())
    order = np.argsort(-(exact - base), kind="stable")
    base[order[:left]] += 1
    return base


def allocate(n: int, stratum_area: Any, *, method: str = "olofsson", minimum: int = 50,
             stratum_pixels: Any = None) -> dict[str, int] | np.ndarray:
    """Split a total sample size among strata.

    Parameters
    ----------
    n
        Total sample size.
    stratum_area
        Area (or weight) of each stratum: ``{name: area}``, a :func:`stratum_table`
        ``area`` DataArray, or a sequence.
    method
        ``"proportional"`` (:math:`n_h \\propto W_h`), ``"equal"`` (:math:`n/H` each) or
        ``"olofsson"``: every stratum gets at least ``minimum`` and the rest is allocated
        proportionally to area among the strata above it — the allocation Olofsson et al.
        (2014, Section 5.1) recommend so that rare (change) strata get enough units for a
        precise user's accuracy while the large strata keep most of the sample.
    minimum
        ``"olofsson"``: the minimum per stratum (50–100 in Olofsson et al. 2014).
    stratum_pixels
        Pixels of each stratum (same order/keys): no stratum gets more units than it has
        pixels (a stratum that small is sampled in full).  Default: taken from a
        :func:`stratum_table` Dataset's ``pixels`` when ``stratum_area`` is that Dataset.

    Returns
    -------
    dict or numpy.ndarray
        :math:`n_h`, whole numbers summing to ``n``, as ``{name: n_h}`` when the strata are
        named, else an int64 array.  Rounding is by largest remainder.

    Raises
    ------
    ValueError
        ``n`` too small for ``minimum`` in every stratum, more units asked than pixels,
        negative or missing areas, an unknown method.

    Examples
    --------
    Olofsson et al. (2014, Table 5), n = 641:

    >>> w = {"deforestation": 0.02, "forest_gain": 0.015, "stable_forest": 0.32, "stable_non_forest": 0.645}
    >>> allocate(641, w, method="proportional")
    {'deforestation': 13, 'forest_gain': 10, 'stable_forest': 205, 'stable_non_forest': 413}
    >>> allocate(641, w, method="olofsson", minimum=75)
    {'deforestation': 75, 'forest_gain': 75, 'stable_forest': 163, 'stable_non_forest': 328}
    """
    if isinstance(stratum_area, xr.Dataset):
        if stratum_pixels is None and "pixels" in stratum_area:
            stratum_pixels = stratum_area["pixels"]
        stratum_area = stratum_area["area"]
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a whole number of sample units >= 0, got {n}")
    n = int(n)
    labels, area = _vector(stratum_area, None, "stratum_area")
    names = labels or [str(i) for i in range(len(area))]
    _check_areas(area, names, "stratum_area")
    cap = np.full(len(area), n, np.int64)  # no pixel counts: a stratum can take the whole sample
    if stratum_pixels is not None:
        _, pix = _vector(stratum_pixels, labels, "stratum_pixels")
        cap = pix.astype(np.int64)
    cap = np.where(area > 0, cap, 0)
    if n > cap.sum():
        raise ValueError(f"n={n} sample units asked but the strata hold only {int(cap.sum())} pixels")
    if method == "proportional":
        share = area.copy()
        floor = np.zeros(len(area), np.int64)
    elif method == "equal":
        share = (area > 0).astype(np.float64)
        floor = np.zeros(len(area), np.int64)
    elif method == "olofsson":
        if int(minimum) != minimum or minimum < 0:
            raise ValueError(f"minimum must be a whole number >= 0, got {minimum}")
        floor = np.minimum(int(minimum), cap)
        if floor.sum() > n:
            raise ValueError(f"n={n} is too small to give each of the {int((area > 0).sum())} strata its minimum of "
                             f"{minimum}: raise n to at least {int(floor.sum())} or lower minimum")
        share = area.copy()
    else:
        raise ValueError(f"unknown allocation method {method!r}: use 'proportional', 'equal' or 'olofsson'")
    fixed = np.zeros(len(area), bool)
    alloc = np.zeros(len(area), np.int64)
    for _ in range(len(area) + 1):  # fix the strata held at their floor or cap, spread the rest, repeat
        free = ~fixed
        alloc[free] = _largest_remainder(n - int(alloc[fixed].sum()), np.where(free, share, 0.0))[free]
        low = free & (alloc < floor)
        high = free & (alloc > cap)
        if not low.any() and not high.any():
            break
        alloc[low] = floor[low]
        alloc[high] = cap[high]
        fixed |= low | high
    out = alloc.astype(np.int64)
    return dict(zip(labels, out.tolist(), strict=True)) if labels is not None else out


def _check_areas(area: np.ndarray, names: Sequence[str], what: str) -> None:
    bad = [(k, float(a)) for k, a in zip(names, area, strict=True) if not np.isfinite(a) or a < 0]
    if bad:
        raise ValueError(f"{what} must be finite and >= 0; got " + ", ".join(f"{k}={a}" for k, a in bad)
                         + " — give the mapped area of every stratum (0 for an empty one)")


# -- drawing the sample -----------------------------------------------------------------------------


def _locate_block(block: np.ndarray, nodata: int | None, local_rows: np.ndarray, codes: np.ndarray,
                  within: np.ndarray) -> np.ndarray:
    """Pass 2 on one block: the column (in the block) of the ``within``-th pixel of ``code`` in ``local_row``."""
    b = np.asarray(block) if np.asarray(block).dtype == np.uint8 else _codes_block(block, nodata)
    cols = np.empty(len(local_rows), np.int64)
    for i, (r, c, w) in enumerate(zip(local_rows, codes, within, strict=True)):
        cols[i] = np.flatnonzero(b[r] == c)[w]
    return cols


def stratified_sample(
    strata: xr.DataArray,
    n: int | None = None,
    *,
    allocation: str | Mapping[str, int] = "olofsson",
    minimum: int = 50,
    seed: int = 0,
    map: xr.DataArray | None = None,  # noqa: A002 - the map being assessed
    names: Mapping[int, str] | Sequence[str] | None = None,
    nodata: int | None = NODATA_LABEL,
    unit: str = "ha",
    ellipsoidal: bool = False,
    date: Any = None,
) -> Any:
    """A stratified random sample of pixels: reproducible, block by block, on any grid.

    Within each stratum the sample is a simple random sample of its pixels without
    replacement (every pixel of stratum *h* has inclusion probability :math:`n_h/N_h`),
    the design the estimators of Olofsson et al. (2014) and Stehman (2014) assume.

    How: one pass counts the pixels of every stratum per row and column block
    (:func:`stratum_table`); ``seed`` then draws, per stratum in code order, :math:`n_h`
    distinct ranks in :math:`0 … N_h - 1` (NumPy's PCG64); a rank is the position of a
    pixel among the stratum's pixels in row-major order, so the sample does not depend on
    the chunking; a second pass reads only the blocks that hold a drawn pixel.  Memory
    follows the block size, not the map — plus a table of 4 bytes per row, column block and
    stratum (2.4 MB for a 10980² tile in 2048² chunks with 9 strata) — so maps larger than
    memory work (Dask, Zarr).  An
    expensive lazy map (e.g. :func:`change_strata` of unsmoothed probabilities) is
    computed twice for the blocks that hold sample units: write it to Zarr first.

    Parameters
    ----------
    strata
        2-D ``(y, x)`` map of stratum codes with a CRS: a label (255 = no data) from an
        archive date or a composite, or :func:`change_strata`; see :func:`stratum_table`.
    n
        Total sample size (see :func:`sample_size`); not needed with an explicit allocation.
    allocation
        ``"olofsson"`` (default; ``minimum`` per stratum, the rest proportional),
        ``"proportional"``, ``"equal"`` (see :func:`allocate`), or ``{stratum: n_h}``.
    minimum
        Minimum per stratum for ``"olofsson"``.
    seed
        Seed of the draw: the same map, allocation and seed give the same sample.
    map
        The map being assessed, when it differs from the strata (Stehman 2014): a label
        on the same grid; its class at each sample pixel goes to ``map_class``.  Default:
        the strata are the map classes and ``map_class`` is the stratum name.
    names, nodata, unit, ellipsoidal
        See :func:`stratum_table`.
    date
        The map's date for the ``date`` column; default: the map's scalar ``time`` (or
        composite ``period``) coordinate.

    Returns
    -------
    pandas.DataFrame
        One row per sample unit, columns :data:`SAMPLE_COLUMNS`: ``sample_id``,
        ``stratum`` (name) and ``stratum_code``, ``map_class``, ``row``/``col`` (pixel
        indices), ``x``/``y`` (pixel centre in the map's CRS), ``lon``/``lat`` (WGS 84),
        ``date``, ``stratum_pixels`` (:math:`N_h`), ``stratum_area`` (:math:`A_h`, in
        ``area_unit``) and an empty ``reference`` column for the labeller.  ``attrs`` keep
        the design (grid, CRS, seed, allocation, stratum table) for :func:`write_samples`.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from odc.geo.geobox import GeoBox
    >>> from odc.geo.xr import xr_coords
    >>> g = GeoBox.from_bbox((500000, 5000000, 500400, 5000400), crs="EPSG:32633", resolution=10)
    >>> lab = np.ones((40, 40), np.uint8); lab[:5, :8] = 0        # 40 px of water, the rest trees
    >>> lab = xr.DataArray(lab, dims=("y", "x"), coords=xr_coords(g), attrs={"flag_meanings": "water trees"})
    >>> s = stratified_sample(lab, 30, minimum=10, seed=1)
    >>> s.groupby("stratum").size().to_dict()
    {'trees': 20, 'water': 10}
    >>> bool((lab.values[s.row, s.col] == s.stratum_code).all())
    True
    """
    import pandas as pd
    import pyproj

    strata = _as_map(strata)
    assessed = None
    if map is not None:
        assessed = _as_map(map, "map")
        if assessed.odc.geobox != strata.odc.geobox:
            raise ValueError("map and strata must be on the same grid (same CRS, transform and shape); reproject the "
                             "map onto the strata's grid first (e.g. map.odc.reproject(strata.odc.geobox, "
                             "resampling='nearest'))")
    code_names = _names(strata, names)
    census = _Census(strata, nodata=nodata, unit=unit, ellipsoidal=ellipsoidal)
    table = _table(census, code_names)
    labels = [str(s) for s in table.stratum.values]
    if isinstance(allocation, Mapping):
        unknown = [k for k in allocation if str(k) not in labels]
        if unknown:
            raise ValueError(f"allocation names strata that the map does not have: {unknown} (it has {labels})")
        n_h = np.array([int(allocation.get(k, 0)) for k in labels], np.int64)
        method = "given"
    else:
        if n is None:
            raise ValueError("give n (the total sample size; see dwcube.accuracy.sample_size) or allocation={stratum: n_h}")
        n_h = np.array(list(allocate(n, dict(zip(labels, census.area.tolist(), strict=True)), method=allocation,
                                     minimum=minimum, stratum_pixels=dict(zip(labels, census.pixels.tolist(),
                                                                              strict=True))).values()), np.int64)
        method = allocation
    too_many = [(lab, int(k), int(p)) for lab, k, p in zip(labels, n_h, census.pixels, strict=True) if k > p or k < 0]
    if too_many:
        raise ValueError("allocation asks more units than pixels (or a negative number): "
                         + ", ".join(f"{lab}: {k} of {p}" for lab, k, p in too_many))

    rng = np.random.default_rng(seed)
    rows_all, cbs, within_all, k_all, rank_all = [], [], [], [], []
    for k in range(len(labels)):
        if n_h[k] == 0:
            continue
        ranks = np.sort(rng.choice(int(census.pixels[k]), size=int(n_h[k]), replace=False))
        per_row = census.row_counts[:, :, k]
        row_tot = per_row.sum(axis=1, dtype=np.int64)
        cum = np.cumsum(row_tot)
        row = np.searchsorted(cum, ranks, side="right")
        w = ranks - (cum[row] - row_tot[row])
        cum_cb = np.cumsum(per_row[row], axis=1, dtype=np.int64)
        cb = (cum_cb <= w[:, None]).sum(axis=1)
        w2 = w - (cum_cb[np.arange(len(row)), cb] - per_row[row, cb])
        rows_all.append(row)
        cbs.append(cb)
        within_all.append(w2)
        k_all.append(np.full(len(row), k))
        rank_all.append(ranks)
    if rows_all:
        row = np.concatenate(rows_all)
        cb = np.concatenate(cbs)
        within = np.concatenate(within_all)
        kk = np.concatenate(k_all)
    else:
        row = cb = within = kk = np.zeros(0, np.int64)
    rb = np.searchsorted(census.y_edges, row, side="right") - 1
    col = np.empty(len(row), np.int64)
    import dask

    jobs, where = [], []
    for i, j in sorted(set(zip(rb.tolist(), cb.tolist(), strict=True))):
        sel = np.flatnonzero((rb == i) & (cb == j))
        jobs.append(dask.delayed(_locate_block)(census.darr.blocks[i, j], nodata, row[sel] - census.y_edges[i],
                                                census.codes[kk[sel]], within[sel]))
        where.append((sel, int(census.x_edges[j])))
    for (sel, x0), cols in zip(where, dask.compute(*jobs), strict=True):
        col[sel] = cols + x0

    aff = census.gbox.affine
    xs = aff.c + aff.a * (col + 0.5) + aff.b * (row + 0.5)
    ys = aff.f + aff.d * (col + 0.5) + aff.e * (row + 0.5)
    to_ll = pyproj.Transformer.from_crs(census.gbox.crs.proj, "EPSG:4326", always_xy=True)
    lon, lat = to_ll.transform(xs, ys)
    if assessed is not None:
        mydim, mxdim = assessed.odc.spatial_dims
        values = np.asarray(assessed.isel({mydim: xr.DataArray(row, dims="sample"),
                                           mxdim: xr.DataArray(col, dims="sample")}).values)
        map_names = _names(assessed, None) or dict(enumerate(CLASSES))
        map_class = [None if (nodata is not None and int(v) == nodata) else map_names.get(int(v), str(int(v)))
                     for v in values]
    else:
        map_class = [labels[k] for k in kk]
    day = _date_of(strata, date)
    df = pd.DataFrame({
        "sample_id": np.arange(len(row), dtype=np.int64),
        "stratum": [labels[k] for k in kk],
        "stratum_code": census.codes[kk].astype(np.int64),
        "map_class": pd.Series(map_class, dtype=object),
        "row": row.astype(np.int64), "col": col.astype(np.int64),
        "x": xs.astype(np.float64), "y": ys.astype(np.float64),
        "lon": np.asarray(lon, np.float64), "lat": np.asarray(lat, np.float64),
        "date": pd.Series([day] * len(row), dtype=object),
        "stratum_pixels": census.pixels[kk].astype(np.int64),
        "stratum_area": census.area[kk].astype(np.float64),
        "area_unit": pd.Series([unit] * len(row), dtype=object),
        "reference": pd.Series([None] * len(row), dtype=object),
    })
    df.attrs = {
        "dwcube_sample": 1,
        "crs": census.gbox.crs.to_wkt(),
        "crs_name": f"EPSG:{census.gbox.crs.epsg}" if census.gbox.crs.epsg else str(census.gbox.crs),
        "transform": [aff.a, aff.b, aff.c, aff.d, aff.e, aff.f],
        "shape": [int(census.gbox.shape[0]), int(census.gbox.shape[1])],
        "seed": int(seed),
        "allocation": method,
        "minimum": int(minimum) if method == "olofsson" else None,
        "area_unit": unit,
        "pixel_area_method": census.area_method,
        "strata": {lab: {"code": int(c), "pixels": int(p), "area": float(a), "n": int(k)}
                   for lab, c, p, a, k in zip(labels, census.codes, census.pixels, census.area, n_h, strict=True)},
        "design": "stratified random sampling of pixels without replacement (Olofsson et al. 2014; Stehman 2014)",
    }
    return df


def change_strata(changes: xr.Dataset, *, stable: xr.DataArray | None = None,
                  transitions: str = "each") -> xr.DataArray:
    """Strata from a change product: one stratum per transition (or one for all), and the stable area.

    Parameters
    ----------
    changes
        A :func:`dwcube.change.changes` Dataset (``from_class``, ``to_class``; 255 = no
        change), e.g. ``prob.lulc.changes(from_classes="trees")`` for forest loss.
    stable
        A label on the same grid (e.g. the last date's) to split the pixels without a change
        into ``stable_<class>`` strata; default: a single ``no_change`` stratum.
    transitions
        ``"each"``: one stratum per ``<from>_to_<to>`` transition; ``"one"``: a single
        ``change`` stratum.

    Returns
    -------
    xarray.DataArray
        uint8 codes named ``stratum`` (255 where ``stable`` has no data), lazy like the
        input, with CF ``flag_values``/``flag_meanings`` naming every code, ready for
        :func:`stratified_sample`.  Codes: transitions ``from × K + to`` (or 0 for
        ``"one"``), then the stable strata.

    Examples
    --------
    >>> from dwcube.testing import synthetic_probability_series
    >>> from dwcube.change import changes
    >>> prob, _ = synthetic_probability_series(16, 40, seed=11)
    >>> s = change_strata(changes(prob, from_classes="trees"), transitions="one")
    >>> t = stratum_table(s, unit="m2")
    >>> t.stratum.values.tolist(), int(t.pixels.sum())
    (['change', 'no_change'], 256)
    """
    for v in ("from_class", "to_class"):
        if v not in changes:
            raise ValueError(f"changes has no {v!r}: pass the Dataset returned by dwcube.change.changes")
    classes = str(changes.from_class.attrs.get("flag_meanings", " ".join(CLASSES))).split()
    k = len(classes)
    if transitions not in ("each", "one"):
        raise ValueError(f"transitions must be 'each' or 'one', got {transitions!r}")
    fr = changes.from_class.astype(np.int16)
    to = changes.to_class.astype(np.int16)
    changed = (fr != NODATA_LABEL) & (to != NODATA_LABEL)
    if transitions == "each":
        names = [f"{a}_to_{b}" for a in classes for b in classes]
        code = fr * k + to
    else:
        names = ["change"]
        code = xr.zeros_like(fr)
    base = len(names)
    if stable is None:
        names.append("no_change")
        rest = xr.full_like(fr, base)
    else:
        stable = _as_map(stable, "stable")
        stable_classes = _names(stable, None) or dict(enumerate(CLASSES))
        n_stable = max(stable_classes) + 1 if stable_classes else 0
        names += [f"stable_{stable_classes.get(i, str(i))}" for i in range(n_stable)]
        st = stable.astype(np.int16)
        rest = xr.where(st < n_stable, st + base, NODATA_LABEL)
    if len(names) > NODATA_LABEL:
        raise ValueError(f"{len(names)} strata do not fit in uint8 codes: use transitions='one'")
    out = xr.where(changed, code, rest).astype(np.uint8)
    out.name = "stratum"
    out.attrs = {"long_name": "stratum", "flag_values": list(range(len(names))), "flag_meanings": " ".join(names),
                 "nodata": NODATA_LABEL,
                 "history": f"dwcube.accuracy.change_strata(transitions={transitions!r}, "
                            f"stable={'None' if stable is None else 'label'})"}
    return out


# -- sample files -------------------------------------------------------------------------------------


def _footprints(df: Any) -> list[Any] | None:
    """Each sample pixel's footprint as a lon/lat polygon, from the design's grid (``None`` without one)."""
    import pyproj
    from shapely.geometry import Polygon

    attrs = df.attrs
    if not attrs.get("transform") or not attrs.get("crs") or "row" not in df or "col" not in df:
        return None
    a, b, c, d, e, f = attrs["transform"]
    tr = pyproj.Transformer.from_crs(pyproj.CRS.from_user_input(attrs["crs"]), "EPSG:4326", always_xy=True)
    row = df["row"].to_numpy(np.float64)
    col = df["col"].to_numpy(np.float64)
    corners = [(0, 0), (1, 0), (1, 1), (0, 1), (0, 0)]
    xs = np.stack([c + a * (col + dc) + b * (row + dr) for dc, dr in corners], axis=1)
    ys = np.stack([f + d * (col + dc) + e * (row + dr) for dc, dr in corners], axis=1)
    lon, lat = tr.transform(xs, ys)
    return [Polygon(np.column_stack([lo, la])) for lo, la in zip(lon, lat, strict=True)]


def _jsonable(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return None if not np.isfinite(v) else float(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def _normalise(df: Any) -> Any:
    """The sample table's column types (ints, floats, text with ``None`` for missing), column order kept."""
    import pandas as pd

    for c in _INT_COLUMNS:
        if c in df:
            if df[c].isna().any():
                raise ValueError(f"column {c!r} has empty values in rows {df.index[df[c].isna()].tolist()[:10]}")
            df[c] = df[c].astype(np.int64)
    for c in _FLOAT_COLUMNS:
        if c in df:
            df[c] = pd.to_numeric(df[c]).astype(np.float64)
    for c in _TEXT_COLUMNS:
        if c in df:
            col = df[c].astype(object)
            df[c] = col.where(col.notna() & (col.astype(str) != ""), None).map(
                lambda v: None if v is None else (str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)))
    return df


def write_samples(samples: Any, path: str | os.PathLike[str], *, geometry: str = "point") -> Path:
    """Write a sample table as GeoParquet, GeoJSON or CSV (chosen by the file suffix).

    Parameters
    ----------
    samples
        A table from :func:`stratified_sample` (or :func:`read_samples`).
    path
        ``.parquet`` / ``.geoparquet``: GeoParquet 1.1 (pyarrow; ``pip install
        'dwcube[accuracy]'``) with two WKB geometry columns in WGS 84 longitude/latitude
        (``OGC:CRS84``, the GeoParquet default): ``geometry`` (the pixel centre, primary)
        and ``footprint`` (the pixel's polygon); the design is kept in the file's
        ``dwcube`` metadata.  ``.geojson`` / ``.json``: an RFC 7946 FeatureCollection, the
        columns as properties, the design as a ``dwcube`` member.  ``.csv``: the columns,
        with ``lon`` and ``lat`` for labelling tools (Collect Earth Online, QGIS, …).
    geometry
        GeoJSON only: ``"point"`` (pixel centres, default) or ``"footprint"`` (pixel polygons).

    Returns
    -------
    pathlib.Path
        The file written.  Every format carries the stratum areas in columns, so the labelled
        file alone is enough for :func:`estimate_from_samples`.

    Examples
    --------
    >>> import pandas as pd, tempfile, os
    >>> s = pd.DataFrame({"sample_id": [0], "stratum": ["trees"], "lon": [14.5], "lat": [46.0], "reference": [None]})
    >>> p = write_samples(s, os.path.join(tempfile.mkdtemp(), "s.geojson"))
    >>> read_samples(p).equals(s)
    True
    """
    import pandas as pd

    path = Path(path)
    suffix = path.suffix.lower()
    df = samples
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"samples must be a pandas DataFrame (from stratified_sample), got {type(df).__name__}")
    for c in ("lon", "lat"):
        if c not in df:
            raise ValueError(f"samples has no {c!r} column; it needs lon and lat (WGS 84 degrees)")
    if geometry not in ("point", "footprint"):
        raise ValueError(f"geometry must be 'point' or 'footprint', got {geometry!r}")
    meta = json.dumps(df.attrs, default=_jsonable)
    lon = df["lon"].to_numpy(np.float64)
    lat = df["lat"].to_numpy(np.float64)
    if suffix in (".parquet", ".geoparquet"):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError("GeoParquet needs pyarrow: pip install 'dwcube[accuracy]' (or write .geojson / .csv)") \
                from exc
        import shapely

        points = shapely.points(lon, lat)
        table = pa.Table.from_pandas(df, preserve_index=False)
        geo_cols: dict[str, Any] = {"geometry": {"encoding": "WKB", "geometry_types": ["Point"],
                                                 "bbox": _bbox(lon, lat)}}
        table = table.append_column("geometry", pa.array(shapely.to_wkb(points), pa.binary()))
        feet = _footprints(df)
        if feet is not None:
            fx = np.concatenate([np.asarray(p.exterior.xy[0]) for p in feet]) if feet else lon
            fy = np.concatenate([np.asarray(p.exterior.xy[1]) for p in feet]) if feet else lat
            geo_cols["footprint"] = {"encoding": "WKB", "geometry_types": ["Polygon"], "bbox": _bbox(fx, fy)}
            table = table.append_column("footprint", pa.array(shapely.to_wkb(np.array(feet, dtype=object)),
                                                              pa.binary()))
        geo = {"version": "1.1.0", "primary_column": "geometry", "columns": geo_cols}
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"geo": json.dumps(geo).encode(),
                                               b"dwcube": meta.encode()})
        pq.write_table(table, path)
    elif suffix in (".geojson", ".json"):
        from shapely.geometry import mapping

        feet = _footprints(df) if geometry == "footprint" else None
        if geometry == "footprint" and feet is None:
            raise ValueError("footprints need the sample design's grid (attrs transform and crs, as stratified_sample "
                             "gives); use geometry='point'")
        features = []
        records = df.to_dict(orient="records")
        for i, rec in enumerate(records):
            geom = mapping(feet[i]) if feet is not None else {"type": "Point", "coordinates": [float(lon[i]),
                                                                                             float(lat[i])]}
            if feet is not None:
                geom = json.loads(json.dumps(geom))
            features.append({"type": "Feature", "geometry": geom,
                             "properties": {k: _jsonable(v) for k, v in rec.items()}})
        doc = {"type": "FeatureCollection", "dwcube": json.loads(meta), "columns": list(df.columns),
               "features": features}
        path.write_text(json.dumps(doc, allow_nan=False))
    elif suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        raise ValueError(f"unknown sample file type {suffix!r}: use .parquet (GeoParquet), .geojson or .csv")
    return path


def _bbox(x: np.ndarray, y: np.ndarray) -> list[float]:
    if len(x) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(np.min(x)), float(np.min(y)), float(np.max(x)), float(np.max(y))]


def read_samples(path: str | os.PathLike[str]) -> Any:
    """Read a (labelled) sample file written by :func:`write_samples` or edited by a labelling tool.

    Parameters
    ----------
    path
        ``.parquet``/``.geoparquet``, ``.geojson``/``.json`` or ``.csv``.  Columns a tool
        added are kept; ``lon``/``lat`` are taken from the point geometry when a tool
        dropped them.  Empty ``reference`` cells are ``None`` (not yet labelled).

    Returns
    -------
    pandas.DataFrame
        The table as written (same columns, order and types; GeoParquet/GeoJSON also
        restore ``attrs``, the design).  Geometry columns are not part of the table: they
        are rebuilt from ``lon``/``lat`` and the grid on writing.

    Examples
    --------
    >>> import pandas as pd, tempfile, os
    >>> s = pd.DataFrame({"sample_id": [0, 1], "stratum": ["loss", "stable"], "lon": [14.5, 14.6],
    ...                   "lat": [46.0, 46.1], "reference": ["loss", None]})
    >>> p = write_samples(s, os.path.join(tempfile.mkdtemp(), "s.csv"))
    >>> read_samples(p).reference.tolist()
    ['loss', None]
    """
    import pandas as pd

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no sample file at {path}")
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".geoparquet"):
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:  # pragma: no cover
            raise ImportError("GeoParquet needs pyarrow: pip install 'dwcube[accuracy]'") from exc
        import shapely

        table = pq.read_table(path)
        meta = table.schema.metadata or {}
        geo = json.loads(meta[b"geo"]) if b"geo" in meta else {}
        geo_cols = list(geo.get("columns", {}))
        primary = geo.get("primary_column")
        df = table.drop_columns([c for c in geo_cols if c in table.column_names]).to_pandas()
        if primary and ("lon" not in df or "lat" not in df) and primary in table.column_names:
            pts = shapely.from_wkb(table.column(primary).to_numpy(zero_copy_only=False))
            df["lon"], df["lat"] = shapely.get_x(pts), shapely.get_y(pts)
        attrs = json.loads(meta[b"dwcube"]) if b"dwcube" in meta else {}
    elif suffix in (".geojson", ".json"):
        doc = json.loads(path.read_text())
        if doc.get("type") != "FeatureCollection":
            raise ValueError(f"{path} is not a GeoJSON FeatureCollection")
        rows = []
        for feat in doc.get("features", []):
            props = dict(feat.get("properties") or {})
            geom = feat.get("geometry") or {}
            if ("lon" not in props or "lat" not in props) and geom.get("type") == "Point":
                props.setdefault("lon", geom["coordinates"][0])
                props.setdefault("lat", geom["coordinates"][1])
            rows.append(props)
        columns = doc.get("columns") or (list(rows[0]) if rows else [])
        extra = [c for r in rows for c in r if c not in columns]
        columns = list(columns) + list(dict.fromkeys(extra))
        df = pd.DataFrame(rows, columns=columns)
        attrs = doc.get("dwcube") or {}
    elif suffix == ".csv":
        df = pd.read_csv(path, dtype={c: str for c in _TEXT_COLUMNS}, keep_default_na=False, na_values=[""])
        attrs = {}
    else:
        raise ValueError(f"unknown sample file type {suffix!r}: use .parquet (GeoParquet), .geojson or .csv")
    df = _normalise(df)
    df.attrs = attrs
    return df


# -- estimators --------------------------------------------------------------------------------------


def _ordered_classes(labels: Iterable[str]) -> list[str]:
    """Classes in Dynamic World order when they are Dynamic World classes, else in order of appearance."""
    seen = list(dict.fromkeys(labels))
    if all(c in CLASSES for c in seen):
        return [c for c in CLASSES if c in seen]
    return seen


def _core(counts: np.ndarray, weight: np.ndarray, fpc: np.ndarray) -> dict[str, np.ndarray]:
    """Stratified estimators from counts ``(..., H, K, K)`` = stratum × map class × reference class.

    ``weight`` (H,) are :math:`W_h`, ``fpc`` (H,) are :math:`1 - n_h/N_h` (1 without the
    correction).  Every estimate is a stratified mean of a 0/1 indicator (Stehman 2014,
    Eq. 2–3 with the indicators of Eq. 12, 14 and 16) or a ratio of two (Eq. 27); the
    variances are Eq. 25–26 and 28–29, with the indicators' sample variances written in
    closed form: :math:`s^2 = n\\bar y(1-\\bar y)/(n-1)` and
    :math:`s_{xy} = n\\bar y(1-\\bar x)/(n-1)` for :math:`y \\subseteq x`.
    """
    counts = np.asarray(counts, np.float64)
    n = counts.sum(axis=(-2, -1))  # (..., H)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = counts / n[..., None, None]  # within-stratum shares of (map, reference) cells
        g = np.where(fpc == 0, 0.0, weight**2 * fpc / (n - 1))  # W²(1 − f)/(n − 1): NaN/inf where n ≤ 1
        g = np.where(n - 1 > 0, g, np.where(fpc == 0, 0.0, np.nan))

        # a stratum whose sample indicators are all 0 adds nothing, even when its g is NaN (one unit)
        def var(y: np.ndarray) -> np.ndarray:
            gg = g.reshape(g.shape + (1,) * (y.ndim - g.ndim))
            return np.sum(np.where(y == 0, 0.0, gg * y * (1 - y)), axis=g.ndim - 1)

        def ratio(y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            gg = g.reshape(g.shape + (1,) * (y.ndim - g.ndim))
            ww = weight.reshape((-1,) + (1,) * (y.ndim - g.ndim))
            num = np.sum(ww * y, axis=g.ndim - 1)
            den = np.sum(ww * x, axis=g.ndim - 1)
            r = num / den
            rr = np.expand_dims(r, g.ndim - 1)
            term = gg * (y * (1 - y) + rr**2 * x * (1 - x) - 2 * rr * y * (1 - x))
            v = np.sum(np.where((y == 0) & (x == 0), 0.0, term), axis=g.ndim - 1) / den**2
            return r, v

        diag = np.diagonal(p, axis1=-2, axis2=-1)  # (..., H, K): map = reference = k
        ref = p.sum(axis=-2)  # (..., H, K): reference class k
        mapped = p.sum(axis=-1)  # (..., H, K): map class k
        agree = diag.sum(axis=-1)  # (..., H)
        oa_w = np.sum(weight * agree, axis=-1)
        out = {
            "error_matrix": np.sum(weight.reshape((-1, 1, 1)) * p, axis=n.ndim - 1),
            "error_matrix_var": var(p),
            "area_proportion": np.sum(weight.reshape((-1, 1)) * ref, axis=n.ndim - 1),
            "area_proportion_var": var(ref),
            "overall_accuracy": oa_w,
            "overall_accuracy_var": np.sum(np.where(agree == 0, 0.0, g * agree * (1 - agree)), axis=-1),
        }
        out["users_accuracy"], out["users_accuracy_var"] = ratio(diag, mapped)
        out["producers_accuracy"], out["producers_accuracy_var"] = ratio(diag, ref)
        out["n"] = n
    return out


def _labelled_counts(sample_counts: Any, classes: Sequence[str] | None) -> tuple[np.ndarray, list[str], list[str],
                                                                                   list[str], bool, list[str], dict]:
    """Counts as ``(..., H, K, K)``, lead dims, strata, classes, whether strata are the map classes."""
    import pandas as pd

    lead_dims: list[str] = []
    lead_coords: dict[str, Any] = {}
    if isinstance(sample_counts, xr.DataArray):
        da = sample_counts
        for d in ("map_class", "reference_class"):
            if d not in da.dims:
                raise ValueError(f"sample_counts needs dims 'map_class' and 'reference_class' (and optionally "
                                 f"'stratum'); it has {da.dims} — rename them, e.g. .rename(row='map_class')")
        core = (["stratum"] if "stratum" in da.dims else []) + ["map_class", "reference_class"]
        lead_dims = [d for d in da.dims if d not in core]
        da = da.transpose(*lead_dims, *core)
        lead_coords = {d: da[d] for d in lead_dims if d in da.coords}

        def labels(d: str) -> list[str] | None:
            return [str(v) for v in da[d].values] if d in da.coords else None
        values = np.asarray(da.values, np.float64)
        row_labels = labels("map_class")
        col_labels = labels("reference_class")
        stratum_labels = labels("stratum") if "stratum" in da.dims else None
        three = "stratum" in da.dims
    elif isinstance(sample_counts, pd.DataFrame):
        values = sample_counts.to_numpy(np.float64)
        row_labels = [str(v) for v in sample_counts.index]
        col_labels = [str(v) for v in sample_counts.columns]
        stratum_labels = None
        three = False
    else:
        values = np.asarray(sample_counts, np.float64)
        if values.ndim != 2:
            raise ValueError(f"sample_counts must be a 2-D error matrix (rows = map classes = strata, columns = "
                             f"reference classes), got shape {values.shape}; for strata that differ from the map "
                             "classes pass a DataArray with a 'stratum' dim or use estimate_from_samples")
        row_labels = col_labels = None
        stratum_labels = None
        three = False
    if not np.all(np.isfinite(values)) or np.any(values < 0) or not np.array_equal(values, np.round(values)):
        raise ValueError("sample_counts must be whole numbers >= 0 (the number of sample units in each cell)")
    m_ax, r_ax = values.ndim - 2, values.ndim - 1
    nm, nr = values.shape[m_ax], values.shape[r_ax]
    if row_labels is None:
        if classes is not None and len(classes) == nm:
            row_labels = [str(c) for c in classes]
        else:
            row_labels = [str(i) for i in range(nm)]
    if col_labels is None:
        if classes is not None and len(classes) == nr:
            col_labels = [str(c) for c in classes]
        elif nr == nm:
            col_labels = list(row_labels)
        else:
            raise ValueError(f"sample_counts has {nm} rows and {nr} columns: label them (a DataFrame or DataArray "
                             "with class names) or pass classes=")
    if len(set(row_labels)) != len(row_labels) or len(set(col_labels)) != len(col_labels):
        raise ValueError(f"repeated class names in sample_counts: rows {row_labels}, columns {col_labels}")
    if classes is None:
        class_list = list(dict.fromkeys([*row_labels, *col_labels]))
    else:
        class_list = [str(c) for c in classes]
        if len(set(class_list)) != len(class_list):
            raise ValueError(f"classes has repeated names: {class_list}")
        unknown = [c for c in dict.fromkeys([*row_labels, *col_labels]) if c not in class_list]
        if unknown:
            raise ValueError(f"sample_counts has classes {unknown} that are not in classes={class_list}")
    k = len(class_list)
    ri = [class_list.index(c) for c in row_labels]
    ci = [class_list.index(c) for c in col_labels]
    lead = values.shape[:-3] if three else values.shape[:-2]
    if three:
        h = values.shape[-3]
        strata = stratum_labels or [str(i) for i in range(h)]
        full = np.zeros((*lead, h, k, k))
        for a, i in enumerate(ri):
            for b, j in enumerate(ci):
                full[..., :, i, j] = values[..., :, a, b]
    else:
        strata = list(row_labels)
        full = np.zeros((*lead, len(strata), k, k))
        for a, i in enumerate(ri):
            for b, j in enumerate(ci):
                full[..., a, i, j] = values[..., a, b]
    return full, lead_dims, strata, class_list, not three, ri, lead_coords


def estimate(sample_counts: Any, stratum_area: Any, classes: Sequence[str] | None = None, *,
             stratum_pixels: Any = None, mapped_area: Any = None, unit: str | None = None) -> xr.Dataset:
    """Area-adjusted accuracy and class areas with 95 % confidence intervals from an error matrix of sample counts.

    Parameters
    ----------
    sample_counts
        The error matrix :math:`n_{ij}` of a stratified random sample: rows = map classes
        (= strata), columns = reference classes.  A 2-D array (its order is ``classes``), a
        pandas DataFrame (index = map class, columns = reference class, any order) or a
        DataArray with dims ``map_class``, ``reference_class``.  A DataArray with a third
        dim ``stratum`` gives counts per stratum for strata that differ from the map classes
        (Stehman 2014); other dims (dates, simulation replicates) are carried through.
    stratum_area
        Mapped area :math:`A_h` of each stratum (any unit — the results' areas are in it):
        ``{stratum: area}``, a Series, a :func:`stratum_table` (its ``area``, and ``pixels``
        for the finite-population correction) or its ``area`` DataArray, or a sequence in
        the order of the rows (strata).  A stratum with area 0 and no samples
        is ignored.
    classes
        Names and order of the classes in the results (default: rows, then any other
        column, in their order); labelled inputs in another order are matched by name.
    stratum_pixels
        :math:`N_h` of each stratum, for the finite-population correction
        :math:`1 - n_h/N_h` of Stehman (2014, Eq. 25); default none (Olofsson et al. 2014,
        negligible for pixel populations).
    mapped_area
        Pixel-counted area of each map class (``{class: area}``, same unit) for the
        ``mapped_area`` variable when the strata are not the map classes (when they are, it
        is ``stratum_area``).
    unit
        Unit of ``stratum_area`` for the ``units`` attributes (default: its ``units``).

    Returns
    -------
    xarray.Dataset
        With :math:`W_i = A_i/A`, :math:`n_{i\\cdot}` the sample size of stratum *i*
        (Olofsson et al. 2014, strata = map classes; Eq. numbers of that paper):

        * ``error_matrix`` (``map_class``, ``reference_class``): estimated area proportions
          :math:`\\hat p_{ij} = W_i n_{ij}/n_{i\\cdot}` (Eq. 4); standard error
          :math:`\\sqrt{\\sum_h W_h^2 \\hat p_{h,ij}(1-\\hat p_{h,ij})/(n_h-1)}` (Stehman 2014 Eq. 25).
        * ``overall_accuracy`` :math:`\\hat O = \\sum_j \\hat p_{jj}` (Eq. 1),
          :math:`\\hat V(\\hat O) = \\sum_i W_i^2 \\hat U_i(1-\\hat U_i)/(n_{i\\cdot}-1)` (Eq. 5).
        * ``users_accuracy`` (``class``) :math:`\\hat U_i = \\hat p_{ii}/\\hat p_{i\\cdot}` (Eq. 2),
          :math:`\\hat V(\\hat U_i) = \\hat U_i(1-\\hat U_i)/(n_{i\\cdot}-1)` (Eq. 6).
        * ``producers_accuracy`` (``class``) :math:`\\hat P_j = \\hat p_{jj}/\\hat p_{\\cdot j}` (Eq. 3),
          variance Eq. 7 — computed as the ratio-estimator variance of Stehman (2014, Eq. 28),
          which equals Eq. 7 when the strata are the map classes.
        * ``area_proportion`` (``class``) :math:`\\hat p_{\\cdot k} = \\sum_i W_i n_{ik}/n_{i\\cdot}`
          (Eq. 9), :math:`S(\\hat p_{\\cdot k}) = \\sqrt{\\sum_i (W_i \\hat p_{ik} - \\hat p_{ik}^2)/(n_{i\\cdot}-1)}`
          (Eq. 10); ``area`` :math:`\\hat A_k = A\\,\\hat p_{\\cdot k}` with standard error
          :math:`A\\,S(\\hat p_{\\cdot k})`, in the unit of ``stratum_area``.
        * ``mapped_area`` (``class``): the pixel-counted area (strata = map classes, or given).
        * for each: ``*_se`` and ``*_ci95`` = 1.96 × SE (the 95 % half-width); ``sample_count``.

        With a ``stratum`` dim the same estimators take Stehman's (2014) general form
        (Eq. 2–3, 25–29; see :func:`estimate_from_samples`).  Documented NaN: the user's
        accuracy of a class no sample unit is mapped as, the producer's accuracy of a class
        no sample unit is in the reference (area 0 ± 0), and every standard error that
        involves a stratum with a single sample unit (unless it is a census).

    Raises
    ------
    ValueError
        A stratum with area but no sample units, samples in a stratum without area, negative
        or missing areas or counts, unknown or repeated class names.

    Notes
    -----
    The intervals are normal (Wald) intervals, as in both papers.  They hold when each
    stratum's sample sees the errors it holds: an omission error of a rare class spread thinly
    over a large stable stratum (1 % of it, 25 units there) is usually not sampled at all, its
    variance is then estimated as 0 and the interval is too narrow — give the large strata
    enough units too (Olofsson et al. 2014, Section 5.1).

    Examples
    --------
    Olofsson et al. (2014, Table 8; results in Section 5.2.2):

    >>> names = ["deforestation", "forest_gain", "stable_forest", "stable_non_forest"]
    >>> counts = [[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]]
    >>> ha = [p * 0.09 for p in [200_000, 150_000, 3_200_000, 6_450_000]]
    >>> est = estimate(counts, ha, classes=names, unit="ha")
    >>> est.users_accuracy.round(2).values.tolist(), est.users_accuracy_ci95.round(2).values.tolist()
    ([0.88, 0.73, 0.93, 0.96], [0.07, 0.1, 0.04, 0.02])
    >>> est.area_ci95.round(0).values.tolist()
    [6158.0, 3756.0, 15510.0, 16282.0]
    """
    if isinstance(stratum_area, xr.Dataset):  # a stratum_table
        if stratum_pixels is None and "pixels" in stratum_area:
            stratum_pixels = stratum_area["pixels"]
        stratum_area = stratum_area["area"]
    counts, lead_dims, strata, class_list, strata_are_map, row_index, lead_coords = _labelled_counts(sample_counts,
                                                                                                     classes)
    labels, area = _vector(stratum_area, None, "stratum_area")
    if labels is None:
        if len(area) != len(strata):
            raise ValueError(f"stratum_area has {len(area)} values for {len(strata)} strata {strata}; give one per "
                             "stratum (row), or a mapping {stratum: area}")
        labels = list(strata)
    _check_areas(area, labels, "stratum_area")
    area_of = dict(zip(labels, area.tolist(), strict=True))
    missing = [s for s in strata if s not in area_of]
    if missing:
        raise ValueError(f"stratum_area has no area for strata {missing} (it has {labels})")
    n_h = counts.sum(axis=(-2, -1))
    n_any = n_h.reshape(-1, len(strata)).min(axis=0) if n_h.size else np.zeros(len(strata))
    empty = [s for s, k in zip(strata, n_any, strict=True) if k == 0 and area_of[s] > 0]
    if empty:
        raise ValueError(f"strata without sample units: {empty} (mapped area {[area_of[s] for s in empty]}); their "
                         "accuracy and areas cannot be estimated — label at least 2 units in each (or merge them)")
    no_area = [s for s, k in zip(strata, n_h.reshape(-1, len(strata)).max(axis=0), strict=True)
               if k > 0 and area_of[s] == 0]
    if no_area:
        raise ValueError(f"strata {no_area} have sample units but no mapped area in stratum_area")
    extra = [s for s in labels if s not in strata and area_of[s] > 0]
    if extra:
        raise ValueError(f"strata without sample units: {extra} (mapped area {[area_of[s] for s in extra]}); their "
                         "accuracy and areas cannot be estimated — label at least 2 units in each (or merge them)")
    keep = [i for i, s in enumerate(strata) if area_of[s] > 0]
    counts = counts[..., keep, :, :]
    kept = [strata[i] for i in keep]
    a_h = np.array([area_of[s] for s in kept])
    total = float(a_h.sum())
    if total <= 0:
        raise ValueError("the strata have no area in total")
    weight = a_h / total
    fpc: np.ndarray = np.ones(len(kept))
    if stratum_pixels is not None:
        plabels, pix = _vector(stratum_pixels, None, "stratum_pixels")
        if plabels is None:
            if len(pix) != len(strata):
                raise ValueError(f"stratum_pixels has {len(pix)} values for {len(strata)} strata {strata}")
            plabels = list(strata)
        pix_of = dict(zip(plabels, pix.tolist(), strict=True))
        missing = [s for s in kept if s not in pix_of]
        if missing:
            raise ValueError(f"stratum_pixels has no pixel count for strata {missing}")
        pix = np.array([pix_of[s] for s in kept], np.float64)
        n_kept = counts.sum(axis=(-2, -1))
        over = np.any((n_kept > pix).reshape(-1, len(kept)), axis=0)
        if over.any():
            raise ValueError(f"more sample units than pixels in strata {[s for s, o in zip(kept, over) if o]}")
        fpc = 1.0 - n_kept / pix
    r = _core(counts, weight, fpc)
    if unit is None:
        unit = str(getattr(stratum_area, "attrs", {}).get("units", "")) if isinstance(stratum_area, xr.DataArray) else ""

    def v(name: str, dims: tuple[str, ...], values: np.ndarray, attrs: dict[str, Any]) -> xr.Variable:
        return xr.Variable((*lead_dims, *dims), values, attrs)

    ds = xr.Dataset(coords={"class": class_list, "map_class": class_list, "reference_class": class_list,
                            **lead_coords})
    what = {
        "overall_accuracy": ((), r["overall_accuracy"], r["overall_accuracy_var"], "overall accuracy", "1"),
        "users_accuracy": (("class",), r["users_accuracy"], r["users_accuracy_var"], "user's accuracy", "1"),
        "producers_accuracy": (("class",), r["producers_accuracy"], r["producers_accuracy_var"],
                               "producer's accuracy", "1"),
        "area_proportion": (("class",), r["area_proportion"], r["area_proportion_var"],
                            "estimated proportion of area (reference class)", "1"),
        "area": (("class",), r["area_proportion"] * total, r["area_proportion_var"] * total**2,
                 "estimated area (reference class)", unit),
        "error_matrix": (("map_class", "reference_class"), r["error_matrix"], r["error_matrix_var"],
                         "estimated area proportions (rows: map class, columns: reference class)", "1"),
    }
    for name, (dims, est, var, long_name, units) in what.items():
        se = np.sqrt(var)
        ds[name] = v(name, dims, est, {"long_name": long_name, "units": units})
        ds[f"{name}_se"] = v(name, dims, se, {"long_name": f"standard error of {long_name}", "units": units})
        ds[f"{name}_ci95"] = v(name, dims, Z95 * se, {"long_name": f"95 % confidence half-width of {long_name} "
                                                      f"({Z95} × SE)", "units": units})
    if strata_are_map:
        mapped = np.zeros(len(class_list))
        for s in kept:
            mapped[class_list.index(s)] = area_of[s]
        ds["mapped_area"] = xr.Variable(("class",), mapped, {"long_name": "mapped (pixel-counted) area", "units": unit})
        ds["sample_count"] = v("sample_count", ("map_class", "reference_class"), counts.sum(axis=-3),
                               {"long_name": "sample units"})
    else:
        ds = ds.assign_coords(stratum=kept)
        ds["sample_count"] = v("sample_count", ("stratum", "map_class", "reference_class"), counts,
                               {"long_name": "sample units"})
        if mapped_area is not None:
            mlabels, marea = _vector(mapped_area, None, "mapped_area")
            if mlabels is None:
                raise ValueError("mapped_area must name its classes: {class: area}")
            unknown = [c for c in mlabels if c not in class_list]
            if unknown:
                raise ValueError(f"mapped_area has classes {unknown} that are not in {class_list}")
            _check_areas(marea, mlabels, "mapped_area")
            of = dict(zip(mlabels, marea.tolist(), strict=True))
            ds["mapped_area"] = xr.Variable(("class",), np.array([of.get(c, 0.0) for c in class_list]),
                                            {"long_name": "mapped (pixel-counted) area", "units": unit})
    ds["stratum_area"] = xr.Variable(("stratum" if not strata_are_map else "map_class",),
                                     np.array([area_of.get(c, 0.0) for c in (kept if not strata_are_map
                                                                               else class_list)]),
                                     {"long_name": "mapped area of the stratum", "units": unit})
    ds.attrs = {
        "estimator": ("stratified estimator, strata = map classes (Olofsson et al. 2014, Eq. 1-10)" if strata_are_map
                      else "stratified estimator, strata different from the map classes (Stehman 2014, Eq. 2-29)"),
        "confidence_z": Z95,
        "finite_population_correction": int(stratum_pixels is not None),
        "total_area": total,
        "units": unit,
        "references": "Olofsson et al. (2014) Remote Sens. Environ. 148:42-57; Stehman (2014) Int. J. Remote Sens. "
                      "35:4923-4939",
    }
    return ds


def estimate_from_samples(samples: Any, stratum_area: Any = None, *, classes: Sequence[str] | None = None,
                          stratum_pixels: Any = None, stratum: str = "stratum", map_class: str = "map_class",
                          reference: str = "reference", unit: str | None = None) -> xr.Dataset:
    """Accuracy and areas with 95 % CIs from a labelled sample table, for any strata (Stehman 2014).

    Each sample unit *u* of stratum *h* carries its map class and its reference class.  Every
    quantity is a stratified mean of an indicator :math:`y_u` — :math:`y_u = 1` when map and
    reference agree (overall accuracy, Stehman 2014 Eq. 12), when the reference class is *k*
    (area proportion of *k*, Eq. 14), when the unit is in cell *(i, j)* (error matrix,
    Eq. 16) —

    .. math:: \\hat{\\bar Y} = \\sum_h \\frac{N_h}{N}\\,\\bar y_h \\quad\\text{(Eq. 2–3)},\\qquad
              \\hat V(\\hat{\\bar Y}) = \\frac{1}{N^2}\\sum_h N_h^2 \\Big(1 - \\frac{n_h}{N_h}\\Big)
              \\frac{s_{yh}^2}{n_h} \\quad\\text{(Eq. 25–26)}

    or a ratio of two (user's accuracy: :math:`y_u` = mapped *i* and correct over
    :math:`x_u` = mapped *i*; producer's accuracy: correct and reference *j* over reference *j*)

    .. math:: \\hat R = \\frac{\\sum_h N_h \\bar y_h}{\\sum_h N_h \\bar x_h} \\quad\\text{(Eq. 27)},\\qquad
              \\hat V(\\hat R) = \\frac{1}{\\hat X^2}\\sum_h N_h^2\\Big(1 - \\frac{n_h}{N_h}\\Big)
              \\frac{s_{yh}^2 + \\hat R^2 s_{xh}^2 - 2\\hat R s_{xyh}}{n_h} \\quad\\text{(Eq. 28–29)}.

    Here the stratum weights :math:`N_h/N` are the area shares :math:`A_h/A` (equal for equal-area
    pixels; on geographic grids the within-stratum sample is still one of pixels).  When the
    strata are the map classes this is :func:`estimate` (Olofsson et al. 2014).

    Parameters
    ----------
    samples
        A table (pandas DataFrame, e.g. :func:`read_samples` of the labelled file) with a
        stratum, a map-class and a reference-class column.  Every row must be labelled.
    stratum_area
        :math:`A_h` per stratum, ``{stratum: area}`` (or a :func:`stratum_table` ``area``);
        default: the table's ``stratum_area`` column (written by :func:`stratified_sample`).
    classes
        Order of the classes in the results (default: Dynamic World order, or first appearance).
    stratum_pixels
        :math:`N_h` for the finite-population correction; default: the ``stratum_pixels``
        column when present, else none.
    stratum, map_class, reference
        Column names.
    unit
        Unit of the areas (default: the ``area_unit`` column, else ``stratum_area``'s ``units``).

    Returns
    -------
    xarray.Dataset
        As :func:`estimate` (with a ``stratum`` coordinate and ``sample_count`` per stratum).

    Raises
    ------
    ValueError
        Unlabelled rows, strata without an area, a stratum with area but no sample, missing
        columns, reference labels that are codes where the map classes are names.

    Examples
    --------
    Stehman (2014, Table 2): 40 sample pixels, 10 in each of 4 strata of 40 000, 30 000,
    20 000 and 10 000 pixels; map classes A–D differ from the strata.

    >>> import pandas as pd
    >>> m = list("AAAAAAABBB" "ABBBBBBBBB" "BBCCCCCCBB" "DDDDDDDDDD")
    >>> r = list("AAAAACBABC" "ABBBBBAABB" "CCCCCDDBBA" "DDDDDDDCCB")
    >>> s = pd.DataFrame({"stratum": [h for h in "1234" for _ in range(10)], "map_class": m, "reference": r})
    >>> e = estimate_from_samples(s, {"1": 40_000, "2": 30_000, "3": 20_000, "4": 10_000})
    >>> round(float(e.overall_accuracy), 2), round(float(e.overall_accuracy_se), 3)
    (0.63, 0.085)
    >>> round(float(e.users_accuracy.sel({"class": "B"})), 3), round(float(e.users_accuracy_se.sel({"class": "B"})), 3)
    (0.574, 0.125)
    """
    import pandas as pd

    if not isinstance(samples, pd.DataFrame):
        samples = pd.DataFrame(samples)
    for c, what in ((stratum, "stratum"), (map_class, "map_class"), (reference, "reference")):
        if c not in samples:
            raise ValueError(f"samples has no {c!r} column ({what}=); it has {list(samples.columns)}")
    ref = samples[reference]
    unlabelled = ref.isna() | (ref.astype(str).str.strip() == "")
    if unlabelled.any():
        rows = samples.index[unlabelled].tolist()
        raise ValueError(f"{int(unlabelled.sum())} of {len(samples)} samples have no {reference!r} label (rows "
                         f"{rows[:10]}{' …' if len(rows) > 10 else ''}): label them — dropping them is only valid "
                         "if they are missing at random (samples.dropna(subset=[...]))")
    if samples[map_class].isna().any():
        raise ValueError(f"{int(samples[map_class].isna().sum())} samples have no {map_class!r} (the map had no data "
                         "there): drop them or give them a class")
    s_lab = samples[stratum].astype(str).to_numpy()
    m_lab = samples[map_class].astype(str).to_numpy()
    r_lab = samples[reference].astype(str).str.strip().to_numpy()
    if all(v.lstrip("-").isdigit() for v in r_lab) and not any(v.lstrip("-").isdigit() for v in m_lab):
        raise ValueError(f"the {reference!r} labels are codes ({sorted(set(r_lab))[:5]}) but the map classes are "
                         f"names ({sorted(set(m_lab))[:5]}): map the codes to class names first, e.g. "
                         f"samples[{reference!r}] = samples[{reference!r}].astype(int).map(dict(enumerate(CLASSES)))")
    if isinstance(stratum_area, xr.Dataset):  # a stratum_table
        if stratum_pixels is None and "pixels" in stratum_area:
            stratum_pixels = stratum_area["pixels"]
        stratum_area = stratum_area["area"]
    if stratum_area is None:
        if "stratum_area" not in samples:
            raise ValueError("give stratum_area={stratum: area} (the table has no 'stratum_area' column)")
        per = samples.groupby(s_lab)["stratum_area"].agg(["min", "max"])
        bad = per.index[per["min"] != per["max"]].tolist()
        if bad:
            raise ValueError(f"the 'stratum_area' column differs within strata {bad}")
        stratum_area = per["min"].to_dict()
        if stratum_pixels is None and "stratum_pixels" in samples:
            stratum_pixels = samples.groupby(s_lab)["stratum_pixels"].first().to_dict()
        if unit is None and "area_unit" in samples and samples["area_unit"].notna().any():
            unit = str(samples["area_unit"].dropna().iloc[0])
    labels, area = _vector(stratum_area, None, "stratum_area")
    if labels is None:
        raise ValueError("stratum_area must name its strata: {stratum: area}")
    unknown = sorted(set(s_lab) - set(labels))
    if unknown:
        raise ValueError(f"samples are in strata {unknown} that stratum_area does not have (it has {labels})")
    class_list = [str(c) for c in classes] if classes is not None else _ordered_classes([*m_lab, *r_lab])
    missing = sorted((set(m_lab) | set(r_lab)) - set(class_list))
    if missing:
        raise ValueError(f"samples have classes {missing} that are not in classes={class_list}")
    si = {s: i for i, s in enumerate(labels)}
    ci = {c: i for i, c in enumerate(class_list)}
    k = len(class_list)
    flat = (np.array([si[s] for s in s_lab]) * k + np.array([ci[c] for c in m_lab])) * k + np.array(
        [ci[c] for c in r_lab])
    counts = np.bincount(flat, minlength=len(labels) * k * k).reshape(len(labels), k, k)
    da = xr.DataArray(counts, dims=("stratum", "map_class", "reference_class"),
                      coords={"stratum": labels, "map_class": class_list, "reference_class": class_list})
    if stratum_pixels is not None:
        _, pix = _vector(stratum_pixels, labels, "stratum_pixels")
        stratum_pixels = dict(zip(labels, pix.tolist(), strict=True))
        stratum_pixels = {s: stratum_pixels[s] for s in labels if dict(zip(labels, area.tolist(), strict=True))[s] > 0}
    areas = dict(zip(labels, area.tolist(), strict=True))
    mapped = None
    if np.array_equal(s_lab, m_lab):  # strata are the map classes: their areas are the pixel-counted areas
        mapped = {s: a for s, a in areas.items() if s in class_list}
    return estimate(da, areas, classes=class_list, stratum_pixels=stratum_pixels, mapped_area=mapped, unit=unit)


def summary_table(estimate: xr.Dataset) -> Any:
    """The per-class results of :func:`estimate` as a table: mapped and estimated area, accuracies, each ± 95 %.

    Parameters
    ----------
    estimate
        A Dataset from :func:`estimate` or :func:`estimate_from_samples` (no extra dims).

    Returns
    -------
    pandas.DataFrame
        Index ``class``; columns ``mapped_area`` (when known), ``area``, ``area_ci95``,
        ``users_accuracy``, ``users_accuracy_ci95``, ``producers_accuracy``,
        ``producers_accuracy_ci95``; ``attrs`` hold the overall accuracy and its half-width.

    Examples
    --------
    >>> e = estimate([[45, 5], [3, 47]], {"loss": 100.0, "stable": 900.0}, classes=["loss", "stable"])
    >>> summary_table(e).round(3).loc["loss", ["area", "area_ci95"]].tolist()
    [144.0, 60.433]
    """
    extra = [d for d in estimate.overall_accuracy.dims]
    if extra:
        raise ValueError(f"summary_table takes one result; this one has extra dims {extra}: select one, "
                         f"e.g. .isel({extra[0]}=0)")
    cols = (["mapped_area"] if "mapped_area" in estimate else []) + [
        "area", "area_ci95", "users_accuracy", "users_accuracy_ci95", "producers_accuracy", "producers_accuracy_ci95"]
    df = estimate[cols].to_dataframe()[cols]
    df.index.name = "class"
    df.attrs = {"overall_accuracy": float(estimate.overall_accuracy),
                "overall_accuracy_ci95": float(estimate.overall_accuracy_ci95),
                "units": estimate.attrs.get("units", "")}
    return df

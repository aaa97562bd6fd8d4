"""Training labels: hard maps (ESA WorldCover, Dynamic World) and soft teacher probabilities.

Every source becomes the same lazy :class:`xarray.Dataset` on the label grid:

* ``target`` ``(class, y, x)`` float32 — the class distribution to learn (one-hot for
  hard labels, a teacher's probabilities for distillation); 0 where there is no label;
* ``confidence`` ``(y, x)`` float32 in [0, 1] — per-pixel weight of the loss; 0 is
  "no label" (WorldCover code 0, label 255, NaN probabilities), never a class;
* ``label`` ``(y, x)`` uint8 — ``argmax`` of ``target``, 255 where ``confidence`` is 0.

**Temporal consensus** (several dates of one place share one label): a series of
probabilities or label maps ``(time, …)`` becomes one target, the mean over the valid
dates, with ``confidence`` = the share of valid dates whose own top class equals the
consensus top class (1 for a pixel every date agrees on, ½ for one that flips between
two classes).  The patch sampler then pairs that one target with several of the dates.

Hand-written: a few xarray expressions; what is specific here is the no-data rule
(``DESIGN.md``: WorldCover 0 is no data, never mapped to a class; remap from
:data:`dwcube.classes.WORLDCOVER_TO_DW`).

Examples
--------
>>> import xarray as xr
>>> wc = xr.DataArray(np.array([[10, 80], [0, 95]], np.uint8), dims=("y", "x"))
>>> lab = from_worldcover(wc)
>>> lab.label.values
array([[  1,   0],
       [255,   3]], dtype=uint8)
>>> lab.confidence.values.tolist()
[[1.0, 1.0], [0.0, 1.0]]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from ..classes import CLASSES, NODATA_LABEL, remap_worldcover

__all__ = ["from_label_map", "from_probabilities", "from_worldcover", "label_dataset", "temporal_consensus"]

K = len(CLASSES)


def _map(arr: xr.DataArray, func: Callable[[np.ndarray], np.ndarray], dtype: Any) -> xr.DataArray:
    if isinstance(arr.data, da.Array):
        return arr.copy(data=arr.data.map_blocks(func, dtype=dtype))
    return arr.copy(data=func(np.asarray(arr.data)))


def label_dataset(target: xr.DataArray, confidence: xr.DataArray, *, source: str) -> xr.Dataset:
    """Assemble ``target``, ``confidence`` and the derived ``label`` into a label dataset.

    Parameters
    ----------
    target
        ``(class, y, x)`` class distribution (rows need not be normalised where
        ``confidence`` is 0).
    confidence
        ``(y, x)`` weights in [0, 1]; 0 = no label.
    source
        Provenance text stored in ``attrs["label_source"]``.

    Examples
    --------
    >>> t = xr.DataArray(np.eye(9, dtype=np.float32)[:, :2, None], dims=("class", "y", "x"))
    >>> label_dataset(t, xr.DataArray(np.ones((2, 1), np.float32), dims=("y", "x")), source="demo").label.values.ravel()
    array([0, 1], dtype=uint8)
    """
    if target.sizes.get("class") != K:
        raise ValueError(f"target needs a 'class' dimension of {K}, got {dict(target.sizes)}")
    confidence = confidence.fillna(0).clip(0, 1).astype(np.float32)
    target = target.fillna(0).astype(np.float32).transpose("class", ...)
    label = target.argmax("class").astype(np.uint8).where(confidence > 0, NODATA_LABEL).astype(np.uint8)
    ds = xr.Dataset({"target": target, "confidence": confidence, "label": label})
    ds = ds.assign_coords({"class": list(CLASSES)})
    ds.attrs["label_source"] = source
    ds.label.attrs.update({"flag_values": list(range(K)), "flag_meanings": " ".join(CLASSES), "_FillValue": NODATA_LABEL})
    return ds


def _one_hot(labels: xr.DataArray, nodata: int) -> tuple[xr.DataArray, xr.DataArray]:
    valid = (labels >= 0) & (labels < K) & (labels != nodata)
    onehot = xr.concat([(labels == k) & valid for k in range(K)], dim="class").astype(np.float32)
    return onehot, valid


def from_worldcover(codes: xr.DataArray) -> xr.Dataset:
    """Labels from an ESA WorldCover map (codes 10…100) on the training grid.

    Remapped with :func:`dwcube.classes.remap_worldcover`; code 0 (and any unknown
    code) is no data: ``confidence`` 0, never a class.

    Parameters
    ----------
    codes
        ``(y, x)`` WorldCover codes (any integer dtype; NumPy or Dask), already on the
        cube's grid (e.g. ``rioxarray``'s ``reproject_match`` with nearest resampling).

    Examples
    --------
    >>> from_worldcover(xr.DataArray(np.array([[40, 100]]), dims=("y", "x"))).label.values
    array([[4, 7]], dtype=uint8)
    """
    labels = _map(codes, remap_worldcover, np.uint8)
    onehot, valid = _one_hot(labels, NODATA_LABEL)
    return label_dataset(onehot, valid.astype(np.float32), source="ESA WorldCover (remapped to Dynamic World classes)")


def from_label_map(labels: xr.DataArray, *, nodata: int = NODATA_LABEL, source: str = "label map") -> xr.Dataset:
    """Labels from class maps in Dynamic World order (0–8; ``nodata`` elsewhere).

    A map with a ``time`` dimension (several dates of Dynamic World labels) is reduced
    by :func:`temporal_consensus` of its one-hot dates: the most frequent label, with
    ``confidence`` = its share of the valid dates.

    Examples
    --------
    >>> series = xr.DataArray(np.array([[[1, 2]], [[1, 2]], [[1, 4]]], np.uint8), dims=("time", "y", "x"))
    >>> lab = from_label_map(series)
    >>> lab.label.values.tolist(), [round(float(v), 3) for v in lab.confidence.values.ravel()]
    ([[1, 2]], [1.0, 0.667])
    """
    onehot, valid = _one_hot(labels, nodata)
    if "time" in labels.dims:
        return temporal_consensus(onehot.where(valid), source=f"{source} (temporal consensus)")
    return label_dataset(onehot, valid.astype(np.float32), source=source)


def from_probabilities(prob: xr.DataArray, *, source: str | None = None) -> xr.Dataset:
    """Soft labels from class probabilities, e.g. a teacher model's (distillation).

    Parameters
    ----------
    prob
        ``(class, y, x)`` or ``(time, class, y, x)`` probabilities (the output of
        :func:`dwcube.inference.classify`), NaN = no data.  With ``time``, the dates are
        reduced by :func:`temporal_consensus`.
    source
        Provenance; default: the ``model`` attribute of ``prob``.

    Examples
    --------
    >>> p = np.zeros((9, 1, 2), np.float32); p[1] = 0.8; p[2] = 0.2; p[:, 0, 1] = np.nan
    >>> lab = from_probabilities(xr.DataArray(p, dims=("class", "y", "x")))
    >>> lab.label.values.tolist(), lab.confidence.values.tolist()
    ([[1, 255]], [[1.0, 0.0]])
    """
    src = source or f"probabilities of {prob.attrs.get('model', 'a model')}"
    if "time" in prob.dims:
        return temporal_consensus(prob, source=f"{src} (temporal consensus)")
    valid = prob.notnull().all("class")
    return label_dataset(prob.where(valid, 0), valid.astype(np.float32), source=src)


def temporal_consensus(series: xr.DataArray, *, source: str = "temporal consensus") -> xr.Dataset:
    """One label for several dates: the mean distribution and the dates' agreement with it.

    Parameters
    ----------
    series
        ``(time, class, y, x)`` probabilities (or one-hot labels), NaN on dates without
        data at that pixel.

    Returns
    -------
    xarray.Dataset
        ``target`` = mean over valid dates (renormalised to sum 1), ``confidence`` =
        share of valid dates whose top class is the consensus top class (0 where no
        date is valid), ``label``.

    Examples
    --------
    >>> p = np.zeros((2, 9, 1, 1), np.float32); p[0, 1] = 1; p[1, 1] = 0.4; p[1, 2] = 0.6
    >>> lab = temporal_consensus(xr.DataArray(p, dims=("time", "class", "y", "x")))
    >>> lab.label.item(), lab.confidence.item(), round(float(lab.target.sel({"class": "trees"}).item()), 2)
    (1, 0.5, 0.7)
    """
    valid_t = series.notnull().all("class")  # (time, y, x)
    n_valid = valid_t.sum("time")
    mean = series.where(valid_t).sum("time") / n_valid.where(n_valid > 0)
    total = mean.sum("class")
    target = (mean / total.where(total > 0)).fillna(0)
    top = target.argmax("class")
    top_t = series.fillna(-1).argmax("class")
    agree = ((top_t == top) & valid_t).sum("time") / n_valid.where(n_valid > 0)
    out = label_dataset(target, agree.fillna(0), source=source)
    out.attrs["dates"] = int(series.sizes["time"])
    return out

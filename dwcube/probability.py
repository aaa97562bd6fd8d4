"""Layers derived from a probability cube: the label and per-pixel confidence.

All functions take the probability cube ``(…, class, y, x)`` of
:func:`dwcube.inference.classify` (or an archive) and work lazily, block by block,
with ``xarray.apply_ufunc``; they are exact per pixel, so chunking cannot change them.

Examples
--------
>>> import numpy as np, xarray as xr
>>> p = xr.DataArray(np.array([[0.7, 0.2, 0.1], [np.nan] * 3]).T[:, :, None],
...                  dims=("class", "y", "x"), coords={"class": ["water", "trees", "grass"]})
>>> label(p).values.ravel().tolist()
[0, 255]
>>> round(float(confidence(p).margin[0, 0]), 3)
0.5
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .classes import COLORS, NODATA_LABEL

__all__ = ["label", "confidence"]


def _check(probability: xr.DataArray) -> None:
    if "class" not in probability.dims:
        raise ValueError(f"expected a probability cube with a 'class' dimension, got dims {probability.dims}")
    if probability.sizes["class"] > NODATA_LABEL:
        raise ValueError(f"at most {NODATA_LABEL} classes fit a uint8 label, got {probability.sizes['class']}")


def _argmax(p: np.ndarray) -> np.ndarray:
    bad = ~np.isfinite(p).all(axis=-1)
    out = np.argmax(np.where(np.isfinite(p), p, -np.inf), axis=-1).astype(np.uint8)
    out[bad] = NODATA_LABEL
    return out


def _with_coords(out: xr.DataArray, probability: xr.DataArray) -> xr.DataArray:
    """``out`` with the input's non-index coordinates as they were (``apply_ufunc`` drops the
    attributes of ``spatial_ref``, which carry the CRS)."""
    keep = {k: probability.coords[k] for k in out.coords
            if k in probability.coords and k not in out.indexes and "class" not in probability.coords[k].dims}
    return out.assign_coords(keep)


def label(probability: xr.DataArray) -> xr.DataArray:
    """The most probable class per pixel: uint8 class index, 255 where there is no data.

    Parameters
    ----------
    probability
        Probability cube with a ``class`` dimension (NaN = no data).

    Returns
    -------
    xarray.DataArray
        Named ``label``, the cube's dims without ``class``, uint8; ties go to the first
        class in order; 255 wherever any class probability is NaN.  ``attrs`` follow CF
        (``flag_values``, ``flag_meanings``) and give the Dynamic World colours.

    Examples
    --------
    >>> p = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [np.nan, np.nan, np.nan]], np.float32)
    >>> prob = xr.DataArray(p[None, :, :, None].transpose(0, 2, 1, 3), dims=("time", "class", "y", "x"),
    ...                     coords={"class": ["water", "trees", "grass"]})
    >>> lab = label(prob)
    >>> lab.values.ravel().tolist(), lab.attrs["flag_meanings"]
    ([0, 2, 255], 'water trees grass')
    """
    _check(probability)
    out = xr.apply_ufunc(_argmax, probability, input_core_dims=[["class"]], dask="parallelized",
                         output_dtypes=[np.uint8], keep_attrs=False)
    classes = [str(c) for c in probability["class"].values]
    out = _with_coords(out.drop_vars("class", errors="ignore"), probability)
    out.name = "label"
    out.attrs = {
        "long_name": "most probable land-cover class",
        "flag_values": list(range(len(classes))),
        "flag_meanings": " ".join(classes),
        "flag_colors": " ".join(COLORS.get(c, "#000000") for c in classes),
        "nodata": NODATA_LABEL,
        **{k: v for k, v in probability.attrs.items() if k.startswith("model")},
    }
    return out


def _confidence(p: np.ndarray) -> np.ndarray:
    p = p.astype(np.float32, copy=False)
    srt = np.sort(p, axis=-1)
    top1 = srt[..., -1]
    margin = srt[..., -1] - srt[..., -2] if p.shape[-1] > 1 else top1
    q = np.clip(p, 0, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.sum(np.where(q > 0, q * np.log(q), 0), axis=-1)
    entropy = (h / np.log(p.shape[-1])).astype(np.float32) if p.shape[-1] > 1 else np.zeros_like(top1)
    bad = ~np.isfinite(p).all(axis=-1)
    out = np.stack([top1, margin, entropy], axis=-1).astype(np.float32)
    out[bad] = np.nan
    return out


def confidence(probability: xr.DataArray) -> xr.Dataset:
    """Per-pixel confidence of the label: top-1 probability, margin and entropy.

    Parameters
    ----------
    probability
        Probability cube with a ``class`` dimension (NaN = no data).

    Returns
    -------
    xarray.Dataset
        Three float32 layers with the cube's dims without ``class`` (NaN where there is
        no data):

        ``top1_probability``
            Probability of the most probable class (1/K … 1).
        ``margin``
            Difference between the two largest probabilities (0 … 1); small values mark
            pixels whose label could flip.
        ``entropy``
            Shannon entropy over the classes divided by ``ln K`` (0: certain, 1: uniform).

    Examples
    --------
    >>> p = np.array([[0.7, 0.2, 0.1], [0.35, 0.4, 0.25], [np.nan, np.nan, np.nan]], np.float32)
    >>> prob = xr.DataArray(p.T[:, :, None], dims=("class", "y", "x"))
    >>> conf = confidence(prob)
    >>> conf.margin.values.ravel().astype(float).round(2).tolist()        # the second pixel could flip
    [0.5, 0.05, nan]
    >>> int(conf.margin.where(conf.margin < 0.1).count()), conf.top1_probability.values.ravel().astype(float).round(2).tolist()
    (1, [0.7, 0.4, nan])
    """
    _check(probability)
    stacked = xr.apply_ufunc(
        _confidence, probability, input_core_dims=[["class"]], output_core_dims=[["layer"]],
        dask="parallelized", output_dtypes=[np.float32], dask_gufunc_kwargs={"output_sizes": {"layer": 3}},
    )
    model = {k: v for k, v in probability.attrs.items() if k.startswith("model")}
    layers = {
        "top1_probability": {"long_name": "probability of the most probable class", "units": "1"},
        "margin": {"long_name": "margin between the two most probable classes", "units": "1"},
        "entropy": {"long_name": "Shannon entropy over classes / ln(number of classes)", "units": "1"},
    }
    out = xr.Dataset()
    for i, (name, attrs) in enumerate(layers.items()):
        v = _with_coords(stacked.isel(layer=i).drop_vars(["class", "layer"], errors="ignore"), probability)
        v.attrs = {**attrs, **model}
        out[name] = v
    return out

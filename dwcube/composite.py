"""Monthly, seasonal and annual composites of a probability cube.

A composite summarises the dates of a period (a month, a meteorological season, a year,
or any start-anchored pandas frequency) per pixel:

``probability``
    The mean (or median) class probability over the period's *valid* dates of the pixel
    (a date is valid where all class probabilities are finite), NaN where the period has
    fewer than ``min_count`` valid dates.
``label``
    The most probable class of that composite probability (uint8, 255 = no data), as
    :func:`dwcube.probability.label` makes it.
``mode``
    The most frequent per-date label over the valid dates.  Ties go to the tied class with
    the larger composite probability, and if that ties too, to the first class in Dynamic
    World order (the rule :func:`dwcube.probability.label` uses).
``margin``
    Top-1 minus top-2 of the composite probability (0 … 1), the confidence of ``label``.
``n_valid``
    Number of valid dates of the pixel in the period (not ``count``, which would hide
    behind :meth:`xarray.Dataset.count`).

The periods run along the ``time`` dimension, labelled by their start (so composites feed
straight into :func:`dwcube.stats.class_area` and :mod:`dwcube.plot`); the ``period``
coordinate gives a readable name, ``period_end`` the exclusive end and ``n_dates`` the number
of cube dates the period holds.

Seasons are the meteorological ones, DJF, MAM, JJA and SON.  December belongs to the
*following* year's winter: ``2024-DJF`` is December 2023, January 2024 and February 2024, and
its ``time`` label is 2023-12-01 (pandas ``QS-DEC`` bins).

Everything stays lazy on Dask-backed cubes: each period is an xarray reduction over its
dates, so chunking along ``time``, ``y`` or ``x`` does not change the result (sums are
accumulated in float64).  Grouping uses pandas' resampling bins; the per-pixel reductions
are plain xarray, only the mode's tie-break is written here.

Examples
--------
>>> import numpy as np, pandas as pd, xarray as xr
>>> p = xr.DataArray(np.array([[0.8, 0.2], [0.4, 0.6], [np.nan, np.nan]], np.float32)[:, :, None, None],
...                  dims=("time", "class", "y", "x"), name="probability",
...                  coords={"time": pd.to_datetime(["2023-05-02", "2023-05-20", "2023-05-28"]),
...                          "class": ["water", "trees"]})
>>> c = composite(p, "month")
>>> c.probability.values.ravel().astype(float).round(2).tolist(), c.n_valid.values.ravel().tolist(), c.period.values.tolist()
([0.6, 0.4], [2], ['2023-05'])
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .classes import NODATA_LABEL
from .probability import confidence, label

__all__ = ["PERIODS", "composite", "period_bins"]

#: Named periods and the pandas frequency that bins them (left-closed, labelled by start).
PERIODS: dict[str, str] = {"month": "MS", "season": "QS-DEC", "year": "YS"}

_SEASONS = {12: "DJF", 3: "MAM", 6: "JJA", 9: "SON"}


@dataclass(frozen=True)
class PeriodBin:
    """One composite period: ``[start, end)``, its readable name and the cube dates it holds."""

    start: pd.Timestamp
    end: pd.Timestamp
    name: str
    index: np.ndarray  # positions along the cube's time dimension


def _frequency(period: str) -> tuple[str, str]:
    """``(kind, pandas frequency)`` of a period name or a pandas frequency string."""
    if not isinstance(period, str):
        raise TypeError(f"period must be 'month', 'season', 'year' or a pandas frequency string, got {period!r}")
    if period in PERIODS:
        return period, PERIODS[period]
    from pandas.tseries.frequencies import to_offset

    try:
        offset = to_offset(period)
    except ValueError as exc:
        raise ValueError(f"unknown period {period!r}: use 'month', 'season', 'year' or a pandas frequency "
                         "such as 'MS', 'QS-DEC', 'YS', '10D', 'W-MON'") from exc
    if type(offset).__name__.endswith("End"):
        raise ValueError(f"period {period!r} is end-anchored; composites are labelled by their start, use the "
                         f"start-anchored frequency (e.g. 'MS' instead of 'ME', 'YS' instead of 'YE')")
    return "freq", period


def _name(kind: str, start: pd.Timestamp) -> str:
    if kind == "month":
        return f"{start:%Y-%m}"
    if kind == "year":
        return f"{start:%Y}"
    if kind == "season":
        return f"{start.year + (start.month == 12)}-{_SEASONS[start.month]}"
    return f"{start:%Y-%m-%d}" if start == start.normalize() else start.isoformat()


def period_bins(times: Any, period: str = "month", *, keep_empty: bool = False) -> list[PeriodBin]:
    """The periods a set of dates falls into, with the positions of the dates in each.

    Parameters
    ----------
    times
        Dates (anything :class:`pandas.DatetimeIndex` accepts), in any order.
    period
        ``"month"``, ``"season"`` (DJF/MAM/JJA/SON, December counted with the following
        year's winter), ``"year"``, or a start-anchored pandas frequency (``"10D"``,
        ``"W-MON"``, ``"QS-DEC"``…).  Bins are left-closed and labelled by their start.
    keep_empty
        Also return the periods between the first and the last date that hold no date.

    Returns
    -------
    list of PeriodBin
        In time order.

    Examples
    --------
    >>> [(b.name, f"{b.start:%Y-%m-%d}", b.index.tolist())
    ...  for b in period_bins(["2023-12-05", "2024-02-10", "2024-03-01"], "season")]
    [('2024-DJF', '2023-12-01', [0, 1]), ('2024-MAM', '2024-03-01', [2])]
    """
    kind, freq = _frequency(period)
    index = pd.DatetimeIndex(times)
    if len(index) == 0:
        raise ValueError("the cube has no dates to composite")
    if index.hasnans:
        raise ValueError("the cube's time coordinate holds NaT")
    from pandas.tseries.frequencies import to_offset

    groups = [(pd.Timestamp(k), np.asarray(g.values, dtype=np.int64))
              for k, g in pd.Series(np.arange(len(index)), index=index).resample(freq, closed="left", label="left")]
    starts = [k for k, _ in groups]
    ends = starts[1:] + [starts[-1] + to_offset(freq)]
    return [PeriodBin(s, e, _name(kind, s), np.sort(idx))
            for s, e, (_, idx) in zip(starts, ends, groups) if keep_empty or len(idx)]


def _probability(obj: xr.DataArray | xr.Dataset) -> xr.DataArray:
    if isinstance(obj, xr.Dataset):
        if "probability" not in obj.data_vars:
            raise ValueError("this Dataset has no 'probability' variable (classify() or open_archive() make one)")
        obj = obj["probability"]
    if not isinstance(obj, xr.DataArray):
        raise TypeError(f"expected a probability DataArray or a Dataset holding one, got {type(obj).__name__}")
    for dim in ("time", "class"):
        if dim not in obj.dims:
            raise ValueError(f"expected a probability cube with dims (time, class, y, x), got {obj.dims}: "
                             f"no {dim!r} dimension")
    if not np.issubdtype(obj["time"].dtype, np.datetime64):
        raise ValueError(f"the cube's time coordinate must be datetime64, got {obj['time'].dtype}")
    return obj


def _nanmedian(x: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():  # pixels without a valid date: NaN, as documented
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(x.astype(np.float64), axis=-1) if x.shape[-1] else np.full(x.shape[:-1], np.nan)


def _mode(score: np.ndarray) -> np.ndarray:
    return np.argmax(score, axis=-1).astype(np.uint8)


def _history(attrs: dict[str, Any], line: str) -> str:
    old = str(attrs.get("history", "")).strip()
    return f"{old}\n{line}" if old else line


def composite(
    probability: xr.DataArray | xr.Dataset,
    period: str = "month",
    *,
    method: str = "mean",
    min_count: int = 1,
    keep_empty: bool = False,
) -> xr.Dataset:
    """Composite a probability cube per month, season, year or pandas frequency.

    Parameters
    ----------
    probability
        Probability cube ``(time, class, y, x)`` (NaN = no data), or a Dataset holding one
        as ``probability`` (an archive).  Numpy- or Dask-backed.
    period
        ``"month"``, ``"season"``, ``"year"`` or a start-anchored pandas frequency; see
        :func:`period_bins`.  Seasons are DJF/MAM/JJA/SON with December counted in the
        *following* year's winter (``2024-DJF`` = Dec 2023 – Feb 2024, ``time`` 2023-12-01).
    method
        ``"mean"``: mean probability over the valid dates (sums to 1 over ``class``).
        ``"median"``: per-class median over the valid dates, divided by its sum over
        ``class`` so that it is again a distribution (where all the medians are 0 — the
        dates all disagree — the mean is used).
    min_count
        Fewest valid dates a pixel needs in a period; below it the composite is no data
        (NaN probability and margin, label and mode 255).
    keep_empty
        Keep the periods (between the first and last date) that hold no date at all, as
        all-no-data layers; by default they are left out.

    Returns
    -------
    xarray.Dataset
        Over ``(time, class, y, x)`` with ``time`` = period start:
        ``probability`` float32 ``(time, class, y, x)``; ``label`` and ``mode`` uint8
        ``(time, y, x)`` (255 = no data); ``margin`` float32 ``(time, y, x)``;
        ``n_valid`` int32 ``(time, y, x)``, the number of valid dates.  Coordinates ``period`` (name: ``2023-05``,
        ``2024-DJF``, ``2023``), ``period_end`` (exclusive) and ``n_dates``; the grid
        (``spatial_ref``) is kept.  ``attrs`` are the cube's plus ``composite_period``,
        ``composite_frequency``, ``composite_method`` and a ``history`` line.  Lazy when
        the input is.

    Raises
    ------
    ValueError
        Unknown period or method, ``min_count`` < 1, no ``time``/``class`` dimension,
        non-datetime times.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> t = pd.to_datetime(["2023-12-20", "2024-01-10", "2024-04-02"])
    >>> p = xr.DataArray(np.array([[0.9, 0.1], [0.3, 0.7], [0.2, 0.8]], np.float32)[:, :, None, None],
    ...                  dims=("time", "class", "y", "x"), coords={"time": t, "class": ["water", "trees"]})
    >>> c = composite(p, "season")
    >>> c.period.values.tolist(), c.probability[:, 0, 0, 0].values.astype(float).round(2).tolist()
    (['2024-DJF', '2024-MAM'], [0.6, 0.2])
    >>> c.mode.values.ravel().tolist(), c.label.values.ravel().tolist()   # 1 vote each: higher mean wins
    ([0, 1], [0, 1])
    """
    prob = _probability(probability)
    if method not in ("mean", "median"):
        raise ValueError(f"unknown method {method!r}: use 'mean' or 'median'")
    if not isinstance(min_count, (int, np.integer)) or isinstance(min_count, bool) or min_count < 1:
        raise ValueError(f"min_count must be an integer >= 1, got {min_count!r}")
    kind, freq = _frequency(period)
    bins = period_bins(prob["time"].values, period, keep_empty=keep_empty)

    classes = prob["class"]
    n_classes = prob.sizes["class"]
    if n_classes > NODATA_LABEL:
        raise ValueError(f"at most {NODATA_LABEL} classes fit a uint8 label, got {n_classes}")
    if prob.chunks is not None and len(prob.chunks[prob.get_axis_num("class")]) > 1:
        prob = prob.chunk({"class": -1})  # the label, mode and margin need all classes of a pixel at once
    valid = prob.notnull().all("class")
    p = prob.where(valid)  # a date is valid for a pixel only when all its classes are
    per_date = label(prob)
    class_index = xr.DataArray(np.arange(n_classes, dtype=np.uint8), dims="class", coords={"class": classes})

    means, counts, modes = [], [], []
    for b in bins:
        sel = p.isel(time=b.index)
        count = valid.isel(time=b.index).sum("time").astype(np.int32)
        enough = count.where(count >= min_count)  # NaN below min_count: divisions give NaN, no warnings
        comp = sel.astype(np.float64).sum("time", skipna=True) / enough
        if method == "median":
            sel = sel.chunk({"time": -1}) if sel.chunks is not None else sel
            med = xr.apply_ufunc(_nanmedian, sel, input_core_dims=[["time"]], dask="parallelized",
                                 output_dtypes=[np.float64])
            total = med.sum("class", skipna=False)
            # all-zero medians (dates that all disagree) carry no information: the mean stands in
            comp = (med / total.where(total > 0)).fillna(comp)
        votes = (per_date.isel(time=b.index) == class_index).sum("time")
        # votes decide; equal votes go to the higher composite probability (0.5·p < 1 vote), then to class order
        score = votes + 0.5 * comp.fillna(0.0)
        mode = xr.apply_ufunc(_mode, score, input_core_dims=[["class"]], dask="parallelized", output_dtypes=[np.uint8])
        mode = mode.where(count >= min_count, NODATA_LABEL).astype(np.uint8)
        means.append(comp.astype(np.float32))
        counts.append(count)
        modes.append(mode)

    time = pd.Index(pd.DatetimeIndex([b.start for b in bins]).as_unit("ns"), name="time")
    mean = xr.concat(means, dim=time).transpose(*prob.dims)
    mean.name = "probability"
    lab = label(mean)
    margin = confidence(mean).margin
    mode = xr.concat(modes, dim=time).transpose(*lab.dims)
    count = xr.concat(counts, dim=time).transpose(*lab.dims)

    what = (f"{method} class probability over the valid dates per {kind if kind != 'freq' else freq} "
            f"(pandas bins {freq!r}, left-closed, labelled by start; min_count={min_count})")
    model = {k: v for k, v in prob.attrs.items() if k.startswith("model")}
    mean.attrs = {**{k: v for k, v in prob.attrs.items() if k != "history"},
                  "long_name": f"{method} class probability of the period", "units": "1"}
    lab.attrs = {**lab.attrs, "long_name": "most probable class of the composite probability"}
    mode.attrs = {**{k: v for k, v in lab.attrs.items() if k != "long_name"},
                  "long_name": "most frequent per-date label of the period (ties: higher composite probability, "
                               "then class order)"}
    margin.attrs = {"long_name": "margin between the two most probable classes of the composite probability",
                    "units": "1", **model}
    count.attrs = {"long_name": "number of valid dates in the period", "units": "1"}

    out = xr.Dataset({"probability": mean, "label": lab, "mode": mode, "margin": margin, "n_valid": count})
    out = out.assign_coords(
        period=("time", [b.name for b in bins]),
        period_end=("time", pd.DatetimeIndex([b.end for b in bins]).as_unit("ns").values),
        n_dates=("time", np.array([len(b.index) for b in bins], dtype=np.int32)),
    )
    out["time"].attrs = {"long_name": "start of the composite period"}
    out["period_end"].attrs = {"long_name": "end of the composite period (exclusive)"}
    out["n_dates"].attrs = {"long_name": "number of cube dates in the period"}
    out.attrs = {
        **prob.attrs,
        "composite_period": period,
        "composite_frequency": freq,
        "composite_method": method,
        "composite_min_count": int(min_count),
        "composite": what,
        "history": _history(prob.attrs, f"dwcube.composite.composite(period={period!r}, method={method!r}, "
                                        f"min_count={min_count}): {what}"),
    }
    return out

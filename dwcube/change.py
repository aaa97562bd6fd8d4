"""Change dating: per pixel, the date of a lasting change of class, with the class before and after.

The rule works on the hidden-Markov posterior of :func:`dwcube.temporal.smooth` (computed
here unless the input already is one), at the pixel's valid dates only:

1. the smoothed label of each valid date is the argmax of the posterior;
2. consecutive dates with the same label form *runs*; a run is *lasting* when it holds at
   least ``min_observations`` valid dates spanning at least ``min_duration`` days (first to
   last date of the run); shorter runs are left out (a short excursion between two runs of
   the same class is no change);
3. a *change* is a pair of consecutive lasting runs with different classes: ``from_class``
   is the earlier run's class, ``to_class`` the later one's;
4. it is dated by its bracket: ``last_before``, the last valid date labelled ``from_class``
   before the later run (a short excursion inside the earlier run does not cut it), and
   ``first_after``, the first date of the later run.  Usually they are consecutive valid
   dates; dates between them carry short runs of other classes (an error episode, a
   transient stage), so the bracket widens where the switch is uncertain.  ``change_date``
   is ``first_after``: the first valid observation of the new class, the date by which the
   change is seen.  The change happened in ``(last_before, first_after]``;
5. among the changes that pass ``from_classes`` / ``to_classes``, the first (``which="first"``)
   or the last (``which="last"``) is reported;
6. ``confidence`` = posterior of ``from_class`` at ``last_before`` × the mean posterior of
   ``to_class`` over the later run: near 1 when the pixel was surely ``from_class`` just
   before and surely ``to_class`` after; a score in 0–1, not a calibrated probability.

A change near the end of the series is reported only once its new class has lasted
``min_observations`` dates and ``min_duration`` days, so the product is stable as dates
are added.  :func:`changes_update` applies the same rule to a growing archive: it takes
only the new dates of the filtered posterior and a small per-pixel state (the open run,
the last lasting run, the change found so far), and gives the change maps that
:func:`changes` gives on the whole filtered series, bit for bit.  Run analysis is a small Numba kernel (one pixel at a time) fused with the
smoothing in one Dask task per ``(y, x)`` block; like the smoothing it is hand-written because
no maintained library dates class changes on xarray cubes (see :mod:`dwcube.temporal`).

Examples
--------
>>> from dwcube.testing import synthetic_probability_series
>>> prob, truth = synthetic_probability_series(16, 40, seed=11)
>>> loss = changes(prob, from_classes="trees")        # forest loss: trees → anything else
>>> sorted(loss.data_vars)
['change_date', 'confidence', 'first_after', 'from_class', 'last_before', 'to_class']
>>> found = loss.change_date.notnull().values
>>> int(found.sum()), int((truth.from_class == 1).sum())   # found, true forest-loss pixels
(46, 46)
>>> set(loss.from_class.values[found].tolist())
{1}
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

import numba
import numpy as np
import xarray as xr

from .classes import COLORS, NODATA_LABEL
from .temporal import (
    DEFAULT_FLOOR,
    DEFAULT_WEIGHT,
    Engine,
    TransitionModel,
    _as_tkn,
    _check_values,
    _posterior_tkn,
    _validate,
    _with_coords,
    spatial_dims,
)

__all__ = ["changes", "changes_update"]

_NAT = np.iinfo(np.int64).min
_DAY_NS = 86_400_000_000_000


@numba.njit(cache=True, nogil=True)
def _date_changes(g, tns, from_ok, to_ok, min_obs, min_ns, last_mode,  # type: ignore[no-untyped-def]
                  out_lb, out_fa, out_from, out_to, out_conf):
    """Runs of the argmax label over valid dates → the first/last lasting change per pixel.

    g (T, K, n) float32 posterior (NaN = no data); tns (T,) int64 ns; from_ok/to_ok (K,) bool.
    Writes out_lb/out_fa (n,) int64 ns (NaT none), out_from/out_to (n,) uint8 (255), out_conf (n,) float32.
    """
    n_t, k, n = g.shape
    # the argmax label of every pixel-date (−1: no data), date by date along contiguous rows
    label = np.empty((n_t, n), np.int16)
    best = np.empty(n, np.float32)
    for t in range(n_t):
        for i in range(n):
            best[i] = -1.0
            label[t, i] = 0
        for c in range(k):
            for i in range(n):
                v = g[t, c, i]
                if v > best[i]:
                    best[i] = v
                    label[t, i] = c
        for c in range(k):
            for i in range(n):
                if not np.isfinite(g[t, c, i]):
                    label[t, i] = -1
    idx = np.empty(n_t, np.int64)
    lab = np.empty(n_t, np.int64)
    rs = np.empty(n_t, np.int64)
    re = np.empty(n_t, np.int64)
    rc = np.empty(n_t, np.int64)
    for i in range(n):
        out_lb[i] = _NAT
        out_fa[i] = _NAT
        out_from[i] = 255
        out_to[i] = 255
        out_conf[i] = np.nan
        m = 0
        for t in range(n_t):
            if label[t, i] >= 0:
                idx[m] = t
                lab[m] = label[t, i]
                m += 1
        nr = 0
        for j in range(m):
            if j == 0 or lab[j] != lab[j - 1]:
                rs[nr] = j
                rc[nr] = lab[j]
                nr += 1
            re[nr - 1] = j
        prev = -1  # the latest lasting run
        prev_end = -1  # the last date labelled with its class so far (short runs of it included)
        for r in range(nr):
            if re[r] - rs[r] + 1 < min_obs or tns[idx[re[r]]] - tns[idx[rs[r]]] < min_ns:
                if prev >= 0 and rc[r] == rc[prev]:
                    prev_end = re[r]
                continue
            if prev >= 0 and rc[r] != rc[prev]:
                a = rc[prev]
                b = rc[r]
                if from_ok[a] and to_ok[b]:
                    lb = idx[prev_end]
                    fa = idx[rs[r]]
                    s = 0.0
                    for j in range(rs[r], re[r] + 1):
                        s += g[idx[j], b, i]
                    out_lb[i] = tns[lb]
                    out_fa[i] = tns[fa]
                    out_from[i] = a
                    out_to[i] = b
                    out_conf[i] = g[lb, a, i] * s / (re[r] - rs[r] + 1)
                    if not last_mode:
                        break
            prev = r
            prev_end = re[r]


def _block_changes(p: np.ndarray, *, times_ns: np.ndarray, smoothed: bool, from_ok: np.ndarray,
                   to_ok: np.ndarray, min_obs: int, min_ns: int, last_mode: bool, **smooth_kw: Any,
                   ) -> tuple[np.ndarray, ...]:
    shape = p.shape[:-2]
    g = _as_tkn(p)
    if smoothed:
        _check_values(g, axis=1)
    else:
        g = _posterior_tkn(g, times_ns, None, None, None, smooth=True, fill=False, **smooth_kw)[0]
    n = g.shape[2]
    tns = np.asarray(times_ns).astype("datetime64[ns]").view(np.int64)
    lb = np.empty(n, np.int64)
    fa = np.empty(n, np.int64)
    fr = np.empty(n, np.uint8)
    to = np.empty(n, np.uint8)
    conf = np.empty(n, np.float32)
    _date_changes(g, tns, from_ok, to_ok, int(min_obs), int(min_ns), bool(last_mode), lb, fa, fr, to, conf)
    return (lb.view("datetime64[ns]").reshape(shape), fa.view("datetime64[ns]").reshape(shape),
            fr.reshape(shape), to.reshape(shape), conf.reshape(shape))


def _class_mask(sel: str | int | Sequence[str | int] | None, names: list[str], what: str) -> np.ndarray:
    k = len(names)
    if sel is None:
        return np.ones(k, np.bool_)
    items = [sel] if isinstance(sel, (str, int, np.integer)) else list(sel)
    if not items:
        raise ValueError(f"{what} is empty; pass None for all classes")
    mask = np.zeros(k, np.bool_)
    for it in items:
        if isinstance(it, (int, np.integer)) and not isinstance(it, bool):
            if not 0 <= int(it) < k:
                raise ValueError(f"{what}: class index {it} out of range 0–{k - 1}")
            mask[int(it)] = True
        elif isinstance(it, str):
            if it not in names:
                raise ValueError(f"{what}: unknown class {it!r}; the cube's classes are {names}")
            mask[names.index(it)] = True
        else:
            raise TypeError(f"{what}: expected class names or indices, got {it!r}")
    return mask


def changes(probability: xr.DataArray, *, from_classes: str | int | Sequence[str | int] | None = None,
            to_classes: str | int | Sequence[str | int] | None = None, min_duration: float = 30.0,
            min_observations: int = 3, which: Literal["first", "last"] = "first", smoothed: bool | None = None,
            transitions: TransitionModel | None = None, weight: float = DEFAULT_WEIGHT, floor: float = DEFAULT_FLOOR,
            engine: Engine = "numba") -> xr.Dataset:
    """Date the lasting class changes of each pixel, lazily (see the module docstring for the rule).

    Parameters
    ----------
    probability
        Probability cube ``(time, class, y, x)`` as for :func:`dwcube.temporal.smooth`: the
        model's per-date probabilities (smoothed here), or a posterior already smoothed by
        it (``fill_gaps=False``; ``mode="filter"`` gives the near-real-time dating).
    from_classes, to_classes
        Only changes from / to these classes (names or indices; ``None``: any).  E.g.
        ``from_classes="trees"`` for forest loss, ``to_classes="built"`` for new buildings.
    min_duration
        Days a run of a class must span (first to last valid date) to count as lasting.
    min_observations
        Valid dates a run must hold to count as lasting (≥ 1).
    which
        ``"first"`` or ``"last"`` qualifying change when a pixel has several.
    smoothed
        ``True``: the input is already a smoothed posterior, use it as is; ``False``: smooth
        it first; ``None`` (default): decide from ``attrs["temporal_method"]``.
    transitions, weight, floor, engine
        Passed to the smoothing (see :func:`dwcube.temporal.smooth`); ignored when the input
        is already smoothed.

    Returns
    -------
    xarray.Dataset
        Over the input's spatial dims (``(y, x)`` or ``(latitude, longitude)``; its chunks and
        coordinates, ``spatial_ref`` included), fit for Zarr and plotting:
        ``change_date`` datetime64[ns] (= ``first_after``; NaT: no change),
        ``last_before`` and ``first_after`` datetime64[ns] (the dating bracket),
        ``from_class`` and ``to_class`` uint8 (255: none; CF ``flag_values`` /
        ``flag_meanings``), ``confidence`` float32 0–1 (NaN: none).  ``attrs``: the
        parameters, the smoothing's ``temporal_*`` attrs and the input's provenance.

    Examples
    --------
    >>> from dwcube.testing import synthetic_probability_series
    >>> prob, truth = synthetic_probability_series(16, 40, seed=5)
    >>> ch = changes(prob, min_observations=3, min_duration=30)
    >>> found = ch.change_date.notnull()
    >>> bool((ch.first_after.where(found) == truth.first_after.where(found)).sum() >= 0.9 * found.sum())
    True
    >>> ch.from_class.attrs["flag_meanings"].split()[:2]
    ['water', 'trees']
    """
    if which not in ("first", "last"):
        raise ValueError(f"which must be 'first' or 'last', got {which!r}")
    if int(min_observations) != min_observations or min_observations < 1:
        raise ValueError(f"min_observations must be a whole number >= 1, got {min_observations}")
    if not (min_duration >= 0 and np.isfinite(min_duration)):
        raise ValueError(f"min_duration must be a number of days >= 0, got {min_duration}")
    if smoothed is None:
        smoothed = str(probability.attrs.get("temporal_method", "")).startswith("hmm-")
    if smoothed and int(probability.attrs.get("temporal_fill_gaps", 0)):
        raise ValueError("the smoothed input has its gaps filled (fill_gaps=True): dates would be bracketed by "
                         "dates without observations; smooth with fill_gaps=False for change dating")
    cube, model = _validate(probability, transitions, weight, floor, engine)
    names = [str(c) for c in cube["class"].values]
    from_ok = _class_mask(from_classes, names, "from_classes")
    to_ok = _class_mask(to_classes, names, "to_classes")
    times = cube["time"].values.astype("datetime64[ns]")
    kwargs = {"times_ns": times, "smoothed": bool(smoothed), "from_ok": from_ok, "to_ok": to_ok,
              "min_obs": int(min_observations), "min_ns": round(min_duration * _DAY_NS),
              "last_mode": which == "last", "model": model, "weight": weight, "floor": floor, "engine": engine}
    lb, fa, fr, to, conf = xr.apply_ufunc(
        _block_changes, cube, input_core_dims=[["time", "class"]], output_core_dims=[[], [], [], [], []],
        dask="parallelized", output_dtypes=["datetime64[ns]", "datetime64[ns]", np.uint8, np.uint8, np.float32],
        keep_attrs=False, kwargs=kwargs,
    )
    ds = _change_dataset(lb, fa, fr, to, conf, names, probability)
    prov = {k: v for k, v in probability.attrs.items() if k not in ("long_name", "units")}
    if not smoothed:
        prov.update({"temporal_method": "hmm-forward-backward", "temporal_transition_model": model.to_json(),
                     "temporal_evidence_weight": float(weight), "temporal_evidence_floor": float(floor)})
    ds.attrs = {
        **prov,
        **_rule_attrs(names, from_ok, to_ok, min_duration, min_observations, which),
        "change_input_smoothed": int(bool(smoothed)),
    }
    return ds


def _rule_attrs(names: list[str], from_ok: np.ndarray, to_ok: np.ndarray, min_duration: float,
                min_observations: int, which: str) -> dict[str, Any]:
    return {
        "change_rule": "consecutive lasting runs of the smoothed argmax label (see dwcube.change)",
        "change_from_classes": " ".join(n for n, ok in zip(names, from_ok, strict=True) if ok),
        "change_to_classes": " ".join(n for n, ok in zip(names, to_ok, strict=True) if ok),
        "change_min_duration_days": float(min_duration),
        "change_min_observations": int(min_observations),
        "change_which": which,
    }


def _change_dataset(lb: xr.DataArray, fa: xr.DataArray, fr: xr.DataArray, to: xr.DataArray, conf: xr.DataArray,
                    names: list[str], probability: xr.DataArray) -> xr.Dataset:
    """The change maps over the input's spatial dims, with its coordinates (``spatial_ref`` included)."""
    pix = list(spatial_dims(probability))
    flags = {"flag_values": list(range(len(names))), "flag_meanings": " ".join(names),
             "flag_colors": " ".join(COLORS.get(c, "#000000") for c in names), "nodata": NODATA_LABEL}
    ds = xr.Dataset({
        "change_date": fa.transpose(*pix).assign_attrs(
            long_name="first valid observation of the new class after a lasting change (NaT: none)"),
        "last_before": lb.transpose(*pix).assign_attrs(long_name="last valid observation before the change"),
        "first_after": fa.transpose(*pix).assign_attrs(long_name="first valid observation after the change"),
        "from_class": fr.transpose(*pix).assign_attrs(long_name="class before the change", **flags),
        "to_class": to.transpose(*pix).assign_attrs(long_name="class after the change", **flags),
        "confidence": conf.transpose(*pix).assign_attrs(
            long_name="posterior of from_class just before x mean posterior of to_class after", units="1"),
    })
    ds = ds.drop_vars([c for c in ds.coords if c == "time" or "time" in ds[c].dims or c == "class"],
                      errors="ignore")
    return _with_coords(ds, probability)  # spatial_ref with its CRS



# -- near-real-time: the same rule, date batch by date batch ----------------------------------

#: Per-pixel variables of the :func:`changes_update` state, their dtypes and meanings.
_RUN_STATE = {
    "run_class": ("int16", "class of the open run (the latest label), -1: none yet"),
    "run_count": ("int32", "valid dates in the open run"),
    "run_first": ("datetime64[ns]", "first date of the open run"),
    "run_last": ("datetime64[ns]", "last date of the open run"),
    "run_sum": ("float64", "sum over the open run of its class's posterior"),
    "run_last_posterior": ("float32", "posterior of the open run's class on its last date"),
    "prev_class": ("int16", "class of the last lasting run before the open one, -1: none"),
    "prev_end": ("datetime64[ns]", "last date labelled prev_class (short runs of it included)"),
    "prev_end_posterior": ("float32", "posterior of prev_class on prev_end"),
    "found_last_before": ("datetime64[ns]", "last_before of the change found in closed runs"),
    "found_first_after": ("datetime64[ns]", "first_after of the change found in closed runs"),
    "found_from": ("uint8", "from_class of the change found in closed runs (255: none)"),
    "found_to": ("uint8", "to_class of the change found in closed runs (255: none)"),
    "found_confidence": ("float32", "confidence of the change found in closed runs"),
    "frozen": ("uint8", "1: the first qualifying change is final (which='first')"),
}


@numba.njit(cache=True, nogil=True)
def _advance_runs(g, tns, from_ok, to_ok, min_obs, min_ns, last_mode,  # type: ignore[no-untyped-def]
                  rc, rn, rf, rl, rs, rp, pc, pe, pp, flb, ffa, ffr, fto, fcf, frz,
                  out_lb, out_fa, out_from, out_to, out_conf):
    """Feed dates (T, K, n) to the run state of ``_RUN_STATE`` (arrays (n,), in place) and
    evaluate the change maps as :func:`_date_changes` would on the whole series."""
    n_t, k, n = g.shape
    for i in range(n):
        for t in range(n_t):
            if frz[i]:
                break
            lab = 0
            best = np.float32(-1.0)
            valid = True
            for c in range(k):
                v = g[t, c, i]
                if not np.isfinite(v):
                    valid = False
                elif v > best:
                    best = v
                    lab = c
            if not valid:
                continue
            if rc[i] == lab:
                rn[i] += 1
                rl[i] = tns[t]
                rs[i] += g[t, lab, i]
                rp[i] = g[t, lab, i]
                continue
            if rc[i] >= 0:  # the open run closes: the rule's step for one run
                if rn[i] < min_obs or rl[i] - rf[i] < min_ns:
                    if pc[i] >= 0 and rc[i] == pc[i]:
                        pe[i] = rl[i]
                        pp[i] = rp[i]
                else:
                    if pc[i] >= 0 and rc[i] != pc[i] and from_ok[pc[i]] and to_ok[rc[i]]:
                        flb[i] = pe[i]
                        ffa[i] = rf[i]
                        ffr[i] = pc[i]
                        fto[i] = rc[i]
                        fcf[i] = pp[i] * rs[i] / rn[i]
                        if not last_mode:
                            frz[i] = 1
                            break
                    pc[i] = rc[i]
                    pe[i] = rl[i]
                    pp[i] = rp[i]
            rc[i] = lab
            rn[i] = 1
            rf[i] = tns[t]
            rl[i] = tns[t]
            rs[i] = g[t, lab, i]
            rp[i] = g[t, lab, i]
        out_lb[i] = flb[i]
        out_fa[i] = ffa[i]
        out_from[i] = ffr[i]
        out_to[i] = fto[i]
        out_conf[i] = fcf[i]
        if frz[i] or rc[i] < 0:
            continue
        if rn[i] >= min_obs and rl[i] - rf[i] >= min_ns and pc[i] >= 0 and rc[i] != pc[i] \
                and from_ok[pc[i]] and to_ok[rc[i]]:  # the open run, as if the series ended here
            out_lb[i] = pe[i]
            out_fa[i] = rf[i]
            out_from[i] = pc[i]
            out_to[i] = rc[i]
            out_conf[i] = pp[i] * rs[i] / rn[i]


def _fresh_state(n: int) -> list[np.ndarray]:
    out = []
    for name, (dtype, _) in _RUN_STATE.items():
        if dtype.startswith("datetime"):
            out.append(np.full(n, _NAT, np.int64))
        elif name in ("run_class", "prev_class"):
            out.append(np.full(n, -1, np.int16))
        elif name in ("found_from", "found_to"):
            out.append(np.full(n, NODATA_LABEL, np.uint8))
        elif dtype.startswith("float"):
            out.append(np.full(n, np.nan if name != "run_sum" else 0.0, dtype))
        else:
            out.append(np.zeros(n, dtype))
    return out


def _block_update(p: np.ndarray, *state: np.ndarray, times_ns: np.ndarray, from_ok: np.ndarray, to_ok: np.ndarray,
                  min_obs: int, min_ns: int, last_mode: bool) -> tuple[np.ndarray, ...]:
    shape = p.shape[:-2]
    g = _as_tkn(p)
    _check_values(g, axis=1)
    n = g.shape[2]
    if state:
        st = []
        for (name, (dtype, _)), v in zip(_RUN_STATE.items(), state, strict=True):
            a = np.asarray(v).reshape(n)
            st.append(np.ascontiguousarray(a.astype("datetime64[ns]").view(np.int64) if dtype.startswith("datetime")
                                           else a.astype(dtype)))
    else:
        st = _fresh_state(n)
    outs = [np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n, np.uint8), np.empty(n, np.uint8),
            np.empty(n, np.float32)]
    tns = np.asarray(times_ns).astype("datetime64[ns]").view(np.int64)
    _advance_runs(g, tns, from_ok, to_ok, int(min_obs), int(min_ns), bool(last_mode), *st, *outs)
    res = [outs[0].view("datetime64[ns]"), outs[1].view("datetime64[ns]"), outs[2], outs[3], outs[4]]
    for (dtype, _), a in zip(_RUN_STATE.values(), st, strict=True):
        res.append(a.view("datetime64[ns]") if dtype.startswith("datetime") else a)
    return tuple(r.reshape(shape) for r in res)


def changes_update(filtered: xr.DataArray, state: xr.Dataset | None = None, *,
                   from_classes: str | int | Sequence[str | int] | None = None,
                   to_classes: str | int | Sequence[str | int] | None = None, min_duration: float = 30.0,
                   min_observations: int = 3, which: Literal["first", "last"] = "first",
                   ) -> tuple[xr.Dataset, xr.Dataset]:
    """Near-real-time change dating: new dates of the filtered posterior in, change maps and a new state out.

    The change maps after any sequence of updates equal
    ``changes(filtered_all_dates, smoothed=True, ...)`` exactly (same rule, same
    arithmetic): the state keeps, per pixel, the open run of the filtered label, the last
    lasting run before it and the change found in closed runs.  Feed it the output of
    :func:`dwcube.temporal.filter_update`, which equals the forward filter of the whole
    series date batch by date batch; the forward-backward smoothing of :func:`changes`
    would change old dates as new ones come, so it has no such update.

    Parameters
    ----------
    filtered
        The new dates' filtered probabilities ``(time, class, y, x)``
        (``attrs["temporal_method"] == "hmm-forward-filter"``, without ``fill_gaps``),
        all after the state's ``last_date``.
    state
        The state returned by the previous call, or ``None`` to start.
    from_classes, to_classes, min_duration, min_observations, which
        The rule, as for :func:`changes`; with a ``state`` they must be the state's.

    Returns
    -------
    alerts : xarray.Dataset
        The change maps over all dates so far, as :func:`changes` returns them.
    state : xarray.Dataset
        Per-pixel run state (see ``dwcube.change._RUN_STATE``), lazy when the input is; ``attrs``:
        the rule, the classes and ``last_date``.

    Examples
    --------
    >>> from dwcube.temporal import filter_update
    >>> from dwcube.testing import synthetic_probability_series
    >>> prob, _ = synthetic_probability_series(16, 40, seed=11)
    >>> filtered, _ = filter_update(prob)
    >>> whole = changes(filtered, min_observations=3)
    >>> alerts, state = changes_update(filtered.isel(time=slice(0, 25)), min_observations=3)
    >>> alerts, state = changes_update(filtered.isel(time=slice(25, None)), state)
    >>> all(np.array_equal(alerts[v], whole[v], equal_nan=True) for v in whole.data_vars)
    True
    >>> int(alerts.change_date.notnull().sum()) > 0
    True
    """
    method = str(filtered.attrs.get("temporal_method", ""))
    if method != "hmm-forward-filter" or int(filtered.attrs.get("temporal_fill_gaps", 0)):
        raise ValueError("changes_update needs the filtered probabilities of dwcube.filter_update (without "
                         f"fill_gaps); got attrs temporal_method={method or None!r}")
    cube, _ = _validate(filtered, None, DEFAULT_WEIGHT, DEFAULT_FLOOR, "numba")
    names = [str(c) for c in cube["class"].values]
    times = cube["time"].values.astype("datetime64[ns]")
    pix = list(spatial_dims(filtered))
    if state is not None:
        try:
            rule = json.loads(state.attrs["change_update_rule"])
            last_date = np.datetime64(state.attrs["last_date"], "ns")
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError(f"state attrs are incomplete or unreadable ({err}); was it made by changes_update?") \
                from None
        if rule["classes"] != names:
            raise ValueError(f"the state's classes {rule['classes']} differ from the cube's {names}")
        given = {"from_classes": from_classes, "to_classes": to_classes, "min_duration": min_duration,
                 "min_observations": min_observations, "which": which}
        defaults = {"from_classes": None, "to_classes": None, "min_duration": 30.0, "min_observations": 3,
                    "which": "first"}
        from_ok = np.array(rule["from_ok"], np.bool_)
        to_ok = np.array(rule["to_ok"], np.bool_)
        for key, value in given.items():
            if value == defaults[key]:
                continue
            if key in ("from_classes", "to_classes"):
                differs = not np.array_equal(_class_mask(value, names, key), from_ok if key == "from_classes"
                                             else to_ok)
            else:
                differs = value != rule[key]
            if differs:
                raise ValueError(f"{key}={value!r} differs from the state's rule ({key}: {rule.get(key)!r}); the "
                                 "alerts would change rule half-way")
        min_duration, min_observations, which = rule["min_duration"], rule["min_observations"], rule["which"]
        if times[0] <= last_date:
            raise ValueError(f"new dates must come after the state's last date {state.attrs['last_date']}; "
                             f"got {np.datetime_as_string(times[0], 's')}")
        for d in pix:
            if d not in state.dims or state.sizes[d] != cube.sizes[d]:
                raise ValueError(f"the state's {d!r} dimension differs from the cube's (not the same grid)")
    else:
        if which not in ("first", "last"):
            raise ValueError(f"which must be 'first' or 'last', got {which!r}")
        if int(min_observations) != min_observations or min_observations < 1:
            raise ValueError(f"min_observations must be a whole number >= 1, got {min_observations}")
        if not (min_duration >= 0 and np.isfinite(min_duration)):
            raise ValueError(f"min_duration must be a number of days >= 0, got {min_duration}")
        from_ok = _class_mask(from_classes, names, "from_classes")
        to_ok = _class_mask(to_classes, names, "to_classes")
        rule = {"classes": names, "from_ok": from_ok.tolist(), "to_ok": to_ok.tolist(),
                "min_duration": float(min_duration), "min_observations": int(min_observations), "which": which}
    kwargs = {"times_ns": times, "from_ok": from_ok, "to_ok": to_ok, "min_obs": int(min_observations),
              "min_ns": round(float(min_duration) * _DAY_NS), "last_mode": which == "last"}
    args: list[Any] = [cube]
    core_in: list[list[str]] = [["time", "class"]]
    if state is not None:
        chunks = dict(zip(cube.dims, cube.chunks, strict=True)) if cube.chunks else None
        for name in _RUN_STATE:
            v = state[name]
            args.append(v.chunk({d: chunks[d] for d in pix}) if chunks else v)
            core_in.append([])
    dtypes = ["datetime64[ns]", "datetime64[ns]", np.uint8, np.uint8, np.float32,
              *[d for d, _ in _RUN_STATE.values()]]
    outs = xr.apply_ufunc(
        _block_update, *args, input_core_dims=core_in, output_core_dims=[[]] * len(dtypes),
        dask="parallelized", output_dtypes=dtypes, keep_attrs=False, kwargs=kwargs,
    )
    lb, fa, fr, to, conf = outs[:5]
    alerts = _change_dataset(lb, fa, fr, to, conf, names, filtered)
    alerts.attrs = {**{k: v for k, v in filtered.attrs.items() if k not in ("long_name", "units")},
                    **_rule_attrs(names, from_ok, to_ok, float(min_duration), int(min_observations), which),
                    "change_input_smoothed": 1}
    new_state = xr.Dataset(
        {name: out.transpose(*pix).assign_attrs(long_name=doc)
         for (name, (_, doc)), out in zip(_RUN_STATE.items(), outs[5:], strict=True)},
        attrs={"change_update_rule": json.dumps(rule),
               "last_date": str(np.datetime_as_string(times[-1], "ns"))},
    )
    new_state = new_state.drop_vars([c for c in new_state.coords if c == "time" or "time" in new_state[c].dims
                                     or c == "class"], errors="ignore")
    return alerts, _with_coords(new_state, filtered)

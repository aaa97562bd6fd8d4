"""Temporal consistency of probability cubes: hidden-Markov smoothing and filtering, flicker.

Dynamic World classifies every date on its own, so a pixel's label flickers: a missed cloud
comes out as snow, a missed shadow as water, grass and crops trade places from one date to
the next.  This module treats each pixel's true class as a hidden Markov chain in *days*
and the model's per-date probabilities as evidence about it:

* :func:`smooth` — the forward–backward posterior of each date's class given the whole
  series (``mode="smooth"``), or given only the dates up to it (``mode="filter"``);
* :func:`filter_update` — the near-real-time case: update a saved :class:`xarray.Dataset`
  state with new dates without revisiting the past; date by date it ends in the same
  state as the whole series at once;
* :func:`flicker` — the share of label changes between consecutive valid observations,
  overall and per class, to compare raw and smoothed series;
* :class:`TransitionModel` — how fast each class changes and into what.

The model
---------
**Transitions.**  A discrete-time chain with a one-day step: a pixel of class ``i`` stays
one more day with probability ``s_i = 1 − 1/D_i``, where ``D_i`` is the class's expected
dwell time in days (the mean of the geometric dwell law), and otherwise moves to ``j ≠ i``
with probability proportional to the weight ``W[i, j]`` (0 forbids the move).  Between two
observations ``Δ`` calendar days apart (UTC; two acquisitions on the same day are
simultaneous) the transition matrix is the matrix power ``P(Δ) = P(1)^Δ`` — exact for the
chain, consistent however the time line is cut (``P(a)·P(b) = P(a + b)``), so a long cloud
gap allows more change than a short one.  The powers come from a table of ``P^0 … P^365``
and, for longer gaps, from ``P^(366·2^k)`` by binary decomposition.

**Evidence.**  Each valid date ``t`` enters with the likelihood

    ``L_t(j) = ((1 − ε) · p_t(j) + ε / K) ^ w``

with ``K`` classes, a floor ``ε`` (``floor``, default 0.1) and a tempering weight ``w``
(``weight``, default 1).  The floor bounds what a single date can do: one date shifts the
odds between two classes by at most ``((1 − ε + ε/K) / (ε/K)) ^ w`` (≈ 82 with the
defaults), so one confidently wrong date cannot beat the prior cost of a change *and* a
change back (for trees over 10-day gaps, odds of about 1 : 10⁷), while a few dates agreeing
can.  Tempering (``w < 1``) makes every date count less; use it when the model's errors are
correlated from one date to the next (the same haze, the same season) or its softmax is
over-confident.  The defaults were chosen on :func:`dwcube.testing.synthetic_probability_series`
(10 % wrong argmax, 30 % clouds): ``w = 0.5`` removes the flicker as well but dates fewer
changes within one observation (91–95 % of the events instead of 96–98 %), mostly between
similar classes (grass/crops, trees/shrub).  Dates where any class probability is NaN are
skipped: they add no evidence, only time.

**What the dwell times do.**  Accepting a change from ``i`` to ``j`` between two dates ``Δ``
days apart costs the prior odds ``≈ Δ/D_i · W[i, j]/Σ_k W[i, k]``; the evidence of the dates
after it has to pay for that.  Longer dwell times therefore need a few more agreeing dates
before a change is accepted (and resist more flicker), while *where* the change is placed
is set by where the evidence turns.  The defaults (:data:`DEFAULT_DWELL_DAYS`) let seasonal
classes (snow, water, flooded vegetation, crops, bare) come and go within a year, keep trees
for a decade and built land for a century.

**Recursion.**  The chain starts at a pixel's first valid observation with a uniform prior.
Forward (filtering): ``α_t ∝ (α_prev · P(Δ)) ⊙ L_t``; backward: ``β_prev ∝ P(Δ) · (L_t ⊙ β_t)``;
smoothed ``γ_t ∝ α_t ⊙ β_t``.  Every step is normalised (the scaled forward–backward), so
long series do not underflow; the arithmetic is float64, the output float32.  A pixel that
never had a valid date stays NaN.  With ``fill_gaps=True`` the dates without data get the
posterior too: between two observations ``∝ (α_a · P(t − a)) ⊙ (P(b − t) · L_b ⊙ β_b)``,
after the last one the prediction ``α_a · P(t − a)``, before the first one that of a chain
started on that date.

Why hand-written
----------------
No maintained library smooths class-probability series on xarray/Dask cubes: hmmlearn and
pomegranate fit HMMs to feature sequences with a fixed time step (no irregular ``Δt``, no
per-pixel missing dates, no cube layout), and ``nrt`` monitors spectral indices, not class
probabilities.  The recursion is therefore written here twice: a Numba kernel (one pixel at a
time, ``nogil``, no ``fastmath``, mapped over ``(y, x)`` blocks by Dask with time and class
whole; Dask's threads run the blocks in parallel) and a plain NumPy implementation of the
same recursion (vectorised over pixels, a loop over dates; ``engine="numpy"``) that the tests
validate the kernel against and the benchmark compares it with.

Examples
--------
>>> from dwcube.testing import synthetic_probability_series
>>> prob, truth = synthetic_probability_series(8, 30, seed=3)
>>> post = smooth(prob)
>>> post.dims, post.dtype.name, post.attrs["temporal_method"]
(('time', 'class', 'y', 'x'), 'float32', 'hmm-forward-backward')
>>> raw, smoothed = flicker(prob), flicker(post)
>>> bool(smoothed.overall < raw.overall)
True
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numba
import numpy as np
import xarray as xr

from .classes import CLASSES, NODATA_LABEL

__all__ = ["DEFAULT_DWELL_DAYS", "DEFAULT_FLOOR", "DEFAULT_UNLIKELY", "DEFAULT_WEIGHT", "TransitionModel",
           "filter_update", "flicker", "smooth", "spatial_dims"]

#: Nanoseconds in a day.
DAY_NS = 86_400_000_000_000
#: "No previous observation" in day numbers (int64 minimum, like NaT).
NO_DAY = np.iinfo(np.int64).min
_NAT = np.iinfo(np.int64).min
_TABLE = 366  # gaps 0 … 365 days: one matrix-vector product
_BIG = 24  # P^(366·2^k), k < 24: gaps up to ~ 8.4 million years
_GROUP = 256  # pixels gathered per group by the kernel (long contiguous reads, few pages)
_SUM_TOLERANCE = 0.02  # |sum over classes − 1| allowed on a valid pixel-date

#: Default expected dwell time per class (days): how long a pixel stays in a class before
#: it changes, on average.  Seasonal classes come and go within a year; built land hardly
#: ever reverts.
DEFAULT_DWELL_DAYS: dict[str, float] = {
    "water": 180.0,  # seasonal water: reservoirs, floods, dry riverbeds
    "trees": 3650.0,  # forest is stable for years; loss is clearing, gain is slow regrowth
    "grass": 730.0,  # grazing, mowing, conversion to crops or shrub
    "flooded_vegetation": 180.0,  # seasonal wetlands
    "crops": 365.0,  # the crop cycle: crops and bare soil (fallow, harvest) alternate
    "shrub_and_scrub": 1095.0,  # fire, clearing, succession
    "built": 36500.0,  # hardly ever reverts
    "bare": 365.0,  # fallow fields, construction sites, dry beds
    "snow_and_ice": 60.0,  # seasonal snow
}

#: Default moves made unlikely (weight 0.1 instead of 1): built land reverts through bare
#: ground (demolition), not straight to vegetation or water; water is filled before it is
#: built on.
DEFAULT_UNLIKELY: tuple[tuple[str, str], ...] = (
    ("built", "water"), ("built", "trees"), ("built", "grass"), ("built", "flooded_vegetation"),
    ("built", "crops"), ("built", "shrub_and_scrub"), ("water", "built"),
)

Engine = Literal["numba", "numpy"]

#: The dims of a probability cube besides its two spatial ones (any order is accepted); the
#: spatial dims are whatever the grid has: ``y``/``x`` on projected grids, ``latitude``/``longitude``
#: on geographic ones (as :func:`dwcube.load` names them).
DIMS = ("time", "class")

#: Default evidence weight ``w`` and floor ``ε`` (see the module docstring).
DEFAULT_WEIGHT = 1.0
DEFAULT_FLOOR = 0.1


# -- the transition model ----------------------------------------------------------------------


def _default_weights(classes: Sequence[str]) -> np.ndarray:
    k = len(classes)
    w = np.ones((k, k))
    np.fill_diagonal(w, 0.0)
    pos = {c: i for i, c in enumerate(classes)}
    for a, b in DEFAULT_UNLIKELY:
        if a in pos and b in pos:
            w[pos[a], pos[b]] = 0.1
    return w


@dataclass(frozen=True)
class TransitionModel:
    """How fast each class changes and into which classes, for :func:`smooth`.

    A pixel of class ``i`` stays one more day with probability ``1 − 1/dwell_days[i]`` and
    otherwise moves to class ``j ≠ i`` with probability proportional to ``weights[i][j]``.
    Over ``Δ`` days the transition matrix is :meth:`matrix` ``(Δ) = P(1)^Δ``.

    Parameters
    ----------
    dwell_days
        Expected dwell time per class in days (≥ 1; ``inf`` = never leaves): a sequence in
        the order of ``classes``, or a mapping ``{class name: days}`` whose missing classes
        take :data:`DEFAULT_DWELL_DAYS`.
    weights
        ``K × K`` relative weights of the moves (row = from, column = to; the diagonal is
        ignored; 0 forbids a move): an array-like, or a mapping ``{(from, to): weight}``
        applied on top of the defaults; ``None`` gives the defaults (all moves weight 1,
        :data:`DEFAULT_UNLIKELY` 0.1).
    classes
        Class names the rows and columns refer to (default: the nine Dynamic World classes).

    Examples
    --------
    >>> m = TransitionModel(dwell_days={"trees": 7300}, weights={("trees", "built"): 0})
    >>> P = m.matrix(30)               # transition matrix over 30 days
    >>> P.shape, bool(np.allclose(P.sum(1), 1))
    ((9, 9), True)
    >>> round(float(m.matrix(1)[1, 1]), 6)     # daily stay probability of trees
    0.999863
    """

    dwell_days: Any = field(default_factory=lambda: dict(DEFAULT_DWELL_DAYS))
    weights: Any = None
    classes: Sequence[str] = CLASSES

    def __post_init__(self) -> None:
        classes = tuple(str(c) for c in self.classes)
        k = len(classes)
        if k < 2 or len(set(classes)) != k:
            raise ValueError(f"TransitionModel needs at least two distinct classes, got {classes}")
        if isinstance(self.dwell_days, Mapping):
            unknown = set(self.dwell_days) - set(classes)
            if unknown:
                raise ValueError(f"dwell_days names unknown classes {sorted(unknown)}; classes are {classes}")
            missing = [c for c in classes if c not in self.dwell_days and c not in DEFAULT_DWELL_DAYS]
            if missing:
                raise ValueError(f"dwell_days gives no dwell time for {missing} and they have no default")
            dwell = tuple(float(self.dwell_days.get(c, DEFAULT_DWELL_DAYS.get(c, np.nan))) for c in classes)
        else:
            dwell = tuple(float(d) for d in self.dwell_days)
        if len(dwell) != k:
            raise ValueError(f"dwell_days has {len(dwell)} values for {k} classes")
        if any(not (d >= 1.0) for d in dwell):  # also catches NaN
            raise ValueError(f"dwell_days must be >= 1 day (or inf), got {dwell}")
        if self.weights is None or isinstance(self.weights, Mapping):
            w = _default_weights(classes)
            for key, value in (self.weights or {}).items():
                try:
                    a, b = key
                    w[classes.index(a), classes.index(b)] = float(value)
                except (ValueError, TypeError):
                    raise ValueError(f"weights keys must be (from, to) pairs of class names in {classes}, "
                                     f"got {key!r}") from None
        else:
            w = np.array(self.weights, dtype=np.float64)
            if w.shape != (k, k):
                raise ValueError(f"weights must be {k} x {k} (from, to), got shape {w.shape}")
        w = w.copy()
        np.fill_diagonal(w, 0.0)
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError("weights must be finite and >= 0")
        for i, c in enumerate(classes):
            if np.isfinite(dwell[i]) and w[i].sum() <= 0:
                raise ValueError(f"class {c!r} can leave (dwell {dwell[i]} days) but no move out of it is allowed; "
                                 "give it a positive weight to some class or dwell_days=inf")
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "dwell_days", dwell)
        object.__setattr__(self, "weights", tuple(tuple(float(v) for v in row) for row in w))

    @property
    def daily_stay(self) -> np.ndarray:
        """Probability of staying one more day, per class: ``1 − 1/dwell_days`` (shape ``(K,)``)."""
        return 1.0 - 1.0 / np.asarray(self.dwell_days)

    def matrix(self, days: int = 1) -> np.ndarray:
        """The transition matrix over ``days`` whole days, ``P(1)^days`` (``K × K``, rows sum to 1).

        Examples
        --------
        >>> TransitionModel().matrix(0)[0, :3]
        array([1., 0., 0.])
        """
        if int(days) != days or days < 0:
            raise ValueError(f"days must be a whole number >= 0, got {days}")
        return np.linalg.matrix_power(self._daily(), int(days))

    def _daily(self) -> np.ndarray:
        w = np.asarray(self.weights)
        s = self.daily_stay
        rows = w.sum(1, keepdims=True)
        move = np.divide(w, rows, out=np.zeros_like(w), where=rows > 0)
        return np.diag(s) + (1.0 - s)[:, None] * move

    def subset(self, classes: Sequence[str]) -> TransitionModel:
        """The model restricted to (and reordered as) ``classes``; moves renormalised among them.

        Examples
        --------
        >>> TransitionModel().subset(["trees", "water"]).classes
        ('trees', 'water')
        """
        classes = tuple(str(c) for c in classes)
        missing = [c for c in classes if c not in self.classes]
        if missing:
            raise ValueError(f"the transition model has no class {missing}; it knows {self.classes}")
        ix = [self.classes.index(c) for c in classes]
        w = np.asarray(self.weights)[np.ix_(ix, ix)]
        return TransitionModel(dwell_days=tuple(self.dwell_days[i] for i in ix), weights=w, classes=classes)

    def to_json(self) -> str:
        """A JSON string (for ``attrs`` and Zarr); :meth:`from_json` reads it back.

        Examples
        --------
        >>> m = TransitionModel(dwell_days={"water": 90})
        >>> TransitionModel.from_json(m.to_json()) == m
        True
        """
        return json.dumps({"classes": list(self.classes), "dwell_days": [d if math.isfinite(d) else "inf"
                                                                          for d in self.dwell_days],
                           "weights": [list(r) for r in self.weights]})

    @classmethod
    def from_json(cls, text: str) -> TransitionModel:
        """The model written by :meth:`to_json`."""
        d = json.loads(text)
        return cls(dwell_days=[float(v) for v in d["dwell_days"]], weights=d["weights"], classes=d["classes"])


@functools.lru_cache(maxsize=32)
def _tables(model: TransitionModel) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``P^d`` for d < 366 and ``P^(366·2^k)`` for k < 24 (float64), and their transposes."""
    p = model._daily()
    k = p.shape[0]
    tab = np.empty((_TABLE, k, k))
    tab[0] = np.eye(k)
    for d in range(1, _TABLE):
        tab[d] = tab[d - 1] @ p
    big = np.empty((_BIG, k, k))
    big[0] = tab[-1] @ p
    for j in range(1, _BIG):
        big[j] = big[j - 1] @ big[j - 1]
    tab_t = np.ascontiguousarray(tab.transpose(0, 2, 1))
    big_t = np.ascontiguousarray(big.transpose(0, 2, 1))
    for x in (tab, big, tab_t, big_t):
        x.flags.writeable = False
    return tab, big, tab_t, big_t


# -- the Numba kernel --------------------------------------------------------------------------


@numba.njit(cache=True, nogil=True)
def _matvec(v, m, d, out):  # type: ignore[no-untyped-def]
    """``out = v · m[d]`` (row vector times the matrix ``m[d]``; indexing, not slicing, keeps it cheap)."""
    k = v.shape[0]
    v0 = v[0]
    for j in range(k):
        out[j] = v0 * m[d, 0, j]
    for i in range(1, k):
        vi = v[i]
        for j in range(k):
            out[j] += vi * m[d, i, j]


@numba.njit(cache=True, nogil=True)
def _propagate(v, gap, tab, big, out, work):  # type: ignore[no-untyped-def]
    """``out = v · M^gap`` from the tables of ``M`` (``P`` forward; ``Pᵀ`` backward, ``P^gap · v``).

    Not normalised (the matrices are stochastic).
    """
    n_tab = tab.shape[0]
    if gap < n_tab:
        _matvec(v, tab, gap, out)
        return
    _matvec(v, tab, gap % n_tab, out)
    hi = gap // n_tab
    j = 0
    while hi > 0 and j < big.shape[0]:
        if hi & 1:
            for c in range(v.shape[0]):
                work[c] = out[c]
            _matvec(work, big, j, out)
        hi >>= 1
        j += 1


@numba.njit(cache=True, nogil=True)
def _normalise_into(x, out):  # type: ignore[no-untyped-def]
    s = 0.0
    for c in range(x.shape[0]):
        s += x[c]
    r = 1.0 / s
    for c in range(x.shape[0]):
        out[c] = x[c] * r


@numba.njit(cache=True, nogil=True)
def _hmm_kernel(p, day, post0, day0, cnt0, tab, big, tab_t, big_t, weight, floor,  # type: ignore[no-untyped-def]
                smooth, fill, out, post1, last1, cnt1, bad):
    """Scaled forward(–backward) recursion, one pixel at a time.

    Pixels go in groups of ``_GROUP``: each group's series are gathered from the time-major
    block into a pixel-major buffer (contiguous reads), processed, and scattered back.

    p (T, K, n) float32, time-major as the blocks of a (time, class, y, x) cube are; day (T,)
    int64 day numbers; post0 (n, K) float64 prior state, day0 (n,) its day (NO_DAY: none),
    cnt0 (n,) its count; tab, big the tables of P and tab_t, big_t of Pᵀ (see :func:`_tables`).
    Writes out (T, K, n) float32, post1 (n, K) the filtered state after the last date, last1
    (n,) the index of the last valid date in this batch (−1: none), cnt1 (n,) valid dates so far,
    and counts bad input in ``bad`` (see :func:`_bad_counts`) on the way.
    """
    n_t, k, n = p.shape
    alpha = np.empty((n_t, k))
    emis = np.empty((n_t, k))
    prev_valid = np.empty(n_t, np.int64)
    a = np.empty(k)
    b = np.empty(k)
    f = np.empty(k)
    g = np.empty(k)
    bp = np.empty(k)
    work = np.empty(k)
    keep = 1.0 - floor
    eps = floor / k
    uniform = 1.0 / k
    nan = np.float32(np.nan)
    pin = np.empty((_GROUP, n_t, k), np.float32)
    pout = np.empty((_GROUP, n_t, k), np.float32)
    for i0 in range(0, n, _GROUP):
        m = min(_GROUP, n - i0)
        for t in range(n_t):
            for c in range(k):
                for jj in range(m):
                    pin[jj, t, c] = p[t, c, i0 + jj]
        for jj in range(m):
            i = i0 + jj
            have0 = day0[i] != NO_DAY
            have = have0
            dprev = day0[i]
            for c in range(k):
                a[c] = post0[i, c]
            last = -1
            cnt = cnt0[i]
            # forward
            for t in range(n_t):
                ok = True
                total = 0.0
                for c in range(k):
                    x = pin[jj, t, c]
                    if not np.isfinite(x):
                        ok = False
                        if not np.isnan(x):
                            bad[0] += 1
                    elif x < 0:
                        bad[1] += 1
                        bad[2] = min(bad[2], x)
                    total += x
                if ok and abs(total - 1.0) > _SUM_TOLERANCE:
                    bad[3] += 1
                    bad[4] = min(bad[4], total)
                    bad[5] = max(bad[5], total)
                if not ok:
                    prev_valid[t] = last
                    if not smooth:
                        if fill and have:
                            _propagate(a, day[t] - dprev, tab, big, f, work)
                            _normalise_into(f, f)
                            for c in range(k):
                                pout[jj, t, c] = f[c]
                        else:
                            for c in range(k):
                                pout[jj, t, c] = nan
                    continue
                if weight == 1.0:
                    for c in range(k):
                        emis[t, c] = keep * pin[jj, t, c] + eps
                else:
                    for c in range(k):
                        emis[t, c] = math.pow(keep * pin[jj, t, c] + eps, weight)
                if have:
                    _propagate(a, day[t] - dprev, tab, big, f, work)
                else:
                    for c in range(k):
                        f[c] = uniform
                for c in range(k):
                    f[c] *= emis[t, c]
                _normalise_into(f, a)
                for c in range(k):
                    alpha[t, c] = a[c]
                have = True
                dprev = day[t]
                last = t
                cnt += 1
                prev_valid[t] = t
                if not smooth:
                    for c in range(k):
                        pout[jj, t, c] = a[c]
            for c in range(k):
                post1[i, c] = a[c] if have else np.nan
            last1[i] = last
            cnt1[i] = cnt
            if not smooth:
                continue
            # backward: b is β of the current valid date (scaled), bp = L ⊙ β of the next valid one
            nb = -1
            for c in range(k):
                b[c] = 1.0
            for t in range(n_t - 1, -1, -1):
                if prev_valid[t] == t:
                    for c in range(k):
                        g[c] = alpha[t, c] * b[c]
                    _normalise_into(g, g)
                    for c in range(k):
                        pout[jj, t, c] = g[c]
                        bp[c] = emis[t, c] * b[c]
                    _normalise_into(bp, bp)
                    nb = t
                    u = prev_valid[t - 1] if t > 0 else -1
                    if u >= 0:
                        _propagate(bp, day[t] - day[u], tab_t, big_t, b, work)
                    continue
                if not fill:
                    for c in range(k):
                        pout[jj, t, c] = nan
                    continue
                u = prev_valid[t]
                if u < 0 and not have0 and nb < 0:
                    for c in range(k):
                        pout[jj, t, c] = nan
                    continue
                if u >= 0:
                    _propagate(alpha[u], day[t] - day[u], tab, big, f, work)
                elif have0:
                    _propagate(post0[i], day[t] - day0[i], tab, big, f, work)
                else:
                    for c in range(k):
                        f[c] = uniform
                if nb >= 0:
                    _propagate(bp, day[nb] - day[t], tab_t, big_t, g, work)
                else:
                    for c in range(k):
                        g[c] = 1.0
                for c in range(k):
                    f[c] *= g[c]
                _normalise_into(f, f)
                for c in range(k):
                    pout[jj, t, c] = f[c]
        for t in range(n_t):
            for c in range(k):
                for jj in range(m):
                    out[t, c, i0 + jj] = pout[jj, t, c]


# -- the NumPy implementation of the same recursion ---------------------------------------------


def _norm(v: np.ndarray) -> np.ndarray:
    return v / v.sum(-1, keepdims=True)


def _hmm_numpy(p: np.ndarray, day: np.ndarray, post0: np.ndarray, day0: np.ndarray, cnt0: np.ndarray,
               daily: np.ndarray, weight: float, floor: float, smooth: bool, fill: bool,
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The recursion of :func:`_hmm_kernel`, vectorised over pixels with a loop over dates.

    ``p`` and the result are time-major, ``(T, n, K)``, so that each date is one contiguous
    slab.  Transition matrices are ``numpy.linalg.matrix_power(daily, gap)`` per distinct gap,
    an independent route to the kernel's tables.  Otherwise the same arguments and results as
    the kernel (returned instead of written).
    """
    n_t, n, k = p.shape
    cache: dict[int, np.ndarray] = {}

    def prop(v: np.ndarray, gaps: np.ndarray, forward: bool) -> np.ndarray:
        """v · P^gap (forward) or P^gap · v (backward) per row, grouping the rows by gap."""
        out = np.empty_like(v)
        uniq, inv, counts = np.unique(gaps, return_inverse=True, return_counts=True)
        order = np.argsort(inv, kind="stable")
        start = 0
        for gap, count in zip(uniq, counts, strict=True):
            m = cache.get(int(gap))
            if m is None:
                m = cache[int(gap)] = np.linalg.matrix_power(daily, int(gap))
            rows = order[start:start + count]
            start += count
            out[rows] = v[rows] @ (m if forward else m.T)
        return _norm(out)

    def emission(t: int) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return ((1.0 - floor) * pt[t].astype(np.float64) + floor / k) ** weight

    pt = p
    valid = np.isfinite(pt).all(-1)  # (T, n)
    have0 = day0 != NO_DAY
    have = have0.copy()
    a = np.where(have0[:, None], post0, np.nan)
    dprev = day0.copy()
    cnt = cnt0.astype(np.int64).copy()
    last = np.full(n, -1, np.int64)
    alpha = np.full((n_t, n, k), np.nan)
    out = np.full((n_t, n, k), np.nan, np.float32)
    prev_valid = np.full((n_t, n), -1, np.int64)
    for t in range(n_t):
        v = valid[t]
        pred = np.full((n, k), 1.0 / k)
        hv = v & have
        pred[hv] = prop(a[hv], day[t] - dprev[hv], True)
        new = _norm(pred * np.where(v[:, None], emission(t), 1.0))
        if not smooth and fill:
            m = ~v & have
            out[t, m] = prop(a[m], day[t] - dprev[m], True)
        a[v] = new[v]
        alpha[t] = np.where(v[:, None], new, np.nan)
        dprev[v] = day[t]
        have |= v
        cnt += v
        last[v] = t
        prev_valid[t] = last
        if not smooth:
            out[t, v] = new[v]
    post1 = np.where(have[:, None], a, np.nan)
    if smooth:
        b = np.ones((n, k))
        bp = np.ones((n, k))
        nb = np.full(n, -1, np.int64)
        rows = np.arange(n)
        for t in range(n_t - 1, -1, -1):
            v = valid[t]
            out[t, v] = _norm(alpha[t, v] * b[v])
            bp[v] = _norm(emission(t)[v] * b[v])
            nb[v] = t
            u = prev_valid[t - 1] if t > 0 else np.full(n, -1)
            m = v & (u >= 0)
            b[m] = prop(bp[m], day[t] - day[u[m]], False)
            if fill:
                u = prev_valid[t]
                fwd = np.full((n, k), 1.0 / k)
                m = ~v & (u >= 0)
                fwd[m] = prop(alpha[u[m], rows[m]], day[t] - day[u[m]], True)
                m = ~v & (u < 0) & have0
                fwd[m] = prop(post0[m], day[t] - day0[m], True)
                bwd = np.ones((n, k))
                m = ~v & (nb >= 0)
                bwd[m] = prop(bp[m], day[nb[m]] - day[t], False)
                m = ~v & ((u >= 0) | have0 | (nb >= 0))
                out[t, m] = _norm(fwd[m] * bwd[m])
    return out, post1, last, cnt


# -- block functions and checks -----------------------------------------------------------------


def _days(ns: np.ndarray) -> np.ndarray:
    """Calendar day numbers (UTC) of datetime64[ns] values as int64; NaT → NO_DAY."""
    v = np.asarray(ns).astype("datetime64[ns]").view(np.int64)
    return np.where(v == _NAT, NO_DAY, np.floor_divide(v, DAY_NS))


def _bad_counts() -> np.ndarray:
    """Bad-input tallies: [infinite values, negative values, smallest value, sums off 1, smallest sum, largest sum]."""
    return np.array([0.0, 0.0, np.inf, 0.0, np.inf, -np.inf])


def _raise_bad(bad: np.ndarray) -> None:
    """ValueError naming the problem when the tallies of :func:`_bad_counts` found any."""
    if bad[0]:
        raise ValueError(f"probability holds {int(bad[0])} infinite values; only NaN may mark no data")
    if bad[1]:
        raise ValueError(f"probability holds {int(bad[1])} negative values (min {bad[2]:.3g}); class probabilities "
                         "must be >= 0")
    if bad[3]:
        raise ValueError(f"probability does not sum to 1 over 'class' on {int(bad[3])} valid pixel-dates (sums "
                         f"{bad[4]:.3g} … {bad[5]:.3g}); pass class probabilities, not logits or scaled values")


def _check_values(p: np.ndarray, axis: int = -1) -> None:
    """Infinite, negative or non-normalised probabilities (class along ``axis``): ValueError naming the problem."""
    bad = _bad_counts()
    bad[0] = np.isinf(p).sum()
    with np.errstate(invalid="ignore"):
        neg = p < 0
        bad[1] = neg.sum()
        if bad[1]:
            bad[2] = p[neg].min()
        sums = p.sum(axis)
    off = np.isfinite(sums) & (np.abs(sums - 1.0) > _SUM_TOLERANCE)
    bad[3] = off.sum()
    if bad[3]:
        bad[4], bad[5] = sums[off].min(), sums[off].max()
    _raise_bad(bad)


def _run(p: np.ndarray, times_ns: np.ndarray, post0: np.ndarray | None, last0_ns: np.ndarray | None,
         cnt0: np.ndarray | None, *, model: TransitionModel, weight: float, floor: float, smooth: bool,
         fill: bool, engine: Engine) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One block: p (..., T, K) → posterior (..., T, K) float32, state (..., K), last time (...), count (...).

    ``p`` is what ``apply_ufunc`` hands over: a transposed view of a ``(T, K, ...)`` block.  The
    kernel works on that block's own layout, ``(T, K, n)``, so neither the input nor the output
    is copied into another layout here.
    """
    shape = p.shape[:-2]
    n_t, k = p.shape[-2:]
    out, post1, last_ns, cnt1 = _posterior_tkn(_as_tkn(p), times_ns, post0, last0_ns, cnt0, model=model,
                                               weight=weight, floor=floor, smooth=smooth, fill=fill, engine=engine)
    out = np.moveaxis(out.reshape(n_t, k, *shape), (0, 1), (-2, -1))
    return out, post1.reshape(*shape, k), last_ns.reshape(shape), cnt1.reshape(shape)


def _as_tkn(p: np.ndarray) -> np.ndarray:
    """A ``(..., T, K)`` array as C-contiguous float32 ``(T, K, n)`` (no copy for a transposed block)."""
    n_t, k = p.shape[-2:]
    return np.ascontiguousarray(np.moveaxis(p, (-2, -1), (0, 1)).reshape(n_t, k, -1), dtype=np.float32)


def _posterior_tkn(pp: np.ndarray, times_ns: np.ndarray, post0: np.ndarray | None, last0_ns: np.ndarray | None,
                   cnt0: np.ndarray | None, *, model: TransitionModel, weight: float, floor: float, smooth: bool,
                   fill: bool, engine: Engine) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """pp (T, K, n) float32 → posterior (T, K, n) float32, state (n, K), last time (n,) datetime64, count (n,)."""
    n_t, k, n = pp.shape
    day = _days(times_ns)
    if post0 is None:
        post0_ = np.full((n, k), np.nan)
        last0 = np.full(n, _NAT, np.int64)
        cnt0_ = np.zeros(n, np.int64)
    else:
        post0_ = np.ascontiguousarray(post0.reshape(n, k), dtype=np.float64)
        last0 = np.asarray(last0_ns).astype("datetime64[ns]").reshape(n).view(np.int64)
        cnt0_ = np.asarray(cnt0).reshape(n).astype(np.int64)
    day0 = _days(last0.view("datetime64[ns]"))
    if engine == "numba":
        tab, big, tab_t, big_t = _tables(model)
        out = np.empty((n_t, k, n), np.float32)
        post1 = np.empty((n, k))
        last1 = np.empty(n, np.int64)
        cnt1 = np.empty(n, np.int64)
        bad = _bad_counts()
        _hmm_kernel(pp, day, post0_, day0, cnt0_, tab, big, tab_t, big_t, float(weight), float(floor), bool(smooth),
                    bool(fill), out, post1, last1, cnt1, bad)
        _raise_bad(bad)
    else:
        _check_values(pp, axis=1)
        out, post1, last1, cnt1 = _hmm_numpy(np.ascontiguousarray(pp.transpose(0, 2, 1)), day, post0_, day0, cnt0_,
                                             model._daily(), float(weight), float(floor), bool(smooth), bool(fill))
        out = out.transpose(0, 2, 1)
    tns = np.asarray(times_ns).astype("datetime64[ns]").view(np.int64)
    last_ns = np.where(last1 >= 0, tns[np.maximum(last1, 0)], last0)
    return out, post1, last_ns.view("datetime64[ns]"), cnt1.astype(np.int32)


def _block_posterior(p: np.ndarray, **kw: Any) -> np.ndarray:
    return _run(p, kw.pop("times_ns"), None, None, None, **kw)[0]


def _block_filter(p: np.ndarray, *state: np.ndarray, **kw: Any) -> tuple[np.ndarray, ...]:
    post0, last0, cnt0 = state if state else (None, None, None)
    return _run(p, kw.pop("times_ns"), post0, last0, cnt0, smooth=False, **kw)



def spatial_dims(probability: xr.DataArray) -> tuple[str, str]:
    """The two spatial dims of a probability cube ``(time, class, <row dim>, <column dim>)``, in its order.

    Raises
    ------
    ValueError
        The cube is not four-dimensional with ``time`` and ``class`` among its dims.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> spatial_dims(xr.DataArray(np.zeros((2, 3, 4, 5)), dims=("time", "class", "latitude", "longitude")))
    ('latitude', 'longitude')
    """
    dims = tuple(str(d) for d in probability.dims)
    other = tuple(d for d in dims if d not in DIMS)
    if probability.ndim != 4 or not set(DIMS) <= set(dims) or len(other) != 2:
        raise ValueError(f"expected a probability cube with dims (time, class, and two spatial dims such as y, x or "
                         f"latitude, longitude; any order), got {probability.dims}")
    return other[0], other[1]


def _validate(probability: Any, transitions: TransitionModel | None, weight: float, floor: float,
              engine: str) -> tuple[xr.DataArray, TransitionModel]:
    """Check the cube's layout and the parameters; returns the cube (time, class whole) and the model."""
    if not isinstance(probability, xr.DataArray):
        raise TypeError(f"expected the probability cube as an xarray.DataArray, got {type(probability).__name__}")
    spatial_dims(probability)
    if "class" not in probability.coords:
        raise ValueError("the probability cube has no 'class' coordinate; it must name the classes "
                         f"(Dynamic World order: {list(CLASSES)})")
    if "time" not in probability.coords or not np.issubdtype(probability["time"].dtype, np.datetime64):
        raise ValueError("the probability cube needs a datetime64 'time' coordinate")
    if probability.sizes["time"] < 1:
        raise ValueError("the probability cube has no dates")
    t = probability["time"].values.astype("datetime64[ns]")
    if np.isnat(t).any() or (np.diff(t.view(np.int64)) <= 0).any():
        raise ValueError("'time' must be strictly increasing, without NaT (sort the cube with .sortby('time'))")
    if not np.issubdtype(probability.dtype, np.floating):
        raise ValueError(f"probabilities must be floating point in 0–1, got dtype {probability.dtype} "
                         "(decode or rescale stored integers first)")
    if probability.sizes["class"] > NODATA_LABEL:
        raise ValueError(f"at most {NODATA_LABEL} classes are supported, got {probability.sizes['class']}")
    if not (weight > 0 and math.isfinite(weight)):
        raise ValueError(f"weight must be a finite number > 0, got {weight}")
    if not (0 < floor <= 1):
        raise ValueError(f"floor must be in (0, 1], got {floor}")
    if engine not in ("numba", "numpy"):
        raise ValueError(f"engine must be 'numba' or 'numpy', got {engine!r}")
    names = [str(c) for c in probability["class"].values]
    model = transitions if transitions is not None else TransitionModel()
    if not isinstance(model, TransitionModel):
        raise TypeError(f"transitions must be a TransitionModel, got {type(model).__name__}")
    if tuple(names) != model.classes:
        model = model.subset(names)
    return _whole_time(probability), model


def _whole_time(probability: xr.DataArray) -> xr.DataArray:
    """Time and class in one chunk; (y, x) chunks split when a block would exceed dask's chunk size."""
    if not probability.chunks:
        return probability
    import dask
    from dask.utils import parse_bytes

    cube = probability.chunk({"time": -1, "class": -1})
    chunks = dict(zip(cube.dims, cube.chunks, strict=True))
    per_pixel = cube.sizes["time"] * cube.sizes["class"] * cube.dtype.itemsize
    limit = parse_bytes(dask.config.get("array.chunk-size"))
    ydim, xdim = spatial_dims(cube)
    cy, cx = max(chunks[ydim]), max(chunks[xdim])
    if per_pixel * cy * cx > limit:
        side = max(int(math.sqrt(limit / per_pixel)), 1)
        cube = cube.chunk({d: -(-c // -(-c // side)) for d, c in ((ydim, cy), (xdim, cx))})  # equal parts ≤ side
    return cube


def _with_coords(out: xr.DataArray | xr.Dataset, source: xr.DataArray) -> Any:
    """``out`` with the source's non-index coordinates as they were, where ``out`` has their dims
    (``apply_ufunc`` drops the attributes of ``spatial_ref``, which carry the grid's CRS)."""
    keep = {k: source.coords[k] for k in out.coords
            if k in source.coords and k not in out.indexes and set(source.coords[k].dims) <= set(out.dims)}
    return out.assign_coords(keep)


def _attrs(probability: xr.DataArray, model: TransitionModel, mode: str, weight: float, floor: float,
           fill: bool) -> dict[str, Any]:
    return {
        **probability.attrs,
        "long_name": "smoothed class probability" if mode == "smooth" else "filtered class probability",
        "units": "1",
        "temporal_method": "hmm-forward-backward" if mode == "smooth" else "hmm-forward-filter",
        "temporal_transition_model": model.to_json(),
        "temporal_evidence_weight": float(weight),
        "temporal_evidence_floor": float(floor),
        "temporal_fill_gaps": int(bool(fill)),
        "temporal_time_step": "1 day (UTC calendar days)",
    }


# -- public functions ---------------------------------------------------------------------------


def smooth(probability: xr.DataArray, transitions: TransitionModel | None = None, *,
           mode: Literal["smooth", "filter"] = "smooth", weight: float = DEFAULT_WEIGHT, floor: float = DEFAULT_FLOOR,
           fill_gaps: bool = False, engine: Engine = "numba") -> xr.DataArray:
    """Hidden-Markov posterior class probabilities per pixel and date, lazily.

    Parameters
    ----------
    probability
        Probability cube ``(time, class, y, x)`` (any order; the spatial dims are the grid's,
        ``y``/``x`` or ``latitude``/``longitude``), float, summing to 1 over
        ``class`` where valid and NaN where there is no data; NumPy- or Dask-backed.  The
        ``class`` coordinate names the classes (a subset or another order of the Dynamic
        World classes is fine when ``transitions`` knows them).
    transitions
        The :class:`TransitionModel` (default: ``TransitionModel()``).
    mode
        ``"smooth"``: each date given the whole series (forward–backward);
        ``"filter"``: each date given the dates up to it (forward only), what a
        near-real-time system knows on that date.
    weight
        Tempering exponent ``w`` of the evidence, > 0 (1 = trust the probabilities as
        likelihoods; smaller = each date counts less).
    floor
        Floor ``ε`` in (0, 1] mixed into the probabilities: one date changes the odds
        between two classes by at most ``((1 − ε + ε/K)/(ε/K))^w``.
    fill_gaps
        ``False`` (default): NaN wherever the input is NaN (the input's no-data mask is
        kept).  ``True``: also the posterior on dates without data — between, before and
        after a pixel's observations (in ``"filter"`` mode only after its first one).
    engine
        ``"numba"`` (default) or ``"numpy"``: the plain NumPy implementation of the same
        recursion (slower; for validation and benchmarks).

    Returns
    -------
    xarray.DataArray
        Named ``probability``, float32, the input's dims, coords and spatial chunks
        (time and class in one chunk; spatial chunks are made smaller only where a block
        holding every date would exceed dask's ``array.chunk-size``), summing to 1 over
        ``class``.  NaN where the input is NaN (unless ``fill_gaps``) and always for
        pixels that never had a valid date.
        ``attrs``: the input's (provenance) plus ``temporal_method``,
        ``temporal_transition_model`` (JSON), ``temporal_evidence_weight``,
        ``temporal_evidence_floor``, ``temporal_fill_gaps``.

    Raises
    ------
    ValueError
        Wrong dims, no ``class`` coordinate, unsorted ``time``, classes the transition
        model does not know, non-float data, negative values, sums away from 1.  The value
        checks run at call time for NumPy-backed cubes and at compute time, per block, for
        Dask-backed ones.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> p = np.array([[.8, .2], [.8, .2], [.1, .9], [np.nan, np.nan], [.8, .2], [.8, .2]])
    >>> prob = xr.DataArray(p.T[None, :, :, None].transpose(2, 1, 0, 3).astype("float32"),
    ...     dims=("time", "class", "y", "x"), coords={"class": ["trees", "built"],
    ...     "time": np.datetime64("2024-01-01") + np.arange(6) * np.timedelta64(10, "D")})
    >>> from dwcube.probability import label
    >>> label(smooth(prob)).values.ravel().tolist()   # the lone "built" date is overturned
    [0, 0, 0, 255, 0, 0]
    >>> smooth(prob, fill_gaps=True).isel(time=3).values.ravel().astype(float).round(2).tolist()
    [0.95, 0.05]
    """
    if mode not in ("smooth", "filter"):
        raise ValueError(f"mode must be 'smooth' or 'filter', got {mode!r}")
    cube, model = _validate(probability, transitions, weight, floor, engine)
    times = cube["time"].values.astype("datetime64[ns]")
    out = xr.apply_ufunc(
        _block_posterior, cube, input_core_dims=[["time", "class"]], output_core_dims=[["time", "class"]],
        dask="parallelized", output_dtypes=[np.float32], keep_attrs=False,
        kwargs={"times_ns": times, "model": model, "weight": weight, "floor": floor, "smooth": mode == "smooth",
                "fill": fill_gaps, "engine": engine},
    )
    out = _with_coords(out.transpose(*probability.dims), probability)
    out.name = "probability"
    out.attrs = _attrs(probability, model, mode, weight, floor, fill_gaps)
    return out


def filter_update(probability: xr.DataArray, state: xr.Dataset | None = None,
                  transitions: TransitionModel | None = None, *, weight: float | None = None,
                  floor: float | None = None, fill_gaps: bool = False, engine: Engine = "numba",
                  ) -> tuple[xr.DataArray, xr.Dataset]:
    """Forward-only (filtering) update: new dates in, filtered probabilities and a new state out.

    The near-real-time case for archives that grow: keep the state (write it next to the
    archive, e.g. ``state.to_zarr(...)``) and feed only the new dates.  Applying it date
    by date (or batch by batch) ends in the same state as the whole series at once, and
    the filtered probabilities equal ``smooth(whole_series, mode="filter")`` on the new
    dates.

    Parameters
    ----------
    probability
        The new dates: a probability cube ``(time, class, y, x)`` as for :func:`smooth`,
        on the state's grid and classes, all dates after the state's ``last_date``.
    state
        The state returned by the previous call, or ``None`` to start.
    transitions, weight, floor
        As for :func:`smooth`; with a ``state``, ``None`` takes the state's, and values that
        differ from the state's raise ValueError (the chain would change model half-way).
        Without one, the defaults are ``TransitionModel()``, 1.0 and 0.1.
    fill_gaps
        Also give the predicted probabilities on dates without data (after a pixel's first
        observation).
    engine
        ``"numba"`` or ``"numpy"`` (see :func:`smooth`).

    Returns
    -------
    filtered : xarray.DataArray
        Filtered probabilities of the new dates (float32, like :func:`smooth`).
    state : xarray.Dataset
        ``posterior`` (class, y, x) float64 (the cube's spatial dims): the filtered probabilities after the last
        valid observation (NaN for pixels never observed); ``last_observation`` (y, x)
        datetime64[ns]: its time (NaT: none); ``observations`` (y, x) int32: valid dates
        so far.  ``attrs``: the model (``temporal_transition_model`` JSON,
        ``temporal_evidence_weight``, ``temporal_evidence_floor``), ``last_date`` (ISO, the
        last date fed) and the input's provenance.  Lazy when the input is; fit for Zarr.

    Examples
    --------
    >>> from dwcube.testing import synthetic_probability_series
    >>> prob, _ = synthetic_probability_series(8, 12, seed=2)
    >>> state = None
    >>> for t in range(prob.sizes["time"]):          # date by date
    ...     _, state = filter_update(prob.isel(time=[t]), state)
    >>> _, whole = filter_update(prob)                 # all at once
    >>> bool(np.allclose(state.posterior, whole.posterior, equal_nan=True))
    True
    >>> state.attrs["last_date"]
    '2021-04-25T10:26:00.000000000'
    """
    if state is not None:
        if not isinstance(state, xr.Dataset) or not {"posterior", "last_observation", "observations"} <= set(state):
            raise ValueError("state must be the Dataset returned by filter_update (posterior, last_observation, "
                             "observations)")
        try:
            s_model = TransitionModel.from_json(state.attrs["temporal_transition_model"])
            s_weight = float(state.attrs["temporal_evidence_weight"])
            s_floor = float(state.attrs["temporal_evidence_floor"])
            last_date = np.datetime64(state.attrs["last_date"], "ns")
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError(f"state attrs are incomplete or unreadable ({err}); was it made by filter_update?") from None
        names = tuple(str(c) for c in probability["class"].values) if "class" in probability.coords else None
        if names is not None and tuple(str(c) for c in state["class"].values) != names:
            raise ValueError(f"the state's classes {list(state['class'].values)} differ from the cube's {list(names)}")
        if transitions is not None and transitions.subset(s_model.classes) != s_model:
            raise ValueError("transitions differ from the state's transition model")
        if weight is not None and weight != s_weight or floor is not None and floor != s_floor:
            raise ValueError(f"weight/floor ({weight}, {floor}) differ from the state's ({s_weight}, {s_floor})")
        transitions, weight, floor = s_model, s_weight, s_floor
    weight = DEFAULT_WEIGHT if weight is None else weight
    floor = DEFAULT_FLOOR if floor is None else floor
    cube, model = _validate(probability, transitions, weight, floor, engine)
    pix = spatial_dims(cube)
    times = cube["time"].values.astype("datetime64[ns]")
    kwargs = {"times_ns": times, "model": model, "weight": weight, "floor": floor, "fill": fill_gaps,
              "engine": engine}
    core_in = [["time", "class"]]
    args: list[Any] = [cube]
    if state is not None:
        if times[0] <= last_date:
            raise ValueError(f"new dates must come after the state's last date {state.attrs['last_date']}; "
                             f"got {np.datetime_as_string(times[0], 's')}")
        for d in pix:
            if d not in state.dims:
                raise ValueError(f"the state has no {d!r} dimension (its dims: {tuple(state.dims)}); it was made "
                                 "on another grid")
            if state.sizes[d] != cube.sizes[d] or (d in state.coords and d in cube.coords
                                                   and not np.array_equal(state[d].values, cube[d].values)):
                raise ValueError(f"the state's {d!r} coordinate differs from the cube's (not the same grid)")
        post0, last0, cnt0 = state["posterior"], state["last_observation"], state["observations"]
        if cube.chunks:
            chunks = dict(zip(cube.dims, cube.chunks, strict=True))
            post0, last0, cnt0 = (v.chunk({**{d: chunks[d] for d in pix}, **({"class": -1} if "class" in v.dims
                                                                                 else {})})
                                  for v in (post0, last0, cnt0))
        args += [post0, last0, cnt0]
        core_in += [["class"], [], []]
    filtered, post, last, cnt = xr.apply_ufunc(
        _block_filter, *args, input_core_dims=core_in,
        output_core_dims=[["time", "class"], ["class"], [], []], dask="parallelized",
        output_dtypes=[np.float32, np.float64, "datetime64[ns]", np.int32], keep_attrs=False, kwargs=kwargs,
    )
    filtered = _with_coords(filtered.transpose(*probability.dims), probability)
    filtered.name = "probability"
    filtered.attrs = _attrs(probability, model, "filter", weight, floor, fill_gaps)
    prov = {k: v for k, v in probability.attrs.items() if not k.startswith("temporal_") and k not in ("long_name",
                                                                                                        "units")}
    new_state = xr.Dataset(
        {
            "posterior": post.transpose("class", *pix).assign_attrs(
                long_name="filtered class probability after the last valid observation", units="1"),
            "last_observation": last.assign_attrs(long_name="time of the last valid observation"),
            "observations": cnt.assign_attrs(long_name="number of valid observations so far"),
        },
        attrs={**prov, "temporal_method": "hmm-forward-filter", "temporal_transition_model": model.to_json(),
               "temporal_evidence_weight": float(weight), "temporal_evidence_floor": float(floor),
               "last_date": str(np.datetime_as_string(times[-1], "ns"))},
    )
    new_state = new_state.drop_vars([c for c in new_state.coords if c == "time" or "time" in new_state[c].dims],
                                    errors="ignore")
    new_state = _with_coords(new_state, probability)
    if new_state["class"].dtype.kind == "U":  # variable-length strings in Zarr v3, as dwcube.archive writes them
        new_state = new_state.assign_coords({"class": new_state["class"].astype(object)})
    return filtered, new_state


# -- flicker ------------------------------------------------------------------------------------


def _count_flicker(lab: np.ndarray, *, k: int) -> np.ndarray:
    """lab (..., T) uint8 (255 = no data) → (..., 2K) int32: transitions from each class, then changes."""
    shape = lab.shape[:-1]
    lab = lab.reshape(-1, lab.shape[-1])
    n = lab.shape[0]
    out = np.zeros((n, 2 * k), np.int32)
    last = np.full(n, NODATA_LABEL, np.uint8)
    rows = np.arange(n)
    for t in range(lab.shape[1]):
        cur = lab[:, t]
        ok = (cur < k) & (last < k)
        r = rows[ok]
        out[r, last[ok]] += 1
        ch = ok & (cur != last)
        out[rows[ch], k + last[ch]] += 1
        last = np.where(cur < k, cur, last)
    return out.reshape(*shape, 2 * k)


def flicker(data: xr.DataArray, *, dim: str = "time", where: xr.DataArray | None = None) -> xr.Dataset:
    """How often the label changes between consecutive valid observations.

    For each pixel, the valid dates (label not 255, probabilities not NaN) in order make
    *transitions* (consecutive pairs); a transition is a *change* when the label differs.

    Parameters
    ----------
    data
        A probability cube with a ``class`` dimension (its argmax label is used, see
        :func:`dwcube.probability.label`) or a label array (integer class index, 255 = no
        data).
    dim
        The time dimension.
    where
        Optional boolean mask over the pixels (e.g. the stable pixels of a truth); only
        those count, ``rate`` is NaN elsewhere.

    Returns
    -------
    xarray.Dataset
        ``overall`` (scalar float64): changes / transitions over all pixels;
        ``per_class`` (class) float64: among transitions *leaving* each class (the earlier
        date has that label), the share that changes (NaN if none);
        ``transitions`` and ``changes`` (class) int64: the counts behind ``per_class``;
        ``rate`` (the pixel dims) float32: each pixel's own changes / transitions (NaN with
        fewer than two valid dates).  Lazy when the input is.

    Examples
    --------
    >>> lab = xr.DataArray(np.array([[0, 0, 1, 0, 255, 0]], np.uint8).T, dims=("time", "x"))
    >>> f = flicker(lab)
    >>> float(f.overall), f.per_class.values[:2].tolist(), f.rate.values.tolist()
    (0.5, [0.3333333333333333, 1.0], [0.5])
    """
    from .probability import label

    if dim not in data.dims:
        raise ValueError(f"flicker needs the dimension {dim!r}; data has dims {data.dims}")
    if "class" in data.dims:
        if "class" not in data.coords:
            raise ValueError("the probability cube has no 'class' coordinate")
        classes = [str(c) for c in data["class"].values]
        lab = label(data)
    else:
        if not np.issubdtype(data.dtype, np.integer):
            raise ValueError(f"expected a probability cube (with 'class') or an integer label array, got dtype "
                             f"{data.dtype}")
        meanings = str(data.attrs.get("flag_meanings", "")).split()
        classes = meanings if meanings else list(CLASSES)
        lab = data
    k = len(classes)
    if data.chunks:
        lab = lab.chunk({dim: -1})
    counts = xr.apply_ufunc(
        _count_flicker, lab.astype(np.uint8) if lab.dtype != np.uint8 else lab, input_core_dims=[[dim]],
        output_core_dims=[["flicker_count"]], dask="parallelized", output_dtypes=[np.int32],
        dask_gufunc_kwargs={"output_sizes": {"flicker_count": 2 * k}}, kwargs={"k": k},
    )
    if where is not None:
        counts = counts.where(where, 0)
    counts = counts.drop_vars([c for c in counts.coords if c not in counts.dims or c == "spatial_ref"],
                              errors="ignore")
    pix = [d for d in counts.dims if d != "flicker_count"]
    total = counts.sum(pix, dtype=np.int64)
    trans = total.isel(flicker_count=slice(0, k)).rename(flicker_count="class").assign_coords({"class": classes})
    chg = total.isel(flicker_count=slice(k, 2 * k)).rename(flicker_count="class").assign_coords({"class": classes})
    own_t = counts.isel(flicker_count=slice(0, k)).sum("flicker_count")
    own_c = counts.isel(flicker_count=slice(k, 2 * k)).sum("flicker_count")
    rate = (own_c / own_t.where(own_t > 0)).astype(np.float32)
    if where is not None:
        rate = rate.where(where)
    n_t = trans.sum("class")
    out = xr.Dataset({
        "overall": (chg.sum("class") / n_t.where(n_t > 0)).assign_attrs(
            long_name="share of label changes between consecutive valid observations", units="1"),
        "per_class": (chg / trans.where(trans > 0)).assign_attrs(
            long_name="share of transitions leaving each class that change the label", units="1"),
        "transitions": trans.assign_attrs(long_name="transitions leaving each class"),
        "changes": chg.assign_attrs(long_name="label changes leaving each class"),
        "rate": rate.assign_attrs(long_name="per-pixel share of label changes", units="1"),
    })
    coords = {c: data.coords[c] for c in ("spatial_ref",) if c in data.coords}
    return out.assign_coords(coords)

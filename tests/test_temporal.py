"""Hidden-Markov smoothing and filtering, flicker, the transition model and the synthetic series.

The Numba kernel is checked against the plain NumPy implementation of the same recursion
(which takes its transition matrices from ``numpy.linalg.matrix_power``, not from the
kernel's tables); the statistical claims are checked on
:func:`dwcube.testing.synthetic_probability_series`, whose noise is Dynamic World–like
(about 10 % wrong argmax, 30 % cloudy pixel-dates, irregular 2–20 day gaps).
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from dwcube import temporal as T
from dwcube.classes import CLASSES
from dwcube.probability import label
from dwcube.testing import synthetic_probability_series

K = len(CLASSES)
DAY = np.timedelta64(1, "D")


@pytest.fixture(scope="module")
def series() -> tuple[xr.DataArray, xr.Dataset]:
    return synthetic_probability_series(seed=0)


@pytest.fixture(scope="module")
def small() -> tuple[xr.DataArray, xr.Dataset]:
    prob, truth = synthetic_probability_series(20, 40, seed=7)
    prob = prob.copy()
    prob[:, :, 0, 0] = np.nan  # a pixel never observed
    prob[:5, :, 1, 1] = np.nan  # a pixel first observed late
    prob[-6:, :, 2, 2] = np.nan  # a pixel last observed early
    return prob, truth


def cube(p: np.ndarray, days: list[int] | np.ndarray, classes: list[str] | tuple[str, ...] = CLASSES,
         start: str = "2022-03-01T10:30") -> xr.DataArray:
    """A (time, class, 1, n) cube from p (time, n, class) or (time, class)."""
    p = np.asarray(p, dtype=np.float32)
    if p.ndim == 2:
        p = p[:, None, :]
    days = np.asarray(days)
    times = days.astype("datetime64[ns]") if days.dtype.kind == "U" else np.datetime64(start, "ns") + days * DAY
    return xr.DataArray(np.moveaxis(p, -1, 1)[:, :, None, :], dims=("time", "class", "y", "x"),
                        coords={"time": times, "class": list(classes), "y": [0.0], "x": np.arange(p.shape[1]) * 10.0},
                        name="probability")


def onehot(c: int, conf: float = 0.8, k: int = K) -> np.ndarray:
    v = np.full(k, (1 - conf) / (k - 1))
    v[c] = conf
    return v


# -- the kernel against the NumPy reference ------------------------------------------------------


@pytest.mark.parametrize("mode", ["smooth", "filter"])
@pytest.mark.parametrize("fill", [False, True])
def test_numba_kernel_equals_numpy_reference(small: tuple[xr.DataArray, xr.Dataset], mode: str, fill: bool) -> None:
    prob, _ = small
    a = T.smooth(prob, mode=mode, fill_gaps=fill)
    b = T.smooth(prob, mode=mode, fill_gaps=fill, engine="numpy")
    assert a.dtype == b.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(a.values), np.isnan(b.values))
    np.testing.assert_allclose(a.values, b.values, atol=1e-6, rtol=0)
    # non-trivial: the posterior is not the input
    assert np.nanmax(np.abs(a.values - prob.values)) > 0.3


def test_kernel_equals_reference_on_state_and_weights(small: tuple[xr.DataArray, xr.Dataset]) -> None:
    """The float64 state, a tempering weight, a non-default model, a prior state."""
    prob, _ = small
    model = T.TransitionModel(dwell_days={"trees": 500, "snow_and_ice": 20}, weights={("grass", "crops"): 5})
    p = np.ascontiguousarray(np.moveaxis(prob.values, 1, -1).transpose(1, 2, 0, 3))  # y x t k
    t = prob.time.values
    kw = {"model": model, "weight": 0.6, "floor": 0.05, "fill": True}
    for smooth in (True, False):
        first = [T._run(p[:, :, :25], t[:25], None, None, None, smooth=smooth, engine=e, **kw) for e in ("numba", "numpy")]
        for x, y in zip(first[0], first[1], strict=True):
            if np.issubdtype(x.dtype, np.floating):
                np.testing.assert_allclose(x, y, atol=1e-6 if x.dtype == np.float32 else 1e-12, rtol=0)
            else:
                np.testing.assert_array_equal(x, y)
        _, post, last, cnt = first[0]
        nxt = [T._run(p[:, :, 25:], t[25:], post, last, cnt, smooth=smooth, engine=e, **kw) for e in ("numba", "numpy")]
        np.testing.assert_allclose(nxt[0][0], nxt[1][0], atol=1e-6, rtol=0)
        np.testing.assert_allclose(nxt[0][1], nxt[1][1], atol=1e-12, rtol=0)


def test_long_gaps_use_matrix_powers() -> None:
    """Gaps beyond the table (≥ 366 days, the binary-power path) equal ``matrix_power``."""
    rng = np.random.default_rng(3)
    days = np.array([0, 1, 1 + 365, 1 + 365 + 366, 2000, 2000 + 3 * 366 + 17, 9000, 9001])
    p = rng.dirichlet(np.ones(K) * 0.7, (len(days), 5))
    p[2, 1] = np.nan
    prob = cube(p, days)
    for mode in ("smooth", "filter"):
        a = T.smooth(prob, mode=mode, fill_gaps=True).values
        b = T.smooth(prob, mode=mode, fill_gaps=True, engine="numpy").values
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
    m = T.TransitionModel()
    np.testing.assert_allclose(m.matrix(400) @ m.matrix(1234), m.matrix(1634), atol=1e-12)
    tab, big, tab_t, big_t = T._tables(m)
    np.testing.assert_allclose(big[2], m.matrix(366 * 4), atol=1e-12)
    np.testing.assert_array_equal(tab_t[17], tab[17].T)
    np.testing.assert_array_equal(big_t[3], big[3].T)


def _marginals_by_enumeration(p: np.ndarray, days: np.ndarray, model: T.TransitionModel, weight: float,
                              floor: float, *, smooth: bool) -> np.ndarray:
    """Each date's class marginal, by summing the joint probability of every state path.

    The model of the module docstring written out: a chain with a uniform prior on the day it
    starts (the first valid date, or the date asked about when that is earlier), ``P(1)^Δ``
    between consecutive dates of the path, and ``((1 − ε)·p + ε/K)^w`` on each valid date used
    (all of them when smoothing, those up to the date when filtering).  ``p`` is ``(T, K)``
    with NaN rows for dates without data.
    """
    import itertools

    n_t, k = p.shape
    valid = np.isfinite(p).all(1)
    out = np.full((n_t, k), np.nan)
    for t in range(n_t):
        used = [u for u in np.flatnonzero(valid) if smooth or u <= t]
        if not used or (not smooth and not valid[t] and t < used[0]):
            continue
        nodes = sorted(set(used) | {t})
        marginal = np.zeros(k)
        for path in itertools.product(range(k), repeat=len(nodes)):
            joint = 1.0 / k
            for (a, xa), (b, xb) in itertools.pairwise(zip(nodes, path, strict=True)):
                joint *= model.matrix(int(days[b] - days[a]))[xa, xb]
            for node, x in zip(nodes, path, strict=True):
                if node in used:
                    joint *= ((1 - floor) * p[node, x] + floor / k) ** weight
            marginal[path[nodes.index(t)]] += joint
        out[t] = marginal / marginal.sum()
    return out


@pytest.mark.parametrize("mode", ["smooth", "filter"])
@pytest.mark.parametrize("gap_date", [None, 1])
def test_posterior_equals_the_sum_over_every_state_path(mode: str, gap_date: int | None) -> None:
    """An exact check, not a second implementation of the recursion: 2 classes, 4 dates (two on the
    same day), every one of the 2⁴ state paths enumerated; with a date without data, its posterior
    (fill_gaps) too."""
    classes = ["trees", "grass"]
    model = T.TransitionModel(dwell_days=(20.0, 60.0), classes=classes)
    times = np.array(["2022-03-01T10:30", "2022-03-10T09:55", "2022-03-10T10:40", "2022-03-31T10:30"])
    days = np.array([0, 9, 9, 30])  # calendar days: the two acquisitions of 10 March are simultaneous
    p = np.array([[0.9, 0.1], [0.3, 0.7], [0.45, 0.55], [0.2, 0.8]])
    if gap_date is not None:
        p[gap_date] = np.nan
    want = _marginals_by_enumeration(p, days, model, 0.7, 0.05, smooth=mode == "smooth")
    assert np.isfinite(want).all() and np.abs(want - np.nan_to_num(p, nan=0.5)).max() > 0.05  # not the input
    for engine in ("numba", "numpy"):
        got = T.smooth(cube(p, times, classes), model, mode=mode, weight=0.7, floor=0.05, fill_gaps=True,
                       engine=engine).values[:, :, 0, 0]
        np.testing.assert_allclose(got, want, atol=1e-6, rtol=0)
        kept = T.smooth(cube(p, times, classes), model, mode=mode, weight=0.7, floor=0.05, engine=engine)
        if gap_date is not None:
            assert np.isnan(kept.values[gap_date]).all()  # without fill_gaps the gap stays NaN
        np.testing.assert_allclose(np.delete(kept.values[:, :, 0, 0], [gap_date] if gap_date is not None else [], 0),
                                   np.delete(want, [gap_date] if gap_date is not None else [], 0), atol=1e-6, rtol=0)


# -- filtering ---------------------------------------------------------------------------------


def test_filter_date_by_date_equals_whole_series(small: tuple[xr.DataArray, xr.Dataset]) -> None:
    prob, _ = small
    whole_f, whole = T.filter_update(prob)
    state = None
    parts = []
    for t in range(prob.sizes["time"]):
        f, state = T.filter_update(prob.isel(time=[t]), state)
        state = state.compute()
        parts.append(f)
    assert state is not None
    np.testing.assert_array_equal(state.posterior.values, whole.posterior.values)
    np.testing.assert_array_equal(state.last_observation.values, whole.last_observation.values)
    np.testing.assert_array_equal(state.observations.values, whole.observations.values)
    np.testing.assert_array_equal(xr.concat(parts, "time").values, whole_f.values)
    assert state.attrs["last_date"] == whole.attrs["last_date"]
    # the filtered series is smooth(mode="filter"); the last smoothed date is the last filtered one
    np.testing.assert_array_equal(whole_f.values, T.smooth(prob, mode="filter").values)
    np.testing.assert_allclose(T.smooth(prob).isel(time=-1).values, whole_f.isel(time=-1).values, atol=1e-6)
    # never observed: NaN posterior, NaT, 0; observed pixel: its last valid date
    assert np.isnan(whole.posterior.values[:, 0, 0]).all()
    assert np.isnat(whole.last_observation.values[0, 0]) and whole.observations.values[0, 0] == 0
    valid = prob.notnull().all("class").values
    assert whole.last_observation.values[2, 2] == prob.time.values[valid[:, 2, 2]][-1] < prob.time.values[-6]
    np.testing.assert_array_equal(whole.observations.values, valid.sum(0))
    np.testing.assert_allclose(whole.posterior.sum("class").values[1:, 1:], 1.0, atol=1e-12)


def test_filter_batches_lazy_and_through_zarr(small: tuple[xr.DataArray, xr.Dataset], tmp_path) -> None:
    """Batches of dates on Dask chunks, the state written to and read back from Zarr in between."""
    prob, _ = small
    _, whole = T.filter_update(prob)
    chunked = prob.chunk({"time": 1, "y": 8, "x": 12})
    f1, s1 = T.filter_update(chunked.isel(time=slice(0, 17)))
    assert s1.posterior.chunks is not None  # lazy
    s1.to_zarr(tmp_path / "state.zarr", consolidated=False)
    back = xr.open_zarr(tmp_path / "state.zarr", consolidated=False)
    f2, s2 = T.filter_update(chunked.isel(time=slice(17, None)), back)
    np.testing.assert_array_equal(s2.posterior.values, whole.posterior.values)
    np.testing.assert_array_equal(s2.last_observation.values, whole.last_observation.values)
    np.testing.assert_array_equal(xr.concat([f1, f2], "time").values, T.smooth(prob, mode="filter").values)
    assert s2.attrs["model"] == "synthetic"  # provenance travels with the state


def test_filter_state_mismatches_are_refused(small: tuple[xr.DataArray, xr.Dataset]) -> None:
    prob, _ = small
    _, state = T.filter_update(prob.isel(time=slice(0, 10)))
    with pytest.raises(ValueError, match="after the state's last date"):
        T.filter_update(prob.isel(time=slice(5, 12)), state)
    with pytest.raises(ValueError, match="differ from the state"):
        T.filter_update(prob.isel(time=slice(10, 12)), state, weight=0.5)
    with pytest.raises(ValueError, match="transitions differ"):
        T.filter_update(prob.isel(time=slice(10, 12)), state, T.TransitionModel(dwell_days={"trees": 99}))
    with pytest.raises(ValueError, match="'x' coordinate differs"):
        T.filter_update(prob.isel(time=slice(10, 12)).assign_coords(x=prob.x + 5), state)
    with pytest.raises(ValueError, match="must be the Dataset returned by filter_update"):
        T.filter_update(prob.isel(time=slice(10, 12)), state.drop_vars("observations"))
    with pytest.raises(ValueError, match="attrs are incomplete"):
        T.filter_update(prob.isel(time=slice(10, 12)), state.assign_attrs(last_date="not a date"))


# -- lazy, chunk-invariant, NaN rules, attrs ------------------------------------------------------


def test_chunk_invariant_and_nan_rules(small: tuple[xr.DataArray, xr.Dataset]) -> None:
    prob, _ = small
    ref = T.smooth(prob)
    for chunks in ({"time": 1, "y": 7, "x": 5}, {"time": 13, "y": 20, "x": 3}, {"y": 1, "x": 20}):
        got = T.smooth(prob.chunk(chunks))
        assert got.chunks is not None
        assert got.chunksizes["y"] == prob.chunk(chunks).chunksizes["y"]
        np.testing.assert_array_equal(got.values, ref.values)
    # without fill: NaN exactly where the input is; sums to 1 elsewhere
    np.testing.assert_array_equal(np.isnan(ref.values), np.isnan(prob.values))
    np.testing.assert_allclose(ref.sum("class").where(prob.notnull().all("class")).fillna(1).values, 1, atol=1e-5)
    # with fill: NaN only where the pixel never had a valid date
    filled = T.smooth(prob.chunk({"time": 4, "y": 6, "x": 6}), fill_gaps=True).values
    assert np.isnan(filled[:, :, 0, 0]).all()
    assert not np.isnan(filled[:, :, 1:, :]).any() and not np.isnan(filled[:, :, 0, 1:]).any()
    np.testing.assert_allclose(np.nansum(filled, axis=1)[:, 1:, 1:], 1, atol=1e-5)
    # filter mode fills only after the first observation
    ff = T.smooth(prob, mode="filter", fill_gaps=True).values
    assert np.isnan(ff[:5, :, 1, 1]).all() and not np.isnan(ff[5:, :, 1, 1]).any()


def test_lazy_until_computed(small: tuple[xr.DataArray, xr.Dataset], monkeypatch: pytest.MonkeyPatch) -> None:
    prob, _ = small
    calls = []
    run = T._run

    def count(*args, **kwargs):
        calls.append(args[0].shape)
        return run(*args, **kwargs)

    monkeypatch.setattr(T, "_run", count)
    out = T.smooth(prob.chunk({"y": 10, "x": 10}))
    assert not calls
    out.compute()
    assert len(calls) == 4 and all(c[:2] == (10, 10) for c in calls)


def test_output_keeps_coords_attrs_and_order(small: tuple[xr.DataArray, xr.Dataset]) -> None:
    prob, _ = small
    prob = prob.assign_coords(platform=("time", ["sentinel-2a"] * prob.sizes["time"]))
    prob.attrs["model_weights_sha256"] = "abc"
    out = T.smooth(prob.transpose("y", "class", "x", "time"))
    assert out.dims == ("y", "class", "x", "time")
    assert out.name == "probability"
    assert {"spatial_ref", "platform"} <= set(out.coords)
    # the grid's CRS travels in spatial_ref's attributes, which apply_ufunc used to drop
    assert prob.odc.geobox.crs.epsg == 32633 and out.odc.geobox == prob.odc.geobox
    filtered, state = T.filter_update(prob)
    assert filtered.odc.geobox == prob.odc.geobox and state.odc.geobox == prob.odc.geobox
    assert out.attrs["model_weights_sha256"] == "abc" and out.attrs["model"] == "synthetic"
    assert out.attrs["temporal_method"] == "hmm-forward-backward"
    assert T.TransitionModel.from_json(out.attrs["temporal_transition_model"]) == T.TransitionModel()
    assert out.attrs["temporal_evidence_weight"] == T.DEFAULT_WEIGHT
    np.testing.assert_array_equal(out.transpose(*prob.dims).values, T.smooth(prob).values)
    assert T.smooth(prob, mode="filter").attrs["temporal_method"] == "hmm-forward-filter"


def test_class_order_and_subsets(small: tuple[xr.DataArray, xr.Dataset]) -> None:
    """The model follows the cube's class names: a permuted cube gives the permuted posterior."""
    prob, _ = small
    perm = prob.isel({"class": np.arange(K)[::-1]})
    np.testing.assert_allclose(T.smooth(perm).values, T.smooth(prob).isel({"class": np.arange(K)[::-1]}).values,
                               atol=1e-6)
    two = cube([onehot(0, 0.9, 2)] * 3 + [onehot(1, 0.9, 2)] * 3, [0, 5, 10, 15, 20, 25], ["trees", "built"])
    assert label(T.smooth(two)).values.ravel().tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="no class"):
        T.smooth(two.assign_coords({"class": ["trees", "forest"]}))


# -- behaviour of the model ------------------------------------------------------------------------


def test_single_confident_wrong_date_is_overturned_but_a_lasting_change_is_followed() -> None:
    trees, built, snow = CLASSES.index("trees"), CLASSES.index("built"), CLASSES.index("snow_and_ice")
    seq = [onehot(trees)] * 6 + [onehot(snow, 0.95)] + [onehot(trees)] * 6 + [onehot(built, 0.7)] * 8
    days = np.cumsum([0] + [10] * (len(seq) - 1))
    lab = label(T.smooth(cube(seq, days))).values.ravel()
    assert lab.tolist() == [trees] * 13 + [built] * 8
    raw = label(cube(seq, days)).values.ravel()
    assert raw[6] == snow


def test_longer_gap_allows_more_change() -> None:
    """The same evidence after a longer gap moves the filtered posterior further."""
    trees, bare = CLASSES.index("trees"), CLASSES.index("bare")
    seq = [onehot(trees, 0.9)] * 5 + [onehot(bare, 0.8)]
    out = []
    for gap in (5, 200, 5000):
        days = [0, 10, 20, 30, 40, 40 + gap]
        out.append(T.smooth(cube(seq, days), mode="filter").values[-1, :, 0, 0])
    assert out[0][bare] < out[1][bare] < out[2][bare]
    assert out[0].argmax() == trees and out[0][trees] > 0.99
    assert out[2].argmax() == bare
    # same-day acquisitions are simultaneous: the gap is zero days, no transition between
    # them, so two opposite dates leave trees and bare exactly level
    same = T.smooth(cube([onehot(trees), onehot(bare)], ["2022-03-01T10:00", "2022-03-01T18:00"]), mode="filter")
    f = same.values[-1, :, 0, 0]
    assert f[trees] == pytest.approx(f[bare], rel=1e-6) and f[trees] > 0.4
    nxt = T.smooth(cube([onehot(trees), onehot(bare)], ["2022-03-01T10:00", "2022-03-02T09:00"]), mode="filter")
    assert nxt.values[-1, trees, 0, 0] != pytest.approx(f[trees], rel=1e-6)  # one calendar day: a transition


def test_flicker_reduced_5x_on_synthetic_stable_pixels(series: tuple[xr.DataArray, xr.Dataset]) -> None:
    prob, truth = series
    # the noise is honest: Dynamic World-like wrong argmax and cloud rates
    assert 0.05 <= truth.attrs["wrong_argmax_rate"] <= 0.15
    assert 0.2 <= truth.attrs["cloud_rate"] <= 0.4
    raw = T.flicker(prob, where=truth.stable)
    smoothed = T.flicker(T.smooth(prob), where=truth.stable)
    assert raw.transitions.sum() == smoothed.transitions.sum()  # the same valid dates
    assert float(raw.overall) > 0.1
    assert float(smoothed.overall) * 5 <= float(raw.overall)
    # and the smoothed labels of stable pixels are the truth on at least 97 % of valid dates
    lab = label(T.smooth(prob)).values
    ok = truth.observed.values & truth.stable.values[None]
    assert (lab == truth.true_class.values)[ok].mean() > 0.97
    assert (label(prob).values == truth.true_class.values)[ok].mean() < 0.95


# -- flicker --------------------------------------------------------------------------------------


def test_flicker_by_hand() -> None:
    lab = np.array([[0, 0, 1, 0, 255, 0],  # 4 transitions, 2 changes
                    [2, 255, 2, 2, 2, 8],  # 4 transitions, 1 change
                    [255, 255, 255, 3, 255, 255]], np.uint8).T  # no transition
    da = xr.DataArray(lab, dims=("time", "x"))
    f = T.flicker(da)
    assert float(f.overall) == pytest.approx(3 / 8)
    assert f.transitions.values.tolist() == [3, 1, 4, 0, 0, 0, 0, 0, 0]
    assert f.changes.values.tolist() == [1, 1, 1, 0, 0, 0, 0, 0, 0]
    np.testing.assert_allclose(f.per_class.values[:3], [1 / 3, 1, 1 / 4])
    assert np.isnan(f.per_class.values[3])
    np.testing.assert_allclose(f.rate.values, [0.5, 1 / 4, np.nan])
    g = T.flicker(da, where=xr.DataArray([False, True, True], dims="x"))
    assert float(g.overall) == pytest.approx(1 / 4)
    assert np.isnan(g.rate.values[0])
    assert list(f["class"].values) == list(CLASSES)


def test_flicker_probability_label_and_lazy_agree(small: tuple[xr.DataArray, xr.Dataset]) -> None:
    prob, _ = small
    a = T.flicker(prob)
    b = T.flicker(label(prob))
    lazy = T.flicker(prob.chunk({"time": 5, "y": 7, "x": 9}))
    assert lazy.overall.chunks is not None
    lazy = lazy.compute()
    for v in ("overall", "per_class", "transitions", "changes", "rate"):
        np.testing.assert_array_equal(a[v].values, b[v].values)
        np.testing.assert_array_equal(a[v].values, lazy[v].values)
    with pytest.raises(ValueError, match="dimension 'date'"):
        T.flicker(prob, dim="date")
    with pytest.raises(ValueError, match="integer label"):
        T.flicker(prob.isel({"class": 0}))


# -- the transition model ---------------------------------------------------------------------------


def test_transition_model_defaults_and_validation() -> None:
    m = T.TransitionModel()
    P = m.matrix(1)
    np.testing.assert_allclose(P.sum(1), 1)
    stay = dict(zip(CLASSES, np.diag(P), strict=True))
    assert stay["built"] > stay["trees"] > stay["grass"] > stay["crops"] > stay["snow_and_ice"]
    assert stay["water"] < stay["trees"]
    b = CLASSES.index("built")
    assert P[b, CLASSES.index("bare")] == pytest.approx(10 * P[b, CLASSES.index("trees")])
    assert np.allclose(m.matrix(30), np.linalg.matrix_power(P, 30))
    m2 = T.TransitionModel(dwell_days={"trees": 100}, weights={("trees", "built"): 0})
    assert m2.matrix(10)[1, 6] > 0  # reachable through other classes over 10 days…
    assert m2.matrix(1)[1, 6] == 0  # …but not in one step
    assert T.TransitionModel(dwell_days=[np.inf] + [100] * 8).matrix(50)[0, 0] == 1
    assert T.TransitionModel.from_json(m2.to_json()) == m2
    assert hash(m2) == hash(T.TransitionModel.from_json(m2.to_json()))
    sub = m.subset(["water", "trees"])
    np.testing.assert_allclose(sub.matrix(1).sum(1), 1)
    for kwargs, msg in [
        ({"dwell_days": {"tree": 10}}, "unknown classes"),
        ({"dwell_days": [10] * 8}, "8 values for 9 classes"),
        ({"dwell_days": {"trees": 0.5}}, ">= 1 day"),
        ({"weights": np.ones((3, 3))}, "must be 9 x 9"),
        ({"weights": -np.ones((9, 9))}, "finite and >= 0"),
        ({"weights": {("trees",): 1}}, "pairs of class names"),
        ({"weights": np.eye(9)}, "no move out of it"),
        ({"classes": ("a",), "dwell_days": [5]}, "at least two distinct"),
    ]:
        with pytest.raises(ValueError, match=msg):
            T.TransitionModel(**kwargs)
    with pytest.raises(ValueError, match="whole number"):
        m.matrix(1.5)


# -- bad input ----------------------------------------------------------------------------------------


def test_bad_input_gives_clear_errors(small: tuple[xr.DataArray, xr.Dataset]) -> None:
    prob, _ = small
    with pytest.raises(ValueError, match="dims"):
        T.smooth(prob.isel(x=0))
    with pytest.raises(ValueError, match="dims"):
        T.smooth(prob.rename(time="date"))
    with pytest.raises(ValueError, match="dims"):
        T.smooth(prob.expand_dims(band=1))
    with pytest.raises(ValueError, match="no 'class' coordinate"):
        T.smooth(prob.drop_vars("class"))
    with pytest.raises(TypeError, match="DataArray"):
        T.smooth(prob.to_dataset())
    neg = prob.copy()
    neg[3, 0, 4, 4] = -0.2
    neg[3, 1, 4, 4] += 0.2
    with pytest.raises(ValueError, match="negative values"):
        T.smooth(neg)
    lazy = T.smooth(neg.chunk({"y": 10}))  # Dask: raised when the block is computed
    with pytest.raises(ValueError, match="negative values"):
        lazy.compute()
    with pytest.raises(ValueError, match="does not sum to 1"):
        T.smooth(prob * 3)
    with pytest.raises(ValueError, match="infinite"):
        T.smooth(prob.where(prob.time != prob.time[2], np.inf))
    with pytest.raises(ValueError, match="strictly increasing"):
        T.smooth(prob.isel(time=[1, 0, 2]))
    with pytest.raises(ValueError, match="datetime64 'time'"):
        T.smooth(prob.assign_coords(time=np.arange(prob.sizes["time"])))
    with pytest.raises(ValueError, match="floating point"):
        T.smooth((prob.fillna(0) * 100).astype(np.uint8))
    with pytest.raises(ValueError, match="mode"):
        T.smooth(prob, mode="viterbi")
    with pytest.raises(ValueError, match="floor"):
        T.smooth(prob, floor=0)
    with pytest.raises(ValueError, match="weight"):
        T.smooth(prob, weight=-1)
    with pytest.raises(ValueError, match="engine"):
        T.smooth(prob, engine="cuda")


def test_latitude_longitude_cubes_are_smoothed_and_filtered_like_y_x(small: tuple[xr.DataArray, xr.Dataset]) -> None:
    """dwcube.load names the dims of a geographic grid latitude/longitude; smooth, filter_update and
    flicker take them (and any order) and give what the same cube with y/x gives."""
    prob, _ = small
    geo = prob.rename(y="latitude", x="longitude")
    lazy = geo.transpose("latitude", "time", "longitude", "class").chunk({"latitude": 7, "longitude": 9})
    got = T.smooth(lazy)
    assert got.dims == lazy.dims and got.chunks[0] == lazy.chunks[0]
    want = T.smooth(prob)
    np.testing.assert_array_equal(got.transpose(*geo.dims).values, want.values)
    _, first = T.filter_update(geo.isel(time=slice(0, 25)))
    filtered, state = T.filter_update(lazy.isel(time=slice(25, None)), first)
    assert state.posterior.dims == ("class", "latitude", "longitude")
    np.testing.assert_allclose(filtered.transpose(*geo.dims).values,
                               T.smooth(prob, mode="filter").isel(time=slice(25, None)).values, atol=1e-6)
    with pytest.raises(ValueError, match="no 'latitude' dimension"):
        T.filter_update(geo.isel(time=slice(25, None)), first.rename(latitude="y"))
    assert float(T.flicker(got).overall) == float(T.flicker(want).overall)


# -- the synthetic generator ------------------------------------------------------------------------


def test_synthetic_series_is_deterministic_and_consistent() -> None:
    a, ta = synthetic_probability_series(24, 30, seed=11, chunks=12)
    b, tb = synthetic_probability_series(24, 30, seed=11)
    assert a.chunks is not None and b.chunks is None
    np.testing.assert_array_equal(a.values, b.values)
    xr.testing.assert_identical(ta, tb)
    c, _ = synthetic_probability_series(24, 30, seed=12)
    assert not np.array_equal(c.values, b.values, equal_nan=True)
    gaps = np.diff(b.time.values) / DAY
    assert 1.9 <= gaps.min() and gaps.max() <= 20.1 and len(np.unique(np.round(gaps))) > 5
    # NaN pixel-dates are NaN over every class; valid ones sum to 1
    nan = np.isnan(b.values)
    assert (nan.all(1) == nan.any(1)).all()
    np.testing.assert_array_equal(~nan.any(1), tb.observed.values)
    # the truth: stable pixels keep their class, changed pixels switch once at change_date
    tc = tb.true_class.values
    st = tb.stable.values
    assert (tc[:, st] == tc[0, st]).all()
    ch = ~st
    assert ch.any() and st.any()
    after = b.time.values[:, None, None] > tb.change_date.values[None]
    np.testing.assert_array_equal(np.where(after, tb.to_class.values[None], tb.from_class.values[None])[:, ch], tc[:, ch])
    ok = ch & ~np.isnat(tb.first_after.values)
    assert (tb.first_after.values[ok] > tb.change_date.values[ok]).all()
    ok = ch & ~np.isnat(tb.last_before.values)
    assert (tb.last_before.values[ok] < tb.change_date.values[ok]).all()
    assert (tb.from_class.values[st] == 255).all() and np.isnat(tb.change_date.values[st]).all()

"""Change dating: synthetic truth with clouds and irregular dates, hand-made series, filters, laziness."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from dwcube import temporal as T
from dwcube.change import changes
from dwcube.classes import CLASSES
from dwcube.testing import synthetic_probability_series

K = len(CLASSES)
C = {c: i for i, c in enumerate(CLASSES)}
DAY = np.timedelta64(1, "D")
VARS = ["change_date", "confidence", "first_after", "from_class", "last_before", "to_class"]


def onehot(c: int, conf: float = 0.8) -> np.ndarray:
    v = np.full(K, (1 - conf) / (K - 1))
    v[c] = conf
    return v


def series(*pixels: list[np.ndarray], gap: int = 10) -> xr.DataArray:
    """A (time, class, 1, n) cube: one list of per-date vectors (or None = cloud) per pixel."""
    n_t = len(pixels[0])
    p = np.full((n_t, K, 1, len(pixels)), np.nan, np.float32)
    for j, px in enumerate(pixels):
        for t, v in enumerate(px):
            if v is not None:
                p[t, :, 0, j] = v
    times = np.datetime64("2022-01-03T10:30", "ns") + np.arange(n_t) * gap * DAY
    return xr.DataArray(p, dims=("time", "class", "y", "x"), name="probability", attrs={"model": "hand-made"},
                        coords={"time": times, "class": list(CLASSES), "y": [0.0], "x": np.arange(len(pixels)) * 10.0})


def within_one_observation(ch: xr.Dataset, prob: xr.DataArray, truth: xr.Dataset) -> tuple[float, float]:
    """Share of dateable events found with the right classes and a first_after within one valid
    observation of the truth's; share of stable pixels with a reported change."""
    stable = truth.stable.values
    events = ~stable & truth.first_after.notnull().values & truth.last_before.notnull().values
    observed = truth.observed.values
    times = prob.time.values
    got = ch.first_after.values
    good = 0
    for y, x in zip(*np.nonzero(events), strict=True):
        if np.isnat(got[y, x]):
            continue
        valid = times[observed[:, y, x]]
        off = np.searchsorted(valid, got[y, x]) - np.searchsorted(valid, truth.first_after.values[y, x])
        good += (abs(off) <= 1 and ch.from_class.values[y, x] == truth.from_class.values[y, x]
                 and ch.to_class.values[y, x] == truth.to_class.values[y, x])
    return good / events.sum(), float(ch.change_date.notnull().values[stable].mean())


@pytest.mark.parametrize("seed", [0, 1])
def test_synthetic_changes_recovered(seed: int) -> None:
    """≥ 95 % of change events dated within one observation with the right classes, ≤ 1 % false alarms."""
    prob, truth = synthetic_probability_series(seed=seed)
    assert 0.05 <= truth.attrs["wrong_argmax_rate"] <= 0.15 and 0.2 <= truth.attrs["cloud_rate"] <= 0.4
    ch = changes(prob.chunk({"y": 32, "x": 32})).compute()
    recovered, false_alarms = within_one_observation(ch, prob, truth)
    assert (~truth.stable).sum() > 500
    assert recovered >= 0.95, recovered
    assert false_alarms <= 0.01, false_alarms
    # the exact bracket most of the time
    found = ch.change_date.notnull().values & ~truth.stable.values
    exact = ch.first_after.values[found] == truth.first_after.values[found]
    assert exact.mean() > 0.8
    # the confidence is higher for exactly dated changes than for the others
    conf = ch.confidence.values[found]
    assert ((conf >= 0) & (conf <= 1)).all()
    assert conf[exact].mean() > conf[~exact].mean() + 0.1
    assert np.isnan(ch.confidence.values[~ch.change_date.notnull().values]).all()
    # the same run rule on the raw labels (no smoothing) dates far fewer events right
    raw = xr.DataArray(np.where(np.isnan(prob.values), np.nan, np.eye(K, dtype=np.float32)[prob.fillna(0).argmax(
        "class").values].transpose(0, 3, 1, 2)), dims=prob.dims, coords=prob.coords)
    raw_recovered, raw_false_alarms = within_one_observation(changes(raw, smoothed=True), prob, truth)
    assert raw_recovered < recovered - 0.1
    assert raw_false_alarms > false_alarms


def test_hand_made_change_is_dated_exactly() -> None:
    trees, bare = C["trees"], C["bare"]
    cloud = None
    px = [onehot(trees)] * 8 + [cloud, cloud] + [onehot(bare, 0.7)] * 8
    prob = series(px)
    ch = changes(prob)
    t = prob.time.values
    assert ch.last_before.values[0, 0] == t[7]
    assert ch.first_after.values[0, 0] == t[10] == ch.change_date.values[0, 0]
    assert (ch.from_class.values[0, 0], ch.to_class.values[0, 0]) == (trees, bare)
    assert 0.9 < ch.confidence.values[0, 0] <= 1
    assert ch.change_date.dtype == ch.last_before.dtype == np.dtype("datetime64[ns]")
    assert ch.from_class.dtype == ch.to_class.dtype == np.uint8 and ch.confidence.dtype == np.float32
    assert sorted(ch.data_vars) == VARS
    assert ch.from_class.attrs["flag_meanings"].split() == list(CLASSES)
    assert ch.from_class.attrs["flag_values"] == list(range(K))
    assert ch.attrs["model"] == "hand-made" and ch.attrs["change_min_observations"] == 3
    # a confident wrong date right after the change moves the bracket by at most that date
    px2 = [onehot(trees)] * 8 + [onehot(C["snow_and_ice"], 0.9)] + [onehot(bare, 0.7)] * 8 + [cloud]
    ch2 = changes(series(px2))
    assert ch2.last_before.values[0, 0] in (t[7], t[8])


def test_excursions_and_late_changes_are_not_lasting() -> None:
    trees, bare = C["trees"], C["bare"]
    short = [onehot(trees)] * 8 + [onehot(bare, 0.95)] * 2 + [onehot(trees)] * 8  # a 2-date excursion
    late = [onehot(trees)] * 16 + [onehot(bare, 0.95)] * 2  # only 2 dates of the new class yet
    stable = [onehot(trees, 0.5)] * 18
    never = [None] * 18
    prob = series(short, late, stable, never)
    ch = changes(prob)
    assert ch.change_date.isnull().all()
    assert (ch.from_class.values == 255).all() and (ch.to_class.values == 255).all()
    assert np.isnan(ch.confidence.values).all() and ch.last_before.isnull().all()
    # with the smoothed posterior already following the excursion, the thresholds decide
    post = T.smooth(prob, transitions=T.TransitionModel(dwell_days={"trees": 5}))
    assert (T.flicker(post).changes.sum() > 0)
    assert changes(post, min_observations=2, min_duration=0).change_date.notnull().values[0, :2].all()
    assert changes(post, min_observations=3).change_date.isnull().values[0, :2].all()
    assert changes(post, min_observations=2, min_duration=15).change_date.isnull().values[0, :2].all()


def test_filters_and_which() -> None:
    trees, bare, built, grass = C["trees"], C["bare"], C["built"], C["grass"]
    two = [onehot(trees)] * 6 + [onehot(bare)] * 6 + [onehot(built)] * 6  # trees → bare → built
    one = [onehot(grass)] * 9 + [onehot(built)] * 9  # grass → built
    prob = series(two, one)
    t = prob.time.values
    first = changes(prob)
    assert first.from_class.values[0].tolist() == [trees, grass]
    assert first.to_class.values[0].tolist() == [bare, built]
    last = changes(prob, which="last")
    assert last.from_class.values[0].tolist() == [bare, grass]
    assert last.first_after.values[0, 0] == t[12]
    loss = changes(prob, from_classes="trees")
    assert loss.to_class.values[0].tolist() == [bare, 255]
    new_built = changes(prob, to_classes=["built"])
    assert new_built.from_class.values[0].tolist() == [bare, grass]
    assert list(new_built.first_after.values[0]) == [t[12], t[9]]
    by_index = changes(prob, from_classes=[trees], to_classes=bare)
    xr.testing.assert_identical(by_index.drop_attrs(), changes(prob, from_classes="trees", to_classes="bare").drop_attrs())
    assert changes(prob, from_classes="trees", to_classes="built").change_date.isnull().all()
    assert loss.attrs["change_from_classes"] == "trees"
    for kwargs, msg in [({"from_classes": "forest"}, "unknown class 'forest'"), ({"to_classes": 9}, "out of range"),
                        ({"to_classes": []}, "empty"), ({"which": "all"}, "which"),
                        ({"min_observations": 0}, "min_observations"), ({"min_duration": -1}, "min_duration")]:
        with pytest.raises(ValueError, match=msg):
            changes(prob, **kwargs)
    with pytest.raises(TypeError, match="names or indices"):
        changes(prob, from_classes=[1.5])


def test_smoothed_input_lazy_chunk_invariant_and_zarr(tmp_path) -> None:
    prob, _ = synthetic_probability_series(24, 40, seed=9)
    ref = changes(prob)
    post = T.smooth(prob)
    for other in (changes(post), changes(post, smoothed=True), changes(prob, engine="numpy"),
                  changes(prob.chunk({"time": 1, "y": 5, "x": 11}))):
        for v in VARS:
            np.testing.assert_array_equal(other[v].values, ref[v].values)
    lazy = changes(prob.chunk({"y": 12, "x": 12}))
    assert all(lazy[v].chunks is not None for v in VARS)
    assert ref.change_date.notnull().sum() > 10
    # filtered (near-real-time) posteriors can be dated too; the dates lag or match the smoothed ones
    nrt = changes(T.smooth(prob, mode="filter"))
    both = nrt.change_date.notnull().values & ref.change_date.notnull().values
    assert both.sum() > 0.5 * ref.change_date.notnull().sum()
    assert (nrt.change_date.values[both] >= ref.last_before.values[both]).all()
    with pytest.raises(ValueError, match="fill_gaps"):
        changes(T.smooth(prob, fill_gaps=True))
    lazy.to_zarr(tmp_path / "changes.zarr", consolidated=False)
    back = xr.open_zarr(tmp_path / "changes.zarr", consolidated=False).compute()
    for v in VARS:
        np.testing.assert_array_equal(back[v].values, ref[v].values)
    assert back.from_class.attrs["flag_meanings"] == ref.from_class.attrs["flag_meanings"]
    assert back.change_date.dtype == np.dtype("datetime64[ns]")


def test_latitude_longitude_cubes_are_dated_like_y_x() -> None:
    """The dims load gives a geographic grid: changes() takes them and returns maps over them."""
    prob, _ = synthetic_probability_series(12, 30, seed=4)
    want = changes(prob)
    geo = prob.rename(y="latitude", x="longitude").chunk({"latitude": 5, "longitude": 7})
    got = changes(geo)
    assert all(got[v].dims == ("latitude", "longitude") for v in VARS)
    assert got.change_date.chunks == ((5, 5, 2), (7, 5))
    for v in VARS:
        np.testing.assert_array_equal(got[v].values, want[v].values)
    np.testing.assert_array_equal(changes(T.smooth(geo)).change_date.values, want.change_date.values)
    assert want.odc.geobox == prob.odc.geobox  # the CRS in spatial_ref's attributes survives

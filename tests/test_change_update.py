"""Near-real-time change dating: ``changes_update`` over batches of dates gives exactly the change
maps of ``changes`` over the whole filtered series, whatever the batches, rule and chunking."""

from __future__ import annotations

import numpy as np
import pytest

from dwcube.change import changes, changes_update
from dwcube.temporal import filter_update, smooth
from dwcube.testing import synthetic_probability_series


@pytest.fixture(scope="module")
def series():
    prob, truth = synthetic_probability_series(20, 45, seed=3, cloud_fraction=0.2)
    filtered, _ = filter_update(prob)
    return prob, filtered, truth


def _equal(a, b) -> None:
    for name in b.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


@pytest.mark.parametrize("cuts", [[1], [10, 11, 30], list(range(1, 45))], ids=["one-then-rest", "four", "daily"])
@pytest.mark.parametrize("rule", [
    {},
    {"which": "last", "min_observations": 2, "min_duration": 0},
    {"from_classes": "trees", "min_duration": 45, "min_observations": 4},
    {"to_classes": ["built", "bare"], "which": "last"},
], ids=["default", "last-short", "forest-loss", "to-built-or-bare"])
def test_batches_give_the_whole_series_maps_bit_for_bit(series, cuts: list[int], rule: dict) -> None:
    _, filtered, _ = series
    whole = changes(filtered, smoothed=True, **rule)
    assert int(whole.change_date.notnull().sum()) > 5  # the rule finds changes to compare
    state, bounds = None, [0, *cuts, filtered.sizes["time"]]
    for a, b in zip(bounds[:-1], bounds[1:]):
        alerts, state = changes_update(filtered.isel(time=slice(a, b)), state, **(rule if state is None else {}))
    _equal(alerts, whole)
    assert alerts.attrs["change_which"] == whole.attrs["change_which"]


def test_chunked_and_lazy_inputs_give_the_same_maps(series) -> None:
    _, filtered, _ = series
    lazy = filtered.chunk({"y": 7, "x": 9})
    alerts, state = changes_update(lazy.isel(time=slice(0, 20)))
    assert alerts.change_date.chunks is not None and state.run_class.chunks is not None
    alerts, _ = changes_update(lazy.isel(time=slice(20, None)), state.compute().chunk({"y": 5}))
    _equal(alerts.compute(), changes(filtered, smoothed=True))
    assert alerts.rio.crs == filtered.rio.crs


def test_wrong_inputs_are_refused_with_the_reason(series) -> None:
    prob, filtered, _ = series
    with pytest.raises(ValueError, match="filtered probabilities of dwcube.filter_update"):
        changes_update(prob)
    with pytest.raises(ValueError, match="filtered probabilities"):
        changes_update(smooth(prob.isel(time=slice(0, 5))))
    _, state = changes_update(filtered.isel(time=slice(0, 10)), min_observations=2)
    with pytest.raises(ValueError, match="after the state's last date"):
        changes_update(filtered.isel(time=slice(5, 12)), state)
    with pytest.raises(ValueError, match="min_observations=4 differs from the state's rule"):
        changes_update(filtered.isel(time=slice(10, 12)), state, min_observations=4)
    with pytest.raises(ValueError, match="not the same grid"):
        changes_update(filtered.isel(time=slice(10, 12), x=slice(0, 5)), state)

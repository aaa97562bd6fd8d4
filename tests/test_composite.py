"""Composites: hand-computed means, modes and margins, season bins, laziness, chunk invariance."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

from dwcube.classes import CLASSES
from dwcube.composite import composite, period_bins

NAN = np.nan


def _cube(values: np.ndarray, dates: list[str], classes: list[str] | tuple[str, ...] = ("water", "trees", "grass"),
          *, chunks: dict[str, int] | None = None) -> xr.DataArray:
    """A (time, class, y, x) cube on a 10 m UTM 33N grid."""
    values = np.asarray(values, np.float32)
    ny, nx = values.shape[-2:]
    gbox = GeoBox.from_bbox((500000, 5000000 - 10 * ny, 500000 + 10 * nx, 5000000), crs="EPSG:32633", resolution=10)
    prob = xr.DataArray(values, dims=("time", "class", "y", "x"), name="probability",
                        coords={"time": pd.to_datetime(dates), "class": list(classes), **xr_coords(gbox)},
                        attrs={"model": "tiny", "model_version": "1"})
    return prob.chunk(chunks) if chunks else prob


def _forbid_compute(*args: object, **kwargs: object) -> None:
    raise AssertionError("computed while building the graph")


@pytest.fixture()
def tiny() -> xr.DataArray:
    """Two pixels, five dates (three in May, two in June 2023), NaN dates included."""
    # pixel 0 (x=0):   May: (.6,.3,.1) (.2,.7,.1) (NaN in one class -> invalid);  June: (.5,.5,0) NaN
    # pixel 1 (x=1):   May: (.1,.1,.8) NaN (.3,.3,.4);                             June: NaN NaN
    p0 = [[.6, .3, .1], [.2, .7, .1], [.5, NAN, .5], [.5, .5, 0], [NAN] * 3]
    p1 = [[.1, .1, .8], [NAN] * 3, [.3, .3, .4], [NAN] * 3, [NAN] * 3]
    values = np.stack([np.array(p0), np.array(p1)], axis=-1)[:, :, None, :]  # (time, class, y=1, x=2)
    return _cube(values, ["2023-05-03", "2023-05-13", "2023-05-23", "2023-06-02", "2023-06-12"])


def test_monthly_means_modes_margins_and_counts_by_hand(tiny: xr.DataArray) -> None:
    c = composite(tiny, "month").compute()
    assert c.period.values.tolist() == ["2023-05", "2023-06"]
    assert c.time.values.tolist() == pd.to_datetime(["2023-05-01", "2023-06-01"]).as_unit("ns").values.tolist()
    assert c.period_end.values.tolist() == pd.to_datetime(["2023-06-01", "2023-07-01"]).as_unit("ns").values.tolist()
    assert c.n_dates.values.tolist() == [3, 2]
    assert c.probability.dtype == np.float32 and c.probability.dims == ("time", "class", "y", "x")
    # May, pixel 0: dates 1 and 2 valid (date 3 has a NaN class, so the whole date is out)
    np.testing.assert_allclose(c.probability[0, :, 0, 0], [.4, .5, .1], atol=1e-7)
    # May, pixel 1: dates 1 and 3
    np.testing.assert_allclose(c.probability[0, :, 0, 1], [.2, .2, .6], atol=1e-7)
    # June: pixel 0 has one valid date, pixel 1 none
    np.testing.assert_allclose(c.probability[1, :, 0, 0], [.5, .5, 0], atol=1e-7)
    assert np.isnan(c.probability[1, :, 0, 1]).all()
    assert c.n_valid.values[:, 0].tolist() == [[2, 2], [1, 0]]
    assert c.label.values[:, 0].tolist() == [[1, 2], [0, 255]]  # June px 0: .5/.5 tie -> first class
    np.testing.assert_allclose(c.margin.values[:, 0], [[.1, .4], [0, NAN]], atol=1e-6)
    # per-date labels: px 0 May water (.6) and trees (.7), one vote each -> the higher mean (trees);
    # px 1 May grass twice; June px 0 water (the .5/.5 tie goes to the first class), px 1 nothing
    assert c["mode"].values[:, 0].tolist() == [[1, 2], [0, 255]]
    for name in ("probability", "label", "mode", "margin", "n_valid"):
        assert c[name].dims[0] == "time"


def test_mode_counts_votes_before_probability() -> None:
    # three dates: water wins twice narrowly, trees once by far -> mean says trees, mode says water
    values = np.array([[.55, .45], [.55, .45], [.0, 1.]])[:, :, None, None]
    c = composite(_cube(values, ["2023-01-02", "2023-01-05", "2023-01-09"], ["water", "trees"]), "month")
    assert int(c.label[0, 0, 0]) == 1 and int(c["mode"][0, 0, 0]) == 0
    np.testing.assert_allclose(c.margin[0, 0, 0], abs(1.1 / 3 - 1.9 / 3), atol=1e-6)
    # an exact tie in votes and mean goes to the first class
    values = np.array([[.8, .2], [.2, .8]])[:, :, None, None]
    c = composite(_cube(values, ["2023-01-02", "2023-01-05"], ["water", "trees"]), "month")
    assert int(c["mode"][0, 0, 0]) == 0 and int(c.label[0, 0, 0]) == 0


def test_seasons_put_december_in_the_next_winter() -> None:
    dates = ["2023-11-20", "2023-12-05", "2024-01-15", "2024-02-29", "2024-03-01", "2024-08-31"]
    values = np.stack([[1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 0, 1]]).astype(float)[:, :, None, None]
    c = composite(_cube(values, dates), "season")
    assert c.period.values.tolist() == ["2023-SON", "2024-DJF", "2024-MAM", "2024-JJA"]
    assert [str(t)[:10] for t in c.time.values] == ["2023-09-01", "2023-12-01", "2024-03-01", "2024-06-01"]
    assert [str(t)[:10] for t in c.period_end.values] == ["2023-12-01", "2024-03-01", "2024-06-01", "2024-09-01"]
    assert c.n_dates.values.tolist() == [1, 3, 1, 1]
    np.testing.assert_allclose(c.probability[1, :, 0, 0], [0, 2 / 3, 1 / 3], atol=1e-7)
    assert c.label.values.ravel().tolist() == [0, 1, 0, 2]
    assert c.attrs["composite_frequency"] == "QS-DEC"


def test_years_frequencies_and_empty_periods() -> None:
    dates = ["2022-03-01", "2022-09-01", "2024-01-10"]
    values = np.stack([[1, 0, 0], [0, 1, 0], [0, 0, 1]]).astype(float)[:, :, None, None]
    cube = _cube(values, dates)
    y = composite(cube, "year")
    assert y.period.values.tolist() == ["2022", "2024"]
    np.testing.assert_allclose(y.probability[0, :, 0, 0], [.5, .5, 0])
    y_all = composite(cube, "year", keep_empty=True)
    assert y_all.period.values.tolist() == ["2022", "2023", "2024"] and y_all.n_dates.values.tolist() == [2, 0, 1]
    assert np.isnan(y_all.probability[1]).all() and int(y_all.label[1, 0, 0]) == 255 and int(y_all.n_valid[1, 0, 0]) == 0
    assert int(y_all["mode"][1, 0, 0]) == 255
    d = composite(cube, "200D")
    assert d.n_dates.values.tolist() == [2, 1] and d.period.values.tolist() == ["2022-03-01", "2023-10-22"]  # 2022-03-01 + 3 × 200 days
    bins = period_bins(pd.to_datetime(["2024-01-10", "2023-12-31", "2024-01-01"]), "month")  # unsorted input
    assert [(b.name, b.index.tolist()) for b in bins] == [("2023-12", [1]), ("2024-01", [0, 2])]


def test_min_count_and_median(tiny: xr.DataArray) -> None:
    c = composite(tiny, "month", min_count=2)
    assert c.n_valid.values[:, 0].tolist() == [[2, 2], [1, 0]]  # counts are reported whatever min_count
    assert np.isnan(c.probability[1]).all() and (c.label[1] == 255).all() and (c["mode"][1] == 255).all()
    assert np.isnan(c.margin[1]).all()
    np.testing.assert_allclose(c.probability[0, :, 0, 0], [.4, .5, .1], atol=1e-7)
    values = np.array([[.7, .2, .1], [.1, .8, .1], [.6, .2, .2], [NAN] * 3])[:, :, None, None]
    m = composite(_cube(values, ["2023-01-01", "2023-01-02", "2023-01-03", "2023-01-04"]), "month", method="median")
    med = np.array([.6, .2, .1])
    np.testing.assert_allclose(m.probability[0, :, 0, 0], med / med.sum(), atol=1e-6)
    assert m.attrs["composite_method"] == "median" and int(m.n_valid[0, 0, 0]) == 3
    # three dates that all disagree: every median is 0, so the mean stands in
    values = np.eye(3)[:, :, None, None]
    m = composite(_cube(values, ["2023-01-01", "2023-01-02", "2023-01-03"]), "month", method="median")
    np.testing.assert_allclose(m.probability[0, :, 0, 0], [1 / 3] * 3, atol=1e-7)


def test_dask_is_lazy_matches_numpy_and_is_chunk_invariant() -> None:
    rng = np.random.default_rng(3)
    raw = rng.gamma(1.0, size=(12, 9, 10, 14))
    prob = raw / raw.sum(axis=1, keepdims=True)
    missing = rng.random((12, 1, 10, 14)) < 0.3
    prob[np.broadcast_to(missing, prob.shape)] = np.nan  # whole pixel-dates missing
    prob[2, 4, 3, 5] = np.nan  # one class missing: the date is invalid for that pixel
    dates = pd.date_range("2023-01-20", periods=12, freq="17D").strftime("%Y-%m-%d").tolist()
    ref = composite(_cube(prob, dates, CLASSES), "season").compute()
    for chunks in ({"time": 1, "y": 4, "x": 5}, {"time": 5, "y": 10, "x": 7}, {"time": -1, "class": 3}):
        with dask.config.set(scheduler=_forbid_compute):
            lazy = composite(_cube(prob, dates, CLASSES, chunks=chunks), "season")
        assert all(isinstance(lazy[v].data, da.Array) for v in lazy.data_vars)
        got = lazy.compute()
        for v in ("probability", "margin"):
            np.testing.assert_allclose(got[v].values, ref[v].values, rtol=0, atol=1e-7, equal_nan=True)
        for v in ("label", "mode", "n_valid"):
            np.testing.assert_array_equal(got[v].values, ref[v].values)
    med_ref = composite(_cube(prob, dates, CLASSES), "season", method="median")
    with dask.config.set(scheduler=_forbid_compute):
        med = composite(_cube(prob, dates, CLASSES, chunks={"time": 1, "y": 4, "x": 5}), "season", method="median")
    np.testing.assert_allclose(med.probability.values, med_ref.probability.values, atol=1e-7, equal_nan=True)
    np.testing.assert_array_equal(med["mode"].values, med_ref["mode"].values)
    # and the numpy result agrees with a direct computation
    valid = np.isfinite(prob).all(axis=1)
    month = pd.DatetimeIndex(dates).to_period("Q-NOV")
    for i, per in enumerate(pd.unique(month)):
        sel = np.asarray(month == per)
        v = valid[sel][:, None]
        num = np.where(v, np.nan_to_num(prob[sel]), 0).sum(0)
        cnt = v.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            expect = np.where(cnt > 0, num / cnt, np.nan)
        np.testing.assert_allclose(ref.probability[i].values, expect, atol=1e-6, equal_nan=True)
        np.testing.assert_array_equal(ref.n_valid[i].values, cnt[0])


def test_grid_attrs_and_dataset_input(tiny: xr.DataArray) -> None:
    ds = xr.Dataset({"probability": tiny}, attrs={"model": "tiny"})
    c = composite(ds, "month")
    assert c.odc.geobox == tiny.odc.geobox and c.rio.crs.to_epsg() == 32633
    assert c.attrs["model"] == "tiny" and "dwcube.composite.composite(period='month'" in c.attrs["history"]
    assert c.probability.attrs["model_version"] == "1"
    assert c.label.attrs["flag_meanings"] == "water trees grass" and c["mode"].attrs["flag_meanings"] == "water trees grass"
    c2 = composite(c.probability.assign_attrs(history="earlier step"), "year")
    assert c2.attrs["history"].startswith("earlier step\n")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"period": "fortnight"}, "unknown period 'fortnight'"),
    ({"period": "ME"}, "end-anchored"),
    ({"method": "max"}, "unknown method 'max'"),
    ({"min_count": 0}, "min_count must be an integer >= 1"),
])
def test_bad_arguments_are_named(tiny: xr.DataArray, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        composite(tiny, **kwargs)


def test_bad_cubes_are_named(tiny: xr.DataArray) -> None:
    with pytest.raises(TypeError, match="period must be"):
        composite(tiny, 3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="expected a probability DataArray"):
        composite(tiny.values)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no 'class' dimension"):
        composite(tiny.isel({"class": 0}))
    with pytest.raises(ValueError, match="no 'time' dimension"):
        composite(tiny.isel(time=0))
    with pytest.raises(ValueError, match="no 'probability' variable"):
        composite(xr.Dataset({"label": tiny.isel({"class": 0})}))
    with pytest.raises(ValueError, match="must be datetime64"):
        composite(tiny.assign_coords(time=np.arange(5)))

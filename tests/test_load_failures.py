"""Reads that fail at compute time: retried, then an AssetError or NaN plus a record (issue 15, item 2).

Real faults, no mocks: a loopback HTTP server that cuts response bodies short, COGs truncated
after their header, files that are gone.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np
import pytest

import dwcube
from dwcube import testing as T
from dwcube.reads import AssetError, AssetReadWarning

from .conftest import nan_equal

UTC = dt.timezone.utc
T0 = dt.datetime(2023, 6, 14, 10, 0, tzinfo=UTC)
LOADERS = ["odc-stac", "stackstac"]


@pytest.mark.parametrize("loader", LOADERS)
def test_a_body_cut_short_is_retried_and_the_cube_is_complete(make_s2_tile, tmp_path: Path, loader: str) -> None:
    a, _ = make_s2_tile("A", T0, shape=(300, 300), bands=("blue", "red"))
    ref = dwcube.load([a], bands=["blue", "red"], chunks=128, loader=loader).compute()
    with T.serve_directory(tmp_path, cut_paths={"A/red.tif": 2}) as (url, stats):
        a2, _ = make_s2_tile("A", T0, shape=(300, 300), bands=("blue", "red"), base_url=url)
        # GDAL's own HTTP retries off: what makes the cube whole is dwcube's retry of the read
        got = dwcube.load([a2], bands=["blue", "red"], chunks=128, loader=loader,
                          gdal_env={"GDAL_HTTP_MAX_RETRY": 0}).compute()
    assert stats.cut_on_purpose == 2
    for v in ("blue", "red"):
        assert nan_equal(got[v].values, ref[v].values)
    assert dwcube.read_failures(got) == []


@pytest.mark.parametrize("loader", LOADERS)
def test_a_truncated_cog_raises_or_is_nan_and_recorded(make_s2_tile, tmp_path: Path, loader: str) -> None:
    a, arr = make_s2_tile("A", T0, shape=(512, 512), bands=("blue", "red"))
    lost = T.truncate_cog(tmp_path / "A" / "red.tif", keep=0.5)
    assert len(lost) == 2  # of the 4 tiles of 256²

    with pytest.raises(AssetError, match=r"item 'A' band 'red'.*red\.tif failed 3 time"):
        dwcube.load([a], bands=["blue", "red"], chunks=256, loader=loader).compute()

    ds = dwcube.load([a], bands=["blue", "red"], chunks=256, loader=loader, on_error="nan", read_retries=1)
    assert ds.attrs["failed_assets"] == []  # the header is intact: nothing is known before reading
    with pytest.warns(AssetReadWarning, match="A/red"):
        got = ds.compute()
    red = got.red.values[0]
    want = ((arr["red"] - 1000.0) / 10000).astype(np.float32)
    for r, c in lost:
        want[r * 256:(r + 1) * 256, c * 256:(c + 1) * 256] = np.nan
    np.testing.assert_array_max_ulp(red, want, maxulp=1)  # exactly the lost tiles are NaN
    assert nan_equal(np.isnan(red), np.isnan(want))
    assert np.isfinite(got.blue.values).all()

    record = dwcube.read_failures(got)
    assert len(record) == 1 and record[0].startswith("A/red: ") and "2 block(s) NaN after 2 attempt(s)" in record[0]
    # a product of the cube that lost its attrs (a probability cube keeps the item_id coordinate)
    bare = got.red.copy()
    bare.attrs = {}
    assert dwcube.read_failures(bare) == record
    # an unrelated cube is not blamed
    other = got.red.assign_coords(item_id=("time", ["B"]))
    other.attrs = {}
    assert dwcube.read_failures(other) == []

    # the file is repaired and the same lazy cube computed again: the record clears
    make_s2_tile("A", T0, shape=(512, 512), bands=("blue", "red"))
    again = ds.compute()
    assert np.isfinite(again.red.values).all()
    assert dwcube.read_failures(ds) == []


@pytest.mark.parametrize("loader", LOADERS)
def test_a_band_that_fails_in_every_item_is_a_nan_band(make_s2_tile, loader: str, tmp_path: Path) -> None:
    a, _ = make_s2_tile("A", T0)
    b, _ = make_s2_tile("B", T0 + dt.timedelta(days=3), seed=4)
    os.remove(tmp_path / "A" / "red.tif")
    os.remove(tmp_path / "B" / "red.tif")
    with pytest.warns(AssetReadWarning, match="2 asset"):
        ds = dwcube.load([a, b], bands=["red", "blue"], on_error="nan", loader=loader)
    assert [f.split(":")[0] for f in ds.attrs["failed_assets"]] == ["A/red", "B/red"]
    got = ds.compute()
    assert list(got.data_vars) == ["red", "blue"]
    assert np.isnan(got.red.values).all() and np.isfinite(got.blue.values).all()
    assert dwcube.read_failures(got) == ds.attrs["failed_assets"]

    # the same when the items lack the asset altogether
    for it in (a, b):
        del it.assets["red"]
    with pytest.warns(AssetReadWarning):
        got = dwcube.load([a, b], bands=["red", "blue"], on_error="nan", loader=loader).compute()
    assert got.attrs["failed_assets"] == ["A/red: missing asset", "B/red: missing asset"]
    assert np.isnan(got.red.values).all() and np.isfinite(got.blue.values).all()


def test_read_retries_is_checked(make_s2_tile) -> None:
    a, _ = make_s2_tile("A", T0)
    with pytest.raises(ValueError, match="read_retries"):
        dwcube.load([a], read_retries=-1)


@pytest.mark.slow
def test_failures_on_distributed_workers_are_recorded(make_s2_tile, tmp_path: Path) -> None:
    """Reads on worker processes: the record comes back through the cluster's event log."""
    from dask.distributed import Client, LocalCluster

    a, _ = make_s2_tile("A", T0, shape=(512, 512), bands=("blue", "red"))
    T.truncate_cog(tmp_path / "A" / "red.tif", keep=0.5)
    ds = dwcube.load([a], bands=["blue", "red"], chunks=256, on_error="nan", read_retries=1)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster, Client(cluster):
        got = ds.compute()
        record = dwcube.read_failures(got)
    assert np.isnan(got.red.values).mean() == 0.5 and np.isfinite(got.blue.values).all()
    assert len(record) == 1 and record[0].startswith("A/red: ") and "2 block(s)" in record[0]

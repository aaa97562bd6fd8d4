"""Zarr archives: encoding, reading back with plain xarray + CRS, appending, refusing, resuming."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

import dwcube
from dwcube.archive import (ArchiveEncoding, ArchiveError, ArchiveMismatchError, IncompleteArchiveWarning,
                            archive_info, open_archive, write_archive)
from dwcube.inference import classify
from dwcube.testing import TINY_MODEL, synthetic_cube


def _prob(dates: int = 4, size: int = 48, seed: int = 0, chunks: int = 16, **kw) -> xr.DataArray:
    cube = synthetic_cube(size, dates, seed=seed, chunks=chunks, nodata_fraction=0.2)
    return classify(cube, TINY_MODEL, device="cpu", **kw)


def test_roundtrip_with_plain_xarray_rioxarray_and_odc_geo(tmp_path: Path) -> None:
    prob = _prob()
    want = prob.compute()
    store = tmp_path / "a.zarr"
    report = write_archive(prob, store, encoding=ArchiveEncoding(chunk=32))
    assert len(report.written) == 4 and report.blocks == 4 * 2 * 2
    plain = xr.open_zarr(store, consolidated=False)
    assert plain.rio.crs.to_epsg() == 32633 and plain.probability.rio.crs.to_epsg() == 32633
    assert plain.odc.geobox == want.odc.geobox
    np.testing.assert_allclose(plain.probability.values, want.values, atol=0.5 / 65534 + 1e-7, rtol=0)
    np.testing.assert_array_equal(np.isnan(plain.probability.values), np.isnan(want.values))
    ds = open_archive(store)
    assert ds.probability.dtype == np.float32 and ds.label.dtype == np.uint8
    np.testing.assert_array_equal(ds.label.values, dwcube.label(want).values)
    conf = dwcube.confidence(want)
    for name in ("top1_probability", "margin", "entropy"):
        np.testing.assert_allclose(ds[name].values, conf[name].values, atol=0.5 / 65534 + 1e-7)
    assert ds.probability.attrs["model"] == "tiny-test"
    assert list(ds["class"].values) == list(dwcube.CLASSES)
    info = archive_info(store)
    assert info["dates"]["count"] == 4 and info["pending"] == [] and info["bytes_per_pixel_date"] > 0


@pytest.mark.parametrize("precision,tol", [("uint8", 0.5 / 254), ("float32", 0.0)])
def test_other_precisions_keep_what_they_promise(tmp_path: Path, precision: str, tol: float) -> None:
    prob = _prob(2)
    enc = ArchiveEncoding(precision=precision, chunk=16)
    write_archive(prob, tmp_path / "p.zarr", encoding=enc)
    got = open_archive(tmp_path / "p.zarr").probability.values
    want = prob.values
    assert np.nanmax(np.abs(got - want)) <= tol + 1e-7 and enc.max_error == pytest.approx(tol)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))


def test_encoder_matches_xarray_cf_encoding() -> None:
    enc = ArchiveEncoding()
    v = np.array([0, 1e-9, 0.25, 0.5 + 1e-6, 1.0, np.nan], np.float32)
    var = xr.Variable(("x",), v, encoding={"dtype": "uint16", "scale_factor": 1 / 65534, "_FillValue": 65535})
    want = xr.conventions.encode_cf_variable(var).values
    np.testing.assert_array_equal(enc.encode_fraction(v), want)


def test_append_new_dates_without_rewriting_old_ones(tmp_path: Path) -> None:
    prob = _prob(5)
    store = tmp_path / "a.zarr"
    write_archive(prob.isel(time=slice(0, 3)), store, encoding=ArchiveEncoding(chunk=16))
    chunk = store / "probability" / "c" / "0" / "0" / "0" / "0"
    before = chunk.stat().st_mtime_ns, chunk.read_bytes()
    report = write_archive(prob.isel(time=slice(1, 5)), store)  # overlaps: 1, 2 skipped
    assert len(report.skipped) == 2 and len(report.written) == 2
    assert (chunk.stat().st_mtime_ns, chunk.read_bytes()) == before
    whole = tmp_path / "whole.zarr"
    write_archive(prob, whole, encoding=ArchiveEncoding(chunk=16))
    xr.testing.assert_identical(open_archive(store).load(), open_archive(whole).load())


def test_mismatched_appends_are_refused_and_nothing_is_lost(tmp_path: Path) -> None:
    prob = _prob(3)
    store = tmp_path / "a.zarr"
    write_archive(prob.isel(time=slice(0, 2)), store, encoding=ArchiveEncoding(chunk=16))
    before = open_archive(store).load()
    other_model = prob.isel(time=[2]).assign_attrs(model="another-model")
    with pytest.raises(ArchiveMismatchError, match="model: archive 'tiny-test', cube 'another-model'"):
        write_archive(other_model, store)
    shifted = prob.isel(time=[2]).assign_coords(x=prob.x + 10.0)
    with pytest.raises(ArchiveMismatchError, match="grid transform"):
        write_archive(shifted, store)
    with pytest.raises(ArchiveMismatchError, match="grid shape"):
        write_archive(prob.isel(time=[2], x=slice(0, 40)), store)
    with pytest.raises(ArchiveMismatchError, match="encoding"):
        write_archive(prob.isel(time=[2]), store, encoding=ArchiveEncoding(precision="uint8", chunk=16))
    earlier = prob.isel(time=[2]).assign_coords(time=[np.datetime64("2020-01-01", "ns")])
    with pytest.raises(ArchiveError, match="earlier than the archive's last date"):
        write_archive(earlier, store)
    with pytest.raises(ArchiveError, match="already exists"):
        write_archive(prob, store, mode="w-")
    xr.testing.assert_identical(open_archive(store).load(), before)
    assert "dwcube_pending" not in zarr.open_group(store, mode="r").attrs


_WRITER = textwrap.dedent("""
    import sys
    import dask
    from dwcube.archive import ArchiveEncoding, write_archive
    from dwcube.inference import classify
    from dwcube.testing import TINY_MODEL, synthetic_cube
    cube = synthetic_cube(64, 4, seed=7, chunks=16, nodata_fraction=0.2)
    prob = classify(cube, TINY_MODEL, device="cpu", options={"delay": float(sys.argv[2])})
    with dask.config.set(scheduler="threads", num_workers=1):
        write_archive(prob, sys.argv[1], encoding=ArchiveEncoding(chunk=16))
""")


def _markers(store: Path) -> int:
    root = store / "_progress" / "done" / "c"
    return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0


@pytest.mark.slow
def test_a_killed_write_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    store = tmp_path / "killed.zarr"
    proc = subprocess.Popen([sys.executable, str(script), str(store), "0.15"])
    try:
        deadline = time.time() + 120
        while _markers(store) < 12 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "the writer finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done = _markers(store)
    assert 12 <= done < 64
    with pytest.warns(IncompleteArchiveWarning, match="unfinished"):
        partial = open_archive(store)
    assert partial.sizes["time"] == 0
    assert len(archive_info(store)["pending"]) == 4

    cube = synthetic_cube(64, 4, seed=7, chunks=16, nodata_fraction=0.2)
    prob = classify(cube, TINY_MODEL, device="cpu")
    with pytest.raises(ArchiveError, match="unfinished write"):
        write_archive(prob.isel(time=[0, 1]), store)  # a different job cannot pass the pending one
    report = write_archive(prob, store)
    assert report.blocks_resumed >= done - 1 and report.blocks + report.blocks_resumed == 64
    assert not (store / "_progress").exists()
    whole = tmp_path / "whole.zarr"
    write_archive(prob, whole, encoding=ArchiveEncoding(chunk=16))
    with warnings.catch_warnings():
        warnings.simplefilter("error", IncompleteArchiveWarning)
        a, b = open_archive(store).load(), open_archive(whole).load()
    for name in b.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values)
    np.testing.assert_array_equal(a.time.values, b.time.values)


def test_a_store_that_is_not_an_archive_is_left_alone(tmp_path: Path) -> None:
    store = tmp_path / "other.zarr"
    xr.Dataset({"v": ("x", np.arange(3))}).to_zarr(store, zarr_format=3, consolidated=False)
    with pytest.raises(ArchiveError, match="not a dwcube archive"):
        write_archive(_prob(1), store)
    with pytest.raises(ArchiveError, match="not a dwcube archive"):
        open_archive(store)
    assert xr.open_zarr(store, consolidated=False).v.values.tolist() == [0, 1, 2]


def test_cube_without_grid_or_model_is_refused(tmp_path: Path) -> None:
    prob = _prob(1).compute()
    with pytest.raises(ArchiveError, match="no grid/CRS"):
        bare = xr.DataArray(prob.values, dims=prob.dims, attrs=prob.attrs,
                            coords={d: prob[d].values for d in prob.dims})  # no CRS anywhere
        write_archive(bare, tmp_path / "a.zarr")
    with pytest.raises(ArchiveError, match="does not name its model"):
        write_archive(prob.drop_attrs(), tmp_path / "b.zarr")
    with pytest.raises(ArchiveError, match="expected the probability cube"):
        write_archive(prob.isel(time=0), tmp_path / "c.zarr")

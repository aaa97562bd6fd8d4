"""Zarr archives: encoding, reading back with plain xarray + CRS, appending, refusing mixtures.

Several writers, killed writers and resumes: tests/test_archive_writers.py; damage:
tests/test_archive_integrity.py.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

import dwcube
from dwcube.archive import ArchiveEncoding, ArchiveError, ArchiveMismatchError, archive_info, open_archive, write_archive
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
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "consolidated metadata is missing" warning, nor any other
        plain = xr.open_zarr(store)
    assert plain.rio.crs.to_epsg() == 32633 and plain.probability.rio.crs.to_epsg() == 32633
    assert plain.odc.geobox == want.odc.geobox
    for name in ("probability", "top1_probability", "margin", "entropy"):
        assert plain[name].dtype == np.float32, name  # not float64: half the memory
    np.testing.assert_allclose(plain.probability.values, want.values, atol=2.0 ** -17, rtol=0)
    np.testing.assert_array_equal(np.isnan(plain.probability.values), np.isnan(want.values))
    ds = open_archive(store)
    assert ds.probability.dtype == np.float32 and ds.label.dtype == np.uint8
    np.testing.assert_array_equal(ds.label.values, dwcube.label(want).values)
    conf = dwcube.confidence(want)
    for name in ("top1_probability", "margin", "entropy"):
        np.testing.assert_allclose(ds[name].values, conf[name].values, atol=2.0 ** -17)
    assert ds.probability.attrs["model"] == "tiny-test"
    assert list(ds["class"].values) == list(dwcube.CLASSES)
    info = archive_info(store)
    assert info["dates"]["count"] == 4 and info["pending"] == [] and info["bytes_per_pixel_date"] > 0
    assert info["problems"] == []


@pytest.mark.parametrize("precision,tol", [("uint16", 2.0 ** -17), ("uint8", 2.0 ** -9), ("float32", 0.0)])
def test_precisions_keep_what_they_promise(tmp_path: Path, precision: str, tol: float) -> None:
    prob = _prob(2)
    enc = ArchiveEncoding(precision=precision, chunk=16)
    write_archive(prob, tmp_path / "p.zarr", encoding=enc)
    got = xr.open_zarr(tmp_path / "p.zarr").probability.values
    want = prob.values
    assert got.dtype == np.float32 and enc.max_error == tol
    assert np.nanmax(np.abs(got - want)) <= tol
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(open_archive(tmp_path / "p.zarr").probability.values, got)
    if precision != "float32":  # stored values are exact multiples of the grid step
        steps = got[np.isfinite(got)] / np.float32(2 * tol)
        np.testing.assert_array_equal(steps, np.round(steps))


def test_label_flags_follow_the_classes_and_colours(tmp_path: Path) -> None:
    store = tmp_path / "a.zarr"
    write_archive(_prob(1), store, encoding=ArchiveEncoding(chunk=16))
    for ds in (open_archive(store), xr.open_zarr(store)):
        attrs = ds.label.attrs
        assert list(attrs["flag_values"]) == list(range(len(dwcube.CLASSES)))
        assert attrs["flag_meanings"].split() == list(dwcube.CLASSES)
        assert attrs["flag_colors"].split() == [dwcube.COLORS[c] for c in dwcube.CLASSES]
        assert attrs["nodata"] == 255


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
    a, b = open_archive(store).load(), open_archive(whole).load()
    xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
    assert a.attrs["dwcube_archive"] == b.attrs["dwcube_archive"]
    assert [w["count"] for w in a.attrs["dwcube_writes"]] == [3, 2]  # provenance of each write
    with warnings.catch_warnings():  # the consolidated metadata follows the appends
        warnings.simplefilter("error")
        plain = xr.open_zarr(store)
    np.testing.assert_array_equal(plain.time.values, prob.time.values)
    np.testing.assert_array_equal(plain.label.values, b.label.values)


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
    # every setting that changes the numbers: build options, the no-data fill, the cloud mask
    with pytest.raises(ArchiveMismatchError, match="model option seed: archive 0, cube 1"):
        write_archive(_prob(3, options={"seed": 1}).isel(time=[2]), store)
    with pytest.raises(ArchiveMismatchError, match="fill_value: archive 0.0, cube 0.5"):
        write_archive(_prob(3, fill_value=0.5).isel(time=[2]), store)
    with pytest.raises(ArchiveMismatchError, match="cloud_mask: archive None, cube 'dynamic-world"):
        write_archive(prob.isel(time=[2]).assign_attrs(cloud_mask="dynamic-world cloud/shadow mask: …"), store)
    earlier = prob.isel(time=[2]).assign_coords(time=[np.datetime64("2020-01-01", "ns")])
    with pytest.raises(ArchiveError, match="earlier than the archive's last date"):
        write_archive(earlier, store)
    with pytest.raises(ArchiveError, match="already exists"):
        write_archive(prob, store, mode="w-")
    xr.testing.assert_identical(open_archive(store).load(), before)
    assert "dwcube_pending" not in zarr.open_group(store, mode="r").attrs
    # tiling, batching and compilation change results at float noise at most: accepted
    same_but_tiled = _prob(3, tile=16, batch_size=1, options={"seed": 0}).isel(time=[2])
    assert write_archive(same_but_tiled, store).written == [str(np.datetime64(prob.time.values[2], "us"))]


def test_an_archive_of_another_format_is_read_but_not_appended_to(tmp_path: Path) -> None:
    prob = _prob(2)
    store = tmp_path / "a.zarr"
    write_archive(prob.isel(time=[0]), store, encoding=ArchiveEncoding(chunk=16))
    group = zarr.open_group(store, mode="r+")
    group.attrs["dwcube_archive"] = {**group.attrs["dwcube_archive"], "format": 1}
    with pytest.raises(ArchiveMismatchError, match="archive format 1 and this dwcube writes format 2"):
        write_archive(prob.isel(time=[1]), store)
    assert open_archive(store).sizes["time"] == 1


@pytest.mark.shared
def test_dynamic_world_directions_do_not_mix(shared: Path, tmp_path: Path) -> None:
    """The issue's case: a Dynamic World archive took a date classified with direction="backward"."""
    bands = ("blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "swir16", "swir22")
    cube = synthetic_cube(32, 2, bands=bands, sensor="sentinel-2-l1c", chunks=32)
    weights = shared / "dynamicworld"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # synthetic reflectance is outside Dynamic World's domain
        forward = classify(cube, "dynamic-world", weights=weights, device="cpu", compile=False)
        backward = classify(cube, "dynamic-world", weights=weights, device="cpu", compile=False,
                            options={"direction": "backward"})
    store = tmp_path / "dw.zarr"
    write_archive(forward.isel(time=[0]), store, encoding=ArchiveEncoding(chunk=32))
    with pytest.raises(ArchiveMismatchError, match="model option direction: archive 'forward', cube 'backward'"):
        write_archive(backward.isel(time=[1]), store)
    info = archive_info(store)
    assert info["settings"]["model_build_options"] == {"direction": "forward", "fast": True}
    assert info["dates"]["count"] == 1


def test_a_store_that_is_not_an_archive_is_left_alone(tmp_path: Path) -> None:
    store = tmp_path / "other.zarr"
    xr.Dataset({"v": ("x", np.arange(3))}).to_zarr(store, zarr_format=3, consolidated=False)
    before = sorted(p.name for p in store.rglob("*"))
    with pytest.raises(ArchiveError, match="not a dwcube archive"):
        write_archive(_prob(1), store)
    with pytest.raises(ArchiveError, match="not a dwcube archive"):
        open_archive(store)
    assert xr.open_zarr(store, consolidated=False).v.values.tolist() == [0, 1, 2]
    assert sorted(p.name for p in store.rglob("*")) == before and not Path(f"{store}.lock").exists()


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

"""dwcube.load on small tiles made by code: Landsat, grouping, the grid rule, failures, laziness, Zarr."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import numpy as np
import pystac
import pytest
import xarray as xr

import dwcube
from dwcube import testing as T
from dwcube.load import AssetError
from dwcube.sensors import SensorError, UnknownBandError

from .conftest import nan_equal

UTC = dt.timezone.utc
T0 = dt.datetime(2023, 6, 14, 10, 0, tzinfo=UTC)


# -- Landsat Collection 2 Level-2 --------------------------------------------------------------


def _landsat(tmp_path: Path, platform: str, layout: str = "planetary-computer", base_url: str | None = None):
    rng = np.random.default_rng(3)
    shape = (50, 60)
    bands = ["blue", "green", "red", "nir08", "swir16", "swir22"] + (["coastal"] if platform[-1] in "89" else [])
    arrays, infos = {}, {}
    tr = (30.0, 0, 300000.0, 0, -30.0, 5100000.0)
    for b in bands:
        dn = rng.integers(7273, 43636, size=shape).astype(np.uint16)  # reflectance 0 .. 1
        dn[0, :] = 0  # fill row
        arrays[b] = dn
        infos[b] = T.write_cog(tmp_path / platform / f"{b}.tif", dn, epsg=32632, transform=tr)
    qa = np.full(shape, 21824, np.uint16)  # clear
    qa[0, :] = 1  # fill
    qa[10:15, 10:15] = 22280  # cloud (bit 3)
    qa[20:25, 20:25] = 23888  # cloud shadow (bit 4)
    qa[30:35, 30:35] = 21826  # dilated cloud (bit 1)
    qa[40:45, 40:45] = 30048  # snow (bit 5): kept by default
    arrays["qa_pixel"] = qa
    infos["qa_pixel"] = T.write_cog(tmp_path / platform / "qa_pixel.tif", qa, epsg=32632, transform=tr, nodata=1)
    item = T.landsat_item(f"{platform}-item", T0, infos, base_url=base_url or tmp_path.resolve().as_uri(),
                          root=tmp_path, platform=platform, layout=layout, cloud_cover=12.0)
    return item, arrays


@pytest.mark.parametrize(("platform", "layout"), [("landsat-8", "planetary-computer"), ("landsat-9", "usgs"),
                                                  ("landsat-7", "planetary-computer"), ("landsat-5", "usgs")])
def test_landsat_scale_offset_qa_pixel_and_fill(tmp_path: Path, platform: str, layout: str) -> None:
    item, arr = _landsat(tmp_path, platform, layout)
    ds = dwcube.load([item], bands=["red", "nir", "swir22"]).compute()  # "nir" is nir08 on Landsat
    assert list(ds.data_vars) == ["red", "nir08", "swir22"]
    assert ds.attrs["sensor"] == ("landsat-c2-l2-oli" if platform[-1] in "89" else "landsat-c2-l2-tm")
    qa = arr["qa_pixel"]
    bad = (qa & 0b11111) != 0
    for b in ("red", "nir08", "swir22"):
        want = (arr[b].astype(np.float64) * 0.0000275 - 0.2).astype(np.float32)
        want[(arr[b] == 0) | bad] = np.nan
        got = ds[b].values[0]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)
        assert nan_equal(np.isnan(got), np.isnan(want))
    assert np.isnan(ds.red.values[0][0]).all()  # fill
    assert np.isfinite(ds.red.values[0][40:45, 40:45]).all()  # snow kept
    assert ds.tile.values.tolist() == ["190028"]
    # the mask is configurable: also drop snow (bit 5)
    snowless = dwcube.load([item], bands=["red"], mask=[0, 1, 2, 3, 4, 5]).compute()
    assert np.isnan(snowless.red.values[0][40:45, 40:45]).all()
    nomask = dwcube.load([item], bands=["red"], mask=None).compute()
    assert np.isfinite(nomask.red.values[0][10:15, 10:15]).all()
    assert np.isnan(nomask.red.values[0][0]).all()  # no data stays NaN without a mask


def test_landsat_tm_has_no_coastal_band(tmp_path: Path) -> None:
    item, _ = _landsat(tmp_path, "landsat-7")
    with pytest.raises(UnknownBandError, match="coastal.*available: blue, green, red, nir08, swir16, swir22"):
        dwcube.load([item], bands=["coastal"])


def test_landsat_7_and_8_load_into_one_cube(tmp_path: Path) -> None:
    l7, _ = _landsat(tmp_path, "landsat-7")
    l8, _ = _landsat(tmp_path, "landsat-8")
    l8.datetime = T0 + dt.timedelta(days=8)
    ds = dwcube.load([l7, l8], bands=None)
    assert list(ds.data_vars) == ["blue", "green", "red", "nir08", "swir16", "swir22"]
    assert ds.platform.values.tolist() == ["landsat-7", "landsat-8"]


# -- Sentinel-2: grouping, grid, harmonisation ---------------------------------------------------


def test_solar_day_grouping_takes_the_first_valid_pixel(make_s2_tile) -> None:
    """Two overlapping tiles of one pass: a cloud in the first never hides the clear second."""
    scl_a = np.full((64, 80), 4, np.uint8)
    scl_a[:, :20] = 9  # cloud on the west of tile A
    a, arr_a = make_s2_tile("A", T0, scl=scl_a, seed=1)
    b, arr_b = make_s2_tile("B", T0 + dt.timedelta(seconds=5), x0=500000.0 - 200.0, seed=2)
    other_day, _ = make_s2_tile("C", T0 + dt.timedelta(days=5), seed=3)
    ds = dwcube.load([other_day, b, a], bands=["red"]).compute()
    assert ds.sizes["time"] == 2
    assert ds.item_id.values.tolist() == ["A,B", "C"]
    day = ds.red.isel(time=0)
    # grid: union of both tiles (B is 20 px further west)
    assert day.sizes == {"y": 64, "x": 100}
    got = day.values
    ref_a = (arr_a["red"].astype(np.float64) - 1000) / 10000
    ref_b = (arr_b["red"].astype(np.float64) - 1000) / 10000
    # where A is clear, A wins (earliest item); where A is cloudy, B fills in
    np.testing.assert_allclose(got[:, 40:100], ref_a[:, 20:80], atol=1e-7)
    np.testing.assert_allclose(got[:, 20:40], ref_b[:, 20:40], atol=1e-7)
    np.testing.assert_allclose(got[:, 0:20], ref_b[:, 0:20], atol=1e-7)
    assert not np.isnan(got).any()
    per_item = dwcube.load([a, b, other_day], bands=["red"], groupby="id")
    assert per_item.sizes["time"] == 3


def test_items_in_several_crs_use_the_most_common_one(make_s2_tile) -> None:
    a, _ = make_s2_tile("A", T0, epsg=32633, x0=699000.0)
    b, _ = make_s2_tile("B", T0 + dt.timedelta(days=1), epsg=32633, x0=699000.0, seed=1)
    # the same place in the next UTM zone
    from pyproj import Transformer

    x34, y34 = Transformer.from_crs(32633, 32634, always_xy=True).transform(699400.0, 4999700.0)
    c, _ = make_s2_tile("C", T0 + dt.timedelta(days=2), epsg=32634, x0=round(x34, -1) - 200,
                        y0=round(y34, -1) + 200, seed=2)
    ds = dwcube.load([a, b, c], bands=["red"], bbox=c.bbox)
    assert ds.odc.geobox.crs.epsg == 32633 and ds.rio.crs.to_epsg() == 32633
    assert ds.sizes["time"] == 3
    assert np.isfinite(ds.red.isel(time=2).values).mean() > 0.5  # reprojected, not empty
    # a tie: the earliest item's CRS wins; an explicit crs always wins
    assert dwcube.load([a, c], bands=["red"], bbox=c.bbox).odc.geobox.crs.epsg == 32633
    assert dwcube.load([c, a], bands=["red"], bbox=c.bbox).odc.geobox.crs.epsg == 32633
    assert dwcube.load([a, c], bands=["red"], bbox=c.bbox, crs="EPSG:32634").odc.geobox.crs.epsg == 32634
    with pytest.raises(ValueError, match="geographic"):
        dwcube.load([a], bands=["red"], crs="EPSG:4326")
    geo = dwcube.load([a], bands=["red"], crs="EPSG:4326", resolution=0.0001)
    assert geo.odc.geobox.crs.epsg == 4326


def test_harmonization_to_landsat(make_s2_tile) -> None:
    a, arr = make_s2_tile("A", T0, bands=("red", "nir"), platform="sentinel-2b")
    plain = dwcube.load([a], bands=["red", "nir"]).compute()
    hls = dwcube.load([a], bands=["red", "nir"], harmonize=True).compute()
    np.testing.assert_allclose(hls.red.values, 0.9761 * plain.red.values + 0.001, atol=2e-7)
    np.testing.assert_array_equal(hls.nir.values, plain.nir.values)  # B08 has no HLS coefficient
    assert hls.attrs["harmonization"] == "HLS v2 bandpass MSI->OLI on red"
    c, _ = make_s2_tile("C", T0, platform="sentinel-2c")
    with pytest.raises(SensorError, match="sentinel-2c"):
        dwcube.load([c], bands=["red"], harmonize=True)


def test_earth_search_offset_flag_is_honoured(make_s2_tile) -> None:
    a, arr = make_s2_tile("A", T0, bands=("red",), extra_properties={"earthsearch:boa_offset_applied": True})
    got = dwcube.load([a], bands=["red"]).red.values[0]
    np.testing.assert_allclose(got, arr["red"] / 10000.0, atol=1e-7)
    forced = dwcube.load([a], bands=["red"], baseline_offset="apply").red.values[0]
    np.testing.assert_allclose(forced, (arr["red"] - 1000.0) / 10000.0, atol=1e-7)


def test_missing_baseline_and_mixed_products_are_errors(make_s2_tile, tmp_path: Path) -> None:
    a, _ = make_s2_tile("A", T0, baseline=None)
    with pytest.raises(SensorError, match="processing baseline"):
        dwcube.load([a], bands=["red"])
    b, _ = make_s2_tile("B", T0)
    l8, _ = _landsat(tmp_path, "landsat-8")
    with pytest.raises(SensorError, match="several products"):
        dwcube.load([b, l8], bands=["red"])


def test_unknown_band_names_the_available_ones(make_s2_tile) -> None:
    a, _ = make_s2_tile("A", T0)
    with pytest.raises(UnknownBandError, match="'ndvi'.*available: coastal, blue, green, red"):
        dwcube.load([a], bands=["ndvi"])
    with pytest.raises(AssetError, match="no asset for band 'swir22'.*it has blue, nir, red, scl"):
        dwcube.load([a], bands=["red", "swir22"])


def test_l1c_has_no_quality_layer(make_s2_tile) -> None:
    a, _ = make_s2_tile("A", T0)
    a.collection_id = "sentinel-2-l1c"
    a.properties["s2:product_type"] = "S2MSI1C"
    # the default L1C cloud mask needs bands this item lacks: a clear error, not an unmasked cube
    with pytest.raises(AssetError, match="cloud mask needs bands.*A: cirrus.*cloud_mask=False"):
        dwcube.load([a], bands=["red"])
    ds = dwcube.load([a], bands=["red"], cloud_mask=False)
    assert ds.attrs["product_level"] == "L1C" and ds.attrs["mask"] == "none" and ds.attrs["cloud_mask"] == "none"
    with pytest.raises(SensorError, match="no quality layer"):
        dwcube.load([a], bands=["red"], mask=[3, 8, 9], cloud_mask=False)


# -- failures over HTTP, laziness, chunking ---------------------------------------------------------


def test_lazy_and_chunk_invariant_over_http(make_s2_tile, tmp_path: Path) -> None:
    with T.serve_directory(tmp_path) as (url, stats):
        scl = np.full((64, 80), 4, np.uint8)
        scl[5:30, 7:50] = 8
        a, _ = make_s2_tile("A", T0, scl=scl, base_url=url, shape=(64, 80))
        b, _ = make_s2_tile("B", T0 + dt.timedelta(days=3), base_url=url, seed=5)
        cubes = []
        for chunks in (1000, 32, {"y": 17, "x": 23}):
            before = stats.requests
            ds = dwcube.load([a, b], bands=["blue", "red"], resolution=20, chunks=chunks)
            assert stats.requests == before, "nothing may be read before compute"
            assert ds.red.chunks[0] == (1, 1)
            cubes.append(ds.compute())
        assert stats.requests > 0  # (later loads may be served from GDAL's in-process cache)
    for other in cubes[1:]:
        for v in ("blue", "red"):
            assert nan_equal(cubes[0][v].values, other[v].values)


def test_missing_asset_raises_or_is_recorded(make_s2_tile, tmp_path: Path) -> None:
    with T.serve_directory(tmp_path) as (url, _):
        a, arr = make_s2_tile("A", T0, base_url=url)
        b, _ = make_s2_tile("B", T0 + dt.timedelta(days=3), base_url=url, seed=4)
        os.remove(tmp_path / "B" / "red.tif")  # -> HTTP 404
        with pytest.raises(Exception, match="(?i)404|not recognized|no such file|not exist|HTTP"):
            dwcube.load([a, b], bands=["red", "blue"]).compute()
        ds = dwcube.load([a, b], bands=["red", "blue"], on_error="nan")
        assert len(ds.attrs["failed_assets"]) == 1 and ds.attrs["failed_assets"][0].startswith("B/red:")
        got = ds.compute()
    assert np.isnan(got.red.values[1]).all()  # the broken asset is NaN, never zero
    assert np.isfinite(got.blue.values[1]).all()  # the rest of the item is kept
    np.testing.assert_allclose(got.red.values[0], (arr["red"] - 1000.0) / 10000, atol=1e-7)


def test_flaky_server_every_other_request_fails(make_s2_tile, tmp_path: Path) -> None:
    a, _ = make_s2_tile("A", T0)
    ref = dwcube.load([a], bands=["blue", "red", "nir"], chunks=32).compute()
    with T.serve_directory(tmp_path, fail_every=2) as (url, stats):
        a2, _ = make_s2_tile("A", T0, base_url=url)
        got = dwcube.load([a2], bands=["blue", "red", "nir"], chunks=32).compute()
    assert stats.failed_on_purpose == stats.requests // 2 >= 4  # exactly every other request failed
    for v in ("blue", "red", "nir"):
        assert nan_equal(got[v].values, ref[v].values)


def test_empty_search_error(make_s2_tile) -> None:
    a, _ = make_s2_tile("A", T0)
    with pytest.raises(dwcube.EmptySearchError, match="datetime=2020"):
        dwcube.load([a], datetime="2020")


def test_bad_arguments(make_s2_tile) -> None:
    a, _ = make_s2_tile("A", T0)
    with pytest.raises(ValueError, match="loader"):
        dwcube.load([a], loader="gdal")
    with pytest.raises(ValueError, match="on_error"):
        dwcube.load([a], on_error="ignore")
    with pytest.raises(ValueError, match="groupby"):
        dwcube.load([a, a.clone()], groupby="week").compute()
    with pytest.raises(ValueError, match="resolution"):
        dwcube.load([a], resolution=-10)


# -- Zarr round trip --------------------------------------------------------------------------------


def test_zarr_round_trip_keeps_crs_and_coords(make_s2_tile, tmp_path: Path) -> None:
    import rioxarray  # noqa: F401 - registers .rio

    a, _ = make_s2_tile("A", T0)
    ds = dwcube.load([a], bands=["red", "nir"], chunks=32)
    store = tmp_path / "cube.zarr"
    ds.to_zarr(store, zarr_format=3, consolidated=False)
    back = xr.open_zarr(store, consolidated=False)
    assert back.rio.crs.to_epsg() == 32633
    assert back.odc.geobox == ds.odc.geobox
    assert back.item_id.values.tolist() == ["A"] and back.processing_baseline.values.tolist() == ["04.00"]
    assert back.attrs["sensor"] == "sentinel-2-l2a" and back.attrs["radiometry"] == ["baseline 04.00: offset -1000 DN"]
    assert nan_equal(back.red.values, ds.red.values)


# -- regressions found in review ---------------------------------------------------------------------


def test_item_times_with_offsets_intervals_and_no_zone(make_s2_tile) -> None:
    a, arr = make_s2_tile("A", T0)
    b, _ = make_s2_tile("B", T0 + dt.timedelta(days=2), seed=2)
    c, _ = make_s2_tile("C", T0 + dt.timedelta(days=4), seed=3)
    # +02:00 offset (valid STAC), an interval-only item, and a naive time (read as UTC)
    a.datetime = (T0 + dt.timedelta(hours=2)).replace(tzinfo=dt.timezone(dt.timedelta(hours=2)))
    b.datetime = None
    b.common_metadata.start_datetime = T0 + dt.timedelta(days=2)
    b.common_metadata.end_datetime = T0 + dt.timedelta(days=2, minutes=1)
    c.datetime = (T0 + dt.timedelta(days=4)).replace(tzinfo=None)
    for loader in ("odc-stac", "stackstac"):
        ds = dwcube.load([c, b, a], bands=["red"], loader=loader)
        assert [str(t)[:16] for t in ds.time.values] == ["2023-06-14T10:00", "2023-06-16T10:00", "2023-06-18T10:00"]
        assert ds.item_id.values.tolist() == ["A", "B", "C"]
        np.testing.assert_allclose(ds.red.values[0], (arr["red"] - 1000.0) / 10000, atol=1e-7)


def test_solar_day_across_the_antimeridian_and_any_local_timezone(monkeypatch) -> None:
    from dwcube.load import solar_day

    t = dt.datetime(2022, 6, 1, 22, 30, tzinfo=UTC)
    whole = pystac.Item("w", {"type": "Polygon", "coordinates": [[[178.9, 0], [179.9, 0], [179.9, 1], [178.9, 1], [178.9, 0]]]},
                        [178.9, 0, 179.9, 1], t, {})
    split = pystac.Item("s", {"type": "MultiPolygon", "coordinates": [
        [[[179.5, 0], [180, 0], [180, 1], [179.5, 1], [179.5, 0]]],
        [[[-180, 0], [-179.5, 0], [-179.5, 1], [-180, 1], [-180, 0]]]]}, [179.5, 0, -179.5, 1], t, {})
    assert solar_day(whole) == solar_day(split) == dt.date(2022, 6, 2)
    naive = pystac.Item("n", whole.geometry, whole.bbox, dt.datetime(2022, 6, 1, 10, 0), {})
    monkeypatch.setenv("TZ", "America/New_York")
    import time as _time

    _time.tzset()
    try:
        assert solar_day(naive) == dt.date(2022, 6, 1)  # 10:00 UTC + 12 h -> still June 1st
    finally:
        monkeypatch.delenv("TZ")
        _time.tzset()


def test_mask_as_array_and_bad_chunks(make_s2_tile) -> None:
    scl = np.full((64, 80), 4, np.uint8)
    scl[:10] = 11
    a, _ = make_s2_tile("A", T0, scl=scl)
    got = dwcube.load([a], bands=["red"], mask=np.array([0, 1, 3, 8, 9, 10, 11])).red.values[0]
    assert np.isnan(got[:10]).all() and np.isfinite(got[10:]).all()
    with pytest.raises(ValueError, match="mask must be"):
        dwcube.load([a], bands=["red"], mask="clouds")
    with pytest.raises(ValueError, match="mask must be"):
        dwcube.load([a], bands=["red"], mask=["cloud", "shadow"])
    for bad in (0, -1, {"x": 0}):
        with pytest.raises(ValueError, match="chunks must be positive"):
            dwcube.load([a], bands=["red"], chunks=bad)


def test_stackstac_reprojection_does_not_depend_on_chunking(make_s2_tile) -> None:
    a, _ = make_s2_tile("A", T0, shape=(64, 80))
    cubes = [dwcube.load([a], bands=["red"], crs="EPSG:32632", resolution=13, chunks=c, loader="stackstac").compute()
             for c in (4096, 16, 7)]
    assert np.isfinite(cubes[0].red.values).mean() > 0.5
    for other in cubes[1:]:
        assert nan_equal(cubes[0].red.values, other.red.values)

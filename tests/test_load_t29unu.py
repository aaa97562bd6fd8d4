"""The real T29UNU L2A tile (baseline 04.00, ~60 % cloud, ~40 % outside the swath) through a
local STAC API and a Range-capable HTTP server."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr

import dwcube
from dwcube import testing as T
from dwcube.sensors import SCL_DEFAULT_MASK

from .conftest import nan_equal, t29unu_item

pytestmark = [pytest.mark.shared, pytest.mark.network]

BANDS = ["blue", "red", "nir08", "swir16"]


def _jp2(t29unu_dir: Path, band_id: str, res: int = 60) -> np.ndarray:
    with rasterio.open(t29unu_dir / f"T29UNU_20221005T115411_{band_id}_{res}m.jp2") as src:
        return src.read(1)


def _expected(t29unu_dir: Path, scl: np.ndarray, offset: float) -> dict[str, np.ndarray]:
    bad = SCL_DEFAULT_MASK.invalid(scl)
    out = {}
    for b, bid in zip(BANDS, ["B02", "B04", "B8A", "B11"], strict=True):
        dn = _jp2(t29unu_dir, bid).astype(np.float64)
        refl = ((dn + offset) / 10000.0).astype(np.float32)
        refl[(dn == 0) | bad] = np.nan
        out[b] = refl
    return out


def test_baseline_0400_offset_and_scl_mask_exact(t29unu_dir: Path, t29unu_root: Path,
                                                 t29unu_server: tuple[str, T.ServerStats], tmp_path: Path) -> None:
    url, stats = t29unu_server
    item = t29unu_item(t29unu_dir, t29unu_root, url, scl_resolution=60)
    with T.stac_api([item], tmp_path) as api:
        ds = dwcube.load(api, collections=["sentinel-2-l2a"], bands=BANDS, resolution=60, chunks=700)
        assert stats.requests == 0, "load() must not read pixels"
        got = ds.compute()
    assert got.sizes == {"time": 1, "y": 1830, "x": 1830}
    assert float(got.x[0]) == 499980 + 30 and float(got.y[0]) == 5900040 - 30  # pixel centres, native grid
    scl = _jp2(t29unu_dir, "SCL")
    want = _expected(t29unu_dir, scl, -1000.0)
    for b in BANDS:
        np.testing.assert_array_max_ulp(got[b].values[0], want[b], maxulp=1)  # NaN in the same places
        assert nan_equal(np.isnan(got[b].values[0]), np.isnan(want[b]))
    # the scene really exercises the mask: clouds, shadows and no data are all there
    for cls in (0, 3, 8, 9, 10):
        assert (scl == cls).sum() > 1000, cls
        assert np.isnan(got.red.values[0][scl == cls]).all()
    valid = np.isfinite(got.red.values[0])
    assert 0.1 < valid.mean() < 0.3
    assert got.attrs["radiometry"] == ["baseline 04.00: offset -1000 DN"]
    assert got.attrs["mask"] == "classes:0,1,3,8,9,10"
    assert got.processing_baseline.values.tolist() == ["04.00"]
    assert got.platform.values.tolist() == ["sentinel-2a"]
    assert got.red.dtype == np.float32 and got.red.attrs["units"] == "1"


def test_same_scene_as_old_baseline_loads_as_dn_over_10000(t29unu_dir: Path, t29unu_root: Path,
                                                           t29unu_server: tuple[str, T.ServerStats],
                                                           tmp_path: Path) -> None:
    url, _ = t29unu_server
    item = t29unu_item(t29unu_dir, t29unu_root, url, scl_resolution=60, baseline="02.14")
    with T.stac_api([item], tmp_path) as api:
        got = dwcube.load(api, collections=["sentinel-2-l2a"], bands=["red"], resolution=60).compute()
    want = _expected(t29unu_dir, _jp2(t29unu_dir, "SCL"), 0.0)["red"]
    np.testing.assert_array_max_ulp(got.red.values[0], want, maxulp=1)
    assert got.attrs["radiometry"] == ["baseline 02.14: no offset"]


def test_scl_at_20m_on_a_20m_grid_earth_search_layout(t29unu_dir: Path, t29unu_root: Path,
                                                     t29unu_server: tuple[str, T.ServerStats]) -> None:
    """Earth Search publishes SCL at 20 m: on a 20 m grid it is used natively (no resampling)."""
    url, _ = t29unu_server
    item = t29unu_item(t29unu_dir, t29unu_root, url, scl_resolution=20)
    ds = dwcube.load([item], bands=["red"], resolution=20, resampling="nearest", chunks=1024)
    # a 6 x 6 km window away from the tile edge
    gb = ds.odc.geobox
    assert gb.crs.epsg == 32629 and gb.shape == (5490, 5490)
    win = ds.red.isel(y=slice(3000, 3300), x=slice(600, 900)).values[0]
    scl20 = _jp2(t29unu_dir, "SCL", 20)[3000:3300, 600:900]
    dn = np.repeat(np.repeat(_jp2(t29unu_dir, "B04")[1000:1100, 200:300], 3, 0), 3, 1).astype(np.float64)
    want = ((dn - 1000) / 10000).astype(np.float32)
    want[(dn == 0) | SCL_DEFAULT_MASK.invalid(scl20)] = np.nan
    assert np.isnan(want).mean() > 0.05 and np.isfinite(want).mean() > 0.05
    np.testing.assert_array_max_ulp(win, want, maxulp=1)


def test_planetary_computer_layout_and_stackstac_give_the_same_cube(
        t29unu_dir: Path, t29unu_root: Path, t29unu_server: tuple[str, T.ServerStats]) -> None:
    url, _ = t29unu_server
    es = t29unu_item(t29unu_dir, t29unu_root, url, layout="earth-search")
    pc = t29unu_item(t29unu_dir, t29unu_root, url, layout="planetary-computer")
    assert "B04" in pc.assets and "SCL" in pc.assets and pc.properties["platform"] == "Sentinel-2A"
    kw = dict(bands=["red", "nir08"], resolution=60, chunks=512)
    a = dwcube.load([es], **kw).compute()
    b = dwcube.load([pc], **kw).compute()
    c = dwcube.load([es], loader="stackstac", **kw).compute()
    for v in ("red", "nir08"):
        assert nan_equal(a[v].values, b[v].values)
        assert nan_equal(a[v].values, c[v].values), v
    assert a.sun_elevation.values[0] == pytest.approx(b.sun_elevation.values[0])
    assert c.odc.geobox == a.odc.geobox
    assert c.attrs["loader"].startswith("stackstac")
    # the 20 m SCL on the 60 m grid is sampled at the centre 20 m pixel (full resolution, no overview)
    want = SCL_DEFAULT_MASK.invalid(_jp2(t29unu_dir, "SCL", 20)[1::3, 1::3]) | (_jp2(t29unu_dir, "B04") == 0)
    assert np.array_equal(np.isnan(a.red.values[0]), want)


def test_chunking_does_not_change_the_result(t29unu_dir: Path, t29unu_root: Path,
                                             t29unu_server: tuple[str, T.ServerStats]) -> None:
    url, _ = t29unu_server
    item = t29unu_item(t29unu_dir, t29unu_root, url, scl_resolution=20)
    # 20 m SCL resampled to 30 m and 60 m bands to 30 m: real resampling across chunk edges
    cubes = [dwcube.load([item], bands=["red", "swir16"], resolution=30, chunks=c).compute()
             for c in (3660, 1000, 333)]
    for other in cubes[1:]:
        for v in ("red", "swir16"):
            assert nan_equal(cubes[0][v].values, other[v].values)


@pytest.mark.slow
def test_flaky_server_and_distributed_workers(t29unu_dir: Path, t29unu_root: Path, tmp_path: Path) -> None:
    """Every other HTTP request fails (503): GDAL retries, on two worker processes, and the cube is complete."""
    from dask.distributed import Client, LocalCluster

    with T.serve_directory(t29unu_root) as (url, _):
        ref = dwcube.load([t29unu_item(t29unu_dir, t29unu_root, url, scl_resolution=60)],
                          bands=BANDS, resolution=60, chunks=512).compute()
    with T.serve_directory(t29unu_root, fail_every=2) as (url, stats):
        item = t29unu_item(t29unu_dir, t29unu_root, url, scl_resolution=60)
        with T.stac_api([item], tmp_path) as api:
            ds = dwcube.load(api, collections=["sentinel-2-l2a"], bands=BANDS, resolution=60, chunks=512)
            with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                              host="127.0.0.1") as cluster, Client(cluster):
                got = ds.compute()
    assert stats.failed_on_purpose > 20, stats.failed_on_purpose
    for b in BANDS:
        assert nan_equal(got[b].values, ref[b].values)
    assert got.attrs["failed_assets"] == []
    assert isinstance(got, xr.Dataset)

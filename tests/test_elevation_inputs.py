"""DEM onto a cube's grid (real eo-learn DEM through a local STAC API), slope, model input stacks."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_zeros

import dwcube
from dwcube import testing as T
from dwcube.elevation import load_dem, slope
from dwcube.inputs import Feature, InputSpec, MissingInputError, model_inputs

# the eo-learn patch grid (bbox.geojson): 100 columns x 101 rows of ~9.99 m, EPSG:32633
X0, X1, Y0, Y1 = 465181.0522318204, 466180.53145382757, 5079244.8912012065, 5080254.63349641
EOLEARN_TR = ((X1 - X0) / 100, 0.0, X0, 0.0, -(Y1 - Y0) / 101, Y1)


def _like(gbox: GeoBox, chunks: tuple[int, int] = (50, 40)) -> xr.Dataset:
    return xr_zeros(gbox, chunks=chunks, dtype="float32").to_dataset(name="red")


@pytest.mark.shared
@pytest.mark.network
def test_dem_back_onto_its_own_grid_through_stac_and_http(shared: Path, tmp_path: Path) -> None:
    dem = np.load(shared / "data" / "eolearn-slovenia" / "dem.npy")[..., 0]
    info = T.write_cog(tmp_path / "dem" / "dem.tif", dem, epsg=32633, transform=EOLEARN_TR, nodata=None)
    like = _like(GeoBox((101, 100), Affine(*EOLEARN_TR), "EPSG:32633"))
    with T.serve_directory(tmp_path) as (url, stats):
        item = T.dem_item("Copernicus_DSM_COG_10_N45_00_E014_00_DEM", info, base_url=url, root=tmp_path)
        with T.stac_api([item], tmp_path) as api:
            out = load_dem(api, like, with_slope=True)
            assert stats.requests == 0  # lazy
            assert out.elevation.chunks == like.red.chunks
            got = out.compute()
        local = like.lulc.elevation(str(info.path)).elevation.values
    np.testing.assert_array_equal(got.elevation.values, dem)  # no shift, no resampling error
    np.testing.assert_array_equal(local, dem)
    assert got.elevation.attrs["units"] == "m" and got.slope.attrs["units"] == "degree"
    assert got.rio.crs.to_epsg() == 32633
    # bilinear onto a coarser 20 m grid: within the DEM's range, smooth
    coarse = load_dem(str(info.path), GeoBox.from_bbox((X0, Y0, X1, Y1), "EPSG:32633", resolution=20)).compute()
    v = coarse.elevation.values
    assert np.isfinite(v[2:-2, 2:-2]).all() and dem.min() - 1 <= np.nanmin(v) and np.nanmax(v) <= dem.max() + 1


def test_slope_of_a_plane_and_chunk_invariance(tmp_path: Path) -> None:
    gbox = GeoBox((60, 80), Affine(10, 0, 500000, 0, -10, 5000000), "EPSG:32633")
    x = np.arange(80) * 10.0
    z = np.broadcast_to(0.25 * x, (60, 80)).astype(np.float32)  # 25 % grade eastwards
    info = T.write_cog(tmp_path / "plane.tif", z, epsg=32633, transform=tuple(gbox.affine)[:6], nodata=None)
    ref = None
    for chunks in ((60, 80), (16, 16), (7, 33)):
        out = load_dem(str(info.path), _like(gbox, chunks), with_slope=True)
        assert isinstance(out.slope.data, da.Array) and out.slope.chunks == _like(gbox, chunks).red.chunks
        s = out.slope.values
        if ref is None:
            ref = s
        np.testing.assert_array_equal(s, ref)
    np.testing.assert_allclose(ref[1:-1, 1:-1], np.degrees(np.arctan(0.25)), rtol=1e-5)
    assert np.isnan(ref[0]).all() and np.isnan(ref[:, -1]).all()
    geo = xr.DataArray(np.zeros((3, 3)), dims=("latitude", "longitude"),
                       coords={"latitude": [1.0, 0.5, 0.0], "longitude": [0.0, 0.5, 1.0]}).odc.assign_crs("EPSG:4326")
    with pytest.raises(ValueError, match="projected"):
        slope(geo)


def _cube() -> xr.Dataset:
    gbox = GeoBox((20, 30), Affine(10, 0, 500000, 0, -10, 5000000), "EPSG:32633")
    rng = np.random.default_rng(2)
    base = xr_zeros(gbox, chunks=(10, 15), dtype="float32")
    ds = xr.Dataset({b: base.expand_dims(time=2).copy(data=da.from_array(
        rng.uniform(0.01, 0.5, (2, 20, 30)).astype(np.float32), chunks=(1, 10, 15)))
        for b in ("blue", "red", "nir", "nir08", "swir16")}, attrs={"sensor": "sentinel-2-l2a"})
    return ds


def test_model_inputs_stack_order_and_normalisation() -> None:
    cube = _cube()
    dem = xr.Dataset({"elevation": xr_zeros(cube.odc.geobox, chunks=(10, 15), dtype="float32") + 700.0})
    spec = InputSpec((
        Feature("red", "band", shift=0.1, scale=0.2),
        Feature("nir", "band"),
        Feature("ndvi", "index", clip=(-0.5, 0.5)),
        Feature("elevation", "elevation", shift=500.0, scale=1000.0),
    ))
    x = cube.lulc.model_inputs(spec, dem=dem)
    assert x.dims == ("time", "feature", "y", "x") and x.dtype == np.float32
    assert x.feature.values.tolist() == ["red", "nir", "ndvi", "elevation"]
    assert isinstance(x.data, da.Array) and x.chunks[1] == (4,) and x.chunks[2] == (10, 10)
    v = x.values
    np.testing.assert_allclose(v[:, 0], (cube.red.values - 0.1) / 0.2, rtol=1e-6)
    np.testing.assert_array_equal(v[:, 1], cube.nir.values)
    ndvi = (cube.nir.values - cube.red.values) / (cube.nir.values + cube.red.values)
    np.testing.assert_allclose(v[:, 2], np.clip(ndvi, -0.5, 0.5), rtol=1e-6)
    np.testing.assert_allclose(v[:, 3], 0.2)  # same static layer on every date
    assert x.attrs["normalisation"][0] == "red: (x - 0.1) / 0.2"
    # Landsat cubes: "nir" means nir08
    ls = cube.assign_attrs(sensor="landsat-c2-l2-oli")
    np.testing.assert_array_equal(model_inputs(ls, InputSpec((Feature("nir", "band"),))).values[:, 0],
                                  cube.nir08.values)


def test_model_inputs_missing_inputs_are_named() -> None:
    cube = _cube().drop_vars("swir16")
    spec = InputSpec((Feature("swir22", "band"), Feature("ndmi", "index"), Feature("slope", "slope")))
    with pytest.raises(MissingInputError) as err:
        model_inputs(cube, spec)
    msg = str(err.value)
    assert "band swir22" in msg and "band swir16 (for ndmi)" in msg and "slope" in msg
    with pytest.raises(ValueError, match="unknown index"):
        Feature("ndxi", "index")
    with pytest.raises(ValueError, match="unique"):
        InputSpec((Feature("red", "band"), Feature("red", "band")))
    with pytest.raises(ValueError, match="scale"):
        Feature("red", "band", scale=0.0)
    assert dwcube.InputSpec is InputSpec

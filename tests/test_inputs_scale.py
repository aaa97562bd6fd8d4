"""Model inputs refuse digital numbers and warn about values 10000 times too small (issue 15, item 4),
and leave real reflectance alone (real scenes: eo-learn L1C, T29UNU L2A, Landsat snow and desert)."""

from __future__ import annotations

import datetime as dt
import glob
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr

import dwcube
from dwcube import testing as T
from dwcube.inputs import (
    Feature,
    InputSpec,
    ReflectanceScaleError,
    ReflectanceScaleWarning,
    model_inputs,
)

from .conftest import t29unu_item

BANDS = ("blue", "green", "red", "nir", "swir16")
SPEC = InputSpec(tuple(Feature(b, "band", shift=0.1, scale=0.1) for b in BANDS) + (Feature("ndvi", "index"),))


def _scaled(cube: xr.Dataset, factor: float, dtype: str = "float32") -> xr.Dataset:
    out = cube.copy()
    for b in cube.data_vars:
        v = cube[b] * factor
        out[b] = (v.round() if np.dtype(dtype).kind in "iu" else v).fillna(0).astype(dtype)
    return out


def test_digital_numbers_are_refused_when_computed_with_what_was_found() -> None:
    cube = T.synthetic_cube(64, 2, bands=BANDS, chunks=32)
    x = model_inputs(_scaled(cube, 10000.0), SPEC)  # lazy: nothing checked yet
    with pytest.raises(ReflectanceScaleError, match=r"digital numbers.*exceed 3 \(found \d+.*to \d+.*expects "
                                                    r"reflectance 0-1.*dwcube.load.*DN / 10000"):
        x.compute()
    # through classify as well (the check sits where the model's inputs are assembled)
    prob = dwcube.classify(_scaled(cube, 10000.0), T.TINY_MODEL, device="cpu")
    with pytest.raises(ReflectanceScaleError, match="digital numbers"):
        prob.compute()


@pytest.mark.parametrize("dtype", ["uint16", "int16"])
def test_integer_bands_are_refused_before_anything_is_built(dtype: str) -> None:
    cube = _scaled(T.synthetic_cube(32, 1, bands=BANDS), 10000.0, dtype)
    with pytest.raises(ReflectanceScaleError, match=rf"blue \({dtype}\).*integer"):
        model_inputs(cube, SPEC)
    with pytest.raises(ReflectanceScaleError, match="integer"):
        dwcube.classify(cube, T.TINY_MODEL, device="cpu")


def test_a_cube_divided_twice_is_warned_about() -> None:
    cube = _scaled(T.synthetic_cube(64, 1, bands=BANDS, chunks=64), 1e-4)
    with pytest.warns(ReflectanceScaleWarning, match=r"10000 times too small.*largest \d\.\d+e-05"):
        model_inputs(cube, SPEC).compute()


def test_a_float_reflectance_cog_read_as_digital_numbers_is_warned_about(make_s2_tile, tmp_path: Path) -> None:
    """A float 0-1 product published as a Sentinel-2 L2A item: dwcube.load divides it by 10000."""
    cube = T.synthetic_cube(64, 1, bands=BANDS)
    tr = (10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)
    infos = {b: T.write_cog(tmp_path / "F" / f"{b}.tif", cube[b].values[0], epsg=32633, transform=tr, nodata=None)
             for b in BANDS}
    infos["scl"] = T.write_cog(tmp_path / "F" / "scl.tif", np.full((64, 64), 4, np.uint8), epsg=32633, transform=tr)
    item = T.sentinel2_item("F", dt.datetime(2023, 6, 1, 10, tzinfo=dt.timezone.utc), infos,
                            base_url=tmp_path.resolve().as_uri(), root=tmp_path, processing_baseline="02.14")
    loaded = dwcube.load([item], bands=list(BANDS))
    with pytest.warns(ReflectanceScaleWarning, match="too small"):
        model_inputs(loaded, SPEC).compute()


def test_the_check_can_be_turned_off() -> None:
    cube = _scaled(T.synthetic_cube(32, 1, bands=BANDS, chunks=32), 10000.0)
    x = model_inputs(cube, SPEC, check_scale=False)
    assert x.attrs["scale_check"] == "off" and np.isfinite(x.values).any()


# -- real reflectance is never refused nor warned about ------------------------------------------


def _no_scale_complaint(cube: xr.Dataset, spec: InputSpec) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReflectanceScaleWarning)
        x = model_inputs(cube, spec).compute()
    assert np.isfinite(x.values).any()


def _cube(arrays: dict[str, np.ndarray], chunks: int = 256) -> xr.Dataset:
    ny, nx = next(iter(arrays.values())).shape[-2:]
    data = {b: (("time", "y", "x"), a.reshape(-1, ny, nx).astype(np.float32)) for b, a in arrays.items()}
    ds = xr.Dataset(data, coords={"time": [np.datetime64("2020-01-01", "ns")][: 1] * 1,
                                  "y": 1e6 - 30.0 * np.arange(ny), "x": 3e5 + 30.0 * np.arange(nx)})
    return ds.chunk({"time": 1, "y": chunks, "x": chunks})


@pytest.mark.shared
def test_real_l1c_scenes_cloudy_and_hazy_included_pass(shared: Path) -> None:
    scenes = np.load(shared / "data" / "eolearn-slovenia" / "reference_scenes_l1c.npy")  # (5, 101, 100, 13)
    names = T.EOLEARN_BANDS
    spec = InputSpec(tuple(Feature(b, "band") for b in names))
    for scene in scenes:
        _no_scale_complaint(_cube({b: scene[..., k] for k, b in enumerate(names)}, chunks=64), spec)


@pytest.mark.shared
@pytest.mark.network
def test_real_l2a_tile_nan_heavy_with_water_passes(t29unu_dir: Path, t29unu_root: Path,
                                                  t29unu_server: tuple[str, T.ServerStats]) -> None:
    url, _ = t29unu_server
    cube = dwcube.load([t29unu_item(t29unu_dir, t29unu_root, url, scl_resolution=60)],
                       bands=["blue", "red", "nir08", "swir16"], resolution=60, chunks=512)
    spec = InputSpec(tuple(Feature(b, "band") for b in ("blue", "red", "nir08", "swir16")), nir="nir08")
    _no_scale_complaint(cube, spec)


@pytest.mark.shared
def test_real_landsat_snow_antarctic_ice_and_forest_pass(shared: Path) -> None:
    files = sorted(glob.glob(str(shared / "data" / "landsat-c2l2-qa-stactools" / "*_SR_B1.TIF")))
    names = ("coastal", "blue", "green", "red", "nir08", "swir16", "swir22")
    spec = InputSpec(tuple(Feature(b, "band") for b in names), nir="nir08")
    for first in files:  # Greenland snow, Antarctica, Colombia, south-east USA, Bolivia
        arrays = {}
        for k, b in enumerate(names):
            with rasterio.open(first.replace("_SR_B1.", f"_SR_B{k + 1}.")) as src:
                dn = src.read(1).astype(np.float64)
            arrays[b] = np.where(dn == 0, np.nan, dn * 2.75e-5 - 0.2)
        _no_scale_complaint(_cube(arrays), spec)

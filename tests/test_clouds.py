"""Cloud and shadow masks for L1C: s2cloudless probability and Dynamic World's recipe, on the real
eo-learn L1C scenes against the stored s2cloudless products, plus shadow geometry."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import dwcube
from dwcube import clouds as C
from dwcube import testing as T
from dwcube.demo import write_catalog

EOLEARN_ORDER = ["coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08",
                 "nir09", "cirrus", "swir16", "swir22"]
SCENE_DATES = ["2015-08-20", "2015-07-31", "2015-09-09", "2015-08-30", "2015-07-11"]
TRANSFORM = (10.0, 0.0, 465180.0, 0.0, -10.0, 5080260.0)


@pytest.fixture(scope="module")
def eolearn(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The five real L1C scenes as a local catalogue, and the stored s2cloudless products of those dates."""
    d = shared / "data" / "eolearn-slovenia"
    scenes = np.load(d / "reference_scenes_l1c.npy")
    stamps = json.loads((d / "timestamps.json").read_text())
    index = [next(i for i, t in enumerate(stamps) if t.startswith(day)) for day in SCENE_DATES]
    tmp = tmp_path_factory.mktemp("eolearn_l1c")
    items = []
    for i, day in enumerate(SCENE_DATES):
        dn = np.round(scenes[i] * 10000).astype(np.uint16)
        infos = {b: T.write_cog(tmp / f"s{i}" / f"{b}.tif", dn[..., k], epsg=32633, transform=TRANSFORM)
                 for k, b in enumerate(EOLEARN_ORDER)}
        when = dt.datetime.fromisoformat(stamps[index[i]]).replace(tzinfo=dt.timezone.utc)
        items.append(T.sentinel2_item(f"S2A_33TVL_{day.replace('-', '')}_0_L1C", when, infos,
                                      base_url=tmp.resolve().as_uri(), root=tmp, level="L1C",
                                      processing_baseline="02.04", tile="33TVL",
                                      sun_azimuth=150.0, sun_zenith=35.0))
    catalog = write_catalog(items, tmp / "l1c.parquet")
    order = np.argsort(SCENE_DATES)  # cube dates are sorted
    return {
        "catalog": str(catalog),
        "probability": np.load(d / "cloud_probability.npy")[[index[i] for i in order], ..., 0],
        "mask": np.load(d / "cloud_mask.npy")[[index[i] for i in order], ..., 0].astype(bool),
        "scene_of_date": order,
    }


def _load(eolearn: dict, **kw) -> xr.Dataset:
    return dwcube.load(eolearn["catalog"], collections=["sentinel-2-l1c"], chunks=kw.pop("chunks", 64), **kw)


@pytest.mark.shared
def test_probability_matches_the_stored_s2cloudless_product(eolearn: dict) -> None:
    ds = _load(eolearn, cloud_mask=False)
    got = C.cloud_probability(ds).compute().values
    ref = eolearn["probability"]
    corr = np.corrcoef(got.ravel(), ref.ravel())[0, 1]
    mad = np.abs(got - ref).mean(axis=(1, 2))
    for t, s in enumerate(eolearn["scene_of_date"]):
        print(f"scene {s}: mean p ours {got[t].mean():.3f} stored {ref[t].mean():.3f}, MAD {mad[t]:.3f}, "
              f"corr {np.corrcoef(got[t].ravel(), ref[t].ravel())[0, 1]:.2f}")
    print(f"all five dates: corr {corr:.3f}, MAD {np.abs(got - ref).mean():.4f}")
    # the stored product was made by eo-learn (resampled); ours is per pixel at 10 m
    assert corr >= 0.97 and np.abs(got - ref).mean() <= 0.03 and mad.max() <= 0.08


@pytest.mark.shared
def test_mask_against_the_stored_cloud_mask(eolearn: dict) -> None:
    ds = _load(eolearn, cloud_mask=False)
    m = C.cloud_mask(ds).compute()
    ref = eolearn["mask"]
    got = m.cloud.values
    tp = (got & ref).sum()
    precision, recall = tp / max(got.sum(), 1), tp / max(ref.sum(), 1)
    print(f"cloud pixels: precision {precision:.3f}, recall {recall:.3f}")
    for t, s in enumerate(eolearn["scene_of_date"]):
        print(f"scene {s}: stored cloud {ref[t].mean():.3f}, ours cloud {got[t].mean():.3f}, "
              f"shadow {m.shadow.values[t].mean():.3f}")
    assert precision >= 0.95 and recall >= 0.9
    cloudy = list(eolearn["scene_of_date"]).index(0)
    assert m.mask.values[cloudy][ref[cloudy]].mean() >= 0.99       # scene 0 is masked where stored says cloud
    for s in (2, 3, 4):                                                 # clear scenes lose almost nothing
        t = list(eolearn["scene_of_date"]).index(s)
        assert m.mask.values[t].mean() <= 0.02


@pytest.mark.shared
def test_mask_is_chunk_invariant(eolearn: dict) -> None:
    whole = C.cloud_mask(_load(eolearn, cloud_mask=False, chunks=128)).compute()
    for chunks in (32, 48):
        part = C.cloud_mask(_load(eolearn, cloud_mask=False, chunks=chunks)).compute()
        for v in ("cloud", "shadow", "mask"):
            assert np.array_equal(part[v].values, whole[v].values), (chunks, v)
        np.testing.assert_array_equal(part.cloud_probability.values, whole.cloud_probability.values)


@pytest.mark.shared
def test_load_masks_l1c_by_default(eolearn: dict) -> None:
    raw = _load(eolearn, cloud_mask=False, bands=["red", "nir"])
    masked = _load(eolearn, bands=["red", "nir"])
    assert list(masked.data_vars) == ["red", "nir"]  # the bands the mask needed are not kept
    assert "dynamic-world cloud/shadow mask" in masked.attrs["cloud_mask"]
    m = C.cloud_mask(_load(eolearn, cloud_mask=False)).mask.values
    red = masked.red.values
    assert np.isnan(red[m]).all() and np.array_equal(red[~m], raw.red.values[~m])


@pytest.mark.parametrize("azimuth,zenith", [(150.0, 35.0), (90.0, 60.0), (225.0, 20.0), (0.0, 45.0)])
def test_shadow_lands_the_right_distance_away_from_the_sun(azimuth: float, zenith: float) -> None:
    cloud = np.zeros((301, 301), bool)
    cloud[145:156, 145:156] = True  # an 11 x 11 px cloud centred on (150, 150), 10 m pixels
    height = 500.0
    p = C.CloudMaskParams(cloud_heights_m=(height, height))
    shadow = C.project_shadows(cloud, azimuth=azimuth, zenith=zenith, resolution=10.0, params=p)
    # the shadow is the cloud moved h·tan(z) along the ground, towards azimuth + 180°
    # (north-up grid: rows grow southwards, columns eastwards)
    d = height * math.tan(math.radians(zenith)) / 10.0
    want = (150 + d * math.cos(math.radians(azimuth)), 150 - d * math.sin(math.radians(azimuth)))
    got = np.argwhere(shadow).mean(axis=0)
    print(f"azimuth {azimuth}, zenith {zenith}: shadow centre {got.round(2)}, expected {np.round(want, 2)}")
    assert abs(got[0] - want[0]) <= 1.0 and abs(got[1] - want[1]) <= 1.0
    assert 121 <= shadow.sum() <= 2.5 * 121  # one cloud's worth (two pixel-distance steps), nothing else
    assert not (shadow & cloud).any()
    # without heights (Dynamic World): every distance up to 5 km, on the same side
    sweep = C.project_shadows(cloud, azimuth=azimuth, resolution=10.0)
    assert sweep[shadow].all() and sweep.sum() > shadow.sum()


def test_missing_bands_are_named() -> None:
    ds = xr.Dataset({"red": (("time", "y", "x"), np.zeros((1, 2, 2), np.float32))})
    with pytest.raises(C.MissingBandsError, match="coastal.*nir09.*cirrus"):
        C.cloud_probability(ds)


@pytest.mark.shared
def test_a_catalogue_probability_asset_is_used_instead(eolearn: dict, tmp_path: Path) -> None:
    """Items carrying a cloud-probability asset (percent): the mask uses it, not s2cloudless."""
    import pystac

    items = list(dwcube.search(eolearn["catalog"]))
    computed = C.cloud_probability(_load(eolearn, cloud_mask=False)).compute()
    order = {str(t)[:10]: k for k, t in enumerate(computed.time.values)}
    for it in items:
        day = str(it.datetime)[:10]
        # a layer that says the opposite of s2cloudless, so that we can tell which one was used
        pct = np.round(100 * (1 - computed.values[order[day]])).clip(1, 100).astype(np.uint8)
        info = T.write_cog(tmp_path / f"{it.id}_cld.tif", pct, epsg=32633, transform=TRANSFORM)
        proj = {k: v for k, v in it.assets["nir"].extra_fields.items() if k.startswith("proj:")}
        it.assets["CLD"] = pystac.Asset(href=Path(info.path).resolve().as_uri(), media_type=pystac.MediaType.COG,
                                        extra_fields=proj)
    catalog = write_catalog(items, tmp_path / "with_cld.parquet")
    ds = dwcube.load(str(catalog), collections=["sentinel-2-l1c"], chunks=64, cloud_mask=False,
                     bands=["cloud_probability", "rededge3", "nir", "nir08", "cirrus"])
    p = ds.lulc.cloud_probability().compute()
    np.testing.assert_allclose(p.values, (np.round(100 * (1 - computed.values)).clip(1, 100)) / 100, atol=1e-6)
    m = ds.lulc.cloud_mask().compute()
    assert m.cloud.values[list(eolearn["scene_of_date"]).index(2)].mean() > 0.9  # the clear scene, "cloudy" now
    masked = dwcube.load(str(catalog), collections=["sentinel-2-l1c"], chunks=64, bands=["red"])
    assert np.isnan(masked.red.values[list(eolearn["scene_of_date"]).index(2)]).mean() > 0.9


@pytest.mark.shared
def test_tree_evaluator_equals_lightgbm(shared: Path) -> None:
    """dwcube.gbdt reproduces lightgbm.Booster.predict on the s2cloudless model, bit for bit,
    including zeros and NaN features (LightGBM's missing-value rules)."""
    lightgbm = pytest.importorskip("lightgbm")
    from dwcube.gbdt import TreeModel

    scenes = np.load(shared / "data" / "eolearn-slovenia" / "reference_scenes_l1c.npy")
    x = scenes[..., [0, 1, 3, 4, 7, 8, 9, 10, 11, 12]].reshape(-1, 10).astype(np.float64)
    rng = np.random.default_rng(0)
    x = np.concatenate([x, rng.uniform(0, 1.5, (2000, 10)), np.zeros((3, 10))])
    x[-1000:-900, 3] = np.nan
    x[-900:-800, rng.integers(0, 10)] = 0.0
    want = lightgbm.Booster(model_str=C._model_text()).predict(x, num_threads=1)  # noqa: SLF001
    got = TreeModel.from_string(C._model_text()).predict(x)  # noqa: SLF001
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("fraction", [0.02, 0.5, 0.9])
def test_shadow_sweep_kernel_equals_shifted_copies(fraction: float) -> None:
    rng = np.random.default_rng(3)
    mask = rng.random((60, 70)) < fraction
    for azimuth in (0.0, 33.0, 150.0, 271.0):
        offs = C._shadow_offsets(azimuth, 40.0, 10.0, C.CloudMaskParams(shadow_distance_m=400.0))  # noqa: SLF001
        assert np.array_equal(C._shift_or(mask, offs), C._shift_or_reference(mask, offs))  # noqa: SLF001


def test_distance_transform_morphology_equals_disk_structuring_elements() -> None:
    from scipy import ndimage

    rng = np.random.default_rng(5)
    for fraction in (0.0, 0.05, 0.5, 0.97, 1.0):
        mask = ndimage.binary_dilation(rng.random((50, 61)) < fraction / 4) if fraction < 1 else np.ones((50, 61), bool)
        for r in (1, 3, 6):
            disk = C._disk(r)  # noqa: SLF001
            assert np.array_equal(C._dilate(mask, r), ndimage.binary_dilation(mask, disk))  # noqa: SLF001
            assert np.array_equal(C._erode(mask, r), ndimage.binary_erosion(mask, disk, border_value=1))  # noqa: SLF001

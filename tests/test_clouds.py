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
        zenith, azimuth = T.solar_angles(when, lon=14.56, lat=45.87)  # the real sun of the acquisition
        items.append(T.sentinel2_item(f"S2A_33TVL_{day.replace('-', '')}_0_L1C", when, infos,
                                      base_url=tmp.resolve().as_uri(), root=tmp, level="L1C",
                                      processing_baseline="02.04", tile="33TVL",
                                      sun_azimuth=azimuth, sun_zenith=zenith))
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
    """Scene by scene: a pooled correlation over cloudy and clear scenes would pass a mask that only
    tells cloudy scenes from clear ones."""
    ds = _load(eolearn, cloud_mask=False)
    got = C.cloud_probability(ds).compute().values
    ref = eolearn["probability"]
    mad = np.abs(got - ref).mean(axis=(1, 2))
    for t, s in enumerate(eolearn["scene_of_date"]):
        print(f"scene {s}: mean p ours {got[t].mean():.3f} stored {ref[t].mean():.3f}, MAD {mad[t]:.3f}, "
              f"corr {np.corrcoef(got[t].ravel(), ref[t].ravel())[0, 1]:.2f}")
    # the stored product was made by eo-learn (resampled); ours is per pixel at 10 m
    assert (mad <= np.where(np.asarray(eolearn["scene_of_date"]) == 1, 0.08, 0.02)).all()  # the hazy scene: 0.08
    assert (np.abs(got.mean(axis=(1, 2)) - ref.mean(axis=(1, 2))) <= 0.01).all()           # no bias in any scene
    for t, s in enumerate(eolearn["scene_of_date"]):
        if ref[t].std() > 0.05:  # where the stored probability has structure, ours follows it
            assert np.corrcoef(got[t].ravel(), ref[t].ravel())[0, 1] >= 0.75, s


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
    assert "mode=fast" in masked.attrs["cloud_mask"]  # load's default mode (dwcube.load.DEFAULT_CLOUD_MASK_MODE)
    m = C.cloud_mask(_load(eolearn, cloud_mask=False), C.CloudMaskParams(mode="fast")).mask.values
    red = masked.red.values
    assert np.isnan(red[m]).all() and np.array_equal(red[~m], raw.red.values[~m])


# -- partly cloudy scenes: real halves of a cloudy and a clear scene ---------------------------------

SEAM = 50  # the first row of the lower half, the first column of the right half
#: layout → (scene above / left of the seam, scene below / right of it, the date whose sun lights it)
PARTLY = {"clouds-north": (0, 2, "2015-08-20"), "clouds-east": (3, 0, "2015-08-30"),
          "clouds-south": (2, 0, "2015-09-09")}


@pytest.fixture(scope="module")
def partly_cloudy(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Three partly cloudy scenes, each the cloudy scene 0 on one side of the seam (row or column SEAM)
    and a clear scene on the other, with the real sun of the date they carry (from the SSE: shadows
    fall NNW), and the stored s2cloudless probability put together the same way."""
    d = shared / "data" / "eolearn-slovenia"
    scenes = np.load(d / "reference_scenes_l1c.npy")
    stored = np.load(d / "cloud_probability.npy")[..., 0]
    stamps = json.loads((d / "timestamps.json").read_text())
    date_of = {i: next(k for k, t in enumerate(stamps) if t.startswith(day)) for i, day in enumerate(SCENE_DATES)}
    tmp = tmp_path_factory.mktemp("partly_cloudy")
    items, probability = [], []
    for name, (top, bottom, day) in PARTLY.items():  # in date order
        axis = 1 if name == "clouds-east" else 0

        def halves(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            return np.concatenate([a[:SEAM], b[SEAM:]] if axis == 0 else [a[:, :SEAM], b[:, SEAM:]], axis=axis)

        dn = np.round(halves(scenes[top], scenes[bottom]) * 10000).astype(np.uint16)
        infos = {b: T.write_cog(tmp / name / f"{b}.tif", np.ascontiguousarray(dn[..., k]), epsg=32633,
                                transform=TRANSFORM) for k, b in enumerate(EOLEARN_ORDER)}
        when = dt.datetime.fromisoformat(next(t for t in stamps if t.startswith(day))).replace(tzinfo=dt.timezone.utc)
        zenith, azimuth = T.solar_angles(when, lon=14.56, lat=45.87)
        items.append(T.sentinel2_item(f"S2A_33TVL_{day.replace('-', '')}_0_L1C", when, infos,
                                      base_url=tmp.resolve().as_uri(), root=tmp, level="L1C",
                                      processing_baseline="02.04", tile="33TVL", sun_azimuth=azimuth,
                                      sun_zenith=zenith))
        probability.append(halves(stored[date_of[top]], stored[date_of[bottom]]))
    return {"catalog": str(write_catalog(items, tmp / "partly.parquet")), "probability": np.stack(probability)}


def _load_partly(partly_cloudy: dict, **kw) -> xr.Dataset:
    return dwcube.load(partly_cloudy["catalog"], collections=["sentinel-2-l1c"], chunks=kw.pop("chunks", 48), **kw)


@pytest.fixture(scope="module")
def partly_bands(partly_cloudy: dict) -> dict[str, xr.Dataset]:
    """The partly cloudy scenes without a mask, read once per grid (still in 48 px chunks)."""
    return {"EPSG:32633": _load_partly(partly_cloudy, cloud_mask=False).persist(),
            "EPSG:4326": _load_partly(partly_cloudy, crs="EPSG:4326", resolution=0.0001, cloud_mask=False).persist()}


def _toward_the_sun(cloud: np.ndarray, gbox, azimuth: float, lo: float, hi: float, *, stride: int = 3,
                    step: float = 2.5) -> tuple[np.ndarray, np.ndarray]:
    """Shadow by ray tracing, independent of the mask's offsets: from every ``stride``-th pixel centre,
    geodesics on the ellipsoid towards the sun (pyproj.Geod), ``lo`` … ``hi`` metres long (no longer
    than the image's diagonal); a clear pixel is shadow when one of them reaches a cloud pixel.
    Returns the sampled (rows, cols) and that."""
    import pyproj

    crs = pyproj.CRS(gbox.crs.proj)
    geod = crs.get_geod()
    to_ll = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    to_grid = pyproj.Transformer.from_crs(crs.geodetic_crs, crs, always_xy=True)
    ny, nx = cloud.shape
    corners = to_ll.transform(*(gbox.affine @ (np.array([0.0, nx]), np.array([0.0, ny]))))
    diagonal = geod.inv(corners[0][0], corners[1][0], corners[0][1], corners[1][1])[2]
    rows, cols = (a.ravel() for a in np.mgrid[0:ny:stride, 0:nx:stride])
    lon, lat = to_ll.transform(*(gbox.affine @ (cols + 0.5, rows + 0.5)))
    dist = np.arange(lo, min(hi, diagonal) + step, step)
    lon2, lat2, _ = geod.fwd(np.repeat(lon, len(dist)), np.repeat(lat, len(dist)),
                                       np.full(len(lon) * len(dist), azimuth), np.tile(dist, len(lon)))
    c, r = (np.floor(v).astype(int) for v in ~gbox.affine @ to_grid.transform(lon2, lat2))
    inside = (r >= 0) & (r < ny) & (c >= 0) & (c < nx)
    hits = np.zeros(r.shape, bool)
    hits[inside] = cloud[r[inside], c[inside]]
    return rows, cols, hits.reshape(len(lon), len(dist)).any(axis=1) & ~cloud[rows, cols]


def _cloudy_side_first(a: np.ndarray, name: str) -> tuple[np.ndarray, int]:
    """``a`` (y, x) turned so that the cloudy half is the first rows, and how many rows it has."""
    if name == "clouds-north":
        return a, SEAM
    if name == "clouds-south":
        return a[::-1], a.shape[0] - SEAM
    return a.T[::-1], a.shape[1] - SEAM  # clouds-east


@pytest.mark.shared
def test_partly_cloudy_mask_follows_the_seam(partly_bands: dict) -> None:
    """The mask is the cloudy half, opened (−60 m) and buffered (+320 m): its edge lies 26 px beyond the
    seam all along it, less the few pixels next to the seam where the displacement index's 150 m
    window sees the clear half; the clear half beyond the buffer holds no cloud."""
    m = C.cloud_mask(partly_bands["EPSG:32633"]).compute()
    buffer = round(320 / 10) - round(60 / 10)
    for t, name in enumerate(PARTLY):
        cloud, n_cloudy = _cloudy_side_first(m.cloud.values[t], name)
        assert cloud[:n_cloudy].all(), name
        edge = len(cloud) - 1 - np.argmax(cloud[::-1], axis=0)  # the last cloud row, along the seam
        want = n_cloudy - 1 + buffer
        short = want - edge
        beyond = cloud[want + 2:]
        print(f"{name}: mask edge {want} px from the cloudy side expected, got {edge.min()} … {edge.max()} "
              f"(median {np.median(edge):.0f}); cloud beyond the buffer {beyond.mean():.4f}")
        assert short.min() >= -1 and short.max() <= 7 + 1  # the index's half window and its 20 m box
        assert not beyond.any()
    # the sun is in the south-south-east: south of the clouds nothing is masked but the buffer
    north = list(PARTLY).index("clouds-north")
    assert not m.mask.values[north][SEAM + buffer + 1:].any()


@pytest.mark.shared
@pytest.mark.parametrize("crs", ["EPSG:32633", "EPSG:4326"])
@pytest.mark.parametrize("heights", [None, (150.0, 300.0)])
def test_shadows_fall_away_from_the_real_sun(partly_bands: dict, crs: str, heights) -> None:
    """With the clouds south of the clear half the shadows cover it (NNW of the clouds), with the clouds
    north of it there are none; in both, exactly where rays traced on the ellipsoid towards the sun
    meet a cloud within the allowed distances — also on a latitude/longitude grid, whose pixels are
    11.1 m tall and 7.8 m wide here."""
    ds = partly_bands[crs]
    params = C.CloudMaskParams(cloud_heights_m=heights)
    m = C.cloud_mask(ds, params).compute()
    valid = np.isfinite(ds.nir.values)
    for t, name in enumerate(PARTLY):
        lo, hi = 0.0, params.shadow_distance_m
        if heights is not None:
            tan_z = math.tan(math.radians(90 - float(ds.sun_elevation.values[t])))
            lo, hi = heights[0] * tan_z, heights[1] * tan_z
        rows, cols, want = _toward_the_sun(m.cloud.values[t], ds.odc.geobox, float(ds.sun_azimuth.values[t]), lo, hi)
        got = m.shadow.values[t][rows, cols]
        ok = valid[t][rows, cols]
        agree = (got == want)[ok].mean()
        print(f"{crs} heights {heights} {name}: shadow {got[ok].mean():.3f}, traced {want[ok].mean():.3f}, "
              f"agreement {agree:.4f}")
        assert agree >= 0.99
        if name == "clouds-north":  # the clear half is on the sun's side
            assert got[ok].mean() == 0.0
        else:
            assert got[ok].mean() >= 0.02


@pytest.mark.shared
def test_partly_cloudy_probability_agrees_with_the_stored_product(partly_cloudy: dict, partly_bands: dict) -> None:
    """Per scene and per half: the cloudy half is cloudy and the clear half clear, as in the stored
    s2cloudless product, and within the scene the two agree pixel by pixel."""
    got = C.cloud_probability(partly_bands["EPSG:32633"]).compute().values
    ref = partly_cloudy["probability"]
    for t, name in enumerate(PARTLY):
        corr = np.corrcoef(got[t].ravel(), ref[t].ravel())[0, 1]
        ours, n_cloudy = _cloudy_side_first(got[t], name)
        stored, _ = _cloudy_side_first(ref[t], name)
        mad = [float(np.abs(ours[h] - stored[h]).mean()) for h in (slice(0, n_cloudy), slice(n_cloudy, None))]
        print(f"{name}: corr {corr:.3f}, MAD cloudy half {mad[0]:.4f}, clear half {mad[1]:.4f}")
        assert corr >= 0.97 and max(mad) <= 0.02
        assert ours[:n_cloudy].mean() > 0.9 and ours[n_cloudy:].mean() < 0.1


@pytest.mark.shared
def test_load_on_a_geographic_grid_masks_like_utm(partly_cloudy: dict, partly_bands: dict) -> None:
    """dwcube.load(crs="EPSG:4326") with the default cloud mask (it used to stop with "overlapping depth
    1001875 is larger than your array": windows in metres divided by a step in degrees): its mask,
    measured in metres on the ground, is the UTM mask reprojected, on ≥ 98 % of the pixels of each date."""
    from odc.geo.xr import xr_reproject

    geo = _load_partly(partly_cloudy, crs="EPSG:4326", resolution=0.0001, bands=["red", "nir"])
    assert geo.odc.spatial_dims == ("latitude", "longitude") and geo.odc.geobox.crs.epsg == 4326
    raw = partly_bands["EPSG:4326"]
    footprint = np.isfinite(raw.nir.values)
    masked = footprint & np.isnan(geo.red.values)
    np.testing.assert_array_equal(masked, C.cloud_mask(raw).mask.values & footprint)
    utm = C.cloud_mask(partly_bands["EPSG:32633"]).mask
    on_geo = xr_reproject(utm.astype(np.uint8), geo.odc.geobox, resampling="nearest", dst_nodata=255).values
    for t, name in enumerate(PARTLY):
        both = footprint[t] & (on_geo[t] != 255)
        agree = (masked[t] == (on_geo[t] == 1))[both].mean()
        print(f"{name}: masked {masked[t][both].mean():.3f} (UTM {(on_geo[t] == 1)[both].mean():.3f}), "
              f"agreement {agree:.4f}")
        assert agree >= 0.98 and 0.5 < masked[t][both].mean() < 0.995  # partly cloudy: not all or nothing


@pytest.mark.parametrize("azimuth,zenith", [(150.0, 35.0), (90.0, 60.0), (225.0, 20.0), (0.0, 45.0)])
@pytest.mark.parametrize("resolution", [(10.0, 10.0), (11.1, 7.8)])  # UTM; lat/lon pixels at 46° N
def test_shadow_lands_the_right_distance_away_from_the_sun(azimuth: float, zenith: float,
                                                           resolution: tuple[float, float]) -> None:
    cloud = np.zeros((301, 301), bool)
    cloud[145:156, 145:156] = True  # an 11 x 11 px cloud centred on (150, 150)
    height = 500.0
    p = C.CloudMaskParams(cloud_heights_m=(height, height))
    shadow = C.project_shadows(cloud, azimuth=azimuth, zenith=zenith, resolution=resolution, params=p)
    # the shadow is the cloud moved h·tan(z) along the ground, towards azimuth + 180°
    # (north-up grid: rows grow southwards, columns eastwards; each axis in its own metres)
    d = height * math.tan(math.radians(zenith))
    want = (150 + d * math.cos(math.radians(azimuth)) / resolution[0],
            150 - d * math.sin(math.radians(azimuth)) / resolution[1])
    got = np.argwhere(shadow).mean(axis=0)
    print(f"azimuth {azimuth}, zenith {zenith}: shadow centre {got.round(2)}, expected {np.round(want, 2)}")
    assert abs(got[0] - want[0]) <= 1.0 and abs(got[1] - want[1]) <= 1.0
    assert 121 <= shadow.sum() <= 2.5 * 121  # one cloud's worth (two pixel-distance steps), nothing else
    assert not (shadow & cloud).any()
    # without heights (Dynamic World): every distance up to 5 km, on the same side
    sweep = C.project_shadows(cloud, azimuth=azimuth, resolution=resolution)
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
        offs = C._shadow_offsets(azimuth, 40.0, C.GroundGeometry.north_up(10.0),  # noqa: SLF001
                                   C.CloudMaskParams(shadow_distance_m=400.0))
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


def test_no_data_does_not_spread_through_the_displacement_index() -> None:
    """One pixel without data leaves the index NaN there and untouched beyond its window (the box
    filters are running sums: a NaN used to poison the rest of its row)."""
    cube = T.synthetic_cube(40, 1, bands=("rededge3", "nir", "nir08"), chunks=20)
    holed = cube.copy(deep=True)
    holed["nir"][0, 10, 5] = np.nan
    a = C.cloud_displacement_index(cube).values[0]
    b = C.cloud_displacement_index(holed).values[0]
    assert np.isnan(b[10, 5]) and np.isfinite(np.delete(b.ravel(), 10 * 40 + 5)).all()
    reach = 15 // 2 + 2  # half the 150 m window and the 20 m box, in 10 m pixels
    far = np.ones_like(a, bool)
    far[max(10 - reach, 0):10 + reach + 1, max(5 - reach, 0):5 + reach + 1] = False
    np.testing.assert_array_equal(b[far], a[far])

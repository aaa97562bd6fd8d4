"""The U-Net v2 training corpus: readers, splits, the imputed teacher, generated layouts, collages, evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from dwcube.classes import CLASSES
from dwcube.train import corpus as C
from dwcube.train import evaluation as E
from dwcube.train import layouts as L
from dwcube.train import teacher as TT

K = len(CLASSES)


# -- generated layouts ------------------------------------------------------------------------------


def test_generated_layouts_hold_every_class_with_its_neighbours() -> None:
    labs = np.stack([L.generate_layout(128, np.random.default_rng(i)) for i in range(24)])
    share = np.bincount(labs.ravel(), minlength=K) / labs.size
    assert (share > 0.005).all(), dict(zip(CLASSES, share.round(4), strict=True))  # every class occurs
    water = labs == L.WATER
    for lab, w in zip(labs, water, strict=True):
        flooded = lab == L.FLOODED
        if flooded.any() and w.any():
            # flooded vegetation is along water or in wet ground: most of it within 15 px of water
            dist = ndimage.distance_transform_edt(~w)
            assert np.mean(dist[flooded] < 15) > 0.5 or flooded.mean() < 0.02


def test_snow_lies_above_bare_ground_on_the_relief() -> None:
    rng = np.random.default_rng(5)
    lab = L.generate_layout(160, rng, mountain=1.0, urban=0.0, wet=0.0, farmland=0.0)
    assert (lab == L.SNOW).mean() > 0.05 and (lab == L.BARE).any() and not (lab == L.BUILT).any()
    # snow never touches crops or built-up directly (a bare/shrub belt lies between)
    snow = ndimage.binary_dilation(lab == L.SNOW)
    assert not (snow & np.isin(lab, [L.CROPS, L.BUILT])).any()


def test_towns_have_streets_and_layouts_are_reproducible() -> None:
    a = L.generate_layout(128, np.random.default_rng(7), urban=1.0, wet=0.0, mountain=0.0)
    b = L.generate_layout(128, np.random.default_rng(7), urban=1.0, wet=0.0, mountain=0.0)
    assert np.array_equal(a, b)
    built = a == L.BUILT
    assert built.mean() > 0.02
    # built-up is not one blob: gardens and trees sit inside towns
    filled = ndimage.binary_fill_holes(built)
    assert (filled & ~built).sum() > 0


def test_layout_probabilities_sum_to_one_and_keep_the_layout_on_top() -> None:
    lab = L.generate_layout(96, np.random.default_rng(3))
    p = L.layout_probabilities(lab, np.random.default_rng(4))
    assert np.allclose(p.sum(0), 1, atol=1e-5) and (p >= 0).all()
    assert (p.argmax(0) == lab).mean() > 0.8


def test_collage_paints_each_class_with_its_own_texture() -> None:
    rng = np.random.default_rng(0)
    refl = np.zeros((2, 96, 96), np.float32)
    prob = np.zeros((K, 96, 96), np.float32)
    refl[:, :, :48] = 0.05 + 0.01 * rng.random((2, 96, 48))      # "water" half
    refl[:, :, 48:] = 0.30 + 0.01 * rng.random((2, 96, 48))      # "trees" half
    prob[0, :, :48] = 1
    prob[1, :, 48:] = 1
    allowed = np.ones((96, 96), bool)
    allowed[:48] = False                                          # the validation side: never a texture
    bank = L.texture_bank(refl, prob, allowed, size=32, per_class=4, rng=rng)
    assert sorted(bank) == [0, 1]
    lab = np.zeros((64, 64), np.uint8)
    lab[:, 32:] = 1
    out = L.collage(lab, bank, np.random.default_rng(1))
    assert out[:, :, :28].max() < 0.07 and out[:, :, 36:].min() > 0.29   # each side its class's texture
    # windows come from the allowed (training) rows only: every value of every window exists there
    rows = np.repeat(np.arange(96, dtype=np.float32)[:, None], 96, 1)[None]   # a band that says its own row
    bank = L.texture_bank(np.concatenate([refl, rows]), prob, allowed, size=32, per_class=8, rng=rng)
    assert all(w[2].min() >= 48 for wins in bank.values() for w in wins)


def test_denormalise_inverts_dynamic_worlds_normalisation() -> None:
    from dwcube.models.dynamic_world import normalize_dn

    refl = np.random.default_rng(0).uniform(0.01, 0.6, (9, 5, 5))
    n = normalize_dn(np.moveaxis(refl * 10000, 0, -1))
    back = L.denormalise(np.moveaxis(n, -1, 0))
    assert np.allclose(back, refl, rtol=1e-4)


# -- the imputed teacher ------------------------------------------------------------------------------


def test_imputer_learns_a_spectral_relation() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0.01, 0.5, (20000, 6)).astype(np.float32)
    # a smooth red-edge-like relation between red (2) and nir08 (3)
    y = np.stack([0.7 * x[:, 2] + 0.3 * x[:, 3], 0.3 * x[:, 2] + 0.7 * x[:, 3], 0.95 * x[:, 3], 1.02 * x[:, 3]], 1)
    imp = TT.fit_imputer(x[:15000], y[:15000], steps=300, batch=512, seed=0)
    pred = imp.predict(x[15000:].T).T
    rel = np.abs(pred - y[15000:]) / y[15000:]
    assert np.median(rel) < 0.03
    again = TT.BandImputer.from_bytes(imp.to_bytes())
    assert np.allclose(again.predict(x[:10].T), imp.predict(x[:10].T))
    nan = x[:3].T.copy()
    nan[0, 1] = np.nan
    assert np.isnan(imp.predict(nan)[:, 1]).all() and np.isfinite(imp.predict(nan)[:, 0]).all()


def test_oli_to_msi_inverts_the_hls_adjustment() -> None:
    from dwcube.train.augment import landsat_like

    level = np.random.default_rng(1).uniform(0.02, 0.5, (1, 6, 1, 1)).astype(np.float32)
    # landsat_like on an image constant per band is just the bandpass; undo it
    const = np.broadcast_to(level, (1, 6, 9, 9)).copy()
    oli = landsat_like(const, C.SHARED_BANDS, platform="sentinel-2a")
    back = TT.oli_to_msi({b: oli[0, i] for i, b in enumerate(C.SHARED_BANDS)})
    for i, b in enumerate(C.SHARED_BANDS):
        assert np.allclose(back[b], const[0, i], atol=1e-5)


# -- evaluation ---------------------------------------------------------------------------------------


def test_agreement_counts_confident_pixels_and_classes() -> None:
    ref = np.zeros((K, 10))
    ref[1, :6] = 0.9
    ref[2, :6] = 0.1
    ref[6, 6:] = 0.45
    ref[1, 6:] = 0.55 - 0.001
    ref[4, 6:] = 0.001
    pred = np.array([1, 1, 1, 1, 1, 2, 6, 6, 1, 1])
    a = E.agreement(pred, ref)
    assert a.pixels == 10 and a.agreement == pytest.approx(0.7)
    assert a.confident_share == pytest.approx(1.0) and a.confident_agreement == pytest.approx(0.7)
    assert a.per_class["trees"]["recall"] == pytest.approx(0.7) and a.per_class["trees"]["precision"] == 1.0
    assert a.per_class["built"]["predicted_share"] == pytest.approx(0.2) and np.isnan(a.per_class["built"]["recall"])
    assert E.rare_class_recall(a) == {"trees": pytest.approx(0.7)}
    nolabel = pred.copy()
    nolabel[0] = 255
    assert E.agreement(nolabel, ref).agreement == pytest.approx(0.6)   # no prediction is a disagreement
    mask = np.zeros(10, bool)
    mask[:6] = True
    assert E.agreement(pred, ref, mask).agreement == pytest.approx(5 / 6)


def test_calibration_of_a_calibrated_model_is_near_zero() -> None:
    rng = np.random.default_rng(0)
    lg = rng.normal(0, 2, (K, 50000))
    p = np.exp(lg) / np.exp(lg).sum(0)
    ref = (p.cumsum(0) > rng.random(50000)).argmax(0)
    assert E.calibration(p, ref).ece < 0.01
    over = np.exp(3 * lg) / np.exp(3 * lg).sum(0)
    assert E.calibration(over, ref).ece > 0.1


def test_qa_and_rules_on_hand_made_pixels() -> None:
    lab = np.array([0, 0, 8, 1, 255])
    q = E.qa_agreement(lab, np.array([1, 1, 1, 1, 1], bool), np.array([1, 1, 0, 0, 1], bool),
                       np.array([0, 0, 1, 1, 0], bool))
    # the unlabelled water pixel (255) is a miss, not left out
    assert q["water_recall"] == pytest.approx(2 / 3) and q["unlabelled_clear_pixels"] == 1
    assert (q["water_precision"], q["snow_recall"], q["snow_precision"]) == (1.0, 0.5, 1.0)
    refl = {"green": np.array([0.05, 0.5, 0.1]), "red": np.array([0.03, 0.45, 0.25]),
            "nir08": np.array([0.02, 0.40, 0.28]), "swir16": np.array([0.01, 0.05, 0.35])}
    rules = {r.rule: r for r in E.spectral_rules(refl, np.array([0, 8, 7]))}
    assert rules["clear water"].pixels == 1 and rules["clear water"].share_as_expected == 1.0
    assert rules["snow"].pixels == 1 and rules["bare desert"].pixels == 1
    assert rules["bare desert"].share_as_expected == 1.0


# -- the real sources -------------------------------------------------------------------------------


@pytest.mark.shared
def test_landsat_crops_are_georeferenced_from_their_mtl(shared: Path) -> None:
    src = C.landsat_crop(shared / "data" / "landsat-c2-xlandsat" / C.LANDSAT_CROPS["brumadinho-a"], name="b",
                         upsample=1)
    gbox = src.cube.odc.geobox
    # the MTL gives the upper-left pixel centre (583500, -2222700) in the northern zone numbering
    assert gbox.crs.epsg == 32623
    assert gbox.affine.c == pytest.approx(583500 - 15) and gbox.affine.f == pytest.approx(-2222700 + 15)
    assert src.shape == (300, 400)
    b2 = src.cube.blue.values[0]
    assert 0.0 < np.nanmedian(b2) < 0.1                 # surface reflectance, not DN
    l1 = C.landsat_crop(shared / "data" / "landsat-c2-xlandsat" / C.LANDSAT_CROPS["momotombo-l1"], name="m",
                        upsample=1, cloud_blue=C.CLOUDY_CROPS["momotombo-l1"])
    assert l1.product == "landsat-l1" and 0.05 < np.nanmedian(l1.cube.blue.values) < 0.2  # TOA is brighter
    assert np.isnan(l1.cube.blue.values).mean() > 0.02                                  # its clouds are masked


@pytest.mark.shared
def test_qa_scene_bits_follow_the_documented_table(shared: Path) -> None:
    import rasterio

    stem = C.LANDSAT_QA["qa-greenland"]
    path = shared / "data" / "landsat-c2l2-qa-stactools" / f"{stem}_QA_PIXEL.TIF"
    src = C.landsat_qa_scene(path, name="g")
    with rasterio.open(path) as f:
        qa = f.read(1)
    clear = (qa & 0b11111) == 0
    assert np.array_equal(src.qa.clear.values[0], clear & ((qa & 1) == 0))
    assert np.array_equal(src.qa.snow.values[0], (qa & (1 << 5)) > 0)
    assert np.array_equal(src.qa.water.values[0], (qa & (1 << 7)) > 0)
    assert np.isnan(src.cube.blue.values[0][~clear]).all()           # clouds masked
    assert np.nanmedian(src.cube.blue.values[0][src.qa.snow.values[0] & clear]) > 0.8   # snow is bright


@pytest.mark.shared
def test_every_source_splits_90_10_by_blocks(shared: Path) -> None:
    from dwcube.train.shipped import SOURCES, source_split

    for name, src in C.all_sources(shared, names=[n for n in SOURCES if not n.startswith("matogrosso")]).items():
        split = source_split(src)
        assert split.shape == src.shape
        assert 0.05 < split.mean() < 0.16, name
        b = src.block
        blocks = split[: split.shape[0] // b * b, : split.shape[1] // b * b].reshape(
            split.shape[0] // b, b, split.shape[1] // b, b)
        assert ((blocks.min((1, 3)) == blocks.max((1, 3)))).all(), name      # whole blocks on one side

"""The training pipeline: labels, spatial split, class balancing, temporal samples, augmentation,
metrics against hand computation, and a tiny end-to-end run with checkpoint and resume."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import dwcube
from dwcube.classes import CLASSES
from dwcube.models.unet import FEATURES, input_spec, load_unet, unet_entry
from dwcube.testing import synthetic_cube
from dwcube.train import augment as A
from dwcube.train import labels as L
from dwcube.train import metrics as M
from dwcube.train.loop import make_batch, soft_cross_entropy, train
from dwcube.train.recipe import NORMALISATION, Recipe, fit_normalisation, prepare_labels, train_from_cube
from dwcube.train.sampling import (
    UNET_BANDS,
    PatchSet,
    SamplingParams,
    SplitParams,
    class_block_counts,
    sample_patches,
    split_blocks,
    split_mask,
)

K = len(CLASSES)


def _cube_and_labels(size: int = 96, dates: int = 3, seed: int = 0, skew: bool = True):
    cube = synthetic_cube(size, dates, bands=UNET_BANDS, seed=seed)
    rng = np.random.default_rng(seed)
    lab = np.full((size, size), 1, np.uint8)  # trees everywhere...
    if skew:
        lab[: size // 5, :] = 0          # ...a band of water (20 %)...
        lab[-size // 10:, : size // 2] = 6  # ...a little built (5 %)...
        lab[size // 2: size // 2 + 4, size // 2: size // 2 + 4] = 4  # ...and 16 px of crops
    lab[rng.random((size, size)) < 0.02] = 255  # and some no data
    da = xr.DataArray(lab, dims=("y", "x"), coords={"y": cube.y, "x": cube.x})
    return cube, L.from_label_map(da)


# -- labels -------------------------------------------------------------------------------------


def test_worldcover_zero_is_no_data_never_a_class() -> None:
    codes = np.array([[0, 10, 20, 30], [40, 50, 60, 70], [80, 90, 95, 100], [0, 7, 255, 0]], np.uint8)
    lab = L.from_worldcover(xr.DataArray(codes, dims=("y", "x")))
    want = np.array([[255, 1, 5, 2], [4, 6, 7, 8], [0, 3, 3, 7], [255, 255, 255, 255]])
    np.testing.assert_array_equal(lab.label.values, want)
    conf = lab.confidence.values
    assert (conf[want == 255] == 0).all() and (conf[want != 255] == 1).all()
    assert (lab.target.values[:, want == 255] == 0).all()  # no class gets mass at no data


def test_labels_stay_lazy_with_dask() -> None:
    codes = xr.DataArray(np.full((64, 64), 40, np.uint8), dims=("y", "x")).chunk(16)
    lab = L.from_worldcover(codes)
    assert lab.target.chunks is not None and lab.label.chunks is not None
    assert int(lab.label.compute().max()) == CLASSES.index("crops")


def test_temporal_consensus_of_probabilities() -> None:
    p = np.zeros((4, K, 1, 3), np.float32)
    p[:, 1, 0, 0] = 1.0                          # pixel 0: trees on all dates
    p[:2, 1, 0, 1] = 1.0; p[2:, 2, 0, 1] = 1.0   # pixel 1: trees twice, grass twice (tie -> first class)
    p[:, 4, 0, 2] = 1.0; p[3, :, 0, 2] = np.nan  # pixel 2: crops on the 3 valid dates
    lab = L.from_probabilities(xr.DataArray(p, dims=("time", "class", "y", "x")))
    assert lab.label.values.tolist() == [[1, 1, 4]]
    np.testing.assert_allclose(lab.confidence.values, [[1.0, 0.5, 1.0]])
    np.testing.assert_allclose(lab.target.values.sum(0), 1.0, atol=1e-6)


# -- split, balancing, temporal samples -------------------------------------------------------------


def test_split_is_ninety_ten_by_blocks_and_deterministic() -> None:
    s = split_blocks((640, 640), SplitParams(block=64, seed=4))
    assert s.shape == (10, 10) and int(s.sum()) == 10
    np.testing.assert_array_equal(s, split_blocks((640, 640), SplitParams(block=64, seed=4)))
    m = split_mask((640, 640), SplitParams(block=64, seed=4))
    for by in range(10):  # every block is one side only
        for bx in range(10):
            blk = m[by * 64:(by + 1) * 64, bx * 64:(bx + 1) * 64]
            assert blk.min() == blk.max()


def test_train_and_validation_patches_are_spatially_disjoint() -> None:
    cube, lab = _cube_and_labels(128, 2)
    split = SplitParams(block=16, val_fraction=0.1, seed=1)
    params = SamplingParams(patch=24, n_samples=120, dates_per_sample=1, seed=2)
    dem = xr.Dataset({"elevation": xr.full_like(cube.red.isel(time=0, drop=True), 250.0)})
    tr = sample_patches(cube, lab, params, split=split, side="train", dem=dem)
    va = sample_patches(cube, lab, params, split=split, side="val", dem=dem)
    side = split_mask((128, 128), split)
    seen_tr = np.zeros((128, 128), bool)   # pixels whose input or label a training patch carries
    seen_va = np.zeros((128, 128), bool)
    for ps, seen, want in ((tr, seen_tr, 0), (va, seen_va, 1)):
        for i, (oy, ox) in enumerate(ps.origin):
            win = (slice(oy, oy + 24), slice(ox, ox + 24))
            mine = side[win] == want
            assert (ps.confidence[i][~mine] == 0).all()                  # no label from the other side
            assert np.isnan(ps.reflectance[i][:, :, ~mine]).all()         # no input either (isolate)
            assert np.isnan(ps.elevation[i][~mine]).all() and (ps.elevation[i][mine] == 250).all()  # nor elevation
            seen[win] |= (ps.confidence[i] > 0) | np.isfinite(ps.reflectance[i]).any((0, 1))
    assert seen_tr.any() and seen_va.any() and not (seen_tr & seen_va).any()


def test_labels_or_elevation_on_another_grid_are_refused_or_reprojected() -> None:
    from dwcube.train.recipe import align_to_cube

    cube, lab = _cube_and_labels(64, 1)
    shifted = lab.assign_coords(y=lab.y + 30.0)   # 3 px off: same size, another grid
    with pytest.raises(ValueError, match="not on the cube's grid"):
        sample_patches(cube, shifted, SamplingParams(patch=16, n_samples=4), split=SplitParams(block=16))
    dem = xr.Dataset({"elevation": xr.full_like(cube.red.isel(time=0, drop=True), 1.0).assign_coords(x=cube.x - 20.0)})
    with pytest.raises(ValueError, match="elevation are not on the cube's grid"):
        sample_patches(cube, lab, SamplingParams(patch=16, n_samples=4), split=SplitParams(block=16), dem=dem)
    raster = lab.label.assign_coords(y=lab.y + 30.0)
    with pytest.raises(ValueError, match="no CRS"):
        align_to_cube(raster, cube)
    moved = align_to_cube(raster.rio.write_crs(cube.odc.crs.to_wkt()), cube)   # reprojected, nearest
    assert moved.shape == (64, 64)
    np.testing.assert_array_equal(moved.values[:-3], lab.label.values[3:])   # 30 m north = 3 rows up
    # a raster much larger than the cube is cut to it before reprojecting; one elsewhere is refused
    big = np.full((192, 192), 80, np.uint8)
    big[64:128, 64:128] = lab.label.values
    step = float(cube.x[1] - cube.x[0])
    ys = np.concatenate([cube.y.values[0] - step * np.arange(-64, 0), cube.y.values, cube.y.values[-1] - step * np.arange(1, 65)])
    xs = np.concatenate([cube.x.values[0] + step * np.arange(-64, 0), cube.x.values, cube.x.values[-1] + step * np.arange(1, 65)])
    wide = xr.DataArray(big, dims=("y", "x"), coords={"y": ys, "x": xs}).rio.write_crs(cube.odc.crs.to_wkt())
    np.testing.assert_array_equal(align_to_cube(wide, cube).values, lab.label.values)
    with pytest.raises(ValueError, match="does not cover the cube"):
        align_to_cube(wide.assign_coords(x=wide.x + 1e5), cube)


def test_empty_validation_side_trains_without_validation(tmp_path: Path) -> None:
    cube = synthetic_cube(64, 2, bands=UNET_BANDS, seed=4)
    r = Recipe.quick()
    side = split_mask((64, 64), r.split)
    wc = np.where(cube.nir08.isel(time=0).values > 0.2, 10, 80).astype(np.uint8)
    wc[side == 1] = 0                                   # no label at all on the validation blocks
    wc = xr.DataArray(wc, dims=("y", "x"), coords={"y": cube.y, "x": cube.x})
    with pytest.warns(UserWarning, match="no validation patches"):
        res = train_from_cube(cube, wc, tmp_path / "a", recipe=r, progress=False)
    assert res.metrics is None and res.weights.is_file()
    res = train_from_cube(cube, wc, tmp_path / "b", recipe=replace(r, val_samples=0), progress=False)
    assert res.metrics is None
    from dwcube.train.sampling import NoLabelledPixelsError

    with pytest.raises(NoLabelledPixelsError, match="no labelled pixel on this side"):
        sample_patches(cube, prepare_labels(wc), r.sampling, split=r.split, side="val")


def test_landsat_cube_trains_without_simulating_landsat_again(tmp_path: Path) -> None:
    cube = synthetic_cube(64, 2, bands=UNET_BANDS, seed=5, sensor="landsat-c2-l2-oli")
    wc = xr.DataArray(np.where(cube.nir08.isel(time=0).values > 0.2, 10, 30).astype(np.uint8), dims=("y", "x"),
                      coords={"y": cube.y, "x": cube.x})
    res = train_from_cube(cube, wc, tmp_path / "l", recipe=Recipe.quick(), progress=False)
    from dwcube.models.unet import read_unet_file

    assert read_unet_file(res.weights)["metadata"]["training"]["augment"]["landsat_fraction"] == 0.0


def test_class_balancing_makes_sampled_classes_near_uniform() -> None:
    cube, lab = _cube_and_labels(160, 2, seed=3)
    split = SplitParams(block=32, val_fraction=0.0)
    raw = class_block_counts(lab, split).sum((0, 1)).astype(float)
    present = np.flatnonzero(raw)
    assert present.tolist() == [0, 1, 4, 6] and raw[4] / raw.sum() < 0.002   # crops: 16 of ~25000 px
    bal = sample_patches(cube, lab, SamplingParams(patch=16, n_samples=800, dates_per_sample=1, seed=0), split=split)
    non = sample_patches(cube, lab, SamplingParams(patch=16, n_samples=800, dates_per_sample=1, seed=0,
                                                   balance="none"), split=split)
    # each sample's anchor class: uniform over the present classes
    freq = np.bincount(bal.anchor_class, minlength=K)[present] / len(bal)
    assert np.abs(freq - 0.25).max() < 0.05

    def shares(ps: PatchSet) -> np.ndarray:  # class shares of the labelled pixels actually sampled
        lbl = ps.target.astype(np.float32).argmax(1)[ps.confidence > 0]
        return np.bincount(lbl, minlength=K)[present] / lbl.size

    raw_share = raw[present] / raw.sum()
    got = shares(bal)
    assert got.min() > 5 * raw_share.min()                  # the rare class is much better represented
    assert np.abs(got - 0.25).max() < np.abs(raw_share - 0.25).max()   # closer to uniform than the raster
    assert shares(non).min() < 0.01                          # without balancing crops stay rare


def test_temporal_samples_share_one_label_over_several_dates() -> None:
    cube, lab = _cube_and_labels(64, 5)
    ps = sample_patches(cube, lab, SamplingParams(patch=16, n_samples=20, dates_per_sample=3, seed=5),
                        split=SplitParams(block=16, val_fraction=0.0))
    assert ps.reflectance.shape == (20, 3, 6, 16, 16) and ps.target.shape == (20, K, 16, 16)
    # three different dates per sample (the synthetic cube changes by date)
    r = ps.reflectance.astype(np.float32)
    for i in range(20):
        assert not np.allclose(r[i, 0], r[i, 1]) and not np.allclose(r[i, 1], r[i, 2])
    # each date of a patch is the cube at the patch's window on one of the cube's dates
    oy, ox = ps.origin[0]
    stack = cube[list(UNET_BANDS)].to_dataarray("band").values[:, :, oy:oy + 16, ox:ox + 16]
    for d in range(3):
        assert any(np.allclose(r[0, d], stack[:, t], atol=2e-3, equal_nan=True) for t in range(5))
    # batches draw one of the dates per sample, the label unchanged
    spec = input_spec(NORMALISATION)
    x, t, _ = make_batch(ps, [0, 0], spec, np.random.default_rng(0), A.AugmentParams.none(), dates=[0, 2])
    assert not np.allclose(x[0, :8], x[1, :8]) and np.array_equal(t[0], t[1])


# -- augmentation -------------------------------------------------------------------------------------


def test_features_equal_model_inputs() -> None:
    cube = synthetic_cube(40, 2, bands=UNET_BANDS, nodata_fraction=0.1, seed=2)
    spec = input_spec(NORMALISATION)
    dem = xr.Dataset({"elevation": xr.DataArray(np.linspace(100, 900, 1600, dtype=np.float32).reshape(40, 40),
                                                dims=("y", "x"), coords={"y": cube.y, "x": cube.x})})
    want = dwcube.model_inputs(cube, spec, dem=dem).values
    refl = cube[list(UNET_BANDS)].to_dataarray("band").transpose("time", "band", "y", "x").values
    got = A.reflectance_features(refl, UNET_BANDS, spec, np.broadcast_to(dem.elevation.values, (2, 40, 40)))
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))


def test_landsat_like_bandpass_area_average_and_nan() -> None:
    bands = ("blue", "red", "nir08", "swir22")
    x = np.random.default_rng(0).uniform(0.02, 0.4, (len(bands), 12, 12)).astype(np.float32)
    y = A.landsat_like(x, bands, platform="sentinel-2b")
    for i, b in enumerate(bands):
        slope, icpt = dwcube.sensors.HLS_COEFFICIENTS["sentinel-2b"][b]
        cell = x[i, 3:6, 3:6].mean() * slope + icpt
        assert abs(y[i, 4, 4] - cell) < 1e-6          # the centre of a 30 m cell is its average
    # texture inside a cell is gone: a checkerboard averages out
    chk = np.indices((9, 9)).sum(0) % 2 * 0.2 + 0.1
    flat = A.landsat_like(chk[None].astype(np.float32), ("red",))[0]
    assert flat.std() < 0.01 and np.isclose(flat[4, 4], 0.9765 * chk[3:6, 3:6].mean() + 0.0009, atol=1e-6)
    x[0, 0, 0] = np.nan
    z = A.landsat_like(x, bands, phase=(0, 0))
    assert np.isnan(z[0, 0, 0]) and np.isfinite(z[0, 6:, 6:]).all()


def test_geometric_augmentation_keeps_inputs_and_labels_together() -> None:
    cube, lab = _cube_and_labels(64, 2)
    ps = sample_patches(cube, lab, SamplingParams(patch=32, n_samples=4, dates_per_sample=1),
                        split=SplitParams(block=32, val_fraction=0.0))
    spec = input_spec(NORMALISATION)
    aug = replace(A.AugmentParams.none(), geometric=True)
    x0, t0, _ = make_batch(ps, [0], spec, np.random.default_rng(0), A.AugmentParams.none(), dates=[0])
    used = set()
    for seed in range(12):
        x, t, _ = make_batch(ps, [0], spec, np.random.default_rng(seed), aug, dates=[0])
        found = None
        for k in range(4):
            for flip in (False, True):
                xs, ts = A.geometric([x0[0], t0[0]], k, flip)
                # channel 8 (elevation) is a random field for a scene without a DEM
                if np.allclose(xs[:8], x[0, :8], equal_nan=True) and np.array_equal(ts, t[0]):
                    found = (k, flip)
        assert found is not None
        used.add(found)
    assert len(used) >= 3   # the transform really varies (and is not always the identity)


# -- metrics ------------------------------------------------------------------------------------------


def test_metrics_match_hand_computation() -> None:
    # rows: reference a, b, c; columns: predicted
    cm = np.array([[50, 3, 2],
                   [5, 30, 5],
                   [0, 10, 15]], float)
    m = M.metrics_from_confusion(cm, classes=("a", "b", "c"))
    assert m.overall_accuracy == pytest.approx(95 / 120)
    # IoU_k = TP / (row + col - TP); rows (55, 40, 25), columns (55, 43, 22)
    assert m.iou == pytest.approx((50 / 60, 30 / 53, 15 / 32))
    assert m.mean_iou == pytest.approx(np.mean([50 / 60, 30 / 53, 15 / 32]))
    assert m.f1 == pytest.approx((100 / 110, 60 / 83, 30 / 47))
    # Gorodkin: (c s - sum p t) / sqrt((s^2 - sum p^2)(s^2 - sum t^2))
    num = 95 * 120 - (55 * 55 + 43 * 40 + 22 * 25)
    den = np.sqrt((120**2 - (55**2 + 43**2 + 22**2)) * (120**2 - (55**2 + 40**2 + 25**2)))
    assert m.mcc == pytest.approx(num / den)
    # two classes: the multiclass MCC is the usual phi coefficient
    tp, fn, fp, tn = 40, 10, 5, 45
    m2 = M.metrics_from_confusion(np.array([[tp, fn], [fp, tn]]), classes=("p", "n"))
    phi = (tp * tn - fp * fn) / np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert m2.mcc == pytest.approx(phi)
    # confusion matrix from labels, with no data
    ref = np.array([0, 0, 1, 2, 255, 1])
    pred = np.array([0, 1, 1, 2, 0, 255])
    np.testing.assert_array_equal(M.confusion_matrix(ref, pred, 3), [[1, 1, 0], [0, 1, 0], [0, 0, 1]])
    # constant predictions: MCC 0, not NaN
    assert M.metrics_from_confusion(np.array([[5, 0], [5, 0]])).mcc == 0.0


# -- loop, checkpoint, resume, recipe, CLI ---------------------------------------------------------


def test_soft_cross_entropy_with_smoothing_and_weights() -> None:
    g = torch.Generator().manual_seed(0)  # its own generator: the same numbers whatever ran before
    logits = torch.randn(2, K, 3, 3, generator=g)
    t = torch.softmax(torch.randn(2, K, 3, 3, generator=g), 1)
    w = torch.rand(2, 3, 3, generator=g)
    got = soft_cross_entropy(logits, t, w, smoothing=0.1)
    ts = 0.9 * t + 0.1 / K
    want = (-(ts * torch.log_softmax(logits, 1)).sum(1) * w).sum() / w.sum()
    assert float(got) == pytest.approx(float(want), rel=1e-6)
    w0 = w.clone()
    w0[0] = 0
    assert float(soft_cross_entropy(logits, t, w0)) == pytest.approx(
        float(soft_cross_entropy(logits[1:], t[1:], w[1:])), rel=1e-6)   # zero weight: ignored


def test_sharpened_targets_keep_the_top_class_and_leave_hard_labels_alone() -> None:
    from dwcube.train.loop import sharpen

    g = torch.Generator().manual_seed(1)  # its own generator: the same numbers whatever ran before
    t = torch.softmax(torch.randn(3, K, 4, 4, generator=g), 1)
    s = sharpen(t, 0.3)
    torch.testing.assert_close(s.sum(1), torch.ones(3, 4, 4))
    assert torch.equal(s.argmax(1), t.argmax(1))
    assert bool((s.amax(1) >= t.amax(1) - 1e-6).all())  # the top class only gains
    onehot = torch.nn.functional.one_hot(torch.randint(0, K, (2, 4, 4), generator=g), K).permute(0, 3, 1, 2).float()
    assert torch.equal(sharpen(onehot, 0.3), onehot)
    assert sharpen(t, 1.0) is t
    lg = torch.randn(3, K, 4, 4, generator=g)
    w = torch.ones(3, 4, 4)
    want = soft_cross_entropy(lg, t ** (1 / 0.3) / (t ** (1 / 0.3)).sum(1, keepdim=True), w, 0.1)
    assert float(soft_cross_entropy(lg, t, w, 0.1, temperature=0.3)) == pytest.approx(float(want), rel=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        sharpen(t, 0.0)


def _tiny_sets():
    cube, lab = _cube_and_labels(96, 3, skew=True)
    r = Recipe.quick()
    tr = sample_patches(cube, lab, r.sampling, split=r.split, side="train")
    va = sample_patches(cube, lab, replace(r.sampling, n_samples=12, balance="none"), split=r.split, side="val")
    return tr, va, r


def test_tiny_training_lowers_the_loss_writes_a_loadable_checkpoint_and_resumes(tmp_path: Path) -> None:
    tr, va, r = _tiny_sets()
    spec = input_spec(NORMALISATION)
    # class weights are a tuple in the config and a list once stored: resuming must still match
    cfg = replace(r.train, steps=40, checkpoint_every=20, device="cpu",
                  class_weight=(1.0, 1.0, 1.0, 2.0, 1.0, 1.0, 2.0, 1.0, 1.0))
    res = train(tr, va, spec, cfg, tmp_path / "full", progress=False)
    assert res is not None
    losses = [h["loss"] for h in res.history]
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:8])
    ckpt = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    assert ckpt["step"] == 40 and set(ckpt) >= {"model", "optimizer", "config", "history", "normalisation"}
    net = load_unet(res.weights)
    assert net.normalisation == [dict(r_) for r_ in ckpt["normalisation"]]
    assert res.metrics is not None and 0 <= res.metrics.overall_accuracy <= 1
    assert json.loads((tmp_path / "full" / "metrics.json").read_text())["classes"] == list(CLASSES)
    # interrupted after 20 steps, then resumed to 40: the same network as the uninterrupted run
    assert train(tr, va, spec, cfg, tmp_path / "split", progress=False, stop_after=20) is None
    assert torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)["step"] == 20
    res2 = train(tr, va, spec, cfg, tmp_path / "split", progress=False)
    assert res2 is not None and len(res2.history) == 40
    a, b = load_unet(res.weights).state_dict(), load_unet(res2.weights).state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="another configuration"):
        train(tr, va, spec, replace(cfg, lr=1e-4), tmp_path / "split", progress=False)
    # a checkpoint written before an option existed resumes as if it had the option's default;
    # device and thread count may change between sessions
    state = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)
    del state["config"]["target_temperature"]
    torch.save(state, tmp_path / "split" / "checkpoint.pt")
    threads = torch.get_num_threads()
    try:
        assert train(tr, va, spec, replace(cfg, steps=41, threads=1, device="cpu"), tmp_path / "split",
                     progress=False) is not None
    finally:
        torch.set_num_threads(threads)
    with pytest.raises(ValueError, match="another configuration"):
        train(tr, va, spec, replace(cfg, steps=42, target_temperature=0.5), tmp_path / "split", progress=False)


def test_recipe_end_to_end_and_the_trained_file_classifies(tmp_path: Path) -> None:
    # seed 0: the validation block (the centre one of 3 × 3) holds water (13 %) as well as trees, so that
    # the validation scores say something about both classes (seed 7 left it all trees)
    cube = synthetic_cube(96, 2, bands=UNET_BANDS, seed=0)
    water = cube.nir08.isel(time=0).values <= 0.2
    wc = xr.DataArray(np.where(water, 80, 10).astype(np.uint8), dims=("y", "x"), coords={"y": cube.y, "x": cube.x})
    res = train_from_cube(cube, wc, tmp_path / "run", recipe=Recipe.quick(), progress=False)
    assert res.sha256 and res.weights.is_file()
    m = res.metrics
    iw, it = CLASSES.index("water"), CLASSES.index("trees")
    assert m is not None and m.support[iw] > 0 and m.support[it] > 0
    majority = max(m.support) / sum(m.support)
    print(f"validation: accuracy {m.overall_accuracy:.3f} (majority {majority:.3f}), recall water "
          f"{m.recall[iw]:.3f}, trees {m.recall[it]:.3f}")
    # better than always answering the majority class: half-way from its share to perfect, both classes found
    assert m.overall_accuracy >= majority + (1 - majority) / 2
    assert m.recall[iw] >= 0.75 and m.recall[it] >= 0.9
    entry = unet_entry(res.weights, name="my-unet")
    dem = xr.Dataset({"elevation": xr.full_like(cube.red.isel(time=0, drop=True), 300.0)})
    prob = dwcube.classify(cube, entry, dem=dem, device="cpu").compute()
    assert prob.attrs["model_weights_sha256"] == res.sha256
    p = prob.values
    assert (p >= 0).all() and (p <= 1).all()
    np.testing.assert_allclose(prob.sum("class").values, 1, atol=1e-5)
    lab = p.argmax(1)
    truth = np.where(water, iw, it)
    share = max(water.mean(), 1 - water.mean())
    accuracy = (lab == truth).mean()
    recall = [(lab[:, truth == c] == c).mean() for c in (iw, it)]
    p_true = np.take_along_axis(p, np.broadcast_to(truth, lab.shape)[:, None], 1)[:, 0]
    p_other = np.delete(p, [iw, it], axis=1).max(1)  # the seven classes the labels never show
    print(f"whole image: accuracy {accuracy:.3f} (majority {share:.3f}), recall {np.round(recall, 3)}, "
          f"true class above every unseen class on {(p_true > p_other).mean():.3f} of the pixel-dates")
    assert accuracy >= share + (1 - share) / 2 and min(recall) >= 0.8
    assert (p_true > p_other).mean() >= 0.98


def test_fit_normalisation_and_label_kinds() -> None:
    tr, _, _ = _tiny_sets()
    rec = fit_normalisation(tr)
    assert [r["name"] for r in rec] == list(FEATURES)
    vals = tr.reflectance[:, :, 2].astype(np.float32)
    assert rec[2]["shift"] == pytest.approx(np.nanmedian(vals), rel=0.01)
    assert prepare_labels(xr.DataArray(np.array([[10, 80]]), dims=("y", "x"))).label.values.tolist() == [[1, 0]]
    assert prepare_labels(xr.DataArray(np.array([[1, 255]], np.uint8), dims=("y", "x"))).label.values.tolist() == [[1, 255]]


def test_cli_trains_from_files(tmp_path: Path) -> None:
    from dwcube.train import cli

    cube = synthetic_cube(64, 2, bands=UNET_BANDS, seed=1)
    cube.to_zarr(tmp_path / "cube.zarr", zarr_format=3, consolidated=False)
    lab = xr.DataArray(np.where(cube.nir08.isel(time=0).values > 0.2, 1, 0).astype(np.uint8), dims=("y", "x"),
                       coords={"y": cube.y, "x": cube.x}, name="label")
    xr.Dataset({"label": lab}).to_zarr(tmp_path / "labels.zarr", zarr_format=3, consolidated=False)
    p = argparse.ArgumentParser()
    cli.add_parser(p.add_subparsers(dest="command"))
    args = p.parse_args(["train", str(tmp_path / "cube.zarr"), str(tmp_path / "labels.zarr"), "--kind",
                         "dynamic-world", "--out", str(tmp_path / "run"), "--quick", "--no-progress"])
    assert cli.run(args) == 0
    assert (tmp_path / "run" / "unet.pt").is_file() and (tmp_path / "run" / "checkpoint.pt").is_file()

"""The U-Net: variants, sizes, receptive field and halo, chunk invariance, weights files, shipped weights."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import dwcube
from dwcube.inference import classify
from dwcube.models import unet as U
from dwcube.models.registry import get_entry
from dwcube.models.weights import WeightsHashError
from dwcube.testing import randomise_batch_norm, synthetic_cube

VARIANTS = {
    "plain": U.UNetConfig(),
    "attention": U.UNetConfig(attention=True),
    "aspp": U.UNetConfig(aspp=True),
    "both": U.UNetConfig(attention=True, aspp=True),
}
BANDS = ("blue", "green", "red", "nir08", "swir16", "swir22")


def _random_net(cfg: U.UNetConfig, seed: int = 0) -> U.UNet:
    """Random weights and batch-norm statistics (so that every layer matters), evaluation mode."""
    torch.manual_seed(seed)
    return randomise_batch_norm(U.UNet(cfg).eval())


def _records() -> list[dict]:
    kinds = {"ndvi": "index", "ndmi": "index", "mndwi": "index", "elevation": "elevation"}
    scale = {"ndvi": 0.5, "ndmi": 0.5, "mndwi": 0.5, "elevation": 1000.0}
    return [{"name": n, "kind": kinds.get(n, "band"), "shift": 500.0 if n == "elevation" else 0.1,
             "scale": scale.get(n, 0.1)} for n in U.FEATURES]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variants_run_on_odd_and_even_sizes(name: str) -> None:
    net = _random_net(VARIANTS[name])
    for h, w in ((64, 64), (37, 50), (9, 17), (1, 1), (8, 24)):
        x = torch.randn(2, 9, h, w)
        with torch.no_grad():
            y = net(x)
        assert y.shape == (2, 9, h, w) and torch.isfinite(y).all()
        # the padding rule: an unaligned size is the replicate-padded aligned image, cropped
        ph, pw = -h % 8, -w % 8
        with torch.no_grad():
            padded = net(torch.nn.functional.pad(x, (0, pw, 0, ph), mode="replicate"))
        torch.testing.assert_close(y, padded[..., :h, :w], atol=1e-5, rtol=0)


def test_variants_differ_and_have_a_few_hundred_thousand_parameters() -> None:
    sizes = {k: sum(p.numel() for p in U.UNet(c).parameters()) for k, c in VARIANTS.items()}
    assert len(set(sizes.values())) == 4                       # four different networks
    assert sizes["attention"] > sizes["plain"] and sizes["both"] > sizes["aspp"]   # gates add parameters
    assert all(1e5 < n < 1e6 for n in sizes.values())          # a few MB of float32 at most


@pytest.mark.parametrize("name", list(VARIANTS))
def test_receptive_field_is_exactly_what_the_network_sees(name: str) -> None:
    """A NaN input pixel reaches exactly the outputs whose receptive field holds it (float64:
    direct convolutions, NaN·0 = NaN, so every structural path counts, whatever the weights)."""
    cfg = VARIANTS[name]
    rf = U.receptive_field(cfg)
    net = U.UNet(cfg).eval().double()
    row, lo, hi = 8, 0, 0
    for phase in range(8):  # every pooling phase of the output pixel
        o = 120 + phase
        offsets = [rf.before - 1, rf.before, 0, rf.after, rf.after + 1]
        batch = torch.zeros(len(offsets), 9, 16, 256, dtype=torch.float64)
        for i, d in enumerate(offsets):
            batch[i, :, row, o + d] = float("nan")
        with torch.no_grad():
            hit = torch.isnan(net(batch)[:, :, row, o]).any(1).tolist()
        assert not hit[0] and not hit[-1] and hit[2]      # never outside [before, after]
        lo = min(lo, *(d for d, h in zip(offsets, hit, strict=True) if h))
        hi = max(hi, *(d for d, h in zip(offsets, hit, strict=True) if h))
    assert (lo, hi) == (rf.before, rf.after)              # the extremes are reached at some phase
    assert rf.halo >= max(-rf.before, rf.after) and rf.halo % U.ALIGNMENT == 0


def test_fused_network_is_the_same_function() -> None:
    net = _random_net(VARIANTS["both"], seed=2)
    x = torch.randn(2, 9, 40, 48)
    with torch.no_grad():
        torch.testing.assert_close(U.fuse_batchnorm(net)(x), net(x), atol=2e-5, rtol=0)


def _file(tmp_path: Path, cfg: U.UNetConfig, seed: int = 0) -> Path:
    path = tmp_path / "unet.pt"
    U.save_unet(path, _random_net(cfg, seed), normalisation=_records(), metadata={"test": True})
    return path


def test_chunk_invariance_through_classify_with_the_halo(tmp_path: Path) -> None:
    entry = U.unet_entry(_file(tmp_path, VARIANTS["both"]))
    assert entry.halo == U.receptive_field(VARIANTS["both"]).halo and entry.alignment == 8
    cube = synthetic_cube((150, 141), 2, bands=BANDS, nodata_fraction=0.05, seed=4)  # unaligned sizes
    dem = xr.Dataset({"elevation": xr.DataArray(np.linspace(200, 600, 150 * 141, dtype=np.float32).reshape(150, 141),
                                                dims=("y", "x"), coords={"y": cube.y, "x": cube.x})})
    results = []
    for chunks, tile in (({"y": 150, "x": 141}, 512), ({"y": 70, "x": 66}, 24), ({"y": 90, "x": 45}, 40)):
        prob = classify(cube.chunk({"time": 1, **chunks}), entry, dem=dem, device="cpu", tile=tile, compile=False)
        results.append(prob.values)
    for other in results[1:]:
        assert np.nanmax(np.abs(other - results[0])) < 1e-5
        np.testing.assert_array_equal(np.isnan(other), np.isnan(results[0]))
    # and the chunked result equals the network on the whole image (fill value at no data)
    x = dwcube.model_inputs(cube, entry.inputs, dem=dem).values
    valid = np.isfinite(x).all(1)
    net = entry.build(None)
    filled = np.where(valid[:, None], x, 0).astype(np.float32)   # the engine's rule: no data -> fill value
    with torch.no_grad():
        whole = torch.softmax(net(torch.from_numpy(filled)), 1).numpy()
    v = np.broadcast_to(valid[:, None], whole.shape)
    assert np.abs(results[1][v] - whole[v]).max() < 1e-5


def test_weights_file_roundtrip_and_hash_check(tmp_path: Path) -> None:
    cfg = U.UNetConfig(widths=(8, 8, 16, 16), aspp=True)
    path = _file(tmp_path, cfg)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    net = U.load_unet(path, sha256=sha)
    assert net.config == cfg and net.metadata == {"test": True} and net.normalisation == _records()
    torch.testing.assert_close(net.state_dict(), _random_net(cfg).state_dict())
    with pytest.raises(WeightsHashError):
        U.load_unet(path, sha256="0" * 64)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad.pt"
    bad.write_bytes(bytes(data))
    with pytest.raises(WeightsHashError):
        U.unet_entry(bad, sha256=sha)
    with pytest.raises(ValueError, match="unknown UNetConfig keys"):
        U.UNetConfig.from_dict({"widths": [4, 4, 4, 4], "depth": 5})


# -- the shipped weights ---------------------------------------------------------------------------


def test_shipped_entry_is_registered_and_consistent_with_its_file() -> None:
    entry = get_entry("unet")
    path = Path(entry.weights_file)
    assert path.is_file() and path.stat().st_size < 4 * 2**20          # small: inside the package
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry.weights_file_sha256
    blob = U.read_unet_file(path, sha256=entry.weights_file_sha256)
    cfg = U.UNetConfig.from_dict(blob["config"])
    rf = U.receptive_field(cfg)
    assert (entry.receptive_field, entry.halo, entry.alignment) == (rf.size, rf.halo, U.ALIGNMENT)
    assert entry.inputs == U.input_spec(blob["normalisation"])           # normalisation stored with the weights
    assert entry.inputs.names == U.FEATURES and entry.inputs.nir == "nir08"
    assert entry.provenance()["model_weights_sha256"] == entry.weights_file_sha256
    net = entry.build(None)
    with torch.no_grad():
        assert net(torch.zeros(1, 9, 16, 16)).shape == (1, 9, 16, 16)


def test_shipped_model_runs_on_landsat_without_domain_warning_or_dem() -> None:
    cube = synthetic_cube(48, 1, bands=BANDS, sensor="landsat-c2-l2-oli")
    with warnings.catch_warnings():
        warnings.simplefilter("error", dwcube.inputs.OutOfDomainWarning)
        prob = classify(cube, "unet", device="cpu").compute()          # no DEM: the weights do not need one
    assert prob.attrs["model"] == "unet" and np.allclose(prob.sum("class"), 1, atol=1e-5)
    assert not get_entry("unet").inputs.needs_dem()


def test_shipped_inputs_stay_bounded_for_very_bright_snow() -> None:
    """Log-scaled bands: Landsat snow at reflectance 1.2 is a few scales from the median, not 14."""
    cube = synthetic_cube(16, 1, bands=BANDS, sensor="landsat-c2-l2-oli")
    for b in BANDS:
        cube[b] = cube[b] * 0 + (1.2 if b in ("blue", "green", "red") else 0.9 if b == "nir08" else 0.05)
    x = dwcube.model_inputs(cube, get_entry("unet").inputs).values
    assert np.abs(x[:, :6]).max() < 5


@pytest.mark.shared
@pytest.mark.slow
def test_shipped_model_agrees_with_dynamic_world_on_a_mixed_validation_side(shared: Path) -> None:
    """T33UUU's validation blocks (never used in training; nine classes, the largest 33 %).

    A constant classifier scores the majority share; the U-Net must be well above it, reach the
    85 % target where Dynamic World is confident, and find the main classes.
    """
    from dwcube.train import shipped as S
    from dwcube.train.corpus import t33uuu
    from dwcube.train.evaluation import agreement
    from dwcube.train.teacher import dynamic_world_probabilities

    src = t33uuu(shared)
    teacher = dynamic_world_probabilities(src.cube, shared / "dynamicworld")
    prob = S.predict_source("unet", src)
    val = S.source_split(src) == 1
    a = agreement(np.concatenate(list(prob), 2), np.concatenate(list(teacher), 2), np.tile(val, (1, len(prob))))
    majority = max(v["share"] for v in a.per_class.values())
    assert majority < 0.5
    assert a.agreement >= majority + 0.5 * (1 - majority), (a.agreement, majority)
    assert a.confident_agreement >= 0.85, a
    for cls in ("water", "trees", "grass", "crops"):
        assert a.per_class[cls]["share"] > 0.05 and a.per_class[cls]["recall"] > 0.6, (cls, a.per_class[cls])


@pytest.mark.shared
@pytest.mark.slow
@pytest.mark.network
def test_real_landsat_through_load_and_classify_agrees_with_qa_pixel(shared: Path, tmp_path: Path) -> None:
    """Real Landsat 8 scenes with QA_PIXEL: local STAC + HTTP COGs -> dwcube.load -> classify("unet").

    Snow (bit 5) and water (bit 7) recall on clear pixels at least what docs/model_card.md states
    for this path (QA_RECALL_THROUGH_LOAD); every clear pixel gets a label.
    """
    import rioxarray  # noqa: F401
    from rasterio.enums import Resampling

    from dwcube.testing import LANDSAT_QA_SCENES, landsat_qa_items, serve_directory
    from dwcube.train.evaluation import qa_agreement

    cogs = tmp_path / "cogs"
    landsat_qa_items(shared, cogs, base_url="http://x/", scenes=LANDSAT_QA_SCENES[:3])  # write the COGs once
    with serve_directory(cogs) as (url, _):
        items = landsat_qa_items(shared, cogs, base_url=url + "/", scenes=LANDSAT_QA_SCENES[:3])
        got = {}
        for item in items:
            epsg = item.properties["proj:code"]
            cube = dwcube.load([item], bands=list(BANDS), crs=epsg, resolution=500, resampling="bilinear",
                               chunks=256)
            lab = dwcube.label(classify(cube, "unet", device="cpu", compile=False)).isel(time=0).values
            qa = (xr.open_dataarray(cogs / item.id / f"{item.id}_QA_PIXEL.tif", engine="rasterio")
                  .squeeze(drop=True).rio.reproject_match(cube.red.isel(time=0), resampling=Resampling.nearest)
                  .values.astype(np.int64))
            clear = ((qa & 0b11111) == 0) & np.isfinite(cube.red.isel(time=0).values)
            assert (lab[clear] < 9).all()
            got[item.id] = qa_agreement(lab, clear, (qa >> 7) & 1 > 0, (qa >> 5) & 1 > 0)
    print(got)
    for scene, (kind, floor) in QA_RECALL_THROUGH_LOAD.items():
        assert got[scene][f"{kind}_recall"] >= floor, (scene, got[scene])


#: Recall through dwcube.load at 500 m that docs/model_card.md states (QA_PIXEL on clear pixels).
QA_RECALL_THROUGH_LOAD = {"LC08_L2SP_005009_20150710_20200908_02_T2": ("snow", 0.95)}

"""The Dynamic World port against the original TensorFlow model's reference outputs.

Tolerances are those of ``../shared/dynamicworld/reference/README.md`` §6 (float32 port on
CPU): normalised input 1e-6, logits 5e-5, probabilities 1e-5, backward output 1e-5 (2e-5
end to end); labels identical except reference near-ties (top-2 logit gap < 1e-4).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dwcube.models import dynamic_world as dw
from dwcube.models.registry import get_entry, load_model
from dwcube.models.tensor_bundle import read_saved_model
from dwcube.models.tiling import predict_tiled

pytestmark = pytest.mark.shared

CASES = ["eolearn_scene0", "eolearn_scene1", "eolearn_scene2", "eolearn_scene3", "eolearn_scene4",
         "t29unu_crop", "random_64", "eolearn_scene2_odd_67x93"]


@pytest.fixture(scope="module")
def dw_root(shared: Path) -> Path:
    root = shared / "dynamicworld"
    if not (root / "model" / "forward" / "saved_model.pb").is_file():
        pytest.skip("needs ../shared/dynamicworld (the official Dynamic World weights)")
    return root


@pytest.fixture(scope="module")
def nets(dw_root: Path) -> dict[str, torch.nn.Module]:
    """Faithful and fast forms of both directions, from the official weights."""
    out = {}
    for direction in ("forward", "backward"):
        for fast in (False, True):
            out[f"{direction}{'-fast' if fast else ''}"] = load_model(
                "dynamic-world", weights=dw_root, direction=direction, fast=fast).module
    return out


def _ref(dw_root: Path, case: str) -> tuple[dict[str, np.ndarray], dict]:
    base = dw_root / "reference" / case
    return dict(np.load(f"{base}.npz")), json.loads(Path(f"{base}.json").read_text())


def _run(net: torch.nn.Module, hwc: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        y = net(torch.from_numpy(np.ascontiguousarray(hwc)).permute(2, 0, 1)[None])
    return y[0].permute(1, 2, 0).numpy()


def _top2_gap(logits: np.ndarray) -> np.ndarray:
    s = np.sort(logits, axis=-1)
    return s[..., -1] - s[..., -2]


@pytest.mark.parametrize("case", CASES)
def test_reference_case(dw_root: Path, nets: dict, case: str) -> None:
    ref, meta = _ref(dw_root, case)
    np.testing.assert_allclose(dw.normalize_dn(ref["dn"]), ref["normalized"], rtol=0, atol=1e-6)
    gap = _top2_gap(ref["logits"])
    for form in ("forward", "forward-fast"):
        logits = _run(nets[form], ref["normalized"])
        err = np.abs(logits - ref["logits"]).max()
        probs = torch.softmax(torch.from_numpy(logits), -1).numpy()
        perr = np.abs(probs - ref["probs"]).max()
        label = logits.argmax(-1)
        wrong = np.argwhere(label != ref["label"])
        flips = ", ".join(f"pixel {tuple(int(v) for v in p)} (reference top-2 gap {gap[tuple(p)]:.1e})" for p in wrong)
        print(f"{case} {form}: max|Δlogit| {err:.2e}, max|Δprob| {perr:.2e}, label mismatches: {flips or 'none'}")
        assert err <= 5e-5, f"{form}: logits differ by {err}"
        assert perr <= 1e-5, f"{form}: probabilities differ by {perr}"
        # labels may differ only at the reference's own near-ties
        assert all(gap[tuple(p)] < 1e-4 for p in wrong), f"{form}: label flips away from near-ties"
        assert len(wrong) <= meta["label_near_ties"]["top2_logit_gap_below_1e-4"]


@pytest.mark.parametrize("case", ["eolearn_scene1", "t29unu_crop", "eolearn_scene2_odd_67x93"])
def test_backward_network(dw_root: Path, nets: dict, case: str) -> None:
    ref, _ = _ref(dw_root, case)
    for form in ("backward", "backward-fast"):
        out = _run(nets[form], ref["probs"])
        assert np.abs(out - ref["backward_out"]).max() <= 1e-5
    # end to end: our own probabilities through our own backward network
    probs = torch.softmax(torch.from_numpy(_run(nets["forward-fast"], ref["normalized"])), -1).numpy()
    assert np.abs(_run(nets["backward-fast"], probs) - ref["backward_out"]).max() <= 2e-5


def test_tiles_at_even_offsets_reproduce_the_whole_image(dw_root: Path, nets: dict) -> None:
    entry = get_entry("dynamic-world")
    ref, _ = _ref(dw_root, "t29unu_crop")
    x = torch.from_numpy(ref["normalized"]).permute(2, 0, 1)[None]
    net = nets["forward-fast"]
    with torch.inference_mode():
        whole = net(x)
        for halo, uniform in ((22, False), (entry.halo, False), (entry.halo, True)):
            tiled = predict_tiled(net, x, tile=96, halo=halo, alignment=entry.alignment, batch_size=4,
                                  uniform=uniform)
            err = (tiled - whole).abs().max().item()
            print(f"halo {halo} ({'uniform' if uniform else 'clipped'} tiles): max|Δlogit| tiled vs whole {err:.2e}")
            assert err <= 1e-5
            assert torch.equal(tiled.argmax(1), whole.argmax(1))
            # and against the original model's whole-image output
            assert np.abs(tiled[0].permute(1, 2, 0).numpy() - ref["logits"]).max() <= 5e-5
        # the declared alignment is needed: odd tile origins (odd halo) break the 2x phase
        shifted = predict_tiled(net, x, tile=96, halo=entry.halo + 1, alignment=1)
        assert (shifted - whole).abs().max().item() > 0.1
        # and so is the halo: 8 pixels of context are not enough
        short = predict_tiled(net, x, tile=96, halo=8, alignment=2)
        assert (short - whole).abs().max().item() > 1e-2


def test_registry_entry_describes_the_model(dw_root: Path) -> None:
    e = get_entry("dynamic-world")
    assert e.output == "logits" and list(e.classes) == ["water", "trees", "grass", "flooded_vegetation", "crops",
                                                        "shrub_and_scrub", "built", "bare", "snow_and_ice"]
    assert e.inputs.names == dw.BANDS and e.inputs.sensors == ("sentinel-2-l1c",)
    assert e.halo >= 22 and e.halo % e.alignment == 0 and e.alignment == 2 and e.receptive_field == 44
    assert all(f.sha256 == __import__("dwcube").models.weights.sha256_file(dw_root / f.path)
               for f in e.weights.files)
    m = load_model("dynamic-world", weights=dw_root)
    assert m.attrs["model_weights_sha256"] == e.weights.sha256
    assert "National Geographic" in m.attrs["model_attribution"]
    notice = (dw_root / "NOTICE").read_text()
    assert e.attribution.split(" by ")[0].split()[-1] in notice  # same attribution as the shipped NOTICE


def test_keras_layers_match_the_port(dw_root: Path) -> None:
    """Every Keras layer with weights maps to one torch module of the same kind and shape, and
    every batch norm follows the convolution it is paired with in the original graph."""
    for direction in ("forward", "backward"):
        meta = read_saved_model(dw_root / "model" / direction).keras_metadata
        # the forward SavedModel wraps the network in an outer functional model; the backward does not
        inner = next((l["config"] for l in meta["config"]["layers"] if l["class_name"] == "Functional"),
                     meta["config"])
        layers = {l["name"]: l for l in inner["layers"]}
        slots = dw._slots(direction)  # noqa: SLF001 - the port's own layer table
        weighted = {n for n, l in layers.items()
                    if l["class_name"] in ("Conv2D", "DepthwiseConv2D", "BatchNormalization")}
        assert weighted == {s.tf_layer for s in slots}
        net = dw.build_dynamic_world(direction)
        mods = dict(net.named_modules())
        for i, s in enumerate(slots):
            cfg = layers[s.tf_layer]["config"]
            mod = mods[s.module]
            if s.kind == "bn":
                assert cfg["epsilon"] == mod.eps == 1e-3
                assert layers[s.tf_layer]["inbound_nodes"][0][0][0] == slots[i - 1].tf_layer
            else:
                k = cfg["kernel_size"]["items"] if isinstance(cfg["kernel_size"], dict) else cfg["kernel_size"]
                assert tuple(k) == mod.kernel_size and cfg["use_bias"]
                assert cfg["padding"] == ("same" if k[0] == 3 else "valid")
                assert (s.kind == "dwconv") == (layers[s.tf_layer]["class_name"] == "DepthwiseConv2D")
                if s.kind == "conv":
                    assert cfg["filters"] == mod.out_channels

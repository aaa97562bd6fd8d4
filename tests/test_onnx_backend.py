"""The ONNX Runtime back-end: same numbers as the PyTorch port (real Dynamic World reference
inputs, and through classify), chunk invariance, and a clear message when it is not installed."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import dwcube
from dwcube import inference as I
from dwcube.models.registry import load_model
from dwcube.testing import TINY_MODEL, synthetic_cloudy_cube, synthetic_cube

ATOL = 1e-4  # as tests/test_inference.py: float32 noise between kernels; labels must not move


def _needs_ort() -> None:
    pytest.importorskip("onnx", reason="needs the dwcube[onnx] extra")
    pytest.importorskip("onnxruntime", reason="needs the dwcube[onnx] extra")


@pytest.mark.shared
def test_dynamic_world_under_onnxruntime_matches_the_port_and_the_original(shared: Path) -> None:
    _needs_ort()
    from dwcube.models.onnx_backend import OnnxRuntimeModule

    root = shared / "dynamicworld"
    if not (root / "model" / "forward" / "saved_model.pb").is_file():
        pytest.skip("needs ../shared/dynamicworld (the official Dynamic World weights)")
    ref = np.load(root / "reference" / "random_64.npz")
    net = load_model("dynamic-world", weights=root, fast=True).module.eval()
    x = torch.from_numpy(np.ascontiguousarray(ref["normalized"])).permute(2, 0, 1)[None]
    with torch.inference_mode():
        want = net(x)
        got = OnnxRuntimeModule(net, threads=1)(x.contiguous(memory_format=torch.channels_last))
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5, rtol=0)
    # the original's tolerance (reference/README.md §6): logits 5e-5
    np.testing.assert_allclose(got[0].permute(1, 2, 0).numpy(), ref["logits"], atol=5e-5, rtol=0)


@pytest.mark.shared
def test_classify_dynamic_world_with_onnxruntime_equals_torch(shared: Path) -> None:
    _needs_ort()
    if not (shared / "dynamicworld" / "model" / "forward" / "saved_model.pb").is_file():
        pytest.skip("needs ../shared/dynamicworld")
    cube, _ = synthetic_cloudy_cube(64, chunks=64)
    kw = dict(weights=shared / "dynamicworld", device="cpu")
    torch_prob = I.classify(cube, "dynamic-world", backend="torch", **kw)
    ort_prob = I.classify(cube, "dynamic-world", backend="onnxruntime", **kw)
    assert ort_prob.attrs["inference_backend"] == "onnxruntime"
    assert torch_prob.attrs["inference_backend"] == "torch"
    a, b = torch_prob.values, ort_prob.values
    np.testing.assert_allclose(b, a, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(dwcube.label(ort_prob).values, dwcube.label(torch_prob).values)


def test_onnxruntime_chunkings_agree_with_torch() -> None:
    _needs_ort()
    cube = synthetic_cube((50, 44), 2, nodata_fraction=0.1, seed=7)
    want = I.classify(cube, TINY_MODEL, device="cpu", backend="torch").compute()
    for chunks, tile in (({"y": 50, "x": 44}, 512), ({"y": 24, "x": 22}, 8)):
        got = I.classify(cube.chunk({"time": 1, **chunks}), TINY_MODEL, device="cpu", tile=tile,
                         backend="onnxruntime").compute()
        np.testing.assert_allclose(got.values, want.values, atol=ATOL, rtol=0)
        np.testing.assert_array_equal(np.isnan(got.values), np.isnan(want.values))
        np.testing.assert_array_equal(dwcube.label(got).values, dwcube.label(want).values)


def test_runner_with_a_backend_pickles_and_has_its_own_cache_entry() -> None:
    a = I.ModelRunner(TINY_MODEL, None, device="cpu", backend="torch")
    b = I.ModelRunner(TINY_MODEL, None, device="cpu", backend="onnxruntime")
    assert pickle.loads(pickle.dumps(b)) == b
    assert a.key() != b.key()


def test_missing_onnxruntime_is_a_clear_error_and_the_default_needs_no_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what `import onnxruntime` sees when it is absent
    cube = synthetic_cube(size=16, dates=1)
    with pytest.raises(ImportError, match=r"pip install 'dwcube\[onnx\]'"):
        I.classify(cube, TINY_MODEL, device="cpu", backend="onnxruntime")
    prob = I.classify(cube, TINY_MODEL, device="cpu", compile=True, backend="auto")
    assert prob.attrs["inference_backend"] == "torch"


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(ValueError, match="backend='tensorrt' is not one of"):
        I.classify(synthetic_cube(size=16, dates=1), TINY_MODEL, device="cpu", backend="tensorrt")


def test_shipped_unet_under_onnxruntime_equals_torch_through_classify() -> None:
    _needs_ort()
    cube = synthetic_cube((72, 80), 1, bands=("blue", "green", "red", "nir08", "swir16", "swir22"), seed=2,
                          nodata_fraction=0.05)
    want = I.classify(cube, "unet", device="cpu", backend="torch", compile=False).values
    got = I.classify(cube, "unet", device="cpu", backend="onnxruntime").values
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))

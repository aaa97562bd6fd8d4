"""The s2cloudless model ships with dwcube (no s2cloudless/sentinelhub/OpenCV dependency) and is
exactly the original: same bytes as s2cloudless 1.7.3's file, same predictions as LightGBM on it."""

from __future__ import annotations

import hashlib
import importlib.util
import tomllib
from pathlib import Path

import numpy as np
import pytest

from dwcube import clouds as C
from dwcube.gbdt import TreeModel

REPO = Path(__file__).resolve().parent.parent


def _installed_s2cloudless_model() -> Path:
    """The model file of an installed s2cloudless package (found without importing it)."""
    spec = importlib.util.find_spec("s2cloudless")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("s2cloudless is not installed (pip install 'dwcube[test]'): nothing to compare with")
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "pixel_s2_cloud_detector_lightGBM_v0.1.txt"


def test_vendored_model_is_byte_for_byte_the_s2cloudless_file() -> None:
    text = C._model_text()  # noqa: SLF001 - checks the pinned SHA-256 itself
    assert hashlib.sha256(text.encode("ascii")).hexdigest() == C.S2CLOUDLESS_MODEL_SHA256
    original = _installed_s2cloudless_model()
    assert hashlib.sha256(original.read_bytes()).hexdigest() == C.S2CLOUDLESS_MODEL_SHA256


def test_vendored_model_predicts_like_lightgbm_on_the_original() -> None:
    lightgbm = pytest.importorskip("lightgbm")
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(0, 0.6, (3000, 10)), rng.uniform(0, 1.5, (1000, 10)), np.zeros((2, 10))])
    x[:50, 7] = np.nan  # LightGBM's missing-value rules
    want = lightgbm.Booster(model_file=str(_installed_s2cloudless_model())).predict(x, num_threads=1)
    np.testing.assert_array_equal(C._tree_model().predict(x), want)  # noqa: SLF001


def test_a_changed_model_file_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lzma

    bad = tmp_path / "model.txt.xz"
    text = C._model_text()  # noqa: SLF001
    bad.write_bytes(lzma.compress(text[:4000].replace("sigmoid:1", "sigmoid:2", 1).encode(), preset=0))
    monkeypatch.setattr(C, "S2CLOUDLESS_MODEL_FILE", bad)
    with pytest.raises(RuntimeError, match="is not the s2cloudless model's"):
        C._model_text()  # noqa: SLF001


def test_the_model_travels_with_its_licence_and_attribution() -> None:
    folder = C.S2CLOUDLESS_MODEL_FILE.parent
    notice = (folder / "NOTICE").read_text()
    assert "CC BY-SA 4.0" in notice and "Sinergise" in notice and C.S2CLOUDLESS_MODEL_SHA256 in notice
    assert "Attribution-ShareAlike 4.0 International" in (folder / "LICENSE.md").read_text()
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "data/s2cloudless/*" in meta["tool"]["setuptools"]["package-data"]["dwcube"]
    assert "CC-BY-SA-4.0" in meta["project"]["license"]
    assert "dwcube/data/s2cloudless/LICENSE.md" in meta["project"]["license-files"]
    core = " ".join(meta["project"]["dependencies"])
    assert "s2cloudless" not in core and "lightgbm" not in core  # ~173 MB with sentinelhub and OpenCV


def test_tree_model_parses_the_same_from_text_and_file(tmp_path: Path) -> None:
    path = tmp_path / "m.txt"
    path.write_text(C._model_text())  # noqa: SLF001
    x = np.random.default_rng(2).uniform(0, 1, (100, 10))
    np.testing.assert_array_equal(TreeModel.from_text(path).predict(x), C._tree_model().predict(x))  # noqa: SLF001


@pytest.mark.shared
def test_lockstep_kernel_equals_the_general_one_on_real_pixels(shared: Path) -> None:
    # the s2cloudless forest has no missing-value splits, so predict() takes the lockstep
    # kernel; it must give the general kernel's (LightGBM's rule's) sums bit for bit, NaN,
    # infinities and zeros included, and any row count (partial groups and batches)
    from dwcube import gbdt

    model = C._tree_model()  # noqa: SLF001
    assert model._plain is not None  # noqa: SLF001
    scenes = np.load(shared / "data" / "eolearn-slovenia" / "reference_scenes_l1c.npy")
    order = ["coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08", "nir09",
             "cirrus", "swir16", "swir22"]
    x = scenes[..., [order.index(b) for b in C.S2CLOUDLESS_BANDS]].reshape(-1, 10)[:5003].astype(np.float64)
    x[::97, 3] = np.nan
    x[::89, 5] = 0.0
    x[::83, 1] = np.inf
    x[::79, 7] = -np.inf
    general = gbdt._predict(x, model.feature, model.threshold, model.left, model.right,  # noqa: SLF001
                            model.default_left, model.missing, model.leaf_value, model.node_offset,
                            model.leaf_offset, model.n_nodes, model.sigmoid)
    np.testing.assert_array_equal(model.predict(x), general)
    np.testing.assert_array_equal(model.predict(x[:3]), general[:3])

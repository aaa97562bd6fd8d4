"""Weights: pinned hashes, the tensor-bundle reader's own checks, all-or-nothing loading,
one search order everywhere (explicit, $DWCUBE_WEIGHTS, shared/, the user cache), and
`dwcube weights fetch` against a loopback HTTP server.

Every test that searches sets the environment it searches in (``isolated``), so nothing
depends on the machine's own cache or shared/ folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dwcube import cli
from dwcube import testing as T
from dwcube.models import dynamic_world as dw
from dwcube.models import weights as W
from dwcube.models.registry import UnknownModelError, get_entry, load_model
from dwcube.models.tensor_bundle import BundleError, TensorBundle, _snappy_decompress, crc32c, read_saved_model

REPO = Path(__file__).resolve().parent.parent
SOURCE = get_entry("dynamic-world").weights


def test_crc32c_and_snappy_decoder() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    assert crc32c(b"") == 0
    data = bytes(range(256)) * 7 + b"tail"
    assert crc32c(data) == crc32c(data[100:], crc32c(data[:100]))
    # literal "abcd" then a 1-byte-offset copy of length 8 at offset 4 (overlapping its own output)
    block = bytes([12]) + bytes([3 << 2]) + b"abcd" + bytes([((8 - 4) << 2) | 1, 4])
    assert _snappy_decompress(block) == b"abcdabcdabcd"
    with pytest.raises(BundleError, match="offset"):
        _snappy_decompress(bytes([8, 1 << 2 | 1, 9]))


@pytest.fixture()
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty search: no $DWCUBE_WEIGHTS, an empty cache, $DWCUBE_SHARED at an empty folder
    (so no ../shared is guessed), and the current folder in tmp_path/work."""
    monkeypatch.delenv("DWCUBE_WEIGHTS", raising=False)
    monkeypatch.setenv("DWCUBE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DWCUBE_SHARED", str(tmp_path / "no-shared"))
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path


@pytest.fixture()
def dw_copy(shared: Path, tmp_path: Path) -> Path:
    root = shared / "dynamicworld"
    if not (root / "model").is_dir():
        pytest.skip("needs ../shared/dynamicworld (the official Dynamic World weights)")
    dest = tmp_path / "dw"
    shutil.copytree(root / "model", dest / "model")
    for p in dest.rglob("*"):
        p.chmod(0o644 if p.is_file() else 0o755)
    return dest


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.shared
def test_corrupted_weights_are_refused(dw_copy: Path) -> None:
    data = dw_copy / "model" / "forward" / "variables" / "variables.data-00000-of-00001"
    _flip(data, 4096)
    with pytest.raises(W.WeightsHashError, match="variables.data-00000-of-00001.*does not match the pinned"):
        load_model("dynamic-world", weights=dw_copy)
    # the bundle reader catches it on its own too (per-tensor CRC32C), even without the hash table
    with pytest.raises(BundleError, match="CRC32C"):
        read_saved_model(dw_copy / "model" / "forward")
    index = dw_copy / "model" / "backward" / "variables" / "variables.index"
    _flip(index, 100)
    with pytest.raises(BundleError, match="checksum"):
        TensorBundle(index.with_suffix(""))
    index.write_bytes(index.read_bytes()[:-10])
    with pytest.raises(BundleError):
        TensorBundle(index.with_suffix(""))


@pytest.mark.shared
def test_incomplete_weights_are_not_found(dw_copy: Path, isolated: Path) -> None:
    (dw_copy / "model" / "backward" / "saved_model.pb").unlink()
    with pytest.raises(W.WeightsNotFoundError, match="incomplete, missing model/backward/saved_model.pb"):
        load_model("dynamic-world", weights=dw_copy)
    with pytest.raises(W.WeightsNotFoundError, match="dwcube weights fetch dynamic-world"):
        load_model("dynamic-world")


@pytest.mark.shared
def test_search_order_env_then_shared_then_cache(dw_copy: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DWCUBE_WEIGHTS", str(dw_copy))
    assert W.resolve(SOURCE) == dw_copy
    monkeypatch.delenv("DWCUBE_WEIGHTS")
    shutil.copytree(dw_copy, isolated / "cache" / "weights" / "dynamic-world")
    assert W.resolve(SOURCE) == isolated / "cache" / "weights" / "dynamic-world"
    shutil.copytree(dw_copy, isolated / "shared" / "dynamicworld")  # the project's shared/ comes before the cache
    monkeypatch.setenv("DWCUBE_SHARED", str(isolated / "shared"))
    assert W.resolve(SOURCE) == isolated / "shared" / "dynamicworld"
    monkeypatch.delenv("DWCUBE_SHARED")  # ../shared from the current folder (tmp_path/work)
    assert W.resolve(SOURCE) == isolated / "shared" / "dynamicworld"


def test_search_locations_are_one_documented_order(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DWCUBE_WEIGHTS", str(isolated / "w"))
    monkeypatch.setenv("DWCUBE_SHARED", str(isolated / "s"))
    assert [(p, label) for p, label in W.search_locations(SOURCE)] == [
        (isolated / "w" / "dynamic-world", "$DWCUBE_WEIGHTS/dynamic-world"),
        (isolated / "w", "$DWCUBE_WEIGHTS"),
        (isolated / "s" / "dynamicworld", "$DWCUBE_SHARED/dynamicworld"),
        (isolated / "cache" / "weights" / "dynamic-world", "the user cache"),
    ]
    assert W.search_locations(SOURCE, isolated / "mine") == [(isolated / "mine", "the path given")]
    monkeypatch.delenv("DWCUBE_SHARED")  # then ../shared is guessed: from here, and from the source checkout
    places = dict((label, p) for p, label in W.search_locations(SOURCE))
    assert places["../shared/dynamicworld from the current folder"] == isolated / "shared" / "dynamicworld"
    assert places["../shared/dynamicworld from the dwcube checkout"] == (REPO.parent / "shared" / "dynamicworld").resolve()
    assert list(places)[-1] == "the user cache"
    # weights the shared folder does not hold are never looked for there
    other = W.WeightsSource("other", SOURCE.files, SOURCE.base_url, SOURCE.origin)
    assert [label for _, label in W.search_locations(other)] == ["$DWCUBE_WEIGHTS/other", "$DWCUBE_WEIGHTS",
                                                                 "the user cache"]


def test_not_found_lists_every_place_looked_at(isolated: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DWCUBE_WEIGHTS", str(isolated / "w"))
    with pytest.raises(W.WeightsNotFoundError) as info:
        W.resolve(SOURCE)
    for path, label in W.search_locations(SOURCE):
        assert f"{path} ({label}): not there" in str(info.value)
    # `dwcube weights list` says where it looked, and the CLI error offers --weights
    assert cli.main(["weights", "list"]) == 0
    out = capsys.readouterr().out
    assert "dynamic-world" in out and "not available" in out
    assert f"looked in {isolated / 'no-shared' / 'dynamicworld'} ($DWCUBE_SHARED/dynamicworld)" in out
    assert cli.main(["weights", "verify", "dynamic-world"]) == 1
    err = capsys.readouterr().err
    assert "$DWCUBE_WEIGHTS/dynamic-world" in err and "the user cache" in err and "--weights" in err


@pytest.mark.shared
def test_weights_list_finds_the_shared_weights_like_classify(shared: Path, isolated: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    if not (shared / "dynamicworld" / "model").is_dir():
        pytest.skip("needs ../shared/dynamicworld (the official Dynamic World weights)")
    monkeypatch.setenv("DWCUBE_SHARED", str(shared))
    assert cli.main(["weights", "list"]) == 0
    assert str(shared / "dynamicworld") in capsys.readouterr().out
    assert load_model("dynamic-world").weights_root == shared / "dynamicworld"


@pytest.mark.shared
def test_loading_is_all_or_nothing(dw_copy: Path) -> None:
    variables = dict(read_saved_model(dw_copy / "model" / "forward").variables)
    net = dw.build_dynamic_world("forward")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    broken = dict(variables)
    broken.pop("depthwise_conv2d_9/bias")
    with pytest.raises(ValueError, match="missing.*depthwise_conv2d_9/bias"):
        dw.load_tf_variables(net, broken)
    wrong = dict(variables)
    wrong["conv2d_14/kernel"] = np.zeros((1, 1, 144, 8), np.float32)
    with pytest.raises(ValueError, match="conv2d_14/kernel: shape"):
        dw.load_tf_variables(net, wrong)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    extra = dict(variables, **{"conv2d_99/kernel": np.zeros(1, np.float32)})
    with pytest.raises(ValueError, match="unexpected.*conv2d_99"):
        dw.load_tf_variables(net, extra)


@pytest.mark.shared
@pytest.mark.network
def test_fetch_from_a_mirror(shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with T.serve_directory(shared / "dynamicworld") as (url, stats):
        dest = W.fetch(SOURCE, tmp_path / "w", base_url=url)
        assert W.resolve(SOURCE, dest) == dest
        assert "National Geographic" in (dest / "NOTICE").read_text()
        n = stats.requests
        # a second fetch keeps verified files and downloads nothing
        assert cli.main(["weights", "fetch", "dynamic-world", "--dest", str(dest), "--url", url]) == 0
        assert stats.requests == n and "present, verified" in capsys.readouterr().out
    m = load_model("dynamic-world", weights=dest)
    with torch.inference_mode():
        assert m.module(torch.rand(1, 9, 8, 8)).shape == (1, 9, 8, 8)


@pytest.mark.shared
@pytest.mark.network
def test_fetch_refuses_a_corrupted_download(dw_copy: Path, tmp_path: Path) -> None:
    _flip(dw_copy / "model" / "backward" / "variables" / "variables.data-00000-of-00001", 10)
    with T.serve_directory(dw_copy) as (url, _):
        with pytest.raises(W.WeightsHashError, match="nothing was installed"):
            W.fetch(SOURCE, tmp_path / "w", base_url=url)
        assert cli.main(["weights", "fetch", "dynamic-world", "--dest", str(tmp_path / "v"), "--url", url]) == 1
    bad = tmp_path / "w" / "model" / "backward" / "variables"
    assert not (bad / "variables.data-00000-of-00001").exists()
    assert not list(bad.glob(".part-*"))  # no half-written file left behind
    (tmp_path / "empty").mkdir()
    with T.serve_directory(tmp_path / "empty") as (url, _):
        with pytest.raises(W.WeightsError, match="HTTP 404"):
            W.fetch(SOURCE, tmp_path / "x", base_url=url)


def test_unknown_model_names_the_registered_ones() -> None:
    with pytest.raises(UnknownModelError, match="registered: dynamic-world"):
        load_model("dynamic-wrld")

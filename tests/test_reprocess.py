"""Model lineage on real pixels: a Dynamic World archive of the real eo-learn L1C scenes
classified again by the shipped U-Net (``dwcube reprocess``), both versions read back, the old
one byte-identical, ``compare_versions`` against a direct comparison of the two label cubes,
and a reprocess killed mid-way (a real process, SIGKILL) that ends identical when rerun."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import dwcube
from dwcube import testing as T
from dwcube.archive import (ArchiveEncoding, archive_info, archive_versions, check_archive, format_info,
                            open_archive, write_archive)
from dwcube.change import changes
from dwcube.cli import main
from dwcube.demo import write_catalog
from dwcube.jobs import AlertRule, compare_versions, reprocess

REPO = Path(__file__).resolve().parent.parent
SCENES = (2, 3, 4)  # the three clear dates of the patch: 2015-07-11, 08-30, 09-09
UNET = "unet==2.0.0"
UNET_GROUP = f"versions/{UNET}"
RULE = AlertRule(min_observations=1, min_duration=0.0)  # loose, so that three dates give change events


@pytest.fixture(scope="module")
def made(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """``dw``: the Dynamic World archive (3 dates, 32 px chunks) of a catalogue file whose items
    point at local COGs; ``ref``: a copy of it reprocessed with the shipped U-Net (no DEM) in one uninterrupted run."""
    root = tmp_path_factory.mktemp("lineage")
    items = T.eolearn_l1c_items(shared, root / "cogs", base_url=root.as_uri(), root=root, scenes=SCENES)
    catalog = write_catalog(items, root / "l1c.json")
    cube = dwcube.load(str(catalog), collections=["sentinel-2-l1c"], chunks=64, cloud_mask=False)
    prob = dwcube.classify(cube, "dynamic-world", weights=shared / "dynamicworld", device="cpu", compile=False)
    write_archive(prob, root / "dw.zarr", encoding=ArchiveEncoding(chunk=32))
    shutil.copytree(root / "dw.zarr", root / "ref.zarr")
    assert reprocess(root / "ref.zarr", UNET, device="cpu").complete
    yield {"dw": root / "dw.zarr", "ref": root / "ref.zarr"}


def _files(store: Path) -> dict[str, bytes]:
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file()}


def _first_version_files(store: Path) -> dict[str, bytes]:
    """Every file of the archive's first version: all but the other versions' group and the root
    metadata (whose consolidated listing gains the new group); the root's attributes separately."""
    out = {k: v for k, v in _files(store).items() if not k.startswith("versions") and k != "zarr.json"}
    root = json.loads((store / "zarr.json").read_text())
    out["zarr.json:attributes"] = json.dumps(root["attributes"], sort_keys=True).encode()
    return out


#: Two processes (other thread counts) compute the network to float32 noise; stored on the
#: archive's 2^-16 grid, a value at a rounding boundary lands one step apart. Equal means
#: equal to the archive's precision for float layers, and exactly for everything else.
GRID_STEP = 2.0 ** -16


def _assert_equal_to_precision(x: np.ndarray, y: np.ndarray, name: str, atol: float = GRID_STEP) -> None:
    if np.issubdtype(np.asarray(y).dtype, np.floating):
        np.testing.assert_allclose(x, y, rtol=0, atol=atol * 1.001, err_msg=name)
    else:
        np.testing.assert_array_equal(x, y, err_msg=name)


def _assert_same_version(a: Path, b: Path, model: str) -> None:
    x, y = open_archive(a, model=model).load(), open_archive(b, model=model).load()
    assert x.sizes == y.sizes and x.attrs["dwcube_model_version"] == y.attrs["dwcube_model_version"]
    for name in y.variables:
        _assert_equal_to_precision(x[name].values, y[name].values, name)


def test_reprocess_with_the_unet_beside_dynamic_world(made: dict[str, Path], tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    store = tmp_path / "lulc.zarr"
    shutil.copytree(made["dw"], store)
    before = _first_version_files(store)
    assert main(["reprocess", str(store), "--model", UNET, "--device", "cpu",
                 "--no-progress"]) == 0
    assert f"version {UNET} complete ({UNET_GROUP})" in capsys.readouterr().out
    assert _first_version_files(store) == before  # the Dynamic World version: not one byte changed
    versions = archive_versions(store)
    assert [(v["model"], v["complete"], v["default"]) for v in versions] == [
        ("dynamic-world", True, False), ("unet", True, True)]
    assert versions[0]["dates"] == versions[1]["dates"] and len(versions[0]["dates"]) == len(SCENES)
    assert open_archive(store).probability.attrs["model"] == "unet"  # the newest complete version by default
    _assert_same_version(store, made["dw"], "dynamic-world")  # both readable: the old one as it was
    _assert_same_version(store, made["ref"], UNET)
    assert main(["archive", "info", str(store)]) == 0
    info = capsys.readouterr().out
    assert "version   dynamic-world==1.0.0+0dd288f: 3 date(s)" in info and "; group / (the archive itself)" in info
    assert f"version   {UNET} (default): 3 date(s) 2015-07-11" in info and f"group {UNET_GROUP}" in info
    assert check_archive(store).ok
    assert main(["reprocess", str(store), "--model", UNET, "--no-progress"]) == 0
    assert "classified 0 date(s), 3 already there" in capsys.readouterr().out  # nothing left to do
    assert main(["reprocess", str(store), "--model", "unet==9.9", "--no-progress"]) == 1
    assert "the installed unet is version 2.0.0, not 9.9" in capsys.readouterr().err


def test_compare_versions_equals_a_direct_comparison_of_the_label_cubes(made: dict[str, Path],
                                                                        capsys: pytest.CaptureFixture) -> None:
    store = made["ref"]
    cmp = compare_versions(store, "dynamic-world", "unet", alert_rule=RULE)
    a, b = open_archive(store, model="dynamic-world"), open_archive(store, model="unet")
    la, lb = a.label.values.astype(int), b.label.values.astype(int)  # (time, y, x), 255 where no data
    classes = [str(c) for c in a["class"].values]
    k = len(classes)
    for t in range(la.shape[0]):
        ok = (la[t] != 255) & (lb[t] != 255)
        assert int(cmp.valid_pixels[t]) == ok.sum() > 0
        assert float(cmp.label_disagreement[t]) == pytest.approx((la[t][ok] != lb[t][ok]).mean(), abs=0)
        for i in range(k):
            for j in range(k):
                assert int(cmp.transitions[t, i, j]) == int(((la[t] == i) & (lb[t] == j) & ok).sum())
    assert 0 < float(cmp.label_disagreement.max()) < 0.5  # two real models: mostly the same labels
    ca, cb = changes(a.probability, **RULE.kwargs()).compute(), changes(b.probability, **RULE.kwargs()).compute()
    in_a, in_b = ca.change_date.notnull().values, cb.change_date.notnull().values
    days = np.abs((cb.change_date.values - ca.change_date.values) / np.timedelta64(1, "D"))
    same = in_a & in_b & (ca.from_class.values == cb.from_class.values) & (ca.to_class.values == cb.to_class.values)
    same &= np.where(in_a & in_b, days, np.inf) <= 30
    np.testing.assert_array_equal(cmp.change_in_b.values, in_b)
    np.testing.assert_array_equal(cmp.change_only_in_b.values, in_b & ~same)
    np.testing.assert_array_equal(cmp.change_only_in_a.values, in_a & ~same)
    assert cmp.attrs["changes_only_in_b"] == int((in_b & ~same).sum()) > 0  # the model's changes are found
    assert main(["compare", str(store), "dynamic-world", "unet", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["label_disagreement"] == cmp.label_disagreement.values.tolist()
    assert out["transitions"] == cmp.transitions.sum("time").values.tolist() and out["classes"] == classes


# -- killed mid-way: a real process ------------------------------------------------------------

#: ``dwcube reprocess`` in a process whose Dask scheduler pauses after each block write (a local
#: scheduler callback), so that the test can kill it between block writes on any machine.
_SLOW_CLI = ("import sys, time\nfrom dask.callbacks import Callback\n"
             "Callback(posttask=lambda key, *a: time.sleep(0.3) if 'write-archive' in str(key) else None).register()\n"
             "from dwcube.cli import main\nsys.exit(main(sys.argv[1:]))")


def _markers(store: Path) -> int:
    root = store / UNET_GROUP / "_progress" / "done" / "c"
    return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0


@pytest.mark.slow
def test_a_killed_reprocess_ends_identical_when_rerun(made: dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "lulc.zarr"
    shutil.copytree(made["dw"], store)
    before = _first_version_files(store)
    args = ["reprocess", str(store), "--model", UNET, "--device", "cpu", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_CLI, *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while _markers(store) < 2 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, proc.communicate()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    done = _markers(store)
    assert 2 <= done < 3 * 16  # 3 dates × 4 × 4 blocks
    versions = archive_versions(store)
    assert versions[1]["key"] == UNET and not versions[1]["complete"] and versions[1]["pending"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert open_archive(store).probability.attrs["model"] == "dynamic-world"  # the default: the newest *complete* one
    assert f"version   {UNET}: 0 date(s), being reprocessed" in format_info(archive_info(store))
    assert _first_version_files(store) == before
    report = reprocess(store, UNET, device="cpu")  # the killed one's lock went with it
    assert report.complete and report.blocks_resumed >= done - 1 and report.blocks + report.blocks_resumed == 48
    assert _first_version_files(store) == before
    _assert_same_version(store, made["ref"], UNET)  # identical to the uninterrupted run
    _assert_same_version(store, made["dw"], "dynamic-world")
    assert check_archive(store).ok and not list(store.rglob("*.partial"))

"""The command line's read options (issue 15, items 2, 4, 5): ``--read-retries``, ``--max-pixels``
and ``--no-scale-check`` reach :func:`dwcube.load`/:func:`dwcube.classify`, and reads that failed
under ``--on-error nan`` are listed on stderr, one line each, with exit status 1.

Real faults, no mocks: COGs truncated after their header, run through ``dwcube.cli.main`` and a
real ``python -m dwcube`` process."""

from __future__ import annotations

import datetime as dt
import inspect
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import dwcube
from dwcube import cli
from dwcube import testing as T
from dwcube.cli import main
from dwcube.demo import write_catalog
from dwcube.inputs import ReflectanceScaleWarning
from dwcube.models import registry
from dwcube.models.registry import register

REPO = Path(__file__).resolve().parent.parent
T0 = dt.datetime(2023, 6, 14, 10, 0, tzinfo=dt.timezone.utc)
TINY_BANDS = ("blue", "green", "red", "nir", "swir16")


@pytest.fixture(scope="module", autouse=True)
def _tiny_registered() -> Iterator[None]:
    """`--model tiny-test` in this process, for this module only (the registry's own example
    lists the registered models)."""
    register(T.TINY_MODEL, replace=True)
    yield
    registry._REGISTRY.pop(T.TINY_MODEL.name, None)


@pytest.fixture
def truncated_catalog(make_s2_tile, tmp_path: Path) -> Path:
    """One 512² L2A date whose red COG lost 2 of its 4 tiles (the header is intact); its own item
    id, since read_failures of a cube without attrs matches earlier failures by item id."""
    item, _ = make_s2_tile("CLI_A", T0, shape=(512, 512), bands=TINY_BANDS)
    assert len(T.truncate_cog(tmp_path / "CLI_A" / "red.tif", keep=0.5)) == 2
    return write_catalog([item], tmp_path / "catalog.json")


def _failure_lines(err: str, command: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(f"dwcube {command}: read failed, NaN: ")]


def test_cli_defaults_are_load_defaults() -> None:
    params = inspect.signature(dwcube.load).parameters
    assert cli.DEFAULT_MAX_PIXELS == params["max_pixels"].default
    assert cli.DEFAULT_READ_RETRIES == params["read_retries"].default


def test_load_lists_failed_reads_and_exits_1(truncated_catalog: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cube.zarr"
    args = ["load", str(truncated_catalog), "--bands", *TINY_BANDS, "--chunks", "256", "--no-progress"]
    with pytest.warns(dwcube.reads.AssetReadWarning):
        status = main([*args, "--out", str(out), "--on-error", "nan", "--read-retries", "0"])
    err = capsys.readouterr().err
    lines = _failure_lines(err, "load")
    assert status == 1, err
    assert len(lines) == 1 and "CLI_A/red: " in lines[0] and "2 block(s) NaN after 1 attempt(s)" in lines[0]
    assert "1 asset read(s) failed" in err and "--on-error nan" in err
    red = xr.open_zarr(out, consolidated=False).red.values[0]
    assert np.isnan(red).mean() == 0.5  # written, with the two lost tiles NaN
    # --read-retries reaches the reader: 3 retries, 4 attempts
    assert main([*args, "--out", str(tmp_path / "again.zarr"), "--on-error", "nan", "--read-retries", "3"]) == 1
    assert "2 block(s) NaN after 4 attempt(s)" in _failure_lines(capsys.readouterr().err, "load")[0]
    # --on-error raise (default): an error naming the file, nothing listed as NaN
    assert main([*args, "--out", str(tmp_path / "raise.zarr"), "--read-retries", "0"]) == 1
    err = capsys.readouterr().err
    assert "dwcube load: error:" in err and "red.tif" in err and not _failure_lines(err, "load")


def test_classify_lists_failed_reads_and_exits_1(truncated_catalog: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "lulc.zarr"
    with pytest.warns(dwcube.reads.AssetReadWarning):
        status = main(["classify", str(truncated_catalog), "--out", str(store), "--model", "tiny-test",
                       "--device", "cpu", "--chunks", "256", "--on-error", "nan", "--read-retries", "0",
                       "--no-progress"])
    captured = capsys.readouterr()
    lines = _failure_lines(captured.err, "classify")
    assert status == 1, captured.err
    assert len(lines) == 1 and "CLI_A/red: " in lines[0]
    assert "wrote 1 date(s)" in captured.out  # the archive is written, the gaps are reported
    prob = dwcube.open_archive(store).probability.isel(time=0)
    assert 0.4 < float(prob.isel({"class": 0}).isnull().mean()) < 0.7  # the lost tiles (and their halo)


def test_a_complete_read_exits_0_and_prints_no_failures(make_s2_tile, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    item, _ = make_s2_tile("CLI_A", T0, shape=(64, 64), bands=TINY_BANDS)
    catalog = write_catalog([item], tmp_path / "catalog.json")
    assert main(["load", str(catalog), "--out", str(tmp_path / "c.zarr"), "--on-error", "nan", "--no-progress"]) == 0
    assert not _failure_lines(capsys.readouterr().err, "load")


def test_max_pixels(make_s2_tile, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    item, _ = make_s2_tile("CLI_A", T0, shape=(64, 64), bands=("red",))
    catalog = write_catalog([item], tmp_path / "catalog.json")
    args = ["load", str(catalog), "--bands", "red", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "small.zarr"), "--max-pixels", "4000"]) == 1
    err = capsys.readouterr().err
    assert "GridTooLargeError" in err and "64 × 64" in err and "--max-pixels 4e+03" in err
    assert "--max-pixels none" in err and "max_pixels=" not in err and not (tmp_path / "small.zarr").exists()
    assert main([*args, "--out", str(tmp_path / "exact.zarr"), "--max-pixels", "4096"]) == 0
    assert main([*args, "--out", str(tmp_path / "none.zarr"), "--max-pixels", "none"]) == 0
    for bad in ("0", "-5", "1.5", "lots"):
        with pytest.raises(SystemExit):
            main([*args, "--out", str(tmp_path / "bad.zarr"), "--max-pixels", bad])
        assert "argument --max-pixels" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*args, "--out", str(tmp_path / "bad.zarr"), "--read-retries", "21"])
    assert "argument --read-retries" in capsys.readouterr().err


def test_no_scale_check(make_s2_tile, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Reflectance 10000 times too small (DN 1001-1002 on baseline 04.00) is warned about, unless
    --no-scale-check; the check never changes the numbers."""
    item, _ = make_s2_tile("CLI_A", T0, shape=(64, 64), bands=TINY_BANDS)
    rng = np.random.default_rng(1)
    for b in TINY_BANDS:  # the same grid, values of 1e-4 or 2e-4 reflectance
        T.write_cog(tmp_path / "CLI_A" / f"{b}.tif", rng.integers(1001, 1003, (64, 64)).astype(np.uint16), epsg=32633,
                    transform=(10, 0, 500000.0, 0, -10, 5000000.0), blocksize=256)
    catalog = write_catalog([item], tmp_path / "catalog.json")
    args = ["classify", str(catalog), "--model", "tiny-test", "--device", "cpu", "--no-progress"]
    with pytest.warns(ReflectanceScaleWarning, match="10000 times too small"):
        assert main([*args, "--out", str(tmp_path / "checked.zarr")]) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReflectanceScaleWarning)
        assert main([*args, "--out", str(tmp_path / "unchecked.zarr"), "--no-scale-check"]) == 0
    checked, unchecked = (dwcube.open_archive(tmp_path / n).probability.values for n in ("checked.zarr", "unchecked.zarr"))
    assert np.isfinite(unchecked).mean() > 0.9 and np.array_equal(checked, unchecked, equal_nan=True)
    capsys.readouterr()


def test_help_and_a_real_process(truncated_catalog: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = [sys.executable, "-m", "dwcube"]
    helps = {c: subprocess.run([*run, c, "--help"], capture_output=True, text=True, env=env, timeout=120).stdout
             for c in ("load", "classify")}
    for command, text in helps.items():
        assert "--read-retries N" in text and "--max-pixels N" in text, command
    assert "--no-scale-check" in helps["classify"]
    done = subprocess.run([*run, "load", str(truncated_catalog), "--out", str(tmp_path / "p.zarr"), "--bands", "red",
                           "--chunks", "256", "--on-error", "nan", "--read-retries", "0", "--no-progress"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 1, done.stderr
    assert len(_failure_lines(done.stderr, "load")) == 1 and "wrote" in done.stdout

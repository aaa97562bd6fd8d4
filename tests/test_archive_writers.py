"""Archives under several writers and killed writers, with real processes.

Two processes appending different dates at the same moment must never blend them; a killed
writer's lock must not block the next write; a resume must be the interrupted job, and it
removes the temporary files the killed write left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from dwcube.archive import (ArchiveBusyError, ArchiveEncoding, ArchiveMismatchError, IncompleteArchiveWarning,
                            archive_info, check_archive, open_archive, write_archive)
from dwcube.inference import classify
from dwcube.testing import TINY_MODEL, synthetic_cube

REPO = Path(__file__).resolve().parent.parent


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _wait_for(predicate, what: str, timeout: float = 180.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# -- two processes appending at the same moment -------------------------------------------------

_APPENDER = textwrap.dedent("""
    import sys, time, pathlib
    import dask
    from dwcube.archive import write_archive
    from dwcube.inference import classify
    from dwcube.testing import TINY_MODEL, synthetic_cube
    work, date, trials = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    cube = synthetic_cube(32, 4, seed=5, chunks=16, nodata_fraction=0.2)
    prob = classify(cube, TINY_MODEL, device="cpu", options={"delay": 0.02})
    with dask.config.set(scheduler="threads", num_workers=1):
        # this date written alone, by this process: the reference for its slot
        write_archive(prob.isel(time=[0, 1, date]), work / f"alone-{date}.zarr")
        (work / f"ready-{date}").touch()
        for k in range(trials):
            while not (work / f"go-{k}").exists():
                time.sleep(0.001)
            try:
                write_archive(prob.isel(time=[date]), work / f"trial-{k}.zarr")
                result = "ok"
            except Exception as exc:  # reported to the test, which says which refusals are clean
                result = f"{type(exc).__name__}: {exc}"
            (work / f"result-{k}-{date}").write_text(result)
""")


def test_concurrent_appends_land_intact_or_are_refused_never_blended(tmp_path: Path) -> None:
    trials = 4
    script = tmp_path / "appender.py"
    script.write_text(_APPENDER)
    prob = classify(synthetic_cube(32, 4, seed=5, chunks=16, nodata_fraction=0.2), TINY_MODEL, device="cpu",
                    options={"delay": 0.02})
    for k in range(trials):
        write_archive(prob.isel(time=[0, 1]), tmp_path / f"trial-{k}.zarr", encoding=ArchiveEncoding(chunk=16))
    procs = [subprocess.Popen([sys.executable, str(script), str(tmp_path), str(d), str(trials)], env=_env())
             for d in (2, 3)]
    try:
        _wait_for(lambda: all((tmp_path / f"ready-{d}").exists() for d in (2, 3)) or
                  any(p.poll() not in (None, 0) for p in procs), "both writers to start")
        assert all(p.poll() is None for p in procs), "a writer died before the trials"
        alone = {d: open_archive(tmp_path / f"alone-{d}.zarr").load().isel(time=2) for d in (2, 3)}
        outcomes = []
        for k in range(trials):
            (tmp_path / f"go-{k}").touch()  # both writers start this trial at once
            _wait_for(lambda: all((tmp_path / f"result-{k}-{d}").exists() for d in (2, 3)) or
                      any(p.poll() is not None for p in procs), f"trial {k}")
            assert all(p.poll() is None for p in procs), f"trial {k}: a writer died"
            results = {d: (tmp_path / f"result-{k}-{d}").read_text() for d in (2, 3)}
            outcomes.append(results)
            store = tmp_path / f"trial-{k}.zarr"
            landed = [d for d in (2, 3) if results[d] == "ok"]
            assert landed, f"trial {k}: both writers were refused: {results}"
            for d in (2, 3):
                if d not in landed:  # refused cleanly, saying why
                    assert results[d].startswith(("ArchiveBusyError: ", "ArchiveError: dates")), results[d]
            ds = open_archive(store).load()
            want_times = np.concatenate([prob.time.values[:2], prob.time.values[landed]])
            np.testing.assert_array_equal(ds.time.values, want_times)
            for i, d in enumerate(landed):
                for name in alone[d].data_vars:  # every layer of the slot is that date's, bit for bit
                    np.testing.assert_array_equal(ds[name].isel(time=2 + i).values, alone[d][name].values,
                                                  err_msg=f"trial {k}: {name} of date {d}")
            assert archive_info(store)["pending"] == [] and check_archive(store).ok
            assert not Path(f"{store}.lock").exists()
        print("outcomes:", [{d: r.split(":")[0] for d, r in o.items()} for o in outcomes])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()


# -- a writer killed mid-write ----------------------------------------------------------------

_WRITER = textwrap.dedent("""
    import sys
    import dask
    from dwcube.archive import ArchiveEncoding, write_archive
    from dwcube.inference import classify
    from dwcube.testing import TINY_MODEL, synthetic_cube
    cube = synthetic_cube(64, 4, seed=7, chunks=16, nodata_fraction=0.2)
    cube = cube.assign_coords(item_id=("time", [f"S2A_{i}" for i in range(4)]))
    prob = classify(cube, TINY_MODEL, device="cpu", options={"delay": float(sys.argv[2])})
    with dask.config.set(scheduler="threads", num_workers=1):
        write_archive(prob, sys.argv[1], encoding=ArchiveEncoding(chunk=16))
""")
_DELAY = 0.05


def _markers(store: Path) -> int:
    root = store / "_progress" / "done" / "c"
    return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def _job(nodata_fraction: float = 0.2, item_prefix: str = "S2A", delay: float = _DELAY, **kw) -> xr.DataArray:
    cube = synthetic_cube(64, 4, seed=7, chunks=16, nodata_fraction=nodata_fraction)
    cube = cube.assign_coords(item_id=("time", [f"{item_prefix}_{i}" for i in range(4)]))
    return classify(cube, TINY_MODEL, device="cpu", options={"delay": delay}, **kw)


@pytest.fixture(scope="module")
def killed_archive(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """An archive whose writer process was SIGKILLed mid-write, and what was seen while it ran."""
    root = tmp_path_factory.mktemp("killed")
    script = root / "writer.py"
    script.write_text(_WRITER)
    store = root / "killed.zarr"
    proc = subprocess.Popen([sys.executable, str(script), str(store), str(_DELAY)], env=_env())
    seen: dict[str, object] = {"store": store}
    try:
        _wait_for(lambda: _markers(store) >= 4 or proc.poll() is not None, "the writer's first blocks")
        assert proc.poll() is None, "the writer finished before it could be disturbed"
        try:  # a second writer while the first one runs
            write_archive(_job(), store)
        except ArchiveBusyError as exc:
            seen["busy"] = str(exc)
        _wait_for(lambda: _markers(store) >= 10 or proc.poll() is not None, "more blocks")
        assert proc.poll() is None, "the writer finished before it could be killed"
        seen["pid"] = proc.pid
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    seen["done"] = _markers(store)
    return seen


def _copy(killed: dict[str, object], tmp_path: Path) -> Path:
    store = tmp_path / "killed.zarr"
    shutil.copytree(killed["store"], store)  # type: ignore[arg-type]
    return store


def test_a_second_writer_is_refused_naming_the_first(killed_archive: dict[str, object]) -> None:
    busy = killed_archive.get("busy")
    assert busy is not None, "a second writer was let in while the first one was writing"
    assert f"being written by process {killed_archive['pid']} on host " in busy and "wait=" in busy


def test_a_killed_writer_is_resumed_to_the_uninterrupted_result(killed_archive: dict[str, object],
                                                                tmp_path: Path) -> None:
    store = _copy(killed_archive, tmp_path)
    done = int(killed_archive["done"])  # type: ignore[arg-type]
    assert 10 <= done < 64
    with pytest.warns(IncompleteArchiveWarning, match="unfinished"):
        assert open_archive(store).sizes["time"] == 0
    assert len(archive_info(store)["pending"]) == 4
    check = check_archive(store)
    assert check.ok and any("unfinished" in n for n in check.notes), check.format()
    # what a write killed inside Zarr's atomic file write leaves: a temporary beside a chunk
    leftover = store / "probability" / "c" / "0" / "0" / "0" / f"1.{uuid.uuid4().hex}.partial"
    leftover.write_bytes(b"\0" * 100)
    assert any(".partial" in n for n in check_archive(store).notes)

    with pytest.raises(Exception, match="unfinished write"):
        write_archive(_job().isel(time=[0, 1]), store)  # a different job cannot pass the pending one
    report = write_archive(_job(), store)  # the killed writer's lock does not block this one
    assert report.blocks_resumed >= done - 1 and report.blocks + report.blocks_resumed == 64
    assert report.partials_removed >= 1 and not list(store.rglob("*.partial"))
    assert not (store / "_progress").exists() and not Path(f"{store}.lock").exists()
    whole = tmp_path / "whole.zarr"
    write_archive(_job(delay=0.0), whole, encoding=ArchiveEncoding(chunk=16))
    with warnings.catch_warnings():
        warnings.simplefilter("error", IncompleteArchiveWarning)
        a, b = open_archive(store).load(), open_archive(whole).load()
    for name in b.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values)
    np.testing.assert_array_equal(a.time.values, b.time.values)
    assert list(a.item_id.values) == [f"S2A_{i}" for i in range(4)]
    assert check_archive(store).ok


def _state(store: Path) -> tuple[object, int]:
    return json.loads((store / "zarr.json").read_text())["attributes"].get("dwcube_pending"), _markers(store)


@pytest.mark.parametrize("other,match", [
    (lambda: _job(nodata_fraction=0.6), r"not the interrupted job's.*no data at \d+ of"),
    (lambda: _job(item_prefix="S2B"), r"not the interrupted job \(item_id on 2023-.*'S2A_0', this job 'S2B_0'"),
    (lambda: _job(fill_value=0.5), r"fill_value: archive 0.0, cube 0.5"),
    (lambda: _job(delay=0.0), r"model option delay: archive 0.05, cube 0.0"),
], ids=["other-cube", "other-items", "other-fill-value", "other-option"])
def test_a_resume_by_another_job_is_refused_and_changes_nothing(killed_archive: dict[str, object], tmp_path: Path,
                                                                other, match: str) -> None:
    store = _copy(killed_archive, tmp_path)
    before = _state(store)
    with pytest.raises(ArchiveMismatchError, match=match):
        write_archive(other(), store)
    assert _state(store) == before


def test_readers_during_an_append_see_the_finished_dates(tmp_path: Path) -> None:
    import threading

    prob = _job()
    store = tmp_path / "a.zarr"
    write_archive(prob.isel(time=[0, 1]), store, encoding=ArchiveEncoding(chunk=16))
    before = xr.open_zarr(store).load()
    errors: list[BaseException] = []

    def append() -> None:
        try:
            write_archive(prob.isel(time=[2, 3]), store)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    writer = threading.Thread(target=append)
    writer.start()
    try:
        _wait_for(lambda: _markers(store) >= 2 or not writer.is_alive(), "the append's first blocks")
        assert writer.is_alive(), "the append finished before it could be watched"
        with pytest.warns(IncompleteArchiveWarning):
            assert open_archive(store).sizes["time"] == 2
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            during = xr.open_zarr(store).load()  # the last finished write's consolidated metadata
        xr.testing.assert_identical(during.drop_attrs(), before.drop_attrs())
    finally:
        writer.join()
    assert not errors, errors
    assert xr.open_zarr(store).sizes["time"] == 4

"""Archives that keep themselves current: ``dwcube update`` against a real STAC API (rustac serve)
and COGs over loopback HTTP, with real processes for concurrent and killed updates, and model
lineage (``reprocess``, ``compare_versions``)."""

from __future__ import annotations

import contextlib
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
import xarray as xr

import dwcube
from dwcube import testing as T
from dwcube.archive import (ArchiveEncoding, IncompleteArchiveWarning, archive_info, archive_versions,
                            check_archive, open_archive, open_products, write_archive)
from dwcube.change import changes
from dwcube.cli import EXIT_BUSY, main
from dwcube.jobs import AlertRule, JobError, compare_versions, date_provenance, recorded_job, reprocess, update_archive
from dwcube.temporal import filter_update

REPO = Path(__file__).resolve().parent.parent
DATES = ["2024-05-01", "2024-05-11", "2024-05-21", "2024-05-31", "2024-06-10", "2024-06-20", "2024-06-30"]
RULE = AlertRule(min_observations=2, min_duration=0.0)
DELAY = 0.4  # seconds per forward pass of the tiny model in jobs that get killed


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


class Catalogue:
    """A real STAC API at one URL whose items grow (rustac's in-memory API takes no new items,
    so it is restarted on the same port with more)."""

    def __init__(self, items: list, workdir: Path) -> None:
        self.items, self.workdir, self.port = items, workdir, T.free_port()

    @contextlib.contextmanager
    def serving(self, n: int) -> Iterator[str]:
        with T.stac_api(self.items[:n], self.workdir, port=self.port) as url:
            yield url


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list]]:
    """Seven dates of a 48 × 48 px Sentinel-2 L2A tile served over HTTP: a clearing from the
    fourth date on, a cloud over part of the fifth."""
    root = tmp_path_factory.mktemp("series")
    with T.serve_directory(root) as (url, _):
        items = T.sentinel2_series_items(root / "cogs", DATES, base_url=url, root=root, change_from=3,
                                         cloudy={4: (slice(0, 20), slice(20, 48))})
        yield root, items


@pytest.fixture(scope="module")
def catalogue(series: tuple[Path, list]) -> Catalogue:
    return Catalogue(series[1], series[0])


@pytest.fixture(scope="module")
def archives(catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Archives the tests copy: ``base3`` (3 dates, its products made), ``whole5`` (5 dates
    written in one run, no update) and ``ref5`` (``base3`` updated once to 5 dates: the
    uninterrupted result)."""
    root = tmp_path_factory.mktemp("archives")
    out = {name: root / f"{name}.zarr" for name in ("base3", "whole5", "ref5")}
    with catalogue.serving(3) as api:
        _create(out["base3"], api)
        update_archive(out["base3"], alert_rule=RULE)  # nothing new: makes the products over 3 dates
    shutil.copytree(out["base3"], out["ref5"])
    with catalogue.serving(5) as api:
        _create(out["whole5"], api)
        update_archive(out["ref5"])
    return out


@pytest.fixture(scope="module")
def slow_archive(catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``base3`` made with a slow model (``DELAY`` s per forward pass), for killing its updates."""
    store = tmp_path_factory.mktemp("slow") / "slow3.zarr"
    with catalogue.serving(3) as api:
        _create(store, api, delay=DELAY)
        update_archive(store, alert_rule=RULE)
    return store


def _copy(archives: dict[str, Path], name: str, tmp_path: Path) -> Path:
    store = tmp_path / "lulc.zarr"
    shutil.copytree(archives[name], store)
    return store


def _create(store: Path, api: str, *, delay: float = 0.0, on_error: str = "raise") -> xr.DataArray:
    """What a user runs once: load, classify with the tiny model, write (16 px archive chunks)."""
    cube = dwcube.load(api, collections=["sentinel-2-l2a"], chunks=32, on_error=on_error)
    prob = dwcube.classify(cube, T.TINY_MODEL, device="cpu", options={"delay": delay})
    write_archive(prob, store, encoding=ArchiveEncoding(chunk=16))
    return prob


def _files(store: Path) -> dict[str, tuple[int, int, bytes]]:
    return {str(p.relative_to(store)): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(store.rglob("*")) if p.is_file()}


def _date_chunks(store: Path, n: int) -> dict[str, tuple[int, bytes]]:
    """The chunk files of the first ``n`` dates of every (time, …) array of the archive's own version."""
    out = {}
    for meta in store.glob("*/zarr.json"):
        info = json.loads(meta.read_text())
        dims = info.get("dimension_names") or []
        if info.get("node_type") == "array" and dims[:1] == ["time"] and len(dims) > 1:
            for t in range(n):
                for p in sorted((meta.parent / "c" / str(t)).rglob("*")):
                    if p.is_file():
                        out[str(p.relative_to(store))] = (p.stat().st_mtime_ns, p.read_bytes())
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


def _assert_same_archive(a: Path, b: Path, model: str | None = "default") -> None:
    """Every layer and per-date coordinate equal (floats to the archive's precision), and the products too."""
    x, y = open_archive(a, model=model).load(), open_archive(b, model=model).load()
    assert x.sizes == y.sizes
    for name in y.variables:
        _assert_equal_to_precision(x[name].values, y[name].values, name)
    version = next(v for v in archive_versions(a) if v["key"] == x.attrs["dwcube_model_version"])
    pa, ma = open_products(a, group=version["group"])
    pb, mb = open_products(b, group=version["group"])
    assert sorted(pa) == sorted(pb) and ma["last_date"] == mb["last_date"]
    for name in pb:
        for var in pb[name].data_vars:
            # derived from the stored probabilities: a step of those moves them by less than 1e-4
            _assert_equal_to_precision(pa[name][var].values, pb[name][var].values, f"{name}/{var}", atol=1e-4)


# -- update: exactly the new items, the history untouched ------------------------------------


def test_update_appends_exactly_the_new_items_and_leaves_the_history_byte_identical(
        catalogue: Catalogue, archives: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    store = _copy(archives, "base3", tmp_path)
    job = recorded_job(store)
    assert job["load"]["catalog"] == f"http://127.0.0.1:{catalogue.port}"
    assert job["load"]["collections"] == ["sentinel-2-l2a"] and job["load"]["chunks"] == 32
    assert job["classify"]["model"] == {"kind": "import", "target": "dwcube.testing:TINY_MODEL"}
    assert job["classify"]["options"] == {"delay": 0.0}
    history = _date_chunks(store, 3)
    assert len(history) == 3 * 9 * 5  # 3 dates × 9 blocks × 5 layers
    with catalogue.serving(5):
        assert main(["update", str(store), "--no-progress"]) == 0
        out = capsys.readouterr().out
        assert "2 new item(s)" in out and "appended 2 date(s)" in out
        before = _files(store)
        assert main(["update", str(store), "--no-progress"]) == 0  # again: nothing new
        assert "nothing new in the catalogue; nothing written" in capsys.readouterr().out
        report = update_archive(store)
        assert report.nothing_new and report.new_items == []
    assert _files(store) == before  # not one byte, not one mtime
    assert _date_chunks(store, 3) == history  # the first three dates: the same files, never rewritten
    x, y = open_archive(store).load(), open_archive(archives["whole5"]).load()
    assert list(x.item_id.values) == [it.id for it in catalogue.items[:5]]
    for name in y.variables:  # the five dates as one run over all of them stores them
        np.testing.assert_array_equal(x[name].values, y[name].values, err_msg=name)
    table = date_provenance(store)
    assert list(table.item_id) == [it.id for it in catalogue.items[:5]]
    assert list(table.processing_baseline) == ["04.00"] * 5 and table.classified.notna().all()
    assert list(table.cloud_cover.round(1)) == [0.0] * 4 + [round(100 * 20 * 28 / 48**2, 1)]  # the fifth is cloudy
    assert table.dwcube_version.tolist() == [dwcube.__version__] * 5
    assert check_archive(store).ok


def test_an_update_extends_the_quicklook_of_an_archive_that_keeps_one(
        catalogue: Catalogue, archives: dict[str, Path], tmp_path: Path) -> None:
    from dwcube.serve.quicklook import open_quicklook, quicklook_rgb, write_quicklook

    store = _copy(archives, "base3", tmp_path)
    plain = _copy(archives, "base3", tmp_path / "plain")
    with catalogue.serving(5) as api:
        cube = dwcube.load(api, collections=["sentinel-2-l2a"], chunks=32)
        write_quicklook(cube.isel(time=[0, 1, 2]), store)
        update_archive(store)
        update_archive(plain)
    ql, arch = open_quicklook(store), open_archive(store)
    assert ql is not None
    np.testing.assert_array_equal(ql["time"].values, arch["time"].values)  # the two new dates too
    np.testing.assert_array_equal(ql.values, quicklook_rgb(cube).values)
    assert open_quicklook(plain) is None  # an archive without one does not get one


def test_an_archive_whose_load_cannot_be_repeated_is_refused_clearly(tmp_path: Path) -> None:
    cube = T.synthetic_cube(32, 2)  # made in memory: no catalogue
    write_archive(dwcube.classify(cube, T.TINY_MODEL, device="cpu"), tmp_path / "a.zarr")
    before = _files(tmp_path / "a.zarr")
    with pytest.raises(JobError, match="does not record how its cube was loaded"):
        update_archive(tmp_path / "a.zarr")
    assert main(["update", str(tmp_path / "a.zarr")]) == 1
    assert _files(tmp_path / "a.zarr") == before


# -- the near-real-time products ---------------------------------------------------------------


@pytest.mark.slow
def test_filter_state_and_alerts_after_two_updates_equal_one_run_over_all_dates(
        catalogue: Catalogue, archives: dict[str, Path], tmp_path: Path) -> None:
    store = _copy(archives, "base3", tmp_path)
    for n in (5, 7):
        with catalogue.serving(n):
            assert update_archive(store).versions[0].nrt_dates == 2
    prob = open_archive(store).probability
    assert prob.sizes["time"] == 7
    filtered, state = filter_update(prob)  # filter_update run once over all dates
    products, meta = open_products(store)
    assert meta["last_date"].startswith("2024-06-30") and meta["alert_rule"] == RULE.kwargs()
    for var in state.data_vars:
        np.testing.assert_array_equal(products["filter_state"][var].values, state[var].values, err_msg=var)
    alerts = changes(filtered, smoothed=True, **RULE.kwargs())  # alerts of one run over all dates
    assert int(alerts.change_date.notnull().sum()) >= 50  # the clearing is found
    for var in alerts.data_vars:
        np.testing.assert_array_equal(products["alerts"][var].values, alerts[var].values, err_msg=var)
    reported = products["alerts"].reported.values
    found = alerts.change_date.notnull().values
    assert set(np.unique(reported[found]).astype("datetime64[D]").astype(str)) <= {"2024-06-10", "2024-06-30"}
    assert np.isnat(reported[~found]).all()
    assert (reported[found] >= alerts.change_date.values[found]).all()  # reported once seen, never before


def test_products_left_behind_by_an_update_catch_up_from_the_archive(
        catalogue: Catalogue, archives: dict[str, Path], tmp_path: Path) -> None:
    """An update that wrote its dates but not its products (killed in between, or --no-nrt) is
    followed by one that feeds the products those dates, reading only them."""
    store = _copy(archives, "base3", tmp_path)
    with catalogue.serving(5):
        behind = update_archive(store, nrt=False)
        assert behind.versions[0].written and not behind.versions[0].nrt_dates
        assert open_products(store)[1]["last_date"].startswith("2024-05-21")
        caught = update_archive(store)
        assert caught.new_items == [] and caught.versions[0].nrt_dates == 2 and not caught.versions[0].written
    _assert_same_archive(store, archives["ref5"])


# -- killed and concurrent updates: real processes ---------------------------------------------


def _markers(store: Path) -> int:
    root = store / "_progress" / "done" / "c"
    return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def _wait_for(predicate, what: str, timeout: float = 180.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.mark.slow
def test_a_killed_update_resumes_to_the_uninterrupted_result(catalogue: Catalogue, archives: dict[str, Path],
                                                             slow_archive: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    store = _copy({"slow3": slow_archive}, "slow3", tmp_path)
    history = _date_chunks(store, 3)
    with catalogue.serving(5):
        proc = subprocess.Popen([sys.executable, "-m", "dwcube", "update", str(store), "--no-progress"], env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            _wait_for(lambda: _markers(store) >= 2 or proc.poll() is not None, "the update's first blocks")
            assert proc.poll() is None, "the update finished before it could be killed"
            assert main(["update", str(store)]) == EXIT_BUSY  # a second update meanwhile: refused, and why
            assert f"being written by process {proc.pid}" in capsys.readouterr().err
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait()
        done = _markers(store)
        assert 2 <= done < 18
        assert len(archive_info(store)["pending"]) == 2
        with pytest.warns(IncompleteArchiveWarning):
            assert open_archive(store).sizes["time"] == 3
        report = update_archive(store)  # the killed one's lock went with it
        assert report.versions[0].blocks_resumed >= done - 1
        assert report.versions[0].written == [f"{d}T10:00:00.000000" for d in DATES[3:5]]
    assert _date_chunks(store, 3) == history
    _assert_same_archive(store, archives["ref5"])  # the model's delay changes no number
    assert check_archive(store).ok and not list(store.rglob("*.partial"))


@pytest.mark.slow
def test_two_updates_started_at_once_end_as_one_update(catalogue: Catalogue, archives: dict[str, Path],
                                                       tmp_path: Path) -> None:
    store = _copy(archives, "base3", tmp_path)
    with catalogue.serving(5):
        cmd = [sys.executable, "-m", "dwcube", "update", str(store), "--wait", "300", "--no-progress"]
        procs = [subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sorted("appended 2 date(s)" in o for o, _ in outs) == [False, True], outs  # one did it, one found it done
    assert any("nothing written" in o for o, _ in outs)
    _assert_same_archive(store, archives["ref5"])
    assert not Path(f"{store}.lock").exists()


@pytest.mark.slow
def test_dates_that_failed_reads_left_incomplete_are_rewritten_once_they_read(tmp_path: Path) -> None:
    root = tmp_path / "served"
    with T.serve_directory(root) as (url, _):
        items = T.sentinel2_series_items(root / "cogs", DATES[:3], base_url=url, root=root)
        broken = root / "cogs" / DATES[1] / "red.tif"
        broken.rename(broken.with_suffix(".away"))  # before anything read it (GDAL caches what it saw)
        with Catalogue(items, tmp_path).serving(3) as api:
            store = tmp_path / "lulc.zarr"
            with pytest.warns(UserWarning, match="cannot be read"):
                _create(store, api, on_error="nan")
            incomplete = json.loads((store / "zarr.json").read_text())["attributes"]["dwcube_incomplete"]
            assert list(incomplete) == [f"{DATES[1]}T10:00:00.000000"] and "red" in incomplete[list(incomplete)[0]][0]
            assert np.isnan(open_archive(store).probability.isel(time=1).values).all()
            assert archive_info(store)["dates"]["count"] == 3
            broken.with_suffix(".away").rename(broken)  # the asset reads again
            run = subprocess.run([sys.executable, "-m", "dwcube", "update", str(store), "--no-progress"], env=_env(),
                                 capture_output=True, text=True, timeout=300)
            assert run.returncode == 0, run.stderr
            assert "rewrote 1 incomplete date(s)" in run.stdout, run.stdout
    assert "dwcube_incomplete" not in json.loads((store / "zarr.json").read_text())["attributes"]
    clean_root = tmp_path / "clean"
    with T.serve_directory(clean_root) as (url, _):  # the same scenes at other URLs: nothing cached
        clean_items = T.sentinel2_series_items(clean_root / "cogs", DATES[:3], base_url=url, root=clean_root)
        with Catalogue(clean_items, tmp_path).serving(3) as api:
            _create(tmp_path / "clean.zarr", api)
    a, b = open_archive(store).load(), open_archive(tmp_path / "clean.zarr").load()
    for name in ("probability", "label", "margin"):  # date 1 was rewritten by another process
        _assert_equal_to_precision(a[name].values, b[name].values, name)
    assert check_archive(store).ok


def test_a_new_model_version_takes_the_archives_layout(tmp_path: Path) -> None:
    cube = T.synthetic_cube(40, 2)
    store = tmp_path / "a.zarr"
    write_archive(dwcube.classify(cube, T.TINY_MODEL, device="cpu"), store,
                  encoding=ArchiveEncoding(chunk=16, precision="uint8", layers=("label",)))
    write_archive(dwcube.classify(cube, T.TINY_MODEL_V2, device="cpu"), store, group="versions/tiny-test==1")
    chunks = [json.loads((store / g / "probability" / "zarr.json").read_text())["chunk_grid"]["configuration"]
              ["chunk_shape"] for g in (".", "versions/tiny-test==1")]
    assert chunks[0] == chunks[1] == [1, 9, 16, 16]
    info = archive_info(store)
    assert [v["key"] for v in info["versions"]] == ["tiny-test==0", "tiny-test==1"]
    new = open_archive(store, model="tiny-test==1")
    assert sorted(new.data_vars) == sorted(open_archive(store, model="default").data_vars) == ["label", "probability"]

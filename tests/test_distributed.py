"""A real two-worker LocalCluster job, one worker killed in the middle of it."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from dwcube.archive import ArchiveEncoding, open_archive, write_archive
from dwcube.inference import classify
from dwcube.testing import TINY_MODEL, synthetic_cube

pytestmark = pytest.mark.slow


def _prob(delay: float = 0.0):
    cube = synthetic_cube(64, 4, seed=11, chunks=16, nodata_fraction=0.1)
    return classify(cube, TINY_MODEL, device="cpu", options={"delay": delay} if delay else None)


def _markers(store: Path) -> int:
    root = store / "_progress" / "done" / "c"
    return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0


def test_job_survives_a_killed_worker(tmp_path: Path) -> None:
    from dask.distributed import Client, LocalCluster

    store = tmp_path / "cluster.zarr"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster, Client(cluster) as client:
        pids = client.run(os.getpid)
        assert len(pids) == 2
        result: dict[str, object] = {}

        def job() -> None:
            try:
                result["report"] = write_archive(_prob(delay=0.1), store, encoding=ArchiveEncoding(chunk=16))
            except BaseException as exc:  # noqa: BLE001 - surfaced below
                result["error"] = exc

        runner = threading.Thread(target=job)
        runner.start()
        deadline = time.time() + 180
        while _markers(store) < 8 and time.time() < deadline and runner.is_alive():
            time.sleep(0.05)
        assert runner.is_alive(), f"the job ended before a worker could be killed: {result}"
        victim_addr, victim = next(iter(pids.items()))
        os.kill(victim, signal.SIGKILL)
        runner.join(300)
        assert not runner.is_alive()
        assert "error" not in result, result.get("error")
        assert victim_addr not in client.run(os.getpid) or client.run(os.getpid)[victim_addr] != victim
        report = result["report"]
        assert len(report.written) == 4 and report.blocks == 4 * 4 * 4  # type: ignore[attr-defined]
        # the model was built on the workers, once per process, not shipped with every task: the worker
        # that survived ran tasks from the start and holds exactly one model (a restarted worker holds
        # one if it ran any task since); "at most one" alone would pass if no worker had built it
        built = client.run(lambda: len(__import__("dwcube.inference", fromlist=["_CACHE"])._CACHE))
        survivor = next(addr for addr in pids if addr != victim_addr)
        assert built.get(survivor) == 1, built
        assert all(v in (0, 1) for v in built.values()), built

    reference = tmp_path / "local.zarr"
    write_archive(_prob(), reference, encoding=ArchiveEncoding(chunk=16))
    a, b = open_archive(store).load(), open_archive(reference).load()
    for name in b.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values)
    assert not (store / "_progress").exists()


def test_tasks_carry_a_small_runner_not_the_network() -> None:
    import pickle

    from dwcube.testing import TinyNet

    prob = _prob()
    tasks = {k: v for k, v in dict(prob.data.__dask_graph__()).items() if "classify" in str(k)}
    assert len(tasks) == 4 * 4 * 4
    weights_alone = len(pickle.dumps(TinyNet(6).state_dict()))  # ~9.7 kB (Dynamic World's: ~1 MB)
    assert max(len(pickle.dumps(t)) for t in tasks.values()) < min(5_000, weights_alone)

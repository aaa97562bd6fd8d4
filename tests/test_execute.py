"""Wave execution: every task once, results right, memory bounded by the wave (not the area)."""

from __future__ import annotations

import threading
import weakref

import dask
import dask.array as da
import numpy as np
import pytest

from dwcube.execute import compute_in_waves, scheduler_threads


class _Live:
    """Counts input chunks alive at once (weakref finalizers) and how often each was made."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.live = 0
        self.peak = 0
        self.calls: dict[tuple[int, ...], int] = {}

    def make(self, block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
        loc = tuple(block_info[None]["chunk-location"])  # type: ignore[index]
        out = np.full(block.shape, float(sum(loc)), dtype=np.float32) + block
        with self.lock:
            self.calls[loc] = self.calls.get(loc, 0) + 1
            self.live += 1
            self.peak = max(self.peak, self.live)
        weakref.finalize(out, self._gone)
        return out

    def _gone(self) -> None:
        with self.lock:
            self.live -= 1


def _job(ny: int, nx: int, live: _Live, sink: dict) -> tuple[list, list, np.ndarray]:
    """An ny×nx grid of 32² chunks, a halo-4 overlap and a block function, written to ``sink``;
    one wave per row of blocks."""
    base = da.zeros((ny * 32, nx * 32), chunks=32, dtype=np.float32)
    loaded = base.map_blocks(live.make, dtype=np.float32)
    extended = da.overlap.overlap(loaded, depth=4, boundary="none")
    summed = extended.map_blocks(lambda b: np.array([[b.sum()]]), chunks=(1, 1), dtype=np.float64)
    blocks = summed.to_delayed()
    tasks, waves = [], []
    for i in range(ny):
        for j in range(nx):
            tasks.append(dask.delayed(sink.__setitem__, pure=False)((i, j), blocks[i, j]))
            waves.append(i)
    expected = da.overlap.overlap(base.map_blocks(_Live().make, dtype=np.float32), depth=4, boundary="none") \
        .map_blocks(lambda b: np.array([[b.sum()]]), chunks=(1, 1), dtype=np.float64).compute()
    return tasks, waves, expected


@pytest.mark.parametrize("scheduler", ["threads", "sync"])
@pytest.mark.parametrize("rows", [4, 16])
def test_waves_compute_each_task_once_and_bound_memory(scheduler: str, rows: int) -> None:
    cols = 4
    live, sink = _Live(), {}
    tasks, waves, expected = _job(rows, cols, live, sink)
    with dask.config.set(scheduler=scheduler, num_workers=2):
        compute_in_waves(tasks, waves)
    got = np.array([[sink[(i, j)].item() for j in range(cols)] for i in range(rows)])
    np.testing.assert_array_equal(got, expected)
    assert len(live.calls) == rows * cols and set(live.calls.values()) == {1}, "a chunk was loaded twice"
    # a wave (one row of blocks) reads three rows of chunks, whatever the number of rows:
    # the peak follows the width, not the area
    assert live.peak <= 3 * cols, live.peak
    assert live.live == 0


def test_waves_run_in_order() -> None:
    seen: list[int] = []
    tasks = [dask.delayed(seen.append, pure=False)(w) for w in (2, 0, 1, 0, 2, 1)]
    compute_in_waves(tasks, [2, 0, 1, 0, 2, 1])
    assert seen == [0, 0, 1, 1, 2, 2]


def test_waves_reject_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="3 tasks but 2 wave numbers"):
        compute_in_waves([dask.delayed(int)(1)] * 3, [0, 1])


def test_waves_raise_task_errors() -> None:
    def boom(x: int) -> None:
        raise RuntimeError(f"block {x} failed")

    with pytest.raises(RuntimeError, match="block 1 failed"):
        compute_in_waves([dask.delayed(boom)(1)], [0])


def test_scheduler_threads_follows_config() -> None:
    with dask.config.set(num_workers=5):
        assert scheduler_threads() == 5

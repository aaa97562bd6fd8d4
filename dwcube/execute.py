"""Running a graph of block tasks in ordered waves, so that memory follows the wave, not the area.

Why this exists
---------------
``dask.order`` ranks the tasks of a whole ``map_overlap`` job so that the input chunks of most
of the area are loaded before the first model block finishes: for the Dynamic World pipeline on
a 2048² × 3-date cube (48 blocks of 512²) the threaded scheduler held 45 of the 48 stacked input
chunks at its peak (measured with ``dask.order.diagnostics``), and peak memory grew with the
area. Neither the threaded scheduler nor a chain of artificial dependencies changed that order.

:func:`compute_in_waves` runs the tasks in consecutive *waves* (for an archive: one date and a
few rows of blocks at a time) while computing every task of the graph **exactly once**: a
task's result that a later wave still needs (the input chunks whose halo the next row of blocks
reads) is kept between waves and handed to the later wave as data, then dropped after the last
wave that needs it. Memory is thus bounded by one wave plus the rows it shares with the next,
not by the area; loads are never repeated. No maintained library does this for the local
schedulers (``distributed`` gets the same effect from submitting the waves in order, at most two
in flight, since its scheduler keeps a key while any submitted task still needs it).

Examples
--------
>>> import dask, dask.array as da
>>> x = da.arange(16, chunks=4)
>>> out = []
>>> tasks = [dask.delayed(out.append)(b) for b in x.to_delayed()]
>>> compute_in_waves(tasks, [0, 0, 1, 1])
>>> sorted(int(b.sum()) for b in out[:2]), sorted(int(b.sum()) for b in out[2:])
([6, 22], [38, 54])
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import dask
from dask.base import collections_to_expr, get_scheduler
from dask.core import get_dependencies

__all__ = ["compute_in_waves", "compute_with_progress", "scheduler_threads"]


def scheduler_threads() -> int:
    """How many tasks the active scheduler runs at once (threads of a ``distributed`` client's
    workers, else the local scheduler's ``num_workers``, else the CPU count).

    Examples
    --------
    >>> with dask.config.set(scheduler="threads", num_workers=3):
    ...     scheduler_threads()
    3
    """
    client = _client()
    if client is not None:
        return max(1, sum(client.nthreads().values()))
    configured = dask.config.get("num_workers", None)
    if configured:
        return int(configured)
    import os

    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def _client() -> Any:
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


class _Progress:
    """A one-line text progress bar on stderr: ``label [####......] 12/48 blocks 0:42``."""

    def __init__(self, total: int, label: str, enabled: bool, unit: str = "blocks") -> None:
        self.total, self.label, self.enabled, self.unit = total, label, enabled, unit
        self.done = 0
        self.start = time.monotonic()
        self.lock = threading.Lock()
        if enabled:
            self._draw()

    def advance(self, n: int = 1) -> None:
        with self.lock:
            self.done += n
            if self.enabled:
                self._draw()

    def _draw(self) -> None:
        width = 30
        filled = int(width * self.done / max(1, self.total))
        elapsed = int(time.monotonic() - self.start)
        sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} {self.unit} "
                         f"{elapsed // 60}:{elapsed % 60:02d}")
        if self.done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def compute_with_progress(*collections: Any, progress: bool = True, label: str = "computing") -> tuple[Any, ...]:
    """``dask.compute(*collections)`` with the one-line progress bar of :func:`compute_in_waves`,
    counting finished tasks (local schedulers; with a ``distributed`` client no bar is drawn).

    Examples
    --------
    >>> import dask.array as da
    >>> compute_with_progress(da.ones(8, chunks=2).sum(), progress=False)
    (np.float64(8.0),)
    """
    from dask.callbacks import Callback

    class _Bar(Callback):  # type: ignore[misc]
        bar: _Progress | None = None

        def _start_state(self, dsk: Any, state: Any) -> None:
            total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))
            self.bar = _Progress(total, label, progress, unit="tasks")

        def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
            if self.bar is not None:
                self.bar.advance()

    with _Bar():
        return tuple(dask.compute(*collections))


def _lifetimes(dsk: dict[Any, Any], outputs: dict[Any, int]) -> tuple[dict[Any, set[Any]], dict[Any, int], dict[Any, int]]:
    """Dependencies, and the first and last wave that needs each key (via any output)."""
    deps = {k: set(get_dependencies(dsk, k)) for k in dsk}
    first: dict[Any, int] = {}
    last: dict[Any, int] = {}
    # Outputs first, then walk dependencies in reverse topological order (Kahn's algorithm on
    # the reversed graph), so that each key is visited after all its dependents.
    dependents_left = {k: 0 for k in dsk}
    for k, ds in deps.items():
        for d in ds:
            dependents_left[d] += 1
    stack = [k for k, n in dependents_left.items() if n == 0]
    while stack:
        k = stack.pop()
        if k in outputs:
            w = outputs[k]
            first[k] = min(first.get(k, w), w)
            last[k] = max(last.get(k, w), w)
        for d in deps[k]:
            if k in first:
                first[d] = min(first.get(d, first[k]), first[k])
                last[d] = max(last.get(d, last[k]), last[k])
            dependents_left[d] -= 1
            if dependents_left[d] == 0:
                stack.append(d)
    return deps, first, last


def compute_in_waves(tasks: Sequence[Any], waves: Sequence[int], *, progress: bool = False,
                     label: str = "computing", in_flight: int = 2) -> None:
    """Compute ``tasks`` (Dask delayed objects, run for their side effects) wave by wave.

    Parameters
    ----------
    tasks
        Delayed objects; their results are discarded (for example archive block writes).
    waves
        One wave number per task; waves run in ascending order. Tasks sharing a wave run
        together, in the scheduler's own order.
    progress
        Show a one-line progress bar on stderr, counting finished tasks.
    label
        The progress bar's label.
    in_flight
        With a ``distributed`` client: how many waves are submitted at once (≥ 1). Two keeps the
        workers busy across a wave boundary.

    Notes
    -----
    With a local scheduler (threads, processes, synchronous), every task of the merged graph
    is computed once: a result needed by a later wave is carried to it as data and dropped
    after the last wave that uses it. With a ``distributed`` client, each wave is submitted as
    its own ``client.compute``; shared keys are computed once as long as the waves that need
    them are in flight together (true for consecutive waves with ``in_flight`` ≥ 2), and worker
    failures are retried by the scheduler as usual.

    Examples
    --------
    >>> import dask
    >>> seen = []
    >>> tasks = [dask.delayed(seen.append)(i) for i in range(4)]
    >>> compute_in_waves(tasks, [1, 0, 1, 0])
    >>> sorted(seen[:2]), sorted(seen[2:])
    ([1, 3], [0, 2])
    """
    if len(tasks) != len(waves):
        raise ValueError(f"{len(tasks)} tasks but {len(waves)} wave numbers")
    if not tasks:
        return
    bar = _Progress(len(tasks), label, progress)
    client = _client()
    if client is not None:
        _distributed_waves(client, tasks, waves, bar, max(1, in_flight))
    else:
        _local_waves(tasks, waves, bar)


def _local_waves(tasks: Sequence[Any], waves: Sequence[int], bar: _Progress) -> None:
    from dask._task_spec import DataNode

    dsk = dict(collections_to_expr(list(tasks), True).__dask_graph__())
    outputs = {t.key: int(w) for t, w in zip(tasks, waves)}
    deps, first, last = _lifetimes(dsk, outputs)
    get = get_scheduler(collections=list(tasks))
    runs: dict[int, list[Any]] = {}  # keys by the wave that computes them (one pass, not one per wave)
    for k, f in first.items():
        runs.setdefault(f, []).append(k)
    wanted_by_wave: dict[int, list[Any]] = {}
    for k, v in outputs.items():
        wanted_by_wave.setdefault(v, []).append(k)
    carried: dict[Any, Any] = {}
    for w in sorted(wanted_by_wave):
        run = runs.get(w, [])
        sub: dict[Any, Any] = {k: dsk[k] for k in run}
        for k in run:
            for d in deps[k]:
                if d not in sub:
                    sub[d] = DataNode(d, carried[d])
        keep = [k for k in run if last[k] > w]
        wanted = wanted_by_wave[w]
        values = get(sub, wanted + keep)
        carried.update(zip(keep, values[len(wanted):]))
        del values
        for k in [k for k in carried if last[k] <= w]:
            del carried[k]
        bar.advance(len(wanted))


def _distributed_waves(client: Any, tasks: Sequence[Any], waves: Sequence[int], bar: _Progress,
                       in_flight: int) -> None:
    pending: list[list[Any]] = []
    for w in sorted(set(int(v) for v in waves)):
        futures = client.compute([t for t, v in zip(tasks, waves) if v == w])
        for f in futures:
            f.add_done_callback(lambda _f: bar.advance())
        pending.append(futures)
        while len(pending) >= in_flight:
            client.gather(pending.pop(0))  # raises the first task error; the rest are released
    for futures in pending:
        client.gather(futures)

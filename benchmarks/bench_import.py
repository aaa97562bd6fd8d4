"""Start-up cost: ``import dwcube`` and ``dwcube --help`` in fresh processes, against ``python -c pass``.

Each case is a fresh interpreter (``sys.executable``) started with ``PYTHONPATH`` at the
checkout being measured, timed from start to exit (wall clock, so it includes the interpreter's
own start-up; ``python -c pass`` measures that alone), and its CPU time (user + system, from
``getrusage`` of the child), which other processes on a shared machine inflate less than the
wall clock.  Cases run interleaved, one of each per round, ``--repeats`` rounds after one
warm-up round (which fills the OS file cache and Numba's on-disk cache); the table gives
medians and, per case, the median of the per-round ratios to ``python -c pass`` and to
``import xarray`` of the same round, so that load from other processes falls on every case alike.

Cases:

* ``python -c pass`` — the interpreter alone (the baseline);
* ``import xarray`` — the floor of ``import dwcube``, which must register ``ds.lulc``;
* ``import dwcube``;
* ``dwcube --help`` (``python -m dwcube --help``);
* ``dwcube archive info`` on a missing store (the parser and the archive module: Zarr, no torch);
* ``dwcube.classify`` first use (``import dwcube; dwcube.classify``): what the lazy import defers.

``--other PATH`` adds the same cases for another checkout (e.g. a ``git worktree`` of the commit
before the change), run in the same rounds.

Run: ``python benchmarks/bench_import.py [--repeats 7] [--other PATH]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _report import machine, print_table

REPO = Path(__file__).resolve().parent.parent


def cases(missing_store: str) -> dict[str, list[str]]:
    """Case name -> interpreter arguments."""
    return {
        "python -c pass": ["-c", "pass"],
        "import xarray": ["-c", "import xarray"],
        "import dwcube": ["-c", "import dwcube"],
        "dwcube --help": ["-m", "dwcube", "--help"],
        "dwcube archive info (missing store)": ["-m", "dwcube", "archive", "info", missing_store],
        "import dwcube; dwcube.classify": ["-c", "import dwcube; dwcube.classify"],
    }


def run_once(args: list[str], tree: Path) -> tuple[float, float]:
    """Wall-clock and CPU seconds of one fresh interpreter, start to exit (output discarded)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, *args], env=env, cwd=tree, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="measured rounds (default 7)")
    parser.add_argument("--other", type=Path, help="another checkout to measure in the same rounds")
    a = parser.parse_args()
    trees = {"this checkout": REPO, **({f"other ({a.other})": a.other.resolve()} if a.other else {})}
    missing = str(Path(tempfile.mkdtemp()) / "none.zarr")
    todo = [(tree_name, tree, name, args) for tree_name, tree in trees.items() for name, args in cases(missing).items()]
    times: dict[tuple[str, str], list[float]] = {(t, n): [] for t, _, n, _ in todo}
    cpu: dict[tuple[str, str], list[float]] = {(t, n): [] for t, _, n, _ in todo}
    for round_ in range(a.repeats + 1):
        for tree_name, tree, name, args in todo:
            wall, used = run_once(args, tree)
            if round_:  # round 0 warms the caches
                times[(tree_name, name)].append(wall)
                cpu[(tree_name, name)].append(used)
    rows = []
    for tree_name, _, name, _ in todo:
        t = times[(tree_name, name)]

        def ratio(base: str, t: list[float] = t, tree_name: str = tree_name) -> float:
            return statistics.median(s / b for s, b in zip(t, times[(tree_name, base)], strict=True))

        rows.append({"checkout": tree_name, "case": name, "median s": statistics.median(t), "min s": min(t),
                     "CPU s": statistics.median(cpu[(tree_name, name)]), "× python -c pass": ratio("python -c pass"),
                     "× import xarray": ratio("import xarray")})
    load = os.getloadavg()
    print_table(f"{machine()}; {a.repeats} rounds; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
                f"({os.cpu_count()} CPUs)", rows, digits=2)


if __name__ == "__main__":
    main()

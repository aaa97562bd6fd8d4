"""Throughput of hidden-Markov smoothing and change dating: the Numba kernel against plain NumPy.

Input: a :func:`dwcube.testing.synthetic_probability_series` cube (Dirichlet noise, ~10 % wrong
argmax, ~30 % cloudy pixel-dates, irregular 2–20 day gaps), made at 128² px and tiled to
``--size``² px × ``--dates`` dates, in memory, as a Dask array in ``--chunk``² px blocks with
time and class whole.  Computed with the threaded scheduler and ``--threads`` threads (2 on
the project's machine), medians of ``--repeats`` runs after one warm-up run each:

* **smooth**: :func:`dwcube.temporal.smooth` (forward–backward);
* **filter**: ``smooth(mode="filter")`` (forward only, the near-real-time update);
* **changes**: :func:`dwcube.change.changes` (smoothing + run analysis, fused per block);

the smoothed cubes are written block by block into a preallocated array (``dask.array.store``,
as a Zarr write would take them; ``.compute()`` would add one concatenation of the whole
cube), the change products are computed.  Each runs with ``engine="numba"`` (the kernel) and
``engine="numpy"`` (the plain NumPy implementation of the same recursion: vectorised over
pixels, a loop over dates, transition matrices by ``matrix_power`` per distinct gap; for
``changes`` only the smoothing differs, the run analysis is the same Numba kernel).  A last
pair of rows times the two smoothing implementations alone on one block, in one thread, with
the peak memory each allocates through NumPy (``tracemalloc``; the kernel's own scratch is a
few MiB on top).  Throughput is in pixel-dates per second
(``size² × dates / s``, valid and cloudy dates alike).  The two engines run alternately, one
run each per repeat, and the ratio is the median of the per-pair ratios numpy time / numba
time, so that load from other processes on a shared machine falls on both alike.

Warm-up is excluded from the medians and reported on its own: the first call of each
function in this process (loading the compiled kernels from Numba's on-disk cache, or compiling
them when the cache is cold), and — unless ``--no-cold`` — a cold compile in a fresh
subprocess with an empty ``NUMBA_CACHE_DIR`` (first ``smooth`` + ``changes`` call on a tiny cube,
minus the same calls once warm).

Run: ``python benchmarks/bench_temporal.py [--quick] [--size 512] [--dates 60] [--chunk 128]
[--repeats 3] [--threads 2]``; ``--quick`` (128 px, 30 dates, 1 repeat, < 1 min) checks that
everything works.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import xarray as xr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _report import machine, print_table  # noqa: E402

from dwcube import temporal as T  # noqa: E402
from dwcube.change import changes  # noqa: E402
from dwcube.testing import synthetic_probability_series  # noqa: E402

_COLD = """
import time, numpy as np
from dwcube.testing import synthetic_probability_series
from dwcube.temporal import smooth
from dwcube.change import changes
p, _ = synthetic_probability_series(8, 12, seed=0)
t0 = time.perf_counter(); smooth(p).values; changes(p).compute(); t1 = time.perf_counter()
smooth(p).values; changes(p).compute(); t2 = time.perf_counter()
print((t1 - t0) - (t2 - t1))
"""


def _cube(size: int, dates: int, chunk: int) -> xr.DataArray:
    base, _ = synthetic_probability_series(128, dates, seed=0)
    reps = -(-size // 128)
    data = np.tile(base.values, (1, 1, reps, reps))[:, :, :size, :size]
    coords = {"time": base.time.values, "class": base["class"].values,
              "y": 5080255.0 - 10.0 * np.arange(size), "x": 465185.0 + 10.0 * np.arange(size)}
    da = xr.DataArray(data, dims=base.dims, coords=coords, name="probability", attrs=base.attrs)
    return da.chunk({"time": -1, "class": -1, "y": chunk, "x": chunk})


def _paired(numba_fn: Callable[[], object], numpy_fn: Callable[[], object], repeats: int,
            ) -> tuple[float, float, float, float]:
    """Warm both up, then time them alternately (so that load from elsewhere hits both alike).

    Returns the medians (s) of numba and numpy, the median of the per-pair ratios numpy/numba,
    and the first (warm-up) numba call (s).
    """
    t0 = time.perf_counter()
    numba_fn()  # warm-up: kernels loaded from the cache or compiled, page faults
    first = time.perf_counter() - t0
    numpy_fn()
    t_nb, t_np = [], []
    for _ in range(repeats):
        for fn, runs in ((numba_fn, t_nb), (numpy_fn, t_np)):
            t0 = time.perf_counter()
            fn()
            runs.append(time.perf_counter() - t0)
    ratio = statistics.median(b / a for a, b in zip(t_nb, t_np, strict=True))
    return statistics.median(t_nb), statistics.median(t_np), ratio, first


def _peak_mib(fn: Callable[[], object]) -> float:
    """Peak of the memory NumPy allocates (tracemalloc) while ``fn`` runs, MiB."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def _cold_compile() -> float:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "PYTHONPATH": str(HERE.parent)}
        out = subprocess.run([sys.executable, "-c", _COLD], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=None, help="square edge in px (default 512; --quick: 128)")
    p.add_argument("--dates", type=int, default=None, help="dates (default 60; --quick: 30)")
    p.add_argument("--chunk", type=int, default=None, help="Dask block edge in px (default 128; --quick: 64)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs per case (default 3; --quick: 1)")
    p.add_argument("--threads", type=int, default=2, help="Dask threads (default 2)")
    p.add_argument("--no-cold", action="store_true", help="skip the cold-compile subprocess")
    p.add_argument("--quick", action="store_true", help="128 px, 30 dates, chunk 64, 1 repeat")
    a = p.parse_args()
    full = {"size": 512, "dates": 60, "chunk": 128, "repeats": 3}
    quick = {"size": 128, "dates": 30, "chunk": 64, "repeats": 1}
    for key, value in (quick if a.quick else full).items():
        if getattr(a, key) is None:
            setattr(a, key, value)

    prob = _cube(a.size, a.dates, a.chunk)
    pixel_dates = a.size * a.size * a.dates
    target = np.empty(prob.shape, np.float32)  # smoothed cubes are stored here, block by block (as to Zarr)
    cases: dict[str, Callable[[str], Callable[[], object]]] = {
        "smooth": lambda eng: lambda: da.store(T.smooth(prob, engine=eng).data, target, lock=False),
        "filter": lambda eng: lambda: da.store(T.smooth(prob, mode="filter", engine=eng).data, target, lock=False),
        "changes": lambda eng: lambda: changes(prob, engine=eng).compute(),
    }
    rows = []
    warm = {}
    with dask.config.set(scheduler="threads", num_workers=a.threads):
        for name, make in cases.items():
            t_nb, t_np, ratio, first_nb = _paired(make("numba"), make("numpy"), a.repeats)
            warm[name] = first_nb - t_nb
            rows.append({
                "case": name, "numba s": t_nb, "numpy s": t_np,
                "numba Mpd/s": pixel_dates / t_nb / 1e6, "numpy Mpd/s": pixel_dates / t_np / 1e6,
                "numpy/numba": ratio, "first numba call s": first_nb,
            })
        # the kernels alone, one thread, one block: the per-pixel cost without Dask
        block = np.ascontiguousarray(prob.isel(y=slice(0, a.chunk), x=slice(0, a.chunk)).values)
        block = block.reshape(a.dates, block.shape[1], -1)  # (time, class, pixel): a block's own layout
        times = prob.time.values
        kw = {"model": T.TransitionModel(), "weight": T.DEFAULT_WEIGHT, "floor": T.DEFAULT_FLOOR, "fill": False}
        for smooth in (True, False):
            def run(eng: str, smooth: bool = smooth) -> Callable[[], object]:
                return lambda: T._posterior_tkn(block, times, None, None, None, smooth=smooth, engine=eng, **kw)

            t_nb, t_np, ratio, _ = _paired(run("numba"), run("numpy"), a.repeats)
            n = block.shape[2] * a.dates
            peak = {eng: _peak_mib(run(eng)) for eng in ("numba", "numpy")}
            rows.append({
                "case": f"{'smooth' if smooth else 'filter'} kernel, 1 thread, 1 block "
                        f"(peak MiB numba {peak['numba']:.0f} / numpy {peak['numpy']:.0f}, block {block.nbytes / 2**20:.0f})",
                "numba s": t_nb, "numpy s": t_np, "numba Mpd/s": n / t_nb / 1e6, "numpy Mpd/s": n / t_np / 1e6,
                "numpy/numba": ratio, "first numba call s": float("nan"),
            })
    cold = float("nan") if a.no_cold else _cold_compile()
    print_table(f"{machine()}, numpy {np.__version__}, dask {dask.__version__}; {a.size}² px × {a.dates} dates "
                f"({pixel_dates / 1e6:.1f} M pixel-dates), chunks {a.chunk}² px, {a.threads} threads, "
                f"medians of {a.repeats} runs", rows, digits=3)
    print()
    print("warm-up (excluded above): first call minus median, this process (kernels from Numba's cache): "
          + ", ".join(f"{k} {v:.2f} s" for k, v in warm.items())
          + (f"; cold compile (empty cache, smooth + changes kernels): {cold:.2f} s" if not a.no_cold else ""))


if __name__ == "__main__":
    main()

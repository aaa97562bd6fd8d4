"""Throughput of the Numba index ufuncs against NumPy and against a plain memory copy.

For each index, on float32 arrays of ``--pixels`` elements (default 4096², 64 MiB per
array), in the same process, single-threaded, medians of ``--repeats`` runs:

* **dwcube**: the ufunc writing into a preallocated output (``out=``);
* **numpy**: the equivalent NumPy expression with the same NaN rule
  (``np.where(den == 0, nan, num / den)``; it makes temporaries);
* **copy**: ``np.copyto`` of each input array into a preallocated twin: the
  same arrays moved once through memory, the floor for any pass over them.

Reported: ``numpy / dwcube`` (target ≥ 3) and ``dwcube / copy`` (target ≤ 1.5),
plus the effective bandwidth of the index pass (inputs read + output written).

Run: ``python benchmarks/bench_indices.py [--pixels N] [--repeats R]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from dwcube import indices as I

from _report import machine, print_table


def _np_nd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    den = a + b
    return np.where(den == 0, np.float32(np.nan), (a - b) / den)


NUMPY: dict[str, Callable[..., np.ndarray]] = {
    "nd": _np_nd,
    "evi": lambda nir, red, blue: (lambda den: np.where(den == 0, np.float32(np.nan), 2.5 * (nir - red) / den))(
        nir + 6 * red - 7.5 * blue + 1),
    "savi": lambda nir, red: (lambda den: np.where(den == 0, np.float32(np.nan), 1.5 * (nir - red) / den))(
        nir + red + 0.5),
    "bsi": lambda s, r, n, b: _np_nd(s + r, n + b),
}


def timed(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (compilation, page faults)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pixels", type=int, default=4096 * 4096)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    n = args.pixels
    pool = [rng.uniform(0.0, 0.6, n).astype(np.float32) for _ in range(4)]
    for a in pool:
        a[::1000] = np.nan
    twins = [np.empty_like(a) for a in pool]
    out = np.empty(n, np.float32)
    rows = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for name, ix in I.INDICES.items():
            k = len(ix.bands)
            ins = pool[:k]
            kernel = I._KERNELS[ix.kernel]
            t_dw = timed(lambda: kernel(*ins, out=out), args.repeats)  # noqa: B023
            t_np = timed(lambda: NUMPY[ix.kernel](*ins), args.repeats)  # noqa: B023
            t_cp = timed(lambda: [np.copyto(t, s) for t, s in zip(twins[:k], ins, strict=True)], args.repeats)  # noqa: B023
            np.testing.assert_allclose(kernel(*ins), NUMPY[ix.kernel](*ins), rtol=1e-5, atol=1e-6)
            gbytes = (k + 1) * n * 4 / 1e9
            rows.append({
                "index": name, "inputs": k, "dwcube ms": 1e3 * t_dw, "numpy ms": 1e3 * t_np,
                "copy ms": 1e3 * t_cp, "numpy/dwcube": t_np / t_dw, "dwcube/copy": t_dw / t_cp,
                "dwcube GB/s": gbytes / t_dw, "copy GB/s": 2 * k * n * 4 / 1e9 / t_cp,
            })
    print_table(f"{machine()}, numpy {np.__version__}; float32, {n} px per array, "
                f"{args.repeats} runs, one thread", rows, digits=2)


if __name__ == "__main__":
    main()

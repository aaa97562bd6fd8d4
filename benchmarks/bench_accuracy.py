"""Drawing a stratified sample from a full Sentinel-2 tile's label map on disk, against a plain read of it.

Input: a uint8 label map of ``--size``² px (10980² by default: one Sentinel-2 tile at 10 m) on a
UTM grid, written once to a Zarr v3 store (Zstandard, ``--chunk``² px chunks) in a temporary
folder.  The map is a mosaic of 366 px patches of the nine Dynamic World classes with uneven
shares (one rare class, ~0.6 % of the patches), 15 % salt-and-pepper class noise and 1 % no
data (so that it compresses like a real label map, not like flat patches), made block by block
so it is never whole in memory.  Opened with :func:`xarray.open_zarr` (lazy, one Dask chunk per Zarr chunk) and computed
with the threaded scheduler and ``--threads`` threads (2 on the project's machine):

* **read**: the plain read: every chunk read, decompressed and reduced (``data.max()``);
* **stratum_table**: :func:`dwcube.accuracy.stratum_table` — the counting pass alone (pixels per
  stratum, per row and column block, and the areas);
* **sample n**: :func:`dwcube.accuracy.stratified_sample` with ``n`` = ``--n`` (1,000) units,
  Olofsson allocation (minimum 50): the counting pass, the seeded draw, and the second pass that
  reads only the blocks holding a drawn pixel.

Medians of ``--repeats`` runs after one warm-up; ratios are the medians of the per-run ratios to
the plain read run just before, so that load from other processes falls on both alike.

Run: ``python benchmarks/bench_accuracy.py [--quick] [--size 10980] [--chunk 2048] [--n 1000]
[--repeats 3] [--threads 2]``; ``--quick`` (2048 px, 512 px chunks, 1 repeat) checks that it works.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import xarray as xr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _report import machine, print_table  # noqa: E402


def _block(block_info: dict | None = None) -> np.ndarray:
    """Patches of 366 px with a class drawn from uneven shares, 15 % noise, 1 % no data; a function of position."""
    (y0, y1), (x0, x1) = block_info[None]["array-location"]
    yy, xx = np.mgrid[y0:y1, x0:x1]
    cell = (yy // 366).astype(np.int64) * 1000 + (xx // 366)
    h = (cell * 2654435761 + 97) % 1000
    cuts = np.array([60, 460, 560, 566, 760, 830, 880, 990])  # water, trees, grass, flooded (rare), crops, …
    lab = np.searchsorted(cuts, h, side="right").astype(np.uint8)
    noise = ((yy.astype(np.int64) * 73856093) ^ (xx.astype(np.int64) * 19349663)) % 1000
    flip = noise < 150  # 15 % salt-and-pepper errors, as a per-pixel classifier leaves them
    lab[flip] = (noise[flip] % 9).astype(np.uint8)
    lab[noise >= 990] = 255
    return lab


def write_map(store: Path, size: int, chunk: int) -> None:
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_coords

    from dwcube.classes import CLASSES

    gbox = GeoBox.from_bbox((300000, 5090220 - 10 * size, 300000 + 10 * size, 5090220), crs="EPSG:32633",
                            resolution=10)
    data = da.map_blocks(_block, dtype=np.uint8, chunks=da.core.normalize_chunks(chunk, (size, size)))
    lab = xr.DataArray(data, dims=("y", "x"), coords=xr_coords(gbox), name="label",
                       attrs={"flag_values": list(range(9)), "flag_meanings": " ".join(CLASSES), "nodata": 255})
    lab.to_dataset().to_zarr(store, mode="w", zarr_format=3, consolidated=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=10980)
    ap.add_argument("--chunk", type=int, default=2048)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.size, args.chunk, args.repeats = 2048, 512, 1

    from dwcube.accuracy import stratified_sample, stratum_table

    dask.config.set(scheduler="threads", num_workers=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "label.zarr"
        t0 = time.perf_counter()
        write_map(store, args.size, args.chunk)
        t_write = time.perf_counter() - t0
        disk = sum(f.stat().st_size for f in store.rglob("*") if f.is_file())

        def lazy() -> xr.DataArray:
            return xr.open_zarr(store, consolidated=False).label

        def read() -> None:
            lazy().data.max().compute()

        def table() -> None:
            stratum_table(lazy())

        last: dict[str, object] = {}

        def sample() -> None:
            last["s"] = stratified_sample(lazy(), args.n, seed=0)

        runs: dict[str, list[float]] = {"read": [], "stratum_table": [], f"sample n={args.n}": []}
        ratios: dict[str, list[float]] = {k: [] for k in runs}
        jobs = {"read": read, "stratum_table": table, f"sample n={args.n}": sample}
        for rep in range(args.repeats + 1):
            base = None
            for name, fn in jobs.items():
                t0 = time.perf_counter()
                fn()
                dt = time.perf_counter() - t0
                if name == "read":
                    base = dt
                if rep:  # the first round warms up
                    runs[name].append(dt)
                    ratios[name].append(dt / base)
        s = last["s"]
        blocks = (-(-args.size // args.chunk)) ** 2
        touched = len({(r // args.chunk, c // args.chunk) for r, c in zip(s.row, s.col, strict=True)})
        mpx = args.size**2 / 1e6
        rows = [{"step": k, "s (median)": statistics.median(v), "Mpx/s": mpx / statistics.median(v),
                 "× plain read": statistics.median(ratios[k])} for k, v in runs.items()]
        print(machine())
        print(f"map: {args.size}² px uint8 ({mpx:.1f} Mpx), Zarr v3 {args.chunk}² px chunks, {blocks} chunks, "
              f"{disk / 2**20:.1f} MiB on disk (written in {t_write:.1f} s); {args.threads} threads; "
              f"sample: {len(s)} units in {s.stratum.nunique()} strata, second pass read {touched} of {blocks} chunks")
        print_table(f"medians of {args.repeats} runs after one warm-up", rows)


if __name__ == "__main__":
    main()

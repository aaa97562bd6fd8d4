"""Load throughput of ``dwcube.load`` against a raw rasterio read of the same windows.

Both read the same COGs from the same loopback HTTP server (:func:`dwcube.testing.serve_directory`,
run in its own process so it does not compete for the GIL), in the same process, with the same
GDAL settings and two threads:

* **dwcube**: ``dwcube.load(...)`` of 4 bands + SCL on the native 60 m grid,
  computed with Dask's threaded scheduler (2 workers): reading, scaling to
  reflectance, masking, all of it.
* **rasterio**: for every asset and every chunk window, open the URL and read the
  window (a 2-thread pool), nothing else: the cost of fetching and decoding alone.

Each run uses URLs with a fresh query string so GDAL's in-process cache never
serves a later run.  Reported: medians of ``--repeats`` runs and the ratio
dwcube / rasterio (1.0 = the loader costs nothing over decoding).

Data: the real T29UNU tile (1830 × 1830 at 60 m) from ``shared/`` when present,
else a synthetic tile of the same size.

Run: ``python benchmarks/bench_load.py [--repeats 5]`` (prints a Markdown table).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dask
import numpy as np
import rasterio
from rasterio.windows import Window

import dwcube
from dwcube import testing as T
from dwcube.load import DEFAULT_GDAL_ENV

from _report import machine, print_table

BANDS = ["blue", "red", "nir08", "swir16"]


def make_items(root: Path, url: str, run: int) -> list:
    shared = T.shared_dir()
    if shared is not None:
        product = shared / "data" / "s2l2a-T29UNU-20221005-60m"
        md = T.read_s2_product_metadata(product / "MTD_MSIL2A.xml", product / "MTD_TL.xml")
        infos = T.t29unu_cogs(product, root / "cogs", BANDS, scl_resolution=60)
        when = md["datetime"]
    else:
        rng = np.random.default_rng(0)
        infos = {}
        for b in [*BANDS, "scl"]:
            arr = (rng.integers(1, 12, (1830, 1830)) if b == "scl" else rng.integers(1000, 6000, (1830, 1830)))
            path = root / "cogs" / f"{b}.tif"
            infos[b] = T.write_cog(path, arr.astype(np.uint8 if b == "scl" else np.uint16), epsg=32629,
                                   transform=(60.0, 0, 499980.0, 0, -60.0, 5900040.0))
        when = dt.datetime(2022, 10, 5, 11, 54, tzinfo=dt.timezone.utc)
    item = T.sentinel2_item("bench", when, infos, base_url=url, root=root)
    for a in item.assets.values():
        a.href += f"?run={run}"  # a new URL each run: no GDAL cache across runs
    return [item]


def run_dwcube(items: list, chunks: int) -> tuple[float, float]:
    """(total seconds, seconds spent in the lazy ``load()`` call itself)."""
    t0 = time.perf_counter()
    ds = dwcube.load(items, bands=BANDS, resolution=60, chunks=chunks)
    t_build = time.perf_counter() - t0
    with dask.config.set(scheduler="threads", num_workers=2):
        ds.compute()
    return time.perf_counter() - t0, t_build


def run_rasterio(items: list, chunks: int) -> float:
    item = items[0]
    hrefs = [a.href for a in item.assets.values()]
    with rasterio.Env(**DEFAULT_GDAL_ENV), rasterio.open(hrefs[0]) as src:
        h, w = src.height, src.width
    windows = [Window(x, y, min(chunks, w - x), min(chunks, h - y)) for y in range(0, h, chunks) for x in range(0, w, chunks)]
    jobs = [(href, win) for href in hrefs for win in windows]

    def read(job: tuple[str, Window]) -> int:
        href, win = job
        with rasterio.Env(**DEFAULT_GDAL_ENV), rasterio.open(href) as src:
            return int(src.read(1, window=win).size)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(read, jobs))
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with T.serve_directory_process(root) as url:
            make_items(root, url, -1)  # write the COGs once
            run = 0
            for chunks in (1830, 915, 512):
                t_dw, t_build, t_rio = [], [], []
                for _ in range(args.repeats + 1):  # the first pair warms up (Numba, imports)
                    run += 1
                    t_rio.append(run_rasterio(make_items(root, url, run), chunks))
                    run += 1
                    total, build = run_dwcube(make_items(root, url, run), chunks)
                    t_dw.append(total)
                    t_build.append(build)
                t_dw, t_build, t_rio = t_dw[1:], t_build[1:], t_rio[1:]
                mpx = 1830 * 1830 * (len(BANDS) + 1) / 1e6
                ratios = [a / b for a, b in zip(t_dw, t_rio, strict=True)]
                rows.append({
                    "chunk": chunks,
                    "dwcube s": statistics.median(t_dw),
                    "of which load() s": statistics.median(t_build),
                    "rasterio s": statistics.median(t_rio),
                    "dwcube Mpx/s": mpx / statistics.median(t_dw),
                    "rasterio Mpx/s": mpx / statistics.median(t_rio),
                    "ratio dwcube/rasterio (median of runs)": statistics.median(ratios),
                })
    src = "T29UNU (real, shared/)" if T.shared_dir() else "synthetic"
    print_table(f"{machine()}, dwcube {dwcube.__version__}, rasterio {rasterio.__version__} "
                f"(GDAL {rasterio.__gdal_version__}); data: {src}, 4 bands + SCL, 1830x1830 px, "
                f"{args.repeats} runs", rows)


if __name__ == "__main__":
    main()

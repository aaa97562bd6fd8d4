"""Dask graph size of ``dwcube.load`` for a year-long stack, against odc-stac alone.

A regional job must not drown the scheduler: this counts the tasks of the
lazy cube (before and after Dask's optimisation) as the number of items and
chunks grows, and compares them with a plain ``odc.stac.load`` of the same
items (no normalisation, its own solar-day grouping) built in the same run.
Nothing is read: the items describe full 10980 × 10980 Sentinel-2 tiles whose
files do not need to exist.

Run: ``python benchmarks/bench_graph.py`` (prints a Markdown table).
"""

from __future__ import annotations

import datetime as dt
import statistics
import time

import dask
import odc.stac
import pystac

import dwcube
from dwcube import testing as T

from _report import machine, print_table

UTC = dt.timezone.utc


def year_of_items(n_dates: int, tiles_per_date: int) -> list[pystac.Item]:
    """Items every 365/n_dates days; ``tiles_per_date`` overlapping tiles of one pass each date."""
    items = []
    start = dt.datetime(2023, 1, 1, 10, 30, tzinfo=UTC)
    for d in range(n_dates):
        when = start + dt.timedelta(days=365 * d / n_dates)
        for t in range(tiles_per_date):
            x0 = 399960.0 + t * 9000.0  # neighbouring tiles overlap like MGRS tiles (9.8 km)
            infos = {
                b: T.RasterInfo(f"/nonexistent/{d}/{t}/{b}.tif", 32633, (res, 0.0, x0, 0.0, -res, 5000040.0),
                                (int(109800 / res), int(109800 / res)), "uint16" if b != "scl" else "uint8", 0)
                for b, res in (("blue", 10.0), ("red", 10.0), ("nir", 10.0), ("swir16", 20.0), ("scl", 20.0))
            }
            items.append(T.sentinel2_item(f"S2A_{d}_{t}", when + dt.timedelta(seconds=5 * t), infos,
                                          base_url="http://127.0.0.1:1", root="/nonexistent"))
    return items


def count(ds) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Unique tasks before and after Dask's optimisation (``len`` of a HighLevelGraph
    counts keys shared between layers more than once, so materialise it)."""
    (opt,) = dask.optimize(ds)
    return len(dict(ds.__dask_graph__())), len(dict(opt.__dask_graph__()))


def main() -> None:
    bands = ["blue", "red", "nir", "swir16"]
    rows = []
    for n_dates, tiles, chunk in [(12, 1, 2048), (73, 1, 2048), (73, 2, 2048), (73, 1, 1024), (146, 1, 2048)]:
        items = year_of_items(n_dates, tiles)
        build = []
        for _ in range(3):
            t0 = time.perf_counter()
            ds = dwcube.load(items, bands=bands, resolution=10, chunks=chunk)
            build.append(time.perf_counter() - t0)
        raw, opt = count(ds)
        ref = odc.stac.load(items, bands=[*bands, "scl"], resolution=10, chunks={"x": chunk, "y": chunk},
                            groupby="solar_day")
        ref_raw, ref_opt = count(ref)
        ny = -(-ds.sizes["y"] // chunk)
        nx = -(-ds.sizes["x"] // chunk)
        rows.append({
            "items": len(items), "dates": ds.sizes["time"], "grid": f"{ds.sizes['y']}x{ds.sizes['x']}",
            "chunks/date/band": ny * nx, "tasks": raw, "tasks (optimised)": opt,
            "per item·chunk·band": opt / (len(items) * ny * nx * len(bands)),
            "odc-stac alone (optimised)": ref_opt, "ratio": opt / ref_opt, "build s": statistics.median(build),
        })
    print_table(f"{machine()}, dwcube {dwcube.__version__}, odc-stac {odc.stac.__version__}, "
                f"dask {dask.__version__}", rows, digits=2)


if __name__ == "__main__":
    main()

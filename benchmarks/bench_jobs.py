"""Archives that keep themselves current: ``update`` overhead and ``reprocess`` throughput.

Data: :func:`dwcube.testing.sentinel2_series_items`, a Sentinel-2 L2A series of ``--size``² px
(10 m) with one date every 5 days, as local COGs (``file://`` hrefs) listed in a catalogue file
(an ItemCollection JSON) that the jobs search again.  Model: the tiny test network of
:mod:`dwcube.testing` (``TINY_MODEL``, and ``TINY_MODEL_V2`` as the "new model"), so that the
network costs little and what is measured is the jobs' own work (a real model makes the ratios
smaller, not larger).  Dask's threaded scheduler, ``--threads`` threads; archives with 128 px
chunks.

**update** (1 new date on an archive of ``--dates`` stored dates, its filter state and alerts
current): ``dwcube.update_archive(store)`` after the catalogue gained one item — search, plan,
load onto the stored grid, classify, append, and feed the filter state and alerts that date.
Against *one date alone*: ``load`` of a catalogue holding only that item, ``classify``,
``write_archive`` to a new store (what classifying the new date costs without an archive).
Also: ``update`` with ``nrt=False`` (no products), ``update`` with nothing new, and how many
files of the stored history the update changed (must be 0) and how many it wrote.

**reprocess** (``--reprocess-dates`` dates): ``dwcube.reprocess(store, TINY_MODEL_V2)`` on the
archive against ``classify(load(catalogue), TINY_MODEL_V2)`` + ``write_archive`` to a new store.

Each timed run works on a fresh copy of the archive (the copy is not timed).  Medians of
``--repeats`` runs after one warm-up; ratios are medians of per-run ratios to the baseline run
just before, so that load from other processes falls on both alike.

Run: ``python benchmarks/bench_jobs.py [--quick] [--dates 100] [--size 256] [--reprocess-dates 20]
[--repeats 3] [--threads 2]``; ``--quick`` (10 dates of 64 px, 1 repeat) checks that it works.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import dask

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _report import machine, print_table  # noqa: E402

CHUNK = 128


def _files(store: Path) -> dict[str, int]:
    return {str(p.relative_to(store)): p.stat().st_mtime_ns for p in store.rglob("*") if p.is_file()}


def _create(catalog: Path, store: Path, model: object, chunk: int) -> None:
    import dwcube
    from dwcube.archive import ArchiveEncoding

    cube = dwcube.load(str(catalog), collections=["sentinel-2-l2a"], chunks=2 * chunk)
    dwcube.write_archive(dwcube.classify(cube, model, device="cpu"), store, encoding=ArchiveEncoding(chunk=chunk))


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dates", type=int, default=100, help="stored dates before the update")
    ap.add_argument("--size", type=int, default=256, help="edge of the tile in pixels")
    ap.add_argument("--reprocess-dates", type=int, default=20, help="dates of the reprocessed archive")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="10 dates of 64 px, 1 repeat")
    args = ap.parse_args()
    if args.quick:
        args.dates, args.size, args.reprocess_dates, args.repeats = 10, 64, 4, 1
    chunk = min(CHUNK, args.size)

    from dwcube.demo import write_catalog
    from dwcube.jobs import reprocess, update_archive
    from dwcube.testing import TINY_MODEL, TINY_MODEL_V2, sentinel2_series_items

    warnings.simplefilter("ignore")
    dask.config.set(scheduler="threads", num_workers=args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = dt.date(2023, 1, 1)
        dates = [(start + dt.timedelta(days=5 * i)).isoformat() for i in range(args.dates + 1)]
        t0 = time.perf_counter()
        items = sentinel2_series_items(root / "cogs", dates, base_url=root.as_uri(), root=root,
                                       shape=(args.size, args.size), change_from=args.dates // 2)
        catalog = root / "items.json"
        write_catalog(items[:-1], catalog)
        base = root / "base.zarr"
        _create(catalog, base, TINY_MODEL, chunk)
        update_archive(base)  # nothing new: makes the filter state and alerts over the stored dates
        write_catalog(items, catalog)  # one new scene
        one = root / "one.json"
        write_catalog(items[-1:], one)
        setup_s = time.perf_counter() - t0

        history = _files(base)
        rows, changed, written = [], set(), set()
        runs: dict[str, list[float]] = {"one date alone": [], "update, 1 new date": [],
                                        "update, 1 new date, nrt=False": [], "update, nothing new": []}
        ratios: dict[str, list[float]] = {k: [] for k in runs}
        for rep in range(args.repeats + 1):
            fresh = root / f"alone{rep}.zarr"
            t_base = _timed(lambda: _create(one, fresh, TINY_MODEL, chunk))
            work = root / f"up{rep}.zarr"
            shutil.copytree(base, work)
            t_up = _timed(lambda: update_archive(work))
            after = _files(work)
            changed |= {k for k, m in history.items() if after.get(k) != m}
            written |= set(after) - set(history)
            t_none = _timed(lambda: update_archive(work))
            work2 = root / f"upn{rep}.zarr"
            shutil.copytree(base, work2)
            t_nonrt = _timed(lambda: update_archive(work2, nrt=False))
            for p in (fresh, work, work2):
                shutil.rmtree(p)
            if rep == 0:
                continue  # warm-up
            for name, t in (("one date alone", t_base), ("update, 1 new date", t_up),
                            ("update, 1 new date, nrt=False", t_nonrt), ("update, nothing new", t_none)):
                runs[name].append(t)
                ratios[name].append(t / t_base)
        for name in runs:
            rows.append({"job": name, "median s": statistics.median(runs[name]),
                         "ratio to one date alone": statistics.median(ratios[name])})
        print(machine())
        print(f"setup {setup_s:.1f} s; {args.dates} stored dates of {args.size}² px, {chunk} px chunks, "
              f"{args.threads} threads, {args.repeats} repeats")
        print_table("update overhead", rows)
        layers = ("probability", "label", "top1_probability", "margin", "entropy")
        chunks = {k for k in changed if k.split("/")[0] in layers and "/c/" in k}
        nrt = {k for k in changed if k.startswith("nrt/")}
        print(f"\nfiles of the stored archive the update changed: {len(chunks)} layer chunk files of stored dates "
              f"(of {sum(1 for k in history if k.split('/')[0] in layers and '/c/' in k)}); "
              f"{len(nrt)} files of the near-real-time products (a new generation, grid-sized, not per date); "
              f"{len(changed - chunks - nrt)} metadata and 1-D per-date coordinate files "
              f"(array shapes, item ids, dates); files added: {len(written)}\n")

        n = args.reprocess_dates
        small_cat = root / "small.json"
        write_catalog(items[:n], small_cat)
        small = root / "small.zarr"
        _create(small_cat, small, TINY_MODEL, chunk)
        px = n * args.size * args.size
        t_scratch, t_rep, rr = [], [], []
        for rep in range(args.repeats + 1):
            scratch = root / f"scratch{rep}.zarr"
            ts = _timed(lambda: _create(small_cat, scratch, TINY_MODEL_V2, chunk))
            work = root / f"rep{rep}.zarr"
            shutil.copytree(small, work)
            tr = _timed(lambda: reprocess(work, TINY_MODEL_V2))
            shutil.rmtree(scratch)
            shutil.rmtree(work)
            if rep:
                t_scratch.append(ts)
                t_rep.append(tr)
                rr.append(tr / ts)
        print_table(f"reprocess throughput ({n} dates of {args.size}² px)", [
            {"job": "classify + write_archive from scratch", "median s": statistics.median(t_scratch),
             "Mpx/s": px / statistics.median(t_scratch) / 1e6, "ratio": 1.0},
            {"job": "reprocess (new version beside the old)", "median s": statistics.median(t_rep),
             "Mpx/s": px / statistics.median(t_rep) / 1e6, "ratio": statistics.median(rr)},
        ])


if __name__ == "__main__":
    main()

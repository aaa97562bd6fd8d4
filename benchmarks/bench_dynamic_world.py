"""Dynamic World inference throughput: the PyTorch port against the original TensorFlow model.

Inputs: the real ``t29unu_crop`` reference DN (256², mirrored to fill each size),
normalised as Dynamic World does.  Each configuration runs in a fresh worker process
(clean peak-memory figures, process-wide settings stay isolated), with ``--threads``
threads; each worker warms up (and compiles) once, then times ``--repeats`` calls and
reports the median.  Within one benchmark run the same inputs also go through the
original SavedModel in a TensorFlow environment (``--tf-python``, a venv with
``tensorflow-cpu``; the project never depends on it), and every PyTorch output is
compared with TensorFlow's (max |Δ logit|, label agreement).

Configurations
--------------
* ``faithful``: :class:`DynamicWorldNet`, eager, NCHW (the layer-for-layer port).
* ``fast``: :class:`DynamicWorldInference` (folded BN, one-exp Mish, half-resolution head), eager.
* ``fast+compile``: the same, channels-last, ``torch.compile`` with freezing.
* ``fast+compile+malloc``: plus :func:`dwcube.models.runtime.keep_freed_memory`.
* ``TensorFlow``: the original SavedModel, default settings (oneDNN on), and at 512² also with
  ``TF_ENABLE_ONEDNN_OPTS=0`` (the setting the reference README's timings correspond to).
* ``tiled-N``: ``fast+compile+malloc`` over even-aligned N² tiles with the registry's
  halo (24 px), all tiles one shape, batch of 1 (the form chunked inference uses).

Memory: peak resident memory of the worker during the timed calls minus its resident
memory before the first call, per megapixel of input.

Run: ``python benchmarks/bench_dynamic_world.py --tf-python /path/to/tfenv/bin/python``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> None:
    try:  # Linux ≥ 4.0: writing 5 resets the peak RSS counter of this process
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return _peak_mb()


# --- workers ------------------------------------------------------------------------------------
def worker_tf(args: argparse.Namespace) -> dict:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    model = tf.saved_model.load(str(Path(args.weights) / "model" / "forward"))
    x = np.load(args.input)  # (H, W, 9) normalised
    t = tf.constant(x[None])
    before = _rss_mb()
    model(t)  # warm-up
    _reset_peak()
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        y = model(t).numpy()
        times.append(time.perf_counter() - t0)
    np.save(args.output, y[0])
    return {"times": times, "mem_mb": _hwm_mb() - before, "version": tf.__version__}


def worker_torch(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO))
    from dwcube.models import runtime
    from dwcube.models.registry import get_entry, load_model
    from dwcube.models.tiling import predict_tiled

    cfg = args.config
    if "malloc" in cfg or cfg.startswith("tiled"):
        runtime.keep_freed_memory()
    fast = cfg != "faithful"
    compiled = "compile" in cfg or cfg.startswith("tiled")
    model = load_model("dynamic-world", weights=args.weights, fast=fast).module
    model = runtime.prepare(model, torch.device("cpu"), channels_last=compiled, compile=compiled)
    x = torch.from_numpy(np.load(args.input)).permute(2, 0, 1)[None]
    if compiled:
        x = x.contiguous(memory_format=torch.channels_last)
    entry = get_entry("dynamic-world")
    if cfg.startswith("tiled"):
        tile = int(cfg.split("-")[1])

        def run(t):
            return predict_tiled(model, t, tile=tile, halo=entry.halo, alignment=entry.alignment, batch_size=1)
    else:
        run = model
    before = _rss_mb()
    with torch.inference_mode():
        t0 = time.perf_counter()
        run(x)  # warm-up (and compilation)
        first = time.perf_counter() - t0
        _reset_peak()
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            y = run(x)
            times.append(time.perf_counter() - t0)
    np.save(args.output, y[0].permute(1, 2, 0).contiguous().numpy())
    return {"times": times, "mem_mb": _hwm_mb() - before, "first_call_s": first, "version": torch.__version__}


# --- driver -------------------------------------------------------------------------------------
def _input(weights: Path, size: int, path: Path) -> None:
    sys.path.insert(0, str(REPO))
    from dwcube.models.dynamic_world import normalize_dn

    dn = np.load(weights / "reference" / "t29unu_crop.npz")["dn"]
    reps = -(-size // dn.shape[0])
    big = np.pad(dn, ((0, (reps - 1) * dn.shape[0]), (0, (reps - 1) * dn.shape[1]), (0, 0)), mode="symmetric")
    np.save(path, normalize_dn(big[:size, :size]))


def _spawn(python: str, kind: str, cfg: str, size: int, inp: Path, out: Path, a: argparse.Namespace) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "--worker", kind, "--config", cfg, "--input", str(inp),
           "--output", str(out), "--weights", str(a.weights), "--repeats", str(a.repeats),
           "--threads", str(a.threads), "--sizes", str(size)]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    if cfg == "tf-no-onednn":
        env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode:
        raise RuntimeError(f"{kind} {cfg} {size}: worker failed\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 2048])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--weights", default=str(REPO.parent / "shared" / "dynamicworld"))
    p.add_argument("--tf-python", default=os.environ.get("DWCUBE_TF_PYTHON"))
    p.add_argument("--configs", nargs="+",
                   default=["faithful", "fast", "fast+compile", "fast+compile+malloc", "tiled-512", "tiled-1024"])
    p.add_argument("--worker", choices=["tf", "torch"])
    p.add_argument("--config", default="")
    p.add_argument("--input")
    p.add_argument("--output")
    a = p.parse_args()
    if a.worker:
        print(json.dumps((worker_tf if a.worker == "tf" else worker_torch)(a)))
        return

    sys.path.insert(0, str(HERE))
    from _report import machine, print_table

    weights = Path(a.weights)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in a.sizes:
            inp = Path(tmp) / f"x{size}.npy"
            _input(weights, size, inp)
            mpx = size * size / 1e6
            ref = None
            tf_med = None
            if a.tf_python:
                r = _spawn(a.tf_python, "tf", "tf", size, inp, Path(tmp) / "tf.npy", a)
                tf_med = statistics.median(r["times"])
                ref = np.load(Path(tmp) / "tf.npy")
                rows.append({"size": f"{size}²", "config": f"TensorFlow {r['version']} (original, default oneDNN)",
                             "median s": tf_med, "Mpx/s": mpx / tf_med, "× TF": 1.0,
                             "MB/Mpx": r["mem_mb"] / mpx, "max|Δlogit| vs TF": "-", "labels = TF": "-",
                             "TF top-2 gap at flips": "-"})
                print(rows[-1], file=sys.stderr, flush=True)
                if size <= 1024:  # the setting the reference README's timings correspond to
                    r = _spawn(a.tf_python, "tf", "tf-no-onednn", size, inp, Path(tmp) / "tf0.npy", a)
                    med = statistics.median(r["times"])
                    y = np.load(Path(tmp) / "tf0.npy")
                    rows.append({"size": f"{size}²", "config": "TensorFlow, TF_ENABLE_ONEDNN_OPTS=0",
                                 "median s": med, "Mpx/s": mpx / med, "× TF": tf_med / med,
                                 "MB/Mpx": r["mem_mb"] / mpx, "max|Δlogit| vs TF": f"{np.abs(y - ref).max():.1e}",
                                 "labels = TF": f"{(y.argmax(-1) == ref.argmax(-1)).mean() * 100:.4f} %",
                                 "TF top-2 gap at flips": "-"})
                    print(rows[-1], file=sys.stderr, flush=True)
            for cfg in a.configs:
                if cfg.startswith("tiled") and int(cfg.split("-")[1]) >= size:
                    continue
                if cfg in ("faithful", "fast") and size > 1024:
                    continue  # eager: a minute per call; the 512² rows show the ratio
                out = Path(tmp) / "pt.npy"
                r = _spawn(sys.executable, "torch", cfg, size, inp, out, a)
                med = statistics.median(r["times"])
                y = np.load(out)
                row = {"size": f"{size}²", "config": cfg, "median s": med, "Mpx/s": mpx / med,
                       "× TF": (tf_med / med) if tf_med else "-", "MB/Mpx": r["mem_mb"] / mpx}
                if ref is not None:
                    row["max|Δlogit| vs TF"] = f"{np.abs(y - ref).max():.1e}"
                    flips = y.argmax(-1) != ref.argmax(-1)
                    row["labels = TF"] = f"{(1 - flips.mean()) * 100:.4f} %"
                    top2 = np.sort(ref[flips], axis=-1)[:, -2:] if flips.any() else np.zeros((0, 2))
                    row["TF top-2 gap at flips"] = f"≤ {np.diff(top2, axis=-1).max():.1e}" if len(top2) else "-"
                else:
                    row["max|Δlogit| vs TF"] = row["labels = TF"] = row["TF top-2 gap at flips"] = "-"
                rows.append(row)
                print(row, f"first call {r['first_call_s']:.1f} s", file=sys.stderr, flush=True)
    print_table(f"Dynamic World forward, {a.threads} threads, median of {a.repeats}; {machine()}", rows)


if __name__ == "__main__":
    main()

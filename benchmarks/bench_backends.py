"""Inference back-ends against the original TensorFlow model, in paired interleaved rounds.

One persistent worker process per back-end (TensorFlow+oneDNN in the venv given by
``--tf-python``; PyTorch compiled; ONNX Runtime) loads its model and warms up (compiles
or exports) once; then, round after round, the driver asks each in turn for one timed
forward pass over the same input, so that the machine's load is shared by every back-end
of a round.  Reported: the median over rounds of the per-round ratio to TensorFlow, Mpx/s,
the sustained GFLOP/s (Dynamic World: 59 kMAC/px = 118 kFLOP/px) as a fraction of the
machine's practical float32 peak (a 2048² SGEMM through PyTorch with the same threads, timed in every round, so under that round's load),
and parity with the original (max |Δ logit|, labels equal).

``--classify N`` also times :func:`dwcube.classify` on one N² chunk against the same
back-end's whole-image call on the same pixels (the chunked-inference overhead, tiles +
halo + batching), in the same interleaved rounds.

Inputs: the real ``t29unu_crop`` reference DN (256², mirrored), normalised as Dynamic World does.

Run: ``nice -n 5 python benchmarks/bench_backends.py --tf-python /tmp/tfenv/bin/python``
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
DW_FLOP_PER_PX = 2 * 59_000


def sgemm_peak_gflops(threads: int, n: int = 4096, repeats: int = 3) -> float:
    """Best GFLOP/s of an ``n × n`` float32 matrix product (PyTorch, ``threads`` threads)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


# --- workers: read a command per line on stdin, answer one JSON line on stdout --------------------
def _serve(run, x: np.ndarray, out_path: str) -> None:
    t0 = time.perf_counter()
    y = run(x)  # warm-up: compilation / export
    print(json.dumps({"ready": time.perf_counter() - t0}), flush=True)
    np.save(out_path, y)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t0 = time.perf_counter()
        run(x)
        print(json.dumps({"s": time.perf_counter() - t0}), flush=True)


def worker(a: argparse.Namespace) -> None:
    x = np.load(a.input)  # (H, W, 9) normalised
    if a.worker == "tf":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(a.threads)
        tf.config.threading.set_inter_op_parallelism_threads(a.threads)
        model = tf.saved_model.load(str(Path(a.weights) / "model" / "forward"))
        _serve(lambda v: model(tf.constant(v[None])).numpy()[0], x, a.output)
        return
    import torch

    torch.set_num_threads(a.threads)
    sys.path.insert(0, str(REPO))
    from dwcube.models import runtime
    from dwcube.models.registry import load_model

    runtime.keep_freed_memory()
    net = load_model("dynamic-world", weights=a.weights, fast=True).module.eval()
    if a.worker == "classify":
        from dwcube.inference import ModelRunner, predict_block
        from dwcube.models.registry import get_entry

        backend = a.config  # what classify's per-chunk task runs: predict_block with the tiling defaults
        runner = ModelRunner(get_entry("dynamic-world"), a.weights, "cpu", (), backend == "torch",
                             a.tile, a.batch, 0.0, backend)

        def run(v):
            p = predict_block(np.ascontiguousarray(v.transpose(2, 0, 1))[None], runner)
            return np.log(p[0].transpose(1, 2, 0))  # log-probabilities: logits up to a constant

        _serve(run, x, a.output)
        return
    if a.worker == "ort":
        from dwcube.models.onnx_backend import OnnxRuntimeModule

        model = OnnxRuntimeModule(net, threads=a.threads)
    else:
        model = runtime.prepare(net, torch.device("cpu"), channels_last=True, compile=True)

    def run_torch(v):
        with torch.inference_mode():
            t = torch.from_numpy(v).permute(2, 0, 1)[None].contiguous(memory_format=torch.channels_last)
            return model(t)[0].permute(1, 2, 0).contiguous().numpy()

    _serve(run_torch, x, a.output)


# --- driver -------------------------------------------------------------------------------------
class _Worker:
    def __init__(self, python: str, kind: str, a: argparse.Namespace, inp: Path, out: Path, config: str = "") -> None:
        cmd = [python, str(Path(__file__).resolve()), "--worker", kind, "--config", config, "--input", str(inp),
               "--output", str(out), "--weights", str(a.weights), "--threads", str(a.threads),
               "--tile", str(a.tile), "--batch", str(a.batch)]
        env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), PYTHONPATH=str(REPO))
        self.out = out
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.ready = self._answer()["ready"]

    def _answer(self) -> dict:
        while True:
            line = self.p.stdout.readline()
            if not line:
                raise RuntimeError(f"worker {self.p.args[3]} died")
            if line.startswith("{"):
                return json.loads(line)

    def time(self) -> float:
        self.p.stdin.write("run\n")
        self.p.stdin.flush()
        return self._answer()["s"]

    def close(self) -> None:
        self.p.stdin.close()
        self.p.wait()


def _input(weights: Path, size: int, path: Path) -> None:
    sys.path.insert(0, str(REPO))
    from dwcube.models.dynamic_world import normalize_dn

    dn = np.load(weights / "reference" / "t29unu_crop.npz")["dn"]
    reps = -(-size // dn.shape[0])
    big = np.pad(dn, ((0, (reps - 1) * dn.shape[0]), (0, (reps - 1) * dn.shape[1]), (0, 0)), mode="symmetric")
    np.save(path, normalize_dn(big[:size, :size]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--backends", nargs="+", default=["tf", "torch", "ort"])
    p.add_argument("--classify", type=int, default=0, help="also time classify's tiling on one N² chunk")
    p.add_argument("--classify-backends", nargs="+", default=["ort"], choices=["ort", "torch"],
                   help="back-ends whose classify tiling is timed (each holds a whole-image worker too)")
    p.add_argument("--tile", type=int, default=512)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--weights", default=str(REPO.parent / "shared" / "dynamicworld"))
    p.add_argument("--tf-python", default=os.environ.get("DWCUBE_TF_PYTHON"))
    p.add_argument("--worker", choices=["tf", "torch", "ort", "classify"])
    p.add_argument("--config", default="")
    p.add_argument("--input")
    p.add_argument("--output")
    a = p.parse_args()
    if a.worker:
        worker(a)
        return
    peak = sgemm_peak_gflops(a.threads)
    print(f"SGEMM 4096², {a.threads} threads: {peak:.0f} GFLOP/s", file=sys.stderr, flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        jobs = []  # (name, size, kind, config)
        for b in a.backends:
            if b == "tf" and not a.tf_python:
                continue
            jobs.append((b, a.size, b, ""))
        if a.classify:
            for b in a.classify_backends:
                if b in a.backends:
                    jobs.append((f"{b} whole {a.classify}²", a.classify, b, ""))
                    jobs.append((f"{b} classify {a.classify}² (tile {a.tile}, batch {a.batch})", a.classify,
                                 "classify", "onnxruntime" if b == "ort" else "torch"))
        inputs = {}
        workers = {}
        for name, size, kind, config in jobs:
            if size not in inputs:
                inputs[size] = t / f"x{size}.npy"
                _input(Path(a.weights), size, inputs[size])
            python = a.tf_python if kind == "tf" else sys.executable
            workers[name] = _Worker(python, kind, a, inputs[size], t / f"{len(workers)}.npy", config)
            print(f"{name}: ready after {workers[name].ready:.1f} s", file=sys.stderr, flush=True)
        times: dict[str, list[float]] = {n: [] for n in workers}
        peaks: list[float] = []  # the SGEMM again in every round: the peak under that round's load
        for r in range(a.rounds):
            peaks.append(sgemm_peak_gflops(a.threads, n=2048, repeats=2))
            for n, w in workers.items():
                times[n].append(w.time())
            print(f"round {r + 1}: " + ", ".join(f"{n} {v[-1]:.2f} s" for n, v in times.items()), file=sys.stderr,
                  flush=True)
        ref = np.load(workers["tf"].out) if "tf" in workers else None
        for name, size, kind, _ in jobs:
            w = workers[name]
            med = statistics.median(times[name])
            mpx = size * size / 1e6
            row = {"config": name, "size": f"{size}²", "median s": med, "Mpx/s": mpx / med,
                   "GFLOP/s": mpx * 1e6 * DW_FLOP_PER_PX / med / 1e9}
            row["% peak (per round)"] = 100 * statistics.median(
                mpx * 1e6 * DW_FLOP_PER_PX / v / 1e9 / pk for v, pk in zip(times[name], peaks, strict=True))
            if "tf" in times and size == a.size:
                row["× TF (median of round ratios)"] = statistics.median(
                    tf / v for tf, v in zip(times["tf"], times[name], strict=True))
            whole = name.replace("classify", "whole").split(" (")[0]
            if kind == "classify" and whole in times:
                row["classify / whole (median of rounds)"] = statistics.median(
                    c / v for c, v in zip(times[name], times[whole], strict=True))
            y = np.load(w.out)
            if ref is not None and size == a.size and kind != "classify":
                row["max|Δlogit| vs TF"] = float(np.abs(y - ref).max())
                row["labels = TF %"] = float((y.argmax(-1) == ref.argmax(-1)).mean() * 100)
            rows.append(row)
            w.close()
    print(json.dumps({"sgemm_gflops_start": peak, "sgemm_gflops_rounds": peaks, "threads": a.threads, "rounds": a.rounds, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

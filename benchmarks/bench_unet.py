"""The shipped U-Net against the Dynamic World port: agreement on held-out real scenes, and speed.

Agreement (Dynamic World's labels are the reference; both models see the same pixels):

* ``eolearn`` — real Sentinel-2 L1C, Slovenia 2015, scenes 2, 3, 4 (clear; never used in
  training) and scene 1 (hazy) separately; with the scene's DEM;
* ``t29unu-test`` — real Sentinel-2A L2A tile T29UNU at 60 m, rows ≥ 1400 (held out of
  training), SCL-clear pixels only; both models run on that crop alone;
* ``bouconne-test`` — real THEIA L3A surface reflectance near Toulouse, rows ≥ 164 (held
  out), all 7 dates;
* each again **Landsat-like**: :func:`dwcube.train.augment.landsat_like` (HLS bandpass
  for Sentinel-2A, 3 × 3 area average = 30 m, bilinear back to the grid, noise σ 0.003)
  applied to the U-Net's input; Dynamic World still sees the original Sentinel-2 scene
  (it cannot run on Landsat).

Reported per scene: overall agreement, agreement per Dynamic World class (the share of
pixels Dynamic World gives that class on which the U-Net agrees; "-" under 100 pixels),
Matthews correlation (multiclass) and mean IoU, and the agreement restricted to the
pixels where Dynamic World itself is confident (top-class probability ≥ 0.5) with their
share: out of its L1C domain Dynamic World's probabilities are flat and its argmax is a
near-tie that a student without red-edge bands cannot reproduce reliably.

Speed: both networks in their inference form (Dynamic World ``DynamicWorldInference``;
the U-Net with batch norms folded), channels-last, medians of ``--repeats`` calls after
a warm-up, the two models' calls interleaved so that load on the machine hits both
alike; eager and ``torch.compile``-d; with 2 threads (the target) and 1 thread.
Dynamic World gets the real ``t29unu_crop`` reference input mirrored to the size; the
U-Net random normal inputs of the same size (the time of these networks does not depend
on the values).  ``classify`` rows time :func:`dwcube.inference.classify` end to end on
a 1024² one-date cube (each model's own halo, 512-px tiles, compiled).

Run: ``python benchmarks/bench_unet.py --json /tmp/bench_unet.json``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from _report import machine, print_table

UNET_BANDS = ("blue", "green", "red", "nir08", "swir16", "swir22")


def _row(name: str, kind: str, cm: np.ndarray, cm_conf: np.ndarray) -> dict:
    from dwcube.classes import CLASSES
    from dwcube.train.metrics import metrics_from_confusion

    m = metrics_from_confusion(cm)
    mc = metrics_from_confusion(cm_conf)
    row = {"scene": name, "input": "Sentinel-2" if kind == "s2" else "Landsat-like", "pixels": int(cm.sum()),
           "agreement %": 100 * m.overall_accuracy, "MCC": m.mcc, "mIoU": m.mean_iou,
           "DW confident px %": 100 * cm_conf.sum() / max(cm.sum(), 1),
           "agreement where DW confident %": 100 * mc.overall_accuracy}
    for i, c in enumerate(CLASSES):
        row[c] = f"{100 * m.recall[i]:.1f}" if m.support[i] >= 100 else "-"
    return row


def _agreement_rows(shared: Path) -> tuple[list[dict], dict]:
    import xarray as xr

    import dwcube
    from dwcube.inference import classify
    from dwcube.inputs import OutOfDomainWarning
    from dwcube.train.augment import landsat_like
    from dwcube.train.metrics import confusion_matrix
    from dwcube.train.shipped import BOUCONNE_TEST_ROW, DW_BANDS, T29UNU_TEST_ROW, bouconne, eolearn, flat_dem, t29unu

    eol = eolearn(shared)
    t29 = t29unu(shared)
    bou = bouconne(shared)
    cases = [
        ("eolearn 2-4 (L1C, clear)", eol.cube.isel(time=[2, 3, 4]), xr.Dataset({"elevation": eol.dem}), True),
        ("eolearn 1 (L1C, hazy)", eol.cube.isel(time=[1]), xr.Dataset({"elevation": eol.dem}), False),
        ("t29unu-test (L2A 60 m)", t29.cube.isel(y=slice(T29UNU_TEST_ROW, None)), None, True),
        ("bouconne-test (L3A, 7 dates)", bou.cube.isel(y=slice(BOUCONNE_TEST_ROW, None)), None, True),
    ]
    rows = []
    total = {"s2": np.zeros((9, 9)), "landsat": np.zeros((9, 9))}
    total_conf = {"s2": np.zeros((9, 9)), "landsat": np.zeros((9, 9))}
    for name, cube, dem, in_total in cases:
        dem = dem if dem is not None else flat_dem(cube, 150.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OutOfDomainWarning)
            dw_prob = classify(cube[list(DW_BANDS)], "dynamic-world", weights=shared / "dynamicworld",
                               device="cpu", compile=False).compute()
            dw = dwcube.label(dw_prob).values
            confident = np.nan_to_num(dw_prob.max("class").values) >= 0.5
            s2 = dwcube.label(classify(cube[list(UNET_BANDS)], "unet", dem=dem, device="cpu",
                                       compile=False)).values
            refl = cube[list(UNET_BANDS)].to_dataarray("band").transpose("time", "band", "y", "x").values
            ls = landsat_like(refl, UNET_BANDS, platform="sentinel-2a", noise=0.003, rng=np.random.default_rng(0))
            lcube = cube[list(UNET_BANDS)].copy()
            for i, b in enumerate(UNET_BANDS):
                lcube[b] = (("time", "y", "x"), ls[:, i])
            lcube.attrs["sensor"] = "landsat-c2-l2-oli"
            lsl = dwcube.label(classify(lcube, "unet", dem=dem, device="cpu", compile=False)).values
        for kind, pred in (("s2", s2), ("landsat", lsl)):
            ok = (dw < 9) & (pred < 9)
            cm = confusion_matrix(dw[ok], pred[ok], 9)
            cm_conf = confusion_matrix(dw[ok & confident], pred[ok & confident], 9)
            if in_total:
                total[kind] += cm
                total_conf[kind] += cm_conf
            rows.append(_row(name, kind, cm, cm_conf))
    for kind in ("s2", "landsat"):
        rows.append(_row("all held-out clear pixels (without hazy eolearn 1)", kind, total[kind], total_conf[kind]))
    return rows, {k: v.tolist() for k, v in total.items()}


def _speed_rows(shared: Path, sizes: list[int], repeats: int, threads: list[int]) -> list[dict]:
    import torch

    from dwcube.models import runtime
    from dwcube.models.registry import get_entry, load_model
    from dwcube.models.unet import load_unet

    ref = np.load(shared / "dynamicworld" / "reference" / "t29unu_crop.npz")
    rows = []
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        for compiled in (False, True):
            dw = load_model("dynamic-world", weights=shared / "dynamicworld").module
            entry = get_entry("unet")
            un = load_unet(entry.weights_file, sha256=entry.weights_file_sha256, fuse=True)
            dev = torch.device("cpu")
            dw = runtime.prepare(dw, dev, compile=compiled)
            un = runtime.prepare(un, dev, compile=compiled)
            for size in sizes:
                reps = -(-size // 256)
                x_dw = np.tile(ref["normalized"], (reps, reps, 1))[:size, :size]
                x_dw = torch.from_numpy(np.ascontiguousarray(x_dw.transpose(2, 0, 1)[None]))
                x_un = torch.randn(1, 9, size, size, generator=torch.Generator().manual_seed(0))
                x_dw = x_dw.contiguous(memory_format=torch.channels_last)
                x_un = x_un.contiguous(memory_format=torch.channels_last)
                t: dict[str, list[float]] = {"dw": [], "unet": []}
                with torch.inference_mode():
                    dw(x_dw), un(x_un)  # warm-up (and compilation)
                    for _ in range(repeats):
                        for key, m, x in (("dw", dw, x_dw), ("unet", un, x_un)):
                            t0 = time.perf_counter()
                            m(x)
                            t[key].append(time.perf_counter() - t0)
                md, mu = statistics.median(t["dw"]), statistics.median(t["unet"])
                ratios = [a / b for a, b in zip(t["dw"], t["unet"], strict=True)]
                rows.append({"size": f"{size}²", "threads": n_threads, "mode": "compiled" if compiled else "eager",
                             "DW s": md, "U-Net s": mu, "DW Mpx/s": size * size / md / 1e6,
                             "U-Net Mpx/s": size * size / mu / 1e6, "speed-up (ratio of medians)": md / mu,
                             "median of per-round ratios": statistics.median(ratios)})
                print(rows[-1], flush=True)
    return rows


def _classify_rows(shared: Path, repeats: int, n_threads: int) -> list[dict]:
    import torch
    import xarray as xr

    from dwcube.inference import classify, clear_model_cache
    from dwcube.inputs import OutOfDomainWarning
    from dwcube.testing import synthetic_cube

    torch.set_num_threads(n_threads)
    bands = ("blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08", "swir16", "swir22")
    cube = synthetic_cube(1024, 1, bands=bands, sensor="sentinel-2-l1c", chunks=1024)
    dem = xr.Dataset({"elevation": xr.full_like(cube.red.isel(time=0, drop=True), 200.0)})
    t: dict[str, list[float]] = {"dw": [], "unet": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDomainWarning)
        jobs = {"dw": lambda: classify(cube, "dynamic-world", weights=shared / "dynamicworld", device="cpu",
                                       compile=True).compute(scheduler="synchronous"),
                "unet": lambda: classify(cube, "unet", dem=dem, device="cpu",
                                         compile=True).compute(scheduler="synchronous")}
        for f in jobs.values():
            f()
        for _ in range(repeats):
            for k, f in jobs.items():
                t0 = time.perf_counter()
                f()
                t[k].append(time.perf_counter() - t0)
    clear_model_cache()
    md, mu = statistics.median(t["dw"]), statistics.median(t["unet"])
    return [{"size": "1024² classify", "threads": n_threads, "mode": "compiled", "DW s": md, "U-Net s": mu,
             "DW Mpx/s": 1024 * 1024 / md / 1e6, "U-Net Mpx/s": 1024 * 1024 / mu / 1e6,
             "speed-up (ratio of medians)": md / mu,
             "median of per-round ratios": statistics.median([a / b for a, b in zip(t["dw"], t["unet"], strict=True)])}]


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    ap.add_argument("--part", choices=["all", "agreement", "speed"], default="all")
    ap.add_argument("--sizes", type=int, nargs="*", default=[512, 1024])
    ap.add_argument("--threads", type=int, nargs="*", default=[2, 1])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import torch

    out: dict = {"machine": machine(), "torch": torch.__version__}
    print(machine())
    if args.part in ("all", "agreement"):
        torch.set_num_threads(1)
        rows, totals = _agreement_rows(args.shared)
        out["agreement"] = rows
        out["agreement_confusion"] = totals
        print_table("Agreement with the Dynamic World port on held-out real scenes (DW labels = reference; "
                    "per-class columns: % of DW's pixels of that class on which the U-Net agrees)", rows)
    if args.part in ("all", "speed"):
        rows = _speed_rows(args.shared, args.sizes, args.repeats, args.threads)
        for n in args.threads:
            rows += _classify_rows(args.shared, max(3, args.repeats // 2), n)
        out["speed"] = rows
        print_table("Inference time, Dynamic World port vs U-Net (medians)", rows)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()

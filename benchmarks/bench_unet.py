"""The shipped U-Net (v2) on every real source's validation side, the Landsat checks, calibration, flicker, speed.

Parts (``--part``):

* ``validation`` — per source of the training corpus (:mod:`dwcube.train.corpus`), on its
  **validation blocks** (10 %, never used in training): agreement with the source's
  teacher (Dynamic World, or Dynamic World on imputed bands where it cannot run), the
  agreement where the teacher's top probability is ≥ 0.5 and that share, per-class
  precision/recall/F1, the recall of every class the teacher gives ≥ 2 % of the side,
  the calibration error; Sentinel-2 sources again with the U-Net's input made
  Landsat-like; Landsat QA scenes against QA_PIXEL water (bit 7) and snow (bit 5) on
  clear pixels; Landsat crops and the desert against the spectral rules of
  :data:`dwcube.train.evaluation.SPECTRAL_RULES`.  Needs the prepared cache of
  ``python -m dwcube.train.shipped prepare`` (``--cache``).
* ``calibration`` — expected calibration error (10 bins) of the U-Net and of Dynamic World
  against independent truth: the eo-learn reference land use (crops, trees, grass,
  shrub, built; clear dates) and the generated layouts of the collage source.
* ``flicker`` — share of label changes between consecutive valid dates
  (:func:`dwcube.flicker`), raw and after :func:`dwcube.smooth`, for both models on the
  real multi-date series: eo-learn (5 dates, clouds masked) and Bouconne (7 dates) on
  their 10 m grids and on a 20 m grid (2 × 2 means), whole scenes and validation blocks.
* ``speed`` — both networks in inference form, and ``classify`` end to end on 1024²
  (each model's own halo, 512-px tiles, compiled), interleaved rounds, medians.

Run: ``python benchmarks/bench_unet.py --json /tmp/bench_unet.json`` (``--part validation`` …).
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


def _validation(shared: Path, cache: Path) -> dict:
    from dwcube.train import shipped as S

    sources, teachers = S.load_prepared(shared, cache)
    out: dict = {}
    for name, src in sources.items():
        prob = S.predict_source("unet", src)
        rec = {"val": S.evaluate_source("unet", src, teachers[name], side="val", prob=prob)}
        if src.product.startswith("s2") and name not in ("synthetic", "collage"):
            rec["val_landsat_like"] = S.evaluate_source("unet", src, teachers[name], side="val", landsat_like=True)
        if src.qa is not None:
            rec["all"] = S.evaluate_source("unet", src, teachers[name], side="all", prob=prob)
        out[name] = rec
        print(name, json.dumps({k: rec["val"][k] for k in ("agreement", "confident_agreement", "rare_class_recall")}),
              flush=True)
    return out


def _validation_rows(res: dict) -> list[dict]:
    rows = []
    for name, rec in res.items():
        for key, label in (("val", "as is"), ("val_landsat_like", "Landsat-like")):
            if key not in rec:
                continue
            v = rec[key]
            row = {"source": name, "product": v["product"], "input": label, "teacher": v["teacher"],
                   "pixels": v["pixels"], "agreement %": 100 * v["agreement"],
                   "teacher p≥0.5 %": 100 * v["confident_share"],
                   "agreement where p≥0.5 %": 100 * v["confident_agreement"] if v["confident_agreement"] is not None
                   else float("nan"),
                   "recall of classes ≥2 % (%)": ", ".join(f"{c} {100 * r:.0f}" for c, r in v["rare_class_recall"].items()),
                   "ECE": v["ece"]}
            if "qa" in v:
                q = rec["all"]["qa"]
                row["QA water/snow recall (val; whole)"] = (
                    f"{_pct(v['qa']['water_recall'])}/{_pct(v['qa']['snow_recall'])}; "
                    f"{_pct(q['water_recall'])}/{_pct(q['snow_recall'])} of {q['water_pixels']:.0f}/{q['snow_pixels']:.0f} px")
            if "rules" in v:
                row["rules"] = "; ".join(f"{r['rule']} {100 * r['share_as_expected']:.0f} % of {r['pixels']}"
                                         for r in v["rules"] if r["pixels"])
            rows.append(row)
    return rows


def _pct(v: float | None) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{100 * v:.0f}"


def _calibration(shared: Path, cache: Path) -> list[dict]:
    from dwcube.train import shipped as S
    from dwcube.train.evaluation import calibration
    from dwcube.train.teacher import dynamic_world_probabilities

    sources, teachers = S.load_prepared(shared, cache)
    rows = []
    for name, clear in (("eolearn", None), ("collage", None)):
        src = sources[name]
        ref = src.reference
        dw = dynamic_world_probabilities(src.cube, shared / "dynamicworld")
        un = S.predict_source("unet", src)
        for model, prob in (("Dynamic World", dw), ("U-Net v2", un)):
            p = np.concatenate(list(prob), 2)
            r = np.tile(ref, (1, len(prob)))
            c = calibration(p, r)
            acc = float((np.nan_to_num(p, nan=-1).argmax(0) == r)[np.isfinite(p).all(0) & (r < 9)].mean())
            rows.append({"truth": "eo-learn reference land use" if name == "eolearn" else "generated collage layouts",
                         "model": model, "pixels": int(sum(c.count)), "accuracy %": 100 * acc, "ECE": c.ece,
                         "reliability (conf→acc)": ", ".join(f"{a:.2f}→{b:.2f}" for a, b, n in
                                                            zip(c.confidence, c.accuracy, c.count, strict=True)
                                                            if n > 0.01 * sum(c.count))})
    return rows


def _flicker(shared: Path) -> list[dict]:
    import xarray as xr

    import dwcube
    from dwcube.train import shipped as S
    from dwcube.train.corpus import bouconne, eolearn
    from dwcube.train.teacher import dynamic_world_probabilities

    rows = []
    for src in (eolearn(shared), bouconne(shared)):
        for grid in (10, 20):
            cube = src.cube if grid == 10 else src.cube.coarsen(y=2, x=2, boundary="trim").mean()
            s2 = type(src)(src.name, cube, src.product, src.platform, src.resolution, src.teacher, src.block)
            split = S.source_split(src)
            if grid == 20:
                split = split[: 2 * (split.shape[0] // 2), : 2 * (split.shape[1] // 2)][::2, ::2]
            probs = {"Dynamic World": dynamic_world_probabilities(cube, shared / "dynamicworld"),
                     "U-Net v2": S.predict_source("unet", s2)}
            for model, p in probs.items():
                da_ = xr.DataArray(p, dims=("time", "class", "y", "x"),
                                   coords={"time": cube.time, "class": list(dwcube.CLASSES), "y": cube.y, "x": cube.x})
                da_ = da_.assign_coords(spatial_ref=cube.spatial_ref) if "spatial_ref" in cube.coords else da_
                smooth = dwcube.smooth(da_).compute()
                for where, mask in (("whole", None), ("validation blocks", split == 1)):
                    w = None if mask is None else xr.DataArray(mask, dims=("y", "x"))
                    rows.append({"series": f"{src.name} ({cube.sizes['time']} dates)", "grid": f"{grid} m",
                                 "pixels": where, "model": model,
                                 "raw flicker": float(dwcube.flicker(da_, where=w).overall),
                                 "smoothed flicker": float(dwcube.flicker(smooth, where=w).overall)})
                    print(rows[-1], flush=True)
    return rows


def _speed(shared: Path, repeats: int, threads: int) -> list[dict]:
    import torch

    from dwcube.inference import classify, clear_model_cache
    from dwcube.inputs import OutOfDomainWarning
    from dwcube.testing import synthetic_cube

    torch.set_num_threads(threads)
    bands = ("blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08", "swir16", "swir22")
    cube = synthetic_cube(1024, 1, bands=bands, sensor="sentinel-2-l1c", chunks=1024)
    t: dict[str, list[float]] = {"dw": [], "unet": []}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDomainWarning)
        jobs = {"dw": lambda: classify(cube, "dynamic-world", weights=shared / "dynamicworld", device="cpu",
                                       compile=True).compute(scheduler="synchronous"),
                "unet": lambda: classify(cube, "unet", device="cpu", compile=True).compute(scheduler="synchronous")}
        for f in jobs.values():
            f()
        for _ in range(repeats):
            for k, f in jobs.items():
                t0 = time.perf_counter()
                f()
                t[k].append(time.perf_counter() - t0)
    clear_model_cache()
    md, mu = statistics.median(t["dw"]), statistics.median(t["unet"])
    return [{"job": "1024² classify, compiled", "threads": threads, "DW s": md, "U-Net s": mu,
             "DW Mpx/s": 1024 * 1024 / md / 1e6, "U-Net Mpx/s": 1024 * 1024 / mu / 1e6,
             "speed-up (ratio of medians)": md / mu,
             "median of per-round ratios": statistics.median([a / b for a, b in zip(t["dw"], t["unet"], strict=True)])}]


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/dwcube-v2"))
    ap.add_argument("--part", choices=["all", "validation", "calibration", "flicker", "speed"], default="all")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="*", default=[2])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import torch

    from dwcube.models.registry import get_entry

    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    entry = get_entry("unet")
    out: dict = {"machine": machine(), "torch": torch.__version__, "model": entry.version,
                 "weights_sha256": entry.weights_file_sha256,
                 "weights_bytes": Path(entry.weights_file).stat().st_size}
    print(machine())
    if args.part in ("all", "validation"):
        out["validation"] = _validation(args.shared, args.cache)
        print_table("U-Net v2 on the validation blocks of every source (reference: the source's teacher)",
                    _validation_rows(out["validation"]))
    if args.part in ("all", "calibration"):
        out["calibration"] = _calibration(args.shared, args.cache)
        print_table("Calibration against independent truth", out["calibration"])
    if args.part in ("all", "flicker"):
        out["flicker"] = _flicker(args.shared)
        print_table("Flicker on real multi-date series", out["flicker"])
    if args.part in ("all", "speed"):
        out["speed"] = [r for n in args.threads for r in _speed(args.shared, args.repeats, n)]
        print_table("Speed through classify (medians of interleaved rounds)", out["speed"])
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()

"""How the shipped U-Net weights (version 2) were made, reproducibly, from every real source in ``../shared``.

Steps (each cached under ``--cache``; rerunning skips what is done)::

    python -m dwcube.train.shipped prepare --shared ../shared --cache /tmp/dwcube-v2   # teachers, synthetic scenes
    python -m dwcube.train.shipped patches --shared ../shared --cache /tmp/dwcube-v2   # patch sets, normalisation
    python -m dwcube.train.shipped train   --cache /tmp/dwcube-v2 --out /tmp/dwcube-v2/run
    python -m dwcube.train.shipped calibrate --shared ../shared --cache /tmp/dwcube-v2 --out /tmp/dwcube-v2/run
    # → run/unet-calibrated.pt, copied to dwcube/models/weights/unet-v2.pt

**Corpus** (:mod:`dwcube.train.corpus`): the five real Sentinel-2 scenes and series with
all bands (eo-learn L1C, T33UUU L1C, T29UNU L2A, the Sahara L2A, Bouconne L3A), the
six-band Patagonian steppe, seven Landsat 8/9 Collection 2 crops (four Level-2 surface
reflectance, three Level-1 top of atmosphere) and three Landsat QA scenes with clear
pixels.  **Every source is split 90:10 by blocks** (:func:`dwcube.train.sampling.split_mask`,
seed 0); nothing of a validation block is used in training — not as label, not as input
context, not in the imputer's fit, not as collage texture.

**Teachers** (:mod:`dwcube.train.teacher`): the Dynamic World port where its nine bands
exist (L1C in domain; on L2A/L3A out of domain, but that is the function users compare
with on such data); Dynamic World on imputed red-edge/NIR bands elsewhere (Landsat after
the inverse HLS bandpass adjustment); on the QA scenes QA_PIXEL's own water and snow
bits override the teacher on clear pixels.  Multi-date sources get one temporal
consensus target per pixel (:func:`dwcube.train.labels.temporal_consensus`).

**Synthetic scenes** (:mod:`dwcube.train.layouts`): generated layouts with every class
in realistic extents and neighbours, rendered (a) by Dynamic World's backward network
and (b) as collages of real textures (training-side windows of the real scenes); the
teacher is Dynamic World on each rendered scene.

Hand-written: the particular files, their splits and the counts are specific to this corpus.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..classes import CLASSES
from . import corpus as C
from .sampling import PatchSet, SamplingParams, SplitParams, sample_patches, split_mask

__all__ = [
    "worldcover_scenes",
    "worldcover_windows",
    "COUNTS",
    "FEATURES",
    "SOURCES",
    "labels_of",
    "patch_sets",
    "prepare",
    "shipped_config",
    "source_split",
    "train_shipped",
]

K = len(CLASSES)
#: The U-Net v2 inputs: six shared bands (log-scaled), NDVI, NDMI, MNDWI; no elevation.
FEATURES: tuple[str, ...] = ("blue", "green", "red", "nir08", "swir16", "swir22", "ndvi", "ndmi", "mndwi")
#: Gain of the bands' ``ln(1 + g·x)``: spreads reflectance from dark water (0.01) to snow (1.2) over ~3.2
#: units, so very bright surfaces stay inside the range the network has seen.
BAND_LOG_GAIN = 20.0
#: Surface reflectance below this is raised to it before the logarithm: Landsat's SR goes down to
#: −0.2 (LaSRC over-correction; 10 % of the clear pixels of the Bolivian QA scene have blue < −0.05).
BAND_FLOOR = -0.02
#: Real sources of the corpus (the two QA scenes without a clear pixel are left out).
SOURCES: tuple[str, ...] = ("eolearn", "t33uuu", "t29unu", "sahara", "bouconne", "patagonia", "manaus",
                            "momotombo", "momotombo-l1", "brumadinho-a", "brumadinho-b", "matogrosso-l1a",
                            "matogrosso-l1b", "qa-greenland", "qa-colombia", "qa-bolivia")
#: Sources the band imputer is fitted on (all nine Dynamic World bands and B8A real).
IMPUTER_SOURCES = ("eolearn", "t33uuu", "sahara", "bouconne")
#: Sources whose training-side windows paint the collages.
TEXTURE_SOURCES = ("t33uuu", "eolearn", "bouconne", "t29unu", "sahara")
SPLIT_SEED = 0
#: The band imputer the shipped weights' imputed teachers were computed with (``prepare`` uses
#: it unless the cache holds another), so that the teachers and the model card's figures
#: can be recomputed: its fit is not bit-reproducible across thread counts.
SHIPPED_IMPUTER = Path(__file__).resolve().parent.parent / "models" / "weights" / "band-imputer.pt"
#: Training / validation patches per source (96² px, class-balanced anchors on the training side).
COUNTS: dict[str, tuple[int, int]] = {
    "t33uuu": (1800, 200), "t29unu": (1200, 150), "sahara": (300, 40), "bouconne": (500, 60), "eolearn": (150, 30),
    "patagonia": (150, 20), "manaus": (500, 60), "momotombo": (220, 30), "momotombo-l1": (180, 30),
    "brumadinho-a": (220, 30), "brumadinho-b": (220, 30), "matogrosso-l1a": (300, 40), "matogrosso-l1b": (300, 40),
    "qa-greenland": (220, 40), "qa-colombia": (110, 20), "qa-bolivia": (110, 20),
    "synthetic": (900, 100), "collage": (1800, 200),
}
PATCH = 96
N_SYNTHETIC = 40
N_COLLAGE = 60
LAYOUT_SIZE = 256


def source_split(src: C.Source) -> np.ndarray:
    """``(H, W)`` int8 side of every pixel of a source (0 train, 1 validation), 90:10 by blocks."""
    return split_mask(src.shape, SplitParams(block=src.block, val_fraction=0.1, seed=SPLIT_SEED))


def _teacher(src: C.Source, imputer: Any, weights: Path) -> np.ndarray:
    from .teacher import dynamic_world_probabilities, imputed_teacher

    big = src.shape[0] * src.shape[1] * src.cube.sizes["time"] > 2_000_000
    if src.has_dw_bands and src.teacher == "dynamic-world":
        return dynamic_world_probabilities(src.cube, weights, compile=big)
    return imputed_teacher(src.cube, imputer, weights, landsat=src.product.startswith("landsat"), compile=big)


def _fit_imputer(sources: dict[str, C.Source]) -> Any:
    from .teacher import fit_imputer, imputer_training_pixels

    names = [n for n in IMPUTER_SOURCES if n in sources]
    x, y = imputer_training_pixels([sources[n].cube for n in names], [source_split(sources[n]) == 0 for n in names],
                                   n_per_cube=150_000, seed=0)
    return fit_imputer(x, y, steps=3000, seed=0)


def _synthetic_layouts(n: int, seed: int) -> list[np.ndarray]:
    from .layouts import generate_layout

    return [generate_layout(LAYOUT_SIZE, np.random.default_rng([seed, i])) for i in range(n)]


def _mosaic_cube(refl: np.ndarray, bands: Sequence[str], name: str) -> xr.Dataset:
    """Tiles ``(N, 1, B, S, S)`` side by side as one cube ``(1, y, x)`` on a made-up UTM grid."""
    n, t, _, s, _ = refl.shape
    cols = int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    out = {b: np.full((t, rows * s, cols * s), np.nan, np.float32) for b in bands}
    for i in range(n):
        r, c = divmod(i, cols)
        for j, b in enumerate(bands):
            out[b][:, r * s:(r + 1) * s, c * s:(c + 1) * s] = refl[i, :, j]
    return C._grid_cube(out, [f"2021-0{d + 1}-01" for d in range(t)], crs="EPSG:32632", x0=500000.0, y0=100000.0,
                        res=10.0, sensor="sentinel-2-l1c", platform="sentinel-2a")


def _mosaic_layout(layouts: Sequence[np.ndarray]) -> np.ndarray:
    s = layouts[0].shape[0]
    cols = int(np.ceil(np.sqrt(len(layouts))))
    rows = int(np.ceil(len(layouts) / cols))
    out = np.full((rows * s, cols * s), 255, np.uint8)
    for i, lab in enumerate(layouts):
        r, c = divmod(i, cols)
        out[r * s:(r + 1) * s, c * s:(c + 1) * s] = lab
    return out


def _synthetic_source(kind: str, refl: np.ndarray, layouts: Sequence[np.ndarray]) -> C.Source:
    bands = (*C.DW_BANDS, "nir08")
    cube = _mosaic_cube(refl, bands, kind)
    src = C.Source(kind, cube, "s2-l1c", "sentinel-2a", 10.0, "dynamic-world", block=LAYOUT_SIZE,
                   licence="generated layouts; spectra from Dynamic World's backward network" if kind == "synthetic"
                   else "generated layouts painted with training-side textures of the real Sentinel-2 sources")
    src.reference = _mosaic_layout(layouts)
    return src


def worldcover_windows(shared: Path, *, n: int, size: int, seed: int) -> list[np.ndarray]:
    """``n`` windows ``(size, size)`` of real ESA WorldCover codes (2020 and 2021, São Tomé and Príncipe).

    Windows hold no no-data, ≥ 15 % land and ≥ 2 classes over 2 % each.  Used by the
    training tutorial (real labels without matching imagery); the shipped weights train on
    generated layouts (:mod:`dwcube.train.layouts`) instead.

    Examples
    --------
    >>> from dwcube.testing import require_shared
    >>> wins = worldcover_windows(require_shared("data", "worldcover-N00E006"), n=2, size=32, seed=0)
    >>> len(wins), wins[0].shape, bool(np.isin(wins[0], [10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 100]).all())
    (2, (32, 32), True)
    """
    import rasterio

    rng = np.random.default_rng(seed)
    d = shared / "data" / "worldcover-N00E006"
    regions = ((30000, 36000, 5000, 9600), (15400, 18400, 7500, 8800))  # São Tomé, Príncipe (rows, cols)
    out: list[np.ndarray] = []
    for year in ("2020_v100", "2021_v200"):
        with rasterio.open(d / f"ESA_WorldCover_10m_{year}_N00E006_Map.tif") as src:
            areas = [src.read(1, window=rasterio.windows.Window(c0, r0, c1 - c0, r1 - r0)) for r0, r1, c0, c1 in regions]
        tries = 0
        while len(out) < (n // 2 if year.startswith("2020") else n) and tries < 20000:
            tries += 1
            a = areas[int(rng.random() < 0.25)]
            r, c = rng.integers(0, a.shape[0] - size), rng.integers(0, a.shape[1] - size)
            win = a[r:r + size, c:c + size]
            if (win == 0).any():
                continue
            codes, counts = np.unique(win, return_counts=True)
            if counts[codes != 80].sum() / win.size < 0.15 or (counts / win.size > 0.02).sum() < 2:
                continue
            out.append(win.copy())
    return out


def worldcover_scenes(shared: Path, weights: Path, *, n_layouts: int = 4, size: int = 128, dates: int = 2,
                      seed: int = 0) -> tuple[C.Source, np.ndarray]:
    """L1C-like scenes of real WorldCover layouts, rendered by Dynamic World's backward network.

    Returns a mosaic source (layouts side by side, ``dates`` renderings of each, on a made-up
    UTM grid at 10 m; ``nir08`` := B08, which the backward network has instead of B8A) and its
    labels ``(y, x)`` uint8 in Dynamic World classes.

    Examples
    --------
    >>> from dwcube.testing import require_shared
    >>> shared = require_shared("dynamicworld")
    >>> src, lab = worldcover_scenes(shared, shared / "dynamicworld", n_layouts=1, size=32, dates=1)
    >>> dict(src.cube.sizes), lab.shape, "nir08" in src.cube
    ({'time': 1, 'y': 32, 'x': 32}, (32, 32), True)
    """
    from ..classes import remap_worldcover
    from .layouts import layout_probabilities, synthesize

    rng = np.random.default_rng(seed)
    layouts = [np.asarray(remap_worldcover(w), np.uint8)
               for w in worldcover_windows(shared, n=n_layouts, size=size, seed=seed)]
    renders = [synthesize(np.stack([layout_probabilities(lab, rng) for lab in layouts]), weights) for _ in range(dates)]
    refl = np.stack(renders, 1)                                   # (N, dates, 9, S, S)
    refl = np.concatenate([refl, refl[:, :, 6:7]], 2)             # nir08 := B08
    cube = _mosaic_cube(refl, (*C.DW_BANDS, "nir08"), "worldcover")
    src = C.Source("worldcover-synthetic", cube, "s2-l1c", "sentinel-2a", 10.0, "dynamic-world", block=size,
                   licence="ESA WorldCover 2020/2021 (CC-BY-4.0) layouts; spectra from Dynamic World's backward network")
    src.reference = _mosaic_layout(layouts)
    return src, src.reference


def synthetic_sources(cache: Path, weights: Path, sources: dict[str, C.Source], teachers: dict[str, np.ndarray],
                      log: Any = print) -> dict[str, C.Source]:
    """The two generated sources, rendered once and cached: backward-network scenes and real-texture collages."""
    from .layouts import collage, layout_probabilities, synthesize, texture_bank

    out = {}
    path = cache / "synthetic.npz"
    if not path.is_file():
        layouts = _synthetic_layouts(N_SYNTHETIC, seed=1)
        rng = np.random.default_rng(11)
        dates = []
        for _ in range(2):  # two renderings ("dates") of each layout
            prob = np.stack([layout_probabilities(lab, rng) for lab in layouts])
            dates.append(synthesize(prob, weights))
        refl = np.stack(dates, 1)  # (N, 2, 9, S, S)
        refl = np.concatenate([refl, refl[:, :, 6:7]], 2)  # nir08 := B08 (the backward network has no B8A)
        np.savez(path, refl=refl.astype(np.float32), layouts=np.stack(layouts))
        log(f"synthetic: {len(layouts)} layouts rendered")
    z = np.load(path)
    out["synthetic"] = _synthetic_source("synthetic", z["refl"], list(z["layouts"]))

    path = cache / "collage.npz"
    if not path.is_file():
        bands = (*C.DW_BANDS, "nir08")
        banks: dict[int, list[np.ndarray]] = {}
        rng = np.random.default_rng(21)
        for name in TEXTURE_SOURCES:
            src, prob = sources[name], teachers[name]
            allowed = source_split(src) == 0
            for t in range(src.cube.sizes["time"]):
                refl = np.stack([src.cube[b].values[t] for b in bands])
                if np.isfinite(refl).mean() < 0.3:
                    continue
                bank = texture_bank(refl, prob[t], allowed, size=48, per_class=8, rng=rng)
                for k, wins in bank.items():
                    banks.setdefault(k, []).extend(wins)
        layouts = _synthetic_layouts(N_COLLAGE, seed=2)
        refl = np.stack([collage(lab, banks, rng) for lab in layouts])[:, None]  # (N, 1, B, S, S)
        np.savez(path, refl=refl.astype(np.float32), layouts=np.stack(layouts),
                 bank_sizes=np.array([len(banks.get(k, [])) for k in range(K)]))
        log(f"collage: {len(layouts)} layouts painted; texture windows per class "
            f"{[len(banks.get(k, [])) for k in range(K)]}")
    z = np.load(path)
    out["collage"] = _synthetic_source("collage", z["refl"], list(z["layouts"]))
    return out


def prepare(shared: Path, cache: Path, *, weights: Path | None = None, log: Any = print) -> dict[str, Any]:
    """Imputer, teacher probabilities of every source and the synthetic sources, cached under ``cache``."""
    from .teacher import BandImputer

    cache.mkdir(parents=True, exist_ok=True)
    weights = weights or shared / "dynamicworld"
    t0 = time.monotonic()
    sources = C.all_sources(shared, names=SOURCES)
    imp_path = cache / "imputer.pt"
    if not imp_path.is_file() and SHIPPED_IMPUTER.is_file():
        imp_path.write_bytes(SHIPPED_IMPUTER.read_bytes())
    if not imp_path.is_file():
        imp_path.write_bytes(_fit_imputer(sources).to_bytes())
        log(f"imputer fitted ({time.monotonic() - t0:.0f} s)")
    imputer = BandImputer.from_bytes(imp_path.read_bytes())
    teachers = {}
    for name, src in sources.items():
        path = cache / f"teacher_{name}.npy"
        if not path.is_file():
            np.save(path, _teacher(src, imputer, weights).astype(np.float16))
            log(f"teacher {name}: {time.monotonic() - t0:.0f} s")
        teachers[name] = np.load(path).astype(np.float32)
    for name, src in synthetic_sources(cache, weights, sources, teachers, log).items():
        path = cache / f"teacher_{name}.npy"
        if not path.is_file():
            np.save(path, _teacher(src, imputer, weights).astype(np.float16))
            log(f"teacher {name}: {time.monotonic() - t0:.0f} s")
        teachers[name] = np.load(path).astype(np.float32)
        sources[name] = src
    info = {"minutes": (time.monotonic() - t0) / 60, "sources": {}}
    for name, src in sources.items():
        p = teachers[name]
        valid = np.isfinite(p[:, 0])
        lab = np.nan_to_num(p, nan=-1).argmax(1)
        share = np.bincount(lab[valid], minlength=K) / max(1, valid.sum())
        rec: dict[str, Any] = {"product": src.product, "teacher": src.teacher, "shape": list(src.shape),
                               "dates": int(src.cube.sizes["time"]), "valid_share": float(valid.mean()),
                               "teacher_class_share": dict(zip(CLASSES, np.round(share, 4).tolist(), strict=True))}
        if src.reference is not None and name in ("synthetic", "collage"):
            ref = src.reference
            rec["teacher_recall_of_layout"] = {
                c: float((lab[:, ref == k] == k).mean()) for k, c in enumerate(CLASSES) if (ref == k).any()}
        info["sources"][name] = rec
    (cache / "prepare.json").write_text(json.dumps(info, indent=1))
    return info


def load_prepared(shared: Path, cache: Path) -> tuple[dict[str, C.Source], dict[str, np.ndarray]]:
    """Sources (real and synthetic) and their cached teacher probabilities."""
    sources = C.all_sources(shared, names=SOURCES)
    teachers = {n: np.load(cache / f"teacher_{n}.npy").astype(np.float32) for n in sources}
    syn = synthetic_sources(cache, shared / "dynamicworld", sources, teachers)
    for n, s in syn.items():
        sources[n] = s
        teachers[n] = np.load(cache / f"teacher_{n}.npy").astype(np.float32)
    return sources, teachers


def labels_of(src: C.Source, prob: np.ndarray) -> xr.Dataset:
    """The training labels of a source: the teacher (temporal consensus over dates), QA water/snow on top.

    On Landsat QA scenes, clear pixels that QA_PIXEL flags water (bit 7) or snow (bit 5)
    get that class as a one-hot target with full confidence.
    """
    from .labels import from_probabilities, label_dataset

    coords = {"y": src.cube.y, "x": src.cube.x}
    da_ = xr.DataArray(prob, dims=("time", "class", "y", "x"), coords={**coords, "class": list(CLASSES)})
    lab = from_probabilities(da_.isel(time=0) if prob.shape[0] == 1 else da_, source=f"{src.teacher} teacher")
    if src.qa is not None:
        qa = src.qa.isel(time=0)
        target = lab["target"].values.copy()
        conf = lab["confidence"].values.copy()
        for k, flag in ((0, "water"), (8, "snow")):
            m = qa[flag].values & qa["clear"].values
            target[:, m] = 0
            target[k, m] = 1
            conf[m] = 1
        lab = label_dataset(xr.DataArray(target, dims=("class", "y", "x"), coords={**coords, "class": list(CLASSES)}),
                            xr.DataArray(conf, dims=("y", "x"), coords=coords), source=f"{src.teacher} teacher + QA")
    return lab


def patch_sets(sources: dict[str, C.Source], teachers: dict[str, np.ndarray], *, seed: int = 0,
               counts: dict[str, tuple[int, int]] | None = None, log: Any = print) -> tuple[PatchSet, PatchSet]:
    """Training and validation patches of every source (class-balanced on the training side)."""
    counts = counts or COUNTS
    tr, va = [], []
    for name, src in sources.items():
        n_tr, n_va = counts[name]
        lab = labels_of(src, teachers[name])
        split = SplitParams(block=src.block, val_fraction=0.1, seed=SPLIT_SEED)
        small = src.resolution > 50
        params = SamplingParams(patch=PATCH, n_samples=n_tr, dates_per_sample=1, seed=seed,
                                min_class_pixels=300 if small else 2000)
        tr.append(sample_patches(src.cube, lab, params, split=split, side="train", bands=C.SHARED_BANDS, source=name,
                                 platform=src.platform))
        va.append(sample_patches(src.cube, lab, replace(params, n_samples=n_va, balance="none"), split=split,
                                 side="val", bands=C.SHARED_BANDS, source=name, platform=src.platform))
        log(f"patches {name}: {len(tr[-1])} / {len(va[-1])}")
    return PatchSet.concat(tr), PatchSet.concat(va)


def class_weights(ps: PatchSet, *, power: float = 0.5, clip: tuple[float, float] = (0.25, 4.0)) -> list[float]:
    """Loss weight per class, ``(share / mean share)^−power``, clipped: rare classes count more.

    Examples
    --------
    >>> ps = PatchSet.empty(C.SHARED_BANDS, 4)
    >>> ps.target = np.zeros((1, K, 4, 4), np.float16); ps.target[0, 1] = 1; ps.target[0, 1, 0, 0] = 0
    >>> ps.target[0, 6, 0, 0] = 1; ps.confidence = np.ones((1, 4, 4), np.float32)
    >>> w = class_weights(ps); round(w[6] / w[1], 1)   # built, 1 pixel, against trees, 15
    3.9
    """
    top = ps.target.astype(np.float32).argmax(1)
    ok = ps.confidence > 0
    counts = np.bincount(top[ok], minlength=K).astype(np.float64)
    share = counts / counts.sum()
    present = share > 0
    w = np.ones(K)
    w[present] = (share[present] / share[present].mean()) ** (-power)
    w = np.clip(w, *clip)
    return [float(f"{v:.3g}") for v in w]


def shipped_config(steps: int = 8000, threads: int | None = 2, seed: int = 0,
                   class_weight: Sequence[float] | None = None) -> Any:
    """The :class:`~dwcube.train.loop.TrainConfig` of the shipped weights (v2).

    Examples
    --------
    >>> cfg = shipped_config(steps=10)
    >>> cfg.model.widths, cfg.model.attention, cfg.model.aspp, cfg.augment.landsat_fraction
    ((16, 32, 64, 128), True, True, 0.3)
    """
    from ..models.unet import UNetConfig
    from .augment import AugmentParams
    from .loop import TrainConfig

    return TrainConfig(steps=steps, batch_size=16, crop=64, lr=2e-3, warmup=200, label_smoothing=0.02,
                       target_temperature=0.5, checkpoint_every=100, eval_every=2000, seed=seed, device="auto", threads=threads,
                       augment=AugmentParams().scaled(0.5, landsat_fraction=0.3),
                       class_weight=tuple(class_weight) if class_weight is not None else None,
                       model=UNetConfig(in_channels=len(FEATURES), widths=(16, 32, 64, 128), attention=True, aspp=True))


def train_shipped(cache: Path, out: Path, *, steps: int = 8000, threads: int = 2, seed: int = 0,
                  progress: bool = True) -> Any:
    """Train on the cached patch sets (resumable: rerun to continue)."""
    from ..models.unet import input_spec
    from .loop import train

    tr = PatchSet.load(cache / "train_patches.npz")
    va = PatchSet.load(cache / "val_patches.npz")
    norm = json.loads((cache / "normalisation.json").read_text())
    cw = json.loads((cache / "class_weights.json").read_text())
    cfg = shipped_config(steps, threads, seed, class_weight=cw)
    meta = {"recipe": "dwcube.train.shipped (v2)",
            "training_data": {s: int((tr.source == s).sum()) for s in np.unique(tr.source).tolist()},
            "validation_data": {s: int((va.source == s).sum()) for s in np.unique(va.source).tolist()},
            "teacher": "dynamic-world 1.0.0+0dd288f; imputed bands where it cannot run (dwcube.train.teacher)",
            "split": f"every source 90:10 by blocks, seed {SPLIT_SEED}"}
    return train(tr, va, input_spec(norm), cfg, out, progress=progress, log=lambda line: print(line, flush=True),
                 metadata=meta)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dwcube.train.shipped prepare|patches|train`` (see the module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m dwcube.train.shipped")
    ap.add_argument("command", choices=["prepare", "patches", "train", "calibrate"])
    ap.add_argument("--shared", type=Path, default=Path("../shared"))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/dwcube-v2"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/dwcube-v2/run"))
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--threads", type=int, default=2, help="PyTorch threads")
    ap.add_argument("--seed", type=int, default=0, help="seed of initialisation and batches")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    if args.command == "prepare":
        print(json.dumps(prepare(args.shared, args.cache, log=lambda s: print(s, flush=True)), indent=1))
    elif args.command == "patches":
        from .recipe import fit_normalisation

        sources, teachers = load_prepared(args.shared, args.cache)
        tr, va = patch_sets(sources, teachers, log=lambda s: print(s, flush=True))
        tr.save(args.cache / "train_patches.npz")
        va.save(args.cache / "val_patches.npz")
        norm = fit_normalisation(tr, FEATURES, band_log_gain=BAND_LOG_GAIN, band_floor=BAND_FLOOR)
        (args.cache / "normalisation.json").write_text(json.dumps(norm, indent=1))
        (args.cache / "class_weights.json").write_text(json.dumps(class_weights(tr)))
        print(f"{len(tr)} training and {len(va)} validation patches in {args.cache}")
    elif args.command == "train":
        res = train_shipped(args.cache, args.out, steps=args.steps, threads=args.threads, seed=args.seed)
        print(json.dumps({"weights": str(res.weights), "sha256": res.sha256}))
    else:
        print(json.dumps(calibrate(args.shared, args.cache, args.out), indent=1))
    return 0


def calibrate(shared: Path, cache: Path, out: Path) -> dict[str, Any]:
    """Fit the temperature of ``out/unet.pt`` on every source's validation side; write ``out/unet-calibrated.pt``."""
    from ..models.unet import unet_entry

    sources, teachers = load_prepared(shared, cache)
    entry = unet_entry(out / "unet.pt", name="unet-uncalibrated")
    probs = {name: predict_source(entry, src) for name, src in sources.items()}
    temperature = fit_source_temperature(probs, sources, teachers)
    sha = with_temperature(out / "unet.pt", out / "unet-calibrated.pt", temperature, {
        "calibration": "temperature fitted on the validation sides of every source "
                       "(dwcube.train.shipped.fit_source_temperature), head divided by it"})
    return {"temperature": temperature, "weights": str(out / "unet-calibrated.pt"), "sha256": sha}




# --- evaluation and calibration ------------------------------------------------------------------


def predict_source(model: Any, src: C.Source, *, landsat_like: bool = False) -> np.ndarray:
    """The U-Net's probabilities ``(time, class, y, x)`` on a whole source (``classify``, eager, CPU).

    ``model`` is a registry entry or name; ``landsat_like`` feeds the Sentinel-2 source
    made Landsat-like (:func:`dwcube.train.augment.landsat_like`, HLS bandpass of the
    source's platform, 30 m cells at phase 0, noise σ 0.003, seed 0).
    """
    from ..inference import classify
    from ..inputs import OutOfDomainWarning
    from .augment import landsat_like as simulate

    cube = src.cube[list(C.SHARED_BANDS)]
    if landsat_like:
        refl = cube.to_dataarray("band").transpose("time", "band", "y", "x").values
        sim = simulate(refl, C.SHARED_BANDS, platform=src.platform if src.platform.startswith("sentinel") else
                       "sentinel-2a", noise=0.003, rng=np.random.default_rng(0))
        cube = cube.copy()
        for i, b in enumerate(C.SHARED_BANDS):
            cube[b] = (("time", "y", "x"), sim[:, i])
        cube.attrs["sensor"] = "landsat-c2-l2-oli"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDomainWarning)
        return np.asarray(classify(cube, model, device="cpu", compile=False).values, np.float32)


def _reference_labels(src: C.Source, teacher: np.ndarray) -> np.ndarray:
    """Per-date reference probabilities ``(time, class, y, x)``: the teacher, with QA water/snow on QA scenes."""
    ref = teacher.copy()
    if src.qa is not None:
        qa = src.qa
        for k, flag in ((0, "water"), (8, "snow")):
            m = (qa[flag] & qa["clear"]).values  # (time, y, x)
            for t in range(ref.shape[0]):
                ref[t][:, m[t]] = 0
                ref[t][k][m[t]] = 1
    return ref


def evaluate_source(model: Any, src: C.Source, teacher: np.ndarray, *, side: str = "val",
                    landsat_like: bool = False, prob: np.ndarray | None = None) -> dict[str, Any]:
    """Scores of the U-Net on one side of a source against its teacher (and QA bits, spectral rules).

    Returns agreement (overall, where the teacher's top probability ≥ 0.5, per class), the
    recall of every class the teacher gives ≥ 2 % of the side, QA water/snow on QA scenes,
    spectral-rule shares and the calibration (ECE) of the U-Net's top probability against
    the teacher's label.
    """
    from .evaluation import agreement, calibration, qa_agreement, rare_class_recall, spectral_rules

    prob = predict_source(model, src, landsat_like=landsat_like) if prob is None else prob
    split = source_split(src)
    want = {"val": split == 1, "train": split == 0, "all": np.ones_like(split, bool)}[side]
    ref = _reference_labels(src, teacher)
    t = prob.shape[0]
    p_all = np.concatenate([prob[i].reshape(K, -1) for i in range(t)], 1)
    r_all = np.concatenate([ref[i].reshape(K, -1) for i in range(t)], 1)
    m_all = np.tile(want.ravel(), t)
    a = agreement(p_all, r_all, m_all)
    out: dict[str, Any] = {"source": src.name, "product": src.product, "side": side,
                           "input": "Landsat-like" if landsat_like else "as is", "teacher": src.teacher,
                           **a.to_dict(), "rare_class_recall": rare_class_recall(a)}
    ref_lab = np.where(np.isfinite(r_all).all(0), np.nan_to_num(r_all, nan=-1).argmax(0), 255)
    out["ece"] = calibration(p_all, ref_lab, m_all).ece
    if src.qa is not None:
        qa = src.qa
        lab = np.where(np.isfinite(prob).all(1), np.nan_to_num(prob, nan=-1).argmax(1), 255)
        out["qa"] = qa_agreement(lab[:, want], qa["clear"].values[:, want], qa["water"].values[:, want],
                                 qa["snow"].values[:, want])
    if src.product.startswith("landsat") or src.name in ("sahara", "patagonia"):
        refl = {b: src.cube[b].values[:, want] for b in ("green", "red", "nir08", "swir16")}
        lab = np.where(np.isfinite(prob).all(1), np.nan_to_num(prob, nan=-1).argmax(1), 255)[:, want]
        out["rules"] = [vars(r) for r in spectral_rules(refl, lab)]
    return out


def fit_source_temperature(probs: dict[str, np.ndarray], sources: dict[str, C.Source],
                           teachers: dict[str, np.ndarray], *, max_pixels: int = 400_000, seed: int = 0) -> float:
    """One temperature for the U-Net from the validation sides of all sources (equal weight per source).

    The logits are recovered as ``log p`` (softmax is shift-invariant per pixel); each
    source contributes at most ``max_pixels / len(sources)`` validation pixels.
    """
    from .evaluation import fit_temperature

    rng = np.random.default_rng(seed)
    per = max_pixels // max(1, len(probs))
    lg, ref = [], []
    for name, prob in probs.items():
        src = sources[name]
        val = source_split(src) == 1
        r = _reference_labels(src, teachers[name])
        p = np.moveaxis(prob, 1, 0)[:, :, val].reshape(K, -1)
        rl = np.moveaxis(r, 1, 0)[:, :, val].reshape(K, -1)
        ok = np.isfinite(p).all(0) & np.isfinite(rl).all(0)
        idx = np.flatnonzero(ok)
        idx = rng.choice(idx, size=min(per, idx.size), replace=False)
        lg.append(np.log(np.clip(p[:, idx], 1e-12, 1)))
        ref.append(rl[:, idx].argmax(0))
    return fit_temperature(np.concatenate(lg, 1), np.concatenate(ref))


def with_temperature(src_path: Path, dst_path: Path, temperature: float, metadata: dict[str, Any]) -> str:
    """Copy a weights file with its head divided by ``temperature`` (``softmax(logits / T)``); returns the SHA-256."""
    import torch

    from ..models.unet import UNet, UNetConfig, read_unet_file, save_unet

    blob = read_unet_file(src_path)
    net = UNet(UNetConfig.from_dict(blob["config"]))
    net.load_state_dict({k: v.float() for k, v in blob["state_dict"].items()})
    with torch.no_grad():
        net.head.weight /= temperature
        net.head.bias /= temperature
    meta = {**blob.get("metadata", {}), **metadata, "temperature": temperature}
    return save_unet(dst_path, net.eval(), normalisation=blob["normalisation"], metadata=json.loads(json.dumps(meta)))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

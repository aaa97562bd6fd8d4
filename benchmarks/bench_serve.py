"""`dwcube serve`: tile and point latency against plain xarray reads, and the prediction service.

Everything runs on loopback: a uvicorn server in its own process (``dwcube.serve.app``), timed
from a client in this process with ``httpx`` (one request at a time, warm: each URL once before
the timed runs, and the server caches nothing per tile).

* **tiles**: a 2560² px archive (2 dates, 256-px chunks) of synthetic probabilities;
  ``label`` tiles chosen to overlap exactly 1, 4 and 16 archive chunks (at three zooms), against
  reading the same archive window of the label straight from the store with
  ``xr.open_zarr(store).label[t, rows, cols].values`` (decode only; no reprojection, no PNG).
  Ratio = serving / reading.
* **points**: ``GET /api/{archive}/point`` over a 100-date archive (512² px) with 512-px and
  128-px chunks, a new pixel each request (the server's pixel cache never hits), against reading
  that pixel's series with xarray from the same store; the number of chunks a point decodes is
  ``dates × (chunks holding the pixel)`` = 100 here, each ``chunk² × 9`` float32; and with the
  time-chunked copy (:func:`dwcube.serve.quicklook.write_series_copy`, 32-px chunks of all dates),
  one chunk (the xarray column then still reads the archive, for comparison).
* **predict**: ``POST /api/predict`` with a 512² px 13-band L1C GeoTIFF (uint16, plus an
  ``elevation`` band for the U-Net) for each shipped model, against
  :func:`dwcube.inference.classify` on the same cube in this process; and **scale to zero**:
  the server's memory (RSS) with the network built, after ``predict_idle`` seconds idle, and
  the latency of the next (cold) request.

Run: ``python benchmarks/bench_serve.py [--repeats 15] [--quick]`` (``--quick``: smaller, checks
that it works). Dynamic World runs when its weights are found (``../shared/dynamicworld`` or the
usual search), else it is reported as skipped.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from _report import machine, print_table  # noqa: E402

from dwcube import testing as T  # noqa: E402

def synthetic_probability(size: int, dates: int, chunk: int, seed: int = 0) -> xr.DataArray:
    """Lazy probabilities ``(time, class, y, x)``: a softmax of smooth random fields, per chunk."""
    import dask.array as da
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_coords

    from dwcube.classes import CLASSES

    def block(block_info: Any = None) -> np.ndarray:
        (t0, t1), _, (y0, y1), (x0, x1) = block_info[None]["array-location"]
        rng = np.random.default_rng([seed, t0, y0, x0])
        yy, xx = np.mgrid[y0:y1, x0:x1] / 97.0
        logits = np.stack([np.sin(xx * (k + 1) * 0.7 + k) * np.cos(yy * (9 - k) * 0.5) * 3 for k in range(9)])
        out = logits[None] + rng.normal(0, 0.5, (t1 - t0, 9, y1 - y0, x1 - x0))
        e = np.exp(out - out.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    data = da.map_blocks(block, dtype=np.float32, chunks=((1,) * dates, (9,), *(((chunk,) * (size // chunk),) * 2)))
    gbox = GeoBox.from_bbox((465180.0, 5080260.0 - size * 10, 465180.0 + size * 10, 5080260.0), crs="EPSG:32633",
                            resolution=10.0)
    times = np.datetime64("2023-01-01", "ns") + np.arange(dates) * np.timedelta64(5, "D")
    return xr.DataArray(data, dims=("time", "class", "y", "x"),
                        coords={"time": times, "class": list(CLASSES), **xr_coords(gbox)}, name="probability",
                        attrs={"model": "bench-synthetic", "model_version": "0"})


def write(store: Path, size: int, dates: int, chunk: int) -> Path:
    from dwcube.archive import ArchiveEncoding, write_archive

    if not (store / "zarr.json").exists():
        write_archive(synthetic_probability(size, dates, chunk), store, mode="w", encoding=ArchiveEncoding(chunk=chunk))
    return store


def start(stores: list[Path], idle: float, weights: str) -> tuple[subprocess.Popen[bytes], str, int]:
    import httpx

    port = T.free_port()
    code = ("import sys, uvicorn\nfrom dwcube.serve import app\n"
            "uvicorn.run(app(sys.argv[3:], predict_idle=float(sys.argv[2]), weights=sys.argv[1] or None), "
            "host='127.0.0.1', port=int(sys.argv[0]), log_level='warning')")
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    proc = subprocess.Popen([sys.executable, "-c", code.replace("sys.argv[0]", str(port)), weights, str(idle),
                             *map(str, stores)], env=env, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(base + "/api/health").status_code == 200:
                return proc, base, port
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("server did not start")


def timed(fn: Any, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, math.ceil(0.95 * len(values)) - 1)]


def chunk_window(ds: xr.Dataset, z: int, x: int, y: int) -> tuple[slice, slice, int]:
    """The archive rows/cols a tile covers, and how many chunks they span."""
    import morecantile
    from rasterio.warp import transform_bounds
    from rasterio.windows import from_bounds

    b = morecantile.tms.get("WebMercatorQuad").xy_bounds(morecantile.Tile(x, y, z))
    gbox = ds.odc.geobox
    left, bottom, right, top = transform_bounds("EPSG:3857", str(gbox.crs), b.left, b.bottom, b.right, b.top)
    win = from_bounds(left, bottom, right, top, transform=gbox.affine)
    r0, c0 = math.floor(win.row_off), math.floor(win.col_off)
    r1, c1 = math.ceil(win.row_off + win.height), math.ceil(win.col_off + win.width)
    if r0 < 0 or c0 < 0 or r1 > gbox.height or c1 > gbox.width:
        return slice(0, 0), slice(0, 0), 0  # not wholly inside the archive: not a fair comparison
    chunk = ds.attrs["dwcube_archive"]["encoding"]["chunk"]
    n = ((r1 - 1) // chunk - r0 // chunk + 1) * ((c1 - 1) // chunk - c0 // chunk + 1)
    return slice(r0, r1), slice(c0, c1), n


def bench_tiles(work: Path, repeats: int, size: int, chunk: int = 256) -> list[dict[str, Any]]:
    import httpx

    from dwcube.archive import open_archive
    from dwcube.serve.layers import native_tiles, zoom_range

    store = write(work / f"tiles{size}-c{chunk}.zarr", size, 2, chunk)
    ds = open_archive(store)
    plain = xr.open_zarr(store, zarr_format=3)
    lo, native, hi = zoom_range(ds)
    wanted: dict[int, tuple[int, int, int, slice, slice]] = {}
    for z in range(native + 2, lo - 1, -1):  # tiles wholly inside the archive, first found per chunk count
        for t in native_tiles(ds, z):
            rows, cols, n = chunk_window(ds, *t)
            if n in (1, 4, 16) and n not in wanted:
                wanted[n] = (*t, rows, cols)
    proc, base, _ = start([store], 300, "")
    rows_out = []
    try:
        with httpx.Client(base_url=base, timeout=120) as client:
            date = str(ds["time"].values[1])[:10]
            for n in sorted(wanted):
                z, x, y, rr, cc = wanted[n]
                url = f"/api/{store.stem}/tiles/label/{date}/{z}/{x}/{y}.png"
                assert client.get(url).status_code == 200
                serve = timed(lambda: client.get(url).raise_for_status(), repeats)
                plain.label[1, rr, cc].values  # warm
                read = timed(lambda: plain.label[1, rr, cc].values, repeats)
                rows_out.append({"chunks": n, "zoom": z, "window px": f"{rr.stop - rr.start}x{cc.stop - cc.start}",
                                 "tile median ms": 1e3 * statistics.median(serve), "tile p95 ms": 1e3 * p95(serve),
                                 "xarray read median ms": 1e3 * statistics.median(read),
                                 "ratio": statistics.median(serve) / statistics.median(read)})
    finally:
        proc.terminate()
        proc.wait()
    return rows_out


def bench_points(work: Path, repeats: int, dates: int) -> list[dict[str, Any]]:
    import httpx
    from odc.geo.geom import point

    from dwcube.archive import open_archive

    from dwcube.serve.quicklook import open_series_copy, write_series_copy

    out = []
    for chunk, series in ((512, False), (128, False), (512, True)):
        store = write(work / f"points{dates}-c{chunk}.zarr", 512, dates, chunk)
        if series and open_series_copy(store) is None:
            write_series_copy(store, chunk=32)
        elif not series and open_series_copy(store) is not None:
            import shutil

            shutil.rmtree(store / "series")
        ds = open_archive(store)
        plain = xr.open_zarr(store, zarr_format=3)
        rng = np.random.default_rng(chunk)
        pixels = [tuple(int(v) for v in rng.integers(0, 512, 2)) for _ in range(2 * repeats + 1)]
        lonlat = [point(float(ds.x[c]), float(ds.y[r]), ds.odc.geobox.crs).to_crs("EPSG:4326").coords[0] for r, c in pixels]
        proc, base, _ = start([store], 300, "")
        try:
            with httpx.Client(base_url=base, timeout=300) as client:
                name = store.stem
                client.get(f"/api/{name}/point", params={"lon": lonlat[0][0], "lat": lonlat[0][1]}).raise_for_status()
                it = iter(lonlat[1:repeats + 1])
                serve = timed(lambda: client.get(f"/api/{name}/point", params=dict(zip(("lon", "lat"), next(it)))).raise_for_status(),
                              repeats)
            pit = iter(pixels[repeats + 1:])
            read = timed(lambda: plain.probability[:, :, next(pit)[0], 0].values, repeats)
        finally:
            proc.terminate()
            proc.wait()
        out.append({"dates": dates, "chunk": f"{chunk} + series copy (32)" if series else chunk,
                    "chunks decoded": 1 if series else dates,
                    "decoded MB": (dates * 32 * 32 * 9 * 4 if series else dates * chunk * chunk * 9 * 4) / 1e6,
                    "point median ms": 1e3 * statistics.median(serve), "point p95 ms": 1e3 * p95(serve),
                    "xarray read median ms": 1e3 * statistics.median(read),
                    "ratio": statistics.median(serve) / statistics.median(read)})
    return out


def bench_predict(work: Path, repeats: int, size: int) -> list[dict[str, Any]]:
    import httpx
    import psutil

    from dwcube.inference import classify, clear_model_cache
    from dwcube.models.weights import search_locations
    from dwcube.serve.predict import read_geotiff_cube

    bands = ("coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08", "nir09", "cirrus",
             "swir16", "swir22")
    tif = T.synthetic_geotiff(size, bands=bands, elevation=True)
    cube = read_geotiff_cube(tif)
    shared = HERE.parent.parent / "shared" / "dynamicworld"
    weights = str(shared) if shared.is_dir() else ""
    store = write(work / "tiles512.zarr", 512, 2, 512)
    out = []
    proc, base, _ = start([store], 3.0, weights)
    ps = psutil.Process(proc.pid)
    try:
        with httpx.Client(base_url=base, timeout=600) as client:
            for model in ("dynamic-world", "unet"):
                files = {"image": ("scene.tif", tif, "image/tiff")}
                first = time.perf_counter()
                r = client.post("/api/predict", files=files, data={"model": model})
                cold = time.perf_counter() - first
                if r.status_code != 200:
                    print(f"{model}: skipped ({r.status_code}: {r.json()['detail'][:200]})")
                    continue
                rss_loaded = ps.memory_info().rss
                serve = timed(lambda: client.post("/api/predict", files=files, data={"model": model}).raise_for_status(),
                              repeats)
                for _ in range(200):  # wait for the idle release (3 s)
                    if client.get("/api/health").json()["predict_model_loaded"] is False:
                        break
                    time.sleep(0.1)
                rss_idle = ps.memory_info().rss
                t = time.perf_counter()
                client.post("/api/predict", files=files, data={"model": model}).raise_for_status()
                after_idle = time.perf_counter() - t
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    dem = cube[["elevation"]]
                    bare = cube.drop_vars("elevation")
                    classify(bare, model, weights=weights or None, device="cpu", compile=False, dem=dem).values
                    direct = timed(lambda: classify(bare, model, weights=weights or None, device="cpu", compile=False,
                                                    dem=dem).values, repeats)
                clear_model_cache()
                out.append({"model": model, "image": f"{size}² px, 13 bands + elevation, {len(tif) / 1e6:.1f} MB",
                            "POST median s": statistics.median(serve), "POST p95 s": p95(serve),
                            "Mpx/s": size * size / 1e6 / statistics.median(serve),
                            "classify in-process s": statistics.median(direct),
                            "ratio": statistics.median(serve) / statistics.median(direct),
                            "first request s": cold, "RSS loaded MiB": rss_loaded / 2**20,
                            "RSS after idle MiB": rss_idle / 2**20, "request after idle s": after_idle})
    finally:
        proc.terminate()
        proc.wait()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per case (after one warm-up)")
    parser.add_argument("--quick", action="store_true", help="small sizes, 3 repeats: check that it works")
    parser.add_argument("--only", choices=["tiles", "points", "predict"], help="run one part")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    print(machine())
    work = HERE / "_work" / "serve"
    work.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if args.only in (None, "tiles"):
            print_table("## label tiles (warm) against an xarray read of the same window",
                        bench_tiles(work, repeats, 1024 if args.quick else 2560))
        if args.only in (None, "points"):
            print_table("\n## point series over the dates against an xarray read of the pixel",
                        bench_points(work, repeats, 10 if args.quick else 100))
        if args.only in (None, "predict"):
            print_table("\n## POST /api/predict against classify in-process",
                        bench_predict(work, max(1, repeats // 5), 128 if args.quick else 512))


if __name__ == "__main__":
    main()

"""The main job on its embedded default: offline, local Dask, local files.

Steps: write a local STAC catalogue (stac-geoparquet) for a sample scene →
:func:`dwcube.load` it lazily → write the reflectance cube to a Zarr v3 store
with a local Dask cluster → reopen it with plain xarray and print a summary.

The sample scene is the real Sentinel-2 L2A tile T29UNU (2022-10-05, baseline
04.00, 60 m bands and SCL) when the project's ``shared/`` folder is found, and a
synthetic scene made by :mod:`dwcube.testing` otherwise (so the job runs on any
machine).  Later stages (classification, smoothing) will extend this job.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["DemoResult", "run_demo", "synthetic_scene_items", "write_catalog"]


@dataclass
class DemoResult:
    """What :func:`run_demo` made: paths, the reopened cube, and timings (s)."""

    workdir: Path
    catalog: Path
    store: Path
    cube: xr.Dataset
    timings: dict[str, float]
    source: str


def write_catalog(items: list[Any], path: str | Path) -> Path:
    """Write items as a local STAC catalogue; the format follows the suffix.

    ``.parquet`` → stac-geoparquet (rustac), ``.ndjson`` → one item per line,
    anything else → an ItemCollection JSON.

    Examples
    --------
    >>> write_catalog(items, "catalog.parquet")  # doctest: +SKIP
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dicts = [it.to_dict() if hasattr(it, "to_dict") else dict(it) for it in items]
    if path.suffix in (".parquet", ".geoparquet"):
        import rustac

        rustac.write_sync(str(path), dicts)
    elif path.suffix in (".ndjson", ".jsonl"):
        path.write_text("\n".join(json.dumps(d) for d in dicts) + "\n")
    else:
        path.write_text(json.dumps({"type": "FeatureCollection", "features": dicts}, indent=1))
    return path


def synthetic_scene_items(workdir: Path, *, size: int = 512, seed: int = 0) -> list[Any]:
    """A synthetic Sentinel-2 L2A scene (baseline 05.09, a cloud with its shadow) as local COGs and one item.

    Surfaces are smooth random fields with vegetation-, water- and soil-like
    spectra; DN carry the +1000 offset of baseline ≥ 04.00.
    """
    from .testing import sentinel2_item, write_cog

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    field_ = np.sin(6 * xx) * np.cos(4 * yy) + 0.3 * rng.standard_normal((size, size))
    water = field_ < -0.6
    soil = field_ > 0.7
    spectra = {  # reflectance of vegetation, water, soil
        "blue": (0.03, 0.05, 0.10), "green": (0.06, 0.06, 0.13), "red": (0.04, 0.04, 0.17),
        "nir": (0.35, 0.02, 0.25), "nir08": (0.36, 0.02, 0.26), "swir16": (0.18, 0.01, 0.30),
        "swir22": (0.08, 0.01, 0.25),
    }
    epsg, x0, y0, res = 32633, 465180.0, 5085240.0, 10.0
    infos = {}
    for band, (veg, wat, soi) in spectra.items():
        refl = np.where(water, wat, np.where(soil, soi, veg)) + 0.01 * rng.standard_normal((size, size))
        dn = np.clip(np.round(refl * 10000) + 1000, 1, 65535).astype(np.uint16)
        dn[:, : size // 10] = 0  # a strip outside the swath: no data
        infos[band] = write_cog(workdir / "cogs" / f"{band}.tif", dn, epsg=epsg,
                                transform=(res, 0, x0, 0, -res, y0))
    scl = np.where(water, 6, np.where(soil, 5, 4)).astype(np.uint8)
    r2 = (yy - 0.3) ** 2 + (xx - 0.6) ** 2
    scl[r2 < 0.01] = 9  # a cloud
    scl[((yy - 0.38) ** 2 + (xx - 0.52) ** 2) < 0.006] = 3  # its shadow
    scl[:, : size // 10] = 0
    infos["scl"] = write_cog(workdir / "cogs" / "scl.tif", scl[::2, ::2].copy(), epsg=epsg,
                             transform=(2 * res, 0, x0, 0, -2 * res, y0))
    item = sentinel2_item(
        "S2B_33TVM_20230614_0_L2A", dt.datetime(2023, 6, 14, 10, 0, 29, tzinfo=dt.timezone.utc), infos,
        base_url=(workdir / "cogs").resolve().as_uri(), root=workdir / "cogs", platform="sentinel-2b",
        processing_baseline="05.09", cloud_cover=4.0, sun_azimuth=150.0, sun_zenith=28.0, tile="33TVM",
    )
    return [item]


def _t29unu_items(shared: Path, workdir: Path) -> list[Any]:
    from .testing import t29unu_items

    cogs = workdir / "cogs"
    return [t29unu_items(shared / "data" / "s2l2a-T29UNU-20221005-60m", cogs,
                         base_url=cogs.resolve().as_uri(), root=cogs)]


def run_demo(
    workdir: str | Path = "dwcube-demo",
    *,
    source: str = "auto",
    n_workers: int = 2,
    chunks: int = 512,
    verbose: bool = True,
) -> DemoResult:
    """Run the main job offline and return what it made.

    Parameters
    ----------
    workdir
        Folder for the COGs, the catalogue and the Zarr store (replaced each run).
    source
        ``"auto"`` (T29UNU when ``shared/`` is found, else synthetic),
        ``"t29unu"`` or ``"synthetic"``.
    n_workers
        Worker processes of the local Dask cluster (0: no cluster, threads).
    chunks
        Dask chunk size in pixels.

    Examples
    --------
    >>> result = run_demo("/tmp/dwcube-demo", source="synthetic")  # doctest: +SKIP
    >>> result.cube.red.attrs["units"]  # doctest: +SKIP
    '1'
    """
    from . import load
    from .testing import shared_dir

    workdir = Path(workdir)
    t: dict[str, float] = {}
    shared = shared_dir()
    if source == "auto":
        source = "t29unu" if shared is not None else "synthetic"
    if source == "t29unu" and shared is None:
        raise FileNotFoundError("source='t29unu' needs the shared/ folder (set DWCUBE_SHARED)")
    if source not in ("t29unu", "synthetic"):
        raise ValueError(f"source must be 'auto', 't29unu' or 'synthetic', got {source!r}")

    store = workdir / "reflectance.zarr"
    if store.exists():
        shutil.rmtree(store)
    t0 = time.perf_counter()
    items = _t29unu_items(shared, workdir) if source == "t29unu" else synthetic_scene_items(workdir)  # type: ignore[arg-type]
    catalog = write_catalog(items, workdir / "catalog.parquet")
    t["catalogue"] = time.perf_counter() - t0

    client = None
    if n_workers > 0:
        from dask.distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, host="127.0.0.1")
        client = Client(cluster)
    try:
        t0 = time.perf_counter()
        resolution = 60.0 if source == "t29unu" else 10.0
        cube = load(str(catalog), collections=["sentinel-2-l2a"], resolution=resolution, chunks=chunks)
        t["load (lazy)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        cube.to_zarr(store, mode="w", zarr_format=3, consolidated=False)
        t["read + normalise + write zarr"] = time.perf_counter() - t0
    finally:
        if client is not None:
            client.close()
            client.cluster.close()  # type: ignore[union-attr]

    reopened = xr.open_zarr(store, consolidated=False)
    result = DemoResult(workdir, catalog, store, reopened, t, source)
    if verbose:
        print(summary(result))
    return result


def summary(result: DemoResult) -> str:
    """A short human-readable report of a demo run."""
    ds = result.cube
    gbox = ds.odc.geobox
    lines = [
        f"dwcube demo ({result.source}): {result.catalog.name} -> {result.store}",
        f"  sensor {ds.attrs.get('sensor')} | {ds.attrs.get('radiometry')} | mask {ds.attrs.get('mask')}",
        f"  grid {gbox.shape.y} x {gbox.shape.x} px at {abs(gbox.resolution.x):g} m, "
        f"EPSG:{gbox.crs.epsg}",
        f"  dates {', '.join(str(t)[:19] for t in ds.time.values)}; failed assets: {len(ds.attrs.get('failed_assets', []))}",
        "  band       valid %   mean    p2      p98",
    ]
    for name in ds.attrs.get("bands", list(ds.data_vars)):
        v = ds[name].values
        ok = np.isfinite(v)
        p2, p98 = (np.percentile(v[ok], [2, 98]) if ok.any() else (np.nan, np.nan))
        lines.append(f"  {name:<9} {100 * ok.mean():7.2f} {np.nanmean(v) if ok.any() else np.nan:7.4f} {p2:7.4f} {p98:7.4f}")
    lines.append("  timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items()))
    return "\n".join(lines)

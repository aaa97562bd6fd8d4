"""The main job on its embedded default: offline, local Dask, local files.

Steps: write a local STAC catalogue (stac-geoparquet) of Sentinel-2 L1C COGs →
:func:`dwcube.load` them lazily (with Dynamic World's cloud and shadow mask) →
:func:`dwcube.classify` with the Dynamic World model on a two-process local Dask
cluster → :func:`dwcube.write_archive` to a Zarr v3 archive → reopen it and draw
``map.png`` (label maps in the Dynamic World colours, with a legend).

The scenes are the five real eo-learn L1C scenes (Slovenia, 2015) when the project's
``shared/`` folder is found, and a synthetic L1C scene made by :mod:`dwcube.testing`
otherwise.  The Dynamic World weights are looked up in ``$DWCUBE_WEIGHTS``, the user
cache (``dwcube weights fetch dynamic-world``) and ``shared/dynamicworld``; without them
the job stops after writing the reflectance cube and says how to get them.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

__all__ = ["DemoResult", "run_demo", "synthetic_l1c_items", "synthetic_scene_items", "write_catalog"]


@dataclass
class DemoResult:
    """What :func:`run_demo` made: paths, the reopened archive (or reflectance cube), and timings (s)."""

    workdir: Path
    catalog: Path
    store: Path
    cube: xr.Dataset
    timings: dict[str, float]
    source: str
    map_png: Path | None = None
    notes: list[str] = field(default_factory=list)


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


def synthetic_l1c_items(workdir: Path, *, size: int = 256, dates: int = 2, seed: int = 0) -> list[Any]:
    """Synthetic Sentinel-2 L1C scenes (all 13 bands, baseline 02.xx) as local COGs and items.

    Made from :func:`dwcube.testing.synthetic_cube` (vegetation, water and soil spectra).
    """
    from .testing import EOLEARN_BANDS, sentinel2_item, solar_angles, synthetic_cube, write_cog

    cube = synthetic_cube(size, dates, bands=EOLEARN_BANDS, seed=seed, sensor="sentinel-2-l1c")
    tr = tuple(cube.odc.geobox.affine)[:6]
    items = []
    for t, when64 in enumerate(cube.time.values):
        when = dt.datetime.fromisoformat(str(when64)[:19]).replace(hour=10, tzinfo=dt.timezone.utc)
        infos = {b: write_cog(workdir / "cogs" / f"date{t}" / f"{b}.tif",
                              np.clip(np.round(cube[b].values[t] * 10000), 1, 65535).astype(np.uint16),
                              epsg=32633, transform=tr) for b in EOLEARN_BANDS}
        zenith, azimuth = solar_angles(when, lon=14.56, lat=45.87)
        items.append(sentinel2_item(f"S2B_33TVL_{when:%Y%m%d}_0_L1C", when, infos,
                                    base_url=(workdir / "cogs").resolve().as_uri(), root=workdir / "cogs",
                                    level="L1C", processing_baseline="02.14", tile="33TVL",
                                    sun_azimuth=azimuth, sun_zenith=zenith))
    return items


def _eolearn_items(shared: Path, workdir: Path) -> list[Any]:
    from .testing import eolearn_l1c_items

    cogs = workdir / "cogs"
    return eolearn_l1c_items(shared, cogs, base_url=cogs.resolve().as_uri(), root=cogs)


def _weights_root(weights: str | Path | None, shared: Path | None) -> Path | None:
    from .models import weights as W
    from .models.registry import get_entry

    source = get_entry("dynamic-world").weights
    assert source is not None
    candidates: list[Any] = [weights] if weights is not None else [None]
    if weights is None and shared is not None:
        candidates.append(shared / "dynamicworld")
    for cand in candidates:
        try:
            return W.resolve(source, cand)
        except W.WeightsNotFoundError:
            continue
    return None


def run_demo(
    workdir: str | Path = "dwcube-demo",
    *,
    source: str = "auto",
    n_workers: int = 2,
    chunks: int = 512,
    weights: str | Path | None = None,
    verbose: bool = True,
) -> DemoResult:
    """Run the main job offline and return what it made.

    Parameters
    ----------
    workdir
        Folder for the COGs, the catalogue, the archive and the map (outputs replaced each run).
    source
        ``"auto"`` (the real eo-learn scenes when ``shared/`` is found, else synthetic),
        ``"eolearn"`` or ``"synthetic"``.
    n_workers
        Worker processes of the local Dask cluster (0: no cluster, threads).
    chunks
        Dask chunk size in pixels.
    weights
        Dynamic World weights folder (default: ``$DWCUBE_WEIGHTS``, the user cache,
        then ``shared/dynamicworld``).

    Examples
    --------
    >>> result = run_demo("/tmp/dwcube-demo", source="synthetic")  # doctest: +SKIP
    >>> result.map_png  # doctest: +SKIP
    PosixPath('/tmp/dwcube-demo/map.png')
    """
    from . import load
    from .archive import open_archive, write_archive
    from .inference import classify
    from .testing import shared_dir

    workdir = Path(workdir)
    t: dict[str, float] = {}
    shared = shared_dir()
    if source == "auto":
        source = "eolearn" if shared is not None else "synthetic"
    if source == "eolearn" and shared is None:
        raise FileNotFoundError("source='eolearn' needs the shared/ folder (set DWCUBE_SHARED)")
    if source not in ("eolearn", "synthetic"):
        raise ValueError(f"source must be 'auto', 'eolearn' or 'synthetic', got {source!r}")

    for old in ("lulc.zarr", "reflectance.zarr", "map.png"):
        path = workdir / old
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    t0 = time.perf_counter()
    items = _eolearn_items(shared, workdir) if source == "eolearn" else synthetic_l1c_items(workdir)  # type: ignore[arg-type]
    catalog = write_catalog(items, workdir / "catalog.parquet")
    t["catalogue"] = time.perf_counter() - t0
    root = _weights_root(weights, shared)
    notes: list[str] = []

    client = None
    if n_workers > 0:
        from dask.distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, host="127.0.0.1")
        client = Client(cluster)
    try:
        t0 = time.perf_counter()
        cube = load(str(catalog), collections=["sentinel-2-l1c"], resolution=10.0, chunks=chunks)
        t["load (lazy)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if root is None:
            store = workdir / "reflectance.zarr"
            cube.to_zarr(store, mode="w", zarr_format=3, consolidated=False)
            t["read + normalise + write zarr"] = time.perf_counter() - t0
            notes.append("classification skipped: the Dynamic World weights were not found. Run "
                         "`dwcube weights fetch dynamic-world` (needs internet) or set DWCUBE_WEIGHTS.")
        else:
            store = workdir / "lulc.zarr"
            prob = classify(cube, "dynamic-world", weights=root, device="auto")
            t["classify (lazy)"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            write_archive(prob, store, mode="w")
            t["read + mask + classify + write archive"] = time.perf_counter() - t0
    finally:
        if client is not None:
            client.close()
            client.cluster.close()  # type: ignore[union-attr]

    map_png = None
    if root is None:
        reopened = xr.open_zarr(store, consolidated=False)
    else:
        reopened = open_archive(store)
        t0 = time.perf_counter()
        map_png = _draw_map(reopened, workdir / "map.png", source, notes)
        t["map"] = time.perf_counter() - t0
    result = DemoResult(workdir, catalog, store, reopened, t, source, map_png, notes)
    if verbose:
        print(summary(result))
    return result


def _draw_map(archive: xr.Dataset, path: Path, source: str, notes: list[str]) -> Path | None:
    try:
        from .plot import label_maps
    except ImportError:  # pragma: no cover - depends on the install
        notes.append("map skipped: matplotlib is not installed (pip install 'dwcube[plot]')")
        return None
    try:
        fig = label_maps(archive.label, suptitle=f"Dynamic World labels ({source} scenes), dwcube")
    except ImportError:  # pragma: no cover - depends on the install
        notes.append("map skipped: matplotlib is not installed (pip install 'dwcube[plot]')")
        return None
    fig.savefig(path, dpi=120)
    return path


def summary(result: DemoResult) -> str:
    """A short human-readable report of a demo run."""
    from .classes import NODATA_LABEL

    ds = result.cube
    gbox = ds.odc.geobox
    lines = [
        f"dwcube demo ({result.source}): {result.catalog.name} -> {result.store}",
        f"  grid {gbox.shape.y} x {gbox.shape.x} px at {abs(gbox.resolution.x):g} m, EPSG:{gbox.crs.epsg}",
    ]
    if "label" in ds:
        from .archive import archive_info, format_info

        lines += ["  " + line for line in format_info(archive_info(result.store)).splitlines()]
        classes = ds.attrs["dwcube_archive"]["classes"]
        lines.append("  date        valid %  " + " ".join(f"{c[:6]:>6}" for c in classes))
        for t in range(ds.sizes["time"]):
            lab = ds.label.values[t]
            ok = lab != NODATA_LABEL
            shares = np.bincount(lab[ok], minlength=len(classes)) / max(int(ok.sum()), 1)
            lines.append(f"  {str(ds.time.values[t])[:10]}  {100 * ok.mean():7.1f}  "
                         + " ".join(f"{100 * v:5.1f}%" for v in shares))
        if result.map_png is not None:
            lines.append(f"  map: {result.map_png}")
    else:
        lines.append(f"  sensor {ds.attrs.get('sensor')} | {ds.attrs.get('radiometry')} | mask {ds.attrs.get('mask')}")
        lines.append(f"  dates {', '.join(str(t)[:19] for t in ds.time.values)}")
    lines += [f"  note: {n}" for n in result.notes]
    lines.append("  timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items()))
    return "\n".join(lines)

"""The main job on its embedded default: offline, local Dask, local files.

Steps: write a local STAC catalogue (stac-geoparquet) of Sentinel-2 L1C COGs →
:func:`dwcube.load` them lazily (with Dynamic World's cloud and shadow mask) →
:func:`dwcube.classify` on a two-process local Dask cluster → :func:`dwcube.write_archive`
to a Zarr v3 archive → reopen it and draw ``map.png`` (label maps in the Dynamic World
colours, with a legend) → print the archive's summary and the class shares per date.

The scenes are the five real eo-learn L1C scenes (Slovenia, 2015) when the project's
``shared/`` folder is found, and synthetic L1C scenes made by :mod:`dwcube.testing`
otherwise.  The model is Dynamic World when its weights are found (the same search as
``dwcube classify``: :func:`dwcube.models.weights.search_locations`), else dwcube's own
U-Net, whose weights ship in the package (it needs no elevation).  The summary says which
model was used and why.
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

__all__ = ["DemoResult", "FEW_VALID", "class_share_table", "run_demo", "summary", "synthetic_l1c_items",
           "synthetic_scene_items", "write_catalog"]

#: A date whose share of valid (classified) pixels is below this is flagged in the summary:
#: its class shares describe only a few pixels (a cloudy date).
FEW_VALID = 0.10


@dataclass
class DemoResult:
    """What :func:`run_demo` made: paths, the reopened archive, the model used, and timings (s)."""

    workdir: Path
    catalog: Path
    store: Path
    cube: xr.Dataset
    timings: dict[str, float]
    source: str
    map_png: Path | None = None
    notes: list[str] = field(default_factory=list)
    model: str = ""


def write_catalog(items: list[Any], path: str | Path) -> Path:
    """Write items as a local STAC catalogue; the format follows the suffix.

    ``.parquet`` → stac-geoparquet (rustac), ``.ndjson`` → one item per line,
    anything else → an ItemCollection JSON.

    Examples
    --------
    >>> import tempfile
    >>> from dwcube.stac import search
    >>> with tempfile.TemporaryDirectory() as d:
    ...     items = synthetic_l1c_items(Path(d), size=16, dates=2)
    ...     for name in ("catalog.parquet", "catalog.ndjson", "catalog.json"):
    ...         print(name, [it.id for it in search(write_catalog(items, Path(d, name)))])
    catalog.parquet ['S2B_33TVL_20230406_0_L1C', 'S2B_33TVL_20230418_0_L1C']
    catalog.ndjson ['S2B_33TVL_20230406_0_L1C', 'S2B_33TVL_20230418_0_L1C']
    catalog.json ['S2B_33TVL_20230406_0_L1C', 'S2B_33TVL_20230418_0_L1C']
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


def _choose_model(model: str, weights: str | Path | None) -> tuple[str, Path | None, str]:
    """``(model name, Dynamic World weights root or None, why)``.

    ``"auto"``: Dynamic World when its weights are found, else the shipped U-Net.
    """
    from .models import weights as W
    from .models.registry import get_entry

    if model not in ("auto", "dynamic-world", "unet"):
        raise ValueError(f"model must be 'auto', 'dynamic-world' or 'unet', got {model!r}")
    if model == "unet":
        return "unet", None, "dwcube's U-Net (weights shipped in the package), as asked"
    source = get_entry("dynamic-world").weights
    assert source is not None
    try:
        root = W.resolve(source, weights)
    except W.WeightsNotFoundError as exc:
        if model == "dynamic-world":
            raise
        return "unet", None, (f"dwcube's U-Net (weights shipped in the package), because {exc} "
                              "The U-Net was distilled from Dynamic World (docs/model_card.md).")
    return "dynamic-world", root, f"Dynamic World, weights verified in {root}"


def run_demo(
    workdir: str | Path = "dwcube-demo",
    *,
    source: str = "auto",
    n_workers: int = 2,
    chunks: int = 512,
    weights: str | Path | None = None,
    model: str = "auto",
    verbose: bool = True,
) -> DemoResult:
    """Run the main job offline and return what it made.

    Parameters
    ----------
    workdir
        Folder for the COGs, the catalogue, the archive and the map (outputs
        replaced each run).
    source
        ``"auto"`` (the real eo-learn scenes when ``shared/`` is found, else synthetic),
        ``"eolearn"`` or ``"synthetic"``.
    n_workers
        Worker processes of the local Dask cluster (0: no cluster, threads).
    chunks
        Dask chunk size in pixels.
    weights
        Dynamic World weights folder (default: found like ``dwcube classify`` finds them,
        :func:`dwcube.models.weights.search_locations`).
    model
        ``"auto"`` (Dynamic World when its weights are found, else the shipped U-Net),
        ``"dynamic-world"`` (an error without its weights) or ``"unet"``.

    Returns
    -------
    DemoResult
        ``store`` is ``workdir/lulc.zarr``; ``model`` the registry name used; ``notes``
        say why that model and what was skipped.

    Examples
    --------
    >>> import tempfile
    >>> res = run_demo(tempfile.mkdtemp(), source="synthetic", n_workers=0, model="unet", verbose=False)
    >>> res.model, res.store.name, res.cube.probability.dims
    ('unet', 'lulc.zarr', ('time', 'class', 'y', 'x'))
    """
    from . import load
    from .archive import open_archive, write_archive
    from .inference import classify
    from .models.registry import get_entry
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
    model_name, root, why = _choose_model(model, weights)
    notes = [f"model: {why}"]

    for old in ("lulc.zarr", "reflectance.zarr", "map.png"):
        path = workdir / old
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    t0 = time.perf_counter()
    items = _eolearn_items(shared, workdir) if source == "eolearn" else synthetic_l1c_items(workdir)  # type: ignore[arg-type]
    catalog = write_catalog(items, workdir / "catalog.parquet")
    spec = get_entry(model_name).inputs
    t["catalogue"] = time.perf_counter() - t0

    client = None
    if n_workers > 0:
        from dask.distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, host="127.0.0.1")
        client = Client(cluster)
    store = workdir / "lulc.zarr"
    try:
        t0 = time.perf_counter()
        cube = load(str(catalog), collections=["sentinel-2-l1c"], resolution=spec.resolution or 10.0,
                    resampling=spec.resampling or "bilinear", chunks=chunks)
        t["load (lazy)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        prob = classify(cube, model_name, weights=root, device="auto")
        t["classify (lazy)"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        write_archive(prob, store, mode="w")
        t["read + mask + classify + write archive"] = time.perf_counter() - t0
    finally:
        if client is not None:
            client.close()
            client.cluster.close()  # type: ignore[union-attr]

    reopened = open_archive(store)
    t0 = time.perf_counter()
    map_png = _draw_map(reopened, workdir / "map.png", source, model_name, notes)
    t["map"] = time.perf_counter() - t0
    result = DemoResult(workdir, catalog, store, reopened, t, source, map_png, notes, model_name)
    if verbose:
        print(summary(result))
    return result


def _draw_map(archive: xr.Dataset, path: Path, source: str, model: str, notes: list[str]) -> Path | None:
    try:
        from .plot import label_maps

        fig = label_maps(archive.label, suptitle=f"{model} labels ({source} scenes), dwcube")
    except ImportError:  # pragma: no cover - depends on the install
        notes.append("map skipped: matplotlib is not installed (pip install 'dwcube[plot]')")
        return None
    fig.savefig(path, dpi=120)
    return path


def class_share_table(label: xr.DataArray, classes: list[str] | tuple[str, ...], *,
                      few_valid: float = FEW_VALID) -> str:
    """Class shares of the labelled pixels per date, one row per class and one column per date.

    Parameters
    ----------
    label
        ``(time, y, x)`` uint8 labels, 255 = no data (``archive.label``).
    classes
        Class names in label order (printed in full).
    few_valid
        Dates with a smaller share of valid pixels (0–1) are marked ``*`` and explained
        under the table: their shares describe only those pixels.

    Returns
    -------
    str
        The table, in percent.

    Examples
    --------
    >>> lab = np.full((2, 10, 10), 255, np.uint8); lab[0] = 1; lab[1, 0, :2] = 6
    >>> times = np.array(["2015-07-11T10:00", "2015-08-20T10:00"], dtype="datetime64[ns]")
    >>> da = xr.DataArray(lab, dims=("time", "y", "x"), coords={"time": times})
    >>> print(class_share_table(da, ["water", "trees", "grass", "flooded_vegetation", "crops",
    ...                              "shrub_and_scrub", "built", "bare", "snow_and_ice"]))
    class shares (% of valid pixels)  2015-07-11   2015-08-20*
    valid pixels                           100.0          2.0
    water                                    0.0          0.0
    trees                                  100.0          0.0
    grass                                    0.0          0.0
    flooded_vegetation                       0.0          0.0
    crops                                    0.0          0.0
    shrub_and_scrub                          0.0          0.0
    built                                    0.0        100.0
    bare                                     0.0          0.0
    snow_and_ice                             0.0          0.0
    * under 10 % valid pixels (clouds, no data): the shares describe only those pixels
    """
    from .classes import NODATA_LABEL

    lab = np.asarray(label.values)
    days = [str(v)[:10] for v in label["time"].values]
    valid = [(lab[t] != NODATA_LABEL) for t in range(lab.shape[0])]
    valid_share = [float(v.mean()) if v.size else 0.0 for v in valid]
    shares = [np.bincount(lab[t][valid[t]], minlength=len(classes))[: len(classes)] / max(int(valid[t].sum()), 1)
              for t in range(lab.shape[0])]
    first = max(len("class shares (% of valid pixels)"), *(len(c) for c in classes))
    flagged = [v < few_valid for v in valid_share]
    header = [d + ("*" if f else " ") for d, f in zip(days, flagged)]
    lines = [f"{'class shares (% of valid pixels)':<{first}}" + "".join(f"{h:>13}" for h in header).rstrip()]
    lines.append(f"{'valid pixels':<{first}}" + "".join(f"{100 * v:12.1f} " for v in valid_share).rstrip())
    for k, name in enumerate(classes):
        lines.append(f"{name:<{first}}" + "".join(f"{100 * s[k]:12.1f} " for s in shares).rstrip())
    if any(flagged):
        lines.append(f"* under {100 * few_valid:g} % valid pixels (clouds, no data): the shares describe only those pixels")
    return "\n".join(lines)


def summary(result: DemoResult) -> str:
    """A short human-readable report of a demo run: model used and why, archive, class shares."""
    from .archive import archive_info, format_info

    ds = result.cube
    n = ds.sizes["time"]
    lines = [f"dwcube demo ({result.source} scenes): {n} date(s) from {result.catalog} classified with "
             f"{result.model} -> {result.store}"]
    lines += ["  " + line for line in format_info(archive_info(result.store)).splitlines()]
    lines += ["  " + line for line in class_share_table(ds.label, list(ds["class"].values)).splitlines()]
    if result.map_png is not None:
        lines.append(f"  map: {result.map_png}")
    lines += [f"  note: {n}" for n in result.notes]
    lines.append("  timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items()))
    return "\n".join(lines)

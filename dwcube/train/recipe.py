"""The training recipe for your own data: a cube and a label raster in, a U-Net weights file out.

:func:`train_from_cube` chains the steps the shipped weights were made with
(:mod:`dwcube.train.shipped` documents that run):

1. labels → target and confidence (:mod:`dwcube.train.labels`: WorldCover codes,
   Dynamic World label maps, or a teacher's probabilities), put on the cube's grid;
2. a spatially disjoint 90:10 split by blocks, class-balanced patches with several
   dates each (:mod:`dwcube.train.sampling`);
3. the loop (:mod:`dwcube.train.loop`): augmentation (geometric, radiometric,
   Landsat-like), Adam, label smoothing, checkpoints (resumable), validation metrics;
4. a weights file ``unet.pt`` with the normalisation and the provenance, usable at once
   with :func:`dwcube.inference.classify` through :func:`dwcube.models.unet.unet_entry`.

The input normalisation defaults to the shipped model's (:data:`NORMALISATION`), so
models trained by different users take the same inputs; ``normalisation="fit"``
derives it from the training patches instead.

Examples
--------
>>> r = Recipe.quick()
>>> r.train.steps, r.sampling.patch
(30, 32)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from ..inputs import InputSpec
from ..models import unet as _unet
from .labels import from_label_map, from_probabilities, from_worldcover
from .loop import TrainConfig, TrainResult, train
from .sampling import (
    UNET_BANDS,
    NoLabelledPixelsError,
    PatchSet,
    SamplingParams,
    SplitParams,
    grid_mismatch,
    sample_patches,
)

__all__ = ["NORMALISATION", "Recipe", "align_to_cube", "fit_normalisation", "prepare_labels", "train_from_cube"]

LabelKind = Literal["auto", "worldcover", "dynamic-world", "probability"]

#: The shipped model's input normalisation, ``(x − shift) / scale`` per feature (fitted
#: once on its training patches by :func:`fit_normalisation`), then fixed for every
#: model trained with this recipe unless ``normalisation="fit"``.
NORMALISATION: tuple[dict[str, Any], ...] = _unet.SHIPPED_NORMALISATION
#: The elevation input added when :func:`train_from_cube` gets a DEM: metres, ``(x − 500) / 1000``.
ELEVATION: dict[str, Any] = {"name": "elevation", "kind": "elevation", "shift": 500.0, "scale": 1000.0, "clip": None}


def _band_setting(key: str) -> float | None:
    """The shipped normalisation's ``log_gain`` or ``floor`` of the bands (``None`` when absent)."""
    values = {r.get(key) for r in NORMALISATION if r["kind"] == "band"}
    return values.pop() if len(values) == 1 else None


@dataclass(frozen=True)
class Recipe:
    """All parameters of :func:`train_from_cube`.

    Parameters
    ----------
    sampling
        Training patches (size, count, dates per patch, balancing).
    val_samples
        Validation patches (drawn without class balancing: they measure the real mix).
    split
        The spatial split.
    train
        Loop parameters (model, steps, augmentation...).
    normalisation
        ``"shipped"`` (:data:`NORMALISATION`) or ``"fit"`` (from the training patches).

    Examples
    --------
    >>> Recipe().split.val_fraction
    0.1
    """

    sampling: SamplingParams = field(default_factory=lambda: SamplingParams(patch=96, n_samples=2000))
    val_samples: int = 200
    split: SplitParams = field(default_factory=lambda: SplitParams(block=96))
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=3000, batch_size=16))
    normalisation: Literal["shipped", "fit"] = "shipped"

    @classmethod
    def quick(cls) -> Recipe:
        """A seconds-long recipe (tiny model, few steps) for tests and trying the pipeline.

        Examples
        --------
        >>> Recipe.quick().train.model.widths
        (8, 8, 16, 16)
        """
        from ..models.unet import UNetConfig

        return cls(sampling=SamplingParams(patch=32, n_samples=64, dates_per_sample=2), val_samples=16,
                   split=SplitParams(block=32),
                   train=TrainConfig(steps=30, batch_size=8, lr=5e-3, warmup=5, checkpoint_every=10,
                                     model=UNetConfig(widths=(8, 8, 16, 16), attention=True, aspp=True)))


def _kind(name: str) -> str:
    from ..indices import INDICES

    return "index" if name in INDICES else "elevation" if name == "elevation" else "band"


def fit_normalisation(ps: PatchSet, features: Sequence[str] = _unet.FEATURES, *,
                      band_log_gain: float | None = None, band_floor: float | None = None,
                      max_patches: int = 2000) -> list[dict[str, Any]]:
    """Per-feature ``shift`` (median) and ``scale`` (half the 10–90 % range) from training patches.

    With ``band_log_gain`` the bands are first mapped to ``ln(1 + gain·x)`` (the record
    keeps ``log_gain``), which keeps very bright surfaces (snow, ~1.2) within a few scales;
    ``band_floor`` raises slightly negative surface reflectance to it first (record ``floor``).
    At most ``max_patches`` patches (a seeded random subset) are read, which bounds memory.

    Rounded to 3 significant digits.  Elevation gets ``shift`` 500 m, ``scale`` 1000 m
    (fixed: a small training area says little about the elevations a model will meet).
    Indices are clipped to ±4 scales after normalising (a near-zero denominator,
    e.g. over dark water in Landsat's surface reflectance, must not produce huge inputs).
    This is the function :data:`dwcube.models.unet.SHIPPED_NORMALISATION` came from.

    Examples
    --------
    >>> ps = PatchSet.empty(UNET_BANDS, 4)
    >>> ps.reflectance = np.random.default_rng(0).uniform(0.0, 0.4, (2, 1, 6, 4, 4)).astype(np.float16)
    >>> rec = fit_normalisation(ps)
    >>> rec[0]["name"], rec[-1]["name"], rec[-1]["shift"]   # bands, then NDVI, NDMI, MNDWI
    ('blue', 'mndwi', -0.0845)
    """
    from .augment import reflectance_features

    def sig3(v: float) -> float:
        return float(f"{v:.3g}")

    probe = _unet.input_spec([{"name": n, "kind": _kind(n), "shift": 0.0, "scale": 1.0,
                               "log_gain": band_log_gain if _kind(n) == "band" else None,
                               "floor": band_floor if _kind(n) == "band" else None} for n in features])
    if len(ps) > max_patches:
        ps = ps.subset(np.sort(np.random.default_rng(0).choice(len(ps), size=max_patches, replace=False)))
    refl = ps.reflectance.astype(np.float32).reshape(-1, len(ps.bands), ps.patch, ps.patch)
    elev = np.zeros((refl.shape[0], ps.patch, ps.patch), np.float32)
    feats = reflectance_features(refl, ps.bands, probe, elev)
    out = []
    for i, name in enumerate(features):
        kind = _kind(name)
        if kind == "elevation":
            out.append({"name": name, "kind": kind, "shift": 500.0, "scale": 1000.0, "clip": None})
            continue
        v = feats[:, i][np.isfinite(feats[:, i])]
        lo, med, hi = np.percentile(v, [10, 50, 90]) if v.size else (0.0, 0.0, 1.0)
        rec = {"name": name, "kind": kind, "shift": sig3(med), "scale": sig3(max((hi - lo) / 2, 1e-3)),
               "clip": [-4.0, 4.0] if kind == "index" else None}
        if kind == "band" and band_log_gain is not None:
            rec["log_gain"] = band_log_gain
        if kind == "band" and band_floor is not None:
            rec["floor"] = band_floor
        out.append(rec)
    return out


def align_to_cube(raster: xr.DataArray, cube: xr.Dataset) -> xr.DataArray:
    """A label raster on the cube's grid: as is when the grids match, else nearest-neighbour reprojected.

    Parameters
    ----------
    raster
        ``(y, x)`` (or ``(band=1, y, x)``) labels with a CRS (rioxarray) when they need
        reprojecting; probabilities may carry ``class`` (and ``time``) as well.

    Examples
    --------
    >>> from dwcube.testing import synthetic_cube
    >>> cube = synthetic_cube(8, 1)
    >>> lab = xr.DataArray(np.zeros((8, 8), np.uint8), dims=("y", "x"), coords={"y": cube.y, "x": cube.x})
    >>> align_to_cube(lab, cube).shape
    (8, 8)
    """
    if "band" in raster.dims and raster.sizes["band"] == 1:
        raster = raster.squeeze("band", drop=True)
    ydim, xdim = cube.odc.spatial_dims
    if ydim in raster.dims and xdim in raster.dims and grid_mismatch(raster, cube) is None:
        return raster
    import rioxarray  # noqa: F401  (registers .rio)
    from rasterio.enums import Resampling

    if raster.rio.crs is None:
        raise ValueError("the label raster's grid differs from the cube's and it has no CRS to reproject from")
    like = cube[next(iter(cube.data_vars))].isel(time=0, drop=True)
    if like.rio.crs is None:
        like = like.rio.write_crs(cube.odc.crs.to_wkt())
    # read only the part over the cube (a WorldCover tile is 36000² px), with a margin of 2 % + 4 px
    left, bottom, right, top = cube.odc.geobox.extent.to_crs(raster.rio.crs).boundingbox
    rx, ry = (abs(float(v)) for v in raster.rio.resolution())
    mx, my = 0.02 * (right - left) + 4 * rx, 0.02 * (top - bottom) + 4 * ry
    try:
        raster = raster.rio.clip_box(left - mx, bottom - my, right + mx, top + my)
    except Exception as exc:  # rioxarray's NoDataInBounds / OneDimensionalRaster
        raise ValueError(f"the label raster does not cover the cube ({type(exc).__name__}: {exc})") from exc
    out = raster.rio.reproject_match(like, resampling=Resampling.nearest)
    return out.assign_coords({ydim: cube[ydim].values, xdim: cube[xdim].values})


def prepare_labels(labels: xr.DataArray | xr.Dataset, kind: LabelKind = "auto") -> xr.Dataset:
    """A label dataset (``target``, ``confidence``, ``label``) from any supported label source.

    Parameters
    ----------
    labels
        WorldCover codes, Dynamic World labels (0–8, 255 no data; with or without
        ``time``), probabilities with a ``class`` dimension, or an already prepared
        label dataset.
    kind
        ``"auto"``: probabilities when there is a ``class`` dimension, WorldCover when
        any code is ≥ 10 (other than 255), else Dynamic World labels.

    Examples
    --------
    >>> prepare_labels(xr.DataArray(np.array([[10, 50]]), dims=("y", "x"))).label.values
    array([[1, 6]], dtype=uint8)
    """
    if isinstance(labels, xr.Dataset):
        if {"target", "confidence", "label"} <= set(labels.data_vars):
            return labels
        raise ValueError("a label Dataset needs target, confidence and label (see dwcube.train.labels)")
    if kind == "auto":
        if "class" in labels.dims:
            kind = "probability"
        else:
            codes = labels.where(labels != 255)
            kind = "worldcover" if float(codes.max()) >= 10 else "dynamic-world"
    if kind == "probability":
        return from_probabilities(labels)
    if kind == "worldcover":
        return from_worldcover(labels)
    if kind == "dynamic-world":
        return from_label_map(labels, source="Dynamic World labels")
    raise ValueError(f"unknown label kind {kind!r}")


def _platform(cube: xr.Dataset) -> str:
    """The cube's Sentinel-2 platform (most frequent over dates; ``sentinel-2a`` when unknown).

    :func:`dwcube.load` records the platform per date as a ``platform`` coordinate.

    Examples
    --------
    >>> from dwcube.testing import synthetic_cube
    >>> cube = synthetic_cube(4, 3)
    >>> _platform(cube.assign_coords(platform=("time", ["sentinel-2b", "sentinel-2b", "sentinel-2a"])))
    'sentinel-2b'
    """
    values: list[str] = []
    if "platform" in cube.coords:
        values = [str(v).lower() for v in np.ravel(cube["platform"].values)]
    elif "platform" in cube.attrs:
        values = [str(cube.attrs["platform"]).lower()]
    values = [v for v in values if v.startswith("sentinel-2")]
    if not values:
        return "sentinel-2a"
    names, counts = np.unique(values, return_counts=True)
    return str(names[int(np.argmax(counts))])


def train_from_cube(
    cube: xr.Dataset,
    labels: xr.DataArray | xr.Dataset,
    out_dir: str | Path,
    *,
    kind: LabelKind = "auto",
    dem: xr.Dataset | xr.DataArray | None = None,
    recipe: Recipe = Recipe(),
    resume: bool = True,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    source: str = "user data",
    metadata: Mapping[str, Any] | None = None,
) -> TrainResult:
    """Train the U-Net on a reflectance cube and its labels (the documented recipe).

    Parameters
    ----------
    cube
        Reflectance cube from :func:`dwcube.load` with ``blue, green, red, nir08,
        swir16, swir22`` (Sentinel-2 loaded with those bands, or Landsat), any number
        of dates (they share the labels: temporal augmentation).
    labels
        Label raster or probabilities (see :func:`prepare_labels`) on the cube's grid,
        or with a CRS to be reprojected onto it (:func:`align_to_cube`).
    out_dir
        Run folder (checkpoints, metrics, ``unet.pt``); rerunning resumes.
    kind
        Label kind (see :func:`prepare_labels`).
    dem
        Elevation on the cube's grid: when given, elevation (metres, :data:`ELEVATION`)
        becomes a tenth input of the model; without it the model has no elevation input
        (the shipped weights have none either).
    recipe
        All parameters.
    source
        Name recorded with the patches and in the weights' provenance.

    Returns
    -------
    TrainResult
        Weights file, SHA-256, validation metrics, history.

    Examples
    --------
    >>> from dwcube.testing import synthetic_cube
    >>> cube = synthetic_cube(64, 2, bands=UNET_BANDS)
    >>> wc = xr.DataArray(np.where(cube.nir08.isel(time=0) > 0.2, 10, 80).astype(np.uint8),
    ...                   dims=("y", "x"), coords={"y": cube.y, "x": cube.x})
    >>> import tempfile, warnings
    >>> with tempfile.TemporaryDirectory() as d, warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     res = train_from_cube(cube, wc, d, recipe=Recipe.quick(), resume=False, progress=False)
    ...     (res.weights.name, len(res.history) == Recipe.quick().train.steps, len(res.sha256))
    ('unet.pt', True, 64)
    """
    if not isinstance(labels, xr.Dataset):
        labels = align_to_cube(labels, cube)
    lab = prepare_labels(labels, kind)
    ydim, xdim = cube.odc.spatial_dims
    rename = {d: n for d, n in zip(lab.label.dims, (ydim, xdim), strict=True) if d != n}
    lab = lab.rename(rename) if rename else lab
    bands = list(UNET_BANDS)
    missing = [b for b in bands if b not in cube.data_vars]
    if missing:
        raise KeyError(f"the cube lacks bands the U-Net needs: {', '.join(missing)}")
    platform = _platform(cube)
    config = recipe.train
    if str(cube.attrs.get("sensor", "")).lower().startswith("landsat") and config.augment.landsat_fraction:
        # the cube is Landsat already: simulating Landsat from it would apply the bandpass twice
        config = replace(config, augment=replace(config.augment, landsat_fraction=0.0))
        if log:
            log("Landsat cube: cross-sensor (Landsat-like) augmentation turned off")
    tr = sample_patches(cube, lab, recipe.sampling, split=recipe.split, side="train", bands=bands, dem=dem,
                        source=source, platform=platform)
    try:
        va: PatchSet | None = sample_patches(
            cube, lab, replace(recipe.sampling, n_samples=recipe.val_samples, balance="none"), split=recipe.split,
            side="val", bands=bands, dem=dem, source=source, platform=platform)
    except NoLabelledPixelsError as exc:
        warnings.warn(f"no validation patches ({exc}); training without validation metrics - a smaller "
                      "split block gives the validation side some labelled pixels", UserWarning, stacklevel=2)
        va = None
    records = fit_normalisation(tr, band_log_gain=_band_setting("log_gain"), band_floor=_band_setting("floor")) \
        if recipe.normalisation == "fit" \
        else [dict(r) for r in NORMALISATION]
    if dem is not None:  # a real DEM makes elevation an input; without one the model never sees it
        records.append(dict(ELEVATION))
    spec: InputSpec = _unet.input_spec(records)
    if config.model.in_channels != len(records):
        config = replace(config, model=replace(config.model, in_channels=len(records)))
    meta = {"recipe": "dwcube.train.recipe.train_from_cube", "labels": lab.attrs.get("label_source", ""),
            "source": source, "split": asdict(recipe.split), **dict(metadata or {})}
    result = train(tr, va, spec, config, out_dir, resume=resume, progress=progress, log=log, metadata=meta)
    assert result is not None  # (only a stop_after run returns None)
    return result

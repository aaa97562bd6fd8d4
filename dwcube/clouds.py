"""Cloud and cloud-shadow masks for top-of-atmosphere Sentinel-2 (L1C) cubes.

L1C products carry no scene classification, and Dynamic World labels missed clouds as
``snow_and_ice`` and missed shadows as ``water``.  This module follows Dynamic World's
own masking recipe (Google's Earth Engine example ``Sentinel2CloudAndShadow.js``):

1. **cloud probability** from the s2cloudless LightGBM model (Sinergise / Sentinel Hub,
   CC-BY-SA-4.0; its model file ships with dwcube in ``dwcube/data/s2cloudless/``, see the
   NOTICE there) on ten L1C bands, per pixel on the cube's grid (``mode="exact"``, as Earth
   Engine's product), or on an 80 m grid refined at full resolution near the threshold
   (``mode="fast"``, :func:`cloud_probability_fast`) — or a catalogue's own
   cloud-probability asset when the cube has one;
2. **cloud** where probability > 65 % and the cloud displacement index (Frantz et al.
   2018) < −0.5, or where the cirrus band B10 > 0.01;
3. **morphology**: erosion by 60 m then dilation by 320 m (EE ``focal_min(3)`` and
   ``focal_max(16)`` at 20 m), which removes isolated false positives and buffers clouds;
4. **shadows**: every pixel up to 5 km from a cloud in the direction away from the sun
   (the scene's solar azimuth; with ``cloud_heights`` and the zenith, only the distances
   ``h·tan(zenith)`` those heights cast).

Every window and distance is in metres on the ground, converted per axis with the grid's
true pixel size and north/east directions (:func:`ground_geometry`, geodesics at the grid's
centre): on a latitude/longitude grid, whose pixels are taller than wide away from the
equator, the buffer is a disk on the ground and the shadows fall the right distance towards
the anti-solar azimuth, as on UTM.  Pixels without data count as missing, never as clear
ground next to a cloud.

Everything is lazy and chunk-invariant (``map_overlap`` with the exact context each step
needs).  Every threshold is a field of :class:`CloudMaskParams` with the published default.

Examples
--------
On an L1C cube from :func:`dwcube.load` (``cloud_mask=False`` keeps the clouds in), or on a
synthetic one with one painted cloud and its shadow:

>>> from dwcube.testing import synthetic_cloudy_cube
>>> cube, truth = synthetic_cloudy_cube(64, chunks=32)
>>> m = cloud_mask(cube).compute()
>>> cloud, shadow = truth.cloud.values, truth.shadow.values
>>> bool(m.cloud.values[cloud].all()), round(float(m.shadow.values[shadow].mean()), 2)   # share found
(True, 0.79)
"""

from __future__ import annotations

import functools
import hashlib
import lzma
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import dask.array as da
import numba
import numpy as np
import odc.geo.xr  # noqa: F401 - registers .odc (used here) now that `import dwcube` is lazy
import xarray as xr
from scipy import ndimage

from .gbdt import TreeModel
from .sensors.base import MessageKeyError

__all__ = [
    "CLOUD_BANDS",
    "S2CLOUDLESS_BANDS",
    "CloudMaskParams",
    "GroundGeometry",
    "MissingBandsError",
    "cloud_displacement_index",
    "cloud_mask",
    "cloud_probability",
    "cloud_probability_fast",
    "ground_geometry",
    "project_shadows",
]

#: The ten L1C bands of the s2cloudless model, in its feature order (B01 B02 B04 B05 B08 B8A B09 B10 B11 B12).
S2CLOUDLESS_BANDS: tuple[str, ...] = ("coastal", "blue", "red", "rededge1", "nir", "nir08", "nir09", "cirrus",
                                      "swir16", "swir22")
#: Every band the full recipe reads (s2cloudless, plus B07 for the displacement index).
CLOUD_BANDS: tuple[str, ...] = S2CLOUDLESS_BANDS + ("rededge3",)
#: The s2cloudless model file (s2cloudless 1.7.3, ``s2cloudless/models/``), xz-compressed, CC-BY-SA-4.0.
S2CLOUDLESS_MODEL_FILE = (Path(__file__).resolve().parent / "data" / "s2cloudless"
                          / "pixel_s2_cloud_detector_lightGBM_v0.1.txt.xz")
#: SHA-256 of the original, uncompressed file (checked on every read).
S2CLOUDLESS_MODEL_SHA256 = "0f92b6822cc0ad42982f55bab9b1688329e119451ad9a9e0a56384b9f37bc61d"


class MissingBandsError(MessageKeyError):
    """The cube lacks bands the cloud mask needs; the message names them."""


@dataclass(frozen=True)
class CloudMaskParams:
    """Dynamic World's cloud and shadow recipe; defaults are the published values.

    Parameters
    ----------
    probability_threshold
        Cloud where the s2cloudless probability exceeds it (0–1; DW: 0.65).
    cdi_threshold
        ... and the cloud displacement index is below it (DW: −0.5).  ``None`` skips the test.
    cdi_window_m
        Side of the local-variance window of the displacement index (7 px at 20 m = 140 m).
    cirrus_threshold
        Cloud wherever B10 (cirrus) reflectance exceeds it (DW: 0.01).  ``None`` skips it.
    erosion_m, dilation_m
        Disk radii of the opening and buffer (DW: 60 m and 320 m: 3 and 16 px at 20 m).
    shadow_distance_m
        Farthest shadow from its cloud, along the ground (DW: 5000 m).
    cloud_heights_m
        ``(lowest, highest)`` cloud top heights (m); with the solar zenith known, shadows are
        cast only at distances ``h·tan(zenith)`` for those heights (capped by
        ``shadow_distance_m``).  ``None`` (DW): every distance from 0 to ``shadow_distance_m``.
    dark_nir_threshold
        Optionally keep only shadow pixels darker than this in B08 (the s2cloudless EE
        tutorial uses 0.15); ``None`` (DW): no darkness test.
    mode
        How the probability test is evaluated.  ``"exact"`` (the default here, as Earth
        Engine's product): s2cloudless on every pixel of the cube's grid.  ``"fast"``:
        s2cloudless on a coarse grid of samples every ``fast_step_m`` (the cube's own pixels
        at rows and columns that are multiples of the step), and at full resolution only
        where the samples around a pixel do not all lie more than ``fast_margin`` on the same
        side of ``probability_threshold`` and the probability can change the cloud test at all
        (displacement index below ``cdi_threshold``, cirrus not above ``cirrus_threshold``;
        :func:`cloud_probability_fast`).  The mask is then the exact mode's wherever the
        samples are representative; ``cloud_probability`` is exact only where it decided.  Measured on the
        real L1C scenes: ≥ 99.9 % of pixels decided as in ``"exact"`` (benchmarks/README.md).
    fast_step_m
        Spacing of the coarse samples in ``"fast"`` mode (m on the ground; 80 m = 8 px at 10 m).
        80 m is the largest spacing at which every cloud that survives the opening (it holds a
        disk of ``erosion_m``: 120 m across, so a square of 85 m) contains a sample, so that no
        such cloud can hide between samples; with a smaller ``erosion_m``, use a smaller step.
    fast_margin
        Probability margin around the threshold inside which ``"fast"`` mode refines (0–1).

    Examples
    --------
    >>> CloudMaskParams().probability_threshold
    0.65
    """

    probability_threshold: float = 0.65
    cdi_threshold: float | None = -0.5
    cdi_window_m: float = 140.0
    cirrus_threshold: float | None = 0.01
    erosion_m: float = 60.0
    dilation_m: float = 320.0
    shadow_distance_m: float = 5000.0
    cloud_heights_m: tuple[float, float] | None = None
    dark_nir_threshold: float | None = None
    mode: Literal["exact", "fast"] = "exact"
    fast_step_m: float = 80.0
    fast_margin: float = 0.2

    def __post_init__(self) -> None:
        if self.mode not in ("exact", "fast"):
            raise ValueError(f"mode must be 'exact' or 'fast', got {self.mode!r}")
        if not self.fast_step_m > 0:
            raise ValueError(f"fast_step_m must be > 0 metres, got {self.fast_step_m}")
        if not 0.0 <= self.fast_margin <= 1.0:
            raise ValueError(f"fast_margin is a probability margin (0-1), got {self.fast_margin}")
        if not 0.0 <= self.probability_threshold <= 1.0:
            raise ValueError(f"probability_threshold is a probability (0-1), got {self.probability_threshold}")
        for name in ("cdi_window_m", "erosion_m", "dilation_m", "shadow_distance_m"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.cloud_heights_m is not None and not 0 <= self.cloud_heights_m[0] <= self.cloud_heights_m[1]:
            raise ValueError(f"cloud_heights_m must be (low, high) with 0 <= low <= high, got {self.cloud_heights_m}")

    def describe(self) -> str:
        """One line for ``attrs``."""
        return "dynamic-world cloud/shadow mask: " + ", ".join(f"{k}={v}" for k, v in asdict(self).items())


# --- s2cloudless ------------------------------------------------------------------------------
def _model_text() -> str:
    """The s2cloudless model file, decompressed and checked: byte for byte the original."""
    data = lzma.decompress(S2CLOUDLESS_MODEL_FILE.read_bytes())
    got = hashlib.sha256(data).hexdigest()
    if got != S2CLOUDLESS_MODEL_SHA256:
        raise RuntimeError(f"{S2CLOUDLESS_MODEL_FILE}: SHA-256 {got} is not the s2cloudless model's "
                           f"{S2CLOUDLESS_MODEL_SHA256}; reinstall dwcube")
    return data.decode("ascii")


@functools.lru_cache(maxsize=1)
def _tree_model() -> TreeModel:
    """The s2cloudless model, parsed once per process (never shipped in task graphs).

    Evaluated by :mod:`dwcube.gbdt` (compiled, GIL-free, equal to ``lightgbm.Booster.predict``).
    """
    return TreeModel.from_string(_model_text())


def _probability_block(*bands: np.ndarray) -> np.ndarray:
    """s2cloudless probability of one block; NaN where any band is NaN."""
    stack = np.stack([np.asarray(b, dtype=np.float64) for b in bands], axis=-1)
    shape = stack.shape[:-1]
    flat = stack.reshape(-1, stack.shape[-1])
    ok = np.isfinite(flat).all(axis=1)
    out = np.full(flat.shape[0], np.nan, dtype=np.float32)
    if ok.any():
        out[ok] = _tree_model().predict(flat[ok]).astype(np.float32)
    return out.reshape(shape)


def _require(cube: xr.Dataset, bands: tuple[str, ...], what: str) -> None:
    missing = [b for b in bands if b not in cube.data_vars]
    if missing:
        raise MissingBandsError(f"{what} needs bands {', '.join(missing)} (Sentinel-2 L1C; load them with "
                                f"bands=[..., {', '.join(repr(b) for b in missing)}])")


def cloud_probability(cube: xr.Dataset) -> xr.DataArray:
    """Cloud probability (0–1) per pixel and date, lazily.

    Uses the cube's own ``cloud_probability`` variable when it has one (a catalogue's
    cloud-probability asset, loaded with the cube), else the s2cloudless model on the ten
    L1C bands of :data:`S2CLOUDLESS_BANDS` (top-of-atmosphere reflectance, baseline ≥ 04.00
    offset removed — as :func:`dwcube.load` gives them), pixel by pixel on the cube's grid.

    Parameters
    ----------
    cube
        Reflectance cube ``(time, y, x)``.

    Returns
    -------
    xarray.DataArray
        float32 ``(time, y, x)`` named ``cloud_probability``; NaN where an input band is NaN.

    Raises
    ------
    MissingBandsError
        Naming the bands the cube lacks.

    Examples
    --------
    >>> from dwcube.testing import synthetic_cloudy_cube
    >>> cube, truth = synthetic_cloudy_cube(32)
    >>> p = cloud_probability(cube).values
    >>> clear = ~truth.cloud.values & ~truth.shadow.values
    >>> round(float(p[truth.cloud.values].mean()), 2), round(float(p[clear].mean()), 3)   # cloud, clear ground
    (0.99, 0.004)
    """
    if "cloud_probability" in cube.data_vars:
        # a catalogue layer: its no-data (0 % on Sentinel-2 layers) reads as NaN, i.e. clear
        p = cube["cloud_probability"].astype(np.float32)
        p.attrs = {**p.attrs, "source": p.attrs.get("source", "catalogue asset")}
        return p.rename("cloud_probability")
    _require(cube, S2CLOUDLESS_BANDS, "s2cloudless")
    out = xr.apply_ufunc(_probability_block, *[cube[b] for b in S2CLOUDLESS_BANDS],
                         dask="parallelized", output_dtypes=[np.float32])
    out.name = "cloud_probability"
    out.attrs = {"long_name": "cloud probability", "units": "1",
                 "source": "s2cloudless 1.x LightGBM model (Sinergise / Sentinel Hub, CC-BY-SA-4.0), per pixel, "
                           "evaluated by dwcube.gbdt"}
    return out


def _refine_block(fill: np.ndarray, lo: np.ndarray, hi: np.ndarray, needed: np.ndarray | None, *bands: np.ndarray,
                  threshold: float, margin: float) -> np.ndarray:
    """Fast-mode probability of one block: ``fill`` where the samples around a pixel are sure, else exact.

    ``lo``/``hi`` are the smallest and largest coarse sample around each pixel (NaN if one is
    missing, which makes the pixel unsure); a pixel is sure when ``lo > threshold + margin``
    (cloud) or ``hi < threshold − margin`` (clear), and then keeps ``fill``, its cell's sample,
    which lies on the same side of the threshold.  Unsure pixels get s2cloudless itself, unless
    ``needed`` (boolean, same shape, or ``None``: everywhere) says the decision does not depend
    on them; those keep ``fill`` too, unless it is NaN (no sample in the cell).
    """
    ok = functools.reduce(np.logical_and, [np.isfinite(b) for b in bands])
    with np.errstate(invalid="ignore"):
        sure = (lo > threshold + margin) | (hi < threshold - margin)
    out = np.where(ok, fill, np.nan).astype(np.float32)
    refine = ok & ~sure
    if needed is not None:
        # a valid pixel whose cell has no sample is refined anyway: NaN means no data only
        refine &= np.asarray(needed, dtype=bool) | np.isnan(fill)
    if refine.any():
        stack = np.stack([np.asarray(b)[refine] for b in bands], axis=-1).astype(np.float64)  # only those pixels
        out[refine] = _tree_model().predict(stack).astype(np.float32)
    return out


def _upsample(a: Any, step: tuple[int, int], shape: tuple[int, int]) -> Any:
    """Each coarse cell's value repeated over the ``step`` pixels it stands for, cut to ``shape``."""
    xp = da if isinstance(a, da.Array) else np
    a = xp.repeat(xp.repeat(a, step[0], axis=1), step[1], axis=2)
    return a[:, :shape[0], :shape[1]]


def cloud_probability_fast(cube: xr.Dataset, params: CloudMaskParams | None = None, *,
                           needed: xr.DataArray | None = None) -> xr.DataArray:
    """s2cloudless probability, exact only where it can decide ``probability > threshold``, lazily.

    The model is evaluated on the cube's own pixels at rows and columns that are multiples of
    the coarse step (``params.fast_step_m`` on the ground, per axis), counted from the grid's
    origin — so the samples, and the result, do not depend on the chunks.  A pixel whose cell
    corners (the samples at its cell's four corners) all lie more than ``params.fast_margin``
    above the threshold is cloud, all more than the margin below it clear: it takes its cell's
    sample as value.  Every other pixel (cloud edges, haze near the threshold, no data among
    the samples) is evaluated at full resolution, as :func:`cloud_probability`.  At the samples
    themselves the value is exact.

    Parameters
    ----------
    cube
        Reflectance cube ``(time, y, x)`` with :data:`S2CLOUDLESS_BANDS`.
    params
        ``probability_threshold``, ``fast_step_m`` and ``fast_margin`` are used.
    needed
        Boolean ``(time, y, x)`` on the cube's grid (lazy or not): where the caller's decision
        depends on the probability at all.  Elsewhere no pixel is refined and the value is
        the cell's sample.  :func:`cloud_mask` passes the pixels whose cloud test the
        probability can change: displacement index below its threshold, cirrus not above
        its own (on most clear land the index alone decides).  ``None``: every pixel.

    Returns
    -------
    xarray.DataArray
        float32 ``(time, y, x)`` named ``cloud_probability``: on the same side of the threshold
        as s2cloudless wherever the coarse samples are representative and ``needed`` holds; the
        cell's coarse sample where ``needed`` is false; NaN where an input band is.

    Examples
    --------
    >>> from dwcube.testing import synthetic_cloudy_cube
    >>> cube, truth = synthetic_cloudy_cube(64, chunks=32)          # 60 m pixels: samples every 4 px
    >>> params = CloudMaskParams(mode="fast", fast_step_m=240.0)
    >>> exact, fast = cloud_probability(cube).values, cloud_probability_fast(cube, params).values
    >>> bool(((fast > 0.65) == (exact > 0.65)).all()), bool((fast == exact).mean() < 0.5)   # same decisions, fewer trees
    (True, True)
    >>> cloud_probability_fast(cube, params).attrs["source"][-61:]
    'every 4x4 px and at full resolution within 0.2 of 0.65 (fast)'

    """
    p = params or CloudMaskParams(mode="fast")
    if "cloud_probability" in cube.data_vars:
        return cloud_probability(cube)
    _require(cube, S2CLOUDLESS_BANDS, "s2cloudless")
    ydim, xdim = cube.odc.spatial_dims
    geometry = ground_geometry(cube)
    step = tuple(max(int(round(p.fast_step_m / r)), 1) for r in geometry.pixel_m)
    bands = [cube[b].transpose("time", ydim, xdim) for b in S2CLOUDLESS_BANDS]
    shape = (cube.sizes[ydim], cube.sizes[xdim])
    coarse = cloud_probability(cube[list(S2CLOUDLESS_BANDS)].isel({ydim: slice(None, None, step[0]),
                                                                    xdim: slice(None, None, step[1])}))
    c = coarse.transpose("time", ydim, xdim).data
    xp = da if isinstance(c, da.Array) else np
    # the four corners of each cell: the sample itself, the next one down, right, diagonal
    # (the last row and column repeat, as beyond the grid there is no sample)
    cp = xp.concatenate([c, c[:, -1:]], axis=1)
    cp = xp.concatenate([cp, cp[:, :, -1:]], axis=2)
    corners = [cp[:, a:a + c.shape[1], b:b + c.shape[2]] for a in (0, 1) for b in (0, 1)]
    lo = functools.reduce(xp.minimum, corners)
    hi = functools.reduce(xp.maximum, corners)
    fine = [_upsample(v, step, shape) for v in (c, lo, hi)]
    if xp is da:
        chunks = bands[0].data.chunks
        fine = [v.rechunk(chunks) for v in fine]
    fn = functools.partial(_refine_block, threshold=p.probability_threshold, margin=p.fast_margin)
    need = None if needed is None else needed.transpose("time", ydim, xdim).data
    if xp is da:
        if need is not None:
            need = da.asarray(need).rechunk(chunks)
        data = da.map_blocks(fn, *fine, need, *[b.data for b in bands], dtype=np.float32)
    else:
        data = fn(*fine, None if need is None else np.asarray(need), *[b.values for b in bands])
    out = xr.DataArray(data, coords=bands[0].coords, dims=("time", ydim, xdim), name="cloud_probability")
    out.attrs = {"long_name": "cloud probability", "units": "1",
                 "source": f"s2cloudless 1.x LightGBM model (Sinergise / Sentinel Hub, CC-BY-SA-4.0), evaluated by "
                           f"dwcube.gbdt every {step[0]}x{step[1]} px and at full resolution within "
                           f"{p.fast_margin} of {p.probability_threshold} (fast)"}
    return out


# --- cloud displacement index -----------------------------------------------------------------
def _odd(n: float) -> int:
    k = max(int(round(n)), 1)
    return k if k % 2 else k + 1


def _box_mean(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Mean over a moving ``size`` box of the finite values of a ``(time, y, x)`` block; NaN where none.

    ``uniform_filter`` is a running sum along each line, so one NaN would poison the rest of
    its row; NaN count here as missing instead (a normalised box sum).  Without NaN this
    is ``uniform_filter`` itself, bit for bit (the box count is then exactly 1).
    """
    ok = np.isfinite(x)
    if ok.all():  # the common case: the box count is 1 everywhere
        return ndimage.uniform_filter(x, size=(1, *size), mode="nearest")
    total = ndimage.uniform_filter(np.where(ok, x, 0.0), size=(1, *size), mode="nearest")
    count = ndimage.uniform_filter(ok.astype(np.float64), size=(1, *size), mode="nearest")
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(count > 0, total / count, np.nan)


def _cdi_block(b7: np.ndarray, b8: np.ndarray, b8a: np.ndarray, *, window: tuple[int, int],
               smooth: tuple[int, int] = (1, 1)) -> np.ndarray:
    """The index of one ``(time, y, x)`` block; ``window`` and ``smooth`` are ``(rows, columns)`` box sides.

    NaN where any of the three bands is NaN; next to no data (a scene edge, the margins of a
    reprojected footprint) the boxes average the valid pixels they hold.
    """
    b7, b8, b8a = (np.asarray(b, np.float64) for b in (b7, b8, b8a))
    missing = ~(np.isfinite(b7) & np.isfinite(b8) & np.isfinite(b8a))
    if max(smooth) > 1:
        # the index is defined on 20 m bands: B8 (10 m) averaged like the 20 m bands, as a
        # moving box so that every pixel, whatever its phase, is treated alike
        b7, b8, b8a = (_box_mean(b, smooth) for b in (b7, b8, b8a))
    with np.errstate(divide="ignore", invalid="ignore"):
        r8 = b8 / b8a
        r7 = b7 / b8a

        def var(r: np.ndarray) -> np.ndarray:
            r = np.where(missing, np.nan, r)
            m = _box_mean(r, window)
            m2 = _box_mean(r * r, window)
            return np.maximum(m2 - m * m, 0.0)

        v8, v7 = var(r8), var(r7)
        cdi = ((v7 - v8) / (v7 + v8)).astype(np.float32)
    cdi[missing] = np.nan
    return cdi


@dataclass(frozen=True)
class GroundGeometry:
    """What one pixel of a grid is on the ground, at the grid's centre.

    Attributes
    ----------
    pixel_m
        ``(row, column)`` ground length (m) of one step along each grid axis.  On a
        latitude/longitude grid the two differ (a degree of longitude shrinks with
        ``cos(latitude)``); on UTM they are the nominal resolution times the local scale.
    north, east
        ``(drow, dcol)`` per metre on the ground towards true north and true east: on a
        north-up projected grid ``(−1/pixel_m[0], 0)`` and ``(0, 1/pixel_m[1])`` up to the
        meridian convergence.

    Examples
    --------
    >>> g = GroundGeometry.north_up(10.0)
    >>> g.pixel_m, g.north, g.east
    ((10.0, 10.0), (-0.1, 0.0), (0.0, 0.1))
    """

    pixel_m: tuple[float, float]
    north: tuple[float, float]
    east: tuple[float, float]

    @classmethod
    def north_up(cls, resolution: float | tuple[float, float]) -> GroundGeometry:
        """A north-up grid of ``resolution`` metres (one number, or ``(row, column)``)."""
        ry, rx = (resolution, resolution) if np.isscalar(resolution) else resolution  # type: ignore[misc]
        ry, rx = float(ry), float(rx)
        if not (ry > 0 and rx > 0):
            raise ValueError(f"resolution must be > 0 metres, got {resolution}")
        return cls((ry, rx), (-1.0 / ry, 0.0), (0.0, 1.0 / rx))

    @property
    def finest_m(self) -> float:
        """The smaller of the two ground pixel lengths (m)."""
        return min(self.pixel_m)

    def radius_px(self, metres: float) -> tuple[int, tuple[float, float] | None]:
        """A disk of ``metres`` as ``(radius, sampling)`` for distance transforms: the radius in
        units of the finest pixel length (rounded, like Earth Engine's pixel kernels) and the
        ``(row, column)`` pixel lengths in those units — ``None`` for square pixels (lengths
        within 0.1 %, as on UTM, where they differ only by rounding of the geodesics)."""
        s0 = self.finest_m
        sampling = (self.pixel_m[0] / s0, self.pixel_m[1] / s0)
        return int(round(metres / s0)), (None if max(sampling) < 1.001 else sampling)


def ground_geometry(grid: xr.Dataset | xr.DataArray | Any) -> GroundGeometry:
    """The ground geometry of a cube's grid (or an odc-geo ``GeoBox``) at its centre pixel.

    Geodesic lengths on the CRS's ellipsoid (:class:`pyproj.Geod`): one pixel step along each
    axis, and the pixel displacement of a metre towards north and east.  Any CRS works —
    UTM (metres), latitude/longitude (degrees), feet — and every window of the cloud mask
    is converted with it, so a mask on ``EPSG:4326`` measures its 60 m, 320 m and 5 km in
    metres like one on UTM.

    Raises
    ------
    ValueError
        The cube has no grid/CRS (``spatial_ref``).

    Examples
    --------
    >>> from odc.geo.geobox import GeoBox
    >>> g = ground_geometry(GeoBox.from_bbox((14.55, 45.86, 14.57, 45.88), crs="EPSG:4326", resolution=0.0001))
    >>> [round(v, 2) for v in g.pixel_m]        # metres per pixel: north-south, east-west
    [11.11, 7.76]
    """
    import pyproj

    gbox = grid if hasattr(grid, "affine") and hasattr(grid, "crs") else getattr(grid, "odc", None)
    gbox = getattr(gbox, "geobox", gbox)
    if gbox is None or getattr(gbox, "crs", None) is None or not hasattr(gbox, "affine"):
        raise ValueError("the cloud mask needs the cube's grid and CRS (a spatial_ref coordinate, as dwcube.load "
                         "gives); set one with cube.odc.assign_crs('EPSG:…')")
    crs = pyproj.CRS(gbox.crs.proj)
    aff = gbox.affine
    ny, nx = gbox.shape
    r0, c0 = ny / 2.0, nx / 2.0
    geod = crs.get_geod()
    to_ll = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    to_grid = pyproj.Transformer.from_crs(crs.geodetic_crs, crs, always_xy=True)
    inv = ~aff

    def lonlat(r: float, c: float) -> tuple[float, float]:
        return to_ll.transform(*(aff @ (c, r)))

    lon0, lat0 = lonlat(r0, c0)
    lon_r, lat_r = lonlat(r0 + 1, c0)
    lon_c, lat_c = lonlat(r0, c0 + 1)
    step_r = float(geod.inv(lon0, lat0, lon_r, lat_r)[2])
    step_c = float(geod.inv(lon0, lat0, lon_c, lat_c)[2])
    if not (step_r > 0 and step_c > 0 and math.isfinite(step_r) and math.isfinite(step_c)):
        raise ValueError(f"cannot measure the pixel size of the grid on the ground (CRS {gbox.crs}, affine {aff})")
    d = min(step_r, step_c)  # a central difference over one pixel: the local direction

    def towards(azimuth: float) -> tuple[float, float]:
        ends = []
        for az in (azimuth, azimuth + 180.0):
            lon, lat, _ = geod.fwd(lon0, lat0, az, d)
            col, row = inv @ to_grid.transform(lon, lat)
            ends.append((row, col))
        (ra, ca), (rb, cb) = ends
        return ((ra - rb) / (2 * d), (ca - cb) / (2 * d))

    return GroundGeometry((step_r, step_c), towards(0.0), towards(90.0))


def cloud_displacement_index(cube: xr.Dataset, *, window_m: float = 140.0) -> xr.DataArray:
    """The cloud displacement index (Frantz et al. 2018), lazily, on the cube's grid.

    ``CDI = (v7 − v8) / (v7 + v8)`` with ``v7``, ``v8`` the local variances of ``B7/B8A``
    and ``B8/B8A`` in a square window of ``window_m`` (7 px at 20 m).  The index is
    defined on 20 m bands: on finer grids the bands are first averaged over a moving
    20 m box (without that, the native 10 m texture of B8 against the smooth upsampled
    20 m bands drives the index towards −1 on clear land).  Clouds, seen with
    parallax between the bands, give values near −1; bright ground gives values near +1.
    Window and box are in metres on the ground (:func:`ground_geometry`), per axis: on a
    latitude/longitude grid they span fewer rows than columns.

    Parameters
    ----------
    cube
        Reflectance cube ``(time, y, x)`` with ``rededge3`` (B7), ``nir`` (B8) and ``nir08`` (B8A).
    window_m
        Side of the variance window on the ground (m).

    Returns
    -------
    xarray.DataArray
        float32 ``(time, y, x)`` named ``cdi``, −1 … 1; ``attrs["window_px"]`` the
        ``[rows, columns]`` of the window.

    Examples
    --------
    >>> from dwcube.testing import synthetic_cube
    >>> cube = synthetic_cube(32, 1, bands=("rededge3", "nir", "nir08"), chunks=16)
    >>> cdi = cloud_displacement_index(cube)
    >>> cdi.attrs["window_px"], bool(abs(cdi).max() <= 1)
    ([15, 15], True)
    """
    _require(cube, ("rededge3", "nir", "nir08"), "the cloud displacement index")
    geometry = ground_geometry(cube)
    window = tuple(_odd(window_m / r) for r in geometry.pixel_m)
    smooth = tuple(max(int(round(20.0 / r)), 1) for r in geometry.pixel_m)
    arrays = [cube[b].data for b in ("rededge3", "nir", "nir08")]
    fn = functools.partial(_cdi_block, window=window, smooth=smooth)
    if isinstance(arrays[0], da.Array):
        depth = {0: 0, 1: window[0] // 2 + smooth[0], 2: window[1] // 2 + smooth[1]}
        data = da.map_overlap(fn, *arrays, depth=depth, boundary="none",
                              dtype=np.float32, meta=np.array((), dtype=np.float32), allow_rechunk=True)
        data = data.rechunk(arrays[0].chunks)
    else:
        data = fn(*arrays)
    return xr.DataArray(data, coords=cube[("nir")].coords, dims=cube["nir"].dims, name="cdi",
                        attrs={"long_name": "cloud displacement index", "window_px": list(window)})


# --- morphology and shadows ---------------------------------------------------------------------
def _shadow_offsets(azimuth: float, zenith: float, geometry: GroundGeometry, p: CloudMaskParams) -> np.ndarray:
    """Integer ``(drow, dcol)`` offsets away from the sun, one per finest-pixel length of distance.

    Azimuth is clockwise from true north; the anti-solar direction on the grid is
    ``−(sin a · east + cos a · north)`` per metre (:class:`GroundGeometry`), which on a
    north-up grid of square pixels is ``(cos a, −sin a) / resolution``.  Distances run over
    ``[lo, hi]`` metres in steps of the finest pixel length, so that consecutive offsets are
    at most one pixel apart on either axis.
    """
    lo, hi = 0.0, p.shadow_distance_m
    if p.cloud_heights_m is not None and np.isfinite(zenith):
        t = math.tan(math.radians(min(zenith, 89.0)))
        lo, hi = min(p.cloud_heights_m[0] * t, hi), min(p.cloud_heights_m[1] * t, hi)
    a = math.radians(azimuth)
    north, east = np.asarray(geometry.north), np.asarray(geometry.east)
    away = -(math.sin(a) * east + math.cos(a) * north)  # (drow, dcol) per metre
    step = geometry.finest_m
    distances = np.arange(math.floor(lo / step), math.ceil(hi / step) + 1) * step
    offs = np.rint(distances[:, None] * away[None, :]).astype(int)
    return np.unique(offs, axis=0)


def _shift_or_reference(mask: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """``out[p] = OR over o of mask[p − o]`` (inside the array), one shifted copy per offset."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    for dr, dc in offsets:
        if abs(dr) >= h or abs(dc) >= w:
            continue
        src = mask[max(-dr, 0):h - max(dr, 0), max(-dc, 0):w - max(dc, 0)]
        out[max(dr, 0):h - max(-dr, 0), max(dc, 0):w - max(-dc, 0)] |= src
    return out


@numba.njit(cache=True, nogil=True)
def _sweep(mask, offsets):  # type: ignore[no-untyped-def]
    """The same as :func:`_shift_or_reference`, in O(min(#set, #unset) · len(offsets)).

    Mostly clear: each set pixel paints its offsets.  Mostly set: each pixel looks back
    along the offsets and stops at the first set source.
    """
    h, w = mask.shape
    out = np.zeros((h, w), dtype=np.bool_)
    n_set = 0
    for r in range(h):
        for c in range(w):
            if mask[r, c]:
                n_set += 1
    if 2 * n_set <= h * w:
        for r in range(h):
            for c in range(w):
                if mask[r, c]:
                    for k in range(offsets.shape[0]):
                        rr, cc = r + offsets[k, 0], c + offsets[k, 1]
                        if 0 <= rr < h and 0 <= cc < w:
                            out[rr, cc] = True
    else:
        for r in range(h):
            for c in range(w):
                for k in range(offsets.shape[0]):
                    rr, cc = r - offsets[k, 0], c - offsets[k, 1]
                    if 0 <= rr < h and 0 <= cc < w and mask[rr, cc]:
                        out[r, c] = True
                        break
    return out


def _shift_or(mask: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    return _sweep(np.ascontiguousarray(mask, dtype=np.bool_), np.ascontiguousarray(offsets, dtype=np.int64))


def project_shadows(cloud: np.ndarray, *, azimuth: float, zenith: float = float("nan"),
                    resolution: float | tuple[float, float] | GroundGeometry,
                    params: CloudMaskParams = CloudMaskParams()) -> np.ndarray:
    """Pixels a cloud may shade: ``cloud`` moved away from the sun, over the allowed distances.

    Parameters
    ----------
    cloud
        Boolean ``(y, x)`` cloud mask.
    azimuth, zenith
        Solar azimuth (degrees clockwise from north) and zenith (degrees; NaN if unknown).
    resolution
        Pixel size (m) of a north-up grid — one number, or ``(row, column)`` when they
        differ — or the grid's :class:`GroundGeometry` (:func:`ground_geometry`).
    params
        ``shadow_distance_m`` and ``cloud_heights_m`` are used.

    Returns
    -------
    numpy.ndarray
        Boolean ``(y, x)``: shadow candidates, excluding the clouds themselves.

    Examples
    --------
    >>> c = np.zeros((9, 9), bool); c[4, 4] = True
    >>> s = project_shadows(c, azimuth=180.0, resolution=10.0,
    ...                     params=CloudMaskParams(shadow_distance_m=30.0))
    >>> np.argwhere(s).tolist()     # sun in the south: shadows to the north (smaller rows)
    [[1, 4], [2, 4], [3, 4]]
    >>> s = project_shadows(c, azimuth=270.0, resolution=(10.0, 15.0),
    ...                     params=CloudMaskParams(shadow_distance_m=30.0))
    >>> np.argwhere(s).tolist()     # sun in the west, 15 m columns: 30 m is two columns east
    [[4, 5], [4, 6]]
    """
    if not np.isfinite(azimuth):
        raise ValueError("shadow projection needs the solar azimuth (sun_azimuth); none is known for this date")
    geometry = resolution if isinstance(resolution, GroundGeometry) else GroundGeometry.north_up(resolution)
    cloud = np.asarray(cloud, dtype=bool)
    return _shift_or(cloud, _shadow_offsets(azimuth, zenith, geometry, params)) & ~cloud


def _disk(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius * radius


def _dilate(mask: np.ndarray, radius: int, sampling: tuple[float, float] | None = None) -> np.ndarray:
    """Binary dilation by the disk ``dr² + dc² <= radius²`` via the Euclidean distance transform.

    Equal to ``ndimage.binary_dilation(mask, _disk(radius))`` (tested), in O(n) instead of
    O(n·radius²): a pixel is set when some set pixel lies within ``radius``.  With
    ``sampling`` (the ``(row, column)`` pixel lengths in units of ``radius``) the disk is
    one on the ground: an ellipse of pixels where rows and columns differ in length.
    """
    if not mask.any():
        return mask.copy()
    return ndimage.distance_transform_edt(~mask, sampling=sampling) <= radius


def _erode(mask: np.ndarray, radius: int, sampling: tuple[float, float] | None = None) -> np.ndarray:
    """Binary erosion by the same disk, pixels outside the array counting as set
    (``binary_erosion(..., border_value=1)``): a pixel stays when no unset pixel is within ``radius``."""
    if mask.all():
        return mask.copy()
    return ndimage.distance_transform_edt(mask, sampling=sampling) > radius


def _reach(radius: int, sampling: tuple[float, float] | None) -> tuple[int, int]:
    """How many rows and columns a disk of ``radius`` spans on each side."""
    sy, sx = sampling or (1.0, 1.0)
    return int(math.floor(radius / sy + 1e-9)), int(math.floor(radius / sx + 1e-9))


def _buffer_block(cloud0: np.ndarray, nir: np.ndarray, *, erode: int, dilate: int,
                  sampling: tuple[float, float] | None = None) -> np.ndarray:
    """One date's block (1, y, x) of the cloud test, opened then buffered: boolean.

    Pixels without data (NaN ``nir``) count as cloud for the erosion, like pixels beyond the
    image edge (unknown, so they do not eat a cloud next to them), and as clear after it (no
    buffer grows out of a no-data margin).
    """
    c = cloud0[0].astype(bool)
    if not c.any():  # nothing to open or buffer (the common clear block): skip the distance transforms
        return c[None]
    if erode:
        valid = np.isfinite(nir[0])
        c = _erode(c | ~valid, erode, sampling) & valid
    if dilate:
        c = _dilate(c, dilate, sampling)
    return c[None]


def _shadow_block(cloud: np.ndarray, nir: np.ndarray, *, offsets: np.ndarray, dark: float | None) -> np.ndarray:
    """One date's block (1, y, x) of buffered clouds → uint8 0 clear, 1 cloud, 2 shadow."""
    c = cloud[0]
    out = np.zeros(c.shape, dtype=np.uint8)
    if not c.any():
        return out[None]
    shadow = _shift_or(c, offsets) & ~c
    if dark is not None:
        shadow &= nir[0] < dark
    out[shadow] = 2
    out[c] = 1
    return out[None]


def _overlap(fn: Any, a: da.Array, b: da.Array, depth: Sequence[tuple[int, int]], dtype: type) -> da.Array:
    """``fn`` over blocks of ``(1, y, x)`` arrays with ``depth[axis] = (before, after)`` rows/columns of
    context (each capped by the size)."""
    ny, nx = a.shape[1], a.shape[2]
    cap = {1: ny - 1, 2: nx - 1}
    dep = {0: 0, **{ax: tuple(min(int(d), cap[ax]) for d in depth[ax - 1]) for ax in (1, 2)}}
    if all(d == (0, 0) for d in (dep[1], dep[2])):
        return da.map_blocks(fn, a, b, dtype=dtype, meta=np.array((), dtype=dtype))
    out = da.map_overlap(fn, a, b, depth=dep, boundary="none", dtype=dtype, meta=np.array((), dtype=dtype),
                         allow_rechunk=True)
    return out.rechunk(a.chunks)


def cloud_mask(cube: xr.Dataset, params: CloudMaskParams | None = None) -> xr.Dataset:
    """Dynamic World's cloud and shadow mask for an L1C cube, lazily.

    Parameters
    ----------
    cube
        Sentinel-2 L1C reflectance cube with :data:`CLOUD_BANDS` (or a
        ``cloud_probability`` variable plus ``rededge3``, ``nir``, ``nir08``, ``cirrus``),
        and per-date ``sun_azimuth`` (and ``sun_elevation``) coordinates.
    params
        Thresholds and distances; default :class:`CloudMaskParams` (the published recipe,
        ``mode="exact"``).  With ``mode="fast"`` the probability comes from
        :func:`cloud_probability_fast` (exact only where it can change the decision).

    Returns
    -------
    xarray.Dataset
        ``cloud_probability`` (float32), ``cdi`` (float32), ``cloud`` and ``shadow`` (bool)
        and ``mask`` (bool, cloud or shadow), all ``(time, y, x)`` on the cube's grid and
        chunks; ``attrs["cloud_mask"]`` records the parameters.  Pixels without data (NaN
        ``nir``) are never cloud or shadow (they are NaN in the cube already); a NaN
        probability (a catalogue layer's no-data) counts as clear.

    Examples
    --------
    >>> from dwcube.testing import synthetic_cloudy_cube
    >>> ds, truth = synthetic_cloudy_cube(64, chunks=32)
    >>> m = ds.lulc.cloud_mask()                                   # lazy, on the cube's chunks
    >>> clear = ds.where(~m.mask)
    >>> m.mask.chunks == ds.red.chunks, bool(clear.red.isnull().values[truth.cloud.values].all())
    (True, True)
    >>> m.attrs["cloud_mask"][:30]
    'dynamic-world cloud/shadow mas'
    """
    p = params or CloudMaskParams()
    geometry = ground_geometry(cube)
    cdi = cloud_displacement_index(cube, window_m=p.cdi_window_m) if p.cdi_threshold is not None else None
    low_cdi = cdi < p.cdi_threshold if cdi is not None else None
    cirrus = None
    if p.cirrus_threshold is not None:
        _require(cube, ("cirrus",), "the cirrus test")
        cirrus = cube["cirrus"] > p.cirrus_threshold
    if p.mode == "fast":
        # the probability can only change the cloud test where the index is below its
        # threshold and cirrus is not already cloud: refine nowhere else
        needed = low_cdi
        if cirrus is not None:
            needed = ~cirrus if needed is None else needed & ~cirrus
        prob = cloud_probability_fast(cube, p, needed=needed)
    else:
        prob = cloud_probability(cube)
    cloud0 = prob > p.probability_threshold
    if low_cdi is not None:
        cloud0 = cloud0 & low_cdi
    if cirrus is not None:
        cloud0 = cloud0 | cirrus
    erode, sampling = geometry.radius_px(p.erosion_m)
    dilate, _ = geometry.radius_px(p.dilation_m)
    azimuth = cube["sun_azimuth"].values if "sun_azimuth" in cube.coords else np.full(cube.sizes["time"], np.nan)
    zenith = 90.0 - cube["sun_elevation"].values if "sun_elevation" in cube.coords else \
        np.full(cube.sizes["time"], np.nan)
    ydim, xdim = cube.odc.spatial_dims
    c0 = cloud0.transpose("time", ydim, xdim).data
    nir = cube["nir"].transpose("time", ydim, xdim).data
    lazy = isinstance(c0, da.Array)
    layers = []
    for t in range(cube.sizes["time"]):
        if p.shadow_distance_m > 0 and not np.isfinite(azimuth[t]):
            raise ValueError(f"date {str(cube.time.values[t])[:10]} has no solar azimuth (sun_azimuth): cannot "
                             "place cloud shadows; describe the sun angles in the items, or use shadow_distance_m=0")
        offsets = _shadow_offsets(azimuth[t], zenith[t], geometry, p) if p.shadow_distance_m > 0 else \
            np.zeros((1, 2), int)
        buffer = functools.partial(_buffer_block, erode=erode, dilate=dilate, sampling=sampling)
        shade = functools.partial(_shadow_block, offsets=offsets, dark=p.dark_nir_threshold)
        if lazy:
            # two passes, each with the context it needs (beyond the image size, the whole
            # image): the opening and buffer (tens of pixels), then the farthest shadow (up to
            # 5 km) over the buffered clouds only — one pass with the sum of both contexts
            # ran the distance transforms over ~4x the pixels of each 1024² chunk.  Shadows
            # fall away from the sun: a pixel's shadow comes from clouds on the sun's side of
            # it only (the source of offset o is p - o), so that pass reads context on that side.
            near = [(a + b, a + b) for a, b in zip(_reach(erode, sampling), _reach(dilate, sampling), strict=True)]
            cloud_t = _overlap(buffer, c0[t:t + 1], nir[t:t + 1], near, bool)
            sun_side = [(max(int(offsets[:, ax].max()), 0), max(int(-offsets[:, ax].min()), 0)) if len(offsets)
                        else (0, 0) for ax in (0, 1)]
            blk = _overlap(shade, cloud_t, nir[t:t + 1], sun_side, np.uint8)
        else:
            blk = shade(buffer(c0[t:t + 1], nir[t:t + 1]), nir[t:t + 1])
        layers.append(blk)
    code = da.concatenate(layers, axis=0) if lazy else np.concatenate(layers, axis=0)
    valid = np.isfinite(cube["nir"].transpose("time", ydim, xdim).data)
    dims = ("time", ydim, xdim)
    coords = prob.transpose(*dims).coords
    cloud = xr.DataArray((code == 1) & valid, coords=coords, dims=dims, name="cloud")
    shadow = xr.DataArray((code == 2) & valid, coords=coords, dims=dims, name="shadow")
    out = xr.Dataset({
        "cloud_probability": prob.transpose(*dims),
        "cloud": cloud,
        "shadow": shadow,
        "mask": cloud | shadow,
    })
    if cdi is not None:
        out["cdi"] = cdi.transpose(*dims)
    out.attrs["cloud_mask"] = p.describe()
    return out

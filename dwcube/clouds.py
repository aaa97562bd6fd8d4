"""Cloud and cloud-shadow masks for top-of-atmosphere Sentinel-2 (L1C) cubes.

L1C products carry no scene classification, and Dynamic World labels missed clouds as
``snow_and_ice`` and missed shadows as ``water``.  This module follows Dynamic World's
own masking recipe (Google's Earth Engine example ``Sentinel2CloudAndShadow.js``):

1. **cloud probability** from the s2cloudless LightGBM model (Sinergise / Sentinel Hub,
   CC-BY-SA-4.0; its model file ships with dwcube in ``dwcube/data/s2cloudless/``, see the
   NOTICE there) on ten L1C bands, per pixel on the cube's grid — or a catalogue's own
   cloud-probability asset when the cube has one;
2. **cloud** where probability > 65 % and the cloud displacement index (Frantz et al.
   2018) < −0.5, or where the cirrus band B10 > 0.01;
3. **morphology**: erosion by 60 m then dilation by 320 m (EE ``focal_min(3)`` and
   ``focal_max(16)`` at 20 m), which removes isolated false positives and buffers clouds;
4. **shadows**: every pixel up to 5 km from a cloud in the direction away from the sun
   (the scene's solar azimuth; with ``cloud_heights`` and the zenith, only the distances
   ``h·tan(zenith)`` those heights cast).

Everything is lazy and chunk-invariant (``map_overlap`` with the exact context each step
needs).  Every threshold is a field of :class:`CloudMaskParams` with the published default.

Examples
--------
>>> ds = dwcube.load(catalog, collections=["sentinel-2-l1c"], cloud_mask=False)  # doctest: +SKIP
>>> m = cloud_mask(ds)                                                            # doctest: +SKIP
>>> m.mask.mean().compute()                                                       # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import lzma
import math
from dataclasses import asdict, dataclass
from pathlib import Path

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
    "MissingBandsError",
    "cloud_displacement_index",
    "cloud_mask",
    "cloud_probability",
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

    def __post_init__(self) -> None:
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
    >>> p = cloud_probability(ds)            # doctest: +SKIP
    >>> float(p.isel(time=0).mean())         # doctest: +SKIP
    0.97
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


# --- cloud displacement index -----------------------------------------------------------------
def _odd(n: float) -> int:
    k = max(int(round(n)), 1)
    return k if k % 2 else k + 1


def _cdi_block(b7: np.ndarray, b8: np.ndarray, b8a: np.ndarray, *, window: int, smooth: int = 1) -> np.ndarray:
    if smooth > 1:
        # the index is defined on 20 m bands: B8 (10 m) averaged like the 20 m bands, as a
        # moving box so that every pixel, whatever its phase, is treated alike
        b7, b8, b8a = (ndimage.uniform_filter(np.asarray(b, np.float64), size=(1, smooth, smooth), mode="nearest")
                       for b in (b7, b8, b8a))
    with np.errstate(divide="ignore", invalid="ignore"):
        r8 = (b8 / b8a).astype(np.float64)
        r7 = (b7 / b8a).astype(np.float64)

        def var(r: np.ndarray) -> np.ndarray:
            m = ndimage.uniform_filter(r, size=(1, window, window), mode="nearest")
            m2 = ndimage.uniform_filter(r * r, size=(1, window, window), mode="nearest")
            return np.maximum(m2 - m * m, 0.0)

        v8, v7 = var(r8), var(r7)
        return ((v7 - v8) / (v7 + v8)).astype(np.float32)


def _resolution(cube: xr.Dataset | xr.DataArray) -> float:
    res = cube.odc.geobox.resolution
    return float(min(abs(res.x), abs(res.y)))


def cloud_displacement_index(cube: xr.Dataset, *, window_m: float = 140.0) -> xr.DataArray:
    """The cloud displacement index (Frantz et al. 2018), lazily, on the cube's grid.

    ``CDI = (v7 − v8) / (v7 + v8)`` with ``v7``, ``v8`` the local variances of ``B7/B8A``
    and ``B8/B8A`` in a square window of ``window_m`` (7 px at 20 m).  The index is
    defined on 20 m bands: on finer grids the bands are first averaged over a moving
    20 m box (without that, the native 10 m texture of B8 against the smooth upsampled
    20 m bands drives the index towards −1 on clear land).  Clouds, seen with
    parallax between the bands, give values near −1; bright ground gives values near +1.

    Examples
    --------
    >>> cdi = cloud_displacement_index(ds)     # doctest: +SKIP
    """
    _require(cube, ("rededge3", "nir", "nir08"), "the cloud displacement index")
    res = _resolution(cube)
    window = _odd(window_m / res)
    smooth = max(int(round(20.0 / res)), 1)
    arrays = [cube[b].data for b in ("rededge3", "nir", "nir08")]
    fn = functools.partial(_cdi_block, window=window, smooth=smooth)
    if isinstance(arrays[0], da.Array):
        depth = window // 2 + smooth
        data = da.map_overlap(fn, *arrays, depth={0: 0, 1: depth, 2: depth}, boundary="none",
                              dtype=np.float32, meta=np.array((), dtype=np.float32), allow_rechunk=True)
        data = data.rechunk(arrays[0].chunks)
    else:
        data = fn(*arrays)
    return xr.DataArray(data, coords=cube[("nir")].coords, dims=cube["nir"].dims, name="cdi",
                        attrs={"long_name": "cloud displacement index", "window_px": window})


# --- morphology and shadows ---------------------------------------------------------------------
def _shadow_offsets(azimuth: float, zenith: float, res: float, p: CloudMaskParams) -> np.ndarray:
    """Integer ``(drow, dcol)`` offsets, one per pixel of distance, away from the sun.

    Azimuth is clockwise from north; on a north-up grid the anti-solar direction is
    ``(drow, dcol) = (cos a, −sin a)`` per unit distance.
    """
    lo, hi = 0.0, p.shadow_distance_m
    if p.cloud_heights_m is not None and np.isfinite(zenith):
        t = math.tan(math.radians(min(zenith, 89.0)))
        lo, hi = min(p.cloud_heights_m[0] * t, hi), min(p.cloud_heights_m[1] * t, hi)
    a = math.radians(azimuth)
    steps = np.arange(math.floor(lo / res), math.ceil(hi / res) + 1)
    offs = np.stack([np.rint(steps * math.cos(a)), np.rint(-steps * math.sin(a))], axis=1).astype(int)
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


def project_shadows(cloud: np.ndarray, *, azimuth: float, zenith: float = float("nan"), resolution: float,
                    params: CloudMaskParams = CloudMaskParams()) -> np.ndarray:
    """Pixels a cloud may shade: ``cloud`` moved away from the sun, over the allowed distances.

    Parameters
    ----------
    cloud
        Boolean ``(y, x)`` cloud mask on a north-up grid.
    azimuth, zenith
        Solar azimuth (degrees clockwise from north) and zenith (degrees; NaN if unknown).
    resolution
        Pixel size (m).
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
    """
    if not np.isfinite(azimuth):
        raise ValueError("shadow projection needs the solar azimuth (sun_azimuth); none is known for this date")
    cloud = np.asarray(cloud, dtype=bool)
    return _shift_or(cloud, _shadow_offsets(azimuth, zenith, resolution, params)) & ~cloud


def _disk(radius: int) -> np.ndarray:
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius * radius


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by the disk ``dr² + dc² <= radius²`` via the Euclidean distance transform.

    Equal to ``ndimage.binary_dilation(mask, _disk(radius))`` (tested), in O(n) instead of
    O(n·radius²): a pixel is set when some set pixel lies within ``radius``.
    """
    if not mask.any():
        return mask.copy()
    return ndimage.distance_transform_edt(~mask) <= radius


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary erosion by the same disk, pixels outside the array counting as set
    (``binary_erosion(..., border_value=1)``): a pixel stays when no unset pixel is within ``radius``."""
    if mask.all():
        return mask.copy()
    return ndimage.distance_transform_edt(mask) > radius


def _mask_block(cloud0: np.ndarray, nir: np.ndarray, *, erode: int, dilate: int, offsets: np.ndarray,
                dark: float | None) -> np.ndarray:
    """One date's block (1, y, x): opening + buffer, shadows. Returns uint8 0 clear, 1 cloud, 2 shadow."""
    c = cloud0[0].astype(bool)
    if erode:
        c = _erode(c, erode)
    if dilate:
        c = _dilate(c, dilate)
    shadow = _shift_or(c, offsets) & ~c
    if dark is not None:
        shadow &= nir[0] < dark
    out = np.zeros(c.shape, dtype=np.uint8)
    out[shadow] = 2
    out[c] = 1
    return out[None]


def cloud_mask(cube: xr.Dataset, params: CloudMaskParams | None = None) -> xr.Dataset:
    """Dynamic World's cloud and shadow mask for an L1C cube, lazily.

    Parameters
    ----------
    cube
        Sentinel-2 L1C reflectance cube with :data:`CLOUD_BANDS` (or a
        ``cloud_probability`` variable plus ``rededge3``, ``nir``, ``nir08``, ``cirrus``),
        and per-date ``sun_azimuth`` (and ``sun_elevation``) coordinates.
    params
        Thresholds and distances; default :class:`CloudMaskParams` (the published recipe).

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
    >>> m = ds.lulc.cloud_mask()                                   # doctest: +SKIP
    >>> clear = ds.where(~m.mask)                                  # doctest: +SKIP
    """
    p = params or CloudMaskParams()
    res = _resolution(cube)
    prob = cloud_probability(cube)
    cdi = cloud_displacement_index(cube, window_m=p.cdi_window_m) if p.cdi_threshold is not None else None
    cloud0 = prob > p.probability_threshold
    if cdi is not None:
        cloud0 = cloud0 & (cdi < p.cdi_threshold)
    if p.cirrus_threshold is not None:
        _require(cube, ("cirrus",), "the cirrus test")
        cloud0 = cloud0 | (cube["cirrus"] > p.cirrus_threshold)
    erode, dilate = int(round(p.erosion_m / res)), int(round(p.dilation_m / res))
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
        offsets = _shadow_offsets(azimuth[t], zenith[t], res, p) if p.shadow_distance_m > 0 else \
            np.zeros((1, 2), int)
        reach = int(np.abs(offsets).max()) if len(offsets) else 0
        fn = functools.partial(_mask_block, erode=erode, dilate=dilate, offsets=offsets,
                               dark=p.dark_nir_threshold)
        if lazy:
            depth = erode + dilate + reach  # beyond the image size, the whole image is the context
            ny, nx = c0.shape[1], c0.shape[2]
            blk = da.map_overlap(fn, c0[t:t + 1], nir[t:t + 1],
                                 depth={0: 0, 1: min(depth, ny - 1), 2: min(depth, nx - 1)},
                                 boundary="none", dtype=np.uint8, meta=np.array((), dtype=np.uint8),
                                 allow_rechunk=True)
            blk = blk.rechunk(c0[t:t + 1].chunks)
        else:
            blk = fn(c0[t:t + 1], nir[t:t + 1])
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

"""Augmentation on reflectance patches, the Landsat-like simulation, and the feature stack.

Everything here works on NumPy arrays of **reflectance** (0–1, NaN = no data) laid out
``(..., band, y, x)``, before the model's normalisation, so that radiometric changes act
on physical values and the features are then computed exactly as at inference:
:func:`reflectance_features` uses the same :class:`~dwcube.inputs.Feature` objects and
the same index kernels as :func:`dwcube.inputs.model_inputs` (tests compare the two).

* **Geometric**: the 8 flips/rotations of the square (:func:`geometric`), applied
  identically to inputs, targets and weights.
* **Radiometric** (:func:`radiometric`): a brightness gain per patch, a gain per band,
  an additive offset that decreases with wavelength (the path-radiance difference
  between top-of-atmosphere and surface reflectance), and pixel noise.
* **Cross-sensor** (:func:`landsat_like`): a Sentinel-2 patch made Landsat-like —
  the HLS v2 bandpass adjustment MSI → OLI (``DESIGN.md``;
  :data:`dwcube.sensors.HLS_COEFFICIENTS`), an area average over 3 × 3 pixels (30 m
  cells, at a random phase), bilinear interpolation back onto the 10 m grid (what
  ``dwcube.load(..., resolution=10, resampling="bilinear")`` does to a Landsat scene),
  and sensor noise.  Decision: train on the 10 m grid with 30 m content rather than at
  30 m, so one model, one halo and one input grid serve both sensors; the label stays at
  10 m, so the model learns to place 10 m boundaries from 30 m evidence as well as it can.
* **Elevation**: a random shift per patch, or — for scenes without a DEM — a random
  smooth field unrelated to the labels, so that the model cannot learn a spurious link.

Hand-written: the operations are short NumPy/PyTorch expressions tied to the project's
band names and coefficients; no augmentation library knows the HLS bandpass table.

Examples
--------
>>> refl = np.full((1, 6, 9, 9), 0.2, np.float32)
>>> out = landsat_like(refl, ("blue", "green", "red", "nir08", "swir16", "swir22"))
>>> round(float(out[0, 0, 4, 4]), 4)    # blue: 0.9778 × 0.2 − 0.004
0.1916
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..indices import INDICES
from ..inputs import InputSpec
from ..sensors.sentinel2 import HLS_COEFFICIENTS

__all__ = [
    "HAZE_PROFILE",
    "AugmentParams",
    "geometric",
    "landsat_like",
    "radiometric",
    "reflectance_features",
    "synthetic_elevation",
]

#: Relative strength of the additive (haze) offset per band: path radiance falls with wavelength.
HAZE_PROFILE: dict[str, float] = {"coastal": 1.2, "blue": 1.0, "green": 0.75, "red": 0.55, "rededge1": 0.45,
                                  "rededge2": 0.4, "rededge3": 0.35, "nir": 0.3, "nir08": 0.3, "swir16": 0.12,
                                  "swir22": 0.08}


@dataclass(frozen=True)
class AugmentParams:
    """What :func:`dwcube.train.loop.train` does to each training sample.

    Parameters
    ----------
    geometric
        Random flips and 90° rotations.
    brightness, band_gain
        Standard deviations of the log of a per-patch gain and of a per-band gain.
    haze
        Standard deviation of an additive offset (reflectance, blue band; other bands
        scaled by :data:`HAZE_PROFILE`).
    noise
        Standard deviation of per-pixel Gaussian noise (reflectance).
    landsat_fraction
        Share of samples made Landsat-like (:func:`landsat_like`).
    landsat_noise
        Pixel noise added to Landsat-like samples (reflectance).
    elevation_shift
        Standard deviation of a per-patch elevation offset (m).
    platforms
        Sentinel-2 platforms whose HLS coefficients are drawn from.

    Examples
    --------
    >>> AugmentParams(landsat_fraction=0.0).landsat_fraction
    0.0
    """

    geometric: bool = True
    brightness: float = 0.08
    band_gain: float = 0.04
    haze: float = 0.01
    noise: float = 0.003
    landsat_fraction: float = 0.3
    landsat_noise: float = 0.003
    elevation_shift: float = 200.0
    platforms: tuple[str, ...] = ("sentinel-2a", "sentinel-2b")

    @classmethod
    def none(cls) -> AugmentParams:
        """No augmentation at all (evaluation).

        Examples
        --------
        >>> AugmentParams.none().noise
        0.0
        """
        return cls(geometric=False, brightness=0.0, band_gain=0.0, haze=0.0, noise=0.0, landsat_fraction=0.0,
                   landsat_noise=0.0, elevation_shift=0.0)

    def scaled(self, radiometric: float, **changes: Any) -> AugmentParams:
        """A copy with brightness, band gain and haze multiplied by ``radiometric`` (and other fields changed).

        Distillation from a teacher wants a gentler radiometric augmentation than hard
        labels do: the teacher's own label would change under a large gain or haze, so the
        student would be taught invariances its teacher does not have.

        Examples
        --------
        >>> a = AugmentParams().scaled(0.5, landsat_fraction=0.2)
        >>> a.brightness, a.band_gain, a.landsat_fraction
        (0.04, 0.02, 0.2)
        """
        if radiometric < 0:
            raise ValueError(f"radiometric scale must be >= 0, got {radiometric}")
        return replace(self, brightness=self.brightness * radiometric, band_gain=self.band_gain * radiometric,
                       haze=self.haze * radiometric, **changes)


def geometric(arrays: Sequence[np.ndarray | None], k: int, flip: bool) -> list[np.ndarray | None]:
    """Rotate by ``k`` × 90° and optionally flip left–right the last two axes of every array.

    Examples
    --------
    >>> a = np.arange(4).reshape(2, 2)
    >>> geometric([a, None], 1, False)[0]
    array([[1, 3],
           [0, 2]])
    """
    out: list[np.ndarray | None] = []
    for a in arrays:
        if a is None:
            out.append(None)
            continue
        b = np.rot90(a, k, axes=(-2, -1))
        if flip:
            b = b[..., ::-1]
        out.append(np.ascontiguousarray(b))
    return out


def radiometric(refl: np.ndarray, bands: Sequence[str], params: AugmentParams, rng: np.random.Generator) -> np.ndarray:
    """Brightness, per-band gain, wavelength-dependent offset and noise, for one patch.

    Parameters
    ----------
    refl
        ``(band, y, x)`` reflectance (NaN kept).
    bands
        Common names of the bands.

    Examples
    --------
    >>> r = radiometric(np.full((2, 4, 4), 0.1, np.float32), ("red", "nir08"), AugmentParams.none(),
    ...                 np.random.default_rng(0))
    >>> round(float(r.max()), 6)
    0.1
    """
    nb = refl.shape[0]
    gain = np.exp(rng.normal(0, params.brightness) + rng.normal(0, params.band_gain, nb)) if (
        params.brightness or params.band_gain) else np.ones(nb)
    haze = rng.normal(0, params.haze) * np.array([HAZE_PROFILE.get(b, 0.3) for b in bands]) if params.haze else np.zeros(nb)
    out = refl * gain[:, None, None].astype(np.float32) + haze[:, None, None].astype(np.float32)
    if params.noise:
        out = out + rng.normal(0, params.noise, refl.shape).astype(np.float32)
    return out.astype(np.float32)


def landsat_like(refl: np.ndarray, bands: Sequence[str], *, platform: str = "sentinel-2a",
                 phase: tuple[int, int] = (0, 0), noise: float = 0.0,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """Sentinel-2 reflectance made to look like Landsat on the same 10 m grid.

    1. HLS bandpass adjustment ``y = slope·x + intercept`` per band and platform.
    2. Mean over 3 × 3 pixel cells (30 m), the cell grid starting ``phase`` pixels
       before the array's origin (0–2 on each axis); a cell with any NaN is NaN.
    3. Bilinear interpolation (half-pixel centres) back to every 10 m pixel; the edges
       repeat the outermost cell.
    4. Gaussian noise of standard deviation ``noise``.

    Parameters
    ----------
    refl
        ``(..., band, y, x)`` reflectance (float32, NaN = no data).
    bands
        Common names of the bands (``blue``, ``green``, ``red``, ``nir08``, ``swir16``,
        ``swir22``, ``coastal``); other bands raise ``KeyError``.
    platform
        ``"sentinel-2a"`` or ``"sentinel-2b"`` (their coefficients differ slightly).

    Returns
    -------
    numpy.ndarray
        Same shape, float32.

    Examples
    --------
    >>> x = np.zeros((1, 1, 6, 6), np.float32); x[..., :3, :3] = 0.3
    >>> y = landsat_like(x, ("red",))
    >>> round(float(y[0, 0, 0, 0]), 5), round(0.9765 * 0.3 + 0.0009, 5)    # inside the bright 30 m cell
    (0.29385, 0.29385)
    >>> round(float(y[0, 0, 0, 3]), 5)    # two thirds of the way to the next (dark) cell
    0.09855
    """
    coef = HLS_COEFFICIENTS[platform]
    slope = np.array([coef[b][0] for b in bands], np.float32)
    inter = np.array([coef[b][1] for b in bands], np.float32)
    x = refl.astype(np.float32) * slope[:, None, None] + inter[:, None, None]
    lead = x.shape[:-2]
    h, w = x.shape[-2:]
    t = torch.from_numpy(np.ascontiguousarray(x.reshape(-1, 1, h, w)))
    py, px = phase[0] % 3, phase[1] % 3
    # cell grid: pad `phase` pixels before, up to a multiple of 3 after (replicating edges)
    pad_b, pad_r = (-(h + py)) % 3, (-(w + px)) % 3
    t = F.pad(t, (px, pad_r, py, pad_b), mode="replicate")
    cells = F.avg_pool2d(t, 3)  # NaN anywhere in a cell -> NaN cell
    up = F.interpolate(cells, scale_factor=3, mode="bilinear", align_corners=False)
    out = up[..., py:py + h, px:px + w].reshape(*lead, h, w).numpy()
    if noise:
        out = out + (rng or np.random.default_rng()).normal(0, noise, out.shape).astype(np.float32)
    return out.astype(np.float32)


def synthetic_elevation(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random smooth elevation field (m) for samples whose scene has no DEM.

    Base 0–2500 m plus up to 300 m of smooth relief; unrelated to any label.

    Examples
    --------
    >>> e = synthetic_elevation((32, 32), np.random.default_rng(1))
    >>> e.shape, bool(0 <= e.min() and e.max() <= 2800)
    ((32, 32), True)
    """
    h, w = shape
    coarse = torch.from_numpy(rng.uniform(0, 1, (1, 1, 4, 4)).astype(np.float32))
    relief = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=True)[0, 0].numpy().clip(0, 1)
    return (rng.uniform(0, 2500) + rng.uniform(0, 300) * relief).astype(np.float32)


def reflectance_features(refl: np.ndarray, bands: Sequence[str], spec: InputSpec,
                         elevation: np.ndarray | None = None) -> np.ndarray:
    """The model's normalised input stack from reflectance, as :func:`dwcube.inputs.model_inputs` makes it.

    Parameters
    ----------
    refl
        ``(..., band, y, x)`` reflectance, NaN = no data.
    bands
        Common names of ``refl``'s bands; ``"nir"`` in the spec means ``spec.nir``.
    spec
        The model's input spec (bands, indices, elevation; fixed normalisation).
    elevation
        ``(..., y, x)`` metres, when the spec needs it.

    Returns
    -------
    numpy.ndarray
        ``(..., feature, y, x)`` float32, NaN wherever an input is NaN.

    Examples
    --------
    >>> from dwcube.inputs import Feature, InputSpec
    >>> spec = InputSpec((Feature("red", "band", scale=0.5), Feature("ndvi", "index")), nir="nir08")
    >>> r = np.array([[[0.1]], [[0.3]]], np.float32)
    >>> reflectance_features(r, ("red", "nir08"), spec).ravel().round(5)
    array([0.2, 0.5], dtype=float32)
    """
    index = {b: i for i, b in enumerate(bands)}
    nir = "nir08" if spec.nir == "auto" and "nir" not in index else ("nir" if spec.nir == "auto" else spec.nir)

    def band(name: str) -> np.ndarray:
        name = nir if name == "nir" else name
        if name not in index:
            raise KeyError(f"band {name!r} is not among the patch bands {tuple(bands)}")
        return refl[..., index[name], :, :].astype(np.float32, copy=False)

    layers = []
    for f in spec.features:
        if f.kind == "band":
            arr = band(f.name)
        elif f.kind == "index":
            ix = INDICES[f.name]
            arr = ix(*[band(b) for b in ix.bands])
        elif f.kind == "elevation":
            if elevation is None:
                raise KeyError("the spec needs elevation and none was given")
            arr = elevation.astype(np.float32, copy=False)
        else:
            raise KeyError(f"feature kind {f.kind!r} is not supported in training patches")
        layers.append(np.asarray(f.apply(arr), np.float32))
    return np.stack(layers, axis=-3)

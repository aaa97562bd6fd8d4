"""Teachers for distillation: Dynamic World where it can run, Dynamic World on imputed bands where it cannot.

Dynamic World needs Sentinel-2's red-edge bands (B5, B6, B7) and the broad NIR (B8);
Landsat and six-band Sentinel-2 cubes have neither.  The **imputed teacher** predicts
those four bands from the six shared ones (blue, green, red, nir08, swir16, swir22) with
a small per-pixel network (:class:`BandImputer`) fitted on real Sentinel-2 scenes, and
runs the Dynamic World port on the completed stack.  Red-edge reflectance of natural
surfaces lies between red and NIR and follows the vegetation's chlorophyll and structure,
which the six bands carry, so the completion is close (its error and the resulting
label agreement with the real Dynamic World are measured on the validation sides of the
Sentinel-2 sources and recorded in the model card).

Landsat OLI reflectance is first brought to Sentinel-2A's bandpasses with the inverse
of the HLS v2 MSI → OLI adjustment (:data:`dwcube.sensors.HLS_COEFFICIENTS`).

Hand-written: a 4-layer MLP and its fit are a few lines of PyTorch; no library imputes
Sentinel-2 red edge from Landsat bands.

Examples
--------
>>> imp = BandImputer.untrained(seed=0)
>>> x = np.full((6, 2, 2), 0.1, np.float32)
>>> imp.predict(x).shape
(4, 2, 2)
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .corpus import DW_BANDS, SHARED_BANDS

__all__ = ["IMPUTED_BANDS", "BandImputer", "fit_imputer", "dynamic_world_probabilities", "imputed_teacher",
           "oli_to_msi"]

#: The Dynamic World bands the imputer predicts.
IMPUTED_BANDS = ("rededge1", "rededge2", "rededge3", "nir")
_GAIN = 20.0  # log1p(gain·x): reflectance spread evenly from water to snow
_FLOOR = -0.04


def _to_log(x: np.ndarray) -> np.ndarray:
    return np.log1p(_GAIN * np.maximum(x, _FLOOR)).astype(np.float32)


def _from_log(y: np.ndarray) -> np.ndarray:
    return (np.expm1(y) / _GAIN).astype(np.float32)


@dataclass
class BandImputer:
    """A per-pixel MLP from the six shared bands to red edge 1–3 and broad NIR (reflectance).

    Works on ``log1p(20·x)`` of every band; inputs and outputs standardised by fixed
    statistics stored with the weights.
    """

    state: dict[str, Any]
    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: np.ndarray
    y_std: np.ndarray

    @staticmethod
    def _net(hidden: int = 64) -> Any:
        import torch

        return torch.nn.Sequential(torch.nn.Linear(6, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, hidden),
                                   torch.nn.GELU(), torch.nn.Linear(hidden, hidden), torch.nn.GELU(),
                                   torch.nn.Linear(hidden, 4))

    @classmethod
    def untrained(cls, seed: int = 0) -> BandImputer:
        """An imputer with random weights (for tests of the plumbing)."""
        import torch

        torch.manual_seed(seed)
        return cls({k: v.clone() for k, v in cls._net().state_dict().items()}, np.zeros(6, np.float32),
                   np.ones(6, np.float32), np.zeros(4, np.float32), np.ones(4, np.float32))

    def predict(self, shared: np.ndarray) -> np.ndarray:
        """Red edge 1–3 and NIR ``(4, ...)`` from the six shared bands ``(6, ...)`` (reflectance, NaN kept)."""
        import torch

        net = self._net()
        net.load_state_dict(self.state)
        net.eval()
        flat = shared.reshape(6, -1).T
        ok = np.isfinite(flat).all(1)
        out = np.full((flat.shape[0], 4), np.nan, np.float32)
        if ok.any():
            x = (_to_log(flat[ok]) - self.x_mean) / self.x_std
            with torch.inference_mode():
                y = net(torch.from_numpy(x.astype(np.float32))).numpy()
            out[ok] = _from_log(y * self.y_std + self.y_mean)
        return out.T.reshape(4, *shared.shape[1:])

    def to_bytes(self) -> bytes:
        """Serialised weights and statistics (``torch.save``; loadable with ``weights_only=True``)."""
        import torch

        buf = io.BytesIO()
        torch.save({"state": self.state, "x_mean": self.x_mean, "x_std": self.x_std, "y_mean": self.y_mean,
                    "y_std": self.y_std}, buf)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> BandImputer:
        """Inverse of :meth:`to_bytes`."""
        import torch

        d = torch.load(io.BytesIO(data), weights_only=False)
        return cls(d["state"], np.asarray(d["x_mean"]), np.asarray(d["x_std"]), np.asarray(d["y_mean"]),
                   np.asarray(d["y_std"]))


def fit_imputer(samples_x: np.ndarray, samples_y: np.ndarray, *, steps: int = 3000, batch: int = 4096,
                seed: int = 0) -> BandImputer:
    """Fit :class:`BandImputer` on pixels: ``samples_x`` ``(n, 6)`` shared bands, ``samples_y`` ``(n, 4)``.

    Mean absolute error in log space, Adam, cosine learning rate; pixels with a NaN are dropped.
    """
    import torch

    ok = np.isfinite(samples_x).all(1) & np.isfinite(samples_y).all(1)
    lx, ly = _to_log(samples_x[ok]), _to_log(samples_y[ok])
    xm, xs = lx.mean(0), lx.std(0) + 1e-6
    ym, ys = ly.mean(0), ly.std(0) + 1e-6
    X = torch.from_numpy((lx - xm) / xs)
    Y = torch.from_numpy((ly - ym) / ys)
    torch.manual_seed(seed)
    net = BandImputer._net()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for step in range(steps):
        for grp in opt.param_groups:
            grp["lr"] = 3e-3 * 0.5 * (1 + np.cos(np.pi * step / steps))
        idx = torch.randint(0, len(X), (batch,), generator=g)
        loss = (net(X[idx]) - Y[idx]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return BandImputer({k: v.detach().clone() for k, v in net.state_dict().items()}, xm, xs, ym, ys)


def oli_to_msi(refl: dict[str, np.ndarray], platform: str = "sentinel-2a") -> dict[str, np.ndarray]:
    """Landsat OLI reflectance brought to Sentinel-2 bandpasses: the inverse HLS adjustment.

    Examples
    --------
    >>> round(float(oli_to_msi({"blue": np.float32(0.1916)})["blue"]), 4)
    0.2
    """
    from ..sensors.sentinel2 import HLS_COEFFICIENTS

    coef = HLS_COEFFICIENTS[platform]
    return {b: ((v - coef[b][1]) / coef[b][0]).astype(np.float32) for b, v in refl.items()}


def dynamic_world_probabilities(cube: xr.Dataset, weights: Path, *, compile: bool = False) -> np.ndarray:
    """Dynamic World's probabilities ``(time, class, y, x)`` float32 of a cube with its nine bands (NaN = no data)."""
    import warnings

    from ..inference import classify
    from ..inputs import OutOfDomainWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OutOfDomainWarning)
        prob = classify(cube[list(DW_BANDS)], "dynamic-world", weights=weights, device="cpu", compile=compile)
    return np.asarray(prob.values, np.float32)


def complete_bands(cube: xr.Dataset, imputer: BandImputer, *, landsat: bool) -> xr.Dataset:
    """The cube with Dynamic World's missing bands imputed (Landsat first mapped to MSI bandpasses)."""
    shared = {b: cube[b].values for b in SHARED_BANDS}
    if landsat:
        shared = oli_to_msi(shared)
    stack = np.stack([shared[b] for b in SHARED_BANDS])  # (6, t, y, x)
    imputed = imputer.predict(stack)
    out = cube.copy()
    for b, v in shared.items():
        out[b] = (cube[b].dims, v)
    for i, b in enumerate(IMPUTED_BANDS):
        out[b] = (cube[SHARED_BANDS[0]].dims, imputed[i])
    # the stack is now Sentinel-2-like: "nir" is the (imputed) broad NIR, not Landsat's nir08
    level = "l1c" if "-l1" in str(cube.attrs.get("sensor", "")) or str(cube.attrs.get("sensor", "")).endswith("l1c") \
        else "l2a"
    out.attrs = {**cube.attrs, "sensor": f"sentinel-2-{level}", "imputed_bands": list(IMPUTED_BANDS),
                 "imputed_from": str(cube.attrs.get("sensor", ""))}
    return out


def imputed_teacher(cube: xr.Dataset, imputer: BandImputer, weights: Path, *, landsat: bool,
                    compile: bool = False) -> np.ndarray:
    """Dynamic World's probabilities on the cube completed by ``imputer`` (``(time, class, y, x)``)."""
    return dynamic_world_probabilities(complete_bands(cube, imputer, landsat=landsat), weights, compile=compile)


def imputer_training_pixels(cubes: Sequence[xr.Dataset], masks: Sequence[np.ndarray], *, n_per_cube: int,
                            seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random pixels ``(n, 6)`` and ``(n, 4)`` from cubes with all bands, where ``masks`` (``(y, x)``) is True."""
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for cube, mask in zip(cubes, masks, strict=True):
        x = np.stack([cube[b].values for b in SHARED_BANDS], -1)  # (t, y, x, 6)
        y = np.stack([cube[b].values for b in IMPUTED_BANDS], -1)
        m = np.broadcast_to(mask, x.shape[:-1]) & np.isfinite(x).all(-1) & np.isfinite(y).all(-1)
        idx = np.flatnonzero(m)
        take = rng.choice(idx, size=min(n_per_cube, idx.size), replace=False)
        xs.append(x.reshape(-1, 6)[take])
        ys.append(y.reshape(-1, 4)[take])
    return np.concatenate(xs), np.concatenate(ys)

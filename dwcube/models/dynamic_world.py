"""A faithful PyTorch port of the official Dynamic World network (forward and backward).

The network is Google's Dynamic World model (google/dynamicworld, Apache-2.0), rebuilt
layer for layer from its SavedModel and loaded with the official weights, read without
TensorFlow by :mod:`dwcube.models.tensor_bundle`.  Layout follows the original Keras
functional graph (``functional_1``; the backward ``functional_3`` has the same topology)::

    x (N, 9, H, W) ─ stem: Conv3×3(64) BN Mish                                   full res
      └ antialiased triangle resize to (H//2, W//2), TensorFlow's float32 weights   half res
          r ─ block1: 3 × [Conv1×1(96) BN Mish DWConv3×3 BN Mish]  + Conv1×1(96) BN Mish (r)
            ─ block2: 3 × [... 144 ...]                            + Conv1×1(144) BN Mish (block1)
          r ─ side:   Conv1×1(48) BN Mish DWConv3×3 BN Mish
          concat(block2, side) ─ final: 3 × [... 144 ...]           + Conv1×1(144) BN Mish (concat)
      └ bilinear resize to (H, W) (half-pixel centres) ─ L2 normalise ─ Conv1×1(9)  logits

Batch norm uses epsilon 1e-3 and its moving statistics; Mish is ``x·tanh(softplus(x))``;
3×3 convolutions pad with zeros.  Odd sizes resize by ``(H//2)/H`` exactly as TensorFlow
does, so odd-sized whole images match the original as well.

Examples
--------
>>> net = build_dynamic_world("forward")                     # random weights
>>> net(torch.zeros(1, 9, 32, 32)).shape
torch.Size([1, 9, 32, 32])
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BANDS",
    "BAND_IDS",
    "NORM_PERCENTILES",
    "DynamicWorldInference",
    "DynamicWorldNet",
    "build_dynamic_world",
    "load_tf_variables",
    "normalize_dn",
    "tf_variable_names",
]

Direction = Literal["forward", "backward"]

#: Dynamic World input bands (dwcube common names) in the model's channel order.
BANDS: tuple[str, ...] = ("blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "swir16", "swir22")
#: The same bands as Sentinel-2 band ids.
BAND_IDS: tuple[str, ...] = ("B2", "B3", "B4", "B5", "B6", "B7", "B8", "B11", "B12")

#: ``[p30, p70]`` of ``ln(1 + 0.005·DN)`` per band, verbatim from Dynamic World's runner.
NORM_PERCENTILES = np.array([
    [1.7417268007636313, 2.023298706048351],
    [1.7261204997060209, 2.038905204308012],
    [1.6798346251414997, 2.179592821212937],
    [1.7734969472909623, 2.2890068333026603],
    [2.289154079164943, 2.6171674549378166],
    [2.382939712192371, 2.773418590375327],
    [2.3828939530384052, 2.7578332604178284],
    [2.1952484264967844, 2.789092484314204],
    [1.554812948247501, 2.4140534947492487],
])

BN_EPSILON = 1e-3


def normalize_dn(dn: np.ndarray, *, axis: int = -1) -> np.ndarray:
    """Dynamic World's input normalisation of L1C digital numbers, as the original does it.

    ``n_b = sigmoid(5·(ln(1 + 0.005·DN_b) − p30_b) / p70_b − 1)``, evaluated in float64
    and cast to float32 (the official runner's arithmetic).  NaN stays NaN.

    Parameters
    ----------
    dn
        Top-of-atmosphere DN (reflectance × 10000, baseline ≥ 04.00 offset already
        removed), the 9 bands of :data:`BANDS` along ``axis``.
    axis
        Band axis (``-1`` for the reference ``(H, W, 9)`` layout, ``1`` for NCHW).

    Returns
    -------
    numpy.ndarray
        float32, same shape, values in (0, 1).

    Examples
    --------
    >>> normalize_dn(np.full((1, 1, 9), 1000.0))[0, 0, :3].round(4)
    array([0.2939, 0.3017, 0.3223], dtype=float32)
    """
    dn = np.asarray(dn, dtype=np.float64)
    if dn.shape[axis] != len(BANDS):
        raise ValueError(f"Dynamic World needs {len(BANDS)} bands on axis {axis}, got shape {dn.shape}")
    shape = [1] * dn.ndim
    shape[axis] = len(BANDS)
    p30 = NORM_PERCENTILES[:, 0].reshape(shape)
    p70 = NORM_PERCENTILES[:, 1].reshape(shape)
    x = (np.log(dn * 0.005 + 1.0) - p30) / p70
    x = np.exp(x * 5.0 - 1.0)
    return (x / (x + 1.0)).astype(np.float32)


# --- resizes with TensorFlow's exact semantics --------------------------------------------------
@lru_cache(maxsize=256)
def _antialias_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Taps of ``tf.image.resize(antialias=True)`` (ScaleAndTranslate, triangle kernel).

    Returns ``(index, weight)`` of shape ``(n_out, K)``: output ``i`` is
    ``Σ_k weight[i, k] · input[index[i, k]]``.  Coordinates and weights are computed in
    float32 as TensorFlow computes them, so border weights such as 3/7 round the same way.
    For even ``n_in`` this is the stride-2 ``[1, 3, 3, 1]/8`` filter, renormalised at borders.
    """
    f32 = np.float32
    if n_in < 1 or n_out < 1:
        raise ValueError(f"cannot resize {n_in} pixels to {n_out}")
    scale = f32(n_out) / f32(n_in)
    inv_scale = f32(1.0 / np.float64(scale))
    kscale = max(inv_scale, f32(1.0))
    one_over_k = f32(1.0) / kscale
    rows: list[list[tuple[int, np.float32]]] = []
    for i in range(n_out):
        centre = f32(i + 0.5) * inv_scale
        lo = int(np.clip(np.ceil(centre - kscale - f32(0.5)), 0, n_in - 1))
        hi = int(np.clip(np.floor(centre + kscale - f32(0.5)), 0, n_in - 1)) + 1
        taps, total = [], f32(0.0)
        for src in range(lo, hi):
            a = abs((f32(src) + f32(0.5) - centre) * one_over_k)
            w = f32(1.0) - a if a < f32(1.0) else f32(0.0)
            total = f32(total + w)
            taps.append((src, w))
        inv = f32(1.0) / total
        rows.append([(s, f32(w * inv)) for s, w in taps])
    k = max(len(r) for r in rows)
    index = np.zeros((n_out, k), dtype=np.int64)
    weight = np.zeros((n_out, k), dtype=np.float32)
    for i, r in enumerate(rows):
        for j, (s, w) in enumerate(r):
            index[i, j], weight[i, j] = s, w
        index[i, len(r):] = r[-1][0]  # padding taps have weight 0
    return index, weight


def _taps(n_in: int, n_out: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    index, weight = _antialias_taps(n_in, n_out)
    return torch.from_numpy(index).to(device), torch.from_numpy(weight).to(device=device, dtype=dtype)


def _apply_taps(x: torch.Tensor, dim: int, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    view = [1] * x.ndim
    view[dim] = index.shape[0]
    out = x.index_select(dim, index[:, 0]) * weight[:, 0].reshape(view)
    for k in range(1, index.shape[1]):
        out = out + x.index_select(dim, index[:, k]) * weight[:, k].reshape(view)
    return out


def _check_size(h: int, w: int) -> None:
    if h < 2 or w < 2:
        raise ValueError(f"Dynamic World needs images of at least 2×2 pixels, got {h}×{w}")


def downsample(x: torch.Tensor) -> torch.Tensor:
    """``tf.image.resize(x, (H//2, W//2), antialias=True)`` on an NCHW tensor.

    Examples
    --------
    >>> downsample(torch.ones(1, 2, 6, 7)).shape
    torch.Size([1, 2, 3, 3])
    """
    h, w = int(x.shape[-2]), int(x.shape[-1])
    _check_size(h, w)
    x = _apply_taps(x, x.ndim - 2, *_taps(h, h // 2, x.device, x.dtype))
    return _apply_taps(x, x.ndim - 1, *_taps(w, w // 2, x.device, x.dtype))


def upsample(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``tf.image.resize(x, size, method="bilinear")``: half-pixel centres, no antialias."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=False)


# --- modules ----------------------------------------------------------------------------------
class ConvBNMish(nn.Sequential):
    """Convolution (with bias) → batch norm (ε = 1e-3) → Mish."""

    def __init__(self, c_in: int, c_out: int, kernel: int, *, depthwise: bool = False) -> None:
        groups = c_in if depthwise else 1
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, groups=groups, bias=True),
            nn.BatchNorm2d(c_out, eps=BN_EPSILON),
            nn.Mish(),
        )


class SeparableUnit(nn.Sequential):
    """1×1 convolution to ``c_out`` then a 3×3 depthwise convolution, each with BN and Mish."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(ConvBNMish(c_in, c_out, 1), ConvBNMish(c_out, c_out, 3, depthwise=True))


class ResidualBlock(nn.Module):
    """``n`` separable units plus a 1×1 ConvBNMish shortcut, added."""

    def __init__(self, c_in: int, c_out: int, n: int = 3) -> None:
        super().__init__()
        self.units = nn.Sequential(*[SeparableUnit(c_in if i == 0 else c_out, c_out) for i in range(n)])
        self.shortcut = ConvBNMish(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.units(x) + self.shortcut(x)


class DynamicWorldNet(nn.Module):
    """The Dynamic World network; ``(N, 9, H, W)`` float32 in, ``(N, 9, H, W)`` out.

    The forward direction maps normalised bands to class logits; the backward
    direction maps class probabilities to normalised bands (linear, unclipped).

    Parameters
    ----------
    direction
        ``"forward"`` or ``"backward"``; they differ only in their weights.
    """

    def __init__(self, direction: Direction = "forward") -> None:
        super().__init__()
        if direction not in ("forward", "backward"):
            raise ValueError(f"direction must be 'forward' or 'backward', got {direction!r}")
        self.direction = direction
        self.stem = ConvBNMish(9, 64, 3)
        self.block1 = ResidualBlock(64, 96)
        self.block2 = ResidualBlock(96, 144)
        self.side = SeparableUnit(64, 48)
        self.final = ResidualBlock(192, 144)
        self.head = nn.Conv2d(144, 9, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 9:
            raise ValueError(f"expected (N, 9, H, W), got {tuple(x.shape)}")
        size = (int(x.shape[-2]), int(x.shape[-1]))
        r = downsample(self.stem(x))
        b2 = self.block2(self.block1(r))
        f = self.final(torch.cat([b2, self.side(r)], dim=1))
        f = upsample(f, size)
        f = f / f.square().sum(dim=1, keepdim=True).clamp_min(1e-12).sqrt()
        return self.head(f)


def build_dynamic_world(direction: Direction = "forward") -> DynamicWorldNet:
    """A Dynamic World network in evaluation mode, with random weights.

    Use :func:`dwcube.models.registry.load_model` for one with the official weights.

    Examples
    --------
    >>> sum(p.numel() for p in build_dynamic_world().parameters())
    225513
    """
    return DynamicWorldNet(direction).eval()


# --- TensorFlow variable names ------------------------------------------------------------------
# (conv2d, batch_normalization, depthwise_conv2d) indices in the forward model; the backward
# model's names are offset by (+15, +24, +10).  Each separable unit: (conv, bn, dwconv, bn).
_OFFSETS = {"forward": (0, 0, 0), "backward": (15, 24, 10)}
_UNITS: dict[str, tuple[int, int, int, int]] = {
    "side": (1, 1, 0, 2),
    "block1.units.0": (2, 3, 1, 4), "block1.units.1": (3, 5, 2, 6), "block1.units.2": (4, 7, 3, 8),
    "block2.units.0": (6, 10, 4, 11), "block2.units.1": (7, 12, 5, 13), "block2.units.2": (8, 14, 6, 15),
    "final.units.0": (10, 17, 7, 18), "final.units.1": (11, 19, 8, 20), "final.units.2": (12, 21, 9, 22),
}
_CBM: dict[str, tuple[int, int]] = {  # plain conv → bn: (conv, bn)
    "stem": (0, 0), "block1.shortcut": (5, 9), "block2.shortcut": (9, 16), "final.shortcut": (13, 23),
}
_HEAD_CONV = 14


@dataclass(frozen=True)
class _Slot:
    module: str      # dotted torch module path
    tf_layer: str    # Keras layer name
    kind: str        # conv | dwconv | bn


def _layer(kind: str, idx: int) -> str:
    return kind if idx == 0 else f"{kind}_{idx}"


def _slots(direction: Direction) -> list[_Slot]:
    oc, ob, od = _OFFSETS[direction]
    out = []
    for mod, (c, b) in _CBM.items():
        out += [_Slot(f"{mod}.0", _layer("conv2d", c + oc), "conv"),
                _Slot(f"{mod}.1", _layer("batch_normalization", b + ob), "bn")]
    for mod, (c, b1, d, b2) in _UNITS.items():
        out += [_Slot(f"{mod}.0.0", _layer("conv2d", c + oc), "conv"),
                _Slot(f"{mod}.0.1", _layer("batch_normalization", b1 + ob), "bn"),
                _Slot(f"{mod}.1.0", _layer("depthwise_conv2d", d + od), "dwconv"),
                _Slot(f"{mod}.1.1", _layer("batch_normalization", b2 + ob), "bn")]
    out.append(_Slot("head", _layer("conv2d", _HEAD_CONV + oc), "conv"))
    return out


def tf_variable_names(direction: Direction = "forward") -> dict[str, str]:
    """``{torch state-dict key: TensorFlow variable name}`` for every parameter and buffer.

    Examples
    --------
    >>> tf_variable_names()["stem.1.running_var"]
    'batch_normalization/moving_variance'
    """
    names = {}
    for s in _slots(direction):
        if s.kind == "bn":
            for t, k in (("weight", "gamma"), ("bias", "beta"),
                         ("running_mean", "moving_mean"), ("running_var", "moving_variance")):
                names[f"{s.module}.{t}"] = f"{s.tf_layer}/{k}"
        else:
            names[f"{s.module}.weight"] = f"{s.tf_layer}/{'depthwise_kernel' if s.kind == 'dwconv' else 'kernel'}"
            names[f"{s.module}.bias"] = f"{s.tf_layer}/bias"
    return names


def load_tf_variables(net: DynamicWorldNet, variables: Mapping[str, np.ndarray]) -> DynamicWorldNet:
    """Copy TensorFlow variables (``{name: array}``) into ``net``, all or nothing.

    Every parameter and batch-norm statistic must be present with the right shape, and
    every variable must be used; otherwise nothing is copied and ``ValueError`` names the
    problem.  Kernels are transposed from TensorFlow's ``(kh, kw, in, out)`` layout.

    Examples
    --------
    Nothing is copied from an incomplete set:

    >>> net = build_dynamic_world("forward")
    >>> load_tf_variables(net, {"conv2d/kernel": np.zeros((3, 3, 9, 64), np.float32)})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: Dynamic World forward weights do not match the network: missing [...
    >>> from dwcube.models.tensor_bundle import read_saved_model
    >>> from dwcube.testing import require_shared
    >>> sm = read_saved_model(require_shared("dynamicworld") / "dynamicworld" / "model" / "forward")
    >>> net = load_tf_variables(net, sm.variables)
    >>> first = next(v for k, v in net.state_dict().items() if k.endswith(".weight"))   # (out, in, kh, kw)
    >>> bool(np.array_equal(first.numpy(), sm.variables["conv2d/kernel"].transpose(3, 2, 0, 1)))
    True
    """
    mapping = tf_variable_names(net.direction)
    state = net.state_dict()
    missing = sorted(v for v in mapping.values() if v not in variables)
    unused = sorted(set(variables) - set(mapping.values()))
    if missing or unused:
        raise ValueError(f"Dynamic World {net.direction} weights do not match the network: "
                         f"missing {missing[:5]}{'…' if len(missing) > 5 else ''}, "
                         f"unexpected {unused[:5]}{'…' if len(unused) > 5 else ''}")
    new: dict[str, torch.Tensor] = {}
    for key, tf_name in mapping.items():
        value = np.asarray(variables[tf_name], dtype=np.float32)
        if value.ndim == 4:
            value = value.transpose(3, 2, 0, 1) if tf_name.endswith("/kernel") else value.transpose(2, 3, 0, 1)
        if tuple(value.shape) != tuple(state[key].shape):
            raise ValueError(f"{tf_name}: shape {value.shape} does not fit {key} {tuple(state[key].shape)}")
        new[key] = torch.from_numpy(np.ascontiguousarray(value))
    for key in state:  # num_batches_tracked and the like keep their values
        new.setdefault(key, state[key])
    net.load_state_dict(new, strict=True)
    return net.eval()


# --- inference form ---------------------------------------------------------------------------
def _mish(x: torch.Tensor) -> torch.Tensor:
    """Mish with one exponential: ``x·n/(n+2)``, ``n = eˣ(eˣ+2)``; equals ``x·tanh(softplus(x))``.

    Above x = 20 Mish is x to float32 precision (as in PyTorch's own softplus threshold).
    Outside ``torch.compile`` the native fused ``F.mish`` kernel is used instead (one pass
    over memory; the formula's seven eager operations would make seven).
    """
    if not torch.compiler.is_compiling():
        return F.mish(x)
    e = torch.exp(x.clamp(max=20.0))
    n = e * (e + 2.0)
    return torch.where(x > 20.0, x, x * n / (n + 2.0))


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A convolution equal to ``bn(conv(x))`` in evaluation mode (folded in float64)."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
    out = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding,
                    groups=conv.groups, bias=True)
    w = conv.weight.double() * scale.reshape(-1, 1, 1, 1)
    b = (conv.bias.double() - bn.running_mean.double()) * scale + bn.bias.double()
    out.weight.data.copy_(w.float())
    out.bias.data.copy_(b.float())
    return out


class _FoldedCBM(nn.Module):
    def __init__(self, cbm: ConvBNMish) -> None:
        super().__init__()
        self.conv = _fold(cbm[0], cbm[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _mish(self.conv(x))


class _SharedInput(nn.Module):
    """Several ConvBNMish 1×1 layers that read the same tensor, as one wider convolution.

    Returns the outputs split back; one pass over the input and one larger matrix product
    instead of several.
    """

    def __init__(self, *layers: ConvBNMish) -> None:
        super().__init__()
        convs = [_fold(layer[0], layer[1]) for layer in layers]
        self.sizes = [c.out_channels for c in convs]
        self.conv = nn.Conv2d(convs[0].in_channels, sum(self.sizes), 1, bias=True)
        self.conv.weight.data.copy_(torch.cat([c.weight.data for c in convs], 0))
        self.conv.bias.data.copy_(torch.cat([c.bias.data for c in convs], 0))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(torch.split(_mish(self.conv(x)), self.sizes, dim=1))


class _FoldedBlock(nn.Module):
    """A residual block whose first 1×1 convolution and shortcut come precomputed."""

    def __init__(self, block: ResidualBlock) -> None:
        super().__init__()
        self.first_dw = _FoldedCBM(block.units[0][1])
        self.units = nn.Sequential(*[nn.Sequential(_FoldedCBM(u[0]), _FoldedCBM(u[1])) for u in block.units[1:]])

    def forward(self, first: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        return self.units(self.first_dw(first)) + shortcut


@lru_cache(maxsize=256)
def _lerp_plan(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``i0`` and weights ``w1`` of TF's half-pixel bilinear resize, with ``i1 = i0 + 1``.

    Where TensorFlow clamps (both rows the same), ``w1`` is 0, so the pair ``(i0, i0 + 1)``
    always works on maps padded by one row of zeros.
    """
    f32 = np.float32
    scale = f32(n_in) / f32(n_out)
    c = ((np.arange(n_out).astype(f32) + f32(0.5)) * scale - f32(0.5)).astype(f32)
    floor = np.floor(c)
    i0 = np.maximum(floor, 0).astype(np.int64)
    i1 = np.minimum(np.ceil(c), n_in - 1).astype(np.int64)
    w1 = (c - floor).astype(f32)
    w1[i0 == i1] = 0.0
    return i0, w1


class DynamicWorldInference(nn.Module):
    """The same function as :class:`DynamicWorldNet`, rearranged for speed.

    * Batch norms are folded into the convolutions before them (in float64).
    * 1×1 layers that read the same tensor (a block's first unit and its shortcut; the
      side branch) run as one wider convolution.
    * Mish is computed with one exponential.
    * Upsampling, L2 normalisation and the 1×1 head are evaluated at half resolution:
      the head is linear, so it commutes with the bilinear upsampling, and the squared
      norm of an upsampled vector is a weighted sum of dot products between the four
      low-resolution neighbours.  Nothing with 144 channels is
      ever made at full resolution.

    The outputs equal the faithful network's to float32 rounding (tested against the
    TensorFlow reference with the same tolerances).

    Examples
    --------
    >>> fast = DynamicWorldInference(build_dynamic_world())
    >>> fast(torch.zeros(1, 9, 16, 16)).shape
    torch.Size([1, 9, 16, 16])
    """

    def __init__(self, net: DynamicWorldNet) -> None:
        super().__init__()
        net = net.eval()
        self.direction = net.direction
        self.stem = _FoldedCBM(net.stem)
        # every group of 1×1 layers reading one tensor becomes one convolution
        self.from_r = _SharedInput(net.side[0], net.block1.units[0][0], net.block1.shortcut)
        self.side_dw = _FoldedCBM(net.side[1])
        self.block1 = _FoldedBlock(net.block1)
        self.from_b1 = _SharedInput(net.block2.units[0][0], net.block2.shortcut)
        self.block2 = _FoldedBlock(net.block2)
        self.from_c = _SharedInput(net.final.units[0][0], net.final.shortcut)
        self.final = _FoldedBlock(net.final)
        self.head_weight = nn.Parameter(net.head.weight.detach().clone()[:, :, 0, 0], requires_grad=False)
        self.head_bias = nn.Parameter(net.head.bias.detach().clone(), requires_grad=False)
        taps = torch.tensor([1.0, 3.0, 3.0, 1.0]) / 8.0
        self.register_buffer("down_kernel", (taps[:, None] * taps[None, :]).reshape(1, 1, 4, 4), persistent=False)
        self._plans: dict[tuple, tuple[torch.Tensor, ...]] = {}
        self._run = self._core

    def _plan(self, H: int, W: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """Resize taps and interpolation weights for an ``H×W`` input (cached per shape)."""
        key = (H, W, str(device), dtype)
        plan = self._plans.get(key)
        if plan is None:
            _check_size(H, W)
            h, w = H // 2, W // 2
            y0, wy = (torch.from_numpy(a).to(device) for a in _lerp_plan(h, H))
            x0, wx = (torch.from_numpy(a).to(device) for a in _lerp_plan(w, W))
            plan = (*_taps(H, h, device, dtype), *_taps(W, w, device, dtype), y0, wy.to(dtype), x0, wx.to(dtype))
            self._plans[key] = plan
        return plan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 9:
            raise ValueError(f"expected (N, 9, H, W), got {tuple(x.shape)}")
        return self._run(x, *self._plan(int(x.shape[-2]), int(x.shape[-1]), x.device, x.dtype))

    def compile(self, **kwargs) -> DynamicWorldInference:  # type: ignore[override]
        """Compile the numeric core with :func:`torch.compile` (shape plans stay eager)."""
        self._run = torch.compile(self._core, **kwargs)
        return self

    def _downsample_even(self, s: torch.Tensor) -> torch.Tensor:
        """The antialiased 2× downsample of an even-sized map as a strided depthwise convolution.

        Interior taps are ``[1, 3, 3, 1]/8`` on each axis (exact in binary); with zero
        padding the first and last outputs see ``[3, 3, 1]/8``, rescaled by ``8/7`` to
        TensorFlow's renormalised border weights.  As one oneDNN convolution the stem's
        activations are read once, instead of once per tap.
        """
        c, h, w = s.shape[1], s.shape[-2] // 2, s.shape[-1] // 2
        k = self.down_kernel.to(dtype=s.dtype).expand(c, 1, 4, 4)
        r = F.conv2d(s, k, stride=2, padding=1, groups=c)
        fy = torch.ones(h, dtype=s.dtype, device=s.device)
        fx = torch.ones(w, dtype=s.dtype, device=s.device)
        border = torch.tensor(8.0 / 7.0, dtype=s.dtype, device=s.device)
        fy[0] = fy[-1] = border  # h == 1: a single output sees [3, 3]/8 -> x 8/6
        fx[0] = fx[-1] = border
        if h == 1:
            fy[0] = 8.0 / 6.0
        if w == 1:
            fx[0] = 8.0 / 6.0
        return r * (fy.reshape(-1, 1) * fx.reshape(1, -1))

    def _core(self, x: torch.Tensor, ty_i: torch.Tensor, ty_w: torch.Tensor, tx_i: torch.Tensor,
              tx_w: torch.Tensor, y0: torch.Tensor, wy: torch.Tensor, x0: torch.Tensor,
              wx: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        if s.shape[-2] % 2 == 0 and s.shape[-1] % 2 == 0:
            r = self._downsample_even(s)
        else:
            r = _apply_taps(_apply_taps(s, 2, ty_i, ty_w), 3, tx_i, tx_w)
        side, first1, short1 = self.from_r(r)
        b1 = self.block1(first1, short1)
        b2 = self.block2(*self.from_b1(b1))
        f = self.final(*self.from_c(torch.cat([b2, self.side_dw(side)], dim=1)))

        # low-resolution maps, padded by one zero row/column so that (i, i+1) always exists
        head = F.pad(torch.einsum("nchw,kc->nkhw", f, self.head_weight), (0, 1, 0, 1))
        fd = F.pad(f, (0, 1, 0, 1))
        n2 = (fd * fd).sum(1)
        hz = F.pad((fd[..., :, :-1] * fd[..., :, 1:]).sum(1), (0, 1))
        vt = F.pad((fd[..., :-1, :] * fd[..., 1:, :]).sum(1), (0, 0, 0, 1))
        d1 = F.pad((fd[..., :-1, :-1] * fd[..., 1:, 1:]).sum(1), (0, 1, 0, 1))
        d2 = F.pad((fd[..., :-1, 1:] * fd[..., 1:, :-1]).sum(1), (0, 1, 0, 1))

        def at(m: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
            return m.index_select(-2, y0 + dy).index_select(-1, x0 + dx)

        a1, b1 = wy.reshape(-1, 1), wx.reshape(1, -1)
        a0, b0 = 1.0 - a1, 1.0 - b1
        s = (a0 * a0 * b0 * b0 * at(n2, 0, 0) + a0 * a0 * b1 * b1 * at(n2, 0, 1)
             + a1 * a1 * b0 * b0 * at(n2, 1, 0) + a1 * a1 * b1 * b1 * at(n2, 1, 1)
             + 2 * a0 * a0 * b0 * b1 * at(hz, 0, 0) + 2 * a1 * a1 * b0 * b1 * at(hz, 1, 0)
             + 2 * a0 * a1 * b0 * b0 * at(vt, 0, 0) + 2 * a0 * a1 * b1 * b1 * at(vt, 0, 1)
             + 2 * a0 * a1 * b0 * b1 * (at(d1, 0, 0) + at(d2, 0, 0)))
        inv = torch.rsqrt(s.clamp_min(1e-12)).to(f.dtype).unsqueeze(1)
        # bilinear upsampling of the 9 head channels, the way TF orders it (rows, then columns)
        wyf, wxf = wy.to(f.dtype).reshape(-1, 1), wx.to(f.dtype).reshape(1, -1)
        top, bot = head.index_select(-2, y0), head.index_select(-2, y0 + 1)
        rows = top + (bot - top) * wyf
        left, right = rows.index_select(-1, x0), rows.index_select(-1, x0 + 1)
        up = left + (right - left) * wxf
        return up * inv + self.head_bias.reshape(1, -1, 1, 1)

"""The lightweight, sensor-agnostic land-cover U-Net (hand-written; weights trained by :mod:`dwcube.train`).

Why hand-written: the network is small and must obey the project's tiling rule exactly
(a declared receptive field, halo and alignment, no image-level operation), which the
general-purpose segmentation libraries do not promise (their ASPP blocks, for example,
carry a global-pooling branch that makes a tile's output depend on the whole tile).

Architecture (``UNetConfig``; widths ``c0..c3``, default ``(16, 32, 64, 96)``)::

    x (N, 9, H, W) ─ [replicate-pad H, W up to multiples of 8 at the far edge]
      enc0: Conv3×3 BN ReLU (× full_res_convs)                   c0   full res
      ─ MaxPool2 ─ enc1: 2 × Conv3×3 BN ReLU                     c1   1/2
      ─ MaxPool2 ─ enc2: 2 × Conv3×3 BN ReLU                     c2   1/4
      ─ MaxPool2 ─ bottleneck: Conv3×3 BN ReLU, then              c3   1/8
                   Conv3×3 BN ReLU (plain)  or  ASPP (optional)
      decoder, l = 2, 1, 0:  u = ConvTranspose2×2/2(c_{l+1} → c_l)
                             s = enc_l, or AttentionGate(enc_l, u) (optional)
                             d_l = [DWConv3×3 BN ReLU, Conv1×1 BN ReLU] (concat(s, u))
                                   (depthwise-separable, × decoder_convs; the decoder
                                   otherwise costs more than the encoder on a CPU)
      head: Conv1×1(c0 → 9) → logits, cropped back to (H, W)

* **ASPP** (atrous spatial pyramid pooling, Chen et al. 2017, DeepLab v3) here has a
  1×1 branch and one depthwise-separable 3×3 branch per dilation rate (1, 2, 3 bottleneck
  pixels = 8, 16, 24 input pixels), concatenated and projected by a 1×1 convolution —
  deliberately *without* the image-pooling branch, whose global average would make
  every output pixel depend on the whole tile and break chunk invariance.
* **Attention gates** (Oktay et al. 2018, Attention U-Net) weight each skip connection
  per pixel by ``α = σ(ψ(ReLU(W_x·skip + W_g·u)))`` computed at the skip's resolution
  from the upsampled decoder features ``u``; all 1×1, so they add no spatial context.
* Transposed 2×2 convolutions with stride 2 map coarse pixel ``j`` onto fine pixels
  ``2j, 2j+1``, the same cells the 2×2 max pooling merged: with tile origins on
  multiples of 8 (three poolings) every tile sees the same phase as the whole image.

**Padding rule (sizes that are not multiples of 8).**  :meth:`UNet.forward` repeats
the last row/column until height and width are multiples of 8 and crops the output
back, the same rule :func:`dwcube.inference.classify` applies to an image's far edge,
so the network accepts any size and the whole-image result is what an aligned tiling
reproduces.

**Receptive field** (:func:`receptive_field`) is derived layer by layer: a 3×3
convolution of dilation ``d`` at level ``l`` widens the input interval of an output
pixel by ``d·2^l`` on each side, a pooling by ``2^l`` on the far side, an upsampling by
``2^l`` on the near side (the union over both phases).  The registry's halo is that
extent rounded up to the alignment (48 px plain or with attention, 64 px with ASPP);
tests check it against the network empirically (a NaN input pixel reaches exactly the
outputs within it).

Examples
--------
>>> net = UNet(UNetConfig(attention=True, aspp=True)).eval()
>>> net(torch.zeros(1, 9, 37, 50)).shape
torch.Size([1, 9, 37, 50])
>>> receptive_field(UNetConfig())
ReceptiveField(before=-43, after=43, size=87, halo=48)
"""

from __future__ import annotations

import copy
import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ALIGNMENT",
    "ASPP",
    "FEATURES",
    "SENSORS",
    "SHIPPED_NORMALISATION",
    "AttentionGate",
    "DecoderStage",
    "ReceptiveField",
    "UNet",
    "UNetConfig",
    "fuse_batchnorm",
    "input_spec",
    "load_unet",
    "read_unet_file",
    "receptive_field",
    "save_unet",
    "unet_entry",
]

#: Tile origins must be multiples of this (three 2× poolings).
ALIGNMENT = 8
_LEVELS = 3
FORMAT = "dwcube-unet"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of :class:`UNet` (stored in every weights file).

    Parameters
    ----------
    in_channels
        Input features (9 for the registry model: six bands, NDVI, NDMI, MNDWI).
    n_classes
        Output classes (9, Dynamic World order).
    widths
        Channels at full, 1/2, 1/4 and 1/8 resolution.
    attention
        Attention gates on the three skip connections.
    aspp
        Atrous spatial pyramid pooling (without image pooling) in the bottleneck.
    aspp_rates
        Dilation rates of the ASPP's 3×3 branches (in bottleneck pixels, 8 input px each).
    full_res_convs, decoder_convs
        3×3 convolutions in the first encoder stage, and depthwise-separable units in
        each decoder stage.

    Examples
    --------
    >>> UNetConfig(widths=(8, 16, 32, 64)).widths
    (8, 16, 32, 64)
    """

    in_channels: int = 9
    n_classes: int = 9
    widths: tuple[int, int, int, int] = (16, 32, 64, 96)
    attention: bool = False
    aspp: bool = False
    aspp_rates: tuple[int, ...] = (1, 2, 3)
    full_res_convs: int = 1
    decoder_convs: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "aspp_rates", tuple(int(r) for r in self.aspp_rates))
        if len(self.widths) != _LEVELS + 1 or min(self.widths) < 1:
            raise ValueError(f"widths must be 4 positive channel counts, got {self.widths}")
        if self.full_res_convs < 1 or self.decoder_convs < 1:
            raise ValueError("full_res_convs and decoder_convs must be at least 1")
        if self.aspp and (not self.aspp_rates or min(self.aspp_rates) < 1):
            raise ValueError(f"aspp_rates must be positive dilations, got {self.aspp_rates}")

    def to_dict(self) -> dict[str, Any]:
        """Plain types (lists), for weights files and ``attrs``."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UNetConfig:
        """Inverse of :meth:`to_dict` (unknown keys are an error).

        Examples
        --------
        >>> c = UNetConfig(aspp=True)
        >>> UNetConfig.from_dict(c.to_dict()) == c
        True
        """
        known = set(cls.__dataclass_fields__)
        extra = set(d) - known
        if extra:
            raise ValueError(f"unknown UNetConfig keys: {sorted(extra)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class ConvBNReLU(nn.Sequential):
    """3×3 (or 1×1) convolution, batch norm, ReLU; zero padding keeps the size.

    ``groups=c_in`` makes it depthwise.
    """

    def __init__(self, c_in: int, c_out: int, k: int = 3, dilation: int = 1, groups: int = 1) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, k, padding=dilation * (k // 2), dilation=dilation, groups=groups,
                                   bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


def separable(c_in: int, c_out: int, dilation: int = 1) -> nn.Sequential:
    """Depthwise 3×3 (dilated) then pointwise 1×1, each with batch norm and ReLU (MobileNet unit).

    Examples
    --------
    >>> separable(4, 8).eval()(torch.zeros(1, 4, 5, 5)).shape
    torch.Size([1, 8, 5, 5])
    """
    return nn.Sequential(ConvBNReLU(c_in, c_in, 3, dilation, groups=c_in), ConvBNReLU(c_in, c_out, 1))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling without the image-pooling branch (chunk-invariant).

    Branches: 1×1, and a depthwise-separable 3×3 convolution per dilation rate (as in
    DeepLab v3+); concatenated and projected back to ``c`` channels by a 1×1 convolution.

    Examples
    --------
    >>> ASPP(8, (1, 2)).eval()(torch.zeros(1, 8, 5, 5)).shape
    torch.Size([1, 8, 5, 5])
    """

    def __init__(self, c: int, rates: Sequence[int]) -> None:
        super().__init__()
        self.branches = nn.ModuleList([ConvBNReLU(c, c, 1)] + [separable(c, c, r) for r in rates])
        self.project = ConvBNReLU(c * (1 + len(rates)), c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([b(x) for b in self.branches], dim=1))


class AttentionGate(nn.Module):
    """Additive attention on a skip connection (Oktay et al. 2018), at the skip's resolution.

    ``α = σ(ψ(ReLU(W_x·x + W_g·g)))``, output ``α·x``; ``x`` is the skip, ``g`` the
    upsampled decoder features; every map is 1×1, so no context is added.

    Examples
    --------
    >>> AttentionGate(4, 4)(torch.ones(1, 4, 3, 3), torch.ones(1, 4, 3, 3)).shape
    torch.Size([1, 4, 3, 3])
    """

    def __init__(self, c_x: int, c_g: int) -> None:
        super().__init__()
        inter = max(1, c_x // 2)
        self.wx = nn.Conv2d(c_x, inter, 1, bias=False)
        self.wg = nn.Conv2d(c_g, inter, 1, bias=True)
        self.psi = nn.Conv2d(inter, 1, 1, bias=True)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.psi(torch.relu(self.wx(x) + self.wg(g))))


class DecoderStage(nn.Module):
    """A depthwise-separable unit over ``concat(skip, up)``, computed without the concatenation.

    A depthwise convolution acts per channel and a 1×1 convolution over a concatenation
    is the sum of 1×1 convolutions over its parts, so
    ``pw(dw(concat(s, u))) = pw_s(dw_s(s)) + pw_u(dw_u(u))`` exactly; the channel-last
    concatenation it avoids cost ~10 % of the CPU time.  Further units
    (``n_units − 1``) follow.

    Examples
    --------
    >>> DecoderStage(4, 2).eval()(torch.zeros(1, 4, 6, 6), torch.zeros(1, 4, 6, 6)).shape
    torch.Size([1, 4, 6, 6])
    """

    def __init__(self, c: int, n_units: int = 1) -> None:
        super().__init__()
        self.dw_skip = ConvBNReLU(c, c, 3, groups=c)
        self.dw_up = ConvBNReLU(c, c, 3, groups=c)
        self.pw_skip = nn.Conv2d(c, c, 1, bias=False)
        self.pw_up = nn.Conv2d(c, c, 1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        self.more = nn.Sequential(*[separable(c, c) for _ in range(n_units - 1)])

    def forward(self, s: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        d = self.pw_skip(self.dw_skip(s)) + self.pw_up(self.dw_up(u))
        return self.more(torch.relu(self.bn(d)))


class UNet(nn.Module):
    """The U-Net of :class:`UNetConfig` (see the module docstring for the layout).

    Input ``(N, in_channels, H, W)`` normalised features, output ``(N, n_classes, H, W)``
    logits, any ``H, W ≥ 1`` (the padding rule above).

    Examples
    --------
    >>> UNet(UNetConfig(widths=(4, 4, 4, 4))).eval()(torch.zeros(2, 9, 8, 9)).shape
    torch.Size([2, 9, 8, 9])
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or UNetConfig()
        c0, c1, c2, c3 = cfg.widths
        self.enc0 = nn.Sequential(ConvBNReLU(cfg.in_channels, c0),
                                  *[ConvBNReLU(c0, c0) for _ in range(cfg.full_res_convs - 1)])
        self.enc1 = nn.Sequential(ConvBNReLU(c0, c1), ConvBNReLU(c1, c1))
        self.enc2 = nn.Sequential(ConvBNReLU(c1, c2), ConvBNReLU(c2, c2))
        self.bottleneck = nn.Sequential(ConvBNReLU(c2, c3), ASPP(c3, cfg.aspp_rates) if cfg.aspp else ConvBNReLU(c3, c3))
        ups, gates, decs = [], [], []
        for c_fine, c_coarse in ((c2, c3), (c1, c2), (c0, c1)):
            ups.append(nn.ConvTranspose2d(c_coarse, c_fine, 2, stride=2))
            gates.append(AttentionGate(c_fine, c_fine) if cfg.attention else nn.Identity())
            decs.append(DecoderStage(c_fine, cfg.decoder_convs))
        self.ups, self.gates, self.decs = nn.ModuleList(ups), nn.ModuleList(gates), nn.ModuleList(decs)
        self.head = nn.Conv2d(c0, cfg.n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(f"expected (N, {self.config.in_channels}, H, W), got {tuple(x.shape)}")
        h, w = int(x.shape[-2]), int(x.shape[-1])
        ph, pw = -h % ALIGNMENT, -w % ALIGNMENT
        if ph or pw:  # far-edge replication: the engine's rule for unaligned image sizes
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        e0 = self.enc0(x)
        e1 = self.enc1(F.max_pool2d(e0, 2))
        e2 = self.enc2(F.max_pool2d(e1, 2))
        d = self.bottleneck(F.max_pool2d(e2, 2))
        for skip, up, gate, dec in zip((e2, e1, e0), self.ups, self.gates, self.decs, strict=True):
            u = up(d)
            s = gate(skip, u) if self.config.attention else skip
            d = dec(s, u)
        out = self.head(d)
        return out[..., :h, :w] if (ph or pw) else out


def fuse_batchnorm(net: UNet) -> UNet:
    """A copy of ``net`` (in evaluation mode) with every batch norm folded into its convolution.

    The same function to float32 rounding, fewer passes over memory at inference.

    Examples
    --------
    >>> net = UNet(UNetConfig(widths=(4, 4, 4, 4))).eval()
    >>> x = torch.randn(1, 9, 16, 16)
    >>> bool(torch.allclose(net(x), fuse_batchnorm(net)(x), atol=1e-5))
    True
    """
    net = copy.deepcopy(net).eval()
    for mod in net.modules():
        if isinstance(mod, ConvBNReLU):
            conv, bn = mod[0], mod[1]
            if not isinstance(bn, nn.BatchNorm2d):
                continue
            with torch.no_grad():
                scale = (bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps))
                fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, padding=conv.padding,
                                  dilation=conv.dilation, groups=conv.groups, bias=True)
                fused.weight.copy_((conv.weight.double() * scale.reshape(-1, 1, 1, 1)).float())
                fused.bias.copy_((bn.bias.double() - bn.running_mean.double() * scale).float())
            mod[0] = fused
            mod[1] = nn.Identity()
        elif isinstance(mod, DecoderStage) and isinstance(mod.bn, nn.BatchNorm2d):
            bn = mod.bn
            with torch.no_grad():
                scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
                for conv in (mod.pw_skip, mod.pw_up):
                    conv.weight.copy_((conv.weight.double() * scale.reshape(-1, 1, 1, 1)).float())
                bias = nn.Parameter((bn.bias.double() - bn.running_mean.double() * scale).float())
                mod.pw_skip.bias = bias
            mod.bn = nn.Identity()
    return net


# --- receptive field -------------------------------------------------------------------------


@dataclass(frozen=True)
class ReceptiveField:
    """Input pixels that can influence output pixel 0, as offsets ``before..after`` (inclusive).

    ``halo`` is ``max(−before, after)`` rounded up to :data:`ALIGNMENT`: the context a
    tile needs on each side to reproduce the whole image.
    """

    before: int
    after: int
    size: int
    halo: int


def receptive_field(config: UNetConfig) -> ReceptiveField:
    """The receptive field of :class:`UNet` under ``config``, over both pooling phases.

    Examples
    --------
    >>> rf = receptive_field(UNetConfig(aspp=True))
    >>> rf.halo % ALIGNMENT, rf.size > receptive_field(UNetConfig()).size
    (0, True)
    """
    def conv(iv: tuple[int, int], level: int, n: int = 1, dilation: int = 1) -> tuple[int, int]:
        r = n * dilation * 2**level
        return iv[0] - r, iv[1] + r

    iv = conv((0, 0), 0, config.full_res_convs)
    skips = [iv]
    for level in (1, 2):
        iv = (iv[0], iv[1] + 2 ** (level - 1))  # 2×2 pooling from level-1
        iv = conv(iv, level, 2)
        skips.append(iv)
    iv = (iv[0], iv[1] + 2 ** 2)
    iv = conv(iv, 3, 1)
    iv = conv(iv, 3, 1, max(config.aspp_rates)) if config.aspp else conv(iv, 3, 1)
    for level in (2, 1, 0):
        iv = (iv[0] - 2**level, iv[1])  # transposed conv: union over the two phases
        s = skips[level]
        iv = (min(iv[0], s[0]), max(iv[1], s[1]))  # gate and concat: union
        iv = conv(iv, level, config.decoder_convs)
    extent = max(-iv[0], iv[1])
    halo = -(-extent // ALIGNMENT) * ALIGNMENT
    return ReceptiveField(iv[0], iv[1], iv[1] - iv[0] + 1, halo)


# --- weights files ---------------------------------------------------------------------------


def save_unet(path: str | Path, net: UNet, *, normalisation: Sequence[Mapping[str, Any]],
              metadata: Mapping[str, Any] | None = None, half: bool = False) -> str:
    """Write ``net`` with its configuration and input normalisation; returns the file's SHA-256.

    Parameters
    ----------
    path
        Output file (``.pt``; a plain :func:`torch.save` dictionary, loadable with
        ``weights_only=True``).
    net
        The trained network (batch norms not folded).
    normalisation
        One mapping per input feature (``name, kind, shift, scale, clip``), in channel order.
    metadata
        Provenance: training data, recipe, metrics (JSON-like values).
    half
        Store the parameters as float16 (half the size; loaded back as float32).

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "m.pt")
    >>> sha = save_unet(p, UNet(UNetConfig(widths=(4, 4, 4, 4))), normalisation=[{"name": "red"}] * 9)
    >>> len(sha), load_unet(p).config.widths
    (64, (4, 4, 4, 4))
    """
    state = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
             for k, v in net.state_dict().items()}
    blob = {"format": FORMAT, "format_version": FORMAT_VERSION, "config": net.config.to_dict(),
            "normalisation": [dict(n) for n in normalisation], "metadata": dict(metadata or {}),
            "state_dict": state}
    if len(blob["normalisation"]) != net.config.in_channels:
        raise ValueError(f"normalisation has {len(blob['normalisation'])} entries for "
                         f"{net.config.in_channels} input channels")
    buf = io.BytesIO()
    torch.save(blob, buf)
    data = buf.getvalue()
    Path(path).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def read_unet_file(path: str | Path, *, sha256: str | None = None) -> dict[str, Any]:
    """The content of a weights file written by :func:`save_unet` (checked against ``sha256`` if given).

    Raises
    ------
    dwcube.models.weights.WeightsHashError
        When ``sha256`` is given and the file's differs.
    ValueError
        When the file is not a dwcube U-Net weights file.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "m.pt")
    >>> _ = save_unet(p, UNet(UNetConfig(widths=(4, 4, 4, 4))), normalisation=[{"name": "red"}] * 9,
    ...               metadata={"note": "demo"})
    >>> read_unet_file(p)["metadata"]
    {'note': 'demo'}
    """
    from .weights import WeightsHashError

    data = Path(path).read_bytes()
    if sha256 is not None:
        got = hashlib.sha256(data).hexdigest()
        if got != sha256:
            raise WeightsHashError(f"{path}: SHA-256 {got} does not match the pinned {sha256}; "
                                   "the U-Net weights are corrupted or were replaced")
    blob = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{path} is not a {FORMAT} weights file")
    if blob.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{path}: format version {blob['format_version']} is newer than this dwcube reads")
    return blob


def load_unet(path: str | Path, *, sha256: str | None = None, fuse: bool = False) -> UNet:
    """Build a :class:`UNet` from a weights file, in evaluation mode (float32).

    Parameters
    ----------
    path
        File written by :func:`save_unet`.
    sha256
        Expected SHA-256 of the file; checked before anything is read.
    fuse
        Fold the batch norms into the convolutions (:func:`fuse_batchnorm`) for inference.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "m.pt")
    >>> _ = save_unet(p, UNet(UNetConfig(widths=(4, 4, 4, 4))), normalisation=[{"name": "red"}] * 9)
    >>> load_unet(p, fuse=True).training
    False
    """
    blob = read_unet_file(path, sha256=sha256)
    net = UNet(UNetConfig.from_dict(blob["config"]))
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in blob["state_dict"].items()})
    net.eval()
    net.metadata = blob.get("metadata", {})  # type: ignore[assignment]
    net.normalisation = blob.get("normalisation", [])  # type: ignore[assignment]
    return fuse_batchnorm(net) if fuse else net


# --- inputs and registry entries -------------------------------------------------------------

#: The U-Net's inputs in channel order: six reflectance bands common to Sentinel-2 and
#: Landsat (narrow NIR: S2 B8A ↔ Landsat ``nir08``) and three indices on them.  No
#: elevation: the shipped weights do not need a DEM (models trained with
#: :func:`dwcube.train.train_from_cube` on a cube with a DEM may add ``"elevation"``).
FEATURES: tuple[str, ...] = ("blue", "green", "red", "nir08", "swir16", "swir22", "ndvi", "ndmi", "mndwi")

#: The shipped model's input normalisation: bands ``(ln(1 + 20·max(x, −0.02)) − shift) / scale``
#: (the logarithm keeps snow at reflectance 1.2 a few scales from the median instead of 12; the
#: floor keeps Landsat's slightly negative surface reflectance defined),
#: indices ``(x − shift) / scale`` clipped to ±4; shift = median and scale = half the
#: 10–90 % range over the training patches (3 significant digits;
#: :func:`dwcube.train.recipe.fit_normalisation`).  Stored in the weights file too; the
#: registry entry and the file must agree (tested).
SHIPPED_NORMALISATION: tuple[dict[str, Any], ...] = (
    {'name': 'blue', 'kind': 'band', 'shift': 1.24, 'scale': 0.569, 'clip': None, 'log_gain': 20.0, 'floor': -0.02},
    {'name': 'green', 'kind': 'band', 'shift': 1.12, 'scale': 0.464, 'clip': None, 'log_gain': 20.0, 'floor': -0.02},
    {'name': 'red', 'kind': 'band', 'shift': 1.03, 'scale': 0.606, 'clip': None, 'log_gain': 20.0, 'floor': -0.02},
    {'name': 'nir08', 'kind': 'band', 'shift': 1.75, 'scale': 0.539, 'clip': None, 'log_gain': 20.0, 'floor': -0.02},
    {'name': 'swir16', 'kind': 'band', 'shift': 1.47, 'scale': 0.634, 'clip': None, 'log_gain': 20.0, 'floor': -0.02},
    {'name': 'swir22', 'kind': 'band', 'shift': 1.02, 'scale': 0.571, 'clip': None, 'log_gain': 20.0, 'floor': -0.02},
    {'name': 'ndvi', 'kind': 'index', 'shift': 0.34, 'scale': 0.441, 'clip': [-4.0, 4.0]},
    {'name': 'ndmi', 'kind': 'index', 'shift': 0.161, 'scale': 0.281, 'clip': [-4.0, 4.0]},
    {'name': 'mndwi', 'kind': 'index', 'shift': -0.309, 'scale': 0.493, 'clip': [-4.0, 4.0]},
)

#: Products the shipped weights were trained or simulated on (no OutOfDomainWarning for them).
SENSORS: tuple[str, ...] = ("sentinel-2-l1c", "sentinel-2-l2a", "landsat-c2-l2-oli", "landsat-c2-l2-tm")


def input_spec(normalisation: Sequence[Mapping[str, Any]]) -> Any:
    """The :class:`~dwcube.inputs.InputSpec` of a U-Net from its stored normalisation records.

    Parameters
    ----------
    normalisation
        One record per feature (``name``, ``kind``, ``shift``, ``scale``, optional
        ``clip``), as :func:`save_unet` stores them.

    Examples
    --------
    >>> spec = input_spec([{"name": "red", "kind": "band", "shift": 0.1, "scale": 0.1},
    ...                    {"name": "ndvi", "kind": "index", "shift": 0.0, "scale": 0.5, "clip": [-3, 3]}])
    >>> spec.names, spec.nir, spec.features[1].clip
    (('red', 'ndvi'), 'nir08', (-3.0, 3.0))
    """
    from ..inputs import Feature, InputSpec

    feats = tuple(Feature(str(r["name"]), r["kind"], shift=float(r.get("shift", 0.0)), scale=float(r.get("scale", 1.0)),
                          clip=tuple(float(v) for v in r["clip"]) if r.get("clip") else None,  # type: ignore[arg-type]
                          log_gain=float(r["log_gain"]) if r.get("log_gain") is not None else None,
                          floor=float(r["floor"]) if r.get("floor") is not None else None)
                  for r in normalisation)
    return InputSpec(feats, nir="nir08",
                     description=("surface or top-of-atmosphere reflectance (0-1) of Sentinel-2 or Landsat, on a 10 m grid "
                                  "(bilinear); indices on the narrow NIR (nir08); " + "; ".join(f.describe() for f in feats)),
                     sensors=SENSORS, resolution=10.0, resampling="bilinear")


def _build_from_file(root: Path | None, *, path: str, sha256: str | None, fuse: bool = True) -> nn.Module:
    """Registry builder: the network of a weights file, hash-checked, batch norms folded."""
    return load_unet(path, sha256=sha256, fuse=fuse)


def unet_entry(path: str | Path, *, name: str = "unet-custom", version: str = "0", sha256: str | None = None,
               description: str = "dwcube U-Net (weights from a file)", license: str = "",
               attribution: str = "", origin: str | None = None) -> Any:
    """A registry entry (not registered) for a U-Net weights file, e.g. one you trained.

    The entry's inputs come from the file's stored normalisation, its receptive field
    and halo from the file's configuration (:func:`receptive_field`); pass it to
    :func:`dwcube.inference.classify` as ``model=``.  Results record the file's SHA-256.

    Parameters
    ----------
    path
        Weights file written by :func:`save_unet` (e.g. ``runs/a/unet.pt``).
    name, version
        Identity; the version gets the first 12 hex digits of the SHA-256 appended, so
        two files never share a per-process model cache slot.
    sha256
        Expected SHA-256 of the file (checked here and whenever a worker builds the
        network); default: the file's current hash.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "m.pt")
    >>> rec = [{"name": n, "kind": "index" if n in ("ndvi", "ndmi", "mndwi") else "band",
    ...         "shift": 0.0, "scale": 1.0} for n in FEATURES]
    >>> _ = save_unet(p, UNet(UNetConfig(widths=(4, 4, 4, 4))), normalisation=rec)
    >>> e = unet_entry(p)
    >>> e.halo, e.alignment, e.inputs.names[-1], len(e.provenance()["model_weights_sha256"])
    (48, 8, 'mndwi', 64)
    """
    import functools

    from .registry import FileModelEntry

    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    if sha256 is not None and sha256 != digest:
        from .weights import WeightsHashError

        raise WeightsHashError(f"{path}: SHA-256 {digest} does not match the pinned {sha256}")
    blob = read_unet_file(path)
    cfg = UNetConfig.from_dict(blob["config"])
    rf = receptive_field(cfg)
    resolved = str(Path(path).resolve())
    return FileModelEntry(
        name=name, version=f"{version}+{digest[:12]}", description=description,
        inputs=input_spec(blob["normalisation"]), classes=_classes(cfg.n_classes), output="logits",
        receptive_field=rf.size, halo=rf.halo, alignment=ALIGNMENT, min_size=1,
        build=functools.partial(_build_from_file, path=resolved, sha256=digest),
        license=license, attribution=attribution, weights_file=resolved, weights_file_sha256=digest,
        weights_origin=origin or resolved,
    )


def _classes(n: int) -> tuple[str, ...]:
    from ..classes import CLASSES

    if n != len(CLASSES):
        raise ValueError(f"a U-Net for the registry has {len(CLASSES)} classes, this one {n}")
    return tuple(CLASSES)

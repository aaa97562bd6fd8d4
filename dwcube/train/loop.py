"""The training loop: Adam, soft cross-entropy with label smoothing, checkpoints, resume.

* **Batches are a function of (seed, step)**: the patches, dates, crops and
  augmentations of step ``s`` are drawn from ``numpy.random.default_rng([seed, s])``,
  so a run resumed from a checkpoint continues exactly as if it had never stopped
  (tested: same weights as an uninterrupted run).
* **Loss**: per-pixel cross-entropy against the soft target smoothed towards uniform,
  ``t' = (1 − ε)·t + ε/K``, weighted by ``confidence × valid`` (label confidence from
  :mod:`dwcube.train.labels`; ``valid`` = every input feature finite at that date) and
  normalised by the sum of weights.  No-data pixels get the same ``fill_value`` as at
  inference (:func:`dwcube.inference.classify`), so the network learns what it will see.
* **Schedule**: linear warm-up, then cosine decay to 5 % of the learning rate.
* **Checkpoints** (``checkpoint.pt`` in the run folder, written to a temporary name and
  renamed, so a killed run never leaves a torn file): network, optimiser, step, the
  configuration and the history; :func:`train` resumes from one by default.
* **Metrics** on the validation patches every ``eval_every`` steps and at the end
  (:mod:`dwcube.train.metrics`); the final network is exported as a weights file
  (:func:`dwcube.models.unet.save_unet`) with its normalisation and provenance.
* Runs on the CPU, or on a GPU when one is present (``device="auto"``).

Hand-written: a plain PyTorch loop (~200 lines) keeps the dependency list as it is and
the resume semantics exact; the frameworks that would provide it (Lightning, Ignite)
are not project dependencies.

Examples
--------
>>> cfg = TrainConfig(steps=2, batch_size=2)
>>> cfg.model.attention, cfg.label_smoothing
(True, 0.05)
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..classes import CLASSES
from ..inputs import InputSpec
from ..models.unet import UNet, UNetConfig, save_unet
from .augment import AugmentParams, geometric, landsat_like, radiometric, reflectance_features, synthetic_elevation
from .metrics import Metrics, confusion_matrix, format_metrics, metrics_from_confusion
from .sampling import PatchSet

__all__ = ["TrainConfig", "TrainResult", "evaluate", "make_batch", "normalisation_records", "predict_patches", "sharpen",
           "soft_cross_entropy", "train"]

K = len(CLASSES)
CHECKPOINT = "checkpoint.pt"


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train`.

    Parameters
    ----------
    steps, batch_size
        Optimisation steps and patches per step.
    crop
        Random crop of each patch (pixels; ``None``: the whole patch).
    lr, weight_decay
        Adam's learning rate and L2 weight decay.
    warmup
        Steps of linear warm-up.
    label_smoothing
        ε of the smoothing towards the uniform distribution.
    target_temperature
        Temperature ``T`` applied to soft targets before smoothing: ``t ∝ t^(1/T)``.
        1 keeps the teacher's distribution; below 1 sharpens it towards its top
        class, so a student that is scored on the teacher's *label* spends its
        capacity on the teacher's decisions rather than on reproducing near-ties.
        One-hot targets are unchanged by any ``T``.
    clip_grad
        Maximum gradient norm.
    checkpoint_every, eval_every
        Steps between checkpoints and between validation runs (0: only at the end).
    seed
        Seed of initialisation and batches.
    device
        ``"auto"`` (a GPU when present), ``"cpu"``, ``"cuda"``.
    threads
        CPU threads for PyTorch (``None``: leave as is).  On a shared machine 1 thread
        can be much faster than 2 (every parallel operation waits for the slower thread).
    model
        Network configuration.
    augment
        Augmentation (:class:`~dwcube.train.augment.AugmentParams`).
    fill_value
        Normalised input at no-data pixels (inference's ``fill_value``).
    class_weight
        Loss weight per class (``K`` values, applied by each pixel's target top class),
        or ``None`` for equal weights: rare classes count more.

    Examples
    --------
    >>> TrainConfig(steps=10).to_dict()["model"]["widths"]
    [16, 32, 64, 96]
    """

    steps: int = 2000
    batch_size: int = 16
    crop: int | None = None
    lr: float = 2e-3
    weight_decay: float = 1e-5
    warmup: int = 50
    label_smoothing: float = 0.05
    target_temperature: float = 1.0
    clip_grad: float = 5.0
    checkpoint_every: int = 100
    eval_every: int = 0
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    model: UNetConfig = field(default_factory=lambda: UNetConfig(attention=True, aspp=True))
    augment: AugmentParams = field(default_factory=AugmentParams)
    fill_value: float = 0.0
    class_weight: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.class_weight is not None:
            object.__setattr__(self, "class_weight", tuple(float(v) for v in self.class_weight))
            if len(self.class_weight) != self.model.n_classes or min(self.class_weight) <= 0:
                raise ValueError(f"class_weight needs {self.model.n_classes} positive values, got {self.class_weight}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (stored in checkpoints and weights files)."""
        d = asdict(self)
        d["model"] = self.model.to_dict()
        d["augment"] = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.augment).items()}
        return d

    def learning_rate(self, step: int) -> float:
        """Learning rate at ``step`` (warm-up, then cosine to 5 %).

        Examples
        --------
        >>> c = TrainConfig(steps=100, warmup=10, lr=1.0)
        >>> round(c.learning_rate(0), 2), round(c.learning_rate(10), 2), round(c.learning_rate(99), 2)
        (0.1, 1.0, 0.05)
        """
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        span = max(1, self.steps - self.warmup - 1)
        frac = min(1.0, (step - self.warmup) / span)
        return self.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` leaves behind.

    Attributes
    ----------
    out_dir
        The run folder.
    weights
        The exported weights file (``unet.pt``).
    sha256
        Its SHA-256.
    metrics
        Validation metrics of the final network (``None`` without validation patches).
    history
        One record per step (``step``, ``loss``, ``lr``; validation scores when evaluated).
    """

    out_dir: Path
    weights: Path
    sha256: str
    metrics: Metrics | None
    history: list[dict[str, Any]]


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def make_batch(ps: PatchSet, index: Sequence[int], spec: InputSpec, rng: np.random.Generator,
               augment: AugmentParams, *, crop: int | None = None, fill_value: float = 0.0,
               dates: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs, targets and weights of one batch, augmented.

    For each patch: one of its dates (temporal augmentation: the dates share the label),
    a random crop, the geometric and radiometric augmentation, sometimes the
    Landsat-like simulation, then the features of ``spec``.

    Parameters
    ----------
    ps
        The patches.
    index
        Patches of the batch.
    dates
        Date of each patch (default: drawn at random).

    Returns
    -------
    (numpy.ndarray, numpy.ndarray, numpy.ndarray)
        ``x`` ``(N, F, H, W)`` float32 (no-data → ``fill_value``), ``target``
        ``(N, K, H, W)`` float32, ``weight`` ``(N, H, W)`` float32.

    Examples
    --------
    >>> from dwcube.models.unet import SHIPPED_NORMALISATION, input_spec
    >>> ps = PatchSet(np.full((1, 1, 6, 8, 8), 0.1, np.float16), ("blue", "green", "red", "nir08", "swir16", "swir22"),
    ...               np.full((1, 9, 8, 8), 1 / 9, np.float16), np.ones((1, 8, 8), np.float32), None,
    ...               np.zeros(1, int), np.zeros((1, 2), int), np.array(["demo"]), np.array(["sentinel-2a"]))
    >>> x, t, w = make_batch(ps, [0], input_spec(SHIPPED_NORMALISATION), np.random.default_rng(0), AugmentParams())
    >>> x.shape, t.shape, w.shape
    ((1, 9, 8, 8), (1, 9, 8, 8), (1, 8, 8))
    """
    p = ps.patch
    c = crop or p
    xs, ts, ws = [], [], []
    for j, i in enumerate(index):
        d = int(dates[j]) if dates is not None else int(rng.integers(ps.reflectance.shape[1]))
        oy, ox = (int(rng.integers(p - c + 1)), int(rng.integers(p - c + 1))) if c < p else (0, 0)
        win = (slice(oy, oy + c), slice(ox, ox + c))
        refl = ps.reflectance[i, d][(slice(None), *win)].astype(np.float32)
        target = ps.target[i][(slice(None), *win)].astype(np.float32)
        conf = ps.confidence[i][win]
        elev = ps.elevation[i][win] if ps.elevation is not None else None
        if elev is None or not np.isfinite(elev).any():
            elev = synthetic_elevation((c, c), rng)
        elif augment.elevation_shift:
            elev = elev + np.float32(rng.normal(0, augment.elevation_shift))
        if augment.geometric:
            refl, target, conf, elev = geometric([refl, target, conf, elev], int(rng.integers(4)), bool(rng.integers(2)))
        refl = radiometric(refl, ps.bands, augment, rng)
        if augment.landsat_fraction and rng.random() < augment.landsat_fraction \
                and not str(ps.platform[i]).startswith("landsat"):  # real Landsat is never simulated again
            plat = str(ps.platform[i]) if str(ps.platform[i]) in augment.platforms else str(rng.choice(augment.platforms))
            refl = landsat_like(refl, ps.bands, platform=plat, phase=(int(rng.integers(3)), int(rng.integers(3))),
                                noise=augment.landsat_noise, rng=rng)
        feats = reflectance_features(refl, ps.bands, spec, elev)
        valid = np.isfinite(feats).all(0)
        xs.append(np.where(valid, feats, np.float32(fill_value)))
        ts.append(target)
        ws.append((conf * valid).astype(np.float32))
    return np.stack(xs).astype(np.float32), np.stack(ts), np.stack(ws)


def sharpen(target: torch.Tensor, temperature: float) -> torch.Tensor:
    """Class distributions ``(N, K, …)`` raised to ``1/T`` and renormalised over ``K``.

    Examples
    --------
    >>> t = torch.tensor([[0.5, 0.3, 0.2]]).reshape(1, 3, 1, 1)
    >>> [round(v, 3) for v in sharpen(t, 0.5).flatten().tolist()]
    [0.658, 0.237, 0.105]
    """
    if temperature == 1.0:
        return target
    if temperature <= 0:
        raise ValueError(f"target temperature must be > 0, got {temperature}")
    t = target.clamp_min(0) ** (1.0 / temperature)
    return t / t.sum(1, keepdim=True).clamp_min(1e-12)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                       smoothing: float = 0.0, temperature: float = 1.0) -> torch.Tensor:
    """Weighted mean of ``−Σ_k t'_k log softmax(logits)_k`` with ``t' = (1 − ε) sharpen(t, T) + ε/K``.

    Examples
    --------
    >>> lg = torch.zeros(1, 9, 1, 1)
    >>> t = torch.zeros(1, 9, 1, 1); t[0, 1] = 1
    >>> round(float(soft_cross_entropy(lg, t, torch.ones(1, 1, 1))), 4)    # ln 9
    2.1972
    """
    k = logits.shape[1]
    t = sharpen(target, temperature) * (1 - smoothing) + smoothing / k
    per_px = -(t * F.log_softmax(logits.float(), dim=1)).sum(1)
    wsum = weight.sum()
    return (per_px * weight).sum() / wsum.clamp_min(1e-6)


def predict_patches(net: torch.nn.Module, x: np.ndarray, device: torch.device, batch_size: int = 16) -> np.ndarray:
    """Class probabilities ``(N, K, H, W)`` of normalised inputs ``(N, F, H, W)``, in evaluation mode.

    Examples
    --------
    >>> from dwcube.models.unet import UNet, UNetConfig
    >>> predict_patches(UNet(UNetConfig(widths=(4, 4, 4, 4))), np.zeros((3, 9, 8, 8), np.float32),
    ...                 torch.device("cpu")).shape
    (3, 9, 8, 8)
    """
    net.eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(x), batch_size):
            out.append(torch.softmax(net(torch.from_numpy(x[s:s + batch_size]).to(device)).float(), 1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, K) + x.shape[2:], np.float32)


def evaluate(net: torch.nn.Module, ps: PatchSet, spec: InputSpec, *, device: str | torch.device = "cpu",
             batch_size: int = 16, landsat: bool = False, seed: int = 0, fill_value: float = 0.0) -> Metrics:
    """Metrics of ``net`` on every date of every patch (reference: ``argmax(target)`` where ``confidence > 0``).

    Parameters
    ----------
    landsat
        Evaluate on the Landsat-like version of the patches (random phase, no noise).

    Examples
    --------
    >>> import xarray as xr
    >>> from dwcube.models.unet import SHIPPED_NORMALISATION, UNet, UNetConfig, input_spec
    >>> from dwcube.testing import synthetic_cube
    >>> from dwcube.train.labels import from_label_map
    >>> from dwcube.train.sampling import UNET_BANDS, SamplingParams, SplitParams, sample_patches
    >>> cube = synthetic_cube(32, 1, bands=UNET_BANDS)
    >>> lab = from_label_map(xr.DataArray(np.ones((32, 32), np.uint8), dims=("y", "x")))
    >>> ps = sample_patches(cube, lab, SamplingParams(patch=16, n_samples=2), split=SplitParams(16, 0.0))
    >>> m = evaluate(UNet(UNetConfig(widths=(4, 4, 4, 4))), ps, input_spec(SHIPPED_NORMALISATION))
    >>> 0 <= m.overall_accuracy <= 1, m.support[1] == 2 * 2 * 16 * 16    # 2 patches × 2 dates
    (True, True)
    """
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    aug = AugmentParams.none()
    if landsat:
        aug = AugmentParams(geometric=False, brightness=0.0, band_gain=0.0, haze=0.0, noise=0.0, landsat_fraction=1.0,
                            landsat_noise=0.0, elevation_shift=0.0)
    cm = np.zeros((K, K))
    n_dates = ps.reflectance.shape[1]
    for d in range(n_dates):
        for s in range(0, len(ps), batch_size):
            idx = list(range(s, min(len(ps), s + batch_size)))
            rng = np.random.default_rng([seed, d, s])
            x, t, w = make_batch(ps, idx, spec, rng, aug, fill_value=fill_value, dates=[d] * len(idx))
            prob = predict_patches(net, x, dev, batch_size)
            cm += confusion_matrix(t.argmax(1), prob.argmax(1), K, weights=(w > 0).astype(np.float64))
    return metrics_from_confusion(cm)


class _Bar:
    """One-line progress bar on stderr: ``train [####....] 120/2000 loss 0.412 1:05 (eta 12:30)``."""

    def __init__(self, total: int, start: int, enabled: bool) -> None:
        self.total, self.enabled, self.t0, self.start = total, enabled, time.monotonic(), start

    def update(self, step: int, loss: float) -> None:
        if not self.enabled:
            return
        width = 30
        filled = int(width * step / max(1, self.total))
        el = int(time.monotonic() - self.t0)
        rate = (step - self.start) / max(1e-9, time.monotonic() - self.t0)
        eta = int((self.total - step) / rate) if rate > 0 else 0
        sys.stderr.write(f"\rtrain [{'#' * filled}{'.' * (width - filled)}] {step}/{self.total} loss {loss:.4f} "
                         f"{el // 60}:{el % 60:02d} (eta {eta // 60}:{eta % 60:02d})")
        if step >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _save_checkpoint(path: Path, net: UNet, opt: torch.optim.Optimizer, step: int, config: TrainConfig,
                     history: list[dict[str, Any]], spec_norm: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".part")
    torch.save({"step": step, "model": net.state_dict(), "optimizer": opt.state_dict(), "config": config.to_dict(),
                "history": history, "normalisation": spec_norm}, tmp)
    os.replace(tmp, path)


def normalisation_records(spec: InputSpec) -> list[dict[str, Any]]:
    """The spec's features as plain records (stored in checkpoints and weights files).

    Examples
    --------
    >>> from dwcube.inputs import Feature, InputSpec
    >>> normalisation_records(InputSpec((Feature("red", "band", scale=0.1),)))[0]["scale"]
    0.1
    """
    out = []
    for f in spec.features:
        rec: dict[str, Any] = {"name": f.name, "kind": f.kind, "shift": f.shift, "scale": f.scale,
                               "clip": list(f.clip) if f.clip else None}
        if f.log_gain is not None:
            rec["log_gain"] = f.log_gain
        if f.floor is not None:
            rec["floor"] = f.floor
        out.append(rec)
    return out


def train(
    train_set: PatchSet,
    val_set: PatchSet | None,
    spec: InputSpec,
    config: TrainConfig = TrainConfig(),
    out_dir: str | os.PathLike[str] = "dwcube-train",
    *,
    resume: bool = True,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    metadata: dict[str, Any] | None = None,
    stop_after: int | None = None,
) -> TrainResult | None:
    """Train a :class:`~dwcube.models.unet.UNet` on patches; checkpoint, resume, export.

    Parameters
    ----------
    train_set, val_set
        Patches from :func:`dwcube.train.sampling.sample_patches` (validation may be ``None``).
    spec
        The model's input spec (features and their fixed normalisation), stored with the weights.
    config
        Hyper-parameters.
    out_dir
        Run folder: ``checkpoint.pt``, ``history.json``, ``metrics.json``, ``unet.pt``.
    resume
        Continue from ``out_dir/checkpoint.pt`` when present (its configuration must
        match, except ``steps``, which may be raised to train longer).
    progress
        Progress bar on stderr.
    log
        Called with one line per evaluation (default: nothing).
    metadata
        Extra provenance stored in the weights file.
    stop_after
        Stop (with a checkpoint) once this many steps are done, without validating or
        exporting: a time-boxed session; call again to continue.

    Returns
    -------
    TrainResult or None
        ``None`` when stopped by ``stop_after`` before ``config.steps``.

    Examples
    --------
    Ten steps of the quick recipe's tiny network on patches of a synthetic cube:

    >>> import tempfile
    >>> from dataclasses import replace
    >>> import numpy as np, xarray as xr
    >>> from dwcube.models.unet import input_spec
    >>> from dwcube.testing import synthetic_cube
    >>> from dwcube.train.recipe import NORMALISATION, UNET_BANDS, Recipe, prepare_labels
    >>> from dwcube.train.sampling import sample_patches
    >>> cube = synthetic_cube(64, 2, bands=UNET_BANDS)
    >>> wc = xr.DataArray(np.where(cube.nir08.isel(time=0) > 0.2, 10, 80).astype(np.uint8),
    ...                   dims=("y", "x"), coords={"y": cube.y, "x": cube.x})
    >>> r = Recipe.quick()
    >>> patches = sample_patches(cube, prepare_labels(wc), r.sampling, split=r.split, side="train",
    ...                          bands=UNET_BANDS)
    >>> with tempfile.TemporaryDirectory() as d:
    ...     result = train(patches, None, input_spec(NORMALISATION), replace(r.train, steps=10), d,
    ...                    progress=False)
    ...     (len(result.history), result.weights.name, result.metrics)
    (10, 'unet.pt', None)
    """
    if len(train_set) == 0:
        raise ValueError("no training patches")
    if len(spec.features) != config.model.in_channels:
        raise ValueError(f"the spec has {len(spec.features)} features, the model takes {config.model.in_channels}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    dev = _device(config.device)
    torch.manual_seed(config.seed)
    net = UNet(config.model).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    history: list[dict[str, Any]] = []
    start = 0
    norm = normalisation_records(spec)
    ckpt = out / CHECKPOINT
    if resume and ckpt.is_file():
        state = torch.load(ckpt, map_location=dev, weights_only=True)
        ignore = ("steps", "eval_every", "checkpoint_every", "device", "threads")  # may change between sessions
        defaults = json.loads(json.dumps(TrainConfig().to_dict()))
        now = {k: v for k, v in json.loads(json.dumps(config.to_dict())).items() if k not in ignore}
        # options added after a checkpoint was written count as their default value
        saved = json.loads(json.dumps({k: state["config"].get(k, defaults[k]) for k in now}))  # tuples read back as lists
        if saved != now or state["normalisation"] != json.loads(json.dumps(norm)):
            raise ValueError(f"{ckpt} was written with another configuration or normalisation; "
                             "use another out_dir or resume=False")
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
        history = list(state["history"])
    bar = _Bar(config.steps, start, progress)
    running = None
    for step in range(start, config.steps):
        lr = config.learning_rate(step)
        for g in opt.param_groups:
            g["lr"] = lr
        rng = np.random.default_rng([config.seed, step])
        idx = rng.choice(len(train_set), size=config.batch_size, replace=len(train_set) < config.batch_size)
        x, t, w = make_batch(train_set, idx, spec, rng, config.augment, crop=config.crop, fill_value=config.fill_value)
        if config.class_weight is not None:
            w = w * np.asarray(config.class_weight, np.float32)[t.argmax(1)]
        net.train()
        logits = net(torch.from_numpy(x).to(dev))
        loss = soft_cross_entropy(logits, torch.from_numpy(t).to(dev), torch.from_numpy(w).to(dev),
                                  config.label_smoothing, config.target_temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), config.clip_grad)
        opt.step()
        value = float(loss.detach())
        running = value if running is None else 0.9 * running + 0.1 * value
        history.append({"step": step + 1, "loss": value, "lr": lr})
        bar.update(step + 1, running)
        last = step + 1 == config.steps
        if val_set is not None and len(val_set) and config.eval_every and ((step + 1) % config.eval_every == 0) and not last:
            m = evaluate(net, val_set, spec, device=dev, fill_value=config.fill_value)
            history[-1].update({"val_oa": m.overall_accuracy, "val_miou": m.mean_iou, "val_mcc": m.mcc})
            if log:
                log(f"\nstep {step + 1}: " + format_metrics(m).splitlines()[0])
        stop = stop_after is not None and step + 1 >= stop_after and not last
        if (step + 1) % config.checkpoint_every == 0 or last or stop:
            _save_checkpoint(ckpt, net, opt, step + 1, config, history, norm)
        if stop:
            if progress:
                sys.stderr.write("\n")
            return None
    metrics = None
    if val_set is not None and len(val_set):
        metrics = evaluate(net, val_set, spec, device=dev, fill_value=config.fill_value)
        (out / "metrics.json").write_text(json.dumps(metrics.to_dict(), indent=1))
        if log:
            log(format_metrics(metrics, title="validation"))
    (out / "history.json").write_text(json.dumps(history))
    meta = {"training": config.to_dict(), "steps_done": config.steps, "train_patches": len(train_set),
            "val_patches": len(val_set) if val_set is not None else 0, **(metadata or {})}
    if metrics is not None:
        meta["validation"] = {k: v for k, v in metrics.to_dict().items() if k != "confusion"}
    weights = out / "unet.pt"
    sha = save_unet(weights, net.cpu().eval(), normalisation=norm, metadata=json.loads(json.dumps(meta)))
    return TrainResult(out, weights, sha, metrics, history)

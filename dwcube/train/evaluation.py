"""Judging a land-cover model against a reference: agreement, rare classes, QA bits, spectral rules, calibration.

The functions take plain arrays (probabilities ``(K, ...)`` or labels, reference
probabilities or labels, a boolean mask of the pixels to score) and return small
dataclasses with ``to_dict()``, so the same numbers feed the model card, the
benchmark and the tests.

* :func:`agreement`: overall agreement with a reference model's labels, the agreement
  where the reference is confident (top probability ≥ 0.5, the project's target), and
  per-class precision, recall and F1 against the reference, with each class's share.
* :func:`qa_agreement`: recall and precision of water and snow/ice against Landsat
  QA_PIXEL's own water (bit 7) and snow (bit 5) flags on clear pixels.
* :func:`spectral_rules`: where no reference exists, the share of pixels that obey
  stated spectral-index rules (clear water, dense vegetation, bare desert, snow).
* :func:`calibration` and :func:`fit_temperature`: the expected calibration error
  with a reliability curve, and the temperature that minimises the negative log
  likelihood on a validation side (Guo et al. 2017, "On calibration of modern neural
  networks", ICML).

Hand-written: each is a few lines of NumPy over the project's class list.

Examples
--------
>>> ref = np.zeros((9, 4)); ref[1] = [0.9, 0.9, 0.4, 0.9]; ref[2] = [0.1, 0.1, 0.6, 0.1]
>>> pred = np.zeros((9, 4)); pred[1] = 1.0
>>> a = agreement(pred, ref)
>>> a.agreement, a.confident_agreement
(0.75, 0.75)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..classes import CLASSES
from .metrics import confusion_matrix, metrics_from_confusion

__all__ = ["Agreement", "Calibration", "RuleResult", "SPECTRAL_RULES", "agreement", "calibration",
           "fit_temperature", "qa_agreement", "rare_class_recall", "spectral_rules"]

K = len(CLASSES)


def _labels(x: np.ndarray) -> np.ndarray:
    """Labels from probabilities ``(K, ...)`` (255 where NaN) or labels as given."""
    x = np.asarray(x)
    if x.ndim >= 1 and x.shape[0] == K and np.issubdtype(x.dtype, np.floating):
        ok = np.isfinite(x).all(0)
        return np.where(ok, np.nan_to_num(x, nan=-1.0).argmax(0), 255).astype(np.int64)
    return x.astype(np.int64)


@dataclass(frozen=True)
class Agreement:
    """Agreement of a model with a reference model.

    Attributes
    ----------
    pixels
        Pixels scored (valid in both, inside the mask).
    agreement
        Share of pixels with the same label.
    confident_share, confident_agreement
        Share of pixels where the reference's top probability is ≥ 0.5, and the agreement there.
    mean_iou, mcc
        Over the confusion matrix (reference rows).
    per_class
        Per class: ``share`` of the reference, ``predicted_share``, ``precision``, ``recall``, ``f1``.
    """

    pixels: int
    agreement: float
    confident_share: float
    confident_agreement: float
    mean_iou: float
    mcc: float
    per_class: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        """Plain types, NaN as ``None``."""
        def clean(v: Any) -> Any:
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            return None if isinstance(v, float) and not np.isfinite(v) else v

        return clean(asdict(self))


def agreement(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None, *,
              confident: float = 0.5) -> Agreement:
    """Score ``pred`` (probabilities ``(K, ...)`` or labels) against reference probabilities ``ref`` ``(K, ...)``.

    Examples
    --------
    >>> ref = np.zeros((9, 3)); ref[0] = 1.0
    >>> agreement(np.array([0, 0, 6]), ref).per_class["water"]["recall"]
    0.6666666666666666
    """
    ref = np.asarray(ref, np.float64)
    lr = _labels(ref)
    lp = _labels(pred)
    ok = lr < K  # a pixel the model leaves without a label (NaN) counts as a disagreement
    if mask is not None:
        ok &= np.broadcast_to(np.asarray(mask, bool), ok.shape)
    n = int(ok.sum())
    top = np.nan_to_num(ref, nan=0.0).max(0)
    conf = ok & (top >= confident)
    cm = confusion_matrix(lr[ok], np.where(lp < K, lp, K)[ok], K + 1)[:K]  # column K: no prediction
    m = metrics_from_confusion(cm[:, :K])
    share = cm.sum(1) / max(1, n)
    pshare = cm[:, :K].sum(0) / max(1, n)
    recall = np.diag(cm[:, :K]) / np.where(cm.sum(1) > 0, cm.sum(1), np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * recall * np.asarray(m.precision) / (recall + np.asarray(m.precision))
    per = {c: {"share": float(share[k]), "predicted_share": float(pshare[k]), "precision": m.precision[k],
               "recall": float(recall[k]), "f1": float(f1[k])} for k, c in enumerate(CLASSES)}
    agree = lr == lp
    return Agreement(n, float(agree[ok].mean()) if n else float("nan"), float(conf.sum() / max(1, n)),
                     float(agree[conf].mean()) if conf.any() else float("nan"), m.mean_iou, m.mcc, per)


def rare_class_recall(a: Agreement, min_share: float = 0.02) -> dict[str, float]:
    """Recall of every class the reference assigns to at least ``min_share`` of the pixels.

    Examples
    --------
    >>> ref = np.zeros((9, 100)); ref[1, :97] = 1; ref[6, 97:] = 1
    >>> rare_class_recall(agreement(np.full(100, 1), ref))
    {'trees': 1.0, 'built': 0.0}
    """
    return {c: v["recall"] for c, v in a.per_class.items() if v["share"] >= min_share}


def qa_agreement(pred: np.ndarray, clear: np.ndarray, water: np.ndarray, snow: np.ndarray) -> dict[str, float]:
    """Water and snow/ice of a model against Landsat QA_PIXEL flags, on clear pixels with a prediction.

    Returns ``water_recall`` (share of QA water pixels labelled water; a pixel the model
    leaves without a label counts as missed), ``water_precision`` (share of water labels
    that QA flags water), the same for snow (bit 5 vs ``snow_and_ice``), and the pixel counts.

    Examples
    --------
    >>> lab = np.array([0, 0, 8, 1])
    >>> q = qa_agreement(lab, np.ones(4, bool), np.array([1, 0, 0, 0], bool), np.array([0, 0, 1, 1], bool))
    >>> q["water_recall"], q["water_precision"], q["snow_recall"]
    (1.0, 0.5, 0.5)
    """
    lab = _labels(pred)
    ok = np.asarray(clear, bool)
    out: dict[str, float] = {"clear_pixels": float(ok.sum()), "unlabelled_clear_pixels": float((ok & (lab >= K)).sum())}
    for name, flag, k in (("water", water, 0), ("snow", snow, 8)):
        f = np.asarray(flag, bool) & ok
        p = (lab == k) & ok
        out[f"{name}_pixels"] = float(f.sum())
        out[f"{name}_recall"] = float((p & f).sum() / f.sum()) if f.any() else float("nan")
        out[f"{name}_precision"] = float((p & f).sum() / p.sum()) if p.any() else float("nan")
    return out


@dataclass(frozen=True)
class RuleResult:
    """How a model's labels obey one spectral rule: pixels the rule selects, and the share in the expected classes."""

    rule: str
    definition: str
    expected: tuple[str, ...]
    pixels: int
    share_as_expected: float


#: Spectral-index rules on reflectance (common band names), and the classes a pixel that obeys one should get.
#: Stated conservatively, so that a selected pixel is that surface in any season.
SPECTRAL_RULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "clear water": ("MNDWI > 0.3 and NDVI < 0 and nir08 < 0.06", ("water",)),
    "dense vegetation": ("NDVI > 0.8", ("trees", "grass", "flooded_vegetation", "crops", "shrub_and_scrub")),
    "bare desert": ("NDVI < 0.12 and MNDWI < -0.1 and red > 0.2 and swir16 > 0.3", ("bare",)),
    "snow": ("MNDWI > 0.5 and green > 0.4 and nir08 > 0.25", ("snow_and_ice",)),
}


def _nd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a - b) / (a + b)


def spectral_rules(refl: Mapping[str, np.ndarray], pred: np.ndarray, mask: np.ndarray | None = None,
                   rules: Sequence[str] | None = None) -> list[RuleResult]:
    """Share of the pixels selected by each rule of :data:`SPECTRAL_RULES` that the model labels as expected.

    Parameters
    ----------
    refl
        Reflectance by common band name (``green``, ``red``, ``nir08``, ``swir16``), same shape as the labels.
    pred
        Probabilities ``(K, ...)`` or labels.

    Examples
    --------
    >>> r = {"green": np.array([0.05, 0.04]), "red": np.array([0.03, 0.05]), "nir08": np.array([0.02, 0.5]),
    ...      "swir16": np.array([0.01, 0.2])}
    >>> [(x.rule, x.pixels, x.share_as_expected) for x in spectral_rules(r, np.array([0, 1]))][:2]
    [('clear water', 1, 1.0), ('dense vegetation', 1, 1.0)]
    """
    lab = _labels(pred)
    g, r, n, s = (np.asarray(refl[b], np.float64) for b in ("green", "red", "nir08", "swir16"))
    ndvi, mndwi = _nd(n, r), _nd(g, s)
    select = {
        "clear water": (mndwi > 0.3) & (ndvi < 0) & (n < 0.06),
        "dense vegetation": ndvi > 0.8,
        "bare desert": (ndvi < 0.12) & (mndwi < -0.1) & (r > 0.2) & (s > 0.3),
        "snow": (mndwi > 0.5) & (g > 0.4) & (n > 0.25),
    }
    out = []
    for name in rules or SPECTRAL_RULES:
        definition, expected = SPECTRAL_RULES[name]
        sel = select[name] & (lab < K)
        if mask is not None:
            sel &= np.asarray(mask, bool)
        want = np.isin(lab, [CLASSES.index(c) for c in expected])
        out.append(RuleResult(name, definition, expected, int(sel.sum()),
                              float(want[sel].mean()) if sel.any() else float("nan")))
    return out


@dataclass(frozen=True)
class Calibration:
    """Expected calibration error of the top-class probability, and the reliability curve behind it.

    Attributes
    ----------
    ece
        ``Σ_b n_b/N · |accuracy_b − confidence_b|`` over equal-width confidence bins.
    bins
        Bin edges (``len(bins) = n + 1``).
    confidence, accuracy, count
        Per bin: mean top probability, share of correct labels, pixels.
    """

    ece: float
    bins: tuple[float, ...]
    confidence: tuple[float, ...]
    accuracy: tuple[float, ...]
    count: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        """Plain types, NaN as ``None``."""
        def clean(v: Any) -> Any:
            return [clean(x) for x in v] if isinstance(v, (list, tuple)) else (
                None if isinstance(v, float) and not np.isfinite(v) else v)

        return {k: clean(v) for k, v in asdict(self).items()}


def calibration(prob: np.ndarray, ref_label: np.ndarray, mask: np.ndarray | None = None, *,
                n_bins: int = 10) -> Calibration:
    """Reliability of ``prob`` ``(K, ...)`` against reference labels (integers, ≥ K = none).

    Examples
    --------
    >>> p = np.zeros((9, 4)); p[0] = [0.9, 0.9, 0.6, 0.6]; p[1] = 1 - p[0]
    >>> c = calibration(p, np.array([0, 0, 0, 1]), n_bins=5)
    >>> round(c.ece, 3)
    0.1
    """
    prob = np.asarray(prob, np.float64)
    ref = np.asarray(ref_label).astype(np.int64)
    ok = np.isfinite(prob).all(0) & (ref >= 0) & (ref < K)
    if mask is not None:
        ok &= np.asarray(mask, bool)
    top = prob.max(0)[ok]
    correct = (prob.argmax(0) == ref)[ok]
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(top, edges[1:-1]), 0, n_bins - 1)
    conf, acc, cnt = [], [], []
    ece = 0.0
    for b in range(n_bins):
        m = idx == b
        cnt.append(int(m.sum()))
        conf.append(float(top[m].mean()) if m.any() else float("nan"))
        acc.append(float(correct[m].mean()) if m.any() else float("nan"))
        if m.any():
            ece += m.sum() / max(1, top.size) * abs(acc[-1] - conf[-1])
    return Calibration(float(ece), tuple(map(float, edges)), tuple(conf), tuple(acc), tuple(cnt))


def fit_temperature(logits: np.ndarray, ref_label: np.ndarray, *, grid: Sequence[float] | None = None) -> float:
    """The temperature ``T`` minimising the mean negative log likelihood of ``softmax(logits / T)``.

    ``logits`` ``(K, n)`` and reference labels ``(n,)`` on a validation side; a grid search
    (0.5–3, step 0.01) then a local refinement — the NLL is convex in ``1/T``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> lg = rng.normal(0, 2, (9, 20000))
    >>> p = np.exp(lg) / np.exp(lg).sum(0)
    >>> ref = (p.cumsum(0) > rng.random(20000)).argmax(0)    # labels drawn from softmax(lg): calibrated
    >>> round(fit_temperature(lg, ref), 1), round(fit_temperature(3 * lg, ref), 1)   # 3× over-confident: T ≈ 3
    (1.0, 3.0)
    """
    lg = np.asarray(logits, np.float64)
    ref = np.asarray(ref_label).astype(np.int64)
    ok = np.isfinite(lg).all(0) & (ref >= 0) & (ref < K)
    lg, ref = lg[:, ok], ref[ok]

    def nll(t: float) -> float:
        z = lg / t
        z = z - z.max(0)
        return float(-(z[ref, np.arange(ref.size)] - np.log(np.exp(z).sum(0))).mean())

    ts = list(grid) if grid is not None else list(np.arange(0.5, 3.0001, 0.01))
    best = min(ts, key=nll)
    fine = np.arange(best - 0.01, best + 0.01, 0.001)
    return float(round(min(fine, key=nll), 3))

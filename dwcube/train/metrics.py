"""Classification metrics from a confusion matrix: OA, IoU, F1, Matthews correlation.

Hand-written (a few lines of NumPy each) so that they work on a confusion matrix
accumulated over many batches or Dask blocks, weight pixels, and define the edge
cases the way this project reports them: a class absent from both the reference and
the prediction has IoU and F1 ``NaN`` (not 0 and not 1) and is left out of the means.

Definitions (``C[i, j]`` = weight of pixels of reference class ``i`` predicted as ``j``;
``t_k = Σ_j C[k, j]`` reference totals, ``p_k = Σ_i C[i, k]`` predicted totals,
``c = Σ_k C[k, k]``, ``s = Σ C``):

* overall accuracy ``OA = c / s``;
* ``IoU_k = C[k, k] / (t_k + p_k − C[k, k])``; mean IoU over classes with ``t_k + p_k > 0``;
* ``F1_k = 2 C[k, k] / (t_k + p_k)``;
* multiclass Matthews correlation coefficient (Gorodkin 2004, the R_K statistic):
  ``MCC = (c·s − Σ_k p_k t_k) / sqrt((s² − Σ_k p_k²)(s² − Σ_k t_k²))``, 0 when a
  denominator is 0 (a constant prediction or reference).

Examples
--------
>>> cm = confusion_matrix(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2)
>>> cm
array([[1., 1.],
       [0., 2.]])
>>> m = metrics_from_confusion(cm)
>>> round(m.overall_accuracy, 3), round(m.mcc, 4)
(0.75, 0.5774)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..classes import CLASSES

__all__ = ["Metrics", "confusion_matrix", "format_metrics", "metrics_from_confusion"]


def confusion_matrix(reference: np.ndarray, predicted: np.ndarray, n_classes: int = len(CLASSES), *,
                     weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted confusion matrix ``(n_classes, n_classes)``, rows = reference, columns = prediction.

    Pixels whose reference or prediction is outside ``0..n_classes−1`` (e.g. 255, no
    data) or whose weight is 0 or NaN are ignored.

    Parameters
    ----------
    reference, predicted
        Integer labels of the same shape.
    n_classes
        Number of classes.
    weights
        Optional per-pixel weights (same shape), e.g. a label confidence.

    Returns
    -------
    numpy.ndarray
        float64 ``(n_classes, n_classes)``.

    Examples
    --------
    >>> confusion_matrix(np.array([0, 1, 255]), np.array([0, 0, 1]), 2, weights=np.array([1.0, 0.5, 1.0]))
    array([[1. , 0. ],
           [0.5, 0. ]])
    """
    r = np.asarray(reference).ravel().astype(np.int64)
    p = np.asarray(predicted).ravel().astype(np.int64)
    if r.shape != p.shape:
        raise ValueError(f"reference and prediction differ in size: {r.size} vs {p.size}")
    w = np.ones(r.shape, np.float64) if weights is None else np.asarray(weights, np.float64).ravel()
    ok = (r >= 0) & (r < n_classes) & (p >= 0) & (p < n_classes) & np.isfinite(w) & (w > 0)
    idx = r[ok] * n_classes + p[ok]
    return np.bincount(idx, weights=w[ok], minlength=n_classes * n_classes).reshape(n_classes, n_classes)


@dataclass(frozen=True)
class Metrics:
    """Scores of one confusion matrix (see the module docstring for the formulas).

    Attributes
    ----------
    overall_accuracy, mean_iou, mcc, macro_f1
        Scalars in [0, 1] ([−1, 1] for MCC); ``mean_iou`` and ``macro_f1`` average the
        classes present in the reference or the prediction.
    iou, f1, recall, precision
        Per class (NaN where undefined).
    support
        Reference weight per class.
    confusion
        The matrix itself (rows reference, columns prediction).
    classes
        Class names.
    """

    overall_accuracy: float
    mean_iou: float
    mcc: float
    macro_f1: float
    iou: tuple[float, ...]
    f1: tuple[float, ...]
    recall: tuple[float, ...]
    precision: tuple[float, ...]
    support: tuple[float, ...]
    confusion: tuple[tuple[float, ...], ...]
    classes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (NaN as ``None``), per-class values keyed by class name.

        Examples
        --------
        >>> metrics_from_confusion(np.eye(2), classes=("a", "b")).to_dict()["iou"]
        {'a': 1.0, 'b': 1.0}
        """
        def clean(v: float) -> float | None:
            return None if not np.isfinite(v) else float(v)

        per = {name: dict(zip(self.classes, (clean(v) for v in getattr(self, name)), strict=True))
               for name in ("iou", "f1", "recall", "precision", "support")}
        return {"overall_accuracy": clean(self.overall_accuracy), "mean_iou": clean(self.mean_iou),
                "mcc": clean(self.mcc), "macro_f1": clean(self.macro_f1), **per,
                "confusion": [list(r) for r in self.confusion], "classes": list(self.classes)}


def metrics_from_confusion(cm: np.ndarray, *, classes: Sequence[str] | None = None) -> Metrics:
    """Overall accuracy, per-class and mean IoU, F1, recall, precision and multiclass MCC.

    Parameters
    ----------
    cm
        ``(K, K)`` confusion matrix, rows = reference, columns = prediction.
    classes
        Names of the ``K`` classes (default: the 9 Dynamic World classes, or ``0..K−1``).

    Examples
    --------
    >>> cm = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
    >>> m = metrics_from_confusion(cm, classes=("a", "b", "c"))
    >>> [round(v, 4) for v in (m.overall_accuracy, m.mean_iou, m.mcc)]
    [0.7273, 0.5625, 0.4485]
    >>> np.isnan(m.iou[2])
    np.True_
    """
    cm = np.asarray(cm, np.float64)
    k = cm.shape[0]
    if cm.shape != (k, k):
        raise ValueError(f"confusion matrix must be square, got {cm.shape}")
    names = tuple(classes) if classes is not None else (CLASSES if k == len(CLASSES) else tuple(map(str, range(k))))
    tp = np.diag(cm)
    t = cm.sum(1)
    p = cm.sum(0)
    s = cm.sum()
    c = tp.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        present = (t + p) > 0
        iou = np.where(present, tp / (t + p - tp), np.nan)
        f1 = np.where(present, 2 * tp / (t + p), np.nan)
        recall = np.where(t > 0, tp / t, np.nan)
        precision = np.where(p > 0, tp / p, np.nan)
    oa = float(c / s) if s > 0 else float("nan")
    den = np.sqrt((s * s - (p * p).sum()) * (s * s - (t * t).sum()))
    mcc = float((c * s - (p * t).sum()) / den) if den > 0 else 0.0
    return Metrics(
        overall_accuracy=oa,
        mean_iou=float(np.nanmean(iou)) if present.any() else float("nan"),
        mcc=mcc,
        macro_f1=float(np.nanmean(f1)) if present.any() else float("nan"),
        iou=tuple(map(float, iou)), f1=tuple(map(float, f1)), recall=tuple(map(float, recall)),
        precision=tuple(map(float, precision)), support=tuple(map(float, t)),
        confusion=tuple(tuple(map(float, row)) for row in cm), classes=names,
    )


def format_metrics(m: Metrics, *, title: str = "") -> str:
    """A small text table: the scalars, then IoU / F1 / recall / support per class.

    Examples
    --------
    >>> print(format_metrics(metrics_from_confusion(np.eye(2), classes=("a", "b"))).splitlines()[0])
    OA 100.00 %  mIoU 1.000  MCC 1.000  macro-F1 1.000
    """
    lines = [f"{title}\n" if title else ""]
    lines[0] += (f"OA {100 * m.overall_accuracy:.2f} %  mIoU {m.mean_iou:.3f}  MCC {m.mcc:.3f}  "
                 f"macro-F1 {m.macro_f1:.3f}")
    lines.append(f"{'class':<20}{'IoU':>7}{'F1':>7}{'recall':>8}{'support':>12}")
    for i, name in enumerate(m.classes):
        if m.support[i] == 0 and not np.isfinite(m.iou[i]):
            continue
        lines.append(f"{name:<20}{m.iou[i]:>7.3f}{m.f1[i]:>7.3f}{m.recall[i]:>8.3f}{m.support[i]:>12.0f}")
    return "\n".join(lines)

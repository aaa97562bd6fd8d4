"""Training the land-cover U-Net (:mod:`dwcube.models.unet`) on cubes and label rasters.

Modules, in the order a run uses them:

* :mod:`~dwcube.train.labels` — WorldCover codes, Dynamic World label maps or a
  teacher's probabilities → ``target`` / ``confidence`` / ``label`` (temporal consensus
  for several dates);
* :mod:`~dwcube.train.sampling` — spatially disjoint 90:10 split by blocks,
  class-balanced patches with several dates each, extracted with Dask;
* :mod:`~dwcube.train.augment` — geometric, radiometric and Landsat-like augmentation,
  and the feature stack (identical to inference's);
* :mod:`~dwcube.train.loop` — Adam, label smoothing, checkpoints, resume, export;
* :mod:`~dwcube.train.metrics` — OA, IoU, F1, multiclass MCC, confusion matrix;
* :mod:`~dwcube.train.recipe` — :func:`train_from_cube`, the whole recipe for your data;
* :mod:`~dwcube.train.cli` — ``dwcube train``;
* :mod:`~dwcube.train.shipped` — how the packaged weights were made (real data in ``../shared``).

Examples
--------
>>> from dwcube.train import Recipe, metrics_from_confusion
>>> round(metrics_from_confusion([[3, 1], [0, 4]]).overall_accuracy, 3)
0.875
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: Public name -> the submodule that defines it; imported on first use, so that
#: ``dwcube train --help`` (and ``dwcube --help``) do not load torch.
_LAZY = {
    "AugmentParams": "augment", "landsat_like": "augment", "reflectance_features": "augment",
    "from_label_map": "labels", "from_probabilities": "labels", "from_worldcover": "labels",
    "temporal_consensus": "labels",
    "TrainConfig": "loop", "TrainResult": "loop", "evaluate": "loop", "train": "loop",
    "Metrics": "metrics", "confusion_matrix": "metrics", "format_metrics": "metrics",
    "metrics_from_confusion": "metrics",
    "NORMALISATION": "recipe", "Recipe": "recipe", "fit_normalisation": "recipe", "prepare_labels": "recipe",
    "train_from_cube": "recipe",
    "PatchSet": "sampling", "SamplingParams": "sampling", "SplitParams": "sampling", "sample_patches": "sampling",
    "split_blocks": "sampling",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .augment import AugmentParams, landsat_like, reflectance_features
    from .labels import from_label_map, from_probabilities, from_worldcover, temporal_consensus
    from .loop import TrainConfig, TrainResult, evaluate, train
    from .metrics import Metrics, confusion_matrix, format_metrics, metrics_from_confusion
    from .recipe import NORMALISATION, Recipe, fit_normalisation, prepare_labels, train_from_cube
    from .sampling import PatchSet, SamplingParams, SplitParams, sample_patches, split_blocks

__all__ = [
    "NORMALISATION",
    "AugmentParams",
    "Metrics",
    "PatchSet",
    "Recipe",
    "SamplingParams",
    "SplitParams",
    "TrainConfig",
    "TrainResult",
    "confusion_matrix",
    "evaluate",
    "fit_normalisation",
    "format_metrics",
    "from_label_map",
    "from_probabilities",
    "from_worldcover",
    "landsat_like",
    "metrics_from_confusion",
    "prepare_labels",
    "reflectance_features",
    "sample_patches",
    "split_blocks",
    "temporal_consensus",
    "train",
    "train_from_cube",
]

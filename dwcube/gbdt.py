"""Gradient-boosted trees from a LightGBM text model, evaluated by a Numba kernel.

s2cloudless is a LightGBM model of 170 trees with 770 leaves each; LightGBM's own
``Booster.predict`` classifies ~0.1 Mpx/s per thread here, which made the cloud mask
cost several times the land-cover model.  This module reads the text model once into
flat arrays and walks the trees in compiled code, reproducing LightGBM's numerical
decision rule (``x <= threshold`` goes left; missing-value types *zero* and *NaN* follow
the stored default direction), its sum over trees and the sigmoid of binary objectives.
It is validated against ``lightgbm.Booster.predict`` in the tests.

Examples
--------
The s2cloudless model (shipped with the ``s2cloudless`` package) on two all-zero pixels:

>>> from importlib.resources import files
>>> model = TreeModel.from_text(files("s2cloudless") / "models" / "pixel_s2_cloud_detector_lightGBM_v0.1.txt")
>>> model.n_features, model.predict(np.zeros((2, 10))).round(6).tolist()
(10, [0.000111, 0.000111])
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

__all__ = ["TreeModel"]

_ZERO = 1e-35  # LightGBM's kZeroThreshold


@dataclass(frozen=True)
class TreeModel:
    """A binary or regression GBDT as flat arrays (all trees concatenated).

    Attributes
    ----------
    feature, threshold, left, right, default_left, missing
        Per split node: feature index, threshold, children (``< 0``: leaf ``~child``),
        default direction, missing type (0 none, 1 zero, 2 NaN).
    leaf_value
        Leaf outputs, all trees concatenated.
    node_offset, leaf_offset, n_nodes
        Where each tree starts in the node and leaf arrays, and its number of splits.
    n_features
        Number of input features.
    sigmoid
        Sigmoid scale for binary objectives; ``0`` for raw output.
    """

    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    default_left: np.ndarray
    missing: np.ndarray
    leaf_value: np.ndarray
    node_offset: np.ndarray
    leaf_offset: np.ndarray
    n_nodes: np.ndarray
    n_features: int
    sigmoid: float

    @classmethod
    def from_text(cls, path: str | Path) -> TreeModel:
        """Parse a LightGBM model saved as text (``Booster.save_model``)."""
        return cls.from_string(Path(path).read_text())

    @classmethod
    def from_string(cls, text: str) -> TreeModel:
        """Parse the text of a LightGBM model file (``Booster.model_to_string``)."""
        header, _, rest = text.partition("\nTree=")
        head = dict(line.split("=", 1) for line in header.splitlines() if "=" in line)
        n_features = int(head["max_feature_idx"]) + 1
        sigmoid = 0.0
        objective = head.get("objective", "")
        if objective.startswith("binary"):
            sigmoid = next((float(p.split(":")[1]) for p in objective.split() if p.startswith("sigmoid:")), 1.0)
        elif not objective.startswith("regression"):
            raise ValueError(f"{path}: objective {objective!r} is not supported (binary or regression only)")
        parts: dict[str, list[np.ndarray]] = {k: [] for k in
                                              ("feature", "threshold", "left", "right", "dl", "miss", "leaf")}
        node_off, leaf_off, n_nodes = [], [], []
        n_node_total = n_leaf_total = 0
        for block in ("Tree=" + rest).split("\nTree=")[0:]:
            block = block.split("\nend of trees")[0]
            fields = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
            if "leaf_value" not in fields:
                continue
            if int(fields.get("num_cat", "0")):
                raise ValueError(f"{path}: categorical splits are not supported")
            leaves = np.array(fields["leaf_value"].split(), dtype=np.float64)
            if int(fields["num_leaves"]) > 1:
                dec = np.array(fields["decision_type"].split(), dtype=np.int64)
                parts["feature"].append(np.array(fields["split_feature"].split(), dtype=np.int64))
                parts["threshold"].append(np.array(fields["threshold"].split(), dtype=np.float64))
                parts["left"].append(np.array(fields["left_child"].split(), dtype=np.int64))
                parts["right"].append(np.array(fields["right_child"].split(), dtype=np.int64))
                parts["dl"].append(((dec >> 1) & 1).astype(np.bool_))
                parts["miss"].append(((dec >> 2) & 3).astype(np.int64))
                n = len(dec)
            else:
                n = 0
            parts["leaf"].append(leaves)
            node_off.append(n_node_total)
            leaf_off.append(n_leaf_total)
            n_nodes.append(n)
            n_node_total += n
            n_leaf_total += len(leaves)
        if not node_off:
            raise ValueError(f"{path}: no trees")

        def cat(key: str, dtype: type) -> np.ndarray:
            return np.concatenate(parts[key]).astype(dtype) if parts[key] else np.zeros(0, dtype)

        return cls(cat("feature", np.int64), cat("threshold", np.float64), cat("left", np.int64),
                   cat("right", np.int64), cat("dl", np.bool_), cat("miss", np.int64), cat("leaf", np.float64),
                   np.array(node_off, np.int64), np.array(leaf_off, np.int64), np.array(n_nodes, np.int64),
                   n_features, sigmoid)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Model output per row of ``x`` (``(n, n_features)``): probability for binary models.

        Examples
        --------
        A binary model of one stump (feature 0 ≤ 0.5: leaf −2, else +2; NaN goes left):

        >>> import tempfile
        >>> text = ("tree\\nversion=v4\\nnum_class=1\\nmax_feature_idx=0\\nobjective=binary sigmoid:1\\n\\n"
        ...         "Tree=0\\nnum_leaves=2\\nnum_cat=0\\nsplit_feature=0\\nthreshold=0.5\\ndecision_type=10\\n"
        ...         "left_child=-1\\nright_child=-2\\nleaf_value=-2 2\\n\\nend of trees\\n")
        >>> with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        ...     _ = f.write(text)
        >>> TreeModel.from_text(f.name).predict(np.array([[0.0], [1.0], [np.nan]])).round(4).tolist()
        [0.1192, 0.8808, 0.1192]

        The s2cloudless model gives 0.000111 on an all-zero row (module example).
        """
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected (n, {self.n_features}) features, got {x.shape}")
        if self._plain is not None:
            # no split treats missing values apart: LightGBM reads NaN as 0 and compares
            child, roots = self._plain
            return _predict_plain(np.where(np.isnan(x), 0.0, x), self.feature, self.threshold, child, roots,
                                  self.leaf_value, self.leaf_offset, self.n_nodes, self.sigmoid)
        return _predict(x, self.feature, self.threshold, self.left, self.right, self.default_left, self.missing,
                        self.leaf_value, self.node_offset, self.leaf_offset, self.n_nodes, self.sigmoid)

    @functools.cached_property
    def _plain(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(child, roots)`` for :func:`_predict_plain` when no split has a missing-value type, else ``None``.

        ``child[k] = (left, right)`` of split ``k`` as indices into all trees' splits, a leaf
        as ``~index`` into all trees' leaves; ``roots[t]`` tree ``t``'s first split.
        """
        if self.missing.size and self.missing.any():
            return None
        child = np.empty((self.feature.size, 2), dtype=np.int32)
        for t in range(self.node_offset.size):
            nb, lb, n = self.node_offset[t], self.leaf_offset[t], self.n_nodes[t]
            for side, arr in ((0, self.left), (1, self.right)):
                c = arr[nb:nb + n]
                child[nb:nb + n, side] = np.where(c >= 0, c + nb, ~(~c + lb))
        return child, self.node_offset.astype(np.int32)


_GROUP = 8    # rows that walk one tree together: independent chains whose memory latencies overlap
_BATCH = 512  # rows per pass over the forest: their features stay in L1 cache


@numba.njit(cache=True, nogil=True)
def _predict_plain(x, feature, threshold, child, roots, leaf_value,  # type: ignore[no-untyped-def]
                   leaf_offset, n_nodes, sigmoid):
    # As _predict for splits without missing-value handling (x has no NaN): groups of _GROUP
    # rows of a batch advance through a tree in lockstep, one level per sweep, so that their
    # node fetches do not wait on each other (1.3x _predict on the s2cloudless forest).
    n = x.shape[0]
    out = np.zeros(n, dtype=np.float64)
    node = np.empty(_GROUP, dtype=np.int32)
    for start in range(0, n, _BATCH):
        stop = min(start + _BATCH, n)
        for t in range(roots.shape[0]):
            if n_nodes[t] == 0:
                for i in range(start, stop):
                    out[i] += leaf_value[leaf_offset[t]]
                continue
            r = roots[t]
            for g in range(start, stop, _GROUP):
                k = min(g + _GROUP, stop) - g
                for j in range(k):
                    node[j] = r
                active = k
                while active > 0:
                    active = 0
                    for j in range(k):
                        nd = node[j]
                        if nd >= 0:
                            nd = child[nd, 1 if x[g + j, feature[nd]] > threshold[nd] else 0]
                            node[j] = nd
                            if nd >= 0:
                                active += 1
                for j in range(k):
                    out[g + j] += leaf_value[~node[j]]
    if sigmoid > 0:
        for i in range(n):
            out[i] = 1.0 / (1.0 + math.exp(-sigmoid * out[i]))
    return out


@numba.njit(cache=True, nogil=True)
def _predict(x, feature, threshold, left, right, default_left, missing, leaf_value,  # type: ignore[no-untyped-def]
             node_offset, leaf_offset, n_nodes, sigmoid):
    # Pixels in batches, trees inside: one tree's nodes (~10 kB) stay in L1 cache while a
    # batch of rows walks it; rows-outer would fetch the whole 5 MB forest per row.
    n = x.shape[0]
    out = np.zeros(n, dtype=np.float64)
    batch = 2048
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        for t in range(node_offset.shape[0]):
            if n_nodes[t] == 0:
                for i in range(start, stop):
                    out[i] += leaf_value[leaf_offset[t]]
                continue
            base = node_offset[t]
            lbase = leaf_offset[t]
            for i in range(start, stop):
                node = 0
                while node >= 0:
                    k = base + node
                    v = x[i, feature[k]]
                    m = missing[k]
                    if m != 2 and math.isnan(v):
                        v = 0.0
                    if (m == 1 and -_ZERO <= v <= _ZERO) or (m == 2 and math.isnan(v)):
                        node = left[k] if default_left[k] else right[k]
                    elif v <= threshold[k]:
                        node = left[k]
                    else:
                        node = right[k]
                out[i] += leaf_value[lbase + ~node]
    if sigmoid > 0:
        for i in range(n):
            out[i] = 1.0 / (1.0 + math.exp(-sigmoid * out[i]))
    return out

"""Training patches from a cube and a label raster, with Dask: split, balance, extract.

1. **Spatial split** (:func:`split_blocks`): the grid is cut into square blocks of
   ``block`` pixels; a seeded random ``val_fraction`` of the blocks (at least one when
   there are two or more) is the validation side, the rest training.  A pixel belongs to
   exactly one side.  Patches may straddle blocks, but every pixel of a patch that lies
   on the other side gets ``confidence`` 0 (never a loss term) and, with
   ``isolate=True`` (default), NaN inputs too — so no pixel of a validation block is ever
   seen in training, neither as label nor as context.
2. **Class histograms per block** (:func:`class_block_counts`): one Dask reduction of
   the label raster (pixels with ``confidence > min_confidence`` on the wanted side).
3. **Anchors**: with ``balance="class"`` each sample first draws a class uniformly among
   the classes present on that side, then a block with probability proportional to
   that class's pixels in it, then a pixel of that class in the block (only the label
   blocks drawn are computed, in one ``dask.compute``).  With ``balance="none"`` the
   anchor is a uniformly random labelled pixel.  The patch is placed so that the anchor
   falls at a random position inside it.
4. **Temporal samples**: each patch takes ``dates_per_sample`` dates of the cube (drawn
   without replacement while the cube has enough); all share the patch's one label.
5. **Extraction**: reflectance, elevation, target and confidence windows are sliced
   lazily and computed in batches with :func:`dask.compute`.

The result is a :class:`PatchSet` of NumPy arrays (reflectance kept in float16 to halve
memory; the loop computes in float32).

Hand-written: the block split with isolation, the class-then-block-then-pixel draw and
the shared-label temporal stacking are specific to this task (torchgeo's samplers draw
windows over a geographic index, without label-aware balancing or block isolation).

Examples
--------
>>> from dwcube.testing import synthetic_cube
>>> from dwcube.train.labels import from_label_map
>>> import xarray as xr
>>> cube = synthetic_cube(64, 3, bands=("blue", "green", "red", "nir08", "swir16", "swir22"))
>>> lab = from_label_map(xr.DataArray((np.arange(64)[:, None] // 16 + np.zeros(64, int)).astype(np.uint8),
...                                   dims=("y", "x"), coords={"y": cube.y, "x": cube.x}))
>>> ps = sample_patches(cube, lab, SamplingParams(patch=16, n_samples=8, dates_per_sample=2),
...                     split=SplitParams(block=16))
>>> ps.reflectance.shape, ps.target.shape
((8, 2, 6, 16, 16), (8, 9, 16, 16))
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ..classes import CLASSES

__all__ = [
    "UNET_BANDS",
    "NoLabelledPixelsError",
    "PatchSet",
    "SamplingParams",
    "SplitParams",
    "class_block_counts",
    "grid_mismatch",
    "same_grid",
    "sample_patches",
    "split_blocks",
    "split_mask",
]

K = len(CLASSES)
TRAIN, VAL = 0, 1
#: Reflectance bands the U-Net's features are computed from (common names).
UNET_BANDS: tuple[str, ...] = ("blue", "green", "red", "nir08", "swir16", "swir22")


@dataclass(frozen=True)
class SplitParams:
    """The spatial train/validation split.

    Parameters
    ----------
    block
        Block size (pixels); the unit of the split.
    val_fraction
        Share of blocks on the validation side (0.1 for 90:10).
    seed
        Seed of the assignment (same seed, same grid shape: same split).

    Examples
    --------
    >>> SplitParams().val_fraction
    0.1
    """

    block: int = 64
    val_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.block < 1 or not 0 <= self.val_fraction < 1:
            raise ValueError(f"invalid split: block {self.block}, val_fraction {self.val_fraction}")


def split_blocks(shape: tuple[int, int], params: SplitParams = SplitParams()) -> np.ndarray:
    """Side of every block: ``(ceil(H/block), ceil(W/block))`` int8, 0 = train, 1 = validation.

    Examples
    --------
    >>> s = split_blocks((100, 100), SplitParams(block=10, val_fraction=0.1, seed=3))
    >>> s.shape, int(s.sum())
    ((10, 10), 10)
    """
    nby, nbx = -(-shape[0] // params.block), -(-shape[1] // params.block)
    n = nby * nbx
    n_val = round(params.val_fraction * n)
    if params.val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    order = np.random.default_rng(params.seed).permutation(n)
    side = np.zeros(n, np.int8)
    side[order[:n_val]] = VAL
    return side.reshape(nby, nbx)


def split_mask(shape: tuple[int, int], params: SplitParams = SplitParams()) -> np.ndarray:
    """Per-pixel side ``(H, W)`` int8 (0 train, 1 validation) of :func:`split_blocks`.

    Examples
    --------
    >>> split_mask((4, 6), SplitParams(block=2, val_fraction=0.5, seed=0)).tolist()[0]
    [0, 0, 0, 0, 1, 1]
    """
    b = params.block
    side = split_blocks(shape, params)
    return np.repeat(np.repeat(side, b, 0), b, 1)[: shape[0], : shape[1]]


def _block_hist(label: np.ndarray, conf: np.ndarray, side: np.ndarray, *, want: int, min_conf: float) -> np.ndarray:
    ok = (label < K) & (conf > min_conf) & (side == want)
    return np.bincount(label[ok].astype(np.int64), minlength=K).astype(np.int64)[None, None, :]


def class_block_counts(labels: xr.Dataset, split: SplitParams, *, side: int = TRAIN,
                       min_confidence: float = 0.0) -> np.ndarray:
    """Labelled pixels per block and class on one side of the split: ``(nby, nbx, K)`` int64.

    Computed with Dask, one task per block (the label raster is rechunked to the blocks).

    Examples
    --------
    >>> lab = xr.Dataset({"label": (("y", "x"), np.array([[0, 1], [1, 255]], np.uint8)),
    ...                   "confidence": (("y", "x"), np.ones((2, 2), np.float32))})
    >>> class_block_counts(lab, SplitParams(block=2, val_fraction=0.0))[0, 0, :3].tolist()
    [1, 2, 0]
    """
    ydim, xdim = _dims(labels["label"])
    h, w = labels.sizes[ydim], labels.sizes[xdim]
    b = split.block
    chunks = (tuple(min(b, h - i) for i in range(0, h, b)), tuple(min(b, w - i) for i in range(0, w, b)))
    lab = da.asarray(labels["label"].data).rechunk(chunks)
    conf = da.asarray(labels["confidence"].data).rechunk(chunks)
    side_arr = da.from_array(split_mask((h, w), split), chunks=chunks)
    counts = da.map_blocks(_block_hist, lab, conf, side_arr, want=side, min_conf=min_confidence,
                           new_axis=2, chunks=((1,) * len(chunks[0]), (1,) * len(chunks[1]), (K,)), dtype=np.int64)
    return np.asarray(counts.compute())


def _dims(obj: xr.Dataset | xr.DataArray) -> tuple[str, str]:
    dims = [d for d in obj.dims if d not in ("time", "class", "band", "feature")]
    if len(dims) != 2:
        raise ValueError(f"expected two spatial dimensions, got {list(obj.dims)}")
    return str(dims[0]), str(dims[1])


class NoLabelledPixelsError(ValueError):
    """A side of the split has no labelled pixel to draw patches from."""


def grid_mismatch(obj: xr.Dataset | xr.DataArray, cube: xr.Dataset, what: str = "labels") -> str | None:
    """Why ``obj`` is not on the cube's pixel grid, or ``None`` when it is.

    Sizes must be equal and coordinates within 1 % of a pixel: an absolute tolerance,
    because a relative one would let a shift of several pixels through at UTM northings.
    An object without spatial coordinates is taken to be on the grid when its sizes match.

    Examples
    --------
    >>> from dwcube.testing import synthetic_cube
    >>> cube = synthetic_cube(8, 1)
    >>> grid_mismatch(cube.red.isel(time=0), cube) is None
    True
    >>> grid_mismatch(cube.red.isel(time=0).assign_coords(y=cube.y + 30.0), cube)
    "labels are not on the cube's grid: y is shifted by 30 m (3 px); put both on one grid first"
    """
    ydim, xdim = _dims(cube[next(iter(cube.data_vars))])
    oy, ox = _dims(obj)
    if (obj.sizes[oy], obj.sizes[ox]) != (cube.sizes[ydim], cube.sizes[xdim]):
        return (f"{what} are {obj.sizes[oy]} × {obj.sizes[ox]} px, the cube {cube.sizes[ydim]} × "
                f"{cube.sizes[xdim]}: put both on one grid first")
    for od, cd in ((oy, ydim), (ox, xdim)):
        if od not in obj.coords or cd not in cube.coords or cube.sizes[cd] < 2:
            continue
        a, b = np.asarray(obj[od].values, np.float64), np.asarray(cube[cd].values, np.float64)
        step = abs(float(b[1] - b[0]))
        worst = float(np.max(np.abs(a - b)))
        if worst > 0.01 * step:
            return (f"{what} are not on the cube's grid: {cd} is shifted by {worst:.3g} m "
                    f"({worst / step:.3g} px); put both on one grid first")
    return None


def same_grid(obj: xr.Dataset | xr.DataArray, cube: xr.Dataset, what: str = "labels") -> None:
    """Raise :class:`ValueError` with :func:`grid_mismatch`'s reason unless ``obj`` is on the cube's grid.

    Examples
    --------
    >>> from dwcube.testing import synthetic_cube
    >>> cube = synthetic_cube(8, 1)
    >>> same_grid(cube.red.isel(time=0).assign_coords(y=cube.y + 30.0), cube)
    Traceback (most recent call last):
    ...
    ValueError: labels are not on the cube's grid: y is shifted by 30 m (3 px); put both on one grid first
    """
    reason = grid_mismatch(obj, cube, what)
    if reason is not None:
        raise ValueError(reason)


@dataclass(frozen=True)
class SamplingParams:
    """How many patches, how large, how balanced, how many dates each.

    Parameters
    ----------
    patch
        Patch size (pixels).
    n_samples
        Number of patches.
    dates_per_sample
        Dates per patch sharing its label (temporal augmentation); dates are drawn with
        replacement only when the cube has fewer.
    balance
        ``"class"`` (uniform over classes present) or ``"none"``.
    min_confidence
        Anchors need a label confidence above this.
    min_class_pixels
        With class balancing, classes with fewer labelled pixels than this on the side
        are not drawn as anchors (they still appear inside patches): a handful of pixels
        drawn as often as a whole class would be the same patches over and over.
    isolate
        Set inputs of the other side's pixels to NaN as well as their confidence to 0.
    seed
        Seed of the draw.
    batch
        Patches computed per ``dask.compute`` call.

    Examples
    --------
    >>> SamplingParams(patch=64).balance
    'class'
    """

    patch: int = 128
    n_samples: int = 512
    dates_per_sample: int = 2
    balance: Literal["class", "none"] = "class"
    min_confidence: float = 0.0
    min_class_pixels: int = 0
    isolate: bool = True
    seed: int = 0
    batch: int = 64

    def __post_init__(self) -> None:
        if self.balance not in ("class", "none"):
            raise ValueError(f"balance must be 'class' or 'none', got {self.balance!r}")
        if self.patch < 1 or self.n_samples < 0 or self.dates_per_sample < 1:
            raise ValueError("patch, n_samples and dates_per_sample must be positive")


@dataclass
class PatchSet:
    """Training patches in memory.

    Attributes
    ----------
    reflectance
        ``(N, D, B, P, P)`` float16 reflectance of ``D`` dates per patch, NaN = no data.
    bands
        Common names of the ``B`` bands.
    target
        ``(N, K, P, P)`` float16 class distributions (shared by the ``D`` dates).
    confidence
        ``(N, P, P)`` float32 loss weights (0: no label, or the other side of the split).
    elevation
        ``(N, P, P)`` float32 metres, or ``None`` when the scene has no DEM.
    anchor_class
        ``(N,)`` the class each patch was drawn for (−1 for unbalanced draws).
    origin
        ``(N, 2)`` top-left pixel of each patch in its scene.
    source
        ``(N,)`` scene name of each patch.
    platform
        ``(N,)`` Sentinel-2 platform (``"sentinel-2a"``…), for the Landsat-like simulation.

    Examples
    --------
    >>> ps = PatchSet.empty(("red",), 8)
    >>> len(ps), ps.reflectance.shape
    (0, (0, 1, 1, 8, 8))
    """

    reflectance: np.ndarray
    bands: tuple[str, ...]
    target: np.ndarray
    confidence: np.ndarray
    elevation: np.ndarray | None
    anchor_class: np.ndarray
    origin: np.ndarray
    source: np.ndarray
    platform: np.ndarray
    attrs: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.reflectance.shape[0])

    @property
    def patch(self) -> int:
        """Patch size (pixels)."""
        return int(self.reflectance.shape[-1])

    @classmethod
    def empty(cls, bands: Sequence[str], patch: int, dates: int = 1) -> PatchSet:
        """A set with no patches (for concatenation)."""
        return cls(np.zeros((0, dates, len(bands), patch, patch), np.float16), tuple(bands),
                   np.zeros((0, K, patch, patch), np.float16), np.zeros((0, patch, patch), np.float32),
                   None, np.zeros(0, np.int64), np.zeros((0, 2), np.int64), np.zeros(0, "<U32"), np.zeros(0, "<U16"))

    def subset(self, index: np.ndarray | Sequence[int]) -> PatchSet:
        """The patches at ``index``.

        Examples
        --------
        >>> len(PatchSet.empty(("red",), 4).subset([]))
        0
        """
        idx = np.asarray(index, dtype=np.int64)
        return PatchSet(self.reflectance[idx], self.bands, self.target[idx], self.confidence[idx],
                        None if self.elevation is None else self.elevation[idx], self.anchor_class[idx],
                        self.origin[idx], self.source[idx], self.platform[idx], dict(self.attrs))

    @staticmethod
    def concat(sets: Sequence[PatchSet]) -> PatchSet:
        """Patches of several sets (same bands, patch size and dates per patch).

        Elevation: kept when every set has it; a set without it gets NaN fields (the
        loop then draws a synthetic field for those patches).

        Examples
        --------
        >>> a = PatchSet.empty(("red",), 4)
        >>> len(PatchSet.concat([a, a]))
        0
        """
        sets = [s for s in sets if len(s)] or list(sets[:1])
        if not sets:
            raise ValueError("nothing to concatenate")
        first = sets[0]
        for s in sets[1:]:
            if s.bands != first.bands or s.reflectance.shape[1:] != first.reflectance.shape[1:]:
                raise ValueError("patch sets differ in bands, dates per patch or patch size")
        if all(s.elevation is None for s in sets):
            elev = None
        else:
            elev = np.concatenate([s.elevation if s.elevation is not None else
                                   np.full(s.confidence.shape, np.nan, np.float32) for s in sets])
        return PatchSet(np.concatenate([s.reflectance for s in sets]), first.bands,
                        np.concatenate([s.target for s in sets]), np.concatenate([s.confidence for s in sets]),
                        elev, np.concatenate([s.anchor_class for s in sets]), np.concatenate([s.origin for s in sets]),
                        np.concatenate([s.source for s in sets]), np.concatenate([s.platform for s in sets]),
                        dict(first.attrs))

    def save(self, path: str | Path) -> None:
        """Write to an uncompressed ``.npz`` (fast to reload)."""
        arrays = {"reflectance": self.reflectance, "bands": np.array(self.bands), "target": self.target,
                  "confidence": self.confidence, "anchor_class": self.anchor_class, "origin": self.origin,
                  "source": self.source, "platform": self.platform}
        if self.elevation is not None:
            arrays["elevation"] = self.elevation
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> PatchSet:
        """Read a set written by :meth:`save`.

        Examples
        --------
        >>> import tempfile, os
        >>> p = os.path.join(tempfile.mkdtemp(), "ps.npz")
        >>> PatchSet.empty(("red", "nir08"), 8).save(p)
        >>> PatchSet.load(p).bands
        ('red', 'nir08')
        """
        with np.load(path) as z:
            return cls(z["reflectance"], tuple(str(b) for b in z["bands"]), z["target"], z["confidence"],
                       z.get("elevation"), z["anchor_class"], z["origin"], z["source"],
                       z["platform"])


def _anchors(labels: xr.Dataset, counts: np.ndarray, side_mask: np.ndarray, want: int, params: SamplingParams,
             split: SplitParams, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 2)`` anchor pixels and ``(n,)`` their drawn classes."""
    b = split.block
    flat = counts.reshape(-1, K)
    per_class = flat.sum(0)
    present = np.flatnonzero(per_class > 0)
    if params.balance == "class" and params.min_class_pixels and (per_class >= params.min_class_pixels).any():
        present = np.flatnonzero(per_class >= max(1, params.min_class_pixels))
    if present.size == 0:
        raise NoLabelledPixelsError("no labelled pixel on this side of the split "
                                    "(check the labels' confidence and the split)")
    n = params.n_samples
    if params.balance == "class":
        classes = rng.choice(present, size=n)
        blocks = np.array([rng.choice(flat.shape[0], p=flat[:, c] / flat[:, c].sum()) for c in classes], np.int64)
    else:
        total = flat.sum(1).astype(np.float64)
        classes = np.full(n, -1)
        blocks = rng.choice(flat.shape[0], size=n, p=total / total.sum())
    nbx = counts.shape[1]
    needed = sorted(set(blocks.tolist()))
    windows = {}
    for blk in needed:
        by, bx = divmod(blk, nbx)
        windows[blk] = (slice(by * b, (by + 1) * b), slice(bx * b, (bx + 1) * b))
    lab_blocks = dask.compute(*[labels["label"].data[windows[k]] for k in needed])
    conf_blocks = dask.compute(*[labels["confidence"].data[windows[k]] for k in needed])
    by_key = {k: (np.asarray(lb), np.asarray(cb)) for k, lb, cb in zip(needed, lab_blocks, conf_blocks, strict=True)}
    out = np.zeros((n, 2), np.int64)
    for i, (blk, c) in enumerate(zip(blocks, classes, strict=True)):
        lb, cb = by_key[int(blk)]
        wy, wx = windows[int(blk)]
        sm = side_mask[wy, wx]
        ok = (cb > params.min_confidence) & (sm == want) & (lb < K)
        if c >= 0:
            ok &= lb == c
        ys, xs = np.nonzero(ok)
        j = rng.integers(ys.size)
        out[i] = (wy.start + ys[j], wx.start + xs[j])
    return out, classes


def sample_patches(
    cube: xr.Dataset,
    labels: xr.Dataset,
    params: SamplingParams = SamplingParams(),
    *,
    split: SplitParams = SplitParams(),
    side: Literal["train", "val"] = "train",
    bands: Sequence[str] = UNET_BANDS,
    dem: xr.Dataset | xr.DataArray | None = None,
    source: str = "",
    platform: str = "sentinel-2a",
) -> PatchSet:
    """Draw training (or validation) patches from a reflectance cube and its labels.

    Parameters
    ----------
    cube
        Reflectance cube ``(time, y, x)`` with ``bands`` (NumPy or Dask), e.g. from
        :func:`dwcube.load`.
    labels
        A label dataset from :mod:`dwcube.train.labels` on the same grid (``(y, x)``
        sizes equal to the cube's).
    params
        Patch size, count, dates per patch, balancing.
    split
        The spatial split; the same ``split`` must be used for both sides.
    side
        ``"train"`` or ``"val"``.
    bands
        Reflectance bands to keep (the U-Net's six by default).
    dem
        Elevation on the cube's grid (a Dataset with ``elevation`` or a DataArray), or
        ``None`` (no DEM: the loop substitutes a random field).
    source, platform
        Scene name and Sentinel-2 platform stored with each patch.

    Returns
    -------
    PatchSet

    Raises
    ------
    ValueError
        When the grids differ.
    NoLabelledPixelsError
        When the side has no labelled pixel (a :class:`ValueError`).
    """
    want = TRAIN if side == "train" else VAL
    ydim, xdim = _dims(cube[bands[0]])
    h, w = cube.sizes[ydim], cube.sizes[xdim]
    ly, lx = _dims(labels["label"])
    same_grid(labels["label"], cube, "labels")
    if dem is not None:
        same_grid((dem["elevation"] if isinstance(dem, xr.Dataset) else dem).squeeze(drop=True), cube, "elevation")
    if params.n_samples == 0:
        return PatchSet.empty(bands, params.patch, params.dates_per_sample)
    rng = np.random.default_rng([params.seed, want, zlib.crc32(source.encode())])
    side_mask = split_mask((h, w), split)
    counts = class_block_counts(labels, split, side=want, min_confidence=params.min_confidence)
    anchors, classes = _anchors(labels, counts, side_mask, want, params, split, rng)
    p = params.patch
    n_t = cube.sizes["time"]
    refl = cube[list(bands)].to_dataarray("band").transpose("time", "band", ydim, xdim).data
    target = labels["target"].transpose("class", ly, lx).data
    conf = labels["confidence"].data
    elev = None
    if dem is not None:
        e = dem["elevation"] if isinstance(dem, xr.Dataset) else dem
        elev = e.squeeze(drop=True).transpose(*[d for d in e.dims if d in (ydim, xdim)]).data

    n = len(anchors)
    d = params.dates_per_sample
    out_r = np.full((n, d, len(bands), p, p), np.nan, np.float16)
    out_t = np.zeros((n, K, p, p), np.float16)
    out_c = np.zeros((n, p, p), np.float32)
    out_e = np.full((n, p, p), np.nan, np.float32) if elev is not None else None
    origins = np.zeros((n, 2), np.int64)
    date_idx = np.zeros((n, d), np.int64)
    for i, (ay, ax) in enumerate(anchors):
        oy = int(np.clip(ay - rng.integers(p), 0, max(h - p, 0)))
        ox = int(np.clip(ax - rng.integers(p), 0, max(w - p, 0)))
        origins[i] = (oy, ox)
        date_idx[i] = rng.choice(n_t, size=d, replace=n_t < d)
    for start in range(0, n, params.batch):
        stop = min(n, start + params.batch)
        jobs = []
        for i in range(start, stop):
            oy, ox = origins[i]
            ys, xs = slice(oy, oy + p), slice(ox, ox + p)
            # spatial window first, then the dates: never copy whole scenes per patch
            jobs.append((refl[:, :, ys, xs][date_idx[i]], target[:, ys, xs], conf[ys, xs],
                         elev[ys, xs] if elev is not None else None))
        done = dask.compute(*jobs)
        for i, (r, t, c, e) in zip(range(start, stop), done, strict=True):
            oy, ox = origins[i]
            hh, ww = np.asarray(c).shape
            mine = side_mask[oy:oy + hh, ox:ox + ww] == want
            r = np.asarray(r, np.float32)
            if params.isolate:  # the other side is never seen, not even as context
                r = np.where(mine, r, np.nan)
                e = None if e is None else np.where(mine, np.asarray(e, np.float32), np.nan)
            out_r[i, :, :, :hh, :ww] = r
            out_t[i, :, :hh, :ww] = np.asarray(t)
            out_c[i, :hh, :ww] = np.where(mine, np.asarray(c, np.float32), 0)
            if out_e is not None and e is not None:
                out_e[i, :hh, :ww] = np.asarray(e, np.float32)
    return PatchSet(out_r, tuple(bands), out_t, out_c, out_e, classes.astype(np.int64), origins,
                    np.full(n, source or "scene", "<U32"), np.full(n, platform, "<U16"),
                    {"split": asdict(split), "side": side, "sampling": asdict(params)})

"""Tiles with a halo and an alignment: how a large image goes through a network in pieces.

A network with a finite receptive field gives, on a tile extended by a *halo* of context
on every side, the same interior as on the whole image — provided tile origins respect
the network's *alignment* (2 for a network with one 2× downsampling, whose phase must
not shift).  The registry declares both per model; inference uses them.

Examples
--------
>>> [ (w.core, w.read) for w in plan_axis(10, tile=4, halo=2, alignment=2) ]
[((0, 4), (0, 6)), ((4, 8), (2, 10)), ((8, 10), (6, 10))]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["Window", "plan_axis", "predict_tiled", "windows"]


@dataclass(frozen=True)
class Window:
    """One tile along one axis: the output range it owns and the input range it reads."""

    core: tuple[int, int]
    read: tuple[int, int]

    def aligned_length(self, alignment: int) -> int:
        """The read length rounded up to the alignment (what the network is given)."""
        return -(-(self.read[1] - self.read[0]) // alignment) * alignment

    @property
    def inner(self) -> slice:
        """The core inside the read window (indices into the tile's output)."""
        return slice(self.core[0] - self.read[0], self.core[1] - self.read[0])


def plan_axis(n: int, *, tile: int, halo: int, alignment: int = 1, uniform: bool = False,
              region: tuple[int, int] | None = None) -> list[Window]:
    """Split ``range(n)`` (or ``range(*region)``) into cores of ``tile`` pixels, each read with ``halo`` pixels of context.

    With ``uniform=True`` every read window has the same length, ``tile + 2·halo`` (or the
    aligned image size when that is smaller): windows at the image edges take their extra
    context from the inside instead of being clipped.  More context never changes the
    result once the halo covers the receptive field, and equal shapes batch together and
    compile once.  A window may then end past ``n`` (by less than ``alignment``) when
    ``n`` is not a multiple of it: :func:`predict_tiled` pads those pixels.

    Parameters
    ----------
    n
        Axis length (pixels).
    tile
        Core size; a positive multiple of ``alignment``.
    halo
        Context on each side (clipped at the image edges); a multiple of ``alignment``.
    alignment
        Every read window starts at a multiple of it.
    region
        ``(start, stop)``: only these outputs are wanted (a block's core inside its
        overlap); reads may still use all of ``range(n)``.  ``start`` must be a multiple
        of ``alignment``.

    Examples
    --------
    >>> plan_axis(5, tile=8, halo=2)
    [Window(core=(0, 5), read=(0, 5))]
    >>> [w.read for w in plan_axis(10, tile=4, halo=2, alignment=2, uniform=True)]
    [(0, 8), (2, 10), (2, 10)]
    >>> [(w.core, w.read) for w in plan_axis(12, tile=4, halo=2, alignment=2, uniform=True, region=(2, 10))]
    [((2, 6), (0, 8)), ((6, 10), (4, 12))]
    """
    if tile <= 0 or tile % alignment:
        raise ValueError(f"tile ({tile}) must be a positive multiple of the alignment ({alignment})")
    if halo < 0 or halo % alignment:
        raise ValueError(f"halo ({halo}) must be a non-negative multiple of the alignment ({alignment})")
    first, last = (0, n) if region is None else region
    if not 0 <= first <= last <= n or first % alignment:
        raise ValueError(f"region {region} must lie in [0, {n}] and start at a multiple of {alignment}")
    out = []
    n_aligned = -(-n // alignment) * alignment
    length = min(tile + 2 * halo, n_aligned)
    for start in range(first, last, tile):
        stop = min(start + tile, last)
        if uniform:
            lo = min(max(start - halo, 0), n_aligned - length)
            out.append(Window((start, stop), (lo, lo + length)))
        else:
            out.append(Window((start, stop), (max(start - halo, 0), min(stop + halo, n))))
    return out


def windows(h: int, w: int, *, tile: int, halo: int, alignment: int = 1, uniform: bool = True,
            region: tuple[tuple[int, int], tuple[int, int]] | None = None) -> Iterator[tuple[Window, Window]]:
    """All ``(y, x)`` window pairs of an ``h × w`` image (see :func:`plan_axis`), row by row.

    Examples
    --------
    >>> len(list(windows(10, 10, tile=4, halo=2, alignment=2)))
    9
    """
    ry, rx = region if region is not None else (None, None)
    for wy in plan_axis(h, tile=tile, halo=halo, alignment=alignment, uniform=uniform, region=ry):
        for wx in plan_axis(w, tile=tile, halo=halo, alignment=alignment, uniform=uniform, region=rx):
            yield wy, wx


def predict_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    *,
    tile: int,
    halo: int,
    alignment: int = 1,
    batch_size: int = 1,
    uniform: bool = True,
) -> torch.Tensor:
    """Apply ``fn`` to ``x`` (``(N, C, H, W)``) tile by tile and paste the cores together.

    Tiles of equal shape are batched (``batch_size`` tiles per call); with ``uniform``
    (default) all tiles have one shape (see :func:`plan_axis`).  Pixels a read window needs
    beyond the image (only at the far edge of an image whose size is not a multiple of
    ``alignment``) repeat its last row/column, so that the network always sees aligned
    sizes; their outputs are dropped.

    Returns
    -------
    torch.Tensor
        ``(N, K, H, W)``, ``K`` the channels ``fn`` returns.

    Examples
    --------
    >>> y = predict_tiled(lambda t: t * 2, torch.ones(1, 3, 10, 10), tile=4, halo=2, alignment=2)
    >>> y.shape, float(y.min())
    (torch.Size([1, 3, 10, 10]), 2.0)
    """
    if x.ndim != 4:
        raise ValueError(f"expected (N, C, H, W), got {tuple(x.shape)}")
    n, _, h, w = x.shape
    out: torch.Tensor | None = None
    groups: dict[tuple[int, int], list[tuple[Window, Window]]] = {}
    for wy, wx in windows(h, w, tile=tile, halo=halo, alignment=alignment, uniform=uniform):
        groups.setdefault((wy.aligned_length(alignment), wx.aligned_length(alignment)), []).append((wy, wx))
    for (py, px), members in groups.items():
        for i in range(0, len(members), batch_size):
            part = members[i:i + batch_size]
            tiles = []
            for wy, wx in part:
                t = x[:, :, wy.read[0]:wy.read[1], wx.read[0]:wx.read[1]]
                pad_y, pad_x = py - t.shape[-2], px - t.shape[-1]
                if pad_y or pad_x:
                    t = F.pad(t, (0, pad_x, 0, pad_y), mode="replicate")
                tiles.append(t)
            y = fn(torch.cat(tiles, 0))
            if out is None:
                out = y.new_empty((n, y.shape[1], h, w))
            for k, (wy, wx) in enumerate(part):
                out[:, :, wy.core[0]:wy.core[1], wx.core[0]:wx.core[1]] = \
                    y[k * n:(k + 1) * n, :, wy.inner, wx.inner]
    assert out is not None
    return out

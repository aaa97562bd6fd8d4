"""Pictures of land-cover cubes in the Dynamic World colours (Matplotlib, headless).

Figures are built with :class:`matplotlib.figure.Figure` directly (no ``pyplot`` state,
no display needed) and returned, so callers can save them or embed them in notebooks.
Matplotlib is an optional dependency: ``pip install dwcube[plot]``.

Examples
--------
>>> fig = label_maps(open_archive("lulc.zarr").label)     # doctest: +SKIP
>>> fig.savefig("map.png", dpi=150)                         # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from .classes import CLASSES, COLORS, NODATA_LABEL

__all__ = ["label_colormap", "label_maps", "label_rgb"]

_NODATA_COLOR = "#e6e6e6"


def _mpl() -> Any:
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("plotting needs matplotlib: pip install 'dwcube[plot]'") from exc
    return matplotlib


def _classes(label: xr.DataArray) -> tuple[str, ...]:
    meanings = label.attrs.get("flag_meanings")
    return tuple(str(meanings).split()) if meanings else CLASSES


def label_rgb(label: np.ndarray, classes: Sequence[str] = CLASSES, *, nodata_rgb: tuple[int, int, int] = (230, 230, 230)) -> np.ndarray:
    """An RGB image (uint8, ``(..., 3)``) of a label array in the Dynamic World colours.

    Examples
    --------
    >>> label_rgb(np.array([[0, 1, 255]]))[0].tolist()
    [[65, 155, 223], [57, 125, 73], [230, 230, 230]]
    """
    lut = np.tile(np.array(nodata_rgb, np.uint8), (256, 1))
    for i, name in enumerate(classes):
        h = COLORS.get(name, "#000000").lstrip("#")
        lut[i] = [int(h[k:k + 2], 16) for k in (0, 2, 4)]
    return lut[np.asarray(label, dtype=np.uint8)]


def label_colormap(classes: Sequence[str] = CLASSES) -> tuple[Any, Any]:
    """A Matplotlib ``(ListedColormap, BoundaryNorm)`` for label values ``0 … K−1``.

    Examples
    --------
    >>> cmap, norm = label_colormap()
    >>> cmap.N
    9
    """
    _mpl()
    from matplotlib.colors import BoundaryNorm, ListedColormap

    cmap = ListedColormap([COLORS.get(c, "#000000") for c in classes], name="dynamic_world").with_extremes(
        bad=_NODATA_COLOR)
    return cmap, BoundaryNorm(np.arange(len(classes) + 1) - 0.5, len(classes))


def label_maps(
    label: xr.DataArray,
    *,
    titles: Sequence[str] | None = None,
    legend: bool = True,
    ncols: int | None = None,
    panel_size: float = 3.2,
    suptitle: str | None = None,
) -> Any:
    """Label maps in the Dynamic World colours, one panel per date, with a legend.

    Parameters
    ----------
    label
        ``(y, x)`` or ``(time, y, x)`` uint8 labels (255 = no data), e.g.
        :func:`dwcube.label` of a probability cube or an archive's ``label``; no data
        is drawn light grey.
    titles
        One title per panel (default: the dates).
    legend
        Add a legend of the classes (all nine, so maps are comparable).
    ncols
        Panels per row (default: up to 4).
    panel_size
        Inches per panel.
    suptitle
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> fig = label_maps(prob.lulc.label(), suptitle="Dynamic World")   # doctest: +SKIP
    >>> fig.savefig("map.png")                                         # doctest: +SKIP
    """
    _mpl()
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    lab = label if "time" in label.dims else label.expand_dims("time")
    ydim, xdim = lab.dims[-2], lab.dims[-1]
    lab = lab.transpose("time", ydim, xdim)
    classes = _classes(label)
    n = lab.sizes["time"]
    ncols = ncols or min(n, 4)
    nrows = -(-n // ncols)
    h, w = lab.sizes[ydim], lab.sizes[xdim]
    aspect = h / max(w, 1)
    fig = Figure(figsize=(panel_size * ncols + (2.2 if legend else 0), panel_size * aspect * nrows + 0.6))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    values = np.asarray(lab.values)
    for i, ax in enumerate(axes.ravel()):
        ax.set_axis_off()
        if i >= n:
            continue
        ax.imshow(label_rgb(values[i], classes), interpolation="nearest")
        share = float((values[i] == NODATA_LABEL).mean())
        title = titles[i] if titles is not None else (str(lab["time"].values[i])[:10] if "time" in label.dims else "")
        if share >= 0.005:
            title += f" (no data {100 * share:.0f} %)"
        ax.set_title(title, fontsize=9)
    if legend:
        handles = [Patch(facecolor=COLORS.get(c, "#000000"), edgecolor="0.4", label=c.replace("_", " ")) for c in classes]
        handles.append(Patch(facecolor=_NODATA_COLOR, edgecolor="0.4", label="no data"))
        fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False, title="Dynamic World class",
                   title_fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.subplots_adjust(left=0.02, right=(1 - 2.2 / fig.get_figwidth()) if legend else 0.98, top=0.88 if suptitle else 0.92,
                        bottom=0.02, wspace=0.05, hspace=0.15)
    return fig

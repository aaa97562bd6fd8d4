"""Pictures of land-cover cubes in the Dynamic World colours (Matplotlib, headless).

Figures are built with :class:`matplotlib.figure.Figure` directly (no ``pyplot`` state,
no display needed) and returned, so callers can save them or embed them in notebooks.
Matplotlib is an optional dependency: ``pip install dwcube[plot]``.

* :func:`label_maps` — label maps, one panel per date, with the class legend;
* :func:`before_after` — two dates side by side and the pixels that changed;
* :func:`probability_series` — the class probabilities of one pixel through time, with
  the label map or a true-colour image of a chosen date beside them;
* :func:`change_map` — the date of change (colour bar in dates) and the from → to classes
  of a :func:`dwcube.change.changes` Dataset;
* :func:`timelapse` — an animated GIF (Pillow) or MP4 (needs ``ffmpeg``) of label maps.

Every function takes a label (uint8, 255 = no data), a probability cube (its label is
drawn, :func:`dwcube.probability.label`) or a Dataset holding either.  Colours are the
Dynamic World palette (:data:`dwcube.classes.COLORS`); no data is light grey.

Examples
--------
>>> fig = label_maps(open_archive("lulc.zarr").label)     # doctest: +SKIP
>>> fig.savefig("map.png", dpi=150)                         # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import odc.geo.xr  # noqa: F401 - registers .odc (used here) now that `import dwcube` is lazy
import xarray as xr

from .classes import CLASSES, COLORS, NODATA_LABEL

__all__ = ["before_after", "change_map", "label_colormap", "label_maps", "label_rgb", "probability_series",
           "timelapse"]

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


def _class_legend(fig: Any, classes: Sequence[str], *, loc: str = "center right", title: str = "Dynamic World class",
                  nodata: str | None = "no data") -> Any:
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=COLORS.get(c, "#000000"), edgecolor="0.4", label=c.replace("_", " ")) for c in classes]
    if nodata:
        handles.append(Patch(facecolor=_NODATA_COLOR, edgecolor="0.4", label=nodata))
    return fig.legend(handles=handles, loc=loc, fontsize=8, frameon=False, title=title, title_fontsize=8)


def _restore_coords(out: xr.DataArray, source: xr.DataArray) -> xr.DataArray:
    """Put back the source's non-index coordinates (``spatial_ref`` with its CRS attributes)."""
    extra = {k: source.coords[k] for k in out.coords if k in source.coords and k not in out.indexes}
    return out.assign_coords(extra) if extra else out


def _as_label(data: Any, *, name: str = "data") -> xr.DataArray:
    """A label DataArray from a label, a probability cube, or a Dataset holding either."""
    if isinstance(data, xr.Dataset):
        if "label" in data.data_vars:
            data = data["label"]
        elif "probability" in data.data_vars:
            data = data["probability"]
        else:
            raise ValueError(f"{name}: this Dataset has neither a 'label' nor a 'probability' variable")
    if not isinstance(data, xr.DataArray):
        raise TypeError(f"{name}: expected a label or probability DataArray, got {type(data).__name__}")
    if "class" in data.dims:
        from .probability import label

        return _restore_coords(label(data), data)
    if not np.issubdtype(data.dtype, np.integer):
        raise ValueError(f"{name}: expected an integer label (255 = no data) or a probability cube with a 'class' "
                         f"dimension, got {data.dtype} with dims {data.dims}")
    return data


def _date_title(lab: xr.DataArray, i: int) -> str:
    if "period" in lab.coords and lab.coords["period"].dims == ("time",):
        return str(lab.coords["period"].values[i])
    return str(lab["time"].values[i])[:10]


def _timedelta(tolerance: Any, what: str) -> Any:
    """``tolerance`` as a non-negative :class:`pandas.Timedelta` (``"16D"``, ``datetime.timedelta``, …)."""
    import pandas as pd

    try:
        tol = pd.Timedelta(tolerance)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: tolerance {tolerance!r} is not a duration (e.g. '16D', pandas.Timedelta(days=16))"
                         ) from exc
    if pd.isna(tol) or tol < pd.Timedelta(0):
        raise ValueError(f"{what}: tolerance must be a duration >= 0, got {tolerance!r}")
    return tol


def _days_text(delta: Any) -> str:
    days = delta / np.timedelta64(1, "D")
    return f"{days:+.0f} days" if abs(days) >= 1 or days == 0 else f"{delta}"


def _pick_time(obj: xr.DataArray | xr.Dataset, when: Any, what: str, tolerance: Any = None) -> int:
    """Position along ``time`` of a date.

    ``tolerance=None``: the same calendar day when ``when`` has no time of day (the nearest
    acquisition that day), else the exact time.  With a ``tolerance`` (a duration): the
    acquisition nearest to ``when`` within it — measured in whole days from a date, or from
    the exact time of a timestamp; ties go to the earlier one.  Errors name the nearest
    acquisitions on either side.
    """
    import pandas as pd

    if "time" not in obj.dims:
        raise ValueError(f"{what}: the cube has no 'time' dimension")
    times = pd.DatetimeIndex(obj["time"].values)
    try:
        ts = pd.Timestamp(when)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: {when!r} is not a date") from exc
    if pd.isna(ts):
        raise ValueError(f"{what}: {when!r} is not a date")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    whole_day = ts == ts.normalize()
    delta = (times.normalize() if whole_day else times) - ts  # signed, per acquisition
    distance = np.abs(np.asarray(delta.asi8))
    if tolerance is None:
        hits = np.flatnonzero(distance == 0)
        if len(hits):
            return int(hits[np.argmin(np.abs((times[hits] - ts).asi8))])
    else:
        tol = _timedelta(tolerance, what)
        hits = np.flatnonzero(distance <= tol.value)
        if len(hits):
            return int(hits[np.argmin(distance[hits])])
    earlier = np.flatnonzero(np.asarray(delta.asi8) < 0)
    later = np.flatnonzero(np.asarray(delta.asi8) > 0)
    nearest = [f"{str(times[i])[:10]} ({_days_text(delta[i])})" for i in ([earlier[-1]] if len(earlier) else [])
               + ([later[0]] if len(later) else [])]
    near = f"; the nearest: {' and '.join(nearest)}" if nearest else ""
    if tolerance is None:
        shown = ", ".join(str(t)[:10] for t in times[:8]) + (" …" if len(times) > 8 else "")
        raise ValueError(f"{what}: time {ts} is not in the cube (its {len(times)} dates: {shown}){near}; pass "
                         "tolerance= (e.g. '16D') to take the nearest acquisition")
    raise ValueError(f"{what}: no acquisition within {tol} of {str(ts)[:10] if whole_day else ts}{near}; widen "
                     "tolerance= or ask for one of those dates")


def _asked(lab: xr.DataArray, i: int, when: Any) -> str:
    """`` (asked YYYY-MM-DD)`` when acquisition ``i`` is on another calendar day than ``when``."""
    import pandas as pd

    ts = pd.Timestamp(when)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return "" if pd.Timestamp(lab["time"].values[i]).normalize() == ts.normalize() else f" (asked {str(ts)[:10]})"


def _extent(gbox: Any) -> tuple[float, float, float, float]:
    """``imshow`` extent (left, right, bottom, top) of a grid in its CRS units."""
    aff = gbox.affine
    ny, nx = gbox.shape
    return aff.c, aff.c + aff.a * nx, aff.f + aff.e * ny, aff.f


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


def _finish_maps(fig: Any, classes: Sequence[str], *, legend: bool, suptitle: str | None,
                 top: tuple[float, float], **adjust: float) -> None:
    """The class legend in a 2.2-inch right margin, the figure title, and the panel layout
    (``top`` without and with a title) shared by the map figures."""
    if legend:
        _class_legend(fig, classes)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.subplots_adjust(left=0.02, right=(1 - 2.2 / fig.get_figwidth()) if legend else 0.98,
                        top=top[1] if suptitle else top[0], bottom=0.02, wspace=0.05, **adjust)


def label_maps(
    label: xr.DataArray | xr.Dataset,
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
        is drawn light grey.  A probability cube, or a Dataset holding ``label`` or
        ``probability``, is drawn as its label.
    titles
        One title per panel (default: the dates, or the ``period`` names of a composite).
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

    label = _as_label(label)
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
        title = titles[i] if titles is not None else (_date_title(lab, i) if "time" in label.dims else "")
        if share >= 0.005:
            title += f" (no data {100 * share:.0f} %)"
        ax.set_title(title, fontsize=9)
    _finish_maps(fig, classes, legend=legend, suptitle=suptitle, top=(0.92, 0.88), hspace=0.15)
    return fig


def before_after(
    data: xr.DataArray | xr.Dataset,
    before: Any,
    after: Any,
    *,
    tolerance: Any = "16D",
    changes: bool = True,
    legend: bool = True,
    panel_size: float = 3.6,
    suptitle: str | None = None,
) -> Any:
    """Label maps of two dates side by side, and the pixels whose label changed.

    Parameters
    ----------
    data
        ``(time, y, x)`` label, ``(time, class, y, x)`` probability cube, or a Dataset
        holding either (an archive, a composite).
    before, after
        Dates (strings, ``datetime``, ``numpy.datetime64``).  Each picks the cube's
        acquisition nearest to it within ``tolerance`` (a date without a time of day in
        whole days: any acquisition that day is 0 days away; a timestamp from its exact
        time).  The panel titles give the dates used, and the date asked for when it was
        another day.
    tolerance
        How far the acquisition may be from the date asked: a duration (``"16D"``, the
        default, about one Landsat or three Sentinel-2 revisits; ``pandas.Timedelta``,
        ``datetime.timedelta``).  ``None``: the same calendar day for a date, the exact
        time for a timestamp.
    changes
        Add a third panel: pixels whose label differs between the two dates (both valid)
        in their *after* colour, the others white; its title gives the changed share.
    legend
        Add the class legend.
    panel_size
        Inches per panel.
    suptitle
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        No acquisition within the tolerance of a date (the message names the nearest
        acquisitions before and after it), both dates picking the same acquisition, a
        tolerance that is no duration, no ``time`` dimension.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> lab = xr.DataArray(np.array([[[1, 1], [0, 0]], [[1, 6], [0, 255]]], np.uint8), dims=("time", "y", "x"),
    ...                    coords={"time": pd.to_datetime(["2023-05-01T10:30", "2023-09-01T10:30"])})
    >>> fig = before_after(lab, before="2023-05-01", after="2023-09-01")
    >>> [ax.get_title() for ax in fig.axes]
    ['before: 2023-05-01', 'after: 2023-09-01', 'changed: 33 % of 3 valid pixels']
    >>> fig = before_after(lab, before="2023-04-24", after="2023-09-10")     # the nearest within 16 days
    >>> [ax.get_title() for ax in fig.axes][:2]
    ['before: 2023-05-01 (asked 2023-04-24)', 'after: 2023-09-01 (asked 2023-09-10)']
    """
    _mpl()
    from matplotlib.figure import Figure

    lab = _as_label(data)
    i0 = _pick_time(lab, before, "before", tolerance)
    i1 = _pick_time(lab, after, "after", tolerance)
    if i0 == i1:
        raise ValueError(f"before ({before}) and after ({after}) pick the same acquisition, "
                         f"{_date_title(lab, i0)}: give dates further apart or a smaller tolerance")
    ydim, xdim = lab.dims[-2], lab.dims[-1]
    lab = lab.transpose(..., "time", ydim, xdim)
    if lab.ndim != 3:
        raise ValueError(f"expected a (time, y, x) label, got dims {lab.dims}")
    classes = _classes(lab)
    a = np.asarray(lab.isel(time=i0).values)
    b = np.asarray(lab.isel(time=i1).values)
    n_panels = 3 if changes else 2
    h, w = a.shape
    aspect = h / max(w, 1)
    fig = Figure(figsize=(panel_size * n_panels + (2.2 if legend else 0), panel_size * aspect + 0.8))
    axes = fig.subplots(1, n_panels, squeeze=True)
    k = len(classes)
    for ax, img, when, title, asked in ((axes[0], a, i0, "before", before), (axes[1], b, i1, "after", after)):
        ax.imshow(label_rgb(img, classes), interpolation="nearest")
        ax.set_title(f"{title}: {_date_title(lab, when)}{_asked(lab, when, asked)}", fontsize=9)
    if changes:
        both = (a < k) & (b < k)
        changed = both & (a != b)
        rgb = label_rgb(np.where(changed, b, NODATA_LABEL), classes, nodata_rgb=(255, 255, 255))
        rgb[~both] = [230, 230, 230]
        axes[2].imshow(rgb, interpolation="nearest")
        share = 100 * changed.sum() / max(int(both.sum()), 1)
        axes[2].set_title(f"changed: {share:.0f} % of {int(both.sum())} valid pixels", fontsize=9)
    for ax in axes[:2]:
        ax.set_axis_off()
    if changes:  # a white background needs a frame
        axes[2].set_xticks([])
        axes[2].set_yticks([])
        for spine in axes[2].spines.values():
            spine.set_edgecolor("0.6")
    _finish_maps(fig, classes, legend=legend, suptitle=suptitle, top=(0.88, 0.82))
    return fig


def _rgb_image(rgb: xr.Dataset | xr.DataArray, when: Any, *, scale: float) -> tuple[np.ndarray, Any, str]:
    """A true-colour image ``(y, x, 3)`` of one date, its grid and its date."""
    if isinstance(rgb, xr.Dataset):
        missing = [b for b in ("red", "green", "blue") if b not in rgb.data_vars]
        if missing:
            raise ValueError(f"rgb: the reflectance cube lacks the band(s) {', '.join(missing)}")
        it = _pick_time(rgb, when, "image") if "time" in rgb.dims else None
        sel = rgb if it is None else rgb.isel(time=it)
        arr = np.stack([np.asarray(sel[b].values, dtype=np.float64) for b in ("red", "green", "blue")], axis=-1)
        gbox = sel.odc.geobox
        date = str(rgb["time"].values[it])[:10] if it is not None else ""
    elif isinstance(rgb, xr.DataArray):
        band = next((d for d in rgb.dims if d in ("band", "rgb", "channel")), None)
        if band is None or rgb.sizes[band] != 3:
            raise ValueError(f"rgb: expected a 3-band DataArray with a 'band' dimension, got dims {rgb.dims}")
        it = _pick_time(rgb, when, "image") if "time" in rgb.dims else None
        sel = rgb if it is None else rgb.isel(time=it)
        arr = np.asarray(sel.transpose(..., band).values, dtype=np.float64)
        gbox = sel.odc.geobox
        date = str(rgb["time"].values[it])[:10] if it is not None else ""
    else:
        raise TypeError(f"rgb: expected a reflectance Dataset (red, green, blue) or a 3-band DataArray, got "
                         f"{type(rgb).__name__}")
    img = np.clip(arr / scale, 0, 1)
    img[~np.isfinite(arr).all(axis=-1)] = 230 / 255
    return img, gbox, date


def probability_series(
    probability: xr.DataArray | xr.Dataset,
    x: float,
    y: float,
    *,
    crs: Any = None,
    image: Any = None,
    rgb: xr.Dataset | xr.DataArray | None = None,
    kind: str = "area",
    rgb_scale: float = 0.3,
    title: str | None = None,
) -> Any:
    """The class probabilities of one pixel through time, in the class colours.

    Parameters
    ----------
    probability
        Probability cube ``(time, class, y, x)`` or a Dataset holding ``probability``.
    x, y
        The point, in the cube's CRS (or in ``crs``); the pixel that contains it is drawn.
    crs
        CRS of ``x, y`` (e.g. ``"EPSG:4326"`` with x = longitude, y = latitude).
    image
        A date: draw the label map of that date beside the series, the point marked, and
        mark the date on the series.  With ``rgb``, a true-colour image instead.
    rgb
        A reflectance cube (Dataset with ``red``, ``green``, ``blue``, 0–1) or a 3-band
        DataArray on a georeferenced grid; the image shows reflectance 0 … ``rgb_scale``.
    kind
        ``"area"``: probabilities stacked to 1; ``"lines"``: one line per class.  Valid
        dates are joined; dates without data are ticked grey along the bottom.
    rgb_scale
        Reflectance drawn white in the true-colour image.
    title
        Figure title (default: the point and pixel).

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        Point outside the grid, ``crs`` given for a cube without a CRS, unknown ``kind``,
        ``image`` date not in the cube, not a probability cube.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xarray as xr
    >>> from odc.geo.geobox import GeoBox
    >>> from odc.geo.xr import xr_coords
    >>> g = GeoBox.from_bbox((500000, 4999980, 500020, 5000000), crs="EPSG:32633", resolution=10)
    >>> p = np.zeros((3, 2, 2, 2), np.float32); p[:, 0] = [[[.9]], [[.6]], [[.2]]]; p[:, 1] = 1 - p[:, 0]
    >>> prob = xr.DataArray(p, dims=("time", "class", "y", "x"), coords={
    ...     "time": pd.to_datetime(["2023-05-01", "2023-06-01", "2023-07-01"]), "class": ["water", "trees"],
    ...     **xr_coords(g)})
    >>> fig = probability_series(prob, 500005.0, 4999995.0, image="2023-07-01")
    >>> len(fig.axes), fig.axes[1].get_title()
    (2, 'label 2023-07-01')
    """
    _mpl()
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if kind not in ("area", "lines"):
        raise ValueError(f"unknown kind {kind!r}: use 'area' or 'lines'")
    if isinstance(probability, xr.Dataset):
        if "probability" not in probability.data_vars:
            raise ValueError("this Dataset has no 'probability' variable")
        probability = probability["probability"]
    if not isinstance(probability, xr.DataArray) or "class" not in probability.dims or "time" not in probability.dims:
        raise ValueError("probability_series needs a probability cube with 'time' and 'class' dimensions, got "
                         f"{getattr(probability, 'dims', type(probability).__name__)}")
    dims = probability.odc.spatial_dims
    if dims is None:
        raise ValueError(f"no spatial dimensions (y/x) among {probability.dims}")
    ydim, xdim = dims
    gbox = probability.odc.geobox
    px, py = float(x), float(y)
    if crs is not None:
        if gbox.crs is None:
            raise ValueError("the cube has no CRS (no spatial_ref coordinate): give x, y in its grid units "
                             "and leave crs=None")
        from odc.geo.geom import point

        pt = point(px, py, crs).to_crs(gbox.crs)
        px, py = pt.coords[0]
    col, row = ~gbox.affine @ (px, py)
    ny, nx = gbox.shape
    if not (0 <= col < nx and 0 <= row < ny):
        left, right, bottom, top = _extent(gbox)
        where = f" in {crs}" if crs is not None else ""
        grid_crs = "" if gbox.crs is None else (f" in EPSG:{gbox.crs.epsg}" if gbox.crs.epsg else " in the cube's CRS")
        raise ValueError(f"point ({x}, {y}){where} is outside the grid (x {min(left, right):.10g} … "
                         f"{max(left, right):.10g}, y {min(bottom, top):.10g} … {max(bottom, top):.10g}{grid_crs})")
    ci, ri = int(np.floor(col)), int(np.floor(row))
    series = probability.isel({ydim: ri, xdim: ci}).transpose("time", "class")
    values = np.asarray(series.values, dtype=np.float64)
    classes = [str(c) for c in series["class"].values]
    dates = np.asarray(series["time"].values)
    valid = np.isfinite(values).all(axis=1)

    side = image is not None
    fig = Figure(figsize=(10.5 if side else 7.5, 3.8))
    if side:
        gs = fig.add_gridspec(1, 2, width_ratios=[2.2, 1])
        ax = fig.add_subplot(gs[0, 0])
        ax_img = fig.add_subplot(gs[0, 1])
    else:
        ax = fig.add_subplot(1, 1, 1)
    t = mdates.date2num(dates.astype("datetime64[ms]").astype(object)) if len(dates) else np.array([])
    tv, pv = t[valid], values[valid]  # the valid dates are joined; no-data dates are ticked below
    if kind == "area":
        base = np.zeros(len(tv))
        for k, name in enumerate(classes):
            style = {"color": COLORS.get(name, "#000000"), "label": name.replace("_", " ")}
            if len(tv) == 1:  # a single valid date: a stacked bar of one day
                ax.bar(tv, pv[:, k], bottom=base, width=max(1.0, 0.02 * float(np.ptp(t))), linewidth=0, **style)
            else:
                ax.fill_between(tv, base, base + pv[:, k], linewidth=0, **style)
            base = base + pv[:, k]
        ax.set_ylim(0, 1)
    else:
        for k, name in enumerate(classes):
            ax.plot(tv, pv[:, k], color=COLORS.get(name, "#000000"), linewidth=2.5, marker="o", markersize=3,
                    label=name.replace("_", " "))
        ax.set_ylim(-0.02, 1.02)
    if (~valid).any():
        ax.plot(t[~valid], np.full((~valid).sum(), 0.0), linestyle="none", marker="|", markersize=12,
                color="0.55", clip_on=False)
    ax.xaxis_date()
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    ax.set_ylabel("class probability")
    ax.set_xlim(t.min() - 1, t.max() + 1) if len(t) else None
    handles = [Patch(facecolor=COLORS.get(c, "#000000"), label=c.replace("_", " ")) for c in classes]
    if (~valid).any():
        handles.append(Line2D([], [], linestyle="none", marker="|", markersize=10, color="0.55", label="no data"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False)
    cx, cy = gbox.affine @ (ci + 0.5, ri + 0.5)
    ax.set_title(title or f"pixel (row {ri}, col {ci}) at x={cx:.10g}, y={cy:.10g}", fontsize=9)

    if side:
        if rgb is not None:
            img, ibox, idate = _rgb_image(rgb, image, scale=rgb_scale)
            ax_img.imshow(img, interpolation="nearest", extent=_extent(ibox))
            ax_img.set_title(f"true colour {idate}", fontsize=9)
            mark = mdates.date2num(np.datetime64(idate, "ms").astype(object)) if idate else None
            if ibox.crs is not None and gbox.crs is not None and ibox.crs != gbox.crs:
                from odc.geo.geom import point

                cx, cy = point(cx, cy, gbox.crs).to_crs(ibox.crs).coords[0]
        else:
            lab = _as_label(probability)
            it = _pick_time(lab, image, "image")
            plane = lab.isel(time=it).transpose(ydim, xdim)
            ax_img.imshow(label_rgb(np.asarray(plane.values), classes), interpolation="nearest",
                          extent=_extent(gbox))
            ax_img.set_title(f"label {_date_title(lab, it)}", fontsize=9)
            mark = t[it]
        ax_img.plot([cx], [cy], marker="+", markersize=14, markeredgewidth=2.5, color="white")
        ax_img.plot([cx], [cy], marker="+", markersize=12, markeredgewidth=1.2, color="black")
        ax_img.set_xticks([])
        ax_img.set_yticks([])
        if mark is not None:
            ax.axvline(mark, color="black", linewidth=1, linestyle="--")
    fig.subplots_adjust(left=0.07, right=0.97, bottom=0.14, top=0.9, wspace=0.55 if side else 0.2)
    if not side:
        fig.subplots_adjust(right=0.8)
    return fig


def change_map(
    changes: xr.Dataset,
    *,
    from_to: bool | None = None,
    cmap: str = "viridis",
    panel_size: float = 3.6,
    top: int = 5,
    suptitle: str | None = None,
) -> Any:
    """The date of change per pixel, coloured by date with a colour bar in dates.

    Parameters
    ----------
    changes
        A :func:`dwcube.change.changes` Dataset over ``(y, x)``: ``change_date``
        (datetime64, NaT = no change) and, for the from → to panels, ``from_class`` and
        ``to_class`` (uint8, 255 = none, CF ``flag_meanings``).
    from_to
        Add the *from* and *to* class panels in the Dynamic World colours, with the most
        frequent transitions listed beneath; ``None`` (default): when the Dataset has them.
    cmap
        Colour map of the dates (early → late).
    panel_size
        Inches per panel.
    top
        How many transitions to list.
    suptitle
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        Pixels without a change are light grey.

    Raises
    ------
    ValueError
        No ``change_date`` variable, not datetime64, not 2-D, ``from_to=True`` without
        ``from_class``/``to_class``.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> d = np.array([["2023-04-02", "NaT"], ["2023-08-20", "2023-06-11"]], "datetime64[ns]")
    >>> ch = xr.Dataset({"change_date": (("y", "x"), d),
    ...                  "from_class": (("y", "x"), np.array([[1, 255], [1, 2]], np.uint8)),
    ...                  "to_class": (("y", "x"), np.array([[6, 255], [4, 6]], np.uint8))})
    >>> fig = change_map(ch)
    >>> [ax.get_title() for ax in fig.axes][:3]
    ['date of change (3 of 4 pixels)', 'from', 'to']
    """
    _mpl()
    import matplotlib.dates as mdates
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    if not isinstance(changes, xr.Dataset) or "change_date" not in changes.data_vars:
        raise ValueError("change_map needs the Dataset of dwcube.change.changes() with a 'change_date' variable")
    date = changes["change_date"]
    if not np.issubdtype(date.dtype, np.datetime64):
        raise ValueError(f"'change_date' must be datetime64, got {date.dtype}")
    if date.ndim != 2:
        raise ValueError(f"'change_date' must be a (y, x) map, got dims {date.dims}")
    have = all(v in changes.data_vars for v in ("from_class", "to_class"))
    if from_to and not have:
        missing = [v for v in ("from_class", "to_class") if v not in changes.data_vars]
        raise ValueError(f"from_to=True needs the variable(s) {', '.join(missing)}")
    from_to = have if from_to is None else from_to

    values = np.asarray(date.values).astype("datetime64[ns]")
    found = ~np.isnat(values)
    num = np.full(values.shape, np.nan)
    if found.any():
        num[found] = mdates.date2num(values[found].astype("datetime64[ms]").astype(object))
    n_panels = 3 if from_to else 1
    h, w = values.shape
    aspect = h / max(w, 1)
    fig = Figure(figsize=(panel_size * n_panels + (2.6 if from_to else 1.4), panel_size * aspect + (1.6 if from_to else 0.8)))
    axes = np.atleast_1d(fig.subplots(1, n_panels, squeeze=True))
    cm = colormaps[cmap].with_extremes(bad=_NODATA_COLOR)
    if found.any():
        lo, hi = float(np.nanmin(num)), float(np.nanmax(num))
        if hi - lo < 1:
            lo, hi = lo - 1, hi + 1
    else:
        lo, hi = 0.0, 1.0
    im = axes[0].imshow(np.ma.masked_invalid(num), cmap=cm, vmin=lo, vmax=hi, interpolation="nearest")
    axes[0].set_title(f"date of change ({int(found.sum())} of {found.size} pixels)" if found.any()
                      else "no change", fontsize=9)
    if found.any():
        cbar = fig.colorbar(im, ax=axes[0], fraction=0.046, pad=0.03)
        locator = mdates.AutoDateLocator(minticks=3, maxticks=7)
        cbar.ax.yaxis.set_major_locator(locator)
        cbar.ax.yaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        cbar.ax.tick_params(labelsize=7)
    if from_to:
        fr = np.asarray(changes["from_class"].values)
        to = np.asarray(changes["to_class"].values)
        classes = _classes(changes["from_class"])
        k = len(classes)
        for ax, arr, name in ((axes[1], fr, "from"), (axes[2], to, "to")):
            ax.imshow(label_rgb(np.where(found, arr, NODATA_LABEL), classes), interpolation="nearest")
            ax.set_title(name, fontsize=9)
        ok = found & (fr < k) & (to < k)
        pairs, counts = np.unique(fr[ok].astype(np.int64) * 256 + to[ok], return_counts=True)
        order = np.argsort(-counts, kind="stable")[:top]
        lines = [f"{classes[pairs[i] // 256].replace('_', ' ')} → {classes[pairs[i] % 256].replace('_', ' ')}: "
                 f"{counts[i]} px" for i in order]
        if lines:
            fig.text(0.02, 0.02, "most frequent changes:  " + ";  ".join(lines), fontsize=7, va="bottom")
        _class_legend(fig, classes, nodata="no change", title="class")
    for ax in axes:
        ax.set_axis_off()
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    right = (1 - 2.2 / fig.get_figwidth()) if from_to else 0.95
    fig.subplots_adjust(left=0.02, right=right, top=0.82 if suptitle else 0.88, bottom=0.12 if from_to else 0.04,
                        wspace=0.25)
    return fig


def _gif_palette(classes: Sequence[str] = CLASSES) -> np.ndarray:
    """A fixed palette ``(256, 3)``: the class colours, no-data grey, then a grey ramp (text,
    anti-aliased edges), so that class colours come out exact in every frame."""
    colours = [[int(COLORS.get(c, "#000000")[i:i + 2], 16) for i in (1, 3, 5)] for c in classes]
    colours.append([int(_NODATA_COLOR[i:i + 2], 16) for i in (1, 3, 5)])
    ramp = [[v, v, v] for v in np.linspace(0, 255, 256 - len(colours)).round().astype(int)]
    return np.array(colours + ramp, dtype=np.int64)


def _to_palette(rgb: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Palette indices (uint8) of an RGB image: exact colours exactly, others to the nearest entry."""
    packed = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    uniq, inverse = np.unique(packed.ravel(), return_inverse=True)
    cols = np.stack([(uniq >> 16) & 255, (uniq >> 8) & 255, uniq & 255], axis=1)
    nearest = ((cols[:, None, :] - palette[None, :, :]) ** 2).sum(axis=-1).argmin(axis=1)
    return nearest[inverse].reshape(rgb.shape[:2]).astype(np.uint8)


def timelapse(
    data: xr.DataArray | xr.Dataset,
    path: str | os.PathLike[str],
    *,
    fps: float = 2.0,
    dpi: int = 100,
    panel_size: float = 4.0,
    legend: bool = True,
    title: str | None = None,
    loop: int = 0,
) -> Path:
    """An animated timelapse of label maps: one frame per date, titled with the date.

    Parameters
    ----------
    data
        ``(time, y, x)`` label, probability cube, or a Dataset holding either (a composite's
        frames are titled with its ``period`` names).  Dask-backed data is computed one
        date at a time.
    path
        ``*.gif`` (written with Pillow, a fixed palette holding the nine class colours
        exactly) or ``*.mp4`` (needs ``ffmpeg`` on the PATH; H.264 via Matplotlib's writer).
    fps
        Frames per second.
    dpi
        Pixels per inch of the frames.
    panel_size
        Inches of the map.
    legend
        Draw the class legend beside the map.
    title
        Text before each frame's date.
    loop
        GIF: how many times to play (0 = forever).

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ValueError
        Another file type, ``fps`` ≤ 0, no ``time`` dimension, or ``.mp4`` without ffmpeg.

    Examples
    --------
    >>> timelapse(open_archive("lulc.zarr"), "lulc.gif", fps=3)   # doctest: +SKIP
    PosixPath('lulc.gif')
    """
    _mpl()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"timelapse writes .gif or .mp4 files, got {path.name!r}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if suffix == ".mp4" and shutil.which("ffmpeg") is None:
        raise ValueError("writing .mp4 needs ffmpeg on the PATH (not found); write a .gif instead")
    lab = _as_label(data)
    if "time" not in lab.dims:
        raise ValueError(f"timelapse needs a 'time' dimension, got dims {lab.dims}")
    ydim, xdim = lab.dims[-2], lab.dims[-1]
    lab = lab.transpose("time", ydim, xdim)
    classes = _classes(lab)
    h, w = lab.sizes[ydim], lab.sizes[xdim]
    aspect = h / max(w, 1)
    fig = Figure(figsize=(panel_size + (2.2 if legend else 0.2), panel_size * aspect + 0.6), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_axes((0.02 / (1 + (2.2 if legend else 0.2) / panel_size), 0.02, panel_size / fig.get_figwidth(),
                       panel_size * aspect / fig.get_figheight()))
    ax.set_axis_off()
    first = np.asarray(lab.isel(time=0).values)
    im = ax.imshow(label_rgb(first, classes), interpolation="nearest")
    text = ax.set_title("", fontsize=10)
    if legend:
        _class_legend(fig, classes)

    def frames() -> Any:
        for i in range(lab.sizes["time"]):
            values = first if i == 0 else np.asarray(lab.isel(time=i).values)
            im.set_data(label_rgb(values, classes))
            share = float((values >= len(classes)).mean())
            label_text = _date_title(lab, i) + (f" (no data {100 * share:.0f} %)" if share >= 0.005 else "")
            text.set_text(f"{title}  {label_text}" if title else label_text)
            yield i

    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        from PIL import Image

        palette = _gif_palette(classes)
        flat = [int(v) for v in palette.ravel()]
        images = []
        for _ in frames():
            canvas.draw()
            frame = Image.fromarray(_to_palette(np.asarray(canvas.buffer_rgba())[..., :3], palette), mode="P")
            frame.putpalette(flat)
            images.append(frame)
        images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=loop,
                       optimize=False, disposal=1)
    else:
        from matplotlib.animation import FFMpegWriter

        writer = FFMpegWriter(fps=fps, codec="h264", extra_args=["-pix_fmt", "yuv420p"])
        with writer.saving(fig, str(path), dpi):
            for _ in frames():
                writer.grab_frame()
    return path

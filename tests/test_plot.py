"""Pictures: every plot renders headlessly to PNG/GIF in the Dynamic World colours; bad input is named."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords
from PIL import Image

from dwcube import plot
from dwcube.classes import CLASSES, COLORS
from dwcube.composite import composite
from dwcube.plot import before_after, change_map, label_maps, probability_series, timelapse
from dwcube.probability import label

DATES = ["2023-03-05T10:20:31", "2023-05-14T10:20:29", "2023-08-02T10:20:35", "2023-10-21T10:20:30"]


def _rgb(name: str) -> tuple[int, int, int]:
    return tuple(int(COLORS[name][i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def _colours(pixels: np.ndarray) -> set[tuple[int, int, int]]:
    return {tuple(int(v) for v in p) for p in pixels.reshape(-1, pixels.shape[-1])[:, :3]}


def _png_colours(path: Path) -> set[tuple[int, int, int]]:
    img = mpimg.imread(path)
    return _colours((img[..., :3] * 255).round().astype(int))


def _has_near(colours: set[tuple[int, int, int]], rgb: np.ndarray | tuple[float, ...], tol: float = 1.0) -> bool:
    """A colour within ``tol`` (0–255 units) of ``rgb`` is in the set (for colours Matplotlib computes)."""
    return bool((np.abs(np.array(sorted(colours)) - np.asarray(rgb, float)).max(axis=1) <= tol).any())


def _save(fig: object, path: Path) -> set[tuple[int, int, int]]:
    fig.savefig(path, dpi=80)  # type: ignore[attr-defined]
    assert path.stat().st_size > 1000
    return _png_colours(path)


def _map_cells(path: Path, ax: object, shape: tuple[int, int]) -> np.ndarray:
    """The colour drawn at the centre of every data cell of a map panel ``(ny, nx, 3)``, read back from the
    saved PNG inside the panel's axes (the legend, which always shows all nine colours, is outside)."""
    img = (mpimg.imread(path)[..., :3] * 255).round().astype(int)
    h, w = img.shape[:2]
    pos = ax.get_position()  # type: ignore[attr-defined]  # the drawn box (after the equal-aspect fit)
    ny, nx = shape
    rows = np.floor((1 - pos.y1 + (np.arange(ny) + 0.5) / ny * pos.height) * h).astype(int)
    cols = np.floor((pos.x0 + (np.arange(nx) + 0.5) / nx * pos.width) * w).astype(int)
    return img[rows[:, None], cols[None, :]]


def _assert_map(path: Path, ax: object, values: np.ndarray, what: str, ignore: np.ndarray | None = None) -> None:
    """Every cell of the panel (but ``ignore``) is drawn in the colour of its label (255: no-data grey, 254: white)."""
    want = plot.label_rgb(values)
    want[np.asarray(values) == 254] = 255
    got = _map_cells(path, ax, values.shape)
    wrong = (got != want).any(axis=-1) & (True if ignore is None else ~ignore)
    assert not wrong.any(), f"{what}: {wrong.sum()} of {wrong.size} cells in the wrong colour, e.g. {np.argwhere(wrong)[:3]}"


@pytest.fixture(scope="module")
def prob() -> xr.DataArray:
    """24 × 32 pixels at 10 m: water on the left, trees on the right; built spreads from date 3."""
    gbox = GeoBox.from_bbox((465000, 5080000 - 240, 465000 + 320, 5080000), crs="EPSG:32633", resolution=10)
    p = np.full((4, 9, 24, 32), 0.01, np.float32)
    p[:, 0, :, :12] = 0.92   # water
    p[:, 1, :, 12:] = 0.92   # trees
    p[2:, 1, 8:16, 20:28] = 0.01
    p[2:, 6, 8:16, 20:28] = 0.92  # built from date 2 on
    p[1, :, :6, :6] = np.nan  # a no-data corner on date 1
    return xr.DataArray(p, dims=("time", "class", "y", "x"), name="probability",
                        coords={"time": pd.to_datetime(DATES), "class": list(CLASSES), **xr_coords(gbox)},
                        attrs={"model": "tiny"})


def test_label_maps_takes_probabilities_and_composites(prob: xr.DataArray, tmp_path: Path) -> None:
    fig = label_maps(prob)
    assert [ax.get_title() for ax in fig.axes[:4]] == ["2023-03-05", "2023-05-14 (no data 5 %)", "2023-08-02",
                                                       "2023-10-21"]
    _save(fig, tmp_path / "maps.png")
    lab = label(prob).values
    for t in range(4):  # each panel shows its own date, cell by cell (built only from date 2)
        _assert_map(tmp_path / "maps.png", fig.axes[t], lab[t], f"panel {t}")
    comp = composite(prob, "season")
    fig = label_maps(comp)
    assert [ax.get_title() for ax in fig.axes[:3]] == ["2023-MAM", "2023-JJA", "2023-SON"]
    _save(fig, tmp_path / "seasons.png")
    for t in range(3):
        _assert_map(tmp_path / "seasons.png", fig.axes[t], comp.label.values[t], f"season {t}")


def test_before_after_shows_both_dates_and_the_change(prob: xr.DataArray, tmp_path: Path) -> None:
    fig = before_after(prob, before="2023-03-05", after=np.datetime64("2023-08-02"))
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["before: 2023-03-05", "after: 2023-08-02", "changed: 8 % of 768 valid pixels"]  # 64 of 768
    _save(fig, tmp_path / "ba.png")
    lab = label(prob).values
    _assert_map(tmp_path / "ba.png", fig.axes[0], lab[0], "before")
    _assert_map(tmp_path / "ba.png", fig.axes[1], lab[2], "after")
    changed = lab[0] != lab[2]  # the built patch, in its after colour; the rest white
    _assert_map(tmp_path / "ba.png", fig.axes[2], np.where(changed, lab[2], 254), "changed")
    # without the change panel, and with the exact acquisition time
    fig = before_after(label(prob), before=pd.Timestamp(DATES[0]), after="2023-10-21", changes=False, legend=False,
                       tolerance=None)
    assert len(fig.axes) == 2


def test_before_after_takes_the_nearest_acquisition_within_the_tolerance(prob: xr.DataArray) -> None:
    """Acquisitions rarely fall on the dates a user has in mind: the nearest one within the tolerance
    (16 days by default) is used, and the title says which and what was asked."""
    fig = before_after(prob, before="2023-03-01", after="2023-08-10")
    assert [ax.get_title() for ax in fig.axes][:2] == ["before: 2023-03-05 (asked 2023-03-01)",
                                                       "after: 2023-08-02 (asked 2023-08-10)"]
    # a timestamp is measured from its time: 2023-05-14T10:20:29 is nearer to 05-14T20:00 than anything else
    fig = before_after(prob, before=pd.Timestamp("2023-05-14T20:00"), after="2023-10-21", tolerance=pd.Timedelta("10h"))
    assert fig.axes[0].get_title() == "before: 2023-05-14"
    with pytest.raises(ValueError, match=r"before: no acquisition within 2 days 00:00:00 of 2023-03-01; the nearest: "
                                         r"2023-03-05 \(\+4 days\); widen tolerance="):
        before_after(prob, before="2023-03-01", after="2023-08-02", tolerance="2D")
    with pytest.raises(ValueError, match=r"after: no acquisition within .* of 2023-09-15; the nearest: 2023-08-02 "
                                         r"\(-44 days\) and 2023-10-21 \(\+36 days\)"):
        before_after(prob, before="2023-03-05", after="2023-09-15")
    with pytest.raises(ValueError, match=r"pick the same acquisition, 2023-05-14"):
        before_after(prob, before="2023-05-10", after="2023-05-20")
    with pytest.raises(ValueError, match="tolerance 'soon' is not a duration"):
        before_after(prob, before="2023-03-05", after="2023-08-02", tolerance="soon")
    with pytest.raises(ValueError, match="tolerance must be a duration >= 0"):
        before_after(prob, before="2023-03-05", after="2023-08-02", tolerance="-1D")


def test_before_after_names_missing_dates(prob: xr.DataArray) -> None:
    with pytest.raises(ValueError, match=r"before: time 2023-03-06 00:00:00 is not in the cube \(its 4 dates: "
                                         r"2023-03-05, 2023-05-14.*the nearest: 2023-03-05 \(-1 days\) and 2023-05-14 "
                                         r"\(\+69 days\); pass tolerance="):
        before_after(prob, before="2023-03-06", after="2023-08-02", tolerance=None)
    with pytest.raises(ValueError, match="after: time 2023-08-02 10:00:00 is not in the cube"):
        before_after(prob, before="2023-03-05", after="2023-08-02T10:00", tolerance=None)  # a timestamp: exactly
    with pytest.raises(ValueError, match="no 'time' dimension"):
        before_after(prob.isel(time=0), before="2023-03-05", after="2023-08-02")
    with pytest.raises(ValueError, match="is not a date"):
        before_after(prob, before="spring", after="2023-08-02")
    with pytest.raises(ValueError, match="expected an integer label"):
        before_after(prob.isel({"class": 0}), before="2023-03-05", after="2023-08-02")


def test_probability_series_with_the_label_map_beside(prob: xr.DataArray, tmp_path: Path) -> None:
    # the centre of pixel (row 10, col 22): inside the new built patch
    fig = probability_series(prob, 465225.0, 5079895.0, image="2023-08-02")
    assert fig.axes[0].get_title() == "pixel (row 10, col 22) at x=465225, y=5079895"
    assert fig.axes[1].get_title() == "label 2023-08-02"
    colours = _save(fig, tmp_path / "series.png")
    assert {_rgb("trees"), _rgb("built"), _rgb("water")} <= colours  # stacked areas and the map
    marker = np.zeros((24, 32), bool)
    marker[8:13, 20:25] = True  # the cross marking the pixel
    _assert_map(tmp_path / "series.png", fig.axes[1], label(prob).values[2], "label beside", ignore=marker)
    # the same point given in longitude/latitude
    import pyproj

    lon, lat = pyproj.Transformer.from_crs(32633, 4326, always_xy=True).transform(465225.0, 5079895.0)
    fig = probability_series(prob, lon, lat, crs="EPSG:4326", kind="lines")
    assert fig.axes[0].get_title().startswith("pixel (row 10, col 22)") and len(fig.axes) == 1
    assert _rgb("trees") in _save(fig, tmp_path / "lines.png")
    # a no-data date is ticked, not drawn as a probability
    fig = probability_series(xr.Dataset({"probability": prob}), 465005.0, 5079995.0)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[-1] == "no data" and labels[:2] == ["water", "trees"]
    # a single valid date is drawn as a stacked bar
    one = prob.where(prob.time == prob.time[0])
    fig = probability_series(one, 465005.0, 5079995.0)
    assert len(fig.axes[0].patches) == 9 and _rgb("water") in _save(fig, tmp_path / "one.png")
    with pytest.raises(TypeError, match="expected a label or probability DataArray"):
        label_maps(prob.values)  # type: ignore[arg-type]


def test_probability_series_with_a_true_colour_image(prob: xr.DataArray, tmp_path: Path) -> None:
    refl = xr.Dataset({b: (("time", "y", "x"), np.full((4, 24, 32), v, np.float32))
                       for b, v in (("red", 0.03), ("green", 0.06), ("blue", 0.15))},
                      coords={k: prob.coords[k] for k in ("time", "y", "x", "spatial_ref")})
    fig = probability_series(prob, 465005.0, 5079995.0, image="2023-05-14", rgb=refl)
    assert fig.axes[1].get_title() == "true colour 2023-05-14"
    assert _has_near(_save(fig, tmp_path / "rgb.png"), np.array([0.03, 0.06, 0.15]) / 0.3 * 255)  # refl / rgb_scale
    with pytest.raises(ValueError, match="lacks the band"):
        probability_series(prob, 465005.0, 5079995.0, image="2023-05-14", rgb=refl.drop_vars("blue"))
    with pytest.raises(TypeError, match="rgb: expected a reflectance Dataset"):
        probability_series(prob, 465005.0, 5079995.0, image="2023-05-14", rgb=refl.red.values)  # type: ignore[arg-type]
    # a 3-band DataArray works as well
    bands = refl.to_dataarray("band").transpose("time", "band", "y", "x")
    fig = probability_series(prob, 465005.0, 5079995.0, image="2023-05-14", rgb=bands)
    assert _has_near(_save(fig, tmp_path / "rgb2.png"), np.array([0.03, 0.06, 0.15]) / 0.3 * 255)


def test_probability_series_names_bad_points(prob: xr.DataArray) -> None:
    with pytest.raises(ValueError, match=r"point \(465400.0, 5079995.0\) is outside the grid "
                                         r"\(x 465000 … 465320, y 5079760 … 5080000 in EPSG:32633\)"):
        probability_series(prob, 465400.0, 5079995.0)
    with pytest.raises(ValueError, match=r"in EPSG:4326 is outside the grid"):
        probability_series(prob, 16.0, 46.0, crs="EPSG:4326")
    no_crs = xr.DataArray(prob.values, dims=prob.dims, coords={k: prob[k].values for k in prob.dims})
    with pytest.raises(ValueError, match="the cube has no CRS"):
        probability_series(no_crs, 16.0, 46.0, crs="EPSG:4326")
    with pytest.raises(ValueError, match="unknown kind 'bars'"):
        probability_series(prob, 465005.0, 5079995.0, kind="bars")
    with pytest.raises(ValueError, match="needs a probability cube"):
        probability_series(prob.isel({"class": 0}), 465005.0, 5079995.0)
    with pytest.raises(ValueError, match="image: time 2024-01-01"):
        probability_series(prob, 465005.0, 5079995.0, image="2024-01-01")


def _changes() -> xr.Dataset:
    """A hand-made dwcube.change.changes() result: trees → built in a block, water → grass in a strip."""
    gbox = GeoBox.from_bbox((465000, 5080000 - 200, 465000 + 300, 5080000), crs="EPSG:32633", resolution=10)
    date = np.full((20, 30), np.datetime64("NaT"), "datetime64[ns]")
    date[2:10, 3:15] = np.datetime64("2022-06-15", "ns")
    date[12:18, 5:25] = np.datetime64("2023-09-03", "ns")
    fr = np.full((20, 30), 255, np.uint8)
    to = fr.copy()
    fr[2:10, 3:15], to[2:10, 3:15] = 1, 6
    fr[12:18, 5:25], to[12:18, 5:25] = 0, 2
    flags = {"flag_values": list(range(9)), "flag_meanings": " ".join(CLASSES), "nodata": 255}
    dims = ("y", "x")
    return xr.Dataset({
        "change_date": (dims, date), "last_before": (dims, date - np.timedelta64(10, "D")), "first_after": (dims, date),
        "from_class": (dims, fr, flags), "to_class": (dims, to, flags),
        "confidence": (dims, np.where(np.isnat(date), np.nan, 0.8).astype(np.float32)),
    }, coords=xr_coords(gbox))


def test_change_map_colours_dates_and_classes(tmp_path: Path) -> None:
    ch = _changes()
    fig = change_map(ch)
    assert [ax.get_title() for ax in fig.axes[:3]] == ["date of change (216 of 600 pixels)", "from", "to"]
    colours = _save(fig, tmp_path / "change.png")
    ticks = [t.get_text() for t in fig.axes[3].get_yticklabels()]  # the colour bar speaks in dates
    assert any("2023" in t or "2022" in t for t in ticks) and any(t[:3] in ("Jan", "Apr", "Jul", "Oct") for t in ticks)
    found = ~np.isnat(ch.change_date.values)
    for ax, var in ((fig.axes[1], "from_class"), (fig.axes[2], "to_class")):  # the classes on the maps themselves
        _assert_map(tmp_path / "change.png", ax, np.where(found, ch[var].values, 255), var)
    import matplotlib

    viridis = matplotlib.colormaps["viridis"]
    early = ch.change_date.values == np.datetime64("2022-06-15")  # the earliest change, and the latest
    want = np.full((*found.shape, 3), 230.0)
    want[early] = 255 * np.array(viridis(0.0)[:3])
    want[found & ~early] = 255 * np.array(viridis(1.0)[:3])
    got = _map_cells(tmp_path / "change.png", fig.axes[0], found.shape)
    assert np.abs(got - want).max() <= 1  # every cell in the colour of its date, no change light grey
    texts = [t.get_text() for t in fig.texts]
    assert any("water → grass: 120 px" in t and "trees → built: 96 px" in t for t in texts)
    # only the dates
    fig = change_map(ch[["change_date"]])
    assert len(fig.axes) == 2 and _rgb("trees") not in _save(fig, tmp_path / "dates.png")
    # no change at all
    fig = change_map(ch.assign(change_date=ch.change_date.where(False)))
    assert fig.axes[0].get_title() == "no change"
    _save(fig, tmp_path / "none.png")


def test_change_map_names_bad_input() -> None:
    ch = _changes()
    with pytest.raises(ValueError, match="'change_date' variable"):
        change_map(ch.drop_vars("change_date"))
    with pytest.raises(ValueError, match="'change_date' variable"):
        change_map(ch.change_date)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be datetime64"):
        change_map(ch.assign(change_date=ch.confidence))
    with pytest.raises(ValueError, match="from_to=True needs the variable.s. to_class"):
        change_map(ch.drop_vars("to_class"), from_to=True)
    with pytest.raises(ValueError, match=r"must be a \(y, x\) map"):
        change_map(ch.expand_dims(time=2))


def test_timelapse_gif_has_a_frame_per_date_in_the_class_colours(prob: xr.DataArray, tmp_path: Path) -> None:
    out = timelapse(prob.chunk({"time": 1}), tmp_path / "anim" / "lulc.gif", fps=4, title="synthetic")
    assert out == tmp_path / "anim" / "lulc.gif"
    with Image.open(out) as gif:
        assert gif.n_frames == 4 and gif.info["duration"] == 250 and gif.info.get("loop") == 0
        frames = []
        for i in range(gif.n_frames):
            gif.seek(i)
            frames.append(_colours(np.asarray(gif.convert("RGB"))))
    assert all({_rgb("water"), _rgb("trees"), _rgb("built")} <= f for f in frames)  # built: at least the legend
    # built pixels on the map only from the third date on: count them frame by frame
    with Image.open(out) as gif:
        counts = []
        for i in range(4):
            gif.seek(i)
            rgb = np.asarray(gif.convert("RGB")).reshape(-1, 3)
            counts.append(int((rgb == _rgb("built")).all(axis=1).sum()))
    assert counts[0] == counts[1] < counts[2] == counts[3]


def test_timelapse_rejects_other_files_and_mp4_without_ffmpeg(prob: xr.DataArray, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"writes .gif or .mp4 files, got 'a.avi'"):
        timelapse(prob, tmp_path / "a.avi")
    with pytest.raises(ValueError, match="fps must be > 0"):
        timelapse(prob, tmp_path / "a.gif", fps=0)
    with pytest.raises(ValueError, match="needs a 'time' dimension"):
        timelapse(prob.isel(time=0), tmp_path / "a.gif")
    monkeypatch.setattr(plot.shutil, "which", lambda name: None)
    with pytest.raises(ValueError, match="needs ffmpeg on the PATH"):
        timelapse(prob, tmp_path / "a.mp4")


@pytest.mark.skipif(plot.shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_timelapse_mp4_when_ffmpeg_is_there(prob: xr.DataArray, tmp_path: Path) -> None:
    import re
    import subprocess

    out = timelapse(prob, tmp_path / "lulc.mp4", fps=2)
    assert out.stat().st_size > 1000 and out.read_bytes()[4:8] == b"ftyp"
    decoded = subprocess.run(["ffmpeg", "-i", str(out), "-f", "null", "-"], capture_output=True, text=True, check=True)
    assert re.findall(r"frame=\s*(\d+)", decoded.stderr)[-1] == "4"

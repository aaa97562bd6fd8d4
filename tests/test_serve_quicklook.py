"""``write_archive(..., quicklook=cube)`` and ``dwcube classify --quicklook``: the archive keeps the RGB
quicklook of its dates in the same job, appends and resumes it with the archive's dates, and the
server (a real uvicorn process) shows it as the ``rgb`` layer."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="dwcube serve needs the serve extra (pip install dwcube[serve])")
pytest.importorskip("rio_tiler", reason="dwcube serve needs the serve extra (pip install dwcube[serve])")
httpx = pytest.importorskip("httpx", reason="the serve tests need httpx (the test extra)")

from dwcube import testing as T  # noqa: E402
from dwcube.archive import ArchiveError, open_archive, write_archive  # noqa: E402
from dwcube.inference import classify  # noqa: E402
from dwcube.serve.quicklook import open_quicklook, quicklook_rgb, write_quicklook  # noqa: E402
from tests.test_serve import _SERVER, _png, _start, _stop, _tile_over  # noqa: E402


def _dates(array: object) -> list[str]:
    return [str(t)[:19] for t in np.asarray(array["time"].values, dtype="datetime64[s]")]  # type: ignore[index]


def test_write_archive_keeps_the_quicklook_and_the_server_shows_it(tmp_path: Path) -> None:
    cube = T.synthetic_cube(64, 2)
    store = str(tmp_path / "with-rgb.zarr")
    report = write_archive(classify(cube, T.TINY_MODEL, device="cpu"), store, quicklook=cube)
    assert report.quicklook == [d[:19] for d in report.written] == _dates(cube)
    stored = open_quicklook(store)
    assert stored is not None and _dates(stored) == _dates(open_archive(store))
    # the same bytes as the separate call, and as quicklook_rgb of the cube
    np.testing.assert_array_equal(stored.values, quicklook_rgb(cube).values)
    two_calls = str(tmp_path / "two-calls.zarr")
    write_archive(classify(cube, T.TINY_MODEL, device="cpu"), two_calls)
    write_quicklook(cube, two_calls)
    np.testing.assert_array_equal(open_quicklook(two_calls).values, stored.values)  # type: ignore[union-attr]

    from dwcube.serve.layers import archive_tile

    proc, base, _port = _start([sys.executable, "-c", _SERVER, store, "{port}", "60"])
    try:
        (summary,) = httpx.get(base + "/api/archives").json()
        assert "rgb" in summary["layers"]
        ds = open_archive(store)
        z, x, y = _tile_over(ds, summary, summary["zoom"]["native"] + 1)
        for date in summary["dates"]:
            r = httpx.get(f"{base}/api/with-rgb/tiles/rgb/{date}/{z}/{x}/{y}.png")
            assert r.status_code == 200, r.text
            want = _png(archive_tile(ds, "rgb", date, z, x, y, quicklook=quicklook_rgb(cube).compute()))
            got = _png(r.content)
            assert (got[..., 3] == 255).sum() > 1000
            np.testing.assert_array_equal(got, want)
    finally:
        _stop(proc)


def test_appends_and_resumes_keep_quicklook_dates_with_the_archive(tmp_path: Path) -> None:
    cube = T.synthetic_cube(32, 4)
    prob = classify(cube, T.TINY_MODEL, device="cpu")
    store = str(tmp_path / "a.zarr")
    # the first two dates; the quicklook is given more dates than the archive gets: only the archive's are kept
    write_archive(prob.isel(time=[0, 1]), store, quicklook=cube)
    assert _dates(open_quicklook(store)) == _dates(open_archive(store)) == _dates(cube)[:2]  # type: ignore[arg-type]
    # an append of the next date
    report = write_archive(prob.isel(time=[0, 1, 2]), store, quicklook=cube.isel(time=[0, 1, 2]))
    assert report.quicklook == _dates(cube)[2:3]
    assert _dates(open_quicklook(store)) == _dates(open_archive(store))  # type: ignore[arg-type]
    # a write whose quicklook never came (killed after the archive, or written without the option): the next
    # call with the option fills exactly the dates the quicklook lacks
    write_archive(prob, store)
    assert len(_dates(open_quicklook(store))) == 3  # type: ignore[arg-type]
    again = write_archive(prob, store, quicklook=cube)
    assert again.written == [] and again.quicklook == _dates(cube)[3:]
    assert _dates(open_quicklook(store)) == _dates(open_archive(store)) == _dates(cube)  # type: ignore[arg-type]
    np.testing.assert_array_equal(open_quicklook(store).values, quicklook_rgb(cube).values)  # type: ignore[union-attr]
    # replacing the archive (mode="w") replaces its quicklook too
    write_archive(prob.isel(time=[1]), store, mode="w", quicklook=cube)
    assert _dates(open_quicklook(store)) == _dates(open_archive(store)) == _dates(cube)[1:2]  # type: ignore[arg-type]


def test_quicklook_of_another_grid_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    prob = classify(T.synthetic_cube(32, 1), T.TINY_MODEL, device="cpu")
    store = tmp_path / "a.zarr"
    with pytest.raises(ArchiveError, match="quicklook= must be the reflectance cube"):
        write_archive(prob, store, quicklook=T.synthetic_cube(48, 1))
    assert not store.exists()
    with pytest.raises(ArchiveError, match="archive's own version"):
        write_archive(prob, store, quicklook=T.synthetic_cube(32, 1), group="versions/x==1")


def test_dwcube_classify_quicklook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dwcube.cli import main

    from dwcube.demo import synthetic_l1c_items, write_catalog

    catalog = write_catalog(synthetic_l1c_items(tmp_path / "cat", size=64, dates=2), tmp_path / "catalog.parquet")
    store = tmp_path / "cli.zarr"
    weights = tmp_path / "tiny.pt"
    import torch

    from dwcube.models import unet as U

    torch.manual_seed(0)
    U.save_unet(weights, U.UNet(U.UNetConfig(in_channels=9, widths=(4, 4, 8, 8))).eval(),
                normalisation=U.SHIPPED_NORMALISATION)
    assert main(["classify", str(catalog), "--out", str(store), "--model", str(weights), "--device", "cpu",
                 "--no-progress", "--quicklook"]) == 0
    assert "RGB quicklook of 2 date(s)" in capsys.readouterr().out
    rgb = open_quicklook(store)
    assert rgb is not None and _dates(rgb) == _dates(open_archive(store)) and rgb.sizes["time"] == 2
    assert int(rgb.max()) > 1 and rgb.attrs["bands"] == ["red", "green", "blue"]

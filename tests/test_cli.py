"""The ``dwcube`` command line as a user meets it: negative bounding boxes, --version, help on
every option, options checked before anything runs and named in the error, library errors in the
command line's words, `dwcube load --no-cloud-mask`, its progress bar, and --gdal-env."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from dwcube import testing as T
from dwcube.cli import build_parser, cli_words, main
from dwcube.demo import synthetic_l1c_items, write_catalog

REPO = Path(__file__).resolve().parent.parent
# a small box in Ireland (west of Greenwich: negative longitudes), around the `irish_catalog` scene
NEGATIVE_BBOX = "-8.058,53.345,-8.048,53.352"


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two synthetic 64 x 64 Sentinel-2 L1C dates as local COGs, in a stac-geoparquet catalogue."""
    root = tmp_path_factory.mktemp("cli")
    return write_catalog(synthetic_l1c_items(root, size=64, dates=2), root / "catalog.parquet")


@pytest.fixture(scope="module")
def irish_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One synthetic Sentinel-2 L1C date (red band, 128 x 128 px, EPSG:32629) near 8.05 W, 53.35 N."""
    import datetime as dt

    root = tmp_path_factory.mktemp("ireland")
    dn = (1000 + 50 * np.add.outer(np.arange(128), np.arange(128)) % 3000).astype(np.uint16)
    info = T.write_cog(root / "cogs" / "red.tif", dn, epsg=32629, transform=(10, 0, 562600, 0, -10, 5912200))
    item = T.sentinel2_item("S2A_29UNU_20240601_0_L1C", dt.datetime(2024, 6, 1, 11, tzinfo=dt.timezone.utc),
                            {"red": info}, base_url=(root / "cogs").resolve().as_uri(), root=root / "cogs",
                            level="L1C", processing_baseline="05.10")
    return write_catalog([item], root / "catalog.json")


def _parse_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("form", ["separate", "joined"])
def test_negative_bbox_values_are_accepted(irish_catalog: Path, tmp_path: Path, form: str) -> None:
    bbox = ["--bbox", NEGATIVE_BBOX] if form == "separate" else [f"--bbox={NEGATIVE_BBOX}"]
    out = tmp_path / "cube.zarr"
    assert main(["load", str(irish_catalog), "--out", str(out), *bbox, "--no-cloud-mask", "--no-progress"]) == 0
    cube = xr.open_zarr(out, consolidated=False)
    assert cube.sizes["time"] == 1 and 60 < cube.sizes["y"] < 90 and 55 < cube.sizes["x"] < 80  # the box, not the scene
    assert np.isfinite(cube.red.values).all()


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from dwcube import __version__

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"dwcube {__version__}"


def _parsers(parser: argparse.ArgumentParser, path: str = "dwcube"):  # type: ignore[no-untyped-def]
    yield path, parser
    for action in parser._actions:  # noqa: SLF001 - argparse keeps its sub-parsers here
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_option_and_command_has_help() -> None:
    missing = [f"{path} {'/'.join(a.option_strings) or a.dest}"
               for path, parser in _parsers(build_parser()) for a in parser._actions  # noqa: SLF001
               if not a.help or a.help == argparse.SUPPRESS]
    assert missing == []
    commands = {path for path, _ in _parsers(build_parser())}
    assert {"dwcube load", "dwcube classify", "dwcube train", "dwcube weights fetch", "dwcube archive info"} <= commands


def test_options_are_checked_up_front_and_named(catalog: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.zarr"
    base = ["load", str(catalog), "--out", str(out)]
    err = _parse_error([*base, "--datetime", "2024-13"], capsys)
    assert "argument --datetime" in err and "'2024-13'" in err and "month must be in 1..12" in err
    err = _parse_error([*base, "--datetime", "2024-09/2024-05"], capsys)
    assert "argument --datetime" in err and "ends before it starts" in err
    err = _parse_error([*base, "--bbox", "-14.99,45.1,15.0"], capsys)
    assert "argument --bbox" in err and "west,south,east,north" in err
    err = _parse_error([*base, "--bbox", "15,45.1,-14.99,45.2"], capsys)
    assert "argument --bbox" in err and "west < east" in err
    err = _parse_error([*base, "--chunks", "0"], capsys)
    assert "argument --chunks" in err
    err = _parse_error([*base, "--gdal-env", "AWS_REQUEST_PAYER"], capsys)
    assert "argument --gdal-env" in err and "KEY=VALUE" in err
    err = _parse_error(["classify", str(catalog), "--out", str(out), "--tile", "-4"], capsys)
    assert "argument --tile" in err
    assert not out.exists()  # nothing ran


def test_library_errors_are_reported_in_cli_words(catalog: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    from dwcube.models import unet as U

    # a U-Net that takes elevation (trained with a DEM; here random weights): --dem is needed
    records = [dict(r) for r in U.SHIPPED_NORMALISATION] + [
        {"name": "elevation", "kind": "elevation", "shift": 500.0, "scale": 200.0, "clip": None}]
    torch.manual_seed(0)
    weights = tmp_path / "with-elevation.pt"
    U.save_unet(weights, U.UNet(U.UNetConfig(in_channels=10, widths=(4, 4, 8, 8))).eval(), normalisation=records)
    store = tmp_path / "unet.zarr"
    assert main(["classify", str(catalog), "--out", str(store), "--model", str(weights), "--device", "cpu",
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "dwcube classify: error:" in err and "--dem" in err and "dem=" not in err and not store.exists()
    # an archive that exists, refused by --mode w-: the remedy names --mode, not mode='a'
    import zarr

    zarr.open_group(store, mode="w", zarr_format=3)  # something is there already
    T.write_cog(tmp_path / "dem.tif", np.full((64, 64), 500, np.float32), epsg=32633,
                transform=(10, 0, 465180, 0, -10, 5080260), nodata=None)
    assert main(["classify", str(catalog), "--out", str(store), "--model", "unet", "--dem", str(tmp_path / "dem.tif"),
                 "--mode", "w-", "--device", "cpu", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "(--mode w-)" in err and "--mode a to append or --mode w to replace" in err and "mode='" not in err


def test_cli_words() -> None:
    assert cli_words("pass bands=[...]") == "pass --bands"
    assert cli_words("pass crs='EPSG:…' (the CRS)") == "pass --crs EPSG:… (the CRS)"
    assert cli_words("batch_size must be at least 1") == "batch_size must be at least 1"  # only name=... is rewritten
    assert cli_words("set $DWCUBE_WEIGHTS=/x") == "set $DWCUBE_WEIGHTS=/x"


def test_load_without_cloud_mask_and_with_a_progress_bar(catalog: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    masked, plain = tmp_path / "masked.zarr", tmp_path / "plain.zarr"
    assert main(["load", str(catalog), "--out", str(masked), "--bands", "red"]) == 0
    err = capsys.readouterr().err
    assert "loading and writing [" in err and "tasks" in err  # the bar, as on classify
    assert main(["load", str(catalog), "--out", str(plain), "--bands", "red", "--no-cloud-mask", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "(no cloud mask)" in captured.out and "loading and writing [" not in captured.err
    assert xr.open_zarr(masked, consolidated=False).attrs["cloud_mask"].startswith("dynamic-world cloud/shadow mask")
    assert xr.open_zarr(plain, consolidated=False).attrs["cloud_mask"] == "none"


@pytest.mark.network
def test_gdal_env_reaches_gdal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Over a loopback HTTP server: a GDAL setting that refuses .tif URLs makes the read fail,
    so the value given with --gdal-env is the one GDAL reads with."""
    with T.serve_directory(tmp_path) as (url, _):
        items = synthetic_l1c_items(tmp_path, size=32, dates=1)
        local = (tmp_path / "cogs").resolve().as_uri()
        for item in items:
            for asset in item.assets.values():
                asset.href = asset.href.replace(local, url + "/cogs")
        cat = write_catalog(items, tmp_path / "http.json")
        args = ["load", str(cat), "--bands", "red", "--no-cloud-mask", "--no-progress"]
        assert main([*args, "--out", str(tmp_path / "ok.zarr")]) == 0
        assert main([*args, "--out", str(tmp_path / "no.zarr"), "--gdal-env", "CPL_VSIL_CURL_ALLOWED_EXTENSIONS=.jp2"]) == 1
    assert "red" in capsys.readouterr().err


def test_a_real_dwcube_process(irish_catalog: Path, catalog: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = [sys.executable, "-m", "dwcube"]
    out = tmp_path / "p.zarr"
    done = subprocess.run([*run, "load", str(irish_catalog), "--out", str(out), "--bbox", NEGATIVE_BBOX,
                           "--no-cloud-mask"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"to {out}" in done.stdout and "tasks" in done.stderr
    bad = subprocess.run([*run, "load", str(catalog), "--out", str(out), "--datetime", "2024-13"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "argument --datetime" in bad.stderr

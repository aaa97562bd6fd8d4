"""The main job (``dwcube demo``) and the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from dwcube.cli import main
from dwcube.demo import run_demo


def test_demo_synthetic_writes_a_readable_zarr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = run_demo(tmp_path / "demo", source="synthetic", n_workers=0)
    out = capsys.readouterr().out
    assert "dwcube demo (synthetic)" in out and "EPSG:32633" in out
    back = xr.open_zarr(res.store, consolidated=False)
    assert back.rio.crs.to_epsg() == 32633
    assert set(back.data_vars) == {"blue", "green", "red", "nir", "nir08", "swir16", "swir22"}
    red = back.red.values[0]
    valid = np.isfinite(red)
    assert 0.6 < valid.mean() < 0.95  # no-data strip, cloud and shadow are masked
    assert np.isnan(red[:, :51]).all()
    assert back.attrs["radiometry"] == ["baseline 05.09: offset -1000 DN"]


@pytest.mark.slow
@pytest.mark.shared
def test_demo_on_the_real_tile_with_a_local_cluster(shared: Path, tmp_path: Path) -> None:
    res = run_demo(tmp_path / "demo", source="t29unu", n_workers=2, verbose=False)
    back = xr.open_zarr(res.store, consolidated=False)
    assert back.sizes == {"time": 1, "y": 1830, "x": 1830}
    assert back.attrs["mask"] == "classes:0,1,3,8,9,10"
    assert 0.1 < float(np.isfinite(back.red.values).mean()) < 0.3


def test_cli_load_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = run_demo(tmp_path / "demo", source="synthetic", n_workers=0, verbose=False)
    store = tmp_path / "cli.zarr"
    assert main(["load", str(res.catalog), "--out", str(store), "--bands", "red", "nir", "--chunks", "128"]) == 0
    back = xr.open_zarr(store, consolidated=False)
    assert set(back.data_vars) == {"red", "nir"} and back.red.chunks[1][0] == 128
    # writing over an existing store is refused: nothing already written is lost
    assert main(["load", str(res.catalog), "--out", str(store), "--bands", "red"]) == 1
    assert "error" in capsys.readouterr().err
    assert set(xr.open_zarr(store, consolidated=False).data_vars) == {"red", "nir"}
    assert main(["load", str(tmp_path / "missing.json"), "--out", str(tmp_path / "x.zarr")]) == 1
    assert "catalogue file not found" in capsys.readouterr().err
    assert main(["load", str(res.catalog), "--out", str(tmp_path / "y.zarr"), "--datetime", "1999"]) == 1
    assert "no STAC item matched" in capsys.readouterr().err

"""The main job (``dwcube demo``) and the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from dwcube.archive import open_archive
from dwcube.classes import COLORS
from dwcube.cli import main
from dwcube.demo import run_demo


def _png_has_colours(path: Path, names: list[str]) -> bool:
    import matplotlib.image as mpimg

    img = (mpimg.imread(path)[..., :3] * 255).round().astype(int)
    found = {tuple(int(COLORS[n][i:i + 2], 16) for i in (1, 3, 5)) for n in names}
    pixels = {tuple(p) for p in img.reshape(-1, 3)[:: max(1, img.size // 3 // 200000)]}
    return found <= pixels


@pytest.mark.shared
def test_demo_synthetic_classifies_archives_and_draws_a_map(shared: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    res = run_demo(tmp_path / "demo", source="synthetic", n_workers=0, weights=shared / "dynamicworld")
    out = capsys.readouterr().out
    assert "dwcube demo (synthetic)" in out and "EPSG:32633" in out and "dynamic-world" in out
    back = xr.open_zarr(res.store, consolidated=False)  # plain xarray reads it, CRS included
    assert back.rio.crs.to_epsg() == 32633 and back.probability.dims == ("time", "class", "y", "x")
    assert res.map_png is not None and res.map_png.exists()
    labels = [n for n, i in zip(back["class"].values, np.bincount(back.label.values[back.label.values < 9].ravel(),
                                                                 minlength=9)) if i > 100]
    assert labels and _png_has_colours(res.map_png, labels)  # the legend has all nine anyway
    assert _png_has_colours(res.map_png, list(COLORS))


def test_demo_without_weights_stops_after_the_reflectance_cube(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    res = run_demo(tmp_path / "demo", source="synthetic", n_workers=0, weights=tmp_path / "no-weights")
    assert res.store.name == "reflectance.zarr" and res.map_png is None
    assert "dwcube weights fetch dynamic-world" in capsys.readouterr().out
    assert xr.open_zarr(res.store, consolidated=False).sizes["time"] == 2


@pytest.mark.slow
@pytest.mark.shared
def test_demo_on_the_real_scenes_with_a_local_cluster(shared: Path, tmp_path: Path) -> None:
    res = run_demo(tmp_path / "demo", source="eolearn", n_workers=2, verbose=False)
    ds = open_archive(res.store)
    assert ds.sizes == {"time": 5, "class": 9, "y": 101, "x": 100}
    lab = ds.label.values
    clear = [str(t)[:10] in ("2015-07-11", "2015-08-30", "2015-09-09") for t in ds.time.values]
    assert (lab[clear] != 255).mean() > 0.99
    assert (lab[clear] == 1).mean() > 0.8  # a forested patch: mostly trees
    assert res.map_png is not None and _png_has_colours(res.map_png, ["trees", "grass"])


@pytest.mark.shared
def test_cli_classify_append_info_and_errors(shared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = run_demo(tmp_path / "demo", source="synthetic", n_workers=0, verbose=False, weights=tmp_path / "none")
    store, png = tmp_path / "lulc.zarr", tmp_path / "map.png"
    weights = str(shared / "dynamicworld")
    args = ["classify", str(res.catalog), "--out", str(store), "--collections", "sentinel-2-l1c",
            "--weights", weights, "--chunks", "128", "--tile", "128", "--device", "cpu", "--no-progress"]
    assert main([*args, "--datetime", "2023-04-01/2023-04-12", "--map", str(png)]) == 0
    out = capsys.readouterr().out
    assert "wrote 1 date(s)" in out and png.exists()
    assert main(args) == 0  # the NRT case: the next date is appended, the first skipped
    assert "wrote 1 date(s), skipped 1" in capsys.readouterr().out
    assert main(["archive", "info", str(store)]) == 0
    info = capsys.readouterr().out
    assert "dynamic-world" in info and "2 complete" in info and "EPSG:32633" in info
    assert main([*args, "--precision", "uint8"]) == 1
    assert "ArchiveMismatchError" in capsys.readouterr().err and open_archive(store).sizes["time"] == 2
    assert main(["classify", str(res.catalog), "--out", str(tmp_path / "x.zarr"), "--weights",
                 str(tmp_path / "missing")]) == 1
    assert "Weights" in capsys.readouterr().err
    assert main(["archive", "info", str(tmp_path / "nothing.zarr")]) == 1
    assert "no Zarr archive" in capsys.readouterr().err


def test_cli_load_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = run_demo(tmp_path / "demo", source="synthetic", n_workers=0, verbose=False, weights=tmp_path / "none")
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


def test_cli_classify_with_the_unet_needs_and_uses_a_dem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dwcube.load import load

    res = run_demo(tmp_path / "demo", source="synthetic", n_workers=0, verbose=False, weights=tmp_path / "none")
    cube = load(res.catalog, collections=["sentinel-2-l1c"], bands=["red"], resolution=10, chunks=256)
    ydim, xdim = cube.odc.spatial_dims
    dem = xr.DataArray(np.linspace(200, 900, cube.sizes[ydim] * cube.sizes[xdim], dtype="float32")
                       .reshape(cube.sizes[ydim], cube.sizes[xdim]), dims=(ydim, xdim),
                       coords={ydim: cube[ydim], xdim: cube[xdim]})
    dem.rio.write_crs(cube.odc.crs.to_wkt(), inplace=True).rio.to_raster(tmp_path / "dem.tif")
    store = tmp_path / "unet.zarr"
    args = ["classify", str(res.catalog), "--out", str(store), "--collections", "sentinel-2-l1c", "--model", "unet",
            "--datetime", "2023-04-01/2023-04-12", "--chunks", "256", "--device", "cpu", "--no-progress"]
    assert main(args) == 1  # the U-Net's elevation input is required, and the error says so
    assert "elevation" in capsys.readouterr().err and not store.exists()
    assert main([*args, "--dem", str(tmp_path / "dem.tif")]) == 0
    prob = open_archive(store).probability
    assert prob.attrs["model"] == "unet" and prob.sizes["time"] == 1
    total = prob.sum("class").values
    assert np.nanmax(np.abs(total - 1)) < 1e-3 and np.isfinite(total).mean() > 0.5
    # a weights file from `dwcube train` classifies the same way (here: the shipped file itself)
    from dwcube.models.registry import UNET_WEIGHTS_FILE

    other = tmp_path / "file.zarr"
    assert main([*args[:3], str(other), *args[4:6], "--model", str(UNET_WEIGHTS_FILE), *args[8:],
                 "--dem", str(tmp_path / "dem.tif")]) == 0
    again = open_archive(other).probability
    assert again.attrs["model"] == "unet-v1"
    np.testing.assert_allclose(again.values, prob.values, atol=1e-4)


def test_cli_train_runs_through_the_dwcube_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dwcube.testing import synthetic_cube

    cube = synthetic_cube(48, 2, bands=["blue", "green", "red", "nir08", "swir16", "swir22"], seed=3)
    cube.to_zarr(tmp_path / "cube.zarr", zarr_format=3, consolidated=False)
    lab = xr.DataArray(np.where(cube.red.isel(time=0).values > 0.1, 10, 30).astype(np.uint8), dims=("y", "x"),
                       coords={"y": cube.y, "x": cube.x}, name="label")
    xr.Dataset({"label": lab}).to_zarr(tmp_path / "wc.zarr", zarr_format=3, consolidated=False)
    args = ["train", str(tmp_path / "cube.zarr"), str(tmp_path / "wc.zarr"), "--kind", "worldcover",
            "--out", str(tmp_path / "run"), "--quick", "--no-progress"]
    assert main(args) == 0
    assert '"sha256"' in capsys.readouterr().out and (tmp_path / "run" / "unet.pt").is_file()
    assert main(["train", str(tmp_path / "missing.zarr"), str(tmp_path / "wc.zarr"), "--out", str(tmp_path / "r2")]) == 1
    assert "dwcube train: error" in capsys.readouterr().err

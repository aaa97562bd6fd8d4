"""The main job (``dwcube demo``) and the command line.

Tests that search for weights set the search explicitly (``dwcube_env``): no test depends on
the machine's own cache or on where it is run from."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from dwcube.archive import open_archive
from dwcube.classes import COLORS
from dwcube.cli import main
from dwcube.demo import FEW_VALID, class_share_table, run_demo

# eo-learn reference land use -> Dynamic World class index (data README): cultivated -> crops,
# forest -> trees, grassland -> grass, shrubland -> shrub_and_scrub, artificial -> built
EOLEARN_REFERENCE_TO_DW = {1: 4, 2: 1, 3: 2, 4: 5, 8: 6}


@pytest.fixture()
def dwcube_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Set the weights search: ``shared`` (a folder or None) as $DWCUBE_SHARED, an empty cache,
    no $DWCUBE_WEIGHTS, and the current folder in tmp_path (no ../shared guessed from there)."""

    def setup(shared: Path | None) -> None:
        monkeypatch.delenv("DWCUBE_WEIGHTS", raising=False)
        monkeypatch.setenv("DWCUBE_CACHE", str(tmp_path / "cache"))
        monkeypatch.setenv("DWCUBE_SHARED", str(shared if shared is not None else tmp_path / "no-shared"))
        monkeypatch.chdir(tmp_path)

    return setup


def _png_has_colours(path: Path, names: list[str]) -> bool:
    import matplotlib.image as mpimg

    img = (mpimg.imread(path)[..., :3] * 255).round().astype(int)
    found = {tuple(int(COLORS[n][i:i + 2], 16) for i in (1, 3, 5)) for n in names}
    pixels = {tuple(p) for p in img.reshape(-1, 3)[:: max(1, img.size // 3 // 200000)]}
    return found <= pixels


@pytest.mark.shared
def test_demo_synthetic_classifies_archives_and_draws_a_map(shared: Path, tmp_path: Path, dwcube_env,  # type: ignore[no-untyped-def]
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    dwcube_env(shared)  # the Dynamic World weights are found in $DWCUBE_SHARED/dynamicworld
    res = run_demo(tmp_path / "demo", source="synthetic", n_workers=0)
    out = capsys.readouterr().out
    assert "dwcube demo (synthetic scenes)" in out and "EPSG:32633" in out and "classified with dynamic-world" in out
    assert res.model == "dynamic-world" and f"weights verified in {shared / 'dynamicworld'}" in out
    back = xr.open_zarr(res.store, consolidated=False)  # plain xarray reads it, CRS included
    assert back.rio.crs.to_epsg() == 32633 and back.probability.dims == ("time", "class", "y", "x")
    assert res.map_png is not None and res.map_png.exists()
    labels = [n for n, i in zip(back["class"].values, np.bincount(back.label.values[back.label.values < 9].ravel(),
                                                                 minlength=9)) if i > 100]
    assert labels and _png_has_colours(res.map_png, labels)  # the legend has all nine anyway
    assert _png_has_colours(res.map_png, list(COLORS))


def test_demo_without_dynamic_world_weights_classifies_with_the_shipped_unet(tmp_path: Path, dwcube_env,  # type: ignore[no-untyped-def]
                                                                             capsys: pytest.CaptureFixture[str]) -> None:
    dwcube_env(None)  # no shared/ folder, no weights anywhere: what a user without ../shared has
    res = run_demo(tmp_path / "demo", source="synthetic", n_workers=0)
    out = capsys.readouterr().out
    assert res.model == "unet" and res.store.name == "lulc.zarr" and "classified with unet" in out
    # it says why: where it looked for Dynamic World, and how to get it
    assert "dwcube's U-Net (weights shipped in the package), because" in out
    assert "$DWCUBE_SHARED/dynamicworld" in out and "the user cache" in out and "dwcube weights fetch dynamic-world" in out
    # the summary: units, readable dates, whole class names
    assert "px at 10 m, EPSG:32633" in out and "2023-04-06 10:00 UTC" in out and "T10:00:00.000000" not in out
    assert "flooded_vegetation" in out and "shrub_and_scrub" in out and "snow_and_ice" in out
    prob = res.cube.probability
    assert prob.attrs["model"] == "unet" and prob.sizes["time"] == 2
    total = prob.sum("class").values
    assert np.nanmax(np.abs(total - 1)) < 1e-3 and np.isfinite(total).mean() > 0.9
    assert res.map_png is not None and res.map_png.exists()


def test_summary_flags_dates_with_few_valid_pixels() -> None:
    lab = np.full((2, 50, 50), 255, np.uint8)
    lab[0] = 1
    lab[1, 0, :20] = 6  # 0.8 % valid pixels, all "built"
    times = np.array(["2015-07-11T10:00", "2015-07-31T10:00"], dtype="datetime64[ns]")
    table = class_share_table(xr.DataArray(lab, dims=("time", "y", "x"), coords={"time": times}), list(COLORS))
    header, valid, *rows, note = table.splitlines()
    assert header.split()[-2:] == ["2015-07-11", "2015-07-31*"]
    assert valid.split()[-2:] == ["100.0", "0.8"]
    assert [r.split()[0] for r in rows] == list(COLORS)  # whole names, not "floode" / "shrub_"
    assert note.startswith(f"* under {100 * FEW_VALID:g} % valid pixels")
    lab[1, :10] = 6  # 20 % valid: no flag
    table = class_share_table(xr.DataArray(lab, dims=("time", "y", "x"), coords={"time": times}), list(COLORS))
    assert "*" not in table


@pytest.mark.slow
@pytest.mark.shared
def test_demo_on_the_real_scenes_with_a_local_cluster(shared: Path, tmp_path: Path) -> None:
    """Against the patch's reference land use: better than the majority class by a margin, trees
    and grass both recalled, and probabilities that are probabilities (a constant classifier, at
    ~76 % trees, or one-hot / uniform outputs fail)."""
    res = run_demo(tmp_path / "demo", source="eolearn", n_workers=2, verbose=False, model="dynamic-world",
                   weights=shared / "dynamicworld")
    ds = open_archive(res.store)
    assert ds.sizes == {"time": 5, "class": 9, "y": 101, "x": 100}
    clear = [str(t)[:10] in ("2015-07-11", "2015-08-30", "2015-09-09") for t in ds.time.values]
    lab = ds.label.values[clear]
    assert (lab != 255).mean() > 0.99
    raw = np.load(shared / "data" / "eolearn-slovenia" / "lulc_reference.npy")[..., 0]
    ref = np.full(raw.shape, 255, np.uint8)
    for code, k in EOLEARN_REFERENCE_TO_DW.items():
        ref[raw == code] = k
    ref = np.broadcast_to(ref, lab.shape)
    ok = (ref != 255) & (lab != 255)
    accuracy = (lab[ok] == ref[ok]).mean()
    majority = np.bincount(ref[ok]).max() / ok.sum()  # forest: ~0.76
    assert accuracy > majority + 0.02  # measured: 0.804 vs 0.764
    recall = {k: (lab[ok & (ref == k)] == k).mean() for k in (1, 2)}
    assert recall[1] > 0.95 and recall[2] > 0.12  # trees 1.00, grass 0.22
    iou = [((lab == k) & (ref == k) & ok).sum() / (((lab == k) | (ref == k)) & ok).sum() for k in (1, 2)]
    assert np.mean(iou) > 0.45  # 0.51 (a constant "trees" gives 0.38)
    prob = ds.probability.values[clear]
    valid = lab != 255
    assert np.nanmin(prob) >= 0 and np.nanmax(prob) <= 1
    assert np.abs(prob.sum(1) - 1)[valid].max() < 1e-3
    assert np.isnan(ds.probability.values[~np.array(clear)][:, 0][ds.label.values[~np.array(clear)] == 255]).all()
    top1 = prob.max(1)[valid]
    assert 0.4 < top1.mean() < 0.95  # 0.67: neither one-hot nor uniform
    assert res.map_png is not None and _png_has_colours(res.map_png, ["trees", "grass"])


@pytest.mark.shared
def test_cli_classify_append_info_and_errors(shared: Path, tmp_path: Path, dwcube_env,  # type: ignore[no-untyped-def]
                                             capsys: pytest.CaptureFixture[str]) -> None:
    dwcube_env(shared)
    catalog = _SyntheticCatalog(tmp_path / "demo").catalog
    store, png = tmp_path / "lulc.zarr", tmp_path / "map.png"
    # no --weights: classify finds them where the demo does ($DWCUBE_SHARED/dynamicworld here)
    args = ["classify", str(catalog), "--out", str(store), "--collections", "sentinel-2-l1c",
            "--chunks", "128", "--tile", "128", "--device", "cpu", "--no-progress"]
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
    assert main(["classify", str(catalog), "--out", str(tmp_path / "x.zarr"), "--weights",
                 str(tmp_path / "missing")]) == 1
    assert "Weights" in capsys.readouterr().err
    assert main(["archive", "info", str(tmp_path / "nothing.zarr")]) == 1
    assert "no Zarr archive" in capsys.readouterr().err


class _SyntheticCatalog:
    """The demo's synthetic L1C scenes as a catalogue, without running the demo."""

    def __init__(self, workdir: Path) -> None:
        from dwcube.demo import synthetic_l1c_items, write_catalog

        self.catalog = write_catalog(synthetic_l1c_items(workdir), workdir / "catalog.parquet")


def test_cli_load_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    res = _SyntheticCatalog(tmp_path / "demo")
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


def test_cli_classify_with_the_shipped_unet_needs_no_dem(tmp_path: Path) -> None:
    res = _SyntheticCatalog(tmp_path / "demo")
    store = tmp_path / "unet.zarr"
    args = ["classify", str(res.catalog), "--out", str(store), "--collections", "sentinel-2-l1c", "--model", "unet",
            "--datetime", "2023-04-01/2023-04-12", "--chunks", "256", "--device", "cpu", "--no-progress"]
    assert main(args) == 0
    prob = open_archive(store).probability
    assert prob.attrs["model"] == "unet" and prob.sizes["time"] == 1
    total = prob.sum("class").values
    assert np.nanmax(np.abs(total - 1)) < 1e-3 and np.isfinite(total).mean() > 0.5
    # a weights file from `dwcube train` classifies the same way (here: the shipped file itself)
    from dwcube.models.registry import UNET_WEIGHTS_FILE

    other = tmp_path / "file.zarr"
    assert main([*args[:3], str(other), *args[4:6], "--model", str(UNET_WEIGHTS_FILE), *args[8:]]) == 0
    again = open_archive(other).probability
    assert again.attrs["model"] == UNET_WEIGHTS_FILE.stem
    np.testing.assert_allclose(again.values, prob.values, atol=1e-4)


def test_cli_classify_with_an_elevation_model_needs_and_uses_the_dem(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A U-Net trained with a DEM (here: random weights, ten inputs) reads --dem; two DEMs, two answers."""
    import torch

    from dwcube.load import load
    from dwcube.models import unet as U
    from dwcube.testing import randomise_batch_norm

    records = [dict(r) for r in U.SHIPPED_NORMALISATION] + [
        {"name": "elevation", "kind": "elevation", "shift": 500.0, "scale": 200.0, "clip": None}]
    torch.manual_seed(0)
    net = randomise_batch_norm(U.UNet(U.UNetConfig(in_channels=10, widths=(4, 4, 8, 8))).eval())
    weights = tmp_path / "elev.pt"
    U.save_unet(weights, net, normalisation=records)
    res = _SyntheticCatalog(tmp_path / "demo")
    cube = load(res.catalog, collections=["sentinel-2-l1c"], bands=["red"], resolution=10, chunks=256)
    ydim, xdim = cube.odc.spatial_dims
    shape = (cube.sizes[ydim], cube.sizes[xdim])
    for name, lo, hi in (("dem_a.tif", 200, 900), ("dem_b.tif", 1500, 2600)):
        dem = xr.DataArray(np.linspace(lo, hi, shape[0] * shape[1], dtype="float32").reshape(shape), dims=(ydim, xdim),
                           coords={ydim: cube[ydim], xdim: cube[xdim]})
        dem.rio.write_crs(cube.odc.crs.to_wkt(), inplace=True).rio.to_raster(tmp_path / name)
    args = ["classify", str(res.catalog), "--collections", "sentinel-2-l1c", "--model", str(weights),
            "--datetime", "2023-04-01/2023-04-12", "--chunks", "256", "--device", "cpu", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "none.zarr")]) == 1   # elevation is an input: --dem is needed
    err = capsys.readouterr().err
    assert "elevation" in err and "--dem" in err and not (tmp_path / "none.zarr").exists()
    probs = []
    for name in ("dem_a.tif", "dem_b.tif"):
        store = tmp_path / f"{name}.zarr"
        assert main([*args, "--out", str(store), "--dem", str(tmp_path / name)]) == 0
        probs.append(open_archive(store).probability.values)
    valid = np.isfinite(probs[0]) & np.isfinite(probs[1])
    # the DEM is used: a network blind to it would give identical archives (Δ = 0; grid step 2^-16)
    assert valid.mean() > 0.5 and np.abs(probs[0] - probs[1])[valid].mean() > 1e-4


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

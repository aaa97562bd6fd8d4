"""Cloud-Optimised GeoTIFF exports of archive layers, read back with rasterio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio

import dwcube
from dwcube.archive import ArchiveEncoding, open_archive, write_archive
from dwcube.cli import main
from dwcube.export import export_cog, to_cog
from dwcube.inference import classify
from dwcube.testing import TINY_MODEL, synthetic_cube


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    prob = classify(synthetic_cube(96, 2, seed=4, chunks=32, nodata_fraction=0.2), TINY_MODEL, device="cpu")
    store = tmp_path_factory.mktemp("export") / "a.zarr"
    write_archive(prob, store, encoding=ArchiveEncoding(chunk=32))
    return store


def _is_cog(src: rasterio.DatasetReader, blocksize: int) -> None:
    """What GDAL's COG validation looks at: the COG layout, tiles, and overviews down to a tile."""
    assert src.driver == "GTiff" and src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
    assert src.profile["tiled"] and src.block_shapes[0] == (blocksize, blocksize)
    assert src.overviews(1) == [2]  # 96 px: one overview level, 48 px, fits a 64-px tile


def test_label_cog_has_the_values_colour_table_and_class_names(archive: Path, tmp_path: Path) -> None:
    ds = open_archive(archive)
    date = str(ds.time.values[1])[:10]
    path = export_cog(archive, tmp_path / "label.tif", date=date, blocksize=64)
    want = ds.label.isel(time=1)
    with rasterio.open(path) as src:
        _is_cog(src, 64)
        assert src.count == 1 and src.dtypes == ("uint8",) and src.nodata == 255
        np.testing.assert_array_equal(src.read(1), want.values)
        assert src.crs.to_epsg() == 32633 and src.transform == want.odc.geobox.affine
        cmap = src.colormap(1)
        for i, name in enumerate(dwcube.CLASSES):
            assert "#%02X%02X%02X" % cmap[i][:3] == dwcube.COLORS[name] and cmap[i][3] == 255
        assert cmap[255][3] == 0  # no data is transparent
        band = src.tags(1)
        assert [band[f"class_{i}"] for i in range(9)] == list(dwcube.CLASSES)
        assert band["flag_meanings"].split() == list(dwcube.CLASSES)
        assert band["flag_colors"].split() == [dwcube.COLORS[c] for c in dwcube.CLASSES]
        assert src.tags()["time"].startswith(date) and src.tags()["model"] == "tiny-test"
        assert src.descriptions == ("land-cover class",)


def test_probability_cog_has_one_described_band_per_class(archive: Path, tmp_path: Path) -> None:
    ds = open_archive(archive)
    prob = ds.probability.isel(time=0)
    path = prob.lulc.to_cog(tmp_path / "prob.tif", blocksize=64)
    with rasterio.open(path) as src:
        _is_cog(src, 64)
        assert src.count == 9 and set(src.dtypes) == {"float32"} and np.isnan(src.nodata)
        assert src.descriptions == tuple(dwcube.CLASSES)
        np.testing.assert_array_equal(src.read(), prob.values)  # NaN where the archive has no data
        assert src.crs.to_epsg() == 32633 and src.transform == prob.odc.geobox.affine


def test_the_command_line_exports_and_explains_bad_dates(archive: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    ds = open_archive(archive)
    date = str(ds.time.values[0])[:10]
    out = tmp_path / "cli.tif"
    assert main(["export", str(archive), "--date", date, "--layer", "label", "--out", str(out),
                 "--blocksize", "64"]) == 0
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(1), ds.label.isel(time=0).values)
    assert main(["export", str(archive), "--date", "1999-01-01", "--out", str(tmp_path / "x.tif")]) == 1
    err = capsys.readouterr().err
    assert "has no date 1999-01-01; it has " + date in err and not (tmp_path / "x.tif").exists()


def test_more_than_one_date_is_refused_with_the_remedy(archive: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"select a date first"):
        to_cog(open_archive(archive).label, tmp_path / "x.tif")
    assert not list(tmp_path.iterdir())

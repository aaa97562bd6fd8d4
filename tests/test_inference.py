"""The inference engine: chunk invariance, no-data handling, skipped work, provenance, errors."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import dwcube
from dwcube import inference as I
from dwcube.inputs import MissingInputError
from dwcube.models.registry import ModelEntry
from dwcube.testing import TINY_MODEL, synthetic_cube

# float32 noise between batch shapes (oneDNN picks kernels per shape); labels must not move
ATOL = 1e-4


def _classify(cube: xr.Dataset, **kw) -> xr.DataArray:
    return I.classify(cube, TINY_MODEL, device="cpu", **kw)


def test_three_chunkings_give_the_same_probabilities() -> None:
    cube = synthetic_cube((75, 66), 3, nodata_fraction=0.15, seed=3)  # odd height: unaligned far edge
    results = []
    for chunks, tile in (({"y": 75, "x": 66}, 512), ({"y": 17, "x": 23}, 6), ({"y": 33, "x": 40}, 16)):
        prob = _classify(cube.chunk({"time": 1, **chunks}), tile=tile)
        assert all(c % 2 == 0 for c in np.cumsum(prob.data.chunks[2])[:-1])  # aligned chunk origins
        results.append(prob.compute())
    first = results[0]
    for other in results[1:]:
        np.testing.assert_allclose(other.values, first.values, atol=ATOL, rtol=0)
        np.testing.assert_array_equal(np.isnan(other.values), np.isnan(first.values))
        np.testing.assert_array_equal(dwcube.label(other).values, dwcube.label(first).values)


def test_chunked_result_equals_the_network_on_the_whole_image() -> None:
    import torch

    cube = synthetic_cube((48, 52), 2, seed=5)
    prob = _classify(cube.chunk({"time": 1, "y": 16, "x": 20}), tile=8).values
    x = dwcube.model_inputs(cube, TINY_MODEL.inputs).values
    net = TINY_MODEL.build(None)
    with torch.no_grad():
        want = torch.softmax(net(torch.from_numpy(x)), 1).numpy()
    np.testing.assert_allclose(prob, want, atol=ATOL, rtol=0)


def test_the_declared_halo_is_needed_and_enough() -> None:
    """Chunk tests that pass with half the declared halo prove nothing about it: the tiny model's
    halo reproduces the whole image, one step less (halo − alignment: halos are multiples of it)
    does not — through dask chunks and through tiles."""
    from dataclasses import replace

    import torch

    cube = synthetic_cube((48, 52), 2, seed=5)
    x = dwcube.model_inputs(cube, TINY_MODEL.inputs).values
    with torch.no_grad():
        want = torch.softmax(TINY_MODEL.build(None)(torch.from_numpy(x)), 1).numpy()
    short = replace(TINY_MODEL, halo=TINY_MODEL.halo - TINY_MODEL.alignment)
    for chunks, tile in (({"y": 16, "x": 20}, 512), ({"y": 48, "x": 52}, 8)):
        full = I.classify(cube.chunk({"time": 1, **chunks}), TINY_MODEL, device="cpu", tile=tile).values
        less = I.classify(cube.chunk({"time": 1, **chunks}), short, device="cpu", tile=tile).values
        np.testing.assert_allclose(full, want, atol=ATOL, rtol=0)
        print(f"chunks {chunks}, tile {tile}: max|Δp| halo {TINY_MODEL.halo} {np.abs(full - want).max():.1e}, "
              f"halo {short.halo} {np.abs(less - want).max():.2f}")
        assert np.abs(less - want).max() > 0.01


def test_the_declared_receptive_field_is_what_the_network_sees() -> None:
    """A NaN input pixel reaches exactly the outputs within the declared receptive field."""
    import torch

    net = TINY_MODEL.build(None).double()
    x = torch.zeros(1, len(TINY_MODEL.inputs.names), 40, 40, dtype=torch.float64)
    x[0, 0, 20, 20] = float("nan")
    with torch.no_grad():
        reached = torch.isnan(net(x))[0].any(0).numpy()
    rows, cols = np.flatnonzero(reached.any(1)), np.flatnonzero(reached.any(0))
    assert len(rows) == len(cols) == TINY_MODEL.receptive_field
    # outputs 4 before to 5 after an (even) input: an output sees 4 pixels either side when even, 5 before
    # and 3 after when odd, so tiles on even origins need 4 pixels of context — the declared halo
    assert rows.tolist() == cols.tolist() == list(range(20 - TINY_MODEL.halo, 20 + TINY_MODEL.halo + 2))


def test_nan_inputs_give_nan_and_probabilities_sum_to_one_elsewhere() -> None:
    cube = synthetic_cube(40, 3, nodata_fraction=0.3, seed=1, chunks=16)
    cube["red"][1, 5, 7] = np.nan  # one input missing at one pixel
    prob = _classify(cube).compute()
    invalid = ~np.isfinite(dwcube.model_inputs(cube, TINY_MODEL.inputs).values).all(axis=1)
    assert invalid[1, 5, 7] and 0.25 < invalid.mean() < 0.35
    assert np.isnan(prob.values.transpose(1, 0, 2, 3)[:, invalid]).all()
    np.testing.assert_allclose(prob.sum("class").values[~invalid], 1.0, atol=1e-5)
    lab = dwcube.label(prob).values
    assert lab.dtype == np.uint8 and (lab[invalid] == 255).all() and (lab[~invalid] < 9).all()


def _exploding(root, **_):
    raise AssertionError("the model must not be built for a block without valid pixels")


def test_dates_and_blocks_without_valid_pixels_cost_nothing() -> None:
    entry = ModelEntry(**{**{f: getattr(TINY_MODEL, f) for f in TINY_MODEL.__dataclass_fields__}, "build": _exploding,
                          "name": "never-built"})
    runner = I.ModelRunner(entry, None, device="cpu")
    out = I.predict_block(np.full((2, 6, 20, 20), np.nan, np.float32), runner)
    assert out.shape == (2, 9, 20, 20) and np.isnan(out).all()
    cube = synthetic_cube(32, 2, chunks=16)
    for v in cube.data_vars:
        cube[v] = cube[v].where(False)  # every date empty
    assert np.isnan(I.classify(cube, entry, device="cpu").values).all()


def test_tiles_without_valid_core_are_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    net, dev = I.cached_model(I.ModelRunner(TINY_MODEL, None, device="cpu"))
    monkeypatch.setattr(I, "cached_model", lambda r: (lambda t: calls.append(t.shape[0]) or net(t), dev))
    x = np.zeros((3, 6, 32, 32), np.float32)
    x[1] = np.nan                     # date 1 empty
    x[2, :, :, 16:] = np.nan          # date 2: right half empty
    I.predict_block(x, I.ModelRunner(TINY_MODEL, None, device="cpu", tile=16, batch_size=1))
    assert len(calls) == 4 + 2        # date 0: 4 tiles, date 2: 2 tiles, date 1: none


def test_model_is_built_once_per_process() -> None:
    I.clear_model_cache()
    prob = _classify(synthetic_cube(40, 2, chunks=16))
    prob.compute(scheduler="threads")
    assert len(I._CACHE) == 1
    prob.compute(scheduler="threads")
    assert len(I._CACHE) == 1


def test_result_carries_model_provenance_and_grid() -> None:
    cube = synthetic_cube(32, 2, chunks=16)
    prob = _classify(cube)
    assert prob.name == "probability" and prob.dims == ("time", "class", "y", "x") and prob.dtype == np.float32
    assert list(prob["class"].values) == list(dwcube.CLASSES)
    assert prob.attrs["model"] == "tiny-test" and prob.attrs["model_halo"] == 4
    assert prob.attrs["sensor"] == "sentinel-2-l2a"
    assert prob.odc.geobox == cube.odc.geobox and prob.rio.crs.to_epsg() == 32633
    assert prob.chunks is not None  # lazy
    # derived layers keep the grid too (apply_ufunc drops spatial_ref's attributes otherwise)
    lab = dwcube.label(prob)
    assert lab.rio.crs.to_epsg() == 32633 and lab.odc.geobox == cube.odc.geobox
    conf = dwcube.confidence(prob)
    assert conf.margin.rio.crs.to_epsg() == 32633


def test_dynamic_world_provenance_names_the_weights(shared) -> None:
    cube = synthetic_cube(32, 1, bands=("blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir",
                                        "swir16", "swir22"), sensor="sentinel-2-l1c")
    prob = I.classify(cube, "dynamic-world", weights=shared / "dynamicworld", device="cpu")
    assert prob.attrs["model"] == "dynamic-world"
    assert len(prob.attrs["model_weights_sha256"]) == 64 and "google/dynamicworld" in prob.attrs["model_weights_origin"]


def test_missing_bands_and_bad_parameters_fail_clearly() -> None:
    cube = synthetic_cube(32, 1, bands=("blue", "green", "red"))
    with pytest.raises(MissingInputError, match="nir"):
        _classify(cube)
    with pytest.raises(ValueError, match="multiple of .* alignment"):
        _classify(synthetic_cube(32, 1), tile=7)
    with pytest.raises(ValueError, match="batch_size"):
        _classify(synthetic_cube(32, 1), batch_size=0)


def test_aligned_chunks_keep_the_total_and_respect_the_halo() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        chunks = tuple(int(v) for v in rng.integers(1, 60, rng.integers(1, 8)))
        out = I.aligned_chunks(chunks, alignment=2, minimum=8)
        assert sum(out) == sum(chunks)
        assert all(b % 2 == 0 for b in np.cumsum(out)[:-1])
        assert len(out) == 1 or min(out) >= 8


def test_accessors_delegate() -> None:
    cube = synthetic_cube(32, 2, chunks=16)
    prob = cube.lulc.classify(TINY_MODEL, device="cpu")
    xr.testing.assert_identical(prob.lulc.label().compute(), dwcube.label(prob).compute())
    conf = prob.lulc.confidence().compute()
    assert set(conf.data_vars) == {"top1_probability", "margin", "entropy"}
    p = prob.values
    srt = np.sort(p, axis=1)
    np.testing.assert_allclose(conf.top1_probability.values, srt[:, -1], atol=1e-7)
    np.testing.assert_allclose(conf.margin.values, srt[:, -1] - srt[:, -2], atol=1e-7)
    from scipy.special import entr

    h = entr(p.astype(np.float64)).sum(1) / np.log(9)
    np.testing.assert_allclose(conf.entropy.values, h, atol=1e-5)

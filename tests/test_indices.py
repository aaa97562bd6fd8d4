"""Spectral indices against plain NumPy references; laziness, chunks, attrs, sensor-aware bands."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from dwcube import indices as I

BANDS = ("blue", "green", "red", "nir", "nir08", "swir16", "swir22")


def _safe(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / den
    return np.where((den == 0) | np.isnan(den), np.nan, out)


def reference(name: str, b: dict[str, np.ndarray]) -> np.ndarray:
    nir, red, green, blue, s16, s22 = b["nir"], b["red"], b["green"], b["blue"], b["swir16"], b["swir22"]
    return {
        "ndvi": lambda: _safe(nir - red, nir + red),
        "ndmi": lambda: _safe(nir - s16, nir + s16),
        "ndwi": lambda: _safe(green - nir, green + nir),
        "mndwi": lambda: _safe(green - s16, green + s16),
        "nbr": lambda: _safe(nir - s22, nir + s22),
        "evi": lambda: _safe(2.5 * (nir - red), nir + 6 * red - 7.5 * blue + 1),
        "savi": lambda: _safe(1.5 * (nir - red), nir + red + 0.5),
        "ndbi": lambda: _safe(s16 - nir, s16 + nir),
        "bsi": lambda: _safe((s16 + red) - (nir + blue), (s16 + red) + (nir + blue)),
        "ndsi": lambda: _safe(green - s16, green + s16),
    }[name]()


def _bands(dtype: type, n: int = 20_000, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {b: rng.uniform(-0.1, 0.8, n).astype(dtype) for b in BANDS}
    # edge cases: zeros (zero denominators), negatives, NaN, opposite values
    for b in BANDS:
        out[b][:50] = 0
        out[b][50:60] = np.nan if b == "red" else out[b][50:60]
        out[b][60:70] = -out[b][60:70]
    out["red"][70:80] = -out["nir"][70:80]  # nir + red == 0
    out["swir16"][80:90] = -out["green"][80:90]
    # EVI denominator exactly zero: 0.5 + 6·1 − 7.5·1 + 1 = 0
    out["nir"][90:95], out["red"][90:95], out["blue"][90:95] = 0.5, 1.0, 1.0
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(I.INDICES))
def test_index_matches_numpy_reference(name: str, dtype: type) -> None:
    b = _bands(dtype)
    ix = I.INDICES[name]
    got = ix(*[b[x] for x in ix.bands])
    want = reference(name, b)
    assert got.dtype == dtype
    assert not np.isinf(got).any()
    assert np.array_equal(np.isnan(got), np.isnan(want))
    tol = 2e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, want.astype(dtype), rtol=tol, atol=tol)
    assert np.isnan(got[:50]).all() or name in ("evi", "savi")  # all-zero inputs: 0/0
    if name in ("evi", "savi"):
        assert np.isfinite(got[:50]).all() and (got[:50] == 0).all()  # 0 / (0 + 1) and 0 / 0.5
    if "red" in ix.bands:
        assert np.isnan(got[50:60]).all()  # NaN input -> NaN


def test_zero_denominator_and_nan_give_nan_not_inf() -> None:
    f = np.float32
    assert np.isnan(I.ndvi(f([0.3]), f([-0.3]))).all()
    assert np.isnan(I.ndvi(f([np.nan]), f([0.3]))).all()
    assert np.isnan(I.evi(f([0.5]), f([1.0]), f([1.0]))).all()
    assert np.isnan(I.normalized_difference(f([0.0]), f([0.0]))).all()
    assert I.normalized_difference(f([3.0]), f([1.0]))[0] == f(0.5)


def test_ndsi_and_mndwi_are_the_same_formula() -> None:
    b = _bands(np.float32)
    np.testing.assert_array_equal(I.ndsi(b["green"], b["swir16"]), I.mndwi(b["green"], b["swir16"]))


def _cube(chunks: dict | None, sensor: str = "sentinel-2-l2a") -> xr.Dataset:
    rng = np.random.default_rng(5)
    shape = (3, 60, 70)
    data = {b: (("time", "y", "x"), rng.uniform(0, 0.6, shape).astype(np.float32), {"units": "1", "long_name": b})
            for b in BANDS}
    ds = xr.Dataset(data, coords={"time": np.arange(3), "y": np.arange(60)[::-1] * 10.0, "x": np.arange(70) * 10.0},
                    attrs={"sensor": sensor})
    ds["red"][0, :5, :5] = np.nan
    return ds.chunk(chunks) if chunks else ds


def test_lazy_chunk_preserving_and_chunk_independent() -> None:
    ref = _cube(None).lulc.indices(list(I.INDICES))
    for chunks in ({"time": 1, "y": 32, "x": 32}, {"time": 3, "y": 17, "x": 70}):
        cube = _cube(chunks)
        out = cube.lulc.indices(["ndvi", "evi", "bsi"])
        for v in out.data_vars:
            assert isinstance(out[v].data, da.Array), "must stay lazy"
            assert out[v].chunks == cube.red.chunks
            assert out[v].dtype == np.float32
            np.testing.assert_array_equal(out[v].values, ref[v].values)
        assert out.ndvi.coords["y"].equals(cube.y)
    assert np.isnan(ref.ndvi.values[0, :5, :5]).all()


def test_attrs_are_fresh_and_describe_the_index() -> None:
    out = _cube(None).lulc.indices("ndvi")
    assert out.ndvi.attrs["formula"] == "(nir - red) / (nir + red)"
    assert out.ndvi.attrs["long_name"].startswith("Normalised difference vegetation")
    assert out.ndvi.attrs["units"] == "1" and out.ndvi.attrs["bands"] == "nir,red"


def test_landsat_uses_the_narrow_nir() -> None:
    cube = _cube(None, sensor="landsat-c2-l2-oli")
    out = cube.lulc.indices(["ndvi"])
    assert out.ndvi.attrs["bands"] == "nir08,red"
    np.testing.assert_array_equal(out.ndvi.values, I.ndvi(cube.nir08, cube.red).values)
    s2 = _cube(None).lulc.indices(["ndvi"], nir="nir08")
    assert s2.ndvi.attrs["bands"] == "nir08,red"
    no_b08 = _cube(None).drop_vars("nir").lulc.indices(["ndmi"])
    assert no_b08.ndmi.attrs["bands"] == "nir08,swir16"


def test_unknown_index_and_missing_band_errors() -> None:
    with pytest.raises(KeyError, match="unknown index ndxi; known: ndvi"):
        _cube(None).lulc.indices(["ndxi"])
    with pytest.raises(KeyError, match="'evi' needs band\\(s\\) blue"):
        _cube(None).drop_vars("blue").lulc.indices(["evi"])
    with pytest.raises(TypeError, match="takes 3 arrays"):
        I.evi(np.zeros(2), np.zeros(2))


def test_mixed_dask_and_numpy_inputs_align() -> None:
    a = da.from_array(np.float32([0.4, 0.2, 0.1, 0.3, 0.5]), chunks=2)
    b = np.float32([0.1, 0.2, 0.3, 0.1, 0.5])
    got = I.ndvi(a, b)
    assert got.chunks == a.chunks
    np.testing.assert_allclose(got.compute(), (a.compute() - b) / (a.compute() + b), rtol=1e-6)

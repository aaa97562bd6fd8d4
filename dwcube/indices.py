"""Spectral indices as Numba ufuncs: one pass over the inputs, no temporaries, NaN-safe.

Formulas (``DESIGN.md``; common band names, ``nir`` is the narrow NIR ``nir08``
on Landsat):

=======  ==========================================================
NDVI     (nir − red) / (nir + red)
NDMI     (nir − swir16) / (nir + swir16)
NDWI     (green − nir) / (green + nir)
MNDWI    (green − swir16) / (green + swir16)
NBR      (nir − swir22) / (nir + swir22)
EVI      2.5 (nir − red) / (nir + 6 red − 7.5 blue + 1)
SAVI     1.5 (nir − red) / (nir + red + 0.5)
NDBI     (swir16 − nir) / (swir16 + nir)
BSI      ((swir16 + red) − (nir + blue)) / ((swir16 + red) + (nir + blue))
NDSI     (green − swir16) / (green + swir16)   (same formula as MNDWI)
=======  ==========================================================

A zero denominator or a NaN input gives NaN, never ``inf``.  Each kernel has
float32 and float64 loops: float32 reflectance gives float32 indices.

Faces
-----
* ufuncs on NumPy arrays: ``ndvi(nir, red)``; they also take Dask arrays and
  xarray objects (lazily, chunks and coordinates kept, fresh ``attrs``);
* :func:`compute` / ``ds.lulc.indices([...])`` on a reflectance Dataset, with
  sensor-aware band choice.

Dask graphs reach the kernels through module-level functions (:func:`_block`):
a Numba ufunc placed in a task is pickled by value and recompiled on every
worker task.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import xarray as xr

__all__ = [
    "Index",
    "INDICES",
    "compute",
    "normalized_difference",
    "ndvi",
    "ndmi",
    "ndwi",
    "mndwi",
    "nbr",
    "evi",
    "savi",
    "ndbi",
    "bsi",
    "ndsi",
]

_SIG2 = ["float32(float32, float32)", "float64(float64, float64)"]
_SIG3 = ["float32(float32, float32, float32)", "float64(float64, float64, float64)"]
_SIG4 = ["float32(float32, float32, float32, float32)", "float64(float64, float64, float64, float64)"]


@numba.vectorize(_SIG2, nopython=True, cache=True)
def _nd(a, b):  # type: ignore[no-untyped-def]
    den = a + b
    if den == 0 or den != den:  # zero or NaN (NaN input)
        return np.nan
    return (a - b) / den


# Constants are float32 (all exactly representable): a Python float literal would
# promote the float32 loop to float64 arithmetic.
_F6, _F7_5, _F2_5, _F1_5, _F0_5, _F1 = (np.float32(v) for v in (6.0, 7.5, 2.5, 1.5, 0.5, 1.0))


@numba.vectorize(_SIG3, nopython=True, cache=True)
def _evi(nir, red, blue):  # type: ignore[no-untyped-def]
    den = nir + _F6 * red - _F7_5 * blue + _F1
    if den == 0 or den != den:
        return np.nan
    return _F2_5 * (nir - red) / den


@numba.vectorize(_SIG2, nopython=True, cache=True)
def _savi(nir, red):  # type: ignore[no-untyped-def]
    den = nir + red + _F0_5
    if den == 0 or den != den:
        return np.nan
    return _F1_5 * (nir - red) / den


@numba.vectorize(_SIG4, nopython=True, cache=True)
def _bsi(swir16, red, nir, blue):  # type: ignore[no-untyped-def]
    p = swir16 + red
    q = nir + blue
    den = p + q
    if den == 0 or den != den:
        return np.nan
    return (p - q) / den


_KERNELS: dict[str, Callable[..., Any]] = {"nd": _nd, "evi": _evi, "savi": _savi, "bsi": _bsi}


def _block(*arrays: np.ndarray, kernel: str) -> np.ndarray:
    """Apply the named kernel to NumPy blocks (the function Dask tasks reference).

    The compiled loop may evaluate the division before selecting NaN for a zero
    denominator, which sets the FPU's divide flag: the result is right, the
    warning is noise.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        return _KERNELS[kernel](*arrays)


@dataclass(frozen=True)
class Index:
    """One spectral index.

    Parameters
    ----------
    name
        Short name (``"ndvi"``), also the output variable name.
    long_name
        Human-readable name for ``attrs``.
    formula
        The formula in common band names, for ``attrs``.
    bands
        Common band names of the kernel's arguments, in order (``"nir"`` means
        the sensor's NIR: ``nir08`` on Landsat).
    kernel
        Key of the Numba kernel.
    """

    name: str
    long_name: str
    formula: str
    bands: tuple[str, ...]
    kernel: str

    def __call__(self, *arrays: Any) -> Any:
        """Compute the index on NumPy, Dask or xarray inputs (in ``bands`` order).

        Examples
        --------
        >>> INDICES["ndvi"](np.float32([0.4]), np.float32([0.1]))
        array([0.6], dtype=float32)
        """
        if len(arrays) != len(self.bands):
            raise TypeError(f"{self.name} takes {len(self.bands)} arrays ({', '.join(self.bands)}), got {len(arrays)}")
        return _apply(self, arrays)

    @property
    def attrs(self) -> dict[str, str]:
        """Fresh ``attrs`` for the result (never the bands' stale ones)."""
        return {"long_name": self.long_name, "formula": self.formula, "units": "1"}


def _result_dtype(arrays: Sequence[Any]) -> np.dtype:
    # a.dtype, not getattr(a, "dtype", np.asarray(a).dtype): that default would compute a lazy input
    dt = np.result_type(*[a.dtype if hasattr(a, "dtype") else np.asarray(a).dtype for a in arrays])
    return np.dtype(np.float32) if dt == np.float32 or (dt.kind in "iu" and dt.itemsize <= 2) else np.dtype(np.float64)


def _apply(index: Index, arrays: Sequence[Any]) -> Any:
    import dask.array as da

    dtype = _result_dtype(arrays)
    if any(isinstance(a, (xr.DataArray, xr.Dataset)) for a in arrays):
        out = xr.apply_ufunc(
            _block, *arrays, kwargs={"kernel": index.kernel}, dask="parallelized", output_dtypes=[dtype],
            keep_attrs=False,
        )
        out.attrs = index.attrs
        return out.rename(index.name)
    if any(isinstance(a, da.Array) for a in arrays):
        arrs = da.broadcast_arrays(*[da.asarray(a) for a in arrays])
        ref = next(b for a, b in zip(arrays, arrs, strict=True) if isinstance(a, da.Array))
        arrs = [a.rechunk(ref.chunks) for a in arrs]
        return da.map_blocks(_block, *arrs, kernel=index.kernel, dtype=dtype)
    return _block(*[np.asarray(a, dtype=dtype) for a in arrays], kernel=index.kernel)


def _nd_index(name: str, long_name: str, a: str, b: str) -> Index:
    return Index(name, long_name, f"({a} - {b}) / ({a} + {b})", (a, b), "nd")


#: The catalogue, by short name.
INDICES: dict[str, Index] = {
    ix.name: ix
    for ix in (
        _nd_index("ndvi", "Normalised difference vegetation index", "nir", "red"),
        _nd_index("ndmi", "Normalised difference moisture index", "nir", "swir16"),
        _nd_index("ndwi", "Normalised difference water index (McFeeters)", "green", "nir"),
        _nd_index("mndwi", "Modified normalised difference water index", "green", "swir16"),
        _nd_index("nbr", "Normalised burn ratio", "nir", "swir22"),
        Index("evi", "Enhanced vegetation index", "2.5 (nir - red) / (nir + 6 red - 7.5 blue + 1)",
              ("nir", "red", "blue"), "evi"),
        Index("savi", "Soil-adjusted vegetation index (L = 0.5)", "1.5 (nir - red) / (nir + red + 0.5)",
              ("nir", "red"), "savi"),
        _nd_index("ndbi", "Normalised difference built-up index", "swir16", "nir"),
        Index("bsi", "Bare soil index", "((swir16 + red) - (nir + blue)) / ((swir16 + red) + (nir + blue))",
              ("swir16", "red", "nir", "blue"), "bsi"),
        _nd_index("ndsi", "Normalised difference snow index", "green", "swir16"),
    )
}

ndvi = INDICES["ndvi"]
ndmi = INDICES["ndmi"]
ndwi = INDICES["ndwi"]
mndwi = INDICES["mndwi"]
nbr = INDICES["nbr"]
evi = INDICES["evi"]
savi = INDICES["savi"]
ndbi = INDICES["ndbi"]
bsi = INDICES["bsi"]
ndsi = INDICES["ndsi"]


def normalized_difference(a: Any, b: Any, name: str = "nd") -> Any:
    """``(a − b) / (a + b)`` of any two arrays, NaN for a zero denominator or NaN input.

    Examples
    --------
    >>> normalized_difference(np.float32([1, 0, np.nan]), np.float32([0, 0, 1]))
    array([ 1., nan, nan], dtype=float32)
    """
    return _apply(Index(name, f"normalised difference ({name})", "(a - b) / (a + b)", ("a", "b"), "nd"), (a, b))


def _nir_band(ds: xr.Dataset, nir: str) -> str:
    if nir != "auto":
        return nir
    if str(ds.attrs.get("sensor", "")).startswith("landsat") or ("nir" not in ds and "nir08" in ds):
        return "nir08"
    return "nir"


def compute(ds: xr.Dataset, names: str | Sequence[str], *, nir: str = "auto") -> xr.Dataset:
    """Compute indices of a reflectance cube; lazy when the cube is.

    Parameters
    ----------
    ds
        Reflectance Dataset with common band names (from :func:`dwcube.load`).
    names
        Index names from :data:`INDICES` (``"ndvi"``, ``["ndvi", "ndmi"]``).
    nir
        Band used for ``nir``: ``"auto"`` (``nir08`` for Landsat cubes or when the
        cube has no ``nir``, else ``nir``), or a band name. Recorded in ``attrs``.

    Returns
    -------
    xarray.Dataset
        One variable per index, same dims, chunks and coordinates as the bands;
        ``attrs``: long name, formula, units and the bands used.

    Raises
    ------
    KeyError
        For an unknown index (naming the known ones) or a missing band (naming it).

    Examples
    --------
    >>> idx = compute(ds, ["ndvi", "ndmi"])  # doctest: +SKIP
    >>> idx.ndvi.attrs["formula"]  # doctest: +SKIP
    '(nir - red) / (nir + red)'
    """
    if isinstance(names, str):
        names = [names]
    unknown = [n for n in names if n.lower() not in INDICES]
    if unknown:
        raise KeyError(f"unknown index {', '.join(unknown)}; known: {', '.join(INDICES)}")
    nir_band = _nir_band(ds, nir)
    out = {}
    for n in names:
        ix = INDICES[n.lower()]
        bands = [nir_band if b == "nir" else b for b in ix.bands]
        missing = [b for b in bands if b not in ds.data_vars]
        if missing:
            raise KeyError(
                f"index {ix.name!r} needs band(s) {', '.join(missing)}, not in the cube "
                f"(it has {', '.join(map(str, ds.data_vars))})"
            )
        arr = ix(*[ds[b] for b in bands])
        arr.attrs["bands"] = ",".join(bands)
        out[ix.name] = arr
    return xr.Dataset(out, attrs={k: v for k, v in ds.attrs.items() if k in ("sensor", "product_level")})

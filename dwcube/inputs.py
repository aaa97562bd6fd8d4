"""Model input stacks: the one place where a model's inputs are assembled.

A model declares an :class:`InputSpec` (ordered features: bands, spectral
indices, elevation, slope, each with its fixed normalisation); :func:`model_inputs`
turns a reflectance cube (and a DEM on its grid) into the normalised array
``(time, feature, y, x)`` the model consumes.  Inference and training both call
it, so the two can never disagree about inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import xarray as xr

from . import indices as _indices
from .sensors.base import MessageKeyError

__all__ = ["Feature", "InputSpec", "model_inputs", "MissingInputError"]

FeatureKind = Literal["band", "index", "elevation", "slope"]


class MissingInputError(MessageKeyError):
    """The cube (or DEM) lacks inputs the model needs; the message names all of them."""


@dataclass(frozen=True)
class Feature:
    """One model input and its normalisation ``(x − shift) / scale``, then an optional clip.

    Parameters
    ----------
    name
        Band common name (``"red"``), index name (``"ndvi"``), ``"elevation"`` or ``"slope"``.
    kind
        ``"band"``, ``"index"``, ``"elevation"`` or ``"slope"``.
    shift, scale
        Fixed normalisation, stored with a model's weights.
    clip
        ``(low, high)`` applied after normalising, or ``None``.

    Examples
    --------
    >>> Feature("elevation", "elevation", shift=500.0, scale=1000.0)
    Feature(name='elevation', kind='elevation', shift=500.0, scale=1000.0, clip=None)
    """

    name: str
    kind: FeatureKind
    shift: float = 0.0
    scale: float = 1.0
    clip: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("band", "index", "elevation", "slope"):
            raise ValueError(f"feature kind must be band, index, elevation or slope, got {self.kind!r}")
        if not (np.isfinite(self.scale) and self.scale != 0):
            raise ValueError(f"feature {self.name!r}: scale must be finite and non-zero, got {self.scale}")
        if self.kind == "index" and self.name not in _indices.INDICES:
            raise ValueError(f"unknown index {self.name!r}; known: {', '.join(_indices.INDICES)}")


@dataclass(frozen=True)
class InputSpec:
    """Ordered inputs of a model.

    Examples
    --------
    >>> spec = InputSpec((Feature("red", "band", scale=0.3), Feature("ndvi", "index"),
    ...                   Feature("elevation", "elevation", shift=500, scale=1000)))
    >>> spec.names
    ('red', 'ndvi', 'elevation')
    """

    features: tuple[Feature, ...]
    nir: str = "auto"
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        names = [f.name for f in self.features]
        if not names:
            raise ValueError("an InputSpec needs at least one feature")
        if len(set(names)) != len(names):
            raise ValueError(f"feature names must be unique, got {names}")

    @property
    def names(self) -> tuple[str, ...]:
        """Feature names in order."""
        return tuple(f.name for f in self.features)

    def needs_dem(self) -> bool:
        """Whether elevation or slope is an input."""
        return any(f.kind in ("elevation", "slope") for f in self.features)


def _missing(cube: xr.Dataset, spec: InputSpec, dem: xr.Dataset | None) -> list[str]:
    nir = _indices._nir_band(cube, spec.nir)
    out = []
    for f in spec.features:
        if f.kind == "band":
            band = nir if f.name == "nir" else f.name
            if band not in cube.data_vars:
                out.append(f"band {band}")
        elif f.kind == "index":
            for b in _indices.INDICES[f.name].bands:
                band = nir if b == "nir" else b
                if band not in cube.data_vars:
                    out.append(f"band {band} (for {f.name})")
        else:
            if dem is None or f.kind not in dem.data_vars:
                out.append(f"{f.kind} (pass dem=load_dem(...){', with_slope=True' if f.kind == 'slope' else ''})")
    return list(dict.fromkeys(out))


def model_inputs(cube: xr.Dataset, spec: InputSpec, *, dem: xr.Dataset | None = None) -> xr.DataArray:
    """Stack and normalise a model's inputs: ``(time, feature, y, x)`` float32, lazily.

    Parameters
    ----------
    cube
        Reflectance cube from :func:`dwcube.load` (dims ``time, y, x``).
    spec
        The model's inputs.
    dem
        Output of :func:`dwcube.elevation.load_dem` on the cube's grid, when the spec
        needs elevation or slope; static layers are repeated for every date.

    Returns
    -------
    xarray.DataArray
        Named ``inputs``, ``feature`` coordinate = ``spec.names``, one chunk along
        ``feature``, the cube's chunks along ``y``/``x``; NaN wherever an input is
        NaN; ``attrs`` record each feature's normalisation.

    Raises
    ------
    MissingInputError
        Naming every input that the cube or DEM lacks.

    Examples
    --------
    >>> x = model_inputs(cube, spec, dem=load_dem(dem_catalog, cube))  # doctest: +SKIP
    >>> x.sizes  # doctest: +SKIP
    Frozen({'time': 12, 'feature': 9, 'y': 1024, 'x': 1024})
    """
    missing = _missing(cube, spec, dem)
    if missing:
        raise MissingInputError(f"the model needs inputs that are missing: {'; '.join(missing)}")
    nir = _indices._nir_band(cube, spec.nir)
    wanted_idx = [f.name for f in spec.features if f.kind == "index"]
    idx = _indices.compute(cube, wanted_idx, nir=spec.nir) if wanted_idx else None
    layers = []
    for f in spec.features:
        if f.kind == "band":
            arr = cube[nir if f.name == "nir" else f.name]
        elif f.kind == "index":
            arr = idx[f.name]  # type: ignore[index]
        else:
            arr = dem[f.kind].broadcast_like(cube[next(iter(cube.data_vars))])  # type: ignore[index]
        arr = ((arr.astype(np.float32) - np.float32(f.shift)) / np.float32(f.scale)).astype(np.float32)
        if f.clip is not None:
            arr = arr.clip(*f.clip)
        layers.append(arr.drop_attrs() if hasattr(arr, "drop_attrs") else arr)
    ydim, xdim = cube.odc.spatial_dims
    stacked = xr.concat(layers, dim=xr.DataArray(list(spec.names), dims="feature", name="feature"),
                        coords="minimal", compat="override", join="exact")
    stacked = stacked.transpose("time", "feature", ydim, xdim)
    if stacked.chunks is not None:
        stacked = stacked.chunk({"feature": -1})
    stacked.name = "inputs"
    stacked.attrs = {
        "features": list(spec.names),
        "normalisation": [f"{f.name}: (x - {f.shift:g}) / {f.scale:g}" + (f", clip {f.clip}" if f.clip else "")
                          for f in spec.features],
        "nir_band": nir,
    }
    return stacked

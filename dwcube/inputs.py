"""Model input stacks: the one place where a model's inputs are assembled.

A model declares an :class:`InputSpec` (ordered features: bands, spectral
indices, elevation, slope, each with its fixed normalisation); :func:`model_inputs`
turns a reflectance cube (and a DEM on its grid) into the normalised array
``(time, feature, y, x)`` the model consumes.  Inference and training both call
it, so the two can never disagree about inputs.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import odc.geo.xr  # noqa: F401 - registers .odc (used here) now that `import dwcube` is lazy
import xarray as xr

from . import indices as _indices
from .sensors.base import MessageKeyError

__all__ = ["Feature", "InputSpec", "model_inputs", "MissingInputError", "OutOfDomainWarning"]

FeatureKind = Literal["band", "index", "elevation", "slope"]


class MissingInputError(MessageKeyError):
    """The cube (or DEM) lacks inputs the model needs; the message names all of them."""


class OutOfDomainWarning(UserWarning):
    """The cube is not the kind of data the model was trained on (e.g. L2A for an L1C model)."""


@dataclass(frozen=True)
class Feature:
    """One model input and its fixed normalisation.

    In order: ``x ← ln(1 + log_gain·x)`` when ``log_gain`` is set; ``x ← (x − shift) / scale``;
    ``x ← sigmoid(gain·x + bias)`` when ``sigmoid = (gain, bias)`` is set; then the clip.
    Linear features are evaluated in float32; features with a logarithm or a sigmoid in
    float64, then cast to float32 (the arithmetic of Dynamic World's own runner).

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
    log_gain
        Gain inside a leading ``ln(1 + gain·x)``; ``None`` for none.  Dynamic World's
        ``ln(1 + 0.005·DN)`` on reflectance (DN/10000) is ``log_gain=50``.
    sigmoid
        ``(gain, bias)`` of a trailing logistic ``1 / (1 + exp(−(gain·x + bias)))``.

    Examples
    --------
    >>> Feature("elevation", "elevation", shift=500.0, scale=1000.0)
    Feature(name='elevation', kind='elevation', shift=500.0, scale=1000.0, clip=None, log_gain=None, sigmoid=None)
    >>> f = Feature("blue", "band", shift=1.7417, scale=2.0233, log_gain=50.0, sigmoid=(5.0, -1.0))
    >>> round(float(f.apply(np.float64(0.1))), 4)
    0.2939
    """

    name: str
    kind: FeatureKind
    shift: float = 0.0
    scale: float = 1.0
    clip: tuple[float, float] | None = None
    log_gain: float | None = None
    sigmoid: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("band", "index", "elevation", "slope"):
            raise ValueError(f"feature kind must be band, index, elevation or slope, got {self.kind!r}")
        if not (np.isfinite(self.scale) and self.scale != 0):
            raise ValueError(f"feature {self.name!r}: scale must be finite and non-zero, got {self.scale}")
        if self.kind == "index" and self.name not in _indices.INDICES:
            raise ValueError(f"unknown index {self.name!r}; known: {', '.join(_indices.INDICES)}")
        if self.log_gain is not None and not (np.isfinite(self.log_gain) and self.log_gain > 0):
            raise ValueError(f"feature {self.name!r}: log_gain must be finite and positive, got {self.log_gain}")

    @property
    def linear(self) -> bool:
        """Whether the normalisation is affine (then evaluated in float32)."""
        return self.log_gain is None and self.sigmoid is None

    def apply(self, x: Any) -> Any:
        """Normalise ``x`` (NumPy, Dask or xarray); float32 out, NaN stays NaN.

        Examples
        --------
        >>> Feature("red", "band", scale=0.5).apply(np.array([0.25, np.nan], dtype=np.float32))
        array([0.5, nan], dtype=float32)
        """
        if self.linear:
            x = (x.astype(np.float32) - np.float32(self.shift)) / np.float32(self.scale)
        else:
            x = x.astype(np.float64)
            if self.log_gain is not None:
                # below -1/gain the logarithm is undefined: NaN, never a silent clamp
                x = np.log1p(x * self.log_gain)
            x = (x - self.shift) / self.scale
            if self.sigmoid is not None:
                gain, bias = self.sigmoid
                e = np.exp(x * gain + bias)
                x = e / (e + 1.0)
        x = x.astype(np.float32)
        if self.clip is not None:
            x = x.clip(*self.clip)
        return x

    def describe(self) -> str:
        """The normalisation as a formula, for ``attrs``."""
        x = f"ln(1 + {self.log_gain:g}·x)" if self.log_gain is not None else "x"
        x = f"({x} - {self.shift:.17g}) / {self.scale:.17g}" if self.log_gain is not None or self.sigmoid else \
            f"({x} - {self.shift:g}) / {self.scale:g}"
        if self.sigmoid is not None:
            x = f"sigmoid({self.sigmoid[0]:g}·{x} + {self.sigmoid[1]:g})"
        return f"{self.name}: {x}" + (f", clip {self.clip}" if self.clip else "")


@dataclass(frozen=True)
class InputSpec:
    """Ordered inputs of a model, and the data it was trained on.

    Parameters
    ----------
    features
        The inputs, in the model's channel order.
    nir
        Which band ``"nir"`` means (see :func:`dwcube.indices.compute`).
    sensors
        Sensor names (``cube.attrs["sensor"]``) the model was trained on; other sensors
        are accepted with an :class:`OutOfDomainWarning` and an ``out_of_domain`` attribute.
        Empty: any sensor.
    resolution, resampling
        The pixel size (m) and resampling the model expects its inputs loaded with
        (passed to :func:`dwcube.load` by inference); ``None``: no requirement.

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
    sensors: tuple[str, ...] = ()
    resolution: float | None = None
    resampling: str | None = None

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


def _domain_problems(cube: xr.Dataset, spec: InputSpec) -> str:
    problems = []
    sensor = cube.attrs.get("sensor")
    if spec.sensors and sensor:
        other = sorted(set(str(sensor).split(",")) - set(spec.sensors))
        if other:
            problems.append(f"sensor {', '.join(other)} (the model was trained on {', '.join(spec.sensors)})")
    resampling = cube.attrs.get("resampling")
    if spec.resampling and resampling and resampling != spec.resampling:
        problems.append(f"bands resampled with {resampling!r} (the model expects {spec.resampling!r})")
    return "; ".join(problems)


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

    Warns
    -----
    OutOfDomainWarning
        When the cube's sensor or resampling is not what the model was trained on; the
        result then carries ``attrs["out_of_domain"]`` saying why.

    Examples
    --------
    >>> x = model_inputs(cube, spec, dem=load_dem(dem_catalog, cube))  # doctest: +SKIP
    >>> x.sizes  # doctest: +SKIP
    Frozen({'time': 12, 'feature': 9, 'y': 1024, 'x': 1024})
    """
    missing = _missing(cube, spec, dem)
    if missing:
        raise MissingInputError(f"the model needs inputs that are missing: {'; '.join(missing)}")
    out_of_domain = _domain_problems(cube, spec)
    if out_of_domain:
        warnings.warn(f"inputs outside the model's domain: {out_of_domain}", OutOfDomainWarning, stacklevel=2)
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
        arr = f.apply(arr)
        layers.append(arr.drop_attrs(deep=False) if hasattr(arr, "drop_attrs") else arr)
    ydim, xdim = cube.odc.spatial_dims
    stacked = xr.concat(layers, dim=xr.DataArray(list(spec.names), dims="feature", name="feature"),
                        coords="minimal", compat="override", join="exact")
    stacked = stacked.transpose("time", "feature", ydim, xdim)
    if stacked.chunks is not None:
        stacked = stacked.chunk({"feature": -1})
    stacked.name = "inputs"
    stacked.attrs = {
        "features": list(spec.names),
        "normalisation": [f.describe() for f in spec.features],
        "nir_band": nir,
    }
    for key in ("sensor", "product_level", "radiometry"):
        if key in cube.attrs:
            stacked.attrs[key] = cube.attrs[key]
    if out_of_domain:
        stacked.attrs["out_of_domain"] = out_of_domain
    return stacked

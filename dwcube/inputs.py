"""Model input stacks: the one place where a model's inputs are assembled.

A model declares an :class:`InputSpec` (ordered features: bands, spectral
indices, elevation, slope, each with its fixed normalisation); :func:`model_inputs`
turns a reflectance cube (and a DEM on its grid) into the normalised array
``(time, feature, y, x)`` the model consumes.  Inference and training both call
it, so the two can never disagree about inputs.

Reflectance scale
-----------------
Models take reflectance 0–1.  A cube of digital numbers (reflectance × 10000), one divided
by 10000 twice, or a float 0–1 product scaled as DN all give plausible-looking labels, so
:func:`model_inputs` checks the scale, cheaply, on the data actually computed: every block
of the band inputs passes :func:`check_reflectance_scale` on its way into the model
(comparisons and counts over values already in memory), and integer bands are refused
before anything is built.  Digital numbers are refused (:class:`ReflectanceScaleError`);
values 10000 times too small are warned about (:class:`ReflectanceScaleWarning`).  The
thresholds leave real data alone: top-of-atmosphere snow and bright cloud stay below
~1.6 and saturated pixels are few, so a block where 10 % of the valid values exceed 3
is digital numbers; dark water still has a blue or green band above 0.002, so a block
where 99 % of all its bands' valid values lie below 0.002 (with at least 1000 of them,
not all zero) is too small.
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

__all__ = ["Feature", "InputSpec", "model_inputs", "MissingInputError", "OutOfDomainWarning",
           "ReflectanceScaleError", "ReflectanceScaleWarning", "check_reflectance_scale", "reflectance_scale_problem"]

FeatureKind = Literal["band", "index", "elevation", "slope"]


class MissingInputError(MessageKeyError):
    """The cube (or DEM) lacks inputs the model needs; the message names all of them."""


class OutOfDomainWarning(UserWarning):
    """The cube is not the kind of data the model was trained on (e.g. L2A for an L1C model)."""


class ReflectanceScaleError(ValueError):
    """Band inputs are not reflectance 0–1 (digital numbers, or integer bands)."""


class ReflectanceScaleWarning(UserWarning):
    """Band inputs look 10000 times smaller than reflectance (divided twice, or 0–1 data read as DN)."""


#: A valid value above this is not a reflectance (TOA snow and cloud stay below ~1.6).
DN_LIKE_ABOVE = 3.0
#: Share of a block's valid values above :data:`DN_LIKE_ABOVE` that makes it digital numbers.
DN_LIKE_SHARE = 0.1
#: 99 % of a block's valid values (all bands) below this: reflectance 10000 times too small.
TOO_SMALL_BELOW = 0.002
#: Fewest valid values a block needs before the too-small test is made.
TOO_SMALL_MIN_VALID = 1000

_REMEDY = ("Load the cube with dwcube.load, which scales every product to reflectance, or convert it yourself: "
           "Sentinel-2 DN / 10000 (processing baseline 04.00 and later: (DN - 1000) / 10000), "
           "Landsat Collection 2 Level-2 DN * 2.75e-5 - 0.2")


def reflectance_scale_problem(values: np.ndarray | list[np.ndarray] | tuple[np.ndarray, ...],
                              names: tuple[str, ...] | list[str] = ()) -> tuple[str, str] | None:
    """What is wrong with the scale of a block of band values, if anything.

    Parameters
    ----------
    values
        Band values of one block (an array, or one array per band; any shape; NaN = no
        data), judged all together.
    names
        Band names, for the message.

    Returns
    -------
    ``None`` when the values look like reflectance 0–1; else ``("digital numbers", message)``
    or ``("too small", message)``, the message naming what was found and what is expected.

    Examples
    --------
    >>> reflectance_scale_problem(np.array([0.02, 0.31, 1.4, np.nan])) is None
    True
    >>> reflectance_scale_problem(np.array([312.0, 4120.0, np.nan]), ["red"])[0]
    'digital numbers'
    >>> reflectance_scale_problem([np.full(1500, 3.1e-5), np.full(1500, 1e-4)], ["red", "nir"])[0]
    'too small'
    """
    parts = [np.asarray(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    n = high = nonzero = above = 0
    for v in parts:  # counts only: no copy of the block
        finite = np.isfinite(v)
        n += int(np.count_nonzero(finite))
        high += int(np.count_nonzero(v > DN_LIKE_ABOVE))
        above += int(np.count_nonzero(v > TOO_SMALL_BELOW))
        nonzero += int(np.count_nonzero(finite & (v != 0)))
    if n == 0:
        return None
    kind = None
    if high >= max(1, DN_LIKE_SHARE * n):
        kind = "digital numbers"
    elif n >= TOO_SMALL_MIN_VALID and nonzero and above < 0.01 * n:
        kind = "too small"
    if kind is None:
        return None
    v = np.concatenate([p[np.isfinite(p)].ravel() for p in parts]).astype(np.float64)
    lo, hi, p99 = float(v.min()), float(v.max()), float(np.percentile(v, 99))
    which = f"band{'s' if len(names) != 1 else ''} {', '.join(names)}" if names else "the bands"
    if kind == "digital numbers":
        return kind, (
            f"the inputs look like digital numbers, not reflectance: {high / n:.0%} of the {n} valid values of "
            f"{which} in one block exceed {DN_LIKE_ABOVE:g} (found {lo:.4g} to {hi:.4g}, 99th percentile "
            f"{p99:.4g}); the model expects reflectance 0-1. {_REMEDY}.")
    return kind, (
        f"the inputs look 10000 times too small for reflectance: 99% of the {n} valid values of {which} in one "
        f"block are below {TOO_SMALL_BELOW:g} (99th percentile {p99:.3g}, largest {hi:.3g}); the model expects "
        "reflectance 0-1 (vegetation near-infrared ~0.3). Was the cube divided by 10000 twice, or a float "
        "0-1 product scaled as digital numbers? " + _REMEDY + ".")


def check_reflectance_scale(*blocks: np.ndarray, names: tuple[str, ...] | list[str] = ()) -> None:
    """Raise :class:`ReflectanceScaleError` for digital numbers, warn (:class:`ReflectanceScaleWarning`)
    for values 10000 times too small; see :func:`reflectance_scale_problem`.

    Examples
    --------
    >>> check_reflectance_scale(np.array([[0.05, 0.4]]), np.array([[0.1, 0.2]]), names=("red", "nir"))
    >>> check_reflectance_scale(np.array([[500.0, 4000.0]]), names=("red",))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dwcube.inputs.ReflectanceScaleError: the inputs look like digital numbers, not reflectance: ... 0-1. ...
    """
    if not blocks:
        return
    found = reflectance_scale_problem(list(blocks), names)
    if found is None:
        return
    kind, message = found
    if kind == "digital numbers":
        raise ReflectanceScaleError(message)
    warnings.warn(message, ReflectanceScaleWarning, stacklevel=2)


def _checked_block(stacked: np.ndarray, *bands: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    check_reflectance_scale(*bands, names=names)
    return stacked


def _band_inputs(cube: xr.Dataset, spec: InputSpec, nir: str) -> list[str]:
    """The cube's bands that the spec reads (as bands or through indices), in order."""
    used: list[str] = []
    for f in spec.features:
        if f.kind == "band":
            used.append(nir if f.name == "nir" else f.name)
        elif f.kind == "index":
            used += [nir if b == "nir" else b for b in _indices.INDICES[f.name].bands]
    return list(dict.fromkeys(used))


@dataclass(frozen=True)
class Feature:
    """One model input and its fixed normalisation.

    In order: ``x ← max(x, floor)`` when ``floor`` is set; ``x ← ln(1 + log_gain·x)`` when
    ``log_gain`` is set; ``x ← (x − shift) / scale``;
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
    floor
        Values below it are raised to it before anything else (NaN stays NaN): surface
        reflectance can be slightly negative (Landsat's is defined down to −0.2), where a
        logarithm would be undefined.  With ``log_gain`` it must lie above ``−1/log_gain``.

    Examples
    --------
    >>> Feature("elevation", "elevation", shift=500.0, scale=1000.0)
    Feature(name='elevation', kind='elevation', shift=500.0, scale=1000.0, clip=None, log_gain=None, sigmoid=None, floor=None)
    >>> Feature("blue", "band", log_gain=20.0, floor=-0.02).apply(np.array([-0.07, 0.0]))
    array([-0.51082563,  0.        ], dtype=float32)
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
    floor: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("band", "index", "elevation", "slope"):
            raise ValueError(f"feature kind must be band, index, elevation or slope, got {self.kind!r}")
        if not (np.isfinite(self.scale) and self.scale != 0):
            raise ValueError(f"feature {self.name!r}: scale must be finite and non-zero, got {self.scale}")
        if self.kind == "index" and self.name not in _indices.INDICES:
            raise ValueError(f"unknown index {self.name!r}; known: {', '.join(_indices.INDICES)}")
        if self.log_gain is not None and not (np.isfinite(self.log_gain) and self.log_gain > 0):
            raise ValueError(f"feature {self.name!r}: log_gain must be finite and positive, got {self.log_gain}")
        if self.floor is not None and self.log_gain is not None and not self.floor > -1.0 / self.log_gain:
            raise ValueError(f"feature {self.name!r}: floor {self.floor} must lie above -1/log_gain "
                             f"= {-1.0 / self.log_gain:g}, where the logarithm is defined")

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
        if self.floor is not None:
            x = np.maximum(x, self.floor)  # NaN propagates: no data stays no data
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
        x = f"max(x, {self.floor:g})" if self.floor is not None else "x"
        x = f"ln(1 + {self.log_gain:g}·{x})" if self.log_gain is not None else x
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


def model_inputs(cube: xr.Dataset, spec: InputSpec, *, dem: xr.Dataset | None = None,
                 check_scale: bool = True) -> xr.DataArray:
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
    check_scale
        Check that the band inputs are reflectance 0–1 (see the module docstring): integer
        bands are refused here, each block is checked when it is computed.  ``False``
        turns the check off (for inputs on another scale on purpose).

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
    ReflectanceScaleError
        When a band input is integer (here), or a block of them is digital numbers (when
        that block is computed).

    Warns
    -----
    OutOfDomainWarning
        When the cube's sensor or resampling is not what the model was trained on; the
        result then carries ``attrs["out_of_domain"]`` saying why.
    ReflectanceScaleWarning
        When a computed block of band inputs is 10000 times smaller than reflectance.

    Examples
    --------
    >>> from dwcube.testing import synthetic_cube
    >>> spec = InputSpec((Feature("red", "band", shift=0.1, scale=0.1), Feature("ndvi", "index")))
    >>> x = model_inputs(synthetic_cube(32, 2, chunks=16), spec)
    >>> dict(x.sizes), x.feature.values.tolist()
    ({'time': 2, 'feature': 2, 'y': 32, 'x': 32}, ['red', 'ndvi'])
    >>> model_inputs(synthetic_cube(32, 1).astype("uint16"), spec)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    dwcube.inputs.ReflectanceScaleError: band inputs must be floating-point reflectance 0-1, but red (uint16), ...
    """
    missing = _missing(cube, spec, dem)
    if missing:
        raise MissingInputError(f"the model needs inputs that are missing: {'; '.join(missing)}")
    out_of_domain = _domain_problems(cube, spec)
    if out_of_domain:
        warnings.warn(f"inputs outside the model's domain: {out_of_domain}", OutOfDomainWarning, stacklevel=2)
    nir = _indices._nir_band(cube, spec.nir)
    used = _band_inputs(cube, spec, nir)
    if check_scale:
        integer = [f"{b} ({cube[b].dtype})" for b in used if cube[b].dtype.kind in "iub"]
        if integer:
            raise ReflectanceScaleError(
                f"band inputs must be floating-point reflectance 0-1, but {', '.join(integer)} "
                f"{'is' if len(integer) == 1 else 'are'} integer (digital numbers?). {_REMEDY}, as float32.")
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
    if check_scale and used:
        raw = [cube[b].transpose("time", ydim, xdim).data for b in used]
        if isinstance(stacked.data, np.ndarray):
            check_reflectance_scale(*(np.asarray(r) for r in raw), names=tuple(used))
        else:
            import dask.array as da

            pairs = [x for r in raw for x in (da.asarray(r), "tyx")]
            checked = da.blockwise(_checked_block, "tfyx", stacked.data, "tfyx", *pairs, names=tuple(used),
                                   dtype=stacked.dtype, meta=np.empty((0, 0, 0, 0), stacked.dtype))
            stacked = stacked.copy(data=checked)
    stacked.name = "inputs"
    stacked.attrs = {
        "features": list(spec.names),
        "normalisation": [f.describe() for f in spec.features],
        "nir_band": nir,
        "scale_check": (f"per block: refused if {DN_LIKE_SHARE:.0%} of the band values exceed {DN_LIKE_ABOVE:g} "
                        f"(digital numbers), warned if 99% lie below {TOO_SMALL_BELOW:g}") if check_scale else "off",
    }
    for key in ("sensor", "product_level", "radiometry"):
        if key in cube.attrs:
            stacked.attrs[key] = cube.attrs[key]
    if out_of_domain:
        stacked.attrs["out_of_domain"] = out_of_domain
    return stacked

"""Sensor descriptions shared by every sensor family.

A :class:`Sensor` says, for one product (say Sentinel-2 L2A), which asset of a
STAC item holds each band under the layouts of the public catalogues, how raw
digital numbers (DN) become reflectance for a given item, which DN is no data,
and how its quality layer becomes a clear-sky mask.  The per-family modules
(:mod:`dwcube.sensors.sentinel2`, :mod:`dwcube.sensors.landsat`) define the
concrete sensors; :mod:`dwcube.sensors` chooses one per item.

Nothing here reads pixels: it is pure metadata plus small, vectorised
functions that the normalisation step maps lazily over Dask blocks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pystac

__all__ = [
    "BandSpec",
    "MaskSpec",
    "Radiometry",
    "Sensor",
    "SensorError",
    "UnknownBandError",
]


class SensorError(ValueError):
    """An item cannot be interpreted by the chosen sensor (missing metadata, wrong product)."""


class MessageKeyError(KeyError):
    """A KeyError whose message prints as written (``KeyError`` quotes it)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownBandError(MessageKeyError):
    """A requested band is not one the sensor (or the item) provides.

    The message lists the bands that are available.
    """


@dataclass(frozen=True)
class BandSpec:
    """One band of a sensor.

    Parameters
    ----------
    name
        Common name used in dwcube cubes (``"red"``, ``"nir08"``, ``"swir16"``).
    keys
        Candidate asset keys in order of preference. The first one present in an
        item is used; this is how Earth Search (``"red"``) and Planetary
        Computer (``"B04"``) layouts are both read.
    resolution
        Native ground sampling distance in metres.
    band_id
        The product's own band identifier (``"B04"``, ``"SR_B4"``), for docs and attrs.
    value_scale
        ``None`` for reflectance bands.  For an auxiliary layer that is not a
        reflectance (a catalogue's cloud probability), the factor from stored values to
        physical ones; such layers get no offset and no harmonisation, and are loaded
        only when asked for.  They share the product's no-data value (0 for
        Sentinel-2): a 0 % cloud probability reads as NaN, which the cloud mask treats
        as clear, and a tile's zeros outside its footprint never hide the next tile.
    """

    name: str
    keys: tuple[str, ...]
    resolution: float
    band_id: str
    value_scale: float | None = None

    def asset_key(self, item: pystac.Item) -> str | None:
        """Return the key of the asset holding this band in ``item``, or ``None``.

        Examples
        --------
        >>> import datetime as dt, pystac
        >>> item = pystac.Item("S2B_X", None, None, dt.datetime(2023, 6, 1), {})  # Planetary Computer layout
        >>> item.add_asset("B04", pystac.Asset("B04.tif"))
        >>> spec = BandSpec("red", ("red", "B04"), 10.0, "B04")
        >>> spec.asset_key(item), BandSpec("nir", ("nir", "B08"), 10.0, "B08").asset_key(item)
        ('B04', None)
        """
        for key in self.keys:
            if key in item.assets:
                return key
        return None


@dataclass(frozen=True)
class MaskSpec:
    """How the quality layer of a sensor becomes a mask.

    Parameters
    ----------
    kind
        ``"classes"`` (a classification layer such as Sentinel-2 SCL: masked where
        the value is in ``values``) or ``"bits"`` (a bit-packed layer such as
        Landsat QA_PIXEL: masked where any bit in ``values`` is set).
    values
        Class values or bit positions that mark a pixel as not usable.

    Examples
    --------
    >>> from dwcube.sensors import SCL_DEFAULT_MASK
    >>> SCL_DEFAULT_MASK.with_values(SCL_DEFAULT_MASK.values | {11})  # also drop snow
    MaskSpec(kind='classes', values=frozenset({0, 1, 3, 8, 9, 10, 11}))
    """

    kind: str
    values: frozenset[int]

    def __post_init__(self) -> None:
        if self.kind not in {"classes", "bits"}:
            raise ValueError(f"MaskSpec.kind must be 'classes' or 'bits', got {self.kind!r}")
        object.__setattr__(self, "values", frozenset(int(v) for v in self.values))
        if self.kind == "bits" and any(not 0 <= b < 16 for b in self.values):
            raise ValueError(f"bit positions must be in 0..15, got {sorted(self.values)}")

    def with_values(self, values: Iterable[int]) -> MaskSpec:
        """Return a copy of this spec that masks ``values`` instead."""
        return MaskSpec(self.kind, frozenset(values))

    def invalid(self, layer: np.ndarray) -> np.ndarray:
        """Boolean array, True where ``layer`` marks a pixel as not usable.

        Parameters
        ----------
        layer
            Quality layer DN, any shape, integer or float (NaN counts as invalid).

        Examples
        --------
        >>> MaskSpec("bits", {3, 4}).invalid(np.array([0, 8, 16, 64]))
        array([False,  True,  True, False])
        """
        arr = np.asarray(layer)
        nan = None
        if arr.dtype.kind == "f":
            nan = np.isnan(arr)
            arr = np.where(nan, 0, arr).astype(np.int64)
        if self.kind == "bits":
            bitmask = sum(1 << b for b in self.values)
            bad = (arr & np.asarray(bitmask).astype(arr.dtype)) != 0
        elif len(self.values) <= 16:
            # a few comparisons on the native dtype: ~40x faster than np.isin on int64
            bad = np.zeros(arr.shape, dtype=bool)
            info = np.iinfo(arr.dtype)
            for v in self.values:
                if info.min <= v <= info.max:
                    bad |= arr == v
        else:
            bad = np.isin(arr, np.fromiter(self.values, dtype=np.int64))
        return bad if nan is None else bad | nan

    def describe(self) -> str:
        """Short text for provenance ``attrs``."""
        return f"{self.kind}:{','.join(str(v) for v in sorted(self.values))}"


@dataclass(frozen=True)
class Radiometry:
    """Per-item conversion ``reflectance = (DN + add)·scale + offset``.

    Parameters
    ----------
    add
        DN offset applied first (``-1000`` for Sentinel-2 baseline ≥ 04.00).
    scale, offset
        Linear scaling to reflectance.
    note
        Why, for provenance ``attrs``.
    """

    add: float
    scale: float
    offset: float
    note: str


@dataclass(frozen=True, eq=False)  # identity semantics: sensors are singletons
class Sensor:
    """A product whose STAC items dwcube can normalise.

    Subclasses implement :meth:`radiometry` (per item) and may override
    :meth:`item_coords`.

    Parameters
    ----------
    name
        Identifier, e.g. ``"sentinel-2-l2a"``.
    family
        ``"sentinel-2"`` or ``"landsat"``.
    level
        Product level (``"L2A"``, ``"L1C"``, ``"L2SP"``).
    bands
        Spectral bands by common name.
    mask_band
        Quality layer, or ``None`` when the product has none (Sentinel-2 L1C).
    default_mask
        Mask applied when the user does not choose one.
    nodata
        DN that marks no data in every spectral band (and fill in the quality layer).
    native_resolution
        Default output resolution in metres.
    """

    name: str
    family: str
    level: str
    bands: Mapping[str, BandSpec]
    mask_band: BandSpec | None
    default_mask: MaskSpec | None
    nodata: int
    native_resolution: float
    description: str = ""
    _aliases: Mapping[str, str] = field(default_factory=dict)

    # -- bands -----------------------------------------------------------------
    def band(self, name: str) -> BandSpec:
        """Return the :class:`BandSpec` for a common name (or product band id).

        Raises
        ------
        UnknownBandError
            Naming the bands this sensor offers.
        """
        key = self._aliases.get(name, name)
        for spec in self.bands.values():
            if key == spec.name or key == spec.band_id:
                return spec
        raise UnknownBandError(
            f"band {name!r} is not a {self.name} band; available: {', '.join(self.bands)}"
        )

    def resolve_bands(self, names: str | Sequence[str] | None) -> list[BandSpec]:
        """Resolve user band names (``None`` = every band) to specs, keeping order."""
        if names is None:
            return list(self.bands.values())
        if isinstance(names, str):
            names = [names]
        out: list[BandSpec] = []
        for n in names:
            spec = self.band(n)
            if spec not in out:
                out.append(spec)
        return out

    # -- radiometry ------------------------------------------------------------
    def radiometry(self, item: pystac.Item, baseline_offset: str = "auto") -> Radiometry:
        """How this item's DN become reflectance. Subclasses must implement.

        ``baseline_offset`` is only meaningful for Sentinel-2 (see
        :func:`dwcube.sensors.sentinel2.baseline_offset_dn`).
        """
        raise NotImplementedError

    def harmonization(self, item: pystac.Item) -> Mapping[str, tuple[float, float]] | None:
        """Per-band ``(slope, intercept)`` to Landsat-like reflectance, or ``None``."""
        return None

    # -- per-date metadata ------------------------------------------------------
    def item_coords(self, item: pystac.Item) -> dict[str, Any]:
        """Item properties that become coordinates along ``time``.

        Missing values are ``NaN`` (numbers) or ``""`` (text) so that every date
        has the same set of coordinates.
        """
        p = item.properties
        return {
            "platform": str(p.get("platform", "")),
            "cloud_cover": _num(p.get("eo:cloud_cover")),
            "sun_azimuth": _num(p.get("view:sun_azimuth")),
            "sun_elevation": _num(p.get("view:sun_elevation")),
        }


def _num(v: Any) -> float:
    try:
        return float(v) if v is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")

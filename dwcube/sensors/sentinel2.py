"""Sentinel-2 MSI Level-2A (surface reflectance) and Level-1C (top of atmosphere).

Facts used here (``DESIGN.md``, ESA product specifications):

* DN are reflectance × 10000; DN 0 is no data.
* From processing baseline **04.00** on (products from 25 January 2022, and
  older products that ESA reprocessed) every reflectance band carries an offset
  of −1000 DN (``BOA_ADD_OFFSET`` in L2A, ``RADIO_ADD_OFFSET`` in L1C), so that
  reflectance = (DN − 1000) / 10000.  The baseline is read **per item** from
  ``s2:processing_baseline`` or, failing that, from the ``_Nxxyy_`` field of the
  product name; a date is never used to guess it.
* Catalogue scale/offset (``raster:bands``) are deliberately not used: some
  catalogues publish them, some do not, and some publish them for data whose
  offset they have already applied.  dwcube decides from the baseline alone,
  and treats an Earth Search ``earthsearch:boa_offset_applied: true`` item as
  one whose pixels already sit on the pre-04.00 scale, so the offset is never
  applied twice.
* Scene classification (SCL, L2A only): 0 no data, 1 saturated/defective,
  2 dark area, 3 cloud shadow, 4 vegetation, 5 not vegetated, 6 water,
  7 unclassified, 8 cloud medium probability, 9 cloud high probability,
  10 thin cirrus, 11 snow/ice.
* Harmonised Landsat–Sentinel (HLS v2) bandpass adjustment, MSI → OLI-like,
  ``y = slope·x + intercept`` per band and platform (table below).

Asset keys: Earth Search (``sentinel-2-l2a``, ``sentinel-2-l1c``) names assets by
common name (``blue``, ``nir08``, ``scl``); Microsoft Planetary Computer
(``sentinel-2-l2a``) by band id (``B02``, ``B8A``, ``SCL``).  Both are accepted.
"""

from __future__ import annotations

import re
from typing import Any

import pystac

from .base import BandSpec, MaskSpec, Radiometry, Sensor, SensorError, _num

__all__ = [
    "SCL_CLASSES",
    "SCL_DEFAULT_MASK",
    "HLS_COEFFICIENTS",
    "SENTINEL2_L2A",
    "SENTINEL2_L1C",
    "processing_baseline",
    "baseline_offset_dn",
]

#: Sen2Cor scene classification codes.
SCL_CLASSES: dict[int, str] = {
    0: "no_data",
    1: "saturated_or_defective",
    2: "dark_area",
    3: "cloud_shadow",
    4: "vegetation",
    5: "not_vegetated",
    6: "water",
    7: "unclassified",
    8: "cloud_medium_probability",
    9: "cloud_high_probability",
    10: "thin_cirrus",
    11: "snow_or_ice",
}

#: Default SCL classes masked out: no data, saturated/defective, cloud shadow,
#: medium and high probability cloud, thin cirrus.  Dark areas (2),
#: unclassified (7) and snow (11) are kept: they are often real surfaces
#: (terrain shade, bright bare soil, snow) that a land-cover model must see.
SCL_DEFAULT_MASK = MaskSpec("classes", frozenset({0, 1, 3, 8, 9, 10}))

#: HLS v2 bandpass adjustment MSI → OLI, ``{platform: {band: (slope, intercept)}}``.
HLS_COEFFICIENTS: dict[str, dict[str, tuple[float, float]]] = {
    "sentinel-2a": {
        "coastal": (0.9959, -0.0002),
        "blue": (0.9778, -0.004),
        "green": (1.0053, -0.0009),
        "red": (0.9765, 0.0009),
        "nir08": (0.9983, -0.0001),
        "swir16": (0.9987, -0.0011),
        "swir22": (1.003, -0.0012),
    },
    "sentinel-2b": {
        "coastal": (0.9959, -0.0002),
        "blue": (0.9778, -0.004),
        "green": (1.0075, -0.0008),
        "red": (0.9761, 0.001),
        "nir08": (0.9966, 0.000),
        "swir16": (1.000, -0.0003),
        "swir22": (0.9867, 0.0004),
    },
}

_BANDS = [
    # common name, band id, native resolution (m)
    ("coastal", "B01", 60.0),
    ("blue", "B02", 10.0),
    ("green", "B03", 10.0),
    ("red", "B04", 10.0),
    ("rededge1", "B05", 20.0),
    ("rededge2", "B06", 20.0),
    ("rededge3", "B07", 20.0),
    ("nir", "B08", 10.0),
    ("nir08", "B8A", 20.0),
    ("nir09", "B09", 60.0),
    ("cirrus", "B10", 60.0),
    ("swir16", "B11", 20.0),
    ("swir22", "B12", 20.0),
]

_BASELINE_IN_NAME = re.compile(r"_N(\d{2})(\d{2})_")


#: Asset keys under which catalogues publish a cloud probability (percent) for Sentinel-2.
CLOUD_PROBABILITY_KEYS = ("cloud_probability", "cloud-probability", "CLD", "CLP", "MSK_CLDPRB_20m", "cldprb")


def _band_specs(include_cirrus: bool) -> dict[str, BandSpec]:
    specs = {}
    for name, bid, res in _BANDS:
        if name == "cirrus" and not include_cirrus:
            continue
        # Earth Search key, Planetary Computer key, then "B1"-style short ids.
        short = "B" + bid[1:].lstrip("0") if bid[1:].isdigit() else bid
        keys = tuple(dict.fromkeys((name, bid, short)))
        specs[name] = BandSpec(name, keys, res, bid)
    if include_cirrus:  # top of atmosphere: a catalogue may carry s2cloudless probabilities (0-100 %)
        specs["cloud_probability"] = BandSpec("cloud_probability", CLOUD_PROBABILITY_KEYS, 20.0, "CLD",
                                              value_scale=0.01)
    return specs


def processing_baseline(item: pystac.Item) -> tuple[int, int] | None:
    """The processing baseline of a Sentinel-2 item as ``(major, minor)``, or ``None``.

    Read from ``s2:processing_baseline`` (``"04.00"``, ``"5.09"``) or from the
    ``_Nxxyy_`` field of ``s2:product_uri`` / ``s2:product_id`` / the item id.

    Examples
    --------
    >>> import datetime as dt, pystac
    >>> item = pystac.Item("S2A_MSIL2A_20220612T105621_N0400_R094_T30UXC_20220612T171049", None, None,
    ...                    dt.datetime(2022, 6, 12), {})
    >>> processing_baseline(item)                       # from the _N0400_ field of the id
    (4, 0)
    >>> item.properties["s2:processing_baseline"] = "05.09"
    >>> processing_baseline(item)
    (5, 9)
    """
    p = item.properties
    value = p.get("s2:processing_baseline")
    if value is not None:
        m = re.fullmatch(r"\s*(\d{1,2})\.(\d{1,2})\s*", str(value))
        if m:
            return int(m.group(1)), int(m.group(2))
    for text in (p.get("s2:product_uri"), p.get("s2:product_id"), item.id):
        if text:
            m = _BASELINE_IN_NAME.search(str(text))
            if m:
                return int(m.group(1)), int(m.group(2))
    return None


def baseline_offset_dn(item: pystac.Item, mode: str = "auto") -> tuple[float, str]:
    """DN offset to add before scaling, and the reason, for one Sentinel-2 item.

    Returns ``(-1000.0, ...)`` for processing baseline ≥ 04.00 whose pixels still
    carry the offset, ``(0.0, ...)`` otherwise.

    Parameters
    ----------
    item
        A Sentinel-2 L1C or L2A item.
    mode
        ``"auto"``: trust ``earthsearch:boa_offset_applied: true`` (pixels already
        shifted), otherwise decide from the baseline.  ``"apply"``: decide from the
        baseline alone, ignoring that flag (it is known to be wrong on some
        Earth Search items).  ``"skip"``: never apply an offset.

    Raises
    ------
    SensorError
        When the item says nothing about its processing baseline: guessing from
        the acquisition date would be wrong for reprocessed products.

    Examples
    --------
    >>> import datetime as dt, pystac
    >>> item = pystac.Item("S2A_X", None, None, dt.datetime(2022, 6, 12), {"s2:processing_baseline": "04.00"})
    >>> baseline_offset_dn(item)
    (-1000.0, 'baseline 04.00: offset -1000 DN')
    >>> item.properties["s2:processing_baseline"] = "03.01"
    >>> baseline_offset_dn(item)[0]
    0.0
    """
    if mode not in {"auto", "apply", "skip"}:
        raise ValueError(f"baseline_offset must be 'auto', 'apply' or 'skip', got {mode!r}")
    if mode == "skip":
        return 0.0, "baseline offset skipped by request"
    if mode == "auto" and item.properties.get("earthsearch:boa_offset_applied") is True:
        return 0.0, "offset already applied by the catalogue (earthsearch:boa_offset_applied)"
    baseline = processing_baseline(item)
    if baseline is None:
        raise SensorError(
            f"item {item.id!r} has no processing baseline (no 's2:processing_baseline' property "
            "and no '_Nxxyy_' field in its product name); dwcube does not guess the "
            "-1000 DN offset of baseline >= 04.00 from the date. Add the property to the item."
        )
    text = f"{baseline[0]:02d}.{baseline[1]:02d}"
    if baseline >= (4, 0):
        return -1000.0, f"baseline {text}: offset -1000 DN"
    return 0.0, f"baseline {text}: no offset"


class Sentinel2(Sensor):
    """Sentinel-2 MSI products (see module docstring for the facts used)."""

    def radiometry(self, item: pystac.Item, baseline_offset: str = "auto") -> Radiometry:
        """Reflectance = (DN + add)·1e-4, ``add`` from the item's baseline."""
        add, note = baseline_offset_dn(item, baseline_offset)
        return Radiometry(add, 1e-4, 0.0, note)

    def harmonization(self, item: pystac.Item) -> dict[str, tuple[float, float]]:
        """HLS bandpass coefficients for the item's platform.

        Raises
        ------
        SensorError
            For a platform without published coefficients (e.g. Sentinel-2C).
        """
        platform = str(item.properties.get("platform", "")).lower().replace("_", "-")
        platform = {"s2a": "sentinel-2a", "s2b": "sentinel-2b"}.get(platform, platform)
        try:
            return HLS_COEFFICIENTS[platform]
        except KeyError:
            raise SensorError(
                f"no HLS bandpass coefficients for platform {platform or '<missing>'!r} "
                f"(item {item.id!r}); known: {', '.join(HLS_COEFFICIENTS)}"
            ) from None

    def item_coords(self, item: pystac.Item) -> dict[str, Any]:
        p = item.properties
        coords = super().item_coords(item)
        if coords["sun_azimuth"] != coords["sun_azimuth"]:  # NaN: Planetary Computer names
            coords["sun_azimuth"] = _num(p.get("s2:mean_solar_azimuth"))
        if coords["sun_elevation"] != coords["sun_elevation"]:
            zen = _num(p.get("s2:mean_solar_zenith"))
            coords["sun_elevation"] = 90.0 - zen
        baseline = processing_baseline(item)
        coords["processing_baseline"] = f"{baseline[0]:02d}.{baseline[1]:02d}" if baseline else ""
        tile = p.get("s2:mgrs_tile") or p.get("s2:tile_id") or ""
        if not tile and "mgrs:utm_zone" in p:
            tile = f"{p['mgrs:utm_zone']:02d}{p.get('mgrs:latitude_band', '')}{p.get('mgrs:grid_square', '')}"
        coords["tile"] = str(tile)
        return coords


SENTINEL2_L2A = Sentinel2(
    name="sentinel-2-l2a",
    family="sentinel-2",
    level="L2A",
    bands=_band_specs(include_cirrus=False),
    mask_band=BandSpec("scl", ("scl", "SCL"), 20.0, "SCL"),
    default_mask=SCL_DEFAULT_MASK,
    nodata=0,
    native_resolution=10.0,
    description="Sentinel-2 MSI Level-2A bottom-of-atmosphere reflectance",
)

SENTINEL2_L1C = Sentinel2(
    name="sentinel-2-l1c",
    family="sentinel-2",
    level="L1C",
    bands=_band_specs(include_cirrus=True),
    mask_band=None,
    default_mask=None,
    nodata=0,
    native_resolution=10.0,
    description="Sentinel-2 MSI Level-1C top-of-atmosphere reflectance",
)

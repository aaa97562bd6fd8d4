"""Sensor families: band maps, radiometric scaling, no data, masks, harmonisation.

One module per family (:mod:`.sentinel2`, :mod:`.landsat`); this package
chooses the sensor of each STAC item (:func:`detect_sensor`) and turns raw
digital numbers into the reflectance cube (:func:`normalize`).

Supported products
------------------
============================  ==================================================
``sentinel-2-l2a``            Sentinel-2 MSI L2A (mask: SCL)
``sentinel-2-l1c``            Sentinel-2 MSI L1C (no mask layer in the product)
``landsat-c2-l2-oli``         Landsat 8/9 OLI Collection 2 Level-2 (mask: QA_PIXEL)
``landsat-c2-l2-tm``          Landsat 4/5 TM, 7 ETM+ Collection 2 Level-2 (QA_PIXEL)
============================  ==================================================
"""

from __future__ import annotations

import re

import pystac

from .base import BandSpec, MaskSpec, Sensor, SensorError, UnknownBandError
from .landsat import LANDSAT_OLI, LANDSAT_TM, QA_PIXEL_BITS, QA_PIXEL_DEFAULT_MASK
from .normalize import normalize, reflectance
from .sentinel2 import (
    HLS_COEFFICIENTS,
    SCL_CLASSES,
    SCL_DEFAULT_MASK,
    SENTINEL2_L1C,
    SENTINEL2_L2A,
    processing_baseline,
)

__all__ = [
    "BandSpec",
    "MaskSpec",
    "Sensor",
    "SensorError",
    "UnknownBandError",
    "SENSORS",
    "SENTINEL2_L2A",
    "SENTINEL2_L1C",
    "LANDSAT_OLI",
    "LANDSAT_TM",
    "SCL_CLASSES",
    "SCL_DEFAULT_MASK",
    "QA_PIXEL_BITS",
    "QA_PIXEL_DEFAULT_MASK",
    "HLS_COEFFICIENTS",
    "detect_sensor",
    "get_sensor",
    "normalize",
    "reflectance",
    "processing_baseline",
]

#: Every sensor dwcube can normalise, by name.
SENSORS: dict[str, Sensor] = {
    s.name: s for s in (SENTINEL2_L2A, SENTINEL2_L1C, LANDSAT_OLI, LANDSAT_TM)
}


def get_sensor(sensor: str | Sensor) -> Sensor:
    """Return a :class:`Sensor` given itself or its name.

    Examples
    --------
    >>> get_sensor("sentinel-2-l2a").level
    'L2A'
    """
    if isinstance(sensor, Sensor):
        return sensor
    try:
        return SENSORS[sensor]
    except KeyError:
        raise SensorError(f"unknown sensor {sensor!r}; known: {', '.join(SENSORS)}") from None


def _platform(item: pystac.Item) -> str:
    return str(item.properties.get("platform", "")).lower().replace("_", "-")


def detect_sensor(item: pystac.Item) -> Sensor:
    """Choose the sensor of a STAC item from its collection and properties.

    The rules, in order: Sentinel-2 when the platform, constellation or
    collection says so, L1C vs L2A from ``s2:product_type`` / ``processing:level``
    / the collection id / the presence of an SCL asset; Landsat Collection 2
    Level-2 when the platform or collection says Landsat, OLI for Landsat 8/9
    and TM/ETM+ for 4/5/7.

    Raises
    ------
    SensorError
        When the item matches no supported product; the message says what was seen.

    Examples
    --------
    >>> import datetime as dt, pystac
    >>> item = pystac.Item("S2B_33TVL_20230601_0_L2A", None, None, dt.datetime(2023, 6, 1), {"platform": "sentinel-2b"},
    ...                    collection="sentinel-2-l2a")
    >>> detect_sensor(item).name
    'sentinel-2-l2a'
    >>> item.properties["platform"], item.collection_id = "landsat-8", "landsat-c2-l2"
    >>> detect_sensor(item).name
    'landsat-c2-l2-oli'
    """
    p = item.properties
    coll = (item.collection_id or "").lower()
    platform = _platform(item)
    constellation = str(p.get("constellation", "")).lower()
    if platform.startswith("sentinel-2") or constellation == "sentinel-2" or coll.startswith("sentinel-2"):
        ptype = str(p.get("s2:product_type", "")).upper()
        plevel = str(p.get("processing:level", "")).upper()
        if ptype.endswith("1C") or plevel == "L1C" or "l1c" in coll:
            return SENTINEL2_L1C
        if ptype.endswith("2A") or plevel == "L2A" or "l2a" in coll or {"scl", "SCL"} & set(item.assets):
            return SENTINEL2_L2A
        raise SensorError(
            f"item {item.id!r} (collection {item.collection_id!r}) is Sentinel-2 but its product "
            "level is not stated (no s2:product_type, processing:level, or l1c/l2a collection); "
            "pass sensor='sentinel-2-l2a' or 'sentinel-2-l1c'"
        )
    if platform.startswith("landsat") or coll.startswith("landsat"):
        if "l1" in coll.replace("landsat", "") and "l2" not in coll:
            raise SensorError(
                f"item {item.id!r} is Landsat Level-1 ({item.collection_id!r}); "
                "dwcube reads Collection 2 Level-2 surface reflectance"
            )
        m = re.search(r"(\d)$", platform)
        number = int(m.group(1)) if m else None
        if number in (8, 9):
            return LANDSAT_OLI
        if number in (4, 5, 7):
            return LANDSAT_TM
        raise SensorError(f"item {item.id!r}: unknown Landsat platform {platform!r}")
    raise SensorError(
        f"item {item.id!r}: cannot tell its sensor (collection={item.collection_id!r}, "
        f"platform={platform!r}); supported: {', '.join(SENSORS)}; pass sensor=... to choose"
    )

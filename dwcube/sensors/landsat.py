"""Landsat Collection 2 Level-2 surface reflectance: OLI (Landsat 8/9) and TM/ETM+ (4/5/7).

Facts used here (USGS Collection 2 Level-2 product guide, ``DESIGN.md``):

* Surface reflectance = DN × 0.0000275 − 0.2 for every reflective band, for
  every Collection 2 Level-2 scene (one fixed rule; catalogue ``raster:bands``
  values are not needed and not applied a second time).  DN 0 is no data.
* QA_PIXEL bits: 0 fill, 1 dilated cloud, 2 cirrus, 3 cloud, 4 cloud shadow,
  5 snow, 6 clear, 7 water.  The default clear-sky rule keeps a pixel only
  where bits 0–4 are all zero.
* Band numbering: OLI B1 coastal, B2 blue, B3 green, B4 red, B5 nir08,
  B6 swir16, B7 swir22; TM/ETM+ B1 blue, B2 green, B3 red, B4 nir08,
  B5 swir16, B7 swir22.  Landsat's NIR is the narrow NIR (``nir08``), the
  counterpart of Sentinel-2 B8A.

Asset keys: Earth Search and Planetary Computer (``landsat-c2-l2``) both use
lower-case common names (``red``, ``nir08``, ``qa_pixel``); USGS file stems
(``SR_B4``, ``QA_PIXEL``) are accepted too.
"""

from __future__ import annotations

from typing import Any

import pystac

from .base import BandSpec, MaskSpec, Radiometry, Sensor

__all__ = [
    "QA_PIXEL_BITS",
    "QA_PIXEL_DEFAULT_MASK",
    "LANDSAT_SR_SCALE",
    "LANDSAT_SR_OFFSET",
    "LANDSAT_OLI",
    "LANDSAT_TM",
]

#: Collection 2 Level-2 surface reflectance scale and offset.
LANDSAT_SR_SCALE = 0.0000275
LANDSAT_SR_OFFSET = -0.2

#: QA_PIXEL bit positions (Collection 2).
QA_PIXEL_BITS: dict[int, str] = {
    0: "fill",
    1: "dilated_cloud",
    2: "cirrus",
    3: "cloud",
    4: "cloud_shadow",
    5: "snow",
    6: "clear",
    7: "water",
}

#: Clear-sky rule: masked where any of fill, dilated cloud, cirrus, cloud or
#: cloud shadow is set (bits 0–4).
QA_PIXEL_DEFAULT_MASK = MaskSpec("bits", frozenset({0, 1, 2, 3, 4}))


class Landsat(Sensor):
    """Landsat Collection 2 Level-2 (see module docstring for the facts used)."""

    def radiometry(self, item: pystac.Item, baseline_offset: str = "auto") -> Radiometry:
        """Fixed Collection 2 Level-2 rule: DN × 2.75e-5 − 0.2."""
        return Radiometry(0.0, LANDSAT_SR_SCALE, LANDSAT_SR_OFFSET, "C2 L2 SR: DN*2.75e-5 - 0.2")

    def item_coords(self, item: pystac.Item) -> dict[str, Any]:
        p = item.properties
        coords = super().item_coords(item)
        path, row = p.get("landsat:wrs_path"), p.get("landsat:wrs_row")
        coords["tile"] = f"{int(path):03d}{int(row):03d}" if path is not None and row is not None else ""
        return coords


def _specs(numbering: dict[str, int]) -> dict[str, BandSpec]:
    return {
        name: BandSpec(name, (name, f"SR_B{n}", f"B{n}"), 30.0, f"SR_B{n}")
        for name, n in numbering.items()
    }


_QA = BandSpec("qa_pixel", ("qa_pixel", "QA_PIXEL"), 30.0, "QA_PIXEL")

LANDSAT_OLI = Landsat(
    name="landsat-c2-l2-oli",
    family="landsat",
    level="L2SP",
    bands=_specs(
        {"coastal": 1, "blue": 2, "green": 3, "red": 4, "nir08": 5, "swir16": 6, "swir22": 7}
    ),
    mask_band=_QA,
    default_mask=QA_PIXEL_DEFAULT_MASK,
    nodata=0,
    native_resolution=30.0,
    description="Landsat 8/9 OLI Collection 2 Level-2 surface reflectance",
    _aliases={"nir": "nir08"},
)

LANDSAT_TM = Landsat(
    name="landsat-c2-l2-tm",
    family="landsat",
    level="L2SP",
    bands=_specs({"blue": 1, "green": 2, "red": 3, "nir08": 4, "swir16": 5, "swir22": 7}),
    mask_band=_QA,
    default_mask=QA_PIXEL_DEFAULT_MASK,
    nodata=0,
    native_resolution=30.0,
    description="Landsat 4/5 TM and 7 ETM+ Collection 2 Level-2 surface reflectance",
    _aliases={"nir": "nir08"},
)

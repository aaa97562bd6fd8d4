"""The nine Dynamic World land-cover classes, their colours, and label remaps.

Facts from ``DESIGN.md`` (Dynamic World class order and palette; ESA WorldCover
legend).
"""

from __future__ import annotations

import numpy as np

__all__ = ["CLASSES", "COLORS", "NODATA_LABEL", "WORLDCOVER_TO_DW", "remap_worldcover"]

#: Class names in Dynamic World order (index = label value).
CLASSES: tuple[str, ...] = (
    "water",
    "trees",
    "grass",
    "flooded_vegetation",
    "crops",
    "shrub_and_scrub",
    "built",
    "bare",
    "snow_and_ice",
)

#: Dynamic World palette, one hex colour per class.
COLORS: dict[str, str] = {
    "water": "#419BDF",
    "trees": "#397D49",
    "grass": "#88B053",
    "flooded_vegetation": "#7A87C6",
    "crops": "#E49635",
    "shrub_and_scrub": "#DFC35A",
    "built": "#C4281B",
    "bare": "#A59B8F",
    "snow_and_ice": "#B39FE1",
}

#: Label value for "no data" in uint8 label rasters.
NODATA_LABEL = 255

#: ESA WorldCover class → Dynamic World label (0 = WorldCover no data is not mapped).
WORLDCOVER_TO_DW: dict[int, int] = {
    10: CLASSES.index("trees"),
    20: CLASSES.index("shrub_and_scrub"),
    30: CLASSES.index("grass"),
    40: CLASSES.index("crops"),
    50: CLASSES.index("built"),
    60: CLASSES.index("bare"),
    70: CLASSES.index("snow_and_ice"),
    80: CLASSES.index("water"),
    90: CLASSES.index("flooded_vegetation"),
    95: CLASSES.index("flooded_vegetation"),
    100: CLASSES.index("bare"),
}


def remap_worldcover(codes: np.ndarray) -> np.ndarray:
    """Map ESA WorldCover codes to Dynamic World labels (uint8, 255 = no data).

    Any code not in :data:`WORLDCOVER_TO_DW` (including 0, no data) becomes 255.

    Examples
    --------
    >>> remap_worldcover(np.array([10, 80, 0, 95]))
    array([  1,   0, 255,   3], dtype=uint8)
    """
    lut = np.full(256, NODATA_LABEL, dtype=np.uint8)
    for code, label in WORLDCOVER_TO_DW.items():
        lut[code] = label
    codes = np.asarray(codes)
    out = np.full(codes.shape, NODATA_LABEL, dtype=np.uint8)
    ok = (codes >= 0) & (codes < 256)
    out[ok] = lut[codes[ok].astype(np.int64)]
    return out

"""The output grid: bboxes are range-checked, oversized grids refused (issue 15, item 5), and a
request on a source's own pixel grid reads its pixels as they are (item 20)."""

from __future__ import annotations

import datetime as dt
import math

import pytest

import dwcube
from dwcube.load import DEFAULT_MAX_PIXELS, GridTooLargeError

UTC = dt.timezone.utc
T0 = dt.datetime(2023, 6, 14, 10, 0, tzinfo=UTC)
AREA = (14.9, 45.1, 15.0, 45.2)  # around the synthetic tiles' corner (UTM 33N, x 500000, y 5000000)


@pytest.mark.parametrize(("bbox", "message"), [
    ((-200, 45.1, 15.0, 45.2), r"west = -200.0 is outside -180..180"),
    ((14.9, 45.1, 15.0, 95), r"north = 95.0 is outside -90..90"),
    ((14.9, math.nan, 15.0, 45.2), r"south = nan is not a finite number"),
    ((14.9, 45.2, 15.0, 45.1), r"south \(45.2\) must be less than north"),
    ((170.0, 45.1, -170.0, 45.2), r"across the antimeridian is not supported; load the two sides separately"),
    ((14.9, 45.1, 15.0), r"four numbers"),
    ((-180, -89, 180, 89), r"far outside EPSG:32633's area of use"),
])
def test_a_bad_bbox_is_refused_before_anything_is_built(make_s2_tile, bbox, message: str) -> None:
    a, _ = make_s2_tile("A", T0)
    with pytest.raises(ValueError, match=message):
        dwcube.load([a], bbox=bbox, bands=["red"])


def test_a_nan_geometry_is_refused(make_s2_tile) -> None:
    a, _ = make_s2_tile("A", T0)
    poly = {"type": "Polygon", "coordinates": [[[14.9, 45.1], [15.0, math.nan], [15.0, 45.2], [14.9, 45.1]]]}
    with pytest.raises(ValueError, match="not finite"):
        dwcube.load([a], geometry=poly, bands=["red"])


def test_a_grid_larger_than_max_pixels_is_refused_with_its_size(make_s2_tile) -> None:
    a, _ = make_s2_tile("A", T0)
    ds = dwcube.load([a], bbox=AREA, bands=["red"])  # 1113 × 787 px: far under the default
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    assert ny * nx < DEFAULT_MAX_PIXELS
    with pytest.raises(GridTooLargeError, match=rf"{ny} × {nx} = .* px per date, more than max_pixels=1e\+05.*"
                                                 r"resolution=10 \(native\).*pass max_pixels=None"):
        dwcube.load([a], bbox=AREA, bands=["red"], max_pixels=100_000)
    assert dwcube.load([a], bbox=AREA, bands=["red"], max_pixels=None).sizes == ds.sizes
    # a whole hemisphere at 0.0001° is 1.8e12 px: refused by default, lazily allowed on request
    half = (0.0, 0.0, 90.0, 80.0)
    with pytest.raises(GridTooLargeError, match="800000 × 900000"):
        dwcube.load([a], bbox=half, crs="EPSG:4326", resolution=0.0001, bands=["red"])
    big = dwcube.load([a], bbox=half, crs="EPSG:4326", resolution=0.0001, bands=["red"], max_pixels=None)
    assert big.sizes["latitude"] * big.sizes["longitude"] == 800000 * 900000
    with pytest.raises(ValueError, match="max_pixels"):
        dwcube.load([a], max_pixels=0)

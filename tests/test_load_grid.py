"""The output grid: bboxes are range-checked, oversized grids refused (issue 15, item 5), and a
request on a source's own pixel grid reads its pixels as they are (item 20)."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
import rasterio

import dwcube
from dwcube import testing as T
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


# -- item 20: a request on a source's own pixel grid reads its pixels as they are -------------------


@pytest.fixture(scope="module")
def landsat_items(shared, tmp_path_factory) -> list:
    root = tmp_path_factory.mktemp("xlandsat")
    return T.landsat_c2_items(shared, root, base_url=root.resolve().as_uri())


def _reflectance(item, band: str = "red") -> np.ndarray:
    with rasterio.open(item.assets[band].href) as src:
        dn = src.read(1).astype(np.float64)
    return np.where(dn == 0, np.nan, dn * 2.75e-5 - 0.2).astype(np.float32)


@pytest.mark.shared
@pytest.mark.parametrize("how", ["native", "resolution=30", "resolution=30, its crs", "southern zone number"])
def test_landsat_at_its_own_grid_is_read_pixel_for_pixel(landsat_items, how: str) -> None:
    for item in landsat_items:
        code = item.properties["proj:code"]
        tr = item.assets["red"].extra_fields["proj:transform"]
        kw: dict = {"native": {}, "resolution=30": {"resolution": 30},
                    "resolution=30, its crs": {"resolution": 30, "crs": code},
                    "southern zone number": {"resolution": 30, "crs": code.replace("EPSG:326", "EPSG:327")}}[how]
        ds = dwcube.load([item], bands=["red", "swir16"], mask=None, **kw)
        g = ds.odc.geobox
        shift = 1e7 if how == "southern zone number" else 0.0
        assert tuple(g.shape) == tuple(item.assets["red"].extra_fields["proj:shape"]), item.id
        assert g.transform.c == tr[2] and abs(g.transform.f - (tr[5] + shift)) < 1e-6, (item.id, g.transform)
        got = ds.compute()
        for band in ("red", "swir16"):
            np.testing.assert_array_equal(got[band].values[0], _reflectance(item, band), err_msg=f"{item.id} {band}")


@pytest.mark.shared
def test_a_bbox_inside_a_landsat_scene_snaps_to_its_pixels(landsat_items) -> None:
    manaus = next(it for it in landsat_items if it.id.startswith("LC09_L2SP_231062"))
    west, south, east, north = manaus.bbox
    inner = (west + 0.3 * (east - west), south + 0.2 * (north - south), west + 0.7 * (east - west),
             south + 0.6 * (north - south))
    ds = dwcube.load([manaus], bbox=inner, bands=["red"], mask=None, resolution=30)
    tr = manaus.assets["red"].extra_fields["proj:transform"]
    col = (ds.odc.geobox.transform.c - tr[2]) / 30
    row = (tr[5] - ds.odc.geobox.transform.f) / 30
    assert col == int(col) and row == int(row) and col > 0 and row > 0  # on the scene's own pixel edges
    ny, nx = ds.sizes["y"], ds.sizes["x"]
    want = _reflectance(manaus)[int(row):int(row) + ny, int(col):int(col) + nx]
    np.testing.assert_array_equal(ds.red.values[0], want)
    # the two Brumadinho dates (crops 30 columns apart, one grid) load onto their common grid unresampled
    brum = sorted((it for it in landsat_items if "_218074_" in it.id), key=lambda it: it.datetime)
    both = dwcube.load(brum, bands=["red"], mask=None).compute()
    for t, it in enumerate(brum):
        tr = it.assets["red"].extra_fields["proj:transform"]
        c0 = int((tr[2] - both.odc.geobox.transform.c) / 30)
        r0 = int((both.odc.geobox.transform.f - tr[5]) / 30)
        want = _reflectance(it)
        np.testing.assert_array_equal(both.red.values[t, r0:r0 + want.shape[0], c0:c0 + want.shape[1]], want)

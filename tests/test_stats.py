"""Class areas: projected and geographic grids against hand/independent values, polygons, units, laziness."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pyproj
import pytest
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry
from odc.geo.xr import xr_coords
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box

from dwcube.classes import CLASSES
from dwcube.probability import label
from dwcube.stats import class_area, pixel_area

GEOD = pyproj.Geod(ellps="WGS84")


def _utm_box(ny: int, nx: int, res: float = 10.0, x0: float = 500000.0, y0: float = 5000000.0,
             epsg: int = 32633) -> GeoBox:
    return GeoBox.from_bbox((x0, y0 - ny * res, x0 + nx * res, y0), crs=f"EPSG:{epsg}", resolution=res)


def _label(values: np.ndarray, gbox: GeoBox, dates: list[str] | None = None) -> xr.DataArray:
    values = np.asarray(values, np.uint8)
    ydim, xdim = ("latitude", "longitude") if gbox.crs.geographic else ("y", "x")
    coords = dict(xr_coords(gbox))
    if dates is None:
        return xr.DataArray(values, dims=(ydim, xdim), coords=coords, name="label")
    return xr.DataArray(values, dims=("time", ydim, xdim), coords={"time": pd.to_datetime(dates), **coords},
                        name="label", attrs={"model": "tiny"})


def _geod_area(lons: np.ndarray, lats: np.ndarray) -> float:
    return abs(GEOD.polygon_area_perimeter(lons, lats)[0])


def _lonlat_rect(lon0: float, lat0: float, lon1: float, lat1: float, n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """A lon/lat rectangle whose edges follow the meridians and parallels (densified)."""
    t = np.linspace(0, 1, n, endpoint=False)
    lons = np.r_[lon0 + (lon1 - lon0) * t, np.full(n, lon1), lon1 - (lon1 - lon0) * t, np.full(n, lon0)]
    lats = np.r_[np.full(n, lat0), lat0 + (lat1 - lat0) * t, np.full(n, lat1), lat1 - (lat1 - lat0) * t]
    return lons, lats


def _forbid_compute(*args: object, **kwargs: object) -> None:
    raise AssertionError("computed while building the graph")


# -- projected grids -----------------------------------------------------------------------------


def test_projected_label_areas_by_hand_in_every_unit() -> None:
    gbox = _utm_box(4, 5)
    lab = np.full((2, 4, 5), 1, np.uint8)  # trees everywhere ...
    lab[0, 0, :3] = 0        # date 0: 3 water
    lab[0, 3, :] = 255       # date 0: a row (5 px) of no data
    lab[1, :2, :2] = 6       # date 1: 4 built
    lab[1, 2, 4] = 255       # date 1: 1 px no data
    a = class_area(_label(lab, gbox, ["2023-05-01", "2023-06-01"]), unit="m2")
    assert a.dims == ("time", "class") and a["class"].values.tolist() == list(CLASSES)
    assert a.sel({"class": "water"}).values.tolist() == [300.0, 0.0]
    assert a.sel({"class": "trees"}).values.tolist() == [1200.0, 1500.0]
    assert a.sel({"class": "built"}).values.tolist() == [0.0, 400.0]
    assert a.nodata_area.values.tolist() == [500.0, 100.0] and a.valid_area.values.tolist() == [1500.0, 1900.0]
    assert float(a.total_area) == 2000.0 and a.attrs["units"] == "m2"
    np.testing.assert_allclose(a.sum("class"), a.valid_area)
    ha = class_area(_label(lab, gbox, ["2023-05-01", "2023-06-01"]), unit="ha")
    km2 = class_area(_label(lab, gbox, ["2023-05-01", "2023-06-01"]))  # km² is the default
    np.testing.assert_allclose(ha.values, a.values / 1e4)
    np.testing.assert_allclose(km2.values, a.values / 1e6)
    assert km2.attrs["units"] == "km2" and ha.nodata_area.attrs["units"] == "ha"
    assert "in the plane of EPSG:32633" in a.attrs["pixel_area_method"] and a.attrs["crs"] == "EPSG:32633"
    assert a.attrs["model"] == "tiny" and "dwcube.stats.class_area(unit='m2'" in a.attrs["history"]
    assert "spatial_ref" not in a.coords


def test_non_metre_units_and_rotated_affines() -> None:
    from affine import Affine

    # NAD83 / New York Long Island (US survey feet): 100 ft pixels
    gbox = GeoBox.from_bbox((1000000, 200000, 1000300, 200200), crs="EPSG:2263", resolution=100)
    a = pixel_area(xr.DataArray(np.zeros(gbox.shape), dims=("y", "x"), coords=xr_coords(gbox)))
    np.testing.assert_allclose(a.values, (100 * 1200 / 3937) ** 2, rtol=1e-12)
    # a grid rotated by 30° (the affine has shear terms b, d ≠ 0): 1 km pixels, 150 km east of UTM 33's
    # central meridian; the grid travels through spatial_ref and is read back rotated
    aff = Affine.translation(650000, 5000000) @ Affine.rotation(30) @ Affine.scale(1000, -1000)
    rotated = GeoBox((20, 30), aff, "EPSG:32633")
    lab = np.ones((20, 30), np.uint8)
    lab[:5] = 0  # 150 water pixels along the grid's first rows
    lab = _label(lab, rotated)
    assert lab.odc.geobox.affine.b != 0 and lab.odc.geobox.affine.almost_equals(aff)
    plane = class_area(lab, unit="m2")
    assert plane.sel({"class": ["water", "trees"]}).values.tolist() == [150e6, 450e6]
    # on the ellipsoid: the rotated outline (densified along its projected straight edges)
    t = np.linspace(0, 1, 400, endpoint=False)
    cols = np.r_[30 * t, np.full(400, 30.0), 30 * (1 - t), np.zeros(400)]
    rows = np.r_[np.zeros(400), 20 * t, np.full(400, 20.0), 20 * (1 - t)]
    xs, ys = aff @ (cols, rows)
    truth = _geod_area(*pyproj.Transformer.from_crs(32633, 4326, always_xy=True).transform(xs, ys))
    ell = class_area(lab, unit="m2", ellipsoidal=True)
    assert abs(float(plane.total_area) / truth - 1) > 1e-4
    np.testing.assert_allclose(float(ell.total_area), truth, rtol=1e-8)
    # a rotated latitude/longitude grid has no per-row cell area: refused, naming the problem
    geo = GeoBox((4, 5), Affine.translation(10, 60) @ Affine.rotation(10) @ Affine.scale(0.01, -0.01), "EPSG:4326")
    with pytest.raises(ValueError, match="rotated or sheared geographic grid"):
        class_area(_label(np.ones((4, 5)), geo))


def test_expected_and_label_area_of_a_probability_cube() -> None:
    gbox = _utm_box(2, 2, res=20)  # 400 m² pixels
    p = np.zeros((1, 9, 2, 2), np.float32)
    p[0, 0] = [[.6, .3], [.2, .5]]   # water
    p[0, 1] = [[.4, .7], [.8, .3]]   # trees
    p[0, 2] = [[0, 0], [0, .2]]      # grass
    p[0, :, 1, 0] = np.nan           # one pixel without data
    prob = xr.DataArray(p, dims=("time", "class", "y", "x"), name="probability",
                        coords={"time": pd.to_datetime(["2023-05-01"]), "class": list(CLASSES), **xr_coords(gbox)})
    exp = class_area(prob, unit="m2", method="expected")
    np.testing.assert_allclose(exp.sel({"class": ["water", "trees", "grass"]})[0], [400 * 1.4, 400 * 1.4, 400 * .2],
                               rtol=1e-6)
    np.testing.assert_allclose(float(exp.sum("class")[0]), 1200.0, rtol=1e-6)
    assert float(exp.nodata_area[0]) == 400.0 and float(exp.valid_area[0]) == 1200.0
    lab = class_area(prob, unit="m2")  # the default: counted labels
    xr.testing.assert_identical(lab, class_area(prob, unit="m2", method="label"))
    assert lab.sel({"class": ["water", "trees", "grass"]})[0].values.tolist() == [800.0, 400.0, 0.0]
    # (probability.label drops the attributes of spatial_ref, so the grid is put back here)
    np.testing.assert_allclose(lab.values, class_area(label(prob).assign_coords(spatial_ref=prob.spatial_ref),
                                                      unit="m2").values)
    assert "probability × pixel area" in exp.attrs["method"] and "labelled" in lab.attrs["method"]
    ds = xr.Dataset({"probability": prob, "label": label(prob)})
    np.testing.assert_allclose(class_area(ds, unit="m2", method="expected").values, exp.values)  # probability first


def test_the_default_area_counts_labels_so_a_forest_has_no_snow() -> None:
    """Issue 15: summing probabilities by default gave a July forest hectares of snow. Every pixel of
    this 1 km² forest is 89 % trees and 4 % snow: 100 ha of trees and no snow, unless expected
    areas are asked for; the accessor gives the same."""
    gbox = _utm_box(100, 100)
    p = np.full((1, 9, 100, 100), 0.01, np.float32)
    p[0, 1] = 0.89
    p[0, 8] = 0.04
    prob = xr.DataArray(p, dims=("time", "class", "y", "x"), name="probability",
                        coords={"time": pd.to_datetime(["2023-07-15"]), "class": list(CLASSES), **xr_coords(gbox)})
    area = prob.lulc.area("ha")
    assert float(area.sel({"class": "trees"})[0]) == 100.0 and float(area.sel({"class": "snow_and_ice"})[0]) == 0.0
    assert area.attrs["long_name"] == "labelled area of each class"
    expected = prob.lulc.area("ha", method="expected")
    assert float(expected.sel({"class": "snow_and_ice"})[0]) == pytest.approx(4.0, rel=1e-5)
    assert "probability" in expected.attrs["method"]
    xr.testing.assert_identical(xr.Dataset({"probability": prob}).lulc.area("ha"), area)


def test_ellipsoidal_correction_matches_the_geodesic_area_where_the_plane_does_not() -> None:
    # 20 × 30 pixels of 1 km in UTM 33N, 150–180 km east of the central meridian at 45° N
    gbox = _utm_box(20, 30, res=1000, x0=650000, y0=5000000)
    plane = class_area(_label(np.ones(gbox.shape), gbox), unit="m2")
    ell = class_area(_label(np.ones(gbox.shape), gbox), unit="m2", ellipsoidal=True)
    # the region's true area: its outline (densified along the projected straight edges) on the ellipsoid
    x0, y0, x1, y1 = gbox.extent.boundingbox
    t = np.linspace(0, 1, 400, endpoint=False)
    xs = np.r_[x0 + (x1 - x0) * t, np.full(400, x1), x1 - (x1 - x0) * t, np.full(400, x0)]
    ys = np.r_[np.full(400, y0), y0 + (y1 - y0) * t, np.full(400, y1), y1 - (y1 - y0) * t]
    lon, lat = pyproj.Transformer.from_crs(32633, 4326, always_xy=True).transform(xs, ys)
    truth = _geod_area(lon, lat)
    assert float(plane.valid_area) == 600e6
    assert abs(float(plane.valid_area) / truth - 1) > 1e-4            # the plane is measurably off here ...
    np.testing.assert_allclose(float(ell.valid_area), truth, rtol=1e-8)  # ... the corrected area is not
    assert "areal scale" in ell.attrs["pixel_area_method"]
    # on the central meridian the correction is k² = 0.9996²
    cm = pixel_area(_label(np.ones((2, 2)), _utm_box(2, 2, res=10, x0=499990)), ellipsoidal=True)
    np.testing.assert_allclose(cm.values, 100 / 0.9996 ** 2, rtol=1e-9)


# -- geographic grids --------------------------------------------------------------------------


def test_geographic_pixel_areas_per_row_and_over_the_region_match_pyproj_geod() -> None:
    gbox = GeoBox.from_bbox((10.0, 59.8, 10.3, 60.2), crs="EPSG:4326", resolution=0.01)  # 40 rows, 30 cols
    ny, nx = gbox.shape
    lab = _label(np.ones((ny, nx)), gbox)
    px = pixel_area(lab)
    assert px.dims == ("latitude", "longitude") and px.shape == (40, 30)
    lats = gbox.affine.f + gbox.affine.e * np.arange(ny + 1)
    for i in (0, 17, ny - 1):
        truth = _geod_area(*_lonlat_rect(10.0, lats[i + 1], 10.01, lats[i], n=20))
        np.testing.assert_allclose(px.values[i], truth, rtol=1e-9)
    assert np.all(np.diff(px.values[:, 0]) > 0)  # cells grow towards the equator
    region = _geod_area(*_lonlat_rect(10.0, 59.8, 10.3, 60.2, n=400))
    a = class_area(lab, unit="m2")
    np.testing.assert_allclose(float(a.sel({"class": "trees"})), region, rtol=1e-9)
    np.testing.assert_allclose(float(a.total_area), region, rtol=1e-9)
    assert "exact area of each latitude/longitude cell on the WGS 84 ellipsoid" in a.attrs["pixel_area_method"]
    # a hand check: the 0.01° cell from 59.99° to 60° N is 0.6218 km²; a sphere of 6371 km would say
    # R² Δλ (sin 60° − sin 59.99°) = 0.6183 km², half a per cent less (so a spherical formula fails here)
    assert lats[21] == pytest.approx(59.99) and round(float(px.values[20, 0]) / 1e6, 4) == 0.6218
    sphere = 6371e3 ** 2 * np.radians(0.01) * (np.sin(np.radians(60)) - np.sin(np.radians(59.99)))
    assert round(sphere / 1e6, 4) == 0.6183 and 0.004 < float(px.values[20, 0]) / sphere - 1 < 0.007


def test_geographic_rows_weight_the_classes() -> None:
    gbox = GeoBox.from_bbox((0.0, -1.0, 1.0, 89.0), crs="EPSG:4326", resolution=1.0)  # 90 rows from the equator
    lab = np.zeros(gbox.shape, np.uint8)
    lab[:45] = 1  # northern half: trees
    a = class_area(_label(lab, gbox), unit="km2")
    def band(lat0: float, lat1: float) -> float:
        return _geod_area(*_lonlat_rect(0.0, lat0, 1.0, lat1, n=2000))

    np.testing.assert_allclose(float(a.sel({"class": "trees"})) * 1e6, band(44.0, 89.0), rtol=1e-9)
    np.testing.assert_allclose(float(a.sel({"class": "water"})) * 1e6, band(-1.0, 44.0), rtol=1e-9)


# -- polygons ------------------------------------------------------------------------------------


def test_polygon_areas_by_hand_with_the_pixel_centre_rule() -> None:
    gbox = _utm_box(6, 6)  # x 500000–500060, y 4999940–5000000
    lab = np.zeros((6, 6), np.uint8)
    lab[:, 3:] = 1      # east half trees
    lab[0, 0] = 255
    polys = {
        # covers columns 0–1 fully and column 2 only up to x = 500024 (< its centre at 500025): 2 columns
        "west": box(500000, 4999940, 500024, 5000000),
        # reaches x = 500036 (> the centre of column 3 at 500035): columns 2–3, rows 0–2
        "middle": box(500016, 4999970, 500036, 5000000),
        "outside": box(600000, 4000000, 600100, 4000100),
        # a multipolygon of two single pixels (centres inside), overlapping "west" at (5, 0)
        "pair": MultiPolygon([box(500001, 4999941, 500009, 4999949), box(500051, 4999941, 500059, 4999949)]),
    }
    a = class_area(_label(lab, gbox), unit="m2", polygons=polys, crs="EPSG:32633")
    assert a.dims == ("class", "polygon") and a.polygon.values.tolist() == list(polys)
    w = a.sel(polygon="west")
    assert (w.sel({"class": "water"}), w.sel({"class": "trees"}), w.nodata_area) == (1100.0, 0.0, 100.0)
    assert float(w.total_area) == 1200.0
    m = a.sel(polygon="middle")
    assert (float(m.sel({"class": "water"})), float(m.sel({"class": "trees"})), float(m.total_area)) == (300, 300, 600)
    assert float(a.sel(polygon="outside").total_area) == 0.0 and float(a.sel(polygon="outside").sum()) == 0.0
    p = a.sel(polygon="pair")
    assert (float(p.sel({"class": "water"})), float(p.sel({"class": "trees"}))) == (100.0, 100.0)


class _FrameLike:
    """The bits of a GeoDataFrame that class_area uses: .geometry, .index, .crs."""

    def __init__(self, geoms: list, names: list, crs: str) -> None:
        self.geometry, self.index, self.crs = geoms, names, crs


def test_polygons_in_another_crs_are_reprojected() -> None:
    gbox = _utm_box(20, 20, res=10, x0=500000, y0=5000000)
    lab = _label(np.ones((3, 20, 20)), gbox, ["2023-01-01", "2023-02-01", "2023-03-01"])
    to_ll = pyproj.Transformer.from_crs(32633, 4326, always_xy=True)
    (lon0, lon1), (lat0, lat1) = to_ll.transform([500040.3, 500170.7], [4999830.2, 4999960.9])
    tri = Polygon([(lon0, lat0), (lon1, lat0), (lon0, lat1)])
    # hand count: UTM pixel centres, taken to lon/lat, inside the lon/lat triangle
    xc, yc = np.meshgrid(gbox.coords["x"].values, gbox.coords["y"].values)
    lonc, latc = to_ll.transform(xc, yc)
    inside = sum(tri.contains(Point(lo, la)) for lo, la in zip(lonc.ravel(), latc.ravel()))
    assert 40 < inside < 100
    for polys, kw in (([tri], {"crs": "EPSG:4326"}), (_FrameLike([tri], ["t"], "EPSG:4326"), {}),
                      (Geometry(tri, "EPSG:4326"), {})):
        a = class_area(lab, unit="m2", polygons=polys, **kw)
        assert a.dims == ("time", "class", "polygon") and a.sizes["polygon"] == 1
        assert a.sel({"class": "trees"}).values.ravel().tolist() == [100.0 * inside] * 3
    assert class_area(lab, polygons=_FrameLike([tri], ["t"], "EPSG:4326")).polygon.values.tolist() == ["t"]


def test_dask_is_lazy_chunk_invariant_and_matches_numpy() -> None:
    rng = np.random.default_rng(5)
    gbox = _utm_box(18, 22, res=1000, x0=700000, y0=5200000)
    raw = rng.gamma(1.0, size=(4, 9, 18, 22))
    p = (raw / raw.sum(axis=1, keepdims=True)).astype(np.float32)
    p[np.broadcast_to(rng.random((4, 1, 18, 22)) < 0.2, p.shape)] = np.nan
    prob = xr.DataArray(p, dims=("time", "class", "y", "x"), name="probability",
                        coords={"time": pd.date_range("2023-01-01", periods=4, freq="MS"), "class": list(CLASSES),
                                **xr_coords(gbox)})
    polys = {"a": box(703000, 5190000, 712500, 5199000), "b": box(705000, 5185000, 720000, 5195500)}
    for kw in ({}, {"method": "expected"}, {"polygons": polys, "crs": "EPSG:32633", "ellipsoidal": True}):
        ref = class_area(prob, **kw)
        for chunks in ({"time": 1, "y": 5, "x": 7}, {"time": 2, "class": 4, "y": 18, "x": 11}):
            with dask.config.set(scheduler=_forbid_compute):
                lazy = class_area(prob.chunk(chunks), **kw)
            assert isinstance(lazy.data, da.Array) and isinstance(lazy.valid_area.data, da.Array)
            got = lazy.compute()
            np.testing.assert_allclose(got.values, ref.values, rtol=1e-12, atol=0)
            np.testing.assert_allclose(got.nodata_area.values, ref.nodata_area.values, rtol=1e-12)
            np.testing.assert_allclose(got.total_area.values, ref.total_area.values, rtol=1e-12)
    # the expected areas add up to the valid area per date
    ref = class_area(prob, method="expected")
    np.testing.assert_allclose(ref.sum("class"), ref.valid_area, rtol=1e-6)


# -- errors ----------------------------------------------------------------------------------------


def test_bad_input_gives_clear_errors() -> None:
    gbox = _utm_box(2, 2)
    lab = _label(np.zeros((2, 2)), gbox)
    with pytest.raises(ValueError, match="unknown unit 'acre'"):
        class_area(lab, unit="acre")
    with pytest.raises(ValueError, match="unknown unit 'sqft'"):
        pixel_area(lab, unit="sqft")
    with pytest.raises(ValueError, match="no CRS"):
        class_area(xr.DataArray(np.zeros((2, 2), np.uint8), dims=("y", "x"), coords={"y": [1.5, 0.5], "x": [0.5, 1.5]}))
    with pytest.raises(ValueError, match="no spatial dimensions"):
        class_area(xr.DataArray(np.zeros((2, 2), np.uint8), dims=("a", "b")))
    with pytest.raises(ValueError, match="method='expected' needs a probability cube"):
        class_area(lab, method="expected")
    with pytest.raises(ValueError, match="unknown method 'mean'"):
        class_area(lab, method="mean")
    with pytest.raises(ValueError, match="label raster of integers"):
        class_area(lab.astype(np.float32))
    with pytest.raises(ValueError, match="polygons have no CRS"):
        class_area(lab, polygons=[box(0, 0, 1, 1)])
    with pytest.raises(ValueError, match="Polygon or MultiPolygon"):
        class_area(lab, polygons=[LineString([(0, 0), (1, 1)])], crs="EPSG:32633")
    with pytest.raises(ValueError, match="not a geometry"):
        class_area(lab, polygons=["POLYGON"], crs="EPSG:32633")
    with pytest.raises(ValueError, match="polygons is empty"):
        class_area(lab, polygons=[], crs="EPSG:32633")
    with pytest.raises(ValueError, match="neither a 'probability' nor a 'label'"):
        class_area(xr.Dataset({"x": lab}))
    with pytest.raises(TypeError, match="expected a label or probability DataArray, got ndarray"):
        class_area(lab.values)  # type: ignore[arg-type]

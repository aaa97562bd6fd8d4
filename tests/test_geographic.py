"""The whole chain on a latitude/longitude grid, as `dwcube.load(crs="EPSG:4326")` gives it: load with
the default L1C cloud mask → classify → smooth → changes → archive → area, on the five real eo-learn
scenes. Each step is checked for what it must do on such a grid, not only that it runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyproj
import pytest
import xarray as xr

import dwcube
from dwcube import testing as T
from dwcube.classes import CLASSES
from dwcube.demo import write_catalog

pytestmark = pytest.mark.shared

GEO = ("latitude", "longitude")
RES = 0.0001  # degrees: 11.1 m north-south, 7.8 m east-west at 45.9° N


def _cell_areas_m2(gbox) -> np.ndarray:
    """The area (m²) of one cell in each row of a lat/lon grid, from Karney's geodesic polygon area
    (pyproj.Geod) of the cell's outline, densified along its parallels — independent of dwcube.stats."""
    geod = pyproj.CRS(gbox.crs.proj).get_geod()
    aff = gbox.affine
    lon0, lon1 = aff.c, aff.c + aff.a
    t = np.linspace(0, 1, 50, endpoint=False)
    out = []
    for r in range(gbox.shape[0]):
        top, bottom = aff.f + aff.e * r, aff.f + aff.e * (r + 1)
        lons = np.r_[lon0 + (lon1 - lon0) * t, np.full(50, lon1), lon1 - (lon1 - lon0) * t, np.full(50, lon0)]
        lats = np.r_[np.full(50, bottom), bottom + (top - bottom) * t, np.full(50, top), top - (top - bottom) * t]
        out.append(abs(geod.polygon_area_perimeter(lons, lats)[0]))
    return np.array(out)


def test_load_classify_smooth_changes_archive_area_on_a_geographic_grid(shared: Path, tmp_path: Path) -> None:
    items = T.eolearn_l1c_items(shared, tmp_path / "cogs", base_url=tmp_path.resolve().as_uri(), root=tmp_path)
    catalog = write_catalog(items, tmp_path / "l1c.parquet")
    bands = ["blue", "green", "red", "nir", "swir16"]

    # 1. load: lat/lon dims, the CRS, and the default L1C cloud mask measured on the ground
    cube = dwcube.load(str(catalog), collections=["sentinel-2-l1c"], crs="EPSG:4326", resolution=RES, bands=bands,
                       chunks=96).persist()  # masked once, not again for every step below; 1 x 2 chunks
    raw = dwcube.load(str(catalog), collections=["sentinel-2-l1c"], crs="EPSG:4326", resolution=RES, bands=bands,
                      chunks=96, cloud_mask=False)
    gbox = cube.odc.geobox
    assert cube.red.dims == ("time", *GEO) and gbox.crs.epsg == 4326
    assert abs(gbox.resolution.x) == pytest.approx(RES) and "dynamic-world cloud/shadow mask" in cube.attrs["cloud_mask"]
    dates = [str(t)[:10] for t in cube.time.values]
    assert dates == sorted(T.EOLEARN_SCENE_DATES)
    footprint = np.isfinite(raw.red.values)
    masked = np.array([np.isnan(cube.red.values[t])[footprint[t]].mean() for t in range(len(dates))])
    print("masked share per date:", dict(zip(dates, masked.round(3), strict=True)))
    assert masked[dates.index("2015-08-20")] >= 0.99                         # the cloudy scene
    assert all(masked[dates.index(d)] <= 0.02 for d in ("2015-07-11", "2015-08-30", "2015-09-09"))  # clear

    # 2. classify: the probability cube keeps the grid; NaN exactly where the cube has no data
    prob = dwcube.classify(cube, T.TINY_MODEL, device="cpu").persist()
    assert prob.dims == ("time", "class", *GEO) and prob.odc.geobox == gbox
    p = prob.values
    invalid = ~np.isfinite(cube.to_dataarray("band").values).all(axis=0)
    np.testing.assert_array_equal(np.isnan(p).any(axis=1), invalid)
    np.testing.assert_allclose(np.nansum(p, axis=1)[~invalid], 1, atol=1e-5)

    # 3. smooth: same dims, grid and no-data; a posterior that sums to 1
    post = prob.lulc.smooth()
    assert post.dims == prob.dims and post.odc.geobox == gbox and post.attrs["temporal_method"] == "hmm-forward-backward"
    q = post.values
    np.testing.assert_array_equal(np.isnan(q), np.isnan(p))
    np.testing.assert_allclose(np.nansum(q, axis=1)[~invalid], 1, atol=1e-5)

    # 4. changes: maps over latitude/longitude on the grid, dated by the rule on the smoothed labels
    ch = prob.lulc.changes(min_observations=1, min_duration=0)
    assert all(ch[v].dims == GEO for v in ch.data_vars) and ch.odc.geobox == gbox
    lab = np.where(np.isnan(q).any(axis=1), -1, np.nan_to_num(q).argmax(axis=1))  # (time, lat, lon)
    times = cube.time.values.astype("datetime64[ns]")
    want = np.full(lab.shape[1:], np.datetime64("NaT"), "datetime64[ns]")
    for i, j in np.ndindex(*lab.shape[1:]):  # with runs of one date lasting, a change is any switch
        seq = [(t, c) for t, c in enumerate(lab[:, i, j]) if c >= 0]
        switch = next((t for (_, a), (t, b) in zip(seq, seq[1:], strict=False) if a != b), None)
        if switch is not None:
            want[i, j] = times[switch]
    np.testing.assert_array_equal(ch.change_date.values, want)
    found = ~np.isnat(want)
    assert found.any() and (ch.from_class.values[found] != ch.to_class.values[found]).all()

    # 5. the archive keeps the dims, the grid and the CRS
    store = tmp_path / "geo.zarr"
    dwcube.write_archive(prob, store)
    ds = dwcube.open_archive(store)
    assert ds.probability.dims == ("time", "class", *GEO) and ds.odc.geobox.crs.epsg == 4326
    assert ds.odc.geobox.affine.almost_equals(gbox.affine) and ds.odc.geobox.shape == gbox.shape
    np.testing.assert_allclose(ds.probability.values, p, atol=1e-5)  # uint16 storage: within 7.7e-6
    np.testing.assert_array_equal(ds.label.values, np.where(invalid, 255, np.nan_to_num(p).argmax(axis=1)))

    # 6. area: labelled area per class, each pixel its ellipsoidal cell area (rows differ with latitude)
    area = ds.lulc.area("m2")
    cells = _cell_areas_m2(gbox)
    label = ds.label.values
    for k, name in enumerate(CLASSES):
        want_m2 = ((label == k) * cells[None, :, None]).sum(axis=(1, 2))
        np.testing.assert_allclose(area.sel({"class": name}).values, want_m2, rtol=1e-7, atol=1e-6)
    np.testing.assert_allclose(float(area.total_area), cells.sum() * gbox.shape[1], rtol=1e-7)
    np.testing.assert_allclose(area.nodata_area.values, ((label == 255) * cells[None, :, None]).sum(axis=(1, 2)),
                               rtol=1e-7, atol=1e-6)
    assert area.attrs["crs"] == "EPSG:4326" and "latitude/longitude cell" in area.attrs["pixel_area_method"]
    assert isinstance(area, xr.DataArray) and area.dims == ("time", "class")

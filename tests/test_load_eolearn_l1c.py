"""The five real eo-learn Sentinel-2 L1C scenes (2015, baseline 02.xx) as a local catalogue."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

import dwcube
from dwcube import testing as T
from dwcube.demo import write_catalog

pytestmark = pytest.mark.shared

BAND_ORDER = ["coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08",
              "nir09", "cirrus", "swir16", "swir22"]
SCENE_DATES = ["2015-08-20", "2015-07-31", "2015-09-09", "2015-08-30", "2015-07-11"]


def test_l1c_scenes_load_as_top_of_atmosphere_reflectance(shared: Path, tmp_path: Path) -> None:
    scenes = np.load(shared / "data" / "eolearn-slovenia" / "reference_scenes_l1c.npy")  # (5, 101, 100, 13)
    # The patch is on a ~9.99 m grid; written here on the 10 m grid at the same origin (< 1 px shift),
    # so that the load is pixel-for-pixel.
    tr = (10.0, 0.0, 465180.0, 0.0, -10.0, 5080260.0)
    items, dns = [], []
    for i, day in enumerate(SCENE_DATES):
        dn = np.round(scenes[i] * 10000).astype(np.uint16)
        dns.append(dn)
        infos = {b: T.write_cog(tmp_path / f"s{i}" / f"{b}.tif", dn[..., k], epsg=32633, transform=tr)
                 for k, b in enumerate(BAND_ORDER)}
        when = dt.datetime.fromisoformat(day).replace(hour=10, minute=0, tzinfo=dt.timezone.utc)
        items.append(T.sentinel2_item(f"S2A_33TVL_{day.replace('-', '')}_0_L1C", when, infos,
                                      base_url=tmp_path.resolve().as_uri(), root=tmp_path, level="L1C",
                                      processing_baseline="02.04", tile="33TVL"))
    catalog = write_catalog(items, tmp_path / "l1c.parquet")
    ds = dwcube.load(str(catalog), collections=["sentinel-2-l1c"], datetime="2015-07/2015-09", chunks=64,
                     cloud_mask=False)  # radiometry only; the cloud mask has tests of its own
    assert ds.attrs["sensor"] == "sentinel-2-l1c" and ds.attrs["mask"] == "none"
    assert list(ds.data_vars) == BAND_ORDER  # cirrus (B10) is an L1C band
    assert [str(t)[:10] for t in ds.time.values] == sorted(SCENE_DATES)
    assert ds.sizes["y"] == 101 and ds.sizes["x"] == 100
    got = ds.compute()
    order = np.argsort(SCENE_DATES)
    for k, b in enumerate(BAND_ORDER):
        for t, i in enumerate(order):
            want = dns[i][..., k] / np.float64(10000)
            want = np.where(dns[i][..., k] == 0, np.nan, want).astype(np.float32)
            np.testing.assert_array_max_ulp(got[b].values[t], want, maxulp=1)
            # and the stored reflectance itself, to the DN quantum
            np.testing.assert_allclose(got[b].values[t], scenes[i][..., k], atol=0.5e-4 + 1e-7)

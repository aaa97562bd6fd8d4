"""Dynamic World preprocessing from a real L1C cube: dwcube.load + the registry's input spec
reproduce the reference ``normalized`` input of the original model."""

from __future__ import annotations

import datetime as dt
import warnings
from pathlib import Path

import numpy as np
import pytest

import dwcube
from dwcube import testing as T
from dwcube.demo import write_catalog
from dwcube.inputs import OutOfDomainWarning, model_inputs
from dwcube.models.dynamic_world import BANDS
from dwcube.models.registry import get_entry

pytestmark = pytest.mark.shared

EOLEARN_ORDER = ["coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08",
                 "nir09", "cirrus", "swir16", "swir22"]
TRANSFORM = (10.0, 0.0, 465180.0, 0.0, -10.0, 5080260.0)  # the patch's origin on a 10 m grid


def _cube(shared: Path, tmp: Path, *, level: str, baseline: str, add: int = 0):
    """eo-learn scene 2 (2015-09-09) as a one-item local catalogue of COGs."""
    scenes = np.load(shared / "data" / "eolearn-slovenia" / "reference_scenes_l1c.npy")
    dn = np.round(scenes[2] * 10000).astype(np.uint16)
    infos = {b: T.write_cog(tmp / f"{b}.tif", np.where(dn[..., k] > 0, dn[..., k] + add, 0).astype(np.uint16),
                            epsg=32633, transform=TRANSFORM)
             for k, b in enumerate(EOLEARN_ORDER) if b in BANDS}
    when = dt.datetime(2015, 9, 9, 10, tzinfo=dt.timezone.utc)
    item = T.sentinel2_item(f"S2A_33TVL_20150909_0_{level}", when, infos, base_url=tmp.resolve().as_uri(),
                            root=tmp, level=level, processing_baseline=baseline, tile="33TVL")
    collection = f"sentinel-2-{level.lower()}"
    catalog = write_catalog([item], tmp / "catalog.parquet")
    return dwcube.load(str(catalog), collections=[collection], bands=list(BANDS), chunks=64, mask=None,
                       cloud_mask=False)


@pytest.mark.parametrize("baseline,add", [("02.01", 0), ("04.00", 1000)])
def test_l1c_cube_gives_the_reference_normalised_input(shared: Path, tmp_path: Path, baseline: str,
                                                      add: int) -> None:
    ref = np.load(shared / "dynamicworld" / "reference" / "eolearn_scene2.npz")
    cube = _cube(shared, tmp_path, level="L1C", baseline=baseline, add=add)
    spec = get_entry("dynamic-world").inputs
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfDomainWarning)
        x = model_inputs(cube, spec)
    got = x.isel(time=0).transpose("y", "x", "feature").values
    assert got.dtype == np.float32 and list(x.feature.values) == list(BANDS)
    err = np.abs(got - ref["normalized"]).max()
    print(f"baseline {baseline}: max|Δ normalized| vs the original runner {err:.1e}")
    assert err <= 1e-6
    assert "out_of_domain" not in x.attrs and x.attrs["sensor"] == "sentinel-2-l1c"
    assert "sigmoid(5·(ln(1 + 50·x)" in x.attrs["normalisation"][0]


def test_l2a_input_is_flagged_out_of_domain(shared: Path, tmp_path: Path) -> None:
    cube = _cube(shared, tmp_path, level="L2A", baseline="02.01")
    with pytest.warns(OutOfDomainWarning, match="sentinel-2-l2a"):
        x = model_inputs(cube, get_entry("dynamic-world").inputs)
    assert "trained on sentinel-2-l1c" in x.attrs["out_of_domain"]
    assert np.isfinite(x.values).all()

"""Sensor facts pinned: bit tables, SCL classes, baselines, offsets, HLS coefficients, detection."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pystac
import pytest

from dwcube.sensors import (
    HLS_COEFFICIENTS,
    LANDSAT_OLI,
    LANDSAT_TM,
    QA_PIXEL_BITS,
    QA_PIXEL_DEFAULT_MASK,
    SCL_CLASSES,
    SCL_DEFAULT_MASK,
    SENTINEL2_L1C,
    SENTINEL2_L2A,
    MaskSpec,
    SensorError,
    UnknownBandError,
    detect_sensor,
    get_sensor,
    processing_baseline,
    reflectance,
)
from dwcube.sensors.sentinel2 import baseline_offset_dn


def _item(props: dict, collection: str | None = None, assets: tuple[str, ...] = (), item_id: str = "x") -> pystac.Item:
    it = pystac.Item(item_id, geometry=None, bbox=None, datetime=dt.datetime(2022, 1, 1, tzinfo=dt.timezone.utc),
                     properties=dict(props), collection=collection)
    for a in assets:
        it.add_asset(a, pystac.Asset(href=f"{a}.tif"))
    return it


# -- Landsat QA_PIXEL -----------------------------------------------------------------------------


def test_qa_pixel_bit_table_is_collection2() -> None:
    assert QA_PIXEL_BITS == {
        0: "fill", 1: "dilated_cloud", 2: "cirrus", 3: "cloud",
        4: "cloud_shadow", 5: "snow", 6: "clear", 7: "water",
    }
    assert QA_PIXEL_DEFAULT_MASK == MaskSpec("bits", frozenset({0, 1, 2, 3, 4}))


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        (21824, False),  # clear land, low-confidence flags (USGS example value)
        (21952, False),  # clear water (bit 7)
        (30048, False),  # snow (bit 5) is kept by default
        (1, True),  # fill
        (21826, True),  # dilated cloud (bit 1)
        (21828, True),  # cirrus (bit 2)
        (22280, True),  # high-confidence cloud (bit 3)
        (23888, True),  # cloud shadow (bit 4)
    ],
)
def test_qa_pixel_clear_sky_rule(value: int, masked: bool) -> None:
    # cross-check with the bits themselves: masked iff any of bits 0-4 is set
    assert bool(value & 0b11111) == masked
    assert bool(QA_PIXEL_DEFAULT_MASK.invalid(np.array([value], np.uint16))[0]) is masked


def test_maskspec_bits_and_classes() -> None:
    assert MaskSpec("bits", {5}).invalid(np.array([32, 64, 0])).tolist() == [True, False, False]
    assert MaskSpec("classes", {3, 9}).invalid(np.array([3, 4, 9, 11])).tolist() == [True, False, True, False]
    assert MaskSpec("classes", {0}).invalid(np.array([np.nan, 4.0])).tolist() == [True, False]
    with pytest.raises(ValueError, match="kind"):
        MaskSpec("values", {1})
    with pytest.raises(ValueError, match="bit positions"):
        MaskSpec("bits", {16})


# -- Sentinel-2 ----------------------------------------------------------------------------------


def test_scl_table_and_default_mask() -> None:
    assert SCL_CLASSES[3] == "cloud_shadow" and SCL_CLASSES[8] == "cloud_medium_probability"
    assert SCL_CLASSES[9] == "cloud_high_probability" and SCL_CLASSES[10] == "thin_cirrus"
    assert SCL_CLASSES[11] == "snow_or_ice" and SCL_CLASSES[0] == "no_data"
    assert set(SCL_DEFAULT_MASK.values) == {0, 1, 3, 8, 9, 10}
    scl = np.arange(12)
    assert np.flatnonzero(SCL_DEFAULT_MASK.invalid(scl)).tolist() == [0, 1, 3, 8, 9, 10]


@pytest.mark.parametrize(
    ("props", "item_id", "expected"),
    [
        ({"s2:processing_baseline": "04.00"}, "x", (4, 0)),
        ({"s2:processing_baseline": "5.09"}, "x", (5, 9)),
        ({"s2:processing_baseline": "02.14"}, "x", (2, 14)),
        ({"s2:product_uri": "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE"}, "x", (4, 0)),
        ({}, "S2B_MSIL1C_20170105T013442_N0204_R031_T53NMJ_20170105T013443", (2, 4)),
        ({}, "S2A_29UNU_20221005_0_L2A", None),
    ],
)
def test_processing_baseline(props: dict, item_id: str, expected: tuple | None) -> None:
    assert processing_baseline(_item(props, item_id=item_id)) == expected


def test_baseline_offset_is_decided_per_item_not_by_date() -> None:
    # a 2018 product reprocessed with baseline 04.00 carries the offset ...
    old_reprocessed = _item({"s2:processing_baseline": "04.00"})
    old_reprocessed.datetime = dt.datetime(2018, 5, 1, tzinfo=dt.timezone.utc)
    assert baseline_offset_dn(old_reprocessed)[0] == -1000.0
    # ... a 2023 item described as 02.xx does not
    new = _item({"s2:processing_baseline": "02.14"})
    new.datetime = dt.datetime(2023, 5, 1, tzinfo=dt.timezone.utc)
    assert baseline_offset_dn(new)[0] == 0.0


def test_offset_never_applied_twice_for_earth_search_flag() -> None:
    it = _item({"s2:processing_baseline": "04.00", "earthsearch:boa_offset_applied": True})
    assert baseline_offset_dn(it)[0] == 0.0
    assert baseline_offset_dn(it, "apply")[0] == -1000.0  # the user can overrule a wrong flag
    assert baseline_offset_dn(it, "skip")[0] == 0.0
    assert baseline_offset_dn(_item({"s2:processing_baseline": "04.00",
                                     "earthsearch:boa_offset_applied": False}))[0] == -1000.0


def test_missing_baseline_is_an_error_not_a_guess() -> None:
    with pytest.raises(SensorError, match="processing baseline"):
        baseline_offset_dn(_item({}, item_id="S2A_29UNU_20221005_0_L2A"))
    with pytest.raises(ValueError, match="baseline_offset"):
        baseline_offset_dn(_item({"s2:processing_baseline": "04.00"}), "maybe")


def test_reflectance_ufunc_against_numpy() -> None:
    rng = np.random.default_rng(1)
    dn = rng.integers(0, 20000, size=10_000).astype(np.uint16)
    dn[:10] = 0
    got = reflectance(dn, 0, -1000.0, 1e-4, 0.0)
    want = np.where(dn == 0, np.nan, (dn.astype(np.float64) - 1000) / 10000).astype(np.float32)
    assert got.dtype == np.float32
    assert np.isnan(got[:10]).all()
    np.testing.assert_array_max_ulp(got[10:], want[10:], maxulp=1)
    # Landsat rule, float input with NaN
    x = np.array([np.nan, 0.0, 7273.0, 43636.0])
    np.testing.assert_allclose(reflectance(x, 0, 0.0, 2.75e-5, -0.2),
                               [np.nan, np.nan, 7273 * 2.75e-5 - 0.2, 43636 * 2.75e-5 - 0.2], rtol=1e-6)


def test_hls_coefficients_pinned() -> None:
    assert HLS_COEFFICIENTS["sentinel-2a"]["red"] == (0.9765, 0.0009)
    assert HLS_COEFFICIENTS["sentinel-2b"]["red"] == (0.9761, 0.001)
    assert HLS_COEFFICIENTS["sentinel-2a"]["swir22"] == (1.003, -0.0012)
    assert HLS_COEFFICIENTS["sentinel-2b"]["swir22"] == (0.9867, 0.0004)
    assert HLS_COEFFICIENTS["sentinel-2b"]["nir08"] == (0.9966, 0.0)
    assert set(HLS_COEFFICIENTS["sentinel-2a"]) == {"coastal", "blue", "green", "red", "nir08", "swir16", "swir22"}
    with pytest.raises(SensorError, match="sentinel-2c"):
        SENTINEL2_L2A.harmonization(_item({"platform": "sentinel-2c"}))
    assert SENTINEL2_L2A.harmonization(_item({"platform": "Sentinel-2B"}))["red"] == (0.9761, 0.001)


# -- detection and bands --------------------------------------------------------------------------


def test_detect_sensor() -> None:
    assert detect_sensor(_item({"platform": "sentinel-2a"}, "sentinel-2-l2a")) is SENTINEL2_L2A
    assert detect_sensor(_item({"platform": "Sentinel-2B"}, "sentinel-2-l2a")) is SENTINEL2_L2A
    assert detect_sensor(_item({"platform": "sentinel-2b"}, "sentinel-2-l1c")) is SENTINEL2_L1C
    assert detect_sensor(_item({"s2:product_type": "S2MSI1C", "constellation": "sentinel-2"}, "my-s2")) is SENTINEL2_L1C
    assert detect_sensor(_item({"platform": "landsat-9"}, "landsat-c2-l2")) is LANDSAT_OLI
    assert detect_sensor(_item({"platform": "LANDSAT_8"}, "landsat-c2l2-sr")) is LANDSAT_OLI
    assert detect_sensor(_item({"platform": "landsat-7"}, "landsat-c2-l2")) is LANDSAT_TM
    assert detect_sensor(_item({"platform": "landsat-5"}, "landsat-c2-l2")) is LANDSAT_TM
    with pytest.raises(SensorError, match="Level-1"):
        detect_sensor(_item({"platform": "landsat-8"}, "landsat-c2-l1"))
    with pytest.raises(SensorError, match="cannot tell its sensor"):
        detect_sensor(_item({"platform": "worldview-3"}, "wv"))
    with pytest.raises(SensorError, match="product level"):
        detect_sensor(_item({"platform": "sentinel-2a"}, "s2"))
    with pytest.raises(SensorError, match="unknown sensor"):
        get_sensor("modis")


def test_band_names_and_asset_keys() -> None:
    assert SENTINEL2_L2A.band("B8A").name == "nir08"
    assert SENTINEL2_L2A.band("nir").band_id == "B08"
    assert "cirrus" in SENTINEL2_L1C.bands and "cirrus" not in SENTINEL2_L2A.bands
    assert LANDSAT_OLI.band("nir").name == "nir08"  # Landsat's NIR is the narrow NIR
    assert LANDSAT_OLI.band("red").band_id == "SR_B4" and LANDSAT_TM.band("red").band_id == "SR_B3"
    es = _item({}, assets=("red", "scl"))
    pc = _item({}, assets=("B04", "SCL"))
    assert SENTINEL2_L2A.band("red").asset_key(es) == "red"
    assert SENTINEL2_L2A.band("red").asset_key(pc) == "B04"
    assert SENTINEL2_L2A.mask_band.asset_key(pc) == "SCL"
    with pytest.raises(UnknownBandError, match="available: .*blue.*swir22"):
        SENTINEL2_L2A.band("thermal")
    with pytest.raises(UnknownBandError, match="coastal"):
        LANDSAT_TM.band("coastal")

"""Catalogue search: local files in every format, the same filters as a real STAC API."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pystac
import pytest

from dwcube import testing as T
from dwcube.demo import write_catalog
from dwcube.stac import CatalogError, EmptySearchError, parse_datetime_range, search

UTC = dt.timezone.utc


@pytest.fixture()
def items(tmp_path: Path) -> list[pystac.Item]:
    """Six tiny items: two places, three dates, two collections."""
    out = []
    for i, (day, x0, coll, cc) in enumerate(
        [(1, 500000, "sentinel-2-l2a", 5.0), (11, 500000, "sentinel-2-l2a", 60.0),
         (21, 500000, "sentinel-2-l2a", 15.0), (1, 700000, "sentinel-2-l2a", 1.0),
         (11, 700000, "sentinel-2-l1c", 2.0), (21, 700000, "sentinel-2-l1c", 90.0)]
    ):
        info = T.RasterInfo(str(tmp_path / f"r{i}.tif"), 32633, (10.0, 0.0, float(x0), 0.0, -10.0, 5000000.0),
                            (100, 100), "uint16", 0)
        it = T.sentinel2_item(f"item{i}", dt.datetime(2022, 6, day, 10, tzinfo=UTC), {"red": info},
                              base_url="http://example.invalid", root=tmp_path, cloud_cover=cc,
                              level="L2A" if coll.endswith("l2a") else "L1C")
        out.append(it)
    return out


def _bbox_of(item: pystac.Item, pad: float = 0.0) -> list[float]:
    b = item.bbox
    return [b[0] - pad, b[1] - pad, b[2] + pad, b[3] + pad]


@pytest.mark.parametrize("suffix", [".json", ".ndjson", ".parquet"])
def test_local_catalog_formats_give_the_same_items(items: list[pystac.Item], tmp_path: Path, suffix: str) -> None:
    path = write_catalog(items, tmp_path / f"catalog{suffix}")
    found = search(str(path))
    assert [it.id for it in found] == [it.id for it in sorted(items, key=lambda i: (i.datetime, i.id))]
    assert found[0].assets["red"].href == items[0].assets["red"].href
    assert found[0].properties["s2:processing_baseline"] == "04.00"


def test_static_catalog_and_item_lists(items: list[pystac.Item], tmp_path: Path) -> None:
    cat = pystac.Catalog("cat", "a static catalogue")
    for it in items:
        cat.add_item(it.clone())
    cat.normalize_and_save(str(tmp_path / "static"), catalog_type=pystac.CatalogType.SELF_CONTAINED)
    assert len(search(str(tmp_path / "static" / "catalog.json"))) == 6
    assert len(search([it.to_dict() for it in items])) == 6
    assert len(search(pystac.ItemCollection(items))) == 6


def test_local_filters(items: list[pystac.Item]) -> None:
    east = _bbox_of(items[3], pad=-0.001)
    assert {it.id for it in search(items, bbox=east)} == {"item3", "item4", "item5"}
    assert {it.id for it in search(items, collections=["sentinel-2-l1c"])} == {"item4", "item5"}
    assert {it.id for it in search(items, datetime="2022-06-11")} == {"item1", "item4"}
    assert {it.id for it in search(items, datetime="2022-06-05/2022-06-15")} == {"item1", "item4"}
    assert {it.id for it in search(items, datetime="2022-06-15/..")} == {"item2", "item5"}
    assert {it.id for it in search(items, datetime=(None, "2022-06-01"))} == {"item0", "item3"}
    assert len(search(items, datetime="2022-06")) == 6
    assert {it.id for it in search(items, query={"eo:cloud_cover": {"lt": 10}})} == {"item0", "item3", "item4"}
    assert {it.id for it in search(items, query={"eo:cloud_cover": {"gte": 60, "lte": 90}})} == {"item1", "item5"}
    geom = {"type": "Point", "coordinates": [(east[0] + east[2]) / 2, (east[1] + east[3]) / 2]}
    assert {it.id for it in search(items, geometry=geom)} == {"item3", "item4", "item5"}
    assert [it.id for it in search(items, max_items=2)] == ["item0", "item3"]


def test_empty_search_names_the_search(items: list[pystac.Item]) -> None:
    with pytest.raises(EmptySearchError) as err:
        search(items, collections=["landsat-c2-l2"], bbox=(1, 2, 3, 4), datetime="2021-01")
    msg = str(err.value)
    assert "landsat-c2-l2" in msg and "[1.0, 2.0, 3.0, 4.0]" in msg and "2021-01" in msg


def test_bad_catalogues(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="not found"):
        search(str(tmp_path / "nope.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CatalogError, match="cannot read"):
        search(str(tmp_path / "bad.json"))
    (tmp_path / "coll.json").write_text(json.dumps({"type": "Thing"}))
    with pytest.raises(CatalogError, match="not an ItemCollection"):
        search(str(tmp_path / "coll.json"))
    with pytest.raises(ValueError, match="bbox"):
        search([], bbox=(10, 0, 0, 10))
    with pytest.raises(CatalogError, match="cannot use"):
        search(42)


def test_parse_datetime_range() -> None:
    a, b = parse_datetime_range("2022")
    assert a == dt.datetime(2022, 1, 1, tzinfo=UTC) and b.year == 2022 and b.month == 12 and b.day == 31
    a, b = parse_datetime_range("2022-12")
    assert b.month == 12 and b.day == 31
    a, b = parse_datetime_range("2022-03-04T05:06:07Z")
    assert a == b == dt.datetime(2022, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert parse_datetime_range(None) == (None, None)
    with pytest.raises(ValueError, match="cannot parse"):
        parse_datetime_range("yesterday")


@pytest.mark.network
def test_real_stac_api_search_matches_local_search(items: list[pystac.Item], tmp_path: Path) -> None:
    """rustac serve on loopback, searched by pystac-client, gives the same items as the local filter."""
    with T.stac_api(items, tmp_path) as url:
        east = _bbox_of(items[3], pad=-0.001)
        for kw in (
            {"collections": ["sentinel-2-l2a"]},
            {"collections": ["sentinel-2-l2a", "sentinel-2-l1c"], "bbox": east},
            {"collections": ["sentinel-2-l2a", "sentinel-2-l1c"], "datetime": "2022-06-05/2022-06-15"},
        ):
            api = [it.id for it in search(url, **kw)]
            local = [it.id for it in search(items, **kw)]
            assert api == local, kw
        with pytest.raises(EmptySearchError, match="2030"):
            search(url, collections=["sentinel-2-l2a"], datetime="2030-01-01/2030-02-01")


@pytest.mark.parametrize(("bbox", "message"), [
    ((-200, 45.1, 15.0, 45.2), "outside -180..180"),
    ((14.9, 45.1, 15.0, 95), "outside -90..90"),
    ((14.9, float("nan"), 15.0, 45.2), "not a finite number"),
    ((14.9, 45.2, 15.0, 45.2), "must be less than north"),
    ((170.0, 45.1, -170.0, 45.2), "antimeridian"),
    ((15.0, 45.1, 15.0, 45.2), "no width"),
])
def test_search_range_checks_the_bbox(items: list[pystac.Item], bbox, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        search(items, bbox=bbox)


def test_search_checks_the_geometry(items: list[pystac.Item]) -> None:
    with pytest.raises(ValueError, match="outside -180..180"):
        search(items, geometry={"type": "Point", "coordinates": [200.0, 45.0]})
    with pytest.raises(ValueError, match="not a GeoJSON geometry"):
        search(items, geometry={"type": "Polygon", "coordinates": "nope"})

"""Finding STAC items: a STAC API, a local catalogue file, a static catalogue, or items.

:func:`search` is the single entry point.  A STAC API is searched with
pystac-client (the server filters); every other source is read whole and
filtered here with the same semantics (collections, bbox/geometry
intersection, datetime interval, ``query`` equality/comparison on properties),
so that a local catalogue and an API give the same items for the same search.

Supported sources
-----------------
* ``"https://…/v1"``: a STAC API (anything whose root advertises
  ``item-search`` conformance), or a remote JSON/ndjson/parquet file.
* a path or URL to an ItemCollection / FeatureCollection ``.json``/``.geojson``,
  newline-delimited ``.ndjson``/``.jsonl``, or stac-geoparquet ``.parquet``
  (read with rustac);
* a static catalogue or collection ``.json`` (followed recursively);
* a :class:`pystac_client.Client`, a :class:`pystac.ItemCollection`, or an
  iterable of :class:`pystac.Item` / item dicts.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pystac
import shapely
import shapely.geometry
from shapely.geometry.base import BaseGeometry

__all__ = ["search", "EmptySearchError", "CatalogError", "parse_datetime_range", "check_bbox", "check_geometry"]

CatalogLike = str | os.PathLike[str] | pystac.ItemCollection | Iterable[pystac.Item | Mapping[str, Any]] | Any


class CatalogError(ValueError):
    """The catalogue could not be opened or read."""


class EmptySearchError(LookupError):
    """A search matched no item; the message names the catalogue, collections, bbox and dates."""


def _describe(catalog: Any, collections: Any, bbox: Any, geometry: Any, datetime: Any, query: Any) -> str:
    where = catalog if isinstance(catalog, (str, os.PathLike)) else type(catalog).__name__
    parts = [
        f"catalog={str(where)!r}",
        f"collections={list(collections) if collections else 'any'}",
        f"bbox={list(bbox) if bbox is not None else 'any'}",
    ]
    if geometry is not None:
        parts.append("geometry=<given>")
    parts.append(f"datetime={datetime if datetime is not None else 'any'}")
    if query:
        parts.append(f"query={query}")
    return ", ".join(parts)


def search(
    catalog: CatalogLike,
    *,
    collections: str | Sequence[str] | None = None,
    bbox: Sequence[float] | None = None,
    geometry: Mapping[str, Any] | BaseGeometry | None = None,
    datetime: str | dt.datetime | Sequence[Any] | None = None,
    query: Mapping[str, Any] | None = None,
    max_items: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> list[pystac.Item]:
    """Find the STAC items of a search, sorted by time.

    Parameters
    ----------
    catalog
        A STAC API URL, a local or remote catalogue file (JSON ItemCollection,
        ndjson, stac-geoparquet, static catalogue/collection), a
        :class:`pystac_client.Client`, or items (``pystac.Item`` or dicts).
    collections
        Collection ids to keep.
    bbox
        ``(west, south, east, north)`` in degrees (EPSG:4326).
    geometry
        GeoJSON geometry (EPSG:4326) the items must intersect.
    datetime
        A single date/time, an ISO interval ``"2022-01-01/2022-06-30"`` (open ends
        with ``..``), a year or month (``"2022"``, ``"2022-06"``), or a
        ``(start, end)`` pair of strings/datetimes/``None``. Inclusive.
    query
        STAC API ``query`` extension: ``{"eo:cloud_cover": {"lt": 20}}`` or
        ``{"platform": "sentinel-2a"}``; applied locally for non-API sources.
    max_items
        At most this many items: for a STAC API, the first ones the API returns
        (in its own order); for other sources, the earliest ones.
    headers
        HTTP headers for a STAC API (for example an authorisation token).

    Returns
    -------
    list of pystac.Item
        Sorted by ``datetime`` (then id); never empty.

    Raises
    ------
    EmptySearchError
        When nothing matched; the message names catalogue, collections, bbox and dates.
    CatalogError
        When the catalogue cannot be opened or parsed.

    Examples
    --------
    >>> items = search("https://earth-search.aws.element84.com/v1",
    ...                collections=["sentinel-2-l2a"], bbox=(-8.1, 53.2, -7.9, 53.4),
    ...                datetime="2022-10", query={"eo:cloud_cover": {"lt": 50}})  # doctest: +SKIP
    >>> items = search("catalog.parquet", bbox=(-8.1, 53.2, -7.9, 53.4))  # doctest: +SKIP
    """
    if isinstance(collections, str):
        collections = [collections]
    if bbox is not None:
        bbox = list(check_bbox(bbox))
    if geometry is not None:
        geometry = shapely.geometry.mapping(check_geometry(geometry))

    items = _search_api(catalog, collections, bbox, geometry, datetime, query, max_items, headers)
    if items is None:
        items = _filter(_read_items(catalog), collections, bbox, geometry, datetime, query)
    items = sorted(items, key=lambda it: (_item_time(it), it.id))
    if max_items is not None:
        items = items[:max_items]
    if not items:
        raise EmptySearchError(
            "no STAC item matched the search: " + _describe(catalog, collections, bbox, geometry, datetime, query)
        )
    return items


def check_bbox(bbox: Sequence[float], *, name: str = "bbox") -> tuple[float, float, float, float]:
    """Check a ``(west, south, east, north)`` box in degrees (EPSG:4326) and return it as floats.

    Longitudes must lie in −180…180 and latitudes in −90…90, all finite, with
    ``south < north`` and ``west < east``.  A box across the antimeridian (``west > east``,
    as RFC 7946 writes it) is refused: the output grid of one load cannot wrap around, so
    load the two sides separately (``west…180`` and ``−180…east``).

    Parameters
    ----------
    bbox
        Four numbers.
    name
        How the caller's interface calls the box, for the messages (``"--bbox"`` on the CLI).

    Raises
    ------
    ValueError
        Naming the problem and the value.

    Examples
    --------
    >>> check_bbox([14.5, 45.8, 14.6, 45.9])
    (14.5, 45.8, 14.6, 45.9)
    >>> check_bbox((-200, 45.1, 15.0, 45.2))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: bbox west = -200.0 is outside -180..180 degrees of longitude (bbox is (west, south, ...)
    """
    what = f"{name} is (west, south, east, north) in degrees, EPSG:4326"
    try:
        values = [float(v) for v in bbox]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be four numbers, got {bbox!r} ({what})") from None
    if len(values) != 4:
        raise ValueError(f"{name} must be four numbers, got {len(values)}: {values} ({what})")
    west, south, east, north = values
    for label, v in zip(("west", "south", "east", "north"), values, strict=True):
        if not math.isfinite(v):
            raise ValueError(f"{name} {label} = {v} is not a finite number ({what})")
    for label, v in (("west", west), ("east", east)):
        if not -180.0 <= v <= 180.0:
            raise ValueError(f"{name} {label} = {v} is outside -180..180 degrees of longitude ({what})")
    for label, v in (("south", south), ("north", north)):
        if not -90.0 <= v <= 90.0:
            raise ValueError(f"{name} {label} = {v} is outside -90..90 degrees of latitude ({what})")
    if not south < north:
        raise ValueError(f"{name} south ({south}) must be less than north ({north}) ({what})")
    if west > east:
        raise ValueError(
            f"{name} west ({west}) is east of east ({east}): a box across the antimeridian is not supported; "
            f"load the two sides separately ({name} {west}, {south}, 180, {north} and -180, {south}, {east}, {north})"
        )
    if west == east:
        raise ValueError(f"{name} west and east are both {west}: the box has no width ({what})")
    return west, south, east, north


def check_geometry(geometry: Mapping[str, Any] | BaseGeometry, *, name: str = "geometry") -> BaseGeometry:
    """Check a GeoJSON geometry in degrees (EPSG:4326): non-empty, finite, valid, within ±180°/±90°.

    Examples
    --------
    >>> check_geometry({"type": "Point", "coordinates": [14.56, 45.87]}).geom_type
    'Point'
    >>> check_geometry({"type": "Point", "coordinates": [14.56, float("nan")]})
    Traceback (most recent call last):
    ...
    ValueError: geometry has coordinates that are not finite numbers (GeoJSON in degrees, EPSG:4326)
    """
    what = "GeoJSON in degrees, EPSG:4326"
    try:
        g = geometry if isinstance(geometry, BaseGeometry) else shapely.geometry.shape(geometry)
    except Exception as exc:
        raise ValueError(f"{name} is not a GeoJSON geometry ({exc}; {what})") from None
    if g.is_empty:
        raise ValueError(f"{name} is empty ({what})")
    import numpy as np

    xy = shapely.get_coordinates(g)
    if not np.isfinite(xy).all():
        raise ValueError(f"{name} has coordinates that are not finite numbers ({what})")
    west, south, east, north = g.bounds
    if west < -180 or east > 180 or south < -90 or north > 90:
        raise ValueError(f"{name} reaches {west:g}, {south:g}, {east:g}, {north:g} (west, south, east, north): "
                         f"outside -180..180 / -90..90 degrees ({what}; across the antimeridian, split it)")
    if not g.is_valid:
        from shapely.validation import explain_validity

        raise ValueError(f"{name} is not a valid geometry: {explain_validity(g)} ({what})")
    return g


# -- STAC API ---------------------------------------------------------------------------------


def _is_api_url(catalog: Any) -> bool:
    if not isinstance(catalog, str) or not re.match(r"^https?://", catalog):
        return False
    path = catalog.split("?")[0].lower()
    return not path.endswith((".json", ".geojson", ".ndjson", ".jsonl", ".parquet", ".geoparquet"))


def _search_api(catalog, collections, bbox, geometry, datetime, query, max_items, headers):  # type: ignore[no-untyped-def]
    import pystac_client

    if isinstance(catalog, pystac_client.Client):
        client = catalog
    elif _is_api_url(catalog):
        try:
            client = pystac_client.Client.open(catalog, headers=dict(headers or {}))
        except Exception as exc:  # network, JSON, or not a STAC root
            raise CatalogError(f"cannot open STAC API {catalog!r}: {exc}") from exc
        if not client.conforms_to("ITEM_SEARCH"):
            # A static catalogue served over HTTP: read it like a file.
            return None
    else:
        return None
    if isinstance(datetime, (list, tuple)):
        datetime = "/".join(_iso_or_open(v) for v in datetime)
    try:
        result = client.search(
            collections=collections,
            bbox=bbox,
            intersects=geometry,
            datetime=datetime,
            query=dict(query) if query else None,
            max_items=max_items,
        )
        return list(result.items())
    except Exception as exc:
        raise CatalogError(
            f"STAC API search failed ({_describe(catalog, collections, bbox, geometry, datetime, query)}): {exc}"
        ) from exc


def _iso_or_open(v: Any) -> str:
    if v is None or v == "..":
        return ".."
    if isinstance(v, dt.datetime):
        return v.isoformat()
    if isinstance(v, dt.date):
        return v.isoformat()
    return str(v)


# -- local sources ------------------------------------------------------------------------------


def _read_items(catalog: Any) -> list[pystac.Item]:
    if isinstance(catalog, pystac.ItemCollection):
        return list(catalog.items)
    if isinstance(catalog, pystac.Item):
        return [catalog]
    if isinstance(catalog, (pystac.Catalog,)):
        return list(catalog.get_items(recursive=True))
    if isinstance(catalog, (str, os.PathLike)):
        return _read_file(str(catalog))
    if isinstance(catalog, Mapping):
        return _items_from_json(catalog, str(catalog.get("id", "<dict>")))
    try:
        seq = list(catalog)
    except TypeError:
        raise CatalogError(
            f"cannot use {type(catalog).__name__} as a catalogue: pass a STAC API URL, a catalogue "
            "file path, a pystac_client.Client, an ItemCollection or a list of items"
        ) from None
    out = []
    for obj in seq:
        if isinstance(obj, pystac.Item):
            out.append(obj)
        elif isinstance(obj, Mapping):
            out.append(pystac.Item.from_dict(dict(obj), preserve_dict=False))
        else:
            raise CatalogError(f"items must be pystac.Item or dicts, got {type(obj).__name__}")
    return out


def _read_file(href: str) -> list[pystac.Item]:
    lower = href.split("?")[0].lower()
    if not re.match(r"^https?://", href) and not Path(href).exists():
        raise CatalogError(f"catalogue file not found: {href}")
    try:
        if lower.endswith((".parquet", ".geoparquet")):
            import rustac

            value = rustac.read_sync(href)
            return _items_from_json(value, href)
        if lower.endswith((".ndjson", ".jsonl")):
            text = _read_text(href)
            return [pystac.Item.from_dict(json.loads(line)) for line in text.splitlines() if line.strip()]
        data = json.loads(_read_text(href))
    except CatalogError:
        raise
    except Exception as exc:
        raise CatalogError(f"cannot read catalogue {href!r}: {exc}") from exc
    if data.get("type") in ("Catalog", "Collection"):
        try:
            root = pystac.read_file(href)
        except Exception as exc:
            raise CatalogError(f"cannot read static catalogue {href!r}: {exc}") from exc
        return list(root.get_items(recursive=True))  # type: ignore[union-attr]
    return _items_from_json(data, href)


def _read_text(href: str) -> str:
    if re.match(r"^https?://", href):
        import urllib.request

        with urllib.request.urlopen(href, timeout=60) as resp:  # noqa: S310 (user-given URL)
            return resp.read().decode("utf-8")
    return Path(href).read_text(encoding="utf-8")


def _items_from_json(data: Mapping[str, Any], href: str) -> list[pystac.Item]:
    kind = data.get("type")
    if kind == "FeatureCollection":
        return [pystac.Item.from_dict(f) for f in data.get("features", [])]
    if kind == "Feature":
        return [pystac.Item.from_dict(dict(data))]
    raise CatalogError(
        f"{href!r} is not an ItemCollection, item, static catalogue or collection (type={kind!r})"
    )


# -- filtering ------------------------------------------------------------------------------------


def parse_datetime_range(value: Any) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Parse a STAC-style datetime filter to an inclusive ``(start, end)`` in UTC.

    Examples
    --------
    >>> parse_datetime_range("2022-10")
    (datetime.datetime(2022, 10, 1, 0, 0, tzinfo=datetime.timezone.utc), datetime.datetime(2022, 10, 31, 23, 59, 59, 999999, tzinfo=datetime.timezone.utc))
    >>> parse_datetime_range("2022-01-01/..")[1] is None
    True
    """
    if value is None:
        return None, None
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"datetime range must have two ends, got {value!r}")
        start, _ = _parse_one(value[0])
        _, end = _parse_one(value[1])
        return start, end
    if isinstance(value, (dt.datetime, dt.date)):
        return _parse_one(value)
    text = str(value).strip()
    if "/" in text:
        a, b = text.split("/", 1)
        return _parse_one(a)[0], _parse_one(b)[1]
    return _parse_one(text)


def _parse_one(v: Any) -> tuple[dt.datetime | None, dt.datetime | None]:
    if v is None or v in ("", ".."):
        return None, None
    if isinstance(v, dt.datetime):
        t = _utc(v)
        return t, t
    if isinstance(v, dt.date):
        s = dt.datetime(v.year, v.month, v.day, tzinfo=dt.timezone.utc)
        return s, s + dt.timedelta(days=1) - dt.timedelta(microseconds=1)
    text = str(v).strip()
    if re.fullmatch(r"\d{4}", text):
        y = int(text)
        return (
            dt.datetime(y, 1, 1, tzinfo=dt.timezone.utc),
            dt.datetime(y + 1, 1, 1, tzinfo=dt.timezone.utc) - dt.timedelta(microseconds=1),
        )
    if re.fullmatch(r"\d{4}-\d{2}", text):
        y, m = map(int, text.split("-"))
        start = dt.datetime(y, m, 1, tzinfo=dt.timezone.utc)
        nxt = dt.datetime(y + (m == 12), m % 12 + 1, 1, tzinfo=dt.timezone.utc)
        return start, nxt - dt.timedelta(microseconds=1)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return _parse_one(dt.date.fromisoformat(text))
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"cannot parse datetime {v!r}") from None
    return _parse_one(t)


def _utc(t: dt.datetime) -> dt.datetime:
    # naive times are UTC (never the machine's zone); offsets are converted to UTC
    return t.astimezone(dt.timezone.utc) if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


def _item_time(item: pystac.Item) -> dt.datetime:
    t = item.datetime or item.common_metadata.start_datetime
    if t is None:
        raise CatalogError(f"item {item.id!r} has neither datetime nor start_datetime")
    return _utc(t)


def _item_interval(item: pystac.Item) -> tuple[dt.datetime, dt.datetime]:
    cm = item.common_metadata
    if item.datetime is None and cm.start_datetime and cm.end_datetime:
        return _utc(cm.start_datetime), _utc(cm.end_datetime)
    t = _item_time(item)
    return t, t


_OPS = {
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
    "lt": lambda a, b: a is not None and a < b,
    "lte": lambda a, b: a is not None and a <= b,
    "gt": lambda a, b: a is not None and a > b,
    "gte": lambda a, b: a is not None and a >= b,
    "in": lambda a, b: a in b,
}


def _match_query(props: Mapping[str, Any], query: Mapping[str, Any]) -> bool:
    for key, cond in query.items():
        value = props.get(key)
        if isinstance(cond, Mapping):
            for op, ref in cond.items():
                if op not in _OPS:
                    raise ValueError(f"unsupported query operator {op!r}; use one of {', '.join(_OPS)}")
                try:
                    if not _OPS[op](value, ref):
                        return False
                except TypeError:
                    return False
        elif value != cond:
            return False
    return True


def _filter(
    items: Iterable[pystac.Item],
    collections: Sequence[str] | None,
    bbox: Sequence[float] | None,
    geometry: Mapping[str, Any] | None,
    datetime: Any,
    query: Mapping[str, Any] | None,
) -> list[pystac.Item]:
    start, end = parse_datetime_range(datetime)
    aoi: BaseGeometry | None = None
    if bbox is not None:
        aoi = shapely.geometry.box(*bbox)
    if geometry is not None:
        g = shapely.geometry.shape(geometry)
        aoi = g if aoi is None else aoi.intersection(g)
    out = []
    for item in items:
        if collections and item.collection_id not in collections:
            continue
        if start is not None or end is not None:
            a, b = _item_interval(item)
            if (start is not None and b < start) or (end is not None and a > end):
                continue
        if aoi is not None:
            if item.geometry is not None:
                footprint = shapely.geometry.shape(item.geometry)
            elif item.bbox is not None:
                n = len(item.bbox) // 2  # 2D or 3D bbox
                footprint = shapely.geometry.box(item.bbox[0], item.bbox[1], item.bbox[n], item.bbox[n + 1])
            else:
                continue
            if not footprint.intersects(aoi):
                continue
        if query and not _match_query(item.properties, query):
            continue
        out.append(item)
    return out

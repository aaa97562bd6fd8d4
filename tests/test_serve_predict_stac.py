"""``POST /api/predict`` with a STAC item: a real uvicorn server reading the item's COGs from a real
loopback HTTP server (``dwcube.testing.serve_directory``), only under the roots it is allowed; the
COG it returns equals ``classify`` of the same item in this process; bad items get a 4xx naming the
problem and the server stays healthy."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="dwcube serve needs the serve extra (pip install dwcube[serve])")
pytest.importorskip("uvicorn", reason="dwcube serve needs the serve extra (pip install dwcube[serve])")
httpx = pytest.importorskip("httpx", reason="the serve tests need httpx (the test extra)")

from dwcube import testing as T  # noqa: E402
from dwcube.serve.predict import asset_allowed  # noqa: E402
from tests.test_serve import _start, _stop  # noqa: E402

pytestmark = pytest.mark.network
MAX_PIXELS = 96 * 96

_SERVER = textwrap.dedent("""
    import sys, json, uvicorn
    from dwcube.serve import app
    from dwcube.testing import TINY_MODEL, tiny_archive
    store, port, roots = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
    uvicorn.run(app([store], models={"tiny": TINY_MODEL}, max_pixels=%d, asset_roots=roots),
                host="127.0.0.1", port=port, log_level="warning")
""" % MAX_PIXELS)


def _items(catalog: Path) -> list[dict[str, Any]]:
    return json.loads(catalog.read_text())["features"]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """COGs on a loopback HTTP server: ``inside/`` (allowed to the prediction server) and ``outside/``."""
    root = tmp_path_factory.mktemp("stac")
    with T.serve_directory(root) as (url, _stats):
        inside = _items(T.synthetic_catalog(root / "inside", size=64, dates=1, seed=5, base_url=url + "/inside"))[0]
        outside = _items(T.synthetic_catalog(root / "outside", size=64, dates=1, base_url=url + "/outside"))[0]
        big = _items(T.synthetic_catalog(root / "inside" / "big", size=128, dates=1, base_url=url + "/inside/big"))[0]
        store = T.tiny_archive(root / "demo.zarr", size=32, dates=1)
        proc, base, _port = _start([sys.executable, "-c", _SERVER, store, "{port}", json.dumps([url + "/inside/"])])
        try:
            yield {"url": url, "base": base, "inside": inside, "outside": outside, "big": big, "root": root}
        finally:
            _stop(proc)


def _post_item(site: dict[str, Any], item: Any, **fields: Any) -> Any:
    return httpx.post(site["base"] + "/api/predict/item", json={"item": item, "model": "tiny", **fields}, timeout=120)


def _classify_in_process(item: dict[str, Any]) -> np.ndarray:
    import pystac

    import dwcube
    from dwcube.inference import classify

    cube = dwcube.load([pystac.Item.from_dict(item)])
    return classify(cube, T.TINY_MODEL, device="cpu", compile=False).isel(time=0).values


def test_a_stac_item_is_classified_from_its_assets(site: dict[str, Any]) -> None:
    import rasterio.io

    want = _classify_in_process(site["inside"])
    assert np.isfinite(want).mean() > 0.9
    r = _post_item(site, site["inside"])
    assert r.status_code == 200, r.text
    with rasterio.io.MemoryFile(r.content) as f, f.open() as src:
        assert src.count == 9 and src.descriptions[:2] == ("water", "trees") and src.crs.to_epsg() == 32633
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        np.testing.assert_allclose(src.read(), want, atol=1e-5)
    # the same item as a multipart upload (the item field), asking for the label
    r = httpx.post(site["base"] + "/api/predict", files={"item": ("item.json", json.dumps(site["inside"]).encode())},
                   data={"model": "tiny", "output": "label"}, timeout=120)
    assert r.status_code == 200, r.text
    with rasterio.io.MemoryFile(r.content) as f, f.open() as src:
        assert src.dtypes[0] == "uint8" and src.colormap(1)[1] == (57, 125, 73, 255)
        got = src.read(1)
    valid = np.isfinite(want).all(axis=0)
    np.testing.assert_array_equal(got[valid], np.argmax(want, axis=0)[valid])
    assert (got[~valid] == 255).all()


def _with_href(item: dict[str, Any], asset: str, href: str) -> dict[str, Any]:
    out = json.loads(json.dumps(item))
    out["assets"][asset]["href"] = href
    return out


def test_bad_items_get_a_4xx_naming_the_problem(site: dict[str, Any]) -> None:
    url, inside = site["url"], site["inside"]
    red = inside["assets"]["red"]["href"]
    no_bands = json.loads(json.dumps(inside))
    no_bands["assets"] = {"thing": {"href": red.replace("red.tif", "scl.tif"), "roles": ["data"]}}
    cases = [
        (site["outside"], 403, "outside the places this server reads"),
        (_with_href(inside, "red", red.replace("/inside/", "/inside/../outside/")), 400, "'..'"),
        (_with_href(inside, "red", red.replace("/inside/", "/inside/%2e%2e/outside/")), 400, "'..'"),
        (_with_href(inside, "red", url + "/inside/date0/missing.tif"), 400, "does not read"),
        (_with_href(inside, "red", "/etc/passwd"), 403, "outside the places"),
        (_with_href(inside, "red", "/vsicurl/" + red), 400, "virtual file system"),
        (_with_href(inside, "red", "date0/red.tif"), 400, "relative"),
        ({"type": "FeatureCollection", "features": []}, 400, "not a STAC item"),
        ([1, 2, 3], 400, "not a STAC item"),
        (no_bands, 400, "no usable Sentinel-2 bands"),
        (site["big"], 413, "larger than this server takes"),
    ]
    for item, status, words in cases:
        r = _post_item(site, item)
        assert r.status_code == status and words in r.json()["detail"], (item.get("assets", {}) if
                                                                          isinstance(item, dict) else item, r.text)
    for body, words in ((b"{not json", "not JSON"), (json.dumps({"model": "tiny"}).encode(), '"item"')):
        r = httpx.post(site["base"] + "/api/predict/item", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400 and words in r.json()["detail"], r.text
    r = _post_item(site, inside, model="nope")
    assert r.status_code == 400 and "unknown model 'nope'" in r.json()["detail"]
    r = httpx.post(site["base"] + "/api/predict", data={"model": "tiny"}, timeout=30)
    assert r.status_code == 400 and "send one input" in r.json()["detail"]
    assert httpx.get(site["base"] + "/api/health").json()["ok"]
    assert _post_item(site, inside).status_code == 200  # still serving


def test_a_server_allowed_no_roots_refuses_items_and_says_how_to_allow(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from dwcube.serve import app

    item = _items(T.synthetic_catalog(tmp_path / "cogs", size=32, dates=1))[0]
    client = TestClient(app([T.tiny_archive(tmp_path / "a.zarr", size=32, dates=1)], models={"tiny": T.TINY_MODEL}))
    r = client.post("/api/predict/item", json={"item": item, "model": "tiny"})
    assert r.status_code == 403 and "--allow-assets" in r.json()["detail"]


def test_local_roots_resolve_links_and_dots(tmp_path: Path) -> None:
    allowed, secret = tmp_path / "allowed", tmp_path / "secret"
    allowed.mkdir()
    secret.mkdir()
    (secret / "s.tif").write_bytes(b"x")
    (allowed / "a.tif").write_bytes(b"x")
    os.symlink(secret, allowed / "link")
    roots = [str(allowed)]
    assert asset_allowed(str(allowed / "a.tif"), roots) and asset_allowed((allowed / "a.tif").as_uri(), roots)
    assert not asset_allowed(str(allowed / "link" / "s.tif"), roots)  # a link out of the folder
    assert not asset_allowed(str(allowed) + "/../secret/s.tif", roots)
    assert not asset_allowed(str(allowed) + "-other/a.tif", roots)  # a sibling sharing the prefix
    assert not asset_allowed("http://127.0.0.1:1" + str(allowed / "a.tif"), roots)
    assert not asset_allowed("http://127.0.0.1:80/inside/a.tif", ["http://127.0.0.1:81/inside/"])
    assert not asset_allowed("http://127.0.0.1/inside-x/a.tif", ["http://127.0.0.1/inside"])
    assert not asset_allowed("http://u@127.0.0.1/inside/a.tif", ["http://127.0.0.1/inside"])


def test_dwcube_serve_takes_allow_assets_roots() -> None:
    from dwcube.cli import build_parser

    args = build_parser().parse_args(["serve", "a.zarr", "--allow-assets", "https://h/s2/", "--allow-assets", "/srv"])
    assert args.allow_assets == ["https://h/s2/", "/srv"]
    assert build_parser().parse_args(["serve", "a.zarr"]).allow_assets == []

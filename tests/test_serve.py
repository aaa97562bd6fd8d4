"""`dwcube serve` for real: a uvicorn server in its own process on a loopback port, serving a small
archive made by code; real HTTP requests (httpx, and raw ones through http.client for paths a
client would normalise); and a real headless browser (Playwright driving Debian's chromium) on
the page.  Every answer is checked against the archive's own numbers."""

from __future__ import annotations

import concurrent.futures
import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="dwcube serve needs the serve extra (pip install dwcube[serve])")
pytest.importorskip("uvicorn", reason="dwcube serve needs the serve extra (pip install dwcube[serve])")
pytest.importorskip("rio_tiler", reason="dwcube serve needs the serve extra (pip install dwcube[serve])")
httpx = pytest.importorskip("httpx", reason="the serve tests need httpx (the test extra)")

from dwcube import testing as T  # noqa: E402
from dwcube.archive import open_archive  # noqa: E402

pytestmark = pytest.mark.network
REPO = Path(__file__).resolve().parent.parent
#: Screenshots of the page land here (CI keeps them as artefacts).
ARTIFACTS = Path(os.environ.get("DWCUBE_TEST_ARTIFACTS", REPO / "test-artifacts"))
#: Upload limits of the test server (small, so that 413 is cheap to provoke).
MAX_PIXELS, MAX_BYTES = 128 * 128, 400_000

_SERVER = textwrap.dedent("""
    import sys, uvicorn
    from dwcube.serve import app
    from dwcube.testing import TINY_MODEL
    store, port, idle = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    uvicorn.run(app([store], models={"tiny": TINY_MODEL}, predict_idle=idle, max_pixels=%d, max_bytes=%d),
                host="127.0.0.1", port=port, log_level="warning")
""" % (MAX_PIXELS, MAX_BYTES))


def _wait_ready(base: str, proc: subprocess.Popen[bytes], deadline_s: float = 120.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with status {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        try:
            if httpx.get(base + "/api/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not answer /api/health")


def _start(argv: list[str]) -> tuple[subprocess.Popen[bytes], str, int]:
    port = T.free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([*argv[:1], *[a.replace("{port}", str(port)) for a in argv[1:]]], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc)
    except Exception:
        proc.kill()
        raise
    return proc, base, port


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    """96 × 96 px, 4 dates, 32-px chunks (9 chunks a date), some no data, with an RGB quicklook."""
    return T.tiny_archive(tmp_path_factory.mktemp("serve") / "demo.zarr", size=96, dates=4, chunk=32,
                          quicklook=True, nodata_fraction=0.1)


@pytest.fixture(scope="module")
def server(store: str) -> Iterator[dict[str, Any]]:
    proc, base, port = _start([sys.executable, "-c", _SERVER, store, "{port}", "2.0"])
    try:
        yield {"base": base, "port": port, "pid": proc.pid, "proc": proc}
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def ds(store: str) -> Any:
    return open_archive(store)


@pytest.fixture(scope="module")
def summary(server: dict[str, Any]) -> dict[str, Any]:
    (only,) = httpx.get(server["base"] + "/api/archives").json()
    return only


def _png(content: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(content)).convert("RGBA"))


def _reference(raster: Any, z: int, x: int, y: int, nodata: float, resampling: str) -> np.ndarray:
    """The raster reprojected to one Web-Mercator tile by rioxarray (GDAL), without rio-tiler."""
    import morecantile
    from rasterio.enums import Resampling
    from rasterio.transform import from_bounds

    b = morecantile.tms.get("WebMercatorQuad").xy_bounds(morecantile.Tile(x, y, z))
    out = raster.rio.reproject("EPSG:3857", shape=(256, 256), transform=from_bounds(b.left, b.bottom, b.right, b.top, 256, 256),
                               resampling=Resampling[resampling], nodata=nodata)
    return np.asarray(out.values)


def _tile_over(ds: Any, summary: dict[str, Any], zoom: int) -> tuple[int, int, int]:
    from dwcube.serve.layers import native_tiles

    tiles = native_tiles(ds, zoom)
    lon = (summary["bounds"][0] + summary["bounds"][2]) / 2
    lat = (summary["bounds"][1] + summary["bounds"][3]) / 2
    import morecantile

    t = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, zoom)
    assert (t.z, t.x, t.y) in tiles
    return t.z, t.x, t.y


# --- the API answers with the archive's own numbers ----------------------------------------------


def test_archives_lists_the_archive(server: dict[str, Any], summary: dict[str, Any], ds: Any) -> None:
    assert summary["name"] == "demo"
    assert summary["dates"] == [str(t)[:19] for t in ds["time"].values.astype("datetime64[s]")]
    assert summary["model"]["name"] == "tiny-test"
    assert summary["grid"]["crs"] == "EPSG:32633" and summary["grid"]["shape"] == [96, 96]
    assert summary["grid"]["chunk"] == 32
    west, south, east, north = ds.odc.geobox.extent.to_crs("EPSG:4326").boundingbox
    assert summary["bounds"] == pytest.approx([west, south, east, north])
    assert [c["name"] for c in summary["classes"]] == [str(c) for c in ds["class"].values]
    assert summary["classes"][0]["color"] == "#419BDF"
    assert "rgb" in summary["layers"] and "probability/built" in summary["layers"]
    docs = httpx.get(server["base"] + "/openapi.json").json()
    assert "/api/predict" in docs["paths"] and "/api/{archive}/point" in docs["paths"]
    assert httpx.get(server["base"] + "/docs").status_code == 200


def test_label_tile_is_the_label_map_reprojected(server: dict[str, Any], summary: dict[str, Any], ds: Any) -> None:
    from dwcube.classes import COLORS

    z, x, y = _tile_over(ds, summary, summary["zoom"]["native"] + 1)
    date = summary["dates"][2]
    r = httpx.get(f"{server['base']}/api/demo/tiles/label/{date}/{z}/{x}/{y}.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    rgba = _png(r.content)
    colour_to_class = {tuple(int(COLORS[c][i:i + 2], 16) for i in (1, 3, 5)): k for k, c in enumerate(COLORS)}
    got = np.full(rgba.shape[:2], 255, np.uint8)
    opaque = rgba[..., 3] == 255
    got[opaque] = [colour_to_class[tuple(p)] for p in rgba[opaque][:, :3]]
    assert set(np.unique(rgba[..., 3])) <= {0, 255}
    want = _reference(ds.label.isel(time=2).rio.write_nodata(255), z, x, y, 255, "nearest")
    assert (want != 255).sum() > 1000  # the tile shows the archive
    np.testing.assert_array_equal(got, want)


def test_probability_tile_follows_the_probabilities(server: dict[str, Any], summary: dict[str, Any], ds: Any) -> None:
    from rio_tiler.colormap import cmap

    z, x, y = _tile_over(ds, summary, summary["zoom"]["native"] + 1)
    r = httpx.get(f"{server['base']}/api/demo/tiles/probability/grass/{summary['dates'][0]}/{z}/{x}/{y}.png")
    rgba = _png(r.content)
    ramp = {tuple(v[:3]): k for k, v in cmap.get("viridis").items()}
    opaque = rgba[..., 3] == 255
    got = np.array([ramp[tuple(p)] for p in rgba[opaque][:, :3]]) / 255.0
    k = [str(c) for c in ds["class"].values].index("grass")
    want = _reference(ds.probability.isel(time=0, **{"class": k}).rio.write_nodata(np.nan), z, x, y, np.nan, "bilinear")
    assert np.isfinite(want[opaque]).all()
    # one 8-bit step of rounding, and viridis repeats a few colours for neighbouring steps: two steps
    np.testing.assert_allclose(got, want[opaque], atol=2 / 255 + 1e-6)


def test_derived_and_rgb_layers(server: dict[str, Any], summary: dict[str, Any], ds: Any) -> None:
    from dwcube.serve.layers import derived_layers, label_colormap

    z, x, y = _tile_over(ds, summary, summary["zoom"]["native"] + 1)
    date = summary["dates"][3]
    smoothed = _png(httpx.get(f"{server['base']}/api/demo/tiles/smoothed/{date}/{z}/{x}/{y}.png").content)
    want = _reference(derived_layers(ds)["smoothed"].isel(time=3).rio.write_nodata(255), z, x, y, 255, "nearest")
    cmap = label_colormap([str(c) for c in ds["class"].values])
    expected = np.array([cmap[int(v)] for v in want.ravel()], np.uint8).reshape(256, 256, 4)
    np.testing.assert_array_equal(smoothed[expected[..., 3] == 255], expected[expected[..., 3] == 255])
    for layer in ("change_date", "rgb"):
        r = httpx.get(f"{server['base']}/api/demo/tiles/{layer}/{date}/{z}/{x}/{y}.png")
        assert r.status_code == 200, r.text
    rgb = _png(r.content)
    assert (rgb[..., 3] == 255).sum() > 1000 and rgb[..., :3].std() > 1  # an image, not a flat fill


def test_point_series_is_the_archive_pixel(server: dict[str, Any], ds: Any) -> None:
    from odc.geo.geom import point

    from dwcube.temporal import smooth

    row, col = 40, 57
    xc, yc = float(ds.x[col]), float(ds.y[row])
    lon, lat = point(xc, yc, ds.odc.geobox.crs).to_crs("EPSG:4326").coords[0]
    r = httpx.get(f"{server['base']}/api/demo/point", params={"lon": lon, "lat": lat})
    assert r.status_code == 200, r.text
    p = r.json()
    assert (p["row"], p["col"]) == (row, col) and (p["x"], p["y"]) == pytest.approx((xc, yc))
    want = ds.probability.sel(x=xc, y=yc).transpose("time", "class").values
    got = np.array([[np.nan if v is None else v for v in d] for d in p["probability"]])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(p["label"], ds.label.sel(x=xc, y=yc).values)
    np.testing.assert_allclose(np.array(p["confidence"], float), ds.top1_probability.sel(x=xc, y=yc).values, atol=1e-5)
    sm = smooth(ds.probability).sel(x=xc, y=yc).transpose("time", "class").values
    np.testing.assert_allclose(np.array(p["smoothed"], float), sm, atol=1e-5)
    assert p["valid"] == [bool(v) for v in np.isfinite(want).all(axis=1)]
    assert p["dates"] == [str(t)[:19] for t in ds["time"].values.astype("datetime64[s]")]


def test_point_on_no_data_is_none(server: dict[str, Any], ds: Any) -> None:
    from odc.geo.geom import point

    t, row, col = (int(v[0]) for v in np.nonzero(ds.label.values == 255))
    lon, lat = point(float(ds.x[col]), float(ds.y[row]), ds.odc.geobox.crs).to_crs("EPSG:4326").coords[0]
    p = httpx.get(f"{server['base']}/api/demo/point", params={"lon": lon, "lat": lat}).json()
    assert p["valid"][t] is False and p["label"][t] == 255 and p["probability"][t] == [None] * 9


def test_area_scorecard_is_class_area(server: dict[str, Any], summary: dict[str, Any], ds: Any) -> None:
    import shapely.geometry

    from dwcube.stats import class_area

    w, s, e, n = summary["bounds"]
    r = httpx.get(f"{server['base']}/api/demo/area", params={"bbox": f"{w - 0.01},{s - 0.01},{e + 0.01},{n + 0.01}"})
    assert r.status_code == 200, r.text
    whole = class_area(ds.label).compute()
    np.testing.assert_allclose(r.json()["area"], whole.transpose("time", "class").values, rtol=1e-9)
    half = shapely.geometry.box(w, s, (w + e) / 2, n)
    r = httpx.post(f"{server['base']}/api/demo/area", json={"type": "Feature", "properties": {},
                                                            "geometry": shapely.geometry.mapping(half)})
    assert r.status_code == 200, r.text
    want = class_area(ds.label, polygons=half, crs="EPSG:4326").compute()
    want = want.isel(polygon=0) if "polygon" in want.dims else want
    np.testing.assert_allclose(r.json()["area"], want.transpose("time", "class").values, rtol=1e-9)
    assert 0 < r.json()["total_area"] < float(whole["total_area"])


# --- the online prediction service --------------------------------------------------------------


def test_predict_returns_the_classify_result_as_a_cog(server: dict[str, Any]) -> None:
    import rasterio.io

    from dwcube.inference import classify
    from dwcube.serve.predict import read_geotiff_cube

    tif = T.synthetic_geotiff(64, seed=3)
    r = httpx.post(server["base"] + "/api/predict", files={"image": ("scene.tif", tif, "image/tiff")},
                   data={"model": "tiny"}, timeout=120)
    assert r.status_code == 200, r.text
    want = classify(read_geotiff_cube(tif), T.TINY_MODEL, device="cpu", compile=False).isel(time=0).values
    with rasterio.io.MemoryFile(r.content) as f, f.open() as src:
        assert src.count == 9 and src.descriptions[0] == "water" and src.crs.to_epsg() == 32633
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        np.testing.assert_allclose(src.read(), want, atol=1e-5)  # the server's threads: float32 noise
    r = httpx.post(server["base"] + "/api/predict", files={"image": ("scene.tif", tif, "image/tiff")},
                   data={"model": "tiny", "output": "label"}, timeout=120)
    with rasterio.io.MemoryFile(r.content) as f, f.open() as src:
        assert src.dtypes[0] == "uint8" and src.colormap(1)[1] == (57, 125, 73, 255)
        np.testing.assert_array_equal(src.read(1), np.argmax(want, axis=0))


def test_predict_scales_to_zero_when_idle(server: dict[str, Any]) -> None:
    tif = T.synthetic_geotiff(32)
    assert httpx.post(server["base"] + "/api/predict", files={"image": ("s.tif", tif)}, data={"model": "tiny"},
                      timeout=120).status_code == 200
    before = httpx.get(server["base"] + "/api/health").json()["predict_unloads"]
    for _ in range(300):  # the server frees the network 2 s after its last prediction
        health = httpx.get(server["base"] + "/api/health").json()
        if health["predict_unloads"] > before:
            break
        time.sleep(0.1)
    assert health["predict_unloads"] > before and health["predict_model_loaded"] is False


# --- bad requests: a clear 4xx, and the server stays healthy ------------------------------------


def _raw(port: int, method: str, path: str) -> tuple[int, str]:
    """A request sent as written (http.client does not normalise ``..`` or encoded slashes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path)
    resp = conn.getresponse()
    body = resp.read().decode()
    conn.close()
    return resp.status, body


@pytest.mark.parametrize(("path", "status", "words"), [
    ("/api/nowhere/point?lon=14.55&lat=45.87", 404, "unknown archive 'nowhere'"),
    ("/api/../../etc/passwd", 400, "'..'"),
    ("/api/demo/../../../etc/passwd/point?lon=1&lat=1", 400, "'..'"),
    ("/api/%2e%2e/%2e%2e/etc/point?lon=1&lat=1", 400, "'..'"),
    ("/api/..%2F..%2Fetc/point?lon=1&lat=1", 400, "encoded slashes"),
    ("/api/demo/tiles/label/..%2f..%2fetc%2fpasswd/14/1/1.png", 400, "encoded slashes"),
    ("//etc/passwd", 400, "empty segments"),
    ("/api/demo/point?lon=/etc/passwd&lat=1", 400, "looks like a file path"),
    ("/api/demo/area?bbox=../../secret", 400, "looks like a file path"),
    ("/api/demo/point?lon=abc&lat=45.87", 400, "lon"),
    ("/api/demo/point?lon=14.55", 400, "lat"),
    ("/api/demo/point?lon=1e999&lat=45.87", 400, "lon must be a number"),
    ("/api/demo/point?lon=200&lat=45.87", 400, "lon must be a number from -180"),
    ("/api/demo/point?lon=0&lat=0", 404, "outside the archive"),
    ("/api/demo/area?bbox=1,2,3", 400, "four numbers"),
    ("/api/demo/area?bbox=a,b,c,d", 400, "four numbers"),
    ("/api/demo/area?bbox=15,45,14,46", 400, "west < east"),
    ("/api/demo/area?bbox=0,0,1,1", 404, "does not overlap"),
    ("/api/demo/tiles/label/2023-04-06/14/99999/0.png", 400, "does not exist"),
    ("/api/demo/tiles/label/2023-04-06/-1/0/0.png", 400, "does not exist"),
    ("/api/demo/tiles/label/2023-04-06/2/0/0.png", 400, "zoom range"),
    ("/api/demo/tiles/label/2023-04-06/x/0/0.png", 400, "z"),
    ("/api/demo/tiles/label/2023-04-06/14/0/0.png", 404, "does not overlap"),
    ("/api/demo/tiles/label/1999-01-01/14/8854/5836.png", 404, "not one of the archive's 4 dates"),
    ("/api/demo/tiles/label/yesterday/14/8854/5836.png", 404, "not an ISO date"),
    ("/api/demo/tiles/nope/2023-04-06/14/8854/5836.png", 404, "unknown layer"),
    ("/api/demo/tiles/probability/cheese/2023-04-06/14/8854/5836.png", 404, "unknown class 'cheese'"),
])
def test_bad_requests_get_a_clear_4xx(server: dict[str, Any], path: str, status: int, words: str) -> None:
    got, body = _raw(server["port"], "GET", path)
    assert got == status, body
    assert words in json.loads(body)["detail"]
    assert httpx.get(server["base"] + "/api/health").json()["ok"] is True


def test_bad_uploads_get_400_or_413(server: dict[str, Any]) -> None:
    base = server["base"] + "/api/predict"
    tif = T.synthetic_geotiff(64)
    cases = [
        ({"image": ("x.tif", b"GIF89a not a tiff at all", "image/tiff")}, {"model": "tiny"}, 400, "not a readable GeoTIFF"),
        ({"image": ("x.tif", tif[: len(tif) // 2], "image/tiff")}, {"model": "tiny"}, 400, "GeoTIFF"),
        ({"image": ("x.tif", tif)}, {"model": "nonesuch"}, 400, "unknown model 'nonesuch'"),
        ({"image": ("x.tif", tif)}, {"model": "tiny", "output": "jpeg"}, 400, "output must be"),
        ({"image": ("x.tif", tif)}, {"model": "tiny", "bands": "B02,B03"}, 400, "5 bands but 2 names"),
        ({"image": ("x.tif", tif)}, {"model": "tiny", "bands": "B02,B03,B04,B08,B99"}, 400, "'B99' is not a Sentinel-2 band"),
        ({"image": ("x.tif", T.synthetic_geotiff(64, bands=("blue", "green", "red")))}, {"model": "tiny"}, 400,
         "lacks inputs"),
        ({"image": ("x.tif", T.synthetic_geotiff(64, descriptions=False))}, {"model": "tiny"}, 400, "name every band"),
        ({"image": ("x.tif", tif)}, {"model": "tiny", "level": "L3"}, 400, "level must be L1C or L2A"),
        ({"image": ("x.tif", tif)}, {"model": "tiny", "scale": "ten"}, 400, "scale"),
        ({"image": ("x.tif", T.synthetic_geotiff(160))}, {"model": "tiny"}, 413, "more than the 16384"),
        ({"image": ("x.tif", os.urandom(MAX_BYTES + 10))}, {"model": "tiny"}, 413, "bytes"),
        ({}, {"model": "tiny"}, 400, "image"),
    ]
    for files, data, status, words in cases:
        r = httpx.post(base, files=files or None, data=data, timeout=60)
        assert r.status_code == status, (words, r.text)
        assert words in r.json()["detail"], r.text
    assert httpx.get(server["base"] + "/api/health").json()["ok"] is True


@pytest.mark.slow  # starts a second server process
def test_first_tile_requests_at_once_all_render(store: str, ds: Any) -> None:
    """Regression: the first tile requests of a fresh server, arriving together (as a map sends
    them), imported rio-tiler concurrently and all but one failed with 500 (ImportError)."""
    from dwcube.serve.layers import native_tiles, zoom_range

    proc, base, _port = _start([sys.executable, "-c", _SERVER, store, "{port}", "300"])
    try:
        date = str(ds["time"].values[0])[:10]
        tiles = native_tiles(ds, zoom_range(ds)[1] + 2)
        with concurrent.futures.ThreadPoolExecutor(len(tiles)) as pool:
            statuses = list(pool.map(lambda t: httpx.get(f"{base}/api/demo/tiles/label/{date}/{t[0]}/{t[1]}/{t[2]}.png",
                                                         timeout=60).status_code, tiles))
        assert statuses == [200] * len(tiles)
    finally:
        _stop(proc)


def test_point_series_from_the_time_chunked_copy(tmp_path: Path, store: str, ds: Any) -> None:
    """A point read from the series copy equals the archive's; a stale copy (other dates) is not used."""
    from dwcube.serve.quicklook import write_series_copy
    from dwcube.serve.web import open_served

    copy_store = tmp_path / "demo.zarr"
    shutil.copytree(store, copy_store)
    copy = write_series_copy(copy_store, chunk=16)
    assert copy.probability.encoding["chunks"] == (4, 9, 16, 16)
    served = open_served([copy_store])["demo"]
    assert served.series is not None
    np.testing.assert_array_equal(served.pixel(40, 57), ds.probability.isel(y=40, x=57).transpose("time", "class").values)
    served.series = copy.isel(time=[0, 1, 2])  # a copy that lags the archive must not answer
    np.testing.assert_array_equal(served.pixel(41, 57), ds.probability.isel(y=41, x=57).transpose("time", "class").values)


def test_stores_come_from_the_server_not_the_request(tmp_path: Path, store: str) -> None:
    from dwcube.serve.web import archive_name, open_served

    assert archive_name(store) == "demo"
    twin = tmp_path / "other" / "demo.zarr"
    shutil.copytree(store, twin)
    with pytest.raises(ValueError, match="two stores are named 'demo'"):
        open_served([store, twin])
    with pytest.raises(ValueError, match="not a dwcube archive"):
        open_served([tmp_path])


# --- bounded load: 8 clients, 200 requests each ---------------------------------------------------


@pytest.mark.slow
def test_load_8_clients_x_200_requests(server: dict[str, Any], summary: dict[str, Any], ds: Any) -> None:
    import psutil

    from dwcube.serve.layers import native_tiles

    tiles = [t for z in (summary["zoom"]["native"], summary["zoom"]["native"] + 1) for t in native_tiles(ds, z)]
    w, s, e, n = summary["bounds"]
    rng = np.random.default_rng(0)
    points = [(w + (e - w) * a, s + (n - s) * b) for a, b in rng.uniform(0.02, 0.98, (64, 2))]
    proc = psutil.Process(server["pid"])

    def client(k: int) -> list[int]:
        out = []
        with httpx.Client(base_url=server["base"], timeout=60) as c:
            for i in range(200):
                if i % 2:
                    z, x, y = tiles[(k * 7 + i) % len(tiles)]
                    date = summary["dates"][i % len(summary["dates"])]
                    r = c.get(f"/api/demo/tiles/label/{date}/{z}/{x}/{y}.png")
                else:
                    lon, lat = points[(k * 13 + i) % len(points)]
                    r = c.get("/api/demo/point", params={"lon": lon, "lat": lat})
                out.append(r.status_code)
        return out

    rss = [proc.memory_info().rss]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(client, k) for k in range(8)]
        while not all(f.done() for f in futures):
            rss.append(proc.memory_info().rss)
            time.sleep(0.2)
        statuses = [s for f in futures for s in f.result()]
    assert len(statuses) == 1600
    assert {s for s in statuses if s != 200} == set(), [s for s in statuses if s != 200][:5]
    assert max(rss) - rss[0] < 400 * 2**20, f"the server grew by {(max(rss) - rss[0]) / 2**20:.0f} MiB"


# --- the page in a real headless browser ---------------------------------------------------------


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


@pytest.fixture(scope="module")
def page(server: dict[str, Any]) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright (the test extra)")
    exe = _chromium()
    if exe is None:
        pytest.skip("no chromium found: `apt-get install chromium` (the README's `make test` installs it)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        pg = browser.new_page(viewport={"width": 1280, "height": 800})
        errors: list[str] = []
        pg.on("pageerror", lambda e: errors.append(str(e)))
        pg.goto(server["base"] + "/")
        pg.wait_for_selector("body[data-ready='1']", timeout=60_000)
        pg.errors = errors  # type: ignore[attr-defined]
        yield pg
        browser.close()


def _loaded_tiles(pg: Any, pane: str = "before") -> list[str]:
    pg.wait_for_function(f"""() => {{
        const imgs = [...document.querySelectorAll('.tiles-{pane} img.leaflet-tile')];
        return imgs.length > 0 && imgs.every(i => i.complete && i.naturalWidth === 256);
    }}""", timeout=60_000)
    pg.wait_for_timeout(400)  # let Leaflet's 200 ms tile fade-in finish before any screenshot
    return [unquote(s) for s in pg.eval_on_selector_all(f".tiles-{pane} img.leaflet-tile", "els => els.map(e => e.src)")]


def test_page_shows_the_map_slides_dates_and_charts_a_pixel(page: Any, server: dict[str, Any], ds: Any,
                                                             summary: dict[str, Any]) -> None:
    from odc.geo.geom import point

    pg = page
    srcs = _loaded_tiles(pg)
    assert srcs and all(f"/tiles/label/{summary['dates'][0]}/" in s for s in srcs)
    assert pg.locator("#legend div").count() == 9
    pg.screenshot(path=str(ARTIFACTS / "serve-page-label.png"))

    # slide to the third date: the tiles follow
    pg.eval_on_selector("#date", "el => { el.value = 2; el.dispatchEvent(new Event('input')); }")
    srcs = _loaded_tiles(pg)
    assert all(f"/tiles/label/{summary['dates'][2]}/" in s for s in srcs)
    assert pg.inner_text("#date-label") == summary["dates"][2][:10]

    # click a pixel: the chart shows that pixel's probabilities
    row, col = 30, 61
    lon, lat = point(float(ds.x[col]), float(ds.y[row]), ds.odc.geobox.crs).to_crs("EPSG:4326").coords[0]
    xy = pg.evaluate(f"() => {{ const p = dwcubeViewer.map.latLngToContainerPoint([{lat}, {lon}]); return [p.x, p.y]; }}")
    box = pg.locator("#map").bounding_box()
    pg.mouse.click(box["x"] + xy[0], box["y"] + xy[1])
    pg.wait_for_selector("#chart-svg", timeout=30_000)
    svg = pg.locator("#chart-svg")
    assert (int(svg.get_attribute("data-row")), int(svg.get_attribute("data-col"))) == (row, col)
    dots = pg.eval_on_selector_all("#chart-svg circle.pt", "els => els.map(e => [+e.dataset.date, e.dataset.class, +e.dataset.p])")
    want = ds.probability.isel(y=row, x=col).transpose("time", "class").values
    classes = [str(c) for c in ds["class"].values]
    assert len(dots) == int(np.isfinite(want).sum())
    for t, name, p in dots:
        assert p == pytest.approx(float(want[t, classes.index(name)]), abs=1e-9)
    assert pg.locator("#chart-svg polyline.smoothed").count() == 9
    assert pg.get_attribute("#chart-now", "data-date") == "2"
    pg.screenshot(path=str(ARTIFACTS / "serve-page-chart.png"))

    # click a chart point: the slider moves to its date and the RGB quicklook of that date shows
    pg.locator("#chart-svg circle.pt[data-date='1']").first.click()
    assert pg.input_value("#date") == "1"
    assert pg.get_attribute("#chart-now", "data-date") == "1"
    insets = _loaded_tiles(pg, "inset")
    assert all(f"/tiles/rgb/{summary['dates'][1]}/" in s for s in insets)
    pg.screenshot(path=str(ARTIFACTS / "serve-page-rgb-inset.png"))
    assert pg.errors == []  # type: ignore[attr-defined]


def test_page_switches_layers_swipes_and_scores_the_view(page: Any, summary: dict[str, Any], ds: Any) -> None:
    from dwcube.stats import class_area

    pg = page
    pg.select_option("#layer", "probability/water")
    srcs = _loaded_tiles(pg)
    assert all("/tiles/probability/water/" in s for s in srcs)
    assert "probability of water" in pg.inner_text("#legend")
    pg.screenshot(path=str(ARTIFACTS / "serve-page-probability.png"))
    pg.select_option("#layer", "smoothed")
    assert all("/tiles/smoothed/" in s for s in _loaded_tiles(pg))

    pg.check("#swipe")
    after = _loaded_tiles(pg, "after")
    assert all(f"/tiles/smoothed/{summary['dates'][-1]}/" in s for s in after)
    clip = pg.evaluate("() => dwcubeViewer.map.getPane('after').style.clip")
    assert clip.startswith("rect(")
    pg.screenshot(path=str(ARTIFACTS / "serve-page-swipe.png"))
    pg.uncheck("#swipe")

    pg.wait_for_selector("#score-table", timeout=30_000)
    date = int(pg.input_value("#date"))
    cells = pg.eval_on_selector_all("#score-table tr[data-class]", "rows => rows.map(r => [r.dataset.class, +r.cells[1].textContent])")
    whole = class_area(ds.label).compute().isel(time=date)  # the view shows the whole archive
    for name, km2 in cells:
        assert km2 == pytest.approx(float(whole.sel({"class": name})), abs=6e-4)
    assert pg.errors == []  # type: ignore[attr-defined]


# --- the command line -----------------------------------------------------------------------------


@pytest.mark.slow  # starts a server process through the command line
def test_dwcube_serve_command_binds_loopback(store: str) -> None:
    proc, base, port = _start([sys.executable, "-m", "dwcube", "serve", store, "--port", "{port}"])
    try:
        assert httpx.get(base + "/api/archives").json()[0]["name"] == "demo"
        import psutil

        addrs = {c.laddr.ip for c in psutil.Process(proc.pid).net_connections(kind="inet") if c.status == "LISTEN"}
        assert addrs == {"127.0.0.1"}
        assert "dwcube" in httpx.get(base + "/").text
    finally:
        _stop(proc)

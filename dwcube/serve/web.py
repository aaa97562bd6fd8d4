"""The web face: a FastAPI app routing HTTP requests to :mod:`dwcube.serve`'s plain functions.

Archives are opened once, when the app is made, and named by the server (their folder name
without ``.zarr``); a request names an archive only by that name, never by a path.  Request
paths holding ``..``, ``.``, empty segments, backslashes or encoded slashes, and query values
that look like file paths, are refused with 400 before any route runs.  Errors are JSON
``{"detail": "..."}`` with a 4xx status: 400 malformed input, 404 unknown archive, layer,
date or a point/tile outside the archive, 403 a posted STAC item whose assets lie outside the
server's ``asset_roots`` (``dwcube serve --allow-assets``), 413 an upload over the limits.

The prediction service keeps the networks it built in memory while it is used and frees them
(:func:`dwcube.inference.clear_model_cache`) after ``predict_idle`` seconds without a request:
it scales to zero, and the next request builds the network again.
"""

# no `from __future__ import annotations`: FastAPI reads the endpoints' annotations, whose types are imported inside create_app

import asyncio
import contextlib
import gc
import os
import re
import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote

import numpy as np
import xarray as xr

from . import layers, predict, queries

__all__ = ["ServedArchive", "archive_name", "open_served", "create_app"]

#: Names the server gives archives: letters, digits, ``.``, ``_`` and ``-``.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

#: Archives of at most this many pixel-dates keep their smoothed label and change dates in memory.
DERIVED_IN_MEMORY = 50_000_000


@dataclass
class ServedArchive:
    """One archive as the server holds it: its name, store, lazy dataset, summary and caches."""

    name: str
    store: Path
    data: xr.Dataset
    info: dict[str, Any]
    quicklook: xr.DataArray | None
    series: xr.Dataset | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    derived: dict[str, xr.DataArray] = field(default_factory=dict)
    _pixels: OrderedDict[tuple[int, int], np.ndarray] = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def derived_layer(self, name: str) -> xr.DataArray:
        """A :func:`~dwcube.serve.layers.derived_layers` layer: computed once and kept in memory when
        the archive has at most :data:`DERIVED_IN_MEMORY` pixel-dates, else lazy (computed per tile)."""
        with self._lock:
            if name not in self.derived:
                lazy = layers.derived_layers(self.data)
                small = self.data.label.size <= DERIVED_IN_MEMORY
                self.derived.update({k: (v.compute() if small else v) for k, v in lazy.items()})
            return self.derived[name]

    def pixel(self, row: int, col: int) -> np.ndarray:
        """The pixel's probabilities ``(time, class)``, from the cache or the store."""
        key = (row, col)
        with self._lock:
            hit = self._pixels.get(key)
            if hit is not None:
                self._pixels.move_to_end(key)
                return hit
        source = self.data
        if self.series is not None and np.array_equal(self.series["time"].values, self.data["time"].values):
            source = self.series  # the time-chunked copy: one chunk per pixel instead of one per date
        values = queries.read_pixel(source, row, col)
        with self._lock:
            self._pixels[key] = values
            while len(self._pixels) > queries.POINT_CACHE_SIZE:
                self._pixels.popitem(last=False)
        return values


def archive_name(store: str | os.PathLike[str]) -> str:
    """The name the server gives an archive: its folder name without ``.zarr``.

    Examples
    --------
    >>> archive_name("/data/ljubljana-2023.zarr"), archive_name("runs/lulc/")
    ('ljubljana-2023', 'lulc')
    """
    name = Path(str(store).rstrip("/")).name
    return name[:-5] if name.endswith(".zarr") and len(name) > 5 else name


def open_served(stores: Sequence[str | os.PathLike[str]]) -> dict[str, ServedArchive]:
    """Open the archives a server serves, by name (:func:`archive_name`).

    Raises
    ------
    ValueError
        When two stores get the same name, a name is not URL-safe, or a store is not an archive.

    Examples
    --------
    >>> import tempfile
    >>> from dwcube.testing import tiny_archive
    >>> with tempfile.TemporaryDirectory() as d:
    ...     list(open_served([tiny_archive(d + "/demo.zarr", size=32, dates=1)]))
    ['demo']
    """
    from ..archive import ArchiveError, archive_info, open_archive
    from .quicklook import open_quicklook, open_series_copy

    if not stores:
        raise ValueError("give at least one archive store to serve")
    out: dict[str, ServedArchive] = {}
    for store in stores:
        name = archive_name(store)
        if not NAME_PATTERN.match(name):
            raise ValueError(f"store {str(store)!r} gets the name {name!r}, which is not URL-safe; rename its folder "
                             "to letters, digits, '.', '_' and '-'")
        if name in out:
            raise ValueError(f"two stores are named {name!r} ({out[name].store} and {store}); rename one folder")
        path = Path(store)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=UserWarning)
                ds = open_archive(path)
            info = archive_info(path)
        except (ArchiveError, FileNotFoundError, KeyError) as exc:
            raise ValueError(f"{store}: not a dwcube archive ({type(exc).__name__}: {exc})") from exc
        served = ServedArchive(name, path, ds, info, open_quicklook(path), open_series_copy(path))
        served.summary = queries.archive_summary(ds, name, info, quicklook=served.quicklook is not None)
        out[name] = served
    return out


class _PredictService:
    """Runs predictions one at a time and frees the networks after ``idle`` seconds unused."""

    def __init__(self, models: Mapping[str, Any], idle: float, weights: str | os.PathLike[str] | None) -> None:
        self.models = dict(models)
        self.idle = idle
        self.weights = weights
        self.lock = threading.Lock()
        self.last_used = 0.0
        self.loaded = False
        self.unloads = 0

    def run(self, cube: xr.Dataset, model: str, output: str) -> bytes:
        if model not in self.models:
            raise predict.PredictInputError(f"unknown model {model!r}; this server predicts with "
                                            f"{', '.join(sorted(self.models)) or 'no model'}")
        with self.lock:
            try:
                return predict.predict_cog(cube, self.models[model], output=output,  # type: ignore[arg-type]
                                           weights=self.weights)
            finally:
                self.loaded = True
                self.last_used = time.monotonic()

    def release_if_idle(self) -> bool:
        from ..inference import clear_model_cache

        if not self.loaded or time.monotonic() - self.last_used < self.idle:
            return False
        with self.lock:
            clear_model_cache()
            gc.collect()
            self.loaded = False
            self.unloads += 1
        return True


def _bad_path(raw_path: str) -> str | None:
    lowered = raw_path.lower()
    if "%2f" in lowered or "%5c" in lowered or "\\" in raw_path or "%00" in lowered:
        return "encoded slashes, backslashes and NUL bytes are not allowed in request paths"
    segments = unquote(raw_path).split("/")[1:]
    if any(s in ("..", ".") for s in segments) or any(s == "" for s in segments[:-1]):
        return "'..', '.' and empty segments are not allowed in request paths"
    return None


def _bad_query(query: str) -> str | None:
    for key, value in parse_qsl(query, keep_blank_values=True):
        for text in (key, value):
            if ".." in text or text.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:[\\/]", text):
                return f"query parameter {key!r} looks like a file path ({text!r})"
    return None


def create_app(stores: Sequence[str | os.PathLike[str]], *, models: Mapping[str, Any] | None = None,
               weights: str | os.PathLike[str] | None = None, predict_idle: float = 300.0,
               max_pixels: int = predict.MAX_PIXELS, max_bytes: int = predict.MAX_BYTES,
               asset_roots: Sequence[str] = ()) -> Any:
    """The ASGI app serving ``stores`` (see :func:`dwcube.serve.app`, which documents the parameters)."""
    from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles

    # import the tile stack now: its first import from several request threads at once races
    # (rio_tiler.io's circular import raises ImportError in all but one of them)
    import morecantile  # noqa: F401
    import rio_tiler.colormap  # noqa: F401
    import rio_tiler.io.xarray  # noqa: F401

    archives = open_served(stores)
    if models is None:
        from ..models.registry import list_entries

        models = {e.name: e.name for e in list_entries()}
    service = _PredictService(models, predict_idle, weights)
    static = Path(str(files("dwcube.serve") / "static"))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        async def reaper() -> None:
            while True:
                await asyncio.sleep(max(0.05, min(5.0, predict_idle / 4)))
                await asyncio.to_thread(service.release_if_idle)

        task = asyncio.create_task(reaper())
        try:
            yield
        finally:
            task.cancel()

    api = FastAPI(title="dwcube serve", lifespan=lifespan,
                  description="Dynamic World-style land-cover archives as web map tiles, pixel series and "
                              "class areas, and an online prediction service.")
    api.state.archives = archives
    api.state.predict = service

    @api.middleware("http")
    async def refuse_paths(request: Request, call_next: Any) -> Any:
        raw = request.scope.get("raw_path", b"").decode("latin-1") or request.url.path
        problem = _bad_path(raw) or _bad_query(request.scope.get("query_string", b"").decode("latin-1"))
        if problem:
            return JSONResponse({"detail": f"{problem}; archives are named by the server (GET /api/archives)"},
                                status_code=400)
        return await call_next(request)

    def error(status: int) -> Any:
        async def handler(_request: Request, exc: Exception) -> Any:
            return JSONResponse({"detail": str(exc)}, status_code=status)
        return handler

    for exc_type, status in ((layers.TileOutOfRangeError, 400), (queries.QueryError, 400),
                             (predict.AssetNotAllowedError, 403), (predict.PredictInputError, 400), (layers.LayerError, 404),
                             (layers.TileOutsideArchiveError, 404), (queries.OutsideArchiveError, 404),
                             (predict.PredictTooLargeError, 413)):
        api.add_exception_handler(exc_type, error(status))

    @api.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError) -> Any:
        parts = []
        for e in exc.errors():
            where = " ".join(str(p) for p in e.get("loc", ()) if p not in ("body",))
            got = f" (got {e['input']!r})" if isinstance(e.get("input"), (str, int, float)) else ""
            parts.append(f"{where}: {e.get('msg', 'invalid')}{got}")
        return JSONResponse({"detail": "; ".join(parts)}, status_code=400)

    def served(name: str) -> ServedArchive:
        if name not in archives:
            raise HTTPException(404, f"unknown archive {name!r}; this server serves {', '.join(sorted(archives))}")
        return archives[name]

    @api.get("/", include_in_schema=False)
    def index() -> Any:
        return FileResponse(static / "index.html", media_type="text/html")

    api.mount("/static", StaticFiles(directory=static), name="static")

    @api.get("/api/health", summary="The server is up; whether a prediction network is in memory")
    def health() -> dict[str, Any]:
        return {"ok": True, "archives": len(archives), "predict_model_loaded": service.loaded,
                "predict_unloads": service.unloads}

    @api.get("/api/archives", summary="The archives served: model, dates, grid, bounds, classes and colours")
    def list_archives() -> list[dict[str, Any]]:
        return [a.summary for a in archives.values()]

    @api.get("/api/{archive}/tiles/{layer:path}/{date}/{z}/{x}/{y}.png",
             summary="A Web-Mercator XYZ tile of a layer on a date (PNG)",
             responses={200: {"content": {"image/png": {}}}}, response_class=Response)
    def tile(archive: str, layer: str, date: str, z: int, x: int, y: int) -> Response:
        a = served(archive)
        derived = {layer: a.derived_layer(layer)} if layer in ("smoothed", "change_date") else None
        png = layers.archive_tile(a.data, layer, date, z, x, y, quicklook=a.quicklook, derived=derived)
        return Response(png, media_type="image/png", headers={"Cache-Control": "public, max-age=3600"})

    @api.get("/api/{archive}/point", summary="One pixel's probabilities, label, confidence and smoothed series")
    def point(archive: str, lon: float = Query(..., description="longitude, degrees east"),
              lat: float = Query(..., description="latitude, degrees north")) -> dict[str, Any]:
        a = served(archive)
        row, col, _x, _y = queries.pixel_of(a.data, lon, lat)
        return queries.point_series(a.data, lon, lat, pixel_probability=a.pixel(row, col))

    @api.get("/api/{archive}/area", summary="Class areas per date (km²) inside a lon/lat bounding box")
    def area(archive: str, bbox: str = Query(..., description="west,south,east,north in degrees")) -> dict[str, Any]:
        a = served(archive)
        try:
            numbers = [float(v) for v in bbox.split(",")]
        except ValueError:
            raise queries.QueryError(f"bbox must be four numbers west,south,east,north, got {bbox!r}") from None
        return queries.class_areas(a.data, queries.bbox_polygon(numbers))

    @api.post("/api/{archive}/area", summary="Class areas per date (km²) inside a GeoJSON polygon (lon/lat)")
    def area_polygon(archive: str, geojson: dict[str, Any]) -> dict[str, Any]:
        a = served(archive)
        geometry = geojson.get("geometry", geojson) if geojson.get("type") == "Feature" else geojson
        if not isinstance(geometry, dict):
            raise queries.QueryError("the body must be a GeoJSON Polygon, MultiPolygon or a Feature holding one")
        return queries.class_areas(a.data, geometry)

    @api.get("/api/models", summary="The models the prediction service runs")
    def list_models() -> list[str]:
        return sorted(service.models)

    roots = [str(r) for r in asset_roots]

    def _item_json(data: bytes) -> Any:
        import json

        try:
            return json.loads(data)
        except (UnicodeDecodeError, ValueError) as exc:
            raise predict.PredictInputError(f"the item is not JSON ({exc})") from None

    async def _predict_item(item: Any, model: str, output: str) -> Response:
        if model not in service.models:  # before any asset is read
            raise predict.PredictInputError(f"unknown model {model!r}; this server predicts with "
                                            f"{', '.join(sorted(service.models)) or 'no model'}")
        cube = await asyncio.to_thread(predict.read_stac_item_cube, item, asset_roots=roots, max_pixels=max_pixels)
        cog = await asyncio.to_thread(service.run, cube, model, output)
        return Response(cog, media_type="image/tiff",
                        headers={"Content-Disposition": f'attachment; filename="{output}.tif"'})

    @api.post("/api/predict", summary="Classify a Sentinel-2 GeoTIFF or STAC item: the probabilities or the label as a COG",
              responses={200: {"content": {"image/tiff": {}}}}, response_class=Response)
    async def predict_upload(
        request: Request,
        image: UploadFile | None = File(None, description="Sentinel-2 L1C or L2A GeoTIFF, one band per Sentinel-2 band"),
        item: UploadFile | None = File(None, description="or a STAC item (JSON) whose assets lie where the server "
                                                         "may read (dwcube serve --allow-assets)"),
        model: str = Form(..., description="model name (GET /api/models)"),
        output: str = Form("probability", description="probability (9 float32 bands) or label (uint8, colour table)"),
        bands: str | None = Form(None, description="band names in file order, e.g. B02,B03,B04 (default: descriptions)"),
        level: str = Form("L1C", description="L1C (top of atmosphere) or L2A (surface reflectance)"),
        scale: float = Form(10000.0, description="reflectance = (DN + offset) / scale for integer bands"),
        offset: float = Form(0.0, description="added to DN before scaling (-1000 for baseline >= 04.00)"),
    ) -> Response:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_bytes + 1_000_000:
            raise predict.PredictTooLargeError(f"the request has {length} bytes, more than the {max_bytes} this server takes")
        if (image is None) == (item is None):
            raise predict.PredictInputError("send one input: a GeoTIFF as the image field or a STAC item as the item field")
        if item is not None:
            data = await item.read(max_bytes + 1)
            if len(data) > max_bytes:
                raise predict.PredictTooLargeError(f"the item has more than the {max_bytes} bytes this server takes")
            return await _predict_item(_item_json(data), model, output)
        assert image is not None
        data = await image.read(max_bytes + 1)
        cube = await asyncio.to_thread(predict.read_geotiff_cube, data, level=level, scale=scale, offset=offset,  # type: ignore[arg-type]
                                       bands=[b for b in bands.split(",") if b] if bands else None,
                                       max_pixels=max_pixels, max_bytes=max_bytes)
        cog = await asyncio.to_thread(service.run, cube, model, output)
        return Response(cog, media_type="image/tiff",
                        headers={"Content-Disposition": f'attachment; filename="{output}.tif"'})

    @api.post("/api/predict/item", summary="Classify a STAC item (JSON body): the probabilities or the label as a COG",
              responses={200: {"content": {"image/tiff": {}}}}, response_class=Response)
    async def predict_item(request: Request) -> Response:
        """Body: ``{"item": {STAC item}, "model": NAME, "output": "probability" | "label"}``; the item's
        assets are read only where the server may read (``dwcube serve --allow-assets``)."""
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > max_bytes:
            raise predict.PredictTooLargeError(f"the request has {length} bytes, more than the {max_bytes} this server takes")
        body = _item_json(await request.body())
        if not isinstance(body, dict) or "item" not in body or "model" not in body:
            raise predict.PredictInputError('the body must be {"item": {STAC item}, "model": NAME, '
                                            '"output": "probability" or "label"}')
        return await _predict_item(body["item"], str(body["model"]), str(body.get("output", "probability")))

    return api

"""``dwcube serve``: the Dynamic World app on your own archives, and an online prediction service.

One small server over dwcube's Zarr archives: a web page (Leaflet map shipped inside the
package, no CDN) with a date slider, layer switcher, legend, a pixel's probability chart,
a before/after swipe and the area scorecard of the view; a JSON API documented at ``/docs``
(OpenAPI); and ``POST /api/predict``, which classifies an uploaded Sentinel-2 GeoTIFF and
returns a Cloud-Optimised GeoTIFF.

Modules: :mod:`~dwcube.serve.layers` (XYZ tiles by rio-tiler), :mod:`~dwcube.serve.queries`
(summary, point series, class areas), :mod:`~dwcube.serve.predict` (GeoTIFF in, COG out),
:mod:`~dwcube.serve.quicklook` (the RGB image behind each date) and :mod:`~dwcube.serve.web`
(the FastAPI face, which only routes to them).  Needs the ``serve`` extra
(``pip install dwcube[serve]``).

Examples
--------
>>> import tempfile
>>> from fastapi.testclient import TestClient
>>> from dwcube.testing import tiny_archive
>>> with tempfile.TemporaryDirectory() as d:
...     client = TestClient(app([tiny_archive(d + "/demo.zarr", size=32, dates=2)]))
...     [a["name"] for a in client.get("/api/archives").json()], client.get("/api/nope/point?lon=0&lat=0").status_code
(['demo'], 404)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["app", "serve"]


def app(stores: Sequence[str | os.PathLike[str]], *, models: Mapping[str, Any] | None = None,
        weights: str | os.PathLike[str] | None = None, predict_idle: float = 300.0,
        max_pixels: int | None = None, max_bytes: int | None = None, asset_roots: Sequence[str] = ()) -> Any:
    """The ASGI app (FastAPI) serving archives and the prediction service.

    Parameters
    ----------
    stores
        Archive stores (local paths); each is named by its folder name without ``.zarr``.
    models
        Models ``POST /api/predict`` may run, by name: registry names or
        :class:`~dwcube.models.registry.ModelEntry` (default: every registered model).
    weights
        Weights folder for the models (as for :func:`dwcube.inference.classify`).
    predict_idle
        Seconds without a prediction after which the networks are freed (scale to zero).
    max_pixels, max_bytes
        Limits of an upload (default :data:`dwcube.serve.predict.MAX_PIXELS` /
        :data:`~dwcube.serve.predict.MAX_BYTES`); beyond them: HTTP 413.
    asset_roots
        Where ``POST /api/predict`` may read a posted STAC item's assets: URL prefixes
        (``https://host/path/``) or local folders (default: nowhere, HTTP 403; see
        :func:`dwcube.serve.predict.asset_allowed`).  Reading any href a request names would
        let a client make the server fetch arbitrary URLs or files.

    Returns
    -------
    fastapi.FastAPI
        The app; run it with uvicorn (:func:`serve`) or any ASGI server.

    Raises
    ------
    ValueError
        When a store is not an archive or two stores get the same name.
    """
    from . import predict
    from .web import create_app

    return create_app(stores, models=models, weights=weights, predict_idle=predict_idle,
                      max_pixels=max_pixels or predict.MAX_PIXELS, max_bytes=max_bytes or predict.MAX_BYTES,
                      asset_roots=asset_roots)


def serve(stores: Sequence[str | os.PathLike[str]], *, host: str = "127.0.0.1", port: int = 8000,
          **options: Any) -> None:
    """Run :func:`app` with uvicorn until interrupted (loopback only by default).

    Parameters
    ----------
    stores
        As for :func:`app`.
    host, port
        Address to listen on; ``127.0.0.1`` keeps the server to this machine.
    **options
        Passed to :func:`app`.
    """
    import uvicorn

    uvicorn.run(app(stores, **options), host=host, port=port, log_level="info")

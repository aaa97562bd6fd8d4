"""Pixel reads of STAC assets that are retried, and a record of the ones that still failed.

Why this exists
---------------
GDAL retries HTTP 429/5xx answers, but a read that fails in another way (a response
body cut short, a COG truncated after its header, a tile that does not decode) is
raised by rasterio, and odc-stac's ``fail_on_error=False`` turns that into no data
without telling anyone: a date loses a quarter or all of a band and the gaps look
like clouds.  Every read of :func:`dwcube.load` goes through :class:`ReadGuard`, which

* retries a failed read (any rasterio/GDAL error, an ``OSError`` or a reader's
  ``RuntimeError``) ``retries`` more times, ``backoff_s`` × attempt apart, the later
  attempts bypassing GDAL's ``/vsicurl/`` cache so that a cut response is fetched
  again (once an asset has failed for good, its other blocks get one attempt each, so
  a broken file costs seconds, not minutes);
* when it still fails: with ``on_error="raise"`` raises :class:`AssetError` naming the
  item, the band, the file and GDAL's reason; with ``on_error="nan"`` leaves that
  block of that band NaN, warns (:class:`AssetReadWarning`) and records the failure.

The record (an honest account of when things are known)
---------------------------------------------------------
``dwcube.load`` builds a lazy cube: assets missing from an item, and (``on_error="nan"``)
assets whose header cannot be read, are known then and listed in the cube's
``attrs["failed_assets"]``.  Pixel reads happen later, at compute time, in whatever
thread or worker runs them; their failures are written to a journal of this process
(and, on a ``dask.distributed`` worker, to the cluster's event log under
:data:`EVENT_TOPIC`).  :func:`read_failures` gives the whole record — the build-time
list plus every compute-time failure — for a cube, anything computed from it
(matched by the cube's ``load_id`` attribute) or any object with an ``item_id``
coordinate on ``time`` (a probability cube, an archive opened again), so that a date
that came back incomplete can be told from a cloudy one *after* computing.  A block
that fails and later reads fine (a recompute) leaves the record.  The journal lives as
long as the process; reads in a ``processes`` scheduler's pool are only warned about.

Examples
--------
>>> guard = ReadGuard("demo", "nan", {"mem://a": ("item-1", "red")}, retries=1, backoff_s=0)
>>> calls = []
>>> def flaky(attempt):
...     calls.append(attempt)
...     if attempt == 0:
...         raise OSError("body cut short")
...     return "pixels"
>>> guard.read("mem://a", "block 0", flaky, lambda: "no data")
'pixels'
>>> calls
[0, 1]
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import numpy as np

__all__ = ["ReadGuard", "ReadFailure", "AssetError", "AssetReadWarning", "read_failures", "EVENT_TOPIC",
           "MISSING_SCHEME"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Topic of the ``dask.distributed`` event log where workers record failed reads.
EVENT_TOPIC = "dwcube-read-failures"

#: Scheme of the href given to an asset that an item lacks (never opened).
MISSING_SCHEME = "dwcube-missing://"


class AssetError(RuntimeError):
    """A band's asset is missing from an item or cannot be read."""


class AssetReadWarning(UserWarning):
    """A block of an asset could not be read and was left NaN (``on_error="nan"``)."""


def _read_errors() -> tuple[type[BaseException], ...]:
    import rasterio._err
    import rasterio.errors

    return (OSError, RuntimeError, rasterio.errors.RasterioError, rasterio._err.CPLE_BaseError)


@dataclasses.dataclass(frozen=True)
class ReadFailure:
    """One block of one asset that could not be read at compute time.

    Parameters
    ----------
    load_id
        ``attrs["load_id"]`` of the cube whose read failed.
    item_id, band
        The STAC item and the common band name.
    href
        The file.
    block
        Which part of the output grid the read was for (bounds in the grid's CRS, or a
        pixel window).
    reason
        The first line of the last error.
    attempts
        How many times it was tried.
    """

    load_id: str
    item_id: str
    band: str
    href: str
    block: str
    reason: str
    attempts: int

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.load_id, self.href, self.block)


class _Journal:
    """Failed reads of this process, by ``(load_id, href, block)``; a later success removes one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failed: dict[tuple[str, str, str], ReadFailure] = {}

    def record(self, failure: ReadFailure) -> None:
        with self._lock:
            self._failed[failure.key] = failure
        _log_event({"failed": dataclasses.asdict(failure)})

    def resolve(self, key: tuple[str, str, str]) -> None:
        with self._lock:
            known = self._failed.pop(key, None)
        if known is not None:
            _log_event({"resolved": list(key)})

    def has_failed(self, load_id: str, href: str) -> bool:
        with self._lock:
            return any(k[0] == load_id and k[1] == href for k in self._failed)

    def entries(self) -> list[ReadFailure]:
        with self._lock:
            return list(self._failed.values())


_JOURNAL = _Journal()


def _worker() -> Any:
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import get_worker

        return get_worker()
    except (ImportError, ValueError):
        return None


def _log_event(msg: dict[str, Any]) -> None:
    worker = _worker()
    if worker is not None:
        try:
            worker.log_event(EVENT_TOPIC, msg)
        except Exception as exc:  # pragma: no cover - the record must never break a read
            log.warning("could not send a read failure to the scheduler: %s", exc)


def _cluster_entries() -> list[ReadFailure]:
    """Failures that workers of the current ``distributed`` client recorded (none without a client)."""
    if "distributed" not in sys.modules:
        return []
    try:
        from distributed import default_client

        client = default_client()
        events = client.get_events(EVENT_TOPIC)
    except (ImportError, ValueError, OSError):
        return []
    state: dict[tuple[str, str, str], ReadFailure] = {}
    for _, msg in sorted(events, key=lambda e: e[0]):
        if "failed" in msg:
            f = ReadFailure(**msg["failed"])
            state[f.key] = f
        elif "resolved" in msg:
            state.pop(tuple(msg["resolved"]), None)  # type: ignore[arg-type]
    return list(state.values())


@dataclasses.dataclass(frozen=True)
class ReadGuard:
    """How the reads of one load are retried and recorded (small and picklable: it travels
    in the task graph).

    Parameters
    ----------
    load_id
        The cube's ``attrs["load_id"]``.
    on_error
        ``"raise"`` or ``"nan"`` (see :func:`dwcube.load`).
    assets
        href → ``(item id, band)`` of every asset the load reads.
    unusable
        href → reason, for assets known to be unusable when the cube was built (they
        are never opened; their failure is in ``attrs["failed_assets"]``).
    retries
        Extra attempts after a failed read (0 = try once).
    backoff_s
        Pause before attempt ``k`` is ``k × backoff_s`` seconds.
    """

    load_id: str
    on_error: str
    assets: Mapping[str, tuple[str, str]]
    unusable: Mapping[str, str] = dataclasses.field(default_factory=dict)
    retries: int = 2
    backoff_s: float = 0.5

    def __post_init__(self) -> None:
        if self.on_error not in ("raise", "nan"):
            raise ValueError(f"on_error must be 'raise' or 'nan', got {self.on_error!r}")
        if not (isinstance(self.retries, int) and self.retries >= 0):
            raise ValueError(f"read retries must be a whole number >= 0, got {self.retries!r}")

    def describe(self, href: str) -> str:
        item_id, band = self.assets.get(href, ("?", "?"))
        return f"{item_id}/{band}"

    def read(self, href: str, block: str, attempt: Callable[[int], T], empty: Callable[[], T]) -> T:
        """Run ``attempt(0)``, ``attempt(1)``… until one returns; on failure see the module docstring.

        ``empty()`` makes the no-data result used for an unusable asset or, with
        ``on_error="nan"``, for a read that failed every attempt.
        """
        if href in self.unusable or href.startswith(MISSING_SCHEME):
            return empty()
        errors = _read_errors()
        # an asset that already failed for good in this load gets one attempt per block
        tries = 1 if _JOURNAL.has_failed(self.load_id, href) else self.retries + 1
        last: BaseException | None = None
        for k in range(tries):
            if k:
                time.sleep(self.backoff_s * k)
            try:
                out = attempt(k)
            except errors as exc:
                last = exc
                log.info("read of %s (%s, %s) failed on attempt %d/%d: %s", href, self.describe(href), block,
                         k + 1, tries, _reason(exc))
                continue
            _JOURNAL.resolve((self.load_id, href, block))
            return out
        assert last is not None
        item_id, band = self.assets.get(href, ("?", "?"))
        reason = _reason(last)
        if self.on_error == "raise":
            raise AssetError(
                f"item {item_id!r} band {band!r}: reading {href} failed {tries} time(s): {reason}. "
                "Pass on_error='nan' to load the rest and get this block as NaN, listed by "
                "dwcube.read_failures(cube)"
            ) from last
        failure = ReadFailure(self.load_id, item_id, band, href, block, reason, tries)
        _JOURNAL.record(failure)
        msg = (f"{item_id}/{band}: reading {href} failed {tries} time(s) ({reason}); this block ({block}) is NaN. "
               "dwcube.read_failures(cube) lists every failed read after computing")
        log.warning(msg)
        warnings.warn(msg, AssetReadWarning, stacklevel=2)
        return empty()


def _reason(exc: BaseException) -> str:
    """The most telling first line of an error and its causes (rasterio's own message often
    only says 'See previous exception')."""
    lines = []
    e: BaseException | None = exc
    while e is not None and len(lines) < 3:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        lines.append(text)
        e = e.__cause__ or e.__context__
    useful = [t for t in lines if "previous exception" not in t] or lines
    return useful[-1][:300]


def read_failures(obj: Any) -> list[str]:
    """Every asset read that failed for a cube: those known when it was built and those of compute.

    Call it after computing (or writing) the cube.  Entries read
    ``"ITEM/BAND: reason"``; compute-time ones add how many blocks failed and where.

    Parameters
    ----------
    obj
        The cube from :func:`dwcube.load`, anything computed from it that kept its
        ``attrs["load_id"]``, or any xarray object with an ``item_id`` coordinate
        (a probability cube: its dates' items are matched).

    Returns
    -------
    list of str
        Build-time failures (``attrs["failed_assets"]``) first, then one entry per
        item and band whose reads failed at compute time; empty when all was read.

    Examples
    --------
    >>> import xarray as xr
    >>> read_failures(xr.Dataset(attrs={"failed_assets": ["S2A_X/red: missing asset"], "load_id": "none"}))
    ['S2A_X/red: missing asset']
    """
    attrs = getattr(obj, "attrs", {}) or {}
    out = [str(v) for v in attrs.get("failed_assets", []) or []]
    entries = {f.key: f for f in _cluster_entries()}
    entries.update({f.key: f for f in _JOURNAL.entries()})
    load_id = attrs.get("load_id")
    if load_id:
        chosen = [f for f in entries.values() if f.load_id == load_id]
    else:
        ids = _item_ids(obj)
        chosen = [f for f in entries.values() if f.item_id in ids]
    grouped: dict[tuple[str, str], list[ReadFailure]] = {}
    for f in sorted(chosen, key=lambda f: (f.item_id, f.band, f.block)):
        grouped.setdefault((f.item_id, f.band), []).append(f)
    for (item_id, band), fs in grouped.items():
        where = "; ".join(f.block for f in fs[:3]) + ("; ..." if len(fs) > 3 else "")
        out.append(f"{item_id}/{band}: {fs[0].reason} ({len(fs)} block(s) NaN after {fs[0].attempts} attempt(s), "
                   f"at compute time: {where})")
    return out


def _item_ids(obj: Any) -> set[str]:
    coords = getattr(obj, "coords", {})
    if "item_id" not in coords:
        return set()
    values: Iterable[Any] = np.asarray(coords["item_id"].values).ravel()
    return {part for v in values for part in str(v).split(",") if part}


# -- the readers ------------------------------------------------------------------------------------


def _uncached(href: str) -> Any:
    """A GDAL environment in which ``href`` is fetched again rather than served from the
    ``/vsicurl/`` cache (where a cut response may have left its part)."""
    import rasterio

    return rasterio.Env(CPL_VSIL_CURL_NON_CACHED=f"/vsicurl/{href}")


def odc_driver(guard: ReadGuard) -> Any:
    """An odc-stac reader driver (``odc.stac.load(..., driver=...)``) whose reads go through ``guard``.

    Examples
    --------
    >>> drv = odc_driver(ReadGuard("demo", "nan", {}))
    >>> type(drv).__name__
    'GuardedRioDriver'
    """
    return _odc_driver_class()(guard)


@functools.cache
def _odc_driver_class() -> type:
    from odc.loader._rio import RioDriver
    from odc.stac._mdtools import StacAuxReader, StacMDParser

    class GuardedRioDriver(RioDriver):
        """odc-loader's rasterio driver, its reads retried and recorded by a :class:`ReadGuard`."""

        def __init__(self, guard: ReadGuard) -> None:
            super().__init__(md_parser=StacMDParser({}), aux_reader=StacAuxReader())
            self.guard = guard

        def open(self, src: Any, ctx: Any) -> Any:
            return _GuardedRioReader(src, self.guard)

        def __reduce__(self) -> Any:  # the class is made at run time: rebuild it where unpickled
            return (odc_driver, (self.guard,))

    return GuardedRioDriver


class _GuardedRioReader:
    """odc-loader's rasterio read of one source, retried and recorded by a :class:`ReadGuard`."""

    def __init__(self, src: Any, guard: ReadGuard) -> None:
        self._src = src
        self._guard = guard

    def read(self, cfg: Any, dst_geobox: Any, *, dst: np.ndarray | None = None,
             selection: Any = None) -> tuple[tuple[slice, slice], np.ndarray]:
        from odc.loader._reader import resolve_dst_fill_value, resolve_src_nodata
        from odc.loader._rio import _rio_read

        href = self._src.uri
        b = dst_geobox.boundingbox

        def attempt(k: int) -> tuple[tuple[slice, slice], np.ndarray]:
            if k == 0:
                return _rio_read(self._src, cfg, dst_geobox, dst, selection=selection)
            with _uncached(href):
                return _rio_read(self._src, cfg, dst_geobox, dst, selection=selection)

        def empty() -> tuple[tuple[slice, slice], np.ndarray]:
            if dst is not None:  # a failed read may have written part of it
                np.copyto(dst, resolve_dst_fill_value(dst.dtype, cfg, resolve_src_nodata(cfg.fill_value, cfg)))
                return np.s_[0:0, 0:0], dst[0:0, 0:0]
            return np.s_[0:0, 0:0], np.ndarray((0, 0), dtype=cfg.dtype)

        block = f"x {b.left:.10g}..{b.right:.10g}, y {b.bottom:.10g}..{b.top:.10g}"
        return self._guard.read(href, block, attempt, empty)


def stackstac_reader(guard: ReadGuard) -> Callable[..., Any]:
    """A reader factory for ``stackstac.stack(..., reader=...)`` whose reads go through ``guard``.

    Examples
    --------
    >>> callable(stackstac_reader(ReadGuard("demo", "raise", {})))
    True
    """
    return functools.partial(_stackstac_reader_class(), guard=guard)


@functools.cache
def _stackstac_reader_class() -> type:
    from stackstac.nodata_reader import nodata_for_window
    from stackstac.rio_reader import AutoParallelRioReader

    class GuardedStackstacReader(AutoParallelRioReader):
        """stackstac's reader, its reads retried and recorded by a :class:`ReadGuard`."""

        def __init__(self, *, guard: ReadGuard, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.guard = guard

        def read(self, window: Any, **kw: Any) -> np.ndarray:
            parent = super().read

            def attempt(k: int) -> np.ndarray:
                if k == 0:
                    return parent(window, **kw)
                self.close()  # reopen: a cut header must not stay in the open dataset
                with _uncached(self.url):
                    return parent(window, **kw)

            return self.guard.read(self.url, f"window {window}", attempt,
                                   lambda: nodata_for_window(window, self.fill_value, self.dtype))

        def __reduce__(self) -> Any:
            return (_rebuild_stackstac_reader, (self.guard, self.__getstate__()))

    return GuardedStackstacReader


def _rebuild_stackstac_reader(guard: ReadGuard, state: Mapping[str, Any]) -> Any:
    return _stackstac_reader_class()(guard=guard, **state)

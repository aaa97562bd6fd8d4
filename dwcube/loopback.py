"""Loopback HTTP servers for tests, benchmarks and the offline demo (re-exported by :mod:`dwcube.testing`).

:func:`serve_directory` serves a folder on 127.0.0.1 in a thread, honouring single
``Range`` requests as GDAL's ``/vsicurl/`` needs, and can fail or cut responses on purpose
(:class:`RangeRequestHandler`); :func:`serve_directory_process` runs the same server in a
child process.  Only the standard library is imported here, so that the child process
starts at once (:mod:`dwcube.testing` imports PyTorch, pystac and NumPy).
"""

from __future__ import annotations

import contextlib
import http.server
import os
import re
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RangeRequestHandler", "ServerStats", "free_port", "serve_directory", "serve_directory_process"]


@dataclass
class ServerStats:
    """Counters of a :func:`serve_directory` server (thread-safe enough for tests)."""

    requests: int = 0
    failed_on_purpose: int = 0
    cut_on_purpose: int = 0
    bodies: int = 0
    bytes_sent: int = 0
    paths: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class RangeRequestHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single-range ``Range: bytes=a-b`` support and optional failures.

    Class attributes set by :func:`serve_directory`: ``fail_every`` (answer every
    n-th request with 503; 0 = never), ``cut_every`` and ``cut_paths`` (send a body
    shorter than its ``Content-Length``, see :func:`serve_directory`) and ``stats``.
    """

    disable_nagle_algorithm = True  # headers and body go out at once (no ~40 ms delayed-ACK stall per reply)

    fail_every: int = 0
    cut_every: int = 0
    cut_paths: dict[str, int] = {}
    stats: ServerStats
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
        pass

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionResetError, BrokenPipeError):
            pass  # a client (GDAL) closed a kept-alive connection: normal, not an error

    def _cut_this_body(self) -> bool:
        """Whether this GET's body is to be cut short (counts it when so)."""
        rel = self.path.split("?", 1)[0].lstrip("/")
        with self.stats.lock:
            self.stats.bodies += 1
            cut = False
            if self.cut_paths.get(rel, 0) > 0:
                self.cut_paths[rel] -= 1
                cut = True
            elif self.cut_every > 0:
                cut = self.stats.bodies % self.cut_every == 0
            if cut:
                self.stats.cut_on_purpose += 1
        return cut

    def _count(self) -> bool:
        with self.stats.lock:
            self.stats.requests += 1
            n = self.stats.requests
            self.stats.paths.append(self.path)
            fail = self.fail_every > 0 and n % self.fail_every == 0
            if fail:
                self.stats.failed_on_purpose += 1
        if fail:
            self.send_response(503, "Service Unavailable (flaky test server)")
            self.send_header("Content-Length", "0")
            self.send_header("Retry-After", "0")
            self.end_headers()
        return fail

    def do_HEAD(self) -> None:  # noqa: N802
        if self._count():
            return
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404, "not found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(os.path.getsize(path)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", self.guess_type(path))
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        if self._count():
            return
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404, "not found")
            return
        size = os.path.getsize(path)
        rng = self.headers.get("Range")
        start, end, status = 0, size - 1, 200
        if rng:
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
            if not m or (not m.group(1) and not m.group(2)):
                self.send_error(416, "bad range")
                return
            if m.group(1):
                start = int(m.group(1))
                end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            else:  # suffix range: last n bytes
                start = max(0, size - int(m.group(2)))
            if start >= size or start > end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if length >= 2 and self._cut_this_body():
            # Half the promised body, then the connection goes away: what a proxy or a
            # network fault does to a long transfer.
            with open(path, "rb") as f:
                f.seek(start)
                try:
                    self.wfile.write(f.read(length // 2))
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.close_connection = True
            return
        try:
            with open(path, "rb") as f:
                f.seek(start)
                remaining = length
                while remaining > 0:
                    chunk = f.read(min(1 << 20, remaining))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    remaining -= len(chunk)
        except (ConnectionResetError, BrokenPipeError):
            # The client had what it needed (GDAL often stops a long read early).
            self.close_connection = True
            return
        with self.stats.lock:
            self.stats.bytes_sent += length


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_directory(root: str | os.PathLike[str], *, fail_every: int = 0, cut_every: int = 0,
                    cut_paths: Mapping[str, int] | None = None) -> Iterator[tuple[str, ServerStats]]:
    """Serve ``root`` over HTTP on 127.0.0.1 (threaded, Range-capable) for the ``with`` block.

    Parameters
    ----------
    fail_every
        Answer every ``fail_every``-th request with ``503 Service Unavailable``
        (``2`` = every other request); GDAL retries these.
    cut_every
        Cut every ``cut_every``-th response body short: the headers promise the whole
        range, half of it is sent, then the connection is closed.
    cut_paths
        File path relative to ``root`` → how many of its first response bodies to cut
        short (the later ones are whole): a deterministic network fault on one asset.

    Yields
    ------
    (base_url, stats)

    Examples
    --------
    >>> import tempfile, urllib.error, urllib.request
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = Path(d, "a.txt").write_text("hello")
    ...     with serve_directory(d, fail_every=2) as (url, stats):
    ...         ranged = urllib.request.Request(url + "/a.txt", headers={"Range": "bytes=1-3"})
    ...         part = urllib.request.urlopen(ranged).read()          # request 1: served
    ...         try:
    ...             urllib.request.urlopen(url + "/a.txt")              # request 2: failed on purpose
    ...         except urllib.error.HTTPError as exc:
    ...             status = exc.code
    >>> part, status, stats.requests, stats.failed_on_purpose
    (b'ell', 503, 2, 1)
    """
    stats = ServerStats()
    handler = type(
        "Handler",
        (RangeRequestHandler,),
        {"fail_every": fail_every, "cut_every": cut_every, "cut_paths": dict(cut_paths or {}), "stats": stats,
         "directory": str(root)},
    )

    def make(*args: Any, **kw: Any) -> RangeRequestHandler:
        return handler(*args, directory=str(root), **kw)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make)  # type: ignore[arg-type]
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", stats
    finally:
        server.shutdown()
        server.server_close()


def _serve_forever(root: str, fail_every: int, conn: Any) -> None:  # pragma: no cover - child process
    with serve_directory(root, fail_every=fail_every) as (url, _):
        conn.send(url)
        conn.recv()  # block until the parent says stop


@contextlib.contextmanager
def serve_directory_process(root: str | os.PathLike[str], *, fail_every: int = 0) -> Iterator[str]:
    """Like :func:`serve_directory`, but in a separate process (for benchmarks: the server
    then does not compete for the measuring process's GIL). Yields the base URL.

    The child process imports only this module (the standard library), so it answers
    within a fraction of a second.

    Examples
    --------
    >>> import tempfile, urllib.request
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = Path(d, "a.txt").write_text("hello")
    ...     with serve_directory_process(d) as url:
    ...         urllib.request.urlopen(url + "/a.txt").read()
    b'hello'
    """
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve_forever, args=(str(root), fail_every, child), daemon=True)
    proc.start()
    try:
        deadline = time.monotonic() + 60
        while not parent.poll(0.05):
            if not proc.is_alive():
                raise RuntimeError(f"the HTTP server process exited ({proc.exitcode}) before it served {root}")
            if time.monotonic() > deadline:
                raise RuntimeError("the HTTP server process did not start within 60 s")
        yield parent.recv()
    finally:
        try:
            parent.send("stop")
        except OSError:  # pragma: no cover
            pass
        proc.join(10)
        if proc.is_alive():  # pragma: no cover
            proc.kill()

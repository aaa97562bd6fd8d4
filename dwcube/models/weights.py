"""Model weights as pinned, hashed files: where they are found, how they are fetched.

The project never contains third-party weights.  A :class:`WeightsSource` names the
files of one set of weights (paths relative to a root folder) with their SHA-256, and
where to download them.  :func:`resolve` finds a complete, verified copy; :func:`fetch`
downloads one into the user cache.  Search order:

1. an explicit ``path`` argument (a folder holding the files under their relative paths);
2. ``$DWCUBE_WEIGHTS/<name>/``, then ``$DWCUBE_WEIGHTS/`` itself;
3. the user cache, ``$DWCUBE_CACHE`` or ``$XDG_CACHE_HOME/dwcube`` or ``~/.cache/dwcube``,
   under ``weights/<name>/``.

Every file is checked against its pinned SHA-256 before use; a mismatch is an error
(:class:`WeightsHashError`), never a fallback.

Examples
--------
>>> from dwcube.models.registry import get_entry
>>> src = get_entry("dynamic-world").weights
>>> src.files[0].path
'model/forward/saved_model.pb'
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "WeightFile",
    "WeightsSource",
    "WeightsError",
    "WeightsHashError",
    "WeightsNotFoundError",
    "cache_dir",
    "fetch",
    "resolve",
    "sha256_file",
]


class WeightsError(RuntimeError):
    """Weights cannot be used."""


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """No complete copy of the weights was found; the message says where it looked."""


class WeightsHashError(WeightsError):
    """A weights file does not have its pinned SHA-256 (corrupted, truncated or replaced)."""


@dataclass(frozen=True)
class WeightFile:
    """One file of a set of weights: path relative to the weights root, and its SHA-256."""

    path: str
    sha256: str


@dataclass(frozen=True)
class WeightsSource:
    """A pinned set of weight files and where to download them.

    Parameters
    ----------
    name
        Folder name in ``$DWCUBE_WEIGHTS`` and the cache (``"dynamic-world"``).
    files
        The files with their SHA-256.
    base_url
        Download root: file ``f`` comes from ``base_url + "/" + f.path``.
    origin
        Human-readable origin (repository and commit), for provenance.
    license, attribution
        Licence name and the attribution text that must travel with the weights;
        written as ``NOTICE`` next to fetched files.
    """

    name: str
    files: tuple[WeightFile, ...]
    base_url: str
    origin: str
    license: str = ""
    attribution: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def sha256(self) -> str:
        """One digest for the whole set (SHA-256 over ``path:sha256`` lines), for ``attrs``."""
        lines = "".join(f"{f.path}:{f.sha256}\n" for f in sorted(self.files, key=lambda f: f.path))
        return hashlib.sha256(lines.encode()).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x"; _ = p.write_bytes(b"abc")
    >>> sha256_file(p)[:16]
    'ba7816bf8f01cfea'
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def cache_dir() -> Path:
    """The user cache root: ``$DWCUBE_CACHE``, ``$XDG_CACHE_HOME/dwcube`` or ``~/.cache/dwcube``."""
    if os.environ.get("DWCUBE_CACHE"):
        return Path(os.environ["DWCUBE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "dwcube"


def _verify(root: Path, source: WeightsSource) -> None:
    for f in source.files:
        got = sha256_file(root / f.path)
        if got != f.sha256:
            raise WeightsHashError(
                f"{root / f.path}: SHA-256 {got} does not match the pinned {f.sha256} "
                f"for {source.name} ({source.origin}); the file is corrupted or not the official one. "
                f"Delete it and run `dwcube weights fetch {source.name}`."
            )


def _candidates(source: WeightsSource, path: str | Path | None) -> list[tuple[Path, str]]:
    if path is not None:
        return [(Path(path).expanduser(), "the path given")]
    out = []
    env = os.environ.get("DWCUBE_WEIGHTS")
    if env:
        out += [(Path(env).expanduser() / source.name, "$DWCUBE_WEIGHTS/" + source.name),
                (Path(env).expanduser(), "$DWCUBE_WEIGHTS")]
    out.append((cache_dir() / "weights" / source.name, "the user cache"))
    return out


def resolve(source: WeightsSource, path: str | Path | None = None) -> Path:
    """The root folder of a complete copy of ``source``, every file hash-checked.

    Parameters
    ----------
    source
        The pinned weights.
    path
        Explicit root folder; when given, nothing else is searched.

    Returns
    -------
    pathlib.Path
        A folder holding every file of ``source`` under its relative path.

    Raises
    ------
    WeightsNotFoundError
        No candidate holds all files (the message lists where it looked and what was missing).
    WeightsHashError
        The first complete copy has a file with the wrong SHA-256.

    Examples
    --------
    >>> root = resolve(get_entry("dynamic-world").weights, "../shared/dynamicworld")  # doctest: +SKIP
    """
    looked = []
    for root, label in _candidates(source, path):
        missing = [f.path for f in source.files if not (root / f.path).is_file()]
        if not missing:
            _verify(root, source)
            return root
        if len(missing) < len(source.files):
            looked.append(f"{root} ({label}): incomplete, missing {', '.join(missing)}")
        else:
            looked.append(f"{root} ({label}): not there")
    raise WeightsNotFoundError(
        f"no complete copy of the {source.name} weights; looked in: " + "; ".join(looked)
        + f". Run `dwcube weights fetch {source.name}` (downloads from {source.origin}), "
        "or set DWCUBE_WEIGHTS to a folder that has them."
    )


def _download(url: str, dest: Path, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as out:
            shutil.copyfileobj(resp, out)
    except urllib.error.HTTPError as exc:
        raise WeightsError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise WeightsError(f"download of {url} failed: {exc}") from exc


def fetch(
    source: WeightsSource,
    dest: str | Path | None = None,
    *,
    base_url: str | None = None,
    timeout: float = 60.0,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Download ``source`` into ``dest`` (default: the user cache), verified, atomically.

    Files already present with the right hash are kept.  Each file is downloaded to a
    temporary name in the destination folder, checked against its SHA-256 and only then
    renamed into place, so an interrupted or corrupted download never leaves a file
    that looks valid.  ``NOTICE`` (the attribution) is written beside the files.

    Parameters
    ----------
    source
        The pinned weights.
    dest
        Root folder; default ``cache_dir()/weights/<name>``.
    base_url
        Mirror to download from instead of ``source.base_url`` (same relative paths).
    timeout
        Seconds per request.
    progress
        Called with one line per file.

    Returns
    -------
    pathlib.Path
        The root folder, complete and verified.

    Examples
    --------
    >>> fetch(get_entry("dynamic-world").weights)  # doctest: +SKIP
    PosixPath('/home/me/.cache/dwcube/weights/dynamic-world')
    """
    root = Path(dest).expanduser() if dest is not None else cache_dir() / "weights" / source.name
    base = (base_url or source.base_url).rstrip("/")
    for f in source.files:
        target = root / f.path
        if target.is_file() and sha256_file(target) == f.sha256:
            if progress:
                progress(f"{f.path}: present, verified")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".part-", dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            _download(f"{base}/{f.path}", tmp, timeout)
            got = sha256_file(tmp)
            if got != f.sha256:
                raise WeightsHashError(f"downloaded {base}/{f.path} has SHA-256 {got}, expected {f.sha256}; "
                                       "nothing was installed")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        if progress:
            progress(f"{f.path}: downloaded, verified")
    if source.attribution:
        (root / "NOTICE").write_text(f"{source.origin}\nLicence: {source.license}\n\n{source.attribution}\n")
    return root

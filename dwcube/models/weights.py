"""Model weights as pinned, hashed files: where they are found, how they are fetched.

The project never contains third-party weights.  A :class:`WeightsSource` names the
files of one set of weights (paths relative to a root folder) with their SHA-256, and
where to download them.  :func:`resolve` finds a complete, verified copy; :func:`fetch`
downloads one into the user cache.  Every part of dwcube (``classify``, the demo,
``dwcube weights list``, the registry's ``load_model``) finds weights the same way,
through :func:`search_locations`:

1. an explicit ``path`` argument (a folder holding the files under their relative paths);
   when given, nothing else is searched;
2. ``$DWCUBE_WEIGHTS/<name>/``, then ``$DWCUBE_WEIGHTS/`` itself;
3. for weights that the project's ``shared/`` folder holds (``shared_folder``, e.g.
   ``dynamicworld``): ``$DWCUBE_SHARED/<shared_folder>`` when ``$DWCUBE_SHARED`` is set;
   otherwise ``../shared/<shared_folder>`` relative to the current folder, then relative to
   the dwcube source checkout (only when dwcube runs from one);
4. the user cache, ``$DWCUBE_CACHE`` or ``$XDG_CACHE_HOME/dwcube`` or ``~/.cache/dwcube``,
   under ``weights/<name>/``.

A setting always replaces a guess: with ``$DWCUBE_SHARED`` set, no ``../shared`` folder is
guessed.  Every file is checked against its pinned SHA-256 before use; a mismatch is an
error (:class:`WeightsHashError`), never a fallback.  When nothing is found, the error
lists every place looked at.

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
    "search_locations",
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
    shared_folder
        Folder name of these weights in the project's ``shared/`` folder
        (``"dynamicworld"``), or ``""`` when it does not hold them.
    """

    name: str
    files: tuple[WeightFile, ...]
    base_url: str
    origin: str
    license: str = ""
    attribution: str = ""
    shared_folder: str = ""
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


def _source_checkout() -> Path | None:
    """The dwcube source checkout this module runs from (``pyproject.toml`` beside the package), if any."""
    repo = Path(__file__).resolve().parents[2]
    if (repo / "pyproject.toml").is_file() and (repo / "dwcube" / "models").is_dir():
        return repo
    return None


def search_locations(source: WeightsSource, path: str | Path | None = None) -> list[tuple[Path, str]]:
    """Where :func:`resolve` looks for ``source``, in order, each with a label saying why.

    Parameters
    ----------
    source
        The pinned weights.
    path
        Explicit root folder; when given, it is the only place.

    Returns
    -------
    list of (pathlib.Path, str)
        Candidate root folders (duplicates removed) and how each was chosen.

    Examples
    --------
    >>> import os
    >>> from dwcube.models.registry import get_entry
    >>> os.environ.update(DWCUBE_WEIGHTS="/w", DWCUBE_SHARED="/s", DWCUBE_CACHE="/c")
    >>> [str(p) for p, _ in search_locations(get_entry("dynamic-world").weights)]
    ['/w/dynamic-world', '/w', '/s/dynamicworld', '/c/weights/dynamic-world']
    >>> search_locations(get_entry("dynamic-world").weights, "/mine")[0][1]
    'the path given'
    >>> for k in ("DWCUBE_WEIGHTS", "DWCUBE_SHARED", "DWCUBE_CACHE"):
    ...     del os.environ[k]
    """
    if path is not None:
        return [(Path(path).expanduser(), "the path given")]
    out: list[tuple[Path, str]] = []
    env = os.environ.get("DWCUBE_WEIGHTS")
    if env:
        out += [(Path(env).expanduser() / source.name, "$DWCUBE_WEIGHTS/" + source.name),
                (Path(env).expanduser(), "$DWCUBE_WEIGHTS")]
    if source.shared_folder:
        shared = os.environ.get("DWCUBE_SHARED")
        if shared:
            out.append((Path(shared).expanduser() / source.shared_folder, "$DWCUBE_SHARED/" + source.shared_folder))
        else:
            rel = Path("..") / "shared" / source.shared_folder
            out.append(((Path.cwd() / rel).resolve(), f"{rel} from the current folder"))
            repo = _source_checkout()
            if repo is not None:
                out.append(((repo / rel).resolve(), f"{rel} from the dwcube checkout"))
    out.append((cache_dir() / "weights" / source.name, "the user cache"))
    seen: set[Path] = set()
    unique = []
    for root, label in out:
        if root not in seen:
            seen.add(root)
            unique.append((root, label))
    return unique


def resolve(source: WeightsSource, path: str | Path | None = None) -> Path:
    """The root folder of a complete copy of ``source``, every file hash-checked.

    Parameters
    ----------
    source
        The pinned weights.
    path
        Explicit root folder; when given, nothing else is searched (see
        :func:`search_locations` for the order otherwise).

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
    for root, label in search_locations(source, path):
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
        "set DWCUBE_WEIGHTS to a folder that has them, or pass the folder explicitly."
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

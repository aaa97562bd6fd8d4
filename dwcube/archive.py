"""Zarr archives of probability cubes: write, append new dates, resume, check, open.

An archive is one Zarr v3 group holding the probability cube ``(time, class, y, x)``
and, per date, the label and the confidence layers of :mod:`dwcube.probability`, with
the grid as a CF ``spatial_ref`` coordinate and consolidated metadata, so that plain
``xr.open_zarr(store)`` (and rioxarray / odc-geo on the result) reads it with its CRS,
without warnings, as ``float32``.

Encoding (:class:`ArchiveEncoding`)
    Probabilities and confidence layers are stored as ``float32`` rounded to a grid of
    2⁻¹⁶ by default (``precision="uint16"``: every stored value within 2⁻¹⁷ = 7.6e-6 of
    the computed one, the precision of a 16-bit code), or of 2⁻⁸ (``"uint8"``: within
    0.002), or exactly (``"float32"``); NaN = no data.  Rounded values have zero
    trailing mantissa bits, which bit-shuffled Zstandard removes: on Dynamic World's own
    output the 2⁻¹⁶ grid takes 13.0 bytes per pixel for the nine classes, less than
    uint16 codes (14.2).  Integer codes with CF ``scale_factor`` were given up because
    Zarr attributes are JSON, whose numbers xarray reads as float64, so plain xarray
    decoded packed probabilities to float64 (twice the memory).  Labels are ``uint8``
    (255 = no data) with CF ``flag_values`` / ``flag_meanings`` / ``flag_colors``.
    Chunks are one date × all classes × ``chunk`` × ``chunk`` pixels (writes per
    date, appends never touch old chunks), compressed with Blosc-Zstd and
    bit-shuffling and followed by a CRC-32C checksum.  Every chunk is stored, no-data
    ones included, so a missing chunk is damage, never "no data".

One writer at a time
    A write holds an exclusive lock on the file ``STORE.lock`` beside the archive
    (``flock``; on NFS the kernel's lock manager) from before it looks at the archive
    until its last metadata is written.  A second writer is refused at once with
    :class:`ArchiveBusyError` naming the holder (process id, host, start time), or, with
    ``wait=SECONDS``, waits that long for the lock first.  The lock belongs to the
    writing process: when it dies (killed, crashed, machine lost) the kernel releases
    it, so a killed writer never blocks the next one; the file itself is removed by the
    holder when it finishes and reused otherwise.  Stores given as URLs (``s3://…``)
    cannot be locked: writing one warns, and one writer at a time is up to the user.

Appending and resuming
    :func:`write_archive` with ``mode="a"`` (the default) creates the archive, or
    appends the dates it does not hold yet (they must come after the last stored date),
    skipping those it holds.  Before any data is written the archive records the dates
    in flight and the job that writes them (``attrs["dwcube_pending"]``), extends the
    arrays, and then each block-write task marks its block done in the ``_progress``
    sub-group after its data is stored.  A write killed at any point (process, worker
    or machine) leaves the complete dates untouched; running the same job again
    computes only the blocks not marked done, removes the temporary ``*.partial`` files
    the killed write left, and the result equals an uninterrupted write.  A different
    job cannot finish it: its settings, its inputs' provenance (sensor, radiometry,
    masks, per-date item ids…) and one finished block recomputed from the new cube must
    all match, or :class:`ArchiveMismatchError` says what differs.  Writes are
    idempotent, so Dask may retry a task whose worker died.  :func:`open_archive` shows
    only complete dates (with a warning while a write is pending); plain xarray sees the
    consolidated metadata of the last finished write, i.e. the complete dates.

Refusing mixtures
    The archive records everything that changes the numbers: the model (name, version,
    weights SHA-256, every build option such as Dynamic World's ``direction``), the
    no-data fill value, the model's inputs and normalisation, the cloud mask,
    resampling and grouping of the inputs, the classes, the grid (CRS, transform,
    shape) and the encoding; appending a cube that differs in any of them raises
    :class:`ArchiveMismatchError` naming the differences, before anything is written.
    What may legitimately differ between dates (sensor, radiometry, masks of the
    scenes) is recorded per write in ``attrs["dwcube_writes"]`` and per date in the
    ``time`` coordinates (item ids, platform, cloud cover…).

Integrity
    :func:`check_archive` (``dwcube archive check STORE``) reads and decodes every
    chunk (checksums included) and reports each missing, corrupt or undecodable one.
    Reads through :func:`open_archive` raise :class:`ArchiveIntegrityError` naming the
    store, the array and the chunk; opening checks the coordinates (a lost ``time``
    chunk would otherwise read as 1970-01-01) and :func:`archive_info` counts the chunk
    files.

Examples
--------
>>> from dwcube.inference import classify
>>> from dwcube.testing import TINY_MODEL, synthetic_cube
>>> import tempfile
>>> prob = classify(synthetic_cube(32, 2), TINY_MODEL, device="cpu")
>>> with tempfile.TemporaryDirectory() as d:
...     _ = write_archive(prob, d + "/lulc.zarr")
...     ds = open_archive(d + "/lulc.zarr")
...     ds.probability.dtype, ds.probability.rio.crs.to_epsg(), check_archive(d + "/lulc.zarr").ok
(dtype('float32'), 32633, True)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import dask
import dask.array as da
import numpy as np
import odc.geo.xr  # noqa: F401 - registers .odc (used here) now that `import dwcube` is lazy
import rioxarray  # noqa: F401 - registers .rio on the archives open_archive returns
import xarray as xr
import zarr
from zarr.storage import LocalStore, WrapperStore

from .classes import NODATA_LABEL
from .execute import compute_in_waves, scheduler_threads
from .probability import _argmax, _confidence, confidence, label

__all__ = [
    "ArchiveBusyError",
    "ArchiveCheck",
    "ArchiveEncoding",
    "ArchiveError",
    "ArchiveIntegrityError",
    "ArchiveMismatchError",
    "ArchiveWrite",
    "IncompleteArchiveWarning",
    "archive_info",
    "archive_lock",
    "archive_versions",
    "resolve_version",
    "version_key",
    "INCOMPLETE_ATTR",
    "write_products",
    "open_products",
    "update_attrs",
    "check_archive",
    "format_info",
    "open_archive",
    "write_archive",
]

#: Version of the archive layout; archives of another version are read but not appended to.
#: 1: CF-packed uint16/uint8 probabilities, no-data chunks not stored, no checksums.
#: 2: float32 on a 2^-16 / 2^-8 grid, every chunk stored, CRC-32C per chunk.
FORMAT_VERSION = 2
CONFIDENCE_LAYERS = ("top1_probability", "margin", "entropy")
_TIME_UNITS = "microseconds since 1970-01-01 00:00:00"
_GRID_STEP = {"uint16": 2.0 ** -16, "uint8": 2.0 ** -8}  # precision → rounding step of stored values
#: A resumed job's recomputed block may differ from the stored one by this much (another device,
#: e.g. a GPU with TF32 convolutions, changes probabilities by ~1e-3); a different cube or model
#: differs by far more, or in where it has data.
RESUME_TOLERANCE = 0.02
#: Per-date provenance of the inputs that a resumed job must share with the interrupted one.
_INPUT_KEYS = ("sensor", "product_level", "radiometry", "corrections", "mask", "harmonization", "out_of_domain")
_LOCK_SUFFIX = ".lock"
_TIME_CHUNK = 1024  # dates per chunk of the per-date coordinates
#: Attribute naming the dates whose inputs failed to read (``on_error="nan"``): date → failures.
INCOMPLETE_ATTR = "dwcube_incomplete"
_PROGRESS = "_progress"


class ArchiveError(RuntimeError):
    """The store is not a usable dwcube archive, or the write cannot proceed."""


class ArchiveMismatchError(ArchiveError):
    """The cube does not match the archive (model, options, classes, grid or encoding), or a
    resumed job is not the interrupted one."""


class ArchiveBusyError(ArchiveError):
    """Another process is writing the archive (it holds ``STORE.lock``)."""


class ArchiveIntegrityError(ArchiveError):
    """The archive is damaged: a chunk is missing, fails its checksum or does not decode, or its
    metadata does not parse.

    Attributes
    ----------
    store, array, chunk
        Where: the store path, the array name and the chunk index (``None`` where it does
        not apply).
    """

    def __init__(self, message: str, store: str | None = None, array: str | None = None,
                 chunk: tuple[int, ...] | None = None) -> None:
        super().__init__(message)
        self.store, self.array, self.chunk = store, array, chunk

    def __reduce__(self) -> tuple[Any, ...]:  # survives pickling (Dask workers → client)
        return (type(self), (self.args[0], self.store, self.array, self.chunk))


class IncompleteArchiveWarning(UserWarning):
    """The archive has dates whose write has not finished; they are left out."""


@dataclass(frozen=True)
class ArchiveEncoding:
    """How an archive stores its layers.

    Parameters
    ----------
    precision
        ``"uint16"`` (values rounded to multiples of 2⁻¹⁶: within 7.6e-6), ``"uint8"``
        (multiples of 2⁻⁸: within 0.002) or ``"float32"`` (exact); all are stored and
        read as float32 (the names say which integer code they match in precision).
    chunk
        Spatial chunk size in pixels (each chunk holds one date and all classes).
    clevel
        Zstandard compression level (Blosc, bit-shuffled).
    layers
        Derived layers stored with the probabilities: any of ``"label"``,
        ``"top1_probability"``, ``"margin"``, ``"entropy"``.

    Examples
    --------
    >>> ArchiveEncoding(precision="uint8").max_error
    0.001953125
    >>> ArchiveEncoding().encode_fraction(np.array([0.1, np.nan], np.float32)).tolist()
    [0.100006103515625, nan]
    """

    precision: Literal["uint16", "uint8", "float32"] = "uint16"
    chunk: int = 512
    clevel: int = 5
    layers: tuple[str, ...] = ("label", *CONFIDENCE_LAYERS)

    def __post_init__(self) -> None:
        if self.precision not in ("uint16", "uint8", "float32"):
            raise ValueError(f"precision must be 'uint16', 'uint8' or 'float32', got {self.precision!r}")
        if self.chunk < 16:
            raise ValueError(f"chunk must be at least 16 pixels, got {self.chunk}")
        unknown = set(self.layers) - {"label", *CONFIDENCE_LAYERS}
        if unknown:
            raise ValueError(f"unknown archive layers {sorted(unknown)}; choose from label, "
                             f"{', '.join(CONFIDENCE_LAYERS)}")
        object.__setattr__(self, "layers", tuple(self.layers))

    @property
    def max_error(self) -> float:
        """Largest difference between a stored and a computed probability."""
        return 0.0 if self.precision == "float32" else _GRID_STEP[self.precision] / 2

    def _compressors(self) -> list[Any]:
        return [zarr.codecs.BloscCodec(cname="zstd", clevel=self.clevel, shuffle="bitshuffle"),
                zarr.codecs.Crc32cCodec()]

    def _fraction(self, chunks: tuple[int, ...]) -> dict[str, Any]:
        """Encoding of a 0–1 layer."""
        return {"chunks": chunks, "compressors": self._compressors(), "dtype": "float32",
                "fill_value": np.float32(np.nan)}

    def encode_fraction(self, values: np.ndarray) -> np.ndarray:
        """0–1 values as stored: float32, clipped to 0–1 and rounded to the precision's grid
        (exact in float32: the step is a power of two); NaN stays NaN."""
        v = np.asarray(values, dtype=np.float32)
        if self.precision == "float32":
            return v
        step = np.float32(_GRID_STEP[self.precision])
        return (np.round(np.clip(v, 0.0, 1.0) / step) * step).astype(np.float32)

    def _as_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "chunk": self.chunk, "layers": list(self.layers),
                "checksum": "crc32c"}


@dataclass
class ArchiveWrite:
    """What :func:`write_archive` did.

    Attributes
    ----------
    store
        The archive.
    written, skipped
        Dates written by this call, and dates the archive already held.
    blocks, blocks_resumed
        Block-write tasks run, and blocks found already done by an interrupted write.
    partials_removed
        Temporary ``*.partial`` files of an interrupted write that were removed.
    quicklook
        Dates whose RGB quicklook this call wrote (``write_archive(..., quicklook=cube)``).
    """

    store: str
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    blocks: int = 0
    blocks_resumed: int = 0
    partials_removed: int = 0
    quicklook: list[str] = field(default_factory=list)


@dataclass
class ArchiveCheck:
    """What :func:`check_archive` found.

    Attributes
    ----------
    store
        The archive.
    chunks
        Chunks read and decoded.
    arrays
        Arrays checked.
    problems
        Damage, one line each (array, chunk, what is wrong); empty when the archive is whole.
    notes
        Facts that are not damage (an unfinished write, leftover temporary files, stale
        consolidated metadata).
    """

    store: str
    chunks: int = 0
    arrays: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether no damage was found."""
        return not self.problems

    def format(self) -> str:
        """Human-readable lines."""
        head = (f"{self.store}: OK, {self.chunks} chunks in {len(self.arrays)} arrays read and verified" if self.ok
                else f"{self.store}: DAMAGED, {len(self.problems)} problem(s) in {self.chunks} chunks checked")
        return "\n".join([head, *(f"  problem: {p}" for p in self.problems), *(f"  note: {n}" for n in self.notes)])


# -- fingerprint: what must be equal across an archive ----------------------------------------


def _jsonable(value: Any) -> Any:
    """``value`` as it reads back from JSON attributes (tuples → lists, NumPy → Python)."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def _grid(probability: xr.DataArray) -> dict[str, Any]:
    try:
        gbox = probability.odc.geobox
    except Exception:  # noqa: BLE001 - odc-geo raises several kinds here
        gbox = None
    if gbox is None or gbox.crs is None:
        raise ArchiveError("the probability cube has no grid/CRS (a spatial_ref coordinate); "
                           "cubes from dwcube.load and classify() carry one")
    a = gbox.affine
    return {"crs": gbox.crs.to_wkt(), "epsg": gbox.crs.epsg, "transform": [a.a, a.b, a.c, a.d, a.e, a.f],
            "shape": [int(gbox.shape.y), int(gbox.shape.x)], "dims": list(probability.odc.spatial_dims)}


def _settings(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The settings of a cube that change its numbers (besides the model's identity and weights)."""
    options = attrs.get("model_build_options")
    return _jsonable({
        "model_build_options": json.loads(options) if isinstance(options, str) else (options or {}),
        "fill_value": attrs.get("inference_fill_value"),
        "model_inputs": attrs.get("model_inputs"),
        "model_normalisation": attrs.get("model_normalisation"),
        "cloud_mask": attrs.get("cloud_mask"),
        "resampling": attrs.get("resampling"),
        "groupby": attrs.get("groupby"),
    })


def _fingerprint(probability: xr.DataArray, enc: ArchiveEncoding) -> dict[str, Any]:
    attrs = probability.attrs
    if "model" not in attrs:
        raise ArchiveError("the probability cube does not name its model (attrs['model']); "
                           "write cubes made by classify()")
    return {
        "format": FORMAT_VERSION,
        "model": attrs["model"],
        "model_version": attrs.get("model_version"),
        "model_weights_sha256": attrs.get("model_weights_sha256"),
        "settings": _settings(attrs),
        "classes": [str(c) for c in probability["class"].values],
        "grid": _grid(probability),
        "encoding": enc._as_dict(),
    }


def _setting_differences(old: Mapping[str, Any], new: Mapping[str, Any], *, old_name: str = "archive",
                         new_name: str = "cube") -> list[str]:
    out = []
    oo, no = old.get("model_build_options") or {}, new.get("model_build_options") or {}
    for k in sorted(set(oo) | set(no)):
        if oo.get(k) != no.get(k):
            out.append(f"model option {k}: {old_name} {oo.get(k)!r}, {new_name} {no.get(k)!r}")
    for k in sorted((set(old) | set(new)) - {"model_build_options"}):
        if old.get(k) != new.get(k):
            out.append(f"{k}: {old_name} {old.get(k)!r}, {new_name} {new.get(k)!r}")
    return out


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    out = []
    for key in ("model", "model_version", "model_weights_sha256", "classes", "encoding"):
        if old.get(key) != new.get(key):
            out.append(f"{key}: archive {old.get(key)!r}, cube {new.get(key)!r}")
    out += _setting_differences(old.get("settings") or {}, new.get("settings") or {})
    og, ng = old.get("grid", {}), new.get("grid", {})
    if og.get("shape") != ng.get("shape") or og.get("dims") != ng.get("dims"):
        out.append(f"grid shape: archive {og.get('dims')}={og.get('shape')}, cube {ng.get('dims')}={ng.get('shape')}")
    if not np.allclose(og.get("transform", [np.nan] * 6), ng.get("transform", [0] * 6), rtol=0, atol=1e-6):
        out.append(f"grid transform: archive {og.get('transform')}, cube {ng.get('transform')}")
    if og.get("crs") != ng.get("crs"):
        from pyproj import CRS

        if CRS.from_wkt(og["crs"]) != CRS.from_wkt(ng["crs"]):
            out.append(f"grid CRS: archive EPSG:{og.get('epsg')}, cube EPSG:{ng.get('epsg')}")
    return out


def _job(cube: xr.DataArray) -> dict[str, Any]:
    """What identifies a write job besides the archive's fingerprint: its settings, the
    provenance of its inputs and the per-date coordinates (item ids, platform…)."""
    per_date = {name: [str(v) for v in np.asarray(c.values)] for name, c in cube.coords.items()
                if c.dims == ("time",) and name != "time"}
    return _jsonable({"settings": _settings(cube.attrs),
                      "inputs": {k: cube.attrs[k] for k in _INPUT_KEYS if k in cube.attrs},
                      "per_date": per_date})


def _job_differences(pending: Mapping[str, Any], new: Mapping[str, Any], dates: Sequence[str]) -> list[str]:
    out = _setting_differences(pending.get("settings") or {}, new.get("settings") or {},
                               old_name="interrupted job", new_name="this job")
    pi, ni = pending.get("inputs") or {}, new.get("inputs") or {}
    for k in sorted(set(pi) | set(ni)):
        if pi.get(k) != ni.get(k):
            out.append(f"input {k}: interrupted job {pi.get(k)!r}, this job {ni.get(k)!r}")
    pd_, nd = pending.get("per_date") or {}, new.get("per_date") or {}
    for k in sorted(set(pd_) | set(nd)):
        a, b = pd_.get(k), nd.get(k)
        if a == b:
            continue
        if a is None or b is None:
            out.append(f"per-date coordinate {k}: only the {'interrupted' if b is None else 'new'} job has it")
            continue
        first = next(i for i, (u, v) in enumerate(zip(a, b, strict=True)) if u != v)
        out.append(f"{k} on {dates[first]}: interrupted job {a[first]!r}, this job {b[first]!r}")
    return out


# -- store helpers ----------------------------------------------------------------------------


def _store_path(store: str | os.PathLike[str]) -> str:
    return os.fspath(store)


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def _local(path: str) -> Path:
    return Path(path[len("file://"):] if path.startswith("file://") else path)


def _integrity_error_for_metadata(path: str, exc: Exception) -> ArchiveIntegrityError:
    where = "zarr.json"
    if _is_local(path):  # name the file that does not parse
        for meta in sorted(_local(path).rglob("zarr.json")):
            try:
                json.loads(meta.read_text())
            except (ValueError, OSError):
                where = str(meta.relative_to(_local(path)))
                break
    return ArchiveIntegrityError(
        f"{path}: the archive's metadata {where} is damaged ({type(exc).__name__}: {exc}); restore the store "
        "from a copy, or rebuild it by writing its dates to a new archive", store=path)


def _open_group(store: str | Any, mode: str = "r", *, consolidated: bool | None = False) -> zarr.Group | None:
    """The root group, or ``None`` where there is none; damaged metadata raises a clear error."""
    try:
        return zarr.open_group(store, mode=mode, zarr_format=3, use_consolidated=consolidated)  # type: ignore[arg-type]
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
        return None
    except (ValueError, TypeError, KeyError) as exc:  # JSONDecodeError is a ValueError
        raise _integrity_error_for_metadata(os.fspath(store) if isinstance(store, (str, os.PathLike)) else str(store),
                                            exc) from exc


def _iso(times: Any) -> list[str]:
    return [str(np.datetime64(t, "us")) for t in np.asarray(times)]


def _decode_times(raw: np.ndarray, arr: zarr.Array) -> np.ndarray:
    if raw.size == 0:
        return np.array([], dtype="datetime64[us]")
    units, calendar = arr.attrs.get("units", _TIME_UNITS), arr.attrs.get("calendar", "proleptic_gregorian")
    return np.asarray(xr.coding.times.decode_cf_datetime(raw, units, calendar), dtype="datetime64[us]")


def _consolidate(path: str) -> None:
    with warnings.catch_warnings():  # "consolidated metadata is not part of the Zarr v3 spec"
        warnings.simplefilter("ignore", category=UserWarning)
        zarr.consolidate_metadata(path, zarr_format=3)


# -- strict reads: a missing chunk is an error, and errors name the array and chunk ----------


class _MissingChunk(Exception):  # noqa: N818 - internal signal, converted to ArchiveIntegrityError
    """A chunk that must be stored is not."""


class _StrictStore(WrapperStore):  # type: ignore[type-arg]
    """A store in which reading an absent chunk of one of ``strict`` arrays raises instead of
    giving the fill value (Zarr's rule, under which a deleted chunk reads as no data)."""

    def __init__(self, store: Any, strict: Sequence[str] = ()) -> None:
        super().__init__(store)
        self._strict = tuple(strict)

    def _with_store(self, store: Any) -> _StrictStore:
        return type(self)(store, self._strict)

    async def get(self, key: str, prototype: Any, byte_range: Any = None) -> Any:
        out = await super().get(key, prototype, byte_range)
        if out is None and any(key == f"{a}/c" or key.startswith(f"{a}/c/") for a in self._strict):
            raise _MissingChunk(key)
        return out


def _base_store(path: str, *, read_only: bool = True) -> Any:
    if _is_local(path):
        return LocalStore(_local(path), read_only=read_only)
    return zarr.storage.FsspecStore.from_url(path, read_only=read_only)


def _arrays(group: zarr.Group, path: str) -> list[tuple[str, zarr.Array]]:
    """The group's arrays; metadata that does not parse is named."""
    try:
        return list(group.arrays())
    except (ValueError, TypeError, KeyError) as exc:  # JSONDecodeError is a ValueError
        raise _integrity_error_for_metadata(path, exc) from exc


def _strict_names(group: zarr.Group, fp: Mapping[str, Any], path: str) -> list[str]:
    """Arrays whose every chunk must be stored: all of them from format 2 on; in format 1
    archives (which skipped no-data chunks) only the dimension coordinates."""
    arrays = _arrays(group, path)
    if int(fp.get("format", 1)) >= 2:
        return [name for name, _ in arrays]
    return [name for name, arr in arrays if tuple(arr.metadata.dimension_names or ()) == (name,)]


def _strict_group(path: str, group: zarr.Group, fp: Mapping[str, Any]) -> zarr.Group:
    """``group`` reopened on a strict store (current metadata, not the consolidated copy)."""
    store = _StrictStore(_base_store(path), _strict_names(group, fp, path))
    return zarr.open_group(store, mode="r", zarr_format=3, use_consolidated=False)


def _chunk_grid(arr: zarr.Array) -> tuple[int, ...]:
    return tuple(-(-s // c) for s, c in zip(arr.shape, arr.chunks, strict=True))


def _chunk_slices(arr: zarr.Array, idx: tuple[int, ...]) -> tuple[slice, ...]:
    return tuple(slice(i * c, min(s, (i + 1) * c)) for i, c, s in zip(idx, arr.chunks, arr.shape, strict=True))


def _chunk_file(name: str, idx: tuple[int, ...]) -> str:
    return f"{name}/c" + "".join(f"/{i}" for i in idx)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, _MissingChunk):
        return "is missing"
    if "checksum" in str(exc).lower():
        return f"fails its CRC-32C checksum ({exc})"
    return f"does not decode ({type(exc).__name__}: {exc})"


def _chunk_error(path: str, name: str, idx: tuple[int, ...], exc: BaseException) -> ArchiveIntegrityError:
    return ArchiveIntegrityError(
        f"{path}: array {name!r} chunk {idx} (file {_chunk_file(name, idx)}) {_reason(exc)}. "
        f"Run `dwcube archive check {path}` to list all damage; restore the store from a copy, or rebuild "
        "it by writing its dates to a new archive", store=path, array=name, chunk=idx)


def _read_chunk(arr: zarr.Array, idx: tuple[int, ...]) -> BaseException | None:
    """Read and decode one chunk; the exception it raised, or ``None``."""
    try:
        arr[_chunk_slices(arr, idx)]
    except Exception as exc:  # noqa: BLE001 - every failure is reported
        return exc
    return None


def _check_coordinates(path: str, sgroup: zarr.Group) -> None:
    """Read the archive's coordinates (small; each in one request, chunks fetched together),
    raising on the first damage, named by its chunk."""
    for name, arr in _arrays(sgroup, path):
        if arr.ndim > 1:
            continue
        try:
            arr[...]
            continue
        except Exception:  # noqa: BLE001 - find the chunk at fault
            pass
        for idx in np.ndindex(*_chunk_grid(arr)):
            exc = _read_chunk(arr, idx)
            if exc is not None:
                raise _chunk_error(path, name, idx, exc) from exc


class _ChunkReader:
    """Reads a region of one archive variable (lazily indexed by xarray, CF-decoded) for
    ``dask.array.from_array``; a failure names the store, the array and the chunk."""

    def __init__(self, variable: xr.Variable, store: str, name: str, chunks: tuple[int, ...]) -> None:
        self.variable, self.store, self.name, self.chunks = variable, store, name, chunks
        self.shape, self.ndim = variable.shape, variable.ndim
        self.dtype = variable.dtype.newbyteorder("=")  # Zarr says "<f4"; NumPy's own spelling is float32

    def __getitem__(self, key: Any) -> np.ndarray:
        try:
            return np.asarray(self.variable[key].values, dtype=self.dtype)
        except Exception as exc:  # noqa: BLE001 - re-raised with its place
            raise self._locate(key, exc) from exc

    def _locate(self, key: Any, exc: BaseException) -> ArchiveIntegrityError:
        key = key if isinstance(key, tuple) else (key,)
        ranges = []
        for k, c, s in zip(key, self.chunks, self.shape, strict=False):
            start, stop, _ = k.indices(s) if isinstance(k, slice) else (int(k), int(k) + 1, 1)
            ranges.append(range(start // c, max(start // c + 1, -(-stop // c))))
        candidates = list(np.ndindex(*[len(r) for r in ranges]))
        if len(candidates) > 1:  # a region of several chunks: find the one that fails
            for offset in candidates:
                idx = tuple(r[o] for r, o in zip(ranges, offset, strict=True))
                region = tuple(slice(i * c, min(s, (i + 1) * c)) for i, c, s in zip(idx, self.chunks, self.shape,
                                                                                 strict=True))
                try:
                    np.asarray(self.variable[region].values)
                except Exception as inner:  # noqa: BLE001
                    return _chunk_error(self.store, self.name, idx, _root_cause(inner))
        idx = tuple(r[0] for r in ranges)
        return _chunk_error(self.store, self.name, idx, _root_cause(exc))


def _root_cause(exc: BaseException) -> BaseException:
    while not isinstance(exc, _MissingChunk) and exc.__cause__ is not None:
        exc = exc.__cause__
    return exc


# -- the write lock ---------------------------------------------------------------------------


def _lock_path(path: str) -> Path:
    return Path(str(_local(path)).rstrip("/") + _LOCK_SUFFIX)


def _holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another process"
    return f"process {info.get('pid')} on host {info.get('host')} (since {info.get('started')})"


#: Locks this process holds: lock file → (thread id, depth), so that a job holding an archive's
#: lock (``dwcube update``) can call :func:`write_archive` on it from the same thread.
_HELD: dict[str, list[int]] = {}
_HELD_GUARD = threading.Lock()


@contextlib.contextmanager
def _write_lock(path: str, wait: float) -> Iterator[None]:
    """Hold the archive's exclusive write lock for the ``with`` block (see the module docstring).

    Re-entrant in the thread that holds it; any other thread or process is refused (or waits)."""
    if not _is_local(path):
        warnings.warn(f"{path}: a store given as a URL cannot be locked; make sure that only one process "
                      "writes it at a time", UserWarning, stacklevel=4)
        yield
        return
    import fcntl

    lock = _lock_path(path)
    key = os.path.abspath(lock)
    me = threading.get_ident()
    with _HELD_GUARD:
        held = _HELD.get(key)
        if held is not None and held[0] == me:
            held[1] += 1
    if held is not None and held[0] == me:
        try:
            yield
        finally:
            with _HELD_GUARD:
                held[1] -= 1
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + max(0.0, wait)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            if time.monotonic() >= deadline:
                raise ArchiveBusyError(
                    f"{path} is being written by {holder}; wait for that write to finish (pass wait=SECONDS "
                    f"to wait for it), or write to another store. The lock is {lock}; it is released when "
                    "its process ends, even if it is killed") from None
            time.sleep(min(0.2, max(0.01, deadline - time.monotonic())))
            continue
        try:  # a finishing holder unlinks the file: make sure ours is the one at the path
            st, cur = os.fstat(fd), os.stat(lock)
            same = (st.st_dev, st.st_ino) == (cur.st_dev, cur.st_ino)
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    with _HELD_GUARD:
        _HELD[key] = [me, 1]
    try:
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield
    finally:
        with _HELD_GUARD:
            _HELD.pop(key, None)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)  # while still holding it; see the inode check above
        os.close(fd)


@contextlib.contextmanager
def archive_lock(store: str | os.PathLike[str], *, wait: float = 0.0) -> Iterator[None]:
    """Hold an archive's write lock (``STORE.lock``) for a whole job of several writes.

    :func:`write_archive` takes the same lock for each write; inside this block, in the
    same thread, it is already held and the writes go through, while other processes
    (and other threads) are refused with :class:`ArchiveBusyError` or wait ``wait``
    seconds, exactly as for a single write.  :func:`dwcube.jobs.update_archive` holds it
    from its search of the catalogue to its last product, so two updates never
    interleave.

    Examples
    --------
    >>> from dwcube.inference import classify
    >>> from dwcube.testing import TINY_MODEL, synthetic_cube
    >>> import tempfile
    >>> prob = classify(synthetic_cube(32, 3), TINY_MODEL, device="cpu")
    >>> with tempfile.TemporaryDirectory() as d, archive_lock(d + "/a.zarr"):
    ...     a = write_archive(prob.isel(time=[0]), d + "/a.zarr")
    ...     b = write_archive(prob.isel(time=[1, 2]), d + "/a.zarr")
    ...     len(a.written) + len(b.written)
    3
    """
    with _write_lock(_store_path(store), wait):
        yield


# -- layers of one block ----------------------------------------------------------------------


def _template(probability: xr.DataArray, enc: ArchiveEncoding) -> tuple[xr.Dataset, dict[str, Any]]:
    """A lazy Dataset with every archive variable (never computed) and its encoding."""
    ydim, xdim = probability.dims[2], probability.dims[3]
    c = enc.chunk
    shape3 = (probability.sizes["time"], probability.sizes[ydim], probability.sizes[xdim])
    zeros3 = da.zeros(shape3, chunks=(1, c, c), dtype=np.float32)
    out = xr.Dataset(coords=probability.coords)
    out["probability"] = probability.copy(data=da.zeros(probability.shape, chunks=(1, -1, c, c), dtype=np.float32))
    encoding: dict[str, Any] = {"probability": enc._fraction((1, probability.sizes["class"], c, c)),
                                "time": {"units": _TIME_UNITS, "calendar": "proleptic_gregorian", "dtype": "int64"}}
    dims3 = ("time", ydim, xdim)
    empty = probability.isel({ydim: slice(0, 0), xdim: slice(0, 0)})  # every class, no pixel: attrs only
    if "label" in enc.layers:
        out["label"] = xr.DataArray(da.zeros(shape3, chunks=(1, c, c), dtype=np.uint8), dims=dims3,
                                    attrs=label(empty).attrs)
        encoding["label"] = {"chunks": (1, c, c), "dtype": "uint8", "fill_value": NODATA_LABEL,
                             "compressors": enc._compressors()}
    conf_attrs = confidence(empty)
    for name in CONFIDENCE_LAYERS:
        if name in enc.layers:
            out[name] = xr.DataArray(zeros3, dims=dims3, attrs=conf_attrs[name].attrs)
            encoding[name] = enc._fraction((1, c, c))
    for name, coord in list(out.coords.items()):
        coord = coord.load()  # per-date properties and the grid: small, and xarray needs their dtype
        out.coords[name] = coord.astype(object) if coord.dtype.kind == "U" else coord  # variable-length strings
        encoding.setdefault(name, {})["compressors"] = [zarr.codecs.ZstdCodec(), zarr.codecs.Crc32cCodec()]
        if coord.dims == ("time",):  # a chunk holds many dates: appends of one date do not add a file each
            encoding[name]["chunks"] = (_TIME_CHUNK,)
    return out, encoding


def _writable(group: zarr.Group, name: str) -> zarr.Array:
    return group[name].with_config({"write_empty_chunks": True})  # type: ignore[union-attr]


def _write_block(block: np.ndarray, store: str, t: int, ys: tuple[int, int], xs: tuple[int, int],
                 index: tuple[int, int, int], enc: ArchiveEncoding) -> int:
    """Store every layer of one (date, y-block, x-block) and then mark it done."""
    group = zarr.open_group(store, mode="r+", zarr_format=3, use_consolidated=False)
    ysl, xsl = slice(*ys), slice(*xs)
    _writable(group, "probability")[t:t + 1, :, ysl, xsl] = enc.encode_fraction(block)
    moved = np.moveaxis(block, 1, -1)
    if "label" in enc.layers:
        _writable(group, "label")[t:t + 1, ysl, xsl] = _argmax(moved)
    if any(name in enc.layers for name in CONFIDENCE_LAYERS):
        conf = _confidence(moved)
        for i, name in enumerate(CONFIDENCE_LAYERS):
            if name in enc.layers:
                _writable(group, name)[t:t + 1, ysl, xsl] = enc.encode_fraction(conf[..., i])
    group[f"{_PROGRESS}/done"][index] = 1  # only after every layer of the block is stored
    return 1


# -- writing ----------------------------------------------------------------------------------


def _check_cube(probability: xr.DataArray) -> None:
    if not isinstance(probability, xr.DataArray) or probability.ndim != 4 or probability.dims[:2] != ("time", "class"):
        dims = getattr(probability, "dims", None)
        raise ArchiveError(f"expected the probability cube (time, class, y, x) from classify(), got dims {dims}")
    times = probability["time"].values
    if times.size and not (np.diff(times.astype("datetime64[us]").astype(np.int64)) > 0).all():
        raise ArchiveError("the cube's dates must be strictly increasing (sort and deduplicate time first)")


def _done_blocks(group: zarr.Group, shape: tuple[int, int, int]) -> np.ndarray:
    """Which blocks an interrupted write finished (a marker torn by a crash counts as not done)."""
    if _PROGRESS not in group or "done" not in group[_PROGRESS]:
        return np.zeros(shape, dtype=bool)
    arr = group[f"{_PROGRESS}/done"]
    try:
        done = np.asarray(arr[...]).astype(bool)
    except Exception:  # noqa: BLE001 - a marker chunk torn mid-write
        done = np.zeros(arr.shape, dtype=bool)
        for idx in np.ndindex(*arr.shape):
            try:
                done[idx] = bool(arr[idx])
            except Exception:  # noqa: BLE001
                done[idx] = False
    out = np.zeros(shape, dtype=bool)
    sl = tuple(slice(0, min(a, b)) for a, b in zip(done.shape, shape, strict=True))
    out[sl] = done[sl]
    return out


def _ensure_progress(group: zarr.Group, shape: tuple[int, int, int]) -> None:
    prog = group.require_group(_PROGRESS)
    if "done" in prog and tuple(prog["done"].shape) != shape:
        prog["done"].resize(shape)
    elif "done" not in prog:
        prog.create_array("done", shape=shape, chunks=(1, 1, 1), dtype="uint8", fill_value=0, compressors=None)


def _extend(group: zarr.Group, template: xr.Dataset, start: int) -> None:
    """Grow every time-dependent array to hold ``template``'s dates from index ``start`` (idempotent)."""
    n = start + template.sizes["time"]
    for name, arr in group.arrays():
        dims = arr.metadata.dimension_names or ()
        if "time" not in dims:
            continue
        axis = dims.index("time")
        if arr.shape[axis] != n:
            shape = list(arr.shape)
            shape[axis] = n
            arr.resize(tuple(shape))
        arr = arr.with_config({"write_empty_chunks": True})
        if name == "time":
            codes, _, _ = xr.coding.times.encode_cf_datetime(
                template["time"].values, arr.attrs.get("units", _TIME_UNITS), arr.attrs.get("calendar"), dtype=np.int64)
            arr[start:n] = np.asarray(codes, dtype=arr.dtype)
        elif name in template.coords and template[name].dims == ("time",):
            values = template[name].values
            arr[start:n] = values.astype(object) if arr.dtype.kind in "OTU" or str(arr.dtype) == "StringDType()" \
                else values.astype(arr.dtype)


def _remove_partials(path: str, group: zarr.Group, times: Sequence[int]) -> int:
    """Remove the temporary ``*.partial`` files (Zarr's local store writes a chunk or metadata
    file to one and renames it) that a killed write left, for the dates ``times``."""
    if not _is_local(path):
        return 0
    root = _local(path)
    found: list[Path] = list(root.glob("*.partial"))
    for name, arr in group.arrays():
        folder = root / name
        found += folder.glob("*.partial")
        dims = arr.metadata.dimension_names or ()
        if dims[:1] == ("time",) and arr.ndim > 1:
            for t in times:
                found += (folder / "c" / str(t)).rglob("*.partial")
        elif (folder / "c").exists():
            found += (folder / "c").rglob("*.partial")
    for p in found:
        p.unlink(missing_ok=True)
    return len(found)


def _rechunked(cube: xr.DataArray, c: int) -> da.Array:
    data = cube.data if isinstance(cube.data, da.Array) else da.from_array(cube.data, chunks=(1, -1, c, c))
    return data.rechunk((1, -1, c, c))


def _verify_resume(path: str, group: zarr.Group, data: da.Array, pending: np.ndarray, slots: Sequence[int],
                   enc: ArchiveEncoding, shape: tuple[int, int, int], ny: int, nx: int) -> None:
    """Recompute one block the interrupted job finished and compare it with what it stored
    (``slots``: the time index of each pending date)."""
    done_all = _done_blocks(group, shape)
    done = done_all[list(slots)]
    c = enc.chunk
    chosen = None
    for ti, yi, xi in list(zip(*np.nonzero(done), strict=True))[:16]:  # prefer a block holding data
        sl = (slots[ti], slice(None), slice(yi * c, min(ny, (yi + 1) * c)), slice(xi * c, min(nx, (xi + 1) * c)))
        stored = np.asarray(group["probability"][sl])
        chosen = chosen or (ti, yi, xi, stored)
        if np.isfinite(stored).any():
            chosen = (ti, yi, xi, stored)
            break
    if chosen is None:
        return  # nothing finished yet: nothing to mix
    ti, yi, xi, stored = chosen
    new = enc.encode_fraction(np.asarray(data.blocks[ti, 0, yi, xi].compute())[0])
    where = (f"{_iso(pending[ti:ti + 1])[0]}, rows {yi * c}–{min(ny, (yi + 1) * c)}, "
             f"columns {xi * c}–{min(nx, (xi + 1) * c)}")
    gaps = np.isnan(stored) != np.isnan(new)
    if gaps.any():
        raise ArchiveMismatchError(
            f"cannot resume the unfinished write in {path}: this cube is not the interrupted job's. In a block "
            f"that job finished ({where}) it has no data at {int(gaps.sum())} of {gaps.size} values where the "
            "other has some. Rerun the interrupted job (same cube and options) to finish it, or write this cube "
            "to a new archive")
    both = np.isfinite(stored)
    diff = float(np.abs(stored[both] - new[both]).max()) if both.any() else 0.0
    if diff > RESUME_TOLERANCE:
        raise ArchiveMismatchError(
            f"cannot resume the unfinished write in {path}: this cube is not the interrupted job's. In a block "
            f"that job finished ({where}) its probabilities differ by up to {diff:.3f} (more than "
            f"{RESUME_TOLERANCE}). Rerun the interrupted job (same cube and options) to finish it, or write this "
            "cube to a new archive")


def _job_record(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """How the cube was made, from its ``load_parameters`` and ``classify_parameters`` attrs
    (:func:`dwcube.load`, :func:`dwcube.classify`): what :mod:`dwcube.jobs` repeats."""
    out: dict[str, Any] = {}
    for key, name in (("load_parameters", "load"), ("classify_parameters", "classify")):
        value = attrs.get(key)
        if value:
            out[name] = json.loads(value) if isinstance(value, str) else _jsonable(value)
    return out


def version_key(model: str, model_version: str | None) -> str:
    """The name of a model version inside an archive: ``NAME==VERSION``.

    Examples
    --------
    >>> version_key("unet", "1.0.0")
    'unet==1.0.0'
    """
    key = f"{model}=={model_version}" if model_version else str(model)
    bad = sorted({ch for ch in key if ch in '/\\:*?"<>|' or ch.isspace()})
    if bad:
        raise ArchiveError(f"model name/version {key!r} has characters that cannot name a group ({bad})")
    return key


def write_archive(
    probability: xr.DataArray,
    store: str | os.PathLike[str],
    *,
    mode: Literal["a", "w", "w-"] = "a",
    encoding: ArchiveEncoding | None = None,
    progress: bool = False,
    wave_blocks: int | None = None,
    wait: float = 0.0,
    group: str | None = None,
    replace: bool = False,
    quicklook: xr.Dataset | None = None,
) -> ArchiveWrite:
    """Compute a probability cube and store it (with its label and confidence) in a Zarr archive.

    Parameters
    ----------
    probability
        The cube from :func:`dwcube.inference.classify` (lazy or in memory).
    store
        Path or URL of the Zarr v3 store.
    mode
        ``"a"`` (default): create the archive, or append the dates it lacks and finish
        an interrupted write; ``"w-"``: create, failing if the store exists; ``"w"``:
        replace whatever is there.
    encoding
        Storage precision, chunking and layers (default :class:`ArchiveEncoding`); an
        existing archive keeps its own, and a different one is refused; a new model
        version (``group=``) takes the archive's unless given.
    progress
        Show a one-line progress bar (blocks written) on stderr.
    wave_blocks
        Blocks computed together: the write runs in waves of whole rows of blocks, taken in
        (date, row) order (:func:`dwcube.execute.compute_in_waves`), each wave at least this
        many blocks (default twice the scheduler's threads). Every task still runs once;
        peak memory follows the wave and the width of the area, not its size.
    wait
        Seconds to wait for another process's write of the same store to finish (default
        0: refuse at once).
    group
        Write another model version of an existing archive: the group inside the store
        (``"versions/NAME==VERSION"``, see :func:`version_key`), created on first write,
        appended and resumed like the archive itself; the archive's own (first) version
        and every other group are left untouched.  The lock is the store's.
    replace
        Rewrite dates the archive already holds (every date of the cube must be stored,
        with the same item ids) in place, e.g. dates that failed reads left incomplete;
        resumable like an append.  Readers see those dates while they are rewritten.
    quicklook
        The reflectance cube the probabilities came from (same grid): also keep a small
        uint8 RGB quicklook of each archive date (:func:`dwcube.serve.quicklook.write_quicklook`,
        the image ``dwcube serve`` shows behind each date), in the same job and under the
        same lock, for the archive's dates the quicklook lacks (an append or resume adds
        exactly the dates the archive gained).  Not with ``group=``.

    Returns
    -------
    ArchiveWrite
        Dates written and skipped, blocks run and resumed, temporary files removed.

    Raises
    ------
    ArchiveBusyError
        When another process is writing the store (and does not finish within ``wait``).
    ArchiveMismatchError
        When the cube's model, build options, settings, classes, grid or encoding differ
        from the archive's, or when it would resume an unfinished write of another job.
    ArchiveIntegrityError
        When the archive is damaged (its metadata or coordinates do not read).
    ArchiveError
        When new dates would go before the archive's last date, when an unfinished
        write's dates are missing from the cube, or when ``mode="w-"`` finds a store.

    Notes
    -----
    The archive also keeps how the cube was made (``attrs["dwcube_job"]``: the
    arguments of :func:`dwcube.load` and :func:`dwcube.classify` that the cube records),
    from which :func:`dwcube.jobs.update_archive` loads and classifies new dates, a
    record per write (``attrs["dwcube_writes"]``: its dates, the dwcube version, when
    it finished), and the dates whose reads failed (``load(..., on_error="nan")``:
    ``attrs["dwcube_incomplete"]``, date → failures; a later write of the date clears it).

    Examples
    --------
    >>> from dwcube.inference import classify
    >>> from dwcube.testing import TINY_MODEL, synthetic_cube
    >>> import tempfile
    >>> prob = classify(synthetic_cube(32, 2), TINY_MODEL, device="cpu")
    >>> with tempfile.TemporaryDirectory() as d:
    ...     report = write_archive(prob, d + "/lulc.zarr")
    ...     again = write_archive(prob, d + "/lulc.zarr")         # nothing new: skipped
    ...     (len(report.written), len(again.skipped), open_archive(d + "/lulc.zarr").sizes["time"])
    (2, 2, 2)
    """
    _check_cube(probability)
    path = _store_path(store)
    if encoding is None and group is not None:  # a new model version takes the archive's own layout
        encoding = _root_encoding(path)
    enc = encoding or ArchiveEncoding()
    fp = _fingerprint(probability, enc)
    gpath = _group_path(path, group)
    if group is not None and mode != "a":
        raise ArchiveError(f"a model version (group={group!r}) is written with mode='a' only, got mode={mode!r}")
    if quicklook is not None:
        if group is not None:
            raise ArchiveError("the RGB quicklook belongs to the archive itself; write it with the archive's own "
                               "version (no group=)")
        if not _is_local(path):
            raise ArchiveError(f"{path}: the RGB quicklook is written to local archives only")
        if quicklook.odc.geobox != probability.odc.geobox:
            raise ArchiveMismatchError(f"quicklook= must be the reflectance cube the probabilities came from; its grid "
                                       f"{quicklook.odc.geobox} is not theirs {probability.odc.geobox}")
    with _write_lock(path, wait):
        if group is not None:
            _archive_group(path)  # the archive must exist before it holds another version
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=UserWarning)
                parent = zarr.open_group(path, mode="r+", zarr_format=3, use_consolidated=False)
                for part in _group_parts(group)[:-1]:
                    parent = parent.require_group(part)
        report = _write_locked(probability, gpath, mode, enc, encoding is None, fp, progress, wave_blocks, replace,
                               is_version=group is not None)
        if group is not None and (report.written or report.blocks):
            _consolidate(path)  # the store's view of its versions (xr.open_zarr(store, group=...))
        if quicklook is not None:
            report.quicklook = _write_archive_quicklook(quicklook, path)
        return report


def _write_archive_quicklook(cube: xr.Dataset, path: str) -> list[str]:
    """The quicklook of the archive's dates that ``cube`` holds and the quicklook lacks (caller holds the lock)."""
    from .serve.quicklook import write_quicklook

    stored = set(np.asarray(open_archive(path)["time"].values, dtype="datetime64[ns]").tolist())
    times = np.asarray(cube["time"].values, dtype="datetime64[ns]")
    keep = [i for i, t in enumerate(times) if t.tolist() in stored]
    return write_quicklook(cube.isel(time=keep), path) if keep else []


def _root_encoding(path: str) -> ArchiveEncoding | None:
    """The encoding of an archive's first version (``None`` when there is no archive yet)."""
    try:
        e = dict(zarr.open_group(path, mode="r", zarr_format=3, use_consolidated=False).attrs["dwcube_archive"])["encoding"]
    except (FileNotFoundError, KeyError, zarr.errors.GroupNotFoundError):
        return None
    return ArchiveEncoding(precision=e["precision"], chunk=int(e["chunk"]), layers=tuple(e["layers"]))


def _group_parts(group: str) -> list[str]:
    parts = [p for p in group.strip("/").split("/") if p]
    if not parts or any(p in (".", "..") or p.startswith("_") for p in parts):
        raise ArchiveError(f"not a group path for a model version: {group!r}")
    return parts


def _group_path(path: str, group: str | None) -> str:
    return path if group is None else path.rstrip("/") + "/" + "/".join(_group_parts(group))


def _write_locked(probability: xr.DataArray, path: str, mode: str, enc: ArchiveEncoding, default_encoding: bool,
                  fp: dict[str, Any], progress: bool, wave_blocks: int | None, replace: bool = False,
                  is_version: bool = False) -> ArchiveWrite:
    ydim, xdim = probability.dims[2], probability.dims[3]
    report = ArchiveWrite(store=path)
    requested = probability["time"].values.astype("datetime64[us]")
    job = _job(probability)
    pending_job: dict[str, Any] | None = None

    group = _open_group(path) if mode != "w" else None
    if group is not None and mode == "w-":
        raise ArchiveError(f"{path} already exists (mode='w-'); use mode='a' to append or 'w' to replace it")
    if group is not None and "dwcube_archive" not in group.attrs:
        if len(list(group.keys())) == 0:
            group = None  # an empty group: nothing to lose
        else:
            raise ArchiveError(f"{path} holds data but is not a dwcube archive; refusing to write into it")
    if group is None and replace:
        raise ArchiveError(f"there is no archive at {path} whose dates could be replaced")

    slots: list[int]
    if group is not None:
        old_fp = dict(group.attrs["dwcube_archive"])  # type: ignore[arg-type]
        if old_fp.get("format") != FORMAT_VERSION:
            raise ArchiveMismatchError(
                f"cannot add to {path}: it was written in archive format {old_fp.get('format')} and this dwcube "
                f"writes format {FORMAT_VERSION}. Its dates still read with open_archive; write new dates to a new "
                "archive (or rebuild this one there)")
        if default_encoding:  # an existing archive keeps its encoding
            enc = ArchiveEncoding(precision=old_fp["encoding"]["precision"], chunk=old_fp["encoding"]["chunk"],
                                  layers=tuple(old_fp["encoding"]["layers"]))
            fp["encoding"] = old_fp["encoding"]
        diffs = _differences(old_fp, fp)
        if diffs:
            raise ArchiveMismatchError(f"cannot add this cube to {path}: " + "; ".join(diffs))
        sgroup = _strict_group(path, group, old_fp)
        _check_coordinates(path, sgroup)  # never append to an archive whose dates do not read
        stored = _decode_times(np.asarray(sgroup["time"][...]), sgroup["time"])
        pending_attr = dict(group.attrs.get("dwcube_pending") or {})  # type: ignore[arg-type]
        pending_iso = list(pending_attr.get("dates", []))
        pending = np.array(pending_iso, dtype="datetime64[us]")
        n_complete = int(pending_attr.get("start", len(stored)))
        complete = stored[:n_complete]
        pending_replace = pending_attr.get("replace")
        if pending.size and bool(pending_replace) != replace:
            what = "rewrite of stored dates" if pending_replace else "append"
            raise ArchiveError(f"{path} has an unfinished {what} of {len(pending)} date(s) ({pending_iso[0]} … "
                               f"{pending_iso[-1]}); rerun it (replace={bool(pending_replace)}) to finish it first")
        missing_pending = np.setdiff1d(pending, requested)
        if missing_pending.size:
            raise ArchiveError(f"{path} has an unfinished write of {len(pending)} date(s) "
                               f"({pending_iso[0]} … {pending_iso[-1]}); the cube lacks {_iso(missing_pending)}. "
                               "Rerun the interrupted job (same dates) to resume it.")
        if pending.size:
            pending_job = pending_attr.get("job")
            if pending_job is not None:
                new_job = _job(probability.sel(time=pending.astype(probability["time"].dtype)))
                jd = _job_differences(pending_job, new_job, pending_iso)
                if jd:
                    raise ArchiveMismatchError(
                        f"cannot resume the unfinished write of {len(pending)} date(s) in {path}: this is not the "
                        f"interrupted job ({'; '.join(jd)}). Rerun that job to finish it, or write this cube to a "
                        "new archive")
        start = n_complete
        if replace:
            absent = np.setdiff1d(requested, complete)
            if absent.size:
                raise ArchiveError(f"replace=True rewrites stored dates only; {path} does not hold {_iso(absent)} "
                                   "(append new dates with replace=False)")
            targets = requested
            slots = [int(i) for i in np.searchsorted(complete, targets)]
            _check_same_items(path, sgroup, probability, slots)
        else:
            report.skipped = _iso(np.intersect1d(requested, complete))
            new = np.setdiff1d(requested, np.concatenate([complete, pending]))
            if new.size and complete.size and new.min() <= complete.max():
                early = _iso(new[new <= complete.max()])
                raise ArchiveError(f"dates {early} are earlier than the archive's last date "
                                   f"{_iso(complete[-1:])[0]}; archives grow forward in time (write them to a new "
                                   "archive)")
            targets = np.concatenate([pending, new])
            slots = list(range(start, start + len(targets)))
    else:
        targets = requested
        start = 0
        pending = np.array([], dtype="datetime64[us]")
        slots = list(range(len(targets)))
    if targets.size == 0:
        if group is not None:
            _consolidate(path)  # a killed write may have left the consolidated copy behind
        return report

    cube = probability.sel(time=targets.astype(probability["time"].dtype))
    template, encoding_map = _template(cube, enc)
    pending_attr = {"dates": _iso(targets), "start": start, "job": _job(cube)}
    if replace:
        pending_attr["replace"] = slots
    c = enc.chunk
    ny, nx = cube.sizes[ydim], cube.sizes[xdim]
    nyc, nxc = -(-ny // c), -(-nx // c)
    total = start if replace else start + len(targets)
    data = _rechunked(cube, c)
    record = _job_record(probability.attrs)
    if group is None:
        template.attrs = {"Conventions": "CF-1.8", "title": "dwcube land-cover probability archive",
                          "dwcube_archive": fp, "dwcube_pending": pending_attr, "dwcube_writes": [],
                          **({"dwcube_job": record} if record else {}),
                          **({"dwcube_version_created": dt.datetime.now(dt.timezone.utc).isoformat(
                              timespec="microseconds")} if is_version else {}),
                          **{k: v for k, v in probability.attrs.items() if k in ("sensor", "product_level")}}
        template.to_zarr(path, mode="w", zarr_format=3, consolidated=False, compute=False, encoding=encoding_map,
                         write_empty_chunks=True)
    else:
        if pending.size:
            agroup = zarr.open_group(path, mode="r", zarr_format=3, use_consolidated=False)
            _verify_resume(path, agroup, data, pending, slots[:len(pending)], enc,
                           (max(total, slots[-1] + 1), nyc, nxc), ny, nx)
            report.partials_removed = _remove_partials(path, agroup, sorted(set(slots[:len(pending)])))
        # through the consolidated view, so that plain readers keep the last finished write's metadata
        root = zarr.open_group(path, mode="r+", zarr_format=3)
        root.attrs["dwcube_pending"] = pending_attr  # recorded before any array grows
        if not replace:
            _extend(zarr.open_group(path, mode="r+", zarr_format=3, use_consolidated=False), template, start)
    agroup = zarr.open_group(path, mode="r+", zarr_format=3, use_consolidated=False)

    shape = (max(total, slots[-1] + 1), nyc, nxc)
    _ensure_progress(agroup, shape)
    done = _done_blocks(agroup, shape)
    blocks = data.to_delayed()
    tasks, waves = [], []
    rows_per_wave = max(1, -(-(wave_blocks or 2 * scheduler_threads()) // nxc))
    for ti, slot in enumerate(slots):
        for yi in range(nyc):
            for xi in range(nxc):
                index = (slot, yi, xi)
                if done[index]:
                    report.blocks_resumed += 1
                    continue
                ys = (yi * c, min(ny, (yi + 1) * c))
                xs = (xi * c, min(nx, (xi + 1) * c))
                tasks.append(dask.delayed(_write_block, pure=False)(
                    blocks[ti, 0, yi, xi], path, slot, ys, xs, index, enc,
                    dask_key_name=f"write-archive-{slot}-{yi}-{xi}-{dask.base.tokenize(path, index)}"))
                waves.append((ti * nyc + yi) // rows_per_wave)  # rows in (date, y) order
    report.blocks = len(tasks)
    compute_in_waves(tasks, waves, progress=progress, label="writing archive")
    agroup = zarr.open_group(path, mode="r+", zarr_format=3, use_consolidated=False)
    if not _done_blocks(agroup, shape)[slots].all():  # pragma: no cover - a task lied
        raise ArchiveError(f"{path}: some blocks were not marked done; rerun the write to resume it")
    if _PROGRESS in agroup:
        del agroup[_PROGRESS]
    root = zarr.open_group(path, mode="r+", zarr_format=3)
    attrs = dict(root.attrs)
    attrs.pop("dwcube_pending", None)
    from . import __version__

    entry: dict[str, Any] = {
        "dates": [_iso(targets[:1])[0], _iso(targets[-1:])[0]], "count": len(targets), "inputs": job["inputs"],
        "dwcube_version": __version__,
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    if replace:
        entry["replaced"] = _iso(targets)
    attrs["dwcube_writes"] = [*attrs.get("dwcube_writes", []), entry]  # type: ignore[misc]
    incomplete = {d: f for d, f in dict(attrs.get(INCOMPLETE_ATTR) or {}).items() if d not in _iso(targets)}
    incomplete.update(_failures_by_date(cube))
    if incomplete:
        attrs[INCOMPLETE_ATTR] = incomplete
    else:
        attrs.pop(INCOMPLETE_ATTR, None)
    if record:
        attrs["dwcube_job"] = record
    root.attrs.put(attrs)
    _consolidate(path)
    report.written = _iso(targets)
    return report


def _failures_by_date(cube: xr.DataArray) -> dict[str, list[str]]:
    """The reads of the cube's inputs that failed (``load(..., on_error="nan")``), by date (ISO)."""
    from .reads import read_failures

    if "item_id" not in cube.coords:
        return {}
    fails = read_failures(cube)
    out: dict[str, list[str]] = {}
    for t, ids in zip(cube["time"].values, cube["item_id"].values, strict=True):
        mine = [f for f in fails if f.split("/", 1)[0] in str(ids).split(",")]
        if mine:
            out[_iso([t])[0]] = mine
    return out


def _check_same_items(path: str, sgroup: zarr.Group, probability: xr.DataArray, slots: Sequence[int]) -> None:
    """A rewrite must be of the same scenes: the stored ``item_id`` of each date equals the cube's."""
    if "item_id" not in sgroup or "item_id" not in probability.coords:
        return
    stored = np.asarray(sgroup["item_id"][...])
    for slot, (t, new) in zip(slots, zip(probability["time"].values, probability["item_id"].values, strict=True),
                              strict=True):
        if str(stored[slot]) != str(new):
            raise ArchiveMismatchError(
                f"cannot replace {_iso([t])[0]} in {path}: the archive holds items {str(stored[slot])!r} for it, the "
                f"cube {str(new)!r}; a rewrite must be of the same scenes")


# -- reading ----------------------------------------------------------------------------------


def _archive_group(path: str) -> zarr.Group:
    """The root group of an existing archive (current metadata), or a clear error."""
    group = _open_group(path)
    if group is None:
        raise FileNotFoundError(f"no Zarr archive at {path}")
    if "dwcube_archive" not in group.attrs:
        raise ArchiveError(f"{path} is not a dwcube archive (no attrs['dwcube_archive'])")
    return group


def _has_consolidated(path: str) -> bool:
    group = _open_group(path, consolidated=None)
    return group is not None and group.metadata.consolidated_metadata is not None


#: Sub-groups of an archive that are not its own version's arrays: other model versions, and the
#: near-real-time products of :mod:`dwcube.jobs` (filter state, change alerts).
VERSIONS_GROUP = "versions"
NRT_GROUP = "nrt"


def _version_entry(path: str, group: str | None, g: zarr.Group) -> dict[str, Any]:
    fp = dict(g.attrs["dwcube_archive"])  # type: ignore[arg-type]
    pending = dict(g.attrs.get("dwcube_pending") or {})  # type: ignore[arg-type]
    times = np.array([], dtype="datetime64[us]")
    problem = None
    try:
        sgroup = _strict_group(_group_path(path, group), g, fp)
        _check_coordinates(_group_path(path, group), sgroup)
        times = _decode_times(np.asarray(sgroup["time"][...]), sgroup["time"])
    except ArchiveIntegrityError as exc:
        problem = str(exc).split(". Run")[0]
    n = int(pending.get("start", len(times)))
    complete = times[:n]
    return {"key": version_key(fp["model"], fp.get("model_version")), "group": group, "model": fp["model"],
            "model_version": fp.get("model_version"), "model_weights_sha256": fp.get("model_weights_sha256"),
            "created": g.attrs.get("dwcube_version_created"), "dates": _iso(complete),
            "pending": list(pending.get("dates", [])), "replacing": bool(pending.get("replace")), "problem": problem}


def archive_versions(store: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The model versions an archive holds, oldest first, and which are complete.

    The archive's own arrays are its first version (the model it was created with; an
    archive written before versions existed has only this one); each other version is a
    group ``versions/NAME==VERSION`` of the same layout, written by
    ``write_archive(..., group=...)`` (:func:`dwcube.jobs.reprocess`).

    Returns
    -------
    list of dict
        Per version: ``key`` (``NAME==VERSION``), ``group`` (``None`` for the archive's
        own arrays, else the group path), ``model``, ``model_version``,
        ``model_weights_sha256``, ``created``, ``dates`` (complete dates, ISO),
        ``pending`` (dates of an unfinished write), ``complete`` (no unfinished write
        and every date of the first version), ``default`` (the one
        :func:`open_archive` opens without ``model=``: the newest complete version).

    Examples
    --------
    >>> from dwcube.inference import classify
    >>> from dwcube.testing import TINY_MODEL, synthetic_cube
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = write_archive(classify(synthetic_cube(32, 2), TINY_MODEL, device="cpu"), d + "/a.zarr")
    ...     [(v["key"], v["group"], len(v["dates"]), v["complete"]) for v in archive_versions(d + "/a.zarr")]
    [('tiny-test==0', None, 2, True)]
    """
    path = _store_path(store)
    root = _archive_group(path)
    out = [_version_entry(path, None, root)]
    if VERSIONS_GROUP in root and isinstance(root[VERSIONS_GROUP], zarr.Group):
        found = []
        for name, g in root[VERSIONS_GROUP].groups():  # type: ignore[union-attr]
            if "dwcube_archive" in g.attrs:
                found.append(_version_entry(path, f"{VERSIONS_GROUP}/{name}", g))
        out += sorted(found, key=lambda v: (str(v["created"] or ""), v["key"]))
    first = out[0]["dates"]
    for v in out:
        v["complete"] = not v["pending"] and v["problem"] is None and v["dates"] == first
        v["default"] = False
    next(v for v in reversed(out) if v["complete"] or v is out[0])["default"] = True
    return out


def resolve_version(store: str | os.PathLike[str], model: str | None = None) -> dict[str, Any]:
    """The version of an archive that ``model`` names (an entry of :func:`archive_versions`).

    Parameters
    ----------
    model
        ``None``: the newest complete version; ``"default"`` or ``"first"``: the archive's
        own arrays; ``"NAME==VERSION"``: that version; ``"NAME"``: the newest complete
        version of that model (else its newest one).

    Raises
    ------
    ArchiveError
        When no version matches (the message lists the versions there are).

    Examples
    --------
    >>> from dwcube.inference import classify
    >>> from dwcube.testing import TINY_MODEL, synthetic_cube
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = write_archive(classify(synthetic_cube(32, 2), TINY_MODEL, device="cpu"), d + "/a.zarr")
    ...     resolve_version(d + "/a.zarr", "tiny-test")["key"]
    'tiny-test==0'
    """
    versions = archive_versions(store)
    if model is None:
        return next(v for v in versions if v["default"])
    if model in ("default", "first"):
        return versions[0]
    if "==" in model:
        chosen = [v for v in versions if v["key"] == model]
    else:
        chosen = [v for v in versions if v["model"] == model]
        chosen = [v for v in chosen if v["complete"]] or chosen
    if not chosen:
        raise ArchiveError(f"{_store_path(store)} holds no version {model!r}; it holds "
                           + ", ".join(f"{v['key']}{'' if v['complete'] else ' (incomplete)'}" for v in versions))
    return chosen[-1]


def open_archive(store: str | os.PathLike[str], *, chunks: Mapping[str, int] | None = None,
                 model: str | None = None) -> xr.Dataset:
    """Open an archive lazily: its complete dates, float32 layers, and the grid with its CRS.

    Parameters
    ----------
    store
        Path or URL of the archive.
    chunks
        Dask chunk size per dimension, e.g. ``{"time": 4}`` (default and for the
        dimensions left out: the stored chunks).
    model
        Which model version of the archive (see :func:`resolve_version`): ``None``
        (default) the newest complete one, ``"default"`` the archive's first, or
        ``"NAME"`` / ``"NAME==VERSION"``.  Plain ``xr.open_zarr(store)`` reads the first
        version; ``xr.open_zarr(f"{store}/versions/NAME==VERSION")`` another.

    Returns
    -------
    xarray.Dataset
        ``probability`` (time, class, y, x) float32, ``label`` uint8 (255 = no data) and
        the confidence layers; ``spatial_ref`` carries the CRS (``ds.odc.geobox``,
        ``ds.rio.crs``); ``attrs["dwcube_archive"]`` records model, settings, classes,
        grid and encoding, ``attrs["dwcube_model_version"]`` the version opened.  Reading a damaged chunk raises
        :class:`ArchiveIntegrityError` naming the store, the array and the chunk.

    Raises
    ------
    ArchiveIntegrityError
        When the metadata or a coordinate chunk (``time``, ``x``, ``y``…) is missing or
        damaged.

    Warns
    -----
    IncompleteArchiveWarning
        While a write is unfinished: its dates are left out until it is resumed.

    Examples
    --------
    >>> from dwcube.inference import classify
    >>> from dwcube.testing import TINY_MODEL, synthetic_cube
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = write_archive(classify(synthetic_cube(32, 2), TINY_MODEL, device="cpu"), d + "/a.zarr")
    ...     ds = open_archive(d + "/a.zarr")
    ...     ds.label.dims, ds.label.attrs["flag_meanings"].split()[:2]
    (('time', 'y', 'x'), ['water', 'trees'])
    """
    if chunks is not None and not isinstance(chunks, Mapping):
        raise TypeError(f"chunks must map dimension names to chunk sizes, e.g. {{'time': 4}}; got {chunks!r}")
    root_path = _store_path(store)
    chosen = resolve_version(root_path, model)
    path = _group_path(root_path, chosen["group"])
    group = _archive_group(path)
    fp = dict(group.attrs["dwcube_archive"])  # type: ignore[arg-type]
    names = _strict_names(group, fp, path)
    _check_coordinates(path, _strict_group(path, group, fp))
    strict = _StrictStore(_base_store(path), names)
    try:
        ds = xr.open_zarr(strict, consolidated=_has_consolidated(path), zarr_format=3, chunks=None)
        ds = ds.assign_coords({k: ds[k].load() for k in ds.coords if k not in ds.indexes})
    except (ValueError, TypeError, KeyError, OSError, RuntimeError, _MissingChunk) as exc:
        raise ArchiveIntegrityError(f"{path}: cannot open the archive ({type(exc).__name__}: {exc}); run "
                                    f"`dwcube archive check {path}` to find the damage", store=path) from exc
    pending = dict(group.attrs.get("dwcube_pending") or {})  # type: ignore[arg-type]
    n = int(pending.get("start", ds.sizes["time"]))
    if pending.get("replace"):
        warnings.warn(f"{path}: a rewrite of {len(pending['dates'])} stored date(s) is unfinished "
                      f"({pending['dates'][0]} …); they may mix old and new blocks until it is resumed.",
                      IncompleteArchiveWarning, stacklevel=2)
    elif pending:
        warnings.warn(f"{path}: a write of {len(pending['dates'])} date(s) is unfinished "
                      f"({pending['dates'][0]} …); showing the {n} complete date(s). Rerun the write to resume it.",
                      IncompleteArchiveWarning, stacklevel=2)
    ds = ds.isel(time=slice(0, min(n, ds.sizes["time"])))
    token = dask.base.tokenize(path, _root_mtime(path), n)
    for name, var in ds.data_vars.items():
        stored = tuple(var.encoding.get("chunks") or var.shape)
        reader = _ChunkReader(var.variable, path, str(name), stored)
        want = tuple((chunks or {}).get(d, c) for d, c in zip(var.dims, stored, strict=True))
        data = da.from_array(reader, chunks=want, name=f"open-archive-{name}-{token}", asarray=False,
                             meta=np.empty((0,) * var.ndim, dtype=reader.dtype), fancy=False)
        ds[name] = var.copy(data=data)
    for name in ("probability", *CONFIDENCE_LAYERS):
        if name in ds and ds[name].dtype != np.float32:  # format-1 archives: CF-packed integers
            ds[name] = ds[name].astype(np.float32)
    ds.attrs["dwcube_model_version"] = chosen["key"]
    return ds


def _root_mtime(path: str) -> int | None:
    if not _is_local(path):
        return None
    try:
        return (_local(path) / "zarr.json").stat().st_mtime_ns
    except OSError:
        return None


def _scan_local(path: str, group: zarr.Group, n_complete: int) -> tuple[int, dict[str, int], list[str]]:
    """One walk of a local store: bytes stored, chunk files per array (for time-dependent
    arrays only those of the ``n_complete`` complete dates) and leftover ``*.partial`` files."""
    root = _local(path)
    arrays = dict(group.arrays())
    in_time = {name for name, arr in arrays.items() if arr.ndim > 0 and (arr.metadata.dimension_names or ())[:1] == ("time",)}
    size, counts, partials = 0, dict.fromkeys(arrays, 0), []
    for dirpath, dirs, files in os.walk(root):
        rel = Path(dirpath).relative_to(root).parts
        if not rel:  # other model versions and near-real-time products are not this version's
            dirs[:] = [d for d in dirs if d not in (VERSIONS_GROUP, NRT_GROUP)]
        for f in files:
            size += (Path(dirpath) / f).stat().st_size
            key = (*rel, f)  # a chunk is NAME/c/i/j/… (NAME/c for a 0-d array)
            if f.endswith(".partial"):
                partials.append("/".join(key))
            elif len(key) >= 2 and key[0] in arrays and key[1] == "c":
                if key[0] not in in_time or int(key[2]) < n_complete:
                    counts[key[0]] += 1
    return size, counts, partials


def _missing_chunk_files(group: zarr.Group, counts: Mapping[str, int], n_complete: int) -> list[str]:
    out = []
    for name, arr in group.arrays():
        grid = _chunk_grid(arr)
        if arr.ndim > 0 and (arr.metadata.dimension_names or ())[:1] == ("time",):
            grid = (-(-min(n_complete, arr.shape[0]) // arr.chunks[0]), *grid[1:])
        expected = int(np.prod(grid))
        if counts.get(name, 0) < expected:
            out.append(f"array {name!r}: {expected - counts.get(name, 0)} of {expected} chunk files missing")
    return out


def archive_info(store: str | os.PathLike[str]) -> dict[str, Any]:
    """A summary of an archive: model, settings, classes, grid, dates, pending write, encoding,
    size, and damage found by a cheap scan (coordinates read, chunk files counted).

    Examples
    --------
    >>> from dwcube.inference import classify
    >>> from dwcube.testing import TINY_MODEL, synthetic_cube
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = write_archive(classify(synthetic_cube(32, 2), TINY_MODEL, device="cpu"), d + "/a.zarr")
    ...     info = archive_info(d + "/a.zarr")
    ...     info["dates"]["count"], info["problems"]
    (2, [])
    """
    path = _store_path(store)
    group = _archive_group(path)
    fp = dict(group.attrs["dwcube_archive"])  # type: ignore[arg-type]
    pending = dict(group.attrs.get("dwcube_pending") or {})  # type: ignore[arg-type]
    problems: list[str] = []
    try:
        sgroup = _strict_group(path, group, fp)
        _check_coordinates(path, sgroup)
        times = _decode_times(np.asarray(sgroup["time"][...]), sgroup["time"])
    except ArchiveIntegrityError as exc:
        problems.append(str(exc).split(". Run")[0])
        times = np.array([], dtype="datetime64[us]")
    n = int(pending.get("start", len(times))) if times.size else 0
    grid = fp["grid"]
    size = None
    partials: list[str] = []
    if _is_local(path):
        size, counts, partials = _scan_local(path, group, n)
        if int(fp.get("format", 1)) >= 2:
            problems += _missing_chunk_files(group, counts, n)
    px = grid["shape"][0] * grid["shape"][1]
    prob_attrs = dict(group["probability"].attrs)
    return {
        "store": path,
        "format": fp.get("format"),
        "model": {k: prob_attrs.get(k, fp.get(k)) for k in ("model", "model_version", "model_weights_sha256")},
        "settings": fp.get("settings", {}),
        "classes": fp["classes"],
        "grid": {"epsg": grid.get("epsg"), "shape": grid["shape"], "transform": grid["transform"],
                 "resolution": abs(grid["transform"][0])},
        "dates": {"count": n, "first": _iso(times[:1])[0] if n else None, "last": _iso(times[n - 1:n])[0] if n else None},
        "pending": pending.get("dates", []),
        "encoding": fp["encoding"],
        "stored_bytes": size,
        "bytes_per_pixel_date": (size / (px * n)) if size is not None and n else None,
        "problems": problems,
        "partial_files": len(partials),
        "attrs": {k: v for k, v in prob_attrs.items() if k.startswith(("model_", "sensor", "inference"))},
        "versions": [{k: v for k, v in ver.items() if k != "dates"} | {
            "count": len(ver["dates"]), "first": ver["dates"][0] if ver["dates"] else None,
            "last": ver["dates"][-1] if ver["dates"] else None} for ver in archive_versions(path)]
        if _has_versions(group) else [],
        "job": dict(group.attrs.get("dwcube_job") or {}),  # type: ignore[arg-type]
    }


def _has_versions(group: zarr.Group) -> bool:
    """Whether an archive's root group has a ``versions`` sub-group."""
    try:
        return VERSIONS_GROUP in group
    except Exception:  # noqa: BLE001 - damaged metadata: reported elsewhere
        return False


def format_info(info: Mapping[str, Any]) -> str:
    """:func:`archive_info` as human-readable lines.

    Examples
    --------
    >>> from dwcube.inference import classify
    >>> from dwcube.testing import TINY_MODEL, synthetic_cube
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = write_archive(classify(synthetic_cube(32, 2), TINY_MODEL, device="cpu"), d + "/a.zarr")
    ...     print(format_info(archive_info(d + "/a.zarr")).splitlines()[4])
    dates     2 complete, 2023-04-06 00:00 UTC … 2023-04-18 00:00 UTC
    """
    from odc.geo.crs import CRS

    g, d, e = info["grid"], info["dates"], info["encoding"]
    damaged = info.get("problems") or []
    opts = (info.get("settings") or {}).get("model_build_options") or {}
    unit = "°" if g["epsg"] and CRS(f"EPSG:{g['epsg']}").geographic else " m"  # the grid's CRS units

    def when(iso: str) -> str:  # "2015-07-11T10:00:00.000000" -> "2015-07-11 10:00 UTC"
        return iso[:16].replace("T", " ") + " UTC"

    lines = [
        f"archive   {info['store']}",
        f"model     {info['model']['model']} {info['model']['model_version']} "
        f"(weights sha256 {str(info['model']['model_weights_sha256'])[:12]}…)"
        + (f", options {', '.join(f'{k}={v}' for k, v in opts.items())}" if opts else ""),
        f"classes   {', '.join(info['classes'])}",
        f"grid      {g['shape'][0]} × {g['shape'][1]} px at {g['resolution']:g}{unit}, EPSG:{g['epsg']}",
        (f"dates     {d['count']} complete" if not damaged else f"dates     {d['count']}, NOT all readable")
        + (f", {when(d['first'])} … {when(d['last'])}" if d["count"] else ""),
        f"pending   {len(info['pending'])} date(s)" + (" — rerun the write to resume" if info["pending"] else ""),
        f"encoding  {e['precision']}, {e['chunk']} px chunks, layers {', '.join(e['layers'])}",
    ]
    if info["stored_bytes"] is not None:
        bpp = info["bytes_per_pixel_date"]
        lines.append(f"stored    {info['stored_bytes'] / 1e6:.2f} MB" + (f", {bpp:.2f} bytes per pixel per date" if bpp else ""))
    for v in info.get("versions") or []:
        state = ("complete" if v["complete"] else "being reprocessed" if v["pending"] else "incomplete")
        lines.append(f"version   {v['key']}{' (default)' if v['default'] else ''}: {v['count']} date(s)"
                     + (f" {v['first']} … {v['last']}" if v["count"] else "") + f", {state}"
                     + (f", {len(v['pending'])} pending" if v["pending"] else "")
                     + f"; group {v['group'] or '/ (the archive itself)'}")
    for p in damaged:
        lines.append(f"DAMAGED   {p}")
    if damaged:
        lines.append(f"          run `dwcube archive check {info['store']}` for every damaged chunk")
    return "\n".join(lines)


def update_attrs(store: str | os.PathLike[str], updates: Mapping[str, Any], *, group: str | None = None,
                 remove: Sequence[str] = (), wait: float = 0.0) -> None:
    """Set (and remove) attributes of an archive or of one of its model versions, under the
    write lock; the data and every other attribute stay as they are.

    Examples
    --------
    >>> from dwcube.inference import classify
    >>> from dwcube.testing import TINY_MODEL, synthetic_cube
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = write_archive(classify(synthetic_cube(32, 2), TINY_MODEL, device="cpu"), d + "/a.zarr")
    ...     update_attrs(d + "/a.zarr", {"site": "test"})
    ...     open_archive(d + "/a.zarr").attrs["site"]
    'test'
    """
    path = _store_path(store)
    gpath = _group_path(path, group)
    with _write_lock(path, wait):
        _archive_group(gpath)
        g = zarr.open_group(gpath, mode="r+", zarr_format=3)  # keeps the consolidated copy of its children
        attrs = dict(g.attrs)
        attrs.update(_jsonable(dict(updates)))
        for key in remove:
            attrs.pop(key, None)
        g.attrs.put(attrs)
        if group is not None:
            _consolidate(path)  # the store's copy holds the group's attributes


# -- near-real-time products: small datasets kept beside a version ----------------------------


def write_products(store: str | os.PathLike[str], products: Mapping[str, xr.Dataset], *,
                   group: str | None = None, attrs: Mapping[str, Any] | None = None, wait: float = 0.0) -> dict[str, str]:
    """Replace the derived products kept with one model version (e.g. a filter state and change
    alerts, :mod:`dwcube.jobs`), all at once.

    The products live in the version's ``nrt`` group: each is written to a new sub-group
    (``NAME-SERIAL``) and only then does the ``nrt`` group's attribute that names the
    current ones switch to them, with ``attrs``; the previous ones are removed afterwards.
    A write killed at any point therefore leaves the previous products whole and current
    (the next write removes its leftovers).  Under the archive's write lock.

    Parameters
    ----------
    store
        The archive.
    products
        Name → Dataset (lazy or not) over the archive's grid; chunked like the archive.
    group
        The version's group (``None``: the archive's own; see :func:`archive_versions`).
    attrs
        JSON-able attributes recorded with them (e.g. the last date they cover).
    wait
        Seconds to wait for another writer, as for :func:`write_archive`.

    Returns
    -------
    dict
        Product name → the sub-group it was written to.

    Examples
    --------
    >>> from dwcube.inference import classify
    >>> from dwcube.testing import TINY_MODEL, synthetic_cube
    >>> import tempfile
    >>> prob = classify(synthetic_cube(32, 2), TINY_MODEL, device="cpu")
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = write_archive(prob, d + "/a.zarr")
    ...     _ = write_products(d + "/a.zarr", {"mean": prob.mean("time").to_dataset()}, attrs={"n": 2})
    ...     found, meta = open_products(d + "/a.zarr")
    ...     sorted(found), meta["n"], found["mean"].probability.dims
    (['mean'], 2, ('class', 'y', 'x'))
    """
    path = _store_path(store)
    gpath = _group_path(path, group)
    with _write_lock(path, wait):
        g = _archive_group(gpath)
        fp = dict(g.attrs["dwcube_archive"])  # type: ignore[arg-type]
        c = int(fp["encoding"]["chunk"])
        ydim, xdim = fp["grid"]["dims"]
        writable = zarr.open_group(gpath, mode="r+", zarr_format=3, use_consolidated=False)
        nrt = writable.require_group(NRT_GROUP)
        serial = int(nrt.attrs.get("serial", 0)) + 1
        names: dict[str, str] = {}
        writes = []
        for name, ds in products.items():
            sub = f"{name}-{serial:06d}"
            ds = ds.drop_encoding()
            ds = ds.chunk({d: c for d in (ydim, xdim) if d in ds.dims})
            ds = ds.assign_coords({k: v.astype(object) for k, v in ds.coords.items() if v.dtype.kind == "U"})
            encoding = {k: {"compressors": [zarr.codecs.ZstdCodec(), zarr.codecs.Crc32cCodec()]}
                        for k in ds.variables if ds[k].dtype.kind != "O"}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=UserWarning)
                writes.append(ds.to_zarr(gpath, group=f"{NRT_GROUP}/{sub}", mode="w", zarr_format=3,
                                         consolidated=False, write_empty_chunks=True, encoding=encoding,
                                         compute=False))
            names[name] = sub
        dask.compute(*writes)  # one graph: work the products share is done once
        nrt.attrs.put({**_jsonable(dict(attrs or {})), "serial": serial, "products": names})  # the switch
        for name, _ in list(nrt.groups()):
            if name not in names.values():
                del nrt[name]
        _consolidate(gpath)
        if group is not None:
            _consolidate(path)
    return names


def open_products(store: str | os.PathLike[str], *, group: str | None = None,
                  ) -> tuple[dict[str, xr.Dataset], dict[str, Any]]:
    """The current products of :func:`write_products` (lazy) and their attributes; empty when
    the version has none.

    Examples
    --------
    >>> from dwcube.inference import classify
    >>> from dwcube.testing import TINY_MODEL, synthetic_cube
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = write_archive(classify(synthetic_cube(32, 2), TINY_MODEL, device="cpu"), d + "/a.zarr")
    ...     open_products(d + "/a.zarr")
    ({}, {})
    """
    gpath = _group_path(_store_path(store), group)
    g = _archive_group(gpath)
    if NRT_GROUP not in g:
        return {}, {}
    meta = dict(g[NRT_GROUP].attrs)
    out = {}
    for name, sub in dict(meta.get("products") or {}).items():
        ds = xr.open_zarr(gpath, group=f"{NRT_GROUP}/{sub}", consolidated=False, zarr_format=3)
        out[name] = ds.assign_coords({k: ds[k].load() for k in ds.coords if k not in ds.indexes})
    return out, {k: v for k, v in meta.items() if k not in ("serial", "products")}


# -- checking ---------------------------------------------------------------------------------


def check_archive(store: str | os.PathLike[str], *, threads: int = 4) -> ArchiveCheck:
    """Read and decode every chunk of an archive, verifying its checksums, and report damage.

    Parameters
    ----------
    store
        Path or URL of the archive.
    threads
        Chunks read at once.

    Returns
    -------
    ArchiveCheck
        ``ok`` when nothing is damaged; otherwise ``problems`` names each missing, corrupt
        or undecodable chunk (array, chunk index, file) and each metadata file that does
        not parse.  ``notes`` lists what is not damage (an unfinished write, whose dates
        are not checked; leftover ``*.partial`` files; stale consolidated metadata).

    Raises
    ------
    FileNotFoundError
        When there is no store at all.
    ArchiveError
        When the store is not a dwcube archive.

    Examples
    --------
    >>> from dwcube.inference import classify
    >>> from dwcube.testing import TINY_MODEL, synthetic_cube
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     _ = write_archive(classify(synthetic_cube(32, 2), TINY_MODEL, device="cpu"), d + "/a.zarr")
    ...     report = check_archive(d + "/a.zarr")
    ...     report.ok, report.chunks, len(report.arrays)
    (True, 15, 10)
    """
    path = _store_path(store)
    report = _check_group(path, threads, top=True)
    if report.problems and not report.arrays:
        return report
    try:
        versions = archive_versions(path)
    except ArchiveError as exc:
        report.problems.append(f"the model versions cannot be listed: {exc}")
        return report
    for version in versions[1:]:
        sub = _check_group(_group_path(path, version["group"]), threads, top=False)
        report.chunks += sub.chunks
        report.arrays += [f"{version['group']}/{a}" for a in sub.arrays]
        report.problems += [f"{version['group']}: {p}" for p in sub.problems]
        report.notes += [f"{version['group']}: {n}" for n in sub.notes]
    return report


def _check_group(path: str, threads: int, *, top: bool) -> ArchiveCheck:
    """:func:`check_archive` of one version's group (``top``: the archive itself, whose files
    under ``versions/`` belong to the other versions)."""
    report = ArchiveCheck(store=path)

    def own(p: Path) -> bool:
        return not (top and p.relative_to(_local(path)).parts[:1] == (VERSIONS_GROUP,))

    if _is_local(path):
        root = _local(path)
        if not root.exists():
            raise FileNotFoundError(f"no Zarr archive at {path}")
        for meta in sorted(m for m in root.rglob("zarr.json") if own(m)):
            try:
                json.loads(meta.read_text())
            except (ValueError, OSError) as exc:
                report.problems.append(f"{meta.relative_to(root)}: metadata does not parse ({type(exc).__name__}: "
                                       f"{exc})")
    try:
        group = _archive_group(path)
    except ArchiveIntegrityError as exc:
        if not report.problems:
            report.problems.append(str(exc))
        return report
    fp = dict(group.attrs["dwcube_archive"])  # type: ignore[arg-type]
    pending = dict(group.attrs.get("dwcube_pending") or {})  # type: ignore[arg-type]
    try:
        sgroup = _strict_group(path, group, fp)
        arrays = list(sgroup.arrays())
    except ArchiveIntegrityError as exc:
        report.problems.append(str(exc))
        return report
    strict = set(_strict_names(group, fp, path))
    n_time = next((arr.shape[0] for name, arr in arrays if name == "time"), 0)
    n = int(pending.get("start", n_time))
    if pending:
        report.notes.append(f"a write of {len(pending.get('dates', []))} date(s) is unfinished; its dates are not "
                            "checked (rerun the write to resume it)")
    jobs: list[tuple[str, zarr.Array, tuple[int, ...]]] = []
    for name, arr in arrays:
        report.arrays.append(name)
        grid = _chunk_grid(arr)
        if (arr.metadata.dimension_names or ())[:1] == ("time",) and arr.ndim > 1:
            grid = (min(n, grid[0]), *grid[1:])
        jobs += [(name, arr, idx) for idx in np.ndindex(*grid)]

    def run(job: tuple[str, zarr.Array, tuple[int, ...]]) -> tuple[str, tuple[int, ...], BaseException | None]:
        name, arr, idx = job
        return name, idx, _read_chunk(arr, idx)

    absent_nodata = 0
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for name, idx, exc in pool.map(run, jobs):
            report.chunks += 1
            if exc is None:
                continue
            if isinstance(exc, _MissingChunk) and name not in strict:
                absent_nodata += 1  # format 1: a no-data chunk was not stored
                continue
            report.problems.append(f"array {name!r} chunk {idx} (file {_chunk_file(name, idx)}) {_reason(exc)}")
    if absent_nodata:
        report.notes.append(f"{absent_nodata} chunks are not stored; in a format-1 archive that means no data, "
                            "or damage that cannot be told from it")
    if _is_local(path):
        partials = sorted(str(p.relative_to(_local(path))) for p in _local(path).rglob("*.partial") if own(p))
        if partials:
            report.notes.append(f"{len(partials)} temporary *.partial file(s) of an interrupted write "
                                f"(e.g. {partials[0]}); the next write of this archive removes them")
    if "time" in dict(arrays) and not any(p.startswith("array 'time'") for p in report.problems):
        times = np.asarray(dict(arrays)["time"][...]).astype(np.int64)
        if times.size > 1 and not (np.diff(times) > 0).all():
            report.problems.append("array 'time': the dates are not strictly increasing")
    if _has_consolidated(path):
        cons = _open_group(path, consolidated=True)
        stale = [name for name, arr in arrays if cons is not None and name in cons and
                 tuple(cons[name].shape) != tuple(arr.shape)]  # type: ignore[union-attr]
        if stale and not pending:
            report.notes.append(f"the consolidated metadata is stale ({', '.join(stale)}); plain xarray shows "
                                "fewer dates until the next write of this archive refreshes it")
    elif int(fp.get("format", 1)) >= 2:
        report.notes.append("no consolidated metadata (plain xr.open_zarr warns); the next write adds it")
    else:
        report.notes.append(f"archive format {fp.get('format')} (an older dwcube): no consolidated metadata, "
                            "no checksums; it reads, but new dates go to a new archive")
    return report

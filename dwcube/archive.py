"""Zarr archives of probability cubes: write, append new dates, resume, open.

An archive is one Zarr v3 group holding the probability cube ``(time, class, y, x)``
and, per date, the label and the confidence layers of :mod:`dwcube.probability`, with
the grid as a CF ``spatial_ref`` coordinate, so that plain ``xr.open_zarr`` (and
rioxarray / odc-geo on the result) read it with its CRS.

Encoding (:class:`ArchiveEncoding`)
    Probabilities and confidence layers are stored as CF-packed integers:
    ``uint16`` with ``scale_factor = 1/65534`` by default (every stored probability is
    within 7.7e-6 of the computed float32 value; 65535 = no data), or ``uint8`` with
    ``1/254`` (within 0.002; 255 = no data), or plain ``float32``.  Labels are
    ``uint8`` (255 = no data).  Chunks are one date × all classes × ``chunk`` ×
    ``chunk`` pixels (writes per date, appends never touch old chunks), compressed with
    Blosc-Zstd and bit-shuffling; chunks that hold only no data are not stored.

Appending and resuming
    :func:`write_archive` with ``mode="a"`` (the default) creates the archive, or
    appends the dates it does not hold yet (they must come after the last stored date),
    skipping those it holds.  Before any data is written the archive records the dates
    in flight (``attrs["dwcube_pending"]``), extends the arrays, and then each
    block-write task marks its block done in the ``_progress`` sub-group after its data
    is stored.  A write killed at any point (process, worker or machine) leaves the
    complete dates untouched; running the same write again computes only the blocks not
    marked done, and the result equals an uninterrupted write.  Writes are idempotent,
    so Dask may retry a task whose worker died.  :func:`open_archive` shows only complete
    dates (with a warning while a write is pending).

Refusing mixtures
    The archive records the model (name, version, weights SHA-256), the classes, the
    grid (CRS, transform, shape) and the encoding; appending a cube that differs in any
    of them raises :class:`ArchiveMismatchError` naming the differences, before anything
    is written.

Examples
--------
>>> import dwcube
>>> prob = cube.lulc.classify()                         # doctest: +SKIP
>>> write_archive(prob, "lulc.zarr")                    # doctest: +SKIP
>>> ds = open_archive("lulc.zarr")                      # doctest: +SKIP
>>> ds.probability.rio.crs                              # doctest: +SKIP
CRS.from_epsg(32633)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
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

from .classes import NODATA_LABEL
from .execute import compute_in_waves, scheduler_threads
from .probability import _argmax, _confidence, confidence, label

__all__ = [
    "ArchiveEncoding",
    "ArchiveError",
    "ArchiveMismatchError",
    "ArchiveWrite",
    "IncompleteArchiveWarning",
    "archive_info",
    "open_archive",
    "write_archive",
]

FORMAT_VERSION = 1
CONFIDENCE_LAYERS = ("top1_probability", "margin", "entropy")
_TIME_UNITS = "microseconds since 1970-01-01 00:00:00"
_PACKING = {  # precision → (dtype, scale_factor, fill, max stored code)
    "uint16": ("uint16", 1.0 / 65534.0, 65535, 65534),
    "uint8": ("uint8", 1.0 / 254.0, 255, 254),
}


class ArchiveError(RuntimeError):
    """The store is not a usable dwcube archive, or the write cannot proceed."""


class ArchiveMismatchError(ArchiveError):
    """The cube does not match the archive (model, classes, grid or encoding)."""


class IncompleteArchiveWarning(UserWarning):
    """The archive has dates whose write has not finished; they are left out."""


@dataclass(frozen=True)
class ArchiveEncoding:
    """How an archive stores its layers.

    Parameters
    ----------
    precision
        ``"uint16"`` (probabilities within 7.7e-6), ``"uint8"`` (within 0.002) or
        ``"float32"`` (exact).
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
    0.001968503937007874
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
        return 0.0 if self.precision == "float32" else _PACKING[self.precision][1] / 2

    def _compressors(self) -> list[Any]:
        return [zarr.codecs.BloscCodec(cname="zstd", clevel=self.clevel, shuffle="bitshuffle")]

    def _fraction(self, chunks: tuple[int, ...]) -> dict[str, Any]:
        """Encoding of a 0–1 layer."""
        enc: dict[str, Any] = {"chunks": chunks, "compressors": self._compressors()}
        if self.precision == "float32":
            enc.update(dtype="float32", fill_value=np.float32(np.nan))
        else:
            dtype, scale, fill, _ = _PACKING[self.precision]
            enc.update(dtype=dtype, scale_factor=scale, _FillValue=fill, fill_value=fill)
        return enc

    def encode_fraction(self, values: np.ndarray) -> np.ndarray:
        """Pack 0–1 values as stored (NaN → fill), exactly as xarray's CF encoder would."""
        if self.precision == "float32":
            return values.astype(np.float32)
        dtype, scale, fill, top = _PACKING[self.precision]
        codes = np.around(np.clip(values, 0.0, 1.0) / scale)
        return np.where(np.isfinite(values), np.clip(codes, 0, top), fill).astype(dtype)


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
    """

    store: str
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    blocks: int = 0
    blocks_resumed: int = 0


# -- fingerprint ------------------------------------------------------------------------------


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
        "classes": [str(c) for c in probability["class"].values],
        "grid": _grid(probability),
        "encoding": {"precision": enc.precision, "chunk": enc.chunk, "layers": list(enc.layers)},
    }


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    out = []
    for key in ("format", "model", "model_version", "model_weights_sha256", "classes", "encoding"):
        if old.get(key) != new.get(key):
            out.append(f"{key}: archive {old.get(key)!r}, cube {new.get(key)!r}")
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


# -- store helpers ----------------------------------------------------------------------------


def _store_path(store: str | os.PathLike[str]) -> str:
    return os.fspath(store)


def _open_group(store: str, mode: str = "r") -> zarr.Group | None:
    try:
        return zarr.open_group(store, mode=mode, zarr_format=3)  # type: ignore[arg-type]
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        return None


def _iso(times: Any) -> list[str]:
    return [str(np.datetime64(t, "us")) for t in np.asarray(times)]


def _stored_times(group: zarr.Group) -> np.ndarray:
    arr = group["time"]
    units, calendar = arr.attrs.get("units", _TIME_UNITS), arr.attrs.get("calendar", "proleptic_gregorian")
    raw = np.asarray(arr[...])
    if raw.size == 0:
        return np.array([], dtype="datetime64[us]")
    return np.asarray(xr.coding.times.decode_cf_datetime(raw, units, calendar), dtype="datetime64[us]")


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
    if "label" in enc.layers:
        lab = label(probability.isel({"class": slice(0, 1)}))  # attrs only; data replaced below
        out["label"] = xr.DataArray(da.zeros(shape3, chunks=(1, c, c), dtype=np.uint8), dims=dims3, attrs=lab.attrs)
        out["label"].attrs["flag_meanings"] = " ".join(str(v) for v in probability["class"].values)
        out["label"].attrs["flag_values"] = list(range(probability.sizes["class"]))
        encoding["label"] = {"chunks": (1, c, c), "dtype": "uint8", "fill_value": NODATA_LABEL,
                             "compressors": enc._compressors()}
    conf_attrs = confidence(probability.isel({"class": slice(0, 2)}).isel({ydim: slice(0, 0), xdim: slice(0, 0)}))
    for name in CONFIDENCE_LAYERS:
        if name in enc.layers:
            out[name] = xr.DataArray(zeros3, dims=dims3, attrs=conf_attrs[name].attrs)
            encoding[name] = enc._fraction((1, c, c))
    for name, coord in list(out.coords.items()):
        coord = coord.load()  # per-date properties and the grid: small, and xarray needs their dtype
        out.coords[name] = coord.astype(object) if coord.dtype.kind == "U" else coord  # variable-length strings
    return out, encoding


def _write_block(block: np.ndarray, store: str, t: int, ys: tuple[int, int], xs: tuple[int, int],
                 index: tuple[int, int, int], enc: ArchiveEncoding) -> int:
    """Store every layer of one (date, y-block, x-block) and then mark it done."""
    group = zarr.open_group(store, mode="r+", zarr_format=3)
    ysl, xsl = slice(*ys), slice(*xs)
    group["probability"][t:t + 1, :, ysl, xsl] = enc.encode_fraction(block)
    moved = np.moveaxis(block, 1, -1)
    if "label" in enc.layers:
        group["label"][t:t + 1, ysl, xsl] = _argmax(moved)
    if any(name in enc.layers for name in CONFIDENCE_LAYERS):
        conf = _confidence(moved)
        for i, name in enumerate(CONFIDENCE_LAYERS):
            if name in enc.layers:
                group[name][t:t + 1, ysl, xsl] = enc.encode_fraction(conf[..., i])
    group["_progress/done"][index] = 1  # only after every layer of the block is stored
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
    if "_progress" not in group or "done" not in group["_progress"]:
        return np.zeros(shape, dtype=bool)
    arr = group["_progress/done"]
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
    prog = group.require_group("_progress")
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
        if name == "time":
            codes, _, _ = xr.coding.times.encode_cf_datetime(
                template["time"].values, arr.attrs.get("units", _TIME_UNITS), arr.attrs.get("calendar"), dtype=np.int64)
            arr[start:n] = np.asarray(codes, dtype=arr.dtype)
        elif name in template.coords and template[name].dims == ("time",):
            values = template[name].values
            arr[start:n] = values.astype(object) if arr.dtype.kind in "OTU" or str(arr.dtype) == "StringDType()" \
                else values.astype(arr.dtype)


def write_archive(
    probability: xr.DataArray,
    store: str | os.PathLike[str],
    *,
    mode: Literal["a", "w", "w-"] = "a",
    encoding: ArchiveEncoding | None = None,
    progress: bool = False,
    wave_blocks: int | None = None,
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
        existing archive keeps its own, and a different one is refused.
    progress
        Show a one-line progress bar (blocks written) on stderr.
    wave_blocks
        Blocks computed together: the write runs in waves of whole rows of blocks, taken in
        (date, row) order (:func:`dwcube.execute.compute_in_waves`), each wave at least this
        many blocks (default twice the scheduler's threads). Every task still runs once;
        peak memory follows the wave and the width of the area, not its size.

    Returns
    -------
    ArchiveWrite
        Dates written and skipped, blocks run and blocks resumed.

    Raises
    ------
    ArchiveMismatchError
        When the cube's model, classes, grid or encoding differ from the archive's.
    ArchiveError
        When new dates would go before the archive's last date, when an unfinished
        write's dates are missing from the cube, or when ``mode="w-"`` finds a store.

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
    enc = encoding or ArchiveEncoding()
    _check_cube(probability)
    path = _store_path(store)
    fp = _fingerprint(probability, enc)
    ydim, xdim = probability.dims[2], probability.dims[3]
    report = ArchiveWrite(store=path)
    requested = probability["time"].values.astype("datetime64[us]")

    group = _open_group(path) if mode != "w" else None
    if group is not None and mode == "w-":
        raise ArchiveError(f"{path} already exists (mode='w-'); use mode='a' to append or 'w' to replace it")
    if group is not None and "dwcube_archive" not in group.attrs:
        if len(list(group.keys())) == 0:
            group = None  # an empty group: nothing to lose
        else:
            raise ArchiveError(f"{path} holds data but is not a dwcube archive; refusing to write into it")

    if group is not None:
        old_fp = dict(group.attrs["dwcube_archive"])  # type: ignore[arg-type]
        if encoding is None:  # an existing archive keeps its encoding
            enc = ArchiveEncoding(precision=old_fp["encoding"]["precision"], chunk=old_fp["encoding"]["chunk"],
                                  layers=tuple(old_fp["encoding"]["layers"]))
            fp["encoding"] = old_fp["encoding"]
        diffs = _differences(old_fp, fp)
        if diffs:
            raise ArchiveMismatchError(f"cannot add this cube to {path}: " + "; ".join(diffs))
        stored = _stored_times(group)
        pending_iso = list(group.attrs.get("dwcube_pending", {}).get("dates", []))  # type: ignore[union-attr]
        pending = np.array(pending_iso, dtype="datetime64[us]")
        n_complete = int(group.attrs.get("dwcube_pending", {}).get("start", len(stored)))  # type: ignore[union-attr]
        complete = stored[:n_complete]
        missing_pending = np.setdiff1d(pending, requested)
        if missing_pending.size:
            raise ArchiveError(f"{path} has an unfinished write of {len(pending)} date(s) "
                               f"({pending_iso[0]} … {pending_iso[-1]}); the cube lacks {_iso(missing_pending)}. "
                               "Rerun the interrupted job (same dates) to resume it.")
        report.skipped = _iso(np.intersect1d(requested, complete))
        new = np.setdiff1d(requested, np.concatenate([complete, pending]))
        if new.size and complete.size and new.min() <= complete.max():
            early = _iso(new[new <= complete.max()])
            raise ArchiveError(f"dates {early} are earlier than the archive's last date {_iso(complete[-1:])[0]}; "
                               "archives grow forward in time (write them to a new archive)")
        targets = np.concatenate([pending, new])
        start = n_complete
    else:
        targets = requested
        start = 0
    if targets.size == 0:
        return report

    cube = probability.sel(time=targets.astype(probability["time"].dtype))
    template, encoding_map = _template(cube, enc)
    pending_attr = {"dates": _iso(targets), "start": start}
    if group is None:
        template.attrs = {"Conventions": "CF-1.8", "title": "dwcube land-cover probability archive",
                          "dwcube_archive": fp, "dwcube_pending": pending_attr,
                          **{k: v for k, v in probability.attrs.items() if k in ("sensor", "product_level")}}
        template.to_zarr(path, mode="w", zarr_format=3, consolidated=False, compute=False, encoding=encoding_map)
        group = zarr.open_group(path, mode="r+", zarr_format=3)
    else:
        group = zarr.open_group(path, mode="r+", zarr_format=3)
        group.attrs["dwcube_pending"] = pending_attr  # recorded before any array grows
        _extend(group, template, start)

    c = enc.chunk
    ny, nx = cube.sizes[ydim], cube.sizes[xdim]
    nyc, nxc = -(-ny // c), -(-nx // c)
    total = start + len(targets)
    _ensure_progress(group, (total, nyc, nxc))
    done = _done_blocks(group, (total, nyc, nxc))
    data = cube.data if isinstance(cube.data, da.Array) else da.from_array(cube.data, chunks=(1, -1, c, c))
    data = data.rechunk((1, -1, c, c))
    blocks = data.to_delayed()
    tasks, waves = [], []
    rows_per_wave = max(1, -(-(wave_blocks or 2 * scheduler_threads()) // nxc))
    for ti in range(len(targets)):
        for yi in range(nyc):
            for xi in range(nxc):
                index = (start + ti, yi, xi)
                if done[index]:
                    report.blocks_resumed += 1
                    continue
                ys = (yi * c, min(ny, (yi + 1) * c))
                xs = (xi * c, min(nx, (xi + 1) * c))
                tasks.append(dask.delayed(_write_block, pure=False)(
                    blocks[ti, 0, yi, xi], path, start + ti, ys, xs, index, enc,
                    dask_key_name=f"write-archive-{start + ti}-{yi}-{xi}-{dask.base.tokenize(path, index)}"))
                waves.append((ti * nyc + yi) // rows_per_wave)  # rows in (date, y) order
    report.blocks = len(tasks)
    compute_in_waves(tasks, waves, progress=progress, label="writing archive")
    group = zarr.open_group(path, mode="r+", zarr_format=3)
    if not _done_blocks(group, (total, nyc, nxc))[start:].all():  # pragma: no cover - a task lied
        raise ArchiveError(f"{path}: some blocks were not marked done; rerun the write to resume it")
    attrs = dict(group.attrs)
    attrs.pop("dwcube_pending", None)
    group.attrs.put(attrs)
    if "_progress" in group:
        del group["_progress"]
    report.written = _iso(targets)
    return report


# -- reading ----------------------------------------------------------------------------------


def _archive_group(path: str) -> zarr.Group:
    """The root group of an existing archive, or a clear error."""
    group = _open_group(path)
    if group is None:
        raise FileNotFoundError(f"no Zarr archive at {path}")
    if "dwcube_archive" not in group.attrs:
        raise ArchiveError(f"{path} is not a dwcube archive (no attrs['dwcube_archive'])")
    return group


def open_archive(store: str | os.PathLike[str], *, chunks: Any = None) -> xr.Dataset:
    """Open an archive lazily: its complete dates, float32 layers, and the grid with its CRS.

    Parameters
    ----------
    store
        Path or URL of the archive.
    chunks
        Dask chunks (default: the stored chunks).

    Returns
    -------
    xarray.Dataset
        ``probability`` (time, class, y, x) float32, ``label`` uint8 (255 = no data) and
        the confidence layers; ``spatial_ref`` carries the CRS (``ds.odc.geobox``,
        ``ds.rio.crs``); ``attrs["dwcube_archive"]`` records model, classes, grid and
        encoding.

    Warns
    -----
    IncompleteArchiveWarning
        While a write is unfinished: its dates are left out until it is resumed.

    Examples
    --------
    >>> ds = open_archive("lulc.zarr")       # doctest: +SKIP
    >>> ds.label.isel(time=-1).plot()        # doctest: +SKIP
    """
    path = _store_path(store)
    _archive_group(path)
    ds = xr.open_zarr(path, consolidated=False, zarr_format=3, chunks=chunks if chunks is not None else {})
    pending = ds.attrs.get("dwcube_pending")
    if pending:
        n = int(pending["start"])
        warnings.warn(f"{path}: a write of {len(pending['dates'])} date(s) is unfinished "
                      f"({pending['dates'][0]} …); showing the {n} complete date(s). Rerun the write to resume it.",
                      IncompleteArchiveWarning, stacklevel=2)
        ds = ds.isel(time=slice(0, n))
    for name in ("probability", *CONFIDENCE_LAYERS):
        if name in ds and ds[name].dtype != np.float32:
            ds[name] = ds[name].astype(np.float32)
    return ds


def _stored_bytes(path: str) -> int | None:
    p = Path(path)
    if not p.is_dir():
        return None
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def archive_info(store: str | os.PathLike[str]) -> dict[str, Any]:
    """A summary of an archive: model, classes, grid, dates, pending write, encoding, size.

    Examples
    --------
    >>> info = archive_info("lulc.zarr")     # doctest: +SKIP
    >>> info["dates"]["count"], info["bytes_per_pixel_date"]   # doctest: +SKIP
    """
    path = _store_path(store)
    group = _archive_group(path)
    fp = dict(group.attrs["dwcube_archive"])  # type: ignore[arg-type]
    pending = dict(group.attrs.get("dwcube_pending") or {})  # type: ignore[arg-type]
    times = _stored_times(group)
    n = int(pending.get("start", len(times)))
    grid = fp["grid"]
    size = _stored_bytes(path)
    px = grid["shape"][0] * grid["shape"][1]
    prob_attrs = dict(group["probability"].attrs)
    return {
        "store": path,
        "model": {k: prob_attrs.get(k, fp.get(k)) for k in ("model", "model_version", "model_weights_sha256")},
        "classes": fp["classes"],
        "grid": {"epsg": grid.get("epsg"), "shape": grid["shape"], "transform": grid["transform"],
                 "resolution": abs(grid["transform"][0])},
        "dates": {"count": n, "first": _iso(times[:1])[0] if n else None, "last": _iso(times[n - 1:n])[0] if n else None},
        "pending": pending.get("dates", []),
        "encoding": fp["encoding"],
        "stored_bytes": size,
        "bytes_per_pixel_date": (size / (px * n)) if size is not None and n else None,
        "attrs": {k: v for k, v in prob_attrs.items() if k.startswith(("model_", "sensor", "inference"))},
    }


def format_info(info: Mapping[str, Any]) -> str:
    """:func:`archive_info` as human-readable lines.

    Examples
    --------
    >>> print(format_info(archive_info("lulc.zarr")))   # doctest: +SKIP
    """
    from odc.geo.crs import CRS

    g, d, e = info["grid"], info["dates"], info["encoding"]
    unit = "°" if g["epsg"] and CRS(f"EPSG:{g['epsg']}").geographic else " m"  # the grid's CRS units

    def when(iso: str) -> str:  # "2015-07-11T10:00:00.000000" -> "2015-07-11 10:00 UTC"
        return iso[:16].replace("T", " ") + " UTC"

    lines = [
        f"archive   {info['store']}",
        f"model     {info['model']['model']} {info['model']['model_version']} "
        f"(weights sha256 {str(info['model']['model_weights_sha256'])[:12]}…)",
        f"classes   {', '.join(info['classes'])}",
        f"grid      {g['shape'][0]} × {g['shape'][1]} px at {g['resolution']:g}{unit}, EPSG:{g['epsg']}",
        f"dates     {d['count']} complete" + (f", {when(d['first'])} … {when(d['last'])}" if d["count"] else ""),
        f"pending   {len(info['pending'])} date(s)" + (" — rerun the write to resume" if info["pending"] else ""),
        f"encoding  {e['precision']}, {e['chunk']} px chunks, layers {', '.join(e['layers'])}",
    ]
    if info["stored_bytes"] is not None:
        bpp = info["bytes_per_pixel_date"]
        lines.append(f"stored    {info['stored_bytes'] / 1e6:.2f} MB" + (f", {bpp:.2f} bytes per pixel per date" if bpp else ""))
    return "\n".join(lines)

"""Chunked inference: a registry model mapped over a cube's ``(y, x)`` chunks with Dask.

:func:`classify` turns a reflectance cube into the lazy probability cube
``(time, class, y, x)``.  The model's registry entry says how it may be tiled (its
**halo** and **alignment**, :mod:`dwcube.models.registry`); this module makes every
Dask chunk obey that rule, so that the result is the same — to float32 noise, and with
identical labels away from exact ties — whatever the chunking:

1. The input stack (:func:`dwcube.inputs.model_inputs`) is rechunked so that every chunk
   boundary along ``y`` and ``x`` is a multiple of the alignment and every chunk is at
   least as large as the halo.
2. Each chunk is extended by ``halo`` pixels from its neighbours (``dask.array.overlap``,
   nothing beyond the image edges), so that its core sees the context the model needs.
3. Inside a chunk the core is cut into uniform tiles (``tile`` pixels plus the halo; one
   shape per chunk, so a compiled model compiles once), batched ``batch_size`` at a time.
   Tiles whose core holds no valid pixel, and dates with no valid pixel, are skipped:
   they cost nothing.
4. Pixels where any input is NaN are given ``fill_value`` for the network and NaN in the
   result.

A cube whose height or width is not a multiple of the alignment is defined as the cube
padded to one at its far edge (repeating the last row/column), as Dynamic World's own
rule for scenes larger than one tile says; the network applied whole to an odd-sized
image differs (its 2× resize then has a ratio that is not ½, e.g. 51/101, which moves
every sampling position), by up to ~0.1 in probability on the eo-learn scene, with 99.3 %
of labels the same.

The network is built once per worker process (:func:`cached_model`) and reused by every
task; a task carries only a small, picklable :class:`ModelRunner` (model entry, weights
folder, device and options), never the weights.

Examples
--------
Dynamic World on an L1C cube (here a synthetic one; the weights are in ``shared/dynamicworld``,
or wherever :func:`dwcube.models.weights.resolve` finds them):

>>> from dwcube.testing import require_shared, synthetic_cloudy_cube
>>> _ = require_shared("dynamicworld")
>>> cube, _ = synthetic_cloudy_cube(64, chunks=32)                 # 13 L1C bands
>>> prob = classify(cube, "dynamic-world", device="cpu")
>>> dict(prob.sizes), prob.attrs["model"], prob.chunks[2]
({'time': 1, 'class': 9, 'y': 64, 'x': 64}, 'dynamic-world', (32, 32))
>>> total = prob.sum("class").values
>>> bool(abs(total - 1).max() < 1e-5)
True
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dask.array as da
import numpy as np
import torch
import xarray as xr

from .inputs import model_inputs
from .models import registry as _registry
from .models import runtime as _runtime
from .models import weights as _weights
from .models.tiling import windows

__all__ = [
    "ModelRunner",
    "aligned_chunks",
    "cached_model",
    "classify",
    "clear_model_cache",
    "predict_block",
    "COMPILE_AUTO_MIN_PIXELS",
    "BACKENDS",
    "resolve_backend",
]

#: ``compile="auto"`` compiles on CPU when the job has at least this many pixel-dates
#: (eager Dynamic World runs at ~0.1 Mpx/s on 2 cores, compiled at ~1 Mpx/s, and a
#: compilation costs 10–30 s per tile shape per worker).
COMPILE_AUTO_MIN_PIXELS = 16_000_000


@dataclass(frozen=True)
class ModelRunner:
    """What a Dask task needs to run a model: small and picklable, never the weights.

    Parameters
    ----------
    entry
        The registry entry (its ``build`` function travels by reference).
    weights_root
        Verified weights folder (``None`` for weights inside the package); it must be
        reachable at the same path on every worker.
    device
        ``"auto"`` (a GPU when the worker has one, else the CPU), ``"cpu"``, ``"cuda"``…
    options
        Build options of the entry, as sorted ``(name, value)`` pairs.
    compile
        Compile the network (:func:`dwcube.models.runtime.prepare`) on CPU workers.
    tile, batch_size
        Tile core size (pixels) and tiles per forward pass.
    fill_value
        Normalised input value given to the network at no-data pixels.
    backend
        What runs the network on CPU workers: ``"torch"`` (eager, or compiled with
        ``compile``) or ``"onnxruntime"`` (:class:`~dwcube.models.onnx_backend.OnnxRuntimeModule`,
        the optional ``dwcube[onnx]`` extra; ``compile`` is then ignored).  GPU workers
        always run PyTorch.

    Examples
    --------
    >>> r = ModelRunner(_registry.get_entry("dynamic-world"), None)
    >>> r.entry.halo, r.tile
    (24, 512)
    """

    entry: _registry.ModelEntry
    weights_root: str | None
    device: str = "auto"
    options: tuple[tuple[str, Any], ...] = ()
    compile: bool = False
    tile: int = 512
    batch_size: int = 4
    fill_value: float = 0.0
    backend: Literal["torch", "onnxruntime"] = "torch"

    def key(self) -> tuple[Any, ...]:
        """The per-process cache key of the built network."""
        return (self.entry.name, self.entry.version, self.weights_root, self.device, self.options, self.compile,
                self.backend)


_CACHE: dict[tuple[Any, ...], tuple[torch.nn.Module, torch.device]] = {}
_CACHE_LOCK = threading.Lock()


def cached_model(runner: ModelRunner) -> tuple[torch.nn.Module, torch.device]:
    """The runner's network in this process, built on first use and then reused.

    Thread-safe: concurrent tasks in one worker wait for a single build.

    Returns
    -------
    (torch.nn.Module, torch.device)
        The prepared network and the device it runs on.

    Examples
    --------
    >>> from dwcube.testing import TINY_MODEL
    >>> net, dev = cached_model(ModelRunner(TINY_MODEL, None, device="cpu"))
    >>> net is cached_model(ModelRunner(TINY_MODEL, None, device="cpu"))[0]
    True
    """
    key = runner.key()
    hit = _CACHE.get(key)
    if hit is not None:
        return hit
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is None:
            device = _registry.resolve_device(runner.device)
            root = Path(runner.weights_root) if runner.weights_root is not None else None
            if root is not None and not root.is_dir():
                raise _weights.WeightsNotFoundError(
                    f"{runner.entry.name}: weights folder {root} is not reachable from this worker "
                    f"(host {os.uname().nodename}); put the weights at the same path on every worker "
                    "or set DWCUBE_WEIGHTS there")
            module = runner.entry.build(root, **dict(runner.options))
            if runner.backend == "onnxruntime" and device.type == "cpu":
                from .models.onnx_backend import OnnxRuntimeModule

                module = OnnxRuntimeModule(_runtime.prepare(module, device, channels_last=False))
            else:
                compile_ = runner.compile and device.type == "cpu"
                module = _runtime.prepare(module, device, channels_last=True, compile=compile_)
            hit = (module, device)
            _CACHE[key] = hit
    return hit


_COMPILED_SHAPES: set[tuple[Any, ...]] = set()
_COMPILE_LOCK = threading.Lock()


def _forward(module: torch.nn.Module, xt: torch.Tensor, runner: ModelRunner, device: torch.device) -> torch.Tensor:
    """``module(xt)``; with a compiled network, the first call per input shape (which compiles)
    runs alone, so concurrent tasks of a worker wait for it instead of compiling it again."""
    if not (runner.compile and device.type == "cpu") and runner.backend == "torch":
        return module(xt)
    signature = (runner.key(), tuple(xt.shape))
    if signature in _COMPILED_SHAPES:
        return module(xt)
    with _COMPILE_LOCK:
        y = module(xt)
        _COMPILED_SHAPES.add(signature)
    return y


def clear_model_cache() -> None:
    """Forget the networks built in this process (frees their memory).

    Examples
    --------
    >>> clear_model_cache()
    """
    with _CACHE_LOCK, _COMPILE_LOCK:
        _CACHE.clear()
        _COMPILED_SHAPES.clear()


def predict_block(
    x: np.ndarray,
    runner: ModelRunner,
    *,
    core: tuple[tuple[int, int], tuple[int, int]] | None = None,
) -> np.ndarray:
    """Class probabilities of one block of normalised inputs.

    Parameters
    ----------
    x
        ``(time, feature, y, x)`` float32 inputs, NaN = no data; the block may include
        context beyond the pixels wanted.
    runner
        The model and how to run it.
    core
        ``((y0, y1), (x0, x1))``: the pixels wanted, in block coordinates (``y0`` and
        ``x0`` multiples of the alignment); default: the whole block.

    Returns
    -------
    numpy.ndarray
        ``(time, class, y1 − y0, x1 − x0)`` float32 probabilities summing to 1 over
        ``class``; NaN wherever any input is NaN.

    Examples
    --------
    >>> from dwcube.testing import TINY_MODEL
    >>> p = predict_block(np.zeros((2, 6, 20, 20), np.float32), ModelRunner(TINY_MODEL, None, device="cpu"))
    >>> p.shape, bool(np.allclose(p.sum(1), 1))
    ((2, 9, 20, 20), True)
    """
    entry = runner.entry
    n_t, _, h, w = x.shape
    (y0, y1), (x0, x1) = core if core is not None else ((0, h), (0, w))
    out = np.full((n_t, len(entry.classes), y1 - y0, x1 - x0), np.nan, dtype=np.float32)
    valid = np.isfinite(x).all(axis=1)  # (time, y, x)
    if not valid[:, y0:y1, x0:x1].any():
        return out  # nothing to do: no model build, no forward pass
    filled = np.where(valid[:, None], x, np.float32(runner.fill_value)).astype(np.float32, copy=False)
    module, device = cached_model(runner)
    jobs: list[tuple[int, Any, Any]] = []
    plan = list(windows(h, w, tile=runner.tile, halo=entry.halo, alignment=entry.alignment, uniform=True,
                        region=((y0, y1), (x0, x1))))
    for t in range(n_t):
        for wy, wx in plan:
            if valid[t, wy.core[0]:wy.core[1], wx.core[0]:wx.core[1]].any():
                jobs.append((t, wy, wx))
    align = entry.alignment
    for i in range(0, len(jobs), runner.batch_size):
        part = jobs[i:i + runner.batch_size]
        groups: dict[tuple[int, int], list[tuple[int, Any, Any]]] = {}
        for job in part:  # equal read shapes batch together (uniform tiles: one shape per block)
            _, wy, wx = job
            groups.setdefault((wy.aligned_length(align), wx.aligned_length(align)), []).append(job)
        for (ph, pw), members in groups.items():
            batch = np.empty((len(members), x.shape[1], ph, pw), dtype=np.float32)
            for k, (t, wy, wx) in enumerate(members):
                tile = filled[t, :, wy.read[0]:wy.read[1], wx.read[0]:wx.read[1]]
                th, tw = tile.shape[-2:]
                batch[k, :, :th, :tw] = tile
                if th < ph:  # only at an image's far edge when its size is not aligned
                    batch[k, :, th:, :tw] = tile[:, -1:, :]
                if tw < pw:
                    batch[k, :, :, tw:] = batch[k, :, :, tw - 1:tw]
            with torch.inference_mode():
                xt = torch.from_numpy(batch).to(device).contiguous(memory_format=torch.channels_last)
                y = _forward(module, xt, runner, device)
                if entry.output == "logits":
                    y = torch.softmax(y.float(), dim=1)
                y = y.float().cpu().numpy()
            for k, (t, wy, wx) in enumerate(members):
                oy = slice(wy.core[0] - y0, wy.core[1] - y0)
                ox = slice(wx.core[0] - x0, wx.core[1] - x0)
                out[t, :, oy, ox] = y[k, :, wy.inner, wx.inner]
    out[~np.broadcast_to(valid[:, None, y0:y1, x0:x1], out.shape)] = np.nan
    return out


def aligned_chunks(chunks: tuple[int, ...], *, alignment: int, minimum: int) -> tuple[int, ...]:
    """Chunk sizes along one axis whose boundaries are multiples of ``alignment``.

    Boundaries are rounded down to the alignment; chunks smaller than ``minimum`` (the
    halo, which ``dask.array.overlap`` needs from each neighbour) are merged into the
    previous one.  The total is unchanged.

    Examples
    --------
    >>> aligned_chunks((33, 33, 34), alignment=2, minimum=8)
    (32, 34, 34)
    >>> aligned_chunks((64, 64, 5), alignment=2, minimum=24)
    (64, 69)
    """
    n = int(sum(chunks))
    bounds = sorted({min(n, (int(b) // alignment) * alignment) for b in np.cumsum(chunks)[:-1]} - {0})
    edges = [0, *bounds, n]
    sizes: list[int] = []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        if b - a <= 0:
            continue
        if sizes and (b - a < max(minimum, 1) or sizes[-1] < minimum):
            sizes[-1] += b - a
        else:
            sizes.append(b - a)
    return tuple(sizes)


def _block(x: np.ndarray, runner: ModelRunner, y_chunks: tuple[int, ...], x_chunks: tuple[int, ...],
           block_info: dict[Any, Any] | None = None) -> np.ndarray:
    loc = block_info[0]["chunk-location"]  # type: ignore[index]
    halo = runner.entry.halo
    cores = []
    for chunks, i in ((y_chunks, loc[2]), (x_chunks, loc[3])):
        before = min(halo, int(sum(chunks[:i])))  # overlap adds nothing beyond the image edge
        cores.append((before, before + chunks[i]))
    return predict_block(x, runner, core=(cores[0], cores[1]))


def _build_options_json(entry: _registry.ModelEntry, options: dict[str, Any]) -> str:
    """The model's build options as a sorted JSON object, the build function's defaults filled in
    (so that ``options={"direction": "forward"}`` and no options record the same thing).

    Examples
    --------
    >>> _build_options_json(_registry.get_entry("dynamic-world"), {"direction": "backward"})
    '{"direction": "backward", "fast": true}'
    """
    import inspect
    import json

    effective: dict[str, Any] = {}
    try:
        params = inspect.signature(entry.build).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: only what was passed
        params = []
    for p in params:
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty:
            effective[p.name] = p.default
    effective.update(options)
    return json.dumps({k: effective[k] for k in sorted(effective)}, default=str)


def _classify_parameters(entry: _registry.ModelEntry, weights: Any, device: str, dem: xr.Dataset | None, tile: int,
                         batch_size: int, compile: Any, fill_value: float, options: dict[str, Any],
                         backend: str = "auto") -> str:
    """This call's arguments as JSON (archives keep them, so that :mod:`dwcube.jobs` classifies
    new dates the same way): the model's reference (:func:`~dwcube.models.registry.model_reference`),
    the weights path, the DEM's source and the tiling."""
    import json

    source = None if dem is None else dem.attrs.get("source")
    if isinstance(source, str) and "://" not in source and os.path.exists(source):
        source = os.path.abspath(source)
    return json.dumps({
        "model": _registry.model_reference(entry),
        "weights": None if weights is None else os.path.abspath(os.fspath(weights)),
        "device": device, "tile": tile, "batch_size": batch_size, "compile": compile,
        "fill_value": float(fill_value), "options": options,
        "dem": source, "backend": backend,
    }, default=str)


BACKENDS = ("auto", "torch", "onnxruntime")


def resolve_backend(backend: str, *, device: str, compile: bool) -> Literal["torch", "onnxruntime"]:
    """The back-end a :func:`classify` call runs its network with.

    ``"auto"`` is the fastest back-end measured on the project's 2-core machine
    (``benchmarks/bench_backends.py``, ``benchmarks/README.md``): PyTorch, compiled for
    large jobs, which ran Dynamic World ~3× faster than ONNX Runtime 1.32 in paired
    rounds; ``"onnxruntime"`` stays an option (``dwcube[onnx]``).

    Raises
    ------
    ValueError
        For a back-end name that is not one of :data:`BACKENDS`.
    ImportError
        For ``"onnxruntime"`` without the optional packages (with the install command).

    Examples
    --------
    >>> resolve_backend("torch", device="cpu", compile=True)
    'torch'
    >>> resolve_backend("auto", device="cpu", compile=True)
    'torch'
    """
    from .models.onnx_backend import require_onnxruntime

    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {', '.join(map(repr, BACKENDS))}")
    if backend == "onnxruntime":
        require_onnxruntime()
        return "onnxruntime"
    return "torch"


def _resolve_entry(model: str | _registry.ModelEntry) -> _registry.ModelEntry:
    return _registry.get_entry(model) if isinstance(model, str) else model


def classify(
    cube: xr.Dataset,
    model: str | _registry.ModelEntry = "dynamic-world",
    *,
    weights: str | os.PathLike[str] | None = None,
    device: str = "auto",
    dem: xr.Dataset | None = None,
    tile: int = 512,
    batch_size: int = 4,
    compile: bool | Literal["auto"] = "auto",
    fill_value: float = 0.0,
    options: dict[str, Any] | None = None,
    check_scale: bool = True,
    backend: Literal["auto", "torch", "onnxruntime"] = "auto",
) -> xr.DataArray:
    """Per-class probabilities of a reflectance cube, lazily, chunk by chunk.

    Parameters
    ----------
    cube
        Reflectance cube from :func:`dwcube.load` (dims ``time, y, x``, Dask-backed or
        in memory), with the bands the model needs.
    model
        Registry name (``"dynamic-world"``) or a :class:`~dwcube.models.registry.ModelEntry`.
    weights
        Weights folder; default: ``$DWCUBE_WEIGHTS`` or the user cache.  Checked here
        (SHA-256) before anything is computed; workers must see the same path.
    device
        ``"auto"``: each worker uses its GPU when it has one, else its CPU.
    dem
        Elevation (and slope) on the cube's grid, for models that take them.
    tile
        Tile core size in pixels (a multiple of the model's alignment); with the halo it
        bounds the memory of one forward pass.
    batch_size
        Tiles per forward pass.
    compile
        Compile the network on CPU workers; ``"auto"``: when the cube has at least
        :data:`COMPILE_AUTO_MIN_PIXELS` pixel-dates.  GPUs run eagerly.
    fill_value
        Normalised value the network sees at no-data pixels (their result is NaN anyway;
        it only affects neighbours within the receptive field).
    options
        Build options of the model (Dynamic World: ``direction``, ``fast``).
    check_scale
        Check that the band inputs are reflectance 0–1 (:func:`dwcube.inputs.model_inputs`:
        integer bands are refused at once, digital numbers when a block is computed, values
        10000 times too small are warned about); ``False`` turns the check off, for inputs
        on another scale on purpose.  Recorded in ``attrs["input_scale_check"]``.
    backend
        What runs the network on CPU workers (:func:`resolve_backend`): ``"torch"``,
        ``"onnxruntime"`` (needs ``pip install 'dwcube[onnx]'``) or ``"auto"``: the
        measured CPU default (today PyTorch).  Recorded in ``attrs["inference_backend"]``.

    Notes
    -----
    What goes into ``attrs`` as the settings that make the numbers: the model (name,
    version, weights SHA-256), every build option with the build function's defaults
    filled in (``model_build_options``, a JSON object; dwcube cannot tell which options
    of a model change its output, so all of them count), ``inference_fill_value``, the
    model's inputs and their normalisation, and the cube's loading provenance (sensor,
    radiometry, masks, cloud mask, harmonisation, resampling, grouping).  ``tile``,
    ``batch_size``, ``compile``, ``backend`` and ``device`` are recorded only as information: they
    change results at float32 noise at most, so archives accept dates computed with
    different values of them.

    Returns
    -------
    xarray.DataArray
        ``probability``, dims ``(time, class, y, x)``, float32, one chunk along
        ``class`` and the input's ``y``/``x`` chunks moved to multiples of the alignment;
        sums to 1 over ``class`` where every input was valid, NaN elsewhere.  Carries
        the cube's coordinates (``spatial_ref`` included) and, in ``attrs``, the model's
        provenance (name, version, weights SHA-256 and origin, licence, attribution),
        the input normalisation, the tiling and the cube's sensor and corrections.

    Raises
    ------
    MissingInputError
        When the cube lacks bands the model needs.
    WeightsNotFoundError, WeightsHashError
        When the weights are missing or fail their hash.

    Warns
    -----
    OutOfDomainWarning
        When the cube is not what the model was trained on (e.g. L2A for Dynamic World).

    Examples
    --------
    >>> from dwcube.testing import TINY_MODEL, synthetic_cube
    >>> prob = classify(synthetic_cube(size=40, dates=2), TINY_MODEL, device="cpu")
    >>> prob.dims, prob.sizes["class"]
    (('time', 'class', 'y', 'x'), 9)
    >>> bool(np.allclose(prob.sum("class"), 1))
    True
    """
    entry = _resolve_entry(model)
    if tile <= 0 or tile % entry.alignment:
        raise ValueError(f"tile ({tile}) must be a positive multiple of {entry.name}'s alignment ({entry.alignment})")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    options = dict(options or {})
    root = _weights.resolve(entry.weights, weights) if entry.weights is not None else None
    inputs = model_inputs(cube, entry.inputs, dem=dem, check_scale=check_scale)
    ydim, xdim = inputs.dims[2], inputs.dims[3]
    if min(inputs.sizes[ydim], inputs.sizes[xdim]) < entry.min_size:
        raise ValueError(f"{entry.name} needs at least {entry.min_size} × {entry.min_size} pixels, "
                         f"got {inputs.sizes[ydim]} × {inputs.sizes[xdim]}")
    n_pixels = inputs.sizes["time"] * inputs.sizes[ydim] * inputs.sizes[xdim]
    do_compile = bool(n_pixels >= COMPILE_AUTO_MIN_PIXELS) if compile == "auto" else bool(compile)
    chosen = resolve_backend(backend, device=device, compile=do_compile)
    runner = ModelRunner(entry, str(root) if root is not None else None, device,
                         tuple(sorted(options.items())), do_compile, tile, batch_size, float(fill_value), chosen)

    data = inputs.data if isinstance(inputs.data, da.Array) else da.from_array(inputs.data, chunks=(1, -1, -1, -1))
    data = data.astype(np.float32, copy=False)
    halo = entry.halo
    yc = aligned_chunks(data.chunks[2], alignment=entry.alignment, minimum=halo)
    xc = aligned_chunks(data.chunks[3], alignment=entry.alignment, minimum=halo)
    data = data.rechunk({1: -1, 2: yc, 3: xc})
    # aligned_chunks makes every chunk at least `halo` long whenever an axis has several chunks
    depth = {0: 0, 1: 0, 2: halo if len(yc) > 1 else 0, 3: halo if len(xc) > 1 else 0}
    extended = da.overlap.overlap(data, depth=depth, boundary="none") if halo else data
    k = len(entry.classes)
    prob = da.map_blocks(
        _block, extended, runner, yc, xc,
        chunks=(data.chunks[0], (k,), yc, xc), dtype=np.float32,
        name=f"classify-{entry.name}",
        meta=np.empty((0, 0, 0, 0), np.float32),
    )
    coords = {name: c for name, c in inputs.coords.items() if "feature" not in c.dims}
    coords["class"] = xr.DataArray(list(entry.classes), dims="class")
    attrs = _registry.model_attrs(entry, options)
    attrs.update({
        "model_build_options": _build_options_json(entry, options),
        "model_inputs": list(entry.inputs.names),
        "model_normalisation": inputs.attrs.get("normalisation", []),
        "model_halo": entry.halo,
        "model_alignment": entry.alignment,
        "inference_tile": tile,
        "inference_fill_value": float(fill_value),
        "inference_backend": chosen,
        "input_scale_check": inputs.attrs.get("scale_check", "off"),
        "long_name": "land-cover class probability",
        "units": "1",
    })
    attrs["classify_parameters"] = _classify_parameters(entry, weights, device, dem, tile, batch_size, compile,
                                                         fill_value, options, backend)
    for key in ("sensor", "product_level", "radiometry", "corrections", "mask", "cloud_mask", "harmonization",
                "resampling", "groupby", "out_of_domain", "load_parameters", "load_id", "failed_assets"):
        if key in inputs.attrs or key in cube.attrs:
            attrs[key] = inputs.attrs.get(key, cube.attrs.get(key))
    return xr.DataArray(prob, dims=("time", "class", ydim, xdim), coords=coords, name="probability", attrs=attrs)

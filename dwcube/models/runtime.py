"""Run-time settings for fast CPU/GPU inference: threads, allocator, layout, compilation.

Examples
--------
>>> import torch
>>> from dwcube.models.dynamic_world import DynamicWorldInference, build_dynamic_world
>>> m = prepare(DynamicWorldInference(build_dynamic_world()), torch.device("cpu"), compile=False)
>>> m(torch.zeros(1, 9, 8, 8)).shape
torch.Size([1, 9, 8, 8])
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

import torch
from torch import nn

__all__ = ["keep_freed_memory", "prepare"]

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_tuned = False


def keep_freed_memory() -> bool:
    """Make glibc reuse freed memory instead of mapping fresh pages for each large tensor.

    By default glibc serves allocations above 32 MiB with ``mmap`` and unmaps them on
    free, so every large intermediate tensor of a network costs page faults and zeroing on
    first touch.  On the 2-core benchmark machine that made element-wise layers 3–8×
    slower than with reused memory.  This sets ``M_MMAP_MAX = 0`` and a very high
    ``M_TRIM_THRESHOLD`` for the whole process: the heap then keeps its peak size (memory
    is not returned to the OS until the process ends), which suits a worker that runs
    one model over and over.  It is opt-in for that reason.

    Returns
    -------
    bool
        Whether the settings were applied (glibc on Linux only).
    """
    global _tuned
    if _tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    except (OSError, AttributeError):
        return False
    _tuned = bool(ok)
    if not ok:
        log.debug("mallopt refused the settings (not glibc?)")
    return _tuned


def prepare(module: nn.Module, device: torch.device, *, channels_last: bool = True,
            compile: bool = False, allow_tf32: bool = False) -> nn.Module:
    """Move ``module`` to ``device`` in inference form: channels-last, optionally compiled.

    Parameters
    ----------
    module
        A network in evaluation mode (e.g. :class:`~dwcube.models.dynamic_world.DynamicWorldInference`).
    device
        Target device.
    channels_last
        Use the NHWC memory layout (faster oneDNN/cuDNN convolutions).
    compile
        Compile with :func:`torch.compile` (``freezing`` on CPU: weights become
        constants, batch norms and layouts are folded); the first call per input shape
        then takes seconds.  Modules with a ``compile`` method of their own (that keep
        shape planning eager) use it.
    allow_tf32
        On NVIDIA GPUs, allow TF32 convolutions and matmuls.  Off by default: TF32
        moves Dynamic World logits by ~1e-2 and flips ~0.1 % of labels.

    Returns
    -------
    torch.nn.Module
        The prepared module (the same object, moved).
    """
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    module = module.to(device).eval()
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    if compile:
        if device.type == "cpu":
            import torch._inductor.config as inductor_config

            inductor_config.freezing = True
        if hasattr(module, "compile") and type(module).compile is not nn.Module.compile:
            module = module.compile(dynamic=False)
        else:
            module = torch.compile(module, dynamic=False)  # type: ignore[assignment]
    return module

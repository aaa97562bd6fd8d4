"""ONNX Runtime as an inference back-end for the PyTorch networks (optional: ``pip install 'dwcube[onnx]'``).

:class:`OnnxRuntimeModule` wraps a network in evaluation mode and behaves like it for
the calls :func:`dwcube.inference.predict_block` makes: ``(N, C, H, W)`` float32 tensor in,
tensor out.  The first call for each input shape exports the network to ONNX (the
TorchScript exporter; shape-dependent plans such as Dynamic World's resize taps become
constants) and opens an ONNX Runtime session with every graph optimisation on; later
calls with that shape reuse the session.  Uniform tiles give one shape per block, so one
export per worker, like one compilation for ``torch.compile``.

The outputs equal the PyTorch network's to float32 rounding (no reduced precision).

Examples
--------
>>> import torch
>>> from dwcube.testing import TINY_MODEL
>>> net = TINY_MODEL.build(None)
>>> if onnxruntime_available():
...     fast = OnnxRuntimeModule(net, threads=1)
...     x = torch.zeros(1, 6, 8, 8)
...     ok = bool(torch.allclose(fast(x), net(x), atol=1e-5))
... else:
...     ok = True
>>> ok
True
"""

from __future__ import annotations

import io
import threading
import warnings
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["ONNX_INSTALL_HINT", "OnnxRuntimeModule", "onnxruntime_available", "require_onnxruntime"]

#: What to tell a user whose environment lacks the optional packages.
ONNX_INSTALL_HINT = "install the optional back-end with `pip install 'dwcube[onnx]'` (onnx, onnxruntime)"


def onnxruntime_available() -> bool:
    """Whether ``onnx`` and ``onnxruntime`` can be imported here.

    Examples
    --------
    >>> isinstance(onnxruntime_available(), bool)
    True
    """
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def require_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or an :class:`ImportError` that says how to install it.

    Raises
    ------
    ImportError
        When ``onnx`` or ``onnxruntime`` is missing.

    Examples
    --------
    >>> if onnxruntime_available():
    ...     _ = require_onnxruntime()
    """
    try:
        import onnx  # noqa: F401  (the exporter needs it)
        import onnxruntime
    except ImportError as err:
        raise ImportError(f"backend='onnxruntime' needs the package {err.name!r}: {ONNX_INSTALL_HINT}, "
                          "or use backend='torch'") from err
    return onnxruntime


class OnnxRuntimeModule(nn.Module):
    """A network run by ONNX Runtime on the CPU, exported once per input shape.

    Parameters
    ----------
    module
        The network, in evaluation mode, on the CPU (its weights are read at export).
    threads
        ONNX Runtime intra-op threads (``0``: as many as :func:`torch.get_num_threads`).

    Raises
    ------
    ImportError
        When ``onnx``/``onnxruntime`` is not installed (:data:`ONNX_INSTALL_HINT`).
    """

    def __init__(self, module: nn.Module, *, threads: int = 0) -> None:
        super().__init__()
        self._ort = require_onnxruntime()
        self.module = module.eval()
        self.threads = int(threads) if threads > 0 else torch.get_num_threads()
        self._sessions: dict[tuple[int, ...], Any] = {}
        self._lock = threading.Lock()

    def _session(self, shape: tuple[int, ...]) -> Any:
        hit = self._sessions.get(shape)
        if hit is not None:
            return hit
        with self._lock:
            hit = self._sessions.get(shape)
            if hit is None:
                buffer = io.BytesIO()
                example = torch.zeros(shape, dtype=torch.float32)
                with warnings.catch_warnings(), torch.no_grad():
                    warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches
                    torch.onnx.export(self.module, (example,), buffer, dynamo=False, opset_version=17,
                                      do_constant_folding=False,  # ONNX Runtime folds them; 7× faster export
                                      input_names=["x"], output_names=["y"])
                options = self._ort.SessionOptions()
                options.intra_op_num_threads = self.threads
                options.inter_op_num_threads = 1
                options.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                hit = self._ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
                self._sessions[shape] = hit
        return hit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu":
            raise ValueError(f"the ONNX Runtime back-end runs on the CPU; got a tensor on {x.device}")
        xn = np.ascontiguousarray(x.detach().float().numpy())
        y = self._session(tuple(xn.shape)).run(None, {"x": xn})[0]
        return torch.from_numpy(y)

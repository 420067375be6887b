"""Fused CuPy kernels for the trace step (same switch as :mod:`acquisition.registration.fused`).

- :func:`csr_rows`: ``W @ frame`` for a batch of frames as one kernel (a thread per ROI row and
  frame, summing in index order like scipy's CSR product). ``cupyx.scipy.sparse`` reaches cuSPARSE
  through several Python-level steps per call (format checks, ``asfortranarray``, descriptors),
  which costs more than the product itself when streaming one frame at a time.
- :func:`neuropil_dff`: ``Fc = F - c * Fneu`` and ``ΔF/F = (Fc - F0) / max(F0, floor)`` as one
  element-wise kernel each.

Each returns None when fusing is off or the kernel failed (fusing is then switched off with a
warning), and the caller runs the plain ``xp`` code; ``tests/gpu`` compares both.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from acquisition.registration.fused import _failed, fused_enabled

_CSR_SRC = r"""
extern "C" __global__ void rig_csr_rows(const float* data, const int* indices, const int* indptr,
                                        const float* frames, const long long n_px,
                                        const int n_rows, const int n_frames, float* out) {
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= (long long)n_rows * n_frames) return;
    const long long b = t / n_rows;
    const int row = (int)(t - b * n_rows);
    const float* f = frames + b * n_px;
    float acc = 0.0f;
    for (int k = indptr[row]; k < indptr[row + 1]; ++k) acc += data[k] * f[indices[k]];
    out[t] = acc;
}
"""

_kernels: dict[str, Any] = {}


def _kernel(xp: ModuleType, name: str) -> Any:
    k = _kernels.get(name)
    if k is None:
        if name == "csr":
            k = xp.RawKernel(_CSR_SRC, "rig_csr_rows")
        elif name == "fc":
            k = xp.ElementwiseKernel(
                "float32 f, float32 fn, float32 c", "float32 o", "o = f - c * fn;", "rig_fc"
            )
        elif name == "dff":
            k = xp.ElementwiseKernel(
                "float32 fc, float32 f0, float32 floor",
                "float32 o",
                "o = (fc - f0) / fmaxf(f0, floor);",
                "rig_dff",
            )
        else:
            raise KeyError(name)
        _kernels[name] = k
    return k


def csr_rows(xp: ModuleType, csr: tuple[Any, Any, Any] | None, frames: Any) -> Any | None:
    """``(W @ frames.reshape(B, -1).T).T`` as float32 (B, R), or None when not fused.

    ``csr`` is ``(data float32, indices int32, indptr int32)`` on the device.
    """
    if csr is None or not fused_enabled(xp):
        return None
    try:
        data, indices, indptr = csr
        b = frames.shape[0]
        flat = xp.ascontiguousarray(frames, dtype=xp.float32).reshape(b, -1)
        n_rows = int(indptr.shape[0]) - 1
        out = xp.empty((b, n_rows), xp.float32)
        total = b * n_rows
        args = (data, indices, indptr, flat, np.int64(flat.shape[1]), np.int32(n_rows),
                np.int32(b), out)  # fmt: skip
        _kernel(xp, "csr")(((total + 255) // 256,), (256,), args)
        return out
    except Exception as e:
        _failed("csr_rows", e)
        return None


def neuropil_fc(xp: ModuleType, f: Any, fneu: Any, c: float) -> Any | None:
    """``f - c * fneu`` in one kernel, or None when not fused."""
    if not fused_enabled(xp):
        return None
    try:
        return _kernel(xp, "fc")(f, fneu, np.float32(c))
    except Exception as e:
        _failed("fc", e)
        return None


def neuropil_dff(xp: ModuleType, fc: Any, f0: Any, floor: float) -> Any | None:
    """``(fc - f0) / max(f0, floor)`` in one kernel, or None when not fused."""
    if not fused_enabled(xp):
        return None
    try:
        return _kernel(xp, "dff")(fc, f0, np.float32(floor))
    except Exception as e:
        _failed("dff", e)
        return None

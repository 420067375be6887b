"""The baseline's order statistic on CuPy as one radix-select kernel (the value partition gives).

Why: the causal baseline (:class:`acquisition.traces.extract.CausalBaseline`) recomputes the
``k``-th smallest Fc of every ROI over its ring (500 ROIs x 1800 frames at 30 Hz and 60 s) once a
second. ``cupy.partition`` does that as a copy plus a full sort through several kernels and
allocations; on a streaming refresh frame it cost ~0.19 ms of an H200 frame's ~0.24 ms and set the
streaming p99 (0.51 ms against a 0.5 ms target). This kernel is one launch: a block per ROI row
finds the ``k``-th smallest of the row's first ``m`` values by radix selection, 8 bits at a time
(four passes over the row, a 256-bin shared-memory histogram each), on float32 bit patterns mapped
to unsigned keys that sort in the same order as the floats.

Results equal ``xp.partition(ring[:, :m], k, axis=1)[:, k]`` exactly: both return an element of
the row, the one of rank ``k`` (ties are equal values). Two details follow numpy's order: ``-0.0``
and ``+0.0`` share one key (they compare equal; the kernel returns ``+0.0``), and NaN sorts last.
Chosen over capturing the refresh in a CUDA graph because the ring's filled length ``m`` changes
every refresh during the first window (the first minute), which a captured partition cannot
follow, while the kernel takes ``m`` and ``k`` as arguments.

Safety: on first use in a process the kernel is compared with ``xp.partition`` on random rows
(ties, negatives, signed zeros, several ``m`` and ``k``); on any difference or error it is switched
off with a warning and the baseline uses ``xp.partition``. ``RIG_XP_FUSED=0`` (or
:func:`acquisition.registration.fused.set_fused`) turns it off with the other fused kernels.
"""

from __future__ import annotations

import warnings
from types import ModuleType
from typing import Any

import numpy as np

from acquisition.registration.fused import fused_enabled

# Kept free of CUDA-only syntax beyond the intrinsics below so tests can compile it as C++ with a
# one-thread emulation of a block (tests/test_traces.py) and check the algorithm without a GPU.
SELECT_SRC = r"""
__device__ __forceinline__ unsigned int rig_key(float v) {
    if (v != v) return 0xffffffffu;  // NaN last, as numpy's partition puts it
    if (v == 0.0f) v = 0.0f;         // -0.0 == +0.0: one key
    const unsigned int b = __float_as_uint(v);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

__device__ __forceinline__ float rig_unkey(unsigned int u) {
    return __uint_as_float((u & 0x80000000u) ? (u & 0x7fffffffu) : ~u);
}

extern "C" __global__ void rig_kth_rows(const float* ring, const int window, const int m,
                                        const int k, const int n, float* out) {
    __shared__ unsigned int hist[256];
    __shared__ unsigned int s_prefix;
    __shared__ int s_rank;
    const int row = blockIdx.x;
    if (row >= n) return;  // the whole block leaves together
    const float* r = ring + (long long)row * window;
    unsigned int prefix = 0u;
    unsigned int mask = 0u;
    int rank = k;  // rank of the answer among the values that still match prefix
    for (int shift = 24; shift >= 0; shift -= 8) {
        for (int b = threadIdx.x; b < 256; b += blockDim.x) hist[b] = 0u;
        __syncthreads();
        for (int i = threadIdx.x; i < m; i += blockDim.x) {
            const unsigned int u = rig_key(r[i]);
            if ((u & mask) == prefix) atomicAdd(&hist[(u >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (threadIdx.x == 0) {
            int cum = 0;
            int b = 0;
            while (b < 255 && cum + (int)hist[b] <= rank) {
                cum += (int)hist[b];
                ++b;
            }
            s_prefix = prefix | ((unsigned int)b << shift);
            s_rank = rank - cum;
        }
        __syncthreads();
        prefix = s_prefix;
        rank = s_rank;
        mask |= 255u << shift;
        __syncthreads();  // everyone has read s_prefix/s_rank and hist before they change
    }
    if (threadIdx.x == 0) out[row] = rig_unkey(prefix);
}
"""

THREADS = 256

_state: dict[str, Any] = {"kernel": None, "checked": False, "ok": False}


def _launch(xp: ModuleType, ring: Any, m: int, k: int, out: Any) -> None:
    kern = _state["kernel"]
    if kern is None:
        kern = xp.RawKernel(SELECT_SRC, "rig_kth_rows")
        _state["kernel"] = kern
    n, window = int(ring.shape[0]), int(ring.shape[1])
    args = (ring, np.int32(window), np.int32(m), np.int32(k), np.int32(n), out)
    kern((n,), (THREADS,), args)


def _self_check(xp: ModuleType) -> bool:
    """Compare the kernel with ``xp.partition`` on awkward rows; True when all agree."""
    rng = np.random.default_rng(12345)
    n, window = 37, 700
    host = rng.standard_normal((n, window)).astype(np.float32) * 50
    host[1] = 3.0  # all equal
    host[2] = rng.integers(-3, 4, window).astype(np.float32)  # heavy ties, signed values
    host[3, ::2] = -0.0  # signed zeros among the values
    host[3, 1::2] = 0.0
    host[4] = np.float32(1e-30) * rng.standard_normal(window)  # tiny values
    host[5] = np.abs(host[5]) + 1e6  # one exponent range
    ring = xp.asarray(host)
    for m in (1, 2, 3, 31, 256, 257, window - 1, window):
        for frac in (0.0, 0.08, 0.5, 1.0):
            k = round(frac * (m - 1))
            out = xp.empty(n, xp.float32)
            _launch(xp, ring, m, k, out)
            want = xp.partition(ring[:, :m], k, axis=1)[:, k]
            if not bool(xp.all(out == want)):
                return False
    return True


def kth_smallest_rows(xp: ModuleType, ring: Any, m: int, k: int) -> Any | None:
    """The ``k``-th smallest (0-based) of ``ring[:, :m]`` per row, or None when not fused.

    Parameters
    ----------
    ring : cupy array float32 (n, window), C-contiguous
    m : int
        Values per row to use (the first ``m`` columns), ``1 <= m <= window``.
    k : int
        Rank, ``0 <= k < m``.

    Returns
    -------
    cupy array float32 (n,) or None
        None on numpy, with fusing off, with an unsupported ``ring``, or when the kernel failed
        its first-use check or to compile (then switched off for the process with a warning).
    """
    if not fused_enabled(xp) or (_state["checked"] and not _state["ok"]):
        return None
    if ring.dtype != xp.float32 or ring.ndim != 2 or not ring.flags.c_contiguous:
        return None
    if not (1 <= m <= ring.shape[1] and 0 <= k < m):
        raise ValueError(f"kth_smallest_rows: need 1 <= m <= {ring.shape[1]} and 0 <= k < m, "
                         f"got m={m}, k={k}")  # fmt: skip
    try:
        if not _state["checked"]:
            _state["checked"] = True
            _state["ok"] = _self_check(xp)
            if not _state["ok"]:
                warnings.warn(
                    "the baseline selection kernel disagreed with partition on its first-use "
                    "check; using partition",
                    RuntimeWarning,
                    stacklevel=2,
                )
                return None
        out = xp.empty(int(ring.shape[0]), xp.float32)
        _launch(xp, ring, m, k, out)
        return out
    except Exception as e:
        _state["checked"], _state["ok"] = True, False
        warnings.warn(
            f"the baseline selection kernel failed ({type(e).__name__}: {e}); using partition",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


def prepare(xp: ModuleType) -> bool:
    """Compile and check the kernel now (outside any timed or captured work); True when usable."""
    if not fused_enabled(xp):
        return False
    ring = xp.zeros((1, 4), xp.float32)
    return kth_smallest_rows(xp, ring, 4, 1) is not None


def status(xp: ModuleType) -> str:
    """``"kernel"`` when refreshes on ``xp`` use the kernel now, else ``"partition"`` (reports)."""
    return "kernel" if fused_enabled(xp) and _state["checked"] and _state["ok"] else "partition"

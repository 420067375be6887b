"""The baseline's radix-select CUDA kernel, checked without a GPU.

The kernel's source (``acquisition.traces.select.SELECT_SRC``, the very string CuPy compiles) is
built as C++ with g++ under a small emulation of a CUDA block: one OS thread per CUDA thread,
``__syncthreads`` as a ``std::barrier``, shared memory as statics, ``atomicAdd`` as an atomic add.
Its answers must equal ``np.partition`` for every row, rank and filled length, with the thread
counts the GPU uses and odd ones. ``tests/gpu/test_gpu_equivalence.py`` runs it on the device.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from acquisition.traces import CausalBaseline
from acquisition.traces import select as sel

_PRELUDE = r"""
#include <atomic>
#include <barrier>
#include <cstring>
#include <thread>
#include <vector>
struct Dim3 { unsigned int x; };
static thread_local Dim3 threadIdx = {0};
static Dim3 blockIdx = {0};
static Dim3 blockDim = {1};
static std::barrier<>* rig_bar = nullptr;
#define __device__
#define __forceinline__ inline
#define __global__
#define __shared__ static
static inline void __syncthreads() { rig_bar->arrive_and_wait(); }
static inline unsigned int atomicAdd(unsigned int* p, unsigned int v) {
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
static inline unsigned int __float_as_uint(float f) {
    unsigned int u; std::memcpy(&u, &f, 4); return u;
}
static inline float __uint_as_float(unsigned int u) {
    float f; std::memcpy(&f, &u, 4); return f;
}
"""

_DRIVER = r"""
extern "C" void run_rows(const float* ring, int window, int m, int k, int n, float* out,
                         int threads) {
    blockDim.x = (unsigned int)threads;
    std::barrier<> bar(threads);
    rig_bar = &bar;
    for (int b = 0; b < n; ++b) {  // one block at a time, as the shared statics require
        blockIdx.x = (unsigned int)b;
        std::vector<std::thread> ts;
        for (int t = 0; t < threads; ++t)
            ts.emplace_back([=] { threadIdx.x = (unsigned int)t;
                                  rig_kth_rows(ring, window, m, k, n, out); });
        for (auto& th : ts) th.join();
    }
}
"""


@pytest.fixture(scope="module")
def emulated(tmp_path_factory: pytest.TempPathFactory):
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    version = subprocess.run(["g++", "-dumpversion"], capture_output=True, text=True).stdout
    if int(version.split(".")[0] or 0) < 11:  # std::barrier (C++20) arrived in GCC 11
        pytest.skip(f"g++ {version.strip()} has no C++20 <barrier>")
    d: Path = tmp_path_factory.mktemp("select")
    src = d / "select.cpp"
    src.write_text(_PRELUDE + sel.SELECT_SRC + _DRIVER)
    lib = d / "libselect.so"
    subprocess.run(
        ["g++", "-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", str(src), "-o", str(lib)],
        check=True,
        capture_output=True,
    )
    so = ctypes.CDLL(str(lib))
    fp = ctypes.POINTER(ctypes.c_float)
    so.run_rows.argtypes = [fp, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int, fp,
                            ctypes.c_int]  # fmt: skip

    def run(ring: np.ndarray, m: int, k: int, threads: int) -> np.ndarray:
        ring = np.ascontiguousarray(ring, np.float32)
        out = np.full(ring.shape[0], np.nan, np.float32)
        so.run_rows(ring.ctypes.data_as(fp), ring.shape[1], m, k, ring.shape[0],
                    out.ctypes.data_as(fp), threads)  # fmt: skip
        return out

    return run


def _awkward_rows(window: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((8, window)) * 40).astype(np.float32)
    x[1] = 5.0
    x[2] = rng.integers(-2, 3, window)
    x[3, ::2], x[3, 1::2] = -0.0, 0.0
    x[4] = np.abs(x[4]) + 3e5
    x[5] = -np.abs(x[5]) * 1e-20
    x[6, ::3] = np.inf
    x[6, 1::3] = -np.inf
    return x


@pytest.mark.parametrize("threads", [1, 7, 64])
def test_kernel_equals_partition(emulated, threads):
    ring = _awkward_rows(300)
    for m in (1, 2, 5, 255, 256, 299, 300):
        for k in sorted({0, round(0.08 * (m - 1)), (m - 1) // 2, m - 1}):
            want = np.partition(ring[:, :m], k, axis=1)[:, k]
            got = emulated(ring, m, k, threads)
            np.testing.assert_array_equal(got, want, err_msg=f"m={m} k={k} threads={threads}")


def test_kernel_follows_a_real_baseline_ring(emulated):
    """The baseline's own ring, refresh by refresh (filling, then wrapping): same F0 values."""
    rng = np.random.default_rng(3)
    bl = CausalBaseline(np, 5, window_frames=40, percentile=8.0, update_every=6)
    x = (rng.standard_normal((130, 5)) * 30 + 200).astype(np.float32)
    for t in range(130):
        bl.update(x[t : t + 1])
        if bl.refresh_due(t):
            m = min(bl.count, bl.window)
            k = round(bl.percentile / 100.0 * (m - 1))
            np.testing.assert_array_equal(emulated(bl.ring, m, k, 32), bl.f0, err_msg=str(t))


def test_numpy_never_uses_the_kernel():
    ring = np.zeros((3, 4), np.float32)
    assert sel.kth_smallest_rows(np, ring, 4, 1) is None
    assert sel.prepare(np) is False
    assert sel.status(np) == "partition"

"""Fused CuPy kernels for the hot element-wise steps, with the plain ``xp`` code as reference.

Plain CuPy runs every operator as its own kernel with its own pass over memory: whitening the
cross spectrum (abs, +eps, divide, multiply) is four passes over a (B, Y, X/2+1) complex array,
and the bilinear shift through gathers is about twenty small kernels plus index arrays. These
kernels do each step in one pass:

- :func:`whiten_mul`: ``f * (r / (|f| + eps))`` in place;
- :func:`taper`: ``(x - mean) * mask + mean``;
- :func:`bilinear_shift`: :func:`acquisition.registration.shift.shift_bilinear` (wrapped indices)
  with the indices computed in the kernel;
- :func:`nonrigid_warp`: the piecewise-rigid field interpolation and the bilinear warp
  (:meth:`acquisition.registration.nonrigid.NonrigidRegistration.warp`) in one pass;
- :func:`window_peak`: :func:`acquisition.registration.phasecorr.window_peak` (argmax + the
  3-point Gaussian fit) as one block per correlation window, instead of ~25 tiny kernels whose
  launch overhead dominates the per-frame (streaming) latency.

They are used only on CuPy, only while :func:`fused_enabled` is true (``RIG_XP_FUSED=0`` in the
environment or :func:`set_fused` turns them off), and a kernel that fails to compile switches
fusing off for the process with a warning, so the plain path still runs. ``tests/gpu`` checks each
kernel against the plain code on random inputs.
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType
from typing import Any

from acquisition.xp import is_cupy

_state = {"enabled": os.environ.get("RIG_XP_FUSED", "1") != "0"}
_kernels: dict[str, Any] = {}

_BILINEAR_SRC = r"""
const long long npx = (long long)ny * nx;
const long long b = i / npx;
const long long r = i - b * npx;
const int y = (int)(r / nx);
const int x = (int)(r - (long long)y * nx);
const float sy = shifts[2 * b];
const float sx = shifts[2 * b + 1];
const float fy = floorf(sy);
const float fx = floorf(sx);
const float wy = sy - fy;
const float wx = sx - fx;
int y0 = (y + (int)fy) % ny; if (y0 < 0) y0 += ny;
int x0 = (x + (int)fx) % nx; if (x0 < 0) x0 += nx;
const int y1 = (y0 + 1 == ny) ? 0 : y0 + 1;
const int x1 = (x0 + 1 == nx) ? 0 : x0 + 1;
const long long base = b * npx;
const float a00 = src[base + (long long)y0 * nx + x0];
const float a01 = src[base + (long long)y0 * nx + x1];
const float a10 = src[base + (long long)y1 * nx + x0];
const float a11 = src[base + (long long)y1 * nx + x1];
const float top = a00 + wx * (a01 - a00);
const float bot = a10 + wx * (a11 - a10);
o = top + wy * (bot - top);
"""


_WARP_SRC = r"""
const long long npx = (long long)ny * nx;
const long long b = i / npx;
const long long r = i - b * npx;
const int y = (int)(r / nx);
const int x = (int)(r - (long long)y * nx);
const long long j0 = jy0[y], j1 = jy1[y], k0 = kx0[x], k1 = kx1[x];
const float ty = wty[y], tx = wtx[x];
const long long sb = b * nby;
float f[2];
for (int c = 0; c < 2; ++c) {
    const float s00 = bs[((sb + j0) * nbx + k0) * 2 + c];
    const float s01 = bs[((sb + j0) * nbx + k1) * 2 + c];
    const float s10 = bs[((sb + j1) * nbx + k0) * 2 + c];
    const float s11 = bs[((sb + j1) * nbx + k1) * 2 + c];
    f[c] = (s00 * (1.0f - ty) + s10 * ty) * (1.0f - tx) + (s01 * (1.0f - ty) + s11 * ty) * tx;
}
const float yy = fminf(fmaxf((float)y + f[0], 0.0f), (float)(ny - 1));
const float xx = fminf(fmaxf((float)x + f[1], 0.0f), (float)(nx - 1));
const int yi = min((int)floorf(yy), ny - 2);
const int xi = min((int)floorf(xx), nx - 2);
const float wy = yy - (float)yi, wx = xx - (float)xi;
const long long base = b * npx + (long long)yi * nx + xi;
const float a00 = src[base], a01 = src[base + 1];
const float a10 = src[base + nx], a11 = src[base + nx + 1];
const float top = a00 + wx * (a01 - a00);
const float bot = a10 + wx * (a11 - a10);
o = top + wy * (bot - top);
"""

_PEAK_SRC = r"""
extern "C" __global__ void rig_window_peak(const float* win, const int wy, const int wx,
                                           float* shifts, float* peaks) {
    const int b = blockIdx.x;
    const int t = threadIdx.x;
    const float* w = win + (long long)b * wy * wx;
    const int nyi = wy - 2, nxi = wx - 2, n = nyi * nxi;
    float best = -3.0e38f;
    int bi = 0x7fffffff;
    for (int k = t; k < n; k += blockDim.x) {
        const float v = w[(k / nxi + 1) * wx + (k % nxi + 1)];
        if (v > best) { best = v; bi = k; }  // k grows: the first maximum wins, as argmax
    }
    __shared__ float sv[256];
    __shared__ int si[256];
    sv[t] = best; si[t] = bi;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s) {
            const float o = sv[t + s];
            const int oi = si[t + s];
            if (o > sv[t] || (o == sv[t] && oi < si[t])) { sv[t] = o; si[t] = oi; }
        }
        __syncthreads();
    }
    if (t == 0) {
        const int py = si[0] / nxi + 1, px = si[0] % nxi + 1;
        const float c0 = w[py * wx + px];
        const float fl = fmaxf(c0, 1e-6f) * 1e-3f;
        const float lc0 = logf(fmaxf(c0, 1e-6f));
        const float lym = logf(fmaxf(w[(py - 1) * wx + px], fl));
        const float lyp = logf(fmaxf(w[(py + 1) * wx + px], fl));
        const float lxm = logf(fmaxf(w[py * wx + px - 1], fl));
        const float lxp = logf(fmaxf(w[py * wx + px + 1], fl));
        float sub[2];
        const float lm[2] = {lym, lxm}, lp[2] = {lyp, lxp};
        for (int a = 0; a < 2; ++a) {
            const float den = lm[a] - 2.0f * lc0 + lp[a];
            const float safe = fabsf(den) > 1e-12f ? den : -1.0f;
            const float off = 0.5f * (lm[a] - lp[a]) / safe;
            sub[a] = den < 0.0f ? fminf(fmaxf(off, -0.5f), 0.5f) : 0.0f;
        }
        shifts[2 * b] = (float)(py - (wy - 3) / 2 - 1) + sub[0];
        shifts[2 * b + 1] = (float)(px - (wx - 3) / 2 - 1) + sub[1];
        peaks[b] = c0;
    }
}
"""


def set_fused(enabled: bool) -> None:
    """Turn the fused kernels on or off for this process (tests compare both paths)."""
    _state["enabled"] = bool(enabled)


def fused_enabled(xp: ModuleType) -> bool:
    """True when ``xp`` is CuPy and fusing is on."""
    return is_cupy(xp) and _state["enabled"]


def _kernel(xp: ModuleType, name: str) -> Any:
    k = _kernels.get(name)
    if k is not None:
        return k
    if name == "whiten":
        k = xp.ElementwiseKernel(
            "complex64 f, complex64 r",
            "complex64 o",
            "o = f * (r / (abs(f) + 1e-6f));",
            "rig_whiten_mul",
        )
    elif name == "taper":
        k = xp.ElementwiseKernel(
            "float32 x, float32 m, float32 w",
            "float32 o",
            "o = (x - m) * w + m;",
            "rig_taper",
        )
    elif name == "warp":
        k = xp.ElementwiseKernel(
            "raw float32 src, raw float32 bs, raw int64 jy0, raw int64 jy1, raw float32 wty, "
            "raw int64 kx0, raw int64 kx1, raw float32 wtx, int32 ny, int32 nx, int32 nby, "
            "int32 nbx",
            "float32 o",
            _WARP_SRC,
            "rig_nonrigid_warp",
        )
    elif name == "peak":
        k = xp.RawKernel(_PEAK_SRC, "rig_window_peak")
    elif name == "bilinear":
        k = xp.ElementwiseKernel(
            "raw float32 src, raw float32 shifts, int32 ny, int32 nx",
            "float32 o",
            _BILINEAR_SRC,
            "rig_bilinear_shift",
        )
    else:
        raise KeyError(name)
    _kernels[name] = k
    return k


def _failed(name: str, e: Exception) -> None:
    _state["enabled"] = False
    warnings.warn(
        f"fused CuPy kernel {name!r} failed ({type(e).__name__}: {e}); using plain CuPy",
        RuntimeWarning,
        stacklevel=3,
    )


def whiten_mul(xp: ModuleType, f: Any, r: Any) -> Any | None:
    """``f *= r / (|f| + 1e-6)`` in one pass; returns ``f``, or None when not fused."""
    if not fused_enabled(xp):
        return None
    try:
        _kernel(xp, "whiten")(f, r, f)
        return f
    except Exception as e:  # compile or launch failure: fall back to the plain path
        _failed("whiten", e)
        return None


def taper(xp: ModuleType, frames: Any, mean: Any, mask: Any) -> Any | None:
    """``(frames - mean) * mask + mean`` in one pass, or None when not fused."""
    if not fused_enabled(xp):
        return None
    try:
        return _kernel(xp, "taper")(frames, mean, mask)
    except Exception as e:
        _failed("taper", e)
        return None


def bilinear_shift(xp: ModuleType, frames: Any, shifts: Any) -> Any | None:
    """Fused :func:`~acquisition.registration.shift.shift_bilinear`, or None when not fused."""
    if not fused_enabled(xp):
        return None
    try:
        src = xp.ascontiguousarray(frames, dtype=xp.float32)
        s = xp.ascontiguousarray(shifts, dtype=xp.float32).reshape(-1)
        out = xp.empty(src.shape, xp.float32)
        ny, nx = src.shape[-2:]
        _kernel(xp, "bilinear")(src.reshape(-1), s, ny, nx, out)
        return out
    except Exception as e:
        _failed("bilinear", e)
        return None


def window_peak(xp: ModuleType, win: Any) -> tuple[Any, Any] | None:
    """Fused :func:`~acquisition.registration.phasecorr.window_peak`, or None when not fused."""
    if not fused_enabled(xp):
        return None
    try:
        import numpy as np

        lead = win.shape[:-2]
        wy, wx = win.shape[-2:]
        flat = xp.ascontiguousarray(win, dtype=xp.float32).reshape(-1, wy, wx)
        nb = flat.shape[0]
        shifts = xp.empty((nb, 2), xp.float32)
        peaks = xp.empty(nb, xp.float32)
        _kernel(xp, "peak")((nb,), (256,), (flat, np.int32(wy), np.int32(wx), shifts, peaks))
        return shifts.reshape((*lead, 2)), peaks.reshape(lead)
    except Exception as e:
        _failed("peak", e)
        return None


def nonrigid_warp(xp: ModuleType, frames: Any, block_shifts: Any, grid: Any) -> Any | None:
    """Fused field interpolation + bilinear warp (see :mod:`.nonrigid`), or None when not fused.

    ``frames`` (B, Y, X) float32, ``block_shifts`` (B, nby, nbx, 2), ``grid`` a ``BlockGrid``.
    """
    if not fused_enabled(xp):
        return None
    try:
        src = xp.ascontiguousarray(frames, dtype=xp.float32)
        bs = xp.ascontiguousarray(block_shifts, dtype=xp.float32)
        ny, nx = src.shape[-2:]
        if ny < 2 or nx < 2:
            return None
        (y0, y1, ty), (x0, x1, tx) = grid.iy, grid.ix
        out = xp.empty(src.shape, xp.float32)
        _kernel(xp, "warp")(
            src.reshape(-1), bs.reshape(-1), y0, y1, ty, x0, x1, tx,
            ny, nx, bs.shape[1], bs.shape[2], out,
        )  # fmt: skip
        return out
    except Exception as e:
        _failed("warp", e)
        return None

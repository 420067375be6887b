"""Shifting frames back by their estimated displacement (circular, like suite2p's rigid roll).

Three implementations of one operation, ``out(y, x) = frame(y + dy, x + dx)`` (which undoes a
displacement ``(dy, dx)``), all with circular boundaries so they agree with each other:

- :func:`shift_fourier`: phase ramp on the rfft2 (exact band-limited shift; two FFTs per frame,
  no host sync);
- :func:`shift_bilinear`: bilinear interpolation through a gather with wrapped indices (generic
  ``xp``, batched, shifts stay on the device; the CuPy default);
- :func:`shift_bilinear_roll`: the same bilinear result from integer rolls and two blends with the
  shifts on the host: ~1 ms at 512 x 512 on a CPU core where the gather takes ~8 ms, so the
  numpy path uses it. Tests check it equals :func:`shift_bilinear`.

Pixels within ``max |shift|`` of the border wrap around; they carry no valid data either way.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from acquisition.registration import fused
from acquisition.xp import cached_constant, fft_module, is_cupy, to_host


def shift_fourier(xp: ModuleType, frames: Any, shifts: Any) -> Any:
    """Undo displacements with a Fourier phase ramp.

    Parameters
    ----------
    frames : xp array, float32 (B, Y, X)
    shifts : xp array, float32 (B, 2) displacement (dy, dx) in px to undo

    Returns
    -------
    xp array, float32 (B, Y, X)
    """
    fft = fft_module(xp)
    ny, nx = frames.shape[-2:]
    fy = cached_constant(xp, ("fftfreq", ny), lambda: np.fft.fftfreq(ny).astype(np.float32))
    fx = cached_constant(xp, ("rfftfreq", nx), lambda: np.fft.rfftfreq(nx).astype(np.float32))
    f = fft.rfft2(frames)
    s = xp.asarray(shifts, dtype=xp.float32)
    # out(y) = in(y + d)  <=>  OUT(k) = IN(k) * exp(+2 pi i k d)
    ph_y = xp.exp((2j * np.pi) * (s[:, 0, None] * fy[None, :])).astype(xp.complex64)
    ph_x = xp.exp((2j * np.pi) * (s[:, 1, None] * fx[None, :])).astype(xp.complex64)
    f *= ph_y[:, :, None]
    f *= ph_x[:, None, :]
    # The Nyquist bin of an even axis cannot carry a complex phase; irfft2 takes its real part,
    # which is what makes this shift real-valued.
    return fft.irfft2(f, s=(ny, nx)).astype(xp.float32, copy=False)


def shift_bilinear(xp: ModuleType, frames: Any, shifts: Any) -> Any:
    """Undo displacements by bilinear interpolation with wrapped indices (batched gather).

    Same shapes as :func:`shift_fourier`.
    """
    ny, nx = frames.shape[-2:]
    s = xp.asarray(shifts, dtype=xp.float32)
    fl = xp.floor(s)
    frac = s - fl
    iy0 = fl[:, 0].astype(xp.int64)
    ix0 = fl[:, 1].astype(xp.int64)
    ys = xp.arange(ny)[None, :]
    xs = xp.arange(nx)[None, :]
    y0 = (ys + iy0[:, None]) % ny
    y1 = (y0 + 1) % ny
    x0 = (xs + ix0[:, None]) % nx
    x1 = (x0 + 1) % nx
    b = xp.arange(frames.shape[0])[:, None, None]
    wy = frac[:, 0, None, None]
    wx = frac[:, 1, None, None]
    a00 = frames[b, y0[:, :, None], x0[:, None, :]]
    a01 = frames[b, y0[:, :, None], x1[:, None, :]]
    a10 = frames[b, y1[:, :, None], x0[:, None, :]]
    a11 = frames[b, y1[:, :, None], x1[:, None, :]]
    top = a00 + wx * (a01 - a00)
    bot = a10 + wx * (a11 - a10)
    return (top + wy * (bot - top)).astype(xp.float32, copy=False)


def shift_bilinear_roll(xp: ModuleType, frames: Any, shifts: Any) -> Any:
    """:func:`shift_bilinear` via integer rolls; reads ``shifts`` on the host (syncs on GPU)."""
    s = np.asarray(to_host(shifts), dtype=np.float64).reshape(-1, 2)
    out = xp.empty_like(frames, dtype=xp.float32)
    for i in range(frames.shape[0]):
        fy, fx = np.floor(s[i])
        wy, wx = np.float32(s[i, 0] - fy), np.float32(s[i, 1] - fx)
        a = xp.roll(frames[i], (-int(fy), -int(fx)), axis=(0, 1))
        if wx:
            a = a + wx * (xp.roll(a, -1, axis=1) - a)
        if wy:
            a = a + wy * (xp.roll(a, -1, axis=0) - a)
        out[i] = a
    return out


def shift_frames(xp: ModuleType, frames: Any, shifts: Any, method: str = "auto") -> Any:
    """Undo displacements ``shifts`` (B, 2) of ``frames`` (B, Y, X) float32.

    ``method``: ``"fourier"``, ``"bilinear"`` (the gather reference), ``"bilinear_roll"``, or
    ``"auto"`` (bilinear via rolls on numpy; the batched gather on CuPy, which moves ~4 reads
    per pixel where the Fourier shift needs two more FFTs). On CuPy ``"bilinear"`` runs as one
    fused kernel unless fusing is off (:mod:`.fused`).
    """
    if method == "auto":
        method = "bilinear" if is_cupy(xp) else "bilinear_roll"
    if method == "bilinear":
        out = fused.bilinear_shift(xp, frames, shifts)
        if out is not None:
            return out
    if method == "fourier":
        return shift_fourier(xp, frames, shifts)
    if method == "bilinear":
        return shift_bilinear(xp, frames, shifts)
    if method == "bilinear_roll":
        return shift_bilinear_roll(xp, frames, shifts)
    raise ValueError(
        f"unknown shift method {method!r}; expected auto|fourier|bilinear|bilinear_roll"
    )

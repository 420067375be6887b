"""Phase correlation with edge taper, suite2p-like whitening + Gaussian smoothing, sub-pixel peak.

Convention (shared with the synthetic ground truth): a frame whose content is displaced by
``(dy, dx)`` relative to the reference, ``frame(y, x) ~= ref(y - dy, x - dx)``, gives the shift
``(dy, dx)``; correcting it means shifting by ``(-dy, -dx)``.

The cross-power spectrum of the frame and the reference is whitened on both sides (phase only),
so every spatial frequency votes equally, and multiplied by a Gaussian of ``smooth_sigma_px``
(in the Fourier domain) so the correlation peak is a sampled Gaussian: a log-parabola
(3-point Gaussian) fit per axis is then nearly exact, which gives the sub-pixel shift without
an upsampled DFT.

All functions take the array module ``xp`` and work on any number of leading axes: the last
two axes are (y, x). They work the same on numpy and CuPy and never synchronise with the host.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from acquisition.registration import fused
from acquisition.xp import fft_module, is_cupy

_EPS = 1e-6


def taper_mask(shape: tuple[int, int], taper_px: float) -> np.ndarray:
    """Edge taper in [0, 1]: a logistic ramp ``taper_px`` wide on each border.

    Returns
    -------
    np.ndarray
        float32 (Y, X). Multiplying a frame by it (and filling ``1 - mask`` with the frame mean)
        removes the wrap-around edge discontinuity that would otherwise give a peak at shift 0.
    """
    ny, nx = shape
    if taper_px <= 0:
        return np.ones(shape, np.float32)

    def ramp(n: int) -> np.ndarray:
        d = np.minimum(np.arange(n), np.arange(n)[::-1]).astype(np.float64)
        return 1.0 / (1.0 + np.exp(-(d - 2.0 * taper_px) / taper_px))

    return np.outer(ramp(ny), ramp(nx)).astype(np.float32)


def gaussian_spectrum(shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Fourier transform of a unit-sum Gaussian of ``sigma_px`` on the ``rfft2`` grid.

    Returns float32 (Y, X // 2 + 1).
    """
    ny, nx = shape
    fy = np.fft.fftfreq(ny)[:, None]
    fx = np.fft.rfftfreq(nx)[None, :]
    g = np.exp(-2.0 * np.pi**2 * sigma_px**2 * (fy**2 + fx**2))
    return g.astype(np.float32)


def prepare_taper(xp: ModuleType, frames: Any, mask: Any) -> Any:
    """``frames * mask + (1 - mask) * mean(frame)`` per frame; float32, same shape."""
    mean = frames.mean(axis=(-2, -1), keepdims=True)
    fused_out = fused.taper(xp, frames, mean, mask)
    if fused_out is not None:
        return fused_out
    out = frames - mean
    out *= mask
    out += mean
    return out


def reference_spectrum(xp: ModuleType, ref: Any, mask: Any, sigma_px: float) -> Any:
    """Whitened, conjugated, Gaussian-smoothed spectrum of the reference image(s).

    Parameters
    ----------
    ref : xp array, float32 (..., Y, X)
    mask : xp array, float32 (Y, X) taper (see :func:`taper_mask`)

    Returns
    -------
    xp array, complex64 (..., Y, X // 2 + 1)
    """
    fft = fft_module(xp)
    shape = ref.shape[-2:]
    r = fft.rfft2(prepare_taper(xp, ref.astype(xp.float32), mask))
    r = xp.conj(r) / (xp.abs(r) + _EPS)
    g = gaussian_spectrum(shape, sigma_px)
    # scale so that a perfect match gives a correlation peak of 1 (a quality number)
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    g_full = np.exp(-2.0 * np.pi**2 * sigma_px**2 * (fy**2 + fx**2))
    scale = np.float32(shape[0] * shape[1] / g_full.sum())
    return (r * xp.asarray(g * scale)).astype(xp.complex64)


def cross_spectrum(xp: ModuleType, frames: Any, ref_spec: Any, mask: Any, plan: Any = None) -> Any:
    """Whitened cross-power spectrum of tapered frames with the reference spectrum.

    Returns complex64 (..., Y, X // 2 + 1); its inverse rfft2 is the correlation surface, whose
    peak sits at ``(dy, dx) mod (Y, X)``. ``plan`` (CuPy only): an R2C cuFFT plan for ``frames``'
    shape, used instead of CuPy's plan cache (the CUDA-graph path owns its plans).
    """
    fft = fft_module(xp)
    tapered = prepare_taper(xp, frames, mask)
    f = fft.rfft2(tapered) if plan is None else fft.rfft2(tapered, plan=plan)
    if fused.whiten_mul(xp, f, ref_spec) is not None:
        return f
    # in place: at 512 x 512 these element-wise passes cost as much as an FFT on a CPU core
    den = xp.abs(f)
    den += _EPS
    f /= den
    f *= ref_spec
    return f


def correlate(xp: ModuleType, frames: Any, ref_spec: Any, mask: Any) -> Any:
    """Full phase-correlation surface of each frame with the reference; float32 (..., Y, X)."""
    fft = fft_module(xp)
    f = cross_spectrum(xp, frames, ref_spec, mask)
    return fft.irfft2(f, s=frames.shape[-2:]).astype(xp.float32, copy=False)


def _window_indices(n: int, m: int) -> np.ndarray:
    """Circular indices of lags -m-1 .. m+1 along an axis of length n."""
    lags = np.arange(-m - 1, m + 2)
    return np.mod(lags, n)


_INDEX_CACHE: dict[tuple[str, int, int], Any] = {}


def _device_window_indices(xp: ModuleType, n: int, m: int) -> Any:
    """:func:`_window_indices` as a cached ``xp`` array: uploading it on every call would be a
    blocking host-to-device copy in the middle of the GPU pipeline."""
    key = (xp.__name__, n, m)
    a = _INDEX_CACHE.get(key)
    if a is None:
        a = _INDEX_CACHE[key] = xp.asarray(_window_indices(n, m))
    return a


def _limits(shape: tuple[int, ...], max_shift_px: int) -> tuple[int, int]:
    ny, nx = shape[-2:]
    return int(min(max_shift_px, ny // 3)), int(min(max_shift_px, nx // 3))


def correlation_window(
    xp: ModuleType, spec: Any, shape: tuple[int, int], max_shift_px: int, plan: Any = None
) -> Any:
    """Correlation at lags ``-m-1 .. m+1`` on both axes from a cross spectrum.

    On numpy the inverse 2-D FFT is done axis by axis and only the ``2m + 3`` needed rows go
    through the second (x) pass: at 512 px and m = 20 that is ~45% less inverse-FFT work than
    ``irfft2``. On CuPy the full ``irfft2`` is used.

    ``plan`` (CuPy only): a C2R cuFFT plan for ``irfft2(spec, s=shape)``.

    Returns float32 (..., 2my+3, 2mx+3), lag 0 at index ``m + 1``.
    """
    fft = fft_module(xp)
    ny, nx = shape
    my, mx = _limits(shape, max_shift_px)
    if is_cupy(xp):
        # cuFFT's 2-D plan beats two 1-D passes with a strided axis; the saving is a CPU thing
        c = fft.irfft2(spec, s=shape) if plan is None else fft.irfft2(spec, s=shape, plan=plan)
        c = xp.take(c, _device_window_indices(xp, ny, my), axis=-2)
        return xp.take(c, _device_window_indices(xp, nx, mx), axis=-1)
    c = fft.ifft(spec, axis=-2)
    c = xp.take(c, _device_window_indices(xp, ny, my), axis=-2)
    c = fft.irfft(c, n=nx, axis=-1)
    out = xp.take(c, _device_window_indices(xp, nx, mx), axis=-1)
    return out.astype(xp.float32, copy=False)


def peak_subpixel(xp: ModuleType, corr: Any, max_shift_px: int) -> tuple[Any, Any]:
    """Sub-pixel peak of full correlation surfaces within ``|shift| <= max_shift_px``.

    Parameters
    ----------
    corr : xp array, float32 (..., Y, X)
        From :func:`correlate`.
    max_shift_px : int
        Largest shift searched on each axis (clamped to a third of the axis length).

    Returns
    -------
    shifts : xp array, float32 (..., 2)
        (dy, dx) in pixels.
    peak : xp array, float32 (...)
        Correlation value at the integer peak (a quality measure: ~1 for a clean match).
    """
    my, mx = _limits(corr.shape, max_shift_px)
    iy = xp.asarray(_window_indices(corr.shape[-2], my))
    ix = xp.asarray(_window_indices(corr.shape[-1], mx))
    return window_peak(xp, xp.take(xp.take(corr, iy, axis=-2), ix, axis=-1))


def window_peak(xp: ModuleType, win: Any) -> tuple[Any, Any]:
    """Sub-pixel peak of correlation windows (..., 2my+3, 2mx+3) with lag 0 at the centre.

    The one-pixel margin around the search box feeds the 3-point fit; returns as
    :func:`peak_subpixel`.
    """
    fused_out = fused.window_peak(xp, win)
    if fused_out is not None:
        return fused_out
    lead = win.shape[:-2]
    wy, wx = win.shape[-2:]
    my, mx = (wy - 3) // 2, (wx - 3) // 2
    flat = win.reshape(-1, wy, wx)
    inner = flat[:, 1:-1, 1:-1].reshape(flat.shape[0], -1)
    arg = xp.argmax(inner, axis=1)
    py = arg // (wx - 2) + 1
    px = arg % (wx - 2) + 1
    b = xp.arange(flat.shape[0])
    c0 = flat[b, py, px]
    floor = xp.maximum(c0, _EPS) * 1e-3
    cym = xp.maximum(flat[b, py - 1, px], floor)
    cyp = xp.maximum(flat[b, py + 1, px], floor)
    cxm = xp.maximum(flat[b, py, px - 1], floor)
    cxp = xp.maximum(flat[b, py, px + 1], floor)
    lc0 = xp.log(xp.maximum(c0, _EPS))
    sub_y = _gauss3(xp, xp.log(cym), lc0, xp.log(cyp))
    sub_x = _gauss3(xp, xp.log(cxm), lc0, xp.log(cxp))
    dy = (py - (my + 1)).astype(xp.float32) + sub_y
    dx = (px - (mx + 1)).astype(xp.float32) + sub_x
    shifts = xp.stack([dy, dx], axis=-1).reshape((*lead, 2)).astype(xp.float32)
    return shifts, c0.reshape(lead).astype(xp.float32)


def _gauss3(xp: ModuleType, lm: Any, l0: Any, lp: Any) -> Any:
    """Vertex of the parabola through (-1, lm), (0, l0), (1, lp), clipped to +-0.5."""
    den = lm - 2.0 * l0 + lp
    safe = xp.where(xp.abs(den) > 1e-12, den, -1.0)
    off = 0.5 * (lm - lp) / safe
    return xp.clip(xp.where(den < 0, off, 0.0), -0.5, 0.5).astype(xp.float32)


def estimate_shifts(
    xp: ModuleType,
    frames: Any,
    ref_spec: Any,
    mask: Any,
    max_shift_px: int,
    plans: tuple[Any, Any] | None = None,
) -> tuple[Any, Any]:
    """Rigid (dy, dx) of each frame; see :func:`peak_subpixel` for the returned arrays.

    ``plans`` (CuPy only): ``(rfft2 plan, irfft2 plan)`` for ``frames``' shape, or None for
    CuPy's cached plans.
    """
    r2c, c2r = plans if plans is not None else (None, None)
    spec = cross_spectrum(xp, frames, ref_spec, mask, r2c)
    return window_peak(xp, correlation_window(xp, spec, frames.shape[-2:], max_shift_px, c2r))

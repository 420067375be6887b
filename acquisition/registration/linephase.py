"""Bidirectional (resonant) scanning line-phase offset: estimate and correct.

With bidirectional scanning the odd lines (1, 3, 5, ...) are acquired right-to-left and land
displaced along x relative to the even lines. Convention: ``phase_px = p`` means
``odd_row(x) ~= true_row(x - p)``; :func:`correct_line_phase` shifts odd rows by ``-p``.

The estimate is suite2p's: whitened 1-D cross-correlation of each odd row with the even row above
it, averaged over rows and frames, plus the same 3-point Gaussian sub-pixel fit as the rigid peak.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from acquisition.xp import cached_constant, fft_module, to_host

_EPS = 1e-6


def estimate_line_phase(xp: ModuleType, frames: Any, max_phase_px: int = 10) -> float:
    """Odd-vs-even row offset in px (float, sub-pixel) from a stack of frames.

    Parameters
    ----------
    frames : xp array (N, Y, X) or (Y, X), any real dtype
    max_phase_px : int
        Largest offset searched.

    Returns
    -------
    float
        ``p`` such that odd rows are displaced by ``+p`` px along x.
    """
    fft = fft_module(xp)
    f = xp.asarray(frames, dtype=xp.float32)
    if f.ndim == 2:
        f = f[None]
    n_pairs = f.shape[1] // 2
    odd = f[:, 1 : 2 * n_pairs : 2, :]
    even = f[:, 0 : 2 * n_pairs : 2, :]
    fo = fft.rfft(odd - odd.mean(axis=-1, keepdims=True), axis=-1)
    fe = fft.rfft(even - even.mean(axis=-1, keepdims=True), axis=-1)
    cross = (fo / (xp.abs(fo) + _EPS)) * xp.conj(fe / (xp.abs(fe) + _EPS))
    nx = f.shape[-1]
    # Gaussian weighting, as in the 2-D phase correlation, makes the peak a sampled Gaussian.
    g = xp.asarray(np.exp(-2 * np.pi**2 * 1.15**2 * np.fft.rfftfreq(nx) ** 2).astype(np.float32))
    cc = to_host(fft.irfft(cross.mean(axis=(0, 1)) * g, n=nx)).astype(np.float64)
    m = int(min(max_phase_px, nx // 4))
    lags = np.arange(-m, m + 1)
    vals = cc[np.mod(lags, nx)]
    k = int(np.argmax(vals))
    p = float(lags[k])
    if 0 < k < len(lags) - 1:
        lo, c0, hi = (np.log(max(v, 1e-9)) for v in (vals[k - 1], vals[k], vals[k + 1]))
        den = lo - 2 * c0 + hi
        if den < 0:
            p += float(np.clip(0.5 * (lo - hi) / den, -0.5, 0.5))
    return p


def needs_fourier_line_phase(phase_px: float) -> bool:
    """True when :func:`correct_line_phase` shifts by FFT (fractional offset >= 0.05 px)."""
    return abs(phase_px) >= 0.05 and abs(phase_px - round(phase_px)) >= 1e-3


def correct_line_phase(
    xp: ModuleType, frames: Any, phase_px: float, plans: tuple[Any, Any] | None = None
) -> Any:
    """Shift odd rows of float32 ``frames`` (..., Y, X) by ``-phase_px`` along x (in place).

    Integer offsets use a roll; fractional ones an exact 1-D Fourier shift of the odd rows.
    Offsets under 0.05 px are below what the estimate resolves and are skipped (it also saves
    two FFTs per frame on the streaming path). ``plans`` (CuPy only): ``(rfft plan, irfft plan)``
    for the odd rows, instead of CuPy's plan cache. Returns ``frames``.
    """
    if abs(phase_px) < 0.05:
        return frames
    odd = frames[..., 1::2, :]
    if abs(phase_px - round(phase_px)) < 1e-3:
        frames[..., 1::2, :] = xp.roll(odd, -round(phase_px), axis=-1)
        return frames
    fft = fft_module(xp)
    nx = frames.shape[-1]
    k = cached_constant(xp, ("rfftfreq", nx), lambda: np.fft.rfftfreq(nx).astype(np.float32))
    ramp = xp.exp((2j * np.pi * phase_px) * k).astype(xp.complex64)
    if plans is None:
        frames[..., 1::2, :] = fft.irfft(fft.rfft(odd, axis=-1) * ramp, n=nx, axis=-1)
        return frames
    # as context managers: some CuPy versions ignore a 1-D plan passed as an argument to
    # rfft and take one from the plan cache instead, which may evict and destroy it later
    with plans[0]:
        spec = fft.rfft(odd, axis=-1)
    spec = spec * ramp
    with plans[1]:
        frames[..., 1::2, :] = fft.irfft(spec, n=nx, axis=-1)
    return frames

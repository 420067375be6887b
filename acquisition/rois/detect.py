"""Quick automatic ROI detection from the local correlation image of the first N frames.

The local correlation image (each pixel's mean temporal correlation with its 8 neighbours) is
high where neighbouring pixels share a signal, i.e. on active cell bodies, and near zero in
noise. Seeds are its local maxima above a threshold; each cell is the connected set of pixels
around the seed whose correlation exceeds ``fraction`` of the seed's, within ``radius_px``.
This is a fast first pass for live ΔF/F, not a replacement for suite2p/CaImAn offline.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage

from acquisition.rois.model import RoiSet
from acquisition.xp import to_host

if TYPE_CHECKING:
    from acquisition.registration.registrar import RegistrationResult


def local_correlation_image(xp: ModuleType, frames: Any) -> np.ndarray:
    """float32 (Y, X) mean correlation of each pixel's time course with its 8 neighbours.

    Parameters
    ----------
    frames : xp array (N, Y, X), registered, any real dtype
    """
    f = xp.asarray(frames, dtype=xp.float32)
    f = f - f.mean(axis=0, keepdims=True)
    f = f / (xp.sqrt((f * f).mean(axis=0, keepdims=True)) + 1e-6)
    ny, nx = f.shape[1:]
    acc = xp.zeros((ny, nx), xp.float32)
    cnt = xp.zeros((ny, nx), xp.float32)
    for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):
        # each neighbour pair is computed once and credited to both pixels
        ys0, ys1 = slice(0, ny - dy), slice(dy, ny)
        xs0 = slice(max(0, -dx), nx - max(0, dx))
        xs1 = slice(max(0, dx), nx - max(0, -dx))
        c = (f[:, ys0, xs0] * f[:, ys1, xs1]).mean(axis=0)
        acc[ys0, xs0] += c
        acc[ys1, xs1] += c
        cnt[ys0, xs0] += 1
        cnt[ys1, xs1] += 1
    return to_host(acc / cnt).astype(np.float32)


def detect_rois(
    xp: ModuleType,
    frames: Any,
    cell_radius_px: float = 6.0,
    threshold: float | None = None,
    fraction: float = 0.5,
    max_rois: int = 1000,
    min_pixels: int | None = None,
    border_px: int = 0,
) -> RoiSet:
    """Detect cells in registered ``frames`` (N, Y, X).

    Parameters
    ----------
    cell_radius_px : float
        Expected soma radius, px (sets the seed spacing and the largest ROI extent).
    threshold : float, optional
        Lowest seed correlation; default: median + 4 robust SDs of the correlation image.
    fraction : float
        A pixel joins a seed's ROI when its correlation is above the background (the image's
        median) by more than ``fraction`` x the seed's height above it (half maximum by default).
    max_rois : int
        Keep at most this many ROIs (strongest first).
    min_pixels : int, optional
        Smallest ROI kept, px; default a quarter of a soma's area (pi r^2 / 4).
    border_px : int
        Width of the frame border to ignore, px. Registration wraps pixels within max |shift| of
        the border around (see :mod:`acquisition.registration.shift`): their correlation is an
        artefact, so pass :func:`border_for_shifts` of the registration's shifts.
    """
    corr = ndimage.gaussian_filter(local_correlation_image(xp, frames), 1.0)
    ny, nx = corr.shape
    if border_px > 0:
        if 2 * border_px >= min(ny, nx):
            raise ValueError(f"border_px={border_px} leaves nothing of a {ny} x {nx} frame")
        # Wrapped pixels drop to the background so they neither seed nor join an ROI.
        inner = corr[border_px:-border_px, border_px:-border_px]
        corr = np.full_like(corr, float(np.median(inner)))
        corr[border_px:-border_px, border_px:-border_px] = inner
    med = float(np.median(corr))
    if threshold is None:
        mad = float(np.median(np.abs(corr - med))) * 1.4826
        threshold = med + 4.0 * max(mad, 1e-3)
    if min_pixels is None:
        min_pixels = max(int(np.pi * cell_radius_px**2 / 4), 4)
    size = int(2 * cell_radius_px) | 1
    peaks = (corr == ndimage.maximum_filter(corr, size=size)) & (corr > threshold)
    py, px = np.nonzero(peaks)
    order = np.argsort(-corr[py, px])
    taken = np.zeros((ny, nx), bool)
    # A soma is at most ~1.5 radii from its brightest-correlation pixel; further out lies
    # neuropil that merely shares the cell's slow signal.
    reach_px = 1.5 * cell_radius_px
    r = int(np.ceil(reach_px))
    pixels: list[np.ndarray] = []
    for i in order:
        if len(pixels) >= max_rois:
            break
        y, x = int(py[i]), int(px[i])
        if taken[y, x]:
            continue
        y0, y1, x0, x1 = max(y - r, 0), min(y + r + 1, ny), max(x - r, 0), min(x + r + 1, nx)
        local = corr[y0:y1, x0:x1]
        gy, gx = np.mgrid[y0:y1, x0:x1]
        cand = (local > med + fraction * (corr[y, x] - med)) & ~taken[y0:y1, x0:x1]
        cand &= (gy - y) ** 2 + (gx - x) ** 2 <= reach_px**2
        lab, _ = ndimage.label(cand)
        keep = lab == lab[y - y0, x - x0]
        if lab[y - y0, x - x0] == 0 or keep.sum() < min_pixels:
            continue
        taken[y0:y1, x0:x1] |= keep
        pixels.append(np.sort((gy[keep] * nx + gx[keep]).astype(np.int64)))
    weights = [np.ones(p.size, np.float32) for p in pixels]
    names = [f"auto:{k}" for k in range(len(pixels))]
    return RoiSet((ny, nx), pixels, weights, names, "auto-detect")


def border_for_shifts(shifts_px: Any, block_shifts_px: Any = None) -> int:
    """Border width (px) holding wrapped pixels after registration.

    ``shifts_px`` is the rigid (B, 2) displacement per frame; ``block_shifts_px`` the optional
    piecewise-rigid residual (B, nby, nbx, 2), which moves pixels further.
    """
    s = np.abs(to_host(shifts_px))
    if s.size == 0:
        return 0
    extra = 0.0
    if block_shifts_px is not None:
        b = np.abs(to_host(block_shifts_px))
        extra = float(b.max()) if b.size else 0.0
    return int(np.ceil(float(s.max()) + extra)) + 1


def detect_rois_registered(xp: ModuleType, result: RegistrationResult, **kwargs: Any) -> RoiSet:
    """:func:`detect_rois` on a registration's output, ignoring the border its shifts wrapped.

    ``kwargs`` go to :func:`detect_rois` (``cell_radius_px``, ``threshold``...).
    """
    border = border_for_shifts(result.shifts_px, result.block_shifts_px)
    return detect_rois(xp, result.frames, border_px=border, **kwargs)

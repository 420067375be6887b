"""Quick automatic ROI detection from the local correlation image of the first N frames.

The local correlation image (each pixel's mean temporal correlation with its 8 neighbours) is
high where neighbouring pixels share a signal, i.e. on active cell bodies, and near zero in
noise. Seeds are its local maxima above a threshold; each cell is the connected set of pixels
around the seed whose correlation exceeds ``fraction`` of the seed's, within ``radius_px``.
This is a fast first pass for live ΔF/F, not a replacement for suite2p/CaImAn offline.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
from scipy import ndimage

from acquisition.rois.model import RoiSet
from acquisition.xp import to_host


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
    min_pixels: int = 10,
) -> RoiSet:
    """Detect cells in registered ``frames`` (N, Y, X).

    Parameters
    ----------
    cell_radius_px : float
        Expected soma radius, px (sets the seed spacing and the largest ROI extent).
    threshold : float, optional
        Lowest seed correlation; default: median + 4 robust SDs of the correlation image.
    fraction : float
        A pixel joins a seed's ROI when its correlation is above ``fraction`` x the seed's.
    max_rois, min_pixels : int
        Keep at most this many ROIs (strongest first), each with at least ``min_pixels``.
    """
    corr = ndimage.gaussian_filter(local_correlation_image(xp, frames), 1.0)
    if threshold is None:
        med = float(np.median(corr))
        mad = float(np.median(np.abs(corr - med))) * 1.4826
        threshold = med + 4.0 * max(mad, 1e-3)
    size = int(2 * cell_radius_px) | 1
    peaks = (corr == ndimage.maximum_filter(corr, size=size)) & (corr > threshold)
    py, px = np.nonzero(peaks)
    order = np.argsort(-corr[py, px])
    ny, nx = corr.shape
    taken = np.zeros((ny, nx), bool)
    r = int(np.ceil(2 * cell_radius_px))
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
        cand = (local > fraction * corr[y, x]) & ~taken[y0:y1, x0:x1]
        cand &= (gy - y) ** 2 + (gx - x) ** 2 <= (2 * cell_radius_px) ** 2
        lab, _ = ndimage.label(cand)
        keep = lab == lab[y - y0, x - x0]
        if lab[y - y0, x - x0] == 0 or keep.sum() < min_pixels:
            continue
        taken[y0:y1, x0:x1] |= keep
        pixels.append(np.sort((gy[keep] * nx + gx[keep]).astype(np.int64)))
    weights = [np.ones(p.size, np.float32) for p in pixels]
    names = [f"auto:{k}" for k in range(len(pixels))]
    return RoiSet((ny, nx), pixels, weights, names, "auto-detect")

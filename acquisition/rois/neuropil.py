"""Neuropil annuli (suite2p-like) and the sparse weight matrix that turns a frame into traces.

Neuropil of a cell: the ``min_pixels`` pixels nearest to the cell that are farther than
``inner_radius_px`` from EVERY cell (so no cell's own signal leaks into another's neuropil) and at
most ``max_radius_px`` from it. Taking the nearest allowed pixels is the same as growing an
annulus until it holds ``min_pixels`` (suite2p grows its donut the same way) but needs one
distance transform per cell on a local crop.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
from scipy import ndimage

from acquisition.rois.model import RoiSet
from acquisition.xp import sparse_module


def neuropil_pixels(
    rois: RoiSet,
    inner_radius_px: float = 2.0,
    min_pixels: int = 350,
    max_radius_px: float = 60.0,
) -> list[np.ndarray]:
    """Per cell, the flat int64 indices of its neuropil annulus (sorted).

    Parameters
    ----------
    rois : RoiSet
    inner_radius_px : float
        Gap kept between any cell and any neuropil pixel, px.
    min_pixels : int
        Pixels per annulus (fewer only when ``max_radius_px`` is reached).
    max_radius_px : float
        Largest distance of a neuropil pixel from its cell, px.
    """
    ny, nx = rois.shape
    cells = rois.cell_mask()
    # distance of each pixel to the nearest cell pixel; allowed = beyond the inner radius
    allowed = ndimage.distance_transform_edt(~cells) > inner_radius_px
    out: list[np.ndarray] = []
    for p in rois.pixels:
        if p.size == 0:
            out.append(np.zeros(0, np.int64))
            continue
        ys, xs = p // nx, p % nx
        pad = int(inner_radius_px + 2.0 * np.sqrt(min_pixels / np.pi) + 4)
        while True:
            pad = min(pad, int(np.ceil(max_radius_px)) + 1)
            y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, ny)
            x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, nx)
            own = np.ones((y1 - y0, x1 - x0), bool)
            own[ys - y0, xs - x0] = False
            d = ndimage.distance_transform_edt(own)
            ok = allowed[y0:y1, x0:x1] & (d <= max_radius_px)
            if ok.sum() >= min_pixels or pad > max_radius_px:
                break
            pad *= 2
        cy, cx = np.nonzero(ok)
        order = np.argsort(d[cy, cx], kind="stable")[:min_pixels]
        flat = (cy[order] + y0) * nx + (cx[order] + x0)
        out.append(np.sort(flat.astype(np.int64)))
    return out


def build_weights(rois: RoiSet, neuropil: list[np.ndarray] | None = None) -> Any:
    """Sparse (2n, Y*X) float32 CSR matrix: rows 0..n-1 cells, n..2n-1 their neuropil.

    Each row sums to 1 (cell rows weighted by the ROI weights, neuropil rows uniform), so
    ``W @ frame.ravel()`` gives the mean fluorescence of every cell and every annulus at once.
    An empty annulus gives a zero row (its Fneu is 0).
    """
    import scipy.sparse as sp

    n = len(rois)
    npx = rois.shape[0] * rois.shape[1]
    rows, cols, vals = [], [], []
    for k, (p, w) in enumerate(zip(rois.pixels, rois.weights, strict=True)):
        s = float(w.sum())
        rows.append(np.full(p.size, k, np.int64))
        cols.append(p)
        vals.append((w / s if s > 0 else w).astype(np.float32))
    for k, p in enumerate(neuropil or []):
        rows.append(np.full(p.size, n + k, np.int64))
        cols.append(p)
        vals.append(np.full(p.size, 1.0 / max(p.size, 1), np.float32))
    r = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    v = np.concatenate(vals) if vals else np.zeros(0, np.float32)
    w = sp.csr_matrix((v, (r, c)), shape=(2 * n, npx), dtype=np.float32)
    w.sum_duplicates()
    return w


def weights_to_xp(xp: ModuleType, w: Any) -> Any:
    """Move a scipy CSR matrix to the backend (cupyx CSR on CuPy; unchanged on numpy)."""
    sp = sparse_module(xp)
    if sp.__name__.startswith("scipy"):
        return w
    return sp.csr_matrix(w)

"""Piecewise-rigid registration (suite2p / NoRMCorre style), applied after the rigid step.

The frame is cut into overlapping square blocks (``ceil(1.5 * L / block_px)`` per axis, as
suite2p does); each block is phase-correlated against the same block of the reference; the
per-block shifts are interpolated to a smooth per-pixel displacement field by separable linear
interpolation between block centres (two gathers and blends per axis);
the frame is resampled bilinearly along that field with edge-clamped indices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from acquisition.registration import fused
from acquisition.registration.phasecorr import (
    correlation_window,
    cross_spectrum,
    reference_spectrum,
    taper_mask,
    window_peak,
)


def block_starts(length: int, block_px: int) -> np.ndarray:
    """Start offsets of blocks along one axis (int64, evenly spread, last ends at ``length``)."""
    block_px = min(block_px, length)
    n = max(1, math.ceil(1.5 * length / block_px)) if block_px < length else 1
    return np.round(np.linspace(0, length - block_px, n)).astype(np.int64)


def interp_indices(length: int, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation from block centres to every pixel along one axis.

    Returns ``(j0, j1, t)``: int64 (length,) neighbouring block indices and float32 (length,)
    weight of ``j1``, so ``value(pos) = v[j0] * (1 - t) + v[j1] * t`` (clamped beyond the end
    centres). Two gathers and a blend: a (Y, n) @ (n, X) matmul does the same work through BLAS,
    whose thread pool stalls badly on a loaded machine.
    """
    n = len(centres)
    pos = np.arange(length, dtype=np.float64)
    if n == 1:
        z = np.zeros(length, np.int64)
        return z, z, np.zeros(length, np.float32)
    j = np.clip(np.searchsorted(centres, pos) - 1, 0, n - 2)
    t = np.clip((pos - centres[j]) / (centres[j + 1] - centres[j]), 0.0, 1.0)
    return j.astype(np.int64), (j + 1).astype(np.int64), t.astype(np.float32)


@dataclass
class BlockGrid:
    """Block layout for one frame shape; arrays live on ``xp``."""

    block_px: int
    ys: np.ndarray  # (nby,) block starts
    xs: np.ndarray  # (nbx,)
    yidx: Any  # xp int64 (nby, by)
    xidx: Any  # xp int64 (nbx, bx)
    iy: tuple[Any, Any, Any]  # xp (j0, j1, t) along y, each (Y,)
    ix: tuple[Any, Any, Any]  # xp (j0, j1, t) along x, each (X,)
    mask: Any  # xp float32 (by, bx) taper

    @classmethod
    def build(
        cls, xp: ModuleType, shape: tuple[int, int], block_px: int, taper_px: float
    ) -> BlockGrid:
        ny, nx = shape
        by, bx = min(block_px, ny), min(block_px, nx)
        ys, xs = block_starts(ny, by), block_starts(nx, bx)
        return cls(
            block_px=block_px,
            ys=ys,
            xs=xs,
            yidx=xp.asarray(ys[:, None] + np.arange(by)[None, :]),
            xidx=xp.asarray(xs[:, None] + np.arange(bx)[None, :]),
            iy=tuple(xp.asarray(a) for a in interp_indices(ny, ys + (by - 1) / 2.0)),
            ix=tuple(xp.asarray(a) for a in interp_indices(nx, xs + (bx - 1) / 2.0)),
            mask=xp.asarray(taper_mask((by, bx), taper_px)),
        )

    def blocks(self, xp: ModuleType, frames: Any) -> Any:
        """(B, Y, X) -> (B, nby, nbx, by, bx) copies of the blocks."""
        b = xp.take(frames, self.yidx.reshape(-1), axis=1)  # (B, nby*by, X)
        b = xp.take(b, self.xidx.reshape(-1), axis=2)  # (B, nby*by, nbx*bx)
        nb, by = self.yidx.shape
        nbx, bx = self.xidx.shape
        b = b.reshape(frames.shape[0], nb, by, nbx, bx)
        return b.transpose(0, 1, 3, 2, 4)


class NonrigidRegistration:
    """Block-wise shift estimation against a reference, and the warp that undoes it.

    Parameters
    ----------
    xp : module
        numpy or cupy.
    reference : xp array float32 (Y, X)
        Rigid-registered reference image.
    block_px : int
        Block side in px (128 is suite2p's default for 512 px frames).
    max_shift_px : int
        Largest residual block shift searched after the rigid step.
    smooth_sigma_px, taper_px : float
        As for the rigid step.
    """

    def __init__(
        self,
        xp: ModuleType,
        reference: Any,
        block_px: int = 128,
        max_shift_px: int = 5,
        smooth_sigma_px: float = 1.15,
        taper_px: float = 3.45,
    ) -> None:
        self.xp = xp
        self.shape = tuple(reference.shape)
        self.max_shift_px = max_shift_px
        self.smooth_sigma_px = smooth_sigma_px
        self.grid = BlockGrid.build(xp, self.shape, block_px, taper_px)
        self.set_reference(reference)

    def set_reference(self, reference: Any) -> None:
        xp = self.xp
        blocks = self.grid.blocks(xp, xp.asarray(reference, dtype=xp.float32)[None])[0]
        self.ref_spec = reference_spectrum(xp, blocks, self.grid.mask, self.smooth_sigma_px)

    def estimate(self, frames: Any) -> tuple[Any, Any]:
        """Block shifts (B, nby, nbx, 2) float32 (dy, dx) and peak values (B, nby, nbx)."""
        xp = self.xp
        blk = self.grid.blocks(xp, frames)
        spec = cross_spectrum(xp, blk, self.ref_spec, self.grid.mask)
        return window_peak(xp, correlation_window(xp, spec, blk.shape[-2:], self.max_shift_px))

    def field(self, block_shifts: Any) -> tuple[Any, Any]:
        """Per-pixel displacement (B, Y, X) for y and for x, from block shifts (B, nby, nbx, 2)."""
        xp = self.xp
        (y0, y1, ty), (x0, x1, tx) = self.grid.iy, self.grid.ix
        s = xp.asarray(block_shifts, dtype=xp.float32)
        ty = ty[None, :, None, None]
        rows = xp.take(s, y0, axis=1) * (1 - ty) + xp.take(s, y1, axis=1) * ty  # (B, Y, nbx, 2)
        tx = tx[None, None, :, None]
        full = xp.take(rows, x0, axis=2) * (1 - tx) + xp.take(rows, x1, axis=2) * tx
        return full[..., 0], full[..., 1]

    def warp(self, frames: Any, block_shifts: Any) -> Any:
        """Undo the displacement field: ``out(y, x) = frame(y + fy, x + fx)``, bilinear, clamped."""
        xp = self.xp
        out = fused.nonrigid_warp(xp, frames, block_shifts, self.grid)
        if out is not None:
            return out
        ny, nx = self.shape
        fy, fx = self.field(block_shifts)
        yy = xp.arange(ny, dtype=xp.float32)[None, :, None] + fy
        xx = xp.arange(nx, dtype=xp.float32)[None, None, :] + fx
        yy = xp.clip(yy, 0, ny - 1)
        xx = xp.clip(xx, 0, nx - 1)
        y0 = xp.minimum(xp.floor(yy).astype(xp.int64), ny - 2 if ny > 1 else 0)
        x0 = xp.minimum(xp.floor(xx).astype(xp.int64), nx - 2 if nx > 1 else 0)
        wy = yy - y0
        wx = xx - x0
        flat = xp.ascontiguousarray(frames).reshape(-1)
        # flat 1-D takes: much faster than broadcast advanced indexing on numpy
        base = y0 * nx + x0 + (xp.arange(frames.shape[0]) * (ny * nx))[:, None, None]
        a00 = xp.take(flat, base)
        a01 = xp.take(flat, base + 1)
        a10 = xp.take(flat, base + nx)
        a11 = xp.take(flat, base + nx + 1)
        top = a00 + wx * (a01 - a00)
        bot = a10 + wx * (a11 - a10)
        return (top + wy * (bot - top)).astype(xp.float32, copy=False)

    def register(self, frames: Any) -> tuple[Any, Any, Any]:
        """Estimate and undo block shifts of rigid-registered ``frames`` (B, Y, X) float32.

        Returns registered frames (B, Y, X), block shifts (B, nby, nbx, 2), peaks (B, nby, nbx).
        """
        s, peak = self.estimate(frames)
        return self.warp(frames, s), s, peak

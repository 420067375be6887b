"""Traces from frames: one sparse product, neuropil subtraction, causal baseline, ΔF/F.

- ``raw = W @ frame`` with ``W`` from :func:`acquisition.rois.build_weights` gives F (rows
  0..n-1) and Fneu (rows n..2n-1) for all ROIs in one product (a batch of frames is one SpMM).
- ``Fc = F - c * Fneu`` (``c = 0.7`` by default, suite2p's value).
- Baseline ``F0``: the ``baseline_percentile``-th percentile of Fc over the last
  ``baseline_window_s`` (causal: only past and present frames). Choice for streaming: a ring
  buffer of the window, and the order statistic recomputed every ``baseline_update_s`` (with
  ``partition`` on numpy, one radix-select kernel on CuPy (:mod:`acquisition.traces.select`;
  the same value), O(window) per ROI) rather than every frame; frames in between use the latest
  value. A baseline that moves on a scale of tens of seconds loses nothing by being refreshed once
  a second, and the cost drops from O(window) to O(window / update) per frame. Until the window
  fills, the percentile is taken over the frames seen so far, refreshed every frame for the
  first update interval (so the first frames get a baseline at all).
- ``ΔF/F = (Fc - F0) / max(F0, f0_floor)``: the floor keeps dim or over-subtracted ROIs (F0 near or
  below zero) from producing huge values; it is in the frames' units (counts).

Everything is on ``xp`` so a batch stays on the GPU until ΔF/F is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from acquisition.traces import fused, select
from acquisition.xp import is_cupy


@dataclass
class TraceOptions:
    """Trace parameters (mirrors the trace fields of ``rig.core.config.ImagingConfig``).

    Attributes
    ----------
    neuropil_coefficient : float
        ``c`` in ``F - c * Fneu``.
    baseline_window_s : float
        Causal baseline window, s.
    baseline_percentile : float
        Percentile (0..100) of Fc in the window taken as F0.
    baseline_update_s : float
        Seconds between baseline refreshes.
    f0_floor : float
        Smallest F0 used as the ΔF/F denominator, in frame units (counts).
    """

    neuropil_coefficient: float = 0.7
    baseline_window_s: float = 60.0
    baseline_percentile: float = 8.0
    baseline_update_s: float = 1.0
    f0_floor: float = 1.0


class CausalBaseline:
    """Running low percentile over a ring buffer (see module docstring).

    Parameters
    ----------
    xp : module
    n : int
        Number of traces.
    window_frames, update_every : int
        Window length and refresh interval, frames.
    percentile : float
        0..100.
    """

    def __init__(
        self, xp: ModuleType, n: int, window_frames: int, percentile: float, update_every: int
    ) -> None:
        self.xp = xp
        self.n = n
        self.window = max(1, int(window_frames))
        self.update_every = max(1, int(update_every))
        self.percentile = float(percentile)
        # (n, window): the order statistic runs along the contiguous last axis (numpy and CuPy
        # both partition the last axis in place; another axis costs a transposed copy first)
        self.ring = xp.zeros((n, self.window), xp.float32)
        self.count = 0  # frames seen
        self.refreshes = 0  # order-statistic recomputations so far (for latency diagnostics)
        self.f0 = xp.zeros(n, xp.float32)
        # compile and check the CuPy selection kernel now, not on the first (timed) refresh
        select.prepare(xp)

    def _refresh(self) -> None:
        m = min(self.count, self.window)
        k = round(self.percentile / 100.0 * (m - 1))
        f0 = select.kth_smallest_rows(self.xp, self.ring, m, k)  # CuPy: one kernel, same value
        if f0 is None:
            data = self.ring[:, :m] if m < self.window else self.ring
            f0 = self.xp.partition(data, k, axis=1)[:, k]
        self.f0 = f0
        self.refreshes += 1

    def refresh_due(self, t: int) -> bool:
        """Whether the frame with 0-based index ``t`` ends with a refresh (the rule of
        :meth:`update`: every frame during the first interval, then every ``update_every``-th).
        The CUDA-graph streaming path writes the ring on the device and asks this on the host."""
        u = self.update_every
        return t < u or t % u == u - 1

    def update(self, fc: Any) -> Any:
        """Append ``fc`` (B, n) float32 frames and return their baselines (B, n)."""
        xp = self.xp
        b = fc.shape[0]
        u = self.update_every
        out = xp.empty((b, self.n), xp.float32)
        i = 0
        while i < b:
            t = self.count
            # next refresh point: every frame during the first interval, then every u-th
            nxt = t if t < u else t + (u - 1 - t % u) % u
            run = min(nxt - t + 1, b - i)
            self._write(fc[i : i + run])
            if t + run - 1 == nxt:
                if run > 1:
                    out[i : i + run - 1] = self.f0
                self._refresh()
                out[i + run - 1] = self.f0
            else:
                out[i : i + run] = self.f0
            i += run
        return out

    def _write(self, rows: Any) -> None:
        r = rows.shape[0]
        start = self.count % self.window
        first = min(r, self.window - start)
        self.ring[:, start : start + first] = rows[:first].T
        if first < r:
            self.ring[:, : r - first] = rows[first:].T
        self.count += r


@dataclass
class TraceBatch:
    """Traces of one batch of frames (xp arrays, float32, shape (B, n_cells) each)."""

    f: Any
    fneu: Any
    dff: Any


class TraceExtractor:
    """Frames -> F, Fneu -> ΔF/F, streaming-safe (keeps baseline state between calls).

    Parameters
    ----------
    xp : module
    weights : sparse matrix (2n, Y*X)
        On the backend already (see :func:`acquisition.rois.weights_to_xp`).
    frame_rate_hz : float
    options : TraceOptions
    """

    def __init__(
        self,
        xp: ModuleType,
        weights: Any,
        frame_rate_hz: float,
        options: TraceOptions | None = None,
    ) -> None:
        self.xp = xp
        self.w = weights
        self.opt = options or TraceOptions()
        # raw CSR arrays for the fused CuPy product (int32 indices, as cuSPARSE uses too)
        self._csr = None
        if (
            is_cupy(xp)
            and getattr(weights, "indices", None) is not None
            and weights.indices.dtype == xp.int32
            and weights.indptr.dtype == xp.int32
        ):
            self._csr = (weights.data.astype(xp.float32), weights.indices, weights.indptr)
        self.n = int(weights.shape[0]) // 2
        self.frame_rate_hz = float(frame_rate_hz)
        self.baseline = CausalBaseline(
            xp,
            self.n,
            window_frames=round(self.opt.baseline_window_s * frame_rate_hz),
            percentile=self.opt.baseline_percentile,
            update_every=round(self.opt.baseline_update_s * frame_rate_hz),
        )

    def raw(self, frames: Any) -> Any:
        """(B, Y, X) float32 -> (B, 2n) float32: mean of each cell and each annulus."""
        out = fused.csr_rows(self.xp, self._csr, frames)
        if out is not None:
            return out
        b = frames.shape[0]
        flat = frames.reshape(b, -1)
        if b == 1:  # streaming: a sparse matrix-vector product is cheaper than SpMM
            return (self.w @ flat[0]).reshape(1, -1).astype(self.xp.float32, copy=False)
        return (self.w @ flat.T).T.astype(self.xp.float32, copy=False)

    def process(self, frames: Any) -> TraceBatch:
        """Registered frames (B, Y, X) -> :class:`TraceBatch`; advances the baseline state."""
        raw = self.raw(frames)
        return self.from_raw(raw)

    def from_raw(self, raw: Any) -> TraceBatch:
        xp = self.xp
        f = raw[:, : self.n]
        fneu = raw[:, self.n :]
        c = self.opt.neuropil_coefficient
        fc = fused.neuropil_fc(xp, f, fneu, c)
        if fc is None:
            fc = f - c * fneu
        f0 = self.baseline.update(xp.ascontiguousarray(fc))
        dff = fused.neuropil_dff(xp, fc, f0, self.opt.f0_floor)
        if dff is None:
            dff = (fc - f0) / xp.maximum(f0, self.opt.f0_floor)
        return TraceBatch(f, fneu, dff.astype(xp.float32, copy=False))

"""Thread-safe ring buffers that let emitter threads hand high-rate data to the GUI.

The lever stream (1 kHz) and the ΔF/F stream (every ROI, every frame) arrive on reader and
pipeline threads; redrawing per batch would flood the Qt event loop, so the emitters only copy
into these buffers (no Qt involved) and the GUI reads a snapshot on its own redraw timer.
"""

from __future__ import annotations

import threading

import numpy as np


class LeverRing:
    """The most recent lever samples.

    Parameters
    ----------
    capacity : int
        Samples kept; 10 s at 1 kHz needs 10 000, the default leaves room for trajectories.
    """

    def __init__(self, capacity: int = 20_000) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1 sample, got {capacity}")
        self.capacity = capacity
        self._t_us = np.zeros(capacity, dtype=np.int64)
        self._pos_mm = np.zeros(capacity, dtype=np.float64)
        self._n_total = 0
        self._lock = threading.Lock()

    @property
    def n_total(self) -> int:
        """Samples appended since creation (or the last :meth:`clear`)."""
        return self._n_total

    def append(self, t_device_us: np.ndarray, position_mm: np.ndarray) -> None:
        """Append one batch: ``t_device_us`` int64 (n,) µs, ``position_mm`` float64 (n,) mm."""
        t = np.asarray(t_device_us, dtype=np.int64).ravel()
        p = np.asarray(position_mm, dtype=np.float64).ravel()
        if t.shape != p.shape:
            raise ValueError(
                f"lever batch: t_device_us has {t.size} samples, position_mm has {p.size}"
            )
        if t.size > self.capacity:
            t, p = t[-self.capacity :], p[-self.capacity :]
        n = t.size
        with self._lock:
            start = self._n_total % self.capacity
            first = min(n, self.capacity - start)
            self._t_us[start : start + first] = t[:first]
            self._pos_mm[start : start + first] = p[:first]
            if first < n:
                self._t_us[: n - first] = t[first:]
                self._pos_mm[: n - first] = p[first:]
            self._n_total += n

    def snapshot(self, last_n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the newest samples in time order: (int64 (m,) µs, float64 (m,) mm)."""
        with self._lock:
            m = min(self._n_total, self.capacity)
            if last_n is not None:
                m = min(m, last_n)
            end = self._n_total % self.capacity
            idx = (np.arange(end - m, end)) % self.capacity
            return self._t_us[idx].copy(), self._pos_mm[idx].copy()

    def window(self, t0_us: int, t1_us: int) -> tuple[np.ndarray, np.ndarray]:
        """Samples with ``t0_us <= t < t1_us`` still in the buffer (may be partial or empty)."""
        t, p = self.snapshot()
        keep = (t >= t0_us) & (t < t1_us)
        return t[keep], p[keep]

    def clear(self) -> None:
        with self._lock:
            self._n_total = 0


class TraceRing:
    """ΔF/F of every ROI for the most recent frames, with a record of every frame index seen.

    Parameters
    ----------
    capacity_frames : int
        Frames kept (rows); older frames age out, which is not a drop.

    Attributes
    ----------
    n_frames_in : int
        Frames appended.
    n_gaps : int
        Frames missing from the sequence of indices (a frame index that skipped ahead);
        the pipeline promises this stays 0, and the benchmark checks it.
    """

    def __init__(self, capacity_frames: int = 4096) -> None:
        if capacity_frames < 1:
            raise ValueError(f"capacity_frames must be >= 1, got {capacity_frames}")
        self.capacity = capacity_frames
        self._dff: np.ndarray | None = None  # float32 (capacity, n_rois), allocated on first use
        self._index = np.full(capacity_frames, -1, dtype=np.int64)
        self.n_frames_in = 0
        self.n_gaps = 0
        self._rows = 0  # rows written since the current ROI set began
        self._last_index: int | None = None
        self._lock = threading.Lock()

    @property
    def n_rois(self) -> int:
        return 0 if self._dff is None else self._dff.shape[1]

    @property
    def last_index(self) -> int | None:
        return self._last_index

    def append(self, frame_index: int, dff: np.ndarray) -> None:
        """Append one frame's ΔF/F: ``dff`` float32 (n_rois,)."""
        row = np.asarray(dff, dtype=np.float32).ravel()
        with self._lock:
            if self._dff is None or self._dff.shape[1] != row.size:
                # A new ROI set starts a new history; mixing ROI sets would misalign rows.
                self._dff = np.zeros((self.capacity, row.size), dtype=np.float32)
                self._index[:] = -1
                self._last_index = None
                self._rows = 0
            if self._last_index is not None and frame_index > self._last_index + 1:
                self.n_gaps += frame_index - self._last_index - 1
            slot = self._rows % self.capacity
            self._dff[slot] = row
            self._index[slot] = frame_index
            self._rows += 1
            self.n_frames_in += 1
            self._last_index = frame_index

    def snapshot(self, last_n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Newest frames in order: (frame indices int64 (m,), ΔF/F float32 (m, n_rois))."""
        with self._lock:
            if self._dff is None:
                return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
            m = min(self._rows, self.capacity)
            if last_n is not None:
                m = min(m, last_n)
            end = self._rows % self.capacity
            idx = np.arange(end - m, end) % self.capacity
            return self._index[idx].copy(), self._dff[idx].copy()

"""The streaming imaging pipeline: its own thread, back-pressure, live stats, results on disk.

Frames enter through :meth:`ImagingPipeline.push` (or :meth:`ImagingPipeline.feed` from a
``FrameSource``) into a bounded queue. ``push`` BLOCKS while the queue is full, so a slow
consumer slows the producer down instead of losing frames: every pushed frame reaches the traces.
The worker thread takes whatever is queued (up to ``max_batch`` frames) and processes it as one
batch, so it catches up in bigger, more efficient batches after a stall.

Before the first frame can be registered the worker needs a reference (and ROIs): give a ready
:class:`~acquisition.traces.FullPathProcessor`, or a ``setup`` callable that receives the first
``warmup_frames`` frames (T, Y, X) and returns one (e.g. fit the reference, detect ROIs). Those
frames are then processed like the others.

Memory is bounded: the queue holds at most ``queue_frames`` frames, the warm-up stack at most
``warmup_frames``, the display slot one frame, the trace history ``history_frames`` rows; results go
to disk through a :class:`~acquisition.traces.store.ResultsWriter` (format documented there).
An hour at 30 Hz holds no more than those few seconds of frames.

Files written to the session's ``imaging/`` folder (details in :mod:`acquisition.traces.store`;
all little-endian, appended one record per processed frame, readable after a crash):
``rois.json`` (n_cells, ROI names, parameters, record layout), ``frames.bin`` (frame_index i8,
t_frame_s f8, t_board_us i8, dy_px f4, dx_px f4, peak f4, latency_ms f4), ``f.f32``, ``fneu.f32``,
``dff.f32`` (n_cells float32 per frame); at close ``frame_times.bin`` (int64 board time of every
frame, -1 if unknown) and ``summary.json`` (counts, mismatches, statistics).

Board time: frame-clock edges (edge ``k`` = frame ``k``, µs on the board clock) come as an array at
start or through :meth:`ImagingPipeline.push_frame_clock` while running; each written record carries
the board time when its edge is known, and ``frame_times.bin`` at the end maps every frame. A
different number of edges and frames is reported in :meth:`ImagingPipeline.stats` and
``summary.json`` (ScanImage dropped frames, or the clock wire missed edges).
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from acquisition.traces.processor import FullPathProcessor, ProcessedBatch
from acquisition.traces.store import FRAME_DTYPE, ResultsWriter
from acquisition.xp import gpu_memory, to_host

_STOP = object()


@dataclass
class FrameResult:
    """Results for a batch of frames, as given to ``on_result`` callbacks (host arrays)."""

    frame_index: np.ndarray  # int64 (B,)
    t_frame_s: np.ndarray  # float64 (B,)
    batch: ProcessedBatch


class PipelineError(RuntimeError):
    """The worker thread failed; ``__cause__`` is the original exception."""


class ImagingPipeline:
    """Register + extract traces on a worker thread.

    Parameters
    ----------
    processor : FullPathProcessor, optional
        Ready to run (reference and ROIs set).
    setup : callable, optional
        ``setup(first_frames (T, Y, X)) -> FullPathProcessor``; used when ``processor`` is None.
    warmup_frames : int
        Frames collected for ``setup``.
    queue_frames : int
        Queue bound, frames (back-pressure above it).
    max_batch : int
        Most frames processed at once.
    writer : ResultsWriter, optional
        Where results go; ``header`` is written to it at the first batch.
    header : dict, optional
        Extra ``rois.json`` fields (roi names, parameters).
    frame_clock_us : array-like, optional
        Board times (µs) of frame-clock edges, edge k = frame k.
    display_interval_s : float
        Least time between copies of the registered frame to the display slot.
    history_frames : int
        Rows of ΔF/F kept in memory for display (:meth:`recent_dff`).
    """

    def __init__(
        self,
        processor: FullPathProcessor | None = None,
        setup: Callable[[np.ndarray], FullPathProcessor] | None = None,
        warmup_frames: int = 90,
        queue_frames: int = 64,
        max_batch: int = 32,
        writer: ResultsWriter | None = None,
        header: dict[str, Any] | None = None,
        frame_clock_us: Iterable[int] | None = None,
        display_interval_s: float = 1 / 30,
        history_frames: int = 1800,
    ) -> None:
        if processor is None and setup is None:
            raise ValueError("give a processor or a setup callable")
        self.processor = processor
        self.setup = setup
        self.warmup_frames = int(warmup_frames)
        self.max_batch = max(1, int(max_batch))
        self.writer = writer
        self.header = header or {}
        self.display_interval_s = display_interval_s
        self.history_frames = history_frames
        self._q: queue.Queue[Any] = queue.Queue(maxsize=max(1, int(queue_frames)))
        self._callbacks: list[Callable[[FrameResult], None]] = []
        self._lock = threading.Lock()
        self._edges: list[int] = (
            [int(t) for t in frame_clock_us] if frame_clock_us is not None else []
        )
        self._frame_idx: list[int] = []  # source index of every processed frame, in order
        self._latest: tuple[int, np.ndarray] | None = None
        self._last_display = 0.0
        self._history: collections.deque[np.ndarray] = collections.deque(maxlen=history_frames)
        self._lat_ms: collections.deque[float] = collections.deque(maxlen=2000)
        self._done_t: collections.deque[float] = collections.deque(maxlen=2000)
        self._warm: list[tuple[int, float, float, np.ndarray]] = []
        self.n_pushed = 0
        self.n_processed = 0
        self.index_gaps = 0
        self._last_index: int | None = None
        self._max_queue = 0
        self._error: BaseException | None = None
        self._header_written = False
        self._thread = threading.Thread(target=self._run, name="imaging-pipeline", daemon=True)
        self._started = False
        self._closed = False

    # ------------------------------------------------------------------ control
    def on_result(self, fn: Callable[[FrameResult], None]) -> None:
        """Call ``fn(FrameResult)`` on the worker thread after each batch."""
        self._callbacks.append(fn)

    def start(self) -> ImagingPipeline:
        self._started = True
        self._thread.start()
        return self

    def __enter__(self) -> ImagingPipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def push(
        self, frame_index: int, t_frame_s: float, frame: np.ndarray, timeout_s: float | None = None
    ) -> None:
        """Queue one frame; blocks while the queue is full (never drops).

        Raises
        ------
        PipelineError
            The worker failed (the original error is chained).
        queue.Full
            Only when ``timeout_s`` is given and the queue stayed full that long.
        """
        self._raise_if_failed()
        if not self._started:
            raise RuntimeError("pipeline not started: call start() first")
        if self._closed:
            raise RuntimeError("pipeline closed: frames pushed now would never be processed")
        item = (int(frame_index), float(t_frame_s), time.perf_counter(), frame)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            try:
                # short waits so a dead worker is noticed instead of blocking forever
                self._q.put(item, timeout=0.1)
                break
            except queue.Full:
                self._raise_if_failed()
                if deadline is not None and time.monotonic() > deadline:
                    raise
        self.n_pushed += 1
        self._max_queue = max(self._max_queue, self._q.qsize())

    def feed(self, source: Iterable[tuple[int, float, np.ndarray]]) -> int:
        """Push every frame of a ``FrameSource`` (blocking on back-pressure); returns the count."""
        n = 0
        for i, t, f in source:
            self.push(i, t, f)
            n += 1
        return n

    def push_frame_clock(self, t_board_us: Iterable[int]) -> None:
        """Append frame-clock edge times (µs), in edge order."""
        with self._lock:
            self._edges.extend(int(t) for t in t_board_us)

    def close(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Process everything queued, stop the thread, finish the files; returns :meth:`stats`."""
        self._closed = True
        if self._started and self._thread.is_alive():
            self._q.put(_STOP)
            self._thread.join(timeout_s)
        summary = self.stats()
        if self.writer is not None and self._header_written:
            self.writer.finish(np.asarray(self._board_times(), np.int64), summary)
        self._raise_if_failed()
        return summary

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise PipelineError(f"imaging pipeline failed: {self._error}") from self._error

    # ------------------------------------------------------------------ state for the GUI
    def latest_frame(self) -> tuple[int, np.ndarray] | None:
        """(frame_index, registered float32 (Y, X)) of a recent frame, or None yet."""
        with self._lock:
            return self._latest

    def recent_dff(self) -> np.ndarray:
        """float32 (n, n_cells): the last ``history_frames`` ΔF/F rows, oldest first."""
        with self._lock:
            rows = list(self._history)
        return np.stack(rows) if rows else np.zeros((0, 0), np.float32)

    def stats(self) -> dict[str, Any]:
        """Live statistics: frames/s, latency p50/p99 (ms, push to result), queue depth, GPU
        memory, counts, and frame-clock/frame-index mismatches."""
        with self._lock:
            lat = np.asarray(self._lat_ms, np.float64)
            done = np.asarray(self._done_t, np.float64)
            n_edges = len(self._edges)
        fps = 0.0
        if done.size >= 2 and done[-1] > done[0]:
            fps = (done.size - 1) / (done[-1] - done[0])
        mismatch = None
        if n_edges and n_edges != self.n_processed:
            mismatch = (
                f"frame clock has {n_edges} edges but {self.n_processed} frames were processed "
                f"({n_edges - self.n_processed:+d} edges)"
            )
        xp = self.processor.xp if self.processor is not None else None
        return {
            "frames_pushed": self.n_pushed,
            "frames_processed": self.n_processed,
            "frames_per_s": fps,
            "latency_ms_p50": float(np.percentile(lat, 50)) if lat.size else None,
            "latency_ms_p99": float(np.percentile(lat, 99)) if lat.size else None,
            "queue_depth": self._q.qsize(),
            "queue_depth_max": self._max_queue,
            "gpu_memory": gpu_memory(xp) if xp is not None else None,
            "frame_clock_edges": n_edges,
            "frame_clock_mismatch": mismatch,
            "frame_index_gaps": self.index_gaps,
        }

    # ------------------------------------------------------------------ worker
    def _board_times(self) -> list[int]:
        # edges may arrive after their frames were written: map every frame at the end
        with self._lock:
            e = self._edges
            return [e[i] if 0 <= i < len(e) else -1 for i in self._frame_idx]

    def _run(self) -> None:
        try:
            stop = False
            while not stop:
                items = [self._q.get()]
                while len(items) < self.max_batch:
                    try:
                        items.append(self._q.get_nowait())
                    except queue.Empty:
                        break
                if any(it is _STOP for it in items):
                    stop = True  # frames pushed before close() are in items and still processed
                    items = [it for it in items if it is not _STOP]
                if self.processor is None:
                    self._warm.extend(items)
                    if len(self._warm) < self.warmup_frames and not stop:
                        continue
                    items, self._warm = self._warm, []
                    if not items:
                        continue
                    assert self.setup is not None
                    self.processor = self.setup(np.stack([it[3] for it in items]))
                for k in range(0, len(items), self.max_batch):
                    self._process(items[k : k + self.max_batch])
        except BaseException as e:  # surfaced to the producer by push()/close()
            self._error = e
            # unblock a producer waiting on a full queue
            while True:
                try:
                    self._q.get_nowait()
                except queue.Empty:
                    break

    def _process(self, items: list[tuple[int, float, float, np.ndarray]]) -> None:
        assert self.processor is not None
        idx = np.array([it[0] for it in items], np.int64)
        ts = np.array([it[1] for it in items], np.float64)
        frames = np.stack([it[3] for it in items])
        want_display = time.perf_counter() - self._last_display >= self.display_interval_s
        out = self.processor.process(frames, keep_registered=want_display)
        now = time.perf_counter()
        lat = [(now - it[2]) * 1e3 for it in items]
        with self._lock:
            board = [self._edges[i] if 0 <= i < len(self._edges) else -1 for i in idx]
        for i in idx:
            if self._last_index is not None and i != self._last_index + 1:
                self.index_gaps += 1
            self._last_index = int(i)
        if self.writer is not None:
            if not self._header_written:
                self.writer.write_header({"n_cells": int(out.dff.shape[1]), **self.header})
                self._header_written = True
            rec = np.zeros(len(items), FRAME_DTYPE)
            rec["frame_index"], rec["t_frame_s"], rec["t_board_us"] = idx, ts, board
            rec["dy_px"], rec["dx_px"] = out.shifts_px[:, 0], out.shifts_px[:, 1]
            rec["peak"], rec["latency_ms"] = out.peak, lat
            self.writer.append(rec, out.f, out.fneu, out.dff)
        with self._lock:
            if want_display and out.registered is not None:
                self._latest = (int(idx[-1]), to_host(out.registered[-1]))
                self._last_display = now
            self._history.extend(out.dff)
            self._lat_ms.extend(lat)
            self._done_t.extend([now] * len(items))
            self._frame_idx.extend(int(i) for i in idx)
        out.registered = None
        self.n_processed += len(items)
        for cb in self._callbacks:
            cb(FrameResult(idx, ts, out))

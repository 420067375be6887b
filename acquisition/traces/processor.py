"""The full path: uint16 frames in host memory -> device -> registered -> traces -> ΔF/F on host.

:class:`FullPathProcessor` holds a :class:`~acquisition.registration.Registrar` and a
:class:`~acquisition.traces.extract.TraceExtractor` on the same ``xp``:

- :meth:`FullPathProcessor.process` handles one batch (or one frame, streaming) synchronously
  and returns host arrays; on CuPy a single host frame goes through the CUDA-graph path of
  :mod:`acquisition.graph` (``streaming="auto"``, the default) when the setup allows it, else
  through the plain path, which stays the reference;
- :meth:`FullPathProcessor.process_movie` runs a whole host movie in batches; on CuPy it
  double-buffers: batch k+1 is uploaded on a copy stream (from page-locked memory when the movie
  is pinned, see :func:`acquisition.xp.pinned_empty`) while batch k is computed, so throughput is
  bounded by the slower of upload and compute rather than their sum.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from acquisition.registration.registrar import Registrar
from acquisition.traces.extract import TraceExtractor
from acquisition.xp import is_cupy, to_host

CPU_CHUNK_FRAMES = 8
STREAMING_MODES = ("auto", "graph", "plain")
_warned: set[str] = set()  # the one fallback warning of this process, once given


@dataclass
class ProcessedBatch:
    """Host results of one batch; every array has a leading axis of B frames.

    Attributes
    ----------
    shifts_px : float32 (B, 2) rigid (dy, dx)
    peak : float32 (B,) correlation peak
    f, fneu, dff : float32 (B, n_cells)
    registered : xp float32 (B, Y, X) (device array on CuPy), or None unless asked for
    """

    shifts_px: np.ndarray
    peak: np.ndarray
    f: np.ndarray
    fneu: np.ndarray
    dff: np.ndarray
    registered: Any = None


class FullPathProcessor:
    """Registration + traces on one backend.

    Parameters
    ----------
    registrar : Registrar
        With a reference already set.
    extractor : TraceExtractor
        On the same ``xp``.
    streaming : str
        Path for single host frames: ``"auto"`` (CUDA graph on CuPy when the setup allows it,
        else plain, with one warning when a graph was possible in principle but failed),
        ``"graph"`` (the same, named explicitly), or ``"plain"`` (never a graph).
    """

    def __init__(
        self, registrar: Registrar, extractor: TraceExtractor, streaming: str = "auto"
    ) -> None:
        if registrar.xp is not extractor.xp:
            raise ValueError("registrar and extractor must use the same array backend")
        if streaming not in STREAMING_MODES:
            raise ValueError(f"streaming={streaming!r}; expected one of {STREAMING_MODES}")
        self.reg = registrar
        self.tr = extractor
        self.xp = registrar.xp
        self.streaming = streaming
        self._graph: Any = None  # acquisition.graph.StreamingGraph once built and checked
        self.graph_error: str | None = None  # why the graph path is not used, once known
        self.last_stream_path = "plain"  # path the last single host frame took

    @property
    def graph_info(self) -> dict[str, Any] | None:
        """:meth:`acquisition.graph.StreamingGraph.info` of the graph in use, or None."""
        return None if self._graph is None else self._graph.info()

    @property
    def streaming_path(self) -> str:
        """``"graph"`` when single frames go through a checked CUDA graph, else ``"plain"``."""
        return "graph" if self._graph is not None else "plain"

    def _device(self, frames: Any, keep_registered: bool) -> tuple[Any, Any]:
        """Everything on the device; results packed as (B, 3 + 3n) so one download fetches all."""
        xp = self.xp
        r = self.reg.register(frames)
        t = self.tr.process(r.frames)
        packed = xp.concatenate(
            [r.shifts_px.reshape(-1, 2), r.peak.reshape(-1, 1), t.f, t.fneu, t.dff], axis=1
        )
        return packed, (r.frames if keep_registered else None)

    def _unpack(self, packed: Any, registered: Any = None) -> ProcessedBatch:
        h = to_host(packed).astype(np.float32, copy=False)
        n = self.tr.n
        return ProcessedBatch(
            h[:, 0:2],
            h[:, 2],
            h[:, 3 : 3 + n],
            h[:, 3 + n : 3 + 2 * n],
            h[:, 3 + 2 * n : 3 + 3 * n],
            registered,
        )

    def process(self, frames: Any, keep_registered: bool = False) -> ProcessedBatch:
        """One batch (B, Y, X) or one frame (Y, X) of any real dtype -> host results."""
        f = frames if frames.ndim == 3 else frames[None]
        if f.shape[0] == 1 and self.streaming != "plain" and isinstance(f, np.ndarray):
            out = self._process_graph(f[0], keep_registered)
            # a new graph's first frame is answered by the plain path after the self-check; it
            # counts as "graph" only if the check passed and the graph serves the next frames
            self.last_stream_path = "plain" if out is None else self.streaming_path
            if out is not None:
                return out
        return self._process_plain(f, keep_registered)

    def _process_plain(self, f: Any, keep_registered: bool) -> ProcessedBatch:
        packed, reg = self._device(self.xp.asarray(f), keep_registered)
        return self._unpack(packed, reg)

    # ------------------------------------------------------------------ CUDA-graph streaming
    def _process_graph(self, frame: np.ndarray, keep_registered: bool) -> ProcessedBatch | None:
        """One host frame through the CUDA graph; None means: use the plain path."""
        if not is_cupy(self.xp):
            self.graph_error = "the backend is numpy"
            return None
        from acquisition.graph import StreamingGraph, graph_key

        g = self._graph
        if g is not None and g.key != graph_key(self.reg, self.tr):
            g = self._graph = None  # e.g. a new line phase: rebuild, and check again
        if g is None:
            if self.graph_error is not None:
                return None
            try:
                g = StreamingGraph(self.reg, self.tr, frame.dtype)
                return self._check_graph(g, frame, keep_registered)
            except Exception as e:  # unsupported setup, or a CUDA error while capturing
                self._fall_back(f"{type(e).__name__}: {e}")
                return None
        if frame.dtype != g.dtype or frame.shape != self.reg.shape:
            return None  # a stray frame; the graph stays for the others
        row, registered = g.run(frame, keep_registered)
        return self._unpack(row, registered)

    def _check_graph(
        self, g: Any, frame: np.ndarray, keep_registered: bool
    ) -> ProcessedBatch | None:
        """Run ``frame`` through the new graph and through the plain path from the same baseline
        state; adopt the graph only if both agree. Returns the plain path's result."""
        bl = self.tr.baseline
        self.xp.cuda.get_current_stream().synchronize()
        saved = (bl.ring.copy(), bl.count, bl.refreshes, bl.f0)
        try:
            got = self._unpack(g.run(frame)[0])
        finally:  # the plain path below redoes this frame from the same state
            bl.ring[...] = saved[0]
            bl.count, bl.refreshes, bl.f0 = saved[1], saved[2], saved[3]
        ref = self._process_plain(frame[None], keep_registered)
        bad = graph_mismatch(got, ref)
        if bad:
            self._fall_back(f"self-check on the first frame failed: {bad}")
            return ref
        self._graph = g
        self.graph_error = None
        return ref

    def _fall_back(self, why: str) -> None:
        self.graph_error = why
        self._graph = None
        if not _warned:
            msg = f"CUDA-graph streaming unavailable ({why}); using the plain CuPy path"
            _warned.add(msg)
            warnings.warn(msg, RuntimeWarning, stacklevel=4)

    def process_movie(
        self,
        movie: np.ndarray,
        batch_frames: int = 256,
        on_batch: Callable[[int, ProcessedBatch], None] | None = None,
    ) -> ProcessedBatch:
        """Process ``movie`` (T, Y, X) host array in batches; returns the concatenated results.

        ``on_batch(first_frame_index, batch)`` is called after each batch (e.g. for progress
        or to write results); ``registered`` is never kept here.
        """
        n = movie.shape[0]
        outs: list[ProcessedBatch] = []
        if not is_cupy(self.xp):
            # On a CPU big batches only thrash the cache (a 256-frame batch of 512 x 512 complex
            # spectra is ~270 MB): work through them in small chunks.
            step = min(batch_frames, CPU_CHUNK_FRAMES)
            for s in range(0, n, step):
                b = self.process(movie[s : s + step])
                outs.append(b)
                if on_batch:
                    on_batch(s, b)
        else:
            starts = list(range(0, n, batch_frames))
            outs = self._process_movie_cupy(movie, starts, batch_frames, on_batch)
        return ProcessedBatch(
            *(
                np.concatenate([getattr(o, k) for o in outs])
                for k in ("shifts_px", "peak", "f", "fneu", "dff")
            )
        )

    def _process_movie_cupy(
        self,
        movie: np.ndarray,
        starts: list[int],
        batch_frames: int,
        on_batch: Callable[[int, ProcessedBatch], None] | None,
    ) -> list[ProcessedBatch]:
        cp = self.xp
        copy_stream = cp.cuda.Stream(non_blocking=True)
        compute_stream = cp.cuda.Stream(non_blocking=True)
        bufs = [cp.empty((batch_frames, *movie.shape[1:]), movie.dtype) for _ in range(2)]
        done = [None, None]

        def upload(k: int) -> Any:
            s = starts[k]
            chunk = movie[s : s + batch_frames]
            dst = bufs[k % 2][: chunk.shape[0]]
            with copy_stream:
                dst.set(chunk, stream=copy_stream)
                ev = copy_stream.record()
            return dst, ev

        outs: list[ProcessedBatch] = []
        pending: list[tuple[int, Any, Any]] = []
        nxt = upload(0)
        for k in range(len(starts)):
            dst, ev = nxt
            compute_stream.wait_event(ev)
            with compute_stream:
                packed, _ = self._device(dst, False)
                done[k % 2] = compute_stream.record()
            if k + 1 < len(starts):
                # the buffer batch k+1 reuses was read by batch k-1: wait for that compute
                if done[(k + 1) % 2] is not None and k >= 1:
                    copy_stream.wait_event(done[(k + 1) % 2])
                nxt = upload(k + 1)
            pending.append((starts[k], done[k % 2], packed))
            # download one batch behind so the host copy overlaps the next compute
            if len(pending) > 1:
                outs.append(self._collect(pending.pop(0), on_batch))
        while pending:
            outs.append(self._collect(pending.pop(0), on_batch))
        return outs

    def _collect(
        self,
        item: tuple[int, Any, Any],
        on_batch: Callable[[int, ProcessedBatch], None] | None,
    ) -> ProcessedBatch:
        start, ev, packed = item
        ev.synchronize()
        b = self._unpack(packed)
        if on_batch:
            on_batch(start, b)
        return b


def graph_mismatch(got: ProcessedBatch, ref: ProcessedBatch) -> str:
    """Empty when the graph result ``got`` equals the plain ``ref`` within float32 tolerance,
    else the fields that differ and by how much (the same kernels run, so this is a guard
    against a broken capture, not a numerical comparison)."""
    tol = {
        "shifts_px": (0.0, 2e-3),
        "peak": (1e-4, 1e-4),
        "f": (1e-4, 1e-2),
        "fneu": (1e-4, 1e-2),
        "dff": (1e-3, 1e-3),
    }
    bad = []
    for k, (rtol, atol) in tol.items():
        a, b = getattr(got, k), getattr(ref, k)
        if a.shape != b.shape or not np.allclose(a, b, rtol=rtol, atol=atol):
            d = float(np.max(np.abs(a - b))) if a.shape == b.shape else float("nan")
            bad.append(f"{k} max |diff| {d:.3g}")
    return "; ".join(bad)

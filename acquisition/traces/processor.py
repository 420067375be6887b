"""The full path: uint16 frames in host memory -> device -> registered -> traces -> ΔF/F on host.

:class:`FullPathProcessor` holds a :class:`~acquisition.registration.Registrar` and a
:class:`~acquisition.traces.extract.TraceExtractor` on the same ``xp``:

- :meth:`FullPathProcessor.process` handles one batch (or one frame, streaming) synchronously
  and returns host arrays;
- :meth:`FullPathProcessor.process_movie` runs a whole host movie in batches; on CuPy it
  double-buffers: batch k+1 is uploaded on a copy stream (from page-locked memory when the movie
  is pinned, see :func:`acquisition.xp.pinned_empty`) while batch k is computed, so throughput is
  bounded by the slower of upload and compute rather than their sum.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from acquisition.registration.registrar import Registrar
from acquisition.traces.extract import TraceExtractor
from acquisition.xp import is_cupy, to_host

CPU_CHUNK_FRAMES = 8


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
    """

    def __init__(self, registrar: Registrar, extractor: TraceExtractor) -> None:
        if registrar.xp is not extractor.xp:
            raise ValueError("registrar and extractor must use the same array backend")
        self.reg = registrar
        self.tr = extractor
        self.xp = registrar.xp

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
        packed, reg = self._device(self.xp.asarray(f), keep_registered)
        return self._unpack(packed, reg)

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

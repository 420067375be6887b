"""Imaging inside a live lever session.

:class:`LiveImaging` runs the session's imaging pipeline (set up by
:func:`rig.runner.imaging_setup.build_pipeline`, which the replay re-runs; its names are
re-exported here) during a lever session:

- ``synthetic`` source: frame ``k`` of a seeded synthetic movie is delivered when the simulated
  board's frame-clock edge ``k`` arrives (the runner asks the sim board for a frame clock at the
  movie's rate via :attr:`LiveImaging.frame_clock_hz`), so frames follow board time at any speed;
- ``tiff`` / ``tcp`` sources: frames come as the source delivers them; frame-clock edges from the
  board map them to board time.

Each edge's board time goes into the pipeline's frame-clock map as it arrives on the board's
reader thread; a feeder thread pushes the frames into the pipeline (which blocks on
back-pressure: no frame is ever dropped from the traces). What waits between the two is a count
(:class:`rig.runner.imaging_clock.FrameEdges`), so a board running far ahead of the frames holds
no queue of waiting edges (the clock map itself keeps one board time per frame for
``frame_times.bin``, ~40 bytes a frame: 4 MB for an hour at 30 Hz, whatever the speed). At the
end every frame whose edge arrived is served before the pipeline closes; a
different number of edges and frames is reported in the summary (and by the runner as an
``imaging_frame_mismatch`` event). With a synthetic source, the board's lever events
(:meth:`LiveImaging.on_board_event`) let each pull drive the movie's responsive cells
(:mod:`rig.runner.imaging_drive`).
RigSignals ``frame`` (latest registered frame), ``traces`` (ΔF/F per frame) and ``imaging``
(statistics, at most every ``stats_interval_s``) are emitted from the pipeline thread.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from rig.core.signals import RigSignals
from rig.runner.imaging_clock import FrameEdges
from rig.runner.imaging_drive import PullDrive
from rig.runner.imaging_setup import (
    DEFAULT_MAX_SHIFT_PX,
    DEFAULT_WARMUP_FRAMES,
    ROI_LABELS,
    build_pipeline,
    imaging_params,
    synthetic_movie_frames,
)

if TYPE_CHECKING:
    from acquisition.pipeline import FrameResult, ImagingPipeline
    from rig.core.config import ImagingConfig

# the replay imports the set-up from here
__all__ = [
    "DEFAULT_MAX_SHIFT_PX", "DEFAULT_WARMUP_FRAMES", "ROI_LABELS", "LiveImaging",
    "build_pipeline", "imaging_figures", "imaging_params", "synthetic_movie_frames",
]  # fmt: skip

log = logging.getLogger(__name__)


class LiveImaging:
    """The imaging pipeline of one live session (see the module docstring).

    Parameters
    ----------
    cfg : ImagingConfig
        The rig's ``imaging`` section.
    signals : RigSignals
        Where ``frame``, ``traces`` and ``imaging`` go.
    max_session_s : float
        Longest the session may run (board s): sizes the synthetic movie and its frame clock.
    clocked : bool
        A synthetic source delivers frame k at frame-clock edge k (the simulated board's clock);
        False: it plays at its own frame rate like a live source.
    stats_interval_s : float
        Least wall time between ``imaging`` signals.
    drive : bool
        Synthetic source: each pull's movement onset (board lever events given to
        :meth:`on_board_event`) drives the movie's responsive cells
        (:mod:`rig.runner.imaging_drive`) unless the source config says
        ``driven_by_pulls: false``. Ignored for other sources.
    """

    def __init__(
        self,
        cfg: ImagingConfig,
        signals: RigSignals,
        max_session_s: float,
        clocked: bool = True,
        stats_interval_s: float = 0.5,
        drive: bool = True,
    ) -> None:
        self.cfg = cfg
        self.signals = signals
        self.stats_interval_s = stats_interval_s
        src = cfg.source
        self.clocked = clocked and src.kind == "synthetic"
        self.drive = drive and src.kind == "synthetic" and src.driven_by_pulls
        self._drive: PullDrive | None = None
        self.n_movie_frames: int | None = None
        if src.kind == "synthetic":
            self.n_movie_frames = synthetic_movie_frames(src.frame_rate_hz, max_session_s)
        self.pipeline: ImagingPipeline | None = None
        self._chosen: dict[str, Any] = {}
        # edges received vs frames served; ``qsize()`` is the backlog (a count, not a queue)
        self._edges = FrameEdges()
        self._source: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_stats = 0.0
        # Rigid shifts since the last stats emission, for the GUI's motion trace (every frame,
        # not one sample per stats interval).
        self._shift_buf: list[tuple[int, float, float]] = []
        self._last_display: int | None = None
        # push -> result latency of the frames after the warm-up (those wait for the reference
        # by design), ms
        self.warmup_frames = DEFAULT_WARMUP_FRAMES
        self._pushed_at: dict[int, float] = {}
        self._n_results = 0
        self._lat_ms: collections.deque[float] = collections.deque(maxlen=200_000)
        self.error: BaseException | None = None
        self.summary: dict[str, Any] = {}

    @property
    def frame_clock_hz(self) -> float | None:
        """Rate the simulated board's frame clock must run at (clocked synthetic source)."""
        src = self.cfg.source
        return src.frame_rate_hz if self.clocked and src.kind == "synthetic" else None

    def header(self) -> dict[str, Any]:
        """What a re-run needs to regenerate the frames (written into ``rois.json``)."""
        out: dict[str, Any] = {"source_kind": self.cfg.source.kind}
        if self.n_movie_frames is not None:
            out["synthetic_n_frames"] = self.n_movie_frames
        return out

    # ------------------------------------------------------------------ lifecycle
    def start(self, sink: Any) -> None:
        """Open the source, build and start the pipeline writing into ``sink``, start feeding."""
        from acquisition.sources import open_source

        src = self.cfg.source
        if src.kind == "synthetic":
            from acquisition.sources.synthetic import SyntheticSource

            assert self.n_movie_frames is not None
            self._source = SyntheticSource.generate(
                self.n_movie_frames, paced=not self.clocked, stream=True, size_px=src.size_px,
                n_cells=src.n_cells, frame_rate_hz=src.frame_rate_hz,
                max_shift_px=src.max_shift_px, seed=src.seed,
            )  # fmt: skip
            rate = src.frame_rate_hz
        else:
            self._source = open_source(src)
            rate = float(getattr(self._source, "frame_rate_hz", 0.0) or 30.0)
        warmup = DEFAULT_WARMUP_FRAMES
        if self.cfg.rois.kind == "auto":
            warmup = max(warmup, min(self.cfg.rois.n_frames_for_detection, 300))
        self.warmup_frames = warmup
        self.pipeline, self._chosen = build_pipeline(
            sink, rate, imaging_params({"imaging": self.cfg.model_dump(mode="json")}),
            rois=self.cfg.rois, warmup_frames=warmup, header=self.header(),
        )  # fmt: skip
        self.pipeline.on_result(self._on_result)
        self._edges.attach(self.pipeline)
        if self.drive:
            self._drive = PullDrive(self._source, rate, sink, self._edges)
        self._source.__enter__()
        self.pipeline.start()
        target = self._feed_clocked if self.clocked else self._feed_free
        self._thread = threading.Thread(target=target, name="imaging-feeder", daemon=True)
        self._thread.start()

    @property
    def n_edges(self) -> int:
        """Frame-clock edges received so far."""
        return self._edges.n_received

    @property
    def edge_backlog(self) -> int:
        """Edges received whose frames are not pushed yet."""
        return self._edges.qsize()

    def on_frame_edge(self, index: int, t_us: int) -> None:
        """A frame-clock edge (board reader thread): edge ``index`` at board time ``t_us``.
        Never waits on the imaging: the time goes into the pipeline's clock map at once."""
        self._edges.on_edge(int(index), int(t_us))

    def on_board_event(self, name: str, t_us: int) -> None:
        """A board event (reader thread): pulls drive a synthetic movie (``drive``)."""
        if self._drive is not None:
            self._drive.on_event(name, t_us)

    def stop(self) -> dict[str, Any]:
        """Serve every edge received so far, close the pipeline (finishing ``imaging/``) and the
        source; returns the pipeline summary (empty if it never started)."""
        if self.pipeline is None:
            return {}
        self._edges.finish()
        self._stop.set()
        if not self.clocked and self._source is not None:
            self._source.close()  # wakes a source blocked on its next frame
        if self._thread is not None:
            self._thread.join(timeout=120)
        try:
            self.summary = self.pipeline.close()
        finally:
            self._source.__exit__(None, None, None)
        if self._drive is not None:
            self._drive.save_truth()
            self.summary["synthetic_drive"] = {
                "pulls": self._drive.n_pulls,
                "applied": len(self._source.truth.drive_events),
                "before_first_edge": self._drive.n_unmapped,
            }
        self.summary["frame_clock_edges_received"] = self.n_edges
        self.summary["frame_clock_backlog_max"] = self._edges.max_backlog
        lat = np.asarray(self._lat_ms, np.float64)
        for q in (50, 99):
            self.summary[f"live_latency_ms_p{q}"] = (
                float(np.percentile(lat, q)) if lat.size else None
            )
        self.signals.imaging.emit(dict(self.summary))
        if self.error is not None:
            raise self.error
        return self.summary

    def finish(self, host_event: Callable[[str, dict[str, Any]], None]) -> dict[str, Any]:
        """:meth:`stop`, reporting a failure or an edge/frame count mismatch through
        ``host_event(name, data)`` and the ``log`` signal instead of raising (the behavior
        session is still worth closing properly); returns the summary."""
        if self.pipeline is None:
            return {}
        try:
            self.stop()
        except Exception as e:
            log.exception("imaging pipeline failed")
            self.signals.emit_log(logging.ERROR, f"imaging pipeline failed: {e}")
            host_event("imaging_error", {"error": f"{type(e).__name__}: {e}"})
            return self.summary
        fig = imaging_figures(self.summary)
        if fig["dropped"] or self.summary.get("frame_clock_mismatch"):
            msg = f"imaging: {fig['frame_clock_edges']} frame-clock edges, {fig['frames']} frames"
            log.warning(msg)
            self.signals.emit_log(logging.WARNING, msg)
            host_event(
                "imaging_frame_mismatch",
                {"edges": fig["frame_clock_edges"], "frames": fig["frames"]},
            )
        return self.summary

    # ------------------------------------------------------------------ state for the GUI
    def roi_labels(self) -> np.ndarray | None:
        """int32 (Y, X) ROI labels once the pipeline has set up, else None."""
        return self._chosen.get("labels")

    def reference_image(self) -> np.ndarray | None:
        """float32 (Y, X) registration reference once set up, else None."""
        return self._chosen.get("reference")

    def stats(self) -> dict[str, Any]:
        return self.pipeline.stats() if self.pipeline is not None else {}

    # ------------------------------------------------------------------ feeder threads
    def _feed_clocked(self) -> None:
        """Frame k of the movie at edge k; frames of missed edges are skipped, not shifted."""
        assert self.pipeline is not None
        frames = iter(self._source)
        try:
            while (todo := self._edges.take()) is not None:
                first, stop, missed = todo
                for k in range(first, stop):
                    got = next(frames, None)  # None: the movie is over (reported at the end)
                    if got is not None and not any(a <= k < b for a, b in missed):
                        self._push(k, got[1], got[2])
                    self._edges.frame_served(k)
        except BaseException as e:
            self.error = e
            log.exception("imaging feeder failed")

    def _feed_free(self) -> None:
        """Frames as the source delivers them; edges map them to board time."""
        assert self.pipeline is not None
        try:
            for k, t_s, frame in self._source:
                if self._stop.is_set():
                    break
                self._push(k, t_s, frame)
                self._edges.frame_served(k)
        except BaseException as e:
            if not self._stop.is_set():
                self.error = e
                log.exception("imaging source failed")

    def _push(self, k: int, t_s: float, frame: np.ndarray) -> None:
        self._pushed_at[k] = time.perf_counter()
        assert self.pipeline is not None
        self.pipeline.push(k, t_s, frame)

    # ------------------------------------------------------------------ pipeline thread
    def _on_result(self, res: FrameResult) -> None:
        dff = res.batch.dff
        now = time.perf_counter()
        for k, i in enumerate(res.frame_index):
            t_push = self._pushed_at.pop(int(i), None)
            self._n_results += 1
            if t_push is not None and self._n_results > self.warmup_frames:
                self._lat_ms.append((now - t_push) * 1e3)
            self.signals.traces.emit(int(i), np.asarray(dff[k], np.float32))
            dy, dx = res.batch.shifts_px[k]
            self._shift_buf.append((int(i), float(dy), float(dx)))
        assert self.pipeline is not None
        latest = self.pipeline.latest_frame()
        if latest is not None and latest[0] != self._last_display:
            self._last_display = latest[0]
            self.signals.frame.emit(latest[0], latest[1])
        now = time.monotonic()
        if now - self._last_stats >= self.stats_interval_s:
            self._last_stats = now
            stats = self.pipeline.stats()
            if self._shift_buf:
                buf = np.asarray(self._shift_buf, dtype=np.float64)
                self._shift_buf = []
                stats["shift_frame_index"] = buf[:, 0].astype(np.int64)  # (n,)
                stats["shifts_px"] = buf[:, 1:].astype(np.float32)  # (n, 2) rigid (dy, dx)
            self.signals.imaging.emit(stats)


def imaging_figures(summary: dict[str, Any]) -> dict[str, Any]:
    """The imaging figures a session reports: frames processed, frame-clock edges received,
    frames dropped (edges without a processed frame), push -> result latency p50/p99 (ms) of
    the frames after the warm-up (the pipeline's own figures include the warm-up frames, which
    wait for the reference by design)."""
    frames = int(summary.get("frames_processed", 0))
    edges = int(summary.get("frame_clock_edges_received", summary.get("frame_clock_edges", 0)))
    return {
        "frames": frames,
        "frame_clock_edges": edges,
        "dropped": max(0, edges - frames),
        "latency_ms_p50": summary.get("live_latency_ms_p50", summary.get("latency_ms_p50")),
        "latency_ms_p99": summary.get("live_latency_ms_p99", summary.get("latency_ms_p99")),
        "frames_per_s": summary.get("frames_per_s"),
    }

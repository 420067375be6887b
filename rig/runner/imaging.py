"""Imaging inside a live lever session, and the pipeline set-up the replay re-runs.

:func:`build_pipeline` makes the ``acquisition.pipeline.ImagingPipeline`` that writes a session's
``imaging/`` folder (the format of ``acquisition.traces.store``, plus ``imaging/roi_labels.npy``:
int32 (Y, X), ``k`` = ROI ``k-1``). The live session and ``rig replay --reprocess-imaging`` both
use it, so a re-run uses exactly the code and parameters of the recording. The ROIs are always
used as that label image (also when detected or loaded from a file), so that the saved labels
reproduce the traces.

:class:`LiveImaging` runs it during a lever session:

- ``synthetic`` source: frame ``k`` of a seeded synthetic movie is delivered when the simulated
  board's frame-clock edge ``k`` arrives (the runner asks the sim board for a frame clock at the
  movie's rate via :attr:`LiveImaging.frame_clock_hz`), so frames follow board time at any speed;
- ``tiff`` / ``tcp`` sources: frames come as the source delivers them; frame-clock edges from the
  board map them to board time.

Each edge's board time goes into the pipeline's frame-clock map as it arrives on the board's
reader thread; a feeder thread pushes the frames into the pipeline (which blocks on
back-pressure: no frame is ever dropped from the traces). What waits between the two is a count
(:class:`rig.runner.imaging_clock.FrameEdges`), so a board running far ahead of the frames costs
no memory. At the end every frame whose edge arrived is served before the pipeline closes; a
different number of edges and frames is reported in the summary (and by the runner as an
``imaging_frame_mismatch`` event).
RigSignals ``frame`` (latest registered frame), ``traces`` (ΔF/F per frame) and ``imaging``
(statistics, at most every ``stats_interval_s``) are emitted from the pipeline thread.
"""

from __future__ import annotations

import collections
import io
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from rig.core.signals import RigSignals
from rig.runner.imaging_clock import FrameEdges
from rig.runner.imaging_drive import PullDrive

if TYPE_CHECKING:
    from acquisition.pipeline import FrameResult, ImagingPipeline
    from rig.core.config import ImagingConfig, RoiSource

log = logging.getLogger(__name__)

ROI_LABELS = "imaging/roi_labels.npy"
#: Frames the registration reference is fitted on (and ROIs detected on, up to the config's
#: ``rois.n_frames_for_detection``) before the first frame is processed.
DEFAULT_WARMUP_FRAMES = 60
DEFAULT_MAX_SHIFT_PX = 10


def imaging_params(rig_config: dict[str, Any]) -> dict[str, Any]:
    """The trace parameters of a rig config snapshot's ``imaging`` section (defaults if absent)."""
    im = rig_config.get("imaging") or {}
    return {
        "backend": im.get("backend", "auto"),
        "neuropil_coefficient": float(im.get("neuropil_coefficient", 0.7)),
        "baseline_window_s": float(im.get("baseline_window_s", 60.0)),
        "baseline_percentile": float(im.get("baseline_percentile", 8.0)),
        "queue_frames": int(im.get("queue_frames", 64)),
    }


def build_pipeline(
    sink: Any,
    frame_rate_hz: float,
    params: dict[str, Any],
    *,
    frame_clock_us: Iterable[int] | None = None,
    roi_labels: np.ndarray | None = None,
    rois: RoiSource | None = None,
    warmup_frames: int = DEFAULT_WARMUP_FRAMES,
    max_shift_px: int = DEFAULT_MAX_SHIFT_PX,
    backend: str | None = None,
    header: dict[str, Any] | None = None,
) -> tuple[ImagingPipeline, dict[str, Any]]:
    """An (unstarted) pipeline writing to ``sink`` (``SessionWriter`` or ``FolderSink``) under
    ``imaging/``, and a dict that receives ``rois``, ``labels`` and ``reference`` at set-up.

    Parameters
    ----------
    frame_rate_hz : float
        Frame rate (sets the causal baseline window in frames).
    params : dict
        :func:`imaging_params` output.
    frame_clock_us : iterable of int, optional
        Board times of the frame-clock edges known up front (edge k = frame k), µs.
    roi_labels : ndarray (Y, X) int, optional
        Use these ROIs. Else ``rois`` (the config's ROI source; ``auto`` or None: detect them on
        the registered warm-up frames).
    header : dict, optional
        Extra ``rois.json`` fields.
    """
    from acquisition.pipeline import ImagingPipeline
    from acquisition.registration import Registrar, RegistrationOptions
    from acquisition.rois import (
        RoiSet,
        build_weights,
        detect_rois,
        load_rois,
        neuropil_pixels,
        weights_to_xp,
    )
    from acquisition.traces import FullPathProcessor, TraceExtractor, TraceOptions
    from acquisition.traces.store import ResultsWriter
    from acquisition.xp import get_xp, to_host

    xp = get_xp(backend or params["backend"])
    chosen: dict[str, Any] = {}

    def setup(first: np.ndarray) -> FullPathProcessor:
        shape = (int(first.shape[1]), int(first.shape[2]))
        reg = Registrar(xp, shape, RegistrationOptions(max_shift_px=max_shift_px))
        reg.fit_reference(first)
        if roi_labels is not None:
            labels = np.asarray(roi_labels, np.int32)
        elif rois is not None and rois.kind != "auto":
            assert rois.path is not None  # the config model requires it
            labels = load_rois(rois.path, shape, rois.kind).label_image()
        else:
            n = len(first) if rois is None else min(len(first), rois.n_frames_for_detection)
            labels = detect_rois(xp, reg.register(first[:n]).frames).label_image()
        roiset = RoiSet.from_labels(labels.astype(np.int32), source=ROI_LABELS)
        chosen.update(rois=roiset, labels=labels, reference=to_host(reg.reference))
        # rois.json is written at the first processed batch, after this returns
        head["frame_shape"] = list(shape)
        head["roi_names"] = list(roiset.names)
        buf = io.BytesIO()
        np.save(buf, labels.astype(np.int32))
        sink.open_append(ROI_LABELS)
        sink.append(ROI_LABELS, buf.getvalue())
        opt = TraceOptions(
            neuropil_coefficient=params["neuropil_coefficient"],
            baseline_window_s=params["baseline_window_s"],
            baseline_percentile=params["baseline_percentile"],
        )
        w = weights_to_xp(xp, build_weights(roiset, neuropil_pixels(roiset)))
        return FullPathProcessor(reg, TraceExtractor(xp, w, frame_rate_hz, opt))

    head: dict[str, Any] = {
        "source": "motor-rig session",
        "trace_options": params,
        "frame_rate_hz": frame_rate_hz,
        "warmup_frames": warmup_frames,
        "max_shift_px": max_shift_px,
        **(header or {}),
    }
    pipe = ImagingPipeline(
        setup=setup,
        warmup_frames=warmup_frames,
        queue_frames=params["queue_frames"],
        # One frame at a time: the traces' baseline refreshes fall at batch boundaries, so
        # batches that depend on timing (a live stream, a re-run at full speed) would give
        # slightly different ΔF/F; per frame, a re-run reproduces the recording exactly.
        max_batch=1,
        writer=ResultsWriter(sink, prefix="imaging/"),
        header=head,
        frame_clock_us=frame_clock_us,
    )
    return pipe, chosen


def synthetic_movie_frames(frame_rate_hz: float, max_session_s: float) -> int:
    """Length of the synthetic movie made for a live session: the longest the session may run
    plus a minute (the session stops at a trial end after its limit), frames."""
    return max(1, math.ceil(frame_rate_hz * (max_session_s + 60.0)))


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
        (:mod:`rig.runner.imaging_drive`). Ignored for other sources.
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
        self.drive = drive and src.kind == "synthetic"
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

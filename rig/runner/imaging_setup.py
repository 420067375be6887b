"""The imaging pipeline set-up of a session, shared by the live session and the replay.

:func:`build_pipeline` makes the ``acquisition.pipeline.ImagingPipeline`` that writes a session's
``imaging/`` folder (the format of ``acquisition.traces.store``, plus ``imaging/roi_labels.npy``:
int32 (Y, X), ``k`` = ROI ``k-1``). The live session (:class:`rig.runner.imaging.LiveImaging`)
and ``rig replay --reprocess-imaging`` both use it, so a re-run uses exactly the code and
parameters of the recording. The ROIs are always used as that label image (also when detected or
loaded from a file), so that the saved labels reproduce the traces.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from acquisition.pipeline import ImagingPipeline
    from rig.core.config import RoiSource

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
        detect_rois_registered,
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
            labels = detect_rois_registered(xp, reg.register(first[:n])).label_image()
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

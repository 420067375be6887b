"""Run the imaging pipeline over a session's frames and write ``imaging/`` (recording and
re-processing share this, so a re-run uses exactly the code and parameters of the original).

The ROI set used is saved as ``imaging/roi_labels.npy`` (int32 label image, ``k`` = ROI ``k-1``)
so the export and a re-run find the same cells.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROI_LABELS = "imaging/roi_labels.npy"


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


def run_pipeline(
    frames: Iterable[tuple[int, float, np.ndarray]],
    sink: Any,
    frame_rate_hz: float,
    params: dict[str, Any],
    frame_clock_us: Iterable[int] | None = None,
    roi_labels: np.ndarray | None = None,
    warmup_frames: int = 60,
    max_shift_px: int = 10,
    backend: str | None = None,
) -> dict[str, Any]:
    """Register and extract traces for ``frames`` into ``sink`` (a ``SessionWriter`` or
    ``FolderSink``) under ``imaging/``; returns the pipeline's summary.

    Parameters
    ----------
    frames : iterable of (frame_index, t_frame_s, frame (Y, X))
        A ``FrameSource`` or anything yielding the same tuples.
    frame_rate_hz : float
        Frame rate (sets the causal baseline window in frames).
    params : dict
        :func:`imaging_params` output.
    frame_clock_us : iterable of int, optional
        Board times of the frame-clock edges (edge k = frame k), µs.
    roi_labels : ndarray (Y, X) int, optional
        Use these ROIs; default: detect them on the registered warm-up frames.
    """
    from acquisition.pipeline import ImagingPipeline
    from acquisition.registration import Registrar, RegistrationOptions
    from acquisition.rois import (
        RoiSet,
        build_weights,
        detect_rois,
        neuropil_pixels,
        weights_to_xp,
    )
    from acquisition.traces import FullPathProcessor, TraceExtractor, TraceOptions
    from acquisition.traces.store import ResultsWriter
    from acquisition.xp import get_xp

    xp = get_xp(backend or params["backend"])
    chosen: dict[str, Any] = {}

    def setup(first: np.ndarray) -> FullPathProcessor:
        shape = (int(first.shape[1]), int(first.shape[2]))
        reg = Registrar(xp, shape, RegistrationOptions(max_shift_px=max_shift_px))
        reg.fit_reference(first)
        if roi_labels is not None:
            rois = RoiSet.from_labels(np.asarray(roi_labels, np.int32), source=ROI_LABELS)
        else:
            rois = detect_rois(xp, reg.register(first).frames)
        chosen["rois"] = rois
        # rois.json is written at the first processed batch, after this returns
        header["frame_shape"] = list(shape)
        header["roi_names"] = list(rois.names)
        labels = rois.label_image().astype(np.int32)
        buf = io.BytesIO()
        np.save(buf, labels)
        sink.open_append(ROI_LABELS)
        sink.append(ROI_LABELS, buf.getvalue())
        opt = TraceOptions(
            neuropil_coefficient=params["neuropil_coefficient"],
            baseline_window_s=params["baseline_window_s"],
            baseline_percentile=params["baseline_percentile"],
        )
        w = weights_to_xp(xp, build_weights(rois, neuropil_pixels(rois)))
        return FullPathProcessor(reg, TraceExtractor(xp, w, frame_rate_hz, opt))

    writer = ResultsWriter(sink, prefix="imaging/")
    header: dict[str, Any] = {
        "source": "motor-rig session",
        "trace_options": params,
        "frame_rate_hz": frame_rate_hz,
        "warmup_frames": warmup_frames,
        "max_shift_px": max_shift_px,
    }
    pipe = ImagingPipeline(
        setup=setup,
        warmup_frames=warmup_frames,
        queue_frames=params["queue_frames"],
        writer=writer,
        header=header,
        frame_clock_us=frame_clock_us,
    )
    pipe.start()
    try:
        pipe.feed(frames)
    finally:
        summary = pipe.close()
    summary["n_rois"] = len(chosen["rois"]) if "rois" in chosen else 0
    return summary


def session_frames(rig_config: dict[str, Any], n_frames: int) -> Any:
    """A ``FrameSource`` replaying a session's movie: the TIFF source unpaced, or the synthetic
    movie regenerated from its seed (``n_frames`` long, as recorded)."""
    from rig.core.config import RigConfig

    cfg = RigConfig.model_validate(rig_config).imaging
    if cfg is None:
        raise ValueError("the session's rig config has no imaging section")
    src = cfg.source
    if src.kind == "synthetic":
        from acquisition.sources.synthetic import SyntheticSource

        return SyntheticSource.generate(
            n_frames, size_px=src.size_px, n_cells=src.n_cells, frame_rate_hz=src.frame_rate_hz,
            max_shift_px=src.max_shift_px, seed=src.seed,
        )  # fmt: skip
    if src.kind == "tiff":
        from acquisition.sources import open_source

        return open_source(src, paced=False)
    raise ValueError(f"imaging source {src.kind!r} is live only (nothing recorded to re-read)")


@dataclass
class ImagingComparison:
    """Recorded vs re-processed ΔF/F."""

    n_frames: int
    n_cells: int
    max_abs_diff: float
    differences: list[str]


def reprocess_imaging(
    session: Path, out_folder: Path, backend: str | None = None, atol: float = 1e-4
) -> ImagingComparison:
    """Re-run the pipeline over ``session``'s frames with its recorded ROIs and parameters into
    ``out_folder/imaging/`` and compare ΔF/F with the recording.

    ``atol`` bounds the allowed ΔF/F difference (a different backend, e.g. CuPy against a numpy
    recording, differs in the last float32 bits).
    """
    from acquisition.traces.store import FolderSink, read_results
    from rig.core.store import SessionReader

    reader = SessionReader(session)
    rec = read_results(reader.folder / "imaging")
    head = rec["header"]
    n = len(rec["frames"])
    labels = np.load(reader.folder / ROI_LABELS)
    src = session_frames(reader.meta.rig_config, n)
    params = imaging_params(reader.meta.rig_config)
    fs = float(head.get("frame_rate_hz") or 30.0)
    clock = rec.get("frame_times_us", rec["frames"]["t_board_us"])
    if (out_folder / "imaging").exists():
        shutil.rmtree(out_folder / "imaging")  # the sink appends: start from nothing
    sink = FolderSink(out_folder)
    with src:
        run_pipeline(
            _first(src, n), sink, fs, params, frame_clock_us=[int(t) for t in clock],
            roi_labels=labels, warmup_frames=int(head.get("warmup_frames", 60)),
            max_shift_px=int(head.get("max_shift_px", 10)), backend=backend,
        )  # fmt: skip
    new = read_results(out_folder / "imaging")
    diffs: list[str] = []
    a, b = rec["dff"], new["dff"]
    if a.shape != b.shape:
        diffs.append(f"ΔF/F: recorded {a.shape} != re-processed {b.shape}")
        return ImagingComparison(n, int(head["n_cells"]), float("nan"), diffs)
    err = np.abs(a.astype(np.float64) - b)
    finite = np.isfinite(err)
    max_err = float(err[finite].max()) if finite.any() else 0.0
    if not np.array_equal(np.isnan(a), np.isnan(b)):
        diffs.append("ΔF/F: NaN in different places")
    if max_err > atol:
        t, c = np.unravel_index(int(np.nanargmax(err)), err.shape)
        diffs.append(
            f"ΔF/F: max |difference| {max_err:.3g} > {atol:g} (frame {t}, cell {c}: "
            f"recorded {a[t, c]:.5f}, re-processed {b[t, c]:.5f})"
        )
    return ImagingComparison(n, int(head["n_cells"]), max_err, diffs)


def _first(src: Iterable[tuple[int, float, np.ndarray]], n: int) -> Iterable[Any]:
    for k, item in enumerate(src):
        if k >= n:
            return
        yield item

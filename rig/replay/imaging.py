"""Run the imaging pipeline over a session's frames and write ``imaging/`` (recording and
re-processing share this, so a re-run uses exactly the code and parameters of the original).

The ROI set used is saved as ``imaging/roi_labels.npy`` (int32 label image, ``k`` = ROI ``k-1``)
so the export and a re-run find the same cells.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rig.runner.imaging import ROI_LABELS, build_pipeline, imaging_params
from rig.runner.imaging_drive import recorded_drives

__all__ = ["ROI_LABELS", "imaging_params", "reprocess_imaging", "run_pipeline", "session_frames"]


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
    header: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Register and extract traces for ``frames`` into ``sink`` (a ``SessionWriter`` or
    ``FolderSink``) under ``imaging/`` with :func:`rig.runner.imaging.build_pipeline` (the live
    session's set-up); returns the pipeline's summary.

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
    pipe, chosen = build_pipeline(
        sink, frame_rate_hz, params, frame_clock_us=frame_clock_us, roi_labels=roi_labels,
        warmup_frames=warmup_frames, max_shift_px=max_shift_px, backend=backend, header=header,
    )  # fmt: skip
    pipe.start()
    try:
        pipe.feed(frames)
    finally:
        summary = pipe.close()
    summary["n_rois"] = len(chosen["rois"]) if "rois" in chosen else 0
    return summary


def session_frames(
    rig_config: dict[str, Any],
    n_frames: int,
    movie_frames: int | None = None,
    drives: np.ndarray | None = None,
) -> Any:
    """A ``FrameSource`` replaying a session's movie: the TIFF source unpaced, or the synthetic
    movie regenerated from its seed: ``movie_frames`` long when given (a live session records the
    length it generated, ``synthetic_n_frames`` in ``rois.json``: the movie's random draws depend
    on it), else ``n_frames`` (the frames recorded). ``drives``: the events that drove the live
    synthetic movie (:func:`rig.runner.imaging_drive.recorded_drives`), replayed into it."""
    from rig.core.config import RigConfig

    cfg = RigConfig.model_validate(rig_config).imaging
    if cfg is None:
        raise ValueError("the session's rig config has no imaging section")
    src = cfg.source
    if src.kind == "synthetic":
        from acquisition.sources.synthetic import SyntheticSource

        return SyntheticSource.generate(
            movie_frames or n_frames, stream=movie_frames is not None, size_px=src.size_px,
            n_cells=src.n_cells, frame_rate_hz=src.frame_rate_hz, max_shift_px=src.max_shift_px,
            seed=src.seed, drives=drives,
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
    src = session_frames(
        reader.meta.rig_config, n, head.get("synthetic_n_frames"), recorded_drives(reader.folder)
    )
    params = imaging_params(reader.meta.rig_config)
    fs = float(head.get("frame_rate_hz") or 30.0)
    idx = rec["frames"]["frame_index"].astype(np.int64)
    times = rec.get("frame_times_us", rec["frames"]["t_board_us"])
    # the pipeline takes the clock by edge index (edge k = frame k); frames the live session
    # never got (missed edges) keep -1
    clock = np.full(int(idx.max()) + 1 if n else 0, -1, np.int64)
    clock[idx] = np.asarray(times, np.int64)[: len(idx)]
    if (out_folder / "imaging").exists():
        shutil.rmtree(out_folder / "imaging")  # the sink appends: start from nothing
    sink = FolderSink(out_folder)
    with src:
        run_pipeline(
            _recorded(src, idx), sink, fs, params, frame_clock_us=[int(t) for t in clock],
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


def _recorded(src: Iterable[tuple[int, float, np.ndarray]], idx: np.ndarray) -> Iterable[Any]:
    """The source frames whose indices the recording processed, in order."""
    want = set(idx.tolist())
    last = int(idx.max()) if len(idx) else -1
    for item in src:
        if item[0] > last:
            return
        if item[0] in want:
            yield item

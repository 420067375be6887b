"""The ground truth of a synthetic movie (:class:`SyntheticMovie`), saving and loading it, and
driving its responsive cells with events while it plays (:func:`apply_drive`).

Split from :mod:`acquisition.sources.synthetic` (which makes movies and re-exports these names).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np

from acquisition.sources.synthetic_model import CalciumKernels, LazyFrames, drive_burst


@dataclass
class SyntheticMovie:
    """A synthetic movie and everything that generated it.

    Attributes
    ----------
    frames : np.ndarray
        uint16 ``(T, Y, X)``, counts.
    shifts_px : np.ndarray
        float32 ``(T, 2)``: ``(dy, dx)`` rigid displacement of the frame content relative to the
        reference, ``frame_t(y, x) ~= reference(y - dy, x - dx)``. With ``nonrigid`` this is the
        field's mean over the FOV.
    reference : np.ndarray
        float32 ``(Y, X)``: the motion-free, noise-free mean image in counts, without line phase.
    masks : np.ndarray
        int32 ``(Y, X)`` label image, 0 = background, ``k`` = cell ``k - 1`` (footprint >= 0.5).
    f_true : np.ndarray
        float32 ``(T, n_cells)``: true somatic fluorescence at the footprint peak, photons/frame
        (no neuropil, no noise); includes bleaching and drift.
    dff_true : np.ndarray
        float32 ``(T, n_cells)``: true ΔF/F, ``f_true / f0_true - 1``.
    neuropil_true : np.ndarray
        float32 ``(T,)``: neuropil time course (dimensionless, ~1); neuropil photons at a pixel are
        ``neuropil_image * neuropil_true[t] * baseline_mod[t]``.
    frame_rate_hz : float
        Frame rate.
    block_shifts_px : np.ndarray or None
        float32 ``(T, nby, nbx, 2)``: the non-rigid field ``(dy, dx)`` at ``block_centers_px``;
        ``None`` for rigid motion.
    line_phase_px : float
        Bidirectional line offset: odd lines (1, 3, ...) are displaced by ``+line_phase_px`` in x
        relative to even lines, after motion.
    f0_true : np.ndarray
        float32 ``(T, n_cells)``: true baseline (``f0_k * baseline_mod[t]``), photons/frame.
    spikes : np.ndarray
        uint8 ``(T, n_cells)``: spikes per frame.
    baseline_mod : np.ndarray
        float32 ``(T,)``: bleaching x drift multiplier shared by all fluorescence.
    neuropil_image : np.ndarray
        float32 ``(Y, X)``: neuropil photons per pixel when ``neuropil_true * baseline_mod == 1``.
    centers_px : np.ndarray
        float32 ``(n_cells, 2)``: cell centers ``(y, x)`` in reference coordinates.
    responsive : np.ndarray
        bool ``(n_cells,)``: cells whose firing is driven by ``events_s``.
    block_centers_px : np.ndarray or None
        float32 ``(nby, nbx, 2)``: ``(y, x)`` centers the block shifts are sampled at.
    t_frame_s : np.ndarray
        float64 ``(T,)``: frame times, ``index / frame_rate_hz``.
    dark_counts, gain_counts_per_photon : float
        Count conversion: ``counts = dark_counts + gain_counts_per_photon * photons``.
    seed : int
        The seed it was made with.
    lazy_frames : LazyFrames or None
        With ``make_movie(..., render_frames=False)``, ``frames`` is empty and this renders
        them a chunk at a time, identical to the full render (same per-chunk seeds).
    kernel_tau_decay_s, kernel_tau_rise_s, kernel_amp : np.ndarray
        float64 ``(n_cells,)``: each cell's calcium kernel (ΔF/F per spike ``kernel_amp``).
    drive_events : np.ndarray
        float64 ``(n, 2)``: events that drove the responsive cells while the movie played
        (:func:`apply_drive`), in order: event time (s from frame 0) and the first frame not yet
        delivered when it was applied (the burst cannot start earlier).
    """

    frames: np.ndarray
    shifts_px: np.ndarray
    reference: np.ndarray
    masks: np.ndarray
    f_true: np.ndarray
    dff_true: np.ndarray
    neuropil_true: np.ndarray
    frame_rate_hz: float
    block_shifts_px: np.ndarray | None
    line_phase_px: float
    f0_true: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    spikes: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.uint8))
    baseline_mod: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    neuropil_image: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    centers_px: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    responsive: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    block_centers_px: np.ndarray | None = None
    t_frame_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dark_counts: float = 0.0
    gain_counts_per_photon: float = 1.0
    seed: int = 0
    lazy_frames: LazyFrames | None = field(default=None, repr=False, compare=False)
    kernel_tau_decay_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    kernel_tau_rise_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    kernel_amp: np.ndarray = field(default_factory=lambda: np.zeros(0))
    drive_events: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))

    @property
    def n_cells(self) -> int:
        return int(self.f_true.shape[1])

    @property
    def n_frames(self) -> int:
        return len(self.t_frame_s)

    def save_truth(self, path: str | Path | IO[bytes], n_frames: int | None = None) -> Path:
        """Write every field except ``frames`` to an ``.npz`` (the frames go to a TIFF).

        ``n_frames`` keeps only the first frames of every per-frame field (a live session
        saves the frames it played, not the whole movie it made). ``path`` may be an open
        binary file. Returns the path written. :func:`load_truth` reads it back.
        """
        T = self.n_frames if n_frames is None else max(0, min(int(n_frames), self.n_frames))
        arrays: dict[str, np.ndarray] = {}
        for name, value in vars(self).items():
            if name in ("frames", "lazy_frames") or value is None:
                continue
            a = np.asarray(value)
            arrays[name] = a[:T] if name in _PER_FRAME else a
        np.savez_compressed(path, **arrays)  # type: ignore[arg-type]
        if not isinstance(path, str | Path):
            return Path(getattr(path, "name", ""))
        path = Path(path)
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


#: Fields with one row per frame.
_PER_FRAME = frozenset(
    {"shifts_px", "f_true", "dff_true", "neuropil_true", "block_shifts_px", "f0_true", "spikes",
     "baseline_mod", "t_frame_s"}
)  # fmt: skip


def apply_drive(movie: SyntheticMovie, t_event_s: float, first_frame: int) -> int:
    """Drive the responsive cells with an event at ``t_event_s`` (s from frame 0).

    Each fires a burst (:func:`acquisition.sources.synthetic_model.drive_burst`) whose calcium
    transient is added to the truth (``spikes``, ``dff_true``, ``f_true``) and to what the
    renderer draws, at ``first_frame`` and later only: frames before it may already have been
    delivered. The event is appended to ``movie.drive_events``; its random draws depend only on
    the seed and the event's place in that list, so applying the same list to a fresh movie
    renders the same frames (a re-run of a live session). Neuropil does not follow the drive.

    Returns the first frame whose content changed (``n_frames`` if none did).
    """
    T, fs = movie.n_frames, movie.frame_rate_hz
    ordinal = len(movie.drive_events)
    rng = np.random.default_rng([movie.seed, 0xD71E, ordinal])
    cells, frames, counts = drive_burst(rng, movie.responsive, t_event_s, fs, first_frame, T)
    kernels = CalciumKernels(movie.kernel_tau_decay_s, movie.kernel_tau_rise_s, movie.kernel_amp)
    movie.drive_events = np.vstack([movie.drive_events, [[float(t_event_s), float(first_frame)]]])
    changed = T
    for c, t0, n in zip(cells.tolist(), frames.tolist(), counts.tolist(), strict=True):
        # 20 decay constants: the rest of the transient is below float32 resolution
        t1 = min(T, t0 + int(np.ceil(20 * kernels.tau_decay_s[c] * fs)) + 2)
        d = n * kernels.response(c, t1 - t0, fs)
        movie.spikes[t0, c] = min(255, int(movie.spikes[t0, c]) + n)
        movie.dff_true[t0:t1, c] += d.astype(np.float32)
        # f_true is the renderer's own array (shared): the frames rendered from now on show it
        movie.f_true[t0:t1, c] += (movie.f0_true[t0:t1, c] * d).astype(np.float32)
        changed = min(changed, t0 + 1)  # the kernel is 0 at the spike's own frame
    return changed


def load_truth(path: str | Path) -> dict[str, np.ndarray]:
    """Read a ground-truth ``.npz`` written by :meth:`SyntheticMovie.save_truth`."""
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def truth_path_for(movie_path: str | Path) -> Path:
    """Where the ground truth for a written movie lives: ``<stem>.truth.npz`` beside it."""
    p = Path(movie_path)
    return p.with_name(p.stem + ".truth.npz")

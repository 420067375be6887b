"""Synthetic two-photon movies with exact ground truth, and a ``FrameSource`` over them.

The field of view is rendered on a larger *periodic* canvas (the FOV plus a margin wider than the
largest shift) so that rigid sub-pixel motion can be applied by a Fourier phase ramp, which is
exact for the band-limited content used here, and cropped afterwards: the recorded truth is the
shift that was applied, not an estimate of it. Non-rigid motion is applied by cubic-spline
resampling of the same canvas (``scipy.ndimage.map_coordinates``).

Model, per frame ``t`` (photons per pixel, before noise)::

    canvas_t = mod[t] * (neuropil_image * neuropil_true[t] + sum_k footprint_k * f_k(t)/mod[t])

where ``mod`` is bleaching x slow baseline drift (shared by all fluorescence), ``f_true[t, k] =
f0_true[t, k] * (1 + dff_true[t, k])`` and ``f0_true[t, k] = f0_k * mod[t]``. Frames in counts are
``dark_counts + gain_counts_per_photon * photons`` with shot noise (a normal draw in the Anscombe
domain by default, mean lambda and variance lambda + 1/2; exact Poisson on request, slower).

Sign convention (shared with registration): frame content is displaced by ``(dy, dx)``, i.e.
``frame_t(y, x) ~= reference(y - dy, x - dx)``; registration must shift by ``-(dy, dx)`` to undo.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import scipy.fft as sfft
from scipy import signal

from acquisition.sources.base import FrameSource, FrameTuple
from acquisition.sources.synthetic_model import (
    CHUNK_FRAMES,
    CalciumKernels,
    LazyFrames,
    Renderer,
    activity,
    drive_burst,
    field_at,
    footprints,
    lowpass_noise,
    motion,
    periodic_smooth_noise,
    place_cells,
)


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


# ---------------------------------------------------------------------------- movie
def make_movie(
    n_frames: int,
    size_px: int = 512,
    n_cells: int = 100,
    frame_rate_hz: float = 30.0,
    max_shift_px: float = 5.0,
    nonrigid: bool = False,
    line_phase_px: float = 0.0,
    noise: bool = True,
    seed: int = 0,
    events_s: np.ndarray | None = None,
    *,
    responsive_fraction: float = 0.3,
    nonrigid_amplitude_px: float = 2.0,
    block_size_px: int = 128,
    brightness_photons: float = 12.0,
    gain_counts_per_photon: float = 20.0,
    dark_counts: float = 100.0,
    bleach_tau_s: float = 1200.0,
    exact_poisson: bool = False,
    render_frames: bool = True,
    drives: np.ndarray | None = None,
) -> SyntheticMovie:
    """Render a synthetic two-photon movie with its ground truth.

    Parameters
    ----------
    n_frames : int
        Frames ``T``.
    size_px : int
        Square field of view ``Y = X = size_px``.
    n_cells : int
        Labeled cells, 10-14 px soft ellipses, placed at least 16 px apart.
    frame_rate_hz : float
        Frame rate; kernels and motion are defined in seconds so any rate works.
    max_shift_px : float
        Largest absolute rigid displacement on either axis.
    nonrigid : bool
        Add a smooth, slowly varying non-rigid field (up to ``nonrigid_amplitude_px``) on top.
    line_phase_px : float
        Bidirectional offset of odd lines in x (sub-pixel allowed).
    noise : bool
        Add shot noise (Anscombe-domain normal approximation of Poisson unless
        ``exact_poisson``).
    seed : int
        Everything is deterministic given the seed.
    events_s : np.ndarray or None
        float ``(n_events,)`` behavioral event times (s from frame 0); responsive cells fire a
        burst ~150 ms after each.
    responsive_fraction : float
        Fraction of cells driven by ``events_s``.
    nonrigid_amplitude_px : float
        Peak deviation of the non-rigid field from the rigid shift.
    block_size_px : int
        Block grid (non-overlapping, ``size_px // block_size_px`` per axis) on which
        ``block_shifts_px`` is reported.
    brightness_photons : float
        Mean cell baseline, photons per pixel per frame at the footprint peak (neuropil ~ half).
    gain_counts_per_photon, dark_counts : float
        Photon-to-count conversion.
    bleach_tau_s : float
        Exponential bleaching time constant.
    exact_poisson : bool
        Draw exact Poisson noise (about 5x slower).
    render_frames : bool
        False leaves ``frames`` empty and sets ``lazy_frames`` (bounded memory for long movies).
    drives : np.ndarray or None
        float ``(n, 2)``: a live session's ``drive_events`` (event time s, first frame), applied
        in order with :func:`apply_drive` before rendering, so the frames are the ones played.

    Returns
    -------
    SyntheticMovie
    """
    if n_frames < 1 or size_px < 16:
        raise ValueError(f"need n_frames >= 1 and size_px >= 16, got {n_frames}, {size_px}")
    rng = np.random.default_rng(seed)
    fs = float(frame_rate_hz)
    T = int(n_frames)
    extra = nonrigid_amplitude_px if nonrigid else 0.0
    # Even margin keeps odd FOV lines odd on the canvas (line phase) and holds the largest shift.
    pad = int(np.ceil(max_shift_px + extra + 8))
    pad += pad % 2
    canvas = sfft.next_fast_len(size_px + 2 * pad, real=True)
    canvas += canvas % 2

    # Spatial components.
    centers = place_cells(rng, n_cells, size_px, 16.0, 10.0)
    foot, labels_canvas = footprints(rng, centers, canvas, pad)
    np_smooth = periodic_smooth_noise(rng, (canvas, canvas), 40.0)
    np_fine = periodic_smooth_noise(rng, (canvas, canvas), 1.5)
    neuropil_img = (0.5 * brightness_photons) * np.clip(
        1 + 0.3 * np_smooth + 0.25 * np_fine, 0.1, None
    )

    # Temporal components.
    spikes, dff, responsive, kernels = activity(rng, T, n_cells, fs, events_s, responsive_fraction)
    t_s = np.arange(T) / fs
    mod = np.exp(-t_s / bleach_tau_s) * (1 + 0.03 * lowpass_noise(rng, T, 10.0 * fs))
    f0_cell = brightness_photons * rng.lognormal(0.0, 0.25, size=n_cells)
    f0 = mod[:, None] * f0_cell[None, :]
    f = f0 * (1 + dff)
    pop = dff.mean(axis=1) if n_cells else np.zeros(T)
    pop_lp = signal.lfilter([1 - np.exp(-1 / fs)], [1, -np.exp(-1 / fs)], pop)
    neuropil = 1 + 0.5 * pop_lp + 0.05 * lowpass_noise(rng, T, 2.0 * fs)

    shifts = motion(rng, T, fs, max_shift_px)
    block_centers = block_shifts = None
    field_knots = None
    if nonrigid:
        # A 3x3 grid of control points, each with its own slow trajectory, upsampled smoothly.
        field_knots = np.stack(
            [np.stack([lowpass_noise(rng, T, 2.0 * fs) for _ in range(9)], 1) for _ in range(2)],
            -1,
        ).reshape(T, 3, 3, 2)
        field_knots *= nonrigid_amplitude_px / (np.abs(field_knots).max() + 1e-12)
        field_knots -= field_knots.mean(axis=(1, 2), keepdims=True)
        nb = max(size_px // block_size_px, 1)
        bc = (np.arange(nb) + 0.5) * (size_px / nb)
        block_centers = np.stack(np.meshgrid(bc, bc, indexing="ij"), -1).astype(np.float32)
        centers_flat = block_centers.reshape(-1, 2)
        block_shifts = np.stack(
            [
                shifts[t] + field_at(field_knots[t], centers_flat, size_px).reshape(nb, nb, 2)
                for t in range(T)
            ]
        ).astype(np.float32)

    foot_t = foot.T.tocsr()
    np_flat = neuropil_img.ravel().astype(np.float32)
    crop = np.s_[pad : pad + size_px, pad : pad + size_px]
    f_true = f.astype(np.float32)  # shared with the renderer: a drive changes both at once
    renderer = Renderer(
        canvas=canvas, pad=pad, size_px=size_px, foot_t=foot_t if n_cells else None,
        np_flat=np_flat, f=f_true, np_mod=(neuropil * mod).astype(np.float32),
        shifts=shifts, field_knots=field_knots, line_phase_px=float(line_phase_px),
        noise=noise, exact_poisson=exact_poisson, dark_counts=dark_counts,
        gain=gain_counts_per_photon,
    )  # fmt: skip
    lazy = LazyFrames(renderer, T, seed)

    # Noise-free, motion-free mean image in counts (before any drive: the reference is the
    # movie's resting state).
    mean_phot = np.asarray(foot.T @ f.mean(axis=0)).ravel() + np_flat * float(
        (neuropil * mod).mean()
    )
    reference = dark_counts + gain_counts_per_photon * mean_phot.reshape(canvas, canvas)[crop]

    movie = SyntheticMovie(
        frames=np.empty((0, size_px, size_px), np.uint16),
        shifts_px=(shifts if block_shifts is None else block_shifts.mean(axis=(1, 2))).astype(
            np.float32
        ),
        reference=reference.astype(np.float32),
        masks=labels_canvas[crop].astype(np.int32),
        f_true=f_true,
        dff_true=dff.astype(np.float32),
        neuropil_true=neuropil.astype(np.float32),
        frame_rate_hz=fs,
        block_shifts_px=block_shifts,
        line_phase_px=float(line_phase_px),
        f0_true=f0.astype(np.float32),
        spikes=spikes,
        baseline_mod=mod.astype(np.float32),
        neuropil_image=neuropil_img[crop].astype(np.float32),
        centers_px=centers.astype(np.float32),
        responsive=responsive,
        block_centers_px=block_centers,
        t_frame_s=t_s,
        dark_counts=float(dark_counts),
        gain_counts_per_photon=float(gain_counts_per_photon),
        seed=int(seed),
        lazy_frames=lazy,
        kernel_tau_decay_s=kernels.tau_decay_s,
        kernel_tau_rise_s=kernels.tau_rise_s,
        kernel_amp=kernels.amp,
    )
    for t_event_s, first in np.asarray(drives if drives is not None else [], float).reshape(-1, 2):
        apply_drive(movie, float(t_event_s), int(first))
    if render_frames:
        frames = np.empty((T, size_px, size_px), np.uint16)

        def render(k: int) -> None:
            frames[k * CHUNK_FRAMES : (k + 1) * CHUNK_FRAMES] = lazy.chunk(k)

        # numpy's FFT, RNG and ufuncs release the GIL, so threads use every core.
        with ThreadPoolExecutor(max_workers=min(os.cpu_count() or 1, 8)) as pool:
            list(pool.map(render, range(lazy.n_chunks)))
        movie.frames, movie.lazy_frames = frames, None
    return movie


# ---------------------------------------------------------------------------- source
class SyntheticSource(FrameSource):
    """A :class:`FrameSource` over a :class:`SyntheticMovie` (made here or passed in).

    Parameters
    ----------
    movie : SyntheticMovie
        The movie to play; ``truth`` gives it back. A movie made with ``render_frames=False``
        is rendered 16 frames at a time as it is played (bounded memory).
    paced : bool
        Deliver at ``frame_rate_hz``.

    A streamed movie can be driven while it plays: :meth:`drive` (any thread) queues an event
    and the playing thread applies it (:func:`apply_drive`) before the next frame, re-rendering
    the current chunk's remaining frames if the burst reaches them. ``on_drive(t_event_s,
    first_frame)`` is called (playing thread) for each event applied.
    """

    def __init__(self, movie: SyntheticMovie, paced: bool = False) -> None:
        super().__init__(paced=paced)
        self.truth = movie
        self._drive_lock = threading.Lock()
        self._pending: list[float] = []
        self.on_drive: Callable[[float, int], None] | None = None
        self.n_delivered = 0  # frames yielded so far
        self.shape = (int(movie.reference.shape[0]), int(movie.reference.shape[1]))
        self.dtype = np.dtype(np.uint16)
        self.frame_rate_hz = movie.frame_rate_hz
        self.n_frames = movie.n_frames
        if movie.frames.shape[0] != movie.n_frames and movie.lazy_frames is None:
            raise ValueError("movie has neither all its frames nor a lazy renderer")

    @classmethod
    def generate(
        cls, n_frames: int, paced: bool = False, stream: bool = False, **kwargs: object
    ) -> SyntheticSource:
        """Make a movie with :func:`make_movie` (``kwargs`` passed through) and wrap it.

        ``stream=True`` renders frames as they are played instead of all up front.
        """
        movie = make_movie(n_frames, render_frames=not stream, **kwargs)  # type: ignore[arg-type]
        return cls(movie, paced=paced)

    def drive(self, t_event_s: float) -> None:
        """Drive the responsive cells with an event at ``t_event_s`` (s from frame 0); cheap and
        non-blocking (it only queues it). Only a streamed movie can change as it plays."""
        if self.truth.lazy_frames is None:
            raise ValueError("a fully rendered synthetic movie cannot be driven live; make it "
                             "with stream=True (render_frames=False)")  # fmt: skip
        with self._drive_lock:
            self._pending.append(float(t_event_s))

    def _apply_pending(self, first_frame: int) -> int:
        """Apply queued drives; returns the first frame they changed (``n_frames`` if none)."""
        with self._drive_lock:
            todo, self._pending = self._pending, []
        changed = self.truth.n_frames
        for t in todo:
            changed = min(changed, apply_drive(self.truth, t, first_frame))
            if self.on_drive is not None:
                self.on_drive(t, first_frame)
        return changed

    def _frames(self) -> Iterator[FrameTuple]:
        m = self.truth
        fs = m.frame_rate_hz
        if m.frames.shape[0] == m.n_frames:
            for i in range(m.n_frames):
                self.n_delivered = i + 1
                yield i, i / fs, m.frames[i]
            return
        lazy = m.lazy_frames
        assert lazy is not None
        for k in range(lazy.n_chunks):
            t0 = k * CHUNK_FRAMES
            chunk = lazy.chunk(k)
            for i in range(t0, t0 + len(chunk)):
                # a drive queued since the last frame changes frame i on: redo this chunk (the
                # same child seed, so the frames already delivered would come out unchanged)
                if self._pending and self._apply_pending(i) < t0 + len(chunk):
                    chunk = lazy.chunk(k)
                self.n_delivered = i + 1
                yield i, i / fs, chunk[i - t0]

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

import numpy as np
import scipy.fft as sfft
from scipy import signal

from acquisition.sources.base import FrameSource, FrameTuple
from acquisition.sources.synthetic_model import (
    CHUNK_FRAMES,
    LazyFrames,
    Renderer,
    activity,
    field_at,
    footprints,
    lowpass_noise,
    motion,
    periodic_smooth_noise,
    place_cells,
)
from acquisition.sources.synthetic_truth import (
    SyntheticMovie,
    apply_drive,
    load_truth,
    truth_path_for,
)

# The truth model and its I/O live in synthetic_truth; callers import them from here.
__all__ = [
    "SyntheticMovie",
    "SyntheticSource",
    "apply_drive",
    "load_truth",
    "make_movie",
    "truth_path_for",
]


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

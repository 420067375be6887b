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

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.fft as sfft
from scipy import ndimage, signal, sparse

from acquisition.sources.base import FrameSource, FrameTuple

_CHUNK_FRAMES = 16


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

    @property
    def n_cells(self) -> int:
        return int(self.f_true.shape[1])

    def save_truth(self, path: str | Path) -> Path:
        """Write every field except ``frames`` to an ``.npz`` (the frames go to a TIFF).

        Returns the path written. :func:`load_truth` reads it back.
        """
        path = Path(path)
        arrays: dict[str, np.ndarray] = {}
        for name, value in vars(self).items():
            if name == "frames" or value is None:
                continue
            arrays[name] = np.asarray(value)
        np.savez_compressed(path, **arrays)  # type: ignore[arg-type]
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def load_truth(path: str | Path) -> dict[str, np.ndarray]:
    """Read a ground-truth ``.npz`` written by :meth:`SyntheticMovie.save_truth`."""
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def truth_path_for(movie_path: str | Path) -> Path:
    """Where the ground truth for a written movie lives: ``<stem>.truth.npz`` beside it."""
    p = Path(movie_path)
    return p.with_name(p.stem + ".truth.npz")


# ---------------------------------------------------------------------------- spatial model
def _periodic_smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int], sigma_px: float
) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-filtered white noise on a periodic grid, float64."""
    white = rng.standard_normal(shape)
    ky = sfft.fftfreq(shape[0])[:, None]
    kx = sfft.rfftfreq(shape[1])[None, :]
    gain = np.exp(-2 * np.pi**2 * sigma_px**2 * (ky**2 + kx**2))
    out = sfft.irfft2(sfft.rfft2(white) * gain, s=shape)
    return np.asarray((out - out.mean()) / (out.std() + 1e-12))


def _place_cells(
    rng: np.random.Generator, n_cells: int, size_px: int, min_dist_px: float, margin_px: float
) -> np.ndarray:
    """Cell centers ``(n, 2)`` at least ``min_dist_px`` apart, ``margin_px`` from the FOV edge."""
    centers = np.zeros((0, 2))
    lo, hi = margin_px, size_px - margin_px
    tries = 0
    while len(centers) < n_cells:
        tries += 1
        if tries > 200:
            raise ValueError(
                f"cannot place {n_cells} cells {min_dist_px:.0f} px apart in {size_px} px: "
                f"placed {len(centers)}; use fewer cells or a larger size"
            )
        cand = rng.uniform(lo, hi, size=(max(4 * (n_cells - len(centers)), 16), 2))
        for c in cand:
            if len(centers) == n_cells:
                break
            if len(centers) == 0 or np.min(np.hypot(*(centers - c).T)) >= min_dist_px:
                centers = np.vstack([centers, c])
    return centers


def _footprints(
    rng: np.random.Generator, centers: np.ndarray, canvas: int, pad: int
) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Soft elliptical somata (dim nucleus), as a sparse ``(n_cells, canvas**2)`` matrix.

    Returns the matrix (peak 1 per cell) and a ``(canvas, canvas)`` int32 label image.
    """
    n = len(centers)
    rows, cols, vals = [], [], []
    labels = np.zeros((canvas, canvas), np.int32)
    best = np.zeros((canvas, canvas), np.float32)
    semi = rng.uniform(5.0, 7.0, size=(n, 2))  # semi-axes: 10-14 px diameters
    theta = rng.uniform(0, np.pi, size=n)
    half = 12  # patch half-width, > 1.6 x the largest semi-axis
    for k, (cy, cx) in enumerate(centers + pad):
        y0, x0 = int(np.rint(cy)) - half, int(np.rint(cx)) - half
        yy, xx = np.mgrid[y0 : y0 + 2 * half + 1, x0 : x0 + 2 * half + 1]
        dy, dx = yy - cy, xx - cx
        c, s = np.cos(theta[k]), np.sin(theta[k])
        u, v = (c * dx + s * dy) / semi[k, 0], (-s * dx + c * dy) / semi[k, 1]
        r = np.sqrt(u**2 + v**2)
        # Logistic edge ~1.5 px wide: soft enough that the Fourier shift stays exact.
        w = 1.0 / (1.0 + np.exp((r - 1.0) * 4.0)) * (1.0 - 0.35 * np.exp(-(r**2) / 0.15))
        w /= w.max()
        w[w < 1e-3] = 0.0
        nz = w > 0
        rows.append(np.full(nz.sum(), k))
        cols.append((yy[nz] * canvas + xx[nz]).ravel())
        vals.append(w[nz].ravel())
        sel = (w >= 0.5) & (w > best[yy, xx])
        labels[yy[sel], xx[sel]] = k + 1
        best[yy[sel], xx[sel]] = w[sel]
    if n == 0:
        return sparse.csr_matrix((0, canvas * canvas), dtype=np.float32), labels
    mat = sparse.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n, canvas * canvas),
        dtype=np.float32,
    )
    return mat, labels


# ---------------------------------------------------------------------------- temporal model
def _lowpass_noise(rng: np.random.Generator, n: int, tau_frames: float) -> np.ndarray:
    """Unit-std AR(1)-smoothed noise of length ``n``."""
    g = np.exp(-1.0 / max(tau_frames, 1e-6))
    x = signal.lfilter([1.0], [1.0, -g], rng.standard_normal(n + int(5 * tau_frames) + 1))
    x = x[-n:]
    return np.asarray((x - x.mean()) / (x.std() + 1e-12))


def _activity(
    rng: np.random.Generator,
    n_frames: int,
    n_cells: int,
    fs: float,
    events_s: np.ndarray | None,
    responsive_fraction: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spikes ``(T, n)`` uint8, ΔF/F ``(T, n)`` float64 and the responsive flags ``(n,)``."""
    rate_hz = rng.lognormal(np.log(0.15), 0.8, size=n_cells)
    spikes = rng.poisson(np.broadcast_to(rate_hz / fs, (n_frames, n_cells))).astype(np.int64)
    # Bursts: a fraction of spikes come as doublets/triplets, as in cortical pyramidal cells.
    spikes += rng.binomial(spikes, 0.3) + rng.binomial(spikes, 0.1)
    responsive = rng.random(n_cells) < responsive_fraction
    if events_s is not None and len(events_s) and responsive.any():
        idx = np.flatnonzero(responsive)
        for e in np.asarray(events_s, float):
            lag_s = rng.normal(0.15, 0.08, size=len(idx)).clip(0.0, 0.6)
            frame = np.floor((e + lag_s) * fs).astype(int)
            count = rng.poisson(2.0, size=len(idx))
            ok = (frame >= 0) & (frame < n_frames)
            np.add.at(spikes, (frame[ok], idx[ok]), count[ok])
    spikes = spikes.clip(0, 255)
    dff = np.zeros((n_frames, n_cells))
    tau_decay_s = rng.uniform(0.6, 1.2, size=n_cells)  # GCaMP6s-like
    tau_rise_s = rng.uniform(0.05, 0.1, size=n_cells)
    amp = rng.uniform(0.2, 0.5, size=n_cells)  # ΔF/F per spike
    for k in range(n_cells):
        gd, gr = np.exp(-1 / (tau_decay_s[k] * fs)), np.exp(-1 / (tau_rise_s[k] * fs))
        s = spikes[:, k].astype(float)
        kern_peak = _double_exp_peak(gd, gr)
        c = signal.lfilter([1.0], [1.0, -gd], s) - signal.lfilter([1.0], [1.0, -gr], s)
        dff[:, k] = amp[k] * c / kern_peak
    return spikes.astype(np.uint8), dff, responsive


def _double_exp_peak(gd: float, gr: float) -> float:
    n = np.arange(0, 10_000)
    return float(np.max(gd**n - gr**n)) or 1.0


def _motion(rng: np.random.Generator, n_frames: int, fs: float, max_shift_px: float) -> np.ndarray:
    """Rigid ``(T, 2)`` trajectory: slow drift, breathing-like jitter and brief movement bouts."""
    if max_shift_px <= 0:
        return np.zeros((n_frames, 2))
    out = np.zeros((n_frames, 2))
    t = np.arange(n_frames) / fs
    for axis in range(2):
        slow = _lowpass_noise(rng, n_frames, 3.0 * fs)
        fast = _lowpass_noise(rng, n_frames, 0.05 * fs)
        breath = np.sin(2 * np.pi * rng.uniform(1.5, 3.0) * t + rng.uniform(0, 2 * np.pi))
        out[:, axis] = 0.6 * slow + 0.25 * fast + 0.15 * breath
    # Movement bouts (lever pulls): brief, larger excursions.
    n_bouts = rng.poisson(max(n_frames / fs / 10.0, 1.0))
    for _ in range(n_bouts):
        c = rng.integers(0, n_frames)
        w = rng.uniform(0.2, 0.6) * fs
        bump = np.exp(-0.5 * ((np.arange(n_frames) - c) / max(w, 1.0)) ** 2)
        out += bump[:, None] * rng.normal(0, 1.0, size=2)
    peak = np.abs(out).max()
    return np.asarray(out / (peak + 1e-12) * max_shift_px)


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
    centers = _place_cells(rng, n_cells, size_px, 16.0, 10.0)
    foot, labels_canvas = _footprints(rng, centers, canvas, pad)
    np_smooth = _periodic_smooth_noise(rng, (canvas, canvas), 40.0)
    np_fine = _periodic_smooth_noise(rng, (canvas, canvas), 1.5)
    neuropil_img = (0.5 * brightness_photons) * np.clip(
        1 + 0.3 * np_smooth + 0.25 * np_fine, 0.1, None
    )

    # Temporal components.
    spikes, dff, responsive = _activity(rng, T, n_cells, fs, events_s, responsive_fraction)
    t_s = np.arange(T) / fs
    mod = np.exp(-t_s / bleach_tau_s) * (1 + 0.03 * _lowpass_noise(rng, T, 10.0 * fs))
    f0_cell = brightness_photons * rng.lognormal(0.0, 0.25, size=n_cells)
    f0 = mod[:, None] * f0_cell[None, :]
    f = f0 * (1 + dff)
    pop = dff.mean(axis=1) if n_cells else np.zeros(T)
    pop_lp = signal.lfilter([1 - np.exp(-1 / fs)], [1, -np.exp(-1 / fs)], pop)
    neuropil = 1 + 0.5 * pop_lp + 0.05 * _lowpass_noise(rng, T, 2.0 * fs)

    shifts = _motion(rng, T, fs, max_shift_px)
    block_centers = block_shifts = None
    field_knots = None
    if nonrigid:
        # A 3x3 grid of control points, each with its own slow trajectory, upsampled smoothly.
        field_knots = np.stack(
            [np.stack([_lowpass_noise(rng, T, 2.0 * fs) for _ in range(9)], 1) for _ in range(2)],
            -1,
        ).reshape(T, 3, 3, 2)
        field_knots *= nonrigid_amplitude_px / (np.abs(field_knots).max() + 1e-12)
        field_knots -= field_knots.mean(axis=(1, 2), keepdims=True)
        nb = max(size_px // block_size_px, 1)
        bc = (np.arange(nb) + 0.5) * (size_px / nb)
        block_centers = np.stack(np.meshgrid(bc, bc, indexing="ij"), -1).astype(np.float32)
        block_shifts = np.stack(
            [shifts[t] + _field_at(field_knots[t], block_centers, size_px) for t in range(T)]
        ).astype(np.float32)

    # Render in chunks: compose on the canvas, shift, crop, add noise.
    frames = np.empty((T, size_px, size_px), np.uint16)
    ky = sfft.fftfreq(canvas)[:, None].astype(np.float32)
    kx = sfft.rfftfreq(canvas)[None, :].astype(np.float32)
    foot_t = foot.T.tocsr()
    np_flat = neuropil_img.ravel().astype(np.float32)
    crop = np.s_[pad : pad + size_px, pad : pad + size_px]
    if nonrigid:
        gy, gx = np.mgrid[0:size_px, 0:size_px].astype(np.float32)
    for t0 in range(0, T, _CHUNK_FRAMES):
        t1 = min(t0 + _CHUNK_FRAMES, T)
        n = t1 - t0
        cells = np.asarray(foot_t @ f[t0:t1].T.astype(np.float32)) if n_cells else 0.0
        comp = cells + np_flat[:, None] * (neuropil[t0:t1] * mod[t0:t1]).astype(np.float32)
        comp = np.ascontiguousarray(np.asarray(comp, np.float32).T).reshape(n, canvas, canvas)
        if nonrigid:
            assert field_knots is not None
            out = np.empty((n, size_px, size_px), np.float32)
            for i, t in enumerate(range(t0, t1)):
                dyx = _field_dense(field_knots[t], size_px) + shifts[t]
                coords = [gy + pad - dyx[..., 0], gx + pad - dyx[..., 1]]
                out[i] = ndimage.map_coordinates(comp[i], coords, order=3, mode="grid-wrap")
            phot = out
        else:
            spec = sfft.rfft2(comp, workers=-1)
            dy = shifts[t0:t1, 0].astype(np.float32)[:, None, None]
            dx = shifts[t0:t1, 1].astype(np.float32)[:, None, None]
            # The phase ramp is separable: two small outer factors instead of a full-size exp.
            spec *= np.exp(-2j * np.pi * ky[None] * dy).astype(np.complex64)
            spec *= np.exp(-2j * np.pi * kx[None] * dx).astype(np.complex64)
            phot = sfft.irfft2(spec, s=(canvas, canvas), workers=-1)[(slice(None), *crop)]
        if line_phase_px:
            odd = np.ascontiguousarray(phot[:, 1::2, :])
            # The FOV is not periodic in x, so shift odd lines on a mirrored row to avoid wrap.
            ext = np.concatenate([odd, odd[..., ::-1]], axis=-1)
            kxl = sfft.rfftfreq(ext.shape[-1]).astype(np.float32)
            spec_l = sfft.rfft(ext, axis=-1, workers=-1) * np.exp(
                -2j * np.pi * kxl * np.float32(line_phase_px)
            ).astype(np.complex64)
            phot[:, 1::2, :] = sfft.irfft(spec_l, n=ext.shape[-1], axis=-1, workers=-1)[
                ..., :size_px
            ]
        phot = np.clip(phot, 0, None)
        if noise:
            if exact_poisson:
                phot = rng.poisson(phot).astype(np.float32)
            else:
                # Normal noise in the Anscombe (variance-stabilized) domain: non-negative and
                # skewed like Poisson at a few photons, where a plain normal goes negative.
                # Mean lambda, variance lambda + 1/2; a fifth of the cost of exact Poisson.
                z = rng.standard_normal(phot.shape, dtype=np.float32)
                z *= 0.5
                z += np.sqrt(phot + 0.375)
                np.square(z, out=z)
                z -= 0.625
                phot = np.maximum(z, 0.0, out=z)
        counts = dark_counts + gain_counts_per_photon * phot
        frames[t0:t1] = np.clip(np.rint(counts), 0, 65535).astype(np.uint16)

    # Noise-free, motion-free mean image in counts.
    mean_phot = np.asarray(foot.T @ f.mean(axis=0)).ravel() + np_flat * float(
        (neuropil * mod).mean()
    )
    reference = dark_counts + gain_counts_per_photon * mean_phot.reshape(canvas, canvas)[crop]

    return SyntheticMovie(
        frames=frames,
        shifts_px=(shifts if block_shifts is None else block_shifts.mean(axis=(1, 2))).astype(
            np.float32
        ),
        reference=reference.astype(np.float32),
        masks=labels_canvas[crop].astype(np.int32),
        f_true=f.astype(np.float32),
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
    )


def _field_at(knots: np.ndarray, yx: np.ndarray, size_px: int) -> np.ndarray:
    """Non-rigid deviation ``(..., 2)`` at points ``yx (..., 2)``: cubic interpolation of knots.

    The 3x3 knots sit at 0, size/2 and size (pixel coordinates) on each axis.
    """
    scale = 2.0 / size_px
    coords = [yx[..., 0] * scale, yx[..., 1] * scale]
    return np.stack(
        [ndimage.map_coordinates(knots[..., c], coords, order=2, mode="nearest") for c in range(2)],
        -1,
    )


def _field_dense(knots: np.ndarray, size_px: int) -> np.ndarray:
    """The non-rigid deviation over the whole FOV, ``(Y, X, 2)`` float32."""
    g = np.arange(size_px, dtype=np.float32)
    yx = np.stack(np.meshgrid(g, g, indexing="ij"), -1)
    return _field_at(knots, yx, size_px).astype(np.float32)


# ---------------------------------------------------------------------------- source
class SyntheticSource(FrameSource):
    """A :class:`FrameSource` over a :class:`SyntheticMovie` (made here or passed in).

    Parameters
    ----------
    movie : SyntheticMovie
        The movie to play; ``truth`` gives it back.
    paced : bool
        Deliver at ``frame_rate_hz``.
    """

    def __init__(self, movie: SyntheticMovie, paced: bool = False) -> None:
        super().__init__(paced=paced)
        self.truth = movie
        self.shape = (int(movie.frames.shape[1]), int(movie.frames.shape[2]))
        self.dtype = movie.frames.dtype
        self.frame_rate_hz = movie.frame_rate_hz
        self.n_frames = int(movie.frames.shape[0])

    @classmethod
    def generate(cls, n_frames: int, paced: bool = False, **kwargs: object) -> SyntheticSource:
        """Make a movie with :func:`make_movie` (``kwargs`` passed through) and wrap it."""
        return cls(make_movie(n_frames, **kwargs), paced=paced)  # type: ignore[arg-type]

    def _frames(self) -> Iterator[FrameTuple]:
        fs = self.truth.frame_rate_hz
        for i in range(self.truth.frames.shape[0]):
            yield i, i / fs, self.truth.frames[i]

"""The ingredients of a synthetic movie: cell footprints, neuropil, activity, motion.

Pure functions of a ``numpy.random.Generator``; :func:`acquisition.sources.synthetic.make_movie`
calls them in a fixed order so a seed fixes the movie. :class:`Renderer` turns the model into
frames, :class:`LazyFrames` a chunk at a time (each chunk with its own seed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft
from scipy import ndimage, signal, sparse

#: Frames rendered at once by :class:`LazyFrames` (each chunk has its own child seed).
CHUNK_FRAMES = 16


# ---------------------------------------------------------------------------- spatial model
def periodic_smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int], sigma_px: float
) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-filtered white noise on a periodic grid, float64."""
    white = rng.standard_normal(shape)
    ky = sfft.fftfreq(shape[0])[:, None]
    kx = sfft.rfftfreq(shape[1])[None, :]
    gain = np.exp(-2 * np.pi**2 * sigma_px**2 * (ky**2 + kx**2))
    out = sfft.irfft2(sfft.rfft2(white) * gain, s=shape)
    return np.asarray((out - out.mean()) / (out.std() + 1e-12))


def place_cells(
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


def footprints(
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
def lowpass_noise(rng: np.random.Generator, n: int, tau_frames: float) -> np.ndarray:
    """Unit-std AR(1)-smoothed noise of length ``n``."""
    g = np.exp(-1.0 / max(tau_frames, 1e-6))
    x = signal.lfilter([1.0], [1.0, -g], rng.standard_normal(n + int(5 * tau_frames) + 1))
    x = x[-n:]
    return np.asarray((x - x.mean()) / (x.std() + 1e-12))


def activity(
    rng: np.random.Generator,
    n_frames: int,
    n_cells: int,
    fs: float,
    events_s: np.ndarray | None,
    responsive_fraction: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, CalciumKernels]:
    """Spikes ``(T, n)`` uint8, ΔF/F ``(T, n)`` float64, the responsive flags ``(n,)`` and
    each cell's calcium kernel."""
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
        kern_peak = double_exp_peak(gd, gr)
        c = signal.lfilter([1.0], [1.0, -gd], s) - signal.lfilter([1.0], [1.0, -gr], s)
        dff[:, k] = amp[k] * c / kern_peak
    return spikes.astype(np.uint8), dff, responsive, CalciumKernels(tau_decay_s, tau_rise_s, amp)


@dataclass
class CalciumKernels:
    """Per-cell ΔF/F response to one spike: ``amp * (gd**n - gr**n) / peak`` n frames after
    it, ``gd = exp(-1 / (tau_decay_s * fs))``, ``gr`` likewise; float64 ``(n_cells,)`` each."""

    tau_decay_s: np.ndarray
    tau_rise_s: np.ndarray
    amp: np.ndarray

    def response(self, cell: int, n_frames: int, fs: float) -> np.ndarray:
        """ΔF/F ``(n_frames,)`` float64 of cell ``cell`` at 0, 1, ... frames after one spike."""
        gd = np.exp(-1 / (self.tau_decay_s[cell] * fs))
        gr = np.exp(-1 / (self.tau_rise_s[cell] * fs))
        n = np.arange(n_frames)
        return np.asarray(self.amp[cell] * (gd**n - gr**n) / double_exp_peak(gd, gr))


#: Drive bursts: latency after the event (s, normal, clipped) and spikes per responsive cell
#: (1 + Poisson): M1 pyramidal cells fire a short burst ~100-200 ms after movement onset.
DRIVE_LAG_S = (0.15, 0.05, 0.05, 0.4)
DRIVE_EXTRA_SPIKES = 1.5


def drive_burst(
    rng: np.random.Generator,
    responsive: np.ndarray,
    t_event_s: float,
    fs: float,
    first_frame: int,
    n_frames: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The burst each responsive cell fires after an event at ``t_event_s`` (s from frame 0).

    Returns ``(cells, frames, counts)``, int64 ``(m,)`` each, only spikes inside the movie; a
    spike that would fall before ``first_frame`` (frames already delivered) is moved to it, so
    the burst is late rather than lost and the truth stays the kernel times the spikes.
    """
    cells = np.flatnonzero(responsive)
    mean, sd, lo, hi = DRIVE_LAG_S
    lag_s = rng.normal(mean, sd, size=len(cells)).clip(lo, hi)
    counts = 1 + rng.poisson(DRIVE_EXTRA_SPIKES, size=len(cells))
    frames = np.maximum(np.floor((t_event_s + lag_s) * fs).astype(np.int64), first_frame)
    ok = (frames >= 0) & (frames < n_frames)
    return cells[ok], frames[ok], counts[ok].astype(np.int64)


def double_exp_peak(gd: float, gr: float) -> float:
    """Peak over integer n >= 0 of ``gd**n - gr**n`` (decay minus rise, per-frame factors)."""
    if not 0 < gr < gd < 1:
        return 1.0
    n_star = np.log(np.log(gr) / np.log(gd)) / np.log(gd / gr)
    n = np.array([np.floor(n_star), np.ceil(n_star), 1.0]).clip(0)
    return float(np.max(gd**n - gr**n)) or 1.0


def motion(rng: np.random.Generator, n_frames: int, fs: float, max_shift_px: float) -> np.ndarray:
    """Rigid ``(T, 2)`` trajectory: slow drift, breathing-like jitter and brief movement bouts."""
    if max_shift_px <= 0:
        return np.zeros((n_frames, 2))
    out = np.zeros((n_frames, 2))
    t = np.arange(n_frames) / fs
    for axis in range(2):
        slow = lowpass_noise(rng, n_frames, 3.0 * fs)
        fast = lowpass_noise(rng, n_frames, 0.05 * fs)
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


def knot_weights(coords_px: np.ndarray, size_px: int) -> np.ndarray:
    """Quadratic-spline weights ``(n, 3)`` of the 3 knots (at 0, size/2, size) at ``coords_px``.

    The 2-D field is the tensor product of these 1-D weights, so it is evaluated as two small
    matrix products instead of a per-pixel spline interpolation.
    """
    c = np.asarray(coords_px, np.float64).ravel() * (2.0 / size_px)
    basis = np.eye(3)
    return np.stack(
        [ndimage.map_coordinates(basis[j], [c], order=2, mode="nearest") for j in range(3)], -1
    )


def field_at(knots: np.ndarray, yx: np.ndarray, size_px: int) -> np.ndarray:
    """Non-rigid deviation ``(n, 2)`` at points ``yx (n, 2)`` from ``knots (3, 3, 2)``."""
    yx = np.asarray(yx).reshape(-1, 2)
    wy, wx = knot_weights(yx[:, 0], size_px), knot_weights(yx[:, 1], size_px)
    return np.einsum("ni,ijc,nj->nc", wy, knots, wx)


def field_dense(knots: np.ndarray, size_px: int, w: np.ndarray | None = None) -> np.ndarray:
    """The non-rigid deviation over the whole FOV, ``(Y, X, 2)`` float32.

    ``w`` is ``knot_weights(arange(size_px), size_px)``, passed in to reuse it across frames.
    """
    if w is None:
        w = knot_weights(np.arange(size_px), size_px)
    # Two small einsums, not BLAS: OpenBLAS threads thrash on tiny products inside worker threads.
    w32 = w.astype(np.float32)
    tmp = np.einsum("ijc,xj->ixc", knots.astype(np.float32), w32)
    return np.einsum("yi,ixc->yxc", w32, tmp)


# ---------------------------------------------------------------------------- rendering
@dataclass
class Renderer:
    """Turns the model into uint16 frames, one chunk of frames at a time."""

    canvas: int
    pad: int
    size_px: int
    foot_t: sparse.csr_matrix | None  # (canvas**2, n_cells) footprints
    np_flat: np.ndarray  # (canvas**2,) neuropil image
    f: np.ndarray  # (T, n_cells) somatic photons
    np_mod: np.ndarray  # (T,) neuropil_true * baseline_mod
    shifts: np.ndarray  # (T, 2)
    field_knots: np.ndarray | None  # (T, 3, 3, 2) non-rigid deviation
    line_phase_px: float
    noise: bool
    exact_poisson: bool
    dark_counts: float
    gain: float

    def render(self, t0: int, t1: int, rng: np.random.Generator) -> np.ndarray:
        """Frames ``t0:t1`` as uint16 ``(t1 - t0, Y, X)``."""
        n, canvas, size, pad = t1 - t0, self.canvas, self.size_px, self.pad
        comp = self.np_flat[:, None] * self.np_mod[None, t0:t1]
        if self.foot_t is not None:
            comp += np.asarray(self.foot_t @ self.f[t0:t1].T, dtype=np.float32)
        comp = np.ascontiguousarray(comp.T).reshape(n, canvas, canvas)
        crop = np.s_[:, pad : pad + size, pad : pad + size]
        if self.field_knots is not None:
            phot = np.empty((n, size, size), np.float32)
            gy, gx = np.mgrid[0:size, 0:size].astype(np.float32)
            w = knot_weights(np.arange(size), size)
            for i, t in enumerate(range(t0, t1)):
                dyx = field_dense(self.field_knots[t], size, w) + self.shifts[t]
                coords = [gy + pad - dyx[..., 0], gx + pad - dyx[..., 1]]
                phot[i] = ndimage.map_coordinates(comp[i], coords, order=3, mode="grid-wrap")
        else:
            spec = sfft.rfft2(comp)
            ky = sfft.fftfreq(canvas).astype(np.float32)[None, :, None]
            kx = sfft.rfftfreq(canvas).astype(np.float32)[None, None, :]
            dy = self.shifts[t0:t1, 0].astype(np.float32)[:, None, None]
            dx = self.shifts[t0:t1, 1].astype(np.float32)[:, None, None]
            # The phase ramp is separable: two small outer factors instead of a full-size exp.
            spec *= np.exp(-2j * np.pi * ky * dy).astype(np.complex64)
            spec *= np.exp(-2j * np.pi * kx * dx).astype(np.complex64)
            phot = sfft.irfft2(spec, s=(canvas, canvas))[crop]
        if self.line_phase_px:
            odd = np.ascontiguousarray(phot[:, 1::2, :])
            # The FOV is not periodic in x: shift odd lines on a mirrored row to avoid wrap.
            ext = np.concatenate([odd, odd[..., ::-1]], axis=-1)
            kxl = sfft.rfftfreq(ext.shape[-1]).astype(np.float32)
            ramp = np.exp(-2j * np.pi * kxl * np.float32(self.line_phase_px)).astype(np.complex64)
            line = sfft.irfft(sfft.rfft(ext, axis=-1) * ramp, n=ext.shape[-1], axis=-1)
            phot[:, 1::2, :] = line[..., :size]
        phot = np.clip(phot, 0, None)
        if self.noise:
            if self.exact_poisson:
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
        counts = self.dark_counts + self.gain * phot
        return np.clip(np.rint(counts), 0, 65535).astype(np.uint16)


class LazyFrames:
    """Chunk ``k`` (frames ``16k .. 16k + 15``) rendered on demand with its own child seed."""

    def __init__(self, renderer: Renderer, n_frames: int, seed: int) -> None:
        self.renderer = renderer
        self.n_frames = n_frames
        self.n_chunks = -(-n_frames // CHUNK_FRAMES)
        # Each chunk its own seed: frames do not depend on thread count or render order.
        self.seeds = np.random.SeedSequence([seed, 0x5E17]).spawn(self.n_chunks)

    def chunk(self, k: int) -> np.ndarray:
        t0 = k * CHUNK_FRAMES
        t1 = min(t0 + CHUNK_FRAMES, self.n_frames)
        return self.renderer.render(t0, t1, np.random.default_rng(self.seeds[k]))

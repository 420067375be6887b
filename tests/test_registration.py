"""Registration accuracy on synthetic movies with ground truth, and the pieces it is made of."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from acquisition.registration import (
    Registrar,
    RegistrationOptions,
    correct_line_phase,
    correlation_to_reference,
    crispness,
    estimate_line_phase,
    estimate_shifts,
    reference_spectrum,
    shift_frames,
    taper_mask,
)
from acquisition.sources.synthetic import make_movie


def _errors(est: np.ndarray, true: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Absolute errors after removing one constant offset (the reference origin is arbitrary)."""
    d = est - true
    off = np.median(d, axis=0)
    return np.abs(d - off), off


@pytest.fixture(scope="module")
def rigid_movie():
    return make_movie(240, size_px=192, n_cells=60, max_shift_px=15.0, seed=3)


def _smooth_image(rng: np.random.Generator, n: int) -> np.ndarray:
    """Smooth random image without Nyquist content (so sub-pixel shifts of it are exact)."""
    img = ndimage.gaussian_filter(rng.standard_normal((n, n)), 2.0) * 400 + 1000
    f = np.fft.fft2(img)
    f[n // 2, :] = 0
    f[:, n // 2] = 0
    return np.real(np.fft.ifft2(f)).astype(np.float32)


def _fourier_displace(img: np.ndarray, d: tuple[float, float]) -> np.ndarray:
    """Content displaced by +d: out(y, x) = img(y - dy, x - dx) (periodic, exact)."""
    return np.real(np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(img), d))).astype(np.float32)


def test_sign_convention_and_subpixel_on_known_shift():
    rng = np.random.default_rng(0)
    img = _smooth_image(rng, 128)
    true = np.array([[3.3, -7.6], [-12.25, 0.5], [0.0, 14.9]], np.float32)
    frames = np.stack([_fourier_displace(img, tuple(d)) for d in true])
    mask = taper_mask(img.shape, 3.45)
    est, peak = estimate_shifts(np, frames, reference_spectrum(np, img, mask, 1.15), mask, 20)
    assert est.shape == (3, 2) and peak.shape == (3,)
    np.testing.assert_allclose(est, true, atol=0.1)
    assert np.all(peak > 0.7), peak


def test_rigid_accuracy_meets_targets_on_synthetic_movie(rigid_movie):
    m = rigid_movie
    assert np.abs(m.shifts_px).max() > 8  # the movie really moves
    reg = Registrar(np, m.frames.shape[1:], RegistrationOptions(max_shift_px=20))
    reg.fit_reference(m.frames)
    res = reg.register(m.frames)
    err, off = _errors(res.shifts_px, m.shifts_px)
    assert err.mean() <= 0.1, err.mean()
    assert np.percentile(err, 99) <= 0.3, np.percentile(err, 99)
    # the reference is re-centred: its origin is the mean position of the reference frames
    np.testing.assert_allclose(res.shifts_px[:200].mean(axis=0), 0.0, atol=0.05)
    np.testing.assert_allclose(off, -m.shifts_px[:200].mean(axis=0), atol=0.1)
    # registered frames match the truth reference better than raw ones (interior only)
    before = correlation_to_reference(np, m.frames.astype(np.float32), m.reference, 20)
    after = correlation_to_reference(np, res.frames, m.reference, 20)
    assert after.mean() > before.mean() + 0.1
    # and the registered mean image is crisper
    assert crispness(np, res.frames.mean(0), 20) > 1.2 * crispness(np, m.frames.mean(0), 20)


def test_per_frame_api_equals_batched(rigid_movie):
    m = rigid_movie
    reg = Registrar(np, m.frames.shape[1:], RegistrationOptions(n_reference_frames=100))
    reg.fit_reference(m.frames)
    batch = reg.register(m.frames[:8])
    for i in range(8):
        one = reg.register_frame(m.frames[i])
        np.testing.assert_allclose(one.shifts_px[0], batch.shifts_px[i], atol=1e-4)
        np.testing.assert_allclose(one.frames[0], batch.frames[i], rtol=1e-5, atol=1e-2)


@pytest.mark.parametrize("method", ["fourier", "bilinear", "bilinear_roll"])
def test_shift_methods_undo_a_known_displacement(method):
    rng = np.random.default_rng(1)
    img = _smooth_image(rng, 96)
    d = np.array([[2.0, -3.0], [4.4, 1.7]], np.float32)
    frames = np.stack([_fourier_displace(img, tuple(x)) for x in d])
    out = shift_frames(np, frames, d, method)
    inner = (slice(None), slice(8, -8), slice(8, -8))
    # integer shift: exact for all; sub-pixel: bilinear smooths a little
    np.testing.assert_allclose(out[0][inner[1:]], img[inner[1:]], atol=0.05)
    tol = 0.5 if method == "fourier" else 40.0
    assert np.abs(out[1][inner[1:]] - img[inner[1:]]).max() < tol
    assert np.corrcoef(out[1][inner[1:]].ravel(), img[inner[1:]].ravel())[0, 1] > 0.99


def test_bilinear_roll_fast_path_equals_gather_reference():
    rng = np.random.default_rng(2)
    frames = rng.standard_normal((5, 40, 56)).astype(np.float32)
    shifts = rng.uniform(-9, 9, (5, 2)).astype(np.float32)
    shifts[0] = (3.0, -2.0)  # integer shift path
    a = shift_frames(np, frames, shifts, "bilinear")
    b = shift_frames(np, frames, shifts, "bilinear_roll")
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="unknown shift method"):
        shift_frames(np, frames, shifts, "cubic")


def test_line_phase_estimate_and_correction():
    m = make_movie(60, size_px=128, n_cells=30, max_shift_px=3.0, line_phase_px=1.5, seed=4)
    p = estimate_line_phase(np, m.frames)
    assert abs(p - 1.5) < 0.15, p
    fixed = correct_line_phase(np, m.frames.astype(np.float32), p)
    assert abs(estimate_line_phase(np, fixed)) < 0.15
    reg = Registrar(np, (128, 128), RegistrationOptions(n_reference_frames=60))
    reg.fit_reference(m.frames)
    assert abs(reg.line_phase_px - 1.5) < 0.15
    err, _ = _errors(reg.register(m.frames).shifts_px, m.shifts_px)
    assert err.mean() <= 0.1


def test_integer_line_phase_uses_roll_exactly():
    f = np.arange(4 * 6, dtype=np.float32).reshape(1, 4, 6)
    out = correct_line_phase(np, f.copy(), 2.0)
    np.testing.assert_array_equal(out[0, 0], f[0, 0])
    np.testing.assert_array_equal(out[0, 1], np.roll(f[0, 1], -2))


def test_piecewise_rigid_improves_on_rigid_for_nonrigid_motion():
    m = make_movie(
        80,
        size_px=192,
        n_cells=60,
        max_shift_px=3.0,
        nonrigid=True,
        nonrigid_amplitude_px=3.0,
        block_size_px=64,
        seed=5,
    )
    rigid = Registrar(np, (192, 192), RegistrationOptions(n_reference_frames=80))
    rigid.fit_reference(m.frames)
    nr = Registrar(
        np,
        (192, 192),
        RegistrationOptions(
            n_reference_frames=80, nonrigid=True, block_px=64, max_block_shift_px=6
        ),
    )
    nr.fit_reference(m.frames)
    a = rigid.register(m.frames)
    b = nr.register(m.frames)
    assert b.block_shifts_px is not None and b.block_shifts_px.shape[-1] == 2
    assert b.block_shifts_px.shape[:1] == (80,)
    ca = correlation_to_reference(np, a.frames, m.reference, 16).mean()
    cb = correlation_to_reference(np, b.frames, m.reference, 16).mean()
    assert cb > ca + 0.005, (ca, cb)
    # residual block shifts vary across the field of view (the motion is not rigid)
    assert b.block_shifts_px[..., 0].std(axis=(1, 2)).mean() > 0.3


def test_template_update_follows_slow_change_and_drift_guard_holds_origin(rigid_movie):
    m = rigid_movie
    opt = RegistrationOptions(
        n_reference_frames=100,
        template_update_rate=0.5,
        template_update_every=40,
        drift_guard_px=0.3,
    )
    reg = Registrar(np, m.frames.shape[1:], opt)
    reg.fit_reference(m.frames)
    ref0 = reg.reference.copy()
    # updates happen at batch boundaries once template_update_every frames have accumulated
    shifts = np.concatenate(
        [reg.register(m.frames[s : s + 40]).shifts_px for s in range(0, 240, 40)]
    )
    assert reg.template_updates == 6
    assert reg.drift_corrections <= 1  # the real data barely moves the template
    err, _ = _errors(shifts, m.shifts_px)
    assert err.mean() <= 0.1
    # Feed frames that all sit 2 px off: a naive update would walk the template; the guard
    # pulls it back onto the original origin.
    moved = shift_frames(np, reg.register(m.frames[:40]).frames, np.tile([[-2.0, 0.0]], (40, 1)))
    reg._update_template(moved)
    assert reg.drift_corrections >= 1
    mask = reg.mask
    d, _ = estimate_shifts(
        np, reg.reference[None], reference_spectrum(np, ref0, mask, 1.15), mask, 5
    )
    assert np.abs(d).max() < 0.3


def test_errors_are_clear():
    reg = Registrar(np, (64, 64))
    with pytest.raises(RuntimeError, match="no reference"):
        reg.register(np.zeros((1, 64, 64), np.uint16))
    with pytest.raises(ValueError, match="expected frames"):
        reg.fit_reference(np.zeros((4, 32, 64), np.uint16))
    with pytest.raises(ValueError, match="reference shape"):
        reg.set_reference(np.zeros((32, 32)))

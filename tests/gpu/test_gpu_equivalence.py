"""CuPy results equal numpy's within float32 tolerance, on fresh random inputs.

Skips cleanly without CuPy or without a CUDA device. No Qt, pydantic or roifile on this path: the
GPU machine has only numpy, scipy, CuPy, scikit-image, tifffile, pyyaml, typer, rich and pytest.
Each test draws a new seed and prints it in the failure message so a failure can be replayed.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

cp = pytest.importorskip("cupy")

from acquisition.xp import cupy_available  # noqa: E402

if not cupy_available():
    pytest.skip("CuPy is installed but no CUDA device answers", allow_module_level=True)

import scipy.sparse as sp  # noqa: E402

from acquisition.registration import (  # noqa: E402
    Registrar,
    RegistrationOptions,
    correct_line_phase,
    estimate_line_phase,
    estimate_shifts,
    fused,
    reference_spectrum,
    shift_frames,
    taper_mask,
)
from acquisition.registration.phasecorr import prepare_taper  # noqa: E402
from acquisition.rois import RoiSet, build_weights, neuropil_pixels, weights_to_xp  # noqa: E402
from acquisition.traces import (  # noqa: E402
    CausalBaseline,
    FullPathProcessor,
    TraceExtractor,
    TraceOptions,
)

pytestmark = pytest.mark.gpu


@pytest.fixture
def rng():
    seed = int(np.random.SeedSequence().entropy % (2**32))
    print(f"seed = {seed}")
    return np.random.default_rng(seed)


@pytest.fixture(autouse=True)
def _fused_on():
    fused.set_fused(True)
    yield
    fused.set_fused(True)


def _image(rng, n=128):
    img = ndimage.gaussian_filter(rng.standard_normal((n, n)), 2.0) * 300 + 1000
    return img.astype(np.float32)


def _displaced(img, shifts):
    f = np.fft.fft2(img)
    return np.stack(
        [np.real(np.fft.ifft2(ndimage.fourier_shift(f, tuple(d)))) for d in shifts]
    ).astype(np.float32)


def _noisy_stack(rng, n_frames=24, n=128, max_shift=10.0):
    img = _image(rng, n)
    shifts = rng.uniform(-max_shift, max_shift, (n_frames, 2)).astype(np.float32)
    frames = _displaced(img, shifts) + rng.normal(0, 20, (n_frames, n, n)).astype(np.float32)
    return img, shifts, frames


def test_rigid_shift_estimates_equal(rng):
    img, _, frames = _noisy_stack(rng)
    mask = taper_mask(img.shape, 3.45)
    s_np, p_np = estimate_shifts(np, frames, reference_spectrum(np, img, mask, 1.15), mask, 15)
    mg = cp.asarray(mask)
    s_cp, p_cp = estimate_shifts(
        cp, cp.asarray(frames), reference_spectrum(cp, cp.asarray(img), mg, 1.15), mg, 15
    )
    np.testing.assert_allclose(s_cp.get(), s_np, atol=2e-3)
    np.testing.assert_allclose(p_cp.get(), p_np, atol=2e-4)


@pytest.mark.parametrize("method", ["fourier", "bilinear"])
@pytest.mark.parametrize("use_fused", [True, False])
def test_shift_frames_equal(rng, method, use_fused):
    fused.set_fused(use_fused)
    frames = rng.uniform(0, 1000, (6, 64, 96)).astype(np.float32)
    shifts = rng.uniform(-20, 20, (6, 2)).astype(np.float32)
    ref = shift_frames(np, frames, shifts, "bilinear_roll" if method == "bilinear" else method)
    got = shift_frames(cp, cp.asarray(frames), cp.asarray(shifts), method).get()
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=2e-2)


def test_fused_kernels_equal_plain_cupy(rng):
    f32 = rng.uniform(0, 1000, (5, 64, 80)).astype(np.float32)
    mask = cp.asarray(taper_mask((64, 80), 3.0))
    x = cp.asarray(f32)
    fused.set_fused(False)
    plain_taper = prepare_taper(cp, x, mask)
    fused.set_fused(True)
    fused_taper = prepare_taper(cp, x, mask)
    assert fused.fused_enabled(cp), "fused kernels failed to compile (see the warning)"
    cp.testing.assert_allclose(fused_taper, plain_taper, rtol=1e-5, atol=1e-3)
    spec = cp.fft.rfft2(x).astype(cp.complex64)
    ref = cp.asarray(
        (rng.standard_normal((64, 41)) + 1j * rng.standard_normal((64, 41))).astype(np.complex64)
    )
    plain = spec * (ref / (cp.abs(spec) + 1e-6))
    out = fused.whiten_mul(cp, spec.copy(), ref)
    assert out is not None
    cp.testing.assert_allclose(out, plain, rtol=1e-4, atol=1e-5)
    shifts = cp.asarray(rng.uniform(-30, 30, (5, 2)).astype(np.float32))
    fused.set_fused(False)
    plain_shift = shift_frames(cp, x, shifts, "bilinear")
    fused.set_fused(True)
    cp.testing.assert_allclose(
        shift_frames(cp, x, shifts, "bilinear"), plain_shift, rtol=1e-5, atol=1e-2
    )


def test_fused_peak_equals_plain(rng):
    from acquisition.registration.phasecorr import window_peak

    # smooth peaked windows (like correlation surfaces) with a random sub-pixel centre
    yy, xx = np.mgrid[-12:13, -12:13].astype(np.float32)
    c = rng.uniform(-9, 9, (40, 2)).astype(np.float32)
    win = np.exp(-((yy - c[:, 0, None, None]) ** 2 + (xx - c[:, 1, None, None]) ** 2) / 3.0)
    win = (win + rng.uniform(0, 0.05, win.shape)).astype(np.float32).reshape(4, 10, 25, 25)
    fused.set_fused(False)
    s0, p0 = window_peak(cp, cp.asarray(win))
    fused.set_fused(True)
    s1, p1 = window_peak(cp, cp.asarray(win))
    assert fused.fused_enabled(cp), "fused peak kernel failed (see the warning)"
    assert s1.shape == (4, 10, 2) and p1.shape == (4, 10)
    cp.testing.assert_allclose(s1, s0, atol=1e-4)
    cp.testing.assert_allclose(p1, p0, rtol=1e-6)
    s_np, _ = window_peak(np, win)
    np.testing.assert_allclose(s1.get(), s_np, atol=1e-4)
    np.testing.assert_allclose(s_np.reshape(-1, 2), c, atol=0.25)


def test_fused_nonrigid_warp_equals_plain(rng):
    from acquisition.registration import NonrigidRegistration

    ref = cp.asarray(_image(rng, 128))
    nr = NonrigidRegistration(cp, ref, block_px=48, max_shift_px=4)
    frames = cp.asarray(rng.uniform(0, 1000, (3, 128, 128)).astype(np.float32))
    nby, nbx = len(nr.grid.ys), len(nr.grid.xs)
    bs = cp.asarray(rng.uniform(-4, 4, (3, nby, nbx, 2)).astype(np.float32))
    fused.set_fused(False)
    plain = nr.warp(frames, bs)
    fused.set_fused(True)
    got = nr.warp(frames, bs)
    assert fused.fused_enabled(cp), "fused warp kernel failed (see the warning)"
    cp.testing.assert_allclose(got, plain, rtol=1e-4, atol=5e-2)


def test_registrar_batch_and_nonrigid_equal(rng):
    img, _, frames = _noisy_stack(rng, n_frames=16, n=128, max_shift=6.0)
    opt = RegistrationOptions(max_shift_px=12, nonrigid=True, block_px=64, line_phase="off")
    a = Registrar(np, (128, 128), opt)
    b = Registrar(cp, (128, 128), opt)
    a.set_reference(img)
    b.set_reference(cp.asarray(img))
    ra, rb = a.register(frames), b.register(cp.asarray(frames))
    np.testing.assert_allclose(rb.shifts_px.get(), ra.shifts_px, atol=2e-3)
    np.testing.assert_allclose(rb.block_shifts_px.get(), ra.block_shifts_px, atol=5e-3)
    np.testing.assert_allclose(rb.frames.get(), ra.frames, rtol=1e-3, atol=0.5)


def test_reference_fit_on_gpu_is_as_accurate(rng):
    _img, shifts, frames = _noisy_stack(rng, n_frames=60, n=128, max_shift=8.0)
    for xp in (np, cp):
        reg = Registrar(xp, (128, 128), RegistrationOptions(max_shift_px=12, n_reference_frames=60))
        reg.fit_reference(xp.asarray(frames))
        est = reg.register(xp.asarray(frames)).shifts_px
        est = est.get() if xp is cp else est
        d = est - shifts
        assert np.abs(d - np.median(d, axis=0)).mean() < 0.1


def test_line_phase_equal(rng):
    frames = rng.uniform(0, 100, (4, 64, 64)).astype(np.float32)
    frames = ndimage.gaussian_filter(frames, (0, 1.5, 1.5))
    frames[:, 1::2] = np.roll(frames[:, 1::2], 2, axis=-1)
    p_np = estimate_line_phase(np, frames)
    p_cp = estimate_line_phase(cp, cp.asarray(frames))
    assert abs(p_np - p_cp) < 1e-3
    a = correct_line_phase(np, frames.copy(), 1.37)
    b = correct_line_phase(cp, cp.asarray(frames), 1.37).get()
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-3)


def test_traces_and_baseline_equal(rng):
    n_px, n = 40 * 50, 30
    w = sp.random(2 * n, n_px, density=0.02, format="csr", dtype=np.float32, random_state=rng)
    # Neuropil rows scaled down so F - 0.7 * Fneu stays well above zero, as in real data: with a
    # near-zero baseline ΔF/F amplifies float32 rounding without bound and no tolerance is fair.
    w = sp.vstack([w[:n], w[n:] * 0.2]).tocsr()
    frames = rng.uniform(50, 500, (97, 40, 50)).astype(np.float32)
    opt = TraceOptions(baseline_window_s=2.0, baseline_update_s=0.3)
    ta = TraceExtractor(np, w, 30.0, opt)
    tb = TraceExtractor(cp, weights_to_xp(cp, w), 30.0, opt)
    outs_a, outs_b = [], []
    for s, e in [(0, 1), (1, 40), (40, 41), (41, 97)]:  # streaming and batched calls mixed
        outs_a.append(ta.process(frames[s:e]))
        outs_b.append(tb.process(cp.asarray(frames[s:e])))
    for k in ("f", "fneu", "dff"):
        a = np.concatenate([getattr(o, k) for o in outs_a])
        b = np.concatenate([getattr(o, k).get() for o in outs_b])
        np.testing.assert_allclose(b, a, rtol=2e-4, atol=2e-4, err_msg=k)
    x = rng.standard_normal((80, 7)).astype(np.float32)
    ba = CausalBaseline(np, 7, 25, 10, 6).update(x)
    bb = CausalBaseline(cp, 7, 25, 10, 6).update(cp.asarray(x)).get()
    np.testing.assert_array_equal(bb, ba)


def test_baseline_select_kernel_equals_partition(rng):
    """The radix-select kernel (acquisition.traces.select) passed its first-use check and gives
    partition's value on a bench-sized ring, filling and full; the baseline equals numpy's with
    the kernel and with partition (fusing off)."""
    from acquisition.traces import select

    assert select.prepare(cp), "the selection kernel failed its first-use check"
    assert select.status(cp) == "kernel"
    ring = cp.asarray((rng.standard_normal((500, 1800)) * 50 + 300).astype(np.float32))
    ring[:, ::5] = cp.round(ring[:, ::5])  # ties
    for m in (1, 2, 37, 1024, 1799, 1800):
        for k in sorted({0, round(0.08 * (m - 1)), m - 1}):
            got = select.kth_smallest_rows(cp, ring, m, k)
            assert got is not None
            want = cp.partition(ring[:, :m], k, axis=1)[:, k]
            cp.testing.assert_array_equal(got, want, err_msg=f"m={m} k={k}")
    x = (rng.standard_normal((200, 9)) * 20 + 100).astype(np.float32)
    want_np = CausalBaseline(np, 9, 50, 8, 7).update(x)
    on = CausalBaseline(cp, 9, 50, 8, 7).update(cp.asarray(x)).get()
    fused.set_fused(False)
    off = CausalBaseline(cp, 9, 50, 8, 7).update(cp.asarray(x)).get()
    fused.set_fused(True)
    np.testing.assert_array_equal(on, want_np)
    np.testing.assert_array_equal(off, want_np)


@pytest.mark.parametrize("use_fused", [True, False])
def test_trace_products_fused_and_plain_equal_scipy(rng, use_fused):
    fused.set_fused(use_fused)
    w = sp.random(80, 3000, density=0.05, format="csr", dtype=np.float32, random_state=rng)
    frames = rng.uniform(0, 1000, (5, 50, 60)).astype(np.float32)
    tr = TraceExtractor(cp, weights_to_xp(cp, w), 30.0)
    assert tr._csr is not None  # int32 CSR arrays on the device: the fused product is usable
    want = (w @ frames.reshape(5, -1).T).T
    for b in (1, 5):  # streaming (one frame) and batched
        got = tr.raw(cp.asarray(frames[:b])).get()
        np.testing.assert_allclose(got, want[:b], rtol=1e-5, atol=1e-2)
    if use_fused:
        assert fused.fused_enabled(cp), "fused trace kernels failed (see the warning)"


def test_full_path_movie_equal(rng):
    from acquisition.sources.synthetic import make_movie

    m = make_movie(96, size_px=128, n_cells=20, max_shift_px=8.0, seed=int(rng.integers(1 << 30)))
    rois = RoiSet.from_labels(m.masks)
    w = build_weights(rois, neuropil_pixels(rois))
    ref_reg = Registrar(np, (128, 128), RegistrationOptions(n_reference_frames=96))
    ref_reg.fit_reference(m.frames)
    procs = []
    for xp in (np, cp):
        reg = Registrar(xp, (128, 128), RegistrationOptions(line_phase=ref_reg.line_phase_px))
        reg.set_reference(xp.asarray(ref_reg.reference))
        procs.append(FullPathProcessor(reg, TraceExtractor(xp, weights_to_xp(xp, w), 30.0)))
    a = procs[0].process_movie(m.frames, 32)
    b = procs[1].process_movie(m.frames, 32)  # the double-buffered stream path
    np.testing.assert_allclose(b.shifts_px, a.shifts_px, atol=2e-3)
    np.testing.assert_allclose(b.f, a.f, rtol=1e-3, atol=0.05)
    np.testing.assert_allclose(b.dff, a.dff, rtol=1e-3, atol=2e-3)
    one = procs[1].process(m.frames[0])  # streaming call on the GPU
    assert one.dff.shape == (1, len(rois)) and isinstance(one.dff, np.ndarray)


def test_pipeline_reports_gpu_memory():
    from acquisition.pipeline import ImagingPipeline
    from acquisition.sources.synthetic import SyntheticSource, make_movie

    m = make_movie(40, size_px=96, n_cells=10, max_shift_px=3.0, seed=1)
    reg = Registrar(cp, (96, 96), RegistrationOptions(n_reference_frames=40))
    reg.fit_reference(cp.asarray(m.frames))
    rois = RoiSet.from_labels(m.masks)
    w = weights_to_xp(cp, build_weights(rois, neuropil_pixels(rois, min_pixels=100)))
    pipe = ImagingPipeline(FullPathProcessor(reg, TraceExtractor(cp, w, 30.0))).start()
    pipe.feed(SyntheticSource(m))
    st = pipe.close()
    assert st["frames_processed"] == 40
    assert st["gpu_memory"]["total_bytes"] > 0

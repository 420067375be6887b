"""Synthetic movie: ground truth is self-consistent and the motion truth is what was applied."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from scipy import ndimage

from acquisition.sources.synthetic import (
    SyntheticSource,
    load_truth,
    make_movie,
    truth_path_for,
)


def _expected_neuropil_frame(m, t: int) -> np.ndarray:
    """Independent render of a cell-free frame: the neuropil image moved by the true shift."""
    moved = ndimage.shift(m.neuropil_image, m.shifts_px[t], order=3, mode="nearest")
    return m.dark_counts + m.gain_counts_per_photon * m.neuropil_true[t] * m.baseline_mod[t] * moved


def test_deterministic_given_seed() -> None:
    a = make_movie(6, 64, 4, seed=5)
    b = make_movie(6, 64, 4, seed=5)
    c = make_movie(6, 64, 4, seed=6)
    assert np.array_equal(a.frames, b.frames)
    assert np.array_equal(a.shifts_px, b.shifts_px)
    assert not np.array_equal(a.frames, c.frames)


def test_frames_do_not_depend_on_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    import acquisition.sources.synthetic as synthetic

    monkeypatch.setattr(synthetic.os, "cpu_count", lambda: 1)
    one = make_movie(40, 48, 2, seed=21)  # 40 frames: several chunks
    monkeypatch.setattr(synthetic.os, "cpu_count", lambda: 4)
    four = make_movie(40, 48, 2, seed=21)
    assert np.array_equal(one.frames, four.frames)
    # Chunks get different noise (no repeated noise pattern that registration could lock onto).
    d = one.frames.astype(float) - make_movie(40, 48, 2, seed=21, noise=False).frames
    assert not np.allclose(d[0], d[16], atol=5)


def test_shapes_and_dtypes() -> None:
    m = make_movie(12, 64, 5, frame_rate_hz=15.0, seed=1)
    assert m.frames.shape == (12, 64, 64) and m.frames.dtype == np.uint16
    assert m.shifts_px.shape == (12, 2) and m.shifts_px.dtype == np.float32
    assert m.reference.shape == (64, 64) and m.reference.dtype == np.float32
    assert m.masks.dtype == np.int32 and m.masks.shape == (64, 64)
    for arr in (m.f_true, m.dff_true, m.f0_true):
        assert arr.shape == (12, 5) and arr.dtype == np.float32
    assert m.neuropil_true.shape == (12,)
    assert m.block_shifts_px is None
    assert np.allclose(m.t_frame_s, np.arange(12) / 15.0)


@pytest.mark.parametrize("max_shift_px", [3.0, 15.0])
def test_rigid_shift_truth_is_the_applied_shift(max_shift_px: float) -> None:
    m = make_movie(8, 96, 0, max_shift_px=max_shift_px, noise=False, seed=2)
    assert np.abs(m.shifts_px).max() == pytest.approx(max_shift_px, rel=1e-5)
    # Sub-pixel: the trajectory is not on the integer grid.
    assert np.abs(m.shifts_px - np.round(m.shifts_px)).max() > 0.1
    for t in range(len(m.frames)):
        err = (m.frames[t] - _expected_neuropil_frame(m, t))[20:-20, 20:-20]
        # Rounding to counts (0.5) plus cubic-spline error of the independent render.
        assert np.abs(err).max() < 3.0, t
        # The opposite sign would be off by far more than that.
        wrong = ndimage.shift(m.neuropil_image, -m.shifts_px[t], order=3)
        if np.abs(m.shifts_px[t]).max() > 1:
            diff = m.frames[t] - m.gain_counts_per_photon * wrong * m.neuropil_true[t]
            assert np.abs(diff[20:-20, 20:-20] - m.dark_counts).max() > 5.0


def test_trace_truth_is_self_consistent() -> None:
    m = make_movie(300, 96, 8, seed=3)
    np.testing.assert_allclose(m.f_true, m.f0_true * (1 + m.dff_true), rtol=1e-5)
    # Baseline follows the shared bleach/drift multiplier and nothing else.
    per_cell = m.f0_true / m.baseline_mod[:, None]
    np.testing.assert_allclose(per_cell, per_cell[:1].repeat(300, 0), rtol=1e-4)
    assert (m.dff_true >= 0).all() and m.dff_true.max() > 0.2
    assert m.spikes.sum() > 0
    # Cells with no spikes so far have zero ΔF/F.
    first = np.argmax(m.spikes > 0, axis=0)
    for k in range(m.n_cells):
        if m.spikes[:, k].any():
            assert np.all(m.dff_true[: first[k], k] == 0)


def test_masks_one_label_per_cell_with_plausible_size() -> None:
    m = make_movie(3, 128, 12, seed=4)
    labels = np.unique(m.masks)
    assert list(labels) == list(range(13))
    areas = np.bincount(m.masks.ravel())[1:]
    # 10-14 px diameter ellipses: pi * 5^2 .. pi * 7^2, allowing for the soft edge.
    assert areas.min() > 60 and areas.max() < 180
    for k, (cy, cx) in enumerate(m.centers_px):
        assert m.masks[int(np.rint(cy)), int(np.rint(cx))] == k + 1


def test_mask_fluorescence_tracks_truth_without_motion() -> None:
    m = make_movie(200, 96, 6, max_shift_px=0.0, noise=False, seed=8)
    checked = 0
    for k in range(m.n_cells):
        inside = m.masks == k + 1
        f_meas = m.frames[:, inside].mean(axis=1) - m.dark_counts
        neuropil = m.neuropil_image[inside].mean() * m.neuropil_true * m.baseline_mod
        soma = f_meas / m.gain_counts_per_photon - neuropil
        if m.dff_true[:, k].std() > 0.02:
            checked += 1
            assert np.corrcoef(soma, m.f_true[:, k])[0, 1] > 0.99
            # The footprint is brightest (1) at its peak, so the mask mean is a fraction of it.
            ratio = soma / m.f_true[:, k]
            assert 0.5 < ratio.mean() < 1.0 and ratio.std() < 0.02
    assert checked >= 2


def test_events_drive_responsive_cells() -> None:
    fs = 30.0
    events_s = np.arange(2.0, 58.0, 4.0)
    m = make_movie(1800, 128, 20, frame_rate_hz=fs, events_s=events_s, seed=9)
    assert m.responsive.any() and not m.responsive.all()
    idx = (events_s * fs).astype(int)
    post = np.stack(
        [m.dff_true[i + 6 : i + 15].mean(0) - m.dff_true[i - 6 : i].mean(0) for i in idx]
    )
    gain = post.mean(0)
    assert gain[m.responsive].mean() > 0.3
    assert gain[m.responsive].mean() > 5 * abs(gain[~m.responsive].mean())


def test_line_phase_displaces_odd_lines_only() -> None:
    a = make_movie(2, 64, 4, max_shift_px=0.0, noise=False, seed=11)
    b = make_movie(2, 64, 4, max_shift_px=0.0, noise=False, seed=11, line_phase_px=2.0)
    assert b.line_phase_px == 2.0
    assert np.array_equal(a.frames[:, 0::2], b.frames[:, 0::2])
    odd_a = a.frames[:, 1::2].astype(float)
    odd_b = b.frames[:, 1::2].astype(float)
    # b's odd lines are a's moved right by 2 px.
    assert np.abs(odd_b[..., 10:-10] - odd_a[..., 8:-12]).max() < 3.0
    assert np.abs(odd_b[..., 10:-10] - odd_a[..., 10:-10]).max() > 10.0


def test_nonrigid_field_truth() -> None:
    m = make_movie(
        6,
        128,
        0,
        max_shift_px=2.0,
        nonrigid=True,
        noise=False,
        seed=12,
        block_size_px=64,
        nonrigid_amplitude_px=2.0,
    )
    assert m.block_shifts_px is not None and m.block_centers_px is not None
    assert m.block_shifts_px.shape == (6, 2, 2, 2)
    np.testing.assert_allclose(m.shifts_px, m.block_shifts_px.mean(axis=(1, 2)), atol=1e-5)
    spread = np.ptp(m.block_shifts_px, axis=(1, 2)).max()
    assert spread > 0.5  # the blocks really move differently
    # Near each block center the frame is the neuropil image moved by that block's shift.
    for t in range(6):
        for by in range(2):
            for bx in range(2):
                cy, cx = m.block_centers_px[by, bx].astype(int)
                moved = ndimage.shift(m.neuropil_image, m.block_shifts_px[t, by, bx], order=3)
                exp = m.dark_counts + m.gain_counts_per_photon * (
                    m.neuropil_true[t] * m.baseline_mod[t] * moved
                )
                # Only at the center: the field has a gradient, so neighbors move slightly
                # differently.
                assert abs(float(m.frames[t][cy, cx]) - exp[cy, cx]) < 2.0


def test_noise_statistics_are_shot_noise() -> None:
    clean = make_movie(40, 64, 3, max_shift_px=0.0, noise=False, seed=13)
    noisy = make_movie(40, 64, 3, max_shift_px=0.0, noise=True, seed=13)
    g = noisy.gain_counts_per_photon
    lam = (clean.frames.astype(float) - clean.dark_counts) / g
    resid = (noisy.frames.astype(float) - clean.frames) / g
    assert abs(resid.mean()) < 0.05 * lam.mean()
    # Variance ~ lambda (+1/2 from the Anscombe draw): shot noise, not a constant.
    assert resid.var() == pytest.approx(lam.mean() + 0.5, rel=0.1)
    assert noisy.frames.min() >= noisy.dark_counts - 1


def test_exact_poisson_counts_whole_photons() -> None:
    m = make_movie(4, 48, 2, max_shift_px=0.0, exact_poisson=True, seed=16)
    photons = (m.frames.astype(float) - m.dark_counts) / m.gain_counts_per_photon
    assert np.array_equal(photons, np.round(photons)) and photons.min() >= 0
    clean = make_movie(4, 48, 2, max_shift_px=0.0, noise=False, seed=16)
    lam = (clean.frames.astype(float) - clean.dark_counts) / clean.gain_counts_per_photon
    assert (photons - lam).var() == pytest.approx(lam.mean(), rel=0.1)


def test_save_and_load_truth(tmp_path) -> None:
    m = make_movie(5, 64, 3, seed=14)
    path = m.save_truth(truth_path_for(tmp_path / "movie.tif"))
    assert path.name == "movie.truth.npz" and path.exists()
    truth = load_truth(path)
    assert "frames" not in truth
    np.testing.assert_array_equal(truth["shifts_px"], m.shifts_px)
    np.testing.assert_array_equal(truth["masks"], m.masks)
    np.testing.assert_array_equal(truth["dff_true"], m.dff_true)
    assert float(truth["frame_rate_hz"]) == m.frame_rate_hz


def test_synthetic_source_yields_every_frame() -> None:
    m = make_movie(10, 64, 3, frame_rate_hz=20.0, seed=15)
    with SyntheticSource(m) as src:
        assert src.shape == (64, 64) and src.n_frames == 10 and src.dtype == np.uint16
        got = list(src)
    assert [i for i, _, _ in got] == list(range(10))
    assert [t for _, t, _ in got] == pytest.approx(list(np.arange(10) / 20.0))
    assert all(np.array_equal(f, m.frames[i]) for i, _, f in got)


def test_streamed_source_equals_full_render_and_truth_matches() -> None:
    kwargs = dict(size_px=48, n_cells=3, max_shift_px=4.0, line_phase_px=0.7, seed=17)
    full = make_movie(37, **kwargs)  # type: ignore[arg-type]
    src = SyntheticSource.generate(37, stream=True, **kwargs)
    assert src.truth.frames.shape == (0, 48, 48) and src.n_frames == 37
    got = list(src)
    assert [i for i, _, _ in got] == list(range(37))
    np.testing.assert_array_equal(np.stack([f for _, _, f in got]), full.frames)
    np.testing.assert_array_equal(src.truth.shifts_px, full.shifts_px)
    np.testing.assert_array_equal(src.truth.dff_true, full.dff_true)


def test_paced_source_runs_at_the_frame_rate_and_stops_on_close() -> None:
    src = SyntheticSource.generate(12, paced=True, size_px=32, n_cells=1, frame_rate_hz=100.0)
    t0 = time.monotonic()
    n = sum(1 for _ in src)
    assert n == 12
    assert time.monotonic() - t0 >= 11 / 100.0 * 0.95
    slow = SyntheticSource(make_movie(5, 32, 1, frame_rate_hz=0.5), paced=True)
    first = threading.Event()
    got: list[int] = []

    def consume() -> None:
        for i, _, _ in slow:
            got.append(i)
            first.set()

    th = threading.Thread(target=consume)
    th.start()
    assert first.wait(5.0)
    slow.close()  # would otherwise wait 2 s for the next frame
    th.join(timeout=1.0)
    assert not th.is_alive() and got == [0]


def test_open_source_builds_each_kind_from_config(tmp_path) -> None:
    from acquisition.sources import open_source
    from acquisition.sources.scanimage_tiff import ScanImageTiffSource
    from acquisition.sources.scanimage_writer import write_scanimage_tiff
    from acquisition.sources.tcp import TcpFrameSource
    from rig.core.config import ImagingConfig

    syn = ImagingConfig.model_validate(
        {"source": {"kind": "synthetic", "size_px": 32, "n_cells": 1, "frame_rate_hz": 2.0}}
    )
    src = open_source(syn.source)
    assert isinstance(src, SyntheticSource) and src.n_frames == 1200 and src.shape == (32, 32)
    assert src.truth.frames.shape[0] == 0  # rendered while played
    path = write_scanimage_tiff(tmp_path / "a.tif", np.zeros((3, 8, 8), np.int16))
    tif = ImagingConfig.model_validate({"source": {"kind": "tiff", "path": str(path)}})
    t = open_source(tif.source, paced=False)
    assert isinstance(t, ScanImageTiffSource) and t.n_frames == 3 and not t.paced
    tcp = ImagingConfig.model_validate({"source": {"kind": "tcp", "port": 6001}})
    r = open_source(tcp.source)
    assert isinstance(r, TcpFrameSource) and (r.host, r.port) == ("127.0.0.1", 6001)

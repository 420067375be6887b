"""Measurement pieces of ``rig bench imaging`` (:mod:`acquisition.bench`): a processor from a
fixed reference, per-frame streaming latency, timed batch passes, the GPU upload ceiling and the
scikit-image reference. Each returns plain figures; :func:`acquisition.bench.run_imaging_bench`
puts them together.
"""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any

import numpy as np

from acquisition.registration import Registrar, RegistrationOptions
from acquisition.rois import weights_to_xp
from acquisition.traces import FullPathProcessor, TraceExtractor, TraceOptions, select
from acquisition.xp import synchronize


def pearson_cols(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(0)
    b = b - b.mean(0)
    den = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    return np.where(den > 0, (a * b).sum(0) / np.where(den > 0, den, 1), np.nan)


def make_processor(
    xp: ModuleType,
    reg_opt: RegistrationOptions,
    reference: np.ndarray,
    line_phase_px: float,
    weights: Any,
    fs: float,
    streaming: str = "auto",
) -> FullPathProcessor:
    reg = Registrar(xp, (reference.shape[0], reference.shape[1]), reg_opt)
    reg.line_phase_px = line_phase_px
    reg.set_reference(reference)
    tr = TraceExtractor(xp, weights_to_xp(xp, weights), fs, TraceOptions())
    return FullPathProcessor(reg, tr, streaming=streaming)


def stream_latency(
    proc: FullPathProcessor, movie: np.ndarray, stream_frames: int
) -> tuple[dict[str, Any], np.ndarray]:
    """Per-frame latency of ``proc.process`` on single host frames (the time includes the
    download), and the results of the timed frames as (stream_frames, 3 + 3n) float32
    (dy, dx, peak, F, Fneu, ΔF/F) for comparing paths."""
    n_frames = movie.shape[0]
    for i in range(min(20, n_frames)):  # warm-up (plans, caches, graph capture + self-check)
        proc.process(movie[i])
    lat = np.zeros(stream_frames)
    cpu = np.zeros(stream_frames)
    refreshed = np.zeros(stream_frames, bool)
    rows = []
    for k in range(stream_frames):
        i = k % n_frames
        r0 = proc.tr.baseline.refreshes
        t, c = time.perf_counter(), time.thread_time()
        out = proc.process(movie[i])  # returns host arrays: the time includes the download
        lat[k] = time.perf_counter() - t
        cpu[k] = time.thread_time() - c
        refreshed[k] = proc.tr.baseline.refreshes != r0
        rows.append(np.concatenate([out.shifts_px[0], out.peak, out.f[0], out.fneu[0], out.dff[0]]))
    lat_ms = lat * 1e3
    plain = lat_ms[~refreshed] if (~refreshed).any() else lat_ms
    stats = {
        "frames": stream_frames,
        # "graph": one CUDA graph replay per frame (acquisition.graph); "plain": kernel by kernel
        "path": proc.streaming_path,
        "graph_unavailable": proc.graph_error,
        "graph": proc.graph_info,
        "latency_ms_p50": float(np.percentile(lat_ms, 50)),
        "latency_ms_p99": float(np.percentile(lat_ms, 99)),
        "latency_ms_max": float(lat_ms.max()),
        # CPU time of the calling thread: what the frame costs, whatever else runs on the host
        "thread_cpu_ms_p50": float(np.percentile(cpu * 1e3, 50)),
        # the baseline order statistic is recomputed once a second: those frames cost more
        "baseline_refresh_frames": int(refreshed.sum()),
        # how refreshes computed the order statistic: "kernel" (acquisition.traces.select) or
        # "partition" (numpy, fusing off, or the kernel failed its first-use check)
        "baseline_select": select.status(proc.xp),
        "latency_ms_p99_without_refresh_frames": float(np.percentile(plain, 99)),
        "latency_ms_p50_refresh_frames": (
            float(np.percentile(lat_ms[refreshed], 50)) if refreshed.any() else None
        ),
    }
    return stats, np.asarray(rows, np.float32).reshape(stream_frames, -1)


def path_difference(a: np.ndarray, b: np.ndarray, n: int) -> dict[str, float]:
    """Largest differences between two paths' streaming results (rows as from
    :func:`stream_latency`)."""
    d = np.abs(a - b)
    return {
        "max_abs_shift_diff_px": float(d[:, 0:2].max()),
        "max_abs_f_diff": float(d[:, 3 : 3 + 2 * n].max()),
        "max_abs_dff_diff": float(d[:, 3 + 2 * n :].max()),
        "p999_abs_dff_diff": float(np.percentile(d[:, 3 + 2 * n :], 99.9)),
    }


def timed_movie(proc: FullPathProcessor, movie: np.ndarray, batch: int, repeats: int) -> float:
    """Seconds to push ``movie`` through ``proc`` ``repeats`` times (results on the host)."""
    synchronize(proc.xp)
    t0 = time.perf_counter()
    for _ in range(repeats):
        proc.process_movie(movie, batch)
    synchronize(proc.xp)
    return time.perf_counter() - t0


def upload_ceiling(xp: ModuleType, movie: np.ndarray, batch: int, repeats: int) -> float:
    """Frames/s of bare host-to-device copies of ``movie`` (pinned) in ``batch``-frame chunks."""
    buf = xp.empty((batch, *movie.shape[1:]), movie.dtype)
    stream = xp.cuda.Stream(non_blocking=True)
    for s in range(0, min(len(movie), 4 * batch), batch):  # warm-up
        buf[: len(movie[s : s + batch])].set(movie[s : s + batch], stream=stream)
    stream.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeats):
        for s in range(0, len(movie), batch):
            chunk = movie[s : s + batch]
            buf[: len(chunk)].set(chunk, stream=stream)
    stream.synchronize()
    return repeats * len(movie) / (time.perf_counter() - t0)


def skimage_reference(
    movie: np.ndarray, truth: np.ndarray, reference: np.ndarray, n: int
) -> dict[str, Any]:
    from skimage.registration import phase_cross_correlation

    ref = reference.astype(np.float32)
    est = np.zeros((n, 2), np.float32)
    t0, c0 = time.perf_counter(), time.thread_time()
    for i in range(n):
        # skimage returns the shift that registers the moving image: minus our displacement
        s, _, _ = phase_cross_correlation(ref, movie[i].astype(np.float32), upsample_factor=10)
        est[i] = -np.asarray(s)
    dt = time.perf_counter() - t0
    cpu = time.thread_time() - c0
    d = est - truth[:n]
    err = np.abs(d - np.median(d, axis=0))
    return {
        "frames": n,
        "ms_per_frame": dt / n * 1e3,
        "frames_per_s": n / dt,
        "thread_cpu_ms_per_frame": cpu / n * 1e3,
        "shift_err_mean_px": float(err.mean()),
        "shift_err_p99_px": float(np.percentile(err, 99)),
    }

"""``rig bench imaging``: throughput, latency and accuracy of the full imaging path.

Full path = uint16 frames in host memory -> (upload) -> line phase, rigid registration ->
sparse traces (cells + neuropil) -> ``F - c * Fneu`` -> causal baseline -> ΔF/F back on the host.

Measured on a synthetic movie with ground truth (:func:`acquisition.sources.synthetic.make_movie`,
rigid shifts up to ``max_shift_px``, ROIs = the true cell masks):

- accuracy: |estimated - true| shift, mean and p99, after removing one constant offset (the
  reference is built from the data, so its origin is arbitrary; the offset is reported);
  ΔF/F Pearson r against the truth for *active* cells (true ΔF/F SD >= ``ACTIVE_DFF_SD``, i.e.
  transients clearly above the shot noise), after the first ``baseline_warmup_s``;
- batch throughput (frames/s) over the movie repeated ``repeats`` times (CuPy: from page-locked
  memory, uploads overlapped with compute on a second stream);
- streaming latency: one frame at a time, host uint16 in to host ΔF/F out, p50/p99; on CuPy the
  default path (a CUDA graph per frame, :mod:`acquisition.graph`, when available; ``stream.path``
  says which ran) and the plain kernel-by-kernel path (``stream_plain``), and the largest
  difference between their results (``stream.graph_vs_plain``); ``stream.baseline_select`` says
  whether baseline refreshes ran the selection kernel (:mod:`acquisition.traces.select`);
- piecewise-rigid batch throughput;
- references: scikit-image ``phase_cross_correlation`` (CPU, upsample 10) per frame, and on a GPU
  the host-to-device upload ceiling for the same frames (pinned, batched, nothing else).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from acquisition.registration import Registrar, RegistrationOptions, fused
from acquisition.rois import RoiSet, build_weights, neuropil_pixels, weights_to_xp
from acquisition.traces import FullPathProcessor, TraceExtractor, TraceOptions, select
from acquisition.xp import (
    device_name,
    get_xp,
    gpu_memory,
    is_cupy,
    pinned_copy,
    resolve_backend,
    synchronize,
    to_host,
)

ACTIVE_DFF_SD = 0.1
TARGETS = {
    "shift_err_mean_px": 0.1,
    "shift_err_p99_px": 0.3,
    "dff_r_active_median": 0.9,
    "cpu_stream_p50_ms": 5.0,
    "gpu_batch_fps": 50_000.0,
    "gpu_stream_p99_ms": 0.5,
    "gpu_nonrigid_fps": 10_000.0,
}

Progress = Callable[[str], None]


def _pearson_cols(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(0)
    b = b - b.mean(0)
    den = np.sqrt((a * a).sum(0) * (b * b).sum(0))
    return np.where(den > 0, (a * b).sum(0) / np.where(den > 0, den, 1), np.nan)


def _make_processor(
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


def _stream_latency(
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


def _path_difference(a: np.ndarray, b: np.ndarray, n: int) -> dict[str, float]:
    """Largest differences between two paths' streaming results (rows as from
    :func:`_stream_latency`)."""
    d = np.abs(a - b)
    return {
        "max_abs_shift_diff_px": float(d[:, 0:2].max()),
        "max_abs_f_diff": float(d[:, 3 : 3 + 2 * n].max()),
        "max_abs_dff_diff": float(d[:, 3 + 2 * n :].max()),
        "p999_abs_dff_diff": float(np.percentile(d[:, 3 + 2 * n :], 99.9)),
    }


def _timed_movie(proc: FullPathProcessor, movie: np.ndarray, batch: int, repeats: int) -> float:
    """Seconds to push ``movie`` through ``proc`` ``repeats`` times (results on the host)."""
    synchronize(proc.xp)
    t0 = time.perf_counter()
    for _ in range(repeats):
        proc.process_movie(movie, batch)
    synchronize(proc.xp)
    return time.perf_counter() - t0


def _upload_ceiling(xp: ModuleType, movie: np.ndarray, batch: int, repeats: int) -> float:
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


def _skimage_reference(
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


def run_imaging_bench(
    backend: str = "auto",
    size_px: int = 512,
    n_frames: int = 600,
    n_rois: int = 500,
    batch_frames: int = 256,
    stream_frames: int = 300,
    repeats: int = 1,
    nonrigid_frames: int | None = None,
    skimage_frames: int = 30,
    max_shift_px: float = 15.0,
    seed: int = 0,
    progress: Progress | None = None,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the benchmark and return its figures (see the module docstring).

    Parameters
    ----------
    backend : str
        ``auto | numpy | cupy``.
    size_px, n_frames, n_rois : int
        Movie size (square frames), length and number of cells.
    batch_frames : int
        Frames per batch in batched mode.
    stream_frames : int
        Frames timed one at a time.
    repeats : int
        Passes over the movie for the throughput figures (a GPU needs many frames to time).
    nonrigid_frames : int, optional
        Frames for the piecewise-rigid throughput (default: all on CuPy, 60 on numpy).
    skimage_frames : int
        Frames registered by scikit-image for the reference figure (0 skips it).
    checkpoint : callable, optional
        Called with the partial result after every phase (``"complete": False`` until the end),
        so a run cut short by a time limit still leaves its figures.
    """
    say = progress or (lambda _m: None)
    name = resolve_backend(backend)
    xp = get_xp(name)
    from acquisition.sources.synthetic import make_movie

    say(f"making a {n_frames}-frame {size_px}x{size_px} movie with {n_rois} cells ...")
    t0 = time.perf_counter()
    m = make_movie(n_frames, size_px=size_px, n_cells=n_rois, max_shift_px=max_shift_px, seed=seed)
    movie_gen_s = time.perf_counter() - t0
    fs = float(m.frame_rate_hz)
    movie = pinned_copy(xp, m.frames)

    say("building the reference and the ROI weights ...")
    t0 = time.perf_counter()
    reg_opt = RegistrationOptions(max_shift_px=int(np.ceil(max_shift_px)) + 5)
    reg = Registrar(xp, (size_px, size_px), reg_opt)
    reg.fit_reference(xp.asarray(m.frames[: reg_opt.n_reference_frames]))
    synchronize(xp)
    reference_s = time.perf_counter() - t0
    reference = to_host(reg.reference)
    rois = RoiSet.from_labels(m.masks, "synthetic truth")
    t0 = time.perf_counter()
    weights = build_weights(rois, neuropil_pixels(rois))
    rois_s = time.perf_counter() - t0
    result: dict[str, Any] = {
        "complete": False,
        "backend": name,
        "device": device_name(xp),
        "size_px": size_px,
        "n_frames": n_frames,
        "n_rois": n_rois,
        "batch_frames": batch_frames,
        "setup": {"movie_gen_s": movie_gen_s, "reference_s": reference_s, "rois_s": rois_s},
    }

    def save(key: str, value: Any) -> None:
        result[key] = value
        if checkpoint is not None:
            checkpoint(result)

    def fresh(opt: RegistrationOptions = reg_opt, streaming: str = "auto") -> FullPathProcessor:
        return _make_processor(xp, opt, reference, reg.line_phase_px, weights, fs, streaming)

    say("accuracy pass ...")
    out = fresh().process_movie(movie, batch_frames)
    d = out.shifts_px - m.shifts_px
    offset = np.median(d, axis=0)
    err = np.abs(d - offset)
    warm = min(round(10 * fs), n_frames // 3)
    r = _pearson_cols(out.dff[warm:], m.dff_true[warm:])
    active = m.dff_true.std(axis=0) >= ACTIVE_DFF_SD
    r_act = r[active]
    accuracy = {
        "shift_err_mean_px": float(err.mean()),
        "shift_err_p99_px": float(np.percentile(err, 99)),
        "shift_offset_px": [float(offset[0]), float(offset[1])],
        "true_shift_max_abs_px": float(np.abs(m.shifts_px).max()),
        "line_phase_px": float(reg.line_phase_px),
        "n_cells": len(rois),
        "n_active": int(active.sum()),
        "active_definition": f"true dF/F SD >= {ACTIVE_DFF_SD}",
        "dff_r_active_median": float(np.nanmedian(r_act)) if r_act.size else None,
        "dff_r_active_frac_ge_0.9": float(np.mean(r_act >= 0.9)) if r_act.size else None,
        "dff_r_all_median": float(np.nanmedian(r)),
        "baseline_warmup_frames_skipped": warm,
    }

    save("accuracy", accuracy)
    say(f"batch throughput ({repeats} x {n_frames} frames, batch {batch_frames}) ...")
    proc = fresh()
    proc.process_movie(movie[: min(2 * batch_frames, n_frames)], batch_frames)  # warm-up
    dt = _timed_movie(proc, movie, batch_frames, repeats)
    batch = {"frames": repeats * n_frames, "seconds": dt, "frames_per_s": repeats * n_frames / dt}
    save("batch", batch)

    say(f"streaming latency ({stream_frames} frames, one at a time) ...")
    proc = fresh()
    stream, rows = _stream_latency(proc, movie, stream_frames)
    if is_cupy(xp):
        say(f"streaming path: {stream['path']}; now the plain CuPy path for comparison ...")
        stream_plain, rows_plain = _stream_latency(fresh(streaming="plain"), movie, stream_frames)
        save("stream_plain", stream_plain)
        if stream["path"] == "graph":
            stream["graph_vs_plain"] = _path_difference(rows, rows_plain, len(rois))
    save("stream", stream)
    nr_n = nonrigid_frames if nonrigid_frames is not None else (n_frames if is_cupy(xp) else 60)
    nr_n = max(1, min(nr_n, n_frames))
    say(f"piecewise-rigid throughput ({nr_n} frames) ...")
    nr_opt = RegistrationOptions(max_shift_px=reg_opt.max_shift_px, nonrigid=True)
    proc = fresh(nr_opt)
    proc.process_movie(movie[: min(batch_frames, nr_n)], batch_frames)
    nr_rep = repeats if is_cupy(xp) else 1
    dt = _timed_movie(proc, movie[:nr_n], batch_frames, nr_rep)
    nonrigid = {"frames": nr_n * nr_rep, "frames_per_s": nr_n * nr_rep / dt}

    save("nonrigid", nonrigid)
    if is_cupy(xp):
        say("upload ceiling (pinned host -> device, nothing else) ...")
        up = _upload_ceiling(xp, movie, batch_frames, repeats)
        save(
            "upload_ceiling",
            {
                "frames_per_s": up,
                "gb_per_s": up * m.frames[0].nbytes / 1e9,
                "full_path_ratio": batch["frames_per_s"] / up,
            },
        )
        say("variant: Fourier shift instead of bilinear ...")
        f_opt = RegistrationOptions(max_shift_px=reg_opt.max_shift_px, shift_method="fourier")
        proc = fresh(f_opt)
        proc.process_movie(movie[:batch_frames], batch_frames)
        dt = _timed_movie(proc, movie, batch_frames, repeats)
        save("variant_fourier_shift_fps", repeats * n_frames / dt)
        result["fused_kernels"] = fused.fused_enabled(xp)
        if fused.fused_enabled(xp):
            say("variant: plain CuPy (fused kernels off) ...")
            fused.set_fused(False)
            try:
                proc = fresh()
                proc.process_movie(movie[:batch_frames], batch_frames)
                dt = _timed_movie(proc, movie, batch_frames, repeats)
                save("variant_plain_cupy_fps", repeats * n_frames / dt)
            finally:
                fused.set_fused(True)
        result["gpu_memory"] = gpu_memory(xp)
    if skimage_frames > 0:
        say(f"reference: scikit-image phase_cross_correlation on the CPU ({skimage_frames} frames)")
        result["skimage_reference"] = _skimage_reference(
            m.frames, m.shifts_px, reference, min(skimage_frames, n_frames)
        )
    result["targets"] = check_targets(result)
    result["complete"] = True
    return result


def check_targets(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each applicable target with the measured value and whether it is met."""
    acc = res["accuracy"]
    rows: dict[str, tuple[Any, float, bool]] = {
        "shift_err_mean_px": (acc["shift_err_mean_px"], TARGETS["shift_err_mean_px"], False),
        "shift_err_p99_px": (acc["shift_err_p99_px"], TARGETS["shift_err_p99_px"], False),
        "dff_r_active_median": (acc["dff_r_active_median"], TARGETS["dff_r_active_median"], True),
    }
    if res["backend"] == "numpy":
        rows["cpu_stream_p50_ms"] = (
            res["stream"]["latency_ms_p50"],
            TARGETS["cpu_stream_p50_ms"],
            False,
        )
    else:
        rows["gpu_batch_fps"] = (res["batch"]["frames_per_s"], TARGETS["gpu_batch_fps"], True)
        rows["gpu_stream_p99_ms"] = (
            res["stream"]["latency_ms_p99"],
            TARGETS["gpu_stream_p99_ms"],
            False,
        )
        rows["gpu_nonrigid_fps"] = (
            res["nonrigid"]["frames_per_s"],
            TARGETS["gpu_nonrigid_fps"],
            True,
        )
    out = {}
    for k, (v, target, higher) in rows.items():
        ok = v is not None and (v >= target if higher else v <= target)
        out[k] = {"value": v, "target": target, "higher_is_better": higher, "met": bool(ok)}
    return out


def format_table(res: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, value, target/status) rows for printing."""

    def tgt(k: str) -> str:
        t = res["targets"].get(k)
        if not t:
            return ""
        op = ">=" if t["higher_is_better"] else "<="
        return f"{op} {t['target']:g}  {'OK' if t['met'] else 'MISSED'}"

    a, b, s, n = res["accuracy"], res["batch"], res["stream"], res["nonrigid"]
    rows = [
        ("backend / device", f"{res['backend']} / {res['device']}", ""),
        ("movie", f"{res['n_frames']} x {res['size_px']}^2 px, {res['n_rois']} ROIs", ""),
        ("shift error mean (px)", f"{a['shift_err_mean_px']:.3f}", tgt("shift_err_mean_px")),
        ("shift error p99 (px)", f"{a['shift_err_p99_px']:.3f}", tgt("shift_err_p99_px")),
        (
            "reference offset (px)",
            f"{a['shift_offset_px'][0]:.2f}, {a['shift_offset_px'][1]:.2f}",
            "",
        ),
        (
            f"dF/F r, active cells ({a['n_active']})",
            f"median {a['dff_r_active_median']:.3f}, "
            f"{100 * (a['dff_r_active_frac_ge_0.9'] or 0):.0f}% >= 0.9",
            tgt("dff_r_active_median"),
        ),
        ("batch full path (frames/s)", f"{b['frames_per_s']:,.0f}", tgt("gpu_batch_fps")),
        (
            "streaming latency p50 / p99 (ms)",
            f"{s['latency_ms_p50']:.3f} / {s['latency_ms_p99']:.3f}",
            tgt("cpu_stream_p50_ms") or tgt("gpu_stream_p99_ms"),
        ),
        ("streaming path", str(s.get("path", "plain")), s.get("graph_unavailable") or ""),
        ("streaming thread CPU time p50 (ms)", f"{s['thread_cpu_ms_p50']:.3f}", ""),
        (
            "streaming p99 w/o baseline-refresh frames (ms)",
            f"{s['latency_ms_p99_without_refresh_frames']:.3f} "
            f"(refresh frames p50 {s['latency_ms_p50_refresh_frames'] or 0:.3f})",
            "",
        ),
        ("piecewise-rigid (frames/s)", f"{n['frames_per_s']:,.0f}", tgt("gpu_nonrigid_fps")),
    ]
    if "stream_plain" in res:
        sp = res["stream_plain"]
        rows.append(
            (
                "plain CuPy streaming p50 / p99 (ms)",
                f"{sp['latency_ms_p50']:.3f} / {sp['latency_ms_p99']:.3f}",
                f"thread CPU p50 {sp['thread_cpu_ms_p50']:.3f} ms",
            )
        )
    if "graph_vs_plain" in s:
        g = s["graph_vs_plain"]
        rows.append(
            (
                "graph vs plain: max |diff| shift / F / dF/F",
                f"{g['max_abs_shift_diff_px']:.2g} px / {g['max_abs_f_diff']:.2g} / "
                f"{g['max_abs_dff_diff']:.2g}",
                "same frames, fresh state each",
            )
        )
    if "upload_ceiling" in res:
        u = res["upload_ceiling"]
        rows.append(
            (
                "upload ceiling (frames/s)",
                f"{u['frames_per_s']:,.0f} ({u['gb_per_s']:.1f} GB/s)",
                f"full path = {100 * u['full_path_ratio']:.0f}% of it",
            )
        )
        rows.append(
            ("variant: Fourier shift (frames/s)", f"{res['variant_fourier_shift_fps']:,.0f}", "")
        )
        rows.append(("fused CuPy kernels active", str(res.get("fused_kernels")), ""))
        if "variant_plain_cupy_fps" in res:
            rows.append(
                ("variant: plain CuPy (frames/s)", f"{res['variant_plain_cupy_fps']:,.0f}", "")
            )
    if "skimage_reference" in res:
        k = res["skimage_reference"]
        rows.append(
            (
                "skimage phase_cross_correlation",
                f"{k['ms_per_frame']:.1f} ms/frame ({k['thread_cpu_ms_per_frame']:.1f} CPU), "
                f"err {k['shift_err_mean_px']:.3f}/{k['shift_err_p99_px']:.3f} px",
                "CPU reference",
            )
        )
    if "load_avg_1min" in res:
        rows.append(
            (
                "machine load (1-min avg, cores)",
                f"{res['load_avg_1min']:.2f} / {res['cpu_count']}",
                "",
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m acquisition.bench``: the same benchmark without the ``rig`` CLI's imports
    (used by ``scripts/gpu_check.sh`` on machines that lack the CLI's dependencies)."""
    import argparse
    import json
    import os
    import sys
    from pathlib import Path

    p = argparse.ArgumentParser(prog="python -m acquisition.bench", description=__doc__)
    p.add_argument("--backend", default="auto")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--frames", type=int, default=600)
    p.add_argument("--rois", type=int, default=500)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--stream-frames", type=int, default=300)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--nonrigid-frames", type=int, default=None)
    p.add_argument("--skimage-frames", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)

    def checkpoint(partial: dict[str, Any]) -> None:
        if a.json is not None:
            a.json.parent.mkdir(parents=True, exist_ok=True)
            a.json.write_text(json.dumps(partial, indent=1) + "\n")

    res = run_imaging_bench(
        a.backend, a.size, a.frames, a.rois, a.batch, a.stream_frames, a.repeats,
        a.nonrigid_frames, a.skimage_frames, seed=a.seed,
        progress=lambda m: print(m, file=sys.stderr, flush=True), checkpoint=checkpoint,
    )  # fmt: skip
    res["load_avg_1min"] = os.getloadavg()[0]
    res["cpu_count"] = os.cpu_count()
    res["python"] = sys.version.split()[0]
    rows = format_table(res)
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)))
    if a.json is not None:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=1) + "\n")
        print(f"JSON written to {a.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

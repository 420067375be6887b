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

This module runs the phases; the measurements are in :mod:`acquisition.bench_timing`, the
targets and the printed table in :mod:`acquisition.bench_report` (re-exported here).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from acquisition.bench_report import TARGETS, check_targets, format_table
from acquisition.bench_timing import (
    make_processor,
    path_difference,
    pearson_cols,
    skimage_reference,
    stream_latency,
    timed_movie,
    upload_ceiling,
)
from acquisition.registration import Registrar, RegistrationOptions, fused
from acquisition.rois import RoiSet, build_weights, neuropil_pixels
from acquisition.traces import FullPathProcessor
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
Progress = Callable[[str], None]

# the CLI and scripts import the report from here
__all__ = ["ACTIVE_DFF_SD", "TARGETS", "check_targets", "format_table", "main", "run_imaging_bench"]


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
        return make_processor(xp, opt, reference, reg.line_phase_px, weights, fs, streaming)

    say("accuracy pass ...")
    out = fresh().process_movie(movie, batch_frames)
    d = out.shifts_px - m.shifts_px
    offset = np.median(d, axis=0)
    err = np.abs(d - offset)
    warm = min(round(10 * fs), n_frames // 3)
    r = pearson_cols(out.dff[warm:], m.dff_true[warm:])
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
    dt = timed_movie(proc, movie, batch_frames, repeats)
    batch = {"frames": repeats * n_frames, "seconds": dt, "frames_per_s": repeats * n_frames / dt}
    save("batch", batch)

    say(f"streaming latency ({stream_frames} frames, one at a time) ...")
    proc = fresh()
    stream, rows = stream_latency(proc, movie, stream_frames)
    if is_cupy(xp):
        say(f"streaming path: {stream['path']}; now the plain CuPy path for comparison ...")
        stream_plain, rows_plain = stream_latency(fresh(streaming="plain"), movie, stream_frames)
        save("stream_plain", stream_plain)
        if stream["path"] == "graph":
            stream["graph_vs_plain"] = path_difference(rows, rows_plain, len(rois))
    save("stream", stream)
    nr_n = nonrigid_frames if nonrigid_frames is not None else (n_frames if is_cupy(xp) else 60)
    nr_n = max(1, min(nr_n, n_frames))
    say(f"piecewise-rigid throughput ({nr_n} frames) ...")
    nr_opt = RegistrationOptions(max_shift_px=reg_opt.max_shift_px, nonrigid=True)
    proc = fresh(nr_opt)
    proc.process_movie(movie[: min(batch_frames, nr_n)], batch_frames)
    nr_rep = repeats if is_cupy(xp) else 1
    dt = timed_movie(proc, movie[:nr_n], batch_frames, nr_rep)
    nonrigid = {"frames": nr_n * nr_rep, "frames_per_s": nr_n * nr_rep / dt}

    save("nonrigid", nonrigid)
    if is_cupy(xp):
        say("upload ceiling (pinned host -> device, nothing else) ...")
        up = upload_ceiling(xp, movie, batch_frames, repeats)
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
        dt = timed_movie(proc, movie, batch_frames, repeats)
        save("variant_fourier_shift_fps", repeats * n_frames / dt)
        result["fused_kernels"] = fused.fused_enabled(xp)
        if fused.fused_enabled(xp):
            say("variant: plain CuPy (fused kernels off) ...")
            fused.set_fused(False)
            try:
                proc = fresh()
                proc.process_movie(movie[:batch_frames], batch_frames)
                dt = timed_movie(proc, movie, batch_frames, repeats)
                save("variant_plain_cupy_fps", repeats * n_frames / dt)
            finally:
                fused.set_fused(True)
        result["gpu_memory"] = gpu_memory(xp)
    if skimage_frames > 0:
        say(f"reference: scikit-image phase_cross_correlation on the CPU ({skimage_frames} frames)")
        result["skimage_reference"] = skimage_reference(
            m.frames, m.shifts_px, reference, min(skimage_frames, n_frames)
        )
    result["targets"] = check_targets(result)
    result["complete"] = True
    return result


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

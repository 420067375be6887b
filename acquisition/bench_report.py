"""The targets of ``rig bench imaging`` (issue 6) and the table it prints
(:mod:`acquisition.bench` measures; this module judges and formats).
"""

from __future__ import annotations

from typing import Any

TARGETS = {
    "shift_err_mean_px": 0.1,
    "shift_err_p99_px": 0.3,
    "dff_r_active_median": 0.9,
    "cpu_stream_p50_ms": 5.0,
    "gpu_batch_fps": 50_000.0,
    "gpu_stream_p99_ms": 0.5,
    "gpu_nonrigid_fps": 10_000.0,
}


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

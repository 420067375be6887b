"""The metrics table as rows of strings (the CLI renders them with rich, the GUI as it likes)."""

from __future__ import annotations

import math
from typing import Any

#: (metric key, label, format) in display order.
METRIC_ROWS: list[tuple[str, str, str]] = [
    ("trials", "trials", "{:.0f}"),
    ("rewards", "rewards", "{:.0f}"),
    ("success_rate", "success rate", "{:.1%}"),
    ("success_last20", "success, last 20", "{:.1%}"),
    ("reward_ul", "water (µl)", "{:.1f}"),
    ("misses", "misses", "{:.0f}"),
    ("early_releases", "early releases", "{:.0f}"),
    ("rt_cross_ms", "RT crossing - cue (ms)", "{:.0f}"),
    ("rt_onset_ms", "RT onset - cue (ms)", "{:.0f}"),
    ("pull_duration_ms", "pull duration (ms)", "{:.0f}"),
    ("achieved_hold_ms", "achieved hold (ms)", "{:.0f}"),
    ("amplitude_mm", "amplitude (mm)", "{:.2f}"),
    ("peak_velocity_mm_s", "peak velocity (mm/s)", "{:.1f}"),
    ("time_to_peak_ms", "time to peak (ms)", "{:.0f}"),
    ("trajectory_r", "trajectory r (pairwise)", "{:.2f}"),
    ("template_r", "r with template", "{:.2f}"),
    ("quiescence_s", "pre-movement quiescence (s)", "{:.2f}"),
    ("iti_movements_per_min", "ITI movements / min", "{:.2f}"),
    ("inter_pull_interval_s", "inter-pull interval (s)", "{:.2f}"),
    ("post_success_success_rate", "success after success", "{:.1%}"),
    ("post_error_success_rate", "success after error", "{:.1%}"),
]


def _fmt(v: float, fmt: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)


def metrics_rows(metrics: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """``session_metrics`` output -> (header, rows): one column per context, "all" first."""
    ctx = metrics["contexts"]
    names = ["all"] + [c for c in ctx if c != "all"] if "all" in ctx else list(ctx)
    if len(names) == 2:  # one context only: "all" repeats it
        names = names[1:]
    rows = [
        [label] + [_fmt(ctx[c].get(key), fmt) for c in names] for key, label, fmt in METRIC_ROWS
    ]
    r = metrics.get("between_contexts_r", float("nan"))
    if not math.isnan(r):
        rows.append(["trajectory r between contexts", _fmt(r, "{:.2f}")] + [""] * (len(names) - 1))
    return ["metric", *names], rows

"""Rotarod numbers for the report, from ``tasks.rotarod.metrics`` (rows of ``trials.tsv``)."""

from __future__ import annotations

import json
from typing import Any

from tasks.rotarod import LaneTrial
from tasks.rotarod.metrics import DayMetrics, day_metrics


def _opt(v: str, cast: Any) -> Any:
    return None if v in ("", "None", "null") else cast(v)


def lane_trials(rows: list[dict[str, str]]) -> list[LaneTrial]:
    """``trials.tsv`` rows of a rotarod session -> ``LaneTrial`` records."""
    return [
        LaneTrial(
            subject_id=r["subject_id"],
            day=int(r["day"]),
            trial=int(r["trial"]),
            lane=int(r["lane"]),
            latency_s=float(r["latency_s"]),
            censored=r["censored"] in ("true", "True"),
            ended_by=r["ended_by"],  # type: ignore[arg-type]
            rpm_at_fall_nominal=float(r["rpm_at_fall_nominal"]),
            rpm_at_fall_measured=_opt(r["rpm_at_fall_measured"], float),
            revolutions=float(r["revolutions"]),
            revolutions_nominal=float(r["revolutions_nominal"]),
            passive_rotations=int(r["passive_rotations"]),
            t_fall_device_us=_opt(r.get("t_fall_device_us", ""), int),
            extra=json.loads(r["extra"]) if r.get("extra") else {},
        )
        for r in rows
    ]


def is_rotarod(rows: list[dict[str, str]]) -> bool:
    return bool(rows) and "latency_s" in rows[0] and "lane" in rows[0]


def rotarod_days(rows: list[dict[str, str]]) -> list[DayMetrics]:
    return day_metrics(lane_trials(rows))


def day_table(days: list[DayMetrics]) -> tuple[list[str], list[list[str]]]:
    def f(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    header = ["subject", "day", "trials", "censored", "mean latency (s)", "best (s)",
              "within-day gain (s)", "rpm at fall (nominal)"]  # fmt: skip
    rows = [
        [d.subject_id, str(d.day), str(d.n_trials), str(d.n_censored), f(d.mean_latency_s),
         f(d.best_latency_s), f(d.within_day_gain_s), f(d.mean_rpm_at_fall_nominal)]
        for d in days
    ]  # fmt: skip
    return header, rows

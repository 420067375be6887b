"""Rotarod day and cohort metrics from per-lane trial records.

Censored trials (still on the rod at the cutoff) enter every mean at ``max_s``: the usual
rotarod convention, a lower bound on the true latency. ``n_censored`` says how many there were.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from tasks.rotarod.records import LaneTrial


@dataclass(frozen=True, slots=True)
class DayMetrics:
    """One subject's day.

    Attributes
    ----------
    latencies_s : tuple[float, ...]
        Latency of each trial in trial order (censored ones at ``max_s``).
    within_day_gain_s : float | None
        Last minus first trial of the day (``None`` with a single trial).
    between_day_gain_s : float | None
        First trial of this day minus the last trial of day ``day - 1`` (``None`` when that
        day was not recorded).
    """

    subject_id: str
    day: int
    n_trials: int
    n_censored: int
    latencies_s: tuple[float, ...]
    mean_latency_s: float
    best_latency_s: float
    within_day_gain_s: float | None
    between_day_gain_s: float | None
    mean_rpm_at_fall_nominal: float


@dataclass(frozen=True, slots=True)
class CohortDay:
    """One day averaged over subjects (means of each subject's day metrics)."""

    day: int
    n_subjects: int
    n_trials: int
    n_censored: int
    mean_latency_s: float
    sem_latency_s: float
    best_latency_s: float
    within_day_gain_s: float | None
    between_day_gain_s: float | None
    mean_rpm_at_fall_nominal: float


@dataclass(frozen=True, slots=True)
class CohortMetrics:
    """Per-day cohort table plus learning slopes (s/day, least squares over daily means)."""

    days: tuple[CohortDay, ...]
    subjects: tuple[DayMetrics, ...]
    learning_slope_s_per_day: float | None
    subject_slopes_s_per_day: dict[str, float | None]


def day_metrics(trials: Iterable[LaneTrial]) -> list[DayMetrics]:
    """Day metrics for every (subject, day) in ``trials``, sorted by subject then day."""
    by_key: dict[tuple[str, int], list[LaneTrial]] = defaultdict(list)
    for t in trials:
        by_key[(t.subject_id, t.day)].append(t)
    out: list[DayMetrics] = []
    for subject, day in sorted(by_key):
        day_trials = sorted(by_key[(subject, day)], key=lambda t: t.trial)
        lat = [t.latency_s for t in day_trials]
        prev = by_key.get((subject, day - 1))
        between = None
        if prev:
            last_prev = max(prev, key=lambda t: t.trial)
            between = lat[0] - last_prev.latency_s
        out.append(
            DayMetrics(
                subject_id=subject,
                day=day,
                n_trials=len(lat),
                n_censored=sum(t.censored for t in day_trials),
                latencies_s=tuple(lat),
                mean_latency_s=float(np.mean(lat)),
                best_latency_s=max(lat),
                within_day_gain_s=lat[-1] - lat[0] if len(lat) > 1 else None,
                between_day_gain_s=between,
                mean_rpm_at_fall_nominal=float(
                    np.mean([t.rpm_at_fall_nominal for t in day_trials])
                ),
            )
        )
    return out


def learning_slope(days: Sequence[int], mean_latency_s: Sequence[float]) -> float | None:
    """Least-squares slope of daily mean latency against day (s/day); ``None`` under 2 days."""
    if len(set(days)) < 2:
        return None
    return float(stats.linregress(np.asarray(days, float), np.asarray(mean_latency_s)).slope)


def _mean_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def cohort_metrics(trials: Iterable[LaneTrial]) -> CohortMetrics:
    """Cohort table: for each day, the mean over subjects of each subject's day metrics."""
    subj = day_metrics(trials)
    by_day: dict[int, list[DayMetrics]] = defaultdict(list)
    by_subject: dict[str, list[DayMetrics]] = defaultdict(list)
    for d in subj:
        by_day[d.day].append(d)
        by_subject[d.subject_id].append(d)
    days = []
    for day in sorted(by_day):
        ds = by_day[day]
        means = [d.mean_latency_s for d in ds]
        sem = float(stats.sem(means)) if len(means) > 1 else math.nan
        days.append(
            CohortDay(
                day=day,
                n_subjects=len(ds),
                n_trials=sum(d.n_trials for d in ds),
                n_censored=sum(d.n_censored for d in ds),
                mean_latency_s=float(np.mean(means)),
                sem_latency_s=sem,
                best_latency_s=float(np.mean([d.best_latency_s for d in ds])),
                within_day_gain_s=_mean_or_none([d.within_day_gain_s for d in ds]),
                between_day_gain_s=_mean_or_none([d.between_day_gain_s for d in ds]),
                mean_rpm_at_fall_nominal=float(np.mean([d.mean_rpm_at_fall_nominal for d in ds])),
            )
        )
    slopes = {
        s: learning_slope([d.day for d in ds], [d.mean_latency_s for d in ds])
        for s, ds in sorted(by_subject.items())
    }
    return CohortMetrics(
        days=tuple(days),
        subjects=tuple(subj),
        learning_slope_s_per_day=learning_slope(
            [d.day for d in days], [d.mean_latency_s for d in days]
        ),
        subject_slopes_s_per_day=slopes,
    )


def _fmt(v: float | None, spec: str = ".1f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec)


def format_day_table(cohort: CohortMetrics) -> str:
    """Plain-text per-day table (one line per day) with the learning slope underneath."""
    head = (
        f"{'day':>3} {'mice':>4} {'trials':>6} {'cens':>4} {'mean_s':>7} {'sem_s':>6} "
        f"{'best_s':>7} {'within_s':>8} {'between_s':>9} {'rpm_fall':>8}"
    )
    lines = [head]
    for d in cohort.days:
        lines.append(
            f"{d.day:>3} {d.n_subjects:>4} {d.n_trials:>6} {d.n_censored:>4} "
            f"{_fmt(d.mean_latency_s):>7} {_fmt(d.sem_latency_s):>6} {_fmt(d.best_latency_s):>7} "
            f"{_fmt(d.within_day_gain_s):>8} {_fmt(d.between_day_gain_s):>9} "
            f"{_fmt(d.mean_rpm_at_fall_nominal):>8}"
        )
    lines.append(f"learning slope: {_fmt(cohort.learning_slope_s_per_day, '.2f')} s/day")
    return "\n".join(lines)

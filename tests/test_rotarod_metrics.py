"""Rotarod ramp, per-lane records and day/cohort metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from tasks.rotarod import (
    LaneHit,
    RotarodParams,
    SimRotarodMouse,
    build_lane_trial,
    cohort_metrics,
    day_metrics,
    format_day_table,
    learning_slope,
    make_cohort,
    nominal_revolutions,
    nominal_rpm,
    time_at_rpm,
)

P = RotarodParams()  # 4 -> 40 rpm over 300 s, cutoff 300 s
S = 1_000_000  # µs per s


def test_defaults_match_the_protocol() -> None:
    assert (P.start_rpm, P.end_rpm, P.ramp_s, P.max_s) == (4.0, 40.0, 300.0, 300.0)
    assert (P.trials_per_day, P.iti_min_s, P.debounce_ms) == (4, 600.0, 500.0)
    assert P.accel_rpm_per_s == pytest.approx(0.12)


def test_bad_params_are_refused() -> None:
    with pytest.raises(ValidationError, match="debounce_ms"):
        RotarodParams(debounce_ms=100)
    with pytest.raises(ValidationError, match="end_rpm"):
        RotarodParams(start_rpm=20, end_rpm=10)
    with pytest.raises(ValidationError, match="extra"):
        RotarodParams(speed=3)  # type: ignore[call-arg]


def test_nominal_ramp_by_hand() -> None:
    # 4 + 36 * 150 / 300 = 22 rpm; revolutions = (4*150 + 0.5*0.12*150^2) / 60 = 32.5
    assert nominal_rpm(P, 150.0) == pytest.approx(22.0)
    assert nominal_revolutions(P, 150.0) == pytest.approx(32.5)
    assert nominal_rpm(P, 0.0) == 4.0 and nominal_rpm(P, -1.0) == 0.0
    assert time_at_rpm(P, 22.0) == pytest.approx(150.0)
    assert time_at_rpm(P, 41.0) == math.inf
    # hold phase: ramp 4 -> 10 in 60 s then 10 rpm; at 90 s: (4*60 + 0.5*0.1*3600)/60 + 10*30/60
    p = RotarodParams(start_rpm=4, end_rpm=10, ramp_s=60, max_s=120)
    assert nominal_rpm(p, 90.0) == 10.0
    assert nominal_revolutions(p, 90.0) == pytest.approx(7.0 + 5.0)


def test_fall_record_by_hand() -> None:
    start = 5 * S
    rec = build_lane_trial(
        P,
        subject_id="m1",
        day=1,
        trial=0,
        lane=2,
        ramp_start_us=start,
        falls=[LaneHit(start + 150 * S, rpm_measured=21.9, revolutions_measured=32.4)],
        passive_rotations=[LaneHit(start + 100 * S), LaneHit(start + 200 * S)],
    )
    assert rec.latency_s == 150.0 and not rec.censored and rec.ended_by == "fall"
    assert rec.rpm_at_fall_nominal == pytest.approx(22.0)
    assert rec.rpm_at_fall_measured == 21.9
    assert rec.revolutions == 32.4 and rec.revolutions_nominal == pytest.approx(32.5)
    assert rec.passive_rotations == 1  # the one at 200 s is after the fall
    assert rec.t_fall_device_us == start + 150 * S


def test_censored_record_by_hand() -> None:
    rec = build_lane_trial(
        P,
        subject_id="m1",
        day=1,
        trial=1,
        lane=0,
        ramp_start_us=0,
        falls=[LaneHit(301 * S)],  # after the cutoff: not this trial's fall
        passive_rotations=[],
        cutoff=LaneHit(300 * S, rpm_measured=40.0, revolutions_measured=110.0),
    )
    # censored at max_s = 300 s; nominal revolutions (4*300 + 0.5*0.12*300^2)/60 = 110
    assert rec.censored and rec.latency_s == 300.0 and rec.ended_by == "cutoff"
    assert rec.rpm_at_fall_nominal == 40.0 and rec.rpm_at_fall_measured == 40.0
    assert rec.revolutions_nominal == pytest.approx(110.0)
    assert rec.t_fall_device_us is None


def test_passive_rotation_counts_as_fall_only_when_asked() -> None:
    kw = dict(subject_id="m", day=1, trial=0, lane=1, ramp_start_us=0)
    falls = [LaneHit(120 * S)]
    passive = [LaneHit(100 * S, rpm_measured=16.0)]
    plain = build_lane_trial(P, falls=falls, passive_rotations=passive, **kw)  # type: ignore[arg-type]
    assert plain.latency_s == 120.0 and plain.ended_by == "fall" and plain.passive_rotations == 1
    p = P.model_copy(update={"passive_rotation_is_fall": True})
    as_fall = build_lane_trial(p, falls=falls, passive_rotations=passive, **kw)  # type: ignore[arg-type]
    # 4 + 0.12 * 100 = 16 rpm
    assert as_fall.latency_s == 100.0 and as_fall.ended_by == "passive_rotation"
    assert as_fall.rpm_at_fall_nominal == pytest.approx(16.0)
    assert as_fall.passive_rotations == 1


def _trials(subject: str, day: int, latencies: list[float | None]) -> list:
    out = []
    for k, lat in enumerate(latencies):
        falls = [] if lat is None else [LaneHit(round(lat * S))]
        out.append(
            build_lane_trial(
                P,
                subject_id=subject,
                day=day,
                trial=k,
                lane=0,
                ramp_start_us=0,
                falls=falls,
                passive_rotations=[],
            )
        )
    return out


def test_day_metrics_by_hand_with_censoring() -> None:
    trials = _trials("a", 1, [60, 90, 80, 120]) + _trials("a", 2, [100, 150, None, 200])
    d1, d2 = day_metrics(trials)
    assert d1.mean_latency_s == pytest.approx(87.5)  # (60+90+80+120)/4
    assert d1.best_latency_s == 120 and d1.within_day_gain_s == 60 and d1.n_censored == 0
    assert d1.between_day_gain_s is None
    # censored trial enters at 300: (100+150+300+200)/4 = 187.5, best 300
    assert d2.mean_latency_s == pytest.approx(187.5) and d2.best_latency_s == 300
    assert d2.n_censored == 1 and d2.within_day_gain_s == 100  # 200 - 100
    assert d2.between_day_gain_s == -20  # first of day 2 (100) - last of day 1 (120)
    # nominal rpm at fall: 4 + 0.12*lat -> day 1: 11.2, 14.8, 13.6, 18.4 -> mean 14.5
    assert d1.mean_rpm_at_fall_nominal == pytest.approx(14.5)


def test_cohort_metrics_and_slope_by_hand() -> None:
    trials = (
        _trials("a", 1, [60, 90, 80, 120])
        + _trials("a", 2, [100, 150, None, 200])
        + _trials("b", 1, [40, 40])
        + _trials("b", 2, [50, 70])
        + _trials("b", 3, [90])
    )
    c = cohort_metrics(trials)
    assert [d.day for d in c.days] == [1, 2, 3]
    # day 1: mean of 87.5 and 40 = 63.75; day 2: mean of 187.5 and 60 = 123.75; day 3: 90
    assert [d.mean_latency_s for d in c.days] == pytest.approx([63.75, 123.75, 90.0])
    assert c.days[0].sem_latency_s == pytest.approx(23.75)  # |87.5-40| / 2
    assert c.days[1].between_day_gain_s == pytest.approx((-20 + 10) / 2)
    assert c.days[2].within_day_gain_s is None and c.days[2].n_censored == 0
    assert c.days[1].n_censored == 1 and c.days[1].n_trials == 6
    # slope through (1, 63.75), (2, 123.75), (3, 90): sum((x-2)(y-ybar)) / 2 = 26.25/2
    assert c.learning_slope_s_per_day == pytest.approx(13.125)
    assert c.subject_slopes_s_per_day == pytest.approx({"a": 100.0, "b": 25.0})
    table = format_day_table(c)
    assert "123.8" in table and "13.12 s/day" in table
    assert learning_slope([1], [5.0]) is None


def test_sim_mouse_is_seeded_and_learns() -> None:
    m = SimRotarodMouse("m", seed=3, noise_sd_rpm=0.0, p_cling=0.0)
    # day 3, trial 2: 10 + 2 * (1*3 - 0.5) + 2*1 = 17 rpm -> (17-4)/0.12 s
    assert m.fall_rpm(3, 2, 4) == pytest.approx(17.0)
    plan = m.plan_trial(P, 3, 2)
    assert plan.fall_s == pytest.approx(13 / 0.12) and plan.passive_rotation_s == ()
    noisy = SimRotarodMouse("m", seed=3)
    assert noisy.plan_trial(P, 2, 1) == noisy.plan_trial(P, 2, 1)
    assert noisy.plan_trial(P, 2, 1) != SimRotarodMouse("m", seed=4).plan_trial(P, 2, 1)
    strong = SimRotarodMouse("m", base_rpm=60.0, noise_sd_rpm=0.0)
    assert strong.plan_trial(P, 1, 0).fall_s is None  # censored: never falls before 300 s
    cohort = make_cohort(5, seed=1)
    assert len({c.subject_id for c in cohort}) == 5 and cohort == make_cohort(5, seed=1)

"""Behavioral metrics on synthetic lever traces whose answers are known analytically."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from rig.core.store import SessionMeta, SessionWriter
from tasks.metrics import (
    binned_traces,
    median_pairwise_r,
    metrics_rows,
    parse_movements,
    running_success,
    session_metrics,
    template_r,
)
from tasks.metrics.trajectory import across_days_r, between_r
from tasks.records import TrialRecord

FS_HZ = 1000.0
CPM = 40.0  # counts per mm
REST = 512


def raised_cosine(t: np.ndarray, t0: float, dur: float) -> np.ndarray:
    """0 before t0, 1 after t0 + dur, a half cosine in between."""
    u = np.clip((t - t0) / dur, 0.0, 1.0)
    return (1 - np.cos(np.pi * u)) / 2


def pull(t: np.ndarray, t0: float, amp: float, rise: float, hold: float, fall: float) -> np.ndarray:
    return amp * (raised_cosine(t, t0, rise) - raised_cosine(t, t0 + rise + hold, fall))


AMP, RISE, HOLD, FALL = 2.0, 0.3, 0.4, 0.3
# crossing of 1.0 mm is at half the rise; back below 0.2 mm at acos(-0.8)/pi of the fall
T_CROSS_AFTER_ONSET = RISE / 2
PULL_DURATION_MS = (RISE + HOLD + FALL * math.acos(-0.8) / math.pi) * 1e3
PEAK_VELOCITY = AMP * math.pi / (2 * RISE)


def _synthetic_session(tmp_path: Path) -> tuple[Path, dict]:
    """10 cued trials: RT 250 + 20 i ms; trials 2, 5 early releases, trial 9 a miss; four small
    ITI twitches. Sensor noise 1 count SD, integer counts as on the board."""
    rng = np.random.default_rng(0)
    t = np.arange(0, 86.0, 1 / FS_HZ)
    pos = np.zeros_like(t)
    trials = []
    truth = {"rt_ms": [], "onset_s": []}
    for i in range(10):
        cue = 5.0 + 8.0 * i
        rt = 0.25 + 0.02 * i
        onset = cue + rt
        outcome = "reward"
        hold = HOLD
        if i in (2, 5):
            outcome, hold = "early_release", 0.1
        if i == 9:
            outcome = "miss"
        if outcome != "miss":
            pos += pull(t, onset, AMP, RISE, hold, FALL)
            truth["rt_ms"].append(rt * 1e3 + T_CROSS_AFTER_ONSET * 1e3)
            truth["onset_s"].append(onset)
        if i in (1, 3, 5, 7):  # a 0.6 mm twitch 2.5 s before the cue, inside the ITI
            pos += pull(t, cue - 2.5, 0.6, 0.2, 0.0, 0.2)
        cross = None if outcome == "miss" else onset + T_CROSS_AFTER_ONSET
        trials.append(
            TrialRecord(
                trial=i,
                context="cue_triggered",
                outcome=outcome,  # type: ignore[arg-type]
                hold_ms=400,
                t_start_us=round((cue - 4.0) * 1e6),
                t_ready_us=round(cue * 1e6),
                t_cue_us=round(cue * 1e6),
                t_cross_us=None if cross is None else round(cross * 1e6),
                reward_ul=4.0 if outcome == "reward" else 0.0,
                achieved_hold_ms=None if cross is None else (hold + RISE / 2) * 1e3,
                rt_ms=None if cross is None else (cross - cue) * 1e3,
            )
        )
    counts = np.round(REST + CPM * pos + rng.normal(0, 1.0, len(t))).astype(np.int32)
    meta = SessionMeta(
        subject_id="syn",
        task="cue_triggered",
        rig_name="test",
        rig_config={"lever_board": {"calibration": {"rest_counts": REST, "counts_per_mm": CPM}}},
        task_params={"rest_band_mm": 0.2},
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    w = SessionWriter.create(tmp_path, meta)
    w.write_lever(np.round(t * 1e6).astype(np.int64), counts)
    for tr in trials:
        w.write_trial(tr.row())
    w.close()
    return w.folder, truth


def test_session_metrics_known_answers(tmp_path: Path) -> None:
    folder, truth = _synthetic_session(tmp_path)
    m = session_metrics(folder)
    c = m["contexts"]["cue_triggered"]
    assert c["trials"] == 10 and c["rewards"] == 7
    assert c["success_rate"] == pytest.approx(0.7)
    assert c["reward_ul"] == pytest.approx(28.0)
    assert c["misses"] == 1 and c["early_releases"] == 2
    per = m["per_trial"]
    # RT from crossing is exact (board times). The refined onset is, by definition, where the
    # trace leaves the baseline by one noise SD: on a raised-cosine rise that is
    # RISE * acos(1 - 2 SD / AMP) / pi after the true start; within 10 ms of that.
    np.testing.assert_allclose(per["rt_cross_ms"][:9], truth["rt_ms"], atol=1e-3)
    lag_s = RISE * math.acos(1 - 2 * m["noise_sd_mm"] / AMP) / math.pi
    assert 0.01 < lag_s < 0.04
    np.testing.assert_allclose(per["onset_s"][:9], np.array(truth["onset_s"]) + lag_s, atol=0.010)
    np.testing.assert_allclose(
        per["rt_onset_ms"][:9], np.array(truth["rt_ms"]) - 150.0 + lag_s * 1e3, atol=10.0
    )
    assert math.isnan(per["rt_cross_ms"][9]) and math.isnan(per["onset_s"][9])
    rewarded = [i for i in range(9) if i not in (2, 5)]
    expected_ms = PULL_DURATION_MS - lag_s * 1e3
    np.testing.assert_allclose(per["pull_duration_ms"][rewarded], expected_ms, atol=15)
    np.testing.assert_allclose(per["amplitude_mm"][rewarded], AMP, atol=0.05)
    np.testing.assert_allclose(per["peak_velocity_mm_s"][:9], PEAK_VELOCITY, rtol=0.03)
    # the velocity of a raised cosine peaks mid-rise; position peaks at the end of the rise
    np.testing.assert_allclose(per["time_to_peak_ms"][rewarded], 300 + 400 / 2, atol=220)
    # identical rewarded pulls: trajectories reproduce almost perfectly
    assert c["trajectory_r"] > 0.99 and c["template_r"] > 0.99
    # four ITI twitches in 10 x 4 s of ITI
    assert c["iti_movements_per_min"] == pytest.approx(4 / (40 / 60))
    assert c["inter_pull_interval_s"] == pytest.approx(8.02, abs=1e-6)
    # quiescence: from the end of the previous (padded) movement to this onset, always > 0
    q = per["quiescence_s"][:9]
    assert np.all(q > 0) and np.all(q < 8)
    # trials 3 and 6 follow early releases; 1, 2, 4, 5, 7, 8, 9 follow rewards
    assert c["post_error_trials"] == 2 and c["post_error_success_rate"] == 1.0
    assert c["post_success_trials"] == 7
    assert c["post_success_success_rate"] == pytest.approx(4 / 7)
    assert 0.01 < m["noise_sd_mm"] < 0.04  # 1 count = 0.025 mm plus quantization
    header, rows = metrics_rows(m)
    assert header == ["metric", "cue_triggered"]
    assert ["success rate", "70.0%"] in rows


def test_parse_isolated_pull_onset_and_padding() -> None:
    t = np.arange(0, 5, 1e-3)
    pos = pull(t, 2.0, 1.5, 0.2, 0.2, 0.2)
    parsed = parse_movements(t, pos + np.random.default_rng(1).normal(0, 0.02, len(t)))
    assert len(parsed.movements) == 1
    mv = parsed.movements[0]
    lag_s = 0.2 * math.acos(1 - 2 * parsed.noise_sd_mm / 1.5) / math.pi
    assert mv.onset_s == pytest.approx(2.0 + lag_s, abs=0.01)
    assert mv.start_s < mv.onset_s < mv.stop_s
    # the velocity threshold is crossed after the true onset; padding moves the start before it
    assert mv.start_s < 2.0 - 0.1
    assert mv.amplitude_mm == pytest.approx(1.5, abs=0.02)


def test_gap_fill_joins_and_separates() -> None:
    t = np.arange(0, 10, 1e-3)
    # two twitches 300 ms apart (edge to edge) merge; one 2 s later stays separate
    pos = pull(t, 2.0, 1.0, 0.2, 0.0, 0.2) + pull(t, 2.7, 1.0, 0.2, 0.0, 0.2)
    pos += pull(t, 5.0, 1.0, 0.2, 0.0, 0.2)
    # noise-free: the onset threshold is the noise floor, 0.005 mm
    parsed = parse_movements(t, pos)
    lag_s = 0.2 * math.acos(1 - 2 * 0.005 / 1.0) / math.pi
    assert len(parsed.movements) == 2
    assert parsed.movements[0].onset_s == pytest.approx(2.0 + lag_s, abs=0.01)
    assert parsed.movements[1].onset_s == pytest.approx(5.0 + lag_s, abs=0.01)


def test_trajectory_correlation_known_phases() -> None:
    """sin(wt + k*theta) over whole periods: pairwise r = cos((j-k)*theta) exactly."""
    dt = 1e-3
    theta = math.pi / 5
    t = np.arange(0, 20, dt)
    onsets = np.array([1.0, 6.0, 11.0])
    pos = np.zeros_like(t)
    for k, on in enumerate(onsets):
        sel = (t >= on) & (t < on + 2.0)
        pos[sel] = np.sin(2 * np.pi * 1.0 * (t[sel] - on) + k * theta)
    tr = binned_traces(t, pos, onsets)
    assert tr.shape == (3, 200)
    # pairs (0,1),(1,2): cos(theta); (0,2): cos(2 theta) -> median cos(theta)
    assert median_pairwise_r(tr) == pytest.approx(math.cos(theta), abs=1e-3)
    assert template_r(tr)[1] == pytest.approx(1.0, abs=1e-3)  # the middle phase is the mean's
    assert between_r(tr[:1], tr[2:]) == pytest.approx(math.cos(2 * theta), abs=1e-3)
    days = across_days_r([tr[0], tr[1]])
    assert days[0, 1] == pytest.approx(math.cos(theta), abs=1e-3)
    # an onset whose window runs past the trace is dropped
    assert binned_traces(t, pos, np.array([19.0])).shape == (0, 200)


def test_running_success() -> None:
    out = ["reward"] * 10 + ["miss"] * 20 + ["reward"] * 5
    r = running_success(out, window=20)
    assert r[0] == 1.0 and r[9] == 1.0
    assert r[19] == pytest.approx(0.5) and r[29] == 0.0 and r[34] == pytest.approx(5 / 20)


def test_parse_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="equal 1-D shapes"):
        parse_movements(np.arange(100.0), np.zeros(99))
    with pytest.raises(ValueError, match="at least"):
        parse_movements(np.arange(5.0), np.zeros(5))

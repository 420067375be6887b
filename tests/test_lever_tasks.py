"""Lever tasks: shaping rules, subject state persistence, trial machines, blocks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rig.core.config import LeverCalibration, SubjectState, ValveCalibration, ValvePoint
from rig.core.errors import ConfigError
from rig.core.statemachine import run_machine
from tasks.lever_tasks import CueTriggeredTask, LeverTask, MixedTask, SelfInitiatedTask
from tasks.machines import NEXT_FILE_TTL_BIT
from tasks.params import CueTriggeredParams, MixedParams, SelfInitiatedParams, ShapingParams
from tasks.records import TrialRecord
from tasks.shaping import HoldShaper, load_subject, save_subject, subject_path
from tasks.sim_mouse import Pull, ScriptedMouse
from tests.simavr_helpers import firmware_uno

__all__ = ["firmware_uno"]  # a fixture, used by name


def test_adaptive_rule_steps_caps_and_needs_a_full_window() -> None:
    sh = HoldShaper(ShapingParams(mode="adaptive", cap_ms=300), hold_ms=200)
    changes = [sh.update(True) for _ in range(20)]
    # > 70 % over the last 20: the 20th trial (20/20) triggers +50 ms, not earlier
    assert changes[:19] == [None] * 19 and changes[19] == 250
    # window restarted: 14/20 = 70 % is not > 70 %
    changes = [sh.update(i % 10 < 7) for i in range(20)]
    assert changes == [None] * 20 and sh.hold_ms == 250
    # the window slides: the 8th success pushes out the first failure: 15/20 = 75 % > 70 %
    changes = [sh.update(True) for _ in range(20)]
    assert changes.index(300) == 7 and changes.count(None) == 19
    assert all(sh.update(True) is None for _ in range(40))  # cap
    assert sh.hold_ms == 300


def test_ramp_walks_steps_and_snaps_saved_value() -> None:
    p = ShapingParams(mode="ramp", ramp_ms=[0, 200, 400, 600], window_trials=5)
    sh = HoldShaper(p, hold_ms=600)
    assert sh.hold_ms == 0
    got = [sh.update(True) for _ in range(20)]
    assert [g for g in got if g is not None] == [200, 400, 600]
    assert HoldShaper(p, 600, saved_hold_ms=450).hold_ms == 400
    assert HoldShaper(ShapingParams(mode="fixed"), 350, saved_hold_ms=600).hold_ms == 350
    assert HoldShaper(ShapingParams(mode="adaptive", cap_ms=500), 200, 650).hold_ms == 500


def test_subject_state_round_trip_atomic(tmp_path: Path) -> None:
    s = load_subject(tmp_path, "m7")
    assert s == SubjectState(subject_id="m7")
    s.shaping["self_initiated"] = {"hold_ms": 450.0}
    path = save_subject(tmp_path, s, session="2026-01-01_000000_self_initiated")
    assert path == subject_path(tmp_path, "m7") and not path.with_name("subject.json.tmp").exists()
    back = load_subject(tmp_path, "m7")
    assert back.shaping == {"self_initiated": {"hold_ms": 450.0}} and back.sessions == 1
    data = json.loads(path.read_text())
    data["shaping"] = {"self_initiated": {"hold_ms": "long"}}
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"subject.json: shaping.self_initiated.hold_ms"):
        load_subject(tmp_path, "m7")


# --------------------------------------------------------------------------- machines
CAL = LeverCalibration(counts_per_mm=40.0, rest_counts=512)
VALVE = ValveCalibration(
    points=[
        ValvePoint(duration_ms=20.0, volume_ul=2.0),
        ValvePoint(duration_ms=40.0, volume_ul=4.0),
        ValvePoint(duration_ms=80.0, volume_ul=7.5),
    ]
)


def _lever(pulls: list[Pull], t_end_s: float) -> np.ndarray:
    """1 kHz lever counts for a list of pulls (tick k = k ms)."""
    t = np.arange(0, t_end_s, 1e-3)
    pos = ScriptedMouse(pulls=pulls).position_mm(t)
    return np.round(CAL.rest_counts + CAL.counts_per_mm * pos).astype(np.int32)


def _run(task: LeverTask, pulls: list[Pull], t_end_s: float, n_trials: int = 1):
    plans = [task.plan(i) for i in range(n_trials)]
    trail = run_machine([p.machine for p in plans], _lever(pulls, t_end_s), max_valve_ms=500)
    records = []
    for plan in plans:
        mine = _trial_slice(trail, plan.trial)
        if mine:
            records.append(task.record(plan, mine))
    return plans, trail, records


def _trial_slice(trail, trial: int):
    out, inside = [], False
    for ev in trail:
        if ev.name == "trial_start" and ev.value == trial:
            inside = True
        if inside:
            out.append(ev)
        if inside and ev.name == "trial_end":
            return out
    return out


def _first(trail, name: str, after_us: int = -1) -> int:
    return next(e.t_us for e in trail if e.name == name and e.t_us > after_us)


def test_task_a_pull_in_iti_restarts_it() -> None:
    task = SelfInitiatedTask(SelfInitiatedParams(hold_ms=100), CAL, VALVE)
    # a 0.6 mm twitch at 1.0 s (inside the 3 s ITI) back at rest by ~1.3 s, then a real pull
    pulls = [Pull(1.0, 0.6, 0.1, 0.1, 0.1), Pull(6.0, 2.0, 0.1, 0.5, 0.1)]
    _, trail, (rec,) = _run(task, pulls, 8.0)
    t_rest_us = next(e.t_us for e in trail if e.name == "lever_rest" and e.t_us > 1_000_000)
    assert rec.iti_restarts == 1
    # ITI restarts when the lever is back at rest: ready = rest + iti_s + quiet_s (+ 1 tick
    # for the iti_wait -> iti transition on the level)
    assert abs(rec.t_ready_us - (t_rest_us + 4_000_000)) <= 1_000
    assert rec.outcome == "reward"


def test_task_a_early_release_fails_and_hold_rewards_with_calibrated_pulse() -> None:
    task = SelfInitiatedTask(SelfInitiatedParams(hold_ms=600, reward_ul=4.0), CAL, VALVE)
    # trial 0: pull at 4.5 s held ~300 ms -> early release; trial 1: held 900 ms -> reward
    pulls = [Pull(4.5, 2.0, 0.05, 0.3, 0.05), Pull(10.5, 2.0, 0.05, 0.9, 0.05)]
    plans, trail, recs = _run(task, pulls, 14.0, n_trials=2)
    assert [r.outcome for r in recs] == ["early_release", "reward"]
    early, ok = recs
    assert early.valve_ms == 0 and early.reward_ul == 0 and early.t_reward_us is None
    # crossing at half rise (25 ms left of it), 300 ms hold, release at 0.95 mm (hysteresis)
    # 26 ms into the fall
    assert early.achieved_hold_ms == pytest.approx(326 + 25, abs=2)
    # 4 µl with the rig's calibration is a 40 ms pulse, opened exactly hold_ms after crossing
    assert plans[1].valve_ms == 40 and ok.valve_ms == 40 and ok.reward_ul == pytest.approx(4.0)
    valve_on = [e for e in trail if e.name == "valve_on"]
    assert len(valve_on) == 1 and valve_on[0].value == 40
    assert valve_on[0].t_us - ok.t_cross_us == 600_000
    assert _first(trail, "valve_off", valve_on[0].t_us) - valve_on[0].t_us == 40_000
    # the reward trial ends after consume_s
    assert ok.t_end_us - ok.t_reward_us == 1_500_000


def test_task_b_miss_and_rt() -> None:
    p = CueTriggeredParams(iti_min_s=3, iti_max_s=3, hold_ms=200, tone_ms=1000)
    task = CueTriggeredTask(p, CAL, VALVE)
    # trial 0: no pull -> miss at cue + 1 s; trial 1: pull 350 ms after its cue
    plans = [task.plan(0), task.plan(1)]
    cue1_s = 4.0 + 1.0 + 4.0  # trial 0: ITI 3 + quiet 1 -> cue at 4 s, miss at 5 s
    pulls = [Pull(cue1_s + 0.35, 2.0, 0.05, 0.5, 0.05)]
    trail = run_machine([pl.machine for pl in plans], _lever(pulls, 12.0))
    miss = task.record(plans[0], _trial_slice(trail, 0))
    hit = task.record(plans[1], _trial_slice(trail, 1))
    assert miss.outcome == "miss" and miss.t_cue_us == 4_000_000
    assert miss.t_end_us - miss.t_cue_us == 1_000_000 and miss.t_cross_us is None
    # the tone is silenced at the miss (it would otherwise run its full tone_ms)
    assert _first(trail, "tone_off", 4_000_000) == 5_000_000
    assert hit.outcome == "reward" and hit.t_cue_us == round(cue1_s * 1e6)
    # RT = crossing - cue within one sample period: the pull crosses 1 mm at its half rise
    lever_up = _first(trail, "lever_up", hit.t_cue_us)
    assert hit.t_cross_us == lever_up
    assert abs(hit.rt_ms - (350 + 25)) <= 1.0
    assert _first(trail, "tone_off", hit.t_cue_us) == hit.t_cross_us  # tone stops at crossing


def test_self_timing_variant_too_early_and_in_window() -> None:
    p = CueTriggeredParams(iti_min_s=3, iti_max_s=3, min_rt_s=0.5, response_window_s=1.5)
    task = CueTriggeredTask(p, CAL, VALVE)
    plans = [task.plan(0), task.plan(1)]
    # cue 0 at 4 s: a pull 0.2 s later is too early; cue 1 at ~9.3 s: a pull 0.8 s later counts
    pulls = [Pull(4.2, 2.0, 0.05, 0.5, 0.05)]
    trail = run_machine([pl.machine for pl in plans], _lever(pulls, 9.0))
    r0 = task.record(plans[0], _trial_slice(trail, 0))
    assert r0.outcome == "too_early" and abs(r0.rt_ms - 225) <= 1
    t_cue1 = _first(trail, "tone_on", r0.t_end_us - 1) / 1e6
    pulls.append(Pull(t_cue1 + 0.8, 2.0, 0.05, 0.5, 0.05))
    trail = run_machine([pl.machine for pl in plans], _lever(pulls, t_cue1 + 4))
    r1 = task.record(plans[1], _trial_slice(trail, 1))
    assert r1.outcome == "reward" and abs(r1.rt_ms - 825) <= 1


def test_blocks_switch_after_block_trials_and_random_interleave() -> None:
    p = MixedParams(block_trials=3, first_block="cue_triggered", next_file_marker_on_block=True)
    task = MixedTask(p, CAL, VALVE)
    plans = [task.plan(i) for i in range(8)]
    assert [pl.context for pl in plans] == ["cue_triggered"] * 3 + ["self_initiated"] * 3 + [
        "cue_triggered"
    ] * 2
    assert [pl.block for pl in plans] == [0, 0, 0, 1, 1, 1, 2, 2]
    names = [[n for n, _ in pl.host_events] for pl in plans]
    assert names[0] == ["trial_planned", "block_start"]
    assert names[3] == ["trial_planned", "block_end", "block_start", "next_file_marker"]
    assert names[4] == ["trial_planned"]
    # the marker is a TTL pulse from ITI entry to the quiet period, only on block switches
    iti3 = plans[3].machine.states[0]
    assert iti3.ttl_mask & NEXT_FILE_TTL_BIT and iti3.ttl_value & NEXT_FILE_TTL_BIT
    assert not plans[4].machine.states[0].ttl_mask & NEXT_FILE_TTL_BIT
    r = MixedTask(MixedParams(schedule="random", p_cued=0.25, seed=4), CAL, VALVE)
    ctx = [r.plan(i).context for i in range(400)]
    assert 0.18 < ctx.count("cue_triggered") / 400 < 0.32
    r2 = MixedTask(MixedParams(schedule="random", p_cued=0.25, seed=4), CAL, VALVE)
    assert [r2.plan(i).context for i in range(400)] == ctx  # seeded


def test_shaping_through_task_and_subject_state() -> None:
    sp = {"mode": "adaptive", "cap_ms": 800, "window_trials": 2, "step_ms": 50}
    subj = SubjectState(subject_id="m1", shaping={"self_initiated": {"hold_ms": 300.0}})
    task = SelfInitiatedTask(SelfInitiatedParams(hold_ms=100, shaping=sp), CAL, VALVE, subj)
    plan = task.plan(0)
    hold = next(s for s in plan.machine.states if s.name == "hold")
    assert plan.hold_ms == 300 and hold.tup_ms == 300
    rec = TrialRecord(trial=0, context="self_initiated", outcome="reward", hold_ms=300)
    assert task.finish(rec) == []
    (change,) = task.finish(rec.model_copy(update={"trial": 1}))
    assert change == (
        "param_change",
        {
            "context": "self_initiated",
            "param": "hold_ms",
            "old": 300,
            "new": 350,
            "rule": "adaptive",
        },
    )
    assert task.shaping_state() == {"self_initiated": {"hold_ms": 350}}
    assert task.plan(2).hold_ms == 350


def test_stop_criteria_and_machine_fits_uno() -> None:
    task = CueTriggeredTask(
        CueTriggeredParams(max_rewards=2, min_rt_s=0.2, timeout_s=2.0, max_mm=3.0), CAL, VALVE
    )
    # the largest variants still fit an Uno (16 states, 48 transitions)
    task.plan(0).machine.encode(max_states=16, max_transitions=48, max_valve_ms=500)
    for restart in (True, False):
        big = CueTriggeredParams(
            min_rt_s=0.2,
            timeout_s=2.0,
            max_mm=3.0,
            trial_code_out=True,
            restart_iti_on_move=restart,
        )
        m = CueTriggeredTask(big, CAL, VALVE).plan(0).machine
        m.encode(max_states=16, max_transitions=48, max_valve_ms=500)
    assert task.stop_reason(10.0) is None
    assert task.stop_reason(3600.0) == "max_duration_min reached (60 min)"
    for i in range(2):
        task.finish(TrialRecord(trial=i, context="cue_triggered", outcome="reward", hold_ms=200))
    assert task.stop_reason(10.0) == "max_rewards reached (2)"


# --------------------------------------------------------------------------- real firmware
@pytest.mark.simavr
def test_task_machines_on_the_real_firmware(
    firmware_uno: tuple[Path, Path], tmp_path: Path
) -> None:
    """Task A's trials (built by the task, thresholds from the calibration) run on the lever
    firmware under simavr: the task reads the same records from the firmware's trail as from
    the Python engine's, and the trails agree event for event."""
    from rig.core.simavr import AvrSim, SteppedBoard
    from rig.core.simavr.equivalence import Case, FirmwareRunner, compare_trails, run_python

    params = SelfInitiatedParams(iti_s=0.5, quiet_s=0.3, hold_ms=300, consume_s=0.2)
    task = SelfInitiatedTask(params, CAL, VALVE)
    plan = task.plan(0)  # fixed ITI: every trial runs this same machine
    # a twitch in the ITI (restart), a 500 ms hold (reward), then a 100 ms hold (early release)
    pulls = [
        Pull(0.2, 0.6, 0.08, 0.05, 0.08),
        Pull(2.0, 2.0, 0.05, 0.5, 0.05),
        Pull(4.0, 2.0, 0.05, 0.1, 0.05),
    ]
    lever = _lever(pulls, 5.5).astype(np.int16)
    lick = np.zeros(len(lever), np.int8)
    # Case gains lick_phase_us (G's equivalence work, in progress): pass it when it is there
    phase = [np.zeros(len(lever))] if "lick_phase_us" in Case.__dataclass_fields__ else []
    case = Case(plan.machine, lever, lick, ("task_a",), *phase)
    elf, harness = firmware_uno
    with AvrSim(elf, tmp_path / "fw.log", stepped=True, pty=False, harness=harness) as sim:
        runner = FirmwareRunner(SteppedBoard(sim))
        runner.setup()
        fw = runner.run(case)
    py = run_python(case, fw)
    assert compare_trails(fw.trail, py) is None

    def records(trail: list) -> list[TrialRecord]:
        out = []
        for n in range(fw.first_trial, fw.first_trial + 3):
            mine = _trial_slice(trail, n)
            if mine and mine[-1].name == "trial_end":
                out.append(task.record(plan, mine))
        return out

    fw_recs, py_recs = records(fw.trail), records(py)
    assert [r.outcome for r in fw_recs][:2] == ["reward", "early_release"]
    assert [r.model_dump() for r in fw_recs] == [r.model_dump() for r in py_recs]
    assert fw_recs[0].iti_restarts == 1
    valve = [e for e in fw.trail if e.name == "valve_on"]
    assert valve and valve[0].value == 40  # 4 µl through the rig's valve calibration
    assert valve[0].t_us - fw_recs[0].t_cross_us == 300_000


def test_make_task_checks_names_and_params() -> None:
    from tasks.lever_tasks import make_task

    assert isinstance(make_task("C", MixedParams(), CAL, VALVE), MixedTask)
    with pytest.raises(TypeError, match="task 'mixed' needs MixedParams, got SelfInitiatedParams"):
        make_task("mixed", SelfInitiatedParams(), CAL, VALVE)
    with pytest.raises(ValueError, match="unknown lever task 'rotarod'"):
        make_task("rotarod", SelfInitiatedParams(), CAL, VALVE)


def test_trial_code_out_sends_the_trial_number_once() -> None:
    task = SelfInitiatedTask(
        SelfInitiatedParams(iti_s=0.5, quiet_s=0.2, hold_ms=100, trial_code_out=True), CAL, VALVE
    )
    # a twitch in the ITI restarts it, which must not resend the code
    plans, trail, (rec,) = _run(task, [Pull(0.2, 0.6, 0.05, 0.05, 0.05)], 2.0)
    codes = [e for e in trail if e.name == "trial_code"]
    assert [(e.t_us, e.value) for e in codes] == [(0, 0)]
    assert rec.iti_restarts == 1 and plans[0].machine.states[0].name == "trial_code"

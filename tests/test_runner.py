"""The lever runner end to end: tasks driven through the simulated board (real byte protocol,
real driver) by scripted mice, asserting the exact outcomes TASKS.md implies."""

from __future__ import annotations

import json
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from rig.core.config import RigConfig, load_rig_config
from rig.core.devices import LeverBoard
from rig.core.protocol import EventCode
from rig.core.statemachine import TrailEvent
from rig.core.store import SessionReader
from rig.runner.lever import LeverRunner
from tasks.params import CueTriggeredParams, MixedParams, SelfInitiatedParams, params_hash
from tasks.sim_mouse import Pull, ScriptedMouse
from tests.simavr_helpers import firmware_uno

__all__ = ["firmware_uno"]  # a fixture, used by name

REPO = Path(__file__).resolve().parents[1]


def _rig(tmp_path: Path, **board: object) -> RigConfig:
    rig = load_rig_config(REPO / "hardware_configs" / "sim.yaml")
    # behavior only: live imaging has its own tests (test_runner_imaging.py)
    rig = rig.model_copy(update={"data_dir": tmp_path, "imaging": None})
    assert rig.lever_board is not None
    rig.lever_board = rig.lever_board.model_copy(update={"noise_counts": 0.0, **board})
    return rig


class TrialScript:
    """A ``LeverInput`` whose pulls are given relative to each trial's start or cue onset.

    ``by_trial[n]``: pulls of trial ``n`` with ``onset_s`` after its TRIAL_START;
    ``by_cue[i]``: the response to the i-th tone (``onset_s`` = reaction time), or None.
    """

    def __init__(
        self,
        by_trial: dict[int, list[Pull]] | None = None,
        by_cue: list[Pull | None] | None = None,
    ) -> None:
        self.mouse = ScriptedMouse(cue_responses=list(by_cue or []))
        self.by_trial = by_trial or {}
        self.rest, self.cpm = 512, 40.0

    def counts(self, t_us: np.ndarray) -> np.ndarray:
        pos = self.mouse.position_mm(np.asarray(t_us, dtype=np.float64) / 1e6)
        return np.rint(self.rest + self.cpm * pos).astype(np.int64)

    def on_output(self, ev: TrailEvent) -> None:
        t_s = ev.t_us / 1e6
        if ev.code == EventCode.TRIAL_START:
            for p in self.by_trial.get(ev.value, []):
                self.mouse._track.add(Pull(t_s + p.onset_s, p.amp_mm, p.rise_s, p.hold_s, p.fall_s))
        elif ev.code == EventCode.TONE_ON and ev.arg == 0:
            self.mouse.perceive("cue_on", t_s)


@pytest.fixture
def safe_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every ``LeverBoard.safe_state`` call (the real method still runs)."""
    calls: list[str] = []
    real = LeverBoard.safe_state

    def spy(self: LeverBoard) -> bool:
        ok = real(self)
        calls.append("ok" if ok else "failed")
        return ok

    monkeypatch.setattr(LeverBoard, "safe_state", spy)
    return calls


def _run(rig: RigConfig, task: str, params: object, lever: object, **kw: object) -> LeverRunner:
    runner = LeverRunner(rig, "m1", task, params, speed=None, mouse=lever, **kw)  # type: ignore[arg-type]
    runner.run()
    return runner


def _events(folder: Path) -> list:
    return SessionReader(folder).events()


def test_self_initiated_iti_restart_early_release_and_calibrated_reward(
    tmp_path: Path, safe_calls: list[str]
) -> None:
    params = SelfInitiatedParams(hold_ms=600, max_rewards=1)
    lever = TrialScript(
        by_trial={
            # trial 0: a twitch in the ITI restarts it; then a 300 ms hold: early release
            0: [Pull(1.0, 0.6, 0.1, 0.1, 0.1), Pull(6.0, 2.0, 0.05, 0.3, 0.05)],
            # trial 1: held 900 ms: reward
            1: [Pull(5.0, 2.0, 0.05, 0.9, 0.05)],
        }
    )
    runner = _run(_rig(tmp_path), "self_initiated", params, lever)
    folder = runner.session_dir
    assert folder is not None
    r = SessionReader(folder)
    rows = r.trials()
    assert [t["outcome"] for t in rows] == ["early_release", "reward", "aborted"]
    # trial 1 starts at the release (lever_down at 0.95 mm), not yet back at rest: its ITI
    # waits for rest once, too
    assert rows[0]["iti_restarts"] == "1" and rows[1]["iti_restarts"] == "1"
    # the ITI restarted when the twitch ended: ready = back at rest + iti_s + quiet_s
    ev = r.events()
    t_start0 = int(rows[0]["t_start_us"])
    rest_after_twitch = next(
        e.t_device_us for e in ev if e.name == "lever_rest" and e.t_device_us > t_start0 + 1_000_000
    )
    assert abs(int(rows[0]["t_ready_us"]) - (rest_after_twitch + 4_000_000)) <= 1_000
    assert rows[0]["valve_ms"] == "0.0"
    # the reward is the calibrated pulse: 4 µl -> 40 ms, hold_ms after the crossing
    assert rows[1]["valve_ms"] == "40.0" and float(rows[1]["reward_ul"]) == pytest.approx(4.0)
    (valve,) = [e for e in ev if e.name == "valve_on"]
    assert valve.data["duration_ms"] == 40 and valve.data["volume_ul"] == pytest.approx(4.0)
    assert valve.t_device_us - int(rows[1]["t_cross_us"]) == 600_000
    assert valve.trial == 1
    # session record: params + hash, firmware hello, stop reason, safe state on the way out
    meta = r.meta
    assert meta.params_hash == params_hash(params) and meta.task_params["hold_ms"] == 600
    assert meta.firmware["lever_board"]["name"] == "lever_board"
    assert meta.status == "complete" and meta.stop_reason == "max_rewards reached (1)"
    assert safe_calls and set(safe_calls) == {"ok"}
    assert len(r.lever()) > 5000  # every sample recorded
    assert r.raw_devices() == ["lever_board"]
    subject = json.loads((tmp_path / "m1" / "subject.json").read_text())
    assert subject["shaping"] == {"self_initiated": {"hold_ms": 600.0}}
    assert subject["sessions"] == 1


def test_cue_triggered_miss_and_reaction_time(tmp_path: Path, safe_calls: list[str]) -> None:
    params = CueTriggeredParams(iti_min_s=0.5, iti_max_s=1.0, quiet_precue_s=0.5, max_rewards=1)
    lever = TrialScript(by_cue=[None, Pull(0.35, 2.0, 0.05, 0.5, 0.05)])
    runner = _run(_rig(tmp_path), "cue_triggered", params, lever)
    assert runner.session_dir is not None
    rows = SessionReader(runner.session_dir).trials()
    assert [t["outcome"] for t in rows[:2]] == ["miss", "reward"]
    miss, hit = rows[0], rows[1]
    # a cue without a pull is a miss when the response window closes
    assert int(miss["t_end_us"]) - int(miss["t_cue_us"]) == 1_000_000
    assert miss["t_cross_us"] == "" and miss["rt_ms"] == ""
    # RT = crossing - cue onset, within one sample period of the scripted 350 + 25 ms
    assert float(hit["rt_ms"]) == pytest.approx(375.0, abs=1.0)
    ev = _events(runner.session_dir)
    cross = next(
        e.t_device_us for e in ev if e.name == "lever_up" and e.t_device_us > int(hit["t_cue_us"])
    )
    assert int(hit["t_cross_us"]) == cross
    assert safe_calls


def test_mixed_blocks_switch_after_block_trials(tmp_path: Path) -> None:
    fast = {"iti_s": 0.2, "quiet_s": 0.1, "ready_timeout_s": 0.3}
    cued = {"iti_min_s": 0.2, "iti_max_s": 0.3, "quiet_precue_s": 0.1, "response_window_s": 0.3}
    params = MixedParams(
        block_trials=2,
        max_duration_min=0.1,
        self_initiated=fast,  # type: ignore[arg-type]
        cue_triggered=cued,  # type: ignore[arg-type]
    )
    runner = _run(_rig(tmp_path), "mixed", params, TrialScript())
    assert runner.session_dir is not None
    rows = [t for t in SessionReader(runner.session_dir).trials() if t["outcome"] != "aborted"]
    assert len(rows) >= 6
    ctx = [t["context"] for t in rows[:6]]
    assert ctx == ["self_initiated"] * 2 + ["cue_triggered"] * 2 + ["self_initiated"] * 2
    assert [t["block"] for t in rows[:6]] == ["0", "0", "1", "1", "2", "2"]
    assert [t["outcome"] for t in rows[:4]] == ["no_pull", "no_pull", "miss", "miss"]
    # uploaded ahead: each trial starts in the tick the previous one ends (no dead time)
    for a, b in pairwise(rows):
        assert b["t_start_us"] == a["t_end_us"]
    ev = _events(runner.session_dir)
    starts = [e for e in ev if e.name == "block_start"]
    assert [(e.data["block"], e.data["context"], e.trial) for e in starts[:3]] == [
        (0, "self_initiated", 0),
        (1, "cue_triggered", 2),
        (2, "self_initiated", 4),
    ]
    assert [e.trial for e in ev if e.name == "block_end"][:2] == [2, 4]
    assert SessionReader(runner.session_dir).meta.stop_reason.startswith("max_duration_min")


def test_stop_on_request_and_on_error_leave_board_safe(
    tmp_path: Path, safe_calls: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    params = SelfInitiatedParams(iti_s=0.2, quiet_s=0.1, hold_ms=100)
    lever = TrialScript(by_trial={0: [Pull(0.5, 2.0, 0.05, 5.0, 0.05)]})
    runner = LeverRunner(_rig(tmp_path), "m1", "self_initiated", params, speed=None, mouse=lever)
    runner.start()
    assert runner.running
    runner.stop("test says stop")
    assert not runner.running and safe_calls
    meta = SessionReader(runner.session_dir).meta  # type: ignore[arg-type]
    assert meta.status == "complete" and meta.stop_reason == "test says stop"

    # a failure inside the session loop: still safe, session marked aborted, error re-raised
    safe_calls.clear()
    from tasks.lever_tasks import LeverTask

    def broken(self: LeverTask, plan: object, trail: object) -> None:
        raise RuntimeError("task bug")

    monkeypatch.setattr(LeverTask, "record", broken)
    runner = LeverRunner(_rig(tmp_path), "m2", "self_initiated", params, speed=None, mouse=lever)
    with pytest.raises(RuntimeError, match="task bug"):
        runner.run()
    assert safe_calls and not runner.running
    meta = SessionReader(runner.session_dir).meta  # type: ignore[arg-type]
    assert meta.status == "aborted" and "task bug" in meta.stop_reason


@pytest.mark.simavr
def test_cue_triggered_session_on_the_real_firmware(
    firmware_uno: tuple[Path, Path], tmp_path: Path, safe_calls: list[str]
) -> None:
    """The runner drives the lever firmware under simavr (real time, UART on a pty): a cued
    trial with a scripted response is rewarded with the calibrated pulse."""
    rig = load_rig_config(REPO / "hardware_configs" / "sim.yaml")
    assert rig.lever_board is not None
    board = rig.lever_board.model_dump()
    board.update(driver="simavr", realtime=True)
    board.pop("noise_counts")
    rig = RigConfig.model_validate(
        {**rig.model_dump(), "data_dir": tmp_path, "lever_board": board, "imaging": None}
    )
    params = CueTriggeredParams(iti_min_s=0.3, iti_max_s=0.3, quiet_precue_s=0.2, max_rewards=1)
    lever = TrialScript(by_cue=[Pull(0.35, 2.0, 0.05, 0.5, 0.05)])
    runner = LeverRunner(rig, "m1", "cue_triggered", params, mouse=lever)
    runner.run()
    assert runner.session_dir is not None
    r = SessionReader(runner.session_dir)
    rows = r.trials()
    assert rows[0]["outcome"] == "reward", rows
    # the scripted mouse hears the cue through the host and moves on the host's estimate of
    # board time (simavr's pace varies with load), so its RT is only roughly the scripted
    # 375 ms; the board's RT is exact: crossing (its lever_up event) - cue onset
    rt_ms = float(rows[0]["rt_ms"])
    assert 0.0 < rt_ms <= 1000.0
    up = next(
        e.t_device_us
        for e in r.events()
        if e.name == "lever_up" and e.t_device_us > int(rows[0]["t_cue_us"])
    )
    assert rt_ms == (up - int(rows[0]["t_cue_us"])) / 1e3
    assert rows[0]["valve_ms"] == "40.0"
    fw = r.meta.firmware["lever_board"]
    assert fw["name"] == "lever_board" and fw["simulated"] is False
    assert r.meta.status == "complete" and safe_calls


def test_manual_actions_are_logged_and_zero_moves_the_thresholds(tmp_path: Path) -> None:
    params = SelfInitiatedParams(iti_s=30.0)  # a long ITI: nothing happens meanwhile
    # the lever rests 0.5 mm out (20 counts) so zeroing has something to do
    lever = TrialScript(by_trial={0: [Pull(0.0, 0.5, 0.001, 1000.0, 0.001)]})
    runner = LeverRunner(_rig(tmp_path), "m1", "self_initiated", params, speed=1.0, mouse=lever)
    runner.start()
    try:
        # wait (condition, with a timeout) until the board has sampled the moved lever a while
        deadline = time.monotonic() + 10
        while runner.elapsed_s < 0.1 and time.monotonic() < deadline:
            runner.wait(0.01)
        assert runner.elapsed_s >= 0.1
        runner.give_reward(2.0)
        runner.play_tone(5000, 50)
        runner.zero_lever()
        assert runner.task is not None and runner.task.lever_cal.rest_counts == 532
        hold = runner.task.plan(99).machine.lever
        assert hold.up_counts == 532 + 40  # pull_threshold_mm = 1.0 from the new rest
    finally:
        runner.stop()
    ev = _events(runner.session_dir)  # type: ignore[arg-type]
    manual = [(e.name, e.source) for e in ev if e.name.startswith("manual_")]
    assert manual == [
        ("manual_reward", "gui"),
        ("manual_tone", "gui"),
        ("manual_zero_lever", "gui"),
    ]
    valve = next(e for e in ev if e.name == "valve_on")
    assert valve.data["duration_ms"] == 20 and valve.data["arg"] == 1  # host-commanded


@pytest.mark.parametrize("stop", ["duration", "max_rewards"])
def test_virtual_clock_session_is_the_same_whatever_the_host_speed(
    tmp_path: Path, stop: str
) -> None:
    """A seeded simulated session on the virtual clock records the same trials when the host is
    slow: the board waits for the host from tick 0, and the stop rules are judged at a trial
    start, where the board is frozen (before, the lead-in and the last trial varied by run)."""
    params = MixedParams(
        block_trials=4, max_rewards=6 if stop == "max_rewards" else 10_000, max_duration_min=60
    )
    duration_s = 150.0 if stop == "duration" else None
    rows = []
    for slow in (False, True):
        rig = _rig(tmp_path / f"slow{slow}")
        runner = LeverRunner(rig, "m1", "mixed", params, speed=None, duration_s=duration_s)
        if slow:
            # a host busy elsewhere: every trial's handling is late by 30 ms of wall time while
            # the board runs free (an injected delay, not a wait for a condition)
            runner.signals.trial.connect(lambda *_: time.sleep(0.03))
        runner.run()
        assert runner.summary()["status"] == "complete", runner.summary()["stop_reason"]
        folder = Path(runner.summary()["folder"])
        rows.append((folder / "trials.tsv").read_text())
        assert ("duration reached" if stop == "duration" else "max_rewards") in runner.summary()[
            "stop_reason"
        ]
    assert len(rows[0].splitlines()) > 6
    assert rows[0] == rows[1]

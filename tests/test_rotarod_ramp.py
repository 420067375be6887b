"""The runner's ramp start/stop decisions follow the board's packets, never host scheduling.

A scripted rod feeds the runner's real trial loop (``_run_trial``) exactly the packet orders a
loaded host can read: the still heartbeats *before* ROD_STOPPED, a ROD_STOPPED lost on the
link, a lost ROD_STARTED, a host-timeout stop.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from rig.core.config import RigConfig, RotarodSimavr
from rig.core.devices.rotarod import (
    STATUS_HOST_TIMED_OUT,
    STATUS_TURNING,
    STOP_CUTOFF,
    STOP_HOST,
    LaneFall,
    RodSpeed,
    RodStarted,
    RodStopped,
    RotarodAdapter,
    RotarodError,
)
from rig.core.events import Event
from rig.core.protocol import Heartbeat, Hello, Message
from rig.core.simavr import DEBIAN_PACKAGES, missing_tools
from rig.core.store import SessionReader
from rig.runner.rotarod import _run_trial, run_rotarod_session
from rig.runner.rotarod_devices import Inbox
from rig.runner.rotarod_ramp import STOP_GRACE_US, RampTracker
from tasks.rotarod import RotarodParams, SimRotarodMouse

SPR = 3200
T0 = 5_000_000  # board µs of the ramp start
S = 1_000_000
PARAMS = RotarodParams(lanes=1, trials_per_day=1, ramp_s=60, max_s=60)  # 0.6 rpm/s


def beat(t_us: int, status: int) -> Heartbeat:
    return Heartbeat(t_us, 0, 0, 0, 0, 0, status, 1, 0xFF, 0)


def speed(t_us: int) -> RodSpeed:
    rpm = 4 + 0.6 * (t_us - T0) / S
    steps = round((t_us - T0) / S * 4.5 / 60 * SPR)
    return RodSpeed(t_us, steps, round(rpm * 1000), round(rpm * 1000))


def turning(until_s: float) -> list[Message]:
    """What the board sends while turning: speed every 50 ms, heartbeat every 100 ms."""
    out: list[Message] = []
    for k in range(1, round(until_s * 20) + 1):
        t = T0 + k * 50_000
        out.append(speed(t))
        if k % 2 == 0:
            out.append(beat(t, STATUS_TURNING))
    return out


class ScriptedRod(RotarodAdapter):
    """A rod whose packets are a script: ``on_start`` at START_RAMP, ``on_stop`` at STOP_ROD."""

    def __init__(
        self, inbox: Inbox, on_start: Sequence[Message], on_stop: Sequence[Message] = ()
    ) -> None:
        super().__init__()
        self.inbox, self.on_start, self.on_stop = inbox, on_start, on_stop
        self.steps_per_rev = SPR
        self.stops = 0

    def open(self) -> Hello:  # pragma: no cover - not used by _run_trial
        raise NotImplementedError

    def start_ramp(self, start_rpm: float, end_rpm: float, ramp_s: float, max_s: float) -> None:
        for m in self.on_start:
            self.inbox.put(m)

    def stop(self) -> None:
        self.stops += 1
        for m in self.on_stop:
            self.inbox.put(m)

    def close(self) -> None:
        pass


def run(on_start: Sequence[Message], on_stop: Sequence[Message] = ()) -> tuple[list, list[Event]]:
    inbox = Inbox()
    rod = ScriptedRod(inbox, on_start, on_stop)
    log: list[Event] = []
    records = _run_trial(rod, PARAMS, ["m"], 1, 0, inbox, log.append, threading.Event(), 10.0)
    assert records is not None
    # every packet taken was handled (a simulated rod in virtual time paces on this count)
    assert inbox.unfinished_tasks == inbox.qsize()
    return records, log


def test_still_heartbeats_read_before_rod_stopped_do_not_make_the_stop_inferred() -> None:
    # the mouse falls at 10 s; the host stops the rod; the runner reads two (three) heartbeats
    # saying the rod is still before the board's ROD_STOPPED
    fall = LaneFall(T0 + 10 * S, 0, 1000, 10_000, 10_000)
    board_stop_us = T0 + 10 * S + 350_000
    on_stop = [
        beat(board_stop_us + 20_000, 0),
        beat(board_stop_us + 120_000, 0),
        beat(board_stop_us + 220_000, 0),
        RodStopped(board_stop_us, 4321, STOP_HOST),
        beat(board_stop_us + 320_000, 0),
    ]
    records, log = run([RodStarted(T0, 4000, 40000, 60_000, 60_000), *turning(10.0), fall], on_stop)
    names = [e.name for e in log]
    assert "rotarod_stop_inferred" not in names
    stop = next(e for e in log if e.name == "rotarod_stop")
    assert stop.t_device_us == board_stop_us  # the board's own time, not a heartbeat's
    assert stop.data["revolutions"] == 4321 / SPR
    (rec,) = records
    assert rec.latency_s == 10.0 and rec.ended_by == "fall"


def test_a_lost_rod_stopped_is_inferred_only_after_the_grace_in_board_time() -> None:
    fall = LaneFall(T0 + 10 * S, 0, 1000, 10_000, 10_000)
    first_still = T0 + 10 * S + 100_000
    on_stop = [beat(first_still + k * 100_000, 0) for k in range(6)]  # no ROD_STOPPED at all
    records, log = run([RodStarted(T0, 4000, 40000, 60_000, 60_000), *turning(10.0), fall], on_stop)
    (inferred,) = [e for e in log if e.name == "rotarod_stop_inferred"]
    # decided on the first packet stamped a full grace after the first still heartbeat
    assert inferred.t_device_us == first_still + STOP_GRACE_US
    assert inferred.data == {"reason": STOP_HOST, "grace_us": STOP_GRACE_US}
    assert records[0].latency_s == 10.0


def test_lost_start_and_lost_cutoff_are_inferred() -> None:
    # ROD_STARTED lost: the first speed report (t0 + 50 ms) dates the start; ROD_STOPPED of the
    # cutoff lost: still heartbeats after max_s end the trial at exactly t0 + max_s, censored
    on_start = [*turning(60.0), *[beat(T0 + 60 * S + k * 100_000, 0) for k in range(1, 6)]]
    records, log = run(on_start)
    names = [e.name for e in log]
    assert names.count("rotarod_start_inferred") == 1 and names.count("rotarod_stop_inferred") == 1
    assert next(e for e in log if e.name == "rotarod_start_inferred").t_device_us == T0
    (rec,) = records
    assert rec.censored and rec.latency_s == 60.0 and rec.ended_by == "cutoff"
    stop = next(e for e in log if e.name == "rotarod_stop_inferred")
    assert stop.data["reason"] == STOP_CUTOFF


def test_a_still_heartbeat_with_the_host_timeout_bit_ends_the_session() -> None:
    # ROD_STOPPED of a host-silence stop lost: the heartbeats' bit3 says why the rod is still
    still = [beat(T0 + 3 * S + k * 100_000, STATUS_HOST_TIMED_OUT) for k in range(5)]
    with pytest.raises(RotarodError, match="heard nothing from this host"):
        run([RodStarted(T0, 4000, 40000, 60_000, 60_000), *turning(3.0), *still])


def test_tracker_ignores_heartbeats_from_before_the_ramp_and_a_brief_still() -> None:
    t = RampTracker(PARAMS, trial=0)
    assert t.feed(beat(T0 - 100_000, 0)) == []  # idle before START_RAMP took effect
    t.feed(RodStarted(T0, 4000, 40000, 60_000, 60_000))
    t.feed(beat(T0, 0))  # stamped at the start itself: not "after"
    t.feed(beat(T0 + 100_000, 0))  # the status/ROD_STOPPED race of one main-loop pass...
    t.feed(beat(T0 + 200_000, STATUS_TURNING))  # ...then turning again: the count restarts
    for k in range(3, 6):
        assert t.feed(beat(T0 + k * 100_000, STATUS_TURNING)) == []
    assert t.stopped is None
    t.feed(RodStopped(T0 + 700_000, 99, STOP_HOST))
    assert t.stopped == RodStopped(T0 + 700_000, 99, STOP_HOST)
    assert t.feed(beat(T0 + 5 * S, 0)) == []  # after the stop nothing changes


@pytest.mark.simavr
def test_firmware_stop_lands_in_the_step_that_reported_the_last_fall(tmp_path: Path) -> None:
    # the firmware under stepped simavr as the rod: the runner stops the rod when the only mouse
    # is down, and simulated time waits for it, so the STOP_ROD reaches the board in the 50 ms
    # step whose packets reported the fall (confirmed 500 ms after its onset, the debounce)
    missing = missing_tools()
    if missing:
        pytest.skip(f"needs {', '.join(missing)}: apt-get install {DEBIAN_PACKAGES}")
    rig = RigConfig(
        name="simavr-rod",
        data_dir=tmp_path,
        rotarod=RotarodSimavr(driver="simavr", lanes=1, realtime=False),
    )
    params = RotarodParams(ramp_s=5, max_s=5, trials_per_day=1, lanes=1)  # 7.2 rpm/s
    mouse = SimRotarodMouse("a", base_rpm=10.0, noise_sd_rpm=0.0, p_cling=0.0)  # 0.833 s
    res = run_rotarod_session(rig, params, ["a"], mice={0: mouse})
    assert res.status == "complete" and res.trials[0].ended_by == "fall"
    events = {e.name: e for e in SessionReader(res.folder).events()}
    assert "rotarod_stop_inferred" not in events
    fall_us, stop_us = events["rotarod_fall"].t_device_us, events["rotarod_stop"].t_device_us
    assert 500_000 < stop_us - fall_us <= 500_000 + 50_000 + 2000

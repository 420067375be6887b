"""Rotarod session runner: trials of one day, inter-trial countdown, per-lane records.

``run_rotarod_session`` builds the rotarod from the rig config (simulated rod, firmware under
simavr via a transport, or a real board), runs ``trials_per_day`` ramps with at least
``iti_min_s`` between them, writes every rod event and one ``trials.tsv`` row per lane and
trial through ``SessionWriter``, and puts the rod in its safe state (stopped) on every exit.
``run_cohort`` runs a simulated cohort over several days and returns the cohort metrics.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from rig.core.config import RigConfig
from rig.core.devices.rotarod import (
    STOP_CUTOFF,
    STOP_HOST_SILENT,
    LaneFall,
    PassiveRotation,
    RodSpeed,
    Rotarod,
    RotarodAdapter,
    RotarodError,
)
from rig.core.devices.rotarod_sim import SimavrRotarodTransport
from rig.core.errors import RigError
from rig.core.events import Event
from rig.core.protocol import Message
from rig.core.signals import RigSignals
from rig.core.store import SessionMeta, SessionWriter
from rig.runner.rotarod_devices import SimulatedRod, make_rotarod, open_inbox
from rig.runner.rotarod_ramp import RampTracker, event_from, odd_report
from tasks.rotarod import (
    CohortMetrics,
    LaneHit,
    LaneTrial,
    RotarodParams,
    SimRotarodMouse,
    build_lane_trial,
    cohort_metrics,
    make_cohort,
)

TASK_NAME = "rotarod"


@dataclass
class RotarodSessionResult:
    """What one session produced: its folder, the per-lane records, how it ended."""

    folder: Path
    trials: list[LaneTrial] = field(default_factory=list)
    status: str = "complete"
    reason: str = ""


def _software() -> dict[str, str]:
    try:
        return {"motor-rig": version("motor-rig")}
    except PackageNotFoundError:  # pragma: no cover - not installed
        return {}


def run_rotarod_session(
    rig: RigConfig,
    params: RotarodParams,
    subjects: Sequence[str],
    *,
    day: int = 1,
    group: str = "rotarod",
    data_dir: Path | None = None,
    mice: Mapping[int, SimRotarodMouse] | None = None,
    realtime: bool = False,
    signals: RigSignals | None = None,
    stop: threading.Event | None = None,
    on_countdown: Callable[[float], None] | None = None,
    transport: Any = None,
    trial_timeout_s: float | None = None,
) -> RotarodSessionResult:
    """Run one day of rotarod trials.

    Parameters
    ----------
    rig : RigConfig
        Must have a ``rotarod`` section.
    params : RotarodParams
    subjects : sequence of str
        Subject on each lane, lane 0 first (``len(subjects) <= params.lanes``).
    day : int
        Training day (1-based), stored in every record.
    group : str
        Session folder owner: ``<data_dir>/<group>/<date_time>_rotarod/``.
    mice : mapping lane -> SimRotarodMouse, optional
        Simulated mice that trip the lanes of a simulated rod.
    realtime : bool
        Simulated rod and inter-trial countdown on the wall clock; otherwise virtual time.
    stop : threading.Event, optional
        Set it to end the session after stopping the rod (the running trial is dropped).
    on_countdown : callable(remaining_s), optional
        Called about once a second during the inter-trial interval (the GUI's timer).
    transport : optional
        A transport to the rod instead of the one the config implies.

    Returns
    -------
    RotarodSessionResult
    """
    if not 1 <= len(subjects) <= params.lanes:
        raise ValueError(f"need 1..{params.lanes} subjects (one per lane), got {len(subjects)}")
    rod, sim = make_rotarod(rig, realtime=realtime, transport=transport)
    if rod.n_lanes < len(subjects):
        raise RigError(f"the rotarod has {rod.n_lanes} lanes, {len(subjects)} subjects given")
    if mice and sim is None:
        raise RigError("simulated mice need a simulated rod (rotarod driver: sim or simavr)")
    stop = stop or threading.Event()
    inbox = open_inbox(rod, sim)
    meta = SessionMeta(
        subject_id=group,
        task=TASK_NAME,
        rig_name=rig.name,
        rig_config=rig.model_dump(mode="json"),
        task_params=params.model_dump(mode="json"),
        params_hash=params.params_hash(),
        software=_software(),
        started_at=datetime.now(UTC),
        extra={"day": day, "lanes": dict(enumerate(subjects))},
    )
    writer = SessionWriter.create(data_dir or rig.data_dir, meta, rig.fsync_interval_s)
    result = RotarodSessionResult(writer.folder)
    if trial_timeout_s is not None:
        timeout_s = trial_timeout_s
    elif isinstance(sim, SimavrRotarodTransport):
        timeout_s = 5 * params.max_s + 60.0  # simavr runs at about real time, or slower
    elif realtime or sim is None:
        timeout_s = params.max_s + 30.0
    else:
        timeout_s = 120.0  # the Python rod in virtual time: a 300 s trial takes ~1 s

    def log(ev: Event) -> None:
        writer.write_event(ev)
        if signals is not None:
            signals.event.emit(ev)

    try:
        if isinstance(rod, Rotarod):  # raw/rotarod.bin: every received byte, for replay
            rod.on_raw = lambda t_ns, data: writer.write_raw(rod.name, data, t_ns)
        hello = rod.open()
        writer.update_meta(firmware={rod.name: vars_of(hello)})
        log(Event("session_start", "host", data={"params_hash": params.params_hash(), "day": day}))
        for trial in range(params.trials_per_day):
            if stop.is_set():
                break
            if trial > 0:
                _inter_trial(params, sim, stop, on_countdown, log, trial, realtime)
                if stop.is_set():
                    break
            if sim is not None and mice:
                for lane, mouse in mice.items():
                    plan = mouse.plan_trial(params, day, trial)
                    if plan.fall_s is not None:
                        sim.schedule_lane(lane, plan.fall_s, "fall")
                    for t_s in plan.passive_rotation_s:
                        sim.schedule_lane(lane, t_s, "passive")
            records = _run_trial(rod, params, subjects, day, trial, inbox, log, stop, timeout_s)
            if records is None:
                break
            for rec in records:
                writer.write_trial(rec.to_row())
                if signals is not None:
                    signals.trial.emit(rec.to_row())
            result.trials.extend(records)
        if stop.is_set():
            result.status, result.reason = "aborted", "stopped by the user"
    except BaseException as e:
        result.status, result.reason = "aborted", f"{type(e).__name__}: {e}"
        raise
    finally:
        rod.safe_state()
        rod.close()
        writer.close(result.status, result.reason)
    return result


def vars_of(hello: Any) -> dict[str, Any]:
    """HELLO fields as a plain dict for ``session.json``."""
    return {f.name: getattr(hello, f.name) for f in dataclasses.fields(hello)}


def _inter_trial(
    params: RotarodParams,
    sim: SimulatedRod | None,
    stop: threading.Event,
    on_countdown: Callable[[float], None] | None,
    log: Callable[[Event], None],
    trial: int,
    realtime: bool,
) -> None:
    log(Event("iti_start", "host", trial=trial, data={"iti_s": params.iti_min_s}))
    if sim is not None and not realtime:
        sim.advance(params.iti_min_s)  # virtual time: the interval passes at once
    else:
        end = time.monotonic() + params.iti_min_s
        while (left := end - time.monotonic()) > 0:
            if on_countdown is not None:
                on_countdown(left)
            if stop.wait(min(1.0, left)):
                return
    log(Event("iti_end", "host", trial=trial))


def _run_trial(
    rod: RotarodAdapter,
    params: RotarodParams,
    subjects: Sequence[str],
    day: int,
    trial: int,
    inbox: queue.Queue[Message],
    log: Callable[[Event], None],
    stop: threading.Event,
    timeout_s: float,
) -> list[LaneTrial] | None:
    """One ramp: start, collect lane events until every lane fell or the cutoff, then records.

    Returns ``None`` when the session was stopped during the trial.
    """
    log(Event("trial_start", "host", trial=trial, data={"day": day, "type": "rotarod"}))
    rod.start_ramp(params.start_rpm, params.end_rpm, params.ramp_s, params.max_s)
    ramp = RampTracker(params, trial)
    falls: dict[int, list[LaneHit]] = {lane: [] for lane in range(len(subjects))}
    passive: dict[int, list[LaneHit]] = {lane: [] for lane in range(len(subjects))}
    deadline = time.monotonic() + timeout_s
    spr = rod.steps_per_rev

    def take(msg: Message) -> None:
        ev = event_from(msg, trial, spr)
        # speed on record at 10 Hz (every other 20 Hz report; raw/rotarod.bin keeps them all):
        # an event costs ~0.3 ms to write, and a 7-day cohort makes 67 000 reports
        if ev is not None and not (isinstance(msg, RodSpeed) and odd_report(msg, ramp.started)):
            log(ev)
        for inferred in ramp.feed(msg):
            log(inferred)
        if isinstance(msg, LaneFall | PassiveRotation) and msg.lane in falls:
            hit = LaneHit(msg.t_us, msg.rpm_mrpm / 1000, msg.steps / spr)
            (falls if isinstance(msg, LaneFall) else passive)[msg.lane].append(hit)
            done = all(
                falls[lane] or (params.passive_rotation_is_fall and passive[lane]) for lane in falls
            )
            if done and not ramp.stop_sent:
                rod.stop()  # every mouse is down: no need to run the rod to the cutoff
                ramp.stop_sent = True

    while ramp.stopped is None:
        if stop.is_set():
            rod.stop()
            log(Event("trial_aborted", "host", trial=trial))
            return None
        if time.monotonic() > deadline:
            raise RotarodError(f"trial {trial}: no end of ramp within {timeout_s:.0f} s")
        try:
            msg = inbox.get(timeout=0.2)
        except queue.Empty:
            continue
        try:
            take(msg)
        finally:
            inbox.task_done()  # the rod in virtual time waits for this (``Inbox``)
    started, stopped, last_speed = ramp.started, ramp.stopped, ramp.last_speed
    if started is None:
        raise RotarodError(f"trial {trial}: the rod stopped without reporting its start")
    if stopped.reason == STOP_HOST_SILENT:
        # lanes still on the rod were neither timed out nor censored at max_s: no record is true
        at_s = (stopped.t_us - started.t_us) / 1e6
        raise RotarodError(
            f"trial {trial}: the rotarod stopped itself {at_s:.3f} s into the ramp"
            " because it heard nothing from this host for its host timeout"
            " (host stalled or overloaded?); the trial is dropped"
        )
    cutoff = None
    if stopped.reason == STOP_CUTOFF:
        rpm = last_speed.rpm_mrpm / 1000 if last_speed is not None else None
        cutoff = LaneHit(stopped.t_us, rpm, stopped.steps / spr)
    return [
        build_lane_trial(
            params,
            subject_id=subjects[lane],
            day=day,
            trial=trial,
            lane=lane,
            ramp_start_us=started.t_us,
            falls=falls[lane],
            passive_rotations=passive[lane],
            cutoff=cutoff,
        )
        for lane in range(len(subjects))
    ]


def run_cohort(
    rig: RigConfig,
    params: RotarodParams,
    *,
    n_mice: int = 5,
    n_days: int = 7,
    seed: int = 1,
    data_dir: Path | None = None,
    on_day: Callable[[int, RotarodSessionResult], None] | None = None,
) -> CohortMetrics:
    """Simulated cohort: ``n_mice`` seeded mice (one per lane), ``n_days`` daily sessions."""
    lanes = rig.rotarod.lanes if rig.rotarod is not None else 0
    if not 1 <= n_mice <= min(lanes, params.lanes):
        raise ValueError(f"n_mice must be 1..{min(lanes, params.lanes)} (one per lane)")
    mice = make_cohort(n_mice, seed=seed)
    subjects = [m.subject_id for m in mice]
    trials: list[LaneTrial] = []
    for day in range(1, n_days + 1):
        res = run_rotarod_session(
            rig,
            params,
            subjects,
            day=day,
            group=f"cohort{seed}",
            data_dir=data_dir,
            mice=dict(enumerate(mice)),
        )
        trials.extend(res.trials)
        if on_day is not None:
            on_day(day, res)
    return cohort_metrics(trials)

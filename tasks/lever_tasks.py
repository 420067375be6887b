"""The lever task API: tasks A (self-initiated), B (cue-triggered) and C (both, mixed).

A task turns params + history into the next trial's state machine (:meth:`LeverTask.plan`),
turns the board's event trail of a finished trial into a :class:`TrialRecord`
(:meth:`LeverTask.record`), and learns from it (:meth:`LeverTask.finish`: shaping). It never
sleeps and never touches a port; the runner does the I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from rig.core.config import LeverCalibration, SubjectState, ValveCalibration
from rig.core.statemachine import StateMachine
from tasks.machines import (
    ITI_WAIT_STATES,
    TrialOptions,
    cue_triggered_machine,
    self_initiated_machine,
    valve_pulse_ms,
)
from tasks.params import (
    Context,
    CueTriggeredContext,
    CueTriggeredParams,
    MixedParams,
    SelfInitiatedContext,
    SelfInitiatedParams,
    StopParams,
)
from tasks.records import TrialRecord
from tasks.shaping import HoldShaper


class TrailLike(Protocol):
    """One board event as the engines give it (``rig.core.statemachine.TrailEvent``)."""

    @property
    def t_us(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def arg(self) -> int: ...
    @property
    def value(self) -> int: ...


@dataclass
class TrialPlan:
    """The next trial, as decided by the task before it starts.

    Attributes
    ----------
    host_events : list[tuple[str, dict]]
        Events the runner logs when it queues this trial (``trial_planned``, block start/end).
    """

    trial: int
    context: Context
    block: int
    hold_ms: float
    valve_ms: int
    reward_ul: float
    iti_s: float
    machine: StateMachine
    host_events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class LeverTask:
    """Base of the three lever tasks.

    Parameters
    ----------
    params : SelfInitiatedParams | CueTriggeredParams | MixedParams
    lever_cal : LeverCalibration
        mm -> counts for the thresholds.
    valve_cal : ValveCalibration
        µl -> pulse ms for the reward.
    subject : SubjectState, optional
        Shaping values saved by the subject's previous session.
    """

    name: ClassVar[str]

    def __init__(
        self,
        params: Any,
        lever_cal: LeverCalibration,
        valve_cal: ValveCalibration,
        subject: SubjectState | None = None,
    ) -> None:
        self.params = params
        self.lever_cal = lever_cal
        self.valve_cal = valve_cal
        self.history: list[TrialRecord] = []
        self._rng = np.random.default_rng(params.seed)
        saved = subject.shaping if subject is not None else {}
        self.shapers: dict[Context, HoldShaper] = {}
        for ctx in self.contexts():
            cp = self.context_params(ctx)
            prev = saved.get(ctx, {}).get("hold_ms")
            self.shapers[ctx] = HoldShaper(cp.shaping, cp.hold_ms, prev)
        self._last_block: int | None = None

    # ------------------------------------------------------------------ what subclasses define
    def contexts(self) -> list[Context]:
        raise NotImplementedError

    def context_params(self, ctx: Context) -> SelfInitiatedContext | CueTriggeredContext:
        raise NotImplementedError

    def schedule(self, trial: int) -> tuple[Context, int]:
        """(context, block) of ``trial``; called once per trial, in order."""
        return self.contexts()[0], 0

    @property
    def stop(self) -> StopParams:
        return self.params

    # ------------------------------------------------------------------ planning
    def plan(self, trial: int) -> TrialPlan:
        """Build trial ``trial``'s machine from the params and the trials finished so far."""
        ctx, block = self.schedule(trial)
        cp = self.context_params(ctx)
        hold_ms = self.shapers[ctx].hold_ms
        events: list[tuple[str, dict[str, Any]]] = []
        new_block = block != self._last_block
        if new_block and self._last_block is not None:
            events.append(("block_end", {"block": self._last_block}))
        if new_block:
            events.append(("block_start", {"block": block, "context": ctx}))
        marker = bool(
            new_block
            and self._last_block is not None
            and getattr(self.params, "next_file_marker_on_block", False)
        )
        if marker:
            events.append(("next_file_marker", {"block": block}))
        self._last_block = block
        led = (ctx == "cue_triggered") if getattr(self.params, "context_led", False) else None
        if isinstance(cp, CueTriggeredContext):
            iti_s = float(self._rng.uniform(cp.iti_min_s, cp.iti_max_s))
            opt = TrialOptions(iti_s=iti_s, next_file_marker=marker, context_led=led)
            machine = cue_triggered_machine(cp, hold_ms, self.lever_cal, self.valve_cal, opt)
        else:
            iti_s = cp.iti_s
            opt = TrialOptions(iti_s=iti_s, next_file_marker=marker, context_led=led)
            machine = self_initiated_machine(cp, hold_ms, self.lever_cal, self.valve_cal, opt)
        valve_ms = valve_pulse_ms(cp.reward_ul, self.valve_cal)
        events.insert(
            0,
            (
                "trial_planned",
                {"context": ctx, "block": block, "hold_ms": hold_ms, "iti_s": iti_s},
            ),
        )
        return TrialPlan(
            trial=trial,
            context=ctx,
            block=block,
            hold_ms=hold_ms,
            valve_ms=valve_ms,
            reward_ul=self.valve_cal.ms_to_ul(valve_ms),
            iti_s=iti_s,
            machine=machine,
            host_events=events,
        )

    # ------------------------------------------------------------------ results
    def record(self, plan: TrialPlan, trail: Iterable[TrailLike]) -> TrialRecord:
        """The trial's record from its board events (``trial_start`` .. ``trial_end``)."""
        names = [s.name for s in plan.machine.states]
        rec: dict[str, Any] = {"iti_restarts": 0}
        outcome = "aborted"
        for ev in trail:
            n = ev.name
            if n == "trial_start":
                rec["t_start_us"] = ev.t_us
            elif n == "state_enter":
                st = names[ev.arg] if ev.arg < len(names) else ""
                if st in ITI_WAIT_STATES:
                    rec["iti_restarts"] += 1
                elif st in ("ready", "cue"):
                    rec.setdefault("t_ready_us", ev.t_us)
                    if st == "cue":
                        rec.setdefault("t_cue_us", ev.t_us)
                elif st in ("hold", "too_early", "timeout_too_early"):
                    rec.setdefault("t_cross_us", ev.t_us)
            elif n == "lever_down" and "t_cross_us" in rec:
                rec.setdefault("t_release_us", ev.t_us)
            elif n == "valve_on" and ev.arg == 0 and "t_cross_us" in rec:
                rec.setdefault("t_reward_us", ev.t_us)
            elif n == "trial_end":
                rec["t_end_us"] = ev.t_us
                outcome = names[ev.arg] if ev.arg < len(names) else "aborted"
        rewarded = outcome == "reward"
        cross = rec.get("t_cross_us")
        if cross is not None and rec.get("t_cue_us") is not None:
            rec["rt_ms"] = (cross - rec["t_cue_us"]) / 1e3
        if cross is not None:
            until = rec.get("t_release_us", rec.get("t_end_us"))
            if until is not None:
                rec["achieved_hold_ms"] = (until - cross) / 1e3
        return TrialRecord(
            trial=plan.trial,
            context=plan.context,
            block=plan.block,
            outcome=outcome,
            hold_ms=plan.hold_ms,
            reward_ul=plan.reward_ul if rewarded else 0.0,
            valve_ms=float(plan.valve_ms) if rewarded else 0.0,
            **rec,
        )

    def finish(self, record: TrialRecord) -> list[tuple[str, dict[str, Any]]]:
        """Learn from a finished trial; returns ``param_change`` events for the log."""
        self.history.append(record)
        if record.outcome == "aborted":
            return []
        shaper = self.shapers[record.context]
        old = shaper.hold_ms
        new = shaper.update(record.success)
        if new is None:
            return []
        return [
            (
                "param_change",
                {
                    "context": record.context,
                    "param": "hold_ms",
                    "old": old,
                    "new": new,
                    "rule": shaper.params.mode,
                },
            )
        ]

    def stop_reason(self, elapsed_s: float) -> str | None:
        """Why the session should stop now (``max_rewards``, ``max_duration_min``), or None."""
        n_rewards = sum(r.success for r in self.history)
        if n_rewards >= self.stop.max_rewards:
            return f"max_rewards reached ({n_rewards})"
        if elapsed_s >= self.stop.max_duration_min * 60:
            return f"max_duration_min reached ({self.stop.max_duration_min:g} min)"
        return None

    def shaping_state(self) -> dict[str, dict[str, float]]:
        """``SubjectState.shaping`` entries for this task's contexts."""
        return {ctx: {"hold_ms": sh.hold_ms} for ctx, sh in self.shapers.items()}


class SelfInitiatedTask(LeverTask):
    """Task A."""

    name = "self_initiated"
    Params = SelfInitiatedParams

    def contexts(self) -> list[Context]:
        return ["self_initiated"]

    def context_params(self, ctx: Context) -> SelfInitiatedContext | CueTriggeredContext:
        return self.params


class CueTriggeredTask(LeverTask):
    """Task B (and the self-timing variant, ``min_rt_s > 0``)."""

    name = "cue_triggered"
    Params = CueTriggeredParams

    def contexts(self) -> list[Context]:
        return ["cue_triggered"]

    def context_params(self, ctx: Context) -> SelfInitiatedContext | CueTriggeredContext:
        return self.params


class MixedTask(LeverTask):
    """Task C: blocks of ``block_trials`` cycling through ``block_sequence()``, or random
    interleaving with ``p_cued``. Each trial's context is decided before it starts."""

    name = "mixed"
    Params = MixedParams
    params: MixedParams

    def contexts(self) -> list[Context]:
        return ["self_initiated", "cue_triggered"]

    def context_params(self, ctx: Context) -> SelfInitiatedContext | CueTriggeredContext:
        return self.params.self_initiated if ctx == "self_initiated" else self.params.cue_triggered

    def schedule(self, trial: int) -> tuple[Context, int]:
        p = self.params
        if p.schedule == "random":
            ctx: Context = "cue_triggered" if self._rng.random() < p.p_cued else "self_initiated"
            return ctx, 0
        seq: Sequence[Context] = p.block_sequence()
        block = trial // p.block_trials
        return seq[block % len(seq)], block


TASKS: dict[str, type[LeverTask]] = {
    t.name: t for t in (SelfInitiatedTask, CueTriggeredTask, MixedTask)
}


def make_task(
    name: str,
    params: Any,
    lever_cal: LeverCalibration,
    valve_cal: ValveCalibration,
    subject: SubjectState | None = None,
) -> LeverTask:
    """The task class for ``name`` (see ``tasks.params.PARAMS_BY_TASK``) with its params."""
    from tasks.params import TASK_ALIASES

    key = TASK_ALIASES.get(name, name)
    if key not in TASKS:
        raise ValueError(f"unknown lever task {name!r}; expected one of {sorted(TASKS)}")
    cls = TASKS[key]
    expected = cls.Params  # type: ignore[attr-defined]
    if not isinstance(params, expected):
        raise TypeError(
            f"task {key!r} needs {expected.__name__}, got {type(params).__name__} "
            "(build it with tasks.params.make_params)"
        )
    return cls(params, lever_cal, valve_cal, subject)

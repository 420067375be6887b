"""``TrialBook``: a lever session's per-trial bookkeeping, board events -> trial records.

One class for the live runner (``rig.runner.lever``) and the replay (``rig.replay.lever``), so a
replay regenerates trials with exactly the code that recorded them. It is driven in two halves:

- reader-thread half (:meth:`observe_trail`, :meth:`tag_event`, :meth:`observe_time`): keeps the
  trial in progress (board events are tagged with it) and the latest board time;
- consumer half (:meth:`advance`): collects each trial's trail, plans trial ``n+1`` when ``n``
  starts (the caller uploads it), and when ``n`` ends turns its trail into the task's record,
  writes it and the task's host events, and lets the task learn (shaping).

The live runner calls the halves on two threads (trail events cross a queue); the replay calls
both on the reader thread, in stream order. The book never touches a port or a file itself:
it writes through the two callables it is given.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rig.core.events import Event
from rig.core.statemachine import TrailEvent
from tasks.lever_tasks import LeverTask, TrialPlan
from tasks.metrics import running_success

#: ``host_event(name, data, trial, source)``: record a host-side event.
HostEventFn = Callable[[str, dict[str, Any], "int | None", str], None]
#: ``write_trial(row)``: record a finished trial's row (``trials.tsv``).
WriteTrialFn = Callable[[dict[str, Any]], None]


@dataclass
class Step:
    """What one trail event did: a trial planned (to upload) and/or a trial recorded."""

    planned: TrialPlan | None = None
    finished: dict[str, Any] | None = None


class TrialBook:
    """Per-trial bookkeeping of one lever session.

    Parameters
    ----------
    task : LeverTask
        Plans trials, turns trails into records, learns from them.
    host_event : callable
        ``host_event(name, data, trial, source)``.
    write_trial : callable
        ``write_trial(row)`` for each finished trial.
    """

    def __init__(self, task: LeverTask, host_event: HostEventFn, write_trial: WriteTrialFn):
        self.task = task
        self.host_event = host_event
        self.write_trial = write_trial
        self.plans: dict[int, TrialPlan] = {}
        self.trail: list[TrailEvent] = []
        #: trial in progress on the board (reader thread), None between trials
        self.trial: int | None = None
        self.t0_us: int | None = None
        self.t_us = 0
        #: rows of the finished trials, in order
        self.records: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ reader-thread half
    def observe_trail(self, ev: TrailEvent) -> None:
        """A trail event as the board reports it (before :meth:`advance` sees it)."""
        if ev.name == "trial_start":
            self.trial = ev.value
        self.t_us = max(self.t_us, ev.t_us)

    def tag_event(self, ev: Event) -> Event:
        """Tag a board event with the trial in progress (trial_end closes the trial)."""
        ev.trial = self.trial
        if ev.name == "trial_end":
            self.trial = None
        return ev

    def observe_time(self, t_us: int) -> None:
        """Latest board time seen (µs), e.g. of a lever batch."""
        self.t_us = max(self.t_us, int(t_us))

    @property
    def elapsed_s(self) -> float:
        """Board time since trial 0 started (s)."""
        return 0.0 if self.t0_us is None else (self.t_us - self.t0_us) / 1e6

    # ------------------------------------------------------------------ consumer half
    def plan(self, n: int) -> TrialPlan:
        """Plan trial ``n`` and record the task's host events for it; the caller uploads it."""
        plan = self.task.plan(n)
        for name, data in plan.host_events:
            self.host_event(name, data, plan.trial, "task")
        self.plans[n] = plan
        return plan

    def advance(self, ev: TrailEvent, plan_next: bool = True) -> Step:
        """Take the next trail event in board order.

        Parameters
        ----------
        plan_next : bool
            At a trial start, plan the following trial (False once the session is stopping).
        """
        step = Step()
        if ev.name == "trial_start":
            self.trail = [ev]
            if self.t0_us is None:
                self.t0_us = ev.t_us
            if plan_next and ev.value + 1 not in self.plans:
                step.planned = self.plan(ev.value + 1)
            return step
        self.trail.append(ev)
        if ev.name == "trial_end" and ev.value in self.plans:
            step.finished = self._finish(self.plans.pop(ev.value))
        return step

    def stop_reason(self) -> str | None:
        """The task's stop criteria at the current board time (None = go on)."""
        return self.task.stop_reason(self.elapsed_s)

    def progress(self) -> dict[str, Any]:
        """Live figures: trials, rewards, success (all, last 20), µl, board time, hold_ms per
        context, median reaction time of cued trials (ms, None before the first); aborted
        trials are left out."""
        recs = [r for r in self.records if r["outcome"] != "aborted"]
        outs = [r["outcome"] for r in recs]
        n = len(outs)
        rts = [r["rt_ms"] for r in recs if r["rt_ms"] is not None]
        return {
            "trials": n,
            "rewards": outs.count("reward"),
            "success_rate": outs.count("reward") / n if n else 0.0,
            "success_last20": float(running_success(outs)[-1]) if n else 0.0,
            "reward_ul": float(sum(r["reward_ul"] for r in recs)),
            "elapsed_s": self.elapsed_s,
            "hold_ms": {k: v["hold_ms"] for k, v in self.task.shaping_state().items()},
            "rt_ms_median": float(np.median(rts)) if rts else None,
        }

    @staticmethod
    def empty_progress() -> dict[str, Any]:
        """:meth:`progress` before any session started."""
        zeros = ("trials", "rewards", "success_rate", "success_last20", "reward_ul", "elapsed_s")
        return {**dict.fromkeys(zeros, 0), "hold_ms": {}, "rt_ms_median": None}

    def _finish(self, plan: TrialPlan) -> dict[str, Any]:
        rec = self.task.record(plan, self.trail)
        row = rec.row()
        self.write_trial(row)
        self.records.append(row)
        for name, data in self.task.finish(rec):
            self.host_event(name, data, plan.trial, "task")
        return row

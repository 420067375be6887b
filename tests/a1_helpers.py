"""Helpers for the lever-board tests (helper A1): condition waits and a small hold task."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from rig.core.statemachine import LeverThresholds, State, StateMachine

LEVER = LeverThresholds(
    up_counts=552, rest_lo_counts=504, rest_hi_counts=520, hyst_counts=2, over_counts=632
)


def hold_task(hold_ms: int = 50, valve_ms: int = 40) -> StateMachine:
    """ready --lever_up--> hold --tup--> reward (valve pulse) | --lever_down--> fail."""
    return StateMachine(
        lever=LEVER,
        states=[
            State(name="ready", on={"lever_up": "hold"}),
            State(name="hold", tup_ms=hold_ms, on={"lever_down": "fail", "tup": "reward"}),
            State(name="reward", valve="pulse", valve_ms=valve_ms, terminal=True),
            State(name="fail", terminal=True),
        ],
    )


class Collector:
    """Thread-safe list that tests wait on: ``wait(pred, timeout)`` blocks on a Condition."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._cond = threading.Condition()

    def __call__(self, *args: Any) -> None:
        with self._cond:
            self.items.append(args[0] if len(args) == 1 else args)
            self._cond.notify_all()

    def notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def wait(self, pred: Callable[[list[Any]], bool], timeout_s: float = 5.0) -> list[Any]:
        with self._cond:
            ok = self._cond.wait_for(lambda: pred(self.items), timeout_s)
            assert ok, f"condition not met within {timeout_s} s; got {len(self.items)} items"
            return list(self.items)

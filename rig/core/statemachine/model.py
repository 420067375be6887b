"""The per-trial state machine as tasks write it: named states, thresholds in counts.

Tasks build a ``StateMachine`` (thresholds from mm with ``LeverThresholds.from_mm`` and the rig's
``LeverCalibration``), then ``machine.compile()`` gives the ``CompiledMachine`` that the driver
uploads (``LeverBoard.load_trial``) and the reference interpreter runs (``run_machine``).

Example (task A's hold phase)::

    lever = LeverThresholds.from_mm(cal, pull_threshold_mm=1.0, rest_band_mm=0.2,
                                    hysteresis_mm=0.05, max_mm=None)
    m = StateMachine(lever=lever, states=[
        State(name="ready", on={"lever_up": "hold"}),
        State(name="hold", tup_ms=600, on={"lever_down": "fail", "tup": "reward"}),
        State(name="reward", valve="pulse", valve_ms=40, terminal=True),
        State(name="fail", terminal=True),
    ])
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from rig.core.config import LeverCalibration, StrictModel
from rig.core.protocol.codes import INPUT_EVENTS, PRIORITY_RANK, EventCode
from rig.core.statemachine import blob as B

EVENT_BY_NAME: dict[str, EventCode] = {c.event_name: c for c in INPUT_EVENTS}
_VALVE = {"unchanged": B.UNCHANGED, "on": B.ON, "off": B.OFF, "pulse": B.PULSE}
_TONE = {"unchanged": B.UNCHANGED, "on": B.ON, "off": B.OFF, "timed": B.PULSE}


class LeverThresholds(StrictModel):
    """Lever detector thresholds in raw counts (docs/state_machine.md, section 3).

    With ``invert`` the board compares ``-counts``; the thresholds are then negated counts.
    """

    up_counts: int = Field(ge=-32768, le=32767)
    rest_lo_counts: int = Field(ge=-32768, le=32767)
    rest_hi_counts: int = Field(ge=-32768, le=32767)
    hyst_counts: int = Field(0, ge=0, le=32767)
    over_counts: int | None = Field(None, ge=-32768, le=32767)
    invert: bool = False

    @model_validator(mode="after")
    def _band(self) -> LeverThresholds:
        if self.rest_lo_counts + self.hyst_counts > self.rest_hi_counts - self.hyst_counts:
            raise ValueError(
                f"rest band [{self.rest_lo_counts}, {self.rest_hi_counts}] counts is narrower "
                f"than twice the hysteresis ({self.hyst_counts} counts)"
            )
        return self

    @classmethod
    def from_mm(
        cls,
        cal: LeverCalibration,
        pull_threshold_mm: float,
        rest_band_mm: float,
        hysteresis_mm: float,
        max_mm: float | None = None,
    ) -> LeverThresholds:
        """Convert task parameters in mm to counts with the rig's lever calibration.

        ``rest_band_mm`` is the half-width of the rest band around zero. A negative
        ``counts_per_mm`` (sensor mounted backwards) sets ``invert`` and negates the thresholds.
        """
        sign = 1 if cal.counts_per_mm > 0 else -1

        def c(mm: float) -> int:
            return sign * cal.mm_to_counts(mm)

        lo, hi = sorted((c(-rest_band_mm), c(rest_band_mm)))
        return cls(
            up_counts=c(pull_threshold_mm),
            rest_lo_counts=lo,
            rest_hi_counts=hi,
            hyst_counts=round(abs(hysteresis_mm * cal.counts_per_mm)),
            over_counts=None if max_mm is None else c(max_mm),
            invert=sign < 0,
        )


class State(StrictModel):
    """One state: entry outputs, optional timer, transitions ``on={event_name: target_name}``.

    Event names: ``lever_up lever_down lever_rest lever_unrest lever_over lick_on lick_off tup
    gtimer_0..3 soft_0..7``.
    """

    name: str = Field(min_length=1, max_length=64)
    terminal: bool = False
    tup_ms: int | None = Field(None, ge=0, le=2**32 - 1, description="state timer, ms")
    valve: Literal["unchanged", "on", "off", "pulse"] = "unchanged"
    valve_ms: int = Field(0, ge=0, le=10_000, description="pulse width when valve='pulse'")
    tone: Literal["unchanged", "on", "off", "timed"] = "unchanged"
    tone_freq_hz: int = Field(0, ge=0, le=B.TONE_MAX_HZ)
    tone_ms: int = Field(0, ge=0, le=65535)
    ttl_mask: int = Field(0, ge=0, le=255)
    ttl_value: int = Field(0, ge=0, le=255)
    trial_code: bool = False
    gtimer_start: list[int] = Field(default_factory=list)
    gtimer_cancel: list[int] = Field(default_factory=list)
    on: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> State:
        where = f"state {self.name!r}"
        for ev in self.on:
            if ev not in EVENT_BY_NAME:
                raise ValueError(f"{where}: unknown event {ev!r}; known: {sorted(EVENT_BY_NAME)}")
        if self.terminal and (self.on or self.tup_ms is not None):
            raise ValueError(f"{where}: a terminal state has no transitions and no tup_ms")
        if "tup" in self.on and self.tup_ms is None:
            raise ValueError(f"{where}: transition on 'tup' needs tup_ms")
        if self.valve == "pulse" and self.valve_ms < 1:
            raise ValueError(f"{where}: valve='pulse' needs valve_ms >= 1")
        if self.tone in ("on", "timed") and self.tone_freq_hz < B.TONE_MIN_HZ:
            raise ValueError(f"{where}: tone needs tone_freq_hz >= {B.TONE_MIN_HZ}")
        if self.tone == "timed" and self.tone_ms < 1:
            raise ValueError(f"{where}: tone='timed' needs tone_ms >= 1")
        if self.ttl_value & ~self.ttl_mask:
            raise ValueError(f"{where}: ttl_value has bits outside ttl_mask")
        for i in [*self.gtimer_start, *self.gtimer_cancel]:
            if not 0 <= i <= 3:
                raise ValueError(f"{where}: global timer index {i} outside 0..3")
        return self


class StateMachine(StrictModel):
    """A trial's machine. ``states[0]`` is the initial state unless ``initial`` names another."""

    states: list[State] = Field(min_length=1)
    lever: LeverThresholds
    initial: str | None = None
    gtimer_ms: list[int] = Field(default_factory=list, max_length=4)

    @model_validator(mode="after")
    def _check(self) -> StateMachine:
        names = [s.name for s in self.states]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate state names: {sorted(dup)}")
        for s in self.states:
            for ev, tgt in s.on.items():
                if tgt not in names:
                    raise ValueError(f"state {s.name!r}: {ev} -> unknown state {tgt!r}")
            for i in s.gtimer_start:
                if i >= len(self.gtimer_ms):
                    raise ValueError(
                        f"state {s.name!r}: starts global timer {i}, but gtimer_ms "
                        f"has {len(self.gtimer_ms)} entries"
                    )
        if self.initial is not None and self.initial not in names:
            raise ValueError(f"initial state {self.initial!r} is not a state")
        if not any(s.terminal for s in self.states):
            raise ValueError("no terminal state: a trial could never end")
        if any(not 0 <= ms < 2**32 for ms in self.gtimer_ms):
            raise ValueError("gtimer_ms entries must be 0..2**32-1 ms")
        return self

    def compile(self) -> B.CompiledMachine:
        """Index form for the engines; transitions grouped by state, in priority order."""
        index = {s.name: i for i, s in enumerate(self.states)}
        states: list[B.CState] = []
        trans: list[tuple[int, int]] = []
        for s in self.states:
            evs = sorted(s.on, key=lambda e: PRIORITY_RANK[EVENT_BY_NAME[e]])
            first = len(trans)
            trans += [(int(EVENT_BY_NAME[e]), index[s.on[e]]) for e in evs]
            flags = (
                (B.TERMINAL if s.terminal else 0)
                | (B.HAS_TUP if s.tup_ms is not None else 0)
                | (B.TRIAL_CODE if s.trial_code else 0)
            )
            states.append(
                B.CState(
                    flags=flags,
                    valve_mode=_VALVE[s.valve],
                    valve_ms=s.valve_ms if s.valve == "pulse" else 0,
                    tone_mode=_TONE[s.tone],
                    ttl_mask=s.ttl_mask,
                    tone_freq_hz=s.tone_freq_hz if s.tone in ("on", "timed") else 0,
                    tone_ms=s.tone_ms if s.tone == "timed" else 0,
                    ttl_value=s.ttl_value,
                    gt_start=sum(1 << i for i in set(s.gtimer_start)),
                    gt_cancel=sum(1 << i for i in set(s.gtimer_cancel)),
                    tup_ms=s.tup_ms or 0,
                    first_transition=first,
                    n_transitions=len(evs),
                )
            )
        lv = self.lever
        gt = [*self.gtimer_ms, 0, 0, 0, 0][:4]
        return B.CompiledMachine(
            initial=index[self.initial] if self.initial else 0,
            flags=(B.INVERT if lv.invert else 0)
            | (B.OVER_ENABLED if lv.over_counts is not None else 0),
            up_counts=lv.up_counts,
            over_counts=lv.over_counts if lv.over_counts is not None else 0,
            rest_lo_counts=lv.rest_lo_counts,
            rest_hi_counts=lv.rest_hi_counts,
            hyst_counts=lv.hyst_counts,
            gtimer_ms=(gt[0], gt[1], gt[2], gt[3]),
            states=tuple(states),
            transitions=tuple(trans),
            names=tuple(s.name for s in self.states),
        )

    def encode(
        self, max_states: int = 32, max_transitions: int = 128, max_valve_ms: int = 10_000
    ) -> bytes:
        """Compile, encode and check against a board's limits (``BlobError`` if it won't load)."""
        blob = self.compile().encode()
        B.validate_blob(blob, max_states, max_transitions, max_valve_ms)
        return blob

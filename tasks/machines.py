"""Per-trial state machines of the lever tasks (docs/tasks.md has the diagram).

Pure functions: params in mm/s/µl plus the rig's calibrations in, a ``StateMachine`` out
(thresholds in counts, valve pulse in ms). Terminal state names are the trial outcomes.
"""

from __future__ import annotations

from dataclasses import dataclass

from rig.core.config import LeverCalibration, ValveCalibration
from rig.core.statemachine import LeverThresholds, State, StateMachine
from tasks.params import CueTriggeredContext, LeverCommon, SelfInitiatedContext

#: TTL output bits the tasks drive (optional wiring, docs/tasks.md).
NEXT_FILE_TTL_BIT = 0x01
CONTEXT_LED_TTL_BIT = 0x02
#: States that count as "waiting in the ITI/quiet period" and "response phase began".
ITI_WAIT_STATES = ("iti_wait", "quiet_wait")
READY_STATES = ("ready", "cue")


@dataclass(frozen=True)
class TrialOptions:
    """Per-trial extras the task decides (not parameters): the drawn ITI and TTL marks."""

    iti_s: float
    next_file_marker: bool = False
    context_led: bool | None = None  # None: leave the LED as it is


def ms(seconds: float) -> int:
    """Whole ms (the board's tick); at least 0."""
    return max(0, round(seconds * 1e3))


def lever_thresholds(p: LeverCommon, cal: LeverCalibration) -> LeverThresholds:
    return LeverThresholds.from_mm(
        cal,
        pull_threshold_mm=p.pull_threshold_mm,
        rest_band_mm=p.rest_band_mm,
        hysteresis_mm=p.hysteresis_mm,
        max_mm=p.max_mm,
    )


def valve_pulse_ms(reward_ul: float, valve: ValveCalibration) -> int:
    """Pulse width (whole ms, the board's resolution) for ``reward_ul``, capped."""
    return min(round(valve.ul_to_ms(reward_ul)), round(valve.max_valve_ms))


def _iti_states(p: LeverCommon, opt: TrialOptions, quiet_s: float, after_quiet: str) -> list[State]:
    """ITI and quiet period; movement restarts the ITI (or only the quiet period)."""
    mask = value = 0
    if opt.next_file_marker:
        mask |= NEXT_FILE_TTL_BIT
        value |= NEXT_FILE_TTL_BIT
    if opt.context_led is not None:
        mask |= CONTEXT_LED_TTL_BIT
        value |= CONTEXT_LED_TTL_BIT if opt.context_led else 0
    iti_on = {"tup": "quiet"}
    quiet_restart = "iti_wait"
    states = []
    if p.restart_iti_on_move:
        iti_on["lever_unrest"] = "iti_wait"
    else:
        quiet_restart = "quiet_wait"
    if p.trial_code_out:
        # its own state: the ITI is re-entered on every restart and would resend the code
        states.append(State(name="trial_code", trial_code=True, tup_ms=0, on={"tup": "iti"}))
    states.append(
        State(name="iti", tup_ms=ms(opt.iti_s), on=iti_on, ttl_mask=mask, ttl_value=value)
    )
    # iti_wait re-enters iti (restarting its timer) once the lever is back at rest: a separate
    # waiting state, because a self-transition on a level event would re-enter every other tick
    if p.restart_iti_on_move:
        states.append(State(name="iti_wait", on={"lever_rest": "iti"}))
    # the marker is a pulse: it ends when the quiet period starts
    quiet_mask = mask & NEXT_FILE_TTL_BIT
    states.append(
        State(
            name="quiet",
            tup_ms=ms(quiet_s),
            on={"lever_unrest": quiet_restart, "tup": after_quiet},
            ttl_mask=quiet_mask,
            ttl_value=0,
        )
    )
    if not p.restart_iti_on_move:
        states.append(State(name="quiet_wait", on={"lever_rest": "quiet"}))
    return states


def _outcome_states(
    p: LeverCommon, hold_ms: float, valve_ms: int, failures: list[str], cued: bool
) -> list[State]:
    """HOLD, the reward, and each failure (through a timeout state when timeout_s > 0).

    In cued trials the tone stops at the crossing (HOLD's entry) and at a miss or too-early
    pull, in case it outlasts the response window.
    """
    tone_off = "off" if cued else "unchanged"
    hold_on = {"lever_down": _fail_target(p, "early_release"), "tup": "reward_consume"}
    if p.max_mm is not None:
        hold_on["lever_over"] = _fail_target(p, "overshoot")
        failures = [*failures, "overshoot"]
    states = [
        State(name="hold", tup_ms=ms(hold_ms / 1e3), on=hold_on, tone=tone_off),
        State(
            name="reward_consume",
            valve="pulse" if valve_ms > 0 else "unchanged",
            valve_ms=valve_ms,
            tup_ms=ms(p.consume_s),
            on={"tup": "reward"},
        ),
        State(name="reward", terminal=True),
    ]
    for name in ["early_release", *failures]:
        silence = tone_off if name in ("miss", "too_early") else "unchanged"
        if p.timeout_s > 0 and name not in ("miss", "no_pull"):
            states.append(
                State(
                    name=f"timeout_{name}", tup_ms=ms(p.timeout_s), on={"tup": name}, tone=silence
                )
            )
            silence = "unchanged"
        states.append(State(name=name, terminal=True, tone=silence))
    return states


def _fail_target(p: LeverCommon, outcome: str) -> str:
    return f"timeout_{outcome}" if p.timeout_s > 0 else outcome


def self_initiated_machine(
    p: SelfInitiatedContext,
    hold_ms: float,
    cal: LeverCalibration,
    valve: ValveCalibration,
    opt: TrialOptions,
) -> StateMachine:
    """Task A: ITI -> QUIET -> READY (no cue) -> HOLD -> REWARD/FAIL; READY times out as
    ``no_pull`` after ``ready_timeout_s`` so a trial always ends."""
    states = _iti_states(p, opt, p.quiet_s, "ready")
    states.append(
        State(
            name="ready",
            tup_ms=ms(p.ready_timeout_s),
            on={"lever_up": "hold", "tup": "no_pull"},
        )
    )
    states += _outcome_states(p, hold_ms, valve_pulse_ms(p.reward_ul, valve), ["no_pull"], False)
    return StateMachine(states=states, lever=lever_thresholds(p, cal))


def cue_triggered_machine(
    p: CueTriggeredContext,
    hold_ms: float,
    cal: LeverCalibration,
    valve: ValveCalibration,
    opt: TrialOptions,
) -> StateMachine:
    """Task B: ITI -> QUIET -> CUE (timed tone; the response window opens at cue onset) ->
    HOLD (tone off at the crossing) -> REWARD/FAIL, or MISS. With ``min_rt_s > 0`` a crossing
    before ``min_rt_s`` ends as ``too_early`` (the self-timing variant)."""
    states = _iti_states(p, opt, p.quiet_precue_s, "cue")
    freq_hz, tone_ms = round(p.tone_freq_hz), round(p.tone_ms)
    failures = ["miss"]
    if p.min_rt_s > 0:
        failures.append("too_early")
        cue_on = {"lever_up": _fail_target(p, "too_early"), "tup": "window"}
        cue_tup_ms = ms(p.min_rt_s)
    else:
        cue_on = {"lever_up": "hold", "tup": "miss"}
        cue_tup_ms = ms(p.response_window_s)
    states.append(
        State(
            name="cue",
            tup_ms=cue_tup_ms,
            on=cue_on,
            tone="timed",
            tone_freq_hz=freq_hz,
            tone_ms=tone_ms,
        )
    )
    if p.min_rt_s > 0:
        window_ms = ms(p.response_window_s) - ms(p.min_rt_s)
        states.append(
            State(name="window", tup_ms=window_ms, on={"lever_up": "hold", "tup": "miss"})
        )
    states += _outcome_states(p, hold_ms, valve_pulse_ms(p.reward_ul, valve), failures, True)
    return StateMachine(states=states, lever=lever_thresholds(p, cal))

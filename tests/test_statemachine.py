"""State-machine model, blob and reference interpreter, against docs/state_machine.md."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from rig.core.config import LeverCalibration
from rig.core.protocol import ErrorCode, EventCode
from rig.core.statemachine import (
    BlobError,
    Engine,
    LeverThresholds,
    State,
    StateMachine,
    decode_blob,
    run_machine,
    trial_outcomes,
    validate_blob,
)

E = EventCode
REST = 512
# up >= 552, down < 550; rest band [504, 520] (re-enter rest within [506, 518]); over >= 632
LEVER = LeverThresholds(
    up_counts=552, rest_lo_counts=504, rest_hi_counts=520, hyst_counts=2, over_counts=632
)


def hold_task(hold_ms: int = 100, lever: LeverThresholds = LEVER) -> StateMachine:
    return StateMachine(
        lever=lever,
        states=[
            State(name="ready", on={"lever_up": "hold"}),
            State(
                name="hold",
                tup_ms=hold_ms,
                on={"lever_down": "fail", "tup": "reward", "lever_over": "overshoot"},
            ),
            State(name="reward", valve="pulse", valve_ms=40, terminal=True),
            State(name="fail", terminal=True),
            State(name="overshoot", terminal=True),
        ],
    )


def trace(n: int, *segments: tuple[int, int, int]) -> np.ndarray:
    """int16 (n,) at rest, with ``(start, stop, counts)`` plateaus."""
    x = np.full(n, REST, np.int16)
    for a, b, v in segments:
        x[a:b] = v
    return x


def names(trail: list) -> list[tuple[int, str, int, int]]:
    return [(e.t_us // 1000, e.name, e.arg, e.value) for e in trail]


def outcome(m: StateMachine, x: np.ndarray, **kw: object) -> str:
    res = trial_outcomes(run_machine(m, x, **kw), m)  # type: ignore[arg-type]
    assert len(res) >= 1
    return res[0][1]


def test_success_trail_is_exact() -> None:
    m = hold_task(100)
    trail = run_machine(m, trace(300, (50, 200, 560)))
    assert names(trail) == [
        (0, "trial_start", 0, 0),
        (0, "state_enter", 0, 0),
        (50, "lever_up", 0, 560),
        (50, "lever_unrest", 0, 560),
        (50, "state_enter", 1, E.LEVER_UP),
        (150, "tup", 1, 0),
        (150, "state_enter", 2, E.TUP),
        (150, "valve_on", 0, 40),
        (150, "trial_end", 2, 0),
        (190, "valve_off", 0, 0),  # the reward pulse outlives the trial
    ]  # lever detectors run only during trials: no lever_down at 200


def test_early_release_and_release_on_the_tup_tick() -> None:
    m = hold_task(100)
    assert outcome(m, trace(300, (50, 120, 560))) == "fail"
    # released exactly at the tick the hold timer fires: lever events win (priority order)
    assert outcome(m, trace(300, (50, 150, 560))) == "fail"
    assert outcome(m, trace(300, (50, 151, 560))) == "reward"


def test_overshoot_beats_hold() -> None:
    assert outcome(hold_task(100), trace(300, (50, 60, 560), (60, 80, 640))) == "overshoot"


def test_hysteresis_up_down() -> None:
    m = hold_task(100)
    # dips to 550 (= up - hyst) do not release; 549 does
    assert outcome(m, trace(300, (50, 200, 560), (100, 110, 550))) == "reward"
    assert outcome(m, trace(300, (50, 200, 560), (100, 101, 549))) == "fail"
    # 551 never crosses up: the trial never leaves "ready"
    trail = run_machine(m, trace(300, (50, 200, 551)))
    assert not any(e.code == E.LEVER_UP for e in trail)


def test_rest_band_hysteresis_events() -> None:
    m = StateMachine(
        lever=LEVER,
        states=[State(name="a", on={"soft_0": "end"}), State(name="end", terminal=True)],
    )
    # out of band at 521, back at 519 (not yet: needs <= 518), then 518
    x = trace(100, (10, 20, 521), (20, 30, 519), (30, 40, 518))
    ev = [(t, n) for t, n, _, _ in names(run_machine(m, x)) if n.startswith("lever")]
    assert ev == [(10, "lever_unrest"), (30, "lever_rest")]


def test_level_rule_on_entry_waits_for_rest() -> None:
    """A state entered with the lever already out of the rest band sees lever_unrest."""
    m = StateMachine(
        lever=LEVER,
        states=[
            State(name="wait", on={"lever_unrest": "moved", "lever_rest": "quiet"}),
            State(name="moved", terminal=True),
            State(name="quiet", terminal=True),
        ],
    )
    assert outcome(m, trace(50, (0, 50, 530))) == "moved"  # no edge ever happens
    assert outcome(m, trace(50)) == "quiet"
    trail = run_machine(m, trace(50, (0, 50, 530)))
    assert names(trail)[2] == (1, "state_enter", 1, E.LEVER_UNREST)


def test_tup_zero_fires_next_tick_and_gtimers_soft_events() -> None:
    m = StateMachine(
        lever=LEVER,
        gtimer_ms=[30, 0],
        states=[
            State(name="a", tup_ms=0, gtimer_start=[0], on={"tup": "b"}),
            State(name="b", on={"soft_3": "c", "gtimer_0": "timeout"}),
            State(name="c", terminal=True),
            State(name="timeout", terminal=True),
        ],
    )
    trail = run_machine(m, trace(100))
    assert (1, "state_enter", 1, E.TUP) in names(trail)
    assert trial_outcomes(trail, m)[0][1:] == ("timeout", 0, 30_000)
    trail = run_machine(m, trace(100), soft_events=[(20, 3)])
    assert names(trail)[-2:] == [(20, "state_enter", 2, E.SOFT_3), (20, "trial_end", 2, 0)]


def test_back_to_back_trials_have_zero_dead_time() -> None:
    m = hold_task(100)
    x = trace(1000, (50, 200, 560), (400, 420, 560))
    trail = run_machine([m, m, m], x, first_trial_num=7)
    res = trial_outcomes(trail, [m, m, m])
    assert [(r[0], r[1]) for r in res] == [(7, "reward"), (8, "fail"), (9, "fail")]
    assert res[1][2] == res[0][3] and res[2][2] == res[1][3]
    # trial 8 starts at tick 150 with the lever still up: level rule -> hold at tick 151
    assert (151, "state_enter", 1, E.LEVER_UP) in names(trail)


def test_invert_sensor_from_mm() -> None:
    cal = LeverCalibration(counts_per_mm=-40.0, rest_counts=512)
    lv = LeverThresholds.from_mm(cal, 1.0, 0.2, 0.05, max_mm=3.0)
    assert lv.invert and lv.up_counts == -472 and lv.over_counts == -392
    assert (lv.rest_lo_counts, lv.rest_hi_counts, lv.hyst_counts) == (-520, -504, 2)
    # pulling lowers the counts on this sensor
    assert outcome(hold_task(100, lv), trace(300, (50, 200, 470))) == "reward"
    assert outcome(hold_task(100, lv), trace(300, (50, 200, 380))) == "overshoot"


def test_from_mm_uses_calibration() -> None:
    lv = LeverThresholds.from_mm(LeverCalibration(), 1.0, 0.2, 0.05, max_mm=3.0)
    assert (lv.up_counts, lv.rest_lo_counts, lv.rest_hi_counts) == (552, 504, 520)
    assert (lv.hyst_counts, lv.over_counts, lv.invert) == (2, 632, False)


def test_outputs_ttl_tone_trial_code_and_trial_end_cleanup() -> None:
    m = StateMachine(
        lever=LEVER,
        states=[
            State(
                name="cue",
                tone="on",
                tone_freq_hz=10_000,
                valve="on",
                ttl_mask=0b11,
                ttl_value=0b01,
                trial_code=True,
                tup_ms=5,
                on={"tup": "end"},
            ),
            State(name="end", tone="timed", tone_freq_hz=500, tone_ms=3, terminal=True),
        ],
    )
    got = names(run_machine(m, trace(20), first_trial_num=0x1234))
    assert got == [
        (0, "trial_start", 0, 0x1234),
        (0, "state_enter", 0, 0),
        (0, "valve_on", 0, 0),
        (0, "tone_on", 0, 10_000),
        (0, "ttl", 0b01, 0b11),
        (0, "trial_code", 0, 0x234),
        (5, "tup", 0, 0),
        (5, "state_enter", 1, E.TUP),
        (5, "tone_on", 0, 500),
        (5, "valve_off", 0, 0),  # untimed valve closed at trial end
        (5, "trial_end", 1, 0x1234),
        (8, "tone_off", 0, 0),
    ]


def test_untimed_valve_is_cut_at_the_cap_counted_from_opening() -> None:
    """A state's ``valve: on`` has no end of its own, but the board never holds the valve open
    past ``max_valve_ms``: re-entering an ``on`` state does not restart the count; a later
    timed pulse or a fresh opening does."""
    m = StateMachine(
        lever=LEVER,
        states=[
            State(name="open", valve="on", tup_ms=60, on={"tup": "again"}),
            State(name="again", valve="on", tup_ms=200, on={"tup": "pulse"}),
            State(name="pulse", valve="pulse", valve_ms=30, tup_ms=50, on={"tup": "open2"}),
            State(name="open2", valve="on", tup_ms=150, on={"tup": "end"}),
            State(name="end", terminal=True),
        ],
    )
    trail = names(run_machine(m, trace(600), max_valve_ms=100))
    valve = [e for e in trail if e[1].startswith("valve")]
    assert valve == [
        (0, "valve_on", 0, 0),
        (60, "valve_on", 0, 0),  # still open: the cap keeps counting from tick 0
        (100, "valve_off", 0, 0),  # cut at the cap although "again" still says on
        (260, "valve_on", 0, 30),
        (290, "valve_off", 0, 0),
        (310, "valve_on", 0, 0),  # a fresh opening: a fresh cap
        (410, "valve_off", 0, 0),
    ]


def test_valve_pulse_cut_at_cap_and_abort() -> None:
    m = StateMachine(
        lever=LEVER,
        states=[
            State(name="r", valve="pulse", valve_ms=300, on={"soft_0": "end"}),
            State(name="end", terminal=True),
        ],
    )
    trail = names(run_machine(m, trace(400), max_valve_ms=100))
    assert (0, "valve_on", 0, 100) in trail and (100, "valve_off", 0, 0) in trail
    eng = Engine()
    eng.commit(m.compile())
    assert eng.start(1) is None
    eng.tick(0, 0, REST)
    eng.abort()
    ev = names(eng.tick(1, 1000, REST))
    assert ev == [(1, "valve_off", 2, 0), (1, "trial_end", 0xFF, 1)]
    assert not eng.valve_on and not eng.running


def test_engine_command_errors() -> None:
    eng = Engine(max_valve_ms=200)
    assert eng.start(0) == (ErrorCode.NO_MACHINE, 0)
    assert eng.open_valve(201) == (ErrorCode.VALVE_CAP, 200)
    eng.commit(hold_task().compile())
    assert eng.start(0) is None
    assert eng.start(1) == (ErrorCode.BUSY, 0)
    assert eng.commit(hold_task().compile()) == (ErrorCode.BUSY, 0)
    eng.host_timed_out = True
    assert names(eng.tick(0, 0, REST)) == [(0, "start_dropped", 0, 0)]


def test_blob_round_trip_and_size() -> None:
    c = hold_task().compile()
    blob = c.encode()
    assert len(blob) == 32 + 18 * 5 + 2 * 4
    validate_blob(blob, 16, 48, 500)
    assert dataclasses.replace(decode_blob(blob), names=c.names) == c
    # the decoded machine runs identically
    x = trace(300, (50, 200, 560))
    assert run_machine(decode_blob(blob), x) == run_machine(c, x)


def _corrupt(blob: bytes, offset: int, value: int) -> bytes:
    b = bytearray(blob)
    b[offset] = value
    return bytes(b)


@pytest.mark.parametrize(
    ("offset", "value", "err", "where"),
    [
        (0, 2, ErrorCode.MACHINE_INVALID, 0),  # format
        (1, 17, ErrorCode.MACHINE_INVALID, 1),  # too many states for an Uno
        (3, 9, ErrorCode.MACHINE_INVALID, 3),  # initial out of range
        (4, 0x80, ErrorCode.MACHINE_INVALID, 4),  # unknown flag
        (14, 20, ErrorCode.MACHINE_INVALID, 10),  # hysteresis wider than the rest band
        (32 + 18 * 2 + 2, 0xFF, ErrorCode.VALVE_CAP, 32 + 18 * 2 + 2),  # reward pulse 255 > 200
        (32 + 18 * 5 + 2, 0x77, ErrorCode.MACHINE_INVALID, 32 + 18 * 5 + 2),  # bad event code
        (32 + 18 * 5 + 1, 9, ErrorCode.MACHINE_INVALID, 32 + 18 * 5 + 1),  # bad target
        (32 + 18 * 1 + 17, 1, ErrorCode.MACHINE_INVALID, 32 + 18 * 2 + 16),  # gap at state 2
    ],
)
def test_validate_blob_reports_firmware_offsets(
    offset: int, value: int, err: ErrorCode, where: int
) -> None:
    blob = hold_task().compile().encode()
    with pytest.raises(BlobError) as ei:
        validate_blob(_corrupt(blob, offset, value), 16, 48, 200)
    assert (ei.value.error, ei.value.offset) == (err, where)


def test_machine_over_board_limits_is_refused_before_upload() -> None:
    states = [State(name=f"s{i}", on={"soft_0": f"s{i + 1}"}) for i in range(20)]
    m = StateMachine(lever=LEVER, states=[*states, State(name="s20", terminal=True)])
    with pytest.raises(BlobError, match="21 states, the board allows 1..16"):
        m.encode(max_states=16, max_transitions=48)
    assert len(m.encode(max_states=32)) == 32 + 18 * 21 + 2 * 20


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"on": {"lever_sideways": "x"}}, "unknown event 'lever_sideways'"),
        ({"on": {"tup": "x"}}, "needs tup_ms"),
        ({"terminal": True, "tup_ms": 5}, "terminal state has no transitions"),
        ({"valve": "pulse"}, "valve_ms >= 1"),
        ({"ttl_mask": 1, "ttl_value": 2}, "outside ttl_mask"),
    ],
)
def test_state_model_errors_are_clear(kwargs: dict, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        State(name="x", **kwargs)


def test_machine_model_errors_are_clear() -> None:
    with pytest.raises(ValidationError, match="unknown state 'nowhere'"):
        StateMachine(lever=LEVER, states=[State(name="a", on={"tup": "nowhere"}, tup_ms=1)])
    with pytest.raises(ValidationError, match="no terminal state"):
        StateMachine(lever=LEVER, states=[State(name="a")])
    with pytest.raises(ValidationError, match="narrower than twice the hysteresis"):
        LeverThresholds(up_counts=600, rest_lo_counts=500, rest_hi_counts=510, hyst_counts=6)


def test_lick_edges_always_and_level_on_entry() -> None:
    m = StateMachine(
        lever=LEVER,
        states=[State(name="w", on={"lick_on": "licked"}), State(name="licked", terminal=True)],
    )
    lick = np.zeros(50, np.int8)
    lick[0:3] = 1  # licking before and at the start: level rule on tick start+1
    lick[30:] = 1
    trail = names(run_machine(m, trace(50), lick=lick, start_tick=10))
    assert trail[0] == (0, "lick_on", 0, 0)  # edges are reported outside trials too
    assert (10, "trial_start", 0, 10) not in trail
    assert (31, "state_enter", 1, E.LICK_ON) not in trail
    assert (30, "state_enter", 1, E.LICK_ON) in trail


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=500), st.integers(0, 2**16 - 1))
def test_any_blob_is_refused_cleanly_or_runs(blob: bytes, seed: int) -> None:
    """Whatever a host uploads, the board either NAKs it or runs it without failing."""
    try:
        validate_blob(blob, 16, 48, 500)
    except BlobError as e:
        assert e.error in (ErrorCode.MACHINE_INVALID, ErrorCode.VALVE_CAP)
        return
    x = np.random.default_rng(seed).integers(400, 700, 200).astype(np.int16)
    run_machine(decode_blob(blob), x)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_valid_random_blob_mutations(data: st.DataObject) -> None:
    """Single-byte mutations of a real machine: clean refusal, or a machine that runs."""
    blob = bytearray(hold_task().compile().encode())
    i = data.draw(st.integers(0, len(blob) - 1))
    blob[i] = data.draw(st.integers(0, 255))
    try:
        validate_blob(bytes(blob), 16, 48, 500)
    except BlobError:
        return
    run_machine(decode_blob(bytes(blob)), trace(300, (50, 200, 560)))


# ---------------------------------------------------------------- lick edges (section 4a)
def us_trail(trail: list) -> list[tuple[int, str, int, int]]:
    return [(e.t_us, e.name, e.arg, e.value) for e in trail]


def test_a_lick_edge_acts_at_its_own_time_and_durations_count_from_the_next_tick() -> None:
    m = StateMachine(
        lever=LEVER,
        states=[
            State(name="wait", on={"lick_on": "go"}),
            State(name="go", ttl_mask=1, ttl_value=1, valve="pulse", valve_ms=3, tup_ms=5,
                  on={"tup": "done"}),
            State(name="done", terminal=True),
        ],
    )  # fmt: skip
    trail = us_trail(run_machine(m, trace(30), lick_edges=[(10_500, 1)], start_tick=2))
    i = trail.index((10_500, "lick_on", 0, 0))
    # the entry and its outputs at the edge's µs, before tick 11
    assert trail[i + 1 : i + 4] == [
        (10_500, "state_enter", 1, E.LICK_ON),
        (10_500, "valve_on", 0, 3),
        (10_500, "ttl", 1, 1),
    ]
    # k0 = 11: the pulse ends at tick 11 + 3, the state timer fires at tick 11 + 5
    assert (14_000, "valve_off", 0, 0) in trail
    assert (16_000, "tup", 1, 0) in trail
    assert not [e for e in trail if e[0] > 10_500 and e[0] % 1000]


def test_an_edge_in_the_same_us_as_a_tick_comes_after_it() -> None:
    m = StateMachine(
        lever=LEVER,
        states=[
            State(name="a", tup_ms=8, on={"tup": "b", "lick_on": "early"}),
            State(name="b", on={"lick_on": "late"}),
            State(name="early", terminal=True),
            State(name="late", terminal=True),
        ],
    )
    # trial starts at tick 2, so `a`'s timer fires at tick 10 (t = 10 000 µs)
    assert outcome(m, trace(30), lick_edges=[(9_999, 1)], start_tick=2) == "early"
    assert outcome(m, trace(30), lick_edges=[(10_000, 1)], start_tick=2) == "late"


def test_level_rule_on_the_tick_after_an_edge_entry() -> None:
    m = StateMachine(
        lever=LEVER,
        states=[
            State(name="wait", on={"lick_on": "go"}),
            State(name="go", on={"lick_on": "again"}),
            State(name="again", terminal=True),
        ],
    )
    trail = us_trail(run_machine(m, trace(30), lick_edges=[(10_500, 1)], start_tick=2))
    # `go` was entered with the lick already high: the next tick takes lick_on from the level
    assert (11_000, "state_enter", 2, E.LICK_ON) in trail
    # a level that did not change is no edge
    again = us_trail(run_machine(m, trace(30), lick_edges=[(10_500, 1), (10_700, 1)], start_tick=2))
    assert again == trail


def test_a_trial_ended_by_an_edge_is_followed_at_once_by_the_queued_one() -> None:
    m = StateMachine(
        lever=LEVER,
        states=[State(name="wait", on={"lick_on": "licked"}), State(name="licked", terminal=True)],
    )
    trail = us_trail(run_machine([m, m], trace(30), lick_edges=[(10_500, 1)], start_tick=2))
    i = trail.index((10_500, "trial_end", 1, 0))
    assert trail[i + 1 : i + 3] == [(10_500, "trial_start", 0, 1), (10_500, "state_enter", 0, 0)]
    # the new trial's first tick takes the (high) lick level: it ends at tick 11
    assert (11_000, "trial_end", 1, 1) in trail


def test_engine_edge_and_per_tick_levels_agree() -> None:
    """The simulated board's per-tick lick level is an edge at that tick's time, after it."""
    m = hold_task()
    lick = np.zeros(40, np.int8)
    lick[12:20] = 1
    per_tick = run_machine(m, trace(40, (5, 30, 600)), lick=lick, start_tick=1)
    edges = run_machine(
        m, trace(40, (5, 30, 600)), lick_edges=[(12_000, 1), (20_000, 0)], start_tick=1
    )
    assert per_tick == edges

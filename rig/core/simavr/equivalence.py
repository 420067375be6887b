"""One semantics, two engines: run the same lever traces through the firmware (under a stepped
simavr harness) and through the Python reference interpreter, and compare the event trails.

A *case* is a random task-like machine plus a random lever/lick trace at 1 kHz (rest, pulls
held long or released early, overshoots, no pull until timeout, fast repeated pulls, licks).
Lick changes land at a random phase inside their sample period (never within ``EDGE_GUARD_US``
of a tick, where the few µs of interrupt latency could put the board's stamp on the other side
of the tick): the board stamps them in its pin interrupt and acts at once, and the Python engine
gets the same edges at the same board times (docs/state_machine.md 4a).
Each case runs as back-to-back trials of its machine: the host uploads the next machine and
queues its START as soon as a trial starts (the machines begin with an ITI of >= 50 ms, more
than an upload takes), so every swap happens in the tick the previous trial ends. At the end
of the trace the host aborts. The Python engine gets the same inputs at the same ticks and the
same host commands before the same ticks; the trails (docs/state_machine.md 8) must match.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rig.core.protocol import (
    AbortTrial,
    Ack,
    EventMsg,
    Packet,
    SetConfig,
    SetStream,
    StartTrial,
)
from rig.core.protocol.codes import EventCode
from rig.core.simavr.client import BoardError, SteppedBoard
from rig.core.simavr.pins import LEVER_ADC_CHANNEL, lever_pin
from rig.core.simavr.simlog import TimedPacket
from rig.core.statemachine import Engine, LeverThresholds, State, StateMachine, TrailEvent

E = EventCode
REST_COUNTS = 512
SAMPLE_PERIOD_US = 1000
MAX_VALVE_MS = 500
EDGE_GUARD_US = 25
# the board stamps an edge in its interrupt: entry latency varies by a few µs with the other
# interrupts (UART, frame clock) the edge may have to wait for
EDGE_TOL_US = 10


@dataclass(frozen=True)
class Case:
    """One equivalence case: ``lever`` int16 (n,) counts and ``lick`` int8 (n,) per 1 kHz tick;
    a lick change at sample ``j`` happens ``lick_phase_us[j]`` µs (float64) after the tick
    before sample ``j``'s tick."""

    machine: StateMachine
    lever: np.ndarray
    lick: np.ndarray
    kinds: tuple[str, ...]
    lick_phase_us: np.ndarray


def random_machine(rng: np.random.Generator) -> StateMachine:
    """A task-A/B-like machine with random durations, thresholds and options."""
    hyst = int(rng.integers(0, 4))
    band = int(rng.integers(2 * hyst + 4, 20))
    up = REST_COUNTS + int(rng.integers(25, 80))
    over = up + int(rng.integers(30, 120)) if rng.random() < 0.5 else None
    lever = LeverThresholds(
        up_counts=up,
        rest_lo_counts=REST_COUNTS - band,
        rest_hi_counts=REST_COUNTS + band,
        hyst_counts=hyst,
        over_counts=over,
    )
    cue = rng.random() < 0.5
    reward_ms = int(rng.integers(5, 80))
    hold_on: dict[str, str] = {"lever_down": "early", "tup": "reward"}
    if over is not None:
        hold_on["lever_over"] = "overshoot"
    ready_on = {"lever_up": "hold", "gtimer_0": "miss"}
    if rng.random() < 0.3:
        ready_on["lick_on"] = "impulsive"
    states = [
        State(
            name="iti",
            tup_ms=int(rng.integers(50, 400)),
            on={"lever_unrest": "iti_wait", "tup": "ready"},
            trial_code=bool(rng.random() < 0.3),
            ttl_mask=1,
            ttl_value=0,
        ),
        State(name="iti_wait", on={"lever_rest": "iti"}),
        State(
            name="ready",
            on=ready_on,
            gtimer_start=[0],
            tone="timed" if cue else "unchanged",
            tone_freq_hz=1000 if cue else 0,
            tone_ms=int(rng.integers(20, 200)) if cue else 0,
            ttl_mask=1,
            ttl_value=1,
        ),
        State(name="hold", tup_ms=int(rng.integers(0, 600)), on=hold_on),
        State(name="reward", valve="pulse", valve_ms=reward_ms, tup_ms=int(rng.integers(1, 50)),
              on={"tup": "done"}),
        State(name="done", terminal=True, tone="off"),
        State(name="early", terminal=True, valve="off"),
        State(name="overshoot", terminal=True, tone="timed", tone_freq_hz=500, tone_ms=30),
        State(name="miss", terminal=True),
        State(name="impulsive", terminal=True),
    ]  # fmt: skip
    return StateMachine(states=states, lever=lever, gtimer_ms=[int(rng.integers(200, 1500))])


def random_trace(
    rng: np.random.Generator, duration_ms: int
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Random lever (int16 counts) and lick (int8) traces at 1 kHz, and the segment kinds used."""
    x = np.full(duration_ms, float(REST_COUNTS))
    kinds: list[str] = []
    t = int(rng.integers(0, 300))
    while t < duration_ms:
        kind = str(rng.choice(["rest", "hold", "early", "overshoot", "fast", "wiggle"]))
        kinds.append(kind)
        if kind == "rest":
            t += int(rng.integers(100, 1500))
            continue
        n_pulls = int(rng.integers(2, 6)) if kind == "fast" else 1
        for _ in range(n_pulls):
            if t >= duration_ms:
                break
            amp = {
                "hold": rng.uniform(60, 110),
                "early": rng.uniform(40, 110),
                "overshoot": rng.uniform(120, 250),
                "fast": rng.uniform(40, 120),
                "wiggle": rng.uniform(5, 40),
            }[kind]
            rise = int(rng.integers(5, 120))
            hold = {"early": rng.integers(5, 200), "fast": rng.integers(10, 80)}.get(
                kind, rng.integers(100, 900)
            )
            fall = int(rng.integers(5, 150))
            shape = np.concatenate(
                [np.linspace(0, amp, rise), np.full(int(hold), amp), np.linspace(amp, 0, fall)]
            )
            end = min(duration_ms, t + len(shape))
            x[t:end] += shape[: end - t]
            t = end + int(rng.integers(5, 200))
    x += rng.normal(0, rng.uniform(0, 3), duration_ms)
    lever = np.clip(np.round(x), 0, 1023).astype(np.int16)
    lick = np.zeros(duration_ms, dtype=np.int8)
    for _ in range(int(rng.integers(0, 6))):
        a = int(rng.integers(0, duration_ms))
        lick[a : a + int(rng.integers(1, 60))] = 1
    return lever, lick, tuple(kinds)


def random_case(rng: np.random.Generator, duration_ms: int = 2000) -> Case:
    lever, lick, kinds = random_trace(rng, duration_ms)
    machine = random_machine(rng)
    phase = rng.uniform(EDGE_GUARD_US, SAMPLE_PERIOD_US - EDGE_GUARD_US, duration_ms)
    return Case(machine, lever, lick, kinds, phase)


def trail_window(trail: list[TrailEvent]) -> list[TrailEvent]:
    """Events 0x01..0x2D from the first TRIAL_START to the last TRIAL_END (while trials run)."""
    starts = [i for i, e in enumerate(trail) if e.code == E.TRIAL_START]
    ends = [i for i, e in enumerate(trail) if e.code == E.TRIAL_END]
    if not starts or not ends:
        return []
    return [e for e in trail[starts[0] : ends[-1] + 1] if 0x01 <= e.code <= 0x2D]


def _is_event(code: int) -> Callable[[TimedPacket], bool]:
    def pred(p: TimedPacket) -> bool:
        return (
            isinstance(p.item, Packet)
            and isinstance(p.item.msg, EventMsg)
            and p.item.msg.code == code
        )

    return pred


@dataclass
class FirmwareRun:
    """What the firmware did for one case: its trail, the tick the first trial started, the
    ticks at which the host's queued STARTs were accepted, the abort tick, and the lick edges
    it was given as ``(t_us, level)`` in board time (µs, the board's stamp for an edge at that
    instant; the first one is the level before the case)."""

    trail: list[TrailEvent]
    first_trial: int
    first_start_tick: int
    input_start_tick: int
    queued_trials: list[int]
    abort_tick: int | None
    lick_edges: list[tuple[int, int]]


class FirmwareRunner:
    """Runs cases on one stepped harness, one after the other."""

    def __init__(self, board: SteppedBoard, board_name: str = "uno") -> None:
        self.b = board
        self.lick_pin = lever_pin("lick", board_name)
        self.trial_num = 0
        self._offset_us: float | None = None
        self._events_seen = 0

    def setup(self) -> None:
        """Boot, host timeout off (simulated time runs without a host), lever stream off."""
        self.b.boot()
        self.b.command(SetConfig(MAX_VALVE_MS, 0))
        self.b.command(SetStream(0, 1))
        self._offset_us = self._clock_offset()

    def _clock_offset(self, n_edges: int = 5) -> float:
        """Simulated µs minus device µs, from the board's stamps of lick edges: it includes the
        pin interrupt's usual entry latency (~2 µs), so that edge times map to the stamps the
        board gives. Edges at several phases of the tick, keeping the shortest latency (an edge
        that meets a tick is stamped a few µs late). (A heartbeat's stamp against its bytes on the
        wire would be off by their queueing.)"""
        offsets = []
        for i in range(n_edges):
            for level in (1, 0):
                since, n_in = len(self.b.packets), len(self.b.inputs)
                self.b.sim.pin(self.lick_pin, level, self.b.now_us + 1234.5 + 173.0 * i)
                code = E.LICK_ON if level else E.LICK_OFF
                p = self.b.wait_for(_is_event(code), what="lick edge", since=since)
                assert isinstance(p.item, Packet) and isinstance(p.item.msg, EventMsg)
                t_sim = self.b.applied(f"pin {self.lick_pin} ", n_in)[0]
                offsets.append(t_sim - p.item.msg.t_us)
        return max(offsets)

    @property
    def offset_us(self) -> float:
        """Simulated µs minus device µs (after ``setup``)."""
        assert self._offset_us is not None
        return self._offset_us

    def tick_sim_us(self, k: int) -> float:
        """Simulated time of device tick ``k``."""
        assert self._offset_us is not None
        return self._offset_us + (k + 1) * SAMPLE_PERIOD_US

    def _new_events(self) -> list[EventMsg]:
        msgs = [m for _, m in self.b.messages(EventMsg, self._events_seen)]
        self._events_seen = len(self.b.packets)
        return msgs

    def run(self, case: Case) -> FirmwareRun:
        b = self.b
        n = len(case.lever)
        blob = case.machine.encode(16, 48, MAX_VALVE_MS)
        self._events_seen = len(b.packets)
        n_in = len(b.inputs)
        b.sim.adc_counts(LEVER_ADC_CHANNEL, int(case.lever[0]))
        b.sim.pin(self.lick_pin, int(case.lick[0]))
        levels = [int(case.lick[0])]
        b.advance(2000)
        reply = b.upload(blob)
        if not isinstance(reply, Ack):
            raise BoardError(f"machine upload refused: {reply}")
        trail: list[TrailEvent] = []
        since = len(b.packets)
        b.command(StartTrial(self.trial_num))
        first_trial = self.trial_num
        self.trial_num += 1
        start = b.wait_for(
            lambda p: (
                isinstance(p.item, Packet)
                and isinstance(p.item.msg, EventMsg)
                and p.item.msg.code == E.TRIAL_START
            ),
            what="TRIAL_START",
            since=since,
        )
        assert isinstance(start.item, Packet) and isinstance(start.item.msg, EventMsg)
        k0 = start.item.msg.t_us // SAMPLE_PERIOD_US - 1
        # inputs from tick k_in on follow the trace; before, they stay at sample 0
        k_in = int((b.now_us - self.tick_sim_us(0)) // SAMPLE_PERIOD_US) + 2
        for j in range(1, n):
            at = self.tick_sim_us(k_in + j - 1) - SAMPLE_PERIOD_US / 2
            if case.lever[j] != case.lever[j - 1]:
                b.sim.adc_counts(LEVER_ADC_CHANNEL, int(case.lever[j]), at)
            if case.lick[j] != case.lick[j - 1]:
                t_edge = at - SAMPLE_PERIOD_US / 2 + float(case.lick_phase_us[j])
                b.sim.pin(self.lick_pin, int(case.lick[j]), t_edge)
                levels.append(int(case.lick[j]))
        queued: list[int] = []
        t_end = self.tick_sim_us(k_in + n - 2)
        seen_starts = 0
        while b.now_us < t_end:
            for ev in self._new_events():
                trail.append(TrailEvent(ev.t_us, ev.code, ev.arg, ev.value))
            starts = sum(1 for e in trail if e.code == E.TRIAL_START)
            if starts > seen_starts:
                seen_starts = starts
                if b.now_us < t_end - 100_000:
                    reply = b.upload(blob)
                    if isinstance(reply, Ack):
                        b.command(StartTrial(self.trial_num))
                        queued.append(self.trial_num)
                        self.trial_num += 1
                continue
            b.advance(min(20_000.0, t_end - b.now_us))
        b.command(AbortTrial())
        b.advance(3000)
        for ev in self._new_events():
            trail.append(TrailEvent(ev.t_us, ev.code, ev.arg, ev.value))
        # the edges at the times the harness applied them (board time)
        t_applied = b.applied(f"pin {self.lick_pin} ", n_in)
        if len(t_applied) != len(levels):
            raise BoardError(f"{len(levels)} lick edges scheduled, {len(t_applied)} applied")
        edges = [(round(t - self.offset_us), v) for t, v in zip(t_applied, levels, strict=True)]
        aborts = [e for e in trail if e.code == E.TRIAL_END and e.arg == 0xFF]
        abort_tick = aborts[-1].t_us // SAMPLE_PERIOD_US - 1 if aborts else None
        # settle: timed outputs of the last trial finish before the next case
        b.advance(150_000)
        self._new_events()
        return FirmwareRun(trail, first_trial, int(k0), k_in, queued, abort_tick, edges)


def run_python(case: Case, fw: FirmwareRun) -> list[TrailEvent]:
    """The reference interpreter with the inputs and host commands the firmware got."""
    eng = Engine(max_valve_ms=MAX_VALVE_MS)
    m = case.machine.compile()
    n = len(case.lever)
    k0, k_in = fw.first_start_tick, fw.input_start_tick
    end = fw.abort_tick if fw.abort_tick is not None else k_in + n + 600
    queued = list(fw.queued_trials)
    trail: list[TrailEvent] = []

    def step(evs: list[TrailEvent]) -> None:
        trail.extend(evs)
        if any(e.code == E.TRIAL_START for e in evs) and queued:
            eng.commit(m)
            eng.start(queued.pop(0))

    # the level before the case (its edge, if any, came before the first trial's tick)
    eng.edge(fw.lick_edges[0][1], (k0 + 1) * SAMPLE_PERIOD_US - 1)
    edges = fw.lick_edges[1:]
    eng.commit(m)
    eng.start(fw.first_trial)
    ie = 0
    for k in range(k0, end + 1):
        t_k = (k + 1) * SAMPLE_PERIOD_US
        while ie < len(edges) and edges[ie][0] < t_k:
            step(eng.edge(edges[ie][1], edges[ie][0]))
            ie += 1
        j = max(0, min(n - 1, k - k_in + 1))
        if k == fw.abort_tick:
            eng.abort()
        step(eng.tick(k, t_k, int(case.lever[j])))
    return trail


def compare_trails(
    fw: list[TrailEvent],
    py: list[TrailEvent],
    tol_us: int = SAMPLE_PERIOD_US,
    edge_tol_us: int = EDGE_TOL_US,
) -> str | None:
    """None when equal, else a description of the first difference.

    Times must agree within ``edge_tol_us`` for events of an input edge (Python time not on a
    tick) and within ``tol_us`` for the others.
    """
    a, b = trail_window(fw), trail_window(py)
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        tol = tol_us if y.t_us % SAMPLE_PERIOD_US == 0 else edge_tol_us
        if (x.code, x.arg, x.value) != (y.code, y.arg, y.value) or abs(x.t_us - y.t_us) > tol:
            ctx_a = [(e.t_us, E(e.code).name, e.arg, e.value) for e in a[max(0, i - 3) : i + 3]]
            ctx_b = [(e.t_us, E(e.code).name, e.arg, e.value) for e in b[max(0, i - 3) : i + 3]]
            return f"event {i} differs:\n firmware {ctx_a}\n python   {ctx_b}"
    if len(a) != len(b):
        return f"trail lengths differ: firmware {len(a)}, python {len(b)}"
    if not a:
        return "empty trail"
    return None


def edge_time_error_us(fw: list[TrailEvent], py: list[TrailEvent]) -> int:
    """Largest |firmware - Python| time (µs) of the events at input edges (Python time off the
    tick grid), over equal trails; 0 when there are none."""
    pairs = zip(trail_window(fw), trail_window(py), strict=False)
    return max((abs(a.t_us - b.t_us) for a, b in pairs if b.t_us % SAMPLE_PERIOD_US), default=0)

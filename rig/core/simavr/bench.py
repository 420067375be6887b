"""``rig bench board``: the lever board's timing, measured on the real firmware under simavr.

Every figure is judged in simulated time from the harness's cycle-exact log (input changes and
output pin edges carry CPU cycle counts), so host load changes nothing:

- lever crossing -> output pin: the ADC steps across the pull threshold at a random phase of
  the 1 kHz tick; the machine's ``lever_up`` transition raises TTL0.
- digital input -> output pin: the lick input rises at a random phase; ``lick_on`` raises TTL0.
  The board stamps the edge in the pin's interrupt and runs it through the machine at once
  (docs/state_machine.md 4a); an edge that comes while a tick runs waits for that tick.
- frame-clock edge -> FRAME packet: the interrupt path, first byte of the packet on the wire.
- throughput: 1 kHz lever stream + 2 kHz events + 1 kHz frame clock at once, for ``load_s``
  simulated seconds; loss is counted from sequence/index continuity and the board's counters.
- trial-to-trial dead time: back-to-back queued trials, from TRIAL_END to the next TRIAL_START
  (board time) and from the last trial's TTL edge to the next trial's (pin time).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rig.core.protocol import (
    EventMsg,
    FrameEdge,
    Heartbeat,
    LeverBatch,
    Packet,
    SetConfig,
    SetStream,
    SetTtl,
    StartTrial,
)
from rig.core.protocol.codes import EventCode
from rig.core.simavr.build import ensure_built
from rig.core.simavr.client import SteppedBoard
from rig.core.simavr.harness import AvrSim
from rig.core.simavr.pins import LEVER_ADC_CHANNEL, lever_pin
from rig.core.simavr.simlog import TimedPacket
from rig.core.statemachine import LeverThresholds, State, StateMachine

E = EventCode
REST, UP = 512, 600
LEVER = LeverThresholds(up_counts=552, rest_lo_counts=500, rest_hi_counts=524, hyst_counts=2)
SAMPLE_PERIOD_US = 1000
TARGETS_US = {"lever_to_output_p99": SAMPLE_PERIOD_US + 100, "input_to_output_p99": 50}


def _percentiles(x: np.ndarray) -> dict[str, float]:
    return {
        "n": len(x),
        "min_us": float(np.min(x)),
        "p50_us": float(np.percentile(x, 50)),
        "p99_us": float(np.percentile(x, 99)),
        "max_us": float(np.max(x)),
    }


def _first_edge(b: SteppedBoard, pin: str, level: int, after_us: float) -> float | None:
    for e in b.pins:
        if e.pin == pin and e.level == level and e.t_us >= after_us:
            return e.t_us
    return None


def _reaction_latency(b: SteppedBoard, rng: np.random.Generator, reps: int, via: str) -> np.ndarray:
    """Input change -> TTL0 rising edge, µs of simulated time, ``reps`` times."""
    ttl0, lick = lever_pin("ttl0"), lever_pin("lick")
    on = {"lever_up": "go"} if via == "lever" else {"lick_on": "go"}
    m = StateMachine(
        lever=LEVER,
        states=[
            State(name="ready", on=on),
            State(name="go", ttl_mask=1, ttl_value=1, terminal=True),
        ],
    ).encode(16, 48, 500)
    out = []
    for i in range(reps):
        b.upload(m)
        b.command(StartTrial(i))
        b.advance(3000)  # the trial is running (ready) from the next tick on
        t_in = b.now_us + 1000 + rng.uniform(0, SAMPLE_PERIOD_US)
        n_in = len(b.inputs)
        if via == "lever":
            b.sim.adc_counts(LEVER_ADC_CHANNEL, UP, t_in)
        else:
            b.sim.pin(lick, 1, t_in)
        b.advance(4000)
        # from the cycle the harness applied the input at (it can land a little late while the
        # board sleeps)
        t_in = b.applied("adc " if via == "lever" else f"pin {lick} ", n_in)[0]
        t_out = _first_edge(b, ttl0, 1, t_in)
        if t_out is None:
            raise RuntimeError(f"{via} rep {i}: TTL0 never rose")
        out.append(t_out - t_in)
        b.command(SetTtl(1, 0))
        if via == "lever":
            b.sim.adc_counts(LEVER_ADC_CHANNEL, REST)
        else:
            b.sim.pin(lick, 0)
        b.advance(3000)
    return np.array(out)


def _frame_latency(b: SteppedBoard, rng: np.random.Generator, reps: int) -> np.ndarray:
    frame = lever_pin("frame")
    before = len(b.packets)
    t_edges = []
    t = b.now_us + 1000
    for _ in range(reps):
        t += 2000 + rng.uniform(0, SAMPLE_PERIOD_US)
        b.sim.pin(frame, 1, t)
        b.sim.pin(frame, 0, t + 100)
        t_edges.append(t)
    b.advance(t - b.now_us + 5000)
    got = [p.t_first_us for p, _ in b.messages(FrameEdge, before)]
    if len(got) != reps:
        raise RuntimeError(f"frame clock: {reps} edges, {len(got)} FRAME packets")
    return np.array(got) - np.array(t_edges)


def _throughput(b: SteppedBoard, load_s: float) -> dict[str, Any]:
    """1 kHz lever stream + 2 kHz events + 1 kHz frame clock, zero loss judged by continuity."""
    lever_state = State(name="run", on={})
    m = StateMachine(lever=LEVER, states=[lever_state, State(name="never", terminal=True)]).encode(
        16, 48, 500
    )
    b.command(SetStream(1, 10))
    b.upload(m)
    b.command(StartTrial(9999))
    b.advance(3000)
    before = len(b.packets)
    bytes0 = b.stream.decoder.stats.bytes
    hb0 = [m for _, m in b.messages(Heartbeat)][-1]
    frame = lever_pin("frame")
    t0 = b.now_us + 1000
    n_ms = int(load_s * 1000)
    # the lever alternates across the pull threshold and the rest band every tick: a lever_up or
    # lever_down plus a lever_rest or lever_unrest per tick = 2 kHz of EVENT packets
    for i in range(n_ms):
        t = t0 + i * 1000
        b.sim.adc_counts(LEVER_ADC_CHANNEL, UP if i % 2 == 0 else REST, t)
        b.sim.pin(frame, 1, t + 250)
        b.sim.pin(frame, 0, t + 350)
    t_end = t0 + n_ms * 1000
    while b.now_us < t_end + 20_000:
        b.advance(50_000)
    pk = b.packets[before:]
    sim_s = (pk[-1].t_last_us - pk[0].t_first_us) / 1e6
    ev = [m for _, m in b.messages(EventMsg, before)]
    lever_ev = [e for e in ev if e.code in (E.LEVER_UP, E.LEVER_DOWN, E.LEVER_REST, E.LEVER_UNREST)]
    frames = [m for _, m in b.messages(FrameEdge, before)]
    batches = [m for _, m in b.messages(LeverBatch, before)]
    idx = np.concatenate([m.first_index + np.arange(len(m.samples)) for m in batches])
    hb1 = [m for _, m in b.messages(Heartbeat, before)][-1]
    seqs = np.array([p.item.seq for p in pk if hasattr(p.item, "seq")])
    seq_gaps = int(np.sum(((np.diff(seqs) - 1) % 256) != 0))
    expected_lever_events = 2 * (n_ms - 1)
    return {
        "load_s": load_s,
        "lever_events": len(lever_ev),
        "lever_events_expected_min": expected_lever_events,
        "event_rate_hz": len(lever_ev) / load_s,
        "frames": len(frames),
        "frames_expected": n_ms,
        "frame_counts_continuous": bool(
            np.all(np.diff([f.count for f in frames]) == 1) if frames else False
        ),
        "lever_samples": len(idx),
        "lever_index_gaps": int(np.sum(np.diff(idx) != 1)),
        "packet_seq_gaps": seq_gaps,
        "tx_dropped": hb1.tx_dropped - hb0.tx_dropped,
        "tick_overruns": hb1.tick_overruns - hb0.tick_overruns,
        "link_kbytes_per_s": (b.stream.decoder.stats.bytes - bytes0) / sim_s / 1000,
        "zero_loss": bool(
            len(lever_ev) >= expected_lever_events
            and len(frames) == n_ms
            and np.all(np.diff(idx) == 1)
            and seq_gaps == 0
            and hb1.tx_dropped == hb0.tx_dropped
            and hb1.tick_overruns == hb0.tick_overruns
        ),
    }


def _is_trial_start(trial_num: int) -> Callable[[TimedPacket], bool]:
    def pred(p: TimedPacket) -> bool:
        m = p.item.msg if isinstance(p.item, Packet) else None
        return isinstance(m, EventMsg) and m.code == E.TRIAL_START and m.value == trial_num

    return pred


def _dead_time(b: SteppedBoard, trials: int) -> dict[str, Any]:
    ttl0 = lever_pin("ttl0")
    m = StateMachine(
        lever=LEVER,
        states=[
            State(name="a", tup_ms=20, ttl_mask=1, ttl_value=1, on={"tup": "end"}),
            State(name="end", ttl_mask=1, ttl_value=0, terminal=True),
        ],
    ).encode(16, 48, 500)
    b.command(SetStream(0, 1))
    before = len(b.packets)
    t_start = b.now_us
    for i in range(trials):
        b.upload(m)
        since = len(b.packets)
        b.command(StartTrial(50_000 + i))
        # queue the next one only once this one has started (one pending machine at a time)
        b.wait_for(_is_trial_start(50_000 + i), what="TRIAL_START", since=since)
    b.advance(40_000)
    ev = [e for _, e in b.messages(EventMsg, before)]
    ends = [e.t_us for e in ev if e.code == E.TRIAL_END]
    starts = [e.t_us for e in ev if e.code == E.TRIAL_START]
    board_gaps = np.array(starts[1:]) - np.array(ends[: len(starts) - 1])
    edges = [e for e in b.pins if e.pin == ttl0 and e.t_us >= t_start]
    falls = [e.t_us for e in edges if e.level == 0]
    rises = [e.t_us for e in edges if e.level == 1]
    pin_gaps = np.array(rises[1:]) - np.array(falls[: len(rises) - 1])
    return {
        "trials": len(starts),
        "board_dead_time_us_max": float(board_gaps.max()) if len(board_gaps) else None,
        "pin_dead_time_us": _percentiles(pin_gaps) if len(pin_gaps) else None,
    }


def run_board_bench(
    reps: int = 200,
    load_s: float = 2.0,
    trials: int = 20,
    seed: int = 1,
    log_dir: Path | None = None,
) -> dict[str, Any]:
    """Run every measurement on one simulated Uno; return the figures (JSON-ready)."""
    import tempfile

    elf, harness = ensure_built("lever_board", "uno")
    rng = np.random.default_rng(seed)
    watch = tuple(lever_pin(p) for p in ("ttl0", "valve"))
    with tempfile.TemporaryDirectory() as tmp:
        log = (log_dir or Path(tmp)) / "bench_board.log"
        with AvrSim(elf, log, stepped=True, pty=False, watch=watch, harness=harness) as sim:
            b = SteppedBoard(sim)
            hello = b.boot()
            b.command(SetConfig(500, 0))
            b.command(SetStream(0, 1))
            b.sim.adc_counts(LEVER_ADC_CHANNEL, REST)
            lever = _reaction_latency(b, rng, reps, "lever")
            digital = _reaction_latency(b, rng, reps, "lick")
            frame = _frame_latency(b, rng, reps)
            dead = _dead_time(b, trials)
            load = _throughput(b, load_s)
    lv, dg = _percentiles(lever), _percentiles(digital)
    return {
        "device": f"{hello.name} {hello.fw_version} on simulated ATmega328P (simavr, 16 MHz)",
        "sample_period_us": SAMPLE_PERIOD_US,
        "lever_to_output": lv | {"target_p99_us": TARGETS_US["lever_to_output_p99"]},
        "input_to_output": dg | {"target_p99_us": TARGETS_US["input_to_output_p99"]},
        "frame_edge_to_packet": _percentiles(frame),
        "throughput": load,
        "dead_time": dead,
    }


def run_equivalence(n_traces: int, seed: int = 2026, duration_ms: int = 2000) -> dict[str, Any]:
    """``n_traces`` random traces through firmware and Python interpreter; count mismatches."""
    import tempfile

    from rig.core.simavr.equivalence import (
        FirmwareRunner,
        compare_trails,
        edge_time_error_us,
        random_case,
        run_python,
        trail_window,
    )

    elf, harness = ensure_built("lever_board", "uno")
    rng = np.random.default_rng(seed)
    mismatches: list[str] = []
    n_events = n_trials = n_edges = edge_err_us = 0
    with (
        tempfile.TemporaryDirectory() as tmp,
        AvrSim(elf, Path(tmp) / "eq.log", stepped=True, pty=False, harness=harness) as sim,
    ):
        runner = FirmwareRunner(SteppedBoard(sim))
        runner.setup()
        for i in range(n_traces):
            case = random_case(rng, duration_ms)
            fw = runner.run(case)
            py = run_python(case, fw)
            diff = compare_trails(fw.trail, py)
            if diff is not None:
                mismatches.append(f"trace {i}: {diff}")
            else:
                edge_err_us = max(edge_err_us, edge_time_error_us(fw.trail, py))
            trail = trail_window(fw.trail)
            n_edges += sum(1 for e in trail if e.code in (E.LICK_ON, E.LICK_OFF))
            n_events += len(trail)
            n_trials += sum(1 for e in trail if e.code == E.TRIAL_START)
    return {
        "traces": n_traces,
        "trials": n_trials,
        "events": n_events,
        "lick_edges": n_edges,
        "lick_edge_time_error_us_max": edge_err_us,
        "mismatches": len(mismatches),
        "first_mismatches": mismatches[:3],
    }

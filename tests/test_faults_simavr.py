"""The real firmware under simavr when the host goes away (issue 9, items 1 and 3).

- The host vanishes (cable pulled, process dead) right after commanding the valve, or in the
  middle of a trial with a start queued: the valve closes at ``max_valve_ms`` on the board's own
  clock, host-silence is detected and no new trial starts.
- The host is frozen (SIGSTOP) for 2 s during a trial: trial outcomes and valve pulse widths,
  read from the valve pin's edges in the cycle-exact log, are identical to a run without the
  stall, and every event from the stall reaches the host afterwards (none lost).

Pin times are simulated (cycle-exact), so the widths are exact whatever the CI load.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from a1_helpers import Collector
from simavr_helpers import board, events, firmware_uno, last_heartbeat

from rig.core.protocol import (
    Ack,
    EventCode,
    EventMsg,
    Nak,
    OpenValve,
    Packet,
    SetConfig,
    StartTrial,
)
from rig.core.simavr import AvrSim, LogReader, PacketStream, SteppedBoard, lever_pin
from rig.core.statemachine import LeverThresholds, State, StateMachine

__all__ = ["board", "firmware_uno"]  # fixtures used by name

pytestmark = [pytest.mark.faults, pytest.mark.simavr]

VALVE = lever_pin("valve")
LEVER = LeverThresholds(up_counts=552, rest_lo_counts=504, rest_hi_counts=520, hyst_counts=2)
CAP_MS = 500


def valve_intervals_us(pins: list, t_end_us: float) -> list[tuple[float, float]]:
    """(on, off) times of the valve pin, µs of simulated time; a pulse still open ends at
    ``t_end_us``."""
    out, t_on = [], None
    for e in pins:
        if e.pin != VALVE:
            continue
        if e.level and t_on is None:
            t_on = e.t_us
        elif not e.level and t_on is not None:
            out.append((t_on, e.t_us))
            t_on = None
    if t_on is not None:
        out.append((t_on, t_end_us))
    return out


def test_host_gone_after_a_valve_command_the_board_closes_it_at_the_cap(
    board: SteppedBoard,
) -> None:
    b = board
    b.command(SetConfig(CAP_MS, 300))
    assert isinstance(b.request(OpenValve(CAP_MS + 1)), Nak)  # over the cap: refused outright
    b.command(OpenValve(CAP_MS))
    # queue a trial behind a long one, then the host vanishes for 2 s
    long_trial = StateMachine(
        lever=LEVER,
        states=[
            State(name="wait", tup_ms=600, on={"tup": "end"}),
            State(name="end", terminal=True),
        ],
    ).encode(16, 48, CAP_MS)
    assert isinstance(b.upload(long_trial), Ack)
    b.command(StartTrial(1))
    b.advance(5_000)
    assert isinstance(b.upload(long_trial), Ack)
    b.command(StartTrial(2))  # queued behind trial 1
    t_silent = b.now_us
    b.advance(2_000_000)
    widths = [off - on for on, off in valve_intervals_us(b.pins, b.now_us)]
    print(f"\nvalve pulses after the host vanished: {[round(w) for w in widths]} µs")
    assert len(widths) == 1 and abs(widths[0] - CAP_MS * 1000) <= 50
    trail = events(b)
    codes = [e.code for e in trail]
    timeout = next(e for e in trail if e.code == EventCode.HOST_TIMEOUT)
    assert EventCode.START_DROPPED in codes
    assert [e.value for e in trail if e.code == EventCode.TRIAL_START] == [1]
    assert timeout.t_us - t_silent <= 400_000  # 300 ms timeout + one tick, in board time
    assert last_heartbeat(b).status & 8  # the board says "host silent"


def test_untimed_valve_state_is_cut_at_the_cap_when_the_host_is_gone(
    board: SteppedBoard,
) -> None:
    b = board
    b.command(SetConfig(CAP_MS, 300))
    flush = StateMachine(
        lever=LEVER,
        states=[
            State(name="open", valve="on", on={"lever_up": "done"}),  # the lever never moves
            State(name="done", terminal=True),
        ],
    ).encode(16, 48, CAP_MS)
    assert isinstance(b.upload(flush), Ack)
    b.command(StartTrial(1))
    b.advance(3_000_000)  # the host is gone for 3 s
    widths = [off - on for on, off in valve_intervals_us(b.pins, b.now_us)]
    print(f"\nuntimed valve state, host gone 3 s: valve open {[round(w) for w in widths]} µs")
    assert widths and max(widths) <= CAP_MS * 1000 + 1000


# ---------------------------------------------------------------------------- host stall
HOST = textwrap.dedent(
    """
    import json, sys, threading, time
    from rig.core.config import LeverBoardSimavr
    from rig.core.devices import LeverBoard
    from rig.core.statemachine import LeverThresholds, State, StateMachine
    from rig.core.transport import PtyTransport

    pty, out, n_trials = sys.argv[1], sys.argv[2], int(sys.argv[3])
    LEVER = LeverThresholds(up_counts=552, rest_lo_counts=504, rest_hi_counts=520, hyst_counts=2)

    def machine(n):
        # an ITI longer than the stall: the next trial, queued at this one's start, is always
        # on the board before this one ends, so the board's schedule never waits for the host
        return StateMachine(lever=LEVER, states=[
            State(name="iti", tup_ms=2200, on={"tup": "ready"}),
            State(name="ready", on={"lever_up": "hold"}),
            State(name="hold", tup_ms=150, on={"lever_down": "fail", "tup": "reward"}),
            State(name="reward", valve="pulse", valve_ms=20 + 10 * (n % 4), terminal=True),
            State(name="fail", terminal=True),
        ])

    trail, done = [], threading.Event()
    def on_trail(ev):
        trail.append((ev.t_us, int(ev.code), ev.arg, ev.value))
        if ev.code == 0x20:  # TRIAL_START: say so, queue the next one
            print(f"trial {ev.value}", flush=True)
            if ev.value + 1 < n_trials:
                todo.append(ev.value + 1)
                go.set()
        if ev.code == 0x21 and ev.value == n_trials - 1:
            done.set()
    todo, go = [], threading.Event()
    cfg = LeverBoardSimavr(driver="simavr", heartbeat_timeout_ms=3000)
    lb = LeverBoard(PtyTransport(pty), cfg, on_trail=on_trail, command_timeout_s=2.0)
    lb.connect(timeout_s=10)
    lb.load_trial(machine(0)); lb.start_trial(0)
    deadline = time.monotonic() + 90
    while not done.wait(0.01):
        if time.monotonic() > deadline:
            sys.exit(f"host: trial {n_trials - 1} did not end within 90 s; trail {trail}")
        if go.is_set():
            go.clear()
            while todo:
                n = todo.pop(0); lb.load_trial(machine(n)); lb.start_trial(n)
    h = lb.health()
    lb.close()
    json.dump({"trail": trail, "lost": h["lost_packets"], "crc": h["crc_errors"],
               "rx": h["host_rx"]}, open(out, "w"))
    """
)
N_TRIALS = 4
PULL_PERIOD_US = 2_800_000
FIRST_PULL_US = 2_500_000  # after trial 0's 2.2 s ITI


def _schedule_pulls(sim: AvrSim, t0_us: float) -> None:
    """Pulls in simulated time from ``t0_us`` (just after trial 0 started): 400 ms (rewarded)
    and 80 ms (early release) alternating, one per trial's ready window."""
    for k in range(N_TRIALS):
        t = t0_us + FIRST_PULL_US + k * PULL_PERIOD_US
        hold_us = 400_000 if k % 2 == 0 else 80_000
        sim.adc_counts(0, 600, t)
        sim.adc_counts(0, 512, t + hold_us)


def _run_with_host(firmware: tuple[Path, Path], tmp: Path, stall_s: float) -> dict:
    """One realtime simavr run with the host in a subprocess; SIGSTOP it for ``stall_s`` of
    simulated time as soon as trial 1 starts. Returns the host's view, the board's trail from
    the log, the valve intervals and the stall length in simulated time."""
    elf, harness = firmware
    tmp.mkdir()
    sim = AvrSim(
        elf, tmp / "sim.log", stepped=False, realtime=True, pty=True, watch=(VALVE,),
        harness=harness,
    )  # fmt: skip
    stall_sim_us = 0.0
    with sim:
        out = tmp / "host.json"
        host = subprocess.Popen(
            [sys.executable, "-c", HOST, str(sim.pty_path), str(out), str(N_TRIALS)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert host.stdout is not None
            sim.adc_counts(0, 512)  # lever at rest
            for line in host.stdout:
                if line.strip() == "trial 0":
                    # the lever script starts from trial 0, whenever the host got there
                    _schedule_pulls(sim, sim.sync() / sim.freq_hz * 1e6)
                if stall_s and line.strip() == "trial 1":
                    host.send_signal(signal.SIGSTOP)  # frozen inside trial 1
                    t0 = sim.sync() / sim.freq_hz * 1e6
                    stop = threading.Event()
                    while sim.sync() / sim.freq_hz * 1e6 < t0 + stall_s * 1e6:
                        stop.wait(0.05)  # poll the simulator's clock; the board keeps running
                    stall_sim_us = sim.sync() / sim.freq_hz * 1e6 - t0
                    host.send_signal(signal.SIGCONT)
            host.wait(60)
        finally:
            if host.poll() is None:
                host.send_signal(signal.SIGCONT)
                host.kill()
        assert host.returncode == 0
        t_end = sim.sync() / sim.freq_hz * 1e6
    chunk = LogReader(tmp / "sim.log").read_new()
    board_trail = [
        (p.item.msg.t_us, int(p.item.msg.code), p.item.msg.arg, p.item.msg.value)
        for p in PacketStream().feed(chunk.tx)
        if isinstance(p.item, Packet) and isinstance(p.item.msg, EventMsg)
    ]
    return {
        "host": json.loads(out.read_text()),
        "board": board_trail,
        "valve": valve_intervals_us(chunk.pins, t_end),
        "stall_sim_us": stall_sim_us,
    }


def _outcomes(trail: list) -> list[tuple[int, int]]:
    """(trial, terminal state index) of every TRIAL_END."""
    return [(v, a) for _, c, a, v in trail if c == EventCode.TRIAL_END]


def _board_valve_widths_us(trail: list) -> list[int]:
    """Valve pulse widths from the board's own VALVE_ON/VALVE_OFF stamps (tick-exact), µs."""
    on = [t for t, c, _, _ in trail if c == EventCode.VALVE_ON]
    off = [t for t, c, _, _ in trail if c == EventCode.VALVE_OFF]
    return [b - a for a, b in zip(on, off, strict=True)]


def test_host_frozen_2_s_mid_trial_changes_nothing_on_the_board(
    firmware_uno: tuple[Path, Path], tmp_path: Path
) -> None:
    runs: dict[str, dict] = {}
    errors: list[BaseException] = []

    def run(name: str, stall_s: float) -> None:
        try:
            runs[name] = _run_with_host(firmware_uno, tmp_path / name, stall_s)
        except BaseException as e:  # re-raised below, in the test's thread
            errors.append(e)

    # both runs at once: each is simulated-time exact, so they need not take turns
    threads = [
        threading.Thread(target=run, args=("calm", 0.0)),
        threading.Thread(target=run, args=("stalled", 2.0)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(150)
    if errors:
        raise errors[0]
    assert set(runs) == {"calm", "stalled"}, f"runs still going after 150 s: {set(runs)}"
    calm, stalled = runs["calm"], runs["stalled"]
    widths = {
        k: [round(off - on) for on, off in r["valve"]]
        for k, r in (("calm", calm), ("stalled", stalled))
    }
    print(
        f"\nhost frozen {stalled['stall_sim_us'] / 1e6:.2f} s (simulated) in trial 1: "
        f"outcomes calm {_outcomes(calm['board'])}, stalled {_outcomes(stalled['board'])}; "
        f"valve widths (µs, pin edges) calm {widths['calm']}, stalled {widths['stalled']}; "
        f"host lost {stalled['host']['lost']} packets"
    )
    assert stalled["stall_sim_us"] >= 2.0e6
    # rewarded, early release, rewarded, early release: one pull per trial
    assert [o for _, o in _outcomes(calm["board"])] == [3, 4, 3, 4]
    assert _outcomes(stalled["board"]) == _outcomes(calm["board"])
    # The board times both pulses to the same tick: its own VALVE_ON/VALVE_OFF stamps are
    # identical. The pin edges may each move by an interrupt latency (the tick runs with
    # interrupts on, and UART RX/UDRE interrupts land wherever the host's bytes arrive in
    # simulated time, which the stall moves). Widths seen over 8 runs: 19965..19971 and
    # 39942..39977 us; one 29 us difference failed the old 20 us bound. The pins are judged
    # at 120 us (the lick path's documented worst case, 58 us, on each edge), far below a tick.
    assert _board_valve_widths_us(stalled["board"]) == _board_valve_widths_us(calm["board"])
    assert len(widths["stalled"]) == len(widths["calm"]) == N_TRIALS // 2
    for w_calm, w_stalled in zip(widths["calm"], widths["stalled"], strict=True):
        assert abs(w_stalled - w_calm) <= 120, widths
    # every event of the stall reached the host afterwards: its trail is the board's, whole
    for r in (calm, stalled):
        got = [tuple(e) for e in r["host"]["trail"] if e[1] <= EventCode.TRIAL_CODE]
        want = [e for e in r["board"] if e[1] <= EventCode.TRIAL_CODE]
        assert got == want
        # (opening the pty flushes its input queue and may cut the board's frame in flight: the
        # driver counts that first frame in partial_at_start, not as a CRC error)
        assert r["host"]["lost"] == 0 and r["host"]["crc"] == 0, r["host"]["rx"]


def test_driver_uploads_multi_chunk_machines_to_the_firmware_without_overrun(
    firmware_uno: tuple[Path, Path], tmp_path: Path
) -> None:
    """Regression: the driver used to pipeline every chunk of an upload; the firmware holds two
    received frames, so any machine over one chunk was lost (board cobs_errors/lost counted)."""
    from rig.core.config import LeverBoardSimavr
    from rig.core.devices import LeverBoard
    from rig.core.signals import RigSignals
    from rig.core.transport import PtyTransport

    elf, harness = firmware_uno
    states = [State(name=f"s{i}", tup_ms=10, on={"tup": f"s{i + 1}"}) for i in range(11)]
    m = StateMachine(lever=LEVER, states=[*states, State(name="s11", terminal=True)])
    assert len(m.compile().encode()) > 2 * 120  # three chunks
    with AvrSim(elf, tmp_path / "s.log", realtime=True, pty=True, harness=harness) as sim:
        signals = RigSignals()
        beats = Collector()
        signals.health.connect(beats)
        lb = LeverBoard(
            PtyTransport(str(sim.pty_path)), LeverBoardSimavr(driver="simavr"), signals=signals
        )
        lb.connect(timeout_s=10)
        try:
            for _ in range(3):
                lb.load_trial(m)
            lb.command(StartTrial(0))
            n_beats = len(beats.items)
            beats.wait(lambda it: len(it) >= n_beats + 2, 5.0)  # a heartbeat after the uploads
        finally:
            lb.close()
    stats = lb.board_stats
    print(f"\nthree uploads of {len(m.compile().encode())} B: board counters {stats}")
    assert stats["cobs_errors"] == 0 and stats["lost"] == 0

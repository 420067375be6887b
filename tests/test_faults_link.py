"""Faults on the serial link (issue 9, items 1 and 2) against the simulated lever board.

- 1 % byte damage (0.5 % dropped, 0.5 % bit-flipped) for 10 simulated minutes with trials
  running: every packet the host accepts is byte-identical to what the board sent, every
  missing packet is counted as lost, and the real driver survives it.
- The cable pulled mid-trial: the driver reports it, reconnects when the port comes back, logs
  the outage and the lever samples it missed, and the next trial runs; the board closes the
  valve at its cap whatever the host does.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from a1_helpers import LEVER, Collector, hold_task
from fault_helpers import PeriodicPuller, match_to_clean, wait_until

from rig.core.config import LeverBoardSim, ValveCalibration, ValvePoint
from rig.core.devices import LeverBoard
from rig.core.protocol import (
    BOARD_TO_HOST,
    EventCode,
    EventMsg,
    Packet,
    PacketEncoder,
    StreamDecoder,
    crc16,
)
from rig.core.protocol import packets as P
from rig.core.signals import RigSignals
from rig.core.sim import ConstantLever, FrameClock, SimBoardLink, SimFaults, SimLeverBoard
from rig.core.statemachine import State, StateMachine

pytestmark = pytest.mark.faults

CONFIG = LeverBoardSim(
    driver="sim",
    valve=ValveCalibration(
        points=[ValvePoint(duration_ms=20, volume_ul=2), ValvePoint(duration_ms=50, volume_ul=4)],
        max_valve_ms=300,
    ),
)


class RecordingFaults(SimFaults):
    """The real fault knob, keeping a copy of the undamaged bytes as ground truth."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.clean = bytearray()

    def apply(self, data: bytes) -> bytes:
        self.clean += data
        return super().apply(data)


def _host_send(board: SimLeverBoard, enc: PacketEncoder, msg: P.Message) -> None:
    board.receive(enc.encode(msg)[1])


def test_one_percent_damage_for_ten_simulated_minutes() -> None:
    faults = RecordingFaults(drop_prob=0.005, corrupt_prob=0.005, seed=9)
    board = SimLeverBoard(PeriodicPuller(), frame_clock=FrameClock(30.0), faults=faults)
    enc = PacketEncoder()
    dec = StreamDecoder(BOARD_TO_HOST)
    blob = hold_task(hold_ms=100, valve_ms=40).compile().encode()
    accepted: list[Packet] = []
    bad = []
    minutes = 10
    for k in range(minutes * 60 * 10):  # 100 ms steps on the virtual clock
        if k % 2 == 0:  # the host's clean commands: heartbeat, and a trial every 200 ms
            _host_send(board, enc, P.HostHeartbeat())
            _host_send(board, enc, P.LoadBegin(len(blob), crc16(blob)))
            _host_send(board, enc, P.LoadChunk(0, blob))
            _host_send(board, enc, P.LoadCommit())
            _host_send(board, enc, P.StartTrial(k // 2))
        board.step(100)
        for item in dec.feed(board.take_output()):
            (accepted if isinstance(item, Packet) else bad).append(item)
    clean = [p for p in StreamDecoder(BOARD_TO_HOST).feed(bytes(faults.clean))]
    assert all(isinstance(p, Packet) for p in clean)
    report = match_to_clean(clean, accepted)  # type: ignore[arg-type]
    s = dec.stats
    print(
        f"\n{minutes} simulated min, {len(faults.clean)} bytes, {faults.dropped} dropped, "
        f"{faults.corrupted} flipped: {len(clean)} packets sent, {report.accepted} accepted, "
        f"{s.lost} counted lost, {s.errors} damaged frames "
        f"(crc {s.crc_errors}, cobs {s.cobs_errors}, runt {s.runts}, bad body {s.bad_length}, "
        f"unknown type {s.unknown_type})"
    )
    assert faults.dropped > 10_000 and faults.corrupted > 10_000  # the knob really did damage
    assert report.wrong == [], "a damaged packet was accepted as a good one"
    # every packet sent either arrived intact or is counted: lost in a sequence gap, or after
    # the last accepted one (the tail the decoder cannot know about yet)
    # (before the first accepted packet there is no sequence to compare with: a host that
    # opens the port mid-stream cannot know what it missed, so that head is not counted)
    first = next(i for i, c in enumerate(clean) if c.seq == accepted[0].seq)
    last = max(i for i, c in enumerate(clean) if c.seq == accepted[-1].seq)
    assert s.lost == report.skipped - first
    assert report.accepted + s.lost == last + 1 - first
    # CRC-valid but unparseable bodies are counted, never handed on as messages
    assert len(bad) == s.unknown_type + s.bad_length
    trials = [
        p.msg for p in accepted if isinstance(p.msg, EventMsg) and p.msg.code == EventCode.TRIAL_END
    ]
    assert len(trials) > 300  # trials kept running through the damage


@pytest.fixture
def driver_on_damaged_link() -> Iterator[tuple[LeverBoard, SimBoardLink, Collector]]:
    faults = SimFaults(drop_prob=0.005, corrupt_prob=0.005, seed=4)
    board = SimLeverBoard(ConstantLever(512), frame_clock=FrameClock(30.0))
    link = SimBoardLink(board, kind="loopback", speed=20.0).start()
    events = Collector()
    lb = LeverBoard(
        link.transport(), CONFIG, on_event=events, command_timeout_s=1.0, reconnect=False
    )
    lb.connect()
    link.call_soon(lambda: setattr(board, "faults", faults))
    yield lb, link, events
    lb.close()
    link.stop()


def test_driver_survives_a_damaged_link_and_counts_every_loss(
    driver_on_damaged_link: tuple[LeverBoard, SimBoardLink, Collector],
) -> None:
    lb, link, events = driver_on_damaged_link
    # 60 s of board time at 20x: gaps pile up, the reader must stay alive
    events.wait(lambda it: any(e.name == "frame" and e.t_device_us > 60e6 for e in it), 20.0)
    assert not lb.reader_done.is_set()
    # Stop new bytes, then let the reader drain what is in flight: only then are the event
    # list and the health counters one consistent snapshot (else a gap can land in between).
    link.pause()
    events.wait(lambda it: sum(e.name == "lever_gap" for e in it) == lb.health()["lever_gaps"], 5.0)
    h = lb.health()
    faults = link.board.faults
    print(
        f"\ndriver, 60 board s at 1 %: lost {h['lost_packets']} packets, "
        f"{sum(h['host_rx'][k] for k in ('crc_errors', 'cobs_errors', 'runts'))} damaged "
        f"frames, {h['lever_gaps']} lever gaps = {h['lever_missing_samples']} samples"
    )
    assert faults.dropped > 0 and faults.corrupted > 0
    assert not lb.reader_done.is_set()
    assert h["lost_packets"] > 0 and h["lever_gaps"] > 0
    gaps = [e for e in events.items if e.name == "lever_gap"]
    assert len(gaps) == h["lever_gaps"]
    assert sum(g.data["missing_samples"] for g in gaps) == h["lever_missing_samples"]
    # every lost LEVER packet shows up as exactly its 10 missing samples (batches of 10)
    odd = [g.data for g in gaps if g.data["missing_samples"] % 10]
    assert not odd, odd


def timed_reward(delay_ms: int, valve_ms: int) -> StateMachine:
    """wait --tup--> reward (valve pulse): a trial whose outcome does not depend on the lever."""
    return StateMachine(
        lever=LEVER,
        states=[
            State(name="wait", tup_ms=delay_ms, on={"tup": "reward"}),
            State(name="reward", valve="pulse", valve_ms=valve_ms, terminal=True),
        ],
    )


def test_cable_pulled_mid_trial_reconnects_logs_the_gap_and_carries_on() -> None:
    board = SimLeverBoard(PeriodicPuller(period_ms=1000, hold_ms=600), frame_clock=FrameClock(30.0))
    link = SimBoardLink(board, kind="pty", speed=1.0).start()
    events, trail, logs = Collector(), Collector(), Collector()
    signals = RigSignals()
    signals.log.connect(logs)
    lb = LeverBoard(
        link.transport(),
        CONFIG,
        signals=signals,
        on_event=events,
        on_trail=trail,
        reconnect_interval_s=0.05,
    )
    try:
        lb.connect()
        # the reward asks for the full 300 ms cap; the host will be gone when it opens
        lb.load_trial(hold_task(hold_ms=100, valve_ms=300))
        lb.start_trial(0)
        trail.wait(lambda it: any(e.code == EventCode.LEVER_UP for e in it), 5.0)
        link.disconnect()  # mid-trial: the lever is up, the hold timer runs
        events.wait(lambda it: any(e.name == "link_lost" for e in it), 5.0)
        assert not lb.connected
        # the board finishes the trial on its own and closes the valve itself
        wait_until(
            lambda: any(e.code == EventCode.VALVE_OFF for e in list(board.trail)),
            5.0,
            "the board to close the valve while the host is away",
        )
        link.reconnect()
        events.wait(lambda it: any(e.name == "reconnect" for e in it), 5.0)
        events.wait(lambda it: any(e.name == "lever_gap" for e in it), 5.0)
        (rc,) = [e for e in events.items if e.name == "reconnect"]
        (gap,) = [e for e in events.items if e.name == "lever_gap"]
        print(f"\noutage {rc.data['down_s']} s, lever gap logged: {gap.data}")
        assert rc.data["down_s"] > 0
        # the logged hole matches the outage: down_s runs from noticing the pull to reopening
        # the port, the hole from the last batch before the pull to the first after the re-plug
        # (the two differ by the reader's detection and reopen polling, tens of ms)
        assert abs(gap.data["missing_ms"] / 1000 - rc.data["down_s"]) < 0.5
        assert lb.health()["lever_missing_samples"] == gap.data["missing_samples"]
        # the session carries on: HELLO re-checked (the re-handshake logs it; lb.hello still
        # holds the old HELLO until then), the next trial runs and ends
        logs.wait(lambda it: any("reconnected to" in m for _, m in it), 5.0)
        n = len(trail.items)
        # a timed reward: the periodic lever's phase when this trial starts depends on host
        # scheduling (starting in a pull's last 100 ms made a hold trial fail on a loaded CI)
        lb.load_trial(timed_reward(delay_ms=50, valve_ms=40))
        lb.start_trial(1)
        trail.wait(
            lambda it: any(e.code == EventCode.TRIAL_END and e.value == 1 for e in it[n:]), 5.0
        )
        # the trial ends as its reward pulse starts: the board closes the valve 40 ms later
        trail.wait(lambda it: any(e.code == EventCode.VALVE_OFF for e in it[n:]), 5.0)
    finally:
        lb.close()
        link.stop()
    on = [e for e in board.trail if e.code == EventCode.VALVE_ON]
    off = [e for e in board.trail if e.code == EventCode.VALVE_OFF]
    assert [e.value for e in on] == [300, 40]
    # the unattended pulse closed on the board's own timer at exactly its width
    assert off[0].t_us - on[0].t_us == 300_000
    assert not board.engine.valve_on and lb.reconnects == 1

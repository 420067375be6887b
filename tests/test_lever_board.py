"""The real ``LeverBoard`` driver against the simulated board over a real pty."""

from __future__ import annotations

import dataclasses
import os
import tty
from collections.abc import Iterator

import numpy as np
import pytest
from a1_helpers import Collector, hold_task

from rig.core.config import LeverBoardSim, ValveCalibration, ValvePoint
from rig.core.devices import CommandError, FirmwareMismatch, LeverBoard
from rig.core.protocol import BOARD_TO_HOST, ErrorCode, EventCode, Packet, StreamDecoder
from rig.core.protocol import packets as P
from rig.core.signals import RigSignals
from rig.core.sim import PushLever, SimBoardLink, SimFaults, SimLeverBoard
from rig.core.transport import PtyTransport, ReplayTransport

CONFIG = LeverBoardSim(
    driver="sim",
    valve=ValveCalibration(
        points=[ValvePoint(duration_ms=20, volume_ul=2), ValvePoint(duration_ms=50, volume_ul=4)],
        max_valve_ms=300,
    ),
)


class Rig:
    """A simulated board on a pty with a connected driver; records everything it gets."""

    def __init__(self, faults: SimFaults | None = None, board_kw: dict | None = None) -> None:
        self.lever = PushLever(512)
        self.board = SimLeverBoard(self.lever, faults=faults, **(board_kw or {}))
        self.link = SimBoardLink(self.board, kind="pty", speed=1.0).start()
        self.trail, self.events, self.raw, self.lever_batches = (Collector() for _ in range(4))
        self.signals = RigSignals()
        self.health = Collector()
        self.signals.health.connect(self.health)
        self.driver = LeverBoard(
            self.link.transport(),
            CONFIG,
            signals=self.signals,
            on_raw=self.raw,
            on_event=self.events,
            on_trail=self.trail,
            on_lever=self.lever_batches,
            reconnect_interval_s=0.05,
        )

    def close(self) -> None:
        self.driver.close()
        self.link.stop()

    def codes(self) -> list[int]:
        return [e.code for e in self.trail.items]


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    r.driver.connect()
    yield r
    r.close()


def test_hello_heartbeat_and_health(rig: Rig) -> None:
    h = rig.driver.hello
    assert h is not None and h.name == "lever_board" and h.simulated
    rig.health.wait(lambda items: len(items) >= 2)
    health = rig.driver.health()
    assert health["connected"] and health["heartbeat_age_ms"] < 1000
    assert health["crc_errors"] == 0 and health["lost_packets"] == 0
    assert health["board"]["crc_errors"] == 0
    # SET_CONFIG reached the board
    assert rig.board.engine.max_valve_ms == 300 and rig.board.host_timeout_ms == 1000


def test_reward_pulse_width_comes_from_the_calibration(rig: Rig) -> None:
    assert rig.driver.give_reward(3.0) == 35  # 2 µl @ 20 ms, 4 µl @ 50 ms -> 3 µl @ 35 ms
    items = rig.trail.wait(lambda it: EventCode.VALVE_OFF in [e.code for e in it])
    on = next(e for e in items if e.code == EventCode.VALVE_ON)
    off = next(e for e in items if e.code == EventCode.VALVE_OFF)
    assert (on.arg, on.value) == (1, 35) and off.t_us - on.t_us == 35_000
    valve_ev = next(e for e in rig.events.items if e.name == "valve_on")
    assert valve_ev.data["volume_ul"] == pytest.approx(3.0)


def test_nak_is_raised_with_the_reason(rig: Rig) -> None:
    with pytest.raises(ValueError, match=r"outside 0..300 ms"):
        rig.driver.open_valve(301)
    with pytest.raises(CommandError, match="VALVE_CAP") as ei:
        rig.driver.command(P.OpenValve(301))  # bypass the host check: the board refuses too
    assert (ei.value.error, ei.value.detail) == (ErrorCode.VALVE_CAP, 300)
    with pytest.raises(CommandError, match="NO_MACHINE"):
        rig.driver.start_trial(0)


def test_trial_runs_on_the_board_and_events_come_back(rig: Rig) -> None:
    rig.driver.load_trial(hold_task(hold_ms=30, valve_ms=20))
    rig.driver.start_trial(7)
    rig.trail.wait(lambda it: EventCode.TRIAL_START in [e.code for e in it])
    rig.lever.set_counts(600)
    items = rig.trail.wait(lambda it: EventCode.TRIAL_END in [e.code for e in it])
    end = next(e for e in items if e.code == EventCode.TRIAL_END)
    assert (end.arg, end.value) == (2, 7)  # state 2 = "reward"
    enter = [e.arg for e in items if e.code == EventCode.STATE_ENTER]
    assert enter == [0, 1, 2]
    up = next(e for e in items if e.code == EventCode.LEVER_UP)
    tup = next(e for e in items if e.code == EventCode.TUP)
    assert tup.t_us - up.t_us == 30_000  # the hold is timed by the board
    ev = rig.events.wait(lambda it: any(e.name == "trial_end" for e in it))
    assert any(e.name == "lever_up" and e.data["position_mm"] == pytest.approx(2.2) for e in ev)
    rig.lever_batches.wait(lambda it: len(it) >= 3)
    t, counts = rig.lever_batches.items[-1]
    assert t.dtype == np.int64 and counts.dtype == np.int16 and np.all(np.diff(t) == 1000)


def test_zero_lever_and_safe_state(rig: Rig) -> None:
    rig.lever.set_counts(530)
    # ZERO_LEVER averages the board's last 16 samples. One batch of 530 is only 10 of them (the
    # command can land within 6 ms of that batch); two batches of 530 cover any 16 it averages.
    rig.lever_batches.wait(lambda it: len(it) >= 2 and all((b[1] == 530).all() for b in it[-2:]))
    assert rig.driver.zero_lever() == 530
    rig.driver.open_valve(200)
    rig.driver.play_tone(5000, 1000)
    rig.driver.set_ttl(0x3, 0x1)
    assert rig.driver.safe_state()
    items = rig.trail.wait(lambda it: EventCode.TONE_OFF in [e.code for e in it])
    safe = [(e.code, e.arg) for e in items if e.arg == 2]
    assert (EventCode.VALVE_OFF, 2) in safe and (EventCode.TONE_OFF, 2) in safe
    rig.trail.wait(lambda it: any(e.code == EventCode.TTL and e.arg == 0 for e in it))
    assert not rig.board.engine.valve_on and rig.board.engine.ttl == 0


def test_version_mismatch_is_refused_with_what_to_flash() -> None:
    r = Rig()
    r.board.hello = dataclasses.replace(r.board.hello, protocol_version=2, fw_major=2)
    try:
        with pytest.raises(FirmwareMismatch) as ei:
            r.driver.connect()
        msg = str(ei.value)
        assert "protocol 2" in msg and "make -C firmware upload BOARD=uno" in msg
        assert "firmware/lever_board/lever_board.ino" in msg
    finally:
        r.close()


def test_wrong_firmware_name_is_refused() -> None:
    r = Rig()
    r.board.hello = dataclasses.replace(r.board.hello, name="rotarod")
    try:
        with pytest.raises(FirmwareMismatch, match="runs firmware 'rotarod'"):
            r.driver.connect()
    finally:
        r.close()


def test_silent_port_gives_a_clear_error() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        drv = LeverBoard(PtyTransport(os.ttyname(slave)), CONFIG, reconnect=False)
        with pytest.raises(CommandError, match="no HELLO .* Is the lever-board firmware flashed"):
            drv.connect(timeout_s=0.6)
        drv.close()
    finally:
        os.close(master)
        os.close(slave)


def test_corrupted_link_is_counted_and_survived(rig: Rig) -> None:
    n0 = len(rig.health.items)
    rig.link.call_soon(
        lambda: setattr(rig.board, "faults", SimFaults(corrupt_prob=0.003, drop_prob=0.001, seed=5))
    )
    rig.health.wait(lambda it: len(it) >= n0 + 15, 10.0)  # 1.5 s of damaged traffic
    stats = rig.driver._decoder.stats
    assert stats.crc_errors + stats.cobs_errors + stats.bad_length + stats.runts > 0
    assert stats.lost > 0 and rig.driver.health()["lost_packets"] == stats.lost
    assert not rig.driver.reader_done.is_set()  # the reader thread is alive
    rig.link.call_soon(lambda: setattr(rig.board, "faults", SimFaults()))
    rig.driver.open_valve(5)  # and commands still work once the line is clean


def test_disconnect_then_reconnect_carries_on(rig: Rig) -> None:
    logs = Collector()
    rig.signals.log.connect(logs)
    rig.link.disconnect()
    rig.events.wait(lambda it: any(e.name == "link_lost" for e in it))
    assert not rig.driver.connected
    rig.link.reconnect()
    rig.events.wait(lambda it: any(e.name == "reconnect" for e in it))
    logs.wait(lambda it: any("reconnected to" in m for _, m in it))  # HELLO checked again
    n = len(rig.trail.items)
    rig.driver.open_valve(5)
    rig.trail.wait(lambda it: EventCode.VALVE_ON in [e.code for e in it[n:]])
    assert rig.driver.reconnects == 1 and rig.driver.connected


def test_other_firmware_after_reconnect_blocks_commands(rig: Rig) -> None:
    logs = Collector()
    rig.signals.log.connect(logs)
    rig.link.call_soon(
        lambda: setattr(rig.board, "hello", dataclasses.replace(rig.board.hello, name="other"))
    )
    rig.link.disconnect()
    rig.events.wait(lambda it: any(e.name == "link_lost" for e in it))
    rig.link.reconnect()
    logs.wait(lambda it: any("after reconnect" in m and "'other'" in m for _, m in it))
    with pytest.raises(FirmwareMismatch, match="make -C firmware upload"):
        rig.driver.open_valve(5)
    assert not rig.board.engine.valve_on


def test_raw_bytes_replay_through_the_same_parser(rig: Rig) -> None:
    rig.driver.load_trial(hold_task(hold_ms=10, valve_ms=5))
    rig.driver.start_trial(1)
    rig.lever.set_counts(600)
    rig.trail.wait(lambda it: EventCode.VALVE_OFF in [e.code for e in it])
    rig.close()
    chunks = list(rig.raw.items)
    assert all(isinstance(t, int) and isinstance(b, bytes) for t, b in chunks)
    replay = ReplayTransport(chunks)
    got, events = Collector(), Collector()
    drv = LeverBoard(replay, CONFIG, on_trail=got, on_event=events, reconnect=False)
    drv.connect(passive=True)
    assert drv.reader_done.wait(5)
    assert not any(e.name == "link_lost" for e in events.items)  # the end is not a failure
    live = [e for e in rig.trail.items]
    assert got.items == live and len(live) > 5
    assert replay.written == b""  # a passive replay sends nothing
    # every chunk decodes identically offline
    dec = StreamDecoder(BOARD_TO_HOST)
    pk = [p for _, b in chunks for p in dec.feed(b) if isinstance(p, Packet)]
    assert sum(1 for p in pk if isinstance(p.msg, P.EventMsg)) == len(live)


def test_serial_transport_round_trip_on_pyserial_loop() -> None:
    from rig.core.protocol import PacketEncoder
    from rig.core.transport import SerialTransport, TransportClosed

    tr = SerialTransport("loop://")
    tr.open()
    wire = PacketEncoder().encode(P.Ack(1, 2))[1]
    tr.write(wire)
    got = b""
    for _ in range(10):  # the loop port answers at once; a few reads at most
        got += tr.read(0.2)
        if got.endswith(b"\x00"):
            break
    assert got == wire and tr.read(0.01) == b""
    tr.close()
    with pytest.raises(TransportClosed):
        tr.read(0.01)
    with pytest.raises(TransportClosed, match="cannot open serial port /nonexistent"):
        SerialTransport("/nonexistent/ttyACM9").open()


def test_replay_transport_has_the_recorded_clock() -> None:
    rec = [(1_000, b"ab"), (5_000, b"c")]
    tr = ReplayTransport(rec)
    tr.open()
    assert (tr.read(), tr.now_ns()) == (b"ab", 1_000)
    assert (tr.read(), tr.now_ns()) == (b"c", 5_000)
    from rig.core.transport import TransportClosed

    with pytest.raises(TransportClosed, match="end of recording"):
        tr.read()
    assert tr.exhausted

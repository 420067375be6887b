"""The simulated lever board: protocol replies, stream, heartbeat, frames, faults, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest
from a1_helpers import hold_task

from rig.core.protocol import (
    BOARD_TO_HOST,
    LEVER_FIRMWARE_NAME,
    Ack,
    ErrorCode,
    EventCode,
    EventMsg,
    FrameEdge,
    Heartbeat,
    Hello,
    LeverBatch,
    LeverZero,
    Message,
    Nak,
    Packet,
    PacketEncoder,
    PacketType,
    StreamDecoder,
    crc16,
    frame_raw,
)
from rig.core.protocol import packets as P
from rig.core.sim import (
    ArrayLever,
    ConstantLever,
    FrameClock,
    MouseLever,
    PushLever,
    SimBoardLink,
    SimFaults,
    SimLeverBoard,
)
from rig.core.statemachine import TrailEvent, run_machine


class Host:
    """A minimal host: encodes commands into the board, decodes what comes back."""

    def __init__(self, board: SimLeverBoard) -> None:
        self.board = board
        self.enc = PacketEncoder()
        self.dec = StreamDecoder(BOARD_TO_HOST)
        self.packets: list[Message] = []

    def pump(self) -> list[Message]:
        new = [p.msg for p in self.dec.feed(self.board.take_output()) if isinstance(p, Packet)]
        self.packets += new
        return new

    def cmd(self, msg: Message) -> Ack | Nak:
        seq, wire = self.enc.encode(msg)
        self.board.receive(wire)
        replies = [m for m in self.pump() if isinstance(m, Ack | Nak)]
        assert len(replies) == 1 and replies[0].cmd_seq == seq  # exactly one reply per command
        return replies[0]

    def of(self, cls: type) -> list:
        return [m for m in self.packets if isinstance(m, cls)]


def load(host: Host, blob: bytes) -> list[Ack | Nak]:
    out = [host.cmd(P.LoadBegin(len(blob), crc16(blob)))]
    out += [host.cmd(P.LoadChunk(o, blob[o : o + 120])) for o in range(0, len(blob), 120)]
    out.append(host.cmd(P.LoadCommit()))
    return out


def test_boot_hello_matches_firmware_identity() -> None:
    host = Host(SimLeverBoard(ConstantLever(), board="mega"))
    (hello,) = host.pump()
    assert isinstance(hello, Hello)
    assert (hello.name, hello.fw_version, hello.protocol_version) == (
        LEVER_FIRMWARE_NAME,
        "1.0.0",
        1,
    )
    assert (hello.max_states, hello.max_transitions, hello.max_machine_bytes) == (32, 128, 864)
    assert hello.simulated and hello.board_kind == 2


def test_command_replies_and_nak_codes() -> None:
    host = Host(SimLeverBoard(ConstantLever()))
    host.pump()
    assert isinstance(host.cmd(P.GetHello(1)), Ack) and isinstance(host.packets[-2], Hello)
    nak = host.cmd(P.GetHello(2))
    assert isinstance(nak, Nak) and (nak.error, nak.detail) == (ErrorCode.VERSION, 1)
    assert host.cmd(P.StartTrial(0)) == Nak(2, PacketType.START_TRIAL, ErrorCode.NO_MACHINE, 0)
    nak = host.cmd(P.OpenValve(501))
    assert (nak.error, nak.detail) == (ErrorCode.VALVE_CAP, 500)  # type: ignore[union-attr]
    assert host.cmd(P.SetConfig(0, 1000)).error == ErrorCode.BAD_VALUE  # type: ignore[union-attr]
    assert host.cmd(P.SoftEvent(8)).error == ErrorCode.BAD_VALUE  # type: ignore[union-attr]
    assert host.cmd(P.LoadChunk(0, b"x")).error == ErrorCode.LOAD_ORDER  # type: ignore[union-attr]
    assert host.cmd(P.LoadBegin(417, 0)).error == ErrorCode.MACHINE_TOO_BIG  # type: ignore[union-attr]
    # unknown type and wrong body length are NAKed with the packet's own seq
    host.board.receive(frame_raw(0x3E, 200, b""))
    host.board.receive(frame_raw(PacketType.OPEN_VALVE, 201, b"\x01"))
    naks = host.of(Nak)[-0:] + [m for m in host.pump() if isinstance(m, Nak)]
    assert naks[-2:] == [
        Nak(200, 0x3E, ErrorCode.UNKNOWN_TYPE, 0),
        Nak(201, PacketType.OPEN_VALVE, ErrorCode.BAD_LENGTH, 2),
    ]


def test_machine_upload_errors_like_the_firmware() -> None:
    host = Host(SimLeverBoard(ConstantLever()))
    blob = hold_task().compile().encode()
    bad_crc = host.cmd(P.LoadBegin(len(blob), crc16(blob) ^ 1))
    assert isinstance(bad_crc, Ack)
    host.cmd(P.LoadChunk(0, blob))
    assert host.cmd(P.LoadCommit()).error == ErrorCode.MACHINE_CRC  # type: ignore[union-attr]
    bad = bytearray(blob)
    bad[3] = 9  # initial state out of range
    replies = load(host, bytes(bad))
    assert replies[-1].error == ErrorCode.MACHINE_INVALID and replies[-1].detail == 3  # type: ignore[union-attr]
    assert all(isinstance(r, Ack) for r in load(host, blob))
    assert isinstance(host.cmd(P.StartTrial(5)), Ack)
    assert host.cmd(P.LoadBegin(len(blob), 0)).error == ErrorCode.BUSY  # type: ignore[union-attr]


def test_trail_equals_reference_interpreter() -> None:
    """The board wrapper adds nothing to the engine: same input, same EVENTs, same times."""
    x = np.full(3000, 512, np.int16)
    x[100:400] = 560
    x[1000:1020] = 560
    x[2000:2300] = 600
    m = hold_task(hold_ms=100)
    board = SimLeverBoard(ArrayLever(x))
    host = Host(board)
    queued = 0
    while board.k < len(x):
        started = [e for e in host.of(EventMsg) if e.code == EventCode.TRIAL_START]
        if queued < 3 and len(started) == queued:  # keep the next trial queued, as a task does
            assert all(isinstance(r, Ack) for r in load(host, m.compile().encode()))
            assert isinstance(host.cmd(P.StartTrial(queued)), Ack)
            queued += 1
        board.step(1)
        host.pump()
    got = [
        (e.t_us, e.code, e.arg, e.value)
        for e in host.of(EventMsg)
        if e.code <= EventCode.TRIAL_CODE
    ]
    ref = run_machine([m, m, m], x[: board.k])
    assert got == [tuple(e) for e in ref]
    assert [e.code for e in ref].count(EventCode.TRIAL_END) == 3


def test_lever_stream_heartbeat_and_frames() -> None:
    x = np.arange(2000, dtype=np.int16)
    board = SimLeverBoard(ArrayLever(x), frame_clock=FrameClock(30.0, start_us=500))
    host = Host(board)
    board.step(1000)
    host.pump()
    batches = host.of(LeverBatch)
    assert len(batches) == 100 and all(len(b.samples) == 10 for b in batches)
    t = np.concatenate([b.times_us() for b in batches])
    s = np.concatenate([b.samples for b in batches])
    assert np.array_equal(t, np.arange(1000) * 1000) and np.array_equal(s, x[:1000])
    hbs = host.of(Heartbeat)
    assert [h.t_us for h in hbs] == [99_000 + 100_000 * i for i in range(10)]
    frames = host.of(FrameEdge)
    assert [f.count for f in frames] == list(range(1, 31))
    assert [f.t_us for f in frames] == [500 + round(i * 1e6 / 30) for i in range(30)]
    assert hbs[-1].frames == 30
    host.cmd(P.SetStream(2, 5))
    board.step(100)
    host.pump()
    b = host.of(LeverBatch)[-1]
    assert b.period_us == 2000 and len(b.samples) == 5
    assert np.array_equal(b.samples, x[b.first_index : b.first_index + 10 : 2])
    assert b.t0_us == b.first_index * 1000


def test_zero_lever_is_the_mean_of_the_last_16_samples() -> None:
    lever = PushLever(500)
    board = SimLeverBoard(lever)
    host = Host(board)
    board.step(8)
    lever.set_counts(533)
    board.step(8)
    host.cmd(P.ZeroLever())
    assert host.of(LeverZero)[-1] == LeverZero((8 * 500 + 8 * 533) // 16, 16)


def test_host_silence_stops_trial_starts() -> None:
    board = SimLeverBoard(ConstantLever())
    host = Host(board)
    host.cmd(P.SetConfig(500, 200))
    load(host, hold_task().compile().encode())
    board.step(300)  # host silent for 300 ms > 200 ms
    host.pump()
    timeouts = [e for e in host.of(EventMsg) if e.code == EventCode.HOST_TIMEOUT]
    assert len(timeouts) == 1 and timeouts[0].t_us == 201_000
    assert host.of(Heartbeat)[-1].status & 8
    assert isinstance(host.cmd(P.StartTrial(3)), Ack)  # the command itself proves the host alive
    board.step(2)
    codes = [e.code for e in host.pump() if isinstance(e, EventMsg)]
    assert EventCode.HOST_RESUMED in codes and EventCode.TRIAL_START in codes


def test_queued_start_dropped_while_host_silent() -> None:
    board = SimLeverBoard(ArrayLever(np.full(10, 600, np.int16)))
    host = Host(board)
    host.cmd(P.SetConfig(500, 100))
    load(host, hold_task(hold_ms=1000).compile().encode())
    host.cmd(P.StartTrial(0))
    board.step(1)
    load(host, hold_task().compile().encode())
    host.cmd(P.StartTrial(1))  # queued behind trial 0, which outlives the host timeout
    board.step(1500)
    host.pump()
    ev = [(e.code, e.value) for e in host.of(EventMsg)]
    assert (EventCode.START_DROPPED, 1) in ev
    assert [v for c, v in ev if c == EventCode.TRIAL_START] == [0]


def test_output_faults_are_seen_and_counted_by_the_host() -> None:
    board = SimLeverBoard(
        ConstantLever(), faults=SimFaults(drop_prob=0.002, corrupt_prob=0.002, seed=3)
    )
    host = Host(board)
    board.step(5000)
    host.pump()
    s = host.dec.stats
    assert s.errors > 0 and s.lost > 0
    # ~34 wire bytes per heartbeat at 0.4 % damage per byte: ~87 % arrive (about 43 of 50)
    assert len(host.of(Heartbeat)) >= 35  # most packets still arrive


def test_stall_holds_output_then_releases_it() -> None:
    board = SimLeverBoard(ConstantLever())
    host = Host(board)
    host.pump()
    board.stall(300)
    board.step(200)
    assert host.pump() == []
    board.step(200)
    assert len([m for m in host.pump() if isinstance(m, Heartbeat)]) == 4


class _StubMouse:
    def __init__(self) -> None:
        self.percepts: list[tuple[str, float]] = []

    def perceive(self, what: str, t_s: float) -> None:
        self.percepts.append((what, t_s))

    def position_mm(self, t_s: np.ndarray) -> np.ndarray:
        return np.where(t_s >= 0.05, 2.0, 0.0)


def test_mouse_lever_uses_calibration_and_perceives_outputs() -> None:
    from rig.core.config import LeverCalibration

    mouse = _StubMouse()
    lever = MouseLever(mouse, LeverCalibration(counts_per_mm=40, rest_counts=512))
    assert lever.counts(np.array([0, 60_000]))[1] == 592
    board = SimLeverBoard(lever)
    host = Host(board)
    load(host, hold_task(hold_ms=20).compile().encode())
    host.cmd(P.StartTrial(0))
    board.step(200)
    assert mouse.percepts == [("reward", 0.07)]


def test_runs_faster_than_real_time_on_a_virtual_clock() -> None:
    board = SimLeverBoard(ConstantLever())
    link = SimBoardLink(board, kind="loopback", speed=None, max_ticks=10_000)
    transport = link.transport()
    got = bytearray()
    t0 = time.monotonic()
    with link:
        while True:
            data = transport.read(0.05)
            got += data
            if not data and board.k >= 10_000:
                break
    wall_s = time.monotonic() - t0
    assert wall_s < 2.0  # 10 s of board time at least 5x faster than real time (2 loaded cores)
    dec = StreamDecoder(BOARD_TO_HOST)
    hbs = [
        p.msg
        for p in dec.feed(bytes(got))
        if isinstance(p, Packet) and isinstance(p.msg, Heartbeat)
    ]
    assert len(hbs) == 100 and dec.stats.lost == 0


def test_pty_link_carries_bytes_both_ways() -> None:
    from rig.core.transport import PtyTransport

    board = SimLeverBoard(ConstantLever())
    with SimBoardLink(board, kind="pty", speed=1.0) as link:
        tr = link.transport()
        assert isinstance(tr, PtyTransport)
        tr.open()
        enc, dec = PacketEncoder(), StreamDecoder(BOARD_TO_HOST)
        tr.write(enc.encode(P.GetHello(1))[1])
        msgs: list[Message] = []
        deadline = time.monotonic() + 5
        while not any(isinstance(m, Ack) for m in msgs) and time.monotonic() < deadline:
            msgs += [p.msg for p in dec.feed(tr.read(0.1)) if isinstance(p, Packet)]
        tr.close()
    assert any(isinstance(m, Hello) for m in msgs) and any(isinstance(m, Ack) for m in msgs)


@pytest.mark.parametrize("code", [EventCode.TONE_ON, EventCode.VALVE_ON])
def test_trail_event_names(code: EventCode) -> None:
    assert TrailEvent(0, code, 0, 0).name == code.name.lower()

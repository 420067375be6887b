"""The simulated lever board: the real byte protocol around the Python reference engine.

``SimLeverBoard`` is the board's logic with no threads and no clock of its own: feed it host
bytes with ``receive``, advance board time with ``step(n_ticks)`` (1 tick = 1 ms), collect the
bytes it sends with ``take_output``. ``rig.core.sim.link.SimBoardLink`` runs it on a pty or an
in-process loopback, in real time or faster. Its HELLO reports the real firmware's name and
versions (``lever_board`` 1.0.0, protocol 1) with the "simulated" flag bit set, so the host
driver treats it exactly as a board.

Fault knobs (``SimFaults``): drop or corrupt outgoing bytes at random (seeded), and
``stall(ms)``: hold back all output for that long (the board keeps its time, like a USB hiccup).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from rig.core.protocol import (
    HOST_TO_BOARD,
    LEVER_FIRMWARE_NAME,
    LEVER_FIRMWARE_VERSION,
    MAX_PACKET,
    PROTOCOL_VERSION,
    Ack,
    BadPacket,
    BoardKind,
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
    StreamDecoder,
    crc16,
)
from rig.core.protocol import packets as P
from rig.core.sim.inputs import FrameClock, LeverInput
from rig.core.statemachine.blob import BlobError, blob_size, decode_blob, validate_blob
from rig.core.statemachine.engine import Engine, TrailEvent

SAMPLE_PERIOD_US = 1000
HEARTBEAT_EVERY_TICKS = 100
FW_MAX_VALVE_MS = 10_000
#: (max_states, max_transitions) per board kind, as the firmware reports them
CAPS = {"uno": (16, 48), "mega": (32, 128)}


@dataclass
class SimFaults:
    """Damage applied to the bytes the simulated board sends (seeded, reproducible).

    Each byte independently: dropped with ``drop_prob``, else one random bit flipped with
    ``corrupt_prob``. ``dropped`` and ``corrupted`` count what was done (the ground truth a
    fault test compares the host's counters with).
    """

    drop_prob: float = 0.0
    corrupt_prob: float = 0.0
    seed: int = 0
    rng: np.random.Generator = field(init=False, repr=False)
    dropped: int = field(default=0, init=False)
    corrupted: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        for name in ("drop_prob", "corrupt_prob"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"SimFaults.{name} = {p}: expected a probability in 0..1")
        self.rng = np.random.default_rng(self.seed)

    def apply(self, data: bytes) -> bytes:
        """``data`` after the drop/corrupt knobs (vectorised: 10 simulated minutes of stream
        must damage in well under a second)."""
        if not (self.drop_prob or self.corrupt_prob) or not data:
            return data
        buf = np.frombuffer(data, np.uint8).copy()
        r = self.rng.random(len(buf))
        flip = (r >= self.drop_prob) & (r < self.drop_prob + self.corrupt_prob)
        bits = self.rng.integers(0, 8, int(flip.sum()), dtype=np.uint8)
        buf[flip] ^= np.left_shift(np.uint8(1), bits)
        keep = r >= self.drop_prob
        self.dropped += int(len(buf) - keep.sum())
        self.corrupted += int(flip.sum())
        return buf[keep].tobytes()


class SimLeverBoard:
    """Byte-level simulated lever board (see the module docstring).

    Parameters
    ----------
    lever : LeverInput
        Lever signal (and optional lick levels); told about every output event.
    board : {"uno", "mega"}
        Which board's capabilities to report.
    frame_clock : FrameClock, optional
        Frame-clock edges to count and report.
    faults : SimFaults, optional
        Output damage knobs.
    block_ticks : int
        Ticks computed per ``lever.counts`` call (the input sees blocks of this many samples).
    """

    def __init__(
        self,
        lever: LeverInput,
        board: str = "uno",
        frame_clock: FrameClock | None = None,
        faults: SimFaults | None = None,
        board_uid: int = 0,
        block_ticks: int = 10,
    ) -> None:
        if board not in CAPS:
            raise ValueError(f"board must be one of {sorted(CAPS)}, got {board!r}")
        self.lever = lever
        self.board = board
        self.frame_clock = frame_clock
        self.faults = faults or SimFaults()
        self.block_ticks = block_ticks
        self.max_states, self.max_transitions = CAPS[board]
        self.hello = Hello(
            PROTOCOL_VERSION,
            *LEVER_FIRMWARE_VERSION,
            BoardKind.UNO if board == "uno" else BoardKind.MEGA,
            1,  # flags bit0: simulated in Python
            board_uid,
            1,
            4,
            2,
            self.max_states,
            self.max_transitions,
            4,
            blob_size(self.max_states, self.max_transitions),
            SAMPLE_PERIOD_US,
            MAX_PACKET,
            10,
            LEVER_FIRMWARE_NAME,
        )
        self.engine = Engine(max_valve_ms=500)
        self.decoder = StreamDecoder(HOST_TO_BOARD, resync_types=frozenset())
        self.encoder = PacketEncoder()
        self.k = 0  # next tick index; its time is k * SAMPLE_PERIOD_US
        self.trail: list[TrailEvent] = []
        self.frames = 0
        self.host_timeout_ms = 2000
        self.stream_decimation, self.stream_batch = 1, 10
        self._stream: list[int] = []
        self._stream_first = 0
        self._recent: deque[int] = deque(maxlen=16)
        self._last_host_us = 0
        self._timed_out = False
        self._resumed = False
        self._load: bytearray | None = None
        self._load_len = 0
        self._load_crc = 0
        self._out = bytearray()
        self._stall_until_us = -1
        self._send(self.hello)  # spontaneous HELLO after reset, seq 0

    # ------------------------------------------------------------------ time
    @property
    def t_us(self) -> int:
        """Board time of the next tick (µs)."""
        return self.k * SAMPLE_PERIOD_US

    def stall(self, duration_ms: int) -> None:
        """Send nothing for ``duration_ms`` of board time (bytes are held, then sent)."""
        self._stall_until_us = self.t_us + duration_ms * 1000

    def step(self, n_ticks: int) -> None:
        """Run ``n_ticks`` ticks (``n_ticks`` ms of board time)."""
        end = self.k + n_ticks
        while self.k < end:
            n = min(self.block_ticks, end - self.k)
            t = (self.k + np.arange(n, dtype=np.int64)) * SAMPLE_PERIOD_US
            xs = np.asarray(self.lever.counts(t)).astype(np.int64).tolist()
            licks_fn = getattr(self.lever, "licks", None)
            ls = [0] * n if licks_fn is None else np.asarray(licks_fn(t)).tolist()
            for i in range(n):
                self._tick(int(t[i]), int(xs[i]), int(ls[i]))

    def _tick(self, t_us: int, x: int, lick: int) -> None:
        k = self.k
        if self.frame_clock is not None:
            for te in self.frame_clock.edges_between(t_us - SAMPLE_PERIOD_US, t_us):
                self.frames += 1
                self._send(FrameEdge(self.frames, te))
        if self.host_timeout_ms and not self._timed_out:
            silent_us = t_us - self._last_host_us
            if silent_us > self.host_timeout_ms * 1000:
                self._timed_out = True
                self.engine.host_timed_out = True
                self._event(TrailEvent(t_us, EventCode.HOST_TIMEOUT, 0, silent_us // 1000))
        if self._resumed:
            self._resumed = False
            self._event(TrailEvent(t_us, EventCode.HOST_RESUMED, 0, 0))
        for ev in self.engine.tick(k, t_us, x, lick):
            self._event(ev)
        self._recent.append(x)
        if self.stream_decimation and k % self.stream_decimation == 0:
            if not self._stream:
                self._stream_first = k
            self._stream.append(x)
            if len(self._stream) >= self.stream_batch:
                self._flush_stream()
        self.k += 1
        if self.k % HEARTBEAT_EVERY_TICKS == 0:
            self._heartbeat(t_us)

    def _flush_stream(self) -> None:
        samples = np.clip(np.asarray(self._stream), -32768, 32767).astype(np.int16)
        period = SAMPLE_PERIOD_US * self.stream_decimation
        self._send(
            LeverBatch(self._stream_first & 0xFFFFFFFF, self._stream_first * 1000, period, samples)
        )
        self._stream.clear()

    def _event(self, ev: TrailEvent) -> None:
        self.trail.append(ev)
        self._send(EventMsg(ev.t_us, ev.code, ev.arg, max(-(2**31), min(ev.value, 2**31 - 1))))
        self.lever.on_output(ev)

    def _heartbeat(self, t_us: int) -> None:
        s = self.decoder.stats
        eng = self.engine

        def sat(v: int) -> int:
            return min(v, 0xFFFF)

        status = (
            (1 if eng.running else 0)
            | (2 if eng.queued_start is not None else 0)
            | (4 if eng.pending is not None else 0)
            | (8 if self._timed_out else 0)
        )
        self._send(
            Heartbeat(
                t_us,
                sat(s.crc_errors),
                sat(s.cobs_errors + s.runts + s.oversize),
                sat(s.lost),
                0,
                0,
                status,
                eng.trial_num,
                eng.state,
                self.frames,
            )
        )

    # ------------------------------------------------------------------ bytes
    def _send(self, msg: Message) -> None:
        self._out += self.encoder.encode(msg)[1]

    def take_output(self) -> bytes:
        """Bytes for the host since the last call, after the fault knobs."""
        if self.t_us < self._stall_until_us or not self._out:
            return b""
        data = bytes(self._out)
        self._out.clear()
        return self.faults.apply(data)

    def receive(self, data: bytes) -> None:
        """Host bytes; commands take effect from the next tick, replies go out at once."""
        for item in self.decoder.feed(data):
            self._last_host_us = self.t_us
            if self._timed_out:
                self._timed_out = False
                self.engine.host_timed_out = False
                self._resumed = True
            if isinstance(item, BadPacket):
                err = (
                    ErrorCode.UNKNOWN_TYPE
                    if item.ptype not in HOST_TO_BOARD
                    else (ErrorCode.BAD_LENGTH)
                )
                self._send(Nak(item.seq, item.ptype, err, item.expected_len))
                continue
            res = self._command(item)
            if res is None:
                self._send(Ack(item.seq, item.msg.TYPE))
            else:
                self._send(Nak(item.seq, item.msg.TYPE, res[0], res[1]))

    def _command(self, pkt: Packet) -> tuple[int, int] | None:
        m, eng = pkt.msg, self.engine
        if isinstance(m, P.GetHello):
            self._send(self.hello)
            return (
                (ErrorCode.VERSION, PROTOCOL_VERSION)
                if m.protocol_version != PROTOCOL_VERSION
                else None
            )
        if isinstance(m, P.HostHeartbeat):
            return None
        if isinstance(m, P.SetConfig):
            if not 1 <= m.max_valve_ms <= FW_MAX_VALVE_MS:
                return ErrorCode.BAD_VALUE, 0
            if m.host_timeout_ms and not 100 <= m.host_timeout_ms <= 60_000:
                return ErrorCode.BAD_VALUE, 2
            eng.max_valve_ms, self.host_timeout_ms = m.max_valve_ms, m.host_timeout_ms
            return None
        if isinstance(m, P.SetStream):
            if m.decimation > 100:
                return ErrorCode.BAD_VALUE, 0
            if not 1 <= m.batch_n <= 50:
                return ErrorCode.BAD_VALUE, 1
            if self._stream:  # as the firmware: send what the old settings sampled, lose none
                self._flush_stream()
            self.stream_decimation, self.stream_batch = m.decimation, m.batch_n
            return None
        if isinstance(m, P.ResetSafe):
            eng.reset_safe()
            self._load = None
            return None
        if isinstance(m, P.ZeroLever):
            n = len(self._recent)
            mean = int(sum(self._recent) / n) if n else 0  # truncation, as C's integer division
            self._send(LeverZero(mean, n))
            return None
        if isinstance(m, P.LoadBegin):
            if eng.queued_start is not None:
                return ErrorCode.BUSY, 0
            cap = self.hello.max_machine_bytes
            if m.total_len > cap:
                return ErrorCode.MACHINE_TOO_BIG, cap
            self._load, self._load_len, self._load_crc = bytearray(), m.total_len, m.blob_crc
            return None
        if isinstance(m, P.LoadChunk):
            buf = self._load
            if buf is None:
                return ErrorCode.LOAD_ORDER, 0
            if m.offset != len(buf) or len(buf) + len(m.data) > self._load_len:
                return ErrorCode.LOAD_ORDER, len(buf)
            buf += m.data
            return None
        if isinstance(m, P.LoadCommit):
            buf, self._load = self._load, None
            if buf is None or len(buf) != self._load_len:
                return ErrorCode.LOAD_ORDER, 0 if buf is None else len(buf)
            blob = bytes(buf)
            if crc16(blob) != self._load_crc:
                return ErrorCode.MACHINE_CRC, crc16(blob)
            try:
                validate_blob(blob, self.max_states, self.max_transitions, eng.max_valve_ms)
            except BlobError as e:
                return e.error, eng.max_valve_ms if e.error == ErrorCode.VALVE_CAP else e.offset
            return eng.commit(decode_blob(blob))
        if isinstance(m, P.StartTrial):
            return eng.start(m.trial_num)
        if isinstance(m, P.StopTrial):
            eng.stop()
            return None
        if isinstance(m, P.AbortTrial):
            eng.abort()
            return None
        if isinstance(m, P.SoftEvent):
            return eng.soft_event(m.n)
        if isinstance(m, P.OpenValve):
            return eng.open_valve(m.duration_ms)
        if isinstance(m, P.PlayTone):
            return eng.play_tone(m.freq_hz, m.duration_ms)
        if isinstance(m, P.SetTtl):
            eng.set_ttl(m.mask, m.value)
            return None
        return ErrorCode.UNKNOWN_TYPE, 0

"""Packet bodies as dataclasses: one class per packet type, with ``encode_body``/``decode_body``.

Layouts are those of docs/protocol.md, section 5 (all little-endian). Fixed-layout packets
declare a ``struct`` format ``FMT`` whose fields are the dataclass fields in order; the few
variable-length ones (HELLO, LOAD_CHUNK, TEXT, LEVER) override the two methods.

``decode_body`` raises ``BodyError`` (a ``ValueError``) with the expected length; the stream
decoder turns that into a counted ``bad_length`` item, never an exception to the caller.
"""

from __future__ import annotations

import struct
from dataclasses import astuple, dataclass, field
from typing import Any, ClassVar, Self

import numpy as np

from rig.core.protocol.codes import PacketType


class BodyError(ValueError):
    """A body does not match its type's layout; ``expected_len`` is the length it should have."""

    def __init__(self, ptype: int, got_len: int, expected_len: int, what: str = "") -> None:
        self.ptype = ptype
        self.expected_len = expected_len
        name = PacketType(ptype).name if ptype in PacketType._value2member_map_ else hex(ptype)
        super().__init__(
            f"{name} body is {got_len} bytes, expected {expected_len}"
            + (f" ({what})" if what else "")
        )


@dataclass(frozen=True, slots=True)
class Message:
    """Base of every packet body. ``TYPE`` is the packet type byte; ``FMT`` the struct layout."""

    TYPE: ClassVar[int]
    FMT: ClassVar[str] = "<"

    def encode_body(self) -> bytes:
        return struct.pack(self.FMT, *astuple(self))

    @classmethod
    def decode_body(cls, body: bytes) -> Self:
        size = struct.calcsize(cls.FMT)
        if len(body) != size:
            raise BodyError(cls.TYPE, len(body), size)
        return cls(*struct.unpack(cls.FMT, body))


# ----------------------------------------------------------------------------- host -> board
@dataclass(frozen=True, slots=True)
class GetHello(Message):
    TYPE = PacketType.GET_HELLO
    FMT = "<B"
    protocol_version: int


@dataclass(frozen=True, slots=True)
class HostHeartbeat(Message):
    TYPE = PacketType.HOST_HEARTBEAT


@dataclass(frozen=True, slots=True)
class SetConfig(Message):
    TYPE = PacketType.SET_CONFIG
    FMT = "<HH"
    max_valve_ms: int
    host_timeout_ms: int


@dataclass(frozen=True, slots=True)
class SetStream(Message):
    TYPE = PacketType.SET_STREAM
    FMT = "<BB"
    decimation: int
    batch_n: int


@dataclass(frozen=True, slots=True)
class ResetSafe(Message):
    TYPE = PacketType.RESET_SAFE


@dataclass(frozen=True, slots=True)
class ZeroLever(Message):
    TYPE = PacketType.ZERO_LEVER


@dataclass(frozen=True, slots=True)
class LoadBegin(Message):
    TYPE = PacketType.LOAD_BEGIN
    FMT = "<HH"
    total_len: int
    blob_crc: int


@dataclass(frozen=True, slots=True)
class LoadChunk(Message):
    TYPE = PacketType.LOAD_CHUNK
    offset: int
    data: bytes

    def encode_body(self) -> bytes:
        return struct.pack("<H", self.offset) + bytes(self.data)

    @classmethod
    def decode_body(cls, body: bytes) -> Self:
        if not 3 <= len(body) <= 2 + 120:
            raise BodyError(cls.TYPE, len(body), 3, "2-byte offset + 1..120 data bytes")
        return cls(struct.unpack_from("<H", body)[0], bytes(body[2:]))


@dataclass(frozen=True, slots=True)
class LoadCommit(Message):
    TYPE = PacketType.LOAD_COMMIT


@dataclass(frozen=True, slots=True)
class StartTrial(Message):
    TYPE = PacketType.START_TRIAL
    FMT = "<I"
    trial_num: int


@dataclass(frozen=True, slots=True)
class StopTrial(Message):
    TYPE = PacketType.STOP_TRIAL


@dataclass(frozen=True, slots=True)
class AbortTrial(Message):
    TYPE = PacketType.ABORT_TRIAL


@dataclass(frozen=True, slots=True)
class SoftEvent(Message):
    TYPE = PacketType.SOFT_EVENT
    FMT = "<B"
    n: int


@dataclass(frozen=True, slots=True)
class OpenValve(Message):
    TYPE = PacketType.OPEN_VALVE
    FMT = "<H"
    duration_ms: int


@dataclass(frozen=True, slots=True)
class PlayTone(Message):
    TYPE = PacketType.PLAY_TONE
    FMT = "<HH"
    freq_hz: int
    duration_ms: int


@dataclass(frozen=True, slots=True)
class SetTtl(Message):
    TYPE = PacketType.SET_TTL
    FMT = "<BB"
    mask: int
    value: int


# ----------------------------------------------------------------------------- board -> host
_HELLO_FIXED = struct.Struct("<BBBBBBIBBBBBBHHBB")


@dataclass(frozen=True, slots=True)
class Hello(Message):
    """HELLO (docs/protocol.md 5.3): identity, versions and capabilities of a device."""

    TYPE = PacketType.HELLO
    protocol_version: int
    fw_major: int
    fw_minor: int
    fw_patch: int
    board_kind: int
    flags: int
    board_uid: int
    n_lever_channels: int
    n_ttl_out: int
    n_digital_in: int
    max_states: int
    max_transitions: int
    max_gtimers: int
    max_machine_bytes: int
    sample_period_us: int
    max_packet: int
    adc_bits: int
    name: str

    @property
    def fw_version(self) -> str:
        return f"{self.fw_major}.{self.fw_minor}.{self.fw_patch}"

    @property
    def simulated(self) -> bool:
        return bool(self.flags & 1)

    def encode_body(self) -> bytes:
        name = self.name.encode("ascii")
        if not 1 <= len(name) <= 16:
            raise ValueError(f"HELLO name must be 1..16 ASCII bytes, got {self.name!r}")
        return _HELLO_FIXED.pack(*astuple(self)[:-1]) + name

    @classmethod
    def decode_body(cls, body: bytes) -> Self:
        n = _HELLO_FIXED.size
        if not n + 1 <= len(body) <= n + 16:
            raise BodyError(cls.TYPE, len(body), n + 1, "22 fixed bytes + 1..16 name bytes")
        name = bytes(body[n:]).decode("ascii", errors="replace")
        return cls(*_HELLO_FIXED.unpack_from(body), name)  # type: ignore[call-arg]


@dataclass(frozen=True, slots=True)
class Ack(Message):
    TYPE = PacketType.ACK
    FMT = "<BB"
    cmd_seq: int
    cmd_type: int


@dataclass(frozen=True, slots=True)
class Nak(Message):
    TYPE = PacketType.NAK
    FMT = "<BBBH"
    cmd_seq: int
    cmd_type: int
    error: int
    detail: int


@dataclass(frozen=True, slots=True)
class EventMsg(Message):
    """EVENT: ``code`` from ``EventCode``; ``arg``/``value`` per docs/state_machine.md 8."""

    TYPE = PacketType.EVENT
    FMT = "<QBBi"
    t_us: int
    code: int
    arg: int
    value: int


@dataclass(frozen=True, slots=True)
class Heartbeat(Message):
    TYPE = PacketType.HEARTBEAT
    FMT = "<QHHHHHBIBI"
    t_us: int
    crc_errors: int
    cobs_errors: int
    lost: int
    tx_dropped: int
    tick_overruns: int
    status: int
    trial_num: int
    state: int
    frames: int


@dataclass(frozen=True, slots=True)
class Text(Message):
    TYPE = PacketType.TEXT
    text: str

    def encode_body(self) -> bytes:
        return self.text.encode("ascii", errors="replace")[:124]

    @classmethod
    def decode_body(cls, body: bytes) -> Self:
        if not body:
            raise BodyError(cls.TYPE, 0, 1, "1..124 ASCII bytes")
        return cls(bytes(body).decode("ascii", errors="replace"))


_LEVER_HEAD = struct.Struct("<IQHB")


@dataclass(frozen=True, slots=True, eq=False)
class LeverBatch(Message):
    """LEVER: ``samples`` int16 (n,) raw counts; sample i at ``t0_us + i * period_us``."""

    TYPE = PacketType.LEVER
    first_index: int
    t0_us: int
    period_us: int
    samples: np.ndarray = field(repr=False)

    def times_us(self) -> np.ndarray:
        """int64 (n,) board times of the samples in µs."""
        return self.t0_us + self.period_us * np.arange(len(self.samples), dtype=np.int64)

    def encode_body(self) -> bytes:
        s = np.asarray(self.samples, dtype="<i2")
        if not 1 <= len(s) <= 50:
            raise ValueError(f"LEVER batch must have 1..50 samples, got {len(s)}")
        return _LEVER_HEAD.pack(self.first_index, self.t0_us, self.period_us, len(s)) + s.tobytes()

    @classmethod
    def decode_body(cls, body: bytes) -> Self:
        h = _LEVER_HEAD.size
        if len(body) < h:
            raise BodyError(cls.TYPE, len(body), h + 2, "15-byte header + n x i16")
        first, t0, period, n = _LEVER_HEAD.unpack_from(body)
        if n < 1 or len(body) != h + 2 * n:
            raise BodyError(cls.TYPE, len(body), h + 2 * n, f"n={n} samples")
        samples = np.frombuffer(bytes(body[h:]), dtype="<i2").astype(np.int16)
        return cls(first, t0, period, samples)

    def __eq__(self, other: Any) -> bool:
        return (
            isinstance(other, LeverBatch)
            and (self.first_index, self.t0_us, self.period_us)
            == (other.first_index, other.t0_us, other.period_us)
            and np.array_equal(self.samples, other.samples)
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class FrameEdge(Message):
    TYPE = PacketType.FRAME
    FMT = "<IQ"
    count: int
    t_us: int


@dataclass(frozen=True, slots=True)
class LeverZero(Message):
    TYPE = PacketType.LEVER_ZERO
    FMT = "<hB"
    mean_counts: int
    n: int


HOST_TO_BOARD: dict[int, type[Message]] = {
    c.TYPE: c
    for c in (
        GetHello,
        HostHeartbeat,
        SetConfig,
        SetStream,
        ResetSafe,
        ZeroLever,
        LoadBegin,
        LoadChunk,
        LoadCommit,
        StartTrial,
        StopTrial,
        AbortTrial,
        SoftEvent,
        OpenValve,
        PlayTone,
        SetTtl,
    )
}
BOARD_TO_HOST: dict[int, type[Message]] = {
    c.TYPE: c
    for c in (Hello, Ack, Nak, EventMsg, Heartbeat, Text, LeverBatch, FrameEdge, LeverZero)
}

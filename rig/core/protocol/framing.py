"""COBS framing, CRC-16/CCITT-FALSE, sequence numbers and the incremental stream decoder.

``encode_packet(msg, seq)`` gives the bytes to write; ``StreamDecoder.feed(data)`` takes any
chunking of the received bytes and returns the packets completed by it. The decoder never raises
on bad input: every kind of damage is counted in ``DecoderStats`` (docs/protocol.md, section 2)
and the stream resynchronises at the next 0x00.
"""

from __future__ import annotations

import binascii
from dataclasses import asdict, dataclass
from typing import Any

from cobs import cobs

from rig.core.protocol.codes import MAX_BODY, MAX_ENCODED, MAX_PACKET, PacketType
from rig.core.protocol.packets import BodyError, Message


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF); ``crc16(b"123456789") == 0x29B1``.

    ``binascii.crc_hqx`` is exactly this CRC when seeded with 0xFFFF (and runs in C).
    """
    return binascii.crc_hqx(data, 0xFFFF)


def frame_raw(ptype: int, seq: int, body: bytes) -> bytes:
    """COBS-frame ``type | seq | body | crc16`` and append the 0x00 delimiter."""
    if len(body) > MAX_BODY:
        raise ValueError(f"packet body is {len(body)} bytes, the maximum is {MAX_BODY}")
    pkt = bytes((ptype & 0xFF, seq & 0xFF)) + body
    pkt += crc16(pkt).to_bytes(2, "little")
    return cobs.encode(pkt) + b"\x00"


def encode_packet(msg: Message, seq: int) -> bytes:
    """Wire bytes of ``msg`` with sequence number ``seq`` (mod 256)."""
    return frame_raw(msg.TYPE, seq, msg.encode_body())


class PacketEncoder:
    """Stamps consecutive sequence numbers (u8, wrapping) on outgoing packets of one direction."""

    def __init__(self) -> None:
        self.seq = 0

    def encode(self, msg: Message) -> tuple[int, bytes]:
        """Return ``(seq, wire_bytes)`` for ``msg`` and advance the sequence number."""
        seq = self.seq
        self.seq = (seq + 1) & 0xFF
        return seq, encode_packet(msg, seq)


@dataclass(frozen=True, slots=True)
class Packet:
    """A packet that passed COBS and CRC and parsed into ``msg``."""

    seq: int
    msg: Message


@dataclass(frozen=True, slots=True)
class BadPacket:
    """A CRC-valid packet whose type is unknown or whose body does not parse.

    A board answers it with NAK (``UNKNOWN_TYPE`` or ``BAD_LENGTH``); a host just counts it.
    """

    ptype: int
    seq: int
    body: bytes
    reason: str
    expected_len: int = 0


@dataclass(slots=True)
class DecoderStats:
    """Counters of one receive direction (docs/protocol.md, section 2)."""

    bytes: int = 0
    packets: int = 0
    cobs_errors: int = 0
    oversize: int = 0
    runts: int = 0
    crc_errors: int = 0
    unknown_type: int = 0
    bad_length: int = 0
    lost: int = 0
    #: damaged first frames of a stream joined mid-frame (opening a port on a running board, or
    #: reconnecting): the tail of a frame sent before we listened, not damage on the link
    partial_at_start: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def errors(self) -> int:
        """Every damaged frame or packet, whatever the kind (loss not included)."""
        return (
            self.cobs_errors
            + self.oversize
            + self.runts
            + self.crc_errors
            + self.unknown_type
            + self.bad_length
        )


class StreamDecoder:
    """Incremental decoder of one byte stream.

    Parameters
    ----------
    registry : dict[int, type[Message]]
        Packet types this side understands (``BOARD_TO_HOST`` on a host).
    resync_types : set[int]
        Types whose ``seq == 0`` restarts sequence tracking without counting loss (a board's
        spontaneous HELLO after reset).
    joins_midstream : bool
        The stream may start inside a frame (a host opening the port of a board that is already
        talking): a damaged first frame, at the start and after :meth:`reset_sequence`, is
        counted in ``partial_at_start`` instead of as an error.
    """

    def __init__(
        self,
        registry: dict[int, type[Message]],
        resync_types: frozenset[int] = frozenset({PacketType.HELLO}),
        *,
        joins_midstream: bool = False,
    ) -> None:
        self.registry = registry
        self.resync_types = resync_types
        self.joins_midstream = joins_midstream
        self.stats = DecoderStats()
        self._buf = bytearray()
        self._discarding = False
        self._expected_seq: int | None = None
        self._at_start = joins_midstream

    def reset_sequence(self) -> None:
        """Forget the expected sequence number (after reconnect): the next packet sets it."""
        self._expected_seq = None
        self._at_start = self.joins_midstream

    def feed(self, data: bytes) -> list[Packet | BadPacket]:
        """Consume ``data`` (any chunking) and return the packets it completes, in order."""
        self.stats.bytes += len(data)
        out: list[Packet | BadPacket] = []
        start = 0
        while True:
            end = data.find(0, start)
            if end < 0:
                self._accumulate(data[start:])
                return out
            self._accumulate(data[start:end])
            if self._discarding:
                self._discarding = False
            elif self._buf:
                at_start, self._at_start = self._at_start, False
                before = self._frame_errors() if at_start else None
                item = self._decode_frame(bytes(self._buf))
                if item is not None:
                    out.append(item)
                elif before is not None:
                    self._forgive_partial(before)
            self._buf.clear()
            start = end + 1

    _FRAME_ERRORS = ("cobs_errors", "runts", "oversize", "crc_errors")

    def _frame_errors(self) -> tuple[int, ...]:
        return tuple(getattr(self.stats, n) for n in self._FRAME_ERRORS)

    def _forgive_partial(self, before: tuple[int, ...]) -> None:
        """Move the error the first frame just counted (if any) to ``partial_at_start``."""
        for name, was in zip(self._FRAME_ERRORS, before, strict=True):
            if getattr(self.stats, name) > was:
                setattr(self.stats, name, was)
                self.stats.partial_at_start += 1
                return

    def _accumulate(self, part: bytes) -> None:
        if self._discarding or not part:
            return
        self._buf += part
        if len(self._buf) > MAX_ENCODED:
            self.stats.oversize += 1
            self._buf.clear()
            self._discarding = True

    def _decode_frame(self, frame: bytes) -> Packet | BadPacket | None:
        try:
            pkt = cobs.decode(frame)
        except cobs.DecodeError:
            self.stats.cobs_errors += 1
            return None
        if len(pkt) < 4 or len(pkt) > MAX_PACKET:
            self.stats.runts += len(pkt) < 4
            self.stats.oversize += len(pkt) > MAX_PACKET
            return None
        if crc16(pkt[:-2]) != int.from_bytes(pkt[-2:], "little"):
            self.stats.crc_errors += 1
            return None
        ptype, seq, body = pkt[0], pkt[1], pkt[2:-2]
        self._track_seq(ptype, seq)
        self.stats.packets += 1
        cls = self.registry.get(ptype)
        if cls is None:
            self.stats.unknown_type += 1
            return BadPacket(ptype, seq, body, f"unknown packet type 0x{ptype:02X}")
        try:
            return Packet(seq, cls.decode_body(body))
        except BodyError as e:
            self.stats.bad_length += 1
            return BadPacket(ptype, seq, body, str(e), e.expected_len)
        except (ValueError, UnicodeDecodeError) as e:  # e.g. an enum or text field out of range
            self.stats.bad_length += 1
            return BadPacket(ptype, seq, body, f"{cls.__name__}: {e}")

    def _track_seq(self, ptype: int, seq: int) -> None:
        if self._expected_seq is not None and not (seq == 0 and ptype in self.resync_types):
            gap = (seq - self._expected_seq) & 0xFF
            self.stats.lost += gap
        self._expected_seq = (seq + 1) & 0xFF

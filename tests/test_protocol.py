"""Wire codec: CRC, COBS framing, every packet round trip, damage counted, never raised."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rig.core.protocol import (
    BOARD_TO_HOST,
    HOST_TO_BOARD,
    PROTOCOL_VERSION,
    AbortTrial,
    Ack,
    BadPacket,
    EventMsg,
    FrameEdge,
    GetHello,
    Heartbeat,
    Hello,
    HostHeartbeat,
    LeverBatch,
    LeverZero,
    LoadBegin,
    LoadChunk,
    LoadCommit,
    Nak,
    OpenValve,
    Packet,
    PacketEncoder,
    PacketType,
    PlayTone,
    ResetSafe,
    SetConfig,
    SetStream,
    SetTtl,
    SoftEvent,
    StartTrial,
    StopTrial,
    StreamDecoder,
    Text,
    ZeroLever,
    crc16,
    encode_packet,
    frame_raw,
)

HELLO = Hello(1, 1, 0, 0, 1, 1, 0xDEADBEEF, 1, 4, 2, 16, 48, 4, 416, 1000, 128, 10, "lever_board")
BOARD_MSGS = [
    HELLO,
    Ack(7, PacketType.START_TRIAL),
    Nak(8, PacketType.OPEN_VALVE, 10, 500),
    EventMsg(2**40 + 5, 0x22, 3, -123456),
    Heartbeat(123456789, 1, 2, 3, 4, 5, 0b1011, 42, 3, 99999),
    Text("hello world"),
    LeverBatch(2**32 - 1, 10_000, 1000, np.array([0, 1023, -5, 32767, -32768], np.int16)),
    FrameEdge(17, 2**50),
    LeverZero(-3, 16),
]
HOST_MSGS = [
    GetHello(PROTOCOL_VERSION),
    HostHeartbeat(),
    SetConfig(500, 2000),
    SetStream(1, 10),
    ResetSafe(),
    ZeroLever(),
    LoadBegin(416, 0xBEEF),
    LoadChunk(120, bytes(range(120))),
    LoadCommit(),
    StartTrial(2**32 - 1),
    StopTrial(),
    AbortTrial(),
    SoftEvent(7),
    OpenValve(40),
    PlayTone(10_000, 1000),
    SetTtl(0x0F, 0x05),
]


def test_crc_is_ccitt_false() -> None:
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF


def test_wire_layout_is_documented_one() -> None:
    """type | seq | body | crc16 little-endian, COBS, 0x00 delimiter: checked byte by byte."""
    wire = encode_packet(OpenValve(0x0102), 5)
    assert wire.endswith(b"\x00") and 0 not in wire[:-1]
    raw = bytes([0x20, 5, 0x02, 0x01])
    crc = crc16(raw)
    # no zero in the packet (unless the CRC has one) -> COBS is one code byte + the data
    if 0 not in crc.to_bytes(2, "little"):
        assert wire == bytes([len(raw) + 3]) + raw + crc.to_bytes(2, "little") + b"\x00"


@pytest.mark.parametrize("msg", BOARD_MSGS, ids=lambda m: type(m).__name__)
def test_board_packets_round_trip(msg: object) -> None:
    dec = StreamDecoder(BOARD_TO_HOST)
    out = dec.feed(encode_packet(msg, 200))  # type: ignore[arg-type]
    assert out == [Packet(200, msg)]  # type: ignore[arg-type]
    assert dec.stats.errors == 0


@pytest.mark.parametrize("msg", HOST_MSGS, ids=lambda m: type(m).__name__)
def test_host_packets_round_trip(msg: object) -> None:
    dec = StreamDecoder(HOST_TO_BOARD)
    assert dec.feed(encode_packet(msg, 3)) == [Packet(3, msg)]  # type: ignore[arg-type]


def test_every_type_is_registered_once() -> None:
    assert not set(HOST_TO_BOARD) & set(BOARD_TO_HOST)
    assert all(t < 0x40 for t in HOST_TO_BOARD) and all(t >= 0x80 for t in BOARD_TO_HOST)


def test_byte_at_a_time_and_one_big_chunk_agree() -> None:
    enc = PacketEncoder()
    wire = b"".join(enc.encode(m)[1] for m in BOARD_MSGS * 3)
    a, b = StreamDecoder(BOARD_TO_HOST), StreamDecoder(BOARD_TO_HOST)
    whole = a.feed(wire)
    single = [p for i in range(len(wire)) for p in b.feed(wire[i : i + 1])]
    assert whole == single and len(whole) == 3 * len(BOARD_MSGS)
    assert a.stats.lost == 0 and b.stats.lost == 0


def test_sequence_gaps_count_lost_packets_with_wrap() -> None:
    dec = StreamDecoder(BOARD_TO_HOST)
    seqs = [250, 251, 252, 255, 0, 1, 5]  # 3 missing before 255 is wrong: 253, 254 -> 2
    for s in seqs:
        dec.feed(encode_packet(Ack(0, 1), s))
    assert dec.stats.lost == 2 + 3
    assert dec.stats.packets == len(seqs)


def test_spontaneous_hello_with_seq_zero_resyncs_without_loss() -> None:
    dec = StreamDecoder(BOARD_TO_HOST)
    dec.feed(encode_packet(Ack(0, 1), 77))
    dec.feed(encode_packet(HELLO, 0))  # board reset
    dec.feed(encode_packet(Ack(0, 1), 1))
    assert dec.stats.lost == 0


def test_damage_is_counted_and_stream_resyncs() -> None:
    dec = StreamDecoder(BOARD_TO_HOST)
    good = encode_packet(Ack(1, 2), 0)
    bad_crc = bytearray(encode_packet(Ack(1, 2), 1))
    bad_crc[2] ^= 0x40  # flip a data bit, keep COBS valid (no new zero)
    out = dec.feed(
        bytes(bad_crc)
        + b"\x05\x01\x00"  # COBS code says 4 bytes follow, only 1 does
        + b"\x03\x81\x02\x00"  # decodes to 2 bytes: runt
        + b"\xff" * 300
        + b"\x00"  # oversize
        + frame_raw(0x7E, 3, b"\x01")  # unknown type
        + frame_raw(0x81, 4, b"\x01")  # ACK with a 1-byte body: bad length
        + good
    )
    s = dec.stats
    assert (s.crc_errors, s.cobs_errors, s.runts, s.oversize) == (1, 1, 1, 1)
    assert (s.unknown_type, s.bad_length) == (1, 1)
    assert isinstance(out[0], BadPacket) and out[0].ptype == 0x7E
    assert isinstance(out[1], BadPacket) and out[1].expected_len == 2
    assert out[2] == Packet(0, Ack(1, 2))


def test_truncated_packet_then_good_packet() -> None:
    dec = StreamDecoder(BOARD_TO_HOST)
    wire = encode_packet(EventMsg(1, 2, 3, 4), 0)
    out = dec.feed(wire[: len(wire) // 2] + b"\x00" + encode_packet(EventMsg(5, 6, 7, 8), 1))
    assert out == [Packet(1, EventMsg(5, 6, 7, 8))]
    assert dec.stats.errors == 1


def test_wrong_protocol_version_hello_still_decodes_for_the_host_to_refuse() -> None:
    hello = dataclasses.replace(HELLO, protocol_version=2)
    out = StreamDecoder(BOARD_TO_HOST).feed(encode_packet(hello, 0))
    assert isinstance(out[0], Packet) and out[0].msg.protocol_version == 2  # type: ignore[attr-defined]


def test_encoder_refuses_oversized_body() -> None:
    with pytest.raises(ValueError, match="maximum is 124"):
        frame_raw(0x85, 0, b"x" * 125)


def test_a_stream_joined_mid_frame_forgives_only_its_first_frame() -> None:
    """A host that opens the port of a board already talking reads the tail of a frame first:
    with ``joins_midstream`` that one damaged frame is ``partial_at_start``, not an error;
    damage later still counts, and ``reset_sequence`` (a reconnect) forgives one again."""
    first = encode_packet(EventMsg(1, 2, 3, 4), 0)
    tail = first[len(first) // 2 :]  # ends with the delimiter
    good = encode_packet(EventMsg(5, 6, 7, 8), 1)
    bad = bytearray(encode_packet(EventMsg(5, 6, 7, 8), 2))
    bad[3] ^= 0x40  # one flipped data bit: a CRC error
    for joins in (False, True):
        dec = StreamDecoder(BOARD_TO_HOST, joins_midstream=joins)
        out = dec.feed(tail + good + bytes(bad) + good)
        assert out == [Packet(1, EventMsg(5, 6, 7, 8))] * 2
        assert dec.stats.partial_at_start == int(joins)
        assert dec.stats.errors == 2 - int(joins)  # the flipped bit always counts
    dec.reset_sequence()
    dec.feed(tail + good)
    assert dec.stats.partial_at_start == 2 and dec.stats.errors == 1
    # a clean first frame is simply accepted, and a later tail is an error
    dec = StreamDecoder(BOARD_TO_HOST, joins_midstream=True)
    assert dec.feed(good + tail) == [Packet(1, EventMsg(5, 6, 7, 8))]
    assert dec.stats.partial_at_start == 0 and dec.stats.errors == 1


def test_random_garbage_between_packets() -> None:
    rng = random.Random(4)
    enc = PacketEncoder()
    dec = StreamDecoder(BOARD_TO_HOST)
    sent, stream = [], bytearray()
    for i in range(300):
        msg = EventMsg(i, 1, 0, i)
        sent.append(msg)
        stream += enc.encode(msg)[1]
        if i % 3 == 0:
            stream += b"\x00" + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40)))
            stream += b"\x00"
    got = [p.msg for p in dec.feed(bytes(stream)) if isinstance(p, Packet)]
    # random bytes can only very rarely form a CRC-valid packet; every real one survives
    assert [m for m in got if m in sent] == sent
    assert dec.stats.errors > 50


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=200), max_size=8))
def test_fuzz_decoder_never_raises_and_recovers(chunks: list[bytes]) -> None:
    dec = StreamDecoder(BOARD_TO_HOST)
    for c in chunks:
        for item in dec.feed(c):
            assert isinstance(item, Packet | BadPacket)
    # whatever came before, a delimiter then a good packet decodes
    out = dec.feed(b"\x00" + encode_packet(Ack(9, 9), 0))
    assert out[-1] == Packet(0, Ack(9, 9))
    assert dec.stats.bytes == sum(map(len, chunks)) + len(encode_packet(Ack(9, 9), 0)) + 1


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(BOARD_MSGS), min_size=1, max_size=20),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=5),
    st.integers(1, 64),
)
def test_fuzz_damaged_stream_keeps_every_untouched_packet(
    msgs: list, hits: list[tuple[int, int]], chunk: int
) -> None:
    enc = PacketEncoder()
    frames = [enc.encode(m)[1] for m in msgs]
    stream = bytearray(b"".join(frames))
    touched: set[int] = set()
    bounds, pos = [], 0
    for f in frames:
        bounds.append((pos, pos + len(f)))
        pos += len(f)
    for where, value in hits:
        at = where % len(stream)
        if stream[at] != value:
            stream[at] = value
            # damage can spill into the next frame if it removes a delimiter
            touched |= {i for i, (a, b) in enumerate(bounds) if a <= at < b or a == at + 1}
    dec = StreamDecoder(BOARD_TO_HOST)
    got = [p for i in range(0, len(stream), chunk) for p in dec.feed(bytes(stream[i : i + chunk]))]
    good = [p.msg for p in got if isinstance(p, Packet)]
    expected = [m for i, m in enumerate(msgs) if i not in touched]
    it = iter(good)
    assert all(any(g == m for g in it) for m in expected)  # in order, as a subsequence

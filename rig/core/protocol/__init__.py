"""The wire protocol shared by every serial device (spec: docs/protocol.md).

- ``codes``: packet types, NAK errors, EVENT codes, protocol constants.
- ``packets``: one dataclass per packet body (``Hello``, ``Ack``, ``EventMsg``, ...) with
  ``encode_body``/``decode_body``; ``HOST_TO_BOARD`` and ``BOARD_TO_HOST`` registries.
- ``framing``: CRC-16/CCITT-FALSE, COBS framing, ``PacketEncoder`` (sequence numbers) and
  ``StreamDecoder`` (incremental, never raises, counts every kind of damage).

Typical host use::

    enc, dec = PacketEncoder(), StreamDecoder(BOARD_TO_HOST)
    seq, wire = enc.encode(GetHello(PROTOCOL_VERSION))
    for item in dec.feed(received_bytes):
        if isinstance(item, Packet): ...

A device other than the lever board (the rotarod) extends the registry with its own classes
(types 0x40-0x5F) and reuses everything else.
"""

from rig.core.protocol.codes import (
    INPUT_EVENTS,
    INPUT_PRIORITY,
    LEVER_FIRMWARE_NAME,
    LEVER_FIRMWARE_VERSION,
    MAX_BODY,
    MAX_CHUNK,
    MAX_PACKET,
    PROTOCOL_VERSION,
    BoardKind,
    ErrorCode,
    EventCode,
    PacketType,
)
from rig.core.protocol.framing import (
    BadPacket,
    DecoderStats,
    Packet,
    PacketEncoder,
    StreamDecoder,
    crc16,
    encode_packet,
    frame_raw,
)
from rig.core.protocol.packets import (
    BOARD_TO_HOST,
    HOST_TO_BOARD,
    AbortTrial,
    Ack,
    BodyError,
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
    Message,
    Nak,
    OpenValve,
    PlayTone,
    ResetSafe,
    SetConfig,
    SetStream,
    SetTtl,
    SoftEvent,
    StartTrial,
    StopTrial,
    Text,
    ZeroLever,
)

__all__ = [
    "BOARD_TO_HOST",
    "HOST_TO_BOARD",
    "INPUT_EVENTS",
    "INPUT_PRIORITY",
    "LEVER_FIRMWARE_NAME",
    "LEVER_FIRMWARE_VERSION",
    "MAX_BODY",
    "MAX_CHUNK",
    "MAX_PACKET",
    "PROTOCOL_VERSION",
    "AbortTrial",
    "Ack",
    "BadPacket",
    "BoardKind",
    "BodyError",
    "DecoderStats",
    "ErrorCode",
    "EventCode",
    "EventMsg",
    "FrameEdge",
    "GetHello",
    "Heartbeat",
    "Hello",
    "HostHeartbeat",
    "LeverBatch",
    "LeverZero",
    "LoadBegin",
    "LoadChunk",
    "LoadCommit",
    "Message",
    "Nak",
    "OpenValve",
    "Packet",
    "PacketEncoder",
    "PacketType",
    "PlayTone",
    "ResetSafe",
    "SetConfig",
    "SetStream",
    "SetTtl",
    "SoftEvent",
    "StartTrial",
    "StopTrial",
    "StreamDecoder",
    "Text",
    "ZeroLever",
    "crc16",
    "encode_packet",
    "frame_raw",
]

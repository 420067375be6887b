"""Numeric codes of the wire protocol and the state machine.

Specs: docs/protocol.md and docs/state_machine.md.

One place for every number both engines and all devices share: packet types, NAK error codes,
EVENT codes and the firmware identity the host expects in HELLO.
"""

from __future__ import annotations

from enum import IntEnum

PROTOCOL_VERSION = 1
MAX_PACKET = 128  # decoded bytes: type + seq + body + crc16
MAX_BODY = MAX_PACKET - 4
MAX_ENCODED = MAX_PACKET + 1  # COBS adds one byte per 254; the 0x00 delimiter is extra
MAX_CHUNK = 120  # LOAD_CHUNK data bytes

LEVER_FIRMWARE_NAME = "lever_board"
LEVER_FIRMWARE_VERSION = (1, 0, 0)


class PacketType(IntEnum):
    """Packet ``type`` byte. 0x40-0x5F are reserved for the rotarod (docs/rotarod.md)."""

    # host -> board, shared by every device
    GET_HELLO = 0x01
    HOST_HEARTBEAT = 0x02
    SET_CONFIG = 0x03
    SET_STREAM = 0x04
    RESET_SAFE = 0x05
    ZERO_LEVER = 0x06
    # host -> lever board
    LOAD_BEGIN = 0x10
    LOAD_CHUNK = 0x11
    LOAD_COMMIT = 0x12
    START_TRIAL = 0x13
    STOP_TRIAL = 0x14
    ABORT_TRIAL = 0x15
    SOFT_EVENT = 0x16
    OPEN_VALVE = 0x20
    PLAY_TONE = 0x21
    SET_TTL = 0x22
    # board -> host, shared
    HELLO = 0x80
    ACK = 0x81
    NAK = 0x82
    EVENT = 0x83
    HEARTBEAT = 0x84
    TEXT = 0x85
    # lever board -> host
    LEVER = 0x90
    FRAME = 0x91
    LEVER_ZERO = 0x92


class ErrorCode(IntEnum):
    """NAK ``error`` byte; the meaning of ``detail`` is in docs/protocol.md, section 4."""

    BAD_LENGTH = 1
    UNKNOWN_TYPE = 2
    BAD_VALUE = 3
    BUSY = 4
    NO_MACHINE = 5
    MACHINE_INVALID = 6
    MACHINE_TOO_BIG = 7
    LOAD_ORDER = 8
    MACHINE_CRC = 9
    VALVE_CAP = 10
    VERSION = 11


class BoardKind(IntEnum):
    UNO = 1
    MEGA = 2


class EventCode(IntEnum):
    """EVENT ``code`` byte; 0x01-0x1F may drive transitions (docs/state_machine.md, section 8)."""

    NONE = 0x00
    LEVER_UP = 0x01
    LEVER_DOWN = 0x02
    LEVER_REST = 0x03
    LEVER_UNREST = 0x04
    LEVER_OVER = 0x05
    LICK_ON = 0x06
    LICK_OFF = 0x07
    TUP = 0x08
    GTIMER_0 = 0x10
    GTIMER_1 = 0x11
    GTIMER_2 = 0x12
    GTIMER_3 = 0x13
    SOFT_0 = 0x18
    SOFT_1 = 0x19
    SOFT_2 = 0x1A
    SOFT_3 = 0x1B
    SOFT_4 = 0x1C
    SOFT_5 = 0x1D
    SOFT_6 = 0x1E
    SOFT_7 = 0x1F
    TRIAL_START = 0x20
    TRIAL_END = 0x21
    STATE_ENTER = 0x22
    VALVE_ON = 0x28
    VALVE_OFF = 0x29
    TONE_ON = 0x2A
    TONE_OFF = 0x2B
    TTL = 0x2C
    TRIAL_CODE = 0x2D
    HOST_TIMEOUT = 0x30
    HOST_RESUMED = 0x31
    START_DROPPED = 0x32

    @property
    def event_name(self) -> str:
        """Lower-case name as used in machine definitions and the session log (``lever_up``)."""
        return self.name.lower()


#: Input events a transition may name, in the priority order of docs/state_machine.md 4.5.
INPUT_PRIORITY: tuple[EventCode, ...] = (
    EventCode.LEVER_OVER,
    EventCode.LEVER_DOWN,
    EventCode.LEVER_UP,
    EventCode.LEVER_UNREST,
    EventCode.LEVER_REST,
    EventCode.LICK_ON,
    EventCode.LICK_OFF,
    EventCode.TUP,
    EventCode.GTIMER_0,
    EventCode.GTIMER_1,
    EventCode.GTIMER_2,
    EventCode.GTIMER_3,
    EventCode.SOFT_0,
    EventCode.SOFT_1,
    EventCode.SOFT_2,
    EventCode.SOFT_3,
    EventCode.SOFT_4,
    EventCode.SOFT_5,
    EventCode.SOFT_6,
    EventCode.SOFT_7,
)
INPUT_EVENTS = frozenset(INPUT_PRIORITY)
PRIORITY_RANK = {code: rank for rank, code in enumerate(INPUT_PRIORITY)}

# EVENT ``arg`` values that say who changed an output
SOURCE_MACHINE = 0
SOURCE_HOST = 1
SOURCE_SAFE = 2
ABORTED_STATE = 0xFF

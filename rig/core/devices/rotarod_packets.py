"""Rotarod packet types and constants (docs/rotarod.md), on the shared wire protocol.

Host->board commands 0x40-0x42 and board->host packets 0x50-0x54, the lookup tables the
decoders use (the shared packets included), the firmware's name and version, the reasons a ramp
stops and the rotarod's HEARTBEAT status bits. No I/O here: the driver is ``rotarod``.
"""

from __future__ import annotations

from dataclasses import dataclass

from rig.core.protocol import (
    BOARD_TO_HOST,
    GetHello,
    Heartbeat,
    HostHeartbeat,
    Message,
    ResetSafe,
    SetConfig,
)

ROTAROD_FIRMWARE_NAME = "rotarod"
ROTAROD_FIRMWARE_VERSION = (1, 1, 0)
#: the first firmware that judges host silence (SET_CONFIG's host_timeout_ms)
HOST_TIMEOUT_SINCE = (1, 1)
#: ROD_STOPPED reasons
STOP_CUTOFF, STOP_HOST, STOP_HOST_SILENT = 0, 1, 2
#: HEARTBEAT status bits of the rotarod
STATUS_TURNING, STATUS_HOST_TIMED_OUT = 0x01, 0x08


# ----------------------------------------------------------------------------- packets
@dataclass(frozen=True, slots=True)
class RodConfig(Message):
    """0x40 host->board: rod and lane setup (NAK BUSY while the rod turns)."""

    TYPE = 0x40
    FMT = "<HBHBBB"
    steps_per_rev: int
    n_lanes: int
    debounce_ms: int
    fall_active_low_mask: int
    passive_mask: int
    passive_active_low_mask: int


@dataclass(frozen=True, slots=True)
class StartRamp(Message):
    """0x41 host->board: ramp ``start_mrpm -> end_mrpm`` over ``ramp_ms``, cutoff ``max_ms``."""

    TYPE = 0x41
    FMT = "<IIII"
    start_mrpm: int
    end_mrpm: int
    ramp_ms: int
    max_ms: int


@dataclass(frozen=True, slots=True)
class StopRod(Message):
    """0x42 host->board: stop stepping now (ACK also when idle)."""

    TYPE = 0x42


@dataclass(frozen=True, slots=True)
class RodStarted(Message):
    """0x50: the ramp's tick 0 (``t_us``) and what it runs."""

    TYPE = 0x50
    FMT = "<QIIII"
    t_us: int
    start_mrpm: int
    end_mrpm: int
    ramp_ms: int
    max_ms: int


@dataclass(frozen=True, slots=True)
class RodSpeed(Message):
    """0x51: rod speed every 50 ms; ``rpm_mrpm`` measured from steps over the last ~250 ms."""

    TYPE = 0x51
    FMT = "<QIII"
    t_us: int
    steps: int
    rpm_mrpm: int
    nominal_mrpm: int


@dataclass(frozen=True, slots=True)
class LaneFall(Message):
    """0x52: a debounced fall; ``t_us`` is the onset edge, speed fields at the onset."""

    TYPE = 0x52
    FMT = "<QBIII"
    t_us: int
    lane: int
    steps: int
    rpm_mrpm: int
    nominal_mrpm: int


@dataclass(frozen=True, slots=True)
class PassiveRotation(Message):
    """0x53: one full passive rotation seen by the lane's passive sensor (same layout as 0x52)."""

    TYPE = 0x53
    FMT = "<QBIII"
    t_us: int
    lane: int
    steps: int
    rpm_mrpm: int
    nominal_mrpm: int


@dataclass(frozen=True, slots=True)
class RodStopped(Message):
    """0x54: stepping ended; ``reason``: 0 cutoff at max_ms, 1 host stop/reset, 2 host silent."""

    TYPE = 0x54
    FMT = "<QIB"
    t_us: int
    steps: int
    reason: int


ROTAROD_HOST_TO_BOARD: dict[int, type[Message]] = {
    c.TYPE: c
    for c in (GetHello, HostHeartbeat, SetConfig, ResetSafe, RodConfig, StartRamp, StopRod)
}
ROTAROD_BOARD_TO_HOST: dict[int, type[Message]] = {
    **BOARD_TO_HOST,
    **{c.TYPE: c for c in (RodStarted, RodSpeed, LaneFall, PassiveRotation, RodStopped)},
}
RodEvent = RodStarted | RodSpeed | LaneFall | PassiveRotation | RodStopped | Heartbeat

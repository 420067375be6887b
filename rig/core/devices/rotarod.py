"""The rotarod: the adapter interface and our firmware's driver (packets: ``rotarod_packets``).

``RotarodAdapter`` is what the runner talks to; ``Rotarod`` implements it over our wire protocol
(real board, firmware under simavr, or the Python simulated rod of ``rotarod_sim``), and a
commercial rotarod with its own serial protocol would be another subclass. Events reach the
caller through ``on_event`` callbacks, from the reader thread.

Host silence: ``Rotarod.open`` sets the board's ``host_timeout_ms`` (SET_CONFIG, as on the lever
board) and keeps the board fed with HOST_HEARTBEATs, so a turning rod stops by itself
(ROD_STOPPED reason ``STOP_HOST_SILENT``) when this host stalls or dies, never while it is healthy.
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar

from rig.core.devices.channel import CommandChannel, CommandError
from rig.core.devices.rotarod_packets import (
    HOST_TIMEOUT_SINCE,
    ROTAROD_BOARD_TO_HOST,
    ROTAROD_FIRMWARE_NAME,
    ROTAROD_FIRMWARE_VERSION,
    ROTAROD_HOST_TO_BOARD,
    STATUS_HOST_TIMED_OUT,
    STATUS_TURNING,
    STOP_CUTOFF,
    STOP_HOST,
    STOP_HOST_SILENT,
    LaneFall,
    PassiveRotation,
    RodConfig,
    RodEvent,
    RodSpeed,
    RodStarted,
    RodStopped,
    StartRamp,
    StopRod,
)
from rig.core.errors import RigError
from rig.core.events import Event
from rig.core.protocol import (
    PROTOCOL_VERSION,
    GetHello,
    Heartbeat,
    Hello,
    HostHeartbeat,
    Message,
    SetConfig,
    StreamDecoder,
)
from rig.core.transport import Transport, TransportClosed

FLASH_HINT = (
    "flash the rotarod firmware: make -C firmware upload SKETCH=rotarod BOARD=uno (or mega), "
    "or open firmware/rotarod/rotarod.ino in the Arduino IDE and upload it"
)

# the packet names are re-exported: callers import them from here
__all__ = [
    "FLASH_HINT",
    "HOST_TIMEOUT_SINCE",
    "ROTAROD_BOARD_TO_HOST",
    "ROTAROD_FIRMWARE_NAME",
    "ROTAROD_FIRMWARE_VERSION",
    "ROTAROD_HOST_TO_BOARD",
    "STATUS_HOST_TIMED_OUT",
    "STATUS_TURNING",
    "STOP_CUTOFF",
    "STOP_HOST",
    "STOP_HOST_SILENT",
    "Heartbeat",
    "LaneFall",
    "PassiveRotation",
    "RodConfig",
    "RodEvent",
    "RodSpeed",
    "RodStarted",
    "RodStopped",
    "Rotarod",
    "RotarodAdapter",
    "RotarodError",
    "StartRamp",
    "StopRod",
    "check_hello",
]


# ----------------------------------------------------------------------------- interface
class RotarodError(RigError):
    """The rotarod refused a command, did not answer, or is not the expected firmware."""


class RotarodAdapter(ABC):
    """A rotarod as the runner sees it. Subclass per protocol (ours, or a commercial rod's).

    Events (``RodStarted``, ``RodSpeed``, ``LaneFall``, ``PassiveRotation``, ``RodStopped``) go
    to every callback in ``on_event``, in device order, from the reader thread.
    """

    name: str = "rotarod"
    n_lanes: int = 5
    steps_per_rev: int = 3200

    def __init__(self) -> None:
        self.on_event: list[Callable[[Message], None]] = []
        self.hello: Hello | None = None

    @abstractmethod
    def open(self) -> Hello:
        """Connect, check identity and versions (``RotarodError`` on mismatch), configure."""

    @abstractmethod
    def start_ramp(self, start_rpm: float, end_rpm: float, ramp_s: float, max_s: float) -> None:
        """Start an accelerating ramp; returns once the rod accepted it."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the rod now."""

    @abstractmethod
    def close(self) -> None: ...

    def safe_state(self) -> None:
        """The rod stopped. Never raises: called on every exit path, also after errors."""
        # a dead link is safe enough: the board stops by itself at the cutoff, and our firmware
        # after host_timeout_ms without a host packet
        with contextlib.suppress(Exception):
            self.stop()

    def _emit(self, msg: Message) -> None:
        for cb in list(self.on_event):
            cb(msg)


def check_hello(hello: Hello, where: str) -> None:
    """Refuse a device that is not our rotarod firmware at a compatible version."""
    found = f"{hello.name!r} firmware {hello.fw_version}, protocol {hello.protocol_version}"
    if hello.name != ROTAROD_FIRMWARE_NAME:
        raise RotarodError(f"{where}: found {found}, expected 'rotarod'; {FLASH_HINT}")
    if hello.protocol_version != PROTOCOL_VERSION:
        raise RotarodError(
            f"{where}: found {found}, this host speaks protocol {PROTOCOL_VERSION}; {FLASH_HINT}"
        )
    if hello.fw_major != ROTAROD_FIRMWARE_VERSION[0]:
        raise RotarodError(
            f"{where}: found {found}, this host needs rotarod firmware "
            f"{ROTAROD_FIRMWARE_VERSION[0]}.x; {FLASH_HINT}"
        )


# ----------------------------------------------------------------------------- our driver
# on_event: the adapter's list of packet listeners replaces the channel's Event callback, which
# the channel only calls from _emit_event, overridden here
class Rotarod(CommandChannel, RotarodAdapter):  # type: ignore[misc]
    """Driver of our rotarod firmware (firmware/rotarod) over any ``Transport``.

    The command link (sequence numbers, ACK/NAK waits that do not count a stalled host, the
    reader and host-heartbeat threads) is ``CommandChannel``'s, as for the lever board.

    Parameters
    ----------
    transport : Transport
        Serial port, the firmware under simavr, or the Python simulated rod of ``rotarod_sim``.
    n_lanes, steps_per_rev, debounce_ms, passive_lanes_mask
        Sent in ROD_CONFIG at ``open``. Fall sensors are active-low (trip plates to ground).
    where : str
        Port or description, for error messages (``name`` is the device's name in the session).
    command_timeout_s : float
        Longest wait for an ACK/NAK.
    on_raw : callable(t_host_ns, data), optional
        Gets every received chunk with its host receive time, for ``raw/rotarod.bin``.
    host_timeout_ms : int
        The board stops a turning rod after this long without a host packet (SET_CONFIG at
        ``open``; 0 = off, else 100..60000 ms). Firmware before 1.1 has no such stop.
    host_heartbeat_s : float
        HOST_HEARTBEAT period, both in host time (the channel's thread) and in board time
        (answering the board's own heartbeats from the reader): the clock of a simulated rod
        may run far ahead of the wall clock, and only board time counts for its timeout.
    """

    MAX_RPM: ClassVar[float] = 300.0
    _logger = logging.getLogger(__name__)

    def __init__(
        self,
        transport: Transport,
        *,
        n_lanes: int = 5,
        steps_per_rev: int = 3200,
        debounce_ms: float = 500.0,
        passive_lanes_mask: int = 0,
        where: str = "rotarod",
        command_timeout_s: float = 2.0,
        on_raw: Callable[[int, bytes], None] | None = None,
        host_timeout_ms: int = 2000,
        host_heartbeat_s: float = 0.25,
    ) -> None:
        if host_timeout_ms != 0 and not 100 <= host_timeout_ms <= 60_000:
            raise ValueError(
                f"host_timeout_ms must be 0 (off) or 100..60000 ms, got {host_timeout_ms}"
            )
        if host_timeout_ms and not 0 < host_heartbeat_s * 1000 <= host_timeout_ms / 4:
            raise ValueError(
                f"host_heartbeat_s ({host_heartbeat_s}) must be > 0 and at most a quarter of "
                f"host_timeout_ms ({host_timeout_ms} ms), so that one late beat cannot trip it"
            )
        # no reconnect: a trial cannot survive a lost rod link, the runner's deadline ends it
        CommandChannel.__init__(
            self,
            transport,
            where,
            on_raw=on_raw,
            command_timeout_s=command_timeout_s,
            host_heartbeat_s=host_heartbeat_s,
            reconnect=False,
        )
        RotarodAdapter.__init__(self)  # after the channel's: on_event is the adapter's list
        self._decoder = StreamDecoder(ROTAROD_BOARD_TO_HOST, joins_midstream=True)
        self.where = where
        self.n_lanes = n_lanes
        self.steps_per_rev = steps_per_rev
        self.debounce_ms = debounce_ms
        self.passive_lanes_mask = passive_lanes_mask
        self.host_timeout_ms = host_timeout_ms
        self._beating = False
        self._beat_board_us: int | None = None  # board time of the last board-paced beat
        self.last_heartbeat: Heartbeat | None = None
        self.link_error: str | None = None

    @property
    def decoder(self) -> StreamDecoder:
        """The receive side's decoder (its ``stats`` count CRC errors and lost packets)."""
        return self._decoder

    # ------------------------------------------------------------------ channel hooks
    def _on_message(self, msg: Message, t_ns: int) -> None:
        if isinstance(msg, Hello):
            self.hello = msg
        elif isinstance(msg, Heartbeat):
            self.last_heartbeat = msg
            self._beat_in_board_time(msg.t_us)
            self._emit(msg)
        else:
            self._emit(msg)

    def _emit_event(self, ev: Event) -> None:
        # the channel's link events (link_lost); on_event carries rod packets, not Events
        if ev.name == "link_lost":
            self.link_error = f"{self.name}: link lost: {ev.data.get('reason', '')}"

    def _beat_in_board_time(self, t_us: int) -> None:
        """Answer the board's heartbeats every ``host_heartbeat_s`` of *board* time."""
        last = self._beat_board_us
        if self._beating and (last is None or not 0 <= t_us - last < self.host_heartbeat_s * 1e6):
            self._beat_board_us = t_us
            with contextlib.suppress(TransportClosed):  # a dead link is the reader's to report
                self._send(HostHeartbeat())

    def _command(self, msg: Message) -> None:
        try:
            self.command(msg)
        except CommandError as e:
            hint = "docs/rotarod.md" if e.error is not None else "is the rotarod powered?"
            raise RotarodError(f"{self.where}: {e} ({hint})") from None

    # ------------------------------------------------------------------ API
    def open(self) -> Hello:
        try:
            self._open_channel()
        except CommandError as e:
            raise RotarodError(f"{self.where}: {e}") from None
        self.hello = None
        self._command(GetHello(PROTOCOL_VERSION))  # its HELLO arrives before the ACK
        hello = self.hello
        if hello is None:
            raise RotarodError(f"{self.where}: GET_HELLO was ACKed without a HELLO")
        check_hello(hello, self.where)
        self._command(
            RodConfig(
                self.steps_per_rev,
                self.n_lanes,
                round(self.debounce_ms),
                (1 << self.n_lanes) - 1,
                self.passive_lanes_mask,
                (1 << self.n_lanes) - 1,
            )
        )
        if self.host_timeout_ms and (hello.fw_major, hello.fw_minor) >= HOST_TIMEOUT_SINCE:
            # beat first: the board starts counting the moment it takes the timeout
            self._beating = True
            self._start_thread(self._heartbeat_loop, "host-heartbeat")
            self._command(SetConfig(0, self.host_timeout_ms))  # max_valve_ms: no valve here
        elif self.host_timeout_ms:
            self._log(
                logging.WARNING,
                f"{self.where}: rotarod firmware {hello.fw_version} cannot stop the rod when this "
                f"host goes silent (1.1 can); {FLASH_HINT}",
            )
        return hello

    def start_ramp(self, start_rpm: float, end_rpm: float, ramp_s: float, max_s: float) -> None:
        if not 0 <= start_rpm <= end_rpm <= self.MAX_RPM:
            raise ValueError(
                f"need 0 <= start_rpm <= end_rpm <= {self.MAX_RPM}, got {start_rpm}, {end_rpm}"
            )
        if not (0 < ramp_s <= 3600 and 0 < max_s <= 3600):
            raise ValueError(f"ramp_s and max_s must be in (0, 3600] s, got {ramp_s}, {max_s}")
        self._command(
            StartRamp(
                round(start_rpm * 1000),
                round(end_rpm * 1000),
                round(ramp_s * 1000),
                round(max_s * 1000),
            )
        )

    def stop(self) -> None:
        self._command(StopRod())

    def heartbeat(self) -> None:
        """One HOST_HEARTBEAT now (``open`` already keeps them coming; no ACK is awaited)."""
        with contextlib.suppress(TransportClosed):
            self._send(HostHeartbeat())

    def close(self) -> None:
        self._beating = False
        self._close_channel()

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
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import ClassVar, Protocol

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
from rig.core.protocol import (
    PROTOCOL_VERSION,
    Ack,
    GetHello,
    Heartbeat,
    Hello,
    HostHeartbeat,
    Message,
    Nak,
    Packet,
    PacketEncoder,
    SetConfig,
    StreamDecoder,
)

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
    "ByteTransport",
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


class ByteTransport(Protocol):
    """What a driver needs from a transport (serial port, simavr pty, simulated rod)."""

    def write(self, data: bytes) -> None: ...

    def read(self, timeout_s: float) -> bytes: ...

    def close(self) -> None: ...


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

    @property
    def awaiting_reply(self) -> bool:
        """A command is in flight (sent, its answer not in yet)."""
        return False

    def safe_state(self) -> None:
        """The rod stopped. Never raises: called on every exit path, also after errors."""
        # a dead link is already safe enough: the board stops by itself at the cutoff
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
class Rotarod(RotarodAdapter):
    """Driver of our rotarod firmware (firmware/rotarod) over any ``ByteTransport``.

    Parameters
    ----------
    transport : ByteTransport
    n_lanes, steps_per_rev, debounce_ms, passive_lanes_mask
        Sent in ROD_CONFIG at ``open``. Fall sensors are active-low (trip plates to ground).
    where : str
        Port or description, for error messages.
    command_timeout_s : float
        Longest wait for an ACK/NAK.
    on_raw : callable, optional
        Gets every received chunk with its host receive time (ns), for ``raw/rotarod.bin``.
    host_timeout_ms : int
        The board stops a turning rod after this long without a host packet (SET_CONFIG at
        ``open``; 0 = off, else 100..60000 ms). Firmware before 1.1 has no such stop.
    host_heartbeat_s : float
        HOST_HEARTBEAT period, both in host time (a thread) and in board time (answering the
        board's own heartbeats from the reader): the board clock of a simulated rod may run
        far faster than the wall clock, and only board time counts for its timeout.
    """

    MAX_RPM: ClassVar[float] = 300.0

    def __init__(
        self,
        transport: ByteTransport,
        *,
        n_lanes: int = 5,
        steps_per_rev: int = 3200,
        debounce_ms: float = 500.0,
        passive_lanes_mask: int = 0,
        where: str = "rotarod",
        command_timeout_s: float = 2.0,
        on_raw: Callable[[bytes, int], None] | None = None,
        host_timeout_ms: int = 2000,
        host_heartbeat_s: float = 0.25,
    ) -> None:
        super().__init__()
        if host_timeout_ms != 0 and not 100 <= host_timeout_ms <= 60_000:
            raise ValueError(
                f"host_timeout_ms must be 0 (off) or 100..60000, got {host_timeout_ms}"
            )
        if host_timeout_ms and not 0 < host_heartbeat_s * 1000 <= host_timeout_ms / 4:
            raise ValueError(
                f"host_heartbeat_s ({host_heartbeat_s}) must be > 0 and at most a quarter of "
                f"host_timeout_ms ({host_timeout_ms} ms), so that one late beat cannot trip it"
            )
        self.transport = transport
        self.n_lanes = n_lanes
        self.steps_per_rev = steps_per_rev
        self.debounce_ms = debounce_ms
        self.passive_lanes_mask = passive_lanes_mask
        self.where = where
        self.command_timeout_s = command_timeout_s
        self.on_raw = on_raw
        self.host_timeout_ms = host_timeout_ms
        self.host_heartbeat_s = host_heartbeat_s
        self.decoder = StreamDecoder(ROTAROD_BOARD_TO_HOST)
        self._enc = PacketEncoder()
        self._replies: queue.Queue[Ack | Nak | Hello] = queue.Queue()
        self._lock = threading.Lock()  # one command in flight
        self._wlock = threading.Lock()  # sequence number + write, shared with the heartbeats
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._beating = False
        self._beat_board_us: int | None = None  # board time of the last board-paced beat
        self.last_heartbeat: Heartbeat | None = None
        self.link_error: str | None = None

    # ------------------------------------------------------------------ threads
    def _read_loop(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.transport.read(0.05)
            except (OSError, RigError) as e:  # RigError: the transport's TransportClosed
                if not self._stop.is_set():
                    self.link_error = f"{self.where}: link lost: {e}"
                return
            if not data:
                continue
            if self.on_raw is not None:
                self.on_raw(data, time.monotonic_ns())
            for item in self.decoder.feed(data):
                if not isinstance(item, Packet):
                    continue
                msg = item.msg
                if isinstance(msg, Ack | Nak | Hello):
                    if not (isinstance(msg, Ack) and msg.cmd_type == HostHeartbeat.TYPE):
                        self._replies.put(msg)  # nobody waits for a heartbeat's ACK
                elif isinstance(msg, Heartbeat):
                    self.last_heartbeat = msg
                    self._beat_in_board_time(msg.t_us)
                    self._emit(msg)
                else:
                    self._emit(msg)

    def _beat_in_board_time(self, t_us: int) -> None:
        """Answer the board's heartbeats every ``host_heartbeat_s`` of *board* time."""
        if not self._beating:
            return
        last = self._beat_board_us
        if last is None or t_us - last >= self.host_heartbeat_s * 1e6 or t_us < last:
            self._beat_board_us = t_us
            self._send_beat()

    def _beat_loop(self) -> None:
        # host time: keeps the board fed while the reader is busy (a slow disk under on_raw)
        while not self._stop.wait(self.host_heartbeat_s):
            self._send_beat()

    def _send_beat(self) -> None:
        # a dead link is the reader's to report; the board's timeout is what makes it safe
        with contextlib.suppress(OSError, RigError):
            self._write(HostHeartbeat())

    def _write(self, msg: Message) -> int:
        with self._wlock:
            seq, wire = self._enc.encode(msg)
            self.transport.write(wire)
        return seq

    def _command(self, msg: Message, want_hello: bool = False) -> Hello | None:
        with self._lock:
            seq = self._write(msg)
            deadline = time.monotonic() + self.command_timeout_s
            hello = None
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RotarodError(
                        f"{self.where}: no reply to {type(msg).__name__} within "
                        f"{self.command_timeout_s} s (is the rotarod connected and powered?)"
                    )
                try:
                    reply = self._replies.get(timeout=left)
                except queue.Empty:
                    continue
                if isinstance(reply, Hello):
                    hello = reply
                    continue
                if reply.cmd_seq != seq:
                    continue  # a late reply to an earlier, timed-out command
                if isinstance(reply, Nak):
                    raise RotarodError(
                        f"{self.where}: {type(msg).__name__} refused: error {reply.error} "
                        f"detail {reply.detail} (docs/protocol.md section 4, docs/rotarod.md)"
                    )
                return hello if want_hello else None

    @property
    def awaiting_reply(self) -> bool:
        return self._lock.locked()

    def _start_thread(self, fn: Callable[[], None], what: str) -> None:
        t = threading.Thread(target=fn, name=f"rotarod-{what}", daemon=True)
        self._threads.append(t)
        t.start()

    # ------------------------------------------------------------------ API
    def open(self) -> Hello:
        if not getattr(self.transport, "is_open", True):
            self.transport.open()  # type: ignore[attr-defined]
        self._stop.clear()
        self._start_thread(self._read_loop, "reader")
        hello = self._command(GetHello(PROTOCOL_VERSION), want_hello=True)
        if hello is None:
            raise RotarodError(f"{self.where}: GET_HELLO was ACKed without a HELLO")
        check_hello(hello, self.where)
        self.hello = hello
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
            self._start_thread(self._beat_loop, "heartbeat")
            self._command(SetConfig(0, self.host_timeout_ms))  # max_valve_ms: no valve here
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
        self._send_beat()

    def close(self) -> None:
        self._stop.set()
        self._beating = False
        for t in self._threads:
            t.join(timeout=2.0)
        self._threads.clear()
        self.transport.close()

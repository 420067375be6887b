"""Byte transports: the only code that touches pyserial.

A device driver is *given* a ``Transport``; it never opens ports itself. Every transport has
the same small blocking API, used from the driver's reader thread (``read``) and from any
thread (``write``):

- ``open()`` / ``close()`` / ``is_open``;
- ``read(timeout_s)`` -> the bytes available (waits up to ``timeout_s`` for the first one;
  ``b""`` on timeout); raises ``TransportClosed`` when the link is gone (port unplugged,
  simulator exited, replay finished);
- ``write(data)``; raises ``TransportClosed`` likewise;
- ``now_ns()``: host time to stamp received bytes with (``time.monotonic_ns``; the replay
  transport returns the recorded time instead, a virtual clock).

Kinds: ``SerialTransport`` (real board, pyserial), ``PtyTransport`` (a pseudo-terminal path:
simavr's ``uart_pty`` or the Python simulated board), ``LoopbackTransport`` (in-process
socketpair to a simulated board), ``ReplayTransport`` (recorded ``(t_host_ns, bytes)`` chunks
from ``SessionReader.raw(device)``).
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator

from rig.core.errors import RigError


class TransportClosed(RigError):
    """The link is gone (unplugged, peer closed, replay exhausted); ``open()`` may bring it back."""


class Transport(ABC):
    """Abstract byte link; see the module docstring for the contract."""

    name: str = "transport"

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def close(self) -> None: ...

    @property
    @abstractmethod
    def is_open(self) -> bool: ...

    @abstractmethod
    def read(self, timeout_s: float = 0.05) -> bytes: ...

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    def now_ns(self) -> int:
        """Host receive time for bytes just read (monotonic ns)."""
        return time.monotonic_ns()

    def __enter__(self) -> Transport:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SerialTransport(Transport):
    """A serial port through pyserial (``/dev/ttyACM0``, ``COM3``, a pty path, or a pyserial URL).

    Parameters
    ----------
    port : str
        Device path or pyserial URL.
    baud : int
        Baud rate (ignored by ptys).
    """

    def __init__(self, port: str, baud: int = 1_000_000) -> None:
        self.port = port
        self.baud = baud
        self.name = port
        self._ser: object | None = None
        self._wlock = threading.Lock()

    def open(self) -> None:
        import serial  # imported here so that importing rig.core stays cheap

        try:
            ser = serial.serial_for_url(self.port, baudrate=self.baud, timeout=0, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as e:
            raise TransportClosed(f"cannot open serial port {self.port}: {e}") from None
        self._ser = ser

    def close(self) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            with contextlib.suppress(OSError):
                ser.close()  # type: ignore[attr-defined]

    @property
    def is_open(self) -> bool:
        return self._ser is not None

    def _port(self) -> object:
        if self._ser is None:
            raise TransportClosed(f"{self.port} is not open")
        return self._ser

    def read(self, timeout_s: float = 0.05) -> bytes:
        import serial

        ser = self._port()
        try:
            fd = ser.fileno()  # type: ignore[attr-defined]
        except (AttributeError, serial.SerialException, OSError):
            fd = None
        try:
            if fd is not None:
                # select on the fd: pyserial's own timeout read would poll in a sleep loop
                r, _, _ = select.select([fd], [], [], timeout_s)
                if not r:
                    return b""
                data = ser.read(65536)  # type: ignore[attr-defined]
            else:  # URL ports without a file descriptor (loop://, socket://)
                ser.timeout = timeout_s  # type: ignore[attr-defined]
                data = ser.read(1)  # type: ignore[attr-defined]
                if data:
                    data += ser.read(ser.in_waiting)  # type: ignore[attr-defined]
                return bytes(data)
        except (serial.SerialException, OSError, TypeError, ValueError) as e:
            # TypeError/ValueError: pyserial internals when the fd was closed under it
            raise TransportClosed(f"{self.port}: {e}") from None
        if fd is not None and not data:
            # readable but no data: the device went away (pyserial on Linux raises, ptys may not)
            raise TransportClosed(f"{self.port}: device reports readiness but returned no data")
        return bytes(data)

    def write(self, data: bytes) -> None:
        import serial

        ser = self._port()
        with self._wlock:
            try:
                ser.write(data)  # type: ignore[attr-defined]
            except (serial.SerialException, OSError, TypeError, ValueError) as e:
                raise TransportClosed(f"{self.port}: {e}") from None


class PtyTransport(SerialTransport):
    """The host end of a pseudo-terminal (simavr ``uart_pty`` or ``rig.core.sim``).

    A pty has no baud rate; everything else is ``SerialTransport``.
    """

    def __init__(self, path: str) -> None:
        super().__init__(path, baud=1_000_000)


class LoopbackTransport(Transport):
    """Host end of an in-process link (a ``socket.socketpair``) to a simulated device.

    Use ``LoopbackTransport.pair()`` to get ``(host_transport, device_socket)``; the device side
    reads and writes the raw socket. Closing the device socket looks like an unplugged board.
    """

    def __init__(self, sock: socket.socket, name: str = "loopback") -> None:
        self._sock: socket.socket | None = sock
        self.name = name
        self._wlock = threading.Lock()

    @classmethod
    def pair(cls, name: str = "loopback") -> tuple[LoopbackTransport, socket.socket]:
        host, device = socket.socketpair()
        host.setblocking(False)
        device.setblocking(False)
        return cls(host, name), device

    def open(self) -> None:
        if self._sock is None:
            raise TransportClosed(f"{self.name}: a loopback link cannot be reopened once closed")

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    @property
    def is_open(self) -> bool:
        return self._sock is not None

    def read(self, timeout_s: float = 0.05) -> bytes:
        sock = self._sock
        if sock is None:
            raise TransportClosed(f"{self.name} is closed")
        try:
            r, _, _ = select.select([sock], [], [], timeout_s)
            if not r:
                return b""
            data = sock.recv(65536)
        except (OSError, ValueError) as e:
            raise TransportClosed(f"{self.name}: {e}") from None
        if not data:
            raise TransportClosed(f"{self.name}: the simulated device closed the link")
        return data

    def write(self, data: bytes) -> None:
        sock = self._sock
        if sock is None:
            raise TransportClosed(f"{self.name} is closed")
        view = memoryview(data)
        with self._wlock:
            # send() reports how much went out; sendall() on a non-blocking socket may raise
            # after a partial send without saying how much, and a retry would repeat bytes
            while view:
                try:
                    view = view[sock.send(view) :]
                except BlockingIOError:
                    # the device is not reading: wait for buffer space rather than drop host bytes
                    with contextlib.suppress(ValueError):
                        select.select([], [sock], [], 0.1)
                except OSError as e:
                    raise TransportClosed(f"{self.name}: {e}") from None


class ReplayTransport(Transport):
    """Recorded received bytes, played back with their recorded host times (virtual clock).

    Parameters
    ----------
    chunks : iterable of (t_host_ns, bytes)
        As yielded by ``SessionReader.raw(device)``.
    speed : float | None
        ``None`` (default): as fast as the reader asks. Otherwise pace the chunks at ``speed``
        times the recorded rate (1.0 = real time).

    ``now_ns()`` returns the recorded receive time of the chunk last returned by ``read``, so a
    replayed session gets the same host timestamps as the original. ``write`` accepts and keeps
    the bytes (``written``) because nothing can answer them. After the last chunk ``read`` raises
    ``TransportClosed`` and ``exhausted`` is set.
    """

    def __init__(
        self, chunks: Iterable[tuple[int, bytes]], speed: float | None = None, name: str = "replay"
    ) -> None:
        self._it: Iterator[tuple[int, bytes]] = iter(chunks)
        self.speed = speed
        self.name = name
        self.written = bytearray()
        self.exhausted = False
        self._open = False
        self._t_ns = 0
        self._t0_rec: int | None = None
        self._t0_wall = 0

    def open(self) -> None:
        if self.exhausted:
            raise TransportClosed(f"{self.name}: the recording has been played to its end")
        self._open = True

    def close(self) -> None:
        self._open = False

    @property
    def is_open(self) -> bool:
        return self._open

    def now_ns(self) -> int:
        return self._t_ns

    def read(self, timeout_s: float = 0.05) -> bytes:
        if not self._open:
            raise TransportClosed(f"{self.name} is closed")
        try:
            t, data = next(self._it)
        except StopIteration:
            self.exhausted = True
            self._open = False
            raise TransportClosed(f"{self.name}: end of recording") from None
        if self.speed is not None:
            if self._t0_rec is None:
                self._t0_rec, self._t0_wall = t, time.monotonic_ns()
            due = self._t0_wall + (t - self._t0_rec) / self.speed
            delay_s = (due - time.monotonic_ns()) / 1e9
            if delay_s > 0:
                # pacing a replay to the recorded rate is the point here, not a wait on a condition
                time.sleep(delay_s)
        self._t_ns = t
        return bytes(data)

    def write(self, data: bytes) -> None:
        if not self._open:
            raise TransportClosed(f"{self.name} is closed")
        self.written += data

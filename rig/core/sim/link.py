"""Run a simulated board on a real pty or an in-process loopback, in real time or faster.

::

    board = SimLeverBoard(ConstantLever(512))
    with SimBoardLink(board, kind="pty") as link:     # or kind="loopback"
        transport = link.transport()                  # PtyTransport / LoopbackTransport
        lb = LeverBoard(transport, config); lb.connect()

``speed`` is board ms per wall ms (1.0 = real time, 10 = ten times faster): a host that falls
behind loses output beyond ``TX_BUFFER_BYTES``, as on a real board whose transmit buffer fills
(counted in ``tx_dropped``). ``speed=None`` runs as fast as the CPU allows on a virtual clock
that waits for the host whenever ``VIRTUAL_BACKLOG_BYTES`` of output are unread, so a long
accelerated run is lossless unless faults are injected on purpose. ``max_ticks`` stops the
clock at that tick, so a headless run can end exactly.

Faults beyond ``SimFaults``: ``disconnect()`` closes the device end (the host sees the port
vanish) and, for a pty, ``reconnect()`` makes a new pty behind the same stable path (a symlink,
like simavr's ``/tmp/simavr-uart0``), as a board re-plugged into the same port would be.
``pause()``/``resume()`` freeze the board entirely (no ticks, no bytes).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import tempfile
import threading
import time
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from rig.core.sim.lever_board import SimLeverBoard
from rig.core.transport import LoopbackTransport, PtyTransport, Transport

TX_BUFFER_BYTES = 256 * 1024  # like a board's UART buffer, but generous: drop beyond it
#: virtual clock (speed=None): stop ticking while this much output waits for the host
VIRTUAL_BACKLOG_BYTES = 64 * 1024


class SimBoardLink:
    """Thread that runs ``board`` and moves its bytes over a pty or a socketpair."""

    def __init__(
        self,
        board: SimLeverBoard,
        kind: Literal["pty", "loopback"] = "pty",
        speed: float | None = 1.0,
        link_path: str | Path | None = None,
        max_ticks: int | None = None,
    ) -> None:
        self.board = board
        self.kind = kind
        self.speed = speed
        self.max_ticks = max_ticks
        self.tx_dropped = 0
        self.backpressure_waits = 0
        self.connected = False
        self._tmpdir: str | None = None
        if kind == "pty":
            if link_path is None:
                self._tmpdir = tempfile.mkdtemp(prefix="rig-simboard-")
                link_path = Path(self._tmpdir) / "lever_board"
            self.path: Path | None = Path(link_path)
        else:
            self.path = None
        self._fd: int | None = None
        self._slave_fd: int | None = None
        self._sock: socket.socket | None = None
        self._host: LoopbackTransport | None = None
        self._pending = bytearray()
        self._lock = threading.Lock()
        self._paused = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wall0 = 0.0
        self._tick0 = 0
        self._on_idle: list[Callable[[], None]] = []
        self._connect()

    # ------------------------------------------------------------------ connection
    def _connect(self) -> None:
        if self.kind == "pty":
            master, slave = os.openpty()
            # raw at once: the boot HELLO must not meet echo or CR/LF translation
            tty.setraw(slave)
            os.set_blocking(master, False)
            tmp = f"{self.path}.tmp"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            os.symlink(os.ttyname(slave), tmp)
            os.replace(tmp, str(self.path))
            self._fd, self._slave_fd = master, slave
        else:
            self._host, self._sock = LoopbackTransport.pair("sim-lever-board")
            self._fd = self._sock.fileno()
        self.connected = True

    def transport(self) -> Transport:
        """A host transport for this link (a new ``PtyTransport`` on the stable path)."""
        if self.kind == "pty":
            return PtyTransport(str(self.path))
        assert self._host is not None
        return self._host

    def disconnect(self) -> None:
        """Close the device end: the host's next read fails as if the cable were pulled."""
        with self._lock:
            self._close_fds()
            self.connected = False

    def reconnect(self) -> None:
        """pty only: a fresh pty behind the same path; the board keeps running."""
        if self.kind != "pty":
            raise RuntimeError("a loopback link cannot reconnect; make a new SimBoardLink")
        with self._lock:
            self._close_fds()
            self._pending.clear()
            self._connect()

    def _close_fds(self) -> None:
        if self.kind == "pty":
            for fd in (self._fd, self._slave_fd):
                if fd is not None:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            self._fd = self._slave_fd = None
        else:
            if self._sock is not None:
                self._sock.close()
            self._sock, self._fd = None, None

    # ------------------------------------------------------------------ run
    def start(self) -> SimBoardLink:
        self._wall0, self._tick0 = time.monotonic(), self.board.k
        self._thread = threading.Thread(target=self._run, name="sim-lever-board", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            self._close_fds()
        if self._tmpdir is not None and self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
                os.rmdir(self._tmpdir)

    def pause(self) -> None:
        with self._lock:
            self._paused = True

    def resume(self) -> None:
        with self._lock:
            self._paused = False
            # board time does not jump over the pause
            self._wall0, self._tick0 = time.monotonic(), self.board.k

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the board thread between ticks (safe access to ``board``)."""
        with self._lock:
            self._on_idle.append(fn)

    def __enter__(self) -> SimBoardLink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _due_ticks(self) -> tuple[int, float]:
        """(ticks to run now, seconds until the next one is due)."""
        b = self.board
        limit = None if self.max_ticks is None else self.max_ticks - b.k
        if self.speed is None:
            n = 20
        else:
            elapsed_ms = (time.monotonic() - self._wall0) * 1000.0 * self.speed
            n = int(elapsed_ms) - (b.k - self._tick0)
        if limit is not None:
            n = min(n, limit)
        if self.speed is None:
            return max(n, 0), 0.0 if (limit is None or limit > 0) else 0.05
        return max(n, 0), max(0.0, (1.0 - (elapsed_ms % 1.0)) / 1000.0 / self.speed)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                fd, paused, backlog = self._fd, self._paused, len(self._pending)
            n, wait_s = (0, 0.01) if paused else self._due_ticks()
            if self.speed is None and fd is not None and backlog >= VIRTUAL_BACKLOG_BYTES:
                # a virtual clock has no deadline to keep: wait for the host to read instead of
                # dropping output (loss is modelled on purpose with SimFaults and stall())
                n, wait_s = 0, 0.01
                self.backpressure_waits += 1
                with contextlib.suppress(OSError, ValueError):
                    select.select([fd], [fd], [], wait_s)
            elif n == 0:
                if fd is None:
                    self._stop.wait(min(wait_s, 0.01) or 0.01)
                else:
                    with contextlib.suppress(OSError, ValueError):
                        select.select([fd], [], [], min(wait_s, 0.01))
            with self._lock:
                self._io_and_ticks(0 if paused else min(n, 50))

    def _io_and_ticks(self, n: int) -> None:
        b = self.board
        fd = self._fd
        if fd is not None:
            self._read_host(fd)
        for fn in self._on_idle:
            fn()
        self._on_idle.clear()
        if n:
            b.step(n)
        out = b.take_output()
        if fd is None:
            return  # disconnected: what the board sends is lost, as on a pulled cable
        self._pending += out
        if len(self._pending) > TX_BUFFER_BYTES:
            self.tx_dropped += len(self._pending) - TX_BUFFER_BYTES
            del self._pending[: len(self._pending) - TX_BUFFER_BYTES]
        if self._pending:
            try:
                sent = os.write(fd, self._pending)
                del self._pending[:sent]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                self._pending.clear()  # host side gone (pty closed): keep running like a board

    def _read_host(self, fd: int) -> None:
        while True:
            try:
                data = os.read(fd, 65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # EIO: no host has the pty open right now
            if not data:
                return
            self.board.receive(data)

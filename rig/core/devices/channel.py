"""``CommandChannel``: the generic host side of a board's command link (docs/protocol.md).

Base class of board drivers (``LeverBoard``). Given a ``Transport``, it owns what every board on
our wire protocol needs, none of it specific to one board:

- sequence numbers (``PacketEncoder``) and writes serialised under one lock;
- ``command(msg)``: send, then wait for the one ACK/NAK that echoes its sequence number, with a
  timeout (``CommandError`` on NAK, timeout or lost link, naming the command and the reason);
  ``send_command`` / ``wait_reply`` split it for pipelining;
- waits that do not count time the process was stopped (``_wait_running``);
- the reader thread: reads the port, passes every chunk to ``on_raw(t_host_ns, data)``, feeds
  the ``StreamDecoder``, resolves waiting commands and hands every other packet to
  ``_on_message`` (the subclass);
- the host heartbeat thread (``HostHeartbeat`` every ``host_heartbeat_s``);
- reconnect handling: a vanished port fails the waiting commands, emits ``link_lost``, is
  reopened every ``reconnect_interval_s``, emits ``reconnect`` (``attempts``, ``down_s``) and
  calls ``_rehandshake`` (the subclass) on its own thread.

Subclasses implement ``_on_message`` and ``_rehandshake`` and may override ``send_command`` to
refuse commands (e.g. to a board running the wrong firmware).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable

from rig.core.errors import RigError
from rig.core.events import Event
from rig.core.protocol import (
    BOARD_TO_HOST,
    Ack,
    ErrorCode,
    Message,
    Nak,
    Packet,
    PacketEncoder,
    StreamDecoder,
)
from rig.core.protocol import packets as P
from rig.core.signals import RigSignals
from rig.core.transport import Transport, TransportClosed


class CommandError(RigError):
    """A command was refused (NAK) or not answered; ``error`` is the ``ErrorCode`` or None."""

    def __init__(self, message: str, error: ErrorCode | None = None, detail: int = 0) -> None:
        super().__init__(message)
        self.error = error
        self.detail = detail


class Waiter:
    """One command in flight: ``done`` is set when ``reply`` arrived or the link was lost."""

    __slots__ = ("done", "reply")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: Ack | Nak | None = None


class CommandChannel:
    """Command link to one board (see the module docstring); subclassed by the drivers."""

    #: where ``_log`` and the reader's error reports go; drivers set their own module's logger
    _logger: logging.Logger = logging.getLogger(__name__)

    def __init__(
        self,
        transport: Transport,
        name: str,
        *,
        signals: RigSignals | None = None,
        on_raw: Callable[[int, bytes], None] | None = None,
        on_event: Callable[[Event], None] | None = None,
        command_timeout_s: float = 0.5,
        host_heartbeat_s: float = 0.25,
        reconnect: bool = True,
        reconnect_interval_s: float = 0.5,
    ) -> None:
        self.transport = transport
        self.name = name
        self.signals = signals
        self.on_raw, self.on_event = on_raw, on_event
        self.command_timeout_s = command_timeout_s
        self.host_heartbeat_s = host_heartbeat_s
        self.reconnect = reconnect
        self.reconnect_interval_s = reconnect_interval_s
        self.connected = False
        self.reconnects = 0
        self._link_lost_ns: int | None = None
        self._decoder = StreamDecoder(BOARD_TO_HOST, joins_midstream=True)
        self._encoder = PacketEncoder()
        self._wlock = threading.Lock()
        self._waiters: dict[int, Waiter] = {}
        self._wait_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.reader_done = threading.Event()

    # ------------------------------------------------------------------ hooks
    def _on_message(self, msg: Message, t_ns: int) -> None:
        """Handle one received packet other than ACK/NAK (reader thread); ``t_ns`` host time."""

    def _rehandshake(self) -> None:
        """Check the board again after the port was reopened (own thread; must not raise)."""

    # ------------------------------------------------------------------ lifecycle
    def _open_channel(self) -> None:
        """Open the port and start the reader (``CommandError`` if the port will not open)."""
        # a channel may be opened again after close(): its old threads have ended (joined there)
        self._stop.clear()
        self.reader_done.clear()
        self._decoder.reset_sequence()  # a fresh stream: it may begin inside a frame
        self._threads = [t for t in self._threads if t.is_alive()]
        try:
            self.transport.open()
        except TransportClosed as e:
            raise CommandError(f"{self.name}: {e}") from None
        self.connected = True
        self._start_thread(self._reader_loop, "reader")

    def _close_channel(self) -> None:
        """Stop the threads and close the port."""
        self._stop.set()
        self.transport.close()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=2)
        self.connected = False

    def _start_thread(self, fn: Callable[[], None], what: str) -> None:
        t = threading.Thread(target=fn, name=f"{self.name}-{what}", daemon=True)
        self._threads.append(t)
        t.start()

    # ------------------------------------------------------------------ commands
    def _send(self, msg: Message) -> int:
        with self._wlock:
            seq, wire = self._encoder.encode(msg)
            self.transport.write(wire)
        return seq

    def send_command(self, msg: Message) -> Waiter:
        """Send without waiting; ``wait_reply`` collects the ACK/NAK (for pipelining)."""
        w = Waiter()
        with self._wlock:
            seq, wire = self._encoder.encode(msg)
            with self._wait_lock:
                self._waiters[seq] = w
            try:
                self.transport.write(wire)
            except TransportClosed as e:
                with self._wait_lock:
                    self._waiters.pop(seq, None)
                raise CommandError(f"{self.name}: {type(msg).__name__}: {e}") from None
        return w

    def wait_reply(self, w: Waiter, msg: Message, timeout_s: float | None = None) -> None:
        """Wait for the reply of ``send_command``; ``CommandError`` on NAK, timeout or lost link."""
        timeout = self.command_timeout_s if timeout_s is None else timeout_s
        what = f"{self.name}: {type(msg).__name__}"
        if not self._wait_running(w.done, timeout):
            with self._wait_lock:
                for seq, ww in list(self._waiters.items()):
                    if ww is w:
                        del self._waiters[seq]
            raise CommandError(f"{what}: no reply within {timeout * 1000:.0f} ms")
        if isinstance(w.reply, Nak):
            err = (
                ErrorCode(w.reply.error) if w.reply.error in ErrorCode._value2member_map_ else None
            )
            name = err.name if err else f"error {w.reply.error}"
            raise CommandError(
                f"{what} refused: {name} (detail {w.reply.detail})", err, w.reply.detail
            )
        if w.reply is None:
            raise CommandError(f"{what}: the link was lost before the reply")

    @staticmethod
    def _wait_running(done: threading.Event, timeout_s: float, slice_s: float = 0.05) -> bool:
        """``done.wait(timeout_s)``, but time this process was not running does not count.

        A host frozen (SIGSTOP, a suspended VM, a swap storm) with a command in flight finds
        the reply already waiting in the port when it resumes; a plain wall-clock wait would
        have expired meanwhile and turned a delivered ACK into a false "no reply".
        """
        left = timeout_s
        last = time.monotonic()
        while left > 0:
            if done.wait(min(slice_s, left)):
                return True
            now = time.monotonic()
            # a slice that took far longer than asked for was a stall: charge only the slice
            left -= min(now - last, 2 * slice_s)
            last = now
        return done.is_set()

    def command(self, msg: Message, timeout_s: float | None = None) -> None:
        """Send ``msg`` and wait for its ACK; ``CommandError`` on NAK, timeout or lost link."""
        self.wait_reply(self.send_command(msg), msg, timeout_s)

    # ------------------------------------------------------------------ threads
    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.host_heartbeat_s):
            if self.connected:
                # its ACK is matched to nobody and dropped; a dead link is the reader's job
                with contextlib.suppress(TransportClosed):
                    self._send(P.HostHeartbeat())

    def _reader_loop(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    data = self.transport.read(0.05)
                except TransportClosed as e:
                    if self._stop.is_set() or getattr(self.transport, "exhausted", False):
                        return  # closed by us, or a replay that reached its end
                    self._link_lost(str(e))
                    if not self.reconnect or not self._reopen():
                        return
                    continue
                if data:
                    self._on_bytes(self.transport.now_ns(), data)
        finally:
            self.reader_done.set()

    def _on_bytes(self, t_ns: int, data: bytes) -> None:
        if self.on_raw is not None:
            self.on_raw(t_ns, data)
        for item in self._decoder.feed(data):
            if isinstance(item, Packet):
                try:
                    self._dispatch(item.msg, t_ns)
                except Exception:  # a listener's bug must not kill the reader thread
                    self._logger.exception("%s: error while handling %s", self.name, item.msg)

    def _link_lost(self, reason: str) -> None:
        self.connected = False
        with self._wait_lock:
            waiters, self._waiters = self._waiters, {}
        for w in waiters.values():
            w.done.set()
        self._link_lost_ns = time.monotonic_ns()
        self._log(logging.WARNING, f"{self.name}: link lost: {reason}")
        self._emit_event(Event("link_lost", self.name, data={"reason": reason}))

    def _reopen(self) -> bool:
        attempts = 0
        while not self._stop.wait(self.reconnect_interval_s):
            attempts += 1
            self.transport.close()
            try:
                self.transport.open()
            except TransportClosed:
                continue
            self._decoder.reset_sequence()
            self.connected = True
            self.reconnects += 1
            down_s = None
            if self._link_lost_ns is not None:
                down_s = round((time.monotonic_ns() - self._link_lost_ns) / 1e9, 3)
            self._emit_event(
                Event("reconnect", self.name, data={"attempts": attempts, "down_s": down_s})
            )
            self._start_thread(self._rehandshake, "rehandshake")
            return True
        return False

    # ------------------------------------------------------------------ dispatch
    def _dispatch(self, msg: Message, t_ns: int) -> None:
        if isinstance(msg, Ack | Nak):
            with self._wait_lock:
                w = self._waiters.pop(msg.cmd_seq, None)
            if w is not None:
                w.reply = msg
                w.done.set()
        else:
            self._on_message(msg, t_ns)

    def _emit_event(self, ev: Event) -> None:
        if self.on_event is not None:
            self.on_event(ev)
        if self.signals is not None:
            self.signals.event.emit(ev)

    def _log(self, level: int, message: str) -> None:
        self._logger.log(level, message)
        if self.signals is not None:
            self.signals.log.emit(level, message)

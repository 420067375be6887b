"""The real rotarod firmware as the rod: ``SimavrRotarodTransport``, stepped simavr underneath.

A ``Transport`` like the Python rod of ``rotarod_sim``: the ``Rotarod`` driver talks to the
firmware (firmware/rotarod, built by ``rig.core.simavr.ensure_built``) through the harness's
UART, and the simulated mice trip its lane pins at exact simulated times after each ramp start.
Used by the rig config's ``rotarod.driver: simavr``, ``rig bench rotarod`` (``ROD_PINS``) and
the firmware tests.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from rig.core.devices.rotarod import ROTAROD_BOARD_TO_HOST, ROTAROD_HOST_TO_BOARD, RodStarted
from rig.core.protocol import Ack, Heartbeat, HostHeartbeat, Message, Nak, Packet, StreamDecoder
from rig.core.transport import Transport, TransportClosed

if TYPE_CHECKING:
    from rig.core.simavr import AvrSim

#: Port/bit names of the rotarod firmware's pins under simavr (docs/rotarod.md, "Pins").
ROD_PINS = {
    "uno": {"step": "D4", "fall": "B", "passive": "C"},
    "mega": {"step": "G5", "fall": "K", "passive": "F"},
}


class SimavrRotarodTransport(Transport):
    """Our rotarod firmware under simavr, stepped: the real firmware as the rod, simulated time.

    Each ``read`` runs the simulation ``step_us`` further and returns what the board sent;
    ``write`` puts bytes into the board's UART at the current simulated time. ``schedule_lane``
    trips a lane's sensor pin at an exact simulated time after the next ramp start (held
    ``hold_s``, then released so the lane re-arms), like :class:`SimRotarodTransport`.
    ``advance`` does nothing: an idle board need not be simulated through an inter-trial
    interval. With ``realtime`` simulated time is paced to the wall clock.
    """

    def __init__(
        self,
        board: str = "uno",
        firmware: Path | None = None,
        *,
        realtime: bool = False,
        step_us: int = 50_000,
        hold_s: float = 1.0,
    ) -> None:
        if board not in ROD_PINS:
            raise ValueError(f"board must be one of {sorted(ROD_PINS)}, got {board!r}")
        self.name = f"rotarod firmware under simavr ({board})"
        self.board, self.firmware, self.realtime = board, firmware, realtime
        self.step_us, self.hold_s = step_us, hold_s
        self.virtual_time = not realtime
        self._pins = ROD_PINS[board]
        self._lock = threading.Lock()
        self._avr: AvrSim | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._dec = StreamDecoder(ROTAROD_BOARD_TO_HOST)
        self._pending: list[tuple[float, int, str]] = []
        self._offset_us: float | None = None  # simulated µs minus device µs
        self._wall0 = 0.0
        self._backlog = b""
        self._frame = bytearray()
        self._frame_t: float | None = None
        # as SimRotarodTransport.host_busy: simulated time waits for the runner, except while a
        # command it wrote waits for its answer (the firmware answers only as it steps)
        self.host_busy: Callable[[], bool] | None = None
        self._woken = threading.Event()
        self._peek = StreamDecoder(ROTAROD_HOST_TO_BOARD, resync_types=frozenset())
        self._unanswered: set[int] = set()  # seq of each command written and not answered yet

    def open(self) -> None:
        from rig.core.simavr import AvrSim, ensure_built

        if self._avr is not None:
            return  # already running (a transport handed over open)
        elf = self.firmware or ensure_built("rotarod", self.board)[0]
        self._tmp = tempfile.TemporaryDirectory(prefix="rotarod-simavr-")
        log = Path(self._tmp.name) / "avrsim.log"
        avr = AvrSim(elf, log, board=self.board, stepped=True, pty=False).start()
        for i in range(5):  # sensors idle high (pull-ups)
            avr.pin(f"{self._pins['fall']}{i}", 1)
            avr.pin(f"{self._pins['passive']}{i}", 1)
        self._avr = avr
        self._wall0 = time.monotonic()
        # boot and the first heartbeat (100 ms): calibrates the board clock against simulated time
        self._backlog = self._step(avr) + self._step(avr) + self._step(avr)

    @property
    def is_open(self) -> bool:
        return self._avr is not None

    def close(self) -> None:
        with self._lock:
            avr, self._avr = self._avr, None
            if avr is not None:
                avr.close()
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None

    def schedule_lane(self, lane: int, t_rel_s: float, kind: str = "fall") -> None:
        """Trip ``lane``'s sensor ``t_rel_s`` after the next ramp start (kind: fall/passive)."""
        if kind not in ("fall", "passive"):
            raise ValueError(f"kind must be 'fall' or 'passive', got {kind!r}")
        with self._lock:
            self._pending.append((t_rel_s, lane, kind))

    def advance(self, seconds: float) -> None:
        """Nothing to do: times are relative to each ramp start (see the class docstring)."""

    def _board(self) -> AvrSim:
        if self._avr is None:
            raise TransportClosed(f"{self.name}: not open")
        return self._avr

    def write(self, data: bytes) -> None:
        with self._lock:
            self._board().tx(data)
            for item in self._peek.feed(data):
                if isinstance(item, Packet) and not isinstance(item.msg, HostHeartbeat):
                    self._unanswered.add(item.seq)  # (nobody waits for a heartbeat's ACK)
        self._woken.set()  # a command needs steps to be answered: see ``host_busy``

    def read(self, timeout_s: float = 0.05) -> bytes:
        with self._lock:
            avr = self._board()
            if self._backlog:
                out, self._backlog = self._backlog, b""
                return out
            if self.realtime:
                ahead_s = avr.now_us / 1e6 - (time.monotonic() - self._wall0)
                if ahead_s > 0:
                    time.sleep(min(ahead_s, timeout_s))  # pacing a simulator, not a test wait
                    return b""
            elif self._wait_for_host(timeout_s):
                return b""
            return self._step(avr)

    def _wait_for_host(self, timeout_s: float) -> bool:
        """True (after waiting up to ``timeout_s`` for ``wake``) while the host is busy."""
        if self.host_busy is None or self._unanswered or not self.host_busy():
            return False
        self._woken.clear()
        if self.host_busy():  # still busy after the clear: a wake from now on is not missed
            self._lock.release()  # the runner may write (STOP_ROD) meanwhile
            try:
                self._woken.wait(timeout_s)
            finally:
                self._lock.acquire()
        return True

    def wake(self) -> None:
        """The host has caught up (see ``host_busy``): let a waiting ``read`` step on."""
        self._woken.set()

    def _step(self, avr: AvrSim) -> bytes:
        """Run one step; watch the board's packets for its clock and for ramp starts."""
        avr.run_us(self.step_us)
        tx = avr.log.read_new().tx
        for t_first_us, msg in self._frames(tx):
            if isinstance(msg, Heartbeat) and self._offset_us is None:
                # stamped just before it is sent: its first byte dates the board clock (~20 µs)
                self._offset_us = t_first_us - msg.t_us
            elif isinstance(msg, RodStarted):
                self._arm(avr, msg)
            elif isinstance(msg, Ack | Nak):
                self._unanswered.discard(msg.cmd_seq)
        return bytes(b for _, b in tx)

    def _frames(self, tx: list[tuple[float, int]]) -> list[tuple[float, Message]]:
        """(simulated time of the first byte, message) of every packet completed in ``tx``."""
        out: list[tuple[float, Message]] = []
        for t_us, b in tx:
            if self._frame_t is None:
                self._frame_t = t_us
            self._frame.append(b)
            if b == 0:
                for item in self._dec.feed(bytes(self._frame)):
                    if isinstance(item, Packet):
                        out.append((self._frame_t, item.msg))
                self._frame.clear()
                self._frame_t = None
        return out

    def _arm(self, avr: AvrSim, started: RodStarted) -> None:
        """Schedule the pending lane trips relative to this ramp's start, in simulated time."""
        offset = self._offset_us or 0.0
        for t_rel_s, lane, kind in self._pending:
            pin = f"{self._pins['fall' if kind == 'fall' else 'passive']}{lane}"
            at_us = started.t_us + offset + t_rel_s * 1e6
            avr.pin(pin, 0, at_us=at_us)
            avr.pin(pin, 1, at_us=at_us + self.hold_s * 1e6)
        self._pending = []

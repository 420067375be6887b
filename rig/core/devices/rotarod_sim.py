"""A simulated rotarod that speaks the real byte protocol (docs/rotarod.md) in virtual time.

``SimRotarodTransport`` is a ``Transport``: the ``Rotarod`` driver writes commands to it and
reads COBS-framed packets from it exactly as from the firmware. The rod turns on a virtual
clock: with ``time_scale=None`` a 300 s ramp is simulated as fast as the reader reads (for
headless cohorts and tests); with ``time_scale=1.0`` it keeps pace with the wall clock.
The firmware itself as the rod is ``rotarod_simavr.SimavrRotarodTransport``.
Falls and passive rotations come from whoever drives the lanes (the simulated mice of
``tasks.rotarod``, via the runner): :meth:`schedule_lane`. Host silence is judged as the
firmware judges it: with SET_CONFIG's ``host_timeout_ms`` set, a turning rod stops (ROD_STOPPED
reason 2) once no valid host packet has come for that long of rod time (of wall time when paced:
the host's clock is the wall clock), and heartbeats carry status bit3 until the host speaks.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable

from rig.core.devices.rotarod import (
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
    RodSpeed,
    RodStarted,
    RodStopped,
    StartRamp,
    StopRod,
)
from rig.core.devices.rotarod_simavr import ROD_PINS, SimavrRotarodTransport
from rig.core.protocol import (
    PROTOCOL_VERSION,
    Ack,
    ErrorCode,
    GetHello,
    Heartbeat,
    Hello,
    Message,
    Nak,
    Packet,
    PacketEncoder,
    ResetSafe,
    SetConfig,
    StreamDecoder,
)
from rig.core.transport import Transport, TransportClosed

# the firmware-in-the-loop rod has its own module (rotarod_simavr); still importable from here
__all__ = ["ROD_PINS", "SimRotarodTransport", "SimavrRotarodTransport"]

REPORT_PERIOD_US = 50_000  # 20 Hz, as the firmware
HEARTBEAT_PERIOD_US = 100_000


class SimRotarodTransport(Transport):
    """Byte-level simulated rotarod.

    Parameters
    ----------
    steps_per_rev : int
        Steps per revolution; step counts are ``floor`` of the exact ramp angle, as the firmware's.
    time_scale : float or None
        ``None``: virtual time runs as fast as packets are read; ``1.0``: real time.
    """

    def __init__(
        self,
        steps_per_rev: int = 3200,
        time_scale: float | None = None,
        *,
        drop_rate: float = 0.0,
        corrupt_rate: float = 0.0,
        seed: int = 0,
    ) -> None:
        if not (0 <= drop_rate <= 1 and 0 <= corrupt_rate <= 1):
            raise ValueError("drop_rate and corrupt_rate are probabilities in [0, 1]")
        self.name = "simulated rotarod"
        self.drop_rate = drop_rate
        self.corrupt_rate = corrupt_rate
        self._rng = random.Random(seed)
        self.faults = {"dropped": 0, "corrupted": 0}
        self._n_ramps = 0
        self._next_beat_us = 0
        self.spr = steps_per_rev
        self.time_scale = time_scale
        self._dec = StreamDecoder(ROTAROD_HOST_TO_BOARD, resync_types=frozenset())
        self._enc = PacketEncoder()
        self._out: deque[bytes] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self.now_us = 1_000  # virtual device clock
        self._wall0 = time.monotonic()
        self._ramp: StartRamp | None = None
        self._t0_us = 0
        self._next_report_us = 0
        self._pending: list[tuple[int, int, str]] = []  # (t_rel_us, lane, "fall"|"passive")
        self._scheduled: list[tuple[int, int, str]] = []
        self.config = RodConfig(steps_per_rev, 5, 500, 0x1F, 0, 0x1F)
        self.host_timeout_ms = 0  # off at boot, as the firmware's
        self.host_timed_out = False
        self._last_host_us = self.now_us
        # Virtual time only: while this returns True a turning rod does not move on, because the
        # host has not yet handled what the rod already sent. Without it the reader thread runs
        # the rod ahead of the runner by however far the scheduler lets it, and a STOP_ROD lands
        # at a rod time that depends on thread timing. Call ``wake`` when it turns False.
        self.host_busy: Callable[[], bool] | None = None
        with self._cv:
            self._send(self._hello())  # spontaneous HELLO, as the firmware after reset

    # ------------------------------------------------------------------ lanes
    def schedule_lane(self, lane: int, t_rel_s: float, kind: str = "fall") -> None:
        """Trip ``lane``'s sensor ``t_rel_s`` after the next ramp start (kind: fall/passive)."""
        if kind not in ("fall", "passive"):
            raise ValueError(f"kind must be 'fall' or 'passive', got {kind!r}")
        with self._cv:
            self._pending.append((round(t_rel_s * 1e6), lane, kind))

    @property
    def virtual_time(self) -> bool:
        return self.time_scale is None

    def advance(self, seconds: float) -> None:
        """Let virtual time pass (an inter-trial interval, or a host that says nothing); a
        turning rod turns meanwhile and its packets wait for the next ``read``."""
        with self._cv:
            until_us = self.now_us + round(seconds * 1e6)
            self._advance_ramp(until_us)
            self.now_us = max(self.now_us, until_us)

    # ------------------------------------------------------------------ model
    def _hello(self) -> Hello:
        major, minor, patch = ROTAROD_FIRMWARE_VERSION
        return Hello(
            PROTOCOL_VERSION, major, minor, patch, 1, 1, 0, 0, 0, 10, 0, 0, 0, 0, 50, 128, 0,
            ROTAROD_FIRMWARE_NAME,
        )  # fmt: skip

    def _send(self, msg: Message, faults: bool = False) -> None:
        """Queue ``msg``; with ``faults`` it may be dropped or get one byte corrupted (replies to
        commands never are, so a fault run exercises the event path, not command timeouts)."""
        wire = self._enc.encode(msg)[1]
        if faults and self._rng.random() < self.drop_rate:
            self.faults["dropped"] += 1
            return
        if faults and self._rng.random() < self.corrupt_rate:
            i = self._rng.randrange(len(wire) - 1)  # never the 0x00 delimiter
            wire = wire[:i] + bytes([(wire[i] % 255) + 1 if wire[i] != 255 else 1]) + wire[i + 1 :]
            self.faults["corrupted"] += 1
        self._out.append(wire)
        self._cv.notify_all()

    def _heartbeat(self) -> None:
        deadline = self._silence_deadline_us()
        if deadline is not None and self.now_us > deadline:
            self.host_timed_out = True  # an idle rod times out too; nothing to stop
        status = (STATUS_TURNING if self._ramp is not None else 0) | (
            STATUS_HOST_TIMED_OUT if self.host_timed_out else 0
        )
        self._send(Heartbeat(self.now_us, 0, 0, 0, 0, 0, status, self._n_ramps, 0xFF, 0), True)

    def _silence_deadline_us(self) -> int | None:
        """Rod time at which the host will have been silent for ``host_timeout_ms``."""
        if not self.host_timeout_ms or self.host_timed_out:
            return None
        scale = self.time_scale or 1.0  # paced: the host's clock is the wall clock
        return self._last_host_us + round(self.host_timeout_ms * 1000 * scale)

    def _end_ramp(self, reason: int) -> None:
        self._send(RodStopped(self.now_us, self._steps(self.now_us), reason), True)
        self._ramp = None
        self._heartbeat()  # status bit0 = 0: the rod is still, even if STOPPED was lost

    def _revs(self, t_us: int) -> float:
        r = self._ramp
        assert r is not None
        t = min(max(t_us - self._t0_us, 0), r.max_ms * 1000) / 1e6
        ramp_s, r0, r1 = r.ramp_ms / 1000, r.start_mrpm / 1000, r.end_mrpm / 1000
        tr = min(t, ramp_s)
        revs = (r0 * tr + 0.5 * (r1 - r0) / ramp_s * tr * tr) / 60
        return revs + max(t - ramp_s, 0) * r1 / 60

    def _steps(self, t_us: int) -> int:
        return math.floor(self._revs(t_us) * self.spr + 1e-9)

    def _nominal_mrpm(self, t_us: int) -> int:
        r = self._ramp
        assert r is not None
        t_ms = (t_us - self._t0_us) / 1000
        if t_ms >= r.ramp_ms:
            return r.end_mrpm
        return round(r.start_mrpm + (r.end_mrpm - r.start_mrpm) * t_ms / r.ramp_ms)

    def _measured_mrpm(self, t_us: int) -> int:
        t_from = max(self._t0_us, t_us - 250_000)
        if t_us <= t_from:
            return 0
        d = self._steps(t_us) - self._steps(t_from)
        return round(d / self.spr * 60e9 / (t_us - t_from))

    def _advance_ramp(self, until_us: int) -> None:
        """Emit everything the rod does up to ``until_us`` (called with the lock held)."""
        r = self._ramp
        while r is not None and self.now_us < until_us:
            end_us = self._t0_us + r.max_ms * 1000
            silent_us = self._silence_deadline_us()
            step_to = min(until_us, self._next_report_us, self._next_beat_us, end_us)
            if silent_us is not None:
                step_to = min(step_to, silent_us)
            for t_rel, lane, kind in sorted(self._scheduled):
                t = self._t0_us + t_rel
                if self.now_us < t <= step_to:
                    cls = LaneFall if kind == "fall" else PassiveRotation
                    self._send(
                        cls(t, lane, self._steps(t), self._measured_mrpm(t), self._nominal_mrpm(t)),
                        True,
                    )
            self.now_us = step_to
            if self.now_us >= end_us:
                self._end_ramp(STOP_CUTOFF)
                r = None
                continue
            if silent_us is not None and self.now_us >= silent_us:
                self.host_timed_out = True
                self._end_ramp(STOP_HOST_SILENT)
                r = None
                continue
            if self.now_us >= self._next_report_us:
                t = self.now_us
                speed = RodSpeed(t, self._steps(t), self._measured_mrpm(t), self._nominal_mrpm(t))
                self._send(speed, True)
                self._next_report_us += REPORT_PERIOD_US
            if self.now_us >= self._next_beat_us:
                self._heartbeat()
                self._next_beat_us += HEARTBEAT_PERIOD_US

    def _handle(self, seq: int, msg: Message) -> None:
        if isinstance(msg, SetConfig):
            t = msg.host_timeout_ms  # max_valve_ms is ignored: the rod has no valve
            if t != 0 and not 100 <= t <= 60_000:
                self._send(Nak(seq, msg.TYPE, ErrorCode.BAD_VALUE, 2))
                return
            self.host_timeout_ms = t
        elif isinstance(msg, GetHello):
            if msg.protocol_version != PROTOCOL_VERSION:
                self._send(Nak(seq, msg.TYPE, ErrorCode.VERSION, PROTOCOL_VERSION))
                return
            self._send(self._hello())
        elif isinstance(msg, RodConfig):
            if self._ramp is not None:
                self._send(Nak(seq, msg.TYPE, ErrorCode.BUSY, 0))
                return
            self.config = msg
            self.spr = msg.steps_per_rev
        elif isinstance(msg, StartRamp):
            if self._ramp is not None:
                self._send(Nak(seq, msg.TYPE, ErrorCode.BUSY, 0))
                return
            if msg.end_mrpm < msg.start_mrpm or msg.ramp_ms == 0 or msg.max_ms == 0:
                self._send(Nak(seq, msg.TYPE, ErrorCode.BAD_VALUE, 4))
                return
            self._ramp = msg
            self._t0_us = self.now_us
            self._next_report_us = self._t0_us + REPORT_PERIOD_US
            self._next_beat_us = self._t0_us + HEARTBEAT_PERIOD_US
            self._n_ramps += 1
            self._scheduled, self._pending = self._pending, []
            self._send(Ack(seq, msg.TYPE))
            started = RodStarted(self._t0_us, msg.start_mrpm, msg.end_mrpm, msg.ramp_ms, msg.max_ms)
            self._send(started, True)
            return
        elif isinstance(msg, StopRod | ResetSafe) and self._ramp is not None:
            self._end_ramp(STOP_HOST)
        self._send(Ack(seq, msg.TYPE))

    # ------------------------------------------------------------------ Transport
    def write(self, data: bytes) -> None:
        with self._cv:
            if self._closed:
                raise TransportClosed("simulated rotarod: closed")
            self._sync_clock()
            for item in self._dec.feed(data):
                # any CRC-valid packet proves the host alive, as on the board
                self._last_host_us = self.now_us
                self.host_timed_out = False
                if isinstance(item, Packet):
                    self._handle(item.seq, item.msg)
                else:
                    self._send(Nak(item.seq, item.ptype, ErrorCode.UNKNOWN_TYPE, 0))

    def _sync_clock(self) -> None:
        """Paced mode: bring the virtual clock (and a turning rod) up to the wall clock."""
        if self.time_scale is None:
            return
        wall_us = 1_000 + round((time.monotonic() - self._wall0) * 1e6 * self.time_scale)
        if self._ramp is not None:
            self._advance_ramp(wall_us)
        elif wall_us >= self._next_beat_us:
            self.now_us = wall_us
            self._heartbeat()
            self._next_beat_us = wall_us + HEARTBEAT_PERIOD_US
        self.now_us = max(self.now_us, wall_us)

    def read(self, timeout_s: float = 0.05) -> bytes:
        with self._cv:
            if self._closed:
                raise TransportClosed("simulated rotarod: closed")
            if self.time_scale is not None:
                self._sync_clock()
            elif not self._out and self._ramp is not None and not self._host_is_busy():
                # half a second of rod time per read: fewer, larger reads for the reader thread
                self._advance_ramp(self.now_us + 10 * REPORT_PERIOD_US)
            if not self._out and not self._closed:
                self._cv.wait(timeout_s)
                if not self._out and self._ramp is None and self.time_scale is None:
                    # idle in virtual time: a heartbeat per wait, as the board sends every 100 ms
                    self.now_us += HEARTBEAT_PERIOD_US
                    self._heartbeat()
            out = b"".join(self._out)
            self._out.clear()
            return out

    def _host_is_busy(self) -> bool:
        return self.host_busy is not None and self.host_busy()

    def wake(self) -> None:
        """The host has caught up (see ``host_busy``): let a waiting ``read`` run the rod on."""
        with self._cv:
            self._cv.notify_all()

    def take_output(self) -> bytes:
        """The bytes sent and not read yet, without letting time pass as ``read`` may."""
        with self._cv:
            out = b"".join(self._out)
            self._out.clear()
            return out

    def open(self) -> None:
        with self._cv:
            self._closed = False

    @property
    def is_open(self) -> bool:
        return not self._closed

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

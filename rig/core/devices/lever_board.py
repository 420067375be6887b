"""``LeverBoard``: the host driver of the lever board (real, under simavr, or simulated).

Given a ``Transport`` and the rig's lever-board config. The generic command link (sequence
numbers, ACK/NAK waits, the reader and heartbeat threads, reconnects) is ``CommandChannel``
(``rig.core.devices.channel``), which this driver extends. One reader thread per board reads the
port (and only blocks there), records every received chunk with its host time through
``on_raw(t_host_ns, data)`` (the runner writes ``raw/<device>.bin``), parses packets, answers
waiting commands, and passes board events on through callbacks and ``RigSignals``:

- ``on_trail(TrailEvent)``: every EVENT packet as the engines define it (state machine trail);
- ``on_event(Event)``: the same as session ``Event`` records, plus ``frame`` edges and link
  events (``link_lost``; ``reconnect`` with ``down_s``; ``lever_gap`` with the missing sample
  indices whenever the 1 kHz stream skips, e.g. across an outage);
- ``on_lever(t_device_us int64 (n,), counts int16 (n,))``; ``signals.lever`` gets mm.

Typed methods wait for the board's ACK (``CommandError`` on NAK or timeout, naming the command
and the reason). ``connect()`` checks the board's HELLO and refuses a wrong firmware with
``FirmwareMismatch``, whose message says what to flash. If the port vanishes the reader reports
it, retries opening it every ``reconnect_interval_s``, re-checks HELLO and carries on.
Board times arrive as 64-bit µs (docs/protocol.md), so no unwrapping is needed here.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from rig.core.config import LeverBoardSerial, LeverBoardSim, LeverBoardSimavr
from rig.core.devices.channel import CommandChannel, CommandError, Waiter
from rig.core.errors import RigError
from rig.core.events import Event
from rig.core.protocol import (
    LEVER_FIRMWARE_NAME,
    LEVER_FIRMWARE_VERSION,
    MAX_CHUNK,
    PROTOCOL_VERSION,
    ErrorCode,
    EventCode,
    EventMsg,
    FrameEdge,
    Heartbeat,
    Hello,
    LeverBatch,
    LeverZero,
    Message,
    Text,
    crc16,
)
from rig.core.protocol import packets as P
from rig.core.signals import RigSignals
from rig.core.statemachine import CompiledMachine, StateMachine, TrailEvent, validate_blob
from rig.core.transport import Transport

LeverBoardConfig = LeverBoardSerial | LeverBoardSimavr | LeverBoardSim
log = logging.getLogger(__name__)


class FirmwareMismatch(RigError):
    """The board runs other firmware or another protocol version than this host needs."""


class LeverBoard(CommandChannel):
    """Driver of one lever board (see the module docstring)."""

    _logger = log

    def __init__(
        self,
        transport: Transport,
        config: LeverBoardConfig,
        *,
        signals: RigSignals | None = None,
        on_raw: Callable[[int, bytes], None] | None = None,
        on_event: Callable[[Event], None] | None = None,
        on_trail: Callable[[TrailEvent], None] | None = None,
        on_lever: Callable[[np.ndarray, np.ndarray], None] | None = None,
        command_timeout_s: float = 0.5,
        host_heartbeat_s: float = 0.25,
        reconnect: bool = True,
        reconnect_interval_s: float = 0.5,
    ) -> None:
        super().__init__(
            transport,
            config.name,
            signals=signals,
            on_raw=on_raw,
            on_event=on_event,
            command_timeout_s=command_timeout_s,
            host_heartbeat_s=host_heartbeat_s,
            reconnect=reconnect,
            reconnect_interval_s=reconnect_interval_s,
        )
        self.config = config
        self.on_trail, self.on_lever = on_trail, on_lever
        self.hello: Hello | None = None
        self.board_stats: dict[str, int] = {}
        self.frames = 0
        self.lever_gaps = 0
        self.lever_missing_samples = 0
        self.mismatch: str | None = None
        self._zero: LeverZero | None = None
        self._last_hb_ns: int | None = None
        self._next_lever_index: int | None = None

    # ------------------------------------------------------------------ lifecycle
    def connect(self, timeout_s: float = 3.0, passive: bool = False) -> Hello | None:
        """Open the port, start the reader, check HELLO, configure the board.

        ``passive=True`` (replay): only read and parse; send nothing, check nothing.

        Raises
        ------
        FirmwareMismatch
            Wrong firmware name, protocol or major version (the message says what to flash).
        CommandError
            No HELLO within ``timeout_s``.
        """
        self._open_channel()
        if passive:
            return None
        hello = self._handshake(timeout_s)
        self._start_thread(self._heartbeat_loop, "host-heartbeat")
        return hello

    def close(self) -> None:
        """Put the board in its safe state (best effort), stop the threads, close the port."""
        if self.connected and not self._stop.is_set():
            self.safe_state()
        self._close_channel()

    def __enter__(self) -> LeverBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _handshake(self, timeout_s: float) -> Hello:
        deadline = time.monotonic() + timeout_s
        self.hello = None
        while self.hello is None:
            try:
                self.command(P.GetHello(PROTOCOL_VERSION), timeout_s=0.5)
            except CommandError as e:
                if e.error is ErrorCode.VERSION:
                    break  # the HELLO came first; _check_identity says what is wrong
            # a board resetting on port open (Uno + DTR) answers only after its bootloader
            if self.hello is None and time.monotonic() >= deadline:
                raise CommandError(
                    f"{self.name}: no HELLO from {self.transport.name} within {timeout_s} s. "
                    f"Is the lever-board firmware flashed? {self._flash_hint()}"
                )
        assert self.hello is not None
        self._check_identity(self.hello)
        cfg = self.config
        if self.hello.board_kind not in (0, 1 if cfg.board == "uno" else 2):
            self._log(
                logging.WARNING,
                f"{self.name}: config says board {cfg.board!r} but the "
                f"board reports kind {self.hello.board_kind}",
            )
        self.command(P.SetConfig(int(cfg.valve.max_valve_ms), int(cfg.heartbeat_timeout_ms)))
        self.command(P.SetStream(1, 10))
        return self.hello

    def _flash_hint(self) -> str:
        board = self.config.board
        return (
            f"Flash it with `make -C firmware upload BOARD={board}` (or open "
            "firmware/lever_board/lever_board.ino in the Arduino IDE and upload it)."
        )

    def _check_identity(self, h: Hello) -> None:
        ok = (
            h.name == LEVER_FIRMWARE_NAME
            and h.protocol_version == PROTOCOL_VERSION
            and h.fw_major == LEVER_FIRMWARE_VERSION[0]
        )
        if ok:
            self.mismatch = None
            return
        self.mismatch = (
            f"{self.name} on {self.transport.name} runs firmware {h.name!r} {h.fw_version} "
            f"(protocol {h.protocol_version}); this host needs {LEVER_FIRMWARE_NAME!r} "
            f"{LEVER_FIRMWARE_VERSION[0]}.x with protocol {PROTOCOL_VERSION}. " + self._flash_hint()
        )
        raise FirmwareMismatch(self.mismatch)

    # ------------------------------------------------------------------ commands
    def send_command(self, msg: Message) -> Waiter:
        """Send without waiting; ``wait_reply`` collects the ACK/NAK (for pipelining).

        Raises ``FirmwareMismatch`` for anything but ``GetHello`` while the board runs firmware
        this host does not speak to.
        """
        if self.mismatch is not None and not isinstance(msg, P.GetHello):
            raise FirmwareMismatch(self.mismatch)  # e.g. another board plugged in on reconnect
        return super().send_command(msg)

    def open_valve(self, duration_ms: float) -> int:
        """Open the valve for ``duration_ms`` (rounded to whole ms; 0 closes it). Returns ms."""
        ms = round(duration_ms)
        cap = int(self.config.valve.max_valve_ms)
        if not 0 <= ms <= cap:
            raise ValueError(f"valve duration {duration_ms} ms outside 0..{cap} ms (max_valve_ms)")
        self.command(P.OpenValve(ms))
        return ms

    def give_reward(self, volume_ul: float) -> int:
        """Deliver ``volume_ul`` µl through the valve calibration; returns the pulse width (ms)."""
        ms = max(1, round(self.config.valve.ul_to_ms(volume_ul)))
        return self.open_valve(ms)

    def play_tone(self, freq_hz: int, duration_ms: int) -> None:
        if not 31 <= freq_hz <= 20_000:
            raise ValueError(f"tone frequency {freq_hz} Hz outside 31..20000 Hz")
        if not 1 <= duration_ms <= 65535:
            raise ValueError(f"tone duration {duration_ms} ms outside 1..65535 ms")
        self.command(P.PlayTone(int(freq_hz), int(duration_ms)))

    def stop_tone(self) -> None:
        self.command(P.PlayTone(0, 0))

    def set_ttl(self, mask: int, value: int) -> None:
        self.command(P.SetTtl(mask & 0xFF, value & 0xFF))

    def set_stream(self, decimation: int = 1, batch_n: int = 10) -> None:
        self.command(P.SetStream(decimation, batch_n))

    def load_trial(self, machine: StateMachine | CompiledMachine) -> None:
        """Upload the next trial's machine into the board's pending buffer (chunk by chunk).

        The blob is checked against this board's limits first, so a machine the board would
        refuse fails here with the same byte offset (``BlobError``).
        """
        blob = (machine.compile() if isinstance(machine, StateMachine) else machine).encode()
        h = self.hello
        if h is not None:
            validate_blob(
                blob, h.max_states, h.max_transitions, int(self.config.valve.max_valve_ms)
            )
        msgs: list[Message] = [P.LoadBegin(len(blob), crc16(blob))]
        msgs += [P.LoadChunk(o, blob[o : o + MAX_CHUNK]) for o in range(0, len(blob), MAX_CHUNK)]
        msgs.append(P.LoadCommit())
        # one chunk in flight at a time: the firmware assembles received frames in two buffers,
        # so a pipelined upload (plus a host heartbeat) overruns it and the board drops frames
        # (found by tests/test_faults_simavr.py: every upload of more than one chunk failed)
        for m in msgs:
            self.command(m)

    def start_trial(self, trial_num: int) -> None:
        """Start the loaded machine now, or when the running trial ends (zero dead time)."""
        self.command(P.StartTrial(trial_num))

    def stop_trial(self) -> None:
        self.command(P.StopTrial())

    def abort_trial(self) -> None:
        self.command(P.AbortTrial())

    def soft_event(self, n: int) -> None:
        if not 0 <= n <= 7:
            raise ValueError(f"soft event number {n} outside 0..7")
        self.command(P.SoftEvent(n))

    def zero_lever(self) -> int:
        """Mean raw counts of the last 16 samples: the new ``rest_counts`` of the calibration."""
        self._zero = None
        self.command(P.ZeroLever())
        if self._zero is None:
            raise CommandError(f"{self.name}: ZeroLever was ACKed without a LEVER_ZERO packet")
        return self._zero.mean_counts

    def safe_state(self) -> bool:
        """Valve closed, tone off, TTLs low, trial aborted. Never raises; False if it failed."""
        try:
            self.command(P.ResetSafe())
            return True
        except RigError as e:  # refused, no reply, link gone, or firmware we do not speak to
            self._log(logging.ERROR, f"{self.name}: safe_state failed: {e}")
            return False

    # ------------------------------------------------------------------ health
    def health(self) -> dict[str, Any]:
        """Link and board statistics for the GUI and the session log."""
        now = time.monotonic_ns()
        age = None if self._last_hb_ns is None else (now - self._last_hb_ns) / 1e6
        return {
            "connected": self.connected,
            "heartbeat_age_ms": age,
            "firmware": None
            if self.hello is None
            else f"{self.hello.name} {self.hello.fw_version}",
            "host_rx": self._decoder.stats.as_dict(),
            "crc_errors": self._decoder.stats.crc_errors,
            "lost_packets": self._decoder.stats.lost,
            "board": dict(self.board_stats),
            "frames": self.frames,
            "lever_gaps": self.lever_gaps,
            "lever_missing_samples": self.lever_missing_samples,
            "reconnects": self.reconnects,
        }

    # ------------------------------------------------------------------ reconnect
    def _rehandshake(self) -> None:
        try:
            self._handshake(3.0)
            self._log(logging.INFO, f"{self.name}: reconnected to {self.transport.name}")
        except RigError as e:
            self._log(logging.ERROR, f"{self.name}: after reconnect: {e}")

    # ------------------------------------------------------------------ dispatch
    def _on_message(self, msg: Message, t_ns: int) -> None:
        if isinstance(msg, EventMsg):
            self._on_board_event(msg, t_ns)
        elif isinstance(msg, LeverBatch):
            self._on_lever_batch(msg)
        elif isinstance(msg, FrameEdge):
            self.frames = msg.count
            self._emit_event(
                Event("frame", self.name, msg.t_us, t_ns, msg.count - 1, data={"count": msg.count})
            )
        elif isinstance(msg, Heartbeat):
            self._last_hb_ns = time.monotonic_ns()
            self.board_stats = {f.name: getattr(msg, f.name) for f in dataclasses.fields(msg)}
            if self.signals is not None:
                self.signals.health.emit(self.name, self.health())
        elif isinstance(msg, Hello):
            self.hello = msg
        elif isinstance(msg, LeverZero):
            self._zero = msg
        elif isinstance(msg, Text):
            self._log(logging.INFO, f"{self.name} says: {msg.text}")

    def _on_board_event(self, msg: EventMsg, t_ns: int) -> None:
        trail = TrailEvent(msg.t_us, msg.code, msg.arg, msg.value)
        if self.on_trail is not None:
            self.on_trail(trail)
        known = msg.code in EventCode._value2member_map_
        name = EventCode(msg.code).event_name if known else f"event_0x{msg.code:02x}"
        data: dict[str, Any] = {"arg": msg.arg, "value": msg.value}
        if msg.code in (EventCode.VALVE_ON,) and msg.value:
            data["duration_ms"] = msg.value
            data["volume_ul"] = round(self.config.valve.ms_to_ul(msg.value), 3)
        elif EventCode.LEVER_UP <= msg.code <= EventCode.LEVER_OVER:
            data["position_mm"] = round(self.config.calibration.counts_to_mm(msg.value), 4)
        frame = self.frames - 1 if self.frames else None
        self._emit_event(Event(name, self.name, msg.t_us, t_ns, frame, data=data))

    def _on_lever_batch(self, msg: LeverBatch) -> None:
        step = msg.period_us // 1000 or 1
        expected = self._next_lever_index
        if expected is not None and msg.first_index != expected:
            # a lost LEVER packet or a link outage: record where and how much, so the session
            # file says which samples are missing rather than leaving a silent hole
            self.lever_gaps += 1
            missing = ((msg.first_index - expected) & 0xFFFFFFFF) // step
            self.lever_missing_samples += missing
            self._emit_event(
                Event(
                    "lever_gap",
                    self.name,
                    msg.t0_us,
                    data={
                        "first_missing_index": expected,
                        "next_index": msg.first_index,
                        "missing_samples": missing,
                        "missing_ms": missing * msg.period_us / 1000,
                    },
                )
            )
        self._next_lever_index = (msg.first_index + step * len(msg.samples)) & 0xFFFFFFFF
        t = msg.times_us()
        if self.on_lever is not None:
            self.on_lever(t, msg.samples)
        if self.signals is not None:
            cal = self.config.calibration
            self.signals.lever.emit(t, (msg.samples - cal.rest_counts) / cal.counts_per_mm)

"""``QtBridge``: carries :class:`rig.core.signals.RigSignals` (emitted on any thread) to Qt.

Emitter-side callbacks never touch Qt. They only copy into Python structures: lever batches into
a :class:`~gui.ring.LeverRing`, ΔF/F rows into a :class:`~gui.ring.TraceRing` (every frame, none
dropped), the newest imaging frame into a single slot (display shows the latest only), and the
low-rate items (events, trials, logs, health, session state) into queues. A ``QTimer`` on the
main thread drains all of it at ``redraw_hz`` and re-emits it as Qt signals, so panels redraw at
most once per tick however fast the rig streams (coalescing), and they always run on the main
thread (a queued hop, without a signal per sample).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any

import numpy as np
from PyQt6.QtCore import QObject, Qt, QTimer, pyqtSignal

from gui.ring import LeverRing, TraceRing
from gui.threadcheck import ThreadChecker
from rig.core.events import Event
from rig.core.signals import RigSignals

#: Packages whose Python log records the app shows (runner failures are logged, not signalled).
LOGGERS = ("rig", "tasks", "acquisition")


class _LogForwarder(logging.Handler):
    """Python ``logging`` records (any thread) -> the bridge's log queue (no Qt here)."""

    def __init__(self, bridge: QtBridge, level: int) -> None:
        super().__init__(level)
        self._bridge = bridge

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._bridge._on_log(record.levelno, f"{record.name}: {self.format(record)}")
        except Exception:  # a logging handler must never raise into the caller
            self.handleError(record)


class QtBridge(QObject):
    """Queued, coalescing bridge from ``RigSignals`` to the Qt main thread.

    Parameters
    ----------
    redraw_hz : float
        Rate of the main-thread drain timer (and so the panels' maximum redraw rate).
    checker : ThreadChecker, optional
        Records any main-thread-only code reached off the main thread.

    Signals (all emitted on the main thread)
    ----------------------------------------
    events(list[Event])
        Session events since the last tick, in order.
    trial(dict)
        One finished trial (a ``trials.tsv`` row).
    log(int, str)
        Level (``logging``) and message.
    health(str, dict)
        Newest health stats of one device.
    imaging_stats(dict)
        Newest pipeline statistics.
    session(str, dict)
        ``"started"`` / ``"stopped"`` and info.
    lever_updated()
        New lever samples are in :attr:`lever`.
    traces_updated()
        New ΔF/F rows are in :attr:`traces`.
    frame(int, ndarray)
        The newest registered frame (frames in between are skipped for display only).
    tick()
        After each drain; panels with time-based displays (timers) refresh on it.
    """

    events = pyqtSignal(list)
    trial = pyqtSignal(dict)
    log = pyqtSignal(int, str)
    health = pyqtSignal(str, dict)
    imaging_stats = pyqtSignal(dict)
    session = pyqtSignal(str, dict)
    lever_updated = pyqtSignal()
    traces_updated = pyqtSignal()
    frame = pyqtSignal(int, object)
    tick = pyqtSignal()

    def __init__(
        self,
        redraw_hz: float = 40.0,
        checker: ThreadChecker | None = None,
        lever_capacity: int = 20_000,
        trace_capacity_frames: int = 4096,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        if redraw_hz <= 0:
            raise ValueError(f"redraw_hz must be > 0, got {redraw_hz}")
        self.checker = checker
        self.lever = LeverRing(lever_capacity)
        self.traces = TraceRing(trace_capacity_frames)
        self._events: collections.deque[Event] = collections.deque()
        self._trials: collections.deque[dict[str, Any]] = collections.deque()
        self._logs: collections.deque[tuple[int, str]] = collections.deque()
        self._sessions: collections.deque[tuple[str, dict[str, Any]]] = collections.deque()
        self._health: dict[str, dict[str, Any]] = {}
        self._imaging: dict[str, Any] | None = None
        self._frame: tuple[int, np.ndarray] | None = None
        self._slot_lock = threading.Lock()
        self._lever_seen = 0
        self._traces_seen = 0
        self.n_frames_in = 0
        self.n_ticks = 0
        self.tick_ms: collections.deque[float] = collections.deque(maxlen=2000)
        self._signals: RigSignals | None = None
        self._log_handler: _LogForwarder | None = None
        self._log_names: tuple[str, ...] = ()
        self._timer = QTimer(self)
        self._timer.setTimerType(Qt.TimerType.PreciseTimer)
        self._timer.setInterval(max(1, round(1000.0 / redraw_hz)))
        self._timer.timeout.connect(self._drain)

    # ------------------------------------------------------------------ wiring
    def attach(self, signals: RigSignals) -> None:
        """Listen to ``signals`` (detaching from any previous group) and start the drain timer."""
        self.detach()
        self._signals = signals
        signals.event.connect(self._on_event)
        signals.lever.connect(self._on_lever)
        signals.trial.connect(self._on_trial)
        signals.health.connect(self._on_health)
        signals.imaging.connect(self._on_imaging)
        signals.frame.connect(self._on_frame)
        signals.traces.connect(self._on_traces)
        signals.log.connect(self._on_log)
        signals.session.connect(self._on_session)
        self._timer.start()

    def start(self) -> None:
        """Start the drain timer (``attach`` does too)."""
        self._timer.start()

    def detach(self) -> None:
        """Stop listening to the current signal group (queued items are still delivered)."""
        s = self._signals
        if s is None:
            return
        for sig, cb in (
            (s.event, self._on_event),
            (s.lever, self._on_lever),
            (s.trial, self._on_trial),
            (s.health, self._on_health),
            (s.imaging, self._on_imaging),
            (s.frame, self._on_frame),
            (s.traces, self._on_traces),
            (s.log, self._on_log),
            (s.session, self._on_session),
        ):
            sig.disconnect(cb)
        self._signals = None

    def reset(self) -> None:
        """Forget buffered data; call on the main thread before a new session's runner starts."""
        self.lever.clear()
        self._lever_seen = 0
        self.traces = TraceRing(self.traces.capacity)
        self._traces_seen = 0
        self.n_frames_in = 0
        with self._slot_lock:
            self._frame = None

    # ------------------------------------------------------------------ any thread (no Qt here)
    def _on_event(self, event: Event) -> None:
        self._events.append(event)

    def _on_lever(self, t_device_us: np.ndarray, position_mm: np.ndarray) -> None:
        self.lever.append(t_device_us, position_mm)

    def _on_trial(self, record: dict[str, Any]) -> None:
        self._trials.append(dict(record))

    def _on_health(self, device: str, stats: dict[str, Any]) -> None:
        with self._slot_lock:
            self._health[device] = dict(stats)

    def _on_imaging(self, stats: dict[str, Any]) -> None:
        with self._slot_lock:
            new = dict(stats)
            old = self._imaging
            # Stats coalesce to the latest, but the per-frame shifts they carry accumulate: the
            # motion trace must not lose the frames of a message it never drew.
            if old is not None and "shifts_px" in old and "shifts_px" in new:
                new["shift_frame_index"] = np.concatenate(
                    [old["shift_frame_index"], new["shift_frame_index"]]
                )
                new["shifts_px"] = np.concatenate([old["shifts_px"], new["shifts_px"]])
            self._imaging = new

    def _on_frame(self, frame_index: int, image: np.ndarray) -> None:
        with self._slot_lock:
            self._frame = (frame_index, image)
            self.n_frames_in += 1

    def _on_traces(self, frame_index: int, dff: np.ndarray) -> None:
        self.traces.append(frame_index, dff)

    def _on_log(self, level: int, message: str) -> None:
        self._logs.append((level, message))

    def _on_session(self, state: str, info: dict[str, Any]) -> None:
        self._sessions.append((state, dict(info)))

    # ------------------------------------------------------------------ main thread
    def drain(self) -> None:
        """Deliver everything queued so far (the timer calls this; tests may call it too)."""
        self._drain()

    def _drain(self) -> None:
        if self.checker is not None:
            self.checker.check_main_thread("gui.bridge.QtBridge._drain")
        t0 = time.perf_counter()
        while self._sessions:
            state, info = self._sessions.popleft()
            self.session.emit(state, info)
        with self._slot_lock:
            health, self._health = self._health, {}
            imaging, self._imaging = self._imaging, None
            frame, self._frame = self._frame, None
        batch: list[Event] = []
        while self._events:
            batch.append(self._events.popleft())
        if batch:
            self.events.emit(batch)
        for device, stats in health.items():
            self.health.emit(device, stats)
        if imaging is not None:
            self.imaging_stats.emit(imaging)
        if self.lever.n_total != self._lever_seen:
            self._lever_seen = self.lever.n_total
            self.lever_updated.emit()
        if self.traces.n_frames_in != self._traces_seen:
            self._traces_seen = self.traces.n_frames_in
            self.traces_updated.emit()
        if frame is not None:
            self.frame.emit(frame[0], frame[1])
        while self._trials:
            self.trial.emit(self._trials.popleft())
        while self._logs:
            level, message = self._logs.popleft()
            self.log.emit(level, message)
        self.tick.emit()
        self.n_ticks += 1
        self.tick_ms.append((time.perf_counter() - t0) * 1e3)

    def forward_logging(
        self, loggers: tuple[str, ...] = LOGGERS, level: int = logging.WARNING
    ) -> None:
        """Also show Python log records of ``loggers`` (warnings and errors by default)."""
        self.stop_logging()
        self._log_handler = _LogForwarder(self, level)
        for name in loggers:
            logging.getLogger(name).addHandler(self._log_handler)
        self._log_names = loggers

    def stop_logging(self) -> None:
        handler = self._log_handler
        if handler is not None:
            for name in self._log_names:
                logging.getLogger(name).removeHandler(handler)
            self._log_handler = None

    def stop(self) -> None:
        self._timer.stop()
        self.stop_logging()

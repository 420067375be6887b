"""Play a recorded session folder in the app's panels (``rig replay SESSION --gui``).

:class:`ReplaySession` satisfies what the window needs from a runner
(:class:`gui.runner_api.SessionRunner`) but, instead of driving devices, reads a session folder
and re-emits its content through :class:`~rig.core.signals.RigSignals`: events, lever batches in
mm, finished trials and the imaging pipeline's ΔF/F rows. A worker thread paces all of it on the
recorded board time at ``speed`` x real time (1..20) and ends the session by itself at the end of
the recording. Registered frames are not stored in a session folder, so the imaging panel shows
the ROIs but no movie.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from rig.core.errors import SessionFormatError
from rig.core.events import Event
from rig.core.signals import RigSignals
from rig.core.store import SessionReader

MIN_SPEED = 1.0
MAX_SPEED = 20.0
#: Wall time between two emission steps of the worker (the panels redraw at ~40 Hz anyway).
STEP_S = 0.02

log = logging.getLogger("rig.replay.gui")


def recorded_lever_mm(reader: SessionReader) -> tuple[np.ndarray, np.ndarray]:
    """The session's lever samples: ``lever.bin`` if written, else decoded from the raw bytes.

    Returns
    -------
    t_device_us : ndarray, int64 (n,)
        Board time of each sample in µs.
    position_mm : ndarray, float64 (n,)
        Calibrated position (the calibration of the recorded rig config).
    """
    if (reader.folder / "lever.bin").exists():
        lev = reader.lever()
        t_us, counts = lev["t_device_us"].astype(np.int64), lev["counts"].astype(np.float64)
    elif "lever_board" in reader.raw_devices():
        # Golden sessions keep only the board's bytes: decode its LEVER packets the way the
        # driver does (same decoder, same packet class).
        from rig.core.protocol.framing import Packet, StreamDecoder
        from rig.core.protocol.packets import BOARD_TO_HOST, LeverBatch

        dec = StreamDecoder(BOARD_TO_HOST)
        ts: list[np.ndarray] = []
        cs: list[np.ndarray] = []
        for _t_host_ns, chunk in reader.raw("lever_board"):
            for item in dec.feed(chunk):
                if isinstance(item, Packet) and isinstance(item.msg, LeverBatch):
                    ts.append(item.msg.times_us())
                    cs.append(np.asarray(item.msg.samples, np.float64))
        if not ts:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        t_us, counts = np.concatenate(ts), np.concatenate(cs)
    else:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    cal = (reader.meta.rig_config.get("lever_board") or {}).get("calibration") or {}
    rest = float(cal.get("rest_counts", 512))
    cpm = float(cal.get("counts_per_mm", 40.0))
    return t_us, (counts - rest) / cpm


def _event_times_us(events: list[Event]) -> np.ndarray:
    """Board time (µs, int64 (n,)) for every event, host-only ones included.

    Host-only events are placed with the median host-to-board offset of the board events, then
    made non-decreasing in file order (the file is the order they happened in).
    """
    board = [(e.t_host_ns // 1000 - e.t_device_us) for e in events if e.t_device_us is not None]
    offset_us = int(np.median(board)) if board else (events[0].t_host_ns // 1000 if events else 0)
    t = np.array(
        [
            e.t_device_us if e.t_device_us is not None else e.t_host_ns // 1000 - offset_us
            for e in events
        ],
        dtype=np.int64,
    )
    return np.maximum.accumulate(t) if t.size else t


def _trial_times_us(
    trials: list[dict[str, str]], events: list[Event], t_ev: np.ndarray
) -> np.ndarray:
    """When each finished trial is emitted, board µs int64 (n_trials,): its end (lever) or fall
    (rotarod) time, else the time of the last event of that trial, else the end of the recording.
    """
    last_of: dict[int, int] = {}
    for e, t_us in zip(events, t_ev, strict=True):
        if e.trial is not None:
            last_of[int(e.trial)] = int(t_us)
    end = int(t_ev[-1]) if t_ev.size else 0
    out = []
    for row in trials:
        t: int | None = None
        for col in ("t_end_us", "t_fall_device_us"):
            if row.get(col, "") not in ("", None):
                t = int(float(row[col]))
                break
        if t is None:
            try:
                t = last_of.get(int(row.get("trial", "")), end)
            except ValueError:
                t = end
        out.append(t)
    return np.asarray(out, np.int64)


def typed_row(row: dict[str, str]) -> dict[str, Any]:
    """A ``trials.tsv`` row with the types a live runner emits: ``""`` -> ``None``, numbers ->
    int or float, anything else kept as text (the panels do ``int(record["t_cross_us"])``)."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if v == "":
            out[k] = None
            continue
        try:
            out[k] = int(v)
        except ValueError:
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v
    return out


class ReplaySession:
    """A recorded session played back through ``signals`` (a :class:`SessionRunner`).

    Parameters
    ----------
    folder : path
        A session folder (``session.json``, ``events.jsonl``, ``trials.tsv``, lever samples in
        ``lever.bin`` or ``raw/lever_board.bin``, optionally ``imaging/``).
    speed : float
        x real time, 1..20.

    Raises
    ------
    SessionFormatError
        Not a readable session folder.
    ValueError
        ``speed`` outside 1..20.
    """

    def __init__(self, folder: str | Path, speed: float = 1.0) -> None:
        if not MIN_SPEED <= float(speed) <= MAX_SPEED:
            raise ValueError(f"replay speed must be {MIN_SPEED:g}..{MAX_SPEED:g}x, got {speed}")
        self.speed = float(speed)
        self.folder = Path(folder)
        self.signals = RigSignals()
        reader = SessionReader(self.folder)
        self.meta = reader.meta
        self.events = reader.events()
        self.trials = reader.trials()
        self.t_events_us = _event_times_us(self.events)
        self.t_trials_us = _trial_times_us(self.trials, self.events, self.t_events_us)
        self.lever_t_us, self.lever_mm = recorded_lever_mm(reader)
        self.frame_index = np.zeros(0, np.int64)
        self.t_frames_us = np.zeros(0, np.int64)
        self.dff = np.zeros((0, 0), np.float32)
        self.roi_labels: np.ndarray | None = None
        imaging = self.folder / "imaging"
        if (imaging / "rois.json").exists():
            self._load_imaging(imaging)
        starts = [a[0] for a in (self.t_events_us, self.lever_t_us, self.t_frames_us) if a.size]
        ends = [a[-1] for a in (self.t_events_us, self.lever_t_us, self.t_frames_us) if a.size]
        ends += [int(self.t_trials_us.max())] if self.t_trials_us.size else []
        if not starts:
            raise SessionFormatError(f"{self.folder}: nothing recorded to replay")
        self.t_first_us = int(min(starts))
        self.t_last_us = int(max(ends))
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._running = False
        self.reason = ""

    def _load_imaging(self, imaging: Path) -> None:
        from acquisition.traces.store import read_results

        res = read_results(imaging)
        frames = res["frames"]
        t = np.asarray(res.get("frame_times_us", frames["t_board_us"]), np.int64)[: len(frames)]
        if t.size < len(frames):
            t = np.concatenate([t, frames["t_board_us"][t.size :]])
        ok = t >= 0  # a frame the frame clock missed has no board time: not played
        self.frame_index = frames["frame_index"][ok].astype(np.int64)
        self.t_frames_us = t[ok]
        self.dff = np.asarray(res["dff"], np.float32)[ok]
        order = np.argsort(self.t_frames_us, kind="stable")
        self.frame_index, self.t_frames_us, self.dff = (
            self.frame_index[order],
            self.t_frames_us[order],
            self.dff[order],
        )
        labels = imaging / "roi_labels.npy"
        if labels.exists():
            self.roi_labels = np.load(labels)

    # ------------------------------------------------------------------ SessionRunner
    @property
    def running(self) -> bool:
        return self._running

    @property
    def session_dir(self) -> Path | None:
        return self.folder

    @property
    def duration_s(self) -> float:
        """Recorded board time from the first to the last item, in s."""
        return (self.t_last_us - self.t_first_us) / 1e6

    def start(self) -> None:
        """Start playing on a worker thread; returns at once."""
        with self._lock:
            if self._running:
                raise RuntimeError("replay already running")
            self._stop.clear()
            self._running = True
            self.reason = ""
            self.signals.session.emit("started", {"session_dir": str(self.folder), "replay": True})
            self._thread = threading.Thread(target=self._play, name="replay", daemon=True)
            self._thread.start()

    def stop(self, reason: str = "stopped by the experimenter") -> None:
        """Stop playing; returns once the worker has ended (idempotent)."""
        with self._lock:
            if not self.reason:  # the worker reports this reason in its "stopped" signal
                self.reason = reason
        self._stop.set()
        th = self._thread
        if th is not None and th is not threading.current_thread():
            th.join(timeout=5.0)
        self._running = False

    def give_reward(self, volume_ul: float) -> None:
        raise RuntimeError("a replay has no devices: manual actions are not possible")

    def play_tone(self, freq_hz: float, duration_ms: float) -> None:
        raise RuntimeError("a replay has no devices: manual actions are not possible")

    def flush_valve(self, duration_ms: float) -> None:
        raise RuntimeError("a replay has no devices: manual actions are not possible")

    def zero_lever(self) -> None:
        raise RuntimeError("a replay has no devices: manual actions are not possible")

    # ------------------------------------------------------------------ worker
    def _play(self) -> None:
        s = self.signals
        i_ev = i_tr = i_lev = i_fr = 0
        trial_order = np.argsort(self.t_trials_us, kind="stable")
        wall0 = time.monotonic()
        reason = "end of recording"
        try:
            while True:
                now_us = self.t_first_us + int((time.monotonic() - wall0) * self.speed * 1e6)
                j = int(np.searchsorted(self.t_events_us, now_us, side="right"))
                for e in self.events[i_ev:j]:
                    s.event.emit(e)
                i_ev = j
                j = int(np.searchsorted(self.lever_t_us, now_us, side="right"))
                if j > i_lev:
                    s.lever.emit(self.lever_t_us[i_lev:j], self.lever_mm[i_lev:j])
                    i_lev = j
                j = int(np.searchsorted(self.t_frames_us, now_us, side="right"))
                for k in range(i_fr, j):
                    s.traces.emit(int(self.frame_index[k]), self.dff[k])
                i_fr = j
                while i_tr < len(trial_order) and self.t_trials_us[trial_order[i_tr]] <= now_us:
                    s.trial.emit(typed_row(self.trials[trial_order[i_tr]]))
                    i_tr += 1
                if now_us >= self.t_last_us:
                    break
                if self._stop.wait(STEP_S):
                    break
        except Exception as e:  # a listener failing must still end the session in the window
            log.exception("replay failed")
            reason = f"replay failed: {e}"
        with self._lock:
            self.reason = self.reason or reason
        s.session.emit("stopped", {"session_dir": str(self.folder), "reason": self.reason})


def replay_window(folder: str | Path, speed: float = 1.0, **kwargs: Any) -> Any:
    """The main window in replay mode on ``folder`` (made, not shown).

    The session panel shows the recorded subject and task; Start plays the recording, Stop ends
    it; manual controls stay disabled. ``kwargs`` go to :class:`gui.app.MainWindow`.
    """
    from gui.app import DEFAULT_CONFIG, MainWindow
    from rig.core.config import RigConfig, load_rig_config

    probe = ReplaySession(folder, speed)  # fails early on a bad folder or speed
    try:
        rig = RigConfig.model_validate(probe.meta.rig_config)
    except Exception:  # an older or foreign snapshot: only the panel's task list depends on it
        rig = load_rig_config(DEFAULT_CONFIG)
    window = MainWindow(rig, runner_factory=lambda _req: ReplaySession(folder, speed), **kwargs)
    window.replay_mode = True
    window.setWindowTitle(f"motor-rig — replay of {Path(folder).name} at {speed:g}x")
    sp = window.session_panel
    if probe.meta.task in [sp.task.itemText(i) for i in range(sp.task.count())]:
        sp.task.setCurrentText(probe.meta.task)
    sp.subject.setText(probe.meta.subject_id)
    window.manual_panel.set_enabled(False)
    return window


def replay_main(folder: str | Path, speed: float = 1.0) -> int:
    """Open the replay window (blocks until it is closed); returns the exit code."""
    import sys

    from PyQt6.QtWidgets import QApplication

    from gui.app import _close_on_signals

    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = replay_window(folder, speed)
    window.show()
    _close_on_signals(window)
    return int(app.exec())

"""``LeverRunner``: one lever session, from the rig config to a closed session folder.

Composition only: the task (``tasks.lever_tasks``) decides trials, the board
(``rig.runner.lever_devices``) runs them, ``rig.runner.trials.TrialBook`` turns its events into
trial records, ``rig.runner.imaging.LiveImaging`` runs the imaging pipeline when the rig has an
``imaging`` section, ``SessionWriter`` records everything. Threads:

- the board's reader thread calls back with raw bytes, lever batches, events and trail
  events; those are written at once (the writer is thread-safe; anything that arrives before
  the session folder opens is kept and written first), frame-clock edges go to the imaging
  feeder, and the trail goes to a queue;
- the runner thread takes the trail from the queue: when trial N starts it uploads trial N+1
  and queues its start (the board swaps machines in the tick N ends, no dead time); when N
  ends the book writes N's record and lets the task learn (shaping), and the runner checks the
  stop criteria;
- ``stop()`` may come from any thread; it returns once the board is in its safe state, the
  imaging pipeline has processed every frame whose edge arrived, and the files are closed.
  Safe state is reached on every way out (stop, criteria, error, exit).

Board commands are never sent from the reader thread: their ACKs arrive on it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sys
import threading
import time
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from rig.core.devices import LeverBoard
from rig.core.errors import RigError
from rig.core.events import Event
from rig.core.signals import RigSignals
from rig.core.statemachine import TrailEvent
from rig.core.store import SessionMeta, SessionWriter
from rig.runner.imaging import LiveImaging, imaging_figures
from rig.runner.lever_devices import (
    BoardRecorder,
    ConnectedBoard,
    connect_lever_board,
)
from rig.runner.trials import TrialBook
from tasks.lever_tasks import LeverTask, make_task
from tasks.params import params_hash
from tasks.shaping import load_subject, save_subject
from tasks.sim_mouse import save_mouse_state

log = logging.getLogger(__name__)

#: Longest session assumed when neither the task nor the caller bounds it (sizes the synthetic
#: imaging movie), s.
DEFAULT_MAX_SESSION_S = 3600.0
#: Simulated board faster than real time: age (board s) after which a trial that does not end
#: is cut if a stop rule is due (the rules are otherwise judged at trial starts).
VIRTUAL_STOP_GRACE_S = 60.0


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in ("motor-rig", "numpy", "scipy", "pydantic"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


class LeverRunner:
    """One lever session (satisfies the GUI's ``SessionRunner`` protocol).

    Parameters
    ----------
    rig : RigConfig
    subject_id : str
    task : str
        ``self_initiated`` | ``cue_triggered`` | ``mixed`` (or A/B/C).
    params : pydantic model
        The task's validated params (``tasks.params.make_params``).
    speed : float | None
        Simulated boards: x real time; ``None`` or 0 = as fast as possible (virtual clock).
    duration_s : float, optional
        Extra stop criterion, in board seconds.
    mouse : LeverMouse, optional
        Replaces the config's simulated mouse.
    frame_clock_hz : float, optional
        Simulated board: give it a frame clock at this rate. Default: the synthetic imaging
        source's frame rate when imaging runs, else no frame clock.
    imaging : bool
        Run the imaging pipeline when the rig config has an ``imaging`` section.
    imaging_drive : bool
        Synthetic imaging source: each pull's movement onset drives the movie's responsive
        cells (``rig.runner.imaging_drive``); False plays the movie undriven.
    """

    def __init__(
        self,
        rig: Any,
        subject_id: str,
        task: str,
        params: Any,
        *,
        speed: float | None = 1.0,
        duration_s: float | None = None,
        signals: RigSignals | None = None,
        mouse: Any = None,
        frame_clock_hz: float | None = None,
        imaging: bool = True,
        imaging_drive: bool = True,
    ) -> None:
        self.rig = rig
        self.subject_id = subject_id
        self.task_name = task
        self.params = params
        self.speed = speed or None
        self.duration_s = duration_s
        self.signals = signals or RigSignals()
        self.frame_clock_hz = frame_clock_hz
        self._mouse_override = mouse
        self._want_imaging = imaging
        self._imaging_drive = imaging_drive  # imaging wiring: see rig/runner/imaging_drive.py
        self.task: LeverTask | None = None
        self.book: TrialBook | None = None
        self.conn: ConnectedBoard | None = None
        self.writer: SessionWriter | None = None
        self.imaging: LiveImaging | None = None
        self.imaging_summary: dict[str, Any] = {}
        self._subject_at_start: dict[str, Any] = {}
        self._q: queue.Queue[TrailEvent] = queue.Queue()
        self._stop_req = threading.Event()
        #: board time (µs) of the latest trial start the session loop handled
        self._last_start_us: int | None = None
        self._stop_reason = ""
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.recorder = BoardRecorder()
        self._wall0 = 0.0
        self._wall_s = 0.0
        self._status = "complete"
        self.error: BaseException | None = None

    # ------------------------------------------------------------------ SessionRunner API
    @property
    def running(self) -> bool:
        return self._thread is not None and not self._done.is_set()

    @property
    def session_dir(self) -> Path | None:
        return self.writer.folder if self.writer is not None else None

    def start(self) -> None:
        """Connect, open the session folder, start imaging and trial 0; returns once it runs."""
        if self._thread is not None:
            raise RigError("this runner has run already; make a new one per session")
        subject = load_subject(self.rig.data_dir, self.subject_id)
        self._subject_at_start = subject.model_dump(mode="json")
        lb = self.rig.lever_board
        if lb is None:
            raise RigError(f"rig {self.rig.name!r} has no lever_board section")
        self.task = make_task(self.task_name, self.params, lb.calibration, lb.valve, subject)
        self.book = TrialBook(self.task, self._host_event, self._write_trial)
        clock_hz, clock_frames = self.frame_clock_hz, None
        if self._want_imaging and self.rig.imaging is not None:
            # a synthetic movie follows the simulated board's frame clock; other boards have
            # no clock to give it, so it plays at its own rate
            self.imaging = LiveImaging(
                self.rig.imaging, self.signals, self._max_session_s(), clocked=lb.driver == "sim",
                drive=self._imaging_drive,
            )  # fmt: skip
            if self.imaging.clocked:
                clock_hz, clock_frames = self.imaging.frame_clock_hz, self.imaging.n_movie_frames
        self.frame_clock_hz = clock_hz
        self._wall0 = time.monotonic()
        self.conn = connect_lever_board(
            self.rig,
            self.subject_id,
            speed=self.speed,
            mouse=self._mouse_override,
            board_kwargs={
                "signals": self.signals,
                "on_raw": self._on_raw,
                "on_event": self._on_event,
                "on_trail": self._on_trail,
                "on_lever": self._on_lever,
            },
            frame_clock_hz=clock_hz,
            frame_clock_n_frames=clock_frames,
        )
        try:
            self._open_session()
            self._thread = threading.Thread(target=self._run, name="lever-runner", daemon=True)
            self._thread.start()
        except BaseException:
            self._teardown("aborted", "failed to start")
            raise

    def stop(self, reason: str = "stopped by the experimenter") -> None:
        """Stop now; returns once the board is safe and the files are closed."""
        if not self._stop_req.is_set() and not self._done.is_set():
            self._stop_reason = reason
            self._stop_req.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=120)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait for the session to end by itself; True if it has."""
        return self._done.wait(timeout_s)

    def run(self) -> dict[str, Any]:
        """``start()``, wait for the stop criteria, return :meth:`summary` (blocking)."""
        self.start()
        try:
            while not self._done.wait(0.2):
                pass
        finally:
            self.stop("interrupted")
        if self.error is not None:
            raise self.error
        return self.summary()

    def give_reward(self, volume_ul: float) -> None:
        self._manual("manual_reward", {"volume_ul": volume_ul})
        self._board().give_reward(volume_ul)

    def play_tone(self, freq_hz: float, duration_ms: float) -> None:
        self._manual("manual_tone", {"freq_hz": freq_hz, "duration_ms": duration_ms})
        self._board().play_tone(round(freq_hz), round(duration_ms))

    def flush_valve(self, duration_ms: float) -> None:
        self._manual("manual_flush", {"duration_ms": duration_ms})
        self._board().open_valve(duration_ms)

    def zero_lever(self) -> None:
        """Take the lever's current position as rest: trials planned from now on use it (the
        one already queued keeps the old thresholds)."""
        counts = self._board().zero_lever()
        if self.task is not None:
            old = self.task.lever_cal.rest_counts
            self.task.lever_cal = self.task.lever_cal.model_copy(update={"rest_counts": counts})
            self._manual("manual_zero_lever", {"rest_counts": counts, "old_rest_counts": old})

    def roi_labels(self) -> np.ndarray | None:
        """int32 (Y, X) ROI label image of the live imaging, once known (else None)."""
        return self.imaging.roi_labels() if self.imaging is not None else None

    def reference_image(self) -> np.ndarray | None:
        """float32 (Y, X) registration reference of the live imaging, once known."""
        return self.imaging.reference_image() if self.imaging is not None else None

    # ------------------------------------------------------------------ progress
    def progress(self) -> dict[str, Any]:
        """Live figures (:meth:`TrialBook.progress`), zeros before the session starts."""
        if self.book is None:
            return TrialBook.empty_progress()
        return self.book.progress()

    @property
    def records(self) -> list[dict[str, Any]]:
        """Rows of the trials finished so far."""
        return self.book.records if self.book is not None else []

    @property
    def elapsed_s(self) -> float:
        """Board time since the session started (s)."""
        return self.book.elapsed_s if self.book is not None else 0.0

    def summary(self) -> dict[str, Any]:
        out = {
            **self.progress(),
            "folder": str(self.session_dir) if self.session_dir else "",
            "status": self._status,
            "stop_reason": self._stop_reason,
            "wall_s": self._wall_s,
        }
        if self.imaging is not None:
            out["imaging"] = imaging_figures(self.imaging_summary)
        return out

    # ------------------------------------------------------------------ session
    def _max_session_s(self) -> float:
        limits = [self.duration_s] if self.duration_s is not None else []
        stop = getattr(self.task, "stop", None)
        if stop is not None:
            limits.append(float(stop.max_duration_min) * 60.0)
        return min(limits) if limits else DEFAULT_MAX_SESSION_S

    def _open_session(self) -> None:
        assert self.task is not None and self.conn is not None
        extra: dict[str, Any] = {
            "driver": self.conn.driver,
            "speed": self.speed,
            "duration_s": self.duration_s,
            "subject_at_start": self._subject_at_start,
            "frame_clock_hz": self.frame_clock_hz,
        }
        if self.imaging is not None:
            extra["imaging"] = self.imaging.header()
        meta = SessionMeta(
            subject_id=self.subject_id,
            task=self.task.name,
            rig_name=self.rig.name,
            rig_config=self.rig.model_dump(mode="json"),
            task_params=self.params.model_dump(mode="json"),
            params_hash=params_hash(self.params),
            software=_versions(),
            firmware=self.conn.firmware_record(),
            started_at=datetime.now(UTC),
            extra=extra,
        )
        writer = SessionWriter.create(self.rig.data_dir, meta, self.rig.fsync_interval_s)
        self.recorder.attach(writer, self.conn.board.name)
        self.writer = writer
        self._host_event("session_start", {"params_hash": meta.params_hash, "task": meta.task})
        if self.imaging is not None:
            self.imaging.start(writer)
        self.signals.session.emit("started", {"folder": str(writer.folder)})

    def _run(self) -> None:
        assert self.book is not None and self.conn is not None
        board, book = self.conn.board, self.book
        try:
            # A simulated board faster than real time freezes at every trial start (the gate).
            # The session's own stop rules (duration, task criteria) are judged there, in board
            # time: the wall-clock checks would let the free-running board go on by a
            # host-dependent amount. On the virtual clock (speed None) the gate freezes within
            # the board's fixed 20-tick step, so a seeded session ends at the same trial, with
            # the same records, whatever the host's speed; paced faster than real time
            # (speed > 1) the freeze point follows the wall clock and is only close to it.
            virtual = self.conn.gate is not None
            self.conn.queue_trial(book.plan(0))
            self.conn.resume_time()  # a virtual-clock board starts frozen until trial 0 is queued
            while not self._stop_req.is_set():
                try:
                    ev = self._q.get(timeout=0.05)
                except queue.Empty:
                    self._check_time(virtual)
                    continue
                if ev.name == "trial_start":
                    self._last_start_us = ev.t_us
                if virtual and ev.name == "trial_start" and (reason := self._due_at(ev.t_us)):
                    book.advance(ev, plan_next=False)  # opened on the frozen board: aborted below
                    self._stop_reason = reason
                    self._stop_req.set()
                    break
                step = book.advance(ev)
                if step.planned is not None:  # the pending buffer is free again: upload ahead
                    self.conn.queue_trial(step.planned)
                if ev.name == "trial_start":
                    self.conn.resume_time(upto_trial=ev.value)
                    continue
                if step.finished is not None:
                    self.signals.trial.emit(step.finished)
                    if not virtual and (reason := book.stop_reason()):
                        self._stop_reason = reason
                        self._stop_req.set()
                self._check_time(virtual)
            self._abort_running(board)
        except BaseException as e:  # anything: still reach safe state and close the files
            self.error = e
            self._status = "aborted"
            self._stop_reason = f"{type(e).__name__}: {e}"
            log.exception("lever runner failed")
        finally:
            self._teardown(self._status, self._stop_reason)

    def _due_at(self, t_us: int) -> str | None:
        """Why the session stops at board time ``t_us`` (duration, task criteria), or None."""
        assert self.book is not None
        t0 = self.book.t0_us
        elapsed_s = 0.0 if t0 is None else (t_us - t0) / 1e6
        if self.duration_s is not None and elapsed_s >= self.duration_s:
            return f"duration reached ({self.duration_s:g} s)"
        return self.book.task.stop_reason(elapsed_s)

    def _check_time(self, virtual: bool = False) -> None:
        """Stop on the latest board time. With the gate the rules are judged at trial starts
        (see ``_run``); this is then only the backstop for a trial that does not end (a mouse
        that never pulls in a self-initiated trial): once the running trial is
        ``VIRTUAL_STOP_GRACE_S`` of board time old and a rule is due, it is cut where the host
        notices (host-timed, so not deterministic: a rare, pathological case)."""
        book = self.book
        if book is None or book.t0_us is None:
            return
        if virtual and (
            self._last_start_us is None
            or book.t_us - self._last_start_us < VIRTUAL_STOP_GRACE_S * 1e6
        ):
            return
        if reason := self._due_at(book.t_us):
            self._stop_reason = reason
            self._stop_req.set()

    def _write_trial(self, row: dict[str, Any]) -> None:
        assert self.writer is not None
        self.writer.write_trial(row)

    def _abort_running(self, board: LeverBoard) -> None:
        """Cancel the queued start, abort the running trial and record it as ``aborted``."""
        assert self.book is not None
        assert self.conn is not None
        # Both commands go to a virtual-clock board while it is frozen (it answers them) and
        # act at its next tick, once time resumes: the same tick whatever the host's speed.
        with contextlib.suppress(RigError):
            board.stop_trial()
        if self.book.trial is None:
            self.conn.resume_time()
            return
        with contextlib.suppress(RigError):
            board.abort_trial()
        self.conn.resume_time()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                ev = self._q.get(timeout=0.05)
            except queue.Empty:
                continue
            step = self.book.advance(ev, plan_next=False)
            if step.finished is not None:
                self.signals.trial.emit(step.finished)
                return

    def _teardown(self, status: str, reason: str) -> None:
        """Safe state, close the board, finish imaging, close the files, save subject and mouse
        state."""
        try:
            if self.conn is not None:
                self.conn.resume_time()  # RESET_SAFE acts at the board's next tick
                if not self.conn.board.safe_state():
                    log.error("lever board did not confirm its safe state")
                self.conn.close()
        finally:
            try:
                self._finish_imaging()
            finally:
                self._wall_s = time.monotonic() - self._wall0
                if self.writer is not None:
                    self._host_event("session_stop", {"reason": reason, "status": status})
                    self.writer.close(status, reason)
                    self._save_subject()
                self._status = status
                self.signals.session.emit(
                    "stopped", {"folder": str(self.session_dir), "reason": reason, "status": status}
                )
                self._done.set()

    def _finish_imaging(self) -> None:
        """Process every frame whose edge arrived, finish ``imaging/``, report a mismatch."""
        if self.imaging is not None:
            self.imaging_summary = self.imaging.finish(self._host_event)

    def _save_subject(self) -> None:
        assert self.task is not None and self.writer is not None
        subject = load_subject(self.rig.data_dir, self.subject_id)
        subject.shaping.update(self.task.shaping_state())
        save_subject(self.rig.data_dir, subject, session=self.writer.folder.name)
        mouse = self.conn.mouse if self.conn is not None else None
        if mouse is not None and hasattr(mouse, "end_session"):
            save_mouse_state(self.rig.data_dir, self.subject_id, mouse.end_session())

    # ------------------------------------------------------------------ reader-thread callbacks
    def _on_raw(self, t_ns: int, data: bytes) -> None:
        self.recorder.raw(t_ns, data)

    def _on_trail(self, ev: TrailEvent) -> None:
        if self.book is not None:
            self.book.observe_trail(ev)
        self._q.put(ev)

    def _on_event(self, ev: Event) -> None:
        if self.book is not None:
            self.book.tag_event(ev)
        if ev.name == "frame" and self.imaging is not None and ev.t_device_us is not None:
            self.imaging.on_frame_edge(ev.frame if ev.frame is not None else -1, ev.t_device_us)
        # imaging wiring (rig/runner/imaging_drive.py): the lever events let the pulls drive a
        # synthetic movie's responsive cells; LiveImaging ignores them for other sources
        elif self.imaging is not None and ev.t_device_us is not None:
            self.imaging.on_board_event(ev.name, ev.t_device_us)
        self.recorder.event(ev)

    def _on_lever(self, t_us: np.ndarray, counts: np.ndarray) -> None:
        if len(t_us) and self.book is not None:
            self.book.observe_time(int(t_us[-1]))
        self.recorder.lever(t_us, counts)

    # ------------------------------------------------------------------ helpers
    def _host_event(
        self, name: str, data: dict[str, Any], trial: int | None = None, source: str = "host"
    ) -> None:
        ev = Event(name, source, None, trial=trial, data=data)
        if self.writer is not None:
            with contextlib.suppress(RigError):
                self.writer.write_event(ev)
        self.signals.event.emit(ev)

    def _manual(self, name: str, data: dict[str, Any]) -> None:
        self._host_event(name, data, trial=self.book.trial if self.book else None, source="gui")

    def _board(self) -> LeverBoard:
        if self.conn is None or not self.running:
            raise RigError("no session is running")
        return self.conn.board

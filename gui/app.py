"""The experimenter's main window and the ``gui.app.main(config_path)`` entry point.

Layout: the session panel and manual controls docked on the left, the log at the bottom, and
the live views in tabs (lever & trials, imaging & ΔF/F, rotarod). The window owns no device:
it asks a runner factory for a runner and drives it through :class:`gui.runner_api.SessionRunner`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel
from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtGui import QCloseEvent
from PyQt6.QtWidgets import (
    QApplication,
    QDockWidget,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QTabWidget,
    QWidget,
)

from gui.bridge import QtBridge
from gui.panels.dff import DffPanel
from gui.panels.imaging import ImagingPanel
from gui.panels.lever import LeverPanel
from gui.panels.log import LogPanel
from gui.panels.manual import ManualPanel
from gui.panels.rotarod import RotarodPanel
from gui.panels.session import SessionPanel
from gui.panels.trials import TrialPanel
from gui.runner_api import RunnerFactory, SessionRequest, SessionRunner
from gui.sessions import (
    available_tasks,
    default_runner_factory,
    lever_thresholds,
    runner_state,
    subject_loader,
)
from gui.threadcheck import ThreadChecker
from rig.core.config import RigConfig, load_rig_config
from rig.core.errors import ConfigError
from rig.core.events import Event

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "hardware_configs" / "sim.yaml"


class MainWindow(QMainWindow):
    """The app.

    Parameters
    ----------
    rig : RigConfig
    runner_factory : callable, optional
        ``SessionRequest -> SessionRunner``; the real runners by default.
    checker : ThreadChecker, optional
        Passed to the bridge (tests and diagnostics).
    load_subject : callable, optional
        ``subject_id -> SubjectState | None``.
    redraw_hz : float
        Rate of the bridge's drain timer (the panels' maximum redraw rate).
    session_extra : dict, optional
        Passed to the runner factory with every request (e.g. ``{"speed": 10}`` for a
        simulated board faster than real time).
    all_visible : bool
        Lever, trials, imaging and ΔF/F side by side in one tab instead of two tabs.
    """

    def __init__(
        self,
        rig: RigConfig,
        runner_factory: RunnerFactory | None = None,
        checker: ThreadChecker | None = None,
        load_subject: Any = None,
        redraw_hz: float = 40.0,
        session_extra: dict[str, Any] | None = None,
        all_visible: bool = False,
    ) -> None:
        super().__init__()
        self.rig = rig
        self.runner_factory = runner_factory or default_runner_factory
        self.runner: SessionRunner | None = None
        self.session_extra = dict(session_extra or {})
        self.last_session_dir: Path | None = None
        #: Playing a recorded session (``gui.replay``): no device, so no manual controls.
        self.replay_mode = False
        self.setWindowTitle(f"motor-rig — {rig.name}")
        self.bridge = QtBridge(redraw_hz=redraw_hz, checker=checker, parent=self)
        self.bridge.forward_logging()
        self.bridge.start()  # the log panel shows warnings before any session too

        self.session_panel = SessionPanel(
            rig, available_tasks(rig), load_subject or subject_loader(rig)
        )
        self.manual_panel = ManualPanel(lambda: self.runner)
        self.log_panel = LogPanel()
        self.lever_panel = LeverPanel(self.bridge)
        self.trial_panel = TrialPanel(self.bridge)
        self.imaging_panel = ImagingPanel(self.bridge)
        self.dff_panel = DffPanel(self.bridge)
        lanes = rig.rotarod.lanes if rig.rotarod is not None else 5
        self.rotarod_panel = RotarodPanel(self.bridge, lanes=lanes)

        behaviour = QSplitter(Qt.Orientation.Vertical)
        behaviour.addWidget(self.lever_panel)
        behaviour.addWidget(self.trial_panel)
        imaging = QSplitter(Qt.Orientation.Horizontal)
        imaging.addWidget(self.imaging_panel)
        imaging.addWidget(self.dff_panel)
        self.tabs = QTabWidget()
        if all_visible:
            # Every live view on screen at once (a wide monitor, or the benchmark's worst case).
            both = QSplitter(Qt.Orientation.Horizontal)
            both.addWidget(behaviour)
            both.addWidget(imaging)
            self.tabs.addTab(both, "Live")
        else:
            self.tabs.addTab(behaviour, "Lever && trials")
            self.tabs.addTab(imaging, "Imaging && ΔF/F")
        self.tabs.addTab(self.rotarod_panel, "Rotarod")
        self.setCentralWidget(self.tabs)
        self._dock("Session", self.session_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self._dock("Manual controls", self.manual_panel, Qt.DockWidgetArea.LeftDockWidgetArea)
        self._dock("Log", self.log_panel, Qt.DockWidgetArea.BottomDockWidgetArea)
        self.resize(1400, 900)

        self.session_panel.start_requested.connect(self.start_session)
        self.session_panel.stop_requested.connect(lambda: self.stop_session())
        self.manual_panel.message.connect(self.log_panel.add)
        self.imaging_panel.selection_changed.connect(self.dff_panel.set_selection)
        self.bridge.log.connect(self.log_panel.add)
        self.bridge.trial.connect(self.session_panel.on_trial)
        self.bridge.health.connect(self.session_panel.on_health)
        self.bridge.imaging_stats.connect(self.session_panel.on_imaging_stats)
        self.bridge.imaging_stats.connect(self._on_imaging_stats)
        self.bridge.tick.connect(self.session_panel.on_tick)
        self.bridge.events.connect(self._on_events)
        self.bridge.session.connect(self._on_session)

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(title)
        dock.setWidget(widget)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
        )
        self.addDockWidget(area, dock)
        return dock

    # ------------------------------------------------------------------ session lifecycle
    def start_session(self, subject_id: str, task: str, params: BaseModel) -> bool:
        """Build a runner for the choices, hook it to the bridge and start it (main thread)."""
        if self.runner is not None and self.runner.running:
            self.log_panel.add(logging.WARNING, "a session is already running")
            return False
        request = SessionRequest(
            rig=self.rig, subject_id=subject_id, task=task, params=params, extra=self.session_extra
        )
        try:
            runner = self.runner_factory(request)
        except Exception as e:
            self.log_panel.add(logging.ERROR, f"cannot set up the session: {e}")
            return False
        self.bridge.reset()
        self.imaging_panel.set_rois(None)
        self.imaging_panel.set_reference(None)
        self.bridge.attach(runner.signals)
        self.runner = runner
        source = self.rig.imaging.source if self.rig.imaging is not None else None
        rate = getattr(source, "frame_rate_hz", None)
        if rate:
            self.dff_panel.frame_rate_hz = float(rate)
        thresholds = lever_thresholds(params)
        if thresholds is not None:
            self.lever_panel.set_thresholds(**thresholds)
        if task == "rotarod":
            self.rotarod_panel.iti_min_s = float(getattr(params, "iti_min_s", 600.0))
            self.rotarod_panel.set_lanes(len([s for s in subject_id.split(",") if s.strip()]))
        try:
            runner.start()
        except Exception as e:
            self.log_panel.add(logging.ERROR, f"session failed to start: {e}")
            self.bridge.detach()
            self.runner = None
            return False
        self.last_session_dir = runner.session_dir
        self.session_panel.set_running(True)
        self.manual_panel.set_enabled(not self.replay_mode)
        self._load_rois(runner)
        self.log_panel.add(logging.INFO, f"session started: {subject_id}, {task}")
        return True

    def _load_rois(self, runner: SessionRunner) -> None:
        """Show the session's ROIs and reference once the imaging pipeline has chosen them
        (after its warm-up frames, so this is retried on each imaging-stats update)."""
        if self.imaging_panel.labels is None:
            labels = runner_state(runner, "roi_labels")
            if labels is not None:
                self.imaging_panel.set_rois(np.asarray(labels))
        if self.imaging_panel.reference is None:
            reference = runner_state(runner, "reference_image")
            if reference is not None:
                self.imaging_panel.set_reference(np.asarray(reference))

    def _on_imaging_stats(self, _stats: dict[str, Any]) -> None:
        if self.runner is not None:
            self._load_rois(self.runner)

    def stop_session(self, reason: str = "stopped by the experimenter") -> None:
        """Stop the running session; returns once devices are safe and files closed."""
        runner = self.runner
        if runner is None:
            return
        self.runner = None  # so the "stopped" signal drained below is not taken as a self-stop
        try:
            runner.stop(reason)
        except Exception as e:
            self.log_panel.add(logging.ERROR, f"stopping the session failed: {e}")
        self.bridge.drain()  # deliver what the session emitted up to its end
        self._finished(reason)

    def _finished(self, reason: str) -> None:
        self.runner = None
        self.session_panel.set_running(False, f"stopped: {reason}")
        self.manual_panel.set_enabled(False)

    def _on_session(self, state: str, info: dict[str, Any]) -> None:
        if state == "stopped" and self.runner is not None:
            # The runner ended the session itself (max rewards, duration, device error); its
            # stop() only waits for the teardown that emitted this to return.
            runner = self.runner
            reason = str(info.get("reason", "session ended"))
            self.log_panel.add(logging.INFO, f"session ended: {reason}")
            try:
                runner.stop(reason)
            except Exception as e:
                self.log_panel.add(logging.ERROR, f"stopping the session failed: {e}")
            self._finished(reason)
        if state == "stopped":
            self.bridge.detach()
        elif state == "started" and self.runner is not None:
            self._load_rois(self.runner)

    def _on_events(self, events: list[Event]) -> None:
        for ev in events:
            if ev.name == "manual_reward":
                self.session_panel.add_manual_reward(float(ev.data.get("volume_ul", 0.0)))

    # ------------------------------------------------------------------ closing
    def confirm_close(self) -> bool:
        """Ask before ending a running session by closing the window."""
        answer = QMessageBox.question(
            self,
            "End the session?",
            "A session is running. Closing the window stops it (valve closed, files closed).\n"
            "End the session and close?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event: QCloseEvent | None) -> None:
        assert event is not None
        if self.runner is not None and self.runner.running:
            if not self.confirm_close():
                event.ignore()
                return
            self.stop_session("window closed mid-session")
        self.bridge.stop()
        self.bridge.detach()
        event.accept()


def build_window(
    config_path: str | Path | None = None,
    *,
    task: str | None = None,
    subject_id: str | None = None,
    params: dict[str, Any] | None = None,
    autostart: bool = False,
    runner_factory: RunnerFactory | None = None,
    session_extra: dict[str, Any] | None = None,
) -> MainWindow:
    """Make (not show) the main window on a rig config, optionally starting a session at once.

    Parameters
    ----------
    config_path : path, optional
        Rig config YAML; ``hardware_configs/sim.yaml`` by default.
    task, subject_id : str, optional
        Preselected in the session panel.
    params : dict, optional
        Values for the task's parameter form (partial; validated like typed values).
    autostart : bool
        Start the session as soon as the event loop runs (the demo does).

    Raises
    ------
    ConfigError
        Bad rig config or parameter values (names the file or field).
    """
    from pydantic import ValidationError

    from rig.core.config import problems_from_validation

    rig = load_rig_config(config_path or DEFAULT_CONFIG)
    # Everything is checked before any widget exists: a half-built window left to the garbage
    # collector can take pyqtgraph's C++ objects down in the wrong order.
    tasks = available_tasks(rig)
    if task is not None and task not in tasks:
        raise ConfigError.single(
            "--task",
            "",
            f"task {task!r} is not available on this rig; expected one of {sorted(tasks)}",
        )
    if params:
        model = tasks[task] if task is not None else next(iter(tasks.values()))
        try:
            model.model_validate(params)
        except ValidationError as e:
            raise ConfigError(problems_from_validation("task params", e)) from None
    window = MainWindow(rig, runner_factory=runner_factory, session_extra=session_extra)
    sp = window.session_panel
    if task is not None:
        sp.task.setCurrentText(task)
    if subject_id is not None:
        sp.subject.setText(subject_id)
    if params and sp.form is not None:
        sp.form.set_values(params)
    if autostart:
        QTimer.singleShot(0, sp.start_button.click)
    return window


def main(
    config_path: str | Path | None = None,
    *,
    task: str | None = None,
    subject_id: str | None = None,
    params: dict[str, Any] | None = None,
    autostart: bool = False,
    runner_factory: RunnerFactory | None = None,
    session_extra: dict[str, Any] | None = None,
) -> int:
    """Open the app on a rig config (default ``hardware_configs/sim.yaml``); returns the exit code.

    Blocks until the window is closed. Needs a display (or ``QT_QPA_PLATFORM=offscreen``).
    ``rig demo`` calls ``main("hardware_configs/sim.yaml", task="mixed", autostart=True)``.
    The other arguments are those of :func:`build_window`.
    """
    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = build_window(
        config_path,
        task=task,
        subject_id=subject_id,
        params=params,
        autostart=autostart,
        runner_factory=runner_factory,
        session_extra=session_extra,
    )
    window.show()
    _close_on_signals(window)
    return int(app.exec())


def _close_on_signals(window: MainWindow) -> None:
    """Ctrl+C or SIGTERM (``make demo`` in a terminal, a service stop) end the session cleanly
    through the window, as closing it would, without asking."""
    import signal

    def handle(_signum: int, _frame: Any) -> None:
        window.confirm_close = lambda: True  # type: ignore[method-assign]
        QTimer.singleShot(0, window.close)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handle)
    # Python runs signal handlers only between bytecodes: wake the interpreter regularly while
    # Qt's event loop (C++) has the thread.
    wake = QTimer(window)
    wake.timeout.connect(lambda: None)
    wake.start(200)


if __name__ == "__main__":  # python -m gui.app [CONFIG] [--task T] ... (see gui.cli)
    from gui.cli import cli

    sys.exit(cli())

"""Session panel: rig, subject (with last session's shaping state), task, a parameter form
generated from the task's params model, Start / Stop, live counters and device health."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gui.forms import ParamsForm
from gui.panels.trials import running_success
from rig.core.config import RigConfig, SubjectState

HEALTH_ROWS = (
    ("connected", "connected"),
    ("heartbeat_age_ms", "heartbeat (ms)"),
    ("crc_errors", "CRC errors"),
    ("lost_packets", "lost packets"),
    ("lever_missing_samples", "missing samples"),
    ("frames", "frames (clock)"),
)
_SUBJECT_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
#: The rotarod runs one mouse per lane: "m1,m2,m3" puts m1 on lane 1.
_LANES_RE = re.compile(r"^[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*$")


def describe_rig(rig: RigConfig) -> str:
    """One line per device: ``lever_board: sim (uno)`` etc."""
    lines = [f"<b>{rig.name}</b> → {rig.data_dir}"]
    if rig.lever_board is not None:
        lines.append(f"lever board: {rig.lever_board.driver} ({rig.lever_board.board})")
    if rig.rotarod is not None:
        lines.append(f"rotarod: {rig.rotarod.driver}, {rig.rotarod.lanes} lanes")
    if rig.imaging is not None:
        lines.append(f"imaging: {rig.imaging.source.kind}, backend {rig.imaging.backend}")
    return "<br>".join(lines)


def describe_subject(state: SubjectState | None) -> str:
    if state is None:
        return "new subject (no previous session)"
    parts = [f"{state.sessions} sessions", f"last: {state.last_session or '-'}"]
    for task, values in state.shaping.items():
        vals = ", ".join(f"{k}={v:g}" for k, v in values.items())
        parts.append(f"{task}: {vals}")
    return "; ".join(parts)


class SessionPanel(QWidget):
    """Choose and control a session.

    Parameters
    ----------
    rig : RigConfig
    tasks : dict[str, type[BaseModel]]
        Task name -> params model; the form is generated from the chosen one.
    load_subject : callable
        ``subject_id -> SubjectState | None`` (the runner's store of shaping state).

    Signals
    -------
    start_requested(str, str, object)
        Subject id, task name, validated params model.
    stop_requested()
    """

    start_requested = pyqtSignal(str, str, object)
    stop_requested = pyqtSignal()

    def __init__(
        self,
        rig: RigConfig,
        tasks: dict[str, type[BaseModel]],
        load_subject: Callable[[str], SubjectState | None],
        subject_id: str = "sim_mouse",
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.tasks = tasks
        self._load_subject = load_subject
        self.running = False
        self.t_started: float | None = None
        self.outcomes: list[str] = []
        self.rewards = 0
        self.reward_ul = 0.0
        self.form: ParamsForm | None = None

        self.rig_label = QLabel(describe_rig(rig))
        self.rig_label.setWordWrap(True)
        self.subject = QLineEdit(subject_id)
        self.subject_state = QLabel()
        self.subject_state.setWordWrap(True)
        self.task = QComboBox()
        for name in tasks:
            self.task.addItem(name)
        self.form_area = QScrollArea()
        self.form_area.setWidgetResizable(True)
        self.form_area.setMinimumHeight(200)
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.elapsed = QLabel("0:00")
        self.trials = QLabel("0")
        self.success = QLabel("-")
        self.reward_label = QLabel("0 (0.0 µl)")
        self.status = QLabel("idle")
        # One column per device, one row per figure: fits the narrow dock.
        self.health = QTableWidget(len(HEALTH_ROWS), 0)
        self.health.setVerticalHeaderLabels([h for _, h in HEALTH_ROWS])
        self.health.setMinimumHeight(190)
        header = self.health.horizontalHeader()
        assert header is not None
        header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self._health_cols: dict[str, int] = {}
        self.frames_board: int | None = None
        self.frames_imaging: int | None = None
        self.imaging_gaps = 0
        self.imaging_queue: int | None = None
        self.imaging_mismatch: str | None = None
        self.frame_check = QLabel("frames: clock - / imaging -")

        top = QFormLayout()
        top.addRow("rig", self.rig_label)
        top.addRow("subject", self.subject)
        top.addRow("", self.subject_state)
        top.addRow("task", self.task)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        counters = QFormLayout()
        counters.addRow("status", self.status)
        counters.addRow("elapsed", self.elapsed)
        counters.addRow("trials", self.trials)
        counters.addRow("success (last 20)", self.success)
        counters.addRow("rewards", self.reward_label)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.form_area, 1)
        layout.addLayout(buttons)
        layout.addLayout(counters)
        layout.addWidget(QLabel("device health"))
        layout.addWidget(self.health)
        layout.addWidget(self.frame_check)

        self.task.currentTextChanged.connect(self._build_form)
        self.subject.textChanged.connect(self._subject_changed)
        self.start_button.clicked.connect(self._start_clicked)
        self.stop_button.clicked.connect(self.stop_requested)
        self._build_form(self.task.currentText())
        self._subject_changed(self.subject.text())

    # ------------------------------------------------------------------ choosing
    def _build_form(self, task: str) -> None:
        if task not in self.tasks:
            return
        self.form = ParamsForm(self.tasks[task])
        self.form.validity_changed.connect(lambda _v: self._update_buttons())
        self.form_area.setWidget(self.form)
        self._subject_changed(self.subject.text())

    def subject_ok(self) -> bool:
        rotarod = self.task.currentText() == "rotarod"
        return bool((_LANES_RE if rotarod else _SUBJECT_RE).match(self.subject.text()))

    def _subject_changed(self, text: str) -> None:
        ok = self.subject_ok()
        self.subject.setStyleSheet("" if ok else "border: 1px solid #c62828;")
        if not ok:
            hint = "; rotarod: one per lane, comma-separated" if "," in text else ""
            self.subject_state.setText(f"subject id: letters, digits, _ . - only{hint}")
        elif "," in text:
            self.subject_state.setText(f"{len(text.split(','))} lanes")
        else:
            try:
                self.subject_state.setText(describe_subject(self._load_subject(text)))
            except Exception as e:  # a broken subject file must not block the panel
                self.subject_state.setText(f"cannot read subject state: {e}")
        self._update_buttons()

    def can_start(self) -> bool:
        return not self.running and self.form is not None and self.form.valid and self.subject_ok()

    def _update_buttons(self) -> None:
        self.start_button.setEnabled(self.can_start())
        self.stop_button.setEnabled(self.running)
        for w in (self.task, self.subject):
            w.setEnabled(not self.running)
        if self.form is not None:
            self.form.setEnabled(not self.running)

    def _start_clicked(self) -> None:
        if self.form is None or not self.can_start():
            return
        params = self.form.params()
        if params is not None:
            self.start_requested.emit(self.subject.text(), self.task.currentText(), params)

    # ------------------------------------------------------------------ live state
    def set_running(self, running: bool, status: str = "") -> None:
        self.running = running
        if running:
            self.t_started = time.monotonic()
            self.frames_board = self.frames_imaging = self.imaging_queue = None
            self.imaging_gaps, self.imaging_mismatch = 0, None
            self.outcomes.clear()
            self.rewards, self.reward_ul = 0, 0.0
            self._show_counts()
        self.status.setText(status or ("running" if running else "idle"))
        self._update_buttons()
        if not running:
            self._subject_changed(self.subject.text())  # shaping state may have moved on

    def on_tick(self) -> None:
        if self.running and self.t_started is not None:
            s = int(time.monotonic() - self.t_started)
            text = (
                f"{s // 3600:d}:{s // 60 % 60:02d}:{s % 60:02d}"
                if s >= 3600
                else f"{s // 60:d}:{s % 60:02d}"
            )
            if self.elapsed.text() != text:
                self.elapsed.setText(text)

    def on_trial(self, record: dict[str, Any]) -> None:
        if "outcome" not in record:  # a rotarod lane record: counted, no success rate
            self.trials.setText(str(int(self.trials.text() or 0) + 1))
            return
        self.outcomes.append(str(record["outcome"]))
        ul = float(record.get("reward_ul") or 0.0)
        if record.get("outcome") == "reward" or ul > 0:
            self.rewards += 1
            self.reward_ul += ul
        self._show_counts()

    def add_manual_reward(self, volume_ul: float) -> None:
        """Count water given by hand in the µl total (not in the rewarded-trial count)."""
        self.reward_ul += volume_ul
        self._show_counts()

    def _show_counts(self) -> None:
        self.trials.setText(str(len(self.outcomes)))
        rate = running_success(self.outcomes)
        self.success.setText(f"{100 * rate[-1]:.0f} %" if rate.size else "-")
        self.reward_label.setText(f"{self.rewards} ({self.reward_ul:.1f} µl)")

    def on_imaging_stats(self, stats: dict[str, Any]) -> None:
        n = stats.get("frames_processed", stats.get("frame_index"))
        if n is not None:
            self.frames_imaging = int(n)
        self.imaging_gaps = int(stats.get("frame_index_gaps") or 0)
        self.imaging_queue = stats.get("queue_depth")
        if "frame_clock_edges_received" in stats:  # the pipeline's final summary
            self.imaging_mismatch = stats.get("frame_clock_mismatch")
        self._show_frames()

    def _show_frames(self) -> None:
        b = "-" if self.frames_board is None else str(self.frames_board)
        i = "-" if self.frames_imaging is None else str(self.frames_imaging)
        q = "" if self.imaging_queue is None else f" (queue {self.imaging_queue})"
        text = f"frames: clock {b} / imaging {i}{q}"
        # Live, the two counts differ by what is in flight (health every 100 ms, pipeline
        # stats every 0.5 s); what is wrong is a gap in the frame indices, or a final count
        # that differs from the frame clock's.
        problem = None
        if self.imaging_gaps:
            problem = f"{self.imaging_gaps} frames missing"
        elif self.imaging_mismatch:
            problem = str(self.imaging_mismatch)
        self.frame_check.setText(text + (f" — {problem}" if problem else ""))
        self.frame_check.setStyleSheet("color: #c62828;" if problem else "")

    def on_health(self, device: str, stats: dict[str, Any]) -> None:
        if "frames" in stats and stats["frames"] is not None:
            self.frames_board = int(stats["frames"])
            self._show_frames()
        col = self._health_cols.get(device)
        if col is None:
            col = self.health.columnCount()
            self.health.insertColumn(col)
            self.health.setHorizontalHeaderItem(col, QTableWidgetItem(device))
            self._health_cols[device] = col
        for row, (key, _) in enumerate(HEALTH_ROWS):
            v = stats.get(key)
            if v is None:
                text = "-"
            elif isinstance(v, bool):
                text = "yes" if v else "NO"
            else:
                text = f"{v:.0f}" if isinstance(v, float) else str(v)
            item = self.health.item(row, col)
            if item is None:
                self.health.setItem(row, col, QTableWidgetItem(text))
            elif item.text() != text:
                item.setText(text)

"""Rotarod panel: per-lane rpm and trial timer, the falls table, and the inter-trial countdown.

Driven by the rotarod runner's events (``rotarod_start``, ``rotarod_rpm``, ``rotarod_fall``,
``rotarod_cutoff``, ``rotarod_stop``, and the host's ``iti_start`` for the countdown); times
shown are board times relative to the ramp start.
"""

from __future__ import annotations

import time
from typing import Any

from PyQt6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gui.bridge import QtBridge
from rig.core.events import Event


class RotarodPanel(QWidget):
    """Live view of a rotarod day.

    Parameters
    ----------
    bridge : QtBridge
    lanes : int
        Lanes shown (:meth:`set_lanes` changes it to the lanes in use).
    iti_min_s : float
        Inter-trial interval used for the countdown when the event does not carry one.
    """

    def __init__(
        self,
        bridge: QtBridge,
        lanes: int = 5,
        iti_min_s: float = 600.0,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.iti_min_s = iti_min_s
        self.rpm = 0.0
        self.trial: int | None = None
        self.t_start_us: int | None = None
        self.t_now_us: int | None = None
        self.lane_fall_s: dict[int, float] = {}
        self.falls: list[dict[str, Any]] = []
        self.next_trial_at: float | None = None  # host monotonic s
        self.trial_over = False
        self.session_over = False
        self.lanes = QTableWidget(lanes, 3)
        self.lanes.setHorizontalHeaderLabels(["status", "rpm", "time (s)"])
        self.fall_table = QTableWidget(0, 5)
        self.fall_table.setHorizontalHeaderLabels(
            ["trial", "lane", "latency (s)", "rpm at fall", "ended by"]
        )
        for table in (self.lanes, self.fall_table):
            header = table.horizontalHeader()
            assert header is not None
            header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.countdown = QLabel("no trial yet")
        self.countdown.setStyleSheet("font-size: 16pt;")
        top = QHBoxLayout()
        top.addWidget(QLabel("next trial:"))
        top.addWidget(self.countdown)
        top.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(QLabel("lanes"))
        layout.addWidget(self.lanes)
        layout.addWidget(QLabel("falls"))
        layout.addWidget(self.fall_table)
        self.set_lanes(lanes)
        bridge.events.connect(self.on_events)
        bridge.session.connect(self.on_session)
        bridge.tick.connect(self.refresh)

    def set_lanes(self, lanes: int) -> None:
        """Show ``lanes`` lanes (the ones with a mouse on them)."""
        self.lanes.setRowCount(lanes)
        self.lanes.setVerticalHeaderLabels([f"lane {i + 1}" for i in range(lanes)])
        self.refresh()

    def on_session(self, state: str, _info: dict[str, Any]) -> None:
        if state == "started":
            self.t_start_us = self.trial = None
            self.trial_over = self.session_over = False
            self.next_trial_at = None
            self.lane_fall_s.clear()
            self.falls.clear()
            self.fall_table.setRowCount(0)
        elif state == "stopped":
            self.session_over = True
            self.next_trial_at = None
        self.refresh()

    def on_events(self, events: list[Event]) -> None:
        for ev in events:
            if ev.name == "iti_start" and ev.source == "host":
                wait_s = float(ev.data.get("iti_s", self.iti_min_s))
                self.next_trial_at = time.monotonic() + wait_s
                continue
            if not ev.name.startswith("rotarod_"):
                continue
            if ev.t_device_us is not None:
                self.t_now_us = ev.t_device_us
            d = ev.data
            if ev.name == "rotarod_start":
                self.t_start_us, self.trial = ev.t_device_us, ev.trial
                self.lane_fall_s.clear()
                self.next_trial_at = None
                self.trial_over = False
            elif ev.name == "rotarod_rpm":
                self.rpm = float(d.get("rpm_measured", d.get("rpm", self.rpm)))
            elif ev.name == "rotarod_fall":
                lane = d.get("lane")
                if lane is not None and int(lane) not in self.lane_fall_s:
                    latency = float(d.get("latency_s", self._elapsed_s()))
                    rpm = float(d.get("rpm_measured", d.get("rpm", self.rpm)))
                    self._fall(int(lane), latency, rpm, "fall")
            elif ev.name in ("rotarod_cutoff", "rotarod_stop"):
                if ev.name == "rotarod_cutoff":
                    for lane in range(self.lanes.rowCount()):
                        if lane not in self.lane_fall_s:
                            self._fall(lane, self._elapsed_s(), self.rpm, "cutoff")
                self.trial_over = True
                if "next_trial_in_s" in d:
                    self.next_trial_at = time.monotonic() + float(d["next_trial_in_s"])
        self.refresh()

    def _elapsed_s(self) -> float:
        if self.t_start_us is None or self.t_now_us is None:
            return 0.0
        return (self.t_now_us - self.t_start_us) / 1e6

    def _fall(self, lane: int, latency_s: float, rpm: float, ended_by: str) -> None:
        self.lane_fall_s[lane] = latency_s
        row = {
            "trial": self.trial,
            "lane": lane,
            "latency_s": latency_s,
            "rpm": rpm,
            "ended_by": ended_by,
        }
        self.falls.append(row)
        r = self.fall_table.rowCount()
        self.fall_table.insertRow(r)
        cells = (
            "-" if self.trial is None else str(self.trial + 1),
            str(lane + 1),
            f"{latency_s:.1f}",
            f"{rpm:.1f}",
            ended_by,
        )
        for c, text in enumerate(cells):
            self.fall_table.setItem(r, c, QTableWidgetItem(text))

    def refresh(self) -> None:
        running = self.t_start_us is not None and not self.trial_over and not self.session_over
        for lane in range(self.lanes.rowCount()):
            fell = self.lane_fall_s.get(lane)
            if self.t_start_us is None:
                cells = ("idle", "", "")
            elif fell is not None:
                cells = ("off", "", f"{fell:.1f}")
            elif running:
                cells = ("on rod", f"{self.rpm:.1f}", f"{self._elapsed_s():.1f}")
            else:
                cells = ("done", "", "")
            for c, text in enumerate(cells):
                item = self.lanes.item(lane, c)
                if item is None:
                    self.lanes.setItem(lane, c, QTableWidgetItem(text))
                elif item.text() != text:
                    item.setText(text)
        if self.session_over:
            text = "session over"
        elif self.next_trial_at is not None:
            left = max(0.0, self.next_trial_at - time.monotonic())
            text = f"{int(left // 60):d}:{int(left % 60):02d}" if left > 0 else "ready"
        elif running:
            text = "trial running"
        else:
            text = self.countdown.text()
        if self.countdown.text() != text:
            self.countdown.setText(text)

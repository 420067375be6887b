"""Lever panel: the last ``window_s`` of the lever at the full stream rate, the thresholds, and
the trial state shaded behind the trace."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt6.QtWidgets import QLabel, QVBoxLayout, QWidget

from gui.bridge import QtBridge
from rig.core.events import Event

#: Event name -> the trial state it enters (events may also carry ``data["state"]``).
STATE_OF_EVENT: dict[str, str] = {
    "trial_start": "iti",
    "trial_end": "iti",
    "iti_start": "iti",
    "quiet_start": "quiet",
    "quiet_satisfied": "ready",
    "ready": "ready",
    "cue_on": "cue",
    "tone_on": "cue",
    "hold_start": "hold",
    "lever_up": "hold",
    "valve_on": "reward",
    "valve_open": "reward",
    "early_release": "fail",
    "overshoot": "fail",
    "too_early": "fail",
    "miss": "fail",
    "no_pull": "fail",
    "timeout_start": "fail",
}
STATE_COLOURS: dict[str, tuple[int, int, int, int]] = {
    "iti": (160, 160, 160, 40),
    "quiet": (120, 144, 200, 45),
    "ready": (80, 160, 255, 45),
    "cue": (255, 200, 0, 60),
    "hold": (170, 80, 255, 50),
    "reward": (40, 180, 60, 70),
    "fail": (220, 50, 50, 60),
}


def state_class(name: str) -> str | None:
    """Shading class of a task state name (``"hold"``, ``"timeout_too_early"``...), if any."""
    n = name.lower()
    for key, cls in (
        ("reward", "reward"),
        ("consume", "reward"),
        ("hold", "hold"),
        ("cue", "cue"),
        ("window", "cue"),
        ("ready", "ready"),
        ("quiet", "quiet"),
        ("iti", "iti"),
    ):
        if key in n:
            return cls
    if any(k in n for k in ("fail", "miss", "early", "overshoot", "no_pull", "timeout")):
        return "fail"
    return None


def trial_spans(record: dict[str, Any]) -> list[tuple[int, str]]:
    """Exact state transitions (t_device_us, class) of a finished trial from its record."""

    def t(key: str) -> int | None:
        v = record.get(key)
        return None if v in (None, "") else int(v)

    start, end = t("t_start_us"), t("t_end_us")
    if start is None or end is None:
        return []
    ready, cross, reward = t("t_ready_us"), t("t_cross_us"), t("t_reward_us")
    spans = [(start, "iti")]
    if ready is not None:
        spans.append((ready, "cue" if t("t_cue_us") is not None else "ready"))
    if cross is not None:
        spans.append((cross, "hold"))
    if reward is not None:
        spans.append((reward, "reward"))
    elif record.get("outcome") not in (None, "reward", "aborted"):
        release = t("t_release_us")
        fail_at = release if release is not None and cross is not None else None
        if record.get("outcome") in ("miss", "no_pull"):
            fail_at = end
        spans.append((fail_at if fail_at is not None else end, "fail"))
    spans.append((end, "iti"))
    return spans


class LeverPanel(QWidget):
    """Rolling lever trace.

    Parameters
    ----------
    bridge : QtBridge
        Source of lever samples (its ring) and events (for the state shading).
    window_s : float
        Width of the rolling window (s).
    """

    def __init__(self, bridge: QtBridge, window_s: float = 10.0, parent: QWidget | None = None):
        super().__init__(parent)
        self.bridge = bridge
        self.window_s = window_s
        self.n_redraws = 0
        self.plot = pg.PlotWidget()
        self.plot.setBackground("w")
        self.plot.setLabel("bottom", "time", units="s")
        self.plot.setLabel("left", "lever (mm)")
        # Fixed ranges: an axis whose range moves is re-laid out on every redraw (the single
        # largest cost at 40 redraws/s); the experimenter can still zoom y with the mouse.
        self.plot.setXRange(-window_s, 0, padding=0)
        self.plot.setYRange(-0.5, 2.5, padding=0)
        self.plot.setMouseEnabled(x=False, y=True)
        self.plot.getPlotItem().hideButtons()
        # A 1 px cosmetic pen takes the raster engine's fast path (wider lines are stroked paths).
        self.curve = self.plot.plot(pen=pg.mkPen("#1f3a93", width=1))
        self.curve.setDownsampling(auto=True, method="peak")
        self.curve.setClipToView(True)
        self.threshold_line = pg.InfiniteLine(
            angle=0,
            pen=pg.mkPen("#d35400", width=1, style=pg.QtCore.Qt.PenStyle.DashLine),
        )
        self.max_line = pg.InfiniteLine(
            angle=0, pen=pg.mkPen("#8e0000", style=pg.QtCore.Qt.PenStyle.DotLine)
        )
        self.rest_band = pg.LinearRegionItem(
            orientation="horizontal",
            movable=False,
            brush=pg.mkBrush(0, 0, 0, 18),
            pen=pg.mkPen(None),
        )
        for item in (self.rest_band, self.threshold_line, self.max_line):
            self.plot.addItem(item)
        self.max_line.hide()
        self._regions: list[pg.LinearRegionItem] = []
        self.transitions: list[tuple[int, str]] = []  # (t_device_us, state), time order
        self.state: str | None = None
        legend = " ".join(
            f'<span style="background-color: rgba({r},{g},{b},{min(255, 3 * a)})">'
            f"&nbsp;{name}&nbsp;</span>"
            for name, (r, g, b, a) in STATE_COLOURS.items()
        )
        self.legend = QLabel(f"state: {legend}")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(self.plot)
        layout.addWidget(self.legend)
        self.set_thresholds(pull_threshold_mm=1.0, rest_band_mm=0.2)
        bridge.lever_updated.connect(self.redraw)
        bridge.events.connect(self.on_events)
        bridge.trial.connect(self.on_trial)
        bridge.session.connect(self._on_session)

    def set_thresholds(
        self, pull_threshold_mm: float, rest_band_mm: float, max_mm: float | None = None
    ) -> None:
        self.threshold_line.setValue(pull_threshold_mm)
        top = max(pull_threshold_mm * 2.5, (max_mm or 0.0) * 1.2)
        self.plot.setYRange(-max(0.5, 2 * rest_band_mm), top, padding=0)
        self.rest_band.setRegion((-rest_band_mm, rest_band_mm))
        if max_mm is None:
            self.max_line.hide()
        else:
            self.max_line.setValue(max_mm)
            self.max_line.show()

    def _on_session(self, state: str, _info: dict) -> None:
        if state == "started":
            self.transitions.clear()
            self.state = None

    def on_trial(self, record: dict[str, Any]) -> None:
        """Replace the live guesses for a finished trial by its exact phases from the record.

        Live shading comes from board events as they arrive (a guess where the board does not
        name its state); the trial record has the exact times of every phase.
        """
        exact = trial_spans(record)
        if not exact:
            return
        t0, t1 = exact[0][0], int(record["t_end_us"])
        kept = [tr for tr in self.transitions if not t0 <= tr[0] <= t1]
        self.transitions = sorted(kept + exact, key=lambda tr: tr[0])

    def on_events(self, events: list[Event]) -> None:
        for ev in events:
            if ev.t_device_us is None or ev.source == "gui":
                continue  # host-only events have no board time; manual actions are no state
            named = ev.data.get("state")
            state = state_class(named) if isinstance(named, str) else None
            state = state or STATE_OF_EVENT.get(ev.name)
            if ev.name == "lever_down" and self.state == "hold":
                state = "fail"  # released before the hold ended (a reward would come first)
            if state is None or (ev.name == "lever_up" and self.state not in ("ready", "cue")):
                continue
            self.transitions.append((ev.t_device_us, state))
            self.state = state
        if len(self.transitions) > 500:
            del self.transitions[:-200]

    def redraw(self) -> None:
        """Draw the newest ``window_s`` of samples, x in seconds relative to the newest sample."""
        n = int(self.window_s * 2000)  # enough for a 2 kHz stream; the time cut below is exact
        t_us, pos_mm = self.bridge.lever.snapshot(last_n=n)
        if t_us.size == 0:
            return
        t_last = int(t_us[-1])
        keep = t_us >= t_last - int(self.window_s * 1e6)
        x_s = (t_us[keep] - t_last) / 1e6
        self.curve.setData(x_s, pos_mm[keep])
        self._shade(t_last)
        self.n_redraws += 1

    def _shade(self, t_last_us: int) -> None:
        t0 = t_last_us - int(self.window_s * 1e6)
        spans: list[tuple[float, float, str]] = []
        for i, (t, state) in enumerate(self.transitions):
            t_next = self.transitions[i + 1][0] if i + 1 < len(self.transitions) else t_last_us
            if t_next <= t0:
                continue
            a, b = max(t, t0), min(t_next, t_last_us)
            if b > a:
                spans.append(((a - t_last_us) / 1e6, (b - t_last_us) / 1e6, state))
        while len(self._regions) < len(spans):
            region = pg.LinearRegionItem(movable=False, pen=pg.mkPen(None))
            region.setZValue(-10)
            self.plot.addItem(region)
            self._regions.append(region)
        for region, (x0, x1, state) in zip(self._regions, spans, strict=False):
            region.setRegion((x0, x1))
            region.setBrush(pg.mkBrush(*STATE_COLOURS.get(state, (128, 128, 128, 30))))
            region.show()
        for region in self._regions[len(spans) :]:
            region.hide()

    def visible_samples(self) -> np.ndarray:
        """The y data currently drawn (mm), for tests."""
        _, y = self.curve.getData()
        return np.zeros(0) if y is None else np.asarray(y)

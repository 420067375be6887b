"""Trial panel: outcome raster, running success rate, reaction-time histogram and the last N
lever trajectories, per context."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt6.QtWidgets import QVBoxLayout, QWidget

from gui.bridge import QtBridge

CONTEXT_ROWS = {"self_initiated": 0, "cue_triggered": 1}
CONTEXT_PENS = {"self_initiated": "#1f77b4", "cue_triggered": "#ff7f0e"}
OUTCOME_COLOURS = {
    "reward": "#2e7d32",
    "early_release": "#c62828",
    "overshoot": "#6a1b9a",
    "too_early": "#ad1457",
    "miss": "#757575",
    "no_pull": "#bdbdbd",
    "aborted": "#000000",
}
RUNNING_WINDOW_TRIALS = 20


def running_success(outcomes: list[str], window_trials: int = RUNNING_WINDOW_TRIALS) -> np.ndarray:
    """Success fraction over the last ``window_trials`` trials at each trial: float64 (n,)."""
    ok = np.array([o == "reward" for o in outcomes], dtype=np.float64)
    if ok.size == 0:
        return ok
    c = np.concatenate([[0.0], np.cumsum(ok)])
    idx = np.arange(1, ok.size + 1)
    lo = np.maximum(0, idx - window_trials)
    return (c[idx] - c[lo]) / (idx - lo)


class TrialPanel(QWidget):
    """Per-trial summaries, updated on each finished trial.

    Parameters
    ----------
    bridge : QtBridge
        Source of trial records (and lever samples for the trajectories).
    n_trajectories : int
        Trajectories kept per context.
    pre_s, post_s : float
        Trajectory window around the threshold crossing (s).
    """

    def __init__(
        self,
        bridge: QtBridge,
        n_trajectories: int = 10,
        pre_s: float = 0.5,
        post_s: float = 1.5,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.pre_s, self.post_s = pre_s, post_s
        self.records: list[dict[str, Any]] = []
        self.trajectories: dict[str, deque[tuple[np.ndarray, np.ndarray]]] = {
            c: deque(maxlen=n_trajectories) for c in CONTEXT_ROWS
        }
        self.view = pg.GraphicsLayoutWidget()
        self.view.setBackground("w")
        self.raster = self.view.addPlot(row=0, col=0, title="outcomes")
        self.raster.setLabel("bottom", "trial")
        self.raster.getAxis("left").setTicks([[(0, "self"), (1, "cued")]])
        self.raster.setYRange(-0.5, 1.5)
        # One scatter item per outcome, fed whole arrays: per-spot brushes cost O(trials) Python
        # work on every trial, which shows up as event-loop stalls late in a session.
        self.raster_dots: dict[str, pg.ScatterPlotItem] = {}
        for outcome, colour in OUTCOME_COLOURS.items():
            item = pg.ScatterPlotItem(size=8, pen=None, brush=pg.mkBrush(colour), name=outcome)
            self.raster.addItem(item)
            self.raster_dots[outcome] = item
        self.success = self.view.addPlot(row=0, col=1, title="success (last 20)")
        self.success.setYRange(0, 1)
        self.success.setLabel("bottom", "trial")
        self.success.addLegend(offset=(-5, -5))  # bottom right, clear of the early trials
        self.success_curves = {
            c: self.success.plot(pen=pg.mkPen(CONTEXT_PENS[c], width=2), name=c)
            for c in CONTEXT_ROWS
        }
        self.rt = self.view.addPlot(row=1, col=0, title="reaction time (cued)")
        self.rt.setLabel("bottom", "reaction time (ms)")
        self.rt_bars = pg.BarGraphItem(x=[], height=[], width=1, brush="#ff7f0e")
        self.rt.addItem(self.rt_bars)
        self.traj = self.view.addPlot(row=1, col=1, title="trajectories")
        self.traj.setLabel("bottom", "time from crossing", units="s")
        self.traj.setLabel("left", "lever (mm)")
        self.traj_curves: list[pg.PlotDataItem] = []
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)
        bridge.trial.connect(self.add_trial)
        bridge.session.connect(self._on_session)

    def _on_session(self, state: str, _info: dict) -> None:
        if state == "started":
            self.clear()

    def clear(self) -> None:
        self.records.clear()
        for d in self.trajectories.values():
            d.clear()
        self._redraw()

    def add_trial(self, record: dict[str, Any]) -> None:
        if "outcome" not in record:
            return  # not a lever trial (rotarod lanes have their own panel)
        self.records.append(record)
        context = str(record.get("context", "self_initiated"))
        t_cross = record.get("t_cross_us")
        if t_cross is not None and context in self.trajectories:
            t0 = int(t_cross) - int(self.pre_s * 1e6)
            t, p = self.bridge.lever.window(t0, int(t_cross) + int(self.post_s * 1e6))
            if t.size:
                self.trajectories[context].append(((t - int(t_cross)) / 1e6, p))
        self._redraw()

    def _redraw(self) -> None:
        recs = self.records
        trial = np.array([int(r.get("trial", i)) for i, r in enumerate(recs)], dtype=float)
        row = np.array([CONTEXT_ROWS.get(str(r.get("context")), 0) for r in recs], dtype=float)
        outcome = np.array([str(r.get("outcome")) for r in recs])
        for name, item in self.raster_dots.items():
            mine = outcome == name if outcome.size else np.zeros(0, bool)
            item.setData(x=trial[mine], y=row[mine])
        for context, curve in self.success_curves.items():
            mine = [r for r in recs if r.get("context") == context]
            rate = running_success([str(r.get("outcome")) for r in mine])
            curve.setData([int(r.get("trial", 0)) for r in mine], rate)
        rts = np.array(
            [float(r["rt_ms"]) for r in recs if r.get("rt_ms") not in (None, "")], dtype=float
        )
        rts = rts[np.isfinite(rts)]
        if rts.size:
            counts, edges = np.histogram(rts, bins=min(20, max(5, rts.size // 2)))
            self.rt_bars.setOpts(
                x=(edges[:-1] + edges[1:]) / 2, height=counts, width=float(edges[1] - edges[0])
            )
        else:
            self.rt_bars.setOpts(x=[], height=[])
        items = [(c, xy) for c, d in self.trajectories.items() for xy in d]
        while len(self.traj_curves) < len(items):
            self.traj_curves.append(self.traj.plot())
        for curve, (context, (x, y)) in zip(self.traj_curves, items, strict=False):
            colour = pg.mkColor(CONTEXT_PENS[context])
            colour.setAlpha(140)
            curve.setPen(pg.mkPen(colour, width=1))
            curve.setData(x, y)
            curve.show()
        for curve in self.traj_curves[len(items) :]:
            curve.hide()

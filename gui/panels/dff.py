"""ΔF/F panel: stacked traces of the selected ROIs, a heatmap of all ROIs, and event-aligned
averages (cue, threshold crossing, reward) recomputed after each trial."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt6.QtWidgets import QVBoxLayout, QWidget

from gui.bridge import QtBridge
from rig.core.events import Event

#: Alignment -> event names that mark it (the event's ``frame`` is the alignment point).
ALIGN_EVENTS: dict[str, tuple[str, ...]] = {
    "cue": ("cue_on", "tone_on"),
    "crossing": ("threshold_cross", "lever_up"),
    "reward": ("valve_on", "valve_open"),
}
MAX_STACKED = 12


def event_aligned_mean(
    frame_index: np.ndarray,
    dff: np.ndarray,
    event_frames: list[int],
    pre_frames: int,
    post_frames: int,
) -> tuple[np.ndarray | None, int]:
    """Mean ΔF/F around events, over events whose whole window is in the buffer.

    Parameters
    ----------
    frame_index : ndarray int64 (m,)
        Frame index of each buffered row (consecutive).
    dff : ndarray float32 (m, n)
        ΔF/F rows (already reduced to the traces to average, e.g. the selected ROIs' mean).
    event_frames : list[int]
        Frame index of each event.
    pre_frames, post_frames : int
        Window before and after (inclusive of the event frame on the "after" side).

    Returns
    -------
    mean : ndarray float64 (pre_frames + post_frames, n) or None
        ``None`` when no event has a full window.
    n_events : int
        Events averaged.
    """
    if frame_index.size == 0:
        return None, 0
    first = int(frame_index[0])
    windows = []
    for f in event_frames:
        a, b = f - pre_frames - first, f + post_frames - first
        if a >= 0 and b <= frame_index.size:
            windows.append(dff[a:b])
    if not windows:
        return None, 0
    mean: np.ndarray = np.asarray(np.stack(windows).mean(axis=0, dtype=np.float64))
    return mean, len(windows)


class DffPanel(QWidget):
    """Live ΔF/F display.

    Parameters
    ----------
    bridge : QtBridge
        Source of ΔF/F rows, events and trials.
    window_s : float
        Width of the stacked-trace and heatmap window (s).
    pre_s, post_s : float
        Event-aligned window (TASKS.md default -2 s .. +4 s).
    """

    def __init__(
        self,
        bridge: QtBridge,
        window_s: float = 20.0,
        pre_s: float = 2.0,
        post_s: float = 4.0,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.window_s, self.pre_s, self.post_s = window_s, pre_s, post_s
        self.frame_rate_hz = 30.0
        self.selected: list[int] = []
        self.event_frames: dict[str, list[int]] = {k: [] for k in ALIGN_EVENTS}
        self.aligned: dict[str, tuple[np.ndarray | None, int]] = {
            k: (None, 0) for k in ALIGN_EVENTS
        }
        self.n_redraws = 0
        self.view = pg.GraphicsLayoutWidget()
        self.view.setBackground("w")
        self.stacked = self.view.addPlot(row=0, col=0, colspan=3, title="selected ROIs")
        self.stacked.setLabel("bottom", "time", units="s")
        self.stacked.setLabel("left", "ΔF/F (stacked)")
        self.stacked_curves: list[pg.PlotDataItem] = []
        self.stacked.setXRange(-window_s, 0, padding=0)
        self.stacked.hideButtons()
        self._n_stacked = -1
        self._heat_rows = -1
        self.heat_plot = self.view.addPlot(row=1, col=0, colspan=3, title="all ROIs")
        self.heat_plot.setLabel("left", "ROI")
        self.heat_plot.setLabel("bottom", "time", units="s")
        self.heat = pg.ImageItem(axisOrder="row-major")
        self.heat.setColorMap(pg.colormap.get("viridis"))
        self.heat_plot.addItem(self.heat)
        self.heat_plot.setXRange(-window_s, 0, padding=0)
        self.heat_plot.hideButtons()
        self.align_plots: dict[str, pg.PlotItem] = {}
        self.align_curves: dict[str, pg.PlotDataItem] = {}
        for col, name in enumerate(ALIGN_EVENTS):
            p = self.view.addPlot(row=2, col=col, title=name)
            p.setLabel("bottom", "time", units="s")
            p.setMinimumWidth(60)
            p.addLine(x=0, pen=pg.mkPen("#999999", style=pg.QtCore.Qt.PenStyle.DashLine))
            self.align_plots[name] = p
            self.align_curves[name] = p.plot(pen=pg.mkPen("#1f3a93", width=2))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)
        bridge.traces_updated.connect(self.redraw)
        bridge.events.connect(self.on_events)
        bridge.trial.connect(self.update_aligned)
        bridge.imaging_stats.connect(self.on_stats)
        bridge.session.connect(self._on_session)

    def _on_session(self, state: str, _info: dict) -> None:
        if state == "started":
            for v in self.event_frames.values():
                v.clear()

    def set_selection(self, rois: list[int]) -> None:
        self.selected = list(rois)
        self.redraw()
        self.update_aligned()

    def on_stats(self, stats: dict[str, Any]) -> None:
        # Only the acquisition rate: "frames_per_s" is the pipeline's throughput, which differs
        # from it whenever the pipeline catches up or the board runs faster than real time.
        rate = stats.get("frame_rate_hz")
        if rate:
            self.frame_rate_hz = float(rate)

    def on_events(self, events: list[Event]) -> None:
        for ev in events:
            if ev.frame is None or ev.source == "gui":
                continue  # manual tones and rewards are not task events
            for align, names in ALIGN_EVENTS.items():
                if ev.name in names:
                    self.event_frames[align].append(int(ev.frame))

    def _window_frames(self, seconds: float) -> int:
        return max(1, round(seconds * self.frame_rate_hz))

    def redraw(self) -> None:
        idx, dff = self.bridge.traces.snapshot(last_n=self._window_frames(self.window_s))
        if idx.size == 0:
            return
        self.heat.setImage(dff.T, autoLevels=False, levels=(-0.5, 2.0))
        # Time relative to the newest frame keeps both x axes still (no re-layout per redraw).
        span_s = idx.size / self.frame_rate_hz
        self.heat.setRect(-span_s, 0.0, span_s, float(dff.shape[1]))
        if dff.shape[1] != self._heat_rows:
            self._heat_rows = dff.shape[1]
            self.heat_plot.setYRange(0, dff.shape[1], padding=0)
        t_s = (idx - idx[-1]) / self.frame_rate_hz
        shown = [r for r in self.selected if r < dff.shape[1]][:MAX_STACKED]
        while len(self.stacked_curves) < len(shown):
            self.stacked_curves.append(self.stacked.plot())
        for k, (curve, roi) in enumerate(zip(self.stacked_curves, shown, strict=False)):
            curve.setPen(pg.mkPen(pg.intColor(roi, hues=12), width=1))
            curve.setData(t_s, dff[:, roi] + 1.5 * k)
            curve.show()
        for curve in self.stacked_curves[len(shown) :]:
            curve.hide()
        if len(shown) != self._n_stacked:
            self._n_stacked = len(shown)
            self.stacked.setYRange(-1.0, 1.5 * max(1, len(shown)) + 1.0, padding=0)
        self.n_redraws += 1

    def update_aligned(self, _record: dict | None = None) -> None:
        """Recompute the event-aligned averages (after each trial, or a new selection)."""
        pre, post = self._window_frames(self.pre_s), self._window_frames(self.post_s)
        idx, dff = self.bridge.traces.snapshot()
        if idx.size == 0:
            return
        rois = [r for r in self.selected if r < dff.shape[1]]
        trace = dff[:, rois].mean(axis=1) if rois else dff.mean(axis=1)
        t_s = np.arange(-pre, post) / self.frame_rate_hz
        for align, frames in self.event_frames.items():
            mean, n = event_aligned_mean(idx, trace[:, None], frames, pre, post)
            self.aligned[align] = (mean, n)
            plot = self.align_plots[align]
            plot.setTitle(f"{align} (n={n})", size="9pt")
            if mean is None:
                self.align_curves[align].setData([], [])
            else:
                self.align_curves[align].setData(t_s, mean[:, 0])

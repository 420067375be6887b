"""Imaging panel: the registered frame with fixed (adjustable) levels, a live / mean / reference
toggle, ROI outlines with click-to-select, and the motion-shift trace."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from gui.bridge import QtBridge

OUTLINE_RGBA = (0, 230, 255, 120)  # translucent: the cell under its outline stays visible
SELECTED_RGBA = (255, 220, 0, 255)
DEFAULT_SELECTED = 5


def outline_mask(labels: np.ndarray) -> np.ndarray:
    """Pixels on the border of a labelled ROI: bool (Y, X) from int labels (Y, X), 0 = none."""
    lab = np.asarray(labels)
    edge = np.zeros(lab.shape, dtype=bool)
    edge[:-1, :] |= lab[:-1, :] != lab[1:, :]
    edge[1:, :] |= lab[1:, :] != lab[:-1, :]
    edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    return edge & (lab > 0)


def disc_labels(shape: tuple[int, int], centres_px: np.ndarray, radius_px: float) -> np.ndarray:
    """Label image of discs (ROI k has label k + 1; later discs win overlaps): int32 (Y, X)."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    labels = np.zeros(shape, dtype=np.int32)
    for k, (cy, cx) in enumerate(np.asarray(centres_px, dtype=float)):
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius_px**2] = k + 1
    return labels


class ImagingPanel(QWidget):
    """Registered frame display.

    Signals
    -------
    selection_changed(list[int])
        Selected ROI indices (0-based), sorted.
    """

    selection_changed = pyqtSignal(list)

    def __init__(self, bridge: QtBridge, shift_history: int = 900, parent: QWidget | None = None):
        super().__init__(parent)
        self.bridge = bridge
        self.selected: list[int] = []
        self.labels: np.ndarray | None = None
        self.reference: np.ndarray | None = None
        self._sum: np.ndarray | None = None
        self._n_mean = 0
        self.live: np.ndarray | None = None
        self.n_redraws = 0
        self.frame_index = -1
        self._shifts: deque[tuple[int, float, float]] = deque(maxlen=shift_history)

        self.view = pg.GraphicsLayoutWidget()
        self.view.setBackground("k")
        self.vb = self.view.addViewBox(row=0, col=0, lockAspect=True, invertY=True)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.overlay = pg.ImageItem(axisOrder="row-major")
        self.overlay.setZValue(10)
        self.vb.addItem(self.image)
        self.vb.addItem(self.overlay)
        # Its own widget, hidden until the pipeline reports shifts (an empty plot says nothing).
        self.shift_view = pg.PlotWidget(background="k")
        self.shift_view.setMaximumHeight(130)
        self.shift_plot = self.shift_view.getPlotItem()
        self.shift_plot.setLabel("left", "shift (px)")
        self.shift_plot.setLabel("bottom", "frame")
        self.shift_plot.setTitle(
            'motion shift: <span style="color:#ff7043">y</span> '
            '<span style="color:#29b6f6">x</span>',
            size="8pt",
        )
        self.shift_y = self.shift_plot.plot(pen=pg.mkPen("#ff7043"))
        self.shift_x = self.shift_plot.plot(pen=pg.mkPen("#29b6f6"))
        self.shift_view.hide()

        self.mode = QComboBox()
        for m in ("live", "mean", "reference"):
            self.mode.addItem(m)
        self.level_min = QDoubleSpinBox()
        self.level_max = QDoubleSpinBox()
        for box, v in ((self.level_min, 0.0), (self.level_max, 1000.0)):
            box.setRange(-1e6, 1e6)
            box.setDecimals(0)
            box.setValue(v)
            box.valueChanged.connect(self._apply_levels)
        self.auto = QPushButton("auto levels")
        self.auto.clicked.connect(self.auto_levels)
        self.info = QLabel("no frames yet")
        controls = QHBoxLayout()
        for w in (QLabel("show"), self.mode, QLabel("levels"), self.level_min, self.level_max):
            controls.addWidget(w)
        controls.addWidget(self.auto)
        controls.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(controls)
        layout.addWidget(self.view)
        layout.addWidget(self.shift_view)
        layout.addWidget(self.info)
        self.mode.currentIndexChanged.connect(self._show)
        self.view.scene().sigMouseClicked.connect(self._on_click)
        bridge.frame.connect(self.on_frame)
        bridge.imaging_stats.connect(self.on_stats)
        bridge.session.connect(self._on_session)

    # ------------------------------------------------------------------ data in
    def _on_session(self, state: str, _info: dict) -> None:
        if state == "started":
            self._sum, self._n_mean, self.live = None, 0, None
            self._shifts.clear()
            self.shift_view.hide()

    def set_rois(self, labels: np.ndarray | None) -> None:
        """ROI label image: int (Y, X), 0 = background, ROI k has label k + 1."""
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int32)
        # Start with a few ROIs selected so the stacked traces are not empty; clicks change it.
        n = 0 if self.labels is None else int(self.labels.max())
        self.selected = list(range(min(n, DEFAULT_SELECTED)))
        self._draw_outlines()
        self.selection_changed.emit(list(self.selected))

    def set_reference(self, image: np.ndarray | None) -> None:
        self.reference = None if image is None else np.asarray(image, dtype=np.float32)
        if self.mode.currentText() == "reference":
            self._show()

    def on_frame(self, frame_index: int, image: np.ndarray) -> None:
        img = np.asarray(image, dtype=np.float32)
        self.frame_index = frame_index
        self.live = img
        if self._sum is None or self._sum.shape != img.shape:
            self._sum, self._n_mean = np.zeros(img.shape, np.float64), 0
        self._sum += img
        self._n_mean += 1
        if self.mode.currentText() == "live" or self._n_mean == 1:
            self._show()
        self.info.setText(f"frame {frame_index}  ({img.shape[1]} x {img.shape[0]} px)")

    def on_stats(self, stats: dict[str, Any]) -> None:
        was_empty = not self._shifts
        added = 0
        if "shifts_px" in stats and "shift_frame_index" in stats:  # the runner: every frame
            for idx, (dy, dx) in zip(stats["shift_frame_index"], stats["shifts_px"], strict=True):
                self._shifts.append((int(idx), float(dy), float(dx)))
                added += 1
        elif "shift_y_px" in stats and "shift_x_px" in stats:  # one sample per stats message
            idx = int(stats.get("frame_index", len(self._shifts)))
            self._shifts.append((idx, float(stats["shift_y_px"]), float(stats["shift_x_px"])))
            added = 1
        if added:
            if was_empty:
                self.shift_view.show()
            arr = np.array(self._shifts)
            self.shift_y.setData(arr[:, 0], arr[:, 1])
            self.shift_x.setData(arr[:, 0], arr[:, 2])

    # ------------------------------------------------------------------ display
    def displayed(self) -> np.ndarray | None:
        mode = self.mode.currentText()
        if mode == "mean" and self._sum is not None and self._n_mean:
            return (self._sum / self._n_mean).astype(np.float32)
        if mode == "reference" and self.reference is not None:
            return self.reference
        return self.live

    def _show(self) -> None:
        img = self.displayed()
        if img is None:
            return
        self.image.setImage(img, autoLevels=False, levels=self.levels())
        self.n_redraws += 1

    def levels(self) -> tuple[float, float]:
        return float(self.level_min.value()), float(self.level_max.value())

    def _apply_levels(self) -> None:
        if self.image.image is not None:
            self.image.setLevels(self.levels())

    def auto_levels(self) -> None:
        """Set the fixed levels once from the shown image (1st and 99.5th percentile)."""
        img = self.displayed()
        if img is None:
            return
        lo, hi = np.percentile(img, [1.0, 99.5])
        self.level_min.setValue(float(lo))
        self.level_max.setValue(float(max(hi, lo + 1)))

    # ------------------------------------------------------------------ ROI selection
    def _draw_outlines(self) -> None:
        if self.labels is None:
            self.overlay.clear()
            return
        rgba = np.zeros((*self.labels.shape, 4), dtype=np.uint8)
        edge = outline_mask(self.labels)
        rgba[edge] = OUTLINE_RGBA
        if self.selected:
            sel = np.isin(self.labels, np.asarray(self.selected) + 1)
            rgba[edge & sel] = SELECTED_RGBA
        self.overlay.setImage(rgba, autoLevels=False, levels=(0, 255))

    def roi_at(self, row: int, col: int) -> int | None:
        """ROI index under pixel (row, col), or ``None``."""
        if self.labels is None:
            return None
        if not (0 <= row < self.labels.shape[0] and 0 <= col < self.labels.shape[1]):
            return None
        k = int(self.labels[row, col])
        return k - 1 if k > 0 else None

    def toggle_roi(self, roi: int) -> None:
        sel = set(self.selected)
        sel.symmetric_difference_update({roi})
        self.selected = sorted(sel)
        self._draw_outlines()
        self.selection_changed.emit(list(self.selected))

    def _on_click(self, event: Any) -> None:
        pos = self.image.mapFromScene(event.scenePos())
        roi = self.roi_at(int(np.floor(pos.y())), int(np.floor(pos.x())))
        if roi is not None:
            self.toggle_roi(roi)
            event.accept()

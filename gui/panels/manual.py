"""Manual controls: give a reward, play a tone, flush the valve, zero the lever.

Each button calls the runner, which validates the request against the rig (valve calibration,
pulse caps) and logs it as a manual event; a refusal is reported in the log panel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PyQt6.QtCore import pyqtSignal
from PyQt6.QtWidgets import QDoubleSpinBox, QGridLayout, QPushButton, QWidget

from gui.runner_api import SessionRunner


def _spin(lo: float, hi: float, value: float, suffix: str, decimals: int = 1) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setDecimals(decimals)
    box.setValue(value)
    box.setSuffix(f" {suffix}")
    return box


class ManualPanel(QWidget):
    """Buttons for manual actions; enabled only while a session runs.

    Parameters
    ----------
    runner : callable
        Returns the current runner, or ``None`` when no session runs.

    Signals
    -------
    message(int, str)
        Outcome of an action for the log panel (level as in ``logging``).
    """

    message = pyqtSignal(int, str)

    def __init__(
        self, runner: Callable[[], SessionRunner | None], parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._runner = runner
        self.reward_ul = _spin(0.1, 50.0, 4.0, "µl")
        self.tone_freq_hz = _spin(100.0, 40_000.0, 10_000.0, "Hz", 0)
        self.tone_duration_ms = _spin(10.0, 10_000.0, 500.0, "ms", 0)
        self.flush_ms = _spin(10.0, 10_000.0, 1000.0, "ms", 0)
        self.reward_button = QPushButton("Give reward")
        self.tone_button = QPushButton("Play tone")
        self.flush_button = QPushButton("Flush valve")
        self.zero_button = QPushButton("Zero lever")
        grid = QGridLayout(self)
        grid.addWidget(self.reward_ul, 0, 0)
        grid.addWidget(self.reward_button, 0, 2)
        grid.addWidget(self.tone_freq_hz, 1, 0)
        grid.addWidget(self.tone_duration_ms, 1, 1)
        grid.addWidget(self.tone_button, 1, 2)
        grid.addWidget(self.flush_ms, 2, 0)
        grid.addWidget(self.flush_button, 2, 2)
        grid.addWidget(self.zero_button, 3, 2)
        self.reward_button.clicked.connect(
            lambda: self._do("reward", lambda r: r.give_reward(self.reward_ul.value()))
        )
        self.tone_button.clicked.connect(
            lambda: self._do(
                "tone",
                lambda r: r.play_tone(self.tone_freq_hz.value(), self.tone_duration_ms.value()),
            )
        )
        self.flush_button.clicked.connect(
            lambda: self._do("flush", lambda r: r.flush_valve(self.flush_ms.value()))
        )
        self.zero_button.clicked.connect(lambda: self._do("zero lever", lambda r: r.zero_lever()))
        self.set_enabled(False)

    def set_enabled(self, enabled: bool) -> None:
        for b in (self.reward_button, self.tone_button, self.flush_button, self.zero_button):
            b.setEnabled(enabled)

    def _do(self, what: str, action: Callable[[SessionRunner], None]) -> None:
        runner = self._runner()
        if runner is None:
            self.message.emit(logging.WARNING, f"manual {what}: no session is running")
            return
        try:
            action(runner)
        except Exception as e:  # the runner refused (bad value, device gone): tell, don't crash
            self.message.emit(logging.ERROR, f"manual {what} refused: {e}")
        else:
            self.message.emit(logging.INFO, f"manual {what} sent")

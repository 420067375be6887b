"""Log panel: warnings and errors from ``RigSignals.log``, newest at the bottom."""

from __future__ import annotations

import logging
import time

from PyQt6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPlainTextEdit, QVBoxLayout, QWidget

_COLOURS = {
    logging.DEBUG: "#777777",
    logging.INFO: "#222222",
    logging.WARNING: "#b26a00",
    logging.ERROR: "#c62828",
    logging.CRITICAL: "#8e0000",
}


class LogPanel(QWidget):
    """Scrolling log with a minimum-level filter (applies to new lines).

    Attributes
    ----------
    lines : list[tuple[int, str]]
        Every (level, message) received, for tests and for re-filtering.
    """

    def __init__(self, max_lines: int = 5000, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.lines: list[tuple[int, str]] = []
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(max_lines)
        self.level = QComboBox()
        for name in ("DEBUG", "INFO", "WARNING", "ERROR"):
            self.level.addItem(name, getattr(logging, name))
        self.level.setCurrentIndex(1)
        top = QHBoxLayout()
        top.addWidget(QLabel("show from"))
        top.addWidget(self.level)
        top.addStretch(1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.text)

    def add(self, level: int, message: str) -> None:
        """Append one line (main thread)."""
        self.lines.append((level, message))
        if level < (self.level.currentData() or 0):
            return
        colour = _COLOURS.get(level, "#222222")
        name = logging.getLevelName(level)
        stamp = time.strftime("%H:%M:%S")
        safe = message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        self.text.appendHtml(f'<span style="color:{colour}">{stamp} {name:8s} {safe}</span>')

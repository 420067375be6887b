"""Renders every panel offscreen during simulated sessions and checks the pictures.

The lever, trial, session, manual, log, imaging and ΔF/F panels are shot during a real lever
session on sim.yaml (LeverRunner, simulated board and mouse, live imaging of a small synthetic
movie through the real pipeline); the rotarod panel during a real rotarod day on the simulated
rod. Images go to a temporary folder; with ``RIG_WRITE_SCREENSHOTS=1`` they are written to
``docs/screenshots/`` (the checked-in ones).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PyQt6.QtGui import QImage
from PyQt6.QtWidgets import QWidget

from gui.app import MainWindow
from tests.gui_helpers import REPO
from tests.test_gui_imaging import imaging_rig
from tests.test_gui_session import FAST_PARAMS

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def shots_dir(tmp_path: Path) -> Path:
    if os.environ.get("RIG_WRITE_SCREENSHOTS") == "1":
        out = REPO / "docs" / "screenshots"
        out.mkdir(parents=True, exist_ok=True)
        return out
    return tmp_path


def _shoot(widget: QWidget, path: Path, size: tuple[int, int]) -> np.ndarray:
    """Render ``widget`` at ``size`` to ``path``; return its pixels, uint8 (H, W, 4)."""
    widget.resize(*size)
    pix = widget.grab()
    assert pix.save(str(path)), path
    img = pix.toImage().convertToFormat(QImage.Format.Format_RGBA8888)
    ptr = img.constBits()
    assert ptr is not None
    ptr.setsize(img.sizeInBytes())
    arr = np.frombuffer(ptr, np.uint8).reshape(img.height(), img.bytesPerLine() // 4, 4)
    return arr[:, : img.width()].copy()


def _has_content(pixels: np.ndarray, min_colours: int = 8) -> bool:
    """More than a blank widget: enough distinct colours drawn."""
    flat = pixels[..., :3].reshape(-1, 3)
    return len(np.unique(flat[:: max(1, flat.shape[0] // 20000)], axis=0)) >= min_colours


def test_screenshots_of_every_panel(qtbot, tmp_path, shots_dir):
    win = MainWindow(imaging_rig(tmp_path), session_extra={"speed": 5.0})
    qtbot.addWidget(win)
    win.confirm_close = lambda: True  # type: ignore[method-assign]
    win.resize(1500, 950)
    win.show()
    sp = win.session_panel
    sp.subject.setText("demo_mouse")
    sp.task.setCurrentText("mixed")
    sp.form.set_values(FAST_PARAMS)

    # --- a real lever session with live imaging on the simulated rig
    sp.start_button.click()
    assert win.runner is not None, win.log_panel.lines
    qtbot.waitUntil(lambda: len(win.trial_panel.records) >= 6, timeout=90_000)
    qtbot.waitUntil(lambda: win.dff_panel.aligned["reward"][1] >= 2, timeout=60_000)
    win.manual_panel.reward_button.click()
    qtbot.waitUntil(lambda: win.lever_panel.n_redraws > 20, timeout=10_000)
    shots = {
        "window": (win, (1500, 950)),
        "session": (sp, (380, 900)),
        "manual": (win.manual_panel, (380, 170)),
        "lever": (win.lever_panel, (900, 320)),
        "trials": (win.trial_panel, (900, 520)),
        "log": (win.log_panel, (900, 200)),
    }
    pixels = {name: _shoot(w, shots_dir / f"{name}.png", size) for name, (w, size) in shots.items()}
    win.tabs.setCurrentIndex(1)
    win.imaging_panel.auto_levels()
    qtbot.waitUntil(lambda: win.dff_panel.n_redraws > 10, timeout=10_000)
    pixels["imaging"] = _shoot(win.imaging_panel, shots_dir / "imaging.png", (620, 700))
    pixels["dff"] = _shoot(win.dff_panel, shots_dir / "dff.png", (700, 700))
    win.stop_session()

    # --- a real rotarod day on the simulated rod (virtual time: the whole day in seconds)
    win.session_extra = {"realtime": False}
    sp.task.setCurrentText("rotarod")
    sp.form.set_values({"trials_per_day": 2, "lanes": 3, "iti_min_s": 600, "max_s": 120})
    sp.subject.setText("r1,r2,r3")
    assert sp.start_button.isEnabled(), sp.form.errors
    sp.start_button.click()
    qtbot.waitUntil(lambda: not sp.running, timeout=60_000)
    win.tabs.setCurrentIndex(2)
    rp = win.rotarod_panel
    assert rp.fall_table.rowCount() >= 3
    pixels["rotarod"] = _shoot(rp, shots_dir / "rotarod.png", (620, 520))

    for name, px in pixels.items():
        assert (shots_dir / f"{name}.png").stat().st_size > 2000, name
        assert _has_content(px), f"{name} screenshot looks blank"
    # the lever trace is drawn in its colour, the imaging view has a grey-level image
    assert (np.abs(pixels["lever"][..., :3].astype(int) - (31, 58, 147)).sum(axis=-1) < 30).any()
    assert len(np.unique(pixels["imaging"][..., 0])) > 50

"""The imaging and ΔF/F panels on a real lever session with live imaging: the simulated board's
frame clock drives a small synthetic movie through the real pipeline (numpy backend)."""

from __future__ import annotations

import pytest

from gui.app import MainWindow
from gui.threadcheck import ThreadChecker
from rig.core.config import ImagingConfig
from tests.gui_helpers import sim_rig
from tests.test_gui_session import FAST_PARAMS

pytestmark = pytest.mark.timeout(120)

SMALL_MOVIE = {
    "source": {
        "kind": "synthetic",
        "size_px": 128,
        "n_cells": 15,
        "frame_rate_hz": 30.0,
        "max_shift_px": 2.0,
    },
    "backend": "numpy",
    "rois": {"kind": "auto", "n_frames_for_detection": 150},
}


def imaging_rig(tmp_path):
    rig = sim_rig(tmp_path)
    lb = rig.lever_board
    assert lb is not None
    mouse = lb.mouse.model_copy(update={"skill": 0.9})
    return rig.model_copy(
        update={
            "lever_board": lb.model_copy(update={"mouse": mouse}),
            "imaging": ImagingConfig.model_validate(SMALL_MOVIE),
        }
    )


def test_live_imaging_reaches_the_imaging_and_dff_panels(qtbot, tmp_path):
    win = MainWindow(imaging_rig(tmp_path), session_extra={"speed": 5.0})
    qtbot.addWidget(win)
    win.confirm_close = lambda: True  # type: ignore[method-assign]
    win.show()
    sp = win.session_panel
    sp.form.set_values(FAST_PARAMS)
    checker = ThreadChecker()
    win.bridge.checker = checker
    with checker:  # the pipeline, feeder and board threads start inside
        sp.start_button.click()
        assert win.runner is not None, win.log_panel.lines
        ip, dp = win.imaging_panel, win.dff_panel
        # ROIs and the reference appear once the pipeline has fitted them on its warm-up frames.
        qtbot.waitUntil(lambda: ip.labels is not None and ip.reference is not None, timeout=60_000)
        assert dp.selected == ip.selected and ip.selected
        qtbot.waitUntil(lambda: ip.n_redraws > 10 and dp.n_redraws > 10, timeout=30_000)
        qtbot.waitUntil(lambda: len(win.trial_panel.records) >= 3, timeout=60_000)
        qtbot.waitUntil(lambda: dp.aligned["crossing"][1] >= 1, timeout=60_000)
        assert win.bridge.traces.n_rois == int(ip.labels.max())
        assert dp.frame_rate_hz == 30.0  # the acquisition rate, not the pipeline's throughput
        # the motion trace gets every frame's rigid shift, in order
        qtbot.waitUntil(
            lambda: not ip.shift_view.isHidden() and len(ip._shifts) > 10, timeout=30_000
        )
        idx = [s[0] for s in ip._shifts]
        assert idx == list(range(idx[0], idx[0] + len(idx)))
        folder = win.runner.session_dir
        win.stop_session()
    assert checker.violations == [], checker.violations
    # every frame the pipeline processed reached the GUI's trace buffer, in order
    assert win.bridge.traces.n_gaps == 0
    assert win.bridge.traces.n_frames_in == win.session_panel.frames_imaging
    assert "missing" not in sp.frame_check.text()
    assert (folder / "imaging").is_dir()

"""`rig replay SESSION --gui`: a golden session played in the window's panels (gui.replay).

The mixed-block golden session with imaging (about 60 s of board time) plays at 20x: its
trials reach the trial panel with the outcomes of trials.tsv, the lever panel gets samples, the
ΔF/F panel gets rows, and no Qt object is touched off the main thread.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest

from gui.replay import ReplaySession, recorded_lever_mm, replay_window
from gui.threadcheck import ThreadChecker
from rig.core.store import SessionReader

pytestmark = pytest.mark.timeout(60)

GOLDEN = Path(__file__).parent / "data" / "golden"
ROOT = Path(__file__).resolve().parents[1]


def golden(name: str, dest: Path) -> Path:
    """Unpack ``tests/data/golden/<name>.tar.xz`` into ``dest``; returns the session folder."""
    with tarfile.open(GOLDEN / f"{name}.tar.xz") as tar:
        tar.extractall(dest, filter="data")
    (folder,) = [p for p in dest.iterdir() if (p / "session.json").is_file()]
    return folder


def test_replay_in_window_at_20x(qtbot, tmp_path):
    folder = golden("mixed_imaging", tmp_path)
    recorded = SessionReader(folder).trials()
    assert recorded, "golden session has no trials"
    checker = ThreadChecker()
    win = replay_window(folder, speed=20.0, checker=checker)
    qtbot.addWidget(win)
    win.confirm_close = lambda: True
    win.show()
    sp = win.session_panel
    assert sp.subject.text() == "golden" and sp.task.currentText() == "mixed"
    with checker:
        assert sp.start_button.isEnabled()
        t0 = time.monotonic()
        sp.start_button.click()
        runner = win.runner
        assert isinstance(runner, ReplaySession) and runner.running
        assert not win.manual_panel.reward_button.isEnabled()
        # ~60 s of recording at 20x: ~3 s; the window ends the session by itself.
        qtbot.waitUntil(lambda: win.runner is None, timeout=20_000)
    wall_s = time.monotonic() - t0
    assert not runner.running and runner.reason == "end of recording"
    # Paced on board time: never faster than 20x (the upper side depends on the machine's load).
    assert wall_s >= 0.95 * runner.duration_s / 20.0, (wall_s, runner.duration_s)
    got = [str(r["outcome"]) for r in win.trial_panel.records]
    assert got == [r["outcome"] for r in recorded]
    assert win.bridge.lever.n_total == recorded_lever_mm(SessionReader(folder))[0].size > 0
    assert win.lever_panel.n_redraws > 0
    assert win.bridge.traces.n_frames_in == runner.t_frames_us.size > 0
    assert win.imaging_panel.labels is not None  # the recorded ROIs are shown
    assert sp.start_button.isEnabled() and not win.manual_panel.reward_button.isEnabled()
    assert checker.violations == [], checker.violations
    win.bridge.stop()


def test_replay_paces_on_board_time_and_stops(tmp_path):
    folder = golden("cued", tmp_path)
    rs = ReplaySession(folder, speed=20.0)
    n_lever: list[int] = []
    rs.signals.lever.connect(lambda t, p: n_lever.append(t.size))
    states: list[tuple[str, dict]] = []
    rs.signals.session.connect(lambda s, info: states.append((s, info)))
    rs.start()
    assert rs.running and states[0][0] == "started"
    rs.stop("test")
    assert not rs.running and states[-1] == (
        "stopped",
        {"session_dir": str(folder), "reason": "test"},
    )
    # Stopped at once: only the first step's samples (board time, 20x) went out, not ~60 s.
    assert sum(n_lever) < recorded_lever_mm(SessionReader(folder))[0].size / 3
    with pytest.raises(ValueError, match="1..20x"):
        ReplaySession(folder, speed=50)


def test_lever_decoded_from_raw_bytes_is_calibrated(tmp_path):
    t_us, mm = recorded_lever_mm(SessionReader(golden("cued", tmp_path)))
    assert t_us.dtype == np.int64 and mm.dtype == np.float64 and t_us.size == mm.size > 1000
    assert np.all(np.diff(t_us) > 0)
    assert -5.0 < float(np.median(mm)) < 5.0  # at rest most of the time, in mm not counts


def test_cli_gui_without_display_exits_3(tmp_path):
    folder = golden("cued", tmp_path)
    env = {k: v for k, v in os.environ.items()}
    for k in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        env.pop(k, None)
    res = subprocess.run(
        [sys.executable, "-m", "rig", "replay", str(folder), "--gui", "--speed", "20"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert res.returncode == 3, res.stderr
    assert "drop --gui" in res.stderr

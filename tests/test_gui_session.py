"""The window on the real runner and the simulated rig (hardware_configs/sim.yaml).

Start a session from the session panel, see trials arrive, stop it; a manual reward is logged
in the session; closing the window mid-session leaves the valve closed and the folder complete.
The simulated board runs 10x faster than real time so a few trials take a few seconds.
"""

from __future__ import annotations

import json

import pytest

from gui.app import MainWindow
from gui.threadcheck import ThreadChecker
from rig.core.store import SessionReader
from tests.gui_helpers import sim_rig

pytestmark = pytest.mark.timeout(120)

FAST_PARAMS = {
    "block_trials": 2,
    "self_initiated": {"iti_s": 0.5, "quiet_s": 0.2, "hold_ms": 100},
    "cue_triggered": {
        "iti_min_s": 0.5,
        "iti_max_s": 0.6,
        "quiet_precue_s": 0.2,
        "hold_ms": 100,
        "response_window_s": 3,
    },
}


@pytest.fixture
def window(qtbot, tmp_path):
    rig = sim_rig(tmp_path)
    lb = rig.lever_board
    assert lb is not None and lb.driver == "sim"
    # A skilled simulated mouse: trials end in board seconds, not minutes. No imaging here
    # (test_real_session_with_imaging has a small movie): these tests are about behaviour.
    mouse = lb.mouse.model_copy(update={"skill": 0.9})
    rig = rig.model_copy(
        update={"lever_board": lb.model_copy(update={"mouse": mouse}), "imaging": None}
    )
    win = MainWindow(rig, session_extra={"speed": 10.0})
    qtbot.addWidget(win)
    win.confirm_close = lambda: True  # type: ignore[method-assign]
    win.show()
    sp = win.session_panel
    sp.subject.setText("gui_mouse")
    sp.task.setCurrentText("mixed")
    sp.form.set_values(FAST_PARAMS)
    assert sp.form.valid, sp.form.errors
    yield win
    if win.runner is not None:
        win.stop_session("test teardown")
    win.bridge.stop()


def _events(folder):
    lines = (folder / "events.jsonl").read_text().splitlines()[1:]
    return [json.loads(line) for line in lines if line.strip()]


def test_start_see_trials_stop_with_no_off_thread_qt(qtbot, window):
    checker = ThreadChecker()
    window.bridge.checker = checker
    sp = window.session_panel
    with checker:  # hooks the runner's, the board's and the writer's threads, started below
        sp.start_button.click()
        assert window.runner is not None and window.runner.running, window.log_panel.lines
        qtbot.waitUntil(lambda: len(window.trial_panel.records) >= 3, timeout=60_000)
        qtbot.waitUntil(lambda: window.lever_panel.n_redraws >= 5, timeout=10_000)
        qtbot.waitUntil(lambda: sp.health.columnCount() == 1, timeout=10_000)
        folder = window.runner.session_dir
        sp.stop_button.click()
    assert window.runner is None and not sp.running
    assert checker.violations == [], checker.violations
    reader = SessionReader(folder)
    assert reader.status == "complete"
    trials = list(reader.trials())
    assert len(trials) == len(window.trial_panel.records) == int(sp.trials.text())
    assert {r["context"] for r in window.trial_panel.records} <= {"self_initiated", "cue_triggered"}
    assert window.lever_panel.visible_samples().size > 100
    assert window.lever_panel.transitions, "no trial state was shaded"
    assert sp.health.item(0, 0).text() == "yes"
    # the runner saved the subject's shaping state; the panel shows it for the next session
    assert sp.subject_state.text().startswith("1 sessions")
    assert "hold_ms=100" in sp.subject_state.text()


def test_manual_reward_is_logged_in_the_session(qtbot, window):
    window.session_panel.start_button.click()
    runner = window.runner
    assert runner is not None and runner.running, window.log_panel.lines
    window.manual_panel.reward_ul.setValue(3.0)
    window.manual_panel.reward_button.click()
    folder = runner.session_dir
    qtbot.waitUntil(
        lambda: any(e["name"] == "manual_reward" for e in _events(folder)), timeout=10_000
    )
    qtbot.waitUntil(lambda: window.session_panel.reward_ul >= 3.0, timeout=10_000)
    window.stop_session()
    events = _events(folder)
    manual = [e for e in events if e["name"] == "manual_reward"]
    assert manual[0]["source"] == "gui" and manual[0]["data"]["volume_ul"] == 3.0
    # the board opened the valve for it (a task reward may also be in the log)
    assert any(e["name"] == "valve_on" for e in events)


def test_close_mid_session_leaves_valve_closed_and_folder_complete(qtbot, window):
    window.session_extra["speed"] = 1.0  # a flush that is still open when the window closes
    window.session_panel.start_button.click()
    runner = window.runner
    assert runner is not None and runner.running, window.log_panel.lines
    engine = runner.conn.closers[0].__self__.board.engine  # the simulated board's I/O state
    window.manual_panel.flush_ms.setValue(450)
    window.manual_panel.flush_button.click()
    qtbot.waitUntil(lambda: engine.valve_on, timeout=5000)
    folder = runner.session_dir
    assert window.close()
    assert not runner.running and not engine.valve_on
    reader = SessionReader(folder)
    assert reader.status == "complete" and reader.meta.stop_reason == "window closed mid-session"
    names = [e["name"] for e in _events(folder)]
    assert names[-1] == "session_stop"
    assert "manual_flush" in names and "valve_on" in names
    # (The board's valve_off for the safe state is not always in events.jsonl: it can arrive
    # after the link closed. The board's own state, checked above, is the ground truth.)


def test_session_that_ends_itself_returns_the_panel_to_idle(qtbot, window):
    sp = window.session_panel
    sp.form.editor("max_rewards").setText("2")
    sp.start_button.click()
    runner = window.runner
    assert runner is not None
    qtbot.waitUntil(lambda: not sp.running, timeout=60_000)
    assert window.runner is None and sp.start_button.isEnabled()
    assert not runner.running
    assert "reward" in sp.status.text()  # the runner's stop reason is shown
    reader = SessionReader(runner.session_dir)
    assert reader.status == "complete"
    assert sum(r["outcome"] == "reward" for r in reader.trials()) == 2


def test_sigterm_to_the_app_process_ends_the_session_cleanly(qtbot, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    import yaml

    from tests.gui_helpers import REPO

    cfg = yaml.safe_load((REPO / "hardware_configs" / "sim.yaml").read_text())
    cfg["data_dir"] = str(tmp_path / "data")
    cfg.pop("imaging", None)
    cfg["lever_board"]["mouse"]["skill"] = 0.9
    config = tmp_path / "rig.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    cmd = [sys.executable, "-m", "gui.app", str(config), "--task", "self_initiated"]
    proc = subprocess.Popen(
        [*cmd, "--subject", "sig_mouse", "--autostart", "--speed", "5"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        subject_dir = tmp_path / "data" / "sig_mouse"

        def trials_written() -> bool:
            return any(p.stat().st_size > 200 for p in subject_dir.glob("*/trials.tsv"))

        qtbot.waitUntil(trials_written, timeout=60_000)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out.decode(errors="replace")
    (folder,) = [p for p in subject_dir.iterdir() if p.is_dir()]
    reader = SessionReader(folder)
    assert reader.status == "complete"
    assert reader.meta.stop_reason == "window closed mid-session"

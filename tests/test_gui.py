"""GUI tests (pytest-qt, offscreen): bridge, thread checker, form, panels, window lifecycle.

These run against :class:`gui.synthetic.SyntheticRunner` so they exercise the GUI alone;
``tests/test_gui_session.py`` runs the window on the real runner and the simulated rig.
"""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest
from PyQt6.QtCore import QPointF, Qt
from PyQt6.QtWidgets import QLabel

from gui.app import MainWindow, build_window
from gui.bridge import QtBridge
from gui.forms import ParamsForm, label_of, unit_of
from gui.ring import LeverRing, TraceRing
from gui.threadcheck import ThreadChecker
from rig.core.errors import ConfigError
from rig.core.events import Event
from rig.core.signals import RigSignals
from tasks.params import MixedParams, SelfInitiatedParams
from tests.gui_helpers import SyntheticFactory, sim_rig

pytestmark = pytest.mark.timeout(60)


# ---------------------------------------------------------------------------- rings and bridge
def test_lever_ring_keeps_newest_in_order_across_wraparound():
    ring = LeverRing(capacity=10)
    for start in range(0, 25, 7):
        t = np.arange(start, start + 7, dtype=np.int64)
        ring.append(t, t * 0.5)
    t, p = ring.snapshot()
    assert ring.n_total == 28
    np.testing.assert_array_equal(t, np.arange(18, 28))
    np.testing.assert_allclose(p, np.arange(18, 28) * 0.5)
    t_w, _ = ring.window(20, 23)
    np.testing.assert_array_equal(t_w, [20, 21, 22])
    with pytest.raises(ValueError, match="t_device_us has 2 samples, position_mm has 3"):
        ring.append(np.zeros(2), np.zeros(3))


def test_trace_ring_counts_gaps_and_restarts_on_new_roi_set():
    ring = TraceRing(capacity_frames=4)
    for f in (0, 1, 2, 5, 6):
        ring.append(f, np.full(3, f, np.float32))
    idx, dff = ring.snapshot()
    np.testing.assert_array_equal(idx, [1, 2, 5, 6])
    assert dff.shape == (4, 3) and dff[-1, 0] == 6
    assert ring.n_gaps == 2 and ring.n_frames_in == 5
    ring.append(7, np.zeros(5, np.float32))
    idx, dff = ring.snapshot()
    assert dff.shape == (1, 5) and list(idx) == [7]


def test_bridge_coalesces_a_threaded_stream_and_keeps_every_trace(qtbot):
    signals = RigSignals()
    bridge = QtBridge(redraw_hz=50)
    bridge.attach(signals)
    updates: list[int] = []
    bridge.lever_updated.connect(lambda: updates.append(bridge.lever.n_total))
    trials: list[dict] = []
    bridge.trial.connect(trials.append)
    n_batches, n_frames = 400, 120

    def emit() -> None:
        for i in range(n_batches):
            t = np.arange(i * 10, i * 10 + 10, dtype=np.int64) * 1000
            signals.lever.emit(t, np.sin(t / 1e5))
            if i % 3 == 0 and i // 3 < n_frames:
                signals.traces.emit(i // 3, np.full(8, i, np.float32))
                signals.frame.emit(i // 3, np.zeros((4, 4), np.float32))
        signals.trial.emit({"trial": 0, "outcome": "reward"})

    th = threading.Thread(target=emit)
    th.start()
    th.join()
    qtbot.waitUntil(lambda: len(trials) == 1, timeout=5000)
    qtbot.waitUntil(lambda: updates and updates[-1] == n_batches * 10, timeout=5000)
    # Redraws are coalesced: far fewer updates than batches, and every sample is in the ring.
    assert len(updates) < n_batches / 4
    t, _ = bridge.lever.snapshot()
    np.testing.assert_array_equal(np.diff(t), 1000)
    assert bridge.traces.n_frames_in == n_frames and bridge.traces.n_gaps == 0
    bridge.stop()


def test_thread_checker_records_a_qt_touch_off_the_main_thread(qtbot):
    label = QLabel("x")
    with ThreadChecker() as checker:
        th = threading.Thread(target=lambda: label.setText("from a worker"), name="bad-worker")
        th.start()
        th.join()
    assert checker.violations, "a QLabel.setText off the main thread went unnoticed"
    assert checker.violations[0].thread == "bad-worker"
    assert "setText" in checker.violations[0].target
    checker.check_main_thread("fine here")
    assert len(checker.violations) == 1


# ---------------------------------------------------------------------------- params form
def test_units_come_from_field_names():
    assert unit_of("hold_ms") == "ms" and unit_of("reward_ul") == "µl"
    assert unit_of("iti_min_s") == "s" and unit_of("tone_freq_hz") == "Hz"
    assert label_of("max_duration_min") == "max duration (min)"
    assert label_of("schedule") == "schedule"


def test_form_refuses_invalid_values_inline(qtbot):
    form = ParamsForm(MixedParams)
    qtbot.addWidget(form)
    assert form.valid and isinstance(form.params(), MixedParams)
    hold = form.editor("self_initiated.hold_ms")
    hold.setText("-5")
    assert not form.valid and form.params() is None
    err = form.editors[("self_initiated", "hold_ms")].error
    assert not err.isHidden() and "greater than or equal to 0" in err.text()
    hold.setText("400")
    assert form.valid and form.params().self_initiated.hold_ms == 400.0
    assert err.isHidden()
    # A model-level rule (thresholds) shows on the group, not on a single field.
    form.editor("cue_triggered.rest_band_mm").setText("0.99")
    assert not form.valid
    group = form.group_errors[("cue_triggered",)]
    assert not group.isHidden() and "pull_threshold_mm" in group.text()
    form.editor("cue_triggered.rest_band_mm").setText("0.2")
    form.editor("self_initiated.shaping.ramp_ms").setText("0, 2x")
    assert "self_initiated.shaping.ramp_ms" in form.errors


def test_form_set_values_round_trips_and_rejects_unknown_fields(qtbot):
    form = ParamsForm(SelfInitiatedParams, {"hold_ms": 250.0, "shaping": {"mode": "adaptive"}})
    qtbot.addWidget(form)
    p = form.params()
    assert p is not None and p.hold_ms == 250.0 and p.shaping.mode == "adaptive"
    with pytest.raises(KeyError, match="no field 'hold_s'"):
        form.set_values({"hold_s": 1})


# ---------------------------------------------------------------------------- the window
@pytest.fixture
def window(qtbot, tmp_path):
    factory = SyntheticFactory()
    win = MainWindow(sim_rig(tmp_path), runner_factory=factory, redraw_hz=40)
    win.factory = factory  # type: ignore[attr-defined]
    win.confirm_close = lambda: True  # type: ignore[method-assign]  # no modal dialog in tests
    qtbot.addWidget(win)
    win.show()
    yield win
    if win.runner is not None:
        win.stop_session("test teardown")
    win.bridge.stop()


def test_session_start_trials_arrive_stop_without_off_thread_qt(qtbot, window):
    checker = ThreadChecker()
    window.bridge.checker = checker
    sp = window.session_panel
    with checker:
        sp.task.setCurrentText("mixed")
        sp.subject.setText("m01")
        assert sp.start_button.isEnabled()
        sp.start_button.click()
        assert window.runner is not None and window.runner.running
        assert not sp.start_button.isEnabled() and sp.stop_button.isEnabled()
        qtbot.waitUntil(lambda: len(window.trial_panel.records) >= 4, timeout=10_000)
        qtbot.waitUntil(lambda: window.lever_panel.n_redraws >= 5, timeout=5000)
        qtbot.waitUntil(lambda: window.imaging_panel.n_redraws >= 3, timeout=5000)
        qtbot.waitUntil(lambda: window.dff_panel.n_redraws >= 3, timeout=5000)
        sp.stop_button.click()
    assert window.runner is None and not sp.running and sp.start_button.isEnabled()
    req = window.factory.requests[0]
    assert req.subject_id == "m01" and req.task == "mixed"
    assert isinstance(req.params, MixedParams)
    assert int(sp.trials.text()) == len(window.trial_panel.records)
    assert sp.success.text().endswith("%")
    assert window.session_panel.health.columnCount() == 1
    assert window.lever_panel.visible_samples().size > 100
    assert checker.violations == [], checker.violations


def test_invalid_parameter_blocks_start(qtbot, window):
    sp = window.session_panel
    sp.task.setCurrentText("self_initiated")
    sp.form.editor("reward_ul").setText("lots")
    assert not sp.start_button.isEnabled()
    sp.start_button.click()
    assert window.factory.requests == []
    sp.form.editor("reward_ul").setText("3")
    assert sp.start_button.isEnabled()


def test_manual_reward_goes_through_the_runner_and_is_counted(qtbot, window):
    mp = window.manual_panel
    assert not mp.reward_button.isEnabled()
    window.session_panel.start_button.click()
    mp.reward_ul.setValue(2.5)
    mp.reward_button.click()
    mp.tone_button.click()
    mp.zero_button.click()
    runner = window.factory.runners[0]
    assert [e.name for e in runner.manual] == ["manual_reward", "manual_tone", "manual_zero_lever"]
    assert runner.manual[0].data["volume_ul"] == 2.5
    qtbot.waitUntil(lambda: window.session_panel.reward_ul >= 2.5, timeout=5000)
    assert any("manual reward sent" in m for _, m in window.log_panel.lines)


def test_close_mid_session_asks_and_stops_cleanly(qtbot, window):
    window.session_panel.start_button.click()
    runner = window.factory.runners[0]
    window.confirm_close = lambda: False  # type: ignore[method-assign]
    assert not window.close()
    assert runner.running
    window.confirm_close = lambda: True  # type: ignore[method-assign]
    assert window.close()
    assert not runner.running and not runner.valve_open
    assert window.runner is None


def test_imaging_click_selects_rois_and_feeds_dff(qtbot, window):
    window.dff_panel.pre_s, window.dff_panel.post_s = 0.2, 0.3  # short windows: a quick test
    window.session_panel.start_button.click()
    runner = window.factory.runners[0]
    ip = window.imaging_panel
    assert ip.labels is not None and ip.labels.max() == runner.n_rois
    default = list(range(5))  # a few ROIs start selected so the stacked view is not empty
    assert ip.selected == default and window.dff_panel.selected == default
    cy, cx = runner.roi_centres_px[12]
    expected = ip.roi_at(int(cy), int(cx))
    assert expected is not None and expected not in default
    # A real mouse click on the ROI's pixel, through the view's coordinate transforms.
    qtbot.waitUntil(lambda: ip.image.image is not None, timeout=5000)
    ip.vb.autoRange(padding=0)
    scene_pt = ip.image.mapToScene(QPointF(int(cx) + 0.5, int(cy) + 0.5))
    view_pt = ip.view.mapFromScene(scene_pt)
    qtbot.mouseClick(ip.view.viewport(), Qt.MouseButton.LeftButton, pos=view_pt)
    assert ip.selected == sorted([*default, expected])
    assert window.dff_panel.selected == ip.selected
    qtbot.mouseClick(ip.view.viewport(), Qt.MouseButton.LeftButton, pos=view_pt)
    assert ip.selected == default  # a second click deselects
    qtbot.waitUntil(
        lambda: (
            bool(window.dff_panel.stacked_curves) and window.dff_panel.stacked_curves[0].isVisible()
        ),
        timeout=5000,
    )
    qtbot.waitUntil(lambda: not ip.shift_view.isHidden(), timeout=5000)  # shifts reported
    assert ip.shift_y.getData()[1] is not None
    ip.mode.setCurrentText("reference")
    np.testing.assert_array_equal(ip.displayed(), runner.reference_image)
    ip.mode.setCurrentText("mean")
    assert ip.displayed().shape == runner.reference_image.shape
    ip.auto_levels()
    lo, hi = ip.levels()
    assert hi > lo
    qtbot.waitUntil(lambda: window.dff_panel.aligned["crossing"][1] >= 1, timeout=10_000)


def test_rotarod_panel_shows_lanes_falls_and_countdown(qtbot, window):
    rp = window.rotarod_panel
    signals = RigSignals()
    window.bridge.attach(signals)
    signals.event.emit(Event("rotarod_start", "rotarod", 0, data={"lanes": 5}))
    signals.event.emit(Event("rotarod_rpm", "rotarod", 2_000_000, data={"rpm": 12.5}))
    signals.event.emit(
        Event("rotarod_fall", "rotarod", 3_000_000, data={"lane": 1, "latency_s": 3.0, "rpm": 13})
    )
    qtbot.waitUntil(lambda: rp.fall_table.rowCount() == 1, timeout=5000)
    assert rp.lanes.item(1, 0).text() == "off"
    assert rp.lanes.item(0, 0).text() == "on rod" and rp.lanes.item(0, 1).text() == "12.5"
    assert rp.fall_table.item(0, 1).text() == "2" and rp.fall_table.item(0, 2).text() == "3.0"
    signals.event.emit(Event("rotarod_stop", "rotarod", 4_000_000, data={"next_trial_in_s": 90}))
    qtbot.waitUntil(lambda: rp.countdown.text() in ("1:30", "1:29"), timeout=5000)


def test_build_window_preselects_and_autostarts(qtbot, tmp_path, sim_config_path):
    factory = SyntheticFactory()
    win = build_window(
        sim_config_path,
        task="self_initiated",
        subject_id="demo1",
        params={"hold_ms": 250},
        autostart=True,
        runner_factory=factory,
    )
    qtbot.addWidget(win)
    win.confirm_close = lambda: True  # type: ignore[method-assign]
    qtbot.waitUntil(lambda: win.runner is not None, timeout=5000)
    req = factory.requests[0]
    assert (req.task, req.subject_id, req.params.hold_ms) == ("self_initiated", "demo1", 250.0)
    win.close()
    assert not factory.runners[0].running
    with pytest.raises(ConfigError, match="hold_ms"):
        build_window(sim_config_path, task="self_initiated", params={"hold_ms": -1})
    with pytest.raises(ConfigError, match="not available"):
        build_window(sim_config_path, task="juggling")


def test_finished_trial_is_shaded_from_its_record():
    from gui.panels.lever import state_class, trial_spans

    rec = {
        "outcome": "early_release",
        "t_start_us": 0,
        "t_ready_us": 1_000_000,
        "t_cue_us": 1_000_000,
        "t_cross_us": 1_300_000,
        "t_release_us": 1_400_000,
        "t_reward_us": None,
        "t_end_us": 2_000_000,
    }
    assert trial_spans(rec) == [
        (0, "iti"),
        (1_000_000, "cue"),
        (1_300_000, "hold"),
        (1_400_000, "fail"),
        (2_000_000, "iti"),
    ]
    rewarded = dict(rec, outcome="reward", t_cue_us=None, t_reward_us=1_500_000)
    assert [c for _, c in trial_spans(rewarded)] == ["iti", "ready", "hold", "reward", "iti"]
    assert trial_spans({"outcome": "reward"}) == []
    assert state_class("timeout_too_early") == "fail" and state_class("hold") == "hold"
    assert state_class("iti_quiet") == "quiet" and state_class("weird") is None


def test_lever_panel_replaces_live_guesses_with_the_record(qtbot):
    from gui.panels.lever import LeverPanel

    bridge = QtBridge()
    panel = LeverPanel(bridge)
    qtbot.addWidget(panel)
    panel.on_events(
        [
            Event("trial_start", "lever_board", 0),
            Event("lever_up", "lever_board", 500_000),  # an ITI movement: no hold yet
            Event("tone_on", "lever_board", 1_000_000),
            Event("lever_up", "lever_board", 1_300_000),
            Event("manual_tone", "gui", 1_350_000),
            Event("lever_down", "lever_board", 1_400_000),
        ]
    )
    assert [c for _, c in panel.transitions] == ["iti", "cue", "hold", "fail"]
    panel.on_trial(
        {
            "outcome": "early_release",
            "t_start_us": 0,
            "t_ready_us": 900_000,
            "t_cue_us": 900_000,
            "t_cross_us": 1_300_000,
            "t_release_us": 1_400_000,
            "t_end_us": 2_000_000,
        }
    )
    assert panel.transitions == [
        (0, "iti"),
        (900_000, "cue"),
        (1_300_000, "hold"),
        (1_400_000, "fail"),
        (2_000_000, "iti"),
    ]
    bridge.lever.append(np.arange(0, 2_500_000, 1000), np.zeros(2500))
    panel.redraw()
    shown = [r for r in panel._regions if r.isVisible()]
    assert len(shown) == 5


def test_app_cli_refuses_without_display_and_on_bad_config(monkeypatch, tmp_path, capsys):
    from gui.cli import cli

    for var in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(var, raising=False)
    if sys.platform.startswith("linux"):
        assert cli([]) == 3
        assert "rig demo --headless" in capsys.readouterr().err
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndata_dir: /tmp\nlever_board: {driver: warp}\n")
    assert cli([str(bad)]) == 2
    assert "lever_board" in capsys.readouterr().err


def test_python_log_records_from_any_thread_reach_the_log_panel(qtbot, window):
    import logging

    th = threading.Thread(
        target=lambda: logging.getLogger("rig.runner.lever").error("lever runner failed: boom")
    )
    th.start()
    th.join()
    logging.getLogger("somebody.else").error("not ours")
    qtbot.waitUntil(lambda: any("boom" in m for _, m in window.log_panel.lines), timeout=5000)
    level, message = next((lv, m) for lv, m in window.log_panel.lines if "boom" in m)
    assert level == logging.ERROR and message.startswith("rig.runner.lever:")
    assert not any("not ours" in m for _, m in window.log_panel.lines)
    window.bridge.stop()
    assert window.bridge._log_handler is None

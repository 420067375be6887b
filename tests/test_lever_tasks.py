"""Lever tasks: shaping rules, subject state persistence, trial machines, blocks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rig.core.config import SubjectState
from rig.core.errors import ConfigError
from tasks.params import ShapingParams
from tasks.shaping import HoldShaper, load_subject, save_subject, subject_path


def test_adaptive_rule_steps_caps_and_needs_a_full_window() -> None:
    sh = HoldShaper(ShapingParams(mode="adaptive", cap_ms=300), hold_ms=200)
    changes = [sh.update(True) for _ in range(20)]
    # > 70 % over the last 20: the 20th trial (20/20) triggers +50 ms, not earlier
    assert changes[:19] == [None] * 19 and changes[19] == 250
    # window restarted: 14/20 = 70 % is not > 70 %
    changes = [sh.update(i % 10 < 7) for i in range(20)]
    assert changes == [None] * 20 and sh.hold_ms == 250
    # the window slides: the 8th success pushes out the first failure: 15/20 = 75 % > 70 %
    changes = [sh.update(True) for _ in range(20)]
    assert changes.index(300) == 7 and changes.count(None) == 19
    assert all(sh.update(True) is None for _ in range(40))  # cap
    assert sh.hold_ms == 300


def test_ramp_walks_steps_and_snaps_saved_value() -> None:
    p = ShapingParams(mode="ramp", ramp_ms=[0, 200, 400, 600], window_trials=5)
    sh = HoldShaper(p, hold_ms=600)
    assert sh.hold_ms == 0
    got = [sh.update(True) for _ in range(20)]
    assert [g for g in got if g is not None] == [200, 400, 600]
    assert HoldShaper(p, 600, saved_hold_ms=450).hold_ms == 400
    assert HoldShaper(ShapingParams(mode="fixed"), 350, saved_hold_ms=600).hold_ms == 350
    assert HoldShaper(ShapingParams(mode="adaptive", cap_ms=500), 200, 650).hold_ms == 500


def test_subject_state_round_trip_atomic(tmp_path: Path) -> None:
    s = load_subject(tmp_path, "m7")
    assert s == SubjectState(subject_id="m7")
    s.shaping["self_initiated"] = {"hold_ms": 450.0}
    path = save_subject(tmp_path, s, session="2026-01-01_000000_self_initiated")
    assert path == subject_path(tmp_path, "m7") and not path.with_name("subject.json.tmp").exists()
    back = load_subject(tmp_path, "m7")
    assert back.shaping == {"self_initiated": {"hold_ms": 450.0}} and back.sessions == 1
    data = json.loads(path.read_text())
    data["shaping"] = {"self_initiated": {"hold_ms": "long"}}
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"subject.json: shaping.self_initiated.hold_ms"):
        load_subject(tmp_path, "m7")

"""A killed session's shaping is recovered from its folder when the subject is next loaded."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from rig.core.config import SubjectState
from rig.core.events import Event
from rig.core.store import SessionMeta, SessionWriter
from tasks.shaping import load_subject, save_subject


def _session(data_dir: Path, at_start: dict, close: bool, hour: int = 10) -> SessionWriter:
    meta = SessionMeta(
        subject_id="m1",
        task="self_initiated",
        rig_name="sim",
        rig_config={},
        started_at=datetime(2026, 11, 27, hour, tzinfo=UTC),
        extra={"subject_at_start": at_start},
    )
    w = SessionWriter.create(data_dir, meta)
    for trial, new in ((0, 250.0), (1, 300.0), (2, 350.0)):
        if trial < 2:  # trial 2 never finished: its row is missing, its change must not count
            w.write_trial({"trial": trial, "outcome": "reward"})
        change = {"context": "self_initiated", "param": "hold_ms", "old": new - 50, "new": new}
        w.write_event(Event("param_change", "task", trial=trial, data=change))
    if close:
        w.close()
    return w


def test_interrupted_session_resumes_from_last_complete_trial(tmp_path: Path) -> None:
    before = SubjectState(subject_id="m1", shaping={"self_initiated": {"hold_ms": 200.0}})
    save_subject(tmp_path, before, session="2026-11-26_100000_self_initiated")
    w = _session(tmp_path, before.model_dump(mode="json"), close=False)  # killed: never closed
    got = load_subject(tmp_path, "m1")
    assert got.shaping["self_initiated"]["hold_ms"] == 300.0  # trial 1's change, not trial 2's
    assert got.last_session == w.folder.name and got.sessions == before.sessions + 1


def test_closed_or_known_sessions_are_left_alone(tmp_path: Path) -> None:
    before = SubjectState(subject_id="m1", shaping={"self_initiated": {"hold_ms": 200.0}})
    save_subject(tmp_path, before)
    _session(tmp_path, before.model_dump(mode="json"), close=True)
    # a closed session's runner saved subject.json itself; nothing to recover
    assert load_subject(tmp_path, "m1").shaping["self_initiated"]["hold_ms"] == 200.0


def test_first_ever_session_killed(tmp_path: Path) -> None:
    _session(tmp_path, SubjectState(subject_id="m1").model_dump(mode="json"), close=False)
    assert load_subject(tmp_path, "m1").shaping == {"self_initiated": {"hold_ms": 300.0}}

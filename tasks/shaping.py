"""Shaping: the hold-time ramp and the adaptive rule, and the per-subject state that carries them
from one session to the next (``<data_dir>/<subject>/subject.json``, a ``SubjectState``).
"""

from __future__ import annotations

import logging
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

from rig.core.config import SubjectState, load_model
from rig.core.store.writer import atomic_write_text
from tasks.params import ShapingParams

log = logging.getLogger(__name__)

SUBJECT_FILE = "subject.json"


class HoldShaper:
    """The current ``hold_ms`` of one context and the rule that changes it.

    Parameters
    ----------
    params : ShapingParams
    hold_ms : float
        The context's ``hold_ms`` parameter (used as is in ``fixed`` mode, as the start value in
        ``adaptive`` mode without a saved state).
    saved_hold_ms : float, optional
        The subject's value from its last session; ``ramp`` snaps it down onto the ramp,
        ``adaptive`` caps it; ``fixed`` ignores it.
    """

    def __init__(
        self, params: ShapingParams, hold_ms: float, saved_hold_ms: float | None = None
    ) -> None:
        self.params = params
        self._window: deque[bool] = deque(maxlen=params.window_trials)
        if params.mode == "fixed":
            self.hold_ms = hold_ms
        elif params.mode == "ramp":
            start = params.ramp_ms[0] if saved_hold_ms is None else saved_hold_ms
            steps = [v for v in params.ramp_ms if v <= start]
            self.hold_ms = steps[-1] if steps else params.ramp_ms[0]
        else:
            start = hold_ms if saved_hold_ms is None else saved_hold_ms
            self.hold_ms = min(start, params.cap_ms)

    def update(self, success: bool) -> float | None:
        """Record one finished trial; returns the new ``hold_ms`` when the rule changes it."""
        p = self.params
        if p.mode == "fixed":
            return None
        self._window.append(success)
        if len(self._window) < p.window_trials:
            return None
        if sum(self._window) / len(self._window) <= p.success_threshold:
            return None
        if p.mode == "ramp":
            higher = [v for v in p.ramp_ms if v > self.hold_ms]
            new = higher[0] if higher else self.hold_ms
        else:
            new = min(self.hold_ms + p.step_ms, p.cap_ms)
        if new == self.hold_ms:
            return None
        self.hold_ms = new
        self._window.clear()  # the next step needs a full window at the new value
        return new


def subject_path(data_dir: Path, subject_id: str) -> Path:
    return Path(data_dir).expanduser() / subject_id / SUBJECT_FILE


def load_subject(data_dir: Path, subject_id: str) -> SubjectState:
    """The subject's state, or a fresh one if it has none yet.

    Raises
    ------
    ConfigError
        The file exists but is not a valid ``SubjectState`` (names the file and field).
    """
    path = subject_path(data_dir, subject_id)
    if not path.exists():
        return recover_interrupted(data_dir, SubjectState(subject_id=subject_id))
    state = load_model(SubjectState, path)
    if state.subject_id != subject_id:
        from rig.core.errors import ConfigError

        raise ConfigError.single(
            path, "subject_id", f"is {state.subject_id!r}, expected {subject_id!r}"
        )
    return recover_interrupted(data_dir, state)


def recover_interrupted(data_dir: Path, state: SubjectState) -> SubjectState:
    """Fold in the shaping of a newer session that never closed (crash, ``kill -9``).

    The runner saves ``subject.json`` when a session ends; a killed session never gets there.
    Its folder is still the record: shaping restarts from the session's ``subject_at_start``
    plus every ``param_change`` of a trial that completed (is in ``trials.tsv``), so the next
    session resumes from the last complete trial. Returns ``state`` unchanged when the newest
    session is the one ``subject.json`` already knows, or closed normally, or unreadable.
    """
    from rig.core.errors import SessionFormatError
    from rig.core.store import SessionReader

    folders = sorted(p.parent for p in (Path(data_dir) / state.subject_id).glob("*/session.json"))
    if not folders or folders[-1].name == state.last_session:
        return state
    try:
        reader = SessionReader(folders[-1])
        if reader.status != "interrupted":
            return state
        trials = reader.trials()
        last_trial = int(trials[-1]["trial"]) if trials else -1
        at_start = (reader.meta.extra.get("subject_at_start") or {}).get("shaping")
        shaping = {k: dict(v) for k, v in (at_start or state.shaping).items()}
        for ev in reader.events():
            if ev.name == "param_change" and ev.trial is not None and ev.trial <= last_trial:
                ctx, param = ev.data.get("context"), ev.data.get("param")
                if isinstance(ctx, str) and isinstance(param, str):
                    shaping.setdefault(ctx, {})[param] = float(ev.data["new"])
    except (SessionFormatError, KeyError, ValueError) as e:
        log.warning("%s: cannot recover shaping from it (%s)", folders[-1], e)
        return state
    log.warning(
        "%s was interrupted: shaping resumes from its last complete trial (%d)",
        folders[-1].name,
        last_trial,
    )
    recovered = state.model_copy(deep=True)
    recovered.shaping = shaping
    recovered.sessions += 1
    recovered.last_session = folders[-1].name
    return recovered


def save_subject(data_dir: Path, state: SubjectState, session: str | None = None) -> Path:
    """Write the subject's state atomically (a reader sees the old or the new file, never half)."""
    path = subject_path(data_dir, state.subject_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    if session is not None:
        state.sessions += 1
        state.last_session = session
    atomic_write_text(path, state.model_dump_json(indent=2) + "\n")
    return path


def stamp() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")

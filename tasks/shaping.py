"""Shaping: the hold-time ramp and the adaptive rule, and the per-subject state that carries them
from one session to the next (``<data_dir>/<subject>/subject.json``, a ``SubjectState``).
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime
from pathlib import Path

from rig.core.config import SubjectState, load_model
from rig.core.store.writer import atomic_write_text
from tasks.params import ShapingParams

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
        return SubjectState(subject_id=subject_id)
    state = load_model(SubjectState, path)
    if state.subject_id != subject_id:
        from rig.core.errors import ConfigError

        raise ConfigError.single(
            path, "subject_id", f"is {state.subject_id!r}, expected {subject_id!r}"
        )
    return state


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

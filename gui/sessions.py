"""What the window needs to set a session up: the tasks a rig offers, the subject's saved state,
the real runner for a request, and the state a runner exposes for display.

Kept apart from the window so the choices about *which* runner and *what* it shows are in one
small place (``gui.app`` only lays out and wires the panels).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from gui.runner_api import SessionRequest, SessionRunner
from rig.core.config import RigConfig, SubjectState, load_model


def available_tasks(rig: RigConfig) -> dict[str, type[BaseModel]]:
    """Task name -> params model for the devices this rig has."""
    tasks: dict[str, type[BaseModel]] = {}
    if rig.lever_board is not None:
        from tasks.params import PARAMS_BY_TASK

        # Mixed first: it is the default protocol of the study (both contexts in one session).
        for name in ("mixed", "self_initiated", "cue_triggered"):
            tasks[name] = PARAMS_BY_TASK[name]
    if rig.rotarod is not None:
        from tasks.rotarod.params import RotarodParams

        tasks["rotarod"] = RotarodParams
    return tasks


def subject_loader(rig: RigConfig) -> Any:
    """``subject_id -> SubjectState | None``: the state the runner saved after the last session."""

    def load(subject_id: str) -> SubjectState | None:
        from tasks.shaping import subject_path

        path = subject_path(rig.data_dir, subject_id)
        return load_model(SubjectState, path) if path.is_file() else None

    return load


def default_runner_factory(request: SessionRequest) -> SessionRunner:
    """The real runner for the request's task on the request's rig (boards in real time).

    ``request.extra`` may carry ``speed`` (simulated boards: x real time) for tests and demos.
    """
    if request.task == "rotarod":
        from gui.rotarod_session import RotarodSession

        return RotarodSession(request)
    from rig.runner.lever import LeverRunner

    return LeverRunner(
        request.rig,
        request.subject_id,
        request.task,
        request.params,
        speed=request.extra.get("speed", 1.0),
    )


def lever_thresholds(params: BaseModel) -> dict[str, Any] | None:
    """Pull threshold, rest band and overshoot limit (mm) of a lever task's params, if any."""
    ctx: Any = params
    if not hasattr(ctx, "pull_threshold_mm"):
        first = getattr(params, "first_block", None)
        ctx = getattr(params, str(first), None) if first else None
    if ctx is None or not hasattr(ctx, "pull_threshold_mm"):
        return None
    return {
        "pull_threshold_mm": ctx.pull_threshold_mm,
        "rest_band_mm": ctx.rest_band_mm,
        "max_mm": ctx.max_mm,
    }


def runner_state(runner: Any, name: str) -> Any:
    """``runner.<name>`` or ``runner.imaging.<name>`` (attribute or method), else ``None``."""
    for owner in (runner, getattr(runner, "imaging", None)):
        value = getattr(owner, name, None) if owner is not None else None
        value = value() if callable(value) else value
        if value is not None:
            return value
    return None

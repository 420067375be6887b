"""Parameters of the lever tasks (TASKS.md tasks A, B and C), with shaping and a stable hash.

Every number a session runs with is a field here, with its unit in the name and the TASKS.md
default, and the whole model is saved in ``session.json`` together with :func:`params_hash`.

Task names (``--task`` on the command line, ``session.json``'s ``task``):

``self_initiated``  Task A: pull and hold after a quiet ITI, no cue.
``cue_triggered``   Task B: a tone opens a response window; ``min_rt_s > 0`` makes it the
                    self-timing variant (rewarded only when the pull falls in
                    ``[min_rt_s, response_window_s]`` after cue onset).
``mixed``           Task C: both contexts in one session, in blocks or randomly interleaved.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from rig.core.config import StrictModel

Context = Literal["self_initiated", "cue_triggered"]
TaskName = Literal["self_initiated", "cue_triggered", "mixed"]
CONTEXTS: tuple[Context, ...] = ("self_initiated", "cue_triggered")


class ShapingParams(StrictModel):
    """How ``hold_ms`` changes with performance.

    ``mode``:

    - ``fixed``: ``hold_ms`` never changes.
    - ``ramp``: ``hold_ms`` walks through ``ramp_ms`` (e.g. 0 -> 200 -> 400 -> 600), one step
      each time the success rate over the last ``window_trials`` exceeds ``success_threshold``.
    - ``adaptive``: ``hold_ms`` grows by ``step_ms`` under the same criterion, never above
      ``cap_ms``.

    After each change the window restarts, so the next change needs ``window_trials`` fresh
    trials at the new value (otherwise one good run would jump straight to the cap).
    The current value persists per subject (``SubjectState.shaping``) to the next session.
    """

    mode: Literal["fixed", "ramp", "adaptive"] = "fixed"
    ramp_ms: list[float] = Field(default_factory=lambda: [0.0, 200.0, 400.0, 600.0])
    step_ms: float = Field(50.0, gt=0, le=5_000)
    cap_ms: float = Field(600.0, ge=0, le=60_000)
    success_threshold: float = Field(0.7, ge=0, le=1, description="fraction, strictly exceeded")
    window_trials: int = Field(20, ge=1, le=1_000)

    @model_validator(mode="after")
    def _check(self) -> ShapingParams:
        if self.mode == "ramp":
            if not self.ramp_ms:
                raise ValueError("shaping.ramp_ms must list at least one hold_ms step")
            if any(b <= a for a, b in zip(self.ramp_ms, self.ramp_ms[1:], strict=False)):
                raise ValueError(f"shaping.ramp_ms must increase strictly, got {self.ramp_ms}")
            if any(v < 0 for v in self.ramp_ms):
                raise ValueError("shaping.ramp_ms values must be >= 0 ms")
        return self


class LeverCommon(StrictModel):
    """Lever thresholds, reward and failure handling shared by both contexts."""

    rest_band_mm: float = Field(0.2, gt=0, le=50, description="|pos| below this = at rest")
    pull_threshold_mm: float = Field(1.0, gt=0, le=100, description="lever_up at pos >= this")
    hysteresis_mm: float = Field(0.05, ge=0, le=10)
    max_mm: float | None = Field(None, gt=0, le=100, description="overshoot limit during hold")
    reward_ul: float = Field(4.0, ge=0, le=100)
    consume_s: float = Field(1.5, ge=0, le=60)
    timeout_s: float = Field(0.0, ge=0, le=600, description="extra wait after a failure")
    restart_iti_on_move: bool = True
    trial_code_out: bool = Field(
        False,
        description="send the trial number on the trial-code pin at trial start (125 ms "
        "pattern for an independent DAQ; adds one 1 ms state before the ITI)",
    )

    @model_validator(mode="after")
    def _thresholds(self) -> LeverCommon:
        if self.rest_band_mm + self.hysteresis_mm >= self.pull_threshold_mm:
            raise ValueError(
                f"rest_band_mm + hysteresis_mm ({self.rest_band_mm} + {self.hysteresis_mm}) "
                f"must be below pull_threshold_mm ({self.pull_threshold_mm})"
            )
        if self.max_mm is not None and self.max_mm <= self.pull_threshold_mm:
            raise ValueError(
                f"max_mm ({self.max_mm}) must be above pull_threshold_mm ({self.pull_threshold_mm})"
            )
        return self


class SelfInitiatedContext(LeverCommon):
    """Task A's trial: ITI -> QUIET -> READY (no cue) -> HOLD -> REWARD/FAIL."""

    iti_s: float = Field(3.0, ge=0, le=600)
    quiet_s: float = Field(1.0, ge=0, le=600)
    hold_ms: float = Field(600.0, ge=0, le=60_000)
    ready_timeout_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="READY ends as 'no_pull' after this long, so trials stay bounded",
    )
    shaping: ShapingParams = Field(default_factory=ShapingParams)


class CueTriggeredContext(LeverCommon):
    """Task B's trial: ITI -> QUIET -> CUE (window) -> HOLD -> REWARD/FAIL, or MISS."""

    iti_min_s: float = Field(3.0, ge=0, le=600)
    iti_max_s: float = Field(6.0, ge=0, le=600)
    quiet_precue_s: float = Field(1.0, ge=0, le=600)
    tone_freq_hz: float = Field(10_000.0, gt=0, le=40_000)
    tone_ms: float = Field(1000.0, gt=0, le=60_000)
    response_window_s: float = Field(1.0, gt=0, le=60)
    min_rt_s: float = Field(
        0.0,
        ge=0,
        le=60,
        description="self-timing variant: a crossing earlier than this after cue onset fails",
    )
    hold_ms: float = Field(200.0, ge=0, le=60_000)
    shaping: ShapingParams = Field(default_factory=ShapingParams)

    @model_validator(mode="after")
    def _windows(self) -> CueTriggeredContext:
        if self.iti_min_s > self.iti_max_s:
            raise ValueError(
                f"iti_min_s ({self.iti_min_s}) must be <= iti_max_s ({self.iti_max_s})"
            )
        if self.min_rt_s >= self.response_window_s:
            raise ValueError(
                f"min_rt_s ({self.min_rt_s}) must be below response_window_s "
                f"({self.response_window_s})"
            )
        return self


class StopParams(StrictModel):
    max_rewards: int = Field(300, ge=1, le=100_000)
    max_duration_min: float = Field(60.0, gt=0, le=24 * 60)


class SelfInitiatedParams(SelfInitiatedContext, StopParams):
    """Task A parameters."""

    seed: int = 0


class CueTriggeredParams(CueTriggeredContext, StopParams):
    """Task B parameters (and the self-timing variant with ``min_rt_s > 0``)."""

    seed: int = Field(0, description="seeds the ITI draws")


class MixedParams(StopParams):
    """Task C parameters: both contexts, in alternating blocks or randomly interleaved."""

    schedule: Literal["blocks", "random"] = "blocks"
    block_trials: int = Field(30, ge=1, le=10_000)
    first_block: Context = "self_initiated"
    block_order: list[Context] | None = Field(
        None,
        description="explicit block sequence, cycled; default alternates from first_block",
    )
    p_cued: float = Field(0.5, ge=0, le=1, description="P(cued trial) when schedule=random")
    next_file_marker_on_block: bool = False
    context_led: bool = False
    seed: int = 0
    self_initiated: SelfInitiatedContext = Field(default_factory=SelfInitiatedContext)
    cue_triggered: CueTriggeredContext = Field(default_factory=CueTriggeredContext)

    @model_validator(mode="after")
    def _order(self) -> MixedParams:
        if self.block_order is not None and not self.block_order:
            raise ValueError("block_order must name at least one block (or be null)")
        return self

    def block_sequence(self) -> list[Context]:
        """The block contexts in the order they cycle."""
        if self.block_order:
            return list(self.block_order)
        other: Context = (
            "cue_triggered" if self.first_block == "self_initiated" else "self_initiated"
        )
        return [self.first_block, other]


TaskParams = SelfInitiatedParams | CueTriggeredParams | MixedParams

PARAMS_BY_TASK: dict[str, type[StrictModel]] = {
    "self_initiated": SelfInitiatedParams,
    "cue_triggered": CueTriggeredParams,
    "mixed": MixedParams,
}
TASK_ALIASES = {"A": "self_initiated", "B": "cue_triggered", "C": "mixed"}


def canonical_json(params: BaseModel) -> str:
    """Key-sorted, whitespace-free JSON of a params model (the input of :func:`params_hash`)."""
    return json.dumps(params.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def params_hash(params: BaseModel) -> str:
    """``sha256:<hex>`` of :func:`canonical_json`; equal params give equal hashes everywhere."""
    return "sha256:" + hashlib.sha256(canonical_json(params).encode()).hexdigest()


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["hold_ms=300", "cue_triggered.tone_ms=500"]`` -> nested dict of YAML-parsed values.

    Raises
    ------
    ValueError
        If an item has no ``=`` or an empty key.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in pairs:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--param {item!r}: expected key=value (e.g. hold_ms=300)")
        value = yaml.safe_load(raw) if raw.strip() else None
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ValueError(f"--param {item!r}: {p!r} is set both as a value and a group")
            node = nxt
        node[parts[-1]] = value
    return out


def make_params(task: str, overrides: dict[str, Any] | None = None) -> StrictModel:
    """Validate ``overrides`` into the named task's params model (defaults elsewhere).

    Raises
    ------
    ConfigError
        Unknown task, unknown field or bad value; the message names the field and what was
        expected.
    """
    from pydantic import ValidationError

    from rig.core.config import problems_from_validation
    from rig.core.errors import ConfigError

    name = TASK_ALIASES.get(task, task)
    if name not in PARAMS_BY_TASK:
        raise ConfigError.single(
            "--task", "", f"unknown task {task!r}; expected one of {sorted(PARAMS_BY_TASK)}"
        )
    try:
        return PARAMS_BY_TASK[name].model_validate(overrides or {})
    except ValidationError as e:
        raise ConfigError(problems_from_validation(f"task {name} params", e)) from None

"""Rotarod protocol parameters and the nominal accelerating ramp.

The ramp is ``rpm(t) = min(start_rpm + (end_rpm - start_rpm) * t / ramp_s, end_rpm)``
(TASKS.md task D). Everything here is closed-form so the firmware, the simulated rod and the
metrics share one definition of "nominal".
"""

from __future__ import annotations

import hashlib
import json
import math

from pydantic import Field, model_validator

from rig.core.config import StrictModel


class RotarodParams(StrictModel):
    """Parameters of an accelerating-rotarod protocol (saved with every session).

    Attributes
    ----------
    start_rpm, end_rpm : float
        Rod speed at the start and at the end of the ramp (rpm).
    ramp_s : float
        Duration of the acceleration (s); the rod then holds ``end_rpm``.
    max_s : float
        Trial cutoff (s): a mouse still on the rod at ``max_s`` is censored there.
    trials_per_day : int
        Trials in one daily session.
    iti_min_s : float
        Minimum inter-trial interval (s), counted from the end of one trial to the next start.
    lanes : int
        Lanes in use (one mouse per lane), at most the rotarod's lane count.
    debounce_ms : float
        A lane sensor must stay tripped this long to count as a fall (trip-plate bounce).
    passive_rotation_is_fall : bool
        When true, the first full passive rotation (the mouse clings and goes round) ends the
        trial for that lane as if it had fallen.
    """

    start_rpm: float = Field(4.0, ge=0.0, le=300.0)
    end_rpm: float = Field(40.0, gt=0.0, le=300.0)
    ramp_s: float = Field(300.0, gt=0.0, le=3600.0)
    max_s: float = Field(300.0, gt=0.0, le=3600.0)
    trials_per_day: int = Field(4, ge=1, le=50)
    iti_min_s: float = Field(600.0, ge=0.0, le=24 * 3600.0)
    lanes: int = Field(5, ge=1, le=5)
    debounce_ms: float = Field(500.0, ge=500.0, le=10_000.0)
    passive_rotation_is_fall: bool = False

    @model_validator(mode="after")
    def _ramp_goes_up(self) -> RotarodParams:
        if self.end_rpm < self.start_rpm:
            raise ValueError(
                f"end_rpm ({self.end_rpm}) must be >= start_rpm ({self.start_rpm}): "
                "an accelerating rotarod only speeds up"
            )
        return self

    @property
    def accel_rpm_per_s(self) -> float:
        """Ramp slope (rpm/s)."""
        return (self.end_rpm - self.start_rpm) / self.ramp_s

    def params_hash(self) -> str:
        """Short, stable hash of the parameters (sha256 of the sorted JSON, 12 hex digits)."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def nominal_rpm(params: RotarodParams, t_s: float) -> float:
    """Nominal rod speed (rpm) ``t_s`` seconds after the ramp started (0 before it)."""
    if t_s < 0:
        return 0.0
    if t_s >= params.ramp_s:
        return params.end_rpm
    return params.start_rpm + params.accel_rpm_per_s * t_s


def nominal_revolutions(params: RotarodParams, t_s: float) -> float:
    """Revolutions of the rod (integral of the nominal ramp) from ramp start to ``t_s``."""
    if t_s <= 0:
        return 0.0
    t_ramp = min(t_s, params.ramp_s)
    revs = (params.start_rpm * t_ramp + 0.5 * params.accel_rpm_per_s * t_ramp**2) / 60.0
    if t_s > params.ramp_s:
        revs += params.end_rpm * (t_s - params.ramp_s) / 60.0
    return revs


def time_at_rpm(params: RotarodParams, rpm: float) -> float:
    """Earliest time (s) at which the nominal ramp reaches ``rpm``.

    Returns 0 for ``rpm <= start_rpm`` and ``math.inf`` for ``rpm > end_rpm`` (never reached).
    """
    if rpm <= params.start_rpm:
        return 0.0
    if rpm > params.end_rpm:
        return math.inf
    if params.end_rpm == params.start_rpm:
        return 0.0
    return (rpm - params.start_rpm) / params.accel_rpm_per_s

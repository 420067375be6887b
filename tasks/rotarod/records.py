"""Per-lane trial records: what one mouse did on one rotarod trial.

A record is built from what the rod reported for that lane (debounced falls, passive
rotations, the cutoff), so the same code serves the real rod, the firmware under simavr and
the simulated rod.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from tasks.rotarod.params import RotarodParams, nominal_revolutions, nominal_rpm


@dataclass(frozen=True, slots=True)
class LaneHit:
    """One thing the rod reported for a lane, or the rod state at the cutoff.

    Attributes
    ----------
    t_device_us : int
        Device time (µs) of the sensor edge (onset of the debounced trip).
    rpm_measured : float | None
        Rod speed measured from the step pulses around that time (rpm).
    revolutions_measured : float | None
        Rod revolutions since the ramp started, counted from step pulses.
    """

    t_device_us: int
    rpm_measured: float | None = None
    revolutions_measured: float | None = None


@dataclass(slots=True)
class LaneTrial:
    """One lane's result on one trial. Units in the names; ``None`` = not measured.

    ``latency_s`` is censored at ``max_s``: a mouse still on the rod at the cutoff gets
    ``latency_s == max_s`` and ``censored == True``.
    """

    subject_id: str
    day: int
    trial: int
    lane: int
    latency_s: float
    censored: bool
    ended_by: Literal["fall", "passive_rotation", "cutoff"]
    rpm_at_fall_nominal: float
    rpm_at_fall_measured: float | None
    revolutions: float
    revolutions_nominal: float
    passive_rotations: int
    t_fall_device_us: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        """The record as a flat ``trials.tsv`` row (nested ``extra`` stays a JSON cell)."""
        return asdict(self)


def build_lane_trial(
    params: RotarodParams,
    *,
    subject_id: str,
    day: int,
    trial: int,
    lane: int,
    ramp_start_us: int,
    falls: list[LaneHit],
    passive_rotations: list[LaneHit],
    cutoff: LaneHit | None = None,
) -> LaneTrial:
    """Decide how the trial ended for one lane and measure it.

    Parameters
    ----------
    params : RotarodParams
        ``max_s`` censors; ``passive_rotation_is_fall`` lets a passive rotation end the trial.
    ramp_start_us : int
        Device time (µs) the ramp started.
    falls, passive_rotations : list[LaneHit]
        Debounced sensor events for this lane, any order; events after the cutoff are ignored.
    cutoff : LaneHit, optional
        Rod state at ``max_s`` (used for a censored lane's measured rpm and revolutions).

    Returns
    -------
    LaneTrial
    """
    cutoff_us = ramp_start_us + round(params.max_s * 1e6)

    def in_trial(hits: list[LaneHit]) -> list[LaneHit]:
        return sorted(
            (h for h in hits if ramp_start_us <= h.t_device_us <= cutoff_us),
            key=lambda h: h.t_device_us,
        )

    falls_in = in_trial(falls)
    passive_in = in_trial(passive_rotations)
    candidates: list[tuple[LaneHit, Literal["fall", "passive_rotation"]]] = []
    if falls_in:
        candidates.append((falls_in[0], "fall"))
    if params.passive_rotation_is_fall and passive_in:
        candidates.append((passive_in[0], "passive_rotation"))

    ended_by: Literal["fall", "passive_rotation", "cutoff"]
    if candidates:
        # a tie goes to the fall: both sensors saw the same moment, the plate is the ground truth
        end, ended_by = min(candidates, key=lambda c: (c[0].t_device_us, c[1] != "fall"))
        latency_s = (end.t_device_us - ramp_start_us) / 1e6
        censored = False
        t_fall: int | None = end.t_device_us
        measured = end
    else:
        latency_s = params.max_s
        censored = True
        ended_by = "cutoff"
        t_fall = None
        measured = cutoff if cutoff is not None else LaneHit(cutoff_us)

    revs_nominal = nominal_revolutions(params, latency_s)
    n_passive = sum(1 for h in passive_in if h.t_device_us <= ramp_start_us + latency_s * 1e6)
    return LaneTrial(
        subject_id=subject_id,
        day=day,
        trial=trial,
        lane=lane,
        latency_s=latency_s,
        censored=censored,
        ended_by=ended_by,
        rpm_at_fall_nominal=nominal_rpm(params, latency_s),
        rpm_at_fall_measured=measured.rpm_measured,
        revolutions=(
            measured.revolutions_measured
            if measured.revolutions_measured is not None
            else revs_nominal
        ),
        revolutions_nominal=revs_nominal,
        passive_rotations=n_passive,
        t_fall_device_us=t_fall,
    )

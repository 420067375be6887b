"""Simulated mice on the accelerating rotarod (behavioral model for demos and tests).

Each mouse has a "fall rpm": the rod speed at which it loses the rod. It improves across
trials within a day (``within_gain_rpm_per_trial``) and changes overnight
(``overnight_gain_rpm``: negative = some forgetting, positive = offline consolidation):

``fall_rpm(day, k) = base_rpm + (day - 1) * (W * (n - 1) + O) + k * W + noise``

with ``k`` the 0-based trial, ``n`` trials per day, ``W`` the within-trial gain and ``O`` the
overnight gain, capped at ``ceiling_rpm``. So the expected within-day gain in rpm is
``W * (n - 1)`` and the expected between-day gain (first of day n - last of day n-1) is ``O``.
A mouse that cannot keep up may cling and go round once passively before dropping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.rotarod.params import RotarodParams, nominal_rpm, time_at_rpm


@dataclass(frozen=True, slots=True)
class MouseTrialPlan:
    """What a simulated mouse will do on one trial (times in s from ramp start).

    ``fall_s`` is ``None`` when the mouse stays on past the cutoff.
    """

    fall_s: float | None
    passive_rotation_s: tuple[float, ...] = ()
    fall_rpm: float = 0.0


@dataclass(frozen=True, slots=True)
class SimRotarodMouse:
    """One simulated mouse; every trial's plan is a pure function of (seed, day, trial)."""

    subject_id: str
    seed: int = 1
    base_rpm: float = 10.0
    within_gain_rpm_per_trial: float = 1.0
    overnight_gain_rpm: float = -0.5
    noise_sd_rpm: float = 1.5
    ceiling_rpm: float = 45.0
    p_cling: float = 0.15

    def fall_rpm(self, day: int, trial: int, trials_per_day: int) -> float:
        """Expected fall rpm (no noise) on ``day`` (1-based) and ``trial`` (0-based)."""
        w, o = self.within_gain_rpm_per_trial, self.overnight_gain_rpm
        rpm = self.base_rpm + (day - 1) * (w * (trials_per_day - 1) + o) + trial * w
        return min(rpm, self.ceiling_rpm)

    def plan_trial(self, params: RotarodParams, day: int, trial: int) -> MouseTrialPlan:
        """Draw this mouse's behaviour on one trial (deterministic given the seed)."""
        rng = np.random.default_rng([self.seed, day, trial])
        rpm = self.fall_rpm(day, trial, params.trials_per_day) + rng.normal(0.0, self.noise_sd_rpm)
        rpm = max(rpm, params.start_rpm + 0.5)
        fall_s = time_at_rpm(params, rpm)
        passive: tuple[float, ...] = ()
        if rng.random() < self.p_cling and fall_s < params.max_s:
            # clinging: one full turn with the rod (60 / rpm s) before dropping off
            turn_s = 60.0 / nominal_rpm(params, fall_s)
            passive = (fall_s + turn_s,)
            fall_s = fall_s + turn_s + float(rng.uniform(0.2, 1.0))
        if fall_s >= params.max_s:
            return MouseTrialPlan(None, tuple(p for p in passive if p < params.max_s), rpm)
        return MouseTrialPlan(fall_s, passive, rpm)


def make_cohort(n_mice: int, seed: int = 1, prefix: str = "sim") -> list[SimRotarodMouse]:
    """``n_mice`` mice with individual base skill and learning rates drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    mice = []
    for i in range(n_mice):
        mice.append(
            SimRotarodMouse(
                subject_id=f"{prefix}{i + 1:02d}",
                seed=int(rng.integers(0, 2**31)),
                base_rpm=float(rng.normal(10.0, 1.5)),
                within_gain_rpm_per_trial=float(rng.uniform(0.7, 1.3)),
                overnight_gain_rpm=float(rng.normal(-0.5, 0.3)),
            )
        )
    return mice

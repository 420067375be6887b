"""Accelerating rotarod: parameters, nominal ramp, per-lane records, metrics, simulated mice."""

from tasks.rotarod.metrics import (
    CohortDay,
    CohortMetrics,
    DayMetrics,
    cohort_metrics,
    day_metrics,
    format_day_table,
    learning_slope,
)
from tasks.rotarod.params import (
    RotarodParams,
    nominal_revolutions,
    nominal_rpm,
    time_at_rpm,
)
from tasks.rotarod.records import LaneHit, LaneTrial, build_lane_trial
from tasks.rotarod.sim_mouse import MouseTrialPlan, SimRotarodMouse, make_cohort

__all__ = [
    "CohortDay",
    "CohortMetrics",
    "DayMetrics",
    "LaneHit",
    "LaneTrial",
    "MouseTrialPlan",
    "RotarodParams",
    "SimRotarodMouse",
    "build_lane_trial",
    "cohort_metrics",
    "day_metrics",
    "format_day_table",
    "learning_slope",
    "make_cohort",
    "nominal_revolutions",
    "nominal_rpm",
    "time_at_rpm",
]

"""Behavioral metrics of lever sessions: movement parsing, trial and session metrics, tables."""

from tasks.metrics.movement import Movement, MovementParams, ParsedLever, parse_movements
from tasks.metrics.report import METRIC_ROWS, metrics_rows
from tasks.metrics.session import context_metrics, running_success, session_metrics, trial_metrics
from tasks.metrics.trajectory import (
    across_days_r,
    between_r,
    binned_traces,
    median_pairwise_r,
    template_r,
)

__all__ = [
    "METRIC_ROWS",
    "Movement",
    "MovementParams",
    "ParsedLever",
    "across_days_r",
    "between_r",
    "binned_traces",
    "context_metrics",
    "median_pairwise_r",
    "metrics_rows",
    "parse_movements",
    "running_success",
    "session_metrics",
    "template_r",
    "trial_metrics",
]

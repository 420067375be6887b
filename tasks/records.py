"""``TrialRecord``: one finished lever trial, one row of ``trials.tsv``.

The metrics read these columns back from ``trials.tsv`` (as strings), so the column names are
the contract between the tasks, the runner and :mod:`tasks.metrics`.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field

from rig.core.config import StrictModel

Outcome = Literal[
    "reward",  # held for hold_ms
    "early_release",  # lever_down before hold_ms
    "overshoot",  # pos > max_mm during the hold
    "too_early",  # self-timing variant: crossing before min_rt_s after cue onset
    "miss",  # cue-triggered: the window elapsed without a crossing
    "no_pull",  # self-initiated: READY timed out without a crossing
    "aborted",  # the session stopped during the trial
]
SUCCESS_OUTCOMES = frozenset({"reward"})
FAILURE_OUTCOMES = frozenset({"early_release", "overshoot", "too_early", "miss", "no_pull"})


class TrialRecord(StrictModel):
    """One finished trial. Times are board times in µs (``None`` when the event did not happen).

    Attributes
    ----------
    trial : int
        0-based trial number in the session.
    context : {"self_initiated", "cue_triggered"}
        The trial's intended type, decided before it started.
    block : int
        0-based block number (Task C blocks; 0 otherwise).
    outcome : Outcome
        The trial's terminal state.
    hold_ms : float
        Required hold for this trial (after shaping).
    t_start_us : int | None
        ITI start (trial start).
    t_ready_us : int | None
        End of the quiet period: READY (self-initiated) or cue onset (cue-triggered).
    t_cue_us : int | None
        Cue onset (cue-triggered only).
    t_cross_us, t_release_us : int | None
        First pull-threshold crossing in the response phase, and the next ``lever_down``.
    t_reward_us : int | None
        Valve opening.
    t_end_us : int | None
        Terminal state entered.
    iti_restarts : int
        How often movement restarted the ITI/quiet period.
    reward_ul, valve_ms : float
        Water delivered and the pulse width that delivered it (0 when not rewarded).
    rt_ms : float | None
        Crossing minus cue onset (cue-triggered trials with a crossing).
    achieved_hold_ms : float | None
        ``lever_down`` (or the reward) minus the crossing.
    """

    trial: int = Field(ge=0)
    context: Literal["self_initiated", "cue_triggered"]
    block: int = Field(0, ge=0)
    outcome: Outcome
    hold_ms: float = Field(ge=0)
    t_start_us: int | None = None
    t_ready_us: int | None = None
    t_cue_us: int | None = None
    t_cross_us: int | None = None
    t_release_us: int | None = None
    t_reward_us: int | None = None
    t_end_us: int | None = None
    iti_restarts: int = Field(0, ge=0)
    reward_ul: float = Field(0.0, ge=0)
    valve_ms: float = Field(0.0, ge=0)
    rt_ms: float | None = None
    achieved_hold_ms: float | None = None

    @property
    def success(self) -> bool:
        return self.outcome in SUCCESS_OUTCOMES

    def row(self) -> dict[str, Any]:
        """The ``trials.tsv`` row (column order = field order)."""
        return self.model_dump()


def _num(v: str) -> float:
    return math.nan if v in ("", "None") else float(v)


def trial_table(rows: list[dict[str, str]]) -> dict[str, Any]:
    """``SessionReader.trials()`` rows -> column arrays (numbers as float64 with NaN for empty).

    Returns
    -------
    dict
        ``context``, ``outcome`` : list[str]; every other column : ndarray (n,) float64.
    """
    import numpy as np

    out: dict[str, Any] = {"context": [r["context"] for r in rows]}
    out["outcome"] = [r["outcome"] for r in rows]
    for name in TrialRecord.model_fields:
        if name in ("context", "outcome"):
            continue
        out[name] = np.array([_num(r.get(name, "")) for r in rows], dtype=np.float64)
    return out

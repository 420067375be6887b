"""Per-session behavioral metrics, per context (TASKS.md "Behavioral metrics").

Input is a session folder (``trials.tsv`` + ``lever.bin`` via ``SessionReader``); trial rows are
the :class:`tasks.records.TrialRecord` columns. A trial's movement is the parsed movement whose
padded bout contains its threshold crossing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rig.core.store import SessionReader
from tasks.metrics.movement import MovementParams, ParsedLever, parse_movements
from tasks.metrics.trajectory import between_r, binned_traces, median_pairwise_r, template_r
from tasks.records import FAILURE_OUTCOMES, trial_table

RUNNING_WINDOW_TRIALS = 20


def running_success(outcomes: list[str], window: int = RUNNING_WINDOW_TRIALS) -> np.ndarray:
    """Success rate over the last ``window`` trials after each trial, (n,) float64."""
    ok = np.array([o == "reward" for o in outcomes], dtype=np.float64)
    if not len(ok):
        return ok
    c = np.concatenate([[0.0], np.cumsum(ok)])
    idx = np.arange(1, len(ok) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def trial_metrics(parsed: ParsedLever, table: dict[str, Any]) -> dict[str, np.ndarray]:
    """Per-trial movement metrics, each an ndarray (n_trials,) float64 (NaN where undefined).

    Keys: ``onset_s``, ``rt_cross_ms`` (crossing - cue), ``rt_onset_ms`` (movement onset - cue),
    ``pull_duration_ms`` (onset -> back in the rest band), ``achieved_hold_ms``, ``amplitude_mm``,
    ``peak_velocity_mm_s``, ``time_to_peak_ms``, ``quiescence_s`` (onset - end of the previous
    movement, or - trial start when none).
    """
    n = len(table["outcome"])
    keys = (
        "onset_s",
        "rt_onset_ms",
        "pull_duration_ms",
        "amplitude_mm",
        "peak_velocity_mm_s",
        "time_to_peak_ms",
        "quiescence_s",
    )
    out = {k: np.full(n, np.nan) for k in keys}
    cross_s = table["t_cross_us"] / 1e6
    cue_s = table["t_cue_us"] / 1e6
    start_s = table["t_start_us"] / 1e6
    out["rt_cross_ms"] = (cross_s - cue_s) * 1e3
    out["achieved_hold_ms"] = table["achieved_hold_ms"].copy()
    stops = np.array([m.stop_s for m in parsed.movements])
    for i in range(n):
        if np.isnan(cross_s[i]):
            continue
        m = parsed.movement_at(float(cross_s[i]))
        if m is None:
            continue
        out["onset_s"][i] = m.onset_s
        out["rt_onset_ms"][i] = (m.onset_s - cue_s[i]) * 1e3
        back = parsed.return_to_rest_s(float(cross_s[i]))
        if back is not None:
            out["pull_duration_ms"][i] = (back - m.onset_s) * 1e3
        out["amplitude_mm"][i] = m.amplitude_mm
        out["peak_velocity_mm_s"][i] = m.peak_velocity_mm_s
        out["time_to_peak_ms"][i] = m.time_to_peak_ms
        prev = stops[stops < m.start_s]
        ref = prev.max() if len(prev) else start_s[i]
        out["quiescence_s"][i] = m.onset_s - ref
    return out


def ok_all(table: dict[str, Any]) -> np.ndarray:
    """Mask of rewarded trials (their movements are the ones compared for reproducibility)."""
    return np.array([o == "reward" for o in table["outcome"]], dtype=bool)


def _med(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(np.median(x)) if len(x) else float("nan")


def _iti_movements_per_min(parsed: ParsedLever, table: dict[str, Any], sel: np.ndarray) -> float:
    onsets = np.array([m.onset_s for m in parsed.movements])
    total_min = 0.0
    count = 0
    for i in np.flatnonzero(sel):
        a, b = table["t_start_us"][i] / 1e6, table["t_ready_us"][i] / 1e6
        if np.isnan(a) or np.isnan(b) or b <= a:
            continue
        total_min += (b - a) / 60.0
        count += int(np.count_nonzero((onsets >= a) & (onsets < b)))
    return count / total_min if total_min > 0 else float("nan")


def context_metrics(
    parsed: ParsedLever, table: dict[str, Any], per_trial: dict[str, np.ndarray], sel: np.ndarray
) -> dict[str, float]:
    """Summary of the trials selected by the boolean mask ``sel`` (n_trials,)."""
    outcomes = [o for o, s in zip(table["outcome"], sel, strict=True) if s]
    ok = np.array([o == "reward" for o in outcomes], dtype=bool)
    n = len(outcomes)
    res: dict[str, float] = {
        "trials": float(n),
        "rewards": float(ok.sum()),
        "success_rate": float(ok.mean()) if n else float("nan"),
        "success_last20": float(running_success(outcomes)[-1]) if n else float("nan"),
        "reward_ul": float(np.nansum(table["reward_ul"][sel])),
        "misses": float(sum(o == "miss" for o in outcomes)),
        "early_releases": float(sum(o == "early_release" for o in outcomes)),
    }
    for k in (
        "rt_cross_ms",
        "rt_onset_ms",
        "pull_duration_ms",
        "achieved_hold_ms",
        "amplitude_mm",
        "peak_velocity_mm_s",
        "time_to_peak_ms",
        "quiescence_s",
    ):
        res[k] = _med(per_trial[k][sel])
    traces = binned_traces(
        parsed.t_s, parsed.filtered_mm, per_trial["onset_s"][sel & ok_all(table)]
    )
    res["trajectory_r"] = median_pairwise_r(traces)
    res["template_r"] = _med(template_r(traces)) if len(traces) >= 2 else float("nan")
    res["iti_movements_per_min"] = _iti_movements_per_min(parsed, table, sel)
    cross_s = table["t_cross_us"] / 1e6
    has = ~np.isnan(cross_s)
    order = np.flatnonzero(has)
    ipi = np.diff(cross_s[order])
    later = order[1:]
    res["inter_pull_interval_s"] = _med(ipi[sel[later]]) if len(later) else float("nan")
    # dtype=bool: a session without trials gives empty float arrays otherwise
    ok = np.array([o == "reward" for o in table["outcome"]], dtype=bool)
    err = np.array([o in FAILURE_OUTCOMES for o in table["outcome"]], dtype=bool)
    prev_ok = np.concatenate([[False], ok[:-1]])
    prev_err = np.concatenate([[False], err[:-1]])
    succ_all = np.array([o == "reward" for o in table["outcome"]], dtype=bool)
    for tag, mask in (("post_success", prev_ok & sel), ("post_error", prev_err & sel)):
        res[f"{tag}_trials"] = float(mask.sum())
        res[f"{tag}_success_rate"] = float(succ_all[mask].mean()) if mask.any() else float("nan")
        res[f"{tag}_rt_cross_ms"] = _med(per_trial["rt_cross_ms"][mask])
    return res


def session_metrics(
    session: str | Path | SessionReader, params: MovementParams | None = None
) -> dict[str, Any]:
    """Every TASKS.md metric for one session, overall and per context.

    Returns
    -------
    dict
        ``contexts``: ``{"all": {...}, "<context>": {...}}`` (metric name -> float);
        ``between_contexts_r``: median Pearson r between rewarded-pull trajectories of the two
        contexts (NaN unless both ran); ``templates``: context -> (200,) mean trajectory;
        ``noise_sd_mm``; ``n_movements``; ``duration_min``.
    """
    reader = session if isinstance(session, SessionReader) else SessionReader(session)
    # a trial cut short by the end of the session is not a trial the mouse could finish
    rows = [r for r in reader.trials() if r.get("outcome") != "aborted"]
    t_s, pos_mm = reader.lever_mm()
    if params is None:
        band = (reader.meta.task_params or {}).get("rest_band_mm")
        params = MovementParams(rest_band_mm=band) if band else MovementParams()
    parsed = parse_movements(t_s, pos_mm, params)
    table = trial_table(rows)
    per_trial = trial_metrics(parsed, table)
    contexts = np.array(table["context"])
    out: dict[str, Any] = {
        "contexts": {},
        "templates": {},
        "noise_sd_mm": parsed.noise_sd_mm,
        "n_movements": len(parsed.movements),
        "duration_min": float(t_s[-1] - t_s[0]) / 60.0 if len(t_s) else 0.0,
    }
    groups: dict[str, np.ndarray] = {"all": np.ones(len(contexts), dtype=bool)}
    for c in sorted(set(contexts.tolist())):
        groups[c] = contexts == c
    traces = {}
    for name, sel in groups.items():
        out["contexts"][name] = context_metrics(parsed, table, per_trial, sel)
        traces[name] = binned_traces(
            parsed.t_s, parsed.filtered_mm, per_trial["onset_s"][sel & ok_all(table)]
        )
        if len(traces[name]):
            out["templates"][name] = traces[name].mean(axis=0)
    if "self_initiated" in traces and "cue_triggered" in traces:
        out["between_contexts_r"] = between_r(traces["self_initiated"], traces["cue_triggered"])
    else:
        out["between_contexts_r"] = float("nan")
    out["per_trial"] = per_trial
    return out

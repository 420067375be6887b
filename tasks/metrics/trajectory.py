"""Trajectory reproducibility: lever traces 0-2 s after movement onset, in 10 ms bins.

Reproducibility is the median pairwise Pearson r between those binned traces; each trace is also
correlated with the session template (their mean). Across days, the templates are correlated.
"""

from __future__ import annotations

import numpy as np


def binned_traces(
    t_s: np.ndarray,
    pos_mm: np.ndarray,
    onsets_s: np.ndarray,
    window_s: float = 2.0,
    bin_ms: float = 10.0,
) -> np.ndarray:
    """Lever position averaged in bins from each onset to ``onset + window_s``.

    Parameters
    ----------
    t_s, pos_mm : ndarray (n,) float64
        Uniformly sampled lever trace, s and mm.
    onsets_s : ndarray (k,) float64
        Movement onsets, s. Onsets whose window runs past the trace are dropped.

    Returns
    -------
    ndarray (k', n_bins) float64
        ``n_bins = round(window_s * 1000 / bin_ms)``.
    """
    n_bins = round(window_s * 1e3 / bin_ms)
    if len(t_s) < 2:
        return np.empty((0, n_bins))
    dt = float(t_s[1] - t_s[0])
    per_bin = max(1, round(bin_ms / 1e3 / dt))
    n = n_bins * per_bin
    out = []
    for on in np.asarray(onsets_s, dtype=np.float64):
        i = int(np.searchsorted(t_s, on))
        if i + n > len(pos_mm):
            continue
        out.append(pos_mm[i : i + n].reshape(n_bins, per_bin).mean(axis=1))
    return np.array(out) if out else np.empty((0, n_bins))


def _corr_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson r of every row of ``a`` with every row of ``b``: (ka, kb). Flat rows give NaN."""
    az = a - a.mean(axis=1, keepdims=True)
    bz = b - b.mean(axis=1, keepdims=True)
    na = np.linalg.norm(az, axis=1, keepdims=True)
    nb = np.linalg.norm(bz, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (az / na) @ (bz / nb).T


def median_pairwise_r(traces: np.ndarray) -> float:
    """Median Pearson r over all distinct pairs of rows; NaN with fewer than 2 traces."""
    if len(traces) < 2:
        return float("nan")
    r = _corr_rows(traces, traces)
    iu = np.triu_indices(len(traces), k=1)
    return float(np.nanmedian(r[iu]))


def template_r(traces: np.ndarray, template: np.ndarray | None = None) -> np.ndarray:
    """Pearson r of each trace with ``template`` (default: the mean trace). Shape (k,)."""
    if len(traces) == 0:
        return np.empty(0)
    tmpl = traces.mean(axis=0) if template is None else np.asarray(template, np.float64)
    return _corr_rows(traces, tmpl[None, :])[:, 0]


def between_r(a: np.ndarray, b: np.ndarray) -> float:
    """Median Pearson r over all pairs with one trace from each group (e.g. two contexts)."""
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    return float(np.nanmedian(_corr_rows(a, b)))


def across_days_r(templates: list[np.ndarray]) -> np.ndarray:
    """Correlation matrix (d, d) between per-day templates (each (n_bins,))."""
    return _corr_rows(np.array(templates), np.array(templates))

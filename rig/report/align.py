"""Data preparation for the report plots: event-aligned windows and sync health.

Event alignment never rounds an event to a frame (TASKS.md "Imaging alignment"): ΔF/F is
linearly interpolated at ``event + offset`` for each offset of a regular grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rig.core.events import Event

ERROR_WORDS = ("crc", "seq", "overrun", "error", "reconnect", "watchdog", "nak", "gap")


def aligned(
    t_s: np.ndarray,
    values: np.ndarray,
    event_s: np.ndarray,
    window_s: tuple[float, float],
    step_s: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``values`` around each event.

    Parameters
    ----------
    t_s : ndarray (T,) float64
        Sample times, s, increasing.
    values : ndarray (T,) or (T, n) float
        Signal(s) sampled at ``t_s``.
    event_s : ndarray (m,) float64
        Event times, s (NaN entries are dropped).
    window_s : (float, float)
        Offsets around each event, s, e.g. ``(-2, 4)``.
    step_s : float
        Grid step, s.

    Returns
    -------
    offsets_s : ndarray (k,) float64
    windows : ndarray (m', k) or (m', k, n) float64
        NaN where the window leaves the recording.
    """
    from scipy.interpolate import interp1d

    ev = np.asarray(event_s, np.float64)
    ev = ev[np.isfinite(ev)]
    off = np.arange(window_s[0], window_s[1] + step_s / 2, step_s)
    v = np.asarray(values, np.float64)
    if len(t_s) < 2 or ev.size == 0:
        shape = (0, off.size, *v.shape[1:])
        return off, np.zeros(shape)
    f = interp1d(t_s, v, axis=0, bounds_error=False, fill_value=np.nan, assume_sorted=True)
    return off, f(ev[:, None] + off[None, :])


def peak_order(mean_traces: np.ndarray) -> np.ndarray:
    """Cell order by time of peak of ``mean_traces`` (k, n): earliest first (NaN-safe)."""
    m = np.where(np.isfinite(mean_traces), mean_traces, -np.inf)
    return np.argsort(np.argmax(m, axis=0), kind="stable")


@dataclass
class SyncHealth:
    """Clock and link health of one session.

    Attributes
    ----------
    t_s : ndarray (m,)
        Session time of each event carrying both clocks, s.
    host_lag_ms : ndarray (m,)
        Host receive time minus the fitted host<-board line, ms (link latency jitter).
    frame_t_s, frame_interval_ms : ndarray (f-1,)
        Frame-clock edge times and the interval to the previous edge.
    counts : dict
        Named counts: events with error words in their names, frames, edges, index gaps.
    """

    t_s: np.ndarray
    host_lag_ms: np.ndarray
    frame_t_s: np.ndarray
    frame_interval_ms: np.ndarray
    counts: dict[str, Any] = field(default_factory=dict)


def sync_health(
    events: list[Event], t0_us: int, imaging_summary: dict[str, Any] | None
) -> SyncHealth:
    both = [e for e in events if e.t_device_us is not None]
    if len(both) >= 2:
        d = np.array([e.t_device_us for e in both], np.float64)
        h = np.array([e.t_host_ns for e in both], np.float64) / 1e6  # ms
        dm, hm = d.mean(), h.mean()
        slope = np.dot(d - dm, h - hm) / max(np.dot(d - dm, d - dm), 1e-12)
        lag = h - (hm + slope * (d - dm))
        t = (d - t0_us) / 1e6
    else:
        t = lag = np.zeros(0)
    edges = np.array([e.t_device_us for e in both if e.name == "frame"], np.float64)
    counts: dict[str, Any] = {}
    for e in events:
        if any(w in e.name.lower() for w in ERROR_WORDS):
            counts[e.name] = counts.get(e.name, 0) + 1
    counts["frame-clock edges"] = int(edges.size)
    if imaging_summary:
        counts["frames processed"] = imaging_summary.get("frames_processed")
        counts["frame index gaps"] = imaging_summary.get("frame_index_gaps")
        if imaging_summary.get("frame_clock_mismatch"):
            counts["frame clock mismatch"] = imaging_summary["frame_clock_mismatch"]
    return SyncHealth(t, lag, (edges[1:] - t0_us) / 1e6, np.diff(edges) / 1e3, counts)

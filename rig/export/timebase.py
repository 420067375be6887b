"""One session timebase for export: board µs mapped to seconds from the session's first sample.

The board clock owns time (DESIGN.md): lever samples, board events and frame-clock edges carry
``t_device_us``. Host-only events (``source="task"``, ``"host"``, ``"gui"``) carry only
``t_host_ns``; they are put on the board clock with a straight-line fit of ``t_device_us`` against
``t_host_ns`` over the events that carry both. Zero is the earliest time anything in the session
has on that clock, so no exported timestamp is negative; that board time is kept in the file
(``t0_device_us``) so the original board times can be recovered exactly.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rig.core.events import Event


@dataclass(frozen=True)
class Timebase:
    """``t_s = (t_device_us - t0_device_us) / 1e6``; host ns map through ``host_to_device``.

    Attributes
    ----------
    t0_device_us : int
        Board time (µs) that becomes t = 0 s.
    slope_us_per_ns, offset_us : float
        ``t_device_us ≈ offset_us + slope_us_per_ns * t_host_ns`` (fit on events with both).
    n_fit_events : int
        Events the host->board fit used (0: no board time at all; host time is the clock).
    """

    t0_device_us: int
    slope_us_per_ns: float
    offset_us: float
    n_fit_events: int

    def device_s(self, t_device_us: Any) -> np.ndarray:
        """Board times (µs, int) -> float64 seconds on this timebase."""
        return (np.asarray(t_device_us, np.int64) - self.t0_device_us) / 1e6

    def host_to_device_us(self, t_host_ns: Any) -> np.ndarray:
        """Host monotonic ns -> estimated board µs (float64)."""
        return self.offset_us + self.slope_us_per_ns * np.asarray(t_host_ns, np.float64)

    def event_s(self, ev: Event) -> float:
        """An event's time in s: its board time when it has one, else its mapped host time."""
        if ev.t_device_us is not None:
            return (int(ev.t_device_us) - self.t0_device_us) / 1e6
        return float((self.host_to_device_us(ev.t_host_ns) - self.t0_device_us) / 1e6)

    def describe(self) -> str:
        return (
            f"t = (board clock µs - {self.t0_device_us}) / 1e6 s; host-only events mapped by "
            f"t_device_us = {self.offset_us:.1f} + {self.slope_us_per_ns:.9f} * t_host_ns "
            f"(fit on {self.n_fit_events} events carrying both clocks)"
        )


def fit_timebase(events: list[Event], board_times_us: list[np.ndarray]) -> Timebase:
    """Build the timebase of a session.

    Parameters
    ----------
    events : list of Event
        All session events.
    board_times_us : list of ndarray (n,), int64
        Other board-clock times in the session (lever samples, frame times); may be empty.
    """
    both = [(e.t_host_ns, e.t_device_us) for e in events if e.t_device_us is not None]
    if len(both) >= 2:
        h = np.array([b[0] for b in both], np.float64)
        d = np.array([b[1] for b in both], np.float64)
        if np.ptp(h) > 0:
            # centred fit: raw ns values near 1e15 would lose precision in polyfit's Vandermonde
            hm, dm = h.mean(), d.mean()
            slope = float(np.dot(h - hm, d - dm) / np.dot(h - hm, h - hm))
            offset = float(dm - slope * hm)
        else:
            slope, offset = 1e-3, float(d[0] - 1e-3 * h[0])
    elif len(both) == 1:
        slope, offset = 1e-3, float(both[0][1] - 1e-3 * both[0][0])
    else:
        slope, offset = 1e-3, 0.0
    cand: list[float] = [float(b[1]) for b in both]
    cand += [offset + slope * e.t_host_ns for e in events if e.t_device_us is None]
    cand += [float(a.min()) for a in board_times_us if a.size]
    t0 = math.floor(min(cand)) if cand else 0
    return Timebase(int(t0), slope, offset, len(both))


# ---------------------------------------------------------------------- trials.tsv typing
def _parse_int(s: str) -> int | None:
    try:
        return int(s)
    except ValueError:
        return None


def _parse_float(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


def typed_column(cells: list[str]) -> np.ndarray | list[str]:
    """Type one ``trials.tsv`` column (cells as written by ``SessionWriter``).

    Returns
    -------
    ndarray int64
        Every cell an integer.
    ndarray float64
        Every cell a number or empty (``""``/``None``; NaN).
    ndarray bool
        Every cell ``True``/``False``/``true``/``false``.
    list of str
        Anything else (text, JSON).
    """
    full = [c for c in cells if c not in ("", "None")]
    if (
        full
        and all(c in ("True", "False", "true", "false") for c in full)
        and len(full) == len(cells)
    ):
        return np.array([c in ("True", "true") for c in cells], bool)
    if full and all(_parse_int(c) is not None for c in full) and len(full) == len(cells):
        return np.array([int(c) for c in cells], np.int64)
    if full and all(_parse_float(c) is not None for c in full):
        return np.array([float(c) if c not in ("", "None") else np.nan for c in cells], np.float64)
    if not full and cells:
        return np.full(len(cells), np.nan)
    return list(cells)


def json_text(obj: Any) -> str:
    """Compact, key-sorted JSON (stable text for tables)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)

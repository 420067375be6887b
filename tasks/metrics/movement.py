"""Lever movement parsing (TASKS.md, "Behavioral metrics").

Steps, on the lever position in mm resampled to a uniform grid (1 kHz on the board):

1. 10 Hz zero-phase low-pass (Butterworth through ``scipy.signal.filtfilt``).
2. Velocity of the filtered trace; its envelope (``|v|``) over ``velocity_threshold_mm_s``
   marks movement.
3. Gaps shorter than ``gap_fill_ms`` (500 ms) between movement stretches are filled.
4. Every movement is padded by ``padding_ms`` (150 ms) on both sides.
5. The onset is refined: from the padded start, the first sample from which the filtered trace
   stays more than one noise SD away from the pre-movement baseline (median over the padding)
   for ``onset_stay_ms`` (10 ms).

The noise SD is the standard deviation of ``raw - filtered`` outside movements (the sensor noise;
the filter keeps the slower behavior). The refinement runs on the filtered trace because on the
raw one a 1-SD excursion that lasts 10 ms needs the movement to be 2-3 SD out already, which
delays the onset by tens of ms on a slow pull.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import Field
from scipy import ndimage, signal

from rig.core.config import StrictModel


class MovementParams(StrictModel):
    lowpass_hz: float = Field(10.0, gt=0)
    filter_order: int = Field(4, ge=1, le=8)
    velocity_threshold_mm_s: float = Field(2.0, gt=0)
    gap_fill_ms: float = Field(500.0, ge=0)
    padding_ms: float = Field(150.0, ge=0)
    onset_stay_ms: float = Field(10.0, gt=0)
    noise_sd_mult: float = Field(1.0, gt=0)
    noise_floor_mm: float = Field(
        0.005,
        gt=0,
        description="lower bound of the noise SD (a noise-free trace would put "
        "the onset in the filter's pre-ringing)",
    )
    rest_band_mm: float = Field(0.2, gt=0, description="return to rest ends a pull")


@dataclass(frozen=True)
class Movement:
    """One parsed movement; times in s on the board clock.

    ``onset_s`` is the refined onset; ``start_s``/``stop_s`` the padded bout edges.
    """

    start_s: float
    stop_s: float
    onset_s: float
    amplitude_mm: float
    peak_velocity_mm_s: float
    time_to_peak_ms: float
    time_to_peak_velocity_ms: float


@dataclass
class ParsedLever:
    """Parsing result.

    Attributes
    ----------
    t_s : ndarray (n,) float64
        Uniform time grid, s.
    raw_mm, filtered_mm, velocity_mm_s : ndarray (n,) float64
    moving : ndarray (n,) bool
        Inside a (gap-filled, padded) movement.
    noise_sd_mm : float
    movements : list[Movement]
    """

    t_s: np.ndarray
    raw_mm: np.ndarray
    filtered_mm: np.ndarray
    velocity_mm_s: np.ndarray
    moving: np.ndarray
    noise_sd_mm: float
    movements: list[Movement]

    @property
    def dt_s(self) -> float:
        return float(self.t_s[1] - self.t_s[0]) if len(self.t_s) > 1 else 1e-3

    def index(self, t_s: float) -> int:
        return int(np.clip(np.searchsorted(self.t_s, t_s), 0, len(self.t_s) - 1))

    def movement_at(self, t_s: float) -> Movement | None:
        """The movement whose padded bout contains ``t_s`` (the latest one starting before)."""
        best = None
        for m in self.movements:
            if m.start_s <= t_s <= m.stop_s:
                best = m
        return best

    def return_to_rest_s(self, after_s: float) -> float | None:
        """First time after ``after_s`` at which the filtered trace is back in the rest band."""
        i = self.index(after_s)
        rest = np.flatnonzero(np.abs(self.filtered_mm[i:]) < self._rest_band)
        return float(self.t_s[i + rest[0]]) if len(rest) else None

    _rest_band: float = 0.2


def _uniform(t_s: np.ndarray, pos_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Resample onto a uniform grid at the median sample period (gaps get interpolated)."""
    dt = float(np.median(np.diff(t_s)))
    if dt <= 0:
        raise ValueError("lever timestamps must increase")
    n = int(np.floor((t_s[-1] - t_s[0]) / dt + 1e-9)) + 1
    grid = t_s[0] + np.arange(n) * dt
    if n == len(t_s) and np.allclose(grid, t_s, atol=dt / 4):
        return t_s.astype(np.float64), pos_mm.astype(np.float64)
    return grid, np.interp(grid, t_s, pos_mm)


def _runs(mask: np.ndarray) -> np.ndarray:
    """(k, 2) start/stop (exclusive) indices of the True runs of ``mask``."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.column_stack([np.flatnonzero(d == 1), np.flatnonzero(d == -1)])


def parse_movements(
    t_s: np.ndarray, pos_mm: np.ndarray, params: MovementParams | None = None
) -> ParsedLever:
    """Parse lever movements.

    Parameters
    ----------
    t_s : ndarray (n,) float
        Sample times, s (increasing; resampled to uniform if irregular).
    pos_mm : ndarray (n,) float
        Lever position, mm (0 = rest).
    params : MovementParams, optional

    Returns
    -------
    ParsedLever
    """
    p = params or MovementParams()
    t_s = np.asarray(t_s, dtype=np.float64)
    pos_mm = np.asarray(pos_mm, dtype=np.float64)
    if t_s.shape != pos_mm.shape or t_s.ndim != 1:
        raise ValueError(f"t_s {t_s.shape} and pos_mm {pos_mm.shape} must be equal 1-D shapes")
    n_min = 3 * (p.filter_order + 1) * 2 + 1
    if len(t_s) < n_min:
        raise ValueError(f"need at least {n_min} lever samples to parse movements")
    t, raw = _uniform(t_s, pos_mm)
    dt = t[1] - t[0]
    fs = 1.0 / dt
    b, a = signal.butter(p.filter_order, min(p.lowpass_hz, 0.45 * fs), fs=fs)
    filt = signal.filtfilt(b, a, raw)
    vel = np.gradient(filt, dt)
    active = np.abs(vel) > p.velocity_threshold_mm_s
    gap = round(p.gap_fill_ms / 1e3 / dt)
    pad = round(p.padding_ms / 1e3 / dt)
    if gap > 0 and active.any():
        # closing fills every gap shorter than the structuring element (edges excluded)
        closed = ndimage.binary_closing(active, structure=np.ones(gap, dtype=bool))
        first, last = np.flatnonzero(active)[[0, -1]]
        active = closed.copy()
        active[:first] = False
        active[last + 1 :] = False
    moving = ndimage.binary_dilation(active, np.ones(2 * pad + 1, bool)) if pad else active
    outside = ~moving
    resid = raw - filt
    noise_sd = float(np.std(resid[outside])) if outside.sum() > 10 else float(np.std(resid))
    stay = max(1, round(p.onset_stay_ms / 1e3 / dt))
    movements = []
    for s0, s1 in _runs(moving):
        lo = max(0, s0 - pad)
        base = float(np.median(filt[lo : s0 + 1]))
        beyond = np.abs(filt[s0:s1] - base) > p.noise_sd_mult * max(noise_sd, p.noise_floor_mm)
        # first index from which `stay` consecutive samples are all beyond the noise SD
        run = np.convolve(beyond.astype(np.int32), np.ones(stay, np.int32), "valid")
        ok = np.flatnonzero(run == stay)
        on = s0 + (int(ok[0]) if len(ok) else 0)
        seg = filt[on:s1]
        k_peak = int(np.argmax(np.abs(seg - base)))
        vseg = np.abs(vel[on:s1])
        k_v = int(np.argmax(vseg))
        movements.append(
            Movement(
                start_s=float(t[s0]),
                stop_s=float(t[s1 - 1]),
                onset_s=float(t[on]),
                amplitude_mm=float(seg[k_peak] - base),
                peak_velocity_mm_s=float(vseg[k_v]),
                time_to_peak_ms=k_peak * dt * 1e3,
                time_to_peak_velocity_ms=k_v * dt * 1e3,
            )
        )
    parsed = ParsedLever(t, raw, filt, vel, moving, noise_sd, movements)
    parsed._rest_band = p.rest_band_mm
    return parsed

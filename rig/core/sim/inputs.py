"""What drives a simulated lever board: lever signals and a frame clock.

The simulated board asks its ``LeverInput`` for the raw counts of a block of consecutive
1 kHz sample times (at most ``SimLeverBoard.block_ticks`` at a time, in time order), and tells
it every output event the board emits (tone, valve, ...) so a behavioral model can react::

    class LeverInput(Protocol):
        def counts(self, t_us: np.ndarray) -> np.ndarray: ...   # int64 (n,) µs -> int (n,)
        def on_output(self, event: TrailEvent) -> None: ...      # cue/reward the mouse perceives

Optionally ``licks(t_us) -> int (n,)`` gives the lick-sensor level (0/1) per sample.

Ready-made inputs: ``ConstantLever`` (a lever at rest), ``ArrayLever`` (a recorded or scripted
trace), ``PushLever`` (the GUI or a test sets the position), ``MouseLever`` (adapts a behavioral
mouse model with ``position_mm(t_s)``/``perceive(what, t_s)``, e.g. ``tasks.sim_mouse``, through
the rig's lever calibration, with sensor noise). ``FrameClock`` generates frame-clock edges.
"""

from __future__ import annotations

import threading
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np

from rig.core.config import LeverCalibration
from rig.core.protocol.codes import EventCode
from rig.core.statemachine.engine import TrailEvent


@runtime_checkable
class LeverInput(Protocol):
    """Lever signal of a simulated board (see the module docstring)."""

    def counts(self, t_us: np.ndarray) -> np.ndarray:
        """Raw sensor counts at the sample times ``t_us`` (int64 (n,), µs, increasing)."""
        ...

    def on_output(self, event: TrailEvent) -> None:
        """An EVENT the board just emitted (outputs, state changes)."""
        ...


class MouseModel(Protocol):
    """The behavioral-model interface ``MouseLever`` adapts (``tasks.sim_mouse.LeverMouse``)."""

    def perceive(self, what: str, t_s: float) -> None: ...

    def position_mm(self, t_s: np.ndarray) -> np.ndarray: ...


class ConstantLever:
    """A lever that never moves (``counts`` raw counts, e.g. the rest position)."""

    def __init__(self, counts: int = 512) -> None:
        self.value = counts

    def counts(self, t_us: np.ndarray) -> np.ndarray:
        return np.full(len(t_us), self.value, dtype=np.int64)

    def on_output(self, event: TrailEvent) -> None:
        pass


class ArrayLever:
    """A trace: ``samples[i]`` holds from ``t0_us + i * period_us``; after the end, ``hold``.

    Parameters
    ----------
    samples : np.ndarray
        int (n,) raw counts.
    t0_us, period_us : int
        Time of the first sample and sample spacing (1000 µs = one per board tick).
    hold : int | None
        Counts after the trace ends (default: the last sample).
    """

    def __init__(
        self, samples: np.ndarray, t0_us: int = 0, period_us: int = 1000, hold: int | None = None
    ) -> None:
        self.samples = np.asarray(samples, dtype=np.int64)
        self.t0_us = t0_us
        self.period_us = period_us
        self.hold = int(self.samples[-1]) if hold is None else hold
        self.outputs: list[TrailEvent] = []

    def counts(self, t_us: np.ndarray) -> np.ndarray:
        idx = (np.asarray(t_us, dtype=np.int64) - self.t0_us) // self.period_us
        out = np.full(len(idx), self.hold, dtype=np.int64)
        ok = (idx >= 0) & (idx < len(self.samples))
        out[ok] = self.samples[idx[ok]]
        out[idx < 0] = self.samples[0]
        return out

    def on_output(self, event: TrailEvent) -> None:
        self.outputs.append(event)


class PushLever:
    """Position set from another thread (GUI slider, test): ``set_counts(v)``, ``set_lick(0/1)``."""

    def __init__(self, counts: int = 512) -> None:
        self._value = counts
        self._lick = 0
        self._lock = threading.Lock()
        self.outputs: list[TrailEvent] = []

    def set_counts(self, value: int) -> None:
        with self._lock:
            self._value = int(value)

    def set_lick(self, level: int) -> None:
        with self._lock:
            self._lick = 1 if level else 0

    def counts(self, t_us: np.ndarray) -> np.ndarray:
        with self._lock:
            return np.full(len(t_us), self._value, dtype=np.int64)

    def licks(self, t_us: np.ndarray) -> np.ndarray:
        with self._lock:
            return np.full(len(t_us), self._lick, dtype=np.int8)

    def on_output(self, event: TrailEvent) -> None:
        with self._lock:
            self.outputs.append(event)


class MouseLever:
    """Drive the lever from a behavioral mouse model through the rig's lever calibration.

    ``counts = round(rest_counts + position_mm * counts_per_mm + noise)``, clipped to the ADC
    range; noise is Gaussian with SD ``noise_counts`` from a seeded generator. The mouse
    perceives ``cue_on``/``cue_off`` when the tone starts/stops and ``reward`` when the valve
    opens, at the board time of the event.
    """

    _PERCEPTS: ClassVar[dict[int, str]] = {
        EventCode.TONE_ON: "cue_on",
        EventCode.TONE_OFF: "cue_off",
        EventCode.VALVE_ON: "reward",
    }

    def __init__(
        self,
        mouse: MouseModel,
        calibration: LeverCalibration,
        noise_counts: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.mouse = mouse
        self.cal = calibration
        self.noise_counts = noise_counts
        self._rng = np.random.default_rng(seed)
        self._max = (1 << calibration.adc_bits) - 1

    def counts(self, t_us: np.ndarray) -> np.ndarray:
        mm = self.mouse.position_mm(np.asarray(t_us, dtype=np.float64) / 1e6)
        c = self.cal.rest_counts + mm * self.cal.counts_per_mm
        if self.noise_counts > 0:
            c = c + self._rng.normal(0.0, self.noise_counts, len(c))
        return np.clip(np.rint(c), 0, self._max).astype(np.int64)

    def on_output(self, event: TrailEvent) -> None:
        what = self._PERCEPTS.get(event.code)
        if what is not None:
            self.mouse.perceive(what, event.t_us / 1e6)


class FrameClock:
    """ScanImage-like frame clock: a rising edge every ``1e6 / rate_hz`` µs from ``start_us``.

    Edge times are exact to the µs (rounded), so an imaging run of any rate is reproducible.
    ``n_frames`` limits the number of edges (``None``: forever).
    """

    def __init__(self, rate_hz: float, start_us: int = 0, n_frames: int | None = None) -> None:
        if rate_hz <= 0:
            raise ValueError(f"frame rate must be > 0 Hz, got {rate_hz}")
        self.period_us = 1e6 / rate_hz
        self.start_us = start_us
        self.n_frames = n_frames

    def edges_between(self, t0_us: int, t1_us: int) -> list[int]:
        """Edge times ``t`` with ``t0_us <= t < t1_us``, in order."""
        i0 = max(0, int(np.ceil((t0_us - self.start_us) / self.period_us - 1e-9)))
        out = []
        i = i0
        while True:
            if self.n_frames is not None and i >= self.n_frames:
                break
            t = self.start_us + round(i * self.period_us)
            if t >= t1_us:
                break
            if t >= t0_us:
                out.append(t)
            i += 1
        return out

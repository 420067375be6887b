"""A synthetic session runner: emits ``RigSignals`` with plausible data, no devices, no files.

For GUI development, screenshots and the GUI benchmark, where the point is what the GUI does
with a stream of a given rate, independent of the real runner's own cost. It follows the
:class:`gui.runner_api.SessionRunner` protocol. Its own thread paces itself on a deadline
schedule (``threading.Event.wait``), so ``stop()`` returns promptly.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from rig.core.events import Event
from rig.core.signals import RigSignals


class SyntheticRunner:
    """Emit a lever stream, trials, frames, ΔF/F and health at fixed rates.

    Parameters
    ----------
    lever_rate_hz : float
        Lever samples per second (the board streams 1 kHz).
    lever_batch : int
        Samples per ``lever`` emission.
    frame_rate_hz : float
        Imaging frames per second (0 disables imaging).
    n_rois : int
        ROIs in each ΔF/F row.
    size_px : int
        Side of the square frame.
    trial_s : float
        Duration of one synthetic trial.
    rotarod_lanes : int
        Lanes of synthetic rotarod events (0 = none).
    seed : int
        Random seed (the stream is reproducible apart from timing).
    """

    def __init__(
        self,
        signals: RigSignals | None = None,
        *,
        lever_rate_hz: float = 1000.0,
        lever_batch: int = 20,
        frame_rate_hz: float = 30.0,
        n_rois: int = 50,
        size_px: int = 64,
        trial_s: float = 1.0,
        rotarod_lanes: int = 0,
        seed: int = 0,
    ) -> None:
        self.signals = signals if signals is not None else RigSignals()
        self.lever_rate_hz = lever_rate_hz
        self.lever_batch = lever_batch
        self.frame_rate_hz = frame_rate_hz
        self.n_rois = n_rois
        self.size_px = size_px
        self.trial_s = trial_s
        self.rotarod_lanes = rotarod_lanes
        self._rng = np.random.default_rng(seed)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0
        self._valve_open = False
        self._sample = 0
        self.manual: list[Event] = []
        self.n_frames_emitted = 0
        self.n_lever_emitted = 0
        self.n_trials_emitted = 0
        yy, xx = np.mgrid[0:size_px, 0:size_px]
        self.roi_centres_px = self._rng.uniform(4, size_px - 4, size=(n_rois, 2))
        self._base = np.full((size_px, size_px), 200.0, np.float32)
        #: ROI label image, int32 (size_px, size_px): ROI k has label k + 1, 0 = background.
        self.roi_labels = np.zeros((size_px, size_px), np.int32)
        for k, (cy, cx) in enumerate(self.roi_centres_px):
            d2 = (yy - cy) ** 2 + (xx - cx) ** 2
            self._base += 400.0 * np.exp(-d2 / 6.0)
            self.roi_labels[d2 <= 6.0] = k + 1
        self.reference_image = self._base.copy()

    # ------------------------------------------------------------------ SessionRunner protocol
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def session_dir(self) -> Path | None:
        return None

    @property
    def valve_open(self) -> bool:
        return self._valve_open

    def start(self) -> None:
        if self.running:
            raise RuntimeError("synthetic session already running")
        self._stop.clear()
        self._t0 = time.monotonic()
        self.signals.session.emit("started", {"task": "synthetic", "folder": ""})
        self._thread = threading.Thread(target=self._run, name="synthetic-rig", daemon=True)
        self._thread.start()

    def stop(self, reason: str = "stopped by the experimenter") -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._valve_open = False
        self.signals.session.emit("stopped", {"reason": reason})

    def _manual(self, name: str, **data: Any) -> None:
        ev = Event(name, "gui", t_device_us=self._now_us(), data=data)
        self.manual.append(ev)
        self.signals.event.emit(ev)

    def give_reward(self, volume_ul: float) -> None:
        self._manual("manual_reward", volume_ul=volume_ul, valve_ms=volume_ul * 10.0)

    def play_tone(self, freq_hz: float, duration_ms: float) -> None:
        self._manual("manual_tone", freq_hz=freq_hz, duration_ms=duration_ms)

    def flush_valve(self, duration_ms: float) -> None:
        self._manual("manual_flush", duration_ms=duration_ms)

    def zero_lever(self) -> None:
        self._manual("manual_zero_lever")

    # ------------------------------------------------------------------ the stream
    def _now_us(self) -> int:
        """Board time: the lever sample clock (as on the real board, events share it)."""
        return int(self._sample * 1e6 / self.lever_rate_hz)

    def _lever_mm(self, t_s: np.ndarray) -> np.ndarray:
        # One pull per trial: rises 0.3 s into the trial, held for 40 % of it.
        phase = (t_s % self.trial_s) / self.trial_s
        pull = np.clip((phase - 0.3) * 8, 0, 1) * np.clip((0.75 - phase) * 8, 0, 1)
        return 2.0 * pull + self._rng.normal(0, 0.02, t_s.size)

    def _run(self) -> None:
        sig = self.signals
        lever_dt = self.lever_batch / self.lever_rate_hz
        frame_dt = 1.0 / self.frame_rate_hz if self.frame_rate_hz > 0 else math.inf
        next_lever = next_frame = next_health = 0.0
        next_trial = self.trial_s
        self._sample = 0
        frame = 0
        trial = 0
        frame_tau = np.zeros(self.n_rois, np.float32)
        lanes_up = list(range(self.rotarod_lanes))
        if self.rotarod_lanes:
            sig.event.emit(Event("rotarod_start", "rotarod", 0, data={"lanes": self.rotarod_lanes}))
        while not self._stop.is_set():
            now = time.monotonic() - self._t0
            wait = min(next_lever, next_frame, next_health, next_trial) - now
            if wait > 0:
                if self._stop.wait(wait):
                    break
                continue
            if now >= next_lever:
                idx = np.arange(self._sample, self._sample + self.lever_batch)
                t_us = (idx * (1e6 / self.lever_rate_hz)).astype(np.int64)
                sig.lever.emit(t_us, self._lever_mm(t_us / 1e6))
                self._sample += self.lever_batch
                self.n_lever_emitted += self.lever_batch
                next_lever += lever_dt
            if now >= next_frame:
                shift = self._rng.normal(0, 1.0, 2)
                img = self._base + self._rng.normal(0, 20, self._base.shape).astype(np.float32)
                sig.frame.emit(frame, np.roll(img, tuple(np.round(shift).astype(int)), (0, 1)))
                frame_tau *= 0.9
                fire = self._rng.random(self.n_rois) < 0.02
                frame_tau[fire] += 1.0
                sig.traces.emit(frame, frame_tau + self._rng.normal(0, 0.05, self.n_rois))
                if frame % 10 == 0:
                    sig.imaging.emit(
                        {
                            "frames_per_s": self.frame_rate_hz,
                            "frame_rate_hz": self.frame_rate_hz,
                            "latency_ms_p50": 3.0,
                            "latency_ms_p99": 8.0,
                            "queue_depth": 0,
                            "frame_index": frame,
                            "frames_processed": frame + 1,
                            "shift_y_px": float(shift[0]),
                            "shift_x_px": float(shift[1]),
                        }
                    )
                frame += 1
                self.n_frames_emitted += 1
                next_frame += frame_dt
            if now >= next_health:
                sig.health.emit(
                    "lever_board",
                    {
                        "connected": True,
                        "heartbeat_age_ms": 40.0,
                        "crc_errors": 0,
                        "lost_packets": 0,
                        "lever_missing_samples": 0,
                        "frames": frame,
                    },
                )
                if self.rotarod_lanes:
                    sig.event.emit(
                        Event("rotarod_rpm", "rotarod", self._now_us(), data={"rpm": 4 + now})
                    )
                next_health += 0.1
            if now >= next_trial:
                self._emit_trial(trial, frame)
                if lanes_up and trial % 2 == 1:
                    lane = lanes_up.pop(0)
                    sig.event.emit(
                        Event(
                            "rotarod_fall",
                            "rotarod",
                            self._now_us(),
                            data={"lane": lane, "latency_s": now, "rpm": 4 + now},
                        )
                    )
                trial += 1
                next_trial += self.trial_s

    def _emit_trial(self, trial: int, frame: int) -> None:
        sig = self.signals
        t_end = self._now_us()
        t_start = t_end - int(self.trial_s * 1e6)
        context = "cue_triggered" if (trial // 5) % 2 else "self_initiated"
        cue = t_start + int(0.2 * self.trial_s * 1e6) if context == "cue_triggered" else None
        cross = t_start + int(0.3 * self.trial_s * 1e6)
        success = bool(self._rng.random() < 0.6)
        fpu = self.frame_rate_hz / 1e6
        events = [Event("trial_start", "task", t_start, trial=trial, data={"context": context})]
        if cue is not None:
            events.append(
                Event(
                    "cue_on",
                    "lever_board",
                    cue,
                    frame=int(frame - (t_end - cue) * fpu),
                    trial=trial,
                )
            )
        events.append(
            Event(
                "lever_up",
                "lever_board",
                cross,
                frame=int(frame - (t_end - cross) * fpu),
                trial=trial,
            )
        )
        events.append(Event("hold_start", "lever_board", cross, trial=trial))
        t_reward = None
        if success:
            t_reward = cross + 100_000
            events.append(
                Event(
                    "valve_open",
                    "lever_board",
                    t_reward,
                    frame=int(frame - (t_end - t_reward) * fpu),
                    trial=trial,
                    data={"duration_ms": 40.0, "volume_ul": 4.0},
                )
            )
        for ev in events:
            sig.event.emit(ev)
        sig.trial.emit(
            {
                "trial": trial,
                "context": context,
                "block": trial // 5,
                "outcome": "reward" if success else "early_release",
                "hold_ms": 200.0,
                "t_start_us": t_start,
                "t_cue_us": cue,
                "t_cross_us": cross,
                "t_reward_us": t_reward,
                "t_end_us": t_end,
                "reward_ul": 4.0 if success else 0.0,
                "valve_ms": 40.0 if success else 0.0,
                "rt_ms": (cross - cue) / 1e3 + self._rng.normal(0, 50) if cue else None,
            }
        )
        self.n_trials_emitted += 1

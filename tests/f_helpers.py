"""Session folders built with ``SessionWriter`` directly (export/report tests), and imaging
through the real pipeline on a small synthetic movie."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from rig.core.events import Event
from rig.core.store import SessionMeta, SessionReader, SessionWriter
from tasks.records import TrialRecord

RIG_CONFIG: dict[str, Any] = {
    "name": "test-rig",
    "lever_board": {
        "driver": "sim",
        "name": "lever_board",
        "calibration": {"counts_per_mm": 40.0, "rest_counts": 512},
    },
    "imaging": {
        "source": {"kind": "synthetic", "size_px": 64, "n_cells": 6, "frame_rate_hz": 30.0},
        "backend": "numpy",
        "neuropil_coefficient": 0.7,
        "baseline_window_s": 5.0,
        "baseline_percentile": 8.0,
    },
}
T0_US = 5_000_000  # board clock at session start: the board has been up 5 s
HOST0_NS = 10**12


def host_ns(t_us: int) -> int:
    """Host receive time of a board time: 2 ms of link latency."""
    return HOST0_NS + (t_us - T0_US) * 1000 + 2_000_000


def make_lever_session(
    data_dir: Path,
    n_trials: int = 12,
    imaging_frames: int = 0,
    seed: int = 0,
    day: int = 0,
    subject: str = "m1",
    task: str = "mixed",
) -> Path:
    """A Task-C-like session: ``n_trials`` trials in two contexts, 1 kHz lever, optional imaging.

    Returns the session folder.
    """
    rng = np.random.default_rng(seed)
    meta = SessionMeta(
        subject_id=subject,
        task=task,
        rig_name="test-rig",
        rig_config=RIG_CONFIG,
        task_params={"block_trials": 6},
        params_hash="abc123",
        firmware={"lever_board": {"firmware": "lever_board", "version": "1.0"}},
        started_at=datetime(2026, 11, 20, 9, 0, tzinfo=UTC) + timedelta(days=day),
    )
    w = SessionWriter.create(data_dir, meta)
    trial_s = 2.0
    dur_us = int(n_trials * trial_s * 1e6) + 1_000_000
    t_us = T0_US + np.arange(0, dur_us, 1000, dtype=np.int64)
    pos_mm = 0.02 * rng.standard_normal(t_us.size)
    w.write_event(Event("session_start", "host", None, HOST0_NS - 1_000_000, data={"hash": "x"}))
    p_success = min(0.9, 0.3 + 0.2 * day)
    for k in range(n_trials):
        ctx = "cue_triggered" if (k // 6) % 2 == 0 else "self_initiated"
        ts = T0_US + int(k * trial_s * 1e6)
        cue = ts + 500_000
        rt_ms = float(rng.uniform(150, 400))
        cross = cue + int(rt_ms * 1000)
        ok = rng.random() < p_success
        end = cross + (300_000 if ok else 120_000)
        i0, i1 = (cross - T0_US) // 1000 - 100, (end - T0_US) // 1000 + 200
        ramp = np.clip(np.arange(i1 - i0) / 100.0, 0, 1) * (2.0 + 0.2 * rng.standard_normal())
        pos_mm[i0:i1] += ramp * np.exp(-np.maximum(np.arange(i1 - i0) - (i1 - i0 - 200), 0) / 50)
        evs = [("trial_start", ts, {"context": ctx, "block": k // 6})]
        if ctx == "cue_triggered":
            evs.append(("cue_on", cue, {"freq_hz": 10000}))
        evs.append(("lever_up", cross, {}))
        if ok:
            evs.append(("valve_open", cross + 200_000, {"duration_ms": 40.0, "volume_ul": 4.0}))
        evs.append(("trial_end", end, {"outcome": "reward" if ok else "early_release"}))
        for name, t, data in evs:
            w.write_event(Event(name, "lever_board", t, host_ns(t), trial=k, data=data))
        w.write_event(Event("trial_built", "task", None, host_ns(ts) + 500_000, trial=k))
        rec = TrialRecord(
            trial=k, context=ctx, block=k // 6, outcome="reward" if ok else "early_release",
            hold_ms=200.0, t_start_us=ts, t_ready_us=cue,
            t_cue_us=cue if ctx == "cue_triggered" else None, t_cross_us=cross,
            t_release_us=None if ok else end, t_reward_us=cross + 200_000 if ok else None,
            t_end_us=end, reward_ul=4.0 if ok else 0.0, valve_ms=40.0 if ok else 0.0,
            rt_ms=rt_ms if ctx == "cue_triggered" else None,
            achieved_hold_ms=(end - cross) / 1000,
        )  # fmt: skip
        w.write_trial(rec.row())
    counts = np.rint(512 + 40 * pos_mm).astype(np.int32)
    for s in range(0, t_us.size, 1000):
        w.write_lever(t_us[s : s + 1000], counts[s : s + 1000])
        w.write_raw("lever_board", bytes(rng.integers(1, 255, 64, dtype=np.uint8)), host_ns(
            int(t_us[s])))  # fmt: skip
    if imaging_frames:
        add_imaging(w, imaging_frames, seed)
    w.close()
    return w.folder


def add_imaging(w: SessionWriter, n_frames: int, seed: int = 0) -> None:
    """Frame-clock events + the real pipeline over a small synthetic movie into ``imaging/``."""
    from acquisition.sources.synthetic import SyntheticSource
    from rig.replay.imaging import imaging_params, run_pipeline

    fs = 30.0
    edges = T0_US + 200_000 + np.round(np.arange(n_frames) * 1e6 / fs).astype(np.int64)
    for i, t in enumerate(edges):
        w.write_event(Event("frame", "lever_board", int(t), host_ns(int(t)), frame=i,
                            data={"count": i}))  # fmt: skip
    src = SyntheticSource.generate(
        n_frames, size_px=64, n_cells=6, frame_rate_hz=fs, max_shift_px=2.0, seed=seed
    )
    with src:
        run_pipeline(src, w, fs, imaging_params(RIG_CONFIG), frame_clock_us=edges.tolist(),
                     roi_labels=src.truth.masks, warmup_frames=30, max_shift_px=6)  # fmt: skip


def read(folder: Path) -> SessionReader:
    return SessionReader(folder)

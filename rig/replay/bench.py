"""``rig bench replay``: how much faster than real time a behavior-only lever session replays.

Without ``--session`` it first records one: the simulated rig (byte-level board, learner mouse,
Task C) on its virtual clock for ``minutes`` of board time, stopped by ``max_duration_min``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

TARGET_SPEEDUP = 100.0


def record_sim_session(data_dir: Path, minutes: float, seed: int = 1) -> Path:
    """Record a ``minutes``-long simulated mixed-task session; returns its folder."""
    from rig.core.config import load_rig_config
    from rig.runner.lever import LeverRunner
    from tasks.params import make_params

    repo = Path(__file__).resolve().parents[2]
    rig = load_rig_config(repo / "hardware_configs" / "sim.yaml")
    rig = rig.model_copy(update={"data_dir": data_dir, "imaging": None})
    params = make_params(
        "mixed", {"max_duration_min": minutes, "max_rewards": 100_000, "seed": seed}
    )
    runner = LeverRunner(rig, "bench", "mixed", params, speed=None)
    runner.run()
    assert runner.session_dir is not None
    return runner.session_dir


def run_replay_bench(
    session: Path | None,
    tmp: Path,
    minutes: float = 60.0,
    repeats: int = 3,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Time ``repeats`` replays of ``session`` (recorded first when None); returns figures."""
    from rig.core.store import SessionReader
    from rig.replay import replay_session

    say = progress or (lambda s: None)
    if session is None:
        say(f"recording a {minutes:g}-minute simulated session (virtual clock)...")
        session = record_sim_session(tmp / "data", minutes)
    reader = SessionReader(session)
    walls: list[float] = []
    identical = True
    run = None
    for i in range(repeats):
        rep = replay_session(session, tmp / f"replay{i}")
        run = rep.run
        walls.append(run.wall_s)
        identical = identical and rep.identical
        say(f"replay {i + 1}/{repeats}: {run.wall_s:.2f} s ({run.speedup:.0f}x)")
    assert run is not None
    best = min(walls)
    raw_bytes = sum(len(c) for _, c in reader.raw("lever_board"))
    return {
        "session": str(session),
        "session_s": round(run.session_s, 3),
        "n_trials": len(reader.trials()),
        "n_events": len(reader.events()),
        "raw_bytes": raw_bytes,
        "n_chunks": run.n_chunks,
        "wall_s": [round(w, 3) for w in walls],
        "wall_s_best": round(best, 3),
        "wall_s_median": round(statistics.median(walls), 3),
        "speedup_best": round(run.session_s / best, 1),
        "speedup_median": round(run.session_s / statistics.median(walls), 1),
        "chunks_per_s": round(run.n_chunks / best),
        "identical": identical,
        "target_speedup": TARGET_SPEEDUP,
        "meets_target": run.session_s / best >= TARGET_SPEEDUP,
    }

"""Record the golden sessions in ``tests/data/golden/`` from the simulated rig.

Each session is recorded by the real runner (``LeverRunner`` / ``run_rotarod_session``) driving a
byte-level simulated board on its virtual clock, then packed as ``<name>.tar.xz`` (the folder
without ``lever.bin``: the raw bytes hold every sample and the replay regenerates it).

- ``cued``: Task B, stops at ``max_rewards``.
- ``self_initiated``: Task A, stops at ``max_rewards``.
- ``mixed_imaging``: Task C blocks with live imaging: the runner gives the simulated board a
  7.5 Hz frame clock and runs the pipeline over the seeded synthetic movie the rig config names,
  one frame per edge (a re-run regenerates the same frames); ROIs are the movie's true cell
  masks (``rois.kind = labels``).
- ``rotarod``: one rotarod day, 3 lanes, 2 trials, simulated mice.
- ``interrupted``: Task A in a child process killed with SIGKILL after 3 trials.

Run ``python scripts/make_golden.py [--only NAME]`` from the repository root; it overwrites the
archives. Recording is deterministic except host times and the kill point.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "data" / "golden"

#: Short intervals keep the sessions (and the archives) small.
ADAPTIVE = {"mode": "adaptive", "window_trials": 3, "step_ms": 50.0, "cap_ms": 500.0}
FAST_A = {"iti_s": 1.0, "quiet_s": 0.5, "consume_s": 0.5, "hold_ms": 300.0, "shaping": ADAPTIVE}
FAST_B = {"iti_min_s": 1.0, "iti_max_s": 2.0, "quiet_precue_s": 0.5, "consume_s": 0.5}


def sim_rig(data_dir: Path, skill: float = 0.45, imaging: dict[str, Any] | None = None) -> Any:
    from rig.core.config import ImagingConfig, load_rig_config

    rig = load_rig_config(REPO / "hardware_configs" / "sim.yaml")
    lb = rig.lever_board
    assert lb is not None
    mouse = lb.mouse.model_copy(update={"skill": skill, "seed": 7})  # type: ignore[union-attr]
    rig = rig.model_copy(
        update={
            "name": "golden-sim",
            "data_dir": data_dir,
            "lever_board": lb.model_copy(update={"noise_counts": 0.0, "mouse": mouse}),
            "imaging": ImagingConfig.model_validate(imaging) if imaging else None,
        }
    )
    return rig


def record_lever(data_dir: Path, task: str, params: dict[str, Any], **rig_kw: Any) -> Path:
    from rig.runner.lever import LeverRunner
    from tasks.params import make_params

    rig = sim_rig(data_dir, **rig_kw)
    runner = LeverRunner(rig, "golden", task, make_params(task, params), speed=None)
    summary = runner.run()
    print(f"  {task}: {summary}")
    assert runner.session_dir is not None
    return runner.session_dir


def true_masks_file(data_dir: Path, imaging: dict[str, Any]) -> Path:
    """The synthetic movie's true cell masks as a label image (``.npy``) for ``rois.kind =
    labels`` (cell placement comes first from the seed, so any movie length has these masks)."""
    import numpy as np

    from acquisition.sources.synthetic import make_movie

    src = {k: v for k, v in imaging["source"].items() if k != "kind"}
    movie = make_movie(1, render_frames=False, **src)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "true_masks.npy"
    np.save(path, movie.masks.astype(np.int32))
    return path


def record_rotarod(data_dir: Path) -> Path:
    from rig.core.config import load_rig_config
    from rig.runner.rotarod import run_rotarod_session
    from tasks.rotarod import RotarodParams, SimRotarodMouse

    rig = load_rig_config(REPO / "hardware_configs" / "sim.yaml")
    rig = rig.model_copy(update={"name": "golden-sim", "data_dir": data_dir, "imaging": None})
    params = RotarodParams.model_validate(
        {"trials_per_day": 2, "ramp_s": 60.0, "max_s": 60.0, "end_rpm": 20.0, "iti_min_s": 600}
    )
    names = ["r1", "r2", "r3"]
    mice = {i: SimRotarodMouse(n, seed=i + 1) for i, n in enumerate(names)}
    res = run_rotarod_session(rig, params, names, day=2, group="golden", mice=mice)
    print(f"  rotarod: {res.status}, {len(res.trials)} lane records")
    return res.folder


CHILD = """
import sys
sys.path.insert(0, {repo!r})
from pathlib import Path
sys.argv = ["make_golden"]
from scripts.make_golden import sim_rig
from rig.runner.lever import LeverRunner
from tasks.params import make_params
rig = sim_rig(Path({data!r}))
LeverRunner(rig, "golden", "self_initiated",
            make_params("self_initiated", {params!r}), speed=2.0).run()
"""


def record_interrupted(data_dir: Path) -> Path:
    """Task A in a child process, SIGKILLed once three trials are in ``trials.tsv``."""
    params = {**FAST_A, "max_rewards": 1000}
    code = CHILD.format(repo=str(REPO), data=str(data_dir), params=params)
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            found = list(data_dir.glob("golden/*/trials.tsv"))
            if found and len(found[0].read_text().splitlines()) >= 2 + 3:
                break
            if child.poll() is not None:
                raise RuntimeError(f"child exited early with {child.returncode}")
            time.sleep(0.05)  # polling a file another process writes
        else:
            raise RuntimeError("no 3 trials within 120 s")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    folder = found[0].parent
    print(f"  interrupted: killed after {len(found[0].read_text().splitlines()) - 2} trials")
    return folder


def pack(folder: Path, name: str) -> Path:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    out = GOLDEN / f"{name}.tar.xz"
    with tarfile.open(out, "w:xz", preset=9) as tar:
        for p in sorted(folder.rglob("*")):
            if p.name in ("lever.bin",) or p.parent.name == "report":
                continue
            tar.add(p, arcname=f"{name}/{p.relative_to(folder)}", recursive=False)
    print(f"  -> {out.relative_to(REPO)}: {out.stat().st_size / 1024:.0f} kB")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", help="record only these sessions")
    args = ap.parse_args()
    want = set(args.only or ["cued", "self_initiated", "mixed_imaging", "rotarod", "interrupted"])
    with tempfile.TemporaryDirectory(prefix="golden-") as tmp:
        root = Path(tmp)
        if "cued" in want:
            pack(record_lever(root / "c", "cue_triggered", {**FAST_B, "max_rewards": 10}), "cued")
        if "self_initiated" in want:
            f = record_lever(root / "s", "self_initiated", {**FAST_A, "max_rewards": 10})
            pack(f, "self_initiated")
        if "rotarod" in want:
            pack(record_rotarod(root / "r"), "rotarod")
        if "interrupted" in want:
            pack(record_interrupted(root / "i"), "interrupted")
        if "mixed_imaging" in want:
            imaging: dict[str, Any] = {
                "source": {"kind": "synthetic", "size_px": 64, "n_cells": 5,
                           "frame_rate_hz": 7.5, "max_shift_px": 2.0, "seed": 3},
                "backend": "numpy", "baseline_window_s": 20.0,
            }  # fmt: skip
            masks = true_masks_file(root / "m", imaging)
            imaging["rois"] = {"kind": "labels", "path": str(masks)}
            params = {"block_trials": 4, "max_rewards": 10, "self_initiated": FAST_A,
                      "cue_triggered": FAST_B, "max_duration_min": 5.0}  # fmt: skip
            f = record_lever(root / "m", "mixed", params, imaging=imaging)
            pack(f, "mixed_imaging")


if __name__ == "__main__":
    main()

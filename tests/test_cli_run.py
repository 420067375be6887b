"""`rig run` dispatch: the rotarod task, and the app path when there is no display."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from typer.testing import CliRunner

from rig.cli import app
from rig.core.store import SessionReader, find_sessions

SHORT_DAY = ["--param", "max_s=30", "--param", "ramp_s=30", "--param", "trials_per_day=2"]
LEVER = ["--subject", "m1", "--task", "mixed"]


def _config(tmp_path: Path, sim_config_path: Path) -> Path:
    cfg = yaml.safe_load(sim_config_path.read_text())
    cfg["data_dir"] = str(tmp_path / "data")
    out = tmp_path / "rig.yaml"
    out.write_text(yaml.safe_dump(cfg))
    return out


def test_run_task_rotarod_records_a_day(tmp_path: Path, sim_config_path: Path) -> None:
    cfg = _config(tmp_path, sim_config_path)
    result = CliRunner().invoke(
        app,
        ["run", "--config", str(cfg), "--subject", "m1,m2", "--task", "rotarod", *SHORT_DAY],
    )
    assert result.exit_code == 0, result.output
    sessions = find_sessions(tmp_path / "data")
    assert len(sessions) == 1
    r = SessionReader(sessions[0])
    assert r.status == "complete" and r.meta.task == "rotarod"
    rows = r.trials()
    assert len(rows) == 2 * 2  # two trials, two lanes
    assert "lane 1 m2" in result.output


def test_run_without_display_says_to_use_headless(tmp_path: Path, sim_config_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.pop("QT_QPA_PLATFORM", None)
    p = subprocess.run(
        [sys.executable, "-m", "rig", "run", "--config", str(sim_config_path), *LEVER],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert p.returncode == 3
    assert "--headless" in p.stderr

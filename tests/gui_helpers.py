"""Helpers for the GUI tests: a window wired to a runner factory, and waiting helpers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gui.runner_api import SessionRequest, SessionRunner
from gui.synthetic import SyntheticRunner
from rig.core.config import RigConfig, load_rig_config

REPO = Path(__file__).resolve().parents[1]


def sim_rig(tmp_path: Path) -> RigConfig:
    """hardware_configs/sim.yaml with its data_dir moved into ``tmp_path``."""
    rig = load_rig_config(REPO / "hardware_configs" / "sim.yaml")
    return rig.model_copy(update={"data_dir": tmp_path / "data"})


class SyntheticFactory:
    """Runner factory handing out small, fast :class:`SyntheticRunner` sessions."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = {"frame_rate_hz": 30.0, "n_rois": 20, "size_px": 48, "trial_s": 0.25}
        self.kwargs.update(kwargs)
        self.requests: list[SessionRequest] = []
        self.runners: list[SyntheticRunner] = []

    def __call__(self, request: SessionRequest) -> SessionRunner:
        self.requests.append(request)
        runner = SyntheticRunner(**self.kwargs)
        self.runners.append(runner)
        return runner

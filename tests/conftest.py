"""Shared fixtures. Qt runs offscreen everywhere (CI has no display)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
HARDWARE_CONFIGS = REPO / "hardware_configs"


@pytest.fixture
def repo_root() -> Path:
    return REPO


@pytest.fixture
def sim_config_path() -> Path:
    return HARDWARE_CONFIGS / "sim.yaml"


def require_tools(*tools: str, packages: str) -> None:
    """Skip the calling test unless every executable in ``tools`` is on PATH."""
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}: install with 'apt-get install {packages}'")

"""Shared fixtures. Qt runs offscreen everywhere (CI has no display)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# The suite's property tests run a fixed example sequence (derandomize) so that a CI run is
# reproducible: a failure on one commit fails on every rerun of it. `make fuzz` switches to the
# "fuzz" profile, which draws fresh random examples on every run to hunt for new bugs; every bug
# it finds gets a plain regression test (see tests/test_faults_fuzz.py).
# (hypothesis is a dev extra; the GPU machine's image runs tests/gpu without it.)
try:
    from hypothesis import settings
except ImportError:
    pass
else:
    settings.register_profile("ci", derandomize=True, print_blob=True)
    settings.register_profile("fuzz", derandomize=False, print_blob=True)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

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

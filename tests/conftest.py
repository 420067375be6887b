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

# Qt's widgets need system libraries (libEGL, libxkbcommon, fontconfig...). Where they are
# missing and cannot be installed (not root), the GUI test modules are left out with a message
# naming the packages, instead of failing to import. `make test` also turns pytest-qt off then
# (the plugin imports QtWidgets when pytest starts).
QT_PACKAGES = "libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0"


def _qt_problem() -> str | None:
    try:
        import PyQt6.QtWidgets  # noqa: F401
    except ImportError as e:
        return f"{type(e).__name__}: {e}"
    return None


QT_PROBLEM = _qt_problem()
QT_SKIP_REASON = (
    f"Qt cannot load ({QT_PROBLEM}); install its libraries with 'apt-get install {QT_PACKAGES}'"
)


class _QtMissingModule(pytest.Module):
    """A GUI test module reported as skipped, never imported (its imports need Qt)."""

    def collect(self):  # type: ignore[no-untyped-def]
        pytest.skip(QT_SKIP_REASON, allow_module_level=True)


def pytest_pycollect_makemodule(
    module_path: Path, parent: pytest.Collector
) -> pytest.Module | None:
    if QT_PROBLEM and module_path.name.startswith("test_gui"):
        return _QtMissingModule.from_parent(parent, path=module_path)
    return None


def pytest_report_header() -> str | None:
    return f"GUI tests skipped: {QT_SKIP_REASON}" if QT_PROBLEM else None


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

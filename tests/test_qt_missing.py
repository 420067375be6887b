"""Without Qt's system libraries the GUI tests skip with a message naming the packages to install
(DEVELOPERS.md: "when not root and they are missing, the tests that need them skip")."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gui_modules_skip_with_install_hint_when_qt_cannot_load(tmp_path: Path) -> None:
    # A sitecustomize that makes `import PyQt6.QtWidgets` fail, as a missing libEGL does.
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\nsys.modules['PyQt6.QtWidgets'] = None\n", encoding="utf-8"
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "QT_QPA_PLATFORM": "offscreen"}
    env.pop("PYTEST_ADDOPTS", None)
    # -p no:pytest-qt is what `make test` adds when Qt cannot load (the plugin needs QtWidgets).
    cmd = [sys.executable, "-m", "pytest", "-p", "no:pytest-qt", "-p", "no:cacheprovider", "-rs"]
    cmd += ["tests/test_gui.py", "tests/test_gui_session.py", "tests/test_params.py"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "2 skipped" in out, out
    assert "apt-get install libegl1" in out, out
    assert " passed" in out, out  # the non-GUI module still ran

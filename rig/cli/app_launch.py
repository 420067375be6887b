"""Open the PyQt6 app from the command line.

``rig.cli`` sits below ``gui`` in the layering, so the app runs as its own process
(``python -m gui.app``); it exits 3 when there is no display, and the caller's hint says what to
do instead.
"""

from __future__ import annotations

import subprocess
import sys

import typer


def launch_app(args: list[str], no_display_hint: str) -> int:
    """Run ``python -m gui.app ARGS``; return its exit code (3: no display, hint printed)."""
    code = subprocess.call([sys.executable, "-m", "gui.app", *args])
    if code == 3:
        typer.echo(no_display_hint, err=True)
    return code

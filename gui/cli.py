"""``python -m gui.app``: open the app from a shell (``rig demo`` and ``make demo`` use it)."""

from __future__ import annotations

import sys

from gui.app import main
from rig.core.errors import ConfigError


def display_available() -> bool:
    """Whether a window can be shown: an X11/Wayland display, or Qt told to render offscreen."""
    import os

    if os.environ.get("QT_QPA_PLATFORM", "") in ("offscreen", "minimal", "vnc"):
        return True
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def cli(argv: list[str] | None = None) -> int:
    """``python -m gui.app [CONFIG] [--task T] [--subject S] [--autostart] [--speed X]``.

    Exit codes: the app's; 2 for a bad config or argument; 3 when there is no display.
    """
    import argparse

    ap = argparse.ArgumentParser(prog="python -m gui.app", description="motor-rig app")
    ap.add_argument("config", nargs="?", default=None, help="rig config (default: sim.yaml)")
    ap.add_argument("--task", default=None, help="preselect a task (e.g. mixed)")
    ap.add_argument("--subject", default=None, help="preselect a subject id")
    ap.add_argument("--autostart", action="store_true", help="start the session at once")
    ap.add_argument(
        "--speed", type=float, default=None, help="simulated boards: x real time (default 1)"
    )
    args = ap.parse_args(argv)
    if not display_available():
        print(
            "no display (DISPLAY/WAYLAND_DISPLAY unset): use 'rig demo --headless', or set "
            "QT_QPA_PLATFORM=offscreen",
            file=sys.stderr,
        )
        return 3
    extra = {"speed": args.speed} if args.speed else None
    try:
        return main(
            args.config,
            task=args.task,
            subject_id=args.subject,
            autostart=args.autostart,
            session_extra=extra,
        )
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

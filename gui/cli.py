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
    """``python -m gui.app [CONFIG] [--task T] [--subject S] [--autostart] [--speed X]`` or
    ``python -m gui.app --replay SESSION [--speed X]`` (a recorded session at 1..20x).

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
    ap.add_argument(
        "--replay", default=None, metavar="SESSION", help="play a recorded session folder"
    )
    args = ap.parse_args(argv)
    if args.replay is not None and not 1.0 <= (args.speed or 1.0) <= 20.0:
        print(f"error: --speed {args.speed}: a replay plays at 1..20x", file=sys.stderr)
        return 2
    if not display_available():
        print(
            "no display (DISPLAY/WAYLAND_DISPLAY unset): use 'rig demo --headless', or set "
            "QT_QPA_PLATFORM=offscreen",
            file=sys.stderr,
        )
        return 3
    if args.replay is not None:
        from gui.replay import replay_main
        from rig.core.errors import SessionFormatError

        try:
            return replay_main(args.replay, args.speed or 1.0)
        except SessionFormatError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
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

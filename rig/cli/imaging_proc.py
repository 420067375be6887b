"""`rig register`, `rig traces`, `rig bench imaging` (filled in by the imaging work)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this module's commands to the main app and the `rig bench` group."""

"""`rig replay`, `rig export`, `rig report`, `rig bench replay` (filled in by the replay work)."""

from __future__ import annotations

import typer


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this module's commands to the main app and the `rig bench` group."""

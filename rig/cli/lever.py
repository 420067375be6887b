"""`rig` commands for the lever tasks: ``run``, ``demo`` (filled in by the lever-tasks work)."""

from __future__ import annotations

import typer


def demo(
    headless: bool = typer.Option(False, "--headless", help="run without the GUI"),
) -> None:
    """Run a simulated session on hardware_configs/sim.yaml (not implemented yet: exits 1)."""
    typer.echo(
        "rig demo will run a simulated mixed-block lever session on hardware_configs/sim.yaml\n"
        "(simulated lever board + simulated mouse + synthetic imaging) and show it in the app,\n"
        "or print live progress and a metrics table with --headless.\n"
        "Not implemented yet: the lever-task and GUI work has not landed.",
        err=True,
    )
    raise typer.Exit(1)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command("demo")(demo)

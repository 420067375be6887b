"""The ``rig`` command line (typer). Each command group lives in its own module here and
registers itself through ``register(app)``; heavy imports happen inside commands so that
``rig --help`` stays fast.
"""

from __future__ import annotations

import typer

from rig.cli import board, core_cmds, imaging, imaging_proc, lever, replay, rotarod

app = typer.Typer(
    name="rig",
    help="motor-rig: behavioral rig controller with GPU two-photon acquisition.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks that print figures (and save JSON with --json).")
app.add_typer(bench_app, name="bench")

for module in (core_cmds, board, lever, rotarod, imaging, imaging_proc, replay):
    module.register(app, bench_app)


def main() -> None:
    """Console-script entry point."""
    app()

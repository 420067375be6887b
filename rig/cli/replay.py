"""`rig replay`, `rig export`, `rig report`, `rig bench replay`.

The work lives in ``rig.replay``, ``rig.export`` and ``rig.report``; these commands parse options,
call it, print the outcome and exit non-zero on failure (2: bad input, 1: replay differences).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def _fail(msg: str, code: int = 2) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


def export_cmd(
    session: Annotated[Path, typer.Argument(help="session folder")],
    nwb: Annotated[Path, typer.Option("--nwb", help="NWB file to write")],
    rois: Annotated[
        Path | None, typer.Option(help="ROI file if the session has no imaging/roi_labels.npy")
    ] = None,
    movie: Annotated[
        list[Path] | None, typer.Option(help="movie TIFF(s) to reference (repeatable)")
    ] = None,
    species: Annotated[str, typer.Option(help="Latin binomial")] = "Mus musculus",
    sex: Annotated[str, typer.Option(help="M | F | U | O")] = "U",
    age: Annotated[str | None, typer.Option(help="ISO 8601 duration, e.g. P90D")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing file")] = False,
) -> None:
    """Write SESSION as an NWB file (pynwb) and validate it."""
    from rig.core.errors import RigError
    from rig.export.nwb import export_nwb

    if not session.is_dir():
        _fail(f"{session}: no such session folder")
    try:
        s = export_nwb(
            session, nwb, rois=rois, movie=movie, species=species, sex=sex, age=age,
            overwrite=overwrite,
        )  # fmt: skip
    except (RigError, OSError, ValueError) as e:
        _fail(str(e))
        return
    typer.echo(
        f"{s.path}: {s.n_trials} trials, {s.n_events} events in {s.n_event_tables} tables, "
        f"{s.n_lever_samples} lever samples, {s.n_frames} frames, {s.n_rois} ROIs; "
        "pynwb validation passed"
    )
    for w in s.warnings:
        typer.echo(f"warning: {w}", err=True)


def report_cmd(
    target: Annotated[Path, typer.Argument(help="a session folder or a subject folder")],
    out: Annotated[
        Path | None, typer.Option(help="output folder (default: <target>/report)")
    ] = None,
) -> None:
    """HTML report with PNG plots of one session, or of every session of a subject."""
    from rich.progress import Progress

    from rig.core.errors import RigError
    from rig.report.session import session_report
    from rig.report.subject import subject_report

    if not target.is_dir():
        _fail(f"{target}: no such folder")
    try:
        if (target / "session.json").exists():
            index = session_report(target, out).index
        else:
            with Progress(transient=True) as bar:
                task = bar.add_task("sessions", total=None)

                def step(done: int, total: int, label: str) -> None:
                    bar.update(task, completed=done, total=total, description=label)

                index = subject_report(target, out, progress=step).index
    except (RigError, OSError, ValueError) as e:
        _fail(str(e))
        return
    typer.echo(f"report: {index}")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this module's commands to the main app and the `rig bench` group."""
    app.command("export")(export_cmd)
    app.command("report")(report_cmd)

"""`rig replay`, `rig export`, `rig report`, `rig bench replay`.

The work lives in ``rig.replay``, ``rig.export`` and ``rig.report``; these commands parse options,
call it, print the outcome and exit non-zero on failure (2: bad input, 1: replay differences).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rig.cli.app_launch import launch_app


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


def _speed(value: str) -> float | None:
    if value == "max":
        return None
    try:
        x = float(value.rstrip("x"))
    except ValueError:
        x = -1.0
    if x <= 0:
        raise typer.BadParameter(f"--speed {value!r}: expected a positive number or 'max'")
    return x


def _replay_gui(session: Path, speed: float) -> None:
    """``--gui``: the app in replay mode, in its own process (rig.cli must not import gui)."""
    if not 1.0 <= speed <= 20.0:
        _fail(f"--speed {speed:g}: --gui plays at 1..20x")
    raise typer.Exit(
        launch_app(
            ["--replay", str(session), "--speed", f"{speed:g}"],
            "rig replay: no display; drop --gui to replay headless",
        )
    )


def replay_cmd(
    session: Annotated[Path, typer.Argument(help="session folder")],
    speed: Annotated[str, typer.Option(help="x real time (e.g. 1, 20) or 'max'")] = "max",
    reprocess_imaging: Annotated[
        bool, typer.Option("--reprocess-imaging", help="re-run the imaging pipeline, compare ΔF/F")
    ] = False,
    backend: Annotated[
        str | None, typer.Option(help="imaging backend for the re-run: auto | numpy | cupy")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="keep the regenerated session here (default: temp)")
    ] = None,
    gui: Annotated[
        bool, typer.Option("--gui", help="play the session in the app's panels at 1..20x")
    ] = False,
) -> None:
    """Replay SESSION's recorded bytes through the driver and task code; compare the results.

    Exit status 0: identical events and trials (and ΔF/F within tolerance); 1: differences
    (printed); 2: the session cannot be replayed. With ``--gui`` the session plays in the app
    instead (``--speed`` 1..20, default 1x; no comparison); 3: no display for it.
    """
    import shutil
    import tempfile

    from rig.core.errors import RigError
    from rig.replay import replay_session

    if not (session / "session.json").is_file():
        _fail(f"{session}: not a session folder (no session.json)")
    x = _speed(speed)
    if gui:
        _replay_gui(session, 1.0 if x is None else x)
        return
    root = out if out is not None else Path(tempfile.mkdtemp(prefix="rig-replay-"))
    try:
        rep = replay_session(session, root, speed=x, reprocess_imaging=reprocess_imaging,
                             backend=backend)  # fmt: skip
    except (RigError, OSError, ValueError) as e:
        _fail(str(e))
        return
    finally:
        if out is None:
            shutil.rmtree(root, ignore_errors=True)
    c, r = rep.comparison, rep.run
    typer.echo(
        f"replayed {r.session_s:.1f} s of session in {r.wall_s:.2f} s ({r.speedup:.0f}x real "
        f"time): {c.n_trials} trials, {c.n_board_events} board events, {c.n_host_events} host "
        f"events, {c.n_lever_samples} lever samples compared"
    )
    if rep.imaging is not None:
        im = rep.imaging
        typer.echo(
            f"imaging: {im.n_frames} frames x {im.n_cells} cells re-processed, "  # type: ignore[attr-defined]
            f"max |ΔF/F difference| {im.max_abs_diff:.3g}"  # type: ignore[attr-defined]
        )
    if c.n_inputs_skipped:
        typer.echo(f"({c.n_inputs_skipped} GUI/manual events are inputs: not compared)")
    if out is not None:
        typer.echo(f"regenerated session: {r.regenerated}")
    if rep.identical:
        typer.echo("identical")
        return
    typer.echo(f"{len(rep.differences)} difference(s):")
    for d in rep.differences:
        typer.echo(f"  {d}")
    raise typer.Exit(1)


def bench_replay_cmd(
    session: Annotated[
        Path | None, typer.Option(help="replay this session (default: record a simulated one)")
    ] = None,
    minutes: Annotated[float, typer.Option(help="length of the recorded simulated session")] = 60,
    repeats: Annotated[int, typer.Option(min=1, help="replays timed (best is reported)")] = 3,
    json_path: Annotated[Path | None, typer.Option("--json", help="write figures here")] = None,
) -> None:
    """Replay speed of a behavior-only lever session (target: >= 100x real time)."""
    import json
    import os
    import shutil
    import tempfile

    from rig.replay.bench import run_replay_bench

    tmp = Path(tempfile.mkdtemp(prefix="rig-bench-replay-"))
    try:
        res = run_replay_bench(
            session, tmp, minutes=minutes, repeats=repeats,
            progress=lambda s: typer.echo(s, err=True),
        )  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res["load_avg_1min"] = os.getloadavg()[0]
    res["cpu_count"] = os.cpu_count()
    for k in ("session_s", "wall_s_best", "wall_s_median", "speedup_best", "speedup_median",
              "chunks_per_s", "identical", "target_speedup", "meets_target"):  # fmt: skip
        typer.echo(f"{k:>16}: {res[k]}")
    if json_path is not None:
        json_path.write_text(json.dumps(res, indent=1) + "\n")
        typer.echo(f"figures written to {json_path}")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this module's commands to the main app and the `rig bench` group."""
    app.command("export")(export_cmd)
    app.command("report")(report_cmd)
    app.command("replay")(replay_cmd)
    bench_app.command("replay")(bench_replay_cmd)

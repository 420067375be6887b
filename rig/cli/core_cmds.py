"""Core commands: ``config check``, ``info``, ``sessions list``."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Annotated

import typer

from rig.core.errors import ConfigError, Problem, SessionFormatError

config_app = typer.Typer(help="Rig configuration files.", no_args_is_help=True)
sessions_app = typer.Typer(help="Recorded sessions.", no_args_is_help=True)


def check_config_file(path: Path) -> list[Problem]:
    """Every problem in a config file: rig config, or a subject/task file by its top-level keys.

    Returns an empty list when the file is valid.
    """
    from rig.core.config import RigConfig, SubjectState, load_yaml, validate_mapping

    try:
        data = load_yaml(path)
        model: type = RigConfig
        if isinstance(data, dict) and "subject_id" in data:
            model = SubjectState
        validate_mapping(model, data, path)
    except ConfigError as e:
        return e.problems
    return []


@config_app.command("check")
def config_check(
    files: Annotated[list[Path], typer.Argument(help="rig config YAML file(s) to validate")],
) -> None:
    """Validate config files: prints OK, or one line per problem (file, field, expected); exit 2."""
    bad = 0
    for f in files:
        problems = check_config_file(f)
        if problems:
            bad += 1
            for p in problems:
                typer.echo(str(p), err=True)
        else:
            typer.echo(f"{f}: OK")
    if bad:
        raise typer.Exit(2)


def _gpu_info() -> str:
    try:
        import cupy  # type: ignore[import-not-found,import-untyped,unused-ignore]

        n = cupy.cuda.runtime.getDeviceCount()
        if n == 0:
            return "CuPy installed, no CUDA device"
        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        return f"{n} CUDA device(s): {name} (CuPy {cupy.__version__})"
    except ImportError:
        return "none (CuPy not installed: pip install 'motor-rig[gpu]'); numpy backend"
    except Exception as e:  # CUDA driver errors come in many types
        return f"none ({type(e).__name__}: {e}); numpy backend"


@sessions_app.command("list")
def sessions_list(
    data_dir: Annotated[Path, typer.Argument(help="data directory holding <subject>/<session>/")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of a table")] = False,
) -> None:
    """List the sessions under DATA_DIR with subject, task, start, status and trial count."""
    from rig.core.store import SessionReader, find_sessions

    if not data_dir.is_dir():
        typer.echo(f"{data_dir}: not a directory", err=True)
        raise typer.Exit(2)
    rows = []
    for folder in find_sessions(data_dir):
        try:
            rows.append(SessionReader(folder).summary())
        except SessionFormatError as e:
            rows.append({"folder": str(folder), "status": f"unreadable: {e}"})
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("subject", "session", "task", "started", "status", "trials")
    for r in rows:
        table.add_row(
            r.get("subject", "?"),
            Path(r["folder"]).name,
            r.get("task", "?"),
            r.get("started_at", "?"),
            r["status"],
            str(r.get("n_trials", "")),
        )
    Console().print(table)
    if not rows:
        typer.echo(f"no sessions under {data_dir}")


def info() -> None:
    """Versions, GPU found or not, serial ports seen."""
    from importlib.metadata import PackageNotFoundError, version

    import rig

    typer.echo(f"motor-rig {rig.__version__}")
    typer.echo(f"python {sys.version.split()[0]} on {platform.platform()}")
    for pkg in ("numpy", "pydantic", "pyserial", "PyQt6", "pyqtgraph", "scanimage-tiff-reader"):
        try:
            typer.echo(f"  {pkg} {version(pkg)}")
        except PackageNotFoundError:
            typer.echo(f"  {pkg} (not installed)")
    typer.echo(f"GPU: {_gpu_info()}")
    from serial.tools import list_ports

    ports = list(list_ports.comports())
    typer.echo("serial ports: " + (", ".join(p.device for p in ports) if ports else "none seen"))


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
    app.add_typer(sessions_app, name="sessions")
    app.command("info")(info)

"""`rig` commands for the lever tasks: ``run`` (one session) and ``demo`` (simulated sessions).

Heavy imports (numpy, scipy, the runner) happen inside the commands so ``rig --help`` is fast.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from rig.cli.app_launch import launch_app

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "hardware_configs"
PACKAGED_CONFIGS = Path(__file__).resolve().parents[1] / "_hardware_configs"


def sim_config_path() -> Path:
    """``hardware_configs/sim.yaml`` from the checkout, or the copy packaged in the wheel."""
    for base in (REPO_CONFIGS, PACKAGED_CONFIGS):
        if (base / "sim.yaml").is_file():
            return base / "sim.yaml"
    raise FileNotFoundError("hardware_configs/sim.yaml not found (checkout or wheel)")


def display_available(env: dict[str, str] | None = None) -> bool:
    """Whether a GUI could open: decided from the environment alone (no Qt import here)."""
    e = os.environ if env is None else env
    if e.get("QT_QPA_PLATFORM", "") in ("offscreen", "minimal"):
        return False
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(e.get("DISPLAY") or e.get("WAYLAND_DISPLAY"))


def progress_line(p: dict[str, Any]) -> str:
    """One live status line: trials, success rate (all and last 20), rewards, µl, time."""
    rate = f"{p['success_rate']:.0%}" if p["trials"] else "-"
    last = f"{p['success_last20']:.0%}" if p["trials"] else "-"
    return (
        f"t={p['elapsed_s']:7.1f}s  trials {p['trials']:4d}  success {rate:>4} "
        f"(last 20: {last:>4})  rewards {p['rewards']:4d}  water {p['reward_ul']:7.1f} µl"
        f"  hold {_holds(p['hold_ms'])}"
        + (f"  RT {p['rt_ms_median']:.0f} ms" if p.get("rt_ms_median") is not None else "")
    )


def imaging_line(fig: dict[str, Any]) -> str:
    """The session's imaging figures (``LeverRunner.summary()["imaging"]``) on one line."""

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f} ms"

    return (
        f"imaging: {fig['frames']} frames for {fig['frame_clock_edges']} frame-clock edges, "
        f"latency p50 {ms(fig['latency_ms_p50'])} p99 {ms(fig['latency_ms_p99'])}, "
        f"dropped {fig['dropped']}"
    )


def _holds(hold_ms: dict[str, float]) -> str:
    short = {"self_initiated": "SI", "cue_triggered": "CT"}
    return " ".join(f"{short.get(k, k)} {v:.0f} ms" for k, v in hold_ms.items())


def _print_metrics(folder: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    from tasks.metrics import metrics_rows, session_metrics

    header, rows = metrics_rows(session_metrics(folder))
    table = Table(*header, title=f"metrics: {folder.name}")
    for r in rows:
        table.add_row(*r)
    Console().print(table)


def _run_one(
    rig: Any,
    subject: str,
    task: str,
    params: Any,
    speed: float | None,
    duration_s: float | None,
    quiet: bool = False,
) -> Any:
    """Run one session with a live progress line; returns the runner's summary."""
    from rig.runner.lever import LeverRunner

    runner = LeverRunner(rig, subject, task, params, speed=speed, duration_s=duration_s)
    tty = sys.stdout.isatty()

    def show(_: dict[str, Any]) -> None:
        if quiet:
            return
        line = progress_line(runner.progress())
        typer.echo(("\r" + line) if tty else line, nl=not tty)

    runner.signals.trial.connect(show)
    try:
        summary = runner.run()
    except KeyboardInterrupt:
        runner.stop("stopped by hand (Ctrl-C)")
        summary = runner.summary()
    if tty and not quiet:
        typer.echo("")
    return summary


def run(
    config: Annotated[Path, typer.Option("--config", help="rig config YAML")],
    subject: Annotated[str, typer.Option("--subject", help="subject id")],
    task: Annotated[
        str, typer.Option("--task", help="self_initiated | cue_triggered | mixed | rotarod")
    ],
    param: Annotated[
        list[str] | None, typer.Option("--param", help="key=value (repeatable; a.b=v nests)")
    ] = None,
    duration: Annotated[
        float | None, typer.Option("--duration", help="stop after this many seconds")
    ] = None,
    speed: Annotated[
        float | None,
        typer.Option("--speed", help="simulated rigs: x real time (0 = as fast as possible)"),
    ] = None,
    headless: Annotated[
        bool, typer.Option("--headless", help="no GUI: live progress line in the terminal")
    ] = False,
) -> None:
    """Run one session (lever task or rotarod day): live progress, then the metrics table.

    Without --headless the app opens on the config with the task preselected and started.
    """
    from rig.core.config import load_rig_config
    from rig.core.errors import RigError
    from tasks.params import make_params, parse_overrides

    if task == "rotarod":
        from rig.cli.rotarod import run_task_rotarod

        # One subject per lane ("m1,m2"); any positive --speed runs the rod on the wall clock.
        run_task_rotarod(config, subject, param or [], realtime=bool(speed))
        return
    if not headless:
        raise typer.Exit(_run_in_app(config, subject, task, param))
    try:
        rig = load_rig_config(config)
        params = make_params(task, parse_overrides(param or []))
        summary = _run_one(rig, subject, task, params, speed, duration)
    except (RigError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"session {summary['folder']}: {summary['status']} ({summary['stop_reason']})")
    _print_metrics(Path(summary["folder"]))
    if summary.get("imaging"):
        typer.echo(imaging_line(summary["imaging"]))


def _run_in_app(config: Path, subject: str, task: str, param: list[str] | None) -> int:
    """Open the app on CONFIG with the task preselected and started."""
    if param:
        typer.echo(
            "rig run: --param is for --headless runs; set parameters in the app's form", err=True
        )
        return 2
    return launch_app(
        [str(config), "--task", task, "--subject", subject, "--autostart"],
        "rig run: no display; add --headless to run in the terminal",
    )


def demo(
    headless: Annotated[bool, typer.Option("--headless", help="run without the GUI")] = False,
    days: Annotated[int, typer.Option("--days", min=1, max=30, help="simulated days")] = 1,
    minutes: Annotated[float, typer.Option("--minutes", help="minutes per session")] = 10.0,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="where sessions go (default: a temp dir)")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="simulated mouse seed")] = 1,
) -> None:
    """Simulated mixed-block (cue-triggered + self-initiated) sessions on sim.yaml, at top speed,
    ending with the metrics table; with --days N, N days with shaping carried over."""
    if not headless:
        if display_available():
            raise typer.Exit(
                launch_app(
                    [str(sim_config_path()), "--task", "mixed", "--autostart"],
                    "rig demo: no display; add --headless to run in the terminal",
                )
            )
        typer.echo("no display found: running the demo headless", err=True)
    from rig.core.config import load_rig_config
    from tasks.params import MixedParams

    rig = load_rig_config(sim_config_path())
    out = data_dir or Path(tempfile.mkdtemp(prefix="motor-rig-demo-"))
    rig = rig.model_copy(update={"data_dir": out})
    assert rig.lever_board is not None and rig.lever_board.driver == "sim"
    mouse = rig.lever_board.mouse.model_copy(update={"seed": seed})
    rig.lever_board = rig.lever_board.model_copy(update={"mouse": mouse})
    shaping = {"mode": "adaptive", "cap_ms": 800.0}
    params = MixedParams(
        max_duration_min=minutes,
        block_trials=10,
        self_initiated={"hold_ms": 300.0, "shaping": shaping},
        cue_triggered={"hold_ms": 200.0, "shaping": shaping},
    )
    typer.echo(f"demo: {days} simulated day(s) of {minutes:g} min, sessions in {out}")
    rows = []
    summary: dict[str, Any] = {}
    for day in range(1, days + 1):
        summary = _run_one(rig, "demo_mouse", "mixed", params, 0.0, None, quiet=days > 1)
        rows.append((day, summary))
        if days > 1:
            typer.echo(_day_line(day, summary))
    _print_metrics(Path(summary["folder"]))
    if summary.get("imaging"):
        typer.echo(imaging_line(summary["imaging"]))
    if days > 1:
        typer.echo(_across_days([Path(r[1]["folder"]) for r in rows]))
        first, last = rows[0][1], rows[-1][1]
        typer.echo(
            f"success rate day 1 -> day {days}: {first['success_rate']:.0%} -> "
            f"{last['success_rate']:.0%} (hold carried over: {_holds(last['hold_ms'])})"
        )


def _across_days(folders: list[Path]) -> str:
    """Trajectory reproducibility across days: each day's template against the last day's."""
    import numpy as np

    from tasks.metrics import across_days_r, session_metrics

    tmpl = [session_metrics(f)["templates"].get("all") for f in folders]
    ok = [i for i, t in enumerate(tmpl) if t is not None]
    if len(ok) < 2:
        return "trajectory r across days: not enough rewarded pulls"
    r = across_days_r([tmpl[i] for i in ok])
    cells = "  ".join(f"day {i + 1}: {v:.2f}" for i, v in zip(ok, r[-1], strict=True))
    return f"trajectory template r with day {ok[-1] + 1}: {cells}" + (
        "" if np.all(np.isfinite(r)) else " (some days flat)"
    )


def _day_line(day: int, s: dict[str, Any]) -> str:
    return (
        f"day {day}: trials {s['trials']:4d}  success {s['success_rate']:.0%}  "
        f"rewards {s['rewards']:4d}  hold {_holds(s['hold_ms'])}  wall {s['wall_s']:.1f} s"
    )


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("demo")(demo)

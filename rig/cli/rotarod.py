"""`rig rotarod run|cohort` and `rig bench rotarod` (the accelerating rotarod)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

rotarod_app = typer.Typer(help="Accelerating rotarod: sessions and simulated cohorts.")

_CONFIG_DIRS = (
    Path(__file__).resolve().parents[2] / "hardware_configs",  # a checkout
    Path(__file__).resolve().parents[1] / "_hardware_configs",  # the wheel's copy
)
#: hardware_configs/sim.yaml wherever it is (checkout or wheel); an explicit --config wins
DEFAULT_CONFIG = next(
    (d / "sim.yaml" for d in _CONFIG_DIRS if (d / "sim.yaml").is_file()),
    Path("hardware_configs/sim.yaml"),
)


def _load(config: Path, params_file: Path | None, **overrides: object) -> tuple[Any, Any]:
    """(RigConfig, RotarodParams) from the files, command-line values overriding the file's."""
    from rig.core.config import load_rig_config, load_yaml, validate_mapping
    from tasks.rotarod import RotarodParams

    rig = load_rig_config(config)
    data = load_yaml(params_file) if params_file is not None else {}
    data = {**(data or {}), **{k: v for k, v in overrides.items() if v is not None}}
    params = validate_mapping(RotarodParams, data, params_file or "<command line>")
    return rig, params


def run_task_rotarod(
    config: Path,
    subjects: str,
    param: list[str] | None = None,
    *,
    params_file: Path | None = None,
    day: int = 1,
    group: str = "rotarod",
    data_dir: Path | None = None,
    simulate_mice: bool = True,
    realtime: bool = False,
) -> Path:
    """One rotarod day from the command line; prints every lane's result and returns the folder.

    This is what ``rig rotarod run`` and ``rig run --task rotarod`` both call.

    Parameters
    ----------
    subjects : str
        Subjects by lane, comma-separated (``"m1,m2,m3"``: m1 on lane 0).
    param : list of str
        ``key=value`` overrides of ``RotarodParams`` (values parsed as YAML: ``max_s=120``).
    realtime : bool
        A simulated rod and the inter-trial countdown on the wall clock (else virtual time).

    Raises
    ------
    typer.Exit
        Code 2 after printing the problem (bad config or parameter, refused device).
    """
    import yaml

    from rig.core.errors import RigError
    from rig.runner.rotarod import run_rotarod_session
    from tasks.rotarod import SimRotarodMouse

    names = [s for s in subjects.split(",") if s]
    try:
        overrides: dict[str, Any] = {}
        for kv in param or []:
            key, sep, value = kv.partition("=")
            if not sep or not key:
                raise ValueError(f"--param {kv!r}: expected key=value, e.g. max_s=120")
            overrides[key.strip()] = yaml.safe_load(value)
        rig, params = _load(config, params_file, **overrides)
        mice = None
        if simulate_mice and rig.rotarod is not None and rig.rotarod.driver in ("sim", "simavr"):
            mice = {i: SimRotarodMouse(n, seed=i + 1) for i, n in enumerate(names)}
        res = run_rotarod_session(
            rig,
            params,
            names,
            day=day,
            group=group,
            data_dir=data_dir,
            mice=mice,
            realtime=realtime,
            on_countdown=lambda left: typer.echo(f"next trial in {left:4.0f} s", err=True),
        )
    except (RigError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    for t in res.trials:
        cens = " (censored)" if t.censored else ""
        typer.echo(
            f"trial {t.trial} lane {t.lane} {t.subject_id}: {t.latency_s:6.1f} s{cens}, "
            f"{t.rpm_at_fall_nominal:4.1f} rpm nominal, {t.revolutions:5.1f} rev, "
            f"{t.passive_rotations} passive"
        )
    typer.echo(f"session {res.folder}: {res.status}")
    return res.folder


@rotarod_app.command("run")
def run(
    subjects: Annotated[str, typer.Option(help="subjects by lane, comma-separated: m1,m2,m3")],
    config: Annotated[Path, typer.Option(help="rig config YAML")] = DEFAULT_CONFIG,
    params_file: Annotated[Path | None, typer.Option("--params", help="RotarodParams YAML")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="key=value override (repeatable)")
    ] = None,
    day: Annotated[int, typer.Option(min=1, help="training day (1-based)")] = 1,
    group: Annotated[str, typer.Option(help="session folder owner")] = "rotarod",
    data_dir: Annotated[Path | None, typer.Option(help="override the config's data_dir")] = None,
    trials: Annotated[int | None, typer.Option(help="trials today (default: params)")] = None,
    simulate_mice: Annotated[bool, typer.Option(help="simulated mice on a simulated rod")] = True,
    realtime: Annotated[bool, typer.Option(help="simulated rod on the wall clock")] = False,
) -> None:
    """Run one day of rotarod trials and print each lane's result."""
    extra = [f"trials_per_day={trials}"] if trials is not None else []
    run_task_rotarod(
        config,
        subjects,
        [*(param or []), *extra],
        params_file=params_file,
        day=day,
        group=group,
        data_dir=data_dir,
        simulate_mice=simulate_mice,
        realtime=realtime,
    )


@rotarod_app.command("cohort")
def cohort(
    mice: Annotated[int, typer.Option(min=1, max=5, help="mice (one per lane)")] = 5,
    days: Annotated[int, typer.Option(min=1, help="training days")] = 7,
    trials: Annotated[int, typer.Option(min=1, help="trials per day")] = 4,
    seed: Annotated[int, typer.Option(help="cohort seed")] = 1,
    config: Annotated[
        Path, typer.Option(help="rig config with a simulated rotarod")
    ] = DEFAULT_CONFIG,
    data_dir: Annotated[
        Path | None, typer.Option(help="where sessions go (default: a temp dir)")
    ] = None,
) -> None:
    """Simulate a cohort headless (virtual time) and print the per-day table."""
    import tempfile

    from rig.runner.rotarod import run_cohort
    from tasks.rotarod import format_day_table

    rig, params = _load(config, None, trials_per_day=trials)
    if rig.rotarod is None or rig.rotarod.driver != "sim":
        typer.echo(f"{config}: rotarod.driver must be 'sim' for a simulated cohort", err=True)
        raise typer.Exit(2)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rotarod-cohort-") as tmp:
        result = run_cohort(
            rig,
            params,
            n_mice=mice,
            n_days=days,
            seed=seed,
            data_dir=data_dir or Path(tmp),
            on_day=lambda d, r: typer.echo(f"day {d}: {len(r.trials)} lane-trials", err=True),
        )
    typer.echo(format_day_table(result))
    typer.echo(f"{mice} mice x {days} days x {trials} trials in {time.monotonic() - t0:.1f} s")


def bench_ramp(ramp_s: float = 300.0, board: str = "uno", spr: int = 3200) -> dict[str, Any]:
    """Run a 4 -> 40 rpm ramp on the firmware under simavr (stepped, simulated time) and
    measure it from the recorded step-pin edges.

    Returns
    -------
    dict
        ``worst_rpm_error_pct`` over every 1 s window centred on each whole second,
        ``max_edge_error_us`` (each edge against the exact step time), ``steps`` and
        ``steps_exact``, ``tick_overruns``, ``simulated_s`` and ``wall_s``.
    """
    import tempfile

    import numpy as np

    from rig.core.devices.rotarod import (
        ROTAROD_BOARD_TO_HOST,
        Heartbeat,
        RodConfig,
        RodStarted,
        RodStopped,
        StartRamp,
    )
    from rig.core.devices.rotarod_sim import ROD_PINS
    from rig.core.protocol import GetHello, Packet, PacketEncoder, StreamDecoder
    from rig.core.simavr import AvrSim, ensure_built

    if board not in ROD_PINS:
        raise ValueError(f"board must be one of {sorted(ROD_PINS)}, got {board!r}")
    pins = ROD_PINS[board]
    elf, _ = ensure_built("rotarod", board)
    enc, dec = PacketEncoder(), StreamDecoder(ROTAROD_BOARD_TO_HOST)
    msgs: list[Any] = []
    rising: list[float] = []
    start, stop = 4.0, 40.0
    accel = (stop - start) / ramp_s
    t_wall = time.monotonic()
    with (
        tempfile.TemporaryDirectory() as tmp,
        AvrSim(
            elf,
            Path(tmp) / "avrsim.log",
            board=board,
            watch=(pins["step"],),
            stepped=True,
            pty=False,
        ) as sim,
    ):

        def collect() -> None:
            chunk = sim.log.read_new()
            data = bytes(b for _, b in chunk.tx)
            msgs.extend(i.msg for i in dec.feed(data) if isinstance(i, Packet))
            rising.extend(e.t_us for e in chunk.pins if e.pin == pins["step"] and e.level == 1)

        for i in range(5):  # fall and passive inputs idle high (pull-ups)
            sim.pin(f"{pins['fall']}{i}", 1)
            sim.pin(f"{pins['passive']}{i}", 1)
        sim.run_us(50_000)
        sim.tx(enc.encode(GetHello(1))[1] + enc.encode(RodConfig(spr, 5, 500, 31, 0, 31))[1])
        sim.run_us(20_000)
        ms = round(ramp_s * 1000)
        sim.tx(enc.encode(StartRamp(round(start * 1000), round(stop * 1000), ms, ms))[1])
        step_us = 10e6
        while not any(isinstance(m, RodStopped) for m in msgs):
            sim.run_us(step_us, timeout_s=600)
            collect()
    wall_s = time.monotonic() - t_wall
    started = next(m for m in msgs if isinstance(m, RodStarted))
    stopped = next(m for m in msgs if isinstance(m, RodStopped))
    edges = np.asarray(rising)
    # the first step goes out on the first 50 us tick by which the rod turned one step
    t_step1_s = (-start + np.sqrt(start**2 + 2 * accel * 60 / spr)) / accel  # revs(t) = 1/spr
    first_us = np.ceil(t_step1_s / 50e-6 - 1e-9) * 50.0
    t0_sim = edges[0] - first_us
    rel = edges - t0_sim
    worst = 0.0
    for k in range(1, int(ramp_s)):
        n = np.count_nonzero((rel >= (k - 0.5) * 1e6) & (rel < (k + 0.5) * 1e6))
        nominal = min(start + accel * k, stop)
        worst = max(worst, abs(n / spr * 60 / nominal - 1))
    step_no = np.arange(1, len(rel) + 1)
    exact_s = (-start + np.sqrt(start**2 + 2 * accel * step_no * 60 / spr)) / accel
    steps_exact = int((start * ramp_s + 0.5 * accel * ramp_s**2) / 60 * spr + 1e-9)
    beats = [m for m in msgs if isinstance(m, Heartbeat)]
    return {
        "board": board,
        "ramp": f"{start:g} -> {stop:g} rpm over {ramp_s:g} s, {spr} steps/rev",
        "worst_rpm_error_pct": round(100 * worst, 4),
        "max_edge_error_us": round(float(np.max(np.abs(rel - exact_s * 1e6))), 2),
        "steps": int(stopped.steps),
        "steps_edges": len(edges),
        "steps_exact": steps_exact,
        "cutoff_error_us": round((stopped.t_us - started.t_us) - ramp_s * 1e6, 1),
        "tick_overruns": beats[-1].tick_overruns if beats else None,
        "simulated_s": round(ramp_s, 3),
        "wall_s": round(wall_s, 2),
    }


def bench(
    ramp_s: Annotated[float, typer.Option(help="ramp length (s), 4 -> 40 rpm")] = 300.0,
    board: Annotated[str, typer.Option(help="uno or mega")] = "uno",
    json_path: Annotated[Path | None, typer.Option("--json", help="save the figures here")] = None,
) -> None:
    """Firmware under simavr: measured rpm (from step edges) against the nominal ramp."""
    from rig.core.errors import RigError

    try:
        figures = bench_ramp(ramp_s=ramp_s, board=board)
    except (RigError, ImportError, ValueError) as e:
        typer.echo(f"rotarod bench: {e}", err=True)
        raise typer.Exit(2) from None
    for k, v in figures.items():
        typer.echo(f"{k}: {v}")
    if json_path is not None:
        json_path.write_text(json.dumps(figures, indent=2) + "\n")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this module's commands to the main app and the `rig bench` group."""
    app.add_typer(rotarod_app, name="rotarod")
    bench_app.command("rotarod")(bench)

"""`rig bench board`: the lever board's timing figures, on the real firmware under simavr.

The measurements live in ``rig.core.simavr.bench``; this module only parses options and prints.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer


def bench_board(
    json_path: Path | None = typer.Option(None, "--json", help="also write the figures as JSON"),
    reps: int = typer.Option(200, min=10, help="repetitions per latency measurement"),
    load_s: float = typer.Option(2.0, min=0.2, help="simulated seconds of the throughput load"),
    trials: int = typer.Option(20, min=3, help="back-to-back trials for the dead time"),
    equivalence: int = typer.Option(
        0, min=0, help="also run N random traces through firmware and Python (500 for the spec)"
    ),
) -> None:
    """Latency, throughput and dead time of the lever board firmware (simavr, simulated time)."""
    from rig.core.simavr import FirmwareBuildError, missing_tools
    from rig.core.simavr.bench import run_board_bench, run_equivalence

    if missing_tools():
        typer.echo(f"rig bench board needs: {', '.join(missing_tools())}", err=True)
        raise typer.Exit(2)
    try:
        res = run_board_bench(reps=reps, load_s=load_s, trials=trials)
        if equivalence:
            res["equivalence"] = run_equivalence(equivalence)
    except FirmwareBuildError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    _print(res)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(res, indent=2) + "\n")
        typer.echo(f"wrote {json_path}")


def _verdict(value: float, target: float) -> str:
    return "PASS" if value <= target else "MISS"


def _print(res: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"rig bench board: {res['device']}")
    for col in ("measure", "n", "p50 µs", "p99 µs", "max µs", "target", "verdict"):
        t.add_column(col)
    for key, label in (
        ("lever_to_output", "lever crossing -> output pin"),
        ("input_to_output", "digital input (lick edge) -> output pin"),
        ("frame_edge_to_packet", "frame-clock edge -> FRAME on the wire"),
    ):
        r = res[key]
        target = r.get("target_p99_us")
        t.add_row(
            label,
            str(r["n"]),
            f"{r['p50_us']:.0f}",
            f"{r['p99_us']:.0f}",
            f"{r['max_us']:.0f}",
            f"p99 <= {target} µs" if target else "-",
            _verdict(r["p99_us"], target) if target else "-",
        )
    d = res["dead_time"]
    pin = d["pin_dead_time_us"] or {}
    t.add_row(
        "trial-to-trial dead time (board clock)",
        str(d["trials"]),
        "-",
        "-",
        f"{d['board_dead_time_us_max']:.0f}",
        "0 ticks",
        "PASS" if d["board_dead_time_us_max"] == 0 else "MISS",
    )
    t.add_row(
        "trial-to-trial dead time (TTL pin)",
        str(pin.get("n", 0)),
        f"{pin.get('p50_us', 0):.0f}",
        f"{pin.get('p99_us', 0):.0f}",
        f"{pin.get('max_us', 0):.0f}",
        "< 1 ms",
        "PASS" if pin and pin["max_us"] < 1000 else "MISS",
    )
    console = Console()
    console.print(t)
    ld = res["throughput"]
    console.print(
        f"throughput ({ld['load_s']:.1f} simulated s): lever events {ld['event_rate_hz']:.0f} Hz, "
        f"frames {ld['frames']}/{ld['frames_expected']}, lever samples {ld['lever_samples']} "
        f"(index gaps {ld['lever_index_gaps']}), packet seq gaps {ld['packet_seq_gaps']}, "
        f"tx_dropped {ld['tx_dropped']}, tick overruns {ld['tick_overruns']}, "
        f"link {ld['link_kbytes_per_s']:.1f} kB/s -> "
        f"{'ZERO LOSS' if ld['zero_loss'] else 'LOSS'} (target: zero loss)"
    )
    if "equivalence" in res:
        eq = res["equivalence"]
        console.print(
            f"equivalence: {eq['traces']} traces, {eq['trials']} trials, {eq['events']} events, "
            f"{eq['mismatches']} mismatches; {eq.get('lick_edges', 0)} lick edges at their own "
            f"µs time, within {eq.get('lick_edge_time_error_us_max', 0)} µs of Python's"
        )


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this module's commands to the main app and the `rig bench` group."""
    bench_app.command("board")(bench_board)

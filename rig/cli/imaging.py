"""``rig imaging synth`` (synthetic ScanImage recordings) and ``rig imaging send`` (play a TIFF
over TCP as ScanImage's user function would). The logic lives in ``acquisition.sources``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

imaging_app = typer.Typer(help="Two-photon frame sources: synthetic recordings, streaming.",
                          no_args_is_help=True)  # fmt: skip


@imaging_app.command("synth")
def synth(
    out: Annotated[
        Path, typer.Option("--out", help="output FILE.tif (truth goes to FILE.truth.npz)")
    ],
    frames: Annotated[int, typer.Option(min=1, help="frames")] = 300,
    size: Annotated[int, typer.Option(min=16, help="field of view, px (square)")] = 512,
    cells: Annotated[int, typer.Option(min=0, help="labeled cells")] = 100,
    channels: Annotated[int, typer.Option(min=1, max=4, help="saved channels")] = 1,
    header: Annotated[
        str, typer.Option(help="page header style: text | json | frameheader")
    ] = "text",
    cr: Annotated[bool, typer.Option("--cr", help="separate header lines with \\r")] = False,
    rate: Annotated[float, typer.Option(help="frame rate, Hz")] = 30.0,
    max_shift: Annotated[float, typer.Option(help="largest rigid shift, px")] = 5.0,
    nonrigid: Annotated[bool, typer.Option(help="add a smooth non-rigid field")] = False,
    line_phase: Annotated[float, typer.Option(help="bidirectional odd-line offset, px")] = 0.0,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    frames_per_file: Annotated[
        int, typer.Option(help="split into a folder of files of this many frames (0 = one file)")
    ] = 0,
) -> None:
    """Write a synthetic ScanImage recording with ground truth (shifts, masks, ΔF/F)."""
    from acquisition.sources.recordings import write_synthetic_recording

    if header not in ("text", "json", "frameheader"):
        typer.echo(f"--header {header!r}: expected text, json or frameheader", err=True)
        raise typer.Exit(2)
    try:
        paths, truth, movie = write_synthetic_recording(
            out, frames, n_channels=channels, header_style=header,  # type: ignore[arg-type]
            line_sep="\r" if cr else "\n", volumes_per_file=frames_per_file or None,
            size_px=size, n_cells=cells, frame_rate_hz=rate, max_shift_px=max_shift,
            nonrigid=nonrigid, line_phase_px=line_phase, seed=seed,
        )  # fmt: skip
    except ValueError as exc:
        typer.echo(f"rig imaging synth: {exc}", err=True)
        raise typer.Exit(2) from exc
    where = paths[0] if len(paths) == 1 else f"{paths[0].parent} ({len(paths)} files)"
    typer.echo(
        f"wrote {where}: {frames} frames {size}x{size} int16, {channels} channel(s), "
        f"{movie.n_cells} cells, {rate:g} Hz; truth {truth}"
    )


@imaging_app.command("send")
def send(
    path: Annotated[Path, typer.Argument(help="ScanImage .tif file or folder")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="receiver port")] = 5555,
    rate: Annotated[
        float | None,
        typer.Option(help="frames/s (default: the file's rate; 0 = as fast as possible)"),
    ] = None,
    host: Annotated[str, typer.Option(help="receiver host")] = "127.0.0.1",
    channel: Annotated[int, typer.Option(min=0, help="saved-channel index to send")] = 0,
    plane: Annotated[int, typer.Option(min=0, help="z-plane index to send")] = 0,
    connect_timeout: Annotated[
        float, typer.Option(help="keep trying to connect this long, s")
    ] = 10.0,
) -> None:
    """Play a ScanImage TIFF to a TCP receiver as ScanImage's motorRigStream user function would."""
    from acquisition.sources.base import FrameSourceError
    from acquisition.sources.scanimage_tiff import ScanImageTiffSource
    from acquisition.sources.tcp import send_frames

    try:
        with ScanImageTiffSource(path, channel=channel, plane=plane) as src:
            hz = src.frame_rate_hz if rate is None else rate
            n = send_frames(
                src, host, port, rate_hz=hz or None,
                channel=src.layout.channels_saved[channel], connect_timeout_s=connect_timeout,
            )  # fmt: skip
    except FrameSourceError as exc:
        typer.echo(f"rig imaging send: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"sent {n} frames to {host}:{port}")


@imaging_app.command("receive")
def receive(
    port: Annotated[int, typer.Option(min=0, max=65535, help="port to listen on")] = 5555,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    frames: Annotated[
        int, typer.Option(min=0, help="stop after this many frames (0 = until the sender stops)")
    ] = 0,
    accept_timeout: Annotated[float, typer.Option(help="wait this long for a sender, s")] = 60.0,
    max_frame_mb: Annotated[float, typer.Option(help="largest frame accepted, MiB")] = 64.0,
) -> None:
    """Listen for a frame stream (motorRigStream.m or `rig imaging send`) and report on it.

    For checking a ScanImage installation: prints shape, dtype, frame rate and any gaps.
    """
    import time

    from acquisition.sources.base import FrameSourceError
    from acquisition.sources.tcp import TcpFrameSource

    src = TcpFrameSource(
        host, port, max_frame_bytes=int(max_frame_mb * 2**20), accept_timeout_s=accept_timeout
    )
    n, t_first, t_last, i_first, i_last = 0, None, None, 0, 0
    try:
        with src:
            typer.echo(f"listening on {host}:{src.port}")
            t0 = time.monotonic()
            for index, t_s, _ in src:
                n += 1
                if t_first is None:
                    t_first, i_first = t_s, index
                t_last, i_last = t_s, index
                if frames and n >= frames:
                    break
            wall_s = time.monotonic() - t0
    except FrameSourceError as exc:
        typer.echo(f"rig imaging receive: {exc} (after {n} frames)", err=True)
        raise typer.Exit(1) from exc
    span_s = (t_last - t_first) if t_first is not None and t_last is not None else 0.0
    # From frame numbers, not the count received, so gaps do not lower the rate.
    rate_hz = (i_last - i_first) / span_s if span_s > 0 else 0.0
    typer.echo(
        f"received {n} frames {src.shape} {src.dtype} in {wall_s:.2f} s; timestamps span "
        f"{span_s:.3f} s ({rate_hz:.2f} Hz); gaps {src.gaps or 'none'} ({src.n_missing} missing)"
    )


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this module's commands to the main app and the `rig bench` group."""
    app.add_typer(imaging_app, name="imaging")

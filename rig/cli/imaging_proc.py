"""`rig register`, `rig traces`, `rig bench imaging`: offline motion correction, ΔF/F, benchmark.

The logic lives in ``acquisition`` (registration, rois, traces, bench); these commands only read
the movie, call it batch by batch, and write the outputs. Movies are read batch by batch (never
whole): ScanImage TIFFs through ``ScanImageTiffSource`` (channel = index among the SAVED channels,
default the first), other TIFFs through tifffile ((T, Y, X) or (T, C, Y, X)).
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

BATCH_FRAMES = 64


class _Movie:
    """Batches of frames from a TIFF movie plus its shape and frame rate."""

    def __init__(self, path: Path, channel: int, frame_rate_hz: float | None) -> None:
        import tifffile

        self.path = path
        self.channel = channel
        self.source: Any = None
        first = path if path.is_file() else next(iter(sorted(path.glob("*.tif*"))), None)
        if first is None:
            raise ValueError(f"{path}: no .tif files in this folder")
        with tifffile.TiffFile(first) as tf:
            is_si = bool(tf.is_scanimage)
        if is_si:
            from acquisition.sources.scanimage_tiff import ScanImageTiffSource

            self.source = ScanImageTiffSource(path, channel=channel)
            self.shape: tuple[int, int] = (int(self.source.shape[0]), int(self.source.shape[1]))
            self.n_frames = self.source.n_frames
            self.frame_rate_hz = frame_rate_hz or self.source.frame_rate_hz or 30.0
        else:
            self.arr = tifffile.memmap(path) if _memmappable(path) else tifffile.imread(path)
            if self.arr.ndim == 2:
                self.arr = self.arr[None]
            if self.arr.ndim == 4:
                if not 0 <= channel < self.arr.shape[1]:
                    raise typer.BadParameter(
                        f"{path}: --channel {channel} but the file has {self.arr.shape[1]} channels"
                    )
                self.arr = self.arr[:, channel]
            elif self.arr.ndim != 3 or channel != 0:
                raise typer.BadParameter(
                    f"{path}: expected (T, Y, X) or (T, C, Y, X) frames, got shape {self.arr.shape}"
                    + (f" (and --channel {channel})" if channel else "")
                )
            self.shape = (int(self.arr.shape[1]), int(self.arr.shape[2]))
            self.n_frames = int(self.arr.shape[0])
            self.frame_rate_hz = frame_rate_hz or 30.0

    def batches(self, n: int = BATCH_FRAMES) -> Iterator[Any]:
        import numpy as np

        if self.source is None:
            for s in range(0, self.n_frames, n):
                yield np.asarray(self.arr[s : s + n])
            return
        from acquisition.sources.scanimage_tiff import ScanImageTiffSource

        buf = []
        # a fresh reader per pass: a FrameSource is closed after its `with` block
        with ScanImageTiffSource(self.path, channel=self.channel) as src:
            for _i, _t, frame in src:
                buf.append(frame)
                if len(buf) == n:
                    yield np.stack(buf)
                    buf = []
        if buf:
            yield np.stack(buf)

    def first(self, n: int) -> Any:
        import numpy as np

        out, got = [], 0
        for b in self.batches(min(n, 256)):
            out.append(b[: n - got])
            got += len(out[-1])
            if got >= n:
                break
        return np.concatenate(out)


def _memmappable(path: Path) -> bool:
    import tifffile

    try:
        tifffile.memmap(path)
        return True
    except Exception:  # compressed, tiled, or otherwise not contiguous: read it normally
        return False


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(2)


def _open(movie: Path, channel: int, frame_rate_hz: float | None) -> _Movie:
    from rig.core.errors import RigError

    if not movie.exists():
        _fail(f"{movie}: no such file or folder")
    try:
        return _Movie(movie, channel, frame_rate_hz)
    except (RigError, OSError, ValueError) as e:
        _fail(str(e))
        raise  # unreachable; keeps type checkers happy


def _registrar(m: _Movie, backend: str, nonrigid: bool, max_shift_px: int) -> Any:
    from acquisition.registration import Registrar, RegistrationOptions
    from acquisition.xp import BackendError, get_xp

    try:
        xp = get_xp(backend)
    except BackendError as e:
        _fail(str(e))
    opt = RegistrationOptions(max_shift_px=max_shift_px, nonrigid=nonrigid)
    reg = Registrar(xp, m.shape, opt)
    reg.fit_reference(m.first(opt.n_reference_frames))
    return reg


def register_cmd(
    movie: Path = typer.Argument(..., help="TIFF movie (ScanImage or plain) or ScanImage folder"),
    out: Path = typer.Option(..., "--out", help="output folder"),
    backend: str = typer.Option("auto", help="auto | numpy | cupy"),
    nonrigid: bool = typer.Option(False, "--nonrigid", help="add piecewise-rigid blocks"),
    channel: int = typer.Option(0, help="saved-channel index (0 = first saved channel)"),
    max_shift_px: int = typer.Option(20, help="largest rigid shift searched, px"),
    frame_rate_hz: float = typer.Option(None, help="override the frame rate (plain TIFFs: 30)"),
) -> None:
    """Motion-correct MOVIE: writes shifts.csv, registered.tif, reference.tif, metrics.json."""
    import numpy as np
    import tifffile

    from acquisition.registration import correlation_to_reference, crispness
    from acquisition.xp import to_host

    m = _open(movie, channel, frame_rate_hz)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    reg = _registrar(m, backend, nonrigid, max_shift_px)
    xp = reg.xp
    border = max_shift_px
    sum_raw = np.zeros(m.shape, np.float64)
    sum_reg = np.zeros(m.shape, np.float64)
    n = 0
    corr_all = []
    with (
        open(out / "shifts.csv", "w", newline="") as fcsv,
        tifffile.TiffWriter(out / "registered.tif", bigtiff=True) as tw,
    ):
        w = csv.writer(fcsv)
        w.writerow(["frame", "dy_px", "dx_px", "peak", "corr_to_reference"])
        for batch in m.batches():
            r = reg.register(batch)
            corr = to_host(correlation_to_reference(xp, r.frames, reg.reference, border))
            regh = to_host(r.frames)
            s, p = to_host(r.shifts_px), to_host(r.peak)
            for k in range(len(batch)):
                w.writerow(
                    [n + k, f"{s[k, 0]:.4f}", f"{s[k, 1]:.4f}", f"{p[k]:.4f}", f"{corr[k]:.4f}"]
                )
            dt = batch.dtype
            if np.issubdtype(dt, np.integer):
                info = np.iinfo(dt)
                regh = np.clip(np.rint(regh), info.min, info.max).astype(dt)
            for fr in regh:  # one page per frame: a (T, Y, X) series, as ScanImage writes
                tw.write(fr, contiguous=True)
            sum_raw += batch.sum(axis=0)
            sum_reg += to_host(r.frames.sum(axis=0))
            corr_all.append(corr)
            n += len(batch)
    elapsed = time.perf_counter() - t0
    ref = to_host(reg.reference).astype(np.float32)
    tifffile.imwrite(out / "reference.tif", ref)
    corr = np.concatenate(corr_all)
    metrics = {
        "movie": str(movie),
        "channel": channel,
        "n_frames": n,
        "frame_shape": list(m.shape),
        "backend": "cupy" if xp.__name__ == "cupy" else "numpy",
        "nonrigid": nonrigid,
        "line_phase_px": reg.line_phase_px,
        "corr_to_reference_mean": float(corr.mean()),
        "corr_to_reference_p5": float(np.percentile(corr, 5)),
        "crispness_raw_mean_image": crispness(np, (sum_raw / n).astype(np.float32), border),
        "crispness_registered_mean_image": crispness(np, (sum_reg / n).astype(np.float32), border),
        "border_excluded_px": border,
        "elapsed_s": elapsed,
        "frames_per_s": n / elapsed,
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    typer.echo(
        f"registered {n} frames in {elapsed:.1f} s ({n / elapsed:.0f} frames/s); "
        f"corr to reference {metrics['corr_to_reference_mean']:.3f}; crispness "
        f"{metrics['crispness_raw_mean_image']:.2f} -> "
        f"{metrics['crispness_registered_mean_image']:.2f}"
        f"; outputs in {out}"
    )


def traces_cmd(
    movie: Path = typer.Argument(..., help="TIFF movie (ScanImage or plain) or ScanImage folder"),
    rois: str = typer.Option(..., "--rois", help="stat.npy | RoiSet.zip | labels .npy/.tif | auto"),
    out: Path = typer.Option(..., "--out", help="output folder"),
    channel: int = typer.Option(0, help="saved-channel index (0 = first saved channel)"),
    backend: str = typer.Option("auto", help="auto | numpy | cupy"),
    nonrigid: bool = typer.Option(False, "--nonrigid"),
    rois_kind: str = typer.Option("auto", help="suite2p | imagej | labels | auto"),
    neuropil_coefficient: float = typer.Option(0.7, help="c in F - c * Fneu"),
    baseline_window_s: float = typer.Option(60.0, help="causal baseline window, s"),
    baseline_percentile: float = typer.Option(8.0, help="baseline percentile"),
    max_shift_px: int = typer.Option(20),
    frame_rate_hz: float = typer.Option(None, help="override the frame rate (plain TIFFs: 30)"),
) -> None:
    """Register MOVIE and extract F, Fneu, ΔF/F (.npy, (T, n_cells) float32) + summary.csv."""
    import numpy as np

    from acquisition.rois import (
        RoiFileError,
        build_weights,
        detect_rois_registered,
        load_rois,
        neuropil_pixels,
        weights_to_xp,
    )
    from acquisition.traces import FullPathProcessor, TraceExtractor, TraceOptions

    m = _open(movie, channel, frame_rate_hz)
    out.mkdir(parents=True, exist_ok=True)
    reg = _registrar(m, backend, nonrigid, max_shift_px)
    xp = reg.xp
    if rois == "auto":
        roiset = detect_rois_registered(xp, reg.register(m.first(300)))
        if len(roiset) == 0:
            _fail(f"{movie}: automatic detection found no ROI")
    else:
        try:
            roiset = load_rois(Path(rois), m.shape, rois_kind)
        except RoiFileError as e:
            _fail(str(e))
    neu = neuropil_pixels(roiset)
    w = weights_to_xp(xp, build_weights(roiset, neu))
    opt = TraceOptions(
        neuropil_coefficient=neuropil_coefficient,
        baseline_window_s=baseline_window_s,
        baseline_percentile=baseline_percentile,
    )
    proc = FullPathProcessor(reg, TraceExtractor(xp, w, m.frame_rate_hz, opt))
    fs, fn, dd, sh = [], [], [], []
    for batch in m.batches():
        r = proc.process(batch)
        fs.append(r.f)
        fn.append(r.fneu)
        dd.append(r.dff)
        sh.append(r.shifts_px)
    f, fneu, dff = (np.concatenate(a).astype(np.float32) for a in (fs, fn, dd))
    np.save(out / "F.npy", f)
    np.save(out / "Fneu.npy", fneu)
    np.save(out / "dFF.npy", dff)
    np.save(out / "shifts.npy", np.concatenate(sh))
    cen = roiset.centroids()
    with open(out / "summary.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(
            ["roi", "name", "y_px", "x_px", "n_pixels", "n_neuropil_pixels", "F_mean",
             "Fneu_mean", "dff_mean", "dff_sd", "dff_max"]
        )  # fmt: skip
        for k in range(len(roiset)):
            wr.writerow(
                [k, roiset.names[k], f"{cen[k, 0]:.1f}", f"{cen[k, 1]:.1f}",
                 roiset.pixels[k].size, neu[k].size, f"{f[:, k].mean():.3f}",
                 f"{fneu[:, k].mean():.3f}", f"{dff[:, k].mean():.4f}", f"{dff[:, k].std():.4f}",
                 f"{dff[:, k].max():.4f}"]
            )  # fmt: skip
    typer.echo(
        f"{len(roiset)} ROIs x {len(f)} frames -> F.npy, Fneu.npy, dFF.npy, summary.csv in {out}"
    )


def bench_imaging_cmd(
    backend: str = typer.Option("auto", help="auto | numpy | cupy"),
    size: int = typer.Option(512, help="frame side, px"),
    frames: int = typer.Option(600, help="movie length, frames"),
    rois: int = typer.Option(500, help="number of cells"),
    batch: int = typer.Option(256, help="frames per batch"),
    stream_frames: int = typer.Option(300, help="frames timed one at a time"),
    repeats: int = typer.Option(1, help="passes over the movie for throughput"),
    nonrigid_frames: int = typer.Option(None, help="frames for piecewise-rigid timing"),
    skimage_frames: int = typer.Option(30, help="frames for the scikit-image reference (0: skip)"),
    seed: int = typer.Option(0),
    json_path: Path = typer.Option(None, "--json", help="write the figures as JSON here"),
) -> None:
    """Benchmark the full imaging path (throughput, latency, accuracy) against the targets."""
    from rich.console import Console
    from rich.table import Table

    from acquisition.bench import format_table, run_imaging_bench
    from acquisition.xp import BackendError

    err = Console(stderr=True)

    def checkpoint(partial: dict[str, Any]) -> None:
        # a run cut short (time limit) still leaves the figures measured so far
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(partial, indent=1) + "\n")

    try:
        res = run_imaging_bench(
            backend, size, frames, rois, batch, stream_frames, repeats, nonrigid_frames,
            skimage_frames, seed=seed, progress=lambda s: err.print(f"[dim]{s}[/dim]"),
            checkpoint=checkpoint,
        )  # fmt: skip
    except BackendError as e:
        _fail(str(e))
    except ValueError as e:  # the synthetic movie cannot be made (e.g. too many cells for size)
        _fail(f"rig bench imaging: {e}")
    res["load_avg_1min"] = os.getloadavg()[0]
    res["cpu_count"] = os.cpu_count()
    res["python"] = sys.version.split()[0]
    table = Table(title="rig bench imaging")
    for col in ("figure", "value", "target"):
        table.add_column(col)
    for row in format_table(res):
        table.add_row(*row)
    Console().print(table)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(res, indent=1) + "\n")
        err.print(f"JSON written to {json_path}")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    """Add this module's commands to the main app and the `rig bench` group."""
    app.command("register")(register_cmd)
    app.command("traces")(traces_cmd)
    bench_app.command("imaging")(bench_imaging_cmd)

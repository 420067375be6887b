"""The imaging part of the NWB export: movie as external files, ROIs, traces, motion.

Reads what the imaging pipeline wrote into ``imaging/`` (``acquisition.traces.store``) and adds:

- ``devices/microscope``, an ``ImagingPlane`` (rate from the frame times);
- ``acquisition/TwoPhotonSeries`` referencing the movie TIFF(s) as external files (paths relative
  to the NWB file, as NWB best practice asks), when a movie is found;
- ``processing/ophys/ImageSegmentation/PlaneSegmentation``: pixel masks ``(x, y, weight)`` from
  ``imaging/roi_labels.npy`` or a ROI file given by the caller;
- ``processing/ophys/Fluorescence/{F, Fneu}`` and ``DfOverF/dff`` (``RoiResponseSeries``);
- ``processing/ophys/motion_shifts`` (``TimeSeries`` (T, 2): dy, dx in px) and
  ``registration_peak``.

Frame times: the board time of each frame's clock edge (``frame_times.bin``, else the value
written with the frame); frames without an edge are placed on the straight line fitted through
those with one, by frame index.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from rig.core.store import SessionReader
from rig.export.timebase import Timebase, json_text


def frame_times_s(imaging: dict[str, Any], tb: Timebase) -> tuple[np.ndarray, list[str]]:
    """Per-frame times on the timebase, float64 (T,), and warnings."""
    frames = imaging["frames"]
    n = len(frames)
    board = np.asarray(imaging.get("frame_times_us", frames["t_board_us"]), np.int64)[:n]
    if board.size < n:
        board = np.concatenate([board, frames["t_board_us"][board.size :]])
    ok = board >= 0
    warn: list[str] = []
    if ok.all():
        return tb.device_s(board), warn
    idx = frames["frame_index"].astype(np.float64)
    if ok.sum() >= 2:
        b, a = np.polyfit(idx[ok], board[ok].astype(np.float64), 1)
        est = a + b * idx
        warn.append(f"{int((~ok).sum())} frame(s) had no frame-clock edge: times interpolated")
    else:
        # no clock at all: source times, starting where the session's board time starts
        est = frames["t_frame_s"] * 1e6 + tb.t0_device_us
        warn.append("no frame-clock edges: frame times are the source's own, from t = 0")
    out = np.where(ok, board, est).astype(np.float64)
    return (out - tb.t0_device_us) / 1e6, warn


def find_rois(reader: SessionReader, shape: tuple[int, int], rois: str | Path | None) -> Any:
    """The session's ROI set: ``rois`` if given, else ``imaging/roi_labels.npy``, else the rig
    config's ROI file; ``None`` when there is none."""
    from acquisition.rois import load_labels, load_rois

    if rois is not None:
        return load_rois(Path(rois), shape)
    saved = reader.folder / "imaging" / "roi_labels.npy"
    if saved.exists():
        return load_labels(saved, shape)
    src = ((reader.meta.rig_config.get("imaging") or {}).get("rois")) or {}
    if src.get("path") and Path(src["path"]).exists():
        return load_rois(Path(src["path"]), shape, src.get("kind", "auto"))
    return None


def find_movie(reader: SessionReader, movie: list[Path] | None) -> list[Path]:
    if movie:
        return [Path(m) for m in movie]
    local = sorted((reader.folder / "imaging").glob("*.tif"))
    if local:
        return local
    src = ((reader.meta.rig_config.get("imaging") or {}).get("source")) or {}
    if src.get("kind") == "tiff" and src.get("path"):
        from acquisition.sources.scanimage_tiff import list_scanimage_files

        try:
            return list_scanimage_files(src["path"])
        except Exception:  # the movie moved or lives on another machine: export without it
            return []
    return []


def _n_pages(path: Path) -> int:
    import tifffile

    with tifffile.TiffFile(path) as tf:
        return len(tf.pages)


def add_ophys(
    nwb: Any,
    reader: SessionReader,
    imaging: dict[str, Any],
    tb: Timebase,
    out: Path,
    *,
    rois: str | Path | None = None,
    movie: list[Path] | None = None,
) -> tuple[int, int, list[str]]:
    """Add the imaging objects; returns ``(n_frames, n_rois, warnings)``."""
    from hdmf.backends.hdf5.h5_utils import H5DataIO
    from pynwb import TimeSeries
    from pynwb.ophys import (
        DfOverF,
        Fluorescence,
        ImageSegmentation,
        OpticalChannel,
        RoiResponseSeries,
        TwoPhotonSeries,
    )

    header = imaging["header"]
    t_s, warn = frame_times_s(imaging, tb)
    n_frames = len(t_s)
    rate = float(1.0 / np.median(np.diff(t_s))) if n_frames > 1 else 0.0
    shape = tuple(int(v) for v in header.get("frame_shape", (0, 0)))
    plane_info = (reader.meta.extra.get("imaging_plane") or {}) if reader.meta.extra else {}
    scope = nwb.create_device(name="microscope", description="two-photon microscope (ScanImage)")
    channel = OpticalChannel(
        name="green", description="imaged channel",
        emission_lambda=float(plane_info.get("emission_lambda_nm", np.nan)),
    )  # fmt: skip
    plane = nwb.create_imaging_plane(
        name="imaging_plane",
        optical_channel=channel,
        description=f"frame {shape[0]}x{shape[1]} px; source {json_text(header.get('source'))}",
        device=scope,
        excitation_lambda=float(plane_info.get("excitation_lambda_nm", np.nan)),
        imaging_rate=rate,
        indicator=str(plane_info.get("indicator", "unknown")),
        location=str(plane_info.get("location", "unknown")),
    )
    files = find_movie(reader, movie)
    if files:
        starts, total = [], 0
        for f in files:
            starts.append(total)
            total += _n_pages(f)
        rel = [os.path.relpath(Path(f).resolve(), out.resolve().parent) for f in files]
        nwb.add_acquisition(
            TwoPhotonSeries(
                name="TwoPhotonSeries",
                description="raw movie, kept in its own files",
                imaging_plane=plane,
                external_file=rel,
                starting_frame=starts,
                format="external",
                unit="n.a.",
                dimension=[shape[1], shape[0]],
                timestamps=t_s,
            )
        )
    else:
        warn.append("no movie file found: TwoPhotonSeries left out (pass movie=...)")
    ophys = nwb.create_processing_module(
        name="ophys", description="motion correction, ROIs and traces from the rig's pipeline"
    )
    fr = imaging["frames"]
    ophys.add(
        TimeSeries(
            name="motion_shifts",
            description="rigid registration shift applied to each frame, columns (dy, dx)",
            data=np.stack([fr["dy_px"], fr["dx_px"]], axis=1).astype(np.float32),
            unit="pixels",
            timestamps=t_s,
        )
    )
    ophys.add(
        TimeSeries(
            name="registration_peak",
            description="phase-correlation peak of each frame against the reference",
            data=np.asarray(fr["peak"], np.float32),
            unit="n.a.",
            timestamps=t_s,
        )
    )
    roiset = find_rois(reader, (shape[0], shape[1]), rois) if shape[0] else None
    n_cells = int(header.get("n_cells", 0))
    if roiset is None:
        warn.append("no ROI masks (imaging/roi_labels.npy or rois=...): ROIs and traces left out")
        return n_frames, 0, warn
    if len(roiset) != n_cells:
        raise ValueError(
            f"{reader.folder / 'imaging'}: traces have {n_cells} cells but the ROI set "
            f"({roiset.source}) has {len(roiset)}"
        )
    seg = ImageSegmentation()
    ophys.add(seg)
    ps = seg.create_plane_segmentation(
        name="PlaneSegmentation",
        description=f"ROIs from {roiset.source or 'the pipeline'}",
        imaging_plane=plane,
    )
    nx = shape[1]
    for p, w in zip(roiset.pixels, roiset.weights, strict=True):
        ps.add_roi(
            pixel_mask=[(int(i % nx), int(i // nx), float(v)) for i, v in zip(p, w, strict=True)]
        )
    ps.add_column(name="roi_name", description="ROI label", data=list(roiset.names))
    region = ps.create_roi_table_region(description="all ROIs", region=list(range(len(roiset))))
    coef = header.get("neuropil_coefficient", header.get("trace_options", {}))
    # containers go into the module before their series so the ROI region shares an ancestor
    fl = Fluorescence(name="Fluorescence")
    ophys.add(fl)
    for name, key, doc in (
        ("F", "f", "raw ROI fluorescence (weighted mean over the mask)"),
        ("Fneu", "fneu", "neuropil fluorescence (annulus excluding cells)"),
    ):
        fl.add_roi_response_series(
            RoiResponseSeries(
                name=name,
                description=doc,
                rois=region,
                unit="a.u.",
                timestamps=t_s,
                data=H5DataIO(np.asarray(imaging[key], np.float32), compression="gzip"),
            )
        )
    dff = DfOverF(name="DfOverF")
    ophys.add(dff)
    dff.add_roi_response_series(
        RoiResponseSeries(
            name="dff",
            description=f"causal ΔF/F of F - c*Fneu (pipeline parameters: {json_text(coef)})",
            rois=region,
            unit="n.a.",
            timestamps=t_s,
            data=H5DataIO(np.asarray(imaging["dff"], np.float32), compression="gzip"),
        )
    )
    return n_frames, len(roiset), warn

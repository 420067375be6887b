"""Write ScanImage-compatible BigTIFF files (test fixtures, demos, ``rig imaging synth``).

tifffile writes the pages (int16, uncompressed, one strip each; Software = the ``SI.`` text,
Artist = the ROI-group JSON, ImageDescription = the page's frame header). ScanImage also keeps a
static metadata block at byte 16, which tifffile does not write, so :func:`splice_si_block`
inserts it afterwards and moves every file offset by its length. The file is streamed, never held
in memory.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import tifffile

from acquisition.sources.bigtiff import int_values, iter_ifds
from acquisition.sources.scanimage_meta import SI_MAGIC

HeaderStyle = Literal["text", "json", "frameheader"]

_OFFSET_TAGS = {273, 324}  # StripOffsets, TileOffsets: their values are file offsets
_UNSUPPORTED_OFFSET_TAGS = {330, 34665, 34853, 40965}  # SubIFDs, Exif, GPS, Interop IFDs
_COPY_CHUNK = 16 * 1024 * 1024


def default_roi_groups(size_y: int, size_x: int) -> dict[str, object]:
    """A minimal single-ROI ``RoiGroups`` object like ScanImage writes for a plain frame scan."""
    return {
        "RoiGroups": {
            "imagingRoiGroup": {
                "ver": 1,
                "classname": "scanimage.mroi.RoiGroup",
                "name": "Default Imaging ROI Group",
                "rois": {
                    "ver": 1,
                    "classname": "scanimage.mroi.Roi",
                    "name": "Default Imaging Roi",
                    "zs": 0,
                    "scanfields": {
                        "classname": "scanimage.mroi.scanfield.fields.RotatedRectangle",
                        "pixelResolutionXY": [size_x, size_y],
                    },
                },
            },
            "photostimRoiGroups": None,
            "integrationRoiGroup": {
                "ver": 1,
                "classname": "scanimage.mroi.RoiGroup",
                "name": "",
                "rois": {"_ArrayType_": "double", "_ArraySize_": [1, 0], "_ArrayData_": None},
            },
        }
    }


def _matlab(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(_matlab(x) for x in v) + "]"
    return repr(v) if isinstance(v, float) else str(v)


def si_static_values(
    shape_yx: tuple[int, int],
    channels_saved: Sequence[int],
    n_slices: int,
    n_flyback: int,
    frame_rate_hz: float,
    frames_per_file: int,
    line_phase_px: float = 0.0,
    version_major: str = "2022",
) -> dict[str, object]:
    """The static ``SI.`` keys the fixtures carry (values as Python objects)."""
    fastz = n_slices > 1
    per_volume = n_slices + (n_flyback if fastz else 0)
    return {
        "SI.VERSION_MAJOR": version_major,
        "SI.VERSION_MINOR": "1",
        "SI.TIFF_FORMAT_VERSION": 3,
        "SI.imagingSystem": "ResScanner",
        "SI.hChannels.channelSave": list(channels_saved),
        "SI.hChannels.channelOffset": [0, 0, 0, 0],
        "SI.hRoiManager.scanFrameRate": float(frame_rate_hz),
        "SI.hRoiManager.scanVolumeRate": float(frame_rate_hz) / per_volume,
        "SI.hRoiManager.linesPerFrame": shape_yx[0],
        "SI.hRoiManager.pixelsPerLine": shape_yx[1],
        "SI.hStackManager.enable": fastz,
        "SI.hStackManager.framesPerSlice": 1,
        "SI.hStackManager.numSlices": n_slices,
        "SI.hStackManager.actualNumSlices": n_slices,
        "SI.hFastZ.enable": fastz,
        "SI.hFastZ.numDiscardFlybackFrames": n_flyback if fastz else 0,
        "SI.hScan2D.bidirectional": True,
        "SI.hScan2D.linePhase": float(line_phase_px),
        "SI.hScan2D.logFramesPerFile": frames_per_file,
    }


def si_text(values: dict[str, object], sep: str = "\n") -> str:
    """``SI.key = value`` lines; ``channelSave`` as a column vector like ScanImage writes it."""
    lines = []
    for k, v in values.items():
        if k == "SI.hChannels.channelSave" and isinstance(v, list):
            lit = str(v[0]) if len(v) == 1 else "[" + ";".join(str(x) for x in v) + "]"
        else:
            lit = _matlab(v)
        lines.append(f"{k} = {lit}")
    return sep.join(lines) + sep


def si_json(values: dict[str, object], roi_groups: dict[str, object]) -> str:
    """The older JSON static metadata: ``{"SI": {nested...}, "RoiGroups": {...}}``."""
    nested: dict[str, object] = {}
    for key, v in values.items():
        parts = key.split(".")[1:]
        node = nested
        for p in parts[:-1]:
            node = node.setdefault(p, {})  # type: ignore[assignment]
        node[parts[-1]] = v
    return json.dumps({"SI": nested, **roi_groups}, indent=2)


def frame_header(fields: dict[str, object], style: HeaderStyle = "text", sep: str = "\n") -> str:
    """One page's ImageDescription in the requested style."""
    if style == "text":
        return sep.join(f"{k} = {_header_value(v)}" for k, v in fields.items()) + sep
    body = json.dumps(fields if style == "json" else {"FrameHeader": fields}, indent=2)
    return body.replace("\n", sep)


def _header_value(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.9f}"
    if isinstance(v, list):
        return (
            "["
            + " ".join(_header_value(x) if not isinstance(x, float) else f"{x:g}" for x in v)
            + "]"
        )
    if isinstance(v, dict):
        return "{}"
    return str(v)


def header_fields(
    frame_number: int, t_s: float, last: bool, aux: Sequence[Sequence[float]] = ()
) -> dict[str, object]:
    """The per-frame keys ScanImage writes, in its order."""
    out: dict[str, object] = {
        "frameNumbers": frame_number,
        "acquisitionNumbers": 1,
        "frameNumberAcquisition": frame_number,
        "frameTimestamps_sec": round(float(t_s), 9),
        "acqTriggerTimestamps_sec": -0.000087,
        "nextFileMarkerTimestamps_sec": -1.0,
        "endOfAcquisition": int(last),
        "endOfAcquisitionMode": 0,
        "dcOverVoltage": 0,
        "epoch": [2026, 11, 27, 10, 0, 0.0],
    }
    for i in range(4):
        out[f"auxTrigger{i}"] = [float(x) for x in aux[i]] if i < len(aux) else []
    out["I2CData"] = {}
    return out


def write_scanimage_tiff(
    path: str | Path,
    data: np.ndarray,
    *,
    frame_rate_hz: float = 30.0,
    channels_saved: Sequence[int] | None = None,
    n_flyback: int = 0,
    header_style: HeaderStyle = "text",
    line_sep: str = "\n",
    timestamps_s: np.ndarray | None = None,
    first_frame_number: int = 1,
    total_frames: int | None = None,
    frames_per_file: int | None = None,
    line_phase_px: float = 0.0,
    aux_triggers: dict[int, Sequence[Sequence[float]]] | None = None,
) -> Path:
    """Write one ScanImage BigTIFF.

    Parameters
    ----------
    path : path
        Output file.
    data : np.ndarray
        ``(T, Y, X)`` single plane and channel, or ``(T, Z, C, Y, X)``; any integer or float dtype,
        rounded and clipped to int16 (ScanImage saves int16).
    frame_rate_hz : float
        ``scanFrameRate``: rate of frames (slices), not volumes.
    channels_saved : sequence of int, optional
        ScanImage channel numbers (1-based), one per ``C``; default ``1..C``.
    n_flyback : int
        FastZ flyback frames appended to every volume (zeros) when ``Z > 1``.
    header_style : {"text", "json", "frameheader"}
        Page-header style; ``"frameheader"`` also makes the static block JSON.
    line_sep : str
        ``"\\n"`` or ``"\\r"`` between header lines.
    timestamps_s : np.ndarray, optional
        float ``(T,)`` volume start times; default ``t / volume rate``. Slice ``z`` of volume
        ``t`` is stamped ``timestamps_s[t] + z / frame_rate_hz``.
    first_frame_number : int
        ScanImage frame number of the first slice-frame in this file (files of one acquisition
        continue the count).
    total_frames : int, optional
        Slice-frames in the whole acquisition (sets ``endOfAcquisition`` on the last one).
    frames_per_file : int, optional
        Written as ``SI.hScan2D.logFramesPerFile``.
    line_phase_px : float
        Written as ``SI.hScan2D.linePhase``.
    aux_triggers : dict, optional
        ``{page_frame_index: [[aux0 times], [aux1 times], ...]}`` edge times (s) per frame.

    Returns
    -------
    Path
    """
    path = Path(path)
    arr = np.asarray(data)
    if arr.ndim == 3:
        arr = arr[:, None, None]
    if arr.ndim != 5:
        raise ValueError(f"data must be (T, Y, X) or (T, Z, C, Y, X), got shape {arr.shape}")
    n_t, n_z, n_c, ny, nx = arr.shape
    channels = list(channels_saved) if channels_saved is not None else list(range(1, n_c + 1))
    if len(channels) != n_c:
        raise ValueError(f"channels_saved has {len(channels)} entries for {n_c} channels")
    flyback = n_flyback if n_z > 1 else 0
    per_volume = n_z + flyback
    values = si_static_values(
        (ny, nx), channels, n_z, flyback, frame_rate_hz,
        frames_per_file or n_t * per_volume, line_phase_px,
        version_major="2018a" if header_style == "frameheader" else "2022",
    )  # fmt: skip
    rois = default_roi_groups(ny, nx)
    roi_json = json.dumps(rois)
    static = si_json(values, rois) if header_style == "frameheader" else si_text(values, line_sep)
    if timestamps_s is None:
        timestamps_s = np.arange(n_t) * (per_volume / frame_rate_hz)
    total = total_frames if total_frames is not None else first_frame_number - 1 + n_t * per_volume
    zero = np.zeros((ny, nx), np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tifffile.TiffWriter(tmp, bigtiff=True, byteorder="<") as tw:
        frame_idx = 0
        for t in range(n_t):
            for z in range(per_volume):
                number = first_frame_number + t * per_volume + z
                fields = header_fields(
                    number,
                    float(timestamps_s[t]) + z / frame_rate_hz,
                    number == total,
                    (aux_triggers or {}).get(frame_idx, ()),
                )
                desc = frame_header(fields, header_style, line_sep)
                for c in range(n_c):
                    page = zero if z >= n_z else _to_int16(arr[t, z, c])
                    tw.write(
                        page,
                        photometric="minisblack",
                        rowsperstrip=ny,
                        description=desc,
                        software=static,
                        metadata=None,
                        contiguous=False,
                        extratags=[(315, "s", 0, roi_json, True)],
                    )
                frame_idx += 1
    block_text = static if header_style == "frameheader" else si_text(values, line_sep)
    splice_si_block(tmp, path, block_text, "" if header_style == "frameheader" else roi_json)
    tmp.unlink()
    return path


def _to_int16(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.int16:
        return np.ascontiguousarray(a)
    if np.issubdtype(a.dtype, np.floating):
        a = np.rint(a)
    return np.clip(a, -32768, 32767).astype(np.int16)


def splice_si_block(
    src: str | Path, dst: str | Path, si_text_: str, roi_json: str, version: int = 3
) -> int:
    """Copy BigTIFF ``src`` to ``dst`` with the ScanImage static block inserted at byte 16.

    Every file offset (first-IFD pointer, next-IFD pointers, out-of-line tag values, strip and
    tile offsets) moves by the block length. Returns that length (a multiple of 8, so IFDs stay
    word-aligned; padding after the counted data is zeros).

    Raises
    ------
    ValueError
        ``src`` is not a little-endian BigTIFF, or uses SubIFD/Exif offsets this does not move.
    """
    text_b = si_text_.encode() + b"\x00"
    roi_b = (roi_json.encode() + b"\x00") if roi_json else b""
    body = struct.pack("<IIII", SI_MAGIC, version, len(text_b), len(roi_b)) + text_b + roi_b
    body += b"\x00" * (-len(body) % 8)
    shift = len(body)
    src, dst = Path(src), Path(dst)
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        head = fi.read(16)
        bo, magic, osize, _, first_ifd = struct.unpack("<2sHHHQ", head)
        if bo != b"II" or magic != 43 or osize != 8:
            raise ValueError(f"{src}: not a little-endian BigTIFF (header {head[:8]!r})")
        # The first-IFD pointer moves now; the rest move in place once the bytes are copied.
        fo.write(struct.pack("<2sHHHQ", bo, magic, osize, 0, first_ifd + shift))
        fo.write(body)
        while chunk := fi.read(_COPY_CHUNK):
            fo.write(chunk)
    with open(dst, "r+b") as f:
        _shift_ifds(f, shift, dst)
    return shift


def _shift_ifds(fh: BinaryIO, shift: int, name: Path) -> None:
    """Move every offset in the IFD chain of ``fh`` (bytes already moved) by ``shift``."""
    # Each IFD is rewritten as soon as it is read; the walk reads next pointers before that.
    for ifd in iter_ifds(fh, name, pointer_shift=shift):
        for i in range(len(ifd)):
            tag, typ, count, inline = ifd.entry(i)
            if tag in _UNSUPPORTED_OFFSET_TAGS:
                raise ValueError(f"{name}: tag {tag} at page {ifd.page} holds offsets not moved")
            if tag in _OFFSET_TAGS:
                vals = int_values(fh, ifd, i, pointer_shift=shift)
                fmt = {3: "H", 4: "I", 16: "Q"}[typ]
                packed = struct.pack(f"<{count}{fmt}", *(v + shift for v in vals))
                if inline:
                    ifd.entries[20 * i + 12 : 20 * i + 12 + len(packed)] = packed
                else:
                    (off,) = struct.unpack_from("<Q", ifd.entries, 20 * i + 12)
                    fh.seek(off + shift)
                    fh.write(packed)
            if not inline:
                (off,) = struct.unpack_from("<Q", ifd.entries, 20 * i + 12)
                struct.pack_into("<Q", ifd.entries, 20 * i + 12, off + shift)
        fh.seek(ifd.offset + 8)
        fh.write(bytes(ifd.entries))
        fh.write(struct.pack("<Q", ifd.next_offset))


def write_scanimage_series(
    folder: str | Path,
    data: np.ndarray,
    *,
    volumes_per_file: int,
    basename: str = "file",
    acquisition: int = 1,
    frame_rate_hz: float = 30.0,
    n_flyback: int = 0,
    timestamps_s: np.ndarray | None = None,
    **kwargs: object,
) -> list[Path]:
    """Write one acquisition split over files as ScanImage names them.

    Files are ``<basename>_<acquisition:05d>_<file:05d>.tif`` (file counting from 1); frame
    numbers and timestamps continue across files. ``data`` and ``kwargs`` are as for
    :func:`write_scanimage_tiff`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arr = np.asarray(data)
    if arr.ndim == 3:
        arr = arr[:, None, None]
    n_t, n_z = arr.shape[:2]
    per_volume = n_z + (n_flyback if n_z > 1 else 0)
    if timestamps_s is None:
        timestamps_s = np.arange(n_t) * (per_volume / frame_rate_hz)
    paths = []
    for k, t0 in enumerate(range(0, n_t, volumes_per_file)):
        t1 = min(t0 + volumes_per_file, n_t)
        paths.append(
            write_scanimage_tiff(
                folder / f"{basename}_{acquisition:05d}_{k + 1:05d}.tif",
                arr[t0:t1],
                frame_rate_hz=frame_rate_hz,
                n_flyback=n_flyback,
                timestamps_s=np.asarray(timestamps_s)[t0:t1],
                first_frame_number=1 + t0 * per_volume,
                total_frames=n_t * per_volume,
                frames_per_file=volumes_per_file * per_volume,
                **kwargs,  # type: ignore[arg-type]
            )
        )
    return paths

"""Append-only imaging results in a session's ``imaging/`` folder, and a reader for them.

Files (all little-endian, no header, one record per processed frame, appended as frames are
processed; a crash leaves at most one partial record at the end, which the reader drops):

- ``rois.json``: written once at start: ``n_cells``, ``frame_shape``, ``roi_names``, ``source``,
  trace parameters, and ``frame_dtype`` (the record layout below).
- ``frames.bin``: records of :data:`FRAME_DTYPE`: ``frame_index`` (int64, source numbering),
  ``t_frame_s`` (float64, source time), ``t_board_us`` (int64, frame-clock time of that frame
  when it was known at write time, else -1), ``dy_px``, ``dx_px`` (float32 rigid shift),
  ``peak`` (float32 correlation peak), ``latency_ms`` (float32, push to result).
- ``f.f32``, ``fneu.f32``, ``dff.f32``: ``n_cells`` float32 per record.
- ``frame_times.bin`` (written at close): int64 board time (µs) of every processed frame, in
  ``frames.bin`` order, -1 where the frame clock had no edge for it.
- ``summary.json`` (written at close): counts, frame-clock mismatch, live statistics.

Output goes either through a :class:`rig.core.store.SessionWriter` (``open_append``/``append``,
so the session's fsync policy covers it) or through plain append-mode files in a folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np

FRAME_DTYPE = np.dtype(
    [
        ("frame_index", "<i8"),
        ("t_frame_s", "<f8"),
        ("t_board_us", "<i8"),
        ("dy_px", "<f4"),
        ("dx_px", "<f4"),
        ("peak", "<f4"),
        ("latency_ms", "<f4"),
    ]
)
TRACE_FILES = ("f.f32", "fneu.f32", "dff.f32")


class AppendSink(Protocol):
    """What the results writer needs: ``SessionWriter`` provides exactly this."""

    def open_append(self, rel: str, header: bytes = b"") -> IO[bytes]: ...

    def append(self, rel: str, data: bytes) -> None: ...


class FolderSink:
    """Plain append-only files under ``folder`` (for use without a session)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, IO[bytes]] = {}

    def open_append(self, rel: str, header: bytes = b"") -> IO[bytes]:
        if rel not in self._files:
            path = self.folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            f = open(path, "ab")  # noqa: SIM115 - kept open for appends until close()
            if header and f.tell() == 0:
                f.write(header)
            self._files[rel] = f
        return self._files[rel]

    def append(self, rel: str, data: bytes) -> None:
        f = self._files[rel]
        f.write(data)
        f.flush()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()


class ResultsWriter:
    """Writes processed frames to ``<prefix>`` files through an :class:`AppendSink`.

    Parameters
    ----------
    sink : AppendSink
        A ``SessionWriter`` (use ``prefix="imaging/"``) or a :class:`FolderSink`.
    prefix : str
        Path prefix inside the sink.
    """

    def __init__(self, sink: AppendSink, prefix: str = "imaging/") -> None:
        self.sink = sink
        self.prefix = prefix
        self.n_written = 0
        for name in ("frames.bin", *TRACE_FILES):
            sink.open_append(prefix + name)

    def _write_json(self, name: str, obj: dict[str, Any]) -> None:
        data = (json.dumps(obj, indent=1) + "\n").encode()
        self.sink.open_append(self.prefix + name)
        self.sink.append(self.prefix + name, data)

    def write_header(self, header: dict[str, Any]) -> None:
        """``rois.json`` (call once, before the first frame)."""
        self._write_json("rois.json", {**header, "frame_dtype": FRAME_DTYPE.descr})

    def append(self, records: np.ndarray, f: np.ndarray, fneu: np.ndarray, dff: np.ndarray) -> None:
        """Append B frame records (:data:`FRAME_DTYPE`) and (B, n_cells) float32 traces."""
        self.sink.append(self.prefix + "frames.bin", records.astype(FRAME_DTYPE).tobytes())
        for name, a in zip(TRACE_FILES, (f, fneu, dff), strict=True):
            self.sink.append(self.prefix + name, np.ascontiguousarray(a, "<f4").tobytes())
        self.n_written += len(records)

    def finish(self, frame_times_us: np.ndarray, summary: dict[str, Any]) -> None:
        """``frame_times.bin`` and ``summary.json`` (call once, at the end)."""
        rel = self.prefix + "frame_times.bin"
        self.sink.open_append(rel)
        self.sink.append(rel, np.asarray(frame_times_us, "<i8").tobytes())
        self._write_json("summary.json", summary)
        if isinstance(self.sink, FolderSink):
            self.sink.close()


def read_results(folder: str | Path) -> dict[str, Any]:
    """Read an ``imaging/`` folder written by :class:`ResultsWriter`.

    Returns a dict with ``header`` (rois.json), ``frames`` (structured array), ``f``, ``fneu``,
    ``dff`` ((T, n_cells) float32), and, when present, ``frame_times_us`` and ``summary``.
    Partial trailing records (a crash mid-write) are dropped.
    """
    folder = Path(folder)
    header = json.loads((folder / "rois.json").read_text())
    n = int(header["n_cells"])
    raw = (folder / "frames.bin").read_bytes()
    t = len(raw) // FRAME_DTYPE.itemsize
    out: dict[str, Any] = {"header": header}
    traces = {}
    for name in TRACE_FILES:
        a = np.fromfile(folder / name, "<f4")
        t = min(t, a.size // max(n, 1)) if n else t
        traces[name.split(".")[0]] = a
    out["frames"] = np.frombuffer(raw[: t * FRAME_DTYPE.itemsize], FRAME_DTYPE)
    for k, a in traces.items():
        out[k] = a[: t * n].reshape(t, n)
    if (folder / "frame_times.bin").exists():
        out["frame_times_us"] = np.fromfile(folder / "frame_times.bin", "<i8")
    if (folder / "summary.json").exists():
        out["summary"] = json.loads((folder / "summary.json").read_text())
    return out

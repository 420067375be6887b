"""``SessionReader``: opens a complete, aborted or interrupted (killed) session folder.

A killed writer can leave a torn last record (half a JSON line, a partial binary record). That
tail is dropped and reported; anything malformed *before* the tail is corruption and raises
:class:`SessionFormatError` naming the file and the line or byte offset.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import ValidationError

from rig.core.errors import SessionFormatError
from rig.core.events import Event
from rig.core.store.formats import (
    BIN_HEADER,
    EVENTS_FORMAT_VERSION,
    LEVER_DTYPE,
    LEVER_FORMAT_VERSION,
    LEVER_MAGIC,
    RAW_CHUNK,
    RAW_FORMAT_VERSION,
    RAW_MAGIC,
    TRIALS_FORMAT_VERSION,
    SessionMeta,
)

Status = Literal["complete", "aborted", "interrupted"]


@dataclass
class TornTail:
    """A partial last record left by a killed writer (dropped on read)."""

    file: str
    offset: int
    n_bytes: int


class SessionReader:
    """Read one session folder.

    Attributes
    ----------
    meta : SessionMeta
    status : {"complete", "aborted", "interrupted"}
        ``interrupted`` means the writer never closed it (crash, ``kill -9``, power cut).
    torn : list[TornTail]
        Partial records dropped at the end of files (only possible when interrupted).
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        meta_path = self.folder / "session.json"
        if not meta_path.is_file():
            raise SessionFormatError(f"{meta_path}: missing; not a motor-rig session folder")
        try:
            self.meta = SessionMeta.model_validate_json(meta_path.read_text(encoding="utf-8"))
        except ValidationError as e:
            first = e.errors(include_url=False)[0]
            loc = ".".join(str(p) for p in first["loc"])
            raise SessionFormatError(
                f"{meta_path}: {loc or 'top level'}: {first['msg']} ({len(e.errors())} problem(s))"
            ) from None
        self.torn: list[TornTail] = []
        self._events: list[Event] | None = None

    @property
    def status(self) -> Status:
        if self.meta.status == "running":
            return "interrupted"
        return self.meta.status

    # ------------------------------------------------------------------ events
    def events(self) -> list[Event]:
        """All events in file order (cached)."""
        if self._events is None:
            self._events = list(self._iter_events())
        return self._events

    def _iter_events(self) -> Iterator[Event]:
        path = self.folder / "events.jsonl"
        if not path.exists():
            raise SessionFormatError(f"{path}: missing")
        data = path.read_bytes()
        offset = 0
        lines = data.split(b"\n")
        tail = lines.pop()  # bytes after the last newline: empty, or a torn record
        for lineno, raw in enumerate(lines, start=1):
            try:
                rec = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise SessionFormatError(
                    f"{path}: line {lineno} (byte {offset}): not valid JSON; file is corrupt"
                ) from None
            if lineno == 1:
                if rec.get("format") != "motor-rig.events":
                    raise SessionFormatError(f"{path}: line 1: not a motor-rig events file")
                if rec.get("format_version") != EVENTS_FORMAT_VERSION:
                    raise SessionFormatError(
                        f"{path}: format_version {rec.get('format_version')!r}, "
                        f"this reader knows {EVENTS_FORMAT_VERSION}"
                    )
            else:
                try:
                    yield Event.from_record(rec)
                except (KeyError, TypeError):
                    raise SessionFormatError(
                        f"{path}: line {lineno} (byte {offset}): record lacks name/source/t_host_ns"
                    ) from None
            offset += len(raw) + 1
        if tail:
            self._torn("events.jsonl", offset, len(tail))

    def _torn(self, rel: str, offset: int, n: int) -> None:
        if self.status != "interrupted":
            raise SessionFormatError(
                f"{self.folder / rel}: byte {offset}: {n} bytes of a partial record at the end "
                f"of a session marked {self.status!r}; file is corrupt"
            )
        if not any(t.file == rel for t in self.torn):
            self.torn.append(TornTail(rel, offset, n))

    # ------------------------------------------------------------------ trials
    def trials(self) -> list[dict[str, str]]:
        """Finished trials as dicts of strings (columns as written). Empty if none finished."""
        path = self.folder / "trials.tsv"
        if not path.exists():
            return []
        data = path.read_bytes()
        lines = data.split(b"\n")
        tail = lines.pop()
        if tail:
            self._torn("trials.tsv", len(data) - len(tail), len(tail))
        if not lines:
            return []
        head = lines[0].decode()
        if head != f"# motor-rig.trials format_version={TRIALS_FORMAT_VERSION}":
            raise SessionFormatError(f"{path}: line 1: unknown header {head[:60]!r}")
        if len(lines) < 2:
            return []
        cols = lines[1].decode().split("\t")
        out = []
        for i, raw in enumerate(lines[2:], start=3):
            cells = raw.decode().split("\t")
            if len(cells) != len(cols):
                raise SessionFormatError(
                    f"{path}: line {i}: {len(cells)} columns, header has {len(cols)}"
                )
            out.append(dict(zip(cols, cells, strict=True)))
        return out

    # ------------------------------------------------------------------ lever
    def lever(self) -> np.ndarray:
        """Lever samples, structured array of :data:`LEVER_DTYPE` (``t_device_us``, ``counts``)."""
        path = self.folder / "lever.bin"
        data = self._read_bin(path, LEVER_MAGIC, LEVER_FORMAT_VERSION)
        rs = LEVER_DTYPE.itemsize
        n = len(data) // rs
        if len(data) % rs:
            self._torn("lever.bin", BIN_HEADER.size + n * rs, len(data) % rs)
        return np.frombuffer(data[: n * rs], dtype=LEVER_DTYPE).copy()

    def lever_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """``(t_s, position_mm)``: board time in s and calibrated position, float64."""
        lev = self.lever()
        cal = (self.meta.rig_config.get("lever_board") or {}).get("calibration") or {}
        rest = float(cal.get("rest_counts", 0))
        cpm = float(cal.get("counts_per_mm", 1.0))
        return lev["t_device_us"] / 1e6, (lev["counts"] - rest) / cpm

    # ------------------------------------------------------------------ raw bytes
    def raw_devices(self) -> list[str]:
        return sorted(p.stem for p in (self.folder / "raw").glob("*.bin"))

    def raw(self, device: str) -> Iterator[tuple[int, bytes]]:
        """``(t_host_ns, chunk)`` in arrival order for one device's received bytes."""
        path = self.folder / "raw" / f"{device}.bin"
        data = self._read_bin(path, RAW_MAGIC, RAW_FORMAT_VERSION)
        pos = 0
        while pos < len(data):
            if len(data) - pos < RAW_CHUNK.size:
                self._torn(f"raw/{device}.bin", BIN_HEADER.size + pos, len(data) - pos)
                return
            t, n = RAW_CHUNK.unpack_from(data, pos)
            if pos + RAW_CHUNK.size + n > len(data):
                self._torn(f"raw/{device}.bin", BIN_HEADER.size + pos, len(data) - pos)
                return
            yield t, data[pos + RAW_CHUNK.size : pos + RAW_CHUNK.size + n]
            pos += RAW_CHUNK.size + n

    def _read_bin(self, path: Path, magic: bytes, version: int) -> bytes:
        if not path.exists():
            raise SessionFormatError(f"{path}: missing")
        data = path.read_bytes()
        if len(data) < BIN_HEADER.size:
            raise SessionFormatError(f"{path}: {len(data)} bytes, shorter than its header")
        m, v, _ = BIN_HEADER.unpack_from(data)
        if m != magic:
            raise SessionFormatError(f"{path}: byte 0: magic {m!r}, expected {magic!r}")
        if v != version:
            raise SessionFormatError(
                f"{path}: byte 8: format_version {v}, this reader knows {version}"
            )
        return data[BIN_HEADER.size :]

    def summary(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "subject": self.meta.subject_id,
            "task": self.meta.task,
            "started_at": self.meta.started_at.isoformat(),
            "status": self.status,
            "n_trials": len(self.trials()),
        }


def find_sessions(data_dir: str | Path) -> list[Path]:
    """Every session folder (one holding ``session.json``) under ``data_dir``, sorted."""
    root = Path(data_dir).expanduser()
    return sorted(p.parent for p in root.glob("*/*/session.json"))

"""``SessionWriter``: append-only, flushed per record, fsynced per trial and at least every second.

Why this shape: a ``kill -9`` of the rig process must lose at most the last second. Every record
is written with one ``write`` call and flushed to the OS at once, so a killed process loses
nothing the OS already has; fsync bounds what a power cut can take. Records are complete lines
(or fixed-size binary records), so the reader can always tell a torn tail from a corrupt body.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import numpy as np

from rig.core.errors import RigError
from rig.core.events import Event
from rig.core.store.formats import (
    BIN_HEADER,
    EVENTS_HEADER,
    LEVER_DTYPE,
    LEVER_FORMAT_VERSION,
    LEVER_MAGIC,
    RAW_CHUNK,
    RAW_FORMAT_VERSION,
    RAW_MAGIC,
    TRIALS_HEADER_LINE,
    SessionMeta,
    session_dir_name,
)


class StoreError(RigError):
    """Writing the session failed (disk full, permissions); what was written before is intact."""


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a reader sees either the old or the new file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """fsync a directory so a rename or a new file in it survives a power cut."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, datetime):
        return o.isoformat()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def _tsv_cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float | int | np.number) and not isinstance(v, bool):
        return repr(float(v)) if isinstance(v, float | np.floating) else str(int(v))
    if isinstance(v, str):
        return v.replace("\t", " ").replace("\n", " ")
    return json.dumps(v, default=_json_default, separators=(",", ":"))


class SessionWriter:
    """Writes one session folder. Thread-safe: the reader threads, the runner and the imaging
    pipeline may all write at once.

    Parameters
    ----------
    folder : Path
        The session folder; created (must not exist yet, so no session is ever overwritten).
    meta : SessionMeta
        Written to ``session.json`` at once with ``status="running"``.
    fsync_interval_s : float
        Longest time between fsyncs while records arrive (s).

    Use :meth:`create` to make the folder under ``data_dir/subject/``.
    """

    def __init__(self, folder: Path, meta: SessionMeta, fsync_interval_s: float = 1.0) -> None:
        self.folder = Path(folder)
        self.meta = meta
        self.fsync_interval_s = fsync_interval_s
        self._lock = threading.RLock()
        self._closed = False
        self._failed: StoreError | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=False)
            (self.folder / "raw").mkdir()
            (self.folder / "imaging").mkdir()
        except FileExistsError:
            raise StoreError(
                f"{self.folder}: session folder exists already; not overwriting"
            ) from None
        except OSError as e:
            raise StoreError(f"{self.folder}: cannot create session folder: {e.strerror}") from None
        self._files: dict[str, IO[bytes]] = {}
        self._dirty: set[str] = set()
        self._trial_columns: list[str] | None = None
        self.n_events = 0
        self.n_trials = 0
        self.n_lever_samples = 0
        self._last_fsync = time.monotonic()
        self._write_meta()
        self._events = self._open("events.jsonl", json.dumps(EVENTS_HEADER).encode() + b"\n")
        self._lever = self._open(
            "lever.bin", BIN_HEADER.pack(LEVER_MAGIC, LEVER_FORMAT_VERSION, LEVER_DTYPE.itemsize)
        )
        self._stop_timer = threading.Event()
        self._timer = threading.Thread(target=self._fsync_loop, name="session-fsync", daemon=True)
        self._timer.start()

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls, data_dir: Path, meta: SessionMeta, fsync_interval_s: float = 1.0
    ) -> SessionWriter:
        """Make ``<data_dir>/<subject>/<YYYY-MM-DD_HHMMSS>_<task>/`` and open it for writing.

        If a folder of that name exists (two sessions within a second), a ``_2``, ``_3``...
        suffix is added rather than overwriting anything.
        """
        base = Path(data_dir).expanduser() / meta.subject_id
        name = session_dir_name(meta.started_at, meta.task)
        folder = base / name
        n = 2
        while folder.exists():
            folder = base / f"{name}_{n}"
            n += 1
        return cls(folder, meta, fsync_interval_s)

    # ------------------------------------------------------------------ low level
    def _open(self, rel: str, header: bytes) -> IO[bytes]:
        path = self.folder / rel
        f = open(path, "xb", buffering=0)  # noqa: SIM115 - lives as long as the writer
        self._files[rel] = f
        self._write(rel, f, header)
        return f

    def _write(self, rel: str, f: IO[bytes], data: bytes) -> None:
        """One unbuffered write per record: the OS has it the moment this returns."""
        if self._failed is not None:
            raise self._failed
        try:
            view = memoryview(data)
            while view:  # raw files may write short; loop until the record is whole
                n = f.write(view)
                if n is None:  # pragma: no cover - non-blocking files only
                    continue
                view = view[n:]
        except OSError as e:
            what = "disk full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
            self._failed = StoreError(
                f"{self.folder / rel}: write failed ({what}); session stopped, "
                "everything written before this record is intact"
            )
            raise self._failed from None
        self._dirty.add(rel)
        if time.monotonic() - self._last_fsync >= self.fsync_interval_s:
            self._fsync_all()

    def _fsync_all(self) -> None:
        for rel in list(self._dirty):
            # an fsync failure surfaces as an error on the next write; nothing to do here
            with contextlib.suppress(OSError):
                os.fsync(self._files[rel].fileno())
        self._dirty.clear()
        self._last_fsync = time.monotonic()

    def _fsync_loop(self) -> None:
        while not self._stop_timer.wait(self.fsync_interval_s / 2):
            with self._lock:
                if self._closed:
                    return
                if self._dirty and time.monotonic() - self._last_fsync >= self.fsync_interval_s:
                    self._fsync_all()

    def _write_meta(self) -> None:
        text = self.meta.model_dump_json(indent=2) + "\n"
        try:
            atomic_write_text(self.folder / "session.json", text)
        except OSError as e:
            raise StoreError(
                f"{self.folder / 'session.json'}: cannot write: {e.strerror}"
            ) from None

    # ------------------------------------------------------------------ public API
    @property
    def failed(self) -> StoreError | None:
        """The write error that stopped this writer, if any."""
        return self._failed

    def write_event(self, event: Event) -> None:
        """Append one event (one JSON line, flushed)."""
        line = json.dumps(event.to_record(), default=_json_default, separators=(",", ":"))
        with self._lock:
            self._check_open()
            self._write("events.jsonl", self._events, line.encode() + b"\n")
            self.n_events += 1

    def write_events(self, events: Iterable[Event]) -> None:
        for ev in events:
            self.write_event(ev)

    def write_trial(self, record: Mapping[str, Any]) -> None:
        """Append one finished trial to ``trials.tsv`` and fsync everything (a trial boundary)."""
        with self._lock:
            self._check_open()
            if self._trial_columns is None:
                self._trial_columns = list(record.keys())
                head = TRIALS_HEADER_LINE + "\n" + "\t".join(self._trial_columns) + "\n"
                f = open(self.folder / "trials.tsv", "xb", buffering=0)  # noqa: SIM115
                self._files["trials.tsv"] = f
                self._write("trials.tsv", f, head.encode())
            extra = set(record) - set(self._trial_columns)
            if extra:
                raise StoreError(
                    f"{self.folder / 'trials.tsv'}: trial has columns {sorted(extra)} "
                    f"not in the header {self._trial_columns}"
                )
            row = "\t".join(_tsv_cell(record.get(c)) for c in self._trial_columns) + "\n"
            self._write("trials.tsv", self._files["trials.tsv"], row.encode())
            self.n_trials += 1
            self._fsync_all()

    def write_lever(self, t_device_us: np.ndarray, counts: np.ndarray) -> None:
        """Append lever samples.

        Parameters
        ----------
        t_device_us : ndarray, shape (n,), int64
            Board time of each sample, µs.
        counts : ndarray, shape (n,), int
            Raw sensor counts (calibration in ``session.json``).
        """
        rec = np.empty(len(t_device_us), dtype=LEVER_DTYPE)
        rec["t_device_us"] = t_device_us
        rec["counts"] = counts
        with self._lock:
            self._check_open()
            self._write("lever.bin", self._lever, rec.tobytes())
            self.n_lever_samples += len(rec)

    def write_raw(self, device: str, data: bytes, t_host_ns: int | None = None) -> None:
        """Append bytes received from ``device`` with their host receive time (ns)."""
        if not data:
            return
        rel = f"raw/{device}.bin"
        t = time.monotonic_ns() if t_host_ns is None else t_host_ns
        with self._lock:
            self._check_open()
            f = self._files.get(rel)
            if f is None:
                f = self._open(rel, BIN_HEADER.pack(RAW_MAGIC, RAW_FORMAT_VERSION, 0))
            self._write(rel, f, RAW_CHUNK.pack(t, len(data)) + data)

    def open_append(self, rel: str, header: bytes = b"") -> IO[bytes]:
        """Open an extra append-only file in the folder (e.g. ``imaging/dff.f32``).

        The caller writes through :meth:`append`, so the same flush/fsync rules hold.
        """
        with self._lock:
            self._check_open()
            if rel in self._files:
                return self._files[rel]
            (self.folder / rel).parent.mkdir(parents=True, exist_ok=True)
            return self._open(rel, header)

    def append(self, rel: str, data: bytes) -> None:
        with self._lock:
            self._check_open()
            self._write(rel, self._files[rel], data)

    def update_meta(self, **fields: Any) -> None:
        """Change fields of ``session.json`` (atomically replaced)."""
        with self._lock:
            for k, v in fields.items():
                setattr(self.meta, k, v)
            self._write_meta()

    def close(self, status: str = "complete", reason: str = "") -> None:
        """fsync and close every file and mark ``session.json`` complete (or aborted)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop_timer.set()
            try:
                self._fsync_all()
            finally:
                for f in self._files.values():
                    f.close()
            self.meta.stopped_at = datetime.now(UTC)
            self.meta.status = status  # type: ignore[assignment]
            self.meta.stop_reason = reason
            self.meta.n_trials = self.n_trials
            try:
                self._write_meta()
            except StoreError:
                if self._failed is None:
                    raise
                # disk already full: session.json keeps "running", readers say "interrupted"

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self.folder}: session is closed")

    def __enter__(self) -> SessionWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc is None:
            self.close("complete")
        else:
            self.close("aborted", reason=f"{type(exc).__name__}: {exc}")

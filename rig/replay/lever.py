"""Replay a lever session: recorded board bytes -> the same driver and task code -> a new session.

The recorded ``raw/<board>.bin`` chunks go through ``ReplayTransport`` (virtual clock: each
chunk's recorded host time) into ``LeverBoard`` in passive mode (parse only, send nothing), the
same parser the live rig uses. Its callbacks drive the task exactly as ``LeverRunner`` does:
trial ``n+1`` is planned when trial ``n`` starts, trial ``n`` is recorded from its trail when it
ends, shaping learns from it, the stop criteria are checked at each trial end, and after a stop
no new trial is planned (the board's abort of the running trial is in the recording). All of it
is written through a fresh ``SessionWriter``, so the regenerated folder has the live format and
:mod:`rig.replay.compare` compares it with the recording file by file.

Everything runs on the reader thread, in stream order, so a replay is deterministic. The
per-trial bookkeeping is the runner's own :class:`rig.runner.trials.TrialBook`.

Inputs that are not in the bytes are taken from the recording: task parameters and rig config
(``session.json``), the subject's state at the start (``extra.subject_at_start``, saved by the
runner; inferred from ``trials.tsv`` for older recordings), and a stop by hand (the recorded
``stop_reason``).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rig.core.config import RigConfig, SubjectState
from rig.core.devices import LeverBoard
from rig.core.errors import RigError
from rig.core.events import Event
from rig.core.statemachine import TrailEvent
from rig.core.store import SessionReader, SessionWriter
from rig.core.transport import ReplayTransport
from rig.runner.trials import TrialBook
from tasks.lever_tasks import LeverTask, make_task
from tasks.params import make_params


class ReplayError(RigError):
    """The session cannot be replayed (not a lever session, no raw bytes, replay stalled)."""


@dataclass
class ReplayRun:
    """A finished replay: where the regenerated session is and how long it took."""

    source: Path
    regenerated: Path
    wall_s: float
    session_s: float
    n_chunks: int = 0
    stop_reason: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def speedup(self) -> float:
        """Session (board) seconds replayed per wall second."""
        return self.session_s / self.wall_s if self.wall_s > 0 else float("inf")


def subject_at_start(reader: SessionReader) -> SubjectState:
    """The subject's state when the session started, as the runner saved it in
    ``meta.extra["subject_at_start"]``.

    Recordings made before the runner saved it get the shaping state inferred from each
    context's first ``hold_ms`` in ``trials.tsv`` (a context's shaper only changes after its own
    trials, so its first trial shows the value the subject came in with).
    """
    meta = reader.meta
    saved = (meta.extra or {}).get("subject_at_start")
    if saved is not None:
        try:
            return SubjectState.model_validate(saved)
        except ValueError as e:
            raise ReplayError(
                f"{reader.folder / 'session.json'}: extra.subject_at_start is not a subject "
                f"state: {e}"
            ) from None
    shaping: dict[str, dict[str, float]] = {}
    for row in reader.trials():
        ctx = row.get("context", "")
        if ctx and ctx not in shaping and row.get("hold_ms", "") not in ("", "None"):
            shaping[ctx] = {"hold_ms": float(row["hold_ms"])}
    return SubjectState(subject_id=meta.subject_id, shaping=shaping)


class _Replayer:
    """Drives the runner's :class:`~rig.runner.trials.TrialBook` from board callbacks, both of
    its halves on the reader thread in stream order (the live runner splits them across its
    reader and runner threads); after a stop no new trial is planned."""

    def __init__(self, task: LeverTask, writer: SessionWriter, board_name: str) -> None:
        self.writer = writer
        self.board_name = board_name
        self.book = TrialBook(task, self.host_event, writer.write_trial)
        self.stopping = False
        self.stop_reason = ""
        self.n_chunks = 0

    def host_event(
        self, name: str, data: dict[str, Any], trial: int | None = None, source: str = "host"
    ) -> None:
        self.writer.write_event(Event(name, source, None, trial=trial, data=data))

    # -------------------------------------------------------------- LeverBoard callbacks
    def on_raw(self, t_ns: int, data: bytes) -> None:
        self.n_chunks += 1
        self.writer.write_raw(self.board_name, data, t_ns)

    def on_trail(self, ev: TrailEvent) -> None:
        self.book.observe_trail(ev)
        step = self.book.advance(ev, plan_next=not self.stopping)
        if step.finished is not None and not self.stopping:
            reason = self.book.stop_reason()
            if reason:
                self.stopping, self.stop_reason = True, reason

    def on_event(self, ev: Event) -> None:
        self.writer.write_event(self.book.tag_event(ev))

    def on_lever(self, t_us: np.ndarray, counts: np.ndarray) -> None:
        if len(t_us):
            self.book.observe_time(int(t_us[-1]))
        self.writer.write_lever(t_us, counts)


def replay_lever(
    session: str | Path,
    out_dir: str | Path | None = None,
    speed: float | None = None,
    timeout_s: float = 600.0,
) -> ReplayRun:
    """Replay one lever session into ``out_dir/<session name>`` (default: a temp folder).

    Parameters
    ----------
    speed : float | None
        ``None``: as fast as possible; else x real time (1.0 = as recorded).
    timeout_s : float
        Longest wall time allowed for the replay.
    """
    reader = SessionReader(session)
    meta = reader.meta
    rig = RigConfig.model_validate(meta.rig_config)
    lb = rig.lever_board
    if lb is None:
        raise ReplayError(f"{reader.folder}: rig config has no lever_board; not a lever session")
    if lb.name not in reader.raw_devices():
        raise ReplayError(
            f"{reader.folder / 'raw'}: no {lb.name}.bin; the session has no bytes to replay"
        )
    params = make_params(meta.task, meta.task_params)
    subject = subject_at_start(reader)
    task = make_task(meta.task, params, lb.calibration, lb.valve, subject)
    root = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="rig-replay-"))
    dest = root / reader.folder.name
    if dest.exists():
        shutil.rmtree(dest)
    new_meta = meta.model_copy(
        update={"status": "running", "stopped_at": None, "stop_reason": "", "n_trials": 0,
                "extra": {**meta.extra, "replay_of": str(reader.folder.resolve())}},
    )  # fmt: skip
    writer = SessionWriter(dest, new_meta, fsync_interval_s=3600.0)
    book = _Replayer(task, writer, lb.name)
    transport = ReplayTransport(reader.raw(lb.name), speed=speed, name=f"replay:{lb.name}")
    board = LeverBoard(
        transport, lb, on_raw=book.on_raw, on_event=book.on_event, on_trail=book.on_trail,
        on_lever=book.on_lever, reconnect=False,
    )  # fmt: skip
    wall0 = time.perf_counter()
    status, reason = "complete", ""
    try:
        book.host_event("session_start", {"params_hash": meta.params_hash, "task": task.name})
        book.book.plan(0)
        board.connect(passive=True)
        if not board.reader_done.wait(timeout_s):
            raise ReplayError(f"{reader.folder}: replay did not finish within {timeout_s:g} s")
        if board.connected is False and not transport.exhausted:
            raise ReplayError(f"{reader.folder}: replay transport closed before the end")
    except BaseException:
        status, reason = "aborted", "replay failed"
        raise
    finally:
        transport.close()
        wall_s = time.perf_counter() - wall0
        if status == "complete":
            reason = book.stop_reason or meta.stop_reason
            if reader.status != "interrupted":
                status = reader.status
                book.host_event("session_stop", {"reason": reason, "status": status})
        writer.close(status if status != "interrupted" else "complete", reason)
    session_s = book.book.elapsed_s
    return ReplayRun(reader.folder, dest, wall_s, session_s, book.n_chunks, reason)

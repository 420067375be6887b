"""Replay a rotarod day: recorded rod bytes -> the rod's packet decoder -> the runner's own trial
code (``rig.runner.rotarod._run_trial``) -> a new session folder.

The bytes of ``raw/rotarod.bin`` come through ``ReplayTransport`` and the same
``StreamDecoder``/packet table the ``Rotarod`` driver uses; the decoded messages fill the inbox
that ``_run_trial`` reads, exactly as the driver's reader thread fills it live. Commands the
trial code sends (start ramp, stop) go to a stand-in that records nothing, since the rod's answers
are already in the recording. The inter-trial interval is not waited out (its events are
logged as the runner logs them). When the recording ends mid-trial (a killed session) the inbox
reports the end and the trial code aborts the trial as it does on a stop.
"""

from __future__ import annotations

import queue
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rig.core.config import RigConfig
from rig.core.devices.rotarod import ROTAROD_BOARD_TO_HOST, RotarodError
from rig.core.events import Event
from rig.core.protocol import Ack, Hello, Message, Nak, Packet, StreamDecoder
from rig.core.store import SessionReader, SessionWriter
from rig.core.transport import ReplayTransport, TransportClosed
from rig.replay.lever import ReplayError, ReplayRun
from rig.runner.rotarod import _run_trial
from tasks.rotarod import RotarodParams


class _RecordedRod:
    """What ``_run_trial`` calls on the rod; the rod's replies are already in the recording."""

    def __init__(self, steps_per_rev: int) -> None:
        self.steps_per_rev = steps_per_rev
        self.commands: list[tuple[str, tuple[Any, ...]]] = []

    def start_ramp(self, *args: Any) -> None:
        self.commands.append(("start_ramp", args))

    def stop(self) -> None:
        self.commands.append(("stop", ()))


class _RecordingInbox(queue.Queue[Message]):
    """All decoded messages up front; asking past the end sets ``stop`` (end of recording)."""

    def __init__(self, end: threading.Event) -> None:
        super().__init__()
        self.end = end

    def get(self, block: bool = True, timeout: float | None = None) -> Message:
        try:
            return super().get(block=False)
        except queue.Empty:
            self.end.set()
            raise


def replay_rotarod(
    session: str | Path, out_dir: str | Path | None = None, speed: float | None = None
) -> ReplayRun:
    """Replay one rotarod session into ``out_dir/<session name>``."""
    reader = SessionReader(session)
    meta = reader.meta
    rig = RigConfig.model_validate(meta.rig_config)
    if rig.rotarod is None:
        raise ReplayError(f"{reader.folder}: rig config has no rotarod section")
    name = rig.rotarod.name
    if name not in reader.raw_devices():
        raise ReplayError(f"{reader.folder / 'raw'}: no {name}.bin; nothing to replay")
    params = RotarodParams.model_validate(meta.task_params)
    day = int(meta.extra.get("day", 1))
    lanes = meta.extra.get("lanes") or {}
    subjects = [lanes[k] for k in sorted(lanes, key=int)]
    root = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="rig-replay-"))
    dest = root / reader.folder.name
    if dest.exists():
        shutil.rmtree(dest)
    new_meta = meta.model_copy(
        update={"status": "running", "stopped_at": None, "stop_reason": "", "n_trials": 0,
                "extra": {**meta.extra, "replay_of": str(reader.folder.resolve())}},
    )  # fmt: skip
    writer = SessionWriter(dest, new_meta, fsync_interval_s=3600.0)
    wall0 = time.perf_counter()
    end = threading.Event()
    inbox = _RecordingInbox(end)
    transport = ReplayTransport(reader.raw(name), speed=speed, name=f"replay:{name}")
    decoder = StreamDecoder(ROTAROD_BOARD_TO_HOST)
    transport.open()
    n_chunks, t_first, t_last = 0, None, 0
    while True:
        try:
            data = transport.read()
        except TransportClosed:
            break
        n_chunks += 1
        writer.write_raw(name, data, transport.now_ns())
        for item in decoder.feed(data):
            if isinstance(item, Packet) and not isinstance(item.msg, Ack | Nak | Hello):
                inbox.put(item.msg)
                t_us = getattr(item.msg, "t_us", None)
                if t_us is not None:
                    t_first = t_us if t_first is None else t_first
                    t_last = max(t_last, t_us)
    rod = _RecordedRod(rig.rotarod.rod.steps_per_rev)
    # the same loop as run_rotarod_session, minus waiting out the inter-trial interval
    writer.write_event(
        Event("session_start", "host", data={"params_hash": params.params_hash(), "day": day})
    )
    status = "complete" if reader.status == "interrupted" else reader.status
    reason = meta.stop_reason
    try:
        for trial in range(params.trials_per_day):
            if end.is_set():
                break
            if trial > 0:
                writer.write_event(
                    Event("iti_start", "host", trial=trial, data={"iti_s": params.iti_min_s})
                )
                writer.write_event(Event("iti_end", "host", trial=trial))
            try:
                records = _run_trial(
                    rod,  # type: ignore[arg-type]
                    params, subjects, day, trial, inbox, writer.write_event, end, 3600.0,
                )  # fmt: skip
            except RotarodError as e:
                # the live run ended here too (e.g. the rod stopped itself: host silent); the
                # replay records the same abort instead of failing
                status, reason = "aborted", str(e)
                break
            if records is None:
                break
            for rec in records:
                writer.write_trial(rec.to_row())
    finally:
        wall_s = time.perf_counter() - wall0
        writer.close(status, reason)
    session_s = 0.0 if t_first is None else (t_last - t_first) / 1e6
    return ReplayRun(reader.folder, dest, wall_s, session_s, n_chunks, meta.stop_reason)

"""On-disk formats of a session folder. Every file starts with a header carrying its version.

Layout of ``<data_dir>/<subject>/<YYYY-MM-DD_HHMMSS>_<task>/``:

``session.json``      :class:`SessionMeta`, replaced atomically (write temp, fsync, rename).
``events.jsonl``      line 1 header ``{"format": "motor-rig.events", "format_version": 1}``,
                      then one :class:`rig.core.events.Event` record per line.
``trials.tsv``        line 1 ``# motor-rig.trials format_version=1``, line 2 column names,
                      then one row per finished trial (JSON for nested values).
``lever.bin``         16-byte header (``MRLEVER\\0``, u32 version, u32 record size), then
                      :data:`LEVER_DTYPE` records.
``raw/<device>.bin``  16-byte header (``MRRAW\\0\\0\\0``, u32 version, u32 0), then chunks of
                      ``t_host_ns:i8 | n_bytes:u4 | bytes``.
"""

from __future__ import annotations

import struct
from datetime import datetime
from typing import Any, Literal

import numpy as np
from pydantic import Field

from rig.core.config import StrictModel

SESSION_FORMAT_VERSION = 1
EVENTS_FORMAT_VERSION = 1
TRIALS_FORMAT_VERSION = 1
LEVER_FORMAT_VERSION = 1
RAW_FORMAT_VERSION = 1

EVENTS_HEADER = {"format": "motor-rig.events", "format_version": EVENTS_FORMAT_VERSION}
TRIALS_HEADER_LINE = f"# motor-rig.trials format_version={TRIALS_FORMAT_VERSION}"

LEVER_MAGIC = b"MRLEVER\x00"
RAW_MAGIC = b"MRRAW\x00\x00\x00"
BIN_HEADER = struct.Struct("<8sII")  # magic, format version, record size (0 = variable)
RAW_CHUNK = struct.Struct("<qI")  # t_host_ns, n_bytes

#: One lever sample: board time (µs, 64-bit extended) and raw sensor counts.
LEVER_DTYPE = np.dtype([("t_device_us", "<i8"), ("counts", "<i4")])


class SessionMeta(StrictModel):
    """Contents of ``session.json``."""

    format: Literal["motor-rig.session"] = "motor-rig.session"
    format_version: Literal[1] = 1
    subject_id: str
    task: str
    rig_name: str
    rig_config: dict[str, Any] = Field(description="snapshot of the rig config as loaded")
    task_params: dict[str, Any] = Field(default_factory=dict)
    params_hash: str = ""
    software: dict[str, str] = Field(default_factory=dict, description="package -> version")
    firmware: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="device -> hello info"
    )
    started_at: datetime
    stopped_at: datetime | None = None
    status: Literal["running", "complete", "aborted"] = "running"
    stop_reason: str = ""
    n_trials: int = 0
    extra: dict[str, Any] = Field(default_factory=dict)


def session_dir_name(started_at: datetime, task: str) -> str:
    """``YYYY-MM-DD_HHMMSS_<task>``."""
    return f"{started_at:%Y-%m-%d_%H%M%S}_{task}"

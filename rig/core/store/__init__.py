"""Crash-safe, append-only session store (see ``docs/file_formats.md``)."""

from rig.core.store.formats import (
    EVENTS_FORMAT_VERSION,
    LEVER_DTYPE,
    SESSION_FORMAT_VERSION,
    SessionMeta,
    session_dir_name,
)
from rig.core.store.reader import SessionReader, find_sessions
from rig.core.store.writer import SessionWriter, StoreError

__all__ = [
    "EVENTS_FORMAT_VERSION",
    "LEVER_DTYPE",
    "SESSION_FORMAT_VERSION",
    "SessionMeta",
    "SessionReader",
    "SessionWriter",
    "StoreError",
    "find_sessions",
    "session_dir_name",
]

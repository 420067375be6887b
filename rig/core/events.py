"""The event model: one record for everything that happens in a session."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


def host_time_ns() -> int:
    """Host monotonic time in ns (``time.monotonic_ns``); never wall-clock, never goes back."""
    return time.monotonic_ns()


@dataclass(slots=True)
class Event:
    """One session event.

    Attributes
    ----------
    name : str
        Event name, e.g. ``"trial_start"``, ``"lever_up"``, ``"valve_open"``, ``"frame"``.
    source : str
        Who produced it: a device name (``"lever_board"``), ``"task"``, ``"host"``, ``"gui"``,
        ``"imaging"``.
    t_device_us : int | None
        Board time in µs (64-bit extended), or ``None`` for host-only events.
    t_host_ns : int
        Host monotonic receive/creation time in ns.
    frame : int | None
        Index of the imaging frame in progress at ``t_device_us`` (``None`` when not imaging).
    trial : int | None
        Trial number (0-based) the event belongs to.
    data : dict
        Event-specific JSON-serializable payload; units in the keys.
    """

    name: str
    source: str
    t_device_us: int | None = None
    t_host_ns: int = field(default_factory=host_time_ns)
    frame: int | None = None
    trial: int | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def to_record(self) -> dict[str, Any]:
        # Built by hand: dataclasses.asdict deep-copies and dominated the writer's hot path.
        return {
            "name": self.name,
            "source": self.source,
            "t_device_us": self.t_device_us,
            "t_host_ns": self.t_host_ns,
            "frame": self.frame,
            "trial": self.trial,
            "data": self.data,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Event:
        return cls(
            name=rec["name"],
            source=rec["source"],
            t_device_us=rec.get("t_device_us"),
            t_host_ns=rec["t_host_ns"],
            frame=rec.get("frame"),
            trial=rec.get("trial"),
            data=rec.get("data") or {},
        )

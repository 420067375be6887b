"""Compare a recorded session with its replay: trials, board events, host events, lever samples.

What must be equal, and why some fields are left out:

- ``trials.tsv``: every row, every column, as written (text).
- board events (``source`` = the board): the sequence of ``(name, t_device_us, t_host_ns, frame,
  trial, data)``. The host time is the chunk's recorded receive time, which the replay
  transport reproduces. Events the driver stamps with the wall clock (``link_lost``,
  ``reconnect``, ``lever_gap``) are compared without ``t_host_ns``. Replayed events from before
  the first recorded one (received before the live session folder opened, which the runner
  does not write) are counted, not compared.
- host events (``source`` in ``host``/``task``): the sequence of ``(name, source, trial, data)``.
  Their host time is when the runner thread wrote them, not something the bytes determine, and
  their interleaving with board events depends on thread timing, so each stream is compared on
  its own.
- events from the GUI (manual reward, tone...) are inputs, not results: counted, not compared.
- an interrupted (killed) recording must be a prefix of its replay: the bytes that reached the
  raw file before the kill may imply a few events, a trial or samples the live runner had not
  written yet.
- ``lever.bin``: identical samples from the first recorded one on, when the recording has it
  (samples received before the live session folder opened are only in the raw bytes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rig.core.errors import SessionFormatError
from rig.core.events import Event
from rig.core.store import SessionReader

WALL_CLOCK_EVENTS = frozenset({"link_lost", "reconnect", "lever_gap"})
HOST_SOURCES = frozenset({"host", "task"})
MAX_LISTED = 10


@dataclass
class Comparison:
    """Differences between a recording and its replay (empty lists: identical)."""

    n_trials: int = 0
    n_board_events: int = 0
    n_host_events: int = 0
    n_lever_samples: int = 0
    n_inputs_skipped: int = 0
    n_lever_lead: int = 0
    n_pre_session_events: int = 0
    differences: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.differences


def _board_key(e: Event, host_time: bool = True) -> tuple[Any, ...]:
    t_host = None if e.name in WALL_CLOCK_EVENTS or not host_time else e.t_host_ns
    return (e.name, e.t_device_us, t_host, e.frame, e.trial, json.dumps(e.data, sort_keys=True))


def _host_key(e: Event) -> tuple[Any, ...]:
    return (e.name, e.source, e.trial, json.dumps(e.data, sort_keys=True))


def _seq_diff(what: str, a: list[Any], b: list[Any], prefix: bool = False) -> list[str]:
    out: list[str] = []
    if len(a) != len(b) and not (prefix and len(b) > len(a)):
        out.append(f"{what}: {len(a)} recorded, {len(b)} replayed")
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            out.append(f"{what} #{i}: recorded {x!r} != replayed {y!r}")
            if len(out) >= MAX_LISTED:
                out.append(f"{what}: (further differences not listed)")
                break
    return out


def _row_fmt(row: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in row.items() if v != "") + "}"


def _trial_diff(a: list[dict[str, str]], b: list[dict[str, str]], prefix: bool) -> list[str]:
    out: list[str] = []
    if len(a) != len(b) and not (prefix and len(b) > len(a)):
        out.append(f"trials: {len(a)} recorded, {len(b)} replayed")
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            cols = [k for k in dict.fromkeys([*x, *y]) if x.get(k) != y.get(k)]
            detail = ", ".join(f"{k}: {x.get(k)!r} -> {y.get(k)!r}" for k in cols)
            out.append(f"trial {x.get('trial', i)}: {detail}")
            if len(out) >= MAX_LISTED:
                out.append("trials: (further differences not listed)")
                break
    return out


def compare_sessions(
    recorded: SessionReader, replayed: SessionReader, board: str, board_host_time: bool = True
) -> Comparison:
    """Compare ``recorded`` with ``replayed``; ``board`` is the device whose bytes were replayed.

    ``board_host_time=False`` leaves the board events' ``t_host_ns`` out (the rotarod runner
    stamps its events when it handles them, not with the bytes' receive time).
    """
    c = Comparison()
    # a killed session's files end a little before its bytes do: they must be a prefix
    prefix = recorded.status == "interrupted"
    ta, tb = recorded.trials(), replayed.trials()
    c.n_trials = len(ta)
    c.differences += _trial_diff(ta, tb, prefix)
    ea, eb = recorded.events(), replayed.events()
    ba = [_board_key(e, board_host_time) for e in ea if e.source == board]
    board_b = [e for e in eb if e.source == board]
    first = next((e.t_host_ns for e in ea if e.source == board), None)
    if first is not None:
        # the live runner drops what the board says before its session folder opens (those
        # bytes are only in raw/); the replay parses them too
        while board_b and board_b[0].t_host_ns < first:
            board_b.pop(0)
            c.n_pre_session_events += 1
    bb = [_board_key(e, board_host_time) for e in board_b]
    c.n_board_events = len(ba)
    c.differences += _seq_diff("board event", ba, bb, prefix)
    ha = [_host_key(e) for e in ea if e.source in HOST_SOURCES]
    hb = [_host_key(e) for e in eb if e.source in HOST_SOURCES]
    c.n_host_events = len(ha)
    c.differences += _seq_diff("host event", ha, hb, prefix)
    c.n_inputs_skipped = sum(e.source not in HOST_SOURCES and e.source != board for e in ea)
    try:
        la = recorded.lever()
    except SessionFormatError:
        la = None  # golden sessions may leave lever.bin out: the raw bytes hold the samples
    if la is not None:
        lb = replayed.lever()
        if len(la):
            # the live runner drops samples that arrive before its session folder is open (they
            # are in the raw bytes); the replay writes them, so compare from the first recorded
            lead = int(np.searchsorted(lb["t_device_us"], la["t_device_us"][0]))
            c.n_lever_lead = lead
            lb = lb[lead:]
        c.n_lever_samples = len(la)
        if prefix:
            lb = lb[: len(la)]
        if len(la) != len(lb):
            c.differences.append(f"lever samples: {len(la)} recorded, {len(lb)} replayed")
        elif not np.array_equal(la, lb):
            i = int(np.flatnonzero(la != lb)[0])
            c.differences.append(
                f"lever sample #{i}: recorded {la[i].tolist()} != replayed {lb[i].tolist()}"
            )
    return c

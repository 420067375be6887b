"""The simulated mouse's pulls drive the synthetic imaging movie's responsive cells, live.

A motor-cortex lab expects a population of layer 2/3 M1 cells to fire around movement onset, so
the event is the *movement onset of each pull*: when the board reports a threshold crossing
(``lever_up``), the onset is the ``lever_unrest`` (the lever leaving its rest zone) that led to
it, if that came less than ``max_onset_lead_us`` before; else the crossing itself. Lever wobbles
that never reach the threshold drive nothing.

The board time of the onset becomes movie time through the frame clock (edge k = frame k, frame
k at ``k / fs`` s in the movie), from the latest edge seen. The synthetic source queues the event
and applies it before its next frame (``acquisition.sources.synthetic.SyntheticSource.drive``);
each applied event is appended at once to ``imaging/synthetic_drives.bin`` (records of
:data:`DRIVE_DTYPE`, little-endian, no header), which :func:`recorded_drives` reads back so a
re-run regenerates the frames that were played. At stop the session also gets
``imaging/synthetic_truth.npz``: the ground truth of the frames played, drives included.
"""

from __future__ import annotations

import collections
import io
import threading
from pathlib import Path
from typing import Any

import numpy as np

from rig.runner.imaging_clock import FrameEdges

DRIVES_FILE = "imaging/synthetic_drives.bin"
TRUTH_FILE = "imaging/synthetic_truth.npz"
#: One applied drive: movie time of the event (s), first frame it could change, the event's
#: board time (µs).
DRIVE_DTYPE = np.dtype([("t_event_s", "<f8"), ("first_frame", "<i8"), ("t_board_us", "<i8")])


class PullDrive:
    """Board lever events -> drive events of a synthetic source (see the module docstring).

    Parameters
    ----------
    source : SyntheticSource
        A streamed synthetic source (``drive(t_s)`` and ``on_drive``).
    frame_rate_hz : float
        The movie's frame rate.
    sink : SessionWriter or FolderSink
        Where ``imaging/synthetic_drives.bin`` goes.
    edges : FrameEdges
        The session's frame-clock edges (their ``last_edge`` maps board time to movie time).
    max_onset_lead_us : int
        Longest time from ``lever_unrest`` to ``lever_up`` still counted as one pull's onset.
    """

    def __init__(
        self,
        source: Any,
        frame_rate_hz: float,
        sink: Any,
        edges: FrameEdges,
        max_onset_lead_us: int = 1_000_000,
    ) -> None:
        self.source = source
        self.fs = float(frame_rate_hz)
        self.sink = sink
        self.edges = edges
        self.max_onset_lead_us = int(max_onset_lead_us)
        self._lock = threading.Lock()
        self._unrest_us: int | None = None
        # board times of the drives queued and not yet applied, in order: the source applies
        # them in the order drive() was called (one reader thread calls on_event)
        self._board_us: collections.deque[int] = collections.deque()
        self.n_pulls = 0
        self.n_unmapped = 0  # pulls before the first frame-clock edge: no movie time yet
        sink.open_append(DRIVES_FILE)
        source.on_drive = self._applied

    def on_event(self, name: str, t_us: int) -> None:
        """A board event (reader thread); only ``lever_unrest``, ``lever_rest`` and
        ``lever_up`` matter. Cheap: it only queues the drive."""
        if name == "lever_unrest":
            self._unrest_us = int(t_us)
        elif name == "lever_rest":
            self._unrest_us = None
        elif name == "lever_up":
            onset = self._unrest_us
            self._unrest_us = None  # one onset per pull
            if onset is None or not 0 <= t_us - onset <= self.max_onset_lead_us:
                onset = int(t_us)
            self.n_pulls += 1
            edge = self.edges.last_edge
            if edge is None:
                self.n_unmapped += 1
                return
            with self._lock:
                t_s = edge[0] / self.fs + (onset - edge[1]) / 1e6
                self._board_us.append(onset)
                self.source.drive(t_s)

    def _applied(self, t_event_s: float, first_frame: int) -> None:
        """The source applied a drive (its playing thread): record it at once."""
        with self._lock:
            board_us = self._board_us.popleft() if self._board_us else -1
        rec = np.array([(t_event_s, first_frame, board_us)], DRIVE_DTYPE)
        self.sink.append(DRIVES_FILE, rec.tobytes())

    def save_truth(self) -> None:
        """Write ``imaging/synthetic_truth.npz``: the truth of the frames played."""
        buf = io.BytesIO()
        self.source.truth.save_truth(buf, n_frames=self.source.n_delivered)
        self.sink.open_append(TRUTH_FILE)
        self.sink.append(TRUTH_FILE, buf.getvalue())


def recorded_drives(session: str | Path) -> np.ndarray | None:
    """float64 ``(n, 2)`` (event time s, first frame) of the drives a live session applied to
    its synthetic movie, in order (``make_movie(..., drives=...)`` replays them), or None when
    the session has no drive record. A torn last record (a crash mid-write) is dropped."""
    path = Path(session) / DRIVES_FILE
    if not path.exists():
        return None
    raw = path.read_bytes()
    rec = np.frombuffer(raw[: len(raw) - len(raw) % DRIVE_DTYPE.itemsize], DRIVE_DTYPE)
    return np.stack([rec["t_event_s"], rec["first_frame"].astype(np.float64)], axis=1)

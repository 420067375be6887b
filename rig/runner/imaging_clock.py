"""Frame-clock edges of a live session, matched to frames by index in O(1) memory.

Edge ``k`` (board time of frame ``k``) arrives on the board's reader thread; frame ``k`` is
pushed by the imaging feeder thread, possibly much later (on the virtual clock the simulated
board runs far ahead of frame delivery). Rather than queueing the edges until their frames come,
:class:`FrameEdges` hands each edge's time to the pipeline's frame-clock map the moment it
arrives (a list append under the pipeline's lock: the reader thread never waits on the
imaging), and keeps only counters for the feeder: the next edge index expected, and the index
ranges the host missed (rare; one entry per gap, not per edge). So the backlog of edges waiting
for their frames costs the same few bytes at any speed, and no edge time is lost; counts that do
not match are still reported by the pipeline at close.
"""

from __future__ import annotations

import collections
import threading
from typing import Any


class FrameEdges:
    """Edges received vs frames served, for one live session.

    Thread use: :meth:`on_edge` from the board's reader thread, :meth:`take` and
    :meth:`frame_served` from the feeder thread, :meth:`attach` / :meth:`finish` from the
    session's control thread.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pipeline: Any = None
        #: Edge times that arrived before the pipeline existed (the board connects before the
        #: session folder opens; its clock starts then), µs: flushed by :meth:`attach`.
        self._early: list[int] = []
        self.n_received = 0  # edges received (duplicates and out-of-order ones included)
        self.next_edge = 0  # one past the highest edge index received
        self._missed: collections.deque[tuple[int, int]] = collections.deque()  # [a, b) ranges
        self.served = 0  # frames the feeder has dealt with (pushed, or skipped for a missed edge)
        self.max_backlog = 0
        #: (index, board time µs) of the highest edge received, None before the first
        self.last_edge: tuple[int, int] | None = None
        self._finished = False

    # ------------------------------------------------------------------ reader thread
    def on_edge(self, index: int, t_us: int) -> None:
        """Edge ``index`` at board time ``t_us`` (µs). Missed indices before it get ``-1`` board
        times; an index at or below one already seen is counted and otherwise ignored."""
        with self._cond:
            self.n_received += 1
            if index < self.next_edge:
                return
            times = [-1] * (index - self.next_edge) + [int(t_us)]
            if index > self.next_edge:
                self._missed.append((self.next_edge, index))
            self.next_edge = index + 1
            self.last_edge = (int(index), int(t_us))
            self.max_backlog = max(self.max_backlog, self.next_edge - self.served)
            if self._pipeline is not None:
                self._pipeline.push_frame_clock(times)
            else:
                self._early.extend(times)
            self._cond.notify_all()

    # ------------------------------------------------------------------ control thread
    def attach(self, pipeline: Any) -> None:
        """From now on edges go to ``pipeline.push_frame_clock``; the early ones go first."""
        with self._cond:
            if self._early:
                pipeline.push_frame_clock(self._early)
            self._early = []
            self._pipeline = pipeline

    def finish(self) -> None:
        """No more edges will be waited for: :meth:`take` returns what is left, then None."""
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    # ------------------------------------------------------------------ feeder thread
    def take(self, timeout_s: float | None = None) -> tuple[int, int, list[tuple[int, int]]] | None:
        """Wait for edges the feeder has not served; returns ``(first, stop, missed)``: frames
        ``first .. stop - 1`` have their edges, except those in the ``missed`` ``[a, b)``
        ranges. None once :meth:`finish` was called and every edge is served (or on timeout)."""
        with self._cond:
            if not self._cond.wait_for(
                lambda: self.next_edge > self.served or self._finished, timeout_s
            ):
                return None
            if self.next_edge <= self.served:
                return None
            first, stop = self.served, self.next_edge
            while self._missed and self._missed[0][1] <= first:
                self._missed.popleft()
            missed = [r for r in self._missed if r[0] < stop]
            return first, stop, missed

    def frame_served(self, index: int) -> None:
        """Frame ``index`` is dealt with (pushed, skipped, or past the movie's end)."""
        with self._cond:
            self.served = max(self.served, index + 1)

    # ------------------------------------------------------------------ figures
    def qsize(self) -> int:
        """Edges received whose frames are not served yet (the backlog, a count)."""
        with self._cond:
            return max(0, self.next_edge - self.served)

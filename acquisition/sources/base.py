"""The ``FrameSource`` interface every imaging frame source implements.

A source yields ``(frame_index, t_frame_s, frame)`` tuples: ``frame_index`` counts from 0 in
acquisition order (for a stream, ScanImage's own frame number minus one, so gaps show),
``t_frame_s`` is the frame's time in seconds from the start of the acquisition, and ``frame`` is
one ``(Y, X)`` array of the source's ``dtype``. Sources are context managers; iterating a closed
source raises.

Pacing: a *paced* source delivers each frame no earlier than its recorded time after the first
one (a file replayed "live"); an unpaced one delivers as fast as the consumer takes them.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from types import TracebackType
from typing import Self

import numpy as np

from rig.core.errors import RigError

FrameTuple = tuple[int, float, np.ndarray]


class FrameSourceError(RigError):
    """A frame source could not deliver a frame (bad file, bad stream header, timeout)."""


class FrameSource(ABC):
    """Base class: iteration, pacing, context management.

    Subclasses set ``shape`` (``(Y, X)``), ``dtype``, ``frame_rate_hz`` (``None`` if unknown) and
    ``n_frames`` (``None`` for an open-ended stream) and implement :meth:`_frames`.

    Parameters
    ----------
    paced : bool
        Deliver frames at their recorded times (real time) rather than as fast as possible.
    """

    shape: tuple[int, int]
    dtype: np.dtype
    frame_rate_hz: float | None
    n_frames: int | None

    def __init__(self, paced: bool = False) -> None:
        self.paced = paced
        self._stop = threading.Event()
        self._closed = False

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:  # noqa: B027  (optional hook, not abstract)
        """Acquire resources (files, sockets). Called by ``__enter__``; default does nothing."""

    def close(self) -> None:
        """Release resources and wake a paced wait; safe to call twice and from another thread."""
        self._closed = True
        self._stop.set()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ iteration
    @abstractmethod
    def _frames(self) -> Iterator[FrameTuple]:
        """Yield ``(frame_index, t_frame_s, frame)`` as fast as possible."""

    def __iter__(self) -> Iterator[FrameTuple]:
        if self._closed:
            raise FrameSourceError(f"{type(self).__name__} is closed")
        t0_wall: float | None = None
        t0_frame = 0.0
        for index, t_frame_s, frame in self._frames():
            if self._stop.is_set():
                return
            if self.paced:
                now = time.monotonic()
                if t0_wall is None:
                    t0_wall, t0_frame = now, t_frame_s
                else:
                    due = t0_wall + (t_frame_s - t0_frame)
                    # Event.wait rather than sleep so close() from another thread stops us at once.
                    if due > now and self._stop.wait(due - now):
                        return
            yield index, t_frame_s, frame

    @property
    def nbytes_per_frame(self) -> int:
        """Bytes in one frame, from ``shape`` and ``dtype``."""
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

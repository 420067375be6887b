"""``RigSignals``: the psygnal signal group that carries live data to whoever listens.

No Qt here: ``gui/`` bridges these onto the Qt main thread with queued connections. Emitters
are the reader threads, the runner and the imaging pipeline thread, so listeners must be
thread-safe or hop threads themselves.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from psygnal import Signal, SignalGroup

from rig.core.events import Event


class RigSignals(SignalGroup):
    """Live signals of one rig.

    Signals
    -------
    event(Event)
        Every session event as it is recorded.
    lever(t_device_us, position_mm)
        A batch of lever samples: int64 (n,) µs and float64 (n,) mm.
    trial(record)
        A finished trial's record (dict, as written to ``trials.tsv``).
    health(device, stats)
        Device health: connected, heartbeat age (ms), CRC errors, lost packets, frame counts.
    imaging(stats)
        Pipeline statistics: frames/s, latency p50/p99 (ms), queue depth, GPU memory.
    frame(frame_index, image)
        Latest registered frame for display (display may skip frames; traces never do).
    traces(frame_index, dff)
        ΔF/F of every ROI for one frame, float32 (n_rois,).
    log(level, message)
        Warnings and errors for the log panel (``level`` as in ``logging``).
    session(state, info)
        ``"started"`` / ``"stopped"`` with the session folder and reason.
    """

    event = Signal(Event)
    lever = Signal(np.ndarray, np.ndarray)
    trial = Signal(dict)
    health = Signal(str, dict)
    imaging = Signal(dict)
    frame = Signal(int, np.ndarray)
    traces = Signal(int, np.ndarray)
    log = Signal(int, str)
    session = Signal(str, dict)

    def emit_log(self, level: int, message: str, **_: Any) -> None:
        self.log.emit(level, message)

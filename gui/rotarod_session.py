"""Adapts the rotarod runner (a blocking function) to :class:`gui.runner_api.SessionRunner`.

``rig.runner.rotarod.run_rotarod_session`` runs one day of trials and returns when it is done;
here it runs on its own thread, ``stop()`` sets its stop flag and joins it (the runner stops the
rod and closes the files on every way out). Lanes get the subjects of the comma-separated
subject field, lane 1 first; on a simulated rod each lane gets a simulated mouse.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from gui.runner_api import SessionRequest
from rig.core.errors import RigError
from rig.core.signals import RigSignals


class RotarodSession:
    """One rotarod day driven from the GUI.

    Parameters
    ----------
    request : SessionRequest
        ``subject_id`` is ``"m1,m2,..."`` (one per lane); ``params`` a ``RotarodParams``;
        ``extra`` may set ``realtime`` (default true: the rod and the countdown on the wall
        clock) and ``day`` (default 1).
    """

    def __init__(self, request: SessionRequest) -> None:
        from tasks.rotarod.params import RotarodParams

        if not isinstance(request.params, RotarodParams):
            raise TypeError(f"rotarod needs RotarodParams, got {type(request.params).__name__}")
        self.request = request
        self.params = request.params
        self.subjects = [s.strip() for s in request.subject_id.split(",") if s.strip()]
        self.signals = RigSignals()
        self.result: Any = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def session_dir(self) -> Path | None:
        return None if self.result is None else Path(self.result.folder)

    def start(self) -> None:
        if self._thread is not None:
            raise RigError("this rotarod session has run already; make a new one")
        self._thread = threading.Thread(target=self._run, name="rotarod-session", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from rig.runner.rotarod import run_rotarod_session
        from tasks.rotarod import SimRotarodMouse

        rig = self.request.rig
        mice = None
        if rig.rotarod is not None and rig.rotarod.driver == "sim":
            mice = {i: SimRotarodMouse(n, seed=i + 1) for i, n in enumerate(self.subjects)}
        self.signals.session.emit("started", {"task": "rotarod", "lanes": len(self.subjects)})
        reason = "complete"
        try:
            self.result = run_rotarod_session(
                rig,
                self.params,
                self.subjects,
                day=int(self.request.extra.get("day", 1)),
                mice=mice,
                realtime=bool(self.request.extra.get("realtime", True)),
                signals=self.signals,
                stop=self._stop,
            )
            reason = self.result.reason or self.result.status
        except Exception as e:  # the runner has made the rod safe and closed the files
            self.error = e
            reason = f"{type(e).__name__}: {e}"
            self.signals.log.emit(logging.ERROR, f"rotarod session failed: {reason}")
        finally:
            folder = "" if self.result is None else str(self.result.folder)
            self.signals.session.emit("stopped", {"reason": reason, "folder": folder})

    def stop(self, reason: str = "stopped by the experimenter") -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def _no_lever(self, *_: Any) -> None:
        raise RigError("manual lever controls need a lever session, not the rotarod")

    give_reward = play_tone = flush_valve = zero_lever = _no_lever

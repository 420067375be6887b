"""What the GUI needs from a session runner, and nothing more.

The app never builds devices, writers or pipelines itself: a *runner factory* turns the
experimenter's choices (rig config, subject, task, validated params) into a runner, and the
window drives it only through these methods and its :class:`~rig.core.signals.RigSignals`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, Field

from rig.core.config import RigConfig, StrictModel
from rig.core.signals import RigSignals


class SessionRunner(Protocol):
    """A session the GUI can start, stop and poke (manual actions are logged by the runner).

    ``start`` returns once the session is running (devices connected, folder open); ``stop``
    returns once devices are in their safe state and every file is closed. Manual actions are
    recorded by the runner as manual events (``source="gui"``).
    """

    signals: RigSignals

    @property
    def running(self) -> bool: ...

    @property
    def session_dir(self) -> Path | None: ...

    def start(self) -> None: ...

    def stop(self, reason: str = "stopped by the experimenter") -> None: ...

    def give_reward(self, volume_ul: float) -> None: ...

    def play_tone(self, freq_hz: float, duration_ms: float) -> None: ...

    def flush_valve(self, duration_ms: float) -> None: ...

    def zero_lever(self) -> None: ...


class SessionRequest(StrictModel):
    """The experimenter's choices for one session (what the session panel produces).

    Attributes
    ----------
    subject_id : str
        One subject, or for the rotarod one per lane, comma-separated.
    params : BaseModel
        The task's validated params model (e.g. ``tasks.params.MixedParams``).
    extra : dict
        Runner options that are not task parameters (``speed`` of a simulated board).
    """

    rig: RigConfig
    subject_id: str = Field(min_length=1)
    task: str = Field(min_length=1)
    params: BaseModel
    extra: dict[str, Any] = Field(default_factory=dict)


#: Builds a (not yet started) runner for a request.
RunnerFactory = Callable[[SessionRequest], SessionRunner]

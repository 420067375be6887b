"""What one ramp's packets say: when it started, when and why it stopped, its last speed; and
the session-log event of each packet (``event_from``).

The rod's packets reach the runner in the order the board sent them (one byte stream, one
reader, one queue), each stamped with the board's clock. ``RampTracker`` is fed them in that
order and decides the ramp's start and stop from them alone, so the outcome depends on what
the board sent, never on when the host's threads got to run (and a replay of the recorded
bytes decides the same).

The board's own ROD_STARTED and ROD_STOPPED are the record. Only a packet lost on the link
(a CRC error, a dropped byte) is inferred:

- a lost ROD_STARTED from the first speed report (reports come every 50 ms from the start;
  the report's nominal rpm says how many periods in it is);
- a lost ROD_STOPPED from the heartbeats: once one says the rod is still, the board has sent
  its ROD_STOPPED before it or within the same main-loop pass, so it reaches us before any
  packet stamped ``STOP_GRACE_US`` of board time later. Only a packet that late, with still no
  ROD_STOPPED, makes the stop inferred. The stop time is then the first still heartbeat's (the
  rod was still by then), or the cutoff when the ramp ran to it; the reason comes from the
  heartbeat's status (bit3: the host timed out) and from whether the host sent a stop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rig.core.devices.rotarod import (
    STATUS_HOST_TIMED_OUT,
    STATUS_TURNING,
    STOP_CUTOFF,
    STOP_HOST,
    STOP_HOST_SILENT,
    LaneFall,
    PassiveRotation,
    RodSpeed,
    RodStarted,
    RodStopped,
)
from rig.core.events import Event
from rig.core.protocol import Heartbeat, Message
from tasks.rotarod import RotarodParams

#: board time (µs) a ROD_STOPPED may trail the first still heartbeat before it counts as lost:
#: three heartbeat periods, where the firmware needs at most one main-loop pass (~2 ms)
STOP_GRACE_US = 300_000
REPORT_PERIOD_US = 50_000


@dataclass
class RampTracker:
    """Start, stop and last speed of one ramp, from the rod's packets in arrival order.

    Parameters
    ----------
    params : RotarodParams
        The ramp that was asked for (for an inferred start or cutoff).
    trial : int
        Stamped on the inference events.

    Attributes
    ----------
    started, stopped : RodStarted | RodStopped | None
        The board's packets, or inferred stand-ins (see the module docstring).
    last_speed : RodSpeed | None
    stop_sent : bool
        Set it when the host has sent STOP_ROD: an inferred stop then has reason STOP_HOST.
    """

    params: RotarodParams
    trial: int
    started: RodStarted | None = None
    stopped: RodStopped | None = None
    last_speed: RodSpeed | None = None
    stop_sent: bool = False
    _still: Heartbeat | None = field(default=None, repr=False)

    def feed(self, msg: Message) -> list[Event]:
        """Take the next packet; return the inference events to log (usually none)."""
        out: list[Event] = []
        if self.stopped is not None:
            return out
        if isinstance(msg, RodStarted):
            if self.started is None:
                self.started = msg
        elif isinstance(msg, RodSpeed):
            self.last_speed = msg
            if self.started is None:  # ROD_STARTED was lost
                self.started = infer_start(msg, self.params)
                out.append(
                    Event("rotarod_start_inferred", "host", self.started.t_us, trial=self.trial)
                )
        elif isinstance(msg, RodStopped):
            self.stopped = msg
            return out
        elif isinstance(msg, Heartbeat) and self.started is not None:
            if msg.t_us <= self.started.t_us:
                pass  # from before this ramp
            elif msg.status & STATUS_TURNING:
                self._still = None
            elif self._still is None:
                self._still = msg
        t_us = getattr(msg, "t_us", None)
        still = self._still
        if still is not None and t_us is not None and t_us - still.t_us >= STOP_GRACE_US:
            self.stopped = self._inferred_stop(still)
            data = {"reason": self.stopped.reason, "grace_us": STOP_GRACE_US}
            out.append(Event("rotarod_stop_inferred", "host", t_us, self.trial, data=data))
        return out

    def _inferred_stop(self, still: Heartbeat) -> RodStopped:
        assert self.started is not None
        steps = self.last_speed.steps if self.last_speed is not None else 0
        if still.status & STATUS_HOST_TIMED_OUT:
            return RodStopped(still.t_us, steps, STOP_HOST_SILENT)
        if self.stop_sent:
            return RodStopped(still.t_us, steps, STOP_HOST)
        return RodStopped(self.started.t_us + round(self.params.max_s * 1e6), steps, STOP_CUTOFF)


def infer_start(speed: RodSpeed, params: RotarodParams) -> RodStarted:
    """Ramp start from a speed report when ROD_STARTED was lost.

    Reports come every 50 ms from the start, so the start is ``t_us - k * 50 ms``; ``k`` follows
    from the report's nominal speed (exact while the rod accelerates).
    """
    span = params.end_rpm - params.start_rpm
    t_rel_s = (speed.nominal_mrpm / 1000 - params.start_rpm) / span * params.ramp_s if span else 0
    k = max(1, round(t_rel_s * 1e6 / REPORT_PERIOD_US))
    ms = (round(params.ramp_s * 1000), round(params.max_s * 1000))
    return RodStarted(
        speed.t_us - k * REPORT_PERIOD_US,
        round(params.start_rpm * 1000),
        round(params.end_rpm * 1000),
        *ms,
    )


#: session-log event of each ROD_STOPPED reason
STOP_EVENT = {
    STOP_CUTOFF: "rotarod_cutoff",
    STOP_HOST: "rotarod_stop",
    STOP_HOST_SILENT: "rotarod_host_timeout",
}


def event_from(msg: Message, trial: int, spr: int) -> Event | None:
    """The session-log event for a rod packet (``None`` for heartbeats)."""
    if isinstance(msg, RodStarted):
        data: dict[str, Any] = {
            "start_rpm": msg.start_mrpm / 1000,
            "end_rpm": msg.end_mrpm / 1000,
            "ramp_s": msg.ramp_ms / 1000,
            "max_s": msg.max_ms / 1000,
        }
        return Event("rotarod_start", "rotarod", msg.t_us, trial=trial, data=data)
    if isinstance(msg, RodSpeed):
        data = {
            "rpm_measured": msg.rpm_mrpm / 1000,
            "rpm_nominal": msg.nominal_mrpm / 1000,
            "revolutions": msg.steps / spr,
        }
        return Event("rotarod_rpm", "rotarod", msg.t_us, trial=trial, data=data)
    if isinstance(msg, LaneFall | PassiveRotation):
        name = "rotarod_fall" if isinstance(msg, LaneFall) else "rotarod_passive_rotation"
        data = {
            "lane": msg.lane,
            "rpm_measured": msg.rpm_mrpm / 1000,
            "rpm_nominal": msg.nominal_mrpm / 1000,
            "revolutions": msg.steps / spr,
        }
        return Event(name, "rotarod", msg.t_us, trial=trial, data=data)
    if isinstance(msg, RodStopped):
        name = STOP_EVENT.get(msg.reason, "rotarod_stop")
        return Event(name, "rotarod", msg.t_us, trial=trial, data={"revolutions": msg.steps / spr})
    return None


def odd_report(speed: RodSpeed, started: RodStarted | None) -> bool:
    """True for the 1st, 3rd, 5th... report after the start (reports are 50 ms apart)."""
    if started is None:
        return False
    return round((speed.t_us - started.t_us) / REPORT_PERIOD_US) % 2 == 1

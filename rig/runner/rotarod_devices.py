"""The rotarod a session runs on: the driver built from the rig config, and its packet inbox.

``make_rotarod`` builds the ``Rotarod`` driver over the transport the config implies (the Python
simulated rod, the firmware under simavr, or a serial port) and says which simulated rod, if
any, is behind it. ``open_inbox`` gives the runner the rod's packets in board order; with a
simulated rod in virtual time it also makes the rod wait for the runner (``Inbox``), so what
the runner sends (STOP_ROD) lands at a rod time that does not depend on thread scheduling.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from typing import Any

from rig.core.config import RigConfig, RotarodSim, RotarodSimavr
from rig.core.devices.rotarod import Rotarod, RotarodAdapter
from rig.core.devices.rotarod_sim import SimavrRotarodTransport, SimRotarodTransport
from rig.core.errors import RigError
from rig.core.protocol import Message

SimulatedRod = SimRotarodTransport | SimavrRotarodTransport


def make_rotarod(
    rig: RigConfig, *, realtime: bool = False, transport: Any = None
) -> tuple[RotarodAdapter, SimulatedRod | None]:
    """The rig's rotarod driver, and the simulated rod behind it (``driver: sim`` or ``simavr``).

    ``transport`` overrides the one the config implies.
    """
    cfg = rig.rotarod
    if cfg is None:
        raise RigError(f"rig {rig.name!r} has no rotarod section in its config")
    sim = transport if isinstance(transport, SimulatedRod) else None
    if transport is None:
        if isinstance(cfg, RotarodSim):
            sim = SimRotarodTransport(cfg.rod.steps_per_rev, time_scale=1.0 if realtime else None)
            transport = sim
        elif isinstance(cfg, RotarodSimavr):
            sim = SimavrRotarodTransport(firmware=cfg.firmware, realtime=cfg.realtime and realtime)
            transport = sim
        else:
            from rig.core.transport import SerialTransport

            transport = SerialTransport(cfg.port, cfg.baud)
    rod = Rotarod(
        transport,
        n_lanes=cfg.lanes,
        steps_per_rev=cfg.rod.steps_per_rev,
        debounce_ms=cfg.fall_debounce_ms,
        passive_lanes_mask=(1 << cfg.lanes) - 1,
        where=getattr(cfg, "port", cfg.driver),
    )
    rod.name = cfg.name
    return rod, sim


class Inbox(queue.Queue[Message]):
    """The rod's packets for the runner; ``on_drained`` runs when every one taken is handled.

    The runner calls ``task_done`` after handling each packet. A simulated rod in virtual time
    waits on that (``SimRotarodTransport.host_busy``) before it moves on.
    """

    def __init__(self) -> None:
        super().__init__()
        self.on_drained: Callable[[], None] | None = None

    def task_done(self) -> None:
        super().task_done()
        if self.on_drained is not None and self.unfinished_tasks == 0:
            self.on_drained()


def open_inbox(rod: RotarodAdapter, sim: SimulatedRod | None) -> Inbox:
    """An ``Inbox`` that gets every packet of ``rod``; paces ``sim`` when it runs in virtual time.

    The rod in virtual time moves on only once the runner has handled what it sent, so a
    STOP_ROD lands at the same rod time however the threads are scheduled.
    """
    inbox = Inbox()
    rod.on_event.append(inbox.put)
    if sim is not None and sim.virtual_time:
        sim.host_busy = lambda: inbox.unfinished_tasks > 0
        inbox.on_drained = sim.wake
    return inbox

"""Simulated devices that speak the real byte protocol (tier 1 fakes, DESIGN.md "Devices").

- ``SimLeverBoard`` (``lever_board``): the lever board's protocol and engine, stepped by hand.
- ``SimBoardLink`` (``link``): runs a simulated board on a pty or loopback, real time or faster.
- ``inputs``: ``LeverInput`` protocol and ``ConstantLever``, ``ArrayLever``, ``PushLever``,
  ``MouseLever`` (behavioral mouse through the calibration), ``FrameClock``.

Quick start (host driver against the simulated board over a real pty)::

    board = SimLeverBoard(MouseLever(mouse, cfg.calibration, noise_counts=1.0),
                          frame_clock=FrameClock(30.0))
    with SimBoardLink(board, kind="pty", speed=1.0) as link:
        lb = LeverBoard(link.transport(), cfg)
        lb.connect()
"""

from rig.core.sim.inputs import (
    ArrayLever,
    ConstantLever,
    FrameClock,
    LeverInput,
    MouseLever,
    PushLever,
)
from rig.core.sim.lever_board import SimFaults, SimLeverBoard
from rig.core.sim.link import SimBoardLink

__all__ = [
    "ArrayLever",
    "ConstantLever",
    "FrameClock",
    "LeverInput",
    "MouseLever",
    "PushLever",
    "SimBoardLink",
    "SimFaults",
    "SimLeverBoard",
]

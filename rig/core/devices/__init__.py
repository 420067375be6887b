"""Device drivers: each is given a ``Transport`` (rig.core.transport), none opens ports itself.

- ``CommandChannel`` (``channel``): the generic command link: sequence numbers, ACK/NAK waits,
  reader and heartbeat threads, reconnects; base class of the board drivers.
- ``LeverBoard`` (``lever_board``): lever board driver: HELLO check, typed commands, events.
- ``Rotarod`` (``rotarod``): the rotarod adapter interface and our board's driver (a
  ``CommandChannel`` too); its packets in ``rotarod_packets``; simulated rods in ``rotarod_sim``
  (Python) and ``rotarod_simavr`` (our firmware under simavr).
"""

from rig.core.devices.lever_board import CommandError, FirmwareMismatch, LeverBoard

__all__ = ["CommandError", "FirmwareMismatch", "LeverBoard"]

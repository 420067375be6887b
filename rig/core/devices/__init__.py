"""Device drivers: each is given a ``Transport`` (rig.core.transport), none opens ports itself.

- ``LeverBoard`` (``lever_board``): lever board driver, typed commands, reader thread.
"""

from rig.core.devices.lever_board import CommandError, FirmwareMismatch, LeverBoard

__all__ = ["CommandError", "FirmwareMismatch", "LeverBoard"]

"""Firmware in the loop: the compiled sketches under simavr (harness: firmware/sim/avrsim.c).

- ``build``: find the toolchain, ``ensure_built()`` runs ``make -C firmware`` when needed.
- ``harness``: ``AvrSim`` starts/stops one simulated board, drives ADC/pins/UART input, runs
  stepped (deterministic) or free (optionally throttled to wall clock, UART on a pty).
- ``simlog``: the cycle-exact log -> bytes, pin edges and protocol packets with simulated times.
- ``client``: ``SteppedBoard``, a deterministic host speaking the real protocol.
- ``pins``: Arduino pin -> port/bit names; the lever board's wiring.
"""

from rig.core.simavr.build import (
    DEBIAN_PACKAGES,
    FirmwareBuildError,
    elf_path,
    ensure_built,
    missing_tools,
)
from rig.core.simavr.client import BoardError, SteppedBoard
from rig.core.simavr.harness import AvrSim, HarnessError
from rig.core.simavr.pins import LEVER_ADC_CHANNEL, LEVER_BOARD, lever_pin, port_bit
from rig.core.simavr.simlog import LogChunk, LogReader, PacketStream, PinEdge, TimedPacket

__all__ = [
    "DEBIAN_PACKAGES",
    "LEVER_ADC_CHANNEL",
    "LEVER_BOARD",
    "AvrSim",
    "BoardError",
    "FirmwareBuildError",
    "HarnessError",
    "LogChunk",
    "LogReader",
    "PacketStream",
    "PinEdge",
    "SteppedBoard",
    "TimedPacket",
    "elf_path",
    "ensure_built",
    "lever_pin",
    "missing_tools",
    "port_bit",
]

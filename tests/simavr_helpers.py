"""Fixtures and helpers for the firmware-in-the-loop tests (firmware under simavr).

Tests that need the AVR toolchain or simavr skip with the Debian packages to install.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rig.core.protocol import EventMsg, Heartbeat, Packet
from rig.core.simavr import (
    DEBIAN_PACKAGES,
    AvrSim,
    SteppedBoard,
    TimedPacket,
    ensure_built,
    lever_pin,
    missing_tools,
)


def require_simavr() -> None:
    missing = missing_tools()
    if missing:
        pytest.skip(f"needs {', '.join(missing)}: install with 'apt-get install {DEBIAN_PACKAGES}'")


@pytest.fixture(scope="session")
def firmware_uno() -> tuple[Path, Path]:
    """(elf, harness) for the lever board on an Uno, built if sources changed."""
    require_simavr()
    return ensure_built("lever_board", "uno")


WATCH = tuple(lever_pin(p) for p in ("valve", "ttl0", "trial_code"))


@pytest.fixture
def board(firmware_uno: tuple[Path, Path], tmp_path: Path) -> Iterator[SteppedBoard]:
    """A booted lever board (Uno) under a stepped harness, output pins watched."""
    elf, harness = firmware_uno
    sim = AvrSim(elf, tmp_path / "sim.log", stepped=True, pty=False, watch=WATCH, harness=harness)
    with sim:
        b = SteppedBoard(sim)
        b.boot()
        yield b


def is_msg(kind: type) -> Callable[[TimedPacket], bool]:
    def pred(p: TimedPacket) -> bool:
        return isinstance(p.item, Packet) and isinstance(p.item.msg, kind)

    return pred


def last_heartbeat(b: SteppedBoard) -> Heartbeat:
    p = b.wait_for(is_msg(Heartbeat), 150_000, 5000, "heartbeat")
    assert isinstance(p.item, Packet) and isinstance(p.item.msg, Heartbeat)
    return p.item.msg


def events(b: SteppedBoard, since: int = 0) -> list[EventMsg]:
    return [m for _, m in b.messages(EventMsg, since)]

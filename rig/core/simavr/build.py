"""Find the AVR toolchain and simavr, and build the firmware and the harness when needed.

Everything here shells out to ``make -C firmware`` (Debian's arduino-mk + gcc-avr; the harness
links libsimavr), so the Python side never duplicates the build rules.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from rig.core.errors import RigError

REPO = Path(__file__).resolve().parents[3]
FIRMWARE_DIR = REPO / "firmware"
BUILD_DIR = FIRMWARE_DIR / "build"
HARNESS = BUILD_DIR / "sim" / "avrsim"
DEBIAN_PACKAGES = "gcc-avr avr-libc arduino-core-avr arduino-mk simavr libsimavr-dev"
MCU_OF_BOARD = {"uno": "atmega328p", "mega": "atmega2560"}


class FirmwareBuildError(RigError):
    """The firmware or the simavr harness could not be built."""


def missing_tools() -> list[str]:
    """Names of what is missing to build and simulate the firmware (empty when all is there)."""
    missing = [t for t in ("avr-gcc", "make", "cc") if shutil.which(t) is None]
    for path, what in (
        (Path("/usr/share/arduino/Arduino.mk"), "arduino-mk"),
        (Path("/usr/share/arduino/hardware/arduino/avr/cores/arduino"), "arduino-core-avr"),
        (Path("/usr/include/simavr/sim_avr.h"), "libsimavr-dev"),
    ):
        if not path.exists():
            missing.append(what)
    return missing


def elf_path(sketch: str = "lever_board", board: str = "uno") -> Path:
    """Where ``make -C firmware`` puts the .elf of ``sketch`` for ``board``."""
    return BUILD_DIR / sketch / board / f"{sketch}.elf"


def _stale(target: Path, sources: list[Path]) -> bool:
    if not target.exists():
        return True
    t = target.stat().st_mtime
    return any(s.stat().st_mtime > t for s in sources if s.exists())


def ensure_built(sketch: str = "lever_board", board: str = "uno") -> tuple[Path, Path]:
    """Build (if sources changed) and return ``(elf, harness)`` paths.

    Raises
    ------
    FirmwareBuildError
        When a tool is missing (the message names the Debian packages) or make fails.
    """
    missing = missing_tools()
    if missing:
        raise FirmwareBuildError(
            f"cannot build the firmware: missing {', '.join(missing)}; "
            f"install with 'apt-get install {DEBIAN_PACKAGES}'"
        )
    if board not in MCU_OF_BOARD:
        raise FirmwareBuildError(f"board must be one of {sorted(MCU_OF_BOARD)}, got {board!r}")
    elf = elf_path(sketch, board)
    sketch_sources = sorted((FIRMWARE_DIR / sketch).glob("*"))
    if not sketch_sources:
        raise FirmwareBuildError(f"no sketch folder {FIRMWARE_DIR / sketch}")
    harness_sources = sorted((FIRMWARE_DIR / "sim").glob("*"))
    if _stale(elf, sketch_sources) or _stale(HARNESS, harness_sources):
        proc = subprocess.run(
            ["make", "-C", str(FIRMWARE_DIR), f"SKETCHES={sketch}", f"BOARDS={board}"],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise FirmwareBuildError(
                f"'make -C firmware' failed (exit {proc.returncode}):\n"
                f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
            )
    if not elf.exists() or not HARNESS.exists():
        raise FirmwareBuildError(f"build finished but {elf} or {HARNESS} is missing")
    return elf, HARNESS

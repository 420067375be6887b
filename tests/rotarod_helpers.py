"""Run the rotarod firmware under the avrsim harness (stepped mode) for the rotarod tests.

A2's generic Python harness (``rig.core.simavr``) had not landed when these tests were written;
this is the minimum the rotarod tests need: build, start avrsim with a pty, drain the pty on a
thread, step simulated time, and read the cycle-exact log.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import tty
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIRMWARE = REPO / "firmware"
F_CPU = 16_000_000


def build_rotarod(board: str = "uno") -> tuple[Path, Path]:
    """Build the rotarod sketch and the avrsim harness (skips without the AVR toolchain)."""
    from tests.conftest import require_tools

    require_tools("avr-gcc", "make", packages="gcc-avr avr-libc arduino-mk simavr libsimavr-dev")
    if not Path("/usr/share/arduino/Arduino.mk").exists():
        pytest.skip("needs arduino-mk: apt-get install arduino-mk arduino-core-avr")
    r = subprocess.run(
        [
            "make",
            "-s",
            "-C",
            str(FIRMWARE),
            "sketches",
            "harness",
            "SKETCHES=rotarod",
            f"BOARDS={board}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return FIRMWARE / "build" / "rotarod" / board / "rotarod.elf", FIRMWARE / "build/sim/avrsim"


@dataclass
class SteppedSim:
    """avrsim in ``--stepped`` mode: simulated time moves only on :meth:`run`."""

    elf: Path
    avrsim: Path
    log: Path
    watch: str = "D4"
    proc: subprocess.Popen[str] | None = None
    fd: int = -1
    received: bytearray = field(default_factory=bytearray)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> SteppedSim:
        self.proc = subprocess.Popen(
            [
                str(self.avrsim),
                *("--elf", str(self.elf), "--stepped", "--log", str(self.log)),
                *("--watch", self.watch),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().split()
        assert first[:1] == ["pty"], first
        self.fd = os.open(first[1], os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                data = os.read(self.fd, 65536)
            except OSError:
                return
            with self._lock:
                self.received += data

    def take(self) -> bytes:
        """Every byte the board sent since the last call."""
        with self._lock:
            out = bytes(self.received)
            self.received.clear()
        return out

    def cmd(self, line: str) -> int:
        """Send one harness command and wait for its ``ok <cycle>`` (run and sync only)."""
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        if line.split()[0] not in ("run", "sync"):
            return -1
        reply = self.proc.stdout.readline().split()
        assert reply[:1] == ["ok"], (line, reply)
        return int(reply[1])

    def run_us(self, us: float) -> int:
        return self.cmd(f"run {us:.0f}")

    def write(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait_bytes(self, predicate, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
        """Wait (on a condition, not a sleep) until the drained bytes satisfy ``predicate``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if predicate(bytes(self.received)):
                    return
            time.sleep(0.005)
        raise AssertionError("timed out waiting for board output")

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        try:
            self.cmd("quit")
            self.proc.wait(timeout=20)
        except Exception:
            self.proc.kill()
            self.proc.wait()
        self._stop.set()
        os.close(self.fd)


def read_log(path: Path) -> tuple[list[tuple[int, str, int]], list[tuple[int, str]]]:
    """Watched pin edges ``(cycle, pin, level)`` and applied inputs ``(cycle, command)``."""
    edges, inputs = [], []
    for line in path.read_text().splitlines():
        if line.startswith("P "):
            _, c, pin, v = line.split()
            edges.append((int(c), pin, int(v)))
        elif line.startswith("I "):
            _, c, rest = line.split(" ", 2)
            inputs.append((int(c), rest))
    return edges, inputs

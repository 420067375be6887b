"""Start, drive and stop the ``avrsim`` harness (firmware/sim/avrsim.c) from Python.

``AvrSim`` runs one simulated board. In **stepped** mode simulated time only advances on
``run_us``, and every input (ADC voltage, pin level, UART bytes via ``tx``) is applied at an exact
simulated time, so a test is deterministic whatever the host load. In free-running mode the
board runs on its own (``realtime=True`` throttles it to wall-clock time) and a host talks to
it through the pseudo-terminal ``pty_path`` like a real serial port.

Times are µs of simulated time since reset (``cycle / freq_hz * 1e6``).
"""

from __future__ import annotations

import os
import select
import subprocess
import time
from pathlib import Path
from types import TracebackType

from rig.core.errors import RigError
from rig.core.simavr.build import MCU_OF_BOARD, ensure_built
from rig.core.simavr.simlog import LogReader


class HarnessError(RigError):
    """The harness failed to start, answered unexpectedly or exited."""


class AvrSim:
    """One simulated board running a compiled sketch.

    Parameters
    ----------
    elf : Path
        Compiled firmware (``firmware/build/<sketch>/<board>/<sketch>.elf``).
    log_path : Path
        Cycle-exact log the harness writes (see ``rig.core.simavr.simlog``).
    board : str
        ``"uno"`` or ``"mega"`` (selects the MCU).
    watch : tuple[str, ...]
        Output pins to record, as port/bit names (``"D4"``) or whole ports (``"B"``).
    stepped : bool
        Advance simulated time only on ``run_us``.
    realtime : bool
        Throttle to wall-clock time (free-running mode).
    pty : bool
        Expose the UART as a pseudo-terminal (``pty_path``).
    vcc_mv : int
        AVCC = AREF in mV. simavr converts ``counts = mv * 1023 // vcc_mv``, so 5115 makes one
        ADC count exactly 5 mV.
    """

    def __init__(
        self,
        elf: Path,
        log_path: Path,
        *,
        board: str = "uno",
        watch: tuple[str, ...] = (),
        stepped: bool = False,
        realtime: bool = False,
        pty: bool = True,
        vcc_mv: int = 5115,
        freq_hz: int = 16_000_000,
        harness: Path | None = None,
        script: Path | None = None,
    ) -> None:
        if board not in MCU_OF_BOARD:
            raise ValueError(f"board must be one of {sorted(MCU_OF_BOARD)}, got {board!r}")
        self.elf = Path(elf)
        self.log_path = Path(log_path)
        self.board = board
        self.freq_hz = freq_hz
        self.vcc_mv = vcc_mv
        self.stepped = stepped
        self.pty_path: str | None = None
        self.cycle = 0
        self._harness = harness
        self._args = [
            f"--elf={self.elf}",
            f"--mcu={MCU_OF_BOARD[board]}",
            f"--freq={freq_hz}",
            f"--vcc-mv={vcc_mv}",
            f"--log={self.log_path}",
            *[f"--watch={w}" for w in watch],
            *(["--stepped"] if stepped else []),
            *(["--realtime"] if realtime else []),
            *([] if pty else ["--no-pty"]),
            *([f"--script={script}"] if script else []),
        ]
        self._proc: subprocess.Popen[bytes] | None = None
        self._out = b""
        self.log = LogReader(self.log_path, freq_hz)

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout_s: float = 10.0) -> AvrSim:
        harness = self._harness
        if harness is None:
            _, harness = ensure_built()
        self._proc = subprocess.Popen(
            [str(harness), *self._args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        first = self._read_line(timeout_s)
        if not first.startswith("pty "):
            raise HarnessError(f"avrsim: expected 'pty <path>' first, got {first!r}")
        path = first.split(None, 1)[1]
        self.pty_path = None if path == "none" else path
        return self

    def close(self, timeout_s: float = 10.0) -> None:
        """Ask the harness to quit (it flushes the log) and wait for it."""
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        try:
            if proc.poll() is None and proc.stdin:
                proc.stdin.write(b"quit\n")
                proc.stdin.flush()
                proc.stdin.close()
            proc.wait(timeout_s)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(timeout_s)
        finally:
            for f in (proc.stdout, proc.stderr):
                if f:
                    f.close()

    def __enter__(self) -> AvrSim:
        return self.start() if self._proc is None else self

    def __exit__(
        self,
        et: type[BaseException] | None,
        ev: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def now_us(self) -> float:
        """Simulated time of the last answer from the harness, µs."""
        return self.cycle * 1e6 / self.freq_hz

    def us_to_cycles(self, t_us: float) -> int:
        return round(t_us * self.freq_hz / 1e6)

    # ------------------------------------------------------------------ commands
    def command(self, line: str) -> None:
        """Send one harness command line (see the top of firmware/sim/avrsim.c)."""
        proc = self._require()
        assert proc.stdin is not None
        try:
            proc.stdin.write(line.encode("ascii") + b"\n")
            proc.stdin.flush()
        except BrokenPipeError:
            raise HarnessError(f"avrsim exited: {self._stderr_tail()}") from None

    def _at(self, at_us: float | None) -> str:
        return "" if at_us is None else f"@{at_us:.3f} "

    def adc(self, channel: int, millivolts: int, at_us: float | None = None) -> None:
        """Set ADC input ``channel`` to ``millivolts`` now or at simulated time ``at_us``."""
        self.command(f"{self._at(at_us)}adc {channel} {int(millivolts)}")

    def adc_counts(self, channel: int, counts: int, at_us: float | None = None) -> None:
        """Set the ADC input so that a 10-bit conversion reads ``counts``."""
        self.adc(channel, self.counts_to_mv(counts), at_us)

    def counts_to_mv(self, counts: int) -> int:
        """Millivolts that simavr's 10-bit conversion (``mv * 1023 // vcc_mv``) reads as
        ``counts``."""
        if not 0 <= counts <= 1023:
            raise ValueError(f"ADC counts must be 0..1023, got {counts}")
        return -(-counts * self.vcc_mv // 1023)

    def pin(self, port_bit: str, level: int, at_us: float | None = None) -> None:
        """Drive input pin ``port_bit`` (``"D3"``) to ``level`` now or at ``at_us``."""
        self.command(f"{self._at(at_us)}pin {port_bit} {1 if level else 0}")

    def tx(self, data: bytes, at_us: float | None = None) -> None:
        """Bytes into the board's UART receiver now or at ``at_us`` (deterministic; no pty)."""
        for i in range(0, len(data), 256):
            self.command(f"{self._at(at_us)}tx {data[i : i + 256].hex()}")

    def run_us(self, duration_us: float, timeout_s: float = 60.0) -> int:
        """Stepped mode: advance ``duration_us`` of simulated time; return the cycle reached."""
        if not self.stepped:
            raise HarnessError("run_us needs a harness started with stepped=True")
        self.command(f"run {duration_us:.3f}")
        return self._expect_ok(timeout_s)

    def sync(self, timeout_s: float = 60.0) -> int:
        """Wait until every earlier command has been applied; return the current cycle."""
        self.command("sync")
        return self._expect_ok(timeout_s)

    def _expect_ok(self, timeout_s: float) -> int:
        line = self._read_line(timeout_s)
        if not line.startswith("ok "):
            raise HarnessError(f"avrsim: expected 'ok <cycle>', got {line!r}")
        self.cycle = int(line.split()[1])
        return self.cycle

    # ------------------------------------------------------------------ plumbing
    def _require(self) -> subprocess.Popen[bytes]:
        if self._proc is None:
            raise HarnessError("the harness is not running (call start())")
        return self._proc

    def _stderr_tail(self) -> str:
        proc = self._proc
        if proc is None or proc.stderr is None or proc.poll() is None:
            return "(still running)"
        return proc.stderr.read().decode(errors="replace")[-2000:]

    def _read_line(self, timeout_s: float) -> str:
        proc = self._require()
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._out:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HarnessError(f"avrsim: no answer within {timeout_s} s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    proc.wait(5)
                    raise HarnessError(
                        f"avrsim exited (code {proc.returncode}): {self._stderr_tail()}"
                    )
                self._out += chunk
        line, self._out = self._out.split(b"\n", 1)
        text = line.decode(errors="replace")
        if text.startswith("exit "):
            raise HarnessError(f"avrsim stopped: {text}")
        return text

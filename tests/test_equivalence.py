"""One semantics, two engines: 50 random lever traces through the firmware (simavr, stepped) and
through the Python reference interpreter give the same event trail, event for event.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from itertools import pairwise
from pathlib import Path

import numpy as np

from rig.core.protocol.codes import EventCode
from rig.core.simavr import AvrSim, LogReader, SteppedBoard
from rig.core.simavr.equivalence import (
    FirmwareRunner,
    compare_trails,
    random_case,
    run_python,
    trail_window,
)
from tests.simavr_helpers import firmware_uno

__all__ = ["firmware_uno"]

N_CASES = 50
E = EventCode


def test_firmware_and_python_trails_are_equal(
    firmware_uno: tuple[Path, Path], tmp_path: Path
) -> None:
    elf, harness = firmware_uno
    rng = np.random.default_rng(20261127)
    outcomes: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    swaps = 0
    failures = []
    with AvrSim(elf, tmp_path / "eq.log", stepped=True, pty=False, harness=harness) as sim:
        board = SteppedBoard(sim)
        runner = FirmwareRunner(board)
        runner.setup()
        for i in range(N_CASES):
            case = random_case(rng, duration_ms=2000)
            fw = runner.run(case)
            py = run_python(case, fw)
            diff = compare_trails(fw.trail, py)
            if diff is not None:
                failures.append(f"case {i} ({case.kinds}): {diff}")
            kinds.update(case.kinds)
            names = case.machine.compile().names
            trail = trail_window(fw.trail)
            for a, b in pairwise(trail):
                if a.code == E.TRIAL_END and b.code == E.TRIAL_START:
                    assert a.t_us == b.t_us, "a queued trial must start in the end tick"
                    swaps += 1
            outcomes.update(
                "aborted" if e.arg == 0xFF else names[e.arg] for e in trail if e.code == E.TRIAL_END
            )
    assert not failures, "\n".join(failures[:3])
    # the random cases really covered the behaviours the spec cares about
    for outcome in ("done", "early", "miss", "aborted"):
        assert outcomes[outcome] > 0, outcomes
    assert outcomes["overshoot"] + outcomes["impulsive"] > 0, outcomes
    for kind in ("rest", "early", "overshoot", "fast", "hold"):
        assert kinds[kind] > 0, kinds
    assert swaps >= N_CASES // 2, swaps
    # the Uno's stack never came within 64 bytes of the static data, under this whole load
    end = LogReader(tmp_path / "eq.log").read_new().end
    assert end is not None
    nm = subprocess.run(["avr-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    bss_end = next(
        int(ln.split()[0], 16) & 0xFFFF for ln in nm.splitlines() if ln.endswith(" __bss_end")
    )
    assert int(end["min_sp"]) - bss_end >= 64, (end["min_sp"], bss_end)


def test_the_mega_build_gives_the_same_trails(tmp_path: Path) -> None:
    """The Mega 2560 build (other pins, other limits) on a few traces."""
    from rig.core.simavr import ensure_built
    from tests.simavr_helpers import require_simavr

    require_simavr()
    elf, harness = ensure_built("lever_board", "mega")
    rng = np.random.default_rng(7)
    with AvrSim(elf, tmp_path / "m.log", board="mega", stepped=True, pty=False,
                harness=harness) as sim:  # fmt: skip
        runner = FirmwareRunner(SteppedBoard(sim), "mega")
        runner.setup()
        for _ in range(5):
            case = random_case(rng, duration_ms=1500)
            fw = runner.run(case)
            assert compare_trails(fw.trail, run_python(case, fw)) is None

"""Helpers for the fault-injection suite (helper G): ground-truth packet matching, ENOSPC
injection, condition waits on files and a hold-task lever that pulls on a fixed period."""

from __future__ import annotations

import contextlib
import errno
import resource
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rig.core.protocol import Packet


@dataclass
class MatchReport:
    """How a damaged stream's accepted packets line up with the clean stream.

    Attributes
    ----------
    accepted : int
        Packets the damaged-stream decoder accepted.
    wrong : list of (int, object, object)
        ``(clean_position, clean_msg, accepted_msg)`` for every accepted packet that differs
        from the clean packet with its sequence number: a corrupt packet accepted.
    skipped : int
        Clean packets between accepted ones that never arrived (what the decoder must count
        as lost).
    """

    accepted: int
    wrong: list[tuple[int, Any, Any]]
    skipped: int


def match_to_clean(clean: list[Packet], got: list[Packet]) -> MatchReport:
    """Walk ``got`` (in arrival order) along ``clean``: each accepted packet must be the next
    clean packet carrying its sequence number, with an identical body.

    The sequence number wraps at 256, so a run of >= 256 consecutive losses would be
    ambiguous; the callers' loss rates make such a run impossible in practice and it would show
    up as a mismatch rather than pass silently.
    """
    j = 0
    wrong: list[tuple[int, Any, Any]] = []
    skipped = 0
    for p in got:
        k = j
        while k < len(clean) and clean[k].seq != p.seq:
            k += 1
        if k == len(clean):
            wrong.append((-1, None, p.msg))
            continue
        if clean[k].msg != p.msg:
            wrong.append((k, clean[k].msg, p.msg))
        skipped += k - j
        j = k + 1
    return MatchReport(len(got), wrong, skipped)


class DiskFull:
    """Makes a ``SessionWriter``'s files fail with ENOSPC once ``budget_bytes`` more bytes have
    been written through them, as a filling disk would (the failing write writes nothing).

    Install with ``monkeypatch.setattr(SessionWriter, "_open", DiskFull(...).wrap_open(real))``.
    """

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.written = 0
        self.armed = threading.Event()
        self.hits = 0
        self._lock = threading.Lock()

    def wrap_open(self, real_open: Callable[..., Any]) -> Callable[..., Any]:
        full = self

        def _open(writer: Any, rel: str, header: bytes) -> Any:
            f = real_open(writer, rel, b"")
            wrapped = _FullFile(f, full)
            writer._files[rel] = wrapped
            writer._write(rel, wrapped, header)
            return wrapped

        return _open

    def charge(self, n: int) -> None:
        with self._lock:
            if self.armed.is_set() and self.written + n > self.budget_bytes:
                self.hits += 1
                raise OSError(errno.ENOSPC, "No space left on device")
            if self.armed.is_set():
                self.written += n


class _FullFile:
    def __init__(self, f: Any, full: DiskFull) -> None:
        self._f, self._full = f, full

    def write(self, data: Any) -> int:
        self._full.charge(len(data))
        return int(self._f.write(data))

    def fileno(self) -> int:
        return int(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def wait_until(pred: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.02) -> None:
    """Poll ``pred`` (a file on disk, another process) until true; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)  # polling something with no notification (a file, a process)


def count_rows(path: Path) -> int:
    """Complete data rows of a ``trials.tsv`` (two header lines; a torn last line not counted)."""
    if not path.exists():
        return 0
    data = path.read_bytes()
    return max(0, data.count(b"\n") - 2)


class PeriodicPuller:
    """A ``LeverInput``: a pull to ``amp_counts`` above rest every ``period_ms``, held
    ``hold_ms``; deterministic, so two runs see the same lever."""

    def __init__(
        self, rest: int = 512, amp_counts: int = 80, period_ms: int = 700, hold_ms: int = 300
    ) -> None:
        self.rest, self.amp, self.period_ms, self.hold_ms = rest, amp_counts, period_ms, hold_ms

    def counts(self, t_us: np.ndarray) -> np.ndarray:
        phase_ms = (np.asarray(t_us) // 1000) % self.period_ms
        up = (phase_ms >= 200) & (phase_ms < 200 + self.hold_ms)
        return np.where(up, self.rest + self.amp, self.rest).astype(np.int64)

    def on_output(self, event: Any) -> None:
        pass


def _vm_size_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


@contextlib.contextmanager
def address_space_cap(extra_bytes: int) -> Iterator[None]:
    """Let this process map at most ``extra_bytes`` more while the block runs.

    A damaged file that makes a reader allocate gigabytes then fails with MemoryError or
    ``std::bad_alloc`` instead of getting the CI machine's test run OOM-killed.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _vm_size_bytes() + extra_bytes
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))

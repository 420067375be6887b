"""Session store: round trip, torn tails, corruption detection, and survival of SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from rig.core.errors import SessionFormatError
from rig.core.events import Event
from rig.core.store import SessionMeta, SessionReader, SessionWriter, StoreError, find_sessions


def _meta(task: str = "cued") -> SessionMeta:
    return SessionMeta(
        subject_id="m1",
        task=task,
        rig_name="sim-rig",
        rig_config={"lever_board": {"calibration": {"rest_counts": 512, "counts_per_mm": 40.0}}},
        started_at=datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC),
    )


def test_round_trip(tmp_path: Path) -> None:
    w = SessionWriter.create(tmp_path, _meta())
    assert w.folder == tmp_path / "m1" / "2026-11-27_100000_cued"
    for i in range(5):
        w.write_event(
            Event("lever_up", "lever_board", t_device_us=1000 * i, trial=i, data={"i": i})
        )
    w.write_trial({"trial": 0, "outcome": "reward", "rt_ms": 312.5, "extra": {"a": [1, 2]}})
    w.write_trial({"trial": 1, "outcome": "miss", "rt_ms": None, "extra": {}})
    t = np.arange(100, dtype=np.int64) * 1000
    w.write_lever(t, 512 + np.arange(100))
    w.write_raw("lever_board", b"\x01\x02\x00", t_host_ns=5)
    w.write_raw("lever_board", b"\x03", t_host_ns=6)
    w.close()

    r = SessionReader(w.folder)
    assert r.status == "complete"
    ev = r.events()
    assert [e.data["i"] for e in ev] == list(range(5))
    assert ev[3].t_device_us == 3000 and ev[3].trial == 3 and ev[3].source == "lever_board"
    trials = r.trials()
    assert [t["outcome"] for t in trials] == ["reward", "miss"]
    assert float(trials[0]["rt_ms"]) == 312.5 and trials[1]["rt_ms"] == ""
    assert json.loads(trials[0]["extra"]) == {"a": [1, 2]}
    lev = r.lever()
    assert lev["counts"][10] == 522 and lev["t_device_us"][99] == 99_000
    t_s, mm = r.lever_mm()
    assert mm[40] == pytest.approx(1.0) and t_s[1] == pytest.approx(1e-3)
    assert list(r.raw("lever_board")) == [(5, b"\x01\x02\x00"), (6, b"\x03")]
    assert r.meta.n_trials == 2 and r.meta.stopped_at is not None
    assert find_sessions(tmp_path) == [w.folder]


def test_never_overwrites_a_session(tmp_path: Path) -> None:
    a = SessionWriter.create(tmp_path, _meta())
    b = SessionWriter.create(tmp_path, _meta())
    assert a.folder != b.folder and b.folder.name.endswith("_2")
    with pytest.raises(StoreError, match="exists already"):
        SessionWriter(a.folder, _meta())
    a.close()
    b.close()


def test_exception_in_context_marks_aborted(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), SessionWriter.create(tmp_path, _meta()) as w:
        raise RuntimeError("valve driver fault")
    r = SessionReader(w.folder)
    assert r.status == "aborted" and "valve driver fault" in r.meta.stop_reason


def test_torn_tail_dropped_when_interrupted(tmp_path: Path) -> None:
    w = SessionWriter.create(tmp_path, _meta())
    w.write_event(Event("a", "host"))
    w.write_lever(np.array([1, 2]), np.array([3, 4]))
    # simulate a crash mid-record: no close(), partial bytes at the end of each file
    with open(w.folder / "events.jsonl", "ab") as f:
        f.write(b'{"name": "half')
    with open(w.folder / "lever.bin", "ab") as f:
        f.write(b"\x00" * 5)
    r = SessionReader(w.folder)
    assert r.status == "interrupted"
    assert [e.name for e in r.events()] == ["a"]
    assert len(r.lever()) == 2
    assert {t.file for t in r.torn} == {"events.jsonl", "lever.bin"}


def test_corrupt_middle_record_names_file_and_line(tmp_path: Path) -> None:
    w = SessionWriter.create(tmp_path, _meta())
    for i in range(3):
        w.write_event(Event("e", "host", data={"i": i}))
    w.close()
    p = w.folder / "events.jsonl"
    lines = p.read_bytes().split(b"\n")
    lines[2] = b"{garbage"
    p.write_bytes(b"\n".join(lines))
    with pytest.raises(SessionFormatError, match=r"events.jsonl: line 3 \(byte \d+\)"):
        SessionReader(w.folder).events()


def test_bad_magic_and_missing_meta(tmp_path: Path) -> None:
    with pytest.raises(SessionFormatError, match="session.json: missing"):
        SessionReader(tmp_path)
    w = SessionWriter.create(tmp_path, _meta())
    w.close()
    (w.folder / "lever.bin").write_bytes(b"NOTLEVER" + b"\x00" * 8)
    with pytest.raises(SessionFormatError, match="byte 0: magic"):
        SessionReader(w.folder).lever()


def test_disk_full_stops_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    w = SessionWriter.create(tmp_path, _meta())
    w.write_event(Event("before", "host"))
    real_write = w._events.write

    def full(data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(w._events, "write", full)
    with pytest.raises(StoreError, match="disk full"):
        w.write_event(Event("lost", "host"))
    with pytest.raises(StoreError):  # every later write refuses too, nothing half-written
        w.write_event(Event("later", "host"))
    monkeypatch.setattr(w._events, "write", real_write)
    w.close("aborted", "disk full")
    r = SessionReader(w.folder)
    assert [e.name for e in r.events()] == ["before"]
    assert r.status == "aborted"


CHILD = r"""
import sys, time
from datetime import datetime, UTC
from pathlib import Path
import numpy as np
from rig.core.events import Event
from rig.core.store import SessionMeta, SessionWriter

meta = SessionMeta(subject_id="k", task="kill", rig_name="t", rig_config={},
                   started_at=datetime.now(UTC))
w = SessionWriter.create(Path(sys.argv[1]), meta)
print(w.folder, flush=True)
i = 0
period_ns = 500_000  # 2 kHz target, >= 1 kHz required
next_t = time.monotonic_ns()
while True:
    w.write_event(Event("tick", "host", t_device_us=i, data={"seq": i}))
    if i % 10 == 0:
        w.write_lever(np.arange(i, i + 10, dtype=np.int64), np.full(10, i % 1000))
    if i % 200 == 199:
        w.write_trial({"trial": i // 200, "outcome": "reward", "last_seq": i})
    i += 1
    next_t += period_ns
    while time.monotonic_ns() < next_t:
        pass
"""


def test_sigkill_loses_at_most_the_last_second(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        folder = Path(proc.stdout.readline().strip())
        events = folder / "events.jsonl"
        deadline = time.monotonic() + 30
        # wait (on a condition) until the writer has run for a while at full rate
        while events.read_bytes().count(b"\n") < 3500 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "writer exited early"
    finally:
        t_kill_ns = time.monotonic_ns()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    r = SessionReader(folder)
    assert r.status == "interrupted"
    ev = r.events()  # raises if any record before the tail is corrupt
    seqs = [e.data["seq"] for e in ev]
    assert seqs == list(range(len(seqs))), "records missing or out of order"
    assert len(seqs) >= 3000
    span_s = (ev[-1].t_host_ns - ev[0].t_host_ns) / 1e9
    assert len(seqs) / span_s >= 1000, f"writer ran at {len(seqs) / span_s:.0f} Hz"
    # monotonic clocks are system-wide: the last record on disk is < 1 s older than the kill
    assert (t_kill_ns - ev[-1].t_host_ns) / 1e9 < 1.0
    trials = r.trials()
    assert trials and int(trials[-1]["last_seq"]) <= seqs[-1]
    lev = r.lever()
    assert len(lev) % 10 == 0 or r.torn
    assert len(lev) >= 10 * (len(seqs) // 10 - 1)

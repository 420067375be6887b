"""Faults that hit a running session (issue 9, items 4 and 5): the disk filling up under the real
runner, and ``kill -9`` of ``rig run`` mid-session.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from fault_helpers import DiskFull, count_rows, wait_until

from rig.core.config import RigConfig, load_rig_config
from rig.core.devices import LeverBoard
from rig.core.store import SessionReader, SessionWriter
from rig.core.store.writer import StoreError
from rig.runner.lever import LeverRunner
from tasks.params import make_params, parse_overrides
from tasks.shaping import load_subject

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parents[1]
RIG = REPO / ".venv" / "bin" / "rig"
#: fast trials whose hold_ms grows 50 ms after every reward, so shaping state moves each trial
FAST = [
    "iti_s=0.3",
    "quiet_s=0.1",
    "consume_s=0.2",
    "hold_ms=0",
    "shaping.mode=adaptive",
    "shaping.window_trials=1",
    "shaping.step_ms=50",
    "shaping.cap_ms=5000",
]


def _rig_yaml(tmp_path: Path) -> Path:
    cfg = yaml.safe_load((REPO / "hardware_configs" / "sim.yaml").read_text())
    cfg["data_dir"] = str(tmp_path / "data")
    cfg["lever_board"]["mouse"]["skill"] = 0.95
    cfg["lever_board"]["noise_counts"] = 0.0
    path = tmp_path / "rig.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _params() -> Any:
    return make_params("self_initiated", parse_overrides(FAST))


@pytest.fixture
def safe_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = LeverBoard.safe_state

    def spy(self: LeverBoard) -> bool:
        ok = real(self)
        calls.append("ok" if ok else "failed")
        return ok

    monkeypatch.setattr(LeverBoard, "safe_state", spy)
    return calls


def test_disk_full_stops_the_session_safely_and_keeps_what_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, safe_calls: list[str]
) -> None:
    full = DiskFull(budget_bytes=0)
    monkeypatch.setattr(SessionWriter, "_open", full.wrap_open(SessionWriter._open))
    rig: RigConfig = load_rig_config(_rig_yaml(tmp_path))
    runner = LeverRunner(rig, "m1", "self_initiated", _params(), speed=None, duration_s=3600)
    runner.start()
    try:
        wait_until(lambda: len(runner.records) >= 2, 30.0, "two trials before the disk fills")
        full.armed.set()  # from now on every write to the session's files fails: ENOSPC
        assert runner.wait(30.0), "the runner did not stop after the disk filled"
    finally:
        runner.stop("test teardown")
    s = runner.summary()
    print(f"\ndisk full after {s['trials']} trials: {s['status']}: {s['stop_reason']}")
    assert full.hits >= 1
    assert s["status"] == "aborted"
    assert isinstance(runner.error, StoreError)
    assert "disk full" in s["stop_reason"] and "everything written before" in s["stop_reason"]
    assert safe_calls and safe_calls[-1] == "ok"  # the board confirmed its safe state
    assert runner.conn is not None and not runner.conn.board.connected
    # everything written before the failure reads back, no torn record in the middle
    folder = runner.session_dir
    assert folder is not None
    r = SessionReader(folder)
    assert r.status == "aborted" and "disk full" in r.meta.stop_reason
    rows = r.trials()
    assert len(rows) >= 2 and [row["trial"] for row in rows] == [str(i) for i in range(len(rows))]
    assert not r.torn, r.torn
    ev = r.events()
    assert "session_start" in {e.name for e in ev} and len(ev) > 10
    assert len(r.lever()) > 0


class Killed:
    """A ``rig run`` session killed with SIGKILL after three complete trials."""

    def __init__(self, tmp: Path, folder: Path, t_kill_ns: int, speed: float) -> None:
        self.tmp, self.folder, self.t_kill_ns, self.speed = tmp, folder, t_kill_ns, speed


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> Killed:
    tmp = tmp_path_factory.mktemp("kill9")
    cfg = _rig_yaml(tmp)
    speed = 4.0
    cmd = [str(RIG), "run", "--config", str(cfg), "--subject", "m1", "--task", "self_initiated"]
    cmd += ["--speed", str(speed), "--headless"]
    for p in FAST:
        cmd += ["--param", p]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    data = tmp / "data" / "m1"
    try:
        wait_until(lambda: any(data.glob("*/trials.tsv")), 60.0, "rig run to write a trial")
        (trials_tsv,) = data.glob("*/trials.tsv")
        wait_until(lambda: count_rows(trials_tsv) >= 3, 60.0, "three complete trials")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGKILL)
        t_kill_ns = time.monotonic_ns()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    return Killed(tmp, trials_tsv.parent, t_kill_ns, speed)


def test_kill_9_folder_opens_and_at_most_a_second_is_lost(killed: Killed) -> None:
    r = SessionReader(killed.folder)
    assert r.status == "interrupted"
    rows = r.trials()
    assert len(rows) >= 3 and all(row["outcome"] for row in rows)
    last_raw_ns = max(t for t, _ in r.raw(r.raw_devices()[0]))
    lost_host_s = (killed.t_kill_ns - last_raw_ns) / 1e9
    lever = r.lever()
    events = r.events()
    print(
        f"\nkill -9 after {len(rows)} trials: last raw chunk {lost_host_s * 1000:.0f} ms before "
        f"the kill (= {lost_host_s * killed.speed:.2f} s of board time at {killed.speed}x); "
        f"{len(lever)} lever samples, {len(events)} events, torn tails {r.torn}"
    )
    # the host receive clock (CLOCK_MONOTONIC, shared across processes) bounds what is lost:
    # everything the process had received up to its last chunk is on disk
    assert 0 <= lost_host_s * killed.speed <= 1.0
    assert "session_start" in {e.name for e in events}
    assert events[-1].t_host_ns <= killed.t_kill_ns
    # lever samples stay continuous up to the end (nothing dropped on the way to disk)
    t = lever["t_device_us"]
    assert len(t) > 1000 and (t[1:] > t[:-1]).all()


def test_kill_9_folder_exports_to_nwb(killed: Killed) -> None:
    nwb = killed.tmp / "s.nwb"
    out = subprocess.run(
        [str(RIG), "export", str(killed.folder), "--nwb", str(nwb)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert nwb.stat().st_size > 0


def test_kill_9_folder_replays(killed: Killed) -> None:
    out = subprocess.run(
        [str(RIG), "replay", str(killed.folder)], capture_output=True, text=True, timeout=120
    )
    print(out.stdout[-800:])
    assert out.returncode == 0, out.stderr


def _expected_hold_ms(folder: Path) -> float:
    """The hold_ms shaping had reached after the last complete trial of ``folder``."""
    r = SessionReader(folder)
    last = int(r.trials()[-1]["trial"])
    changes = [
        e.data["new"] for e in r.events()
        if e.name == "param_change" and e.data.get("param") == "hold_ms"
        and e.trial is not None and e.trial <= last
    ]  # fmt: skip
    assert changes, "the fast shaping params must have moved hold_ms"
    return float(changes[-1])


def test_kill_9_next_session_resumes_shaping_from_the_last_complete_trial(
    killed: Killed,
) -> None:
    expected = _expected_hold_ms(killed.folder)
    rig = load_rig_config(killed.tmp / "rig.yaml")
    got = load_subject(rig.data_dir, "m1").shaping.get("self_initiated", {}).get("hold_ms")
    print(f"\nnext session would start at hold_ms={got}; the last complete trial says {expected}")
    assert got == expected

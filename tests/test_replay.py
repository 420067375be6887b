"""Replay: every golden session (recorded from the simulated rig by scripts/make_golden.py)
replays through the real driver, decoder and task code to identical events and trials; a changed
task rule or a damaged recording is caught."""

from __future__ import annotations

import tarfile
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rig.core.store import SessionReader
from rig.replay import replay_session

GOLDEN = Path(__file__).parent / "data" / "golden"
NAMES = ["cued", "self_initiated", "mixed_imaging", "rotarod", "interrupted"]


def golden(name: str, dest: Path) -> Path:
    """Unpack ``tests/data/golden/<name>.tar.xz`` into ``dest``; returns the session folder."""
    with tarfile.open(GOLDEN / f"{name}.tar.xz") as tar:
        tar.extractall(dest, filter="data")
    return dest / name


@pytest.mark.parametrize("name", NAMES)
def test_golden_replays_identically(name: str, tmp_path: Path) -> None:
    src = golden(name, tmp_path / "rec")
    rep = replay_session(src, tmp_path / "out")
    assert rep.differences == []
    c = rep.comparison
    assert c.n_trials >= 3 and c.n_board_events > 50 and c.n_host_events >= 3
    new = SessionReader(rep.run.regenerated)
    assert len(new.trials()) >= c.n_trials
    assert new.raw_devices() == SessionReader(src).raw_devices()
    if name == "interrupted":
        assert SessionReader(src).status == "interrupted"


def test_golden_sessions_are_small() -> None:
    sizes = {p.name: p.stat().st_size for p in GOLDEN.glob("*.tar.xz")}
    assert set(sizes) == {f"{n}.tar.xz" for n in NAMES}
    assert max(sizes.values()) < 300_000, sizes


def test_changed_shaping_rule_fails_replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tasks.shaping as shaping

    src = golden("self_initiated", tmp_path / "rec")
    real = shaping.HoldShaper.update

    def bigger_steps(self: shaping.HoldShaper, success: bool) -> float | None:
        new = real(self, success)
        if new is not None:  # the rule under test: +50 ms; the "regression": +100 ms
            self.hold_ms = new = new + 50.0
        return new

    monkeypatch.setattr(shaping.HoldShaper, "update", bigger_steps)
    rep = replay_session(src, tmp_path / "out")
    assert not rep.identical
    text = "\n".join(rep.differences)
    assert "host event" in text and "param_change" in text
    assert "hold_ms" in text


def test_changed_outcome_rule_fails_replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tasks.lever_tasks import LeverTask

    src = golden("cued", tmp_path / "rec")
    real = LeverTask.record

    def strict(self: LeverTask, plan, trail):  # type: ignore[no-untyped-def]
        rec = real(self, plan, trail)
        if rec.outcome == "reward" and rec.rt_ms is not None and rec.rt_ms > 300:
            return rec.model_copy(update={"outcome": "too_early"})  # a changed rule
        return rec

    monkeypatch.setattr(LeverTask, "record", strict)
    rep = replay_session(src, tmp_path / "out")
    assert any("outcome: 'reward' -> 'too_early'" in d for d in rep.differences)


def test_changed_rotarod_rule_fails_replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import rig.runner.rotarod as rr

    src = golden("rotarod", tmp_path / "rec")
    real = rr.build_lane_trial

    def shifted(*a, **kw):  # type: ignore[no-untyped-def]
        rec = real(*a, **kw)
        rec.latency_s += 0.5  # e.g. latency measured from a different ramp start
        return rec

    monkeypatch.setattr(rr, "build_lane_trial", shifted)
    rep = replay_session(src, tmp_path / "out")
    assert any("latency_s" in d for d in rep.differences)


def damage_chunk_with(src: Path, event: str) -> None:
    """Overwrite the received chunk that carried the first ``event`` with zeros (COBS frame
    delimiters): every packet in it is lost, as on a noisy line."""
    from rig.core.store.formats import BIN_HEADER, RAW_CHUNK

    reader = SessionReader(src)
    t_hit = next(e.t_host_ns for e in reader.events() if e.name == event)
    raw = src / "raw" / "lever_board.bin"
    data = bytearray(raw.read_bytes())
    pos = BIN_HEADER.size
    while pos < len(data):
        t, n = RAW_CHUNK.unpack_from(data, pos)
        if t == t_hit:
            start = pos + RAW_CHUNK.size
            data[start : start + n] = bytes(n)
            break
        pos += RAW_CHUNK.size + n
    else:
        raise AssertionError(f"no chunk at {t_hit}")
    raw.write_bytes(bytes(data))


def test_damaged_recording_is_caught(tmp_path: Path) -> None:
    src = golden("cued", tmp_path / "rec")
    damage_chunk_with(src, "trial_end")
    rep = replay_session(src, tmp_path / "out")
    assert not rep.identical
    assert any(d.startswith("board event") for d in rep.differences)


def test_reprocess_imaging_matches(tmp_path: Path) -> None:
    src = golden("mixed_imaging", tmp_path / "rec")
    rep = replay_session(src, tmp_path / "out", reprocess_imaging=True, backend="numpy")
    assert rep.differences == []
    im = rep.imaging
    assert im is not None
    assert im.n_frames > 100 and im.n_cells == 5  # type: ignore[attr-defined]
    assert im.max_abs_diff == 0.0  # type: ignore[attr-defined]


def test_paced_replay_takes_recorded_time(tmp_path: Path) -> None:
    src = golden("interrupted", tmp_path / "rec")
    t0 = time.perf_counter()
    rep = replay_session(src, tmp_path / "out", speed=100.0)
    wall = time.perf_counter() - t0
    first_ns = next(SessionReader(src).raw("lever_board"))[0]
    last_ns = [t for t, _ in SessionReader(src).raw("lever_board")][-1]
    assert rep.identical
    assert wall >= (last_ns - first_ns) / 1e9 / 100.0 * 0.95


def test_cli_replay(tmp_path: Path) -> None:
    from rig.cli import app

    src = golden("cued", tmp_path / "rec")
    r = CliRunner().invoke(app, ["replay", str(src), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert "identical" in r.output and "x real time" in r.output
    assert (tmp_path / "o" / "cued" / "trials.tsv").exists()
    r = CliRunner().invoke(app, ["replay", str(src), "--speed", "fast"])
    assert r.exit_code == 2 and "--speed 'fast'" in r.output
    r = CliRunner().invoke(app, ["replay", str(tmp_path)])
    assert r.exit_code == 2 and "no session.json" in r.output
    # a damaged recording: differences listed, exit status 1
    damage_chunk_with(src, "valve_on")
    r = CliRunner().invoke(app, ["replay", str(src)])
    assert r.exit_code == 1 and "difference(s)" in r.output


def test_bench_figures(tmp_path: Path) -> None:
    from rig.replay.bench import run_replay_bench

    src = golden("self_initiated", tmp_path / "rec")
    res = run_replay_bench(src, tmp_path / "b", repeats=2)
    assert res["identical"] is True
    assert res["session_s"] > 60 and len(res["wall_s"]) == 2
    assert res["speedup_best"] == pytest.approx(res["session_s"] / res["wall_s_best"], rel=0.01)
    assert res["meets_target"] == (res["speedup_best"] >= 100)


def test_fresh_recording_replays(tmp_path: Path) -> None:
    """A session recorded now by the live runner replays identically: the runner and the replay
    share TrialBook, this catches drift in how each drives it."""
    from rig.core.config import load_rig_config
    from rig.runner.lever import LeverRunner
    from tasks.params import make_params

    rig = load_rig_config(Path(__file__).parents[1] / "hardware_configs" / "sim.yaml")
    # behavior only (live imaging replays in test_runner_imaging.py)
    rig = rig.model_copy(update={"data_dir": tmp_path / "data", "imaging": None})
    params = make_params(
        "mixed",
        {"max_rewards": 4, "block_trials": 2,
         "self_initiated": {"iti_s": 0.5, "quiet_s": 0.3, "consume_s": 0.3},
         "cue_triggered": {"iti_min_s": 0.5, "iti_max_s": 1.0, "quiet_precue_s": 0.3}},
    )  # fmt: skip
    runner = LeverRunner(rig, "fresh", "mixed", params, speed=None)
    runner.run()
    assert runner.session_dir is not None
    rep = replay_session(runner.session_dir, tmp_path / "out")
    assert rep.differences == []
    assert rep.comparison.n_lever_samples > 1000 and rep.comparison.n_trials >= 4


def test_cli_bench_replay_json(tmp_path: Path) -> None:
    import json

    from rig.cli import app

    src = golden("cued", tmp_path / "rec")
    out = tmp_path / "bench.json"
    r = CliRunner().invoke(
        app, ["bench", "replay", "--session", str(src), "--repeats", "1", "--json", str(out)]
    )
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert res["identical"] is True and res["n_trials"] == len(SessionReader(src).trials())
    assert "speedup_best" in r.output and res["cpu_count"] >= 1

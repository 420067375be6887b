"""Imaging inside a live lever session, the sim frame-clock option, subject_at_start and the
board writes that arrive before the session folder opens (``rig.runner``)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from acquisition.traces.store import FolderSink, read_results
from rig.core.config import ImagingConfig, RigConfig, load_rig_config
from rig.core.signals import RigSignals
from rig.core.store import SessionReader
from rig.runner.imaging import ROI_LABELS, LiveImaging
from rig.runner.lever import LeverRunner, imaging_figures
from tasks.params import make_params

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[1]
SMALL_MOVIE = {
    "source": {"kind": "synthetic", "size_px": 64, "n_cells": 4, "frame_rate_hz": 30.0,
               "max_shift_px": 2.0, "seed": 5},
    "backend": "numpy",
    "baseline_window_s": 5.0,
    "rois": {"kind": "auto", "n_frames_for_detection": 30},
}  # fmt: skip
FAST_MIXED = {
    "max_rewards": 4, "block_trials": 2, "max_duration_min": 2.0,
    "self_initiated": {"iti_s": 0.5, "quiet_s": 0.3, "consume_s": 0.3},
    "cue_triggered": {"iti_min_s": 0.5, "iti_max_s": 1.0, "quiet_precue_s": 0.3},
}  # fmt: skip


def _rig(tmp_path: Path, imaging: dict[str, Any] | None = SMALL_MOVIE) -> RigConfig:
    rig = load_rig_config(REPO / "hardware_configs" / "sim.yaml")
    lb = rig.lever_board
    assert lb is not None
    mouse = lb.mouse.model_copy(update={"skill": 0.9})
    return rig.model_copy(
        update={
            "data_dir": tmp_path / "data",
            "lever_board": lb.model_copy(update={"mouse": mouse}),
            "imaging": ImagingConfig.model_validate(imaging) if imaging else None,
        }
    )


class Counter:
    """Counts RigSignals emissions (they come from the pipeline thread)."""

    def __init__(self, signals: RigSignals) -> None:
        self.lock = threading.Lock()
        self.traces: list[int] = []
        self.frames = 0
        self.stats: list[dict[str, Any]] = []
        signals.traces.connect(self._traces)
        signals.frame.connect(self._frame)
        signals.imaging.connect(self._stats)

    def _traces(self, i: int, dff: np.ndarray) -> None:
        with self.lock:
            self.traces.append(i)

    def _frame(self, i: int, image: np.ndarray) -> None:
        with self.lock:
            self.frames += 1

    def _stats(self, stats: dict[str, Any]) -> None:
        with self.lock:
            self.stats.append(stats)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], Counter]:
    """One short simulated mixed session with live imaging (virtual clock)."""
    tmp = tmp_path_factory.mktemp("imaging")
    # undriven: `rig replay --reprocess-imaging` regenerates the movie from its seed alone (a
    # driven session also needs its recorded drives; tests/test_live_drive.py covers those)
    runner = LeverRunner(
        _rig(tmp), "m1", "mixed", make_params("mixed", FAST_MIXED), speed=None, imaging_drive=False
    )
    counter = Counter(runner.signals)
    summary = runner.run()
    assert runner.session_dir is not None and summary["status"] == "complete"
    return runner.session_dir, summary, counter


def test_live_imaging_one_frame_per_frame_clock_edge(
    session: tuple[Path, dict[str, Any], Counter],
) -> None:
    folder, summary, counter = session
    r = SessionReader(folder)
    edges = [e for e in r.events() if e.name == "frame"]
    res = read_results(folder / "imaging")
    assert len(edges) > 100  # a few board seconds at 30 Hz
    # every edge the board reported got its frame, in order, nothing dropped
    assert len(res["frames"]) == len(edges) == len(res["frame_times_us"])
    np.testing.assert_array_equal(res["frames"]["frame_index"], [e.frame for e in edges])
    np.testing.assert_array_equal(res["frame_times_us"], [e.t_device_us for e in edges])
    assert np.all(np.diff(res["frame_times_us"]) == pytest.approx(1e6 / 30, abs=1))
    assert res["summary"]["frame_clock_mismatch"] is None
    assert summary["imaging"]["dropped"] == 0
    assert summary["imaging"]["frames"] == len(edges)
    assert summary["imaging"]["latency_ms_p99"] is not None
    assert not [e for e in r.events() if e.name == "imaging_frame_mismatch"]
    # ROIs saved as the label image the export and re-processing read
    labels = np.load(folder / ROI_LABELS)
    assert labels.shape == (64, 64) and labels.max() == res["header"]["n_cells"] >= 1
    assert res["dff"].shape == (len(edges), labels.max())
    assert json.loads((folder / "session.json").read_text())["extra"]["frame_clock_hz"] == 30.0
    # the GUI's signals: ΔF/F of every frame, display frames, statistics
    with counter.lock:
        assert counter.traces == [e.frame for e in edges]
        assert counter.frames >= 1 and counter.stats


def test_live_imaging_session_exports_and_reprocesses(
    session: tuple[Path, dict[str, Any], Counter], tmp_path: Path
) -> None:
    from pynwb import NWBHDF5IO

    from rig.cli import app

    folder, _, _ = session
    out = tmp_path / "s.nwb"
    r = CliRunner().invoke(app, ["export", str(folder), "--nwb", str(out)])
    assert r.exit_code == 0, r.output
    res = read_results(folder / "imaging")
    with NWBHDF5IO(str(out), "r") as io:
        dff = io.read().processing["ophys"]["DfOverF"]["dff"].data[:]
    np.testing.assert_array_equal(dff, res["dff"])
    r = CliRunner().invoke(
        app, ["replay", str(folder), "--reprocess-imaging", "--out", str(tmp_path / "re")]
    )
    assert r.exit_code == 0, r.output
    # re-processed frame by frame like the live session: the same ΔF/F to the bit
    again = read_results(tmp_path / "re" / folder.name / "imaging")
    np.testing.assert_array_equal(again["dff"], res["dff"])


def test_subject_at_start_and_early_writes_are_recorded(tmp_path: Path) -> None:
    """The second session records the subject as the first left it, and lever samples from
    before the folder opened (the board streams from the moment it connects) are kept."""
    rig = _rig(tmp_path, imaging=None)
    params = make_params("mixed", FAST_MIXED)
    first = LeverRunner(rig, "m2", "mixed", params, speed=None)
    first.run()
    second = LeverRunner(rig, "m2", "mixed", params, speed=None)
    second.run()
    assert second.session_dir is not None and first.session_dir is not None
    meta = SessionReader(second.session_dir).meta
    saved = json.loads((rig.data_dir / "m2" / "subject.json").read_text())
    at_start = meta.extra["subject_at_start"]
    assert at_start["sessions"] == 1 and at_start["last_session"] == first.session_dir.name
    assert at_start["shaping"] == first.task.shaping_state() if first.task else False
    assert saved["sessions"] == 2
    first_meta = SessionReader(first.session_dir).meta
    assert first_meta.extra["subject_at_start"]["sessions"] == 0
    # the lever stream starts with the board's first samples, not when the folder opened
    t_s, _ = SessionReader(second.session_dir).lever_mm()
    assert t_s[0] < 0.05


def test_frame_clock_option_without_imaging(tmp_path: Path) -> None:
    rig = _rig(tmp_path, imaging=None)
    params = make_params("mixed", FAST_MIXED)
    runner = LeverRunner(rig, "m3", "mixed", params, speed=None, frame_clock_hz=20.0)
    runner.run()
    assert runner.session_dir is not None
    t = [e.t_device_us for e in SessionReader(runner.session_dir).events() if e.name == "frame"]
    assert len(t) > 20 and set(np.diff(t).tolist()) == {50_000}
    assert not (runner.session_dir / "imaging" / "rois.json").exists()


def test_live_imaging_reports_missed_edges_and_edges_past_the_movie(tmp_path: Path) -> None:
    cfg = ImagingConfig.model_validate(SMALL_MOVIE)
    im = LiveImaging(cfg, RigSignals(), max_session_s=1.0)
    im.n_movie_frames = 6  # a movie shorter than the clock runs
    sink = FolderSink(tmp_path)
    im.start(sink)
    for k in (0, 1, 3, 4, 5, 6, 7):  # edge 2 missed by the host; 6 and 7 past the movie
        im.on_frame_edge(k, 1000 * k)
    summary = im.stop()
    res = read_results(tmp_path / "imaging")
    np.testing.assert_array_equal(res["frames"]["frame_index"], [0, 1, 3, 4, 5])
    np.testing.assert_array_equal(res["frame_times_us"], [0, 1000, 3000, 4000, 5000])
    fig = imaging_figures(summary)
    assert fig == {**fig, "frames": 5, "frame_clock_edges": 7, "dropped": 2}
    assert summary["frame_clock_mismatch"] is not None


def test_imaging_failure_is_recorded_and_the_session_still_closes(tmp_path: Path) -> None:
    """A ROI file that does not fit the frames fails the pipeline at set-up: the behavior
    session goes on, closes normally and records an ``imaging_error`` event."""
    bad = tmp_path / "labels.npy"
    np.save(bad, np.ones((10, 10), np.int32))
    movie = {**SMALL_MOVIE, "rois": {"kind": "labels", "path": str(bad)}}
    rig = _rig(tmp_path, imaging=movie)
    signals = RigSignals()
    logged: list[str] = []
    signals.log.connect(lambda level, msg: logged.append(msg))
    runner = LeverRunner(
        rig, "m4", "mixed", make_params("mixed", FAST_MIXED), speed=None, signals=signals
    )
    summary = runner.run()
    assert summary["status"] == "complete" and summary["trials"] >= 4
    assert runner.session_dir is not None
    errors = [e for e in SessionReader(runner.session_dir).events() if e.name == "imaging_error"]
    assert len(errors) == 1 and str(bad) in errors[0].data["error"]
    assert any("imaging pipeline failed" in m for m in logged)


def test_metrics_of_a_session_stopped_before_any_trial_finished(tmp_path: Path) -> None:
    """``rig run --duration`` shorter than a trial: the metrics table still comes out."""
    from tasks.metrics import metrics_rows, session_metrics

    rig = _rig(tmp_path, imaging=None)
    runner = LeverRunner(
        rig,
        "m5",
        "cue_triggered",
        # a 10-minute ITI: no trial can finish, however fast the virtual clock runs on a loaded CI
        make_params("cue_triggered", {"iti_min_s": 600, "iti_max_s": 600}),
        speed=None,
        duration_s=0.2,
    )
    summary = runner.run()
    assert summary["trials"] == 0 and runner.session_dir is not None
    assert all(r["outcome"] == "aborted" for r in runner.records)
    header, rows = metrics_rows(session_metrics(runner.session_dir))
    assert header[0] == "metric" and rows


def test_unclocked_source_plays_at_its_own_rate_and_edges_map_board_time(tmp_path: Path) -> None:
    """A board without a simulated frame clock (simavr, serial): the source delivers frames at
    its own pace (30 Hz) and the edges that do arrive give them board times."""
    import time

    cfg = ImagingConfig.model_validate(SMALL_MOVIE)
    im = LiveImaging(cfg, RigSignals(), max_session_s=1.0, clocked=False)
    assert im.frame_clock_hz is None
    seventy = threading.Event()
    im.signals.traces.connect(lambda i, dff: seventy.set() if i >= 69 else None)
    t0 = time.monotonic()
    im.start(FolderSink(tmp_path))
    for k in range(3):
        im.on_frame_edge(k, 5_000 + 33_333 * k)
    assert seventy.wait(30)
    wall_s = time.monotonic() - t0
    summary = im.stop()
    res = read_results(tmp_path / "imaging")
    n = len(res["frames"])
    assert n >= 70 and summary["frames_processed"] == n
    assert wall_s >= 69 / 30 * 0.9  # paced at the movie's rate, not as fast as possible
    np.testing.assert_array_equal(res["frame_times_us"][:4], [5_000, 38_333, 71_666, -1])
    assert summary["frame_clock_mismatch"] is not None  # 3 edges for n frames

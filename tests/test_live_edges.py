"""LiveImaging's frame-clock edges: a board far ahead of frame delivery costs no memory, and
every frame still gets its edge's board time (``rig.runner.imaging_clock``)."""

from __future__ import annotations

import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from acquisition.traces.store import FolderSink, read_results
from rig.core.config import ImagingConfig
from rig.core.signals import RigSignals
from rig.runner.imaging import LiveImaging, imaging_figures
from rig.runner.imaging_clock import FrameEdges

pytestmark = pytest.mark.timeout(180)

MOVIE = {
    "source": {"kind": "synthetic", "size_px": 48, "n_cells": 2, "frame_rate_hz": 30.0,
               "max_shift_px": 1.0, "seed": 3},
    "backend": "numpy",
    "baseline_window_s": 2.0,
    "rois": {"kind": "auto", "n_frames_for_detection": 20},
    "queue_frames": 8,
}  # fmt: skip
PERIOD_US = 33_333


def test_edges_far_ahead_of_frames_are_held_as_a_count_and_all_mapped(tmp_path: Path) -> None:
    """The virtual clock delivers 1500 edges (50 s of imaging) while the pipeline is held at its
    first result: the edges must not be stored per edge while they wait (the old queue held a
    tuple per edge, ~16k on the 2-hour soak), and after release every frame gets its time."""
    n_edges = 1500
    im = LiveImaging(ImagingConfig.model_validate(MOVIE), RigSignals(), max_session_s=1.0)
    im.n_movie_frames = n_edges  # exactly one frame per edge
    gate, first_result = threading.Event(), threading.Event()

    def hold(i: int, dff: np.ndarray) -> None:  # pipeline thread: block at the first result
        first_result.set()
        assert gate.wait(120)

    im.signals.traces.connect(hold)
    im.start(FolderSink(tmp_path))
    warm = 80  # past the 60 warm-up frames, so the pipeline reaches its first result
    for k in range(warm):
        im.on_frame_edge(k, 1_000 + PERIOD_US * k)
    assert first_result.wait(60), "the pipeline never produced a result"
    # the pipeline thread is held; the feeder fills the bounded queue and blocks on it
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for k in range(warm, n_edges):
            im.on_frame_edge(k, 1_000 + PERIOD_US * k)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    backlog = im.edge_backlog
    # what rig/runner holds for the waiting edges (the pipeline's own frame-time map, one int
    # per frame for frame_times.bin, is its documented design and lives in acquisition/)
    runner_only = [tracemalloc.Filter(True, "*/rig/runner/*")]
    grown = sum(
        s.size_diff
        for s in after.filter_traces(runner_only).compare_to(
            before.filter_traces(runner_only), "filename"
        )
    )
    gate.set()
    summary = im.stop()
    assert backlog >= n_edges - warm - 8 - 16 - 2  # queue bound + one rendered chunk in flight
    assert grown < 4_000, f"{grown} bytes held in rig/runner for {backlog} waiting edges"
    assert summary["frame_clock_backlog_max"] >= backlog
    res = read_results(tmp_path / "imaging")
    np.testing.assert_array_equal(res["frames"]["frame_index"], np.arange(n_edges))
    np.testing.assert_array_equal(res["frame_times_us"], 1_000 + PERIOD_US * np.arange(n_edges))
    np.testing.assert_array_equal(res["frames"]["t_board_us"], res["frame_times_us"])
    fig = imaging_figures(summary)
    assert fig["frames"] == fig["frame_clock_edges"] == n_edges and fig["dropped"] == 0
    assert summary["frame_clock_mismatch"] is None


def test_frame_edges_counts_missed_duplicate_and_early_edges() -> None:
    """Unit behaviour of the counter: edges before the pipeline exists are kept and flushed
    first, a missed index gets -1 and a missed range, a repeated index is counted only."""

    class Clock:
        def __init__(self) -> None:
            self.times: list[int] = []

        def push_frame_clock(self, t: list[int]) -> None:
            self.times.extend(t)

    e = FrameEdges()
    e.on_edge(0, 10)
    clock = Clock()
    e.attach(clock)
    e.on_edge(1, 20)
    e.on_edge(4, 50)
    e.on_edge(4, 50)  # a duplicate
    assert clock.times == [10, 20, -1, -1, 50]
    assert e.n_received == 4 and e.qsize() == 5
    assert e.take(timeout_s=1) == (0, 5, [(2, 4)])
    for k in range(3):
        e.frame_served(k)
    assert e.qsize() == 2 and e.take(timeout_s=1) == (3, 5, [(2, 4)])
    e.frame_served(4)
    assert e.take(timeout_s=0.01) is None  # nothing new: times out
    e.on_edge(5, 60)
    e.finish()
    assert e.take(timeout_s=1) == (5, 6, [])
    e.frame_served(5)
    assert e.take() is None and e.max_backlog == 5

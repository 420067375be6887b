"""The streaming pipeline: back-pressure without drops, bounded memory, stats, files, clock."""

from __future__ import annotations

import threading
import time
import tracemalloc
from datetime import UTC, datetime

import numpy as np
import pytest

from acquisition.pipeline import ImagingPipeline, PipelineError
from acquisition.registration import Registrar, RegistrationOptions
from acquisition.rois import RoiSet, build_weights, neuropil_pixels
from acquisition.sources.synthetic import SyntheticSource, make_movie
from acquisition.traces import FullPathProcessor, TraceExtractor
from acquisition.traces.store import FolderSink, ResultsWriter, read_results
from rig.core.store import SessionMeta, SessionWriter


def wait_until(cond, timeout_s: float = 10.0) -> None:
    """Wait for ``cond()`` to hold (polls on an Event, never a bare sleep)."""
    ev = threading.Event()
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        ev.wait(0.005)


@pytest.fixture(scope="module")
def movie():
    return make_movie(200, size_px=80, n_cells=8, max_shift_px=3.0, seed=2)


def _processor(m) -> FullPathProcessor:
    reg = Registrar(np, (80, 80), RegistrationOptions(max_shift_px=8, n_reference_frames=60))
    reg.fit_reference(m.frames[:60])
    rois = RoiSet.from_labels(m.masks)
    w = build_weights(rois, neuropil_pixels(rois, min_pixels=100))
    return FullPathProcessor(reg, TraceExtractor(np, w, m.frame_rate_hz))


class GatedProcessor:
    """Wraps a processor; every batch waits for ``gate`` (a stalled GPU, a slow disk)."""

    def __init__(self, inner: FullPathProcessor) -> None:
        self.inner = inner
        self.xp = inner.xp
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def process(self, frames, keep_registered=False):
        self.waiting.set()
        assert self.gate.wait(30)
        return self.inner.process(frames, keep_registered)


def test_back_pressure_blocks_the_producer_and_drops_nothing(movie, tmp_path):
    proc = GatedProcessor(_processor(movie))
    writer = ResultsWriter(FolderSink(tmp_path), prefix="")
    pipe = ImagingPipeline(proc, queue_frames=4, max_batch=2, writer=writer).start()  # type: ignore[arg-type]
    n = 60

    def produce() -> None:
        for i in range(n):
            pipe.push(i, i / 30, movie.frames[i % len(movie.frames)])

    producer = threading.Thread(target=produce)
    producer.start()
    wait_until(lambda: proc.waiting.is_set() and pipe._q.full())
    # the producer is stuck in push(): queue full, worker stalled on its first batch
    wait_until(lambda: pipe.n_pushed >= 4)
    assert producer.is_alive()
    assert pipe.n_pushed <= 4 + 2  # queue + the batch in the worker's hands
    proc.gate.set()
    producer.join(30)
    assert not producer.is_alive()
    stats = pipe.close()
    assert stats["frames_processed"] == n and stats["frames_pushed"] == n
    assert stats["queue_depth_max"] <= 4
    res = read_results(tmp_path)
    np.testing.assert_array_equal(res["frames"]["frame_index"], np.arange(n))
    assert res["dff"].shape == (n, 8)
    assert np.all(np.isfinite(res["dff"]))


def test_memory_stays_bounded_over_a_long_run(movie):
    proc = _processor(movie)
    pipe = ImagingPipeline(proc, queue_frames=8, max_batch=8, history_frames=100).start()
    n = 1500
    tracemalloc.start()
    base, _ = tracemalloc.get_traced_memory()
    for i in range(n):  # frames made on the fly: nothing upstream holds them
        pipe.push(i, i / 30, movie.frames[i % 200].copy())
    stats = pipe.close()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    frame_bytes = movie.frames[0].nbytes
    assert stats["frames_processed"] == n
    # everything that passed through: 1500 frames x 12.5 KB = 19 MB; held at any time: a few batches
    assert peak - base < 250 * frame_bytes, (peak - base) / frame_bytes
    assert pipe.recent_dff().shape == (100, 8)
    assert stats["queue_depth_max"] <= 8


def test_stats_latest_frame_and_callbacks(movie):
    proc = _processor(movie)
    got = []
    pipe = ImagingPipeline(proc, queue_frames=16, display_interval_s=0.0)
    pipe.on_result(lambda r: got.append(r.frame_index.copy()))
    with pipe:
        n = pipe.feed(SyntheticSource(movie))
        wait_until(lambda: pipe.n_processed == n)
        st = pipe.stats()
        idx, img = pipe.latest_frame()  # type: ignore[misc]
    assert n == 200
    assert st["frames_per_s"] > 0
    assert 0 < st["latency_ms_p50"] <= st["latency_ms_p99"]
    assert st["queue_depth"] == 0 and st["gpu_memory"] is None
    assert img.shape == (80, 80) and img.dtype == np.float32 and 0 <= idx < 200
    np.testing.assert_array_equal(np.concatenate(got), np.arange(200))


def test_frame_clock_mapping_and_mismatch_report(movie, tmp_path):
    proc = _processor(movie)
    edges = 1_000_000 + np.arange(48) * 33_333
    writer = ResultsWriter(FolderSink(tmp_path), prefix="")
    pipe = ImagingPipeline(proc, writer=writer, frame_clock_us=edges[:40]).start()
    for i in range(50):
        pipe.push(i, i / 30, movie.frames[i])
    wait_until(lambda: pipe.n_processed == 50)
    pipe.push_frame_clock(edges[40:])  # late edges still map their frames
    summary = pipe.close()
    assert "48 edges but 50 frames" in summary["frame_clock_mismatch"]
    res = read_results(tmp_path)
    np.testing.assert_array_equal(res["frame_times_us"][:48], edges)
    assert list(res["frame_times_us"][48:]) == [-1, -1]
    assert res["summary"]["frame_clock_edges"] == 48
    # records carry the board time when it was known at write time
    np.testing.assert_array_equal(res["frames"]["t_board_us"][:40], edges[:40])


def test_index_gaps_are_counted_and_push_after_close_fails(movie):
    pipe = ImagingPipeline(_processor(movie)).start()
    for i in [0, 1, 2, 5, 6]:
        pipe.push(i, i / 30, movie.frames[i])
    assert pipe.close()["frame_index_gaps"] == 1
    with pytest.raises(RuntimeError, match="closed"):
        pipe.push(7, 7 / 30, movie.frames[7])


def test_setup_from_warmup_frames_and_session_writer(movie, tmp_path):
    seen = {}

    def setup(first):
        seen["shape"] = first.shape
        return _processor(movie)

    meta = SessionMeta(
        subject_id="m1", task="imaging", rig_name="sim", rig_config={}, started_at=datetime.now(UTC)
    )
    with SessionWriter.create(tmp_path, meta) as sw:
        writer = ResultsWriter(sw, prefix="imaging/")
        pipe = ImagingPipeline(
            setup=setup,
            warmup_frames=30,
            writer=writer,
            header={"roi_names": [str(k) for k in range(8)]},
        ).start()
        pipe.feed(SyntheticSource(movie))
        pipe.close()
        folder = sw.folder
    assert seen["shape"][0] >= 30
    res = read_results(folder / "imaging")
    np.testing.assert_array_equal(res["frames"]["frame_index"], np.arange(200))
    assert res["header"]["n_cells"] == 8 and len(res["header"]["roi_names"]) == 8
    # shifts recorded match what registration estimates for the same frames
    assert np.abs(res["frames"]["dy_px"]).max() > 0.5


def test_reader_drops_a_torn_tail(movie, tmp_path):
    writer = ResultsWriter(FolderSink(tmp_path), prefix="")
    pipe = ImagingPipeline(_processor(movie), writer=writer).start()
    for i in range(10):
        pipe.push(i, i / 30, movie.frames[i])
    pipe.close()
    with open(tmp_path / "dff.f32", "ab") as f:
        f.write(b"\x00\x01\x02")  # a crash mid-record
    with open(tmp_path / "frames.bin", "ab") as f:
        f.write(b"\x00" * 7)
    res = read_results(tmp_path)
    assert len(res["frames"]) == 10 and res["dff"].shape == (10, 8)


def test_worker_failure_surfaces_to_the_producer(movie):
    def setup(first):
        raise ValueError("no reference possible")

    pipe = ImagingPipeline(setup=setup, warmup_frames=2, queue_frames=2).start()
    with pytest.raises(PipelineError, match="no reference possible"):
        for i in range(100):
            pipe.push(i, 0.0, movie.frames[0])
    with pytest.raises(PipelineError):
        pipe.close()
    with pytest.raises(ValueError, match="processor or a setup"):
        ImagingPipeline()


def test_processor_factory_from_rig_config(movie, tmp_path):
    from acquisition.traces.setup import processor_factory
    from rig.core.config import ImagingConfig

    np.save(tmp_path / "labels.npy", movie.masks)
    cfg = ImagingConfig.model_validate(
        {
            "source": {"kind": "synthetic", "size_px": 80, "n_cells": 8},
            "backend": "numpy",
            "rois": {"kind": "labels", "path": str(tmp_path / "labels.npy")},
            "neuropil_coefficient": 0.5,
        }
    )
    seen = []
    setup = processor_factory(cfg, movie.frame_rate_hz, on_rois=seen.append)
    pipe = ImagingPipeline(setup=setup, warmup_frames=60).start()
    pipe.feed(SyntheticSource(movie))
    st = pipe.close()
    assert st["frames_processed"] == 200
    assert len(seen) == 1 and len(seen[0]) == int(movie.masks.max())
    assert pipe.processor is not None
    assert pipe.processor.tr.opt.neuropil_coefficient == 0.5
    assert pipe.recent_dff().shape == (200, len(seen[0]))
    # rois.kind = auto: detection on the registered warm-up frames
    auto = ImagingConfig.model_validate(
        {"source": {"kind": "synthetic"}, "backend": "numpy", "rois": {"kind": "auto"}}
    )
    proc = processor_factory(auto, 30.0)(movie.frames)
    assert proc.tr.n >= 1

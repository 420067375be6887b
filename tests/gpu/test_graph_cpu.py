"""The host-side pieces of the CUDA-graph streaming path, checked without a GPU.

The graph itself needs CuPy and a device (``test_gpu_graph.py``); what runs on the host must
agree with the plain path everywhere: the baseline refresh rule the graph path asks on the host,
the processor's path selection on numpy, and the self-check that guards a new graph.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from acquisition.graph import GraphUnavailable, StreamingGraph, unsupported_reason
from acquisition.registration import Registrar, RegistrationOptions
from acquisition.traces import CausalBaseline, FullPathProcessor, ProcessedBatch, TraceExtractor
from acquisition.traces.processor import graph_mismatch


@pytest.mark.parametrize(("window", "update_every"), [(25, 6), (7, 1), (5, 9), (30, 30)])
def test_refresh_due_is_the_rule_update_follows(window, update_every):
    bl = CausalBaseline(np, 3, window, 10, update_every)
    x = np.random.default_rng(0).standard_normal((100, 3)).astype(np.float32)
    for t in range(100):
        before = bl.refreshes
        bl.update(x[t : t + 1])
        assert (bl.refreshes != before) == bl.refresh_due(t), t


def _processor(streaming: str = "auto") -> FullPathProcessor:
    rng = np.random.default_rng(1)
    ref = rng.uniform(100, 200, (32, 32)).astype(np.float32)
    reg = Registrar(np, (32, 32), RegistrationOptions(max_shift_px=4, line_phase="off"))
    reg.set_reference(ref)
    w = sp.random(6, 32 * 32, density=0.05, format="csr", dtype=np.float32, random_state=rng)
    return FullPathProcessor(reg, TraceExtractor(np, w, 30.0), streaming=streaming)


def test_numpy_streams_on_the_plain_path_with_the_same_results():
    frames = np.random.default_rng(2).integers(100, 200, (5, 32, 32)).astype(np.uint16)
    auto, plain = _processor("auto"), _processor("plain")
    for f in frames:
        a, b = auto.process(f), plain.process(f)
        for k in ("shifts_px", "peak", "f", "fneu", "dff"):
            np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert auto.streaming_path == "plain" and auto.last_stream_path == "plain"
    assert auto.graph_error == "the backend is numpy"
    assert unsupported_reason(auto.reg, auto.tr) == "the backend is numpy"
    with pytest.raises(GraphUnavailable, match="numpy"):
        StreamingGraph(auto.reg, auto.tr, np.uint16)


def test_unknown_streaming_mode_is_rejected():
    with pytest.raises(ValueError, match="streaming='fast'"):
        _processor("fast")


def _batch(**change: float) -> ProcessedBatch:
    arrays = {
        "shifts_px": np.array([[1.25, -3.5]], np.float32),
        "peak": np.array([0.8], np.float32),
        "f": np.full((1, 4), 300.0, np.float32),
        "fneu": np.full((1, 4), 120.0, np.float32),
        "dff": np.array([[0.0, 0.5, -0.1, 2.0]], np.float32),
    }
    for k, d in change.items():
        arrays[k] = arrays[k] + np.float32(d)
    return ProcessedBatch(**arrays)


def test_graph_self_check_accepts_float32_noise_and_names_real_differences():
    assert graph_mismatch(_batch(), _batch()) == ""
    assert graph_mismatch(_batch(f=1e-3, dff=1e-4), _batch()) == ""
    bad = graph_mismatch(_batch(shifts_px=0.01, dff=0.05), _batch())
    assert [part.split()[0] for part in bad.split("; ")] == ["shifts_px", "dff"]

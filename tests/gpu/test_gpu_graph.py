"""The CUDA-graph streaming path equals the plain CuPy path and numpy, frame by frame.

Skips cleanly without CuPy or without a CUDA device. Inputs are fresh synthetic movies (new seed
each run, printed for replay) with the true cell masks as ROIs and their neuropil annuli, so
``F - 0.7 * Fneu`` stays well above zero as in real data and ΔF/F is well conditioned. A short
baseline window and refresh interval make the ring wrap and refresh many times within the test.
"""

from __future__ import annotations

import numpy as np
import pytest

cp = pytest.importorskip("cupy")

from acquisition.xp import cupy_available  # noqa: E402

if not cupy_available():
    pytest.skip("CuPy is installed but no CUDA device answers", allow_module_level=True)

from acquisition.registration import Registrar, RegistrationOptions, fused  # noqa: E402
from acquisition.rois import RoiSet, build_weights, neuropil_pixels, weights_to_xp  # noqa: E402
from acquisition.sources.synthetic import make_movie  # noqa: E402
from acquisition.traces import FullPathProcessor, TraceExtractor, TraceOptions  # noqa: E402

pytestmark = pytest.mark.gpu

FS_HZ = 30.0
# window 30 frames, refresh every 9: the ring wraps and refreshes many times in 90 frames
TRACE_OPT = TraceOptions(baseline_window_s=1.0, baseline_update_s=0.3)
FIELDS = ("shifts_px", "peak", "f", "fneu", "dff")


@pytest.fixture
def seed():
    s = int(np.random.SeedSequence().entropy % (2**30))
    print(f"seed = {s}")
    return s


@pytest.fixture(autouse=True)
def _fused_on():
    fused.set_fused(True)
    yield
    fused.set_fused(True)


def _setup(seed: int, n_frames: int = 90, size: int = 128):
    m = make_movie(n_frames, size_px=size, n_cells=20, max_shift_px=8.0, seed=seed)
    rois = RoiSet.from_labels(m.masks)
    w = build_weights(rois, neuropil_pixels(rois))
    ref = Registrar(np, (size, size), RegistrationOptions(n_reference_frames=n_frames))
    ref.fit_reference(m.frames)
    return m, w, ref.reference


def _proc(xp, w, reference, streaming="auto", line_phase=0.0, **opt):
    shape = reference.shape
    reg = Registrar(xp, shape, RegistrationOptions(line_phase=line_phase, **opt))
    reg.set_reference(xp.asarray(reference))
    return FullPathProcessor(
        reg, TraceExtractor(xp, weights_to_xp(xp, w), FS_HZ, TRACE_OPT), streaming=streaming
    )


def _run(proc, frames, chunks):
    """Feed ``frames`` in ``chunks`` (start, stop); returns each field concatenated, and the
    path every single-frame call took."""
    outs, paths = [], []
    for s, e in chunks:
        outs.append(proc.process(frames[s] if e - s == 1 else frames[s:e]))
        if e - s == 1:
            paths.append(proc.last_stream_path)
    return {k: np.concatenate([getattr(o, k) for o in outs]) for k in FIELDS}, paths


def _singles(n):
    return [(i, i + 1) for i in range(n)]


def _assert_close_to_numpy(got, want, msg):
    np.testing.assert_allclose(got["shifts_px"], want["shifts_px"], atol=2e-3, err_msg=msg)
    np.testing.assert_allclose(got["f"], want["f"], rtol=1e-3, atol=0.05, err_msg=msg)
    np.testing.assert_allclose(got["fneu"], want["fneu"], rtol=1e-3, atol=0.05, err_msg=msg)
    np.testing.assert_allclose(got["dff"], want["dff"], rtol=1e-3, atol=2e-3, err_msg=msg)


def _assert_same_as_plain(got, want, msg):
    # the graph replays the plain path's own kernels: only launch order could differ
    for k in FIELDS:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5, err_msg=f"{msg}: {k}")


@pytest.mark.parametrize("line_phase", [0.0, 1.37, 2.0])
def test_graph_stream_equals_plain_and_numpy(seed, line_phase):
    m, w, reference = _setup(seed)
    chunks = _singles(len(m.frames))
    ref_np, _ = _run(_proc(np, w, reference, line_phase=line_phase), m.frames, chunks)
    plain, _ = _run(_proc(cp, w, reference, "plain", line_phase=line_phase), m.frames, chunks)
    gproc = _proc(cp, w, reference, "graph", line_phase=line_phase)
    graph, paths = _run(gproc, m.frames, chunks)
    assert gproc.graph_error is None, gproc.graph_error
    assert gproc.streaming_path == "graph"
    # the first frame is also the self-check (answered by the plain path once both agree)
    assert set(paths) == {"graph"}
    _assert_same_as_plain(graph, plain, f"line phase {line_phase}")
    _assert_close_to_numpy(graph, ref_np, f"line phase {line_phase}")
    # ΔF/F is non-trivial, so equality above means something
    assert np.abs(graph["dff"][10:]).max() > 0.05


def test_graph_and_batches_share_the_baseline(seed):
    """Batches (plain path) between single frames (graph) keep one baseline state: ring column,
    refresh cadence and F0 all carry over in both directions."""
    m, w, reference = _setup(seed)
    chunks = (
        _singles(12)
        + [(12, 20)]
        + [(i, i + 1) for i in range(20, 47)]
        + [(47, 50)]
        + [(i, i + 1) for i in range(50, 90)]
    )
    ref_np, _ = _run(_proc(np, w, reference), m.frames, chunks)
    gproc = _proc(cp, w, reference, "graph")
    graph, paths = _run(gproc, m.frames, chunks)
    assert gproc.streaming_path == "graph" and set(paths) == {"graph"}
    _assert_close_to_numpy(graph, ref_np, "mixed batches and single frames")


def test_graph_follows_a_new_reference_and_line_phase(seed):
    """A new template is copied into the running graph; a new line phase rebuilds (and
    re-checks) it."""
    m, w, reference = _setup(seed)
    procs = [_proc(np, w, reference), _proc(cp, w, reference, "plain")]
    procs.append(_proc(cp, w, reference, "graph"))
    results = []
    for p in procs:
        xp = p.xp
        a, _ = _run(p, m.frames, _singles(30))
        # a template shifted by a few px: same graph, new reference spectrum
        p.reg.set_reference(xp.roll(xp.asarray(reference), (3, -2), axis=(0, 1)))
        b, paths_b = _run(p, m.frames, [(i, i + 1) for i in range(30, 60)])
        graph_b = p._graph
        p.reg.line_phase_px = 0.6  # a new graph
        c, paths_c = _run(p, m.frames, [(i, i + 1) for i in range(60, 90)])
        results.append({k: np.concatenate([a[k], b[k], c[k]]) for k in FIELDS})
    assert set(paths_b) == set(paths_c) == {"graph"}
    assert graph_b is not None and procs[2]._graph is not graph_b
    # a graph still on the old template would be ~(3, 2) px off the plain path here
    _assert_same_as_plain(results[2], results[1], "after set_reference / line phase change")
    _assert_close_to_numpy(results[2], results[0], "after set_reference / line phase change")


def test_graph_keeps_registered_frame(seed):
    m, w, reference = _setup(seed, n_frames=8)
    plain = _proc(cp, w, reference, "plain")
    graph = _proc(cp, w, reference, "graph")
    for i in range(len(m.frames)):
        a = plain.process(m.frames[i], keep_registered=True)
        b = graph.process(m.frames[i], keep_registered=True)
        cp.testing.assert_allclose(b.registered, a.registered, rtol=1e-5, atol=1e-3)
    assert graph.last_stream_path == "graph"
    # the copy handed out is not the graph's own buffer: the next frame leaves it alone
    kept = graph.process(m.frames[0], keep_registered=True).registered
    before = kept.copy()
    graph.process(m.frames[5])
    cp.testing.assert_array_equal(kept, before)


@pytest.mark.parametrize("case", ["nonrigid", "fused_off", "plain_requested"])
def test_unsupported_setups_fall_back_to_plain(seed, case):
    m, w, reference = _setup(seed, n_frames=12)
    kw = {"nonrigid": True, "block_px": 64} if case == "nonrigid" else {}
    if case == "fused_off":
        fused.set_fused(False)
    mode = "plain" if case == "plain_requested" else "auto"
    proc = _proc(cp, w, reference, mode, **kw)
    chunks = _singles(len(m.frames))
    got, paths = _run(proc, m.frames, chunks)
    want, _ = _run(_proc(cp, w, reference, "plain", **kw), m.frames, chunks)
    assert set(paths) == {"plain"} and proc.streaming_path == "plain"
    if case == "plain_requested":
        assert proc.graph_error is None
    else:
        assert proc.graph_error and ("piecewise" in proc.graph_error or "fused" in proc.graph_error)
    _assert_same_as_plain(got, want, case)


def test_int16_frames_get_their_own_graph(seed):
    """ScanImage TIFFs hold int16: the graph is captured for the dtype of the frames it gets."""
    m, w, reference = _setup(seed, n_frames=20)
    frames = (m.frames.astype(np.int32) - 200).clip(-32768, 32767).astype(np.int16)
    plain, _ = _run(_proc(cp, w, reference, "plain"), frames, _singles(20))
    gproc = _proc(cp, w, reference, "graph")
    graph, paths = _run(gproc, frames, _singles(20))
    assert gproc.streaming_path == "graph" and set(paths) == {"graph"}
    _assert_same_as_plain(graph, plain, "int16 frames")

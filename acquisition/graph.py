"""CUDA-graph streaming path: one frame's whole device work replayed from two captured graphs.

Why: one frame at a time, the plain CuPy path launches ~20 kernels, each with ~20-30 us of
Python/CuPy overhead, so a 512 x 512 frame costs ~0.6 ms of host time for ~0.1 ms of GPU work
(H200). Captured once, the per-frame host work shrinks to a copy into pinned memory, two graph
launches and one synchronize.

Per frame (:meth:`StreamingGraph.run`):

- host: the frame -> a fixed pinned buffer; the baseline ring column ``count % window`` -> a
  pinned int32;
- graph A: upload both; float32; line-phase correction (if any); taper, rfft2, whitening,
  irfft2, correlation window, peak + sub-pixel fit (all on the device, no host sync); bilinear
  shift; the sparse trace product; ``Fc = F - c * Fneu``; Fc written into the baseline ring at
  the uploaded column; shifts, peak, F and Fneu packed into one row;
- host, on baseline refresh frames only (every frame of the first interval, then once per
  ``baseline_update_s``): the plain path's order statistic over the ring, copied into the
  graph's fixed F0 buffer. On CuPy that is one radix-select launch
  (:mod:`acquisition.traces.select`), which took the refresh frames' extra cost from ~0.19 ms
  (``cupy.partition``: a copy and a full sort) to one kernel launch and one copy. Kept outside
  the graphs on purpose: the ring's filled length changes every refresh during the first window,
  and a host-side launch costs no more than a third graph launch would;
- graph B: ΔF/F against that F0 buffer into the packed row; download into a fixed pinned row.

Splitting at the baseline keeps the plain path's semantics exactly: a refresh frame's own ΔF/F
uses the refreshed F0. Every step reuses the plain path's functions and fused kernels, so the
graph computes the same numbers; :class:`acquisition.traces.FullPathProcessor` checks that on
the first frame and falls back to the plain path if they differ.

Memory: what the host touches (pinned rows, the uploaded frame, the F0 and Fc buffers, the
packed row) is allocated before capture. Temporaries the captured CuPy code allocates come from a
private ``MemoryPool`` that nothing else allocates from: returned to the shared pool, their
addresses could be handed to other code while the graph still writes there. Two warm-up runs
before capture compile the kernels, create the cached device constants (a host-to-device copy of
pageable memory is illegal during capture) and fill the private pool, so the capture itself
allocates nothing new. cuFFT plans are made here and held for the graph's lifetime: a plan from
CuPy's LRU plan cache could be evicted and destroyed while the graph still uses it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np

from acquisition.registration import fused as reg_fused
from acquisition.registration.linephase import correct_line_phase, needs_fourier_line_phase
from acquisition.registration.phasecorr import estimate_shifts
from acquisition.registration.registrar import Registrar
from acquisition.registration.shift import shift_frames
from acquisition.traces import fused as tr_fused
from acquisition.traces.extract import TraceExtractor
from acquisition.xp import is_cupy

# one thread per ROI: ring is (n, window) C-contiguous, pos[0] the column for this frame
_RING_SRC = "ring[(long long)i * window + pos[0]] = fc;"


class GraphUnavailable(RuntimeError):
    """The CUDA-graph streaming path cannot run with this setup (the message says why)."""


def graph_key(reg: Registrar, tr: TraceExtractor) -> tuple[Any, ...]:
    """Everything a captured graph bakes in; a change means the graph must be rebuilt."""
    return (
        reg.shape,
        float(reg.line_phase_px),
        int(reg.opt.max_shift_px),
        reg.opt.shift_method,
        id(reg.mask),
        id(tr.baseline.ring),
        int(tr.baseline.window),
        float(tr.opt.neuropil_coefficient),
        float(tr.opt.f0_floor),
    )


def unsupported_reason(reg: Registrar, tr: TraceExtractor) -> str | None:
    """Why the graph path cannot serve this registrar/extractor pair, or None when it can."""
    xp = reg.xp
    if not is_cupy(xp):
        return "the backend is numpy"
    if tr.xp is not xp:
        return "registrar and extractor use different backends"
    if not reg.ready:
        return "the registrar has no reference"
    if reg.opt.nonrigid:
        return "piecewise-rigid registration is not captured"
    if reg.opt.template_update_rate > 0:
        return "the template update changes the reference while streaming"
    if reg.opt.shift_method not in ("auto", "bilinear"):
        return f"shift_method {reg.opt.shift_method!r} is not captured (only bilinear)"
    if not reg_fused.fused_enabled(xp):
        return "fused kernels are off (RIG_XP_FUSED=0, or a kernel failed to compile)"
    if tr._csr is None:
        return "the ROI weights are not an int32 CSR matrix on the device"
    if not hasattr(xp.cuda.Stream, "begin_capture") or getattr(xp.cuda.runtime, "is_hip", False):
        return "this CuPy build has no CUDA stream capture"
    return None


class StreamingGraph:
    """Captured per-frame device work for one registrar + extractor (see module docstring).

    Parameters
    ----------
    registrar : Registrar
        CuPy, rigid, reference set (:func:`unsupported_reason` lists the conditions).
    extractor : TraceExtractor
        Same backend; its ``baseline`` ring is written by the graph.
    frame_dtype : numpy dtype
        dtype of the host frames (uint16 from ScanImage streams, int16 from its TIFFs).

    Raises
    ------
    GraphUnavailable
        The setup is not supported or a step could not be captured.
    """

    def __init__(self, registrar: Registrar, extractor: TraceExtractor, frame_dtype: Any) -> None:
        why = unsupported_reason(registrar, extractor)
        if why is not None:
            raise GraphUnavailable(why)
        import cupyx
        from cupyx.scipy import fftpack

        cp = registrar.xp
        self.cp = cp
        self.reg = registrar
        self.tr = extractor
        self.key = graph_key(registrar, extractor)
        self.dtype = np.dtype(frame_dtype)
        ny, nx = registrar.shape
        n = extractor.n
        self.n = n
        self.stream = cp.cuda.Stream(non_blocking=True)
        self.pool = cp.cuda.MemoryPool()
        # reference, ring and weights were made on the caller's stream, which this
        # non-blocking stream does not wait for
        cp.cuda.get_current_stream().synchronize()
        with self.stream:
            self.host_in = cupyx.empty_pinned((1, ny, nx), self.dtype)
            self.host_in[...] = 0
            self.host_pos = cupyx.empty_pinned((1,), np.int32)
            self.host_pos[0] = 0
            self.host_out = cupyx.empty_pinned((1, 3 + 3 * n), np.float32)
            self.dev_in = cp.zeros((1, ny, nx), self.dtype)
            self.dev_pos = cp.zeros((1,), cp.int32)
            self.packed = cp.zeros((1, 3 + 3 * n), cp.float32)
            self.fc = cp.zeros((1, n), cp.float32)
            self.f0 = cp.zeros((1, n), cp.float32)
            self.ref_spec = registrar.ref_spec.copy()
            self._ref_src = registrar.ref_spec
            self._f0_src: Any = None
            self._scratch_ring = cp.zeros_like(extractor.baseline.ring)
            probe = cp.zeros((1, ny, nx), cp.float32)
            spec = cp.zeros((1, ny, nx // 2 + 1), cp.complex64)
            self.plans = (
                fftpack.get_fft_plan(probe, axes=(-2, -1), value_type="R2C"),
                fftpack.get_fft_plan(spec, shape=(ny, nx), axes=(-2, -1), value_type="C2R"),
            )
            self.lp_plans: tuple[Any, Any] | None = None
            if needs_fourier_line_phase(registrar.line_phase_px):
                odd = cp.zeros((1, ny // 2, nx), cp.float32)
                odd_spec = cp.zeros((1, ny // 2, nx // 2 + 1), cp.complex64)
                self.lp_plans = (
                    fftpack.get_fft_plan(odd, axes=-1, value_type="R2C"),
                    fftpack.get_fft_plan(odd_spec, shape=(nx,), axes=-1, value_type="C2R"),
                )
            self._ring_kernel = cp.ElementwiseKernel(
                "float32 fc, raw int32 pos, int32 window",
                "raw float32 ring",
                _RING_SRC,
                "rig_ring_write",
            )
            self._dff_kernel = tr_fused._kernel(cp, "dff")
            self.registered: Any = None
            self._build()
        self.stream.synchronize()

    # ------------------------------------------------------------------ the captured steps
    def _step_a(self, ring: Any) -> Any:
        cp, reg, tr = self.cp, self.reg, self.tr
        rt = cp.cuda.runtime
        s = self.stream.ptr
        rt.memcpyAsync(
            self.dev_in.data.ptr, self.host_in.ctypes.data, self.host_in.nbytes,
            rt.memcpyHostToDevice, s,
        )  # fmt: skip
        rt.memcpyAsync(
            self.dev_pos.data.ptr, self.host_pos.ctypes.data, 4, rt.memcpyHostToDevice, s
        )
        # the same steps as Registrar.register + TraceExtractor.raw/from_raw for one frame
        f = self.dev_in.astype(cp.float32, copy=True)
        correct_line_phase(cp, f, reg.line_phase_px, plans=self.lp_plans)
        shifts, peak = estimate_shifts(
            cp, f, self.ref_spec, reg.mask, reg.opt.max_shift_px, plans=self.plans
        )
        out = shift_frames(cp, f, shifts, reg.opt.shift_method)
        raw = tr.raw(out)
        n = self.n
        fc = tr_fused.neuropil_fc(cp, raw[:, :n], raw[:, n:], tr.opt.neuropil_coefficient)
        if fc is None:
            raise GraphUnavailable("the fused neuropil kernel failed")
        self._ring_kernel(fc, self.dev_pos, np.int32(tr.baseline.window), ring)
        cp.copyto(self.fc, fc)
        cp.copyto(self.packed[:, 0:2], shifts.reshape(1, 2))
        cp.copyto(self.packed[:, 2:3], peak.reshape(1, 1))
        cp.copyto(self.packed[:, 3 : 3 + 2 * n], raw)
        return out

    def _step_b(self) -> None:
        cp = self.cp
        rt = cp.cuda.runtime
        n = self.n
        self._dff_kernel(
            self.fc, self.f0, np.float32(self.tr.opt.f0_floor), self.packed[:, 3 + 2 * n :]
        )
        rt.memcpyAsync(
            self.host_out.ctypes.data, self.packed.data.ptr, self.packed.nbytes,
            rt.memcpyDeviceToHost, self.stream.ptr,
        )  # fmt: skip

    def _capture(self, fn: Callable[[], Any]) -> tuple[Any, Any]:
        s = self.stream
        s.begin_capture()
        try:
            result = fn()
        except BaseException:
            # leave capture mode; the capture is invalid anyway, so report the first error
            with contextlib.suppress(Exception):
                s.end_capture()
            raise
        return s.end_capture(), result

    def _build(self) -> None:
        cp = self.cp
        scratch = self._scratch_ring
        # warm-up 1 on the shared pool: kernels compiled, cached constants uploaded
        self._step_a(scratch)
        self._step_b()
        with cp.cuda.using_allocator(self.pool.malloc):
            # warm-up 2: the private pool holds every temporary the capture will ask for
            self._step_a(scratch)
            self._step_b()
            self.stream.synchronize()
            before = self.pool.total_bytes()
            self.graph_a, self.registered = self._capture(
                lambda: self._step_a(self.tr.baseline.ring)
            )
            self.graph_b, _ = self._capture(self._step_b)
        # bytes the private pool had to cudaMalloc while capturing (0 when warm-up 2 covered
        # everything; legal either way in CuPy's relaxed capture mode), and its total size
        self.capture_malloc_bytes = int(self.pool.total_bytes() - before)
        self.private_pool_bytes = int(self.pool.total_bytes())
        if not reg_fused.fused_enabled(cp):
            raise GraphUnavailable("a fused kernel failed during capture")

    def info(self) -> dict[str, Any]:
        """Facts about this graph for benchmark reports."""
        return {
            "frame_dtype": str(self.dtype),
            "fourier_line_phase": self.lp_plans is not None,
            "private_pool_bytes": self.private_pool_bytes,
            "capture_malloc_bytes": self.capture_malloc_bytes,
        }

    # ------------------------------------------------------------------ per frame
    def run(self, frame: np.ndarray, keep_registered: bool = False) -> tuple[np.ndarray, Any]:
        """Process one host frame (Y, X) of ``frame_dtype``; advances the baseline state.

        Returns
        -------
        row : np.ndarray
            float32 (1, 3 + 3n): dy, dx, peak, F (n), Fneu (n), ΔF/F (n) (a fresh copy).
        registered : cupy array float32 (1, Y, X) or None
            A copy of the registered frame when ``keep_registered``.
        """
        cp, s = self.cp, self.stream
        bl = self.tr.baseline
        if self.reg.ref_spec is not self._ref_src:
            cp.cuda.get_current_stream().synchronize()  # made on the caller's stream
            with s:
                cp.copyto(self.ref_spec, self.reg.ref_spec)
            self._ref_src = self.reg.ref_spec
        np.copyto(self.host_in[0], frame, casting="no")
        t = bl.count
        self.host_pos[0] = t % bl.window
        self.graph_a.launch(s)
        bl.count = t + 1
        if bl.refresh_due(t):
            with s:
                bl._refresh()
                cp.copyto(self.f0[0], bl.f0)
            self._f0_src = bl.f0
        elif bl.f0 is not self._f0_src:  # refreshed by the plain path since the last frame
            cp.cuda.get_current_stream().synchronize()
            with s:
                cp.copyto(self.f0[0], bl.f0)
            self._f0_src = bl.f0
        self.graph_b.launch(s)
        registered = None
        if keep_registered:
            with s:
                registered = self.registered.copy()
        s.synchronize()
        return self.host_out.copy(), registered

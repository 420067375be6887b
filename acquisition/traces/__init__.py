"""Traces: one sparse product per frame (F and neuropil), ``F - c * Fneu``, causal baseline,
ΔF/F, and the full-path processor (registration + traces on one backend)."""

from acquisition.traces.extract import CausalBaseline, TraceBatch, TraceExtractor, TraceOptions
from acquisition.traces.processor import FullPathProcessor, ProcessedBatch

__all__ = [
    "CausalBaseline",
    "FullPathProcessor",
    "ProcessedBatch",
    "TraceBatch",
    "TraceExtractor",
    "TraceOptions",
]

"""Traces: one sparse product per frame (F and neuropil), ``F - c * Fneu``, causal baseline,
ΔF/F, and the full-path processor (registration + traces on one backend)."""

from acquisition.traces.extract import CausalBaseline, TraceBatch, TraceExtractor, TraceOptions
from acquisition.traces.processor import FullPathProcessor, ProcessedBatch
from acquisition.traces.setup import processor_factory, trace_options

__all__ = [
    "CausalBaseline",
    "FullPathProcessor",
    "ProcessedBatch",
    "TraceBatch",
    "TraceExtractor",
    "TraceOptions",
    "processor_factory",
    "trace_options",
]

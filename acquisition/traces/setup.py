"""Build the full-path processor from the rig config (``rig.core.config.ImagingConfig``).

:func:`processor_factory` returns the ``setup`` callable that
:class:`acquisition.pipeline.ImagingPipeline` calls with its warm-up frames: it picks the
backend, fits the registration reference on those frames, loads the ROIs the config names (or
detects them on the registered warm-up frames for ``rois.kind = auto``), builds the neuropil
annuli and the weight matrix, and returns a ready :class:`FullPathProcessor`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from acquisition.registration import Registrar, RegistrationOptions
from acquisition.rois import (
    RoiSet,
    build_weights,
    detect_rois_registered,
    load_rois,
    neuropil_pixels,
    weights_to_xp,
)
from acquisition.traces.extract import TraceExtractor, TraceOptions
from acquisition.traces.processor import FullPathProcessor
from acquisition.xp import get_xp

if TYPE_CHECKING:
    from rig.core.config import ImagingConfig


def trace_options(cfg: ImagingConfig) -> TraceOptions:
    """The trace parameters of an ``ImagingConfig``."""
    return TraceOptions(
        neuropil_coefficient=cfg.neuropil_coefficient,
        baseline_window_s=cfg.baseline_window_s,
        baseline_percentile=cfg.baseline_percentile,
    )


def processor_factory(
    cfg: ImagingConfig,
    frame_rate_hz: float,
    registration: RegistrationOptions | None = None,
    on_rois: Callable[[RoiSet], None] | None = None,
) -> Callable[[np.ndarray], FullPathProcessor]:
    """A ``setup(first_frames (T, Y, X)) -> FullPathProcessor`` for :class:`ImagingPipeline`.

    Parameters
    ----------
    cfg : ImagingConfig
        ``backend``, ``rois`` and the trace parameters are used.
    frame_rate_hz : float
        The source's frame rate (sets the baseline window in frames).
    registration : RegistrationOptions, optional
        Registration parameters (defaults otherwise).
    on_rois : callable, optional
        Called with the ROI set once it is known (e.g. to draw outlines in the GUI).
    """

    def setup(first: np.ndarray) -> FullPathProcessor:
        xp = get_xp(cfg.backend)
        shape = (int(first.shape[1]), int(first.shape[2]))
        reg = Registrar(xp, shape, registration)
        reg.fit_reference(xp.asarray(first))
        if cfg.rois.kind == "auto":
            n = min(len(first), cfg.rois.n_frames_for_detection)
            rois = detect_rois_registered(xp, reg.register(first[:n]))
        else:
            assert cfg.rois.path is not None  # the config model requires it
            rois = load_rois(cfg.rois.path, shape, cfg.rois.kind)
        if on_rois is not None:
            on_rois(rois)
        w = weights_to_xp(xp, build_weights(rois, neuropil_pixels(rois)))
        return FullPathProcessor(reg, TraceExtractor(xp, w, frame_rate_hz, trace_options(cfg)))

    return setup

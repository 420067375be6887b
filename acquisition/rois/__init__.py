"""ROIs: loaders (suite2p, ImageJ, label images), automatic detection, neuropil annuli, and the
one sparse weight matrix (cells + neuropil) that makes traces one product per frame."""

from acquisition.rois.detect import (
    border_for_shifts,
    detect_rois,
    detect_rois_registered,
    local_correlation_image,
)
from acquisition.rois.loaders import (
    RoiFileError,
    load_imagej,
    load_labels,
    load_rois,
    load_suite2p,
)
from acquisition.rois.model import RoiSet
from acquisition.rois.neuropil import build_weights, neuropil_pixels, weights_to_xp

__all__ = [
    "RoiFileError",
    "RoiSet",
    "border_for_shifts",
    "build_weights",
    "detect_rois",
    "detect_rois_registered",
    "load_imagej",
    "load_labels",
    "load_rois",
    "load_suite2p",
    "local_correlation_image",
    "neuropil_pixels",
    "weights_to_xp",
]

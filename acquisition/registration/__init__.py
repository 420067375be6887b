"""Motion correction written once against ``xp``: rigid phase correlation, piecewise-rigid
blocks, bidirectional line-phase correction, reference building and template update."""

from acquisition.registration import fused
from acquisition.registration.linephase import correct_line_phase, estimate_line_phase
from acquisition.registration.nonrigid import NonrigidRegistration
from acquisition.registration.phasecorr import estimate_shifts, reference_spectrum, taper_mask
from acquisition.registration.quality import correlation_to_reference, crispness
from acquisition.registration.registrar import Registrar, RegistrationOptions, RegistrationResult
from acquisition.registration.shift import shift_frames

__all__ = [
    "NonrigidRegistration",
    "Registrar",
    "RegistrationOptions",
    "RegistrationResult",
    "correct_line_phase",
    "correlation_to_reference",
    "crispness",
    "estimate_line_phase",
    "estimate_shifts",
    "fused",
    "reference_spectrum",
    "shift_frames",
    "taper_mask",
]

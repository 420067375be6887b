"""The registration object: reference building, batched and per-frame registration.

Order of operations per batch (all on ``xp``, no host sync except the optional numpy roll shift):
line-phase correction -> rigid phase correlation -> shift back -> optional piecewise-rigid
residual -> optional slow template update.

Reference: the seed is the mean of the frame best correlated with the others among the first
``n_reference_frames`` and its ``n_seed_frames`` best partners (suite2p's choice, computed on 4x
downsampled frames so the N x N correlation stays cheap); it is refined ``reference_iterations``
times by registering all those frames to it and averaging the better-matching half. Finally it is
re-centred so that the shifts of the reference frames average to zero: the reference frame of
coordinates is then the mean position, which is what a motion-free mean image is.

Template update (off by default): every ``template_update_every`` frames the mean of the
registered frames is blended in with weight ``template_update_rate``. The drift guard measures the
new template against the original one and shifts it back whenever they disagree by more than
``drift_guard_px``, so slow updates can track brightness/shape changes but never walk the
coordinate frame away (which would make every later shift drift with it).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from acquisition.registration.linephase import correct_line_phase, estimate_line_phase
from acquisition.registration.nonrigid import NonrigidRegistration
from acquisition.registration.phasecorr import estimate_shifts, reference_spectrum, taper_mask
from acquisition.registration.shift import shift_fourier, shift_frames
from acquisition.xp import to_host


@dataclass
class RegistrationOptions:
    """Parameters of :class:`Registrar` (defaults follow suite2p for 2-photon data).

    Attributes
    ----------
    max_shift_px : int
        Largest rigid shift searched per axis, px.
    smooth_sigma_px : float
        Gaussian smoothing of the phase correlation, px.
    taper_px : float
        Width of the edge taper, px (suite2p: 3 x smooth_sigma).
    shift_method : str
        ``auto | fourier | bilinear | bilinear_roll`` (see :mod:`.shift`).
    n_reference_frames, n_seed_frames, reference_iterations : int
        Reference building (see module docstring).
    line_phase : str | float
        ``"auto"`` estimates the bidirectional offset from the reference frames, ``"off"``
        disables it, a number fixes it (px).
    nonrigid : bool
        Add the piecewise-rigid step.
    block_px, max_block_shift_px : int
        Piecewise-rigid block size and residual search range, px.
    template_update_rate : float
        0 keeps the template fixed; else the weight of each update (0..1).
    template_update_every : int
        Frames between template updates.
    drift_guard_px : float
        Largest tolerated drift of the updated template against the original, px.
    """

    max_shift_px: int = 20
    smooth_sigma_px: float = 1.15
    taper_px: float = 3.45
    shift_method: str = "auto"
    n_reference_frames: int = 200
    n_seed_frames: int = 20
    reference_iterations: int = 3
    line_phase: str | float = "auto"
    nonrigid: bool = False
    block_px: int = 128
    max_block_shift_px: int = 5
    template_update_rate: float = 0.0
    template_update_every: int = 300
    drift_guard_px: float = 0.5


@dataclass
class RegistrationResult:
    """One batch of registered frames (arrays on the registrar's ``xp``).

    Attributes
    ----------
    frames : float32 (B, Y, X)
    shifts_px : float32 (B, 2) rigid (dy, dx) displacement of each input frame
    peak : float32 (B,) phase-correlation peak (quality; ~1 for a perfect match)
    block_shifts_px : float32 (B, nby, nbx, 2) residual per-block shifts, or None
    """

    frames: Any
    shifts_px: Any
    peak: Any
    block_shifts_px: Any = None


class Registrar:
    """Motion correction against a fixed (or slowly updated) reference.

    Parameters
    ----------
    xp : module
        numpy or cupy.
    shape : (int, int)
        Frame shape (Y, X).
    options : RegistrationOptions
    """

    def __init__(
        self, xp: ModuleType, shape: tuple[int, int], options: RegistrationOptions | None = None
    ) -> None:
        self.xp = xp
        self.shape = (int(shape[0]), int(shape[1]))
        self.opt = options or RegistrationOptions()
        self.mask = xp.asarray(taper_mask(self.shape, self.opt.taper_px))
        self.line_phase_px = (
            0.0 if self.opt.line_phase in ("auto", "off") else float(self.opt.line_phase)
        )
        self.reference: Any = None
        self.ref_spec: Any = None
        self._ref0_spec: Any = None
        self.nonrigid: NonrigidRegistration | None = None
        self._acc: Any = None
        self._acc_n = 0
        self.template_updates = 0
        self.drift_corrections = 0

    # ------------------------------------------------------------------ reference
    @property
    def ready(self) -> bool:
        return self.ref_spec is not None

    def set_reference(self, reference: Any, *, original: bool = True) -> None:
        """Use ``reference`` (Y, X) as the template (builds the spectra; float32 copy on xp)."""
        xp = self.xp
        ref = xp.asarray(reference, dtype=xp.float32)
        if ref.shape != self.shape:
            raise ValueError(f"reference shape {ref.shape} != frame shape {self.shape}")
        self.reference = ref
        self.ref_spec = reference_spectrum(xp, ref, self.mask, self.opt.smooth_sigma_px)
        if original or self._ref0_spec is None:
            self._ref0_spec = self.ref_spec
        if self.opt.nonrigid:
            if self.nonrigid is None:
                self.nonrigid = NonrigidRegistration(
                    xp,
                    ref,
                    self.opt.block_px,
                    self.opt.max_block_shift_px,
                    self.opt.smooth_sigma_px,
                    self.opt.taper_px,
                )
            else:
                self.nonrigid.set_reference(ref)

    def fit_reference(self, frames: Any) -> Any:
        """Build the reference from ``frames`` (N, Y, X) (the first frames of a movie).

        Also estimates the line phase when ``line_phase="auto"``. Returns the reference
        (xp float32 (Y, X)).
        """
        xp = self.xp
        f = xp.asarray(frames[: self.opt.n_reference_frames], dtype=xp.float32).copy()
        if f.ndim != 3 or f.shape[1:] != self.shape:
            raise ValueError(
                f"expected frames (N, {self.shape[0]}, {self.shape[1]}), got {f.shape}"
            )
        if self.opt.line_phase == "auto":
            self.line_phase_px = estimate_line_phase(xp, f)
        correct_line_phase(xp, f, self.line_phase_px)
        ref = self._seed(f)
        n = f.shape[0]
        # The seed may sit anywhere within the motion range, so the frames can be up to twice
        # max_shift away from it: search wider while building, and re-centre every iteration.
        wide = 2 * self.opt.max_shift_px
        for it in range(self.opt.reference_iterations + 1):
            self.set_reference(ref)
            shifts, peak = estimate_shifts(xp, f, self.ref_spec, self.mask, wide)
            if it == self.opt.reference_iterations:
                break
            reg = shift_frames(xp, f, shifts, "fourier")
            keep = max(1, n // 2) if it < self.opt.reference_iterations - 1 else n
            best = xp.argsort(-peak)[:keep]
            ref = reg[best].mean(axis=0)
            # Displace the new reference by the mean shift so shifts of these frames average
            # to zero: the reference then sits at the mean position (a motion-free mean image).
            ref = shift_fourier(xp, ref[None], -shifts.mean(axis=0)[None])[0]
        return self.reference

    def _seed(self, f: Any) -> Any:
        xp = self.xp
        n = f.shape[0]
        if n <= 2:
            return f.mean(axis=0)
        small = f[:, ::4, ::4].reshape(n, -1)
        small = small - small.mean(axis=1, keepdims=True)
        small = small / (xp.linalg.norm(small, axis=1, keepdims=True) + 1e-6)
        cc = small @ small.T
        k = min(self.opt.n_seed_frames, n - 1)
        top = -xp.sort(-cc, axis=1)[:, 1 : k + 1]
        best = int(to_host(xp.argmax(top.mean(axis=1))))
        partners = xp.argsort(-cc[best])[: k + 1]
        return f[partners].mean(axis=0)

    # ------------------------------------------------------------------ registration
    def register(self, frames: Any) -> RegistrationResult:
        """Register a batch ``frames`` (B, Y, X) of any real dtype (host or device array)."""
        if not self.ready:
            raise RuntimeError(
                "Registrar has no reference: call fit_reference() or set_reference()"
            )
        xp = self.xp
        f = xp.asarray(frames)
        if f.ndim == 2:
            f = f[None]
        f = f.astype(xp.float32, copy=True)
        correct_line_phase(xp, f, self.line_phase_px)
        shifts, peak = estimate_shifts(xp, f, self.ref_spec, self.mask, self.opt.max_shift_px)
        out = shift_frames(xp, f, shifts, self.opt.shift_method)
        block = None
        if self.nonrigid is not None:
            out, block, _ = self.nonrigid.register(out)
        if self.opt.template_update_rate > 0:
            self._update_template(out)
        return RegistrationResult(out, shifts, peak, block)

    def register_frame(self, frame: Any) -> RegistrationResult:
        """Register one (Y, X) frame; arrays in the result keep a leading batch axis of 1."""
        return self.register(self.xp.asarray(frame)[None])

    def _update_template(self, registered: Any) -> None:
        xp = self.xp
        s = registered.sum(axis=0)
        self._acc = s if self._acc is None else self._acc + s
        self._acc_n += registered.shape[0]
        if self._acc_n < self.opt.template_update_every:
            return
        r = self.opt.template_update_rate
        new = (1.0 - r) * self.reference + r * (self._acc / self._acc_n)
        self._acc, self._acc_n = None, 0
        drift, _ = estimate_shifts(xp, new[None], self._ref0_spec, self.mask, self.opt.max_shift_px)
        if float(to_host(xp.abs(drift).max())) > self.opt.drift_guard_px:
            new = shift_fourier(xp, new[None], drift)[0]
            self.drift_corrections += 1
        self.set_reference(new, original=False)
        self.template_updates += 1

    def state_host(self) -> dict[str, Any]:
        """Reference image and settings as host values (to save next to the results)."""
        return {
            "reference": to_host(self.reference).astype(np.float32),
            "line_phase_px": float(self.line_phase_px),
            "template_updates": self.template_updates,
            "drift_corrections": self.drift_corrections,
        }

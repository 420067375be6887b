"""Registration quality metrics: correlation of each frame to the reference, and crispness."""

from __future__ import annotations

from types import ModuleType
from typing import Any


def _interior(a: Any, border_px: int) -> Any:
    if border_px <= 0:
        return a
    return a[..., border_px:-border_px, border_px:-border_px]


def correlation_to_reference(
    xp: ModuleType, frames: Any, reference: Any, border_px: int = 0
) -> Any:
    """Pearson r of each frame with the reference over the interior.

    Parameters
    ----------
    frames : xp array (B, Y, X); reference : xp array (Y, X)
    border_px : int
        Pixels dropped on each side (where shifted-in data is not valid).

    Returns
    -------
    xp array float32 (B,)
    """
    f = _interior(xp.asarray(frames, dtype=xp.float32), border_px)
    r = _interior(xp.asarray(reference, dtype=xp.float32), border_px)
    f = f.reshape(f.shape[0], -1)
    f = f - f.mean(axis=1, keepdims=True)
    r = r.reshape(-1) - r.mean()
    num = f @ r
    den = xp.sqrt((f * f).sum(axis=1) * (r * r).sum()) + 1e-12
    return (num / den).astype(xp.float32)


def crispness(xp: ModuleType, image: Any, border_px: int = 0) -> float:
    """Crispness of a mean image: Frobenius norm of its gradient magnitude (Pnevmatikakis &
    Giovannucci 2017, as used by CaImAn), divided by the pixel count so sizes compare.
    Better registration gives a sharper mean image and a larger value."""
    img = _interior(xp.asarray(image, dtype=xp.float32), border_px)
    gy, gx = xp.gradient(img)
    return float(xp.sqrt((gy * gy + gx * gx).sum())) / float(img.size) ** 0.5

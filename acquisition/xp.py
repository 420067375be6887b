"""Array backend selection: every array routine in ``acquisition`` is written once against ``xp``.

``xp`` is either :mod:`numpy` or :mod:`cupy`. ``backend="auto"`` picks CuPy when it imports AND a
CUDA device answers, else numpy; ``backend="cupy"`` without CuPy or without a device raises a
:class:`BackendError` that says what is missing and how to install it.

FFTs go through :func:`fft_module` because ``numpy.fft`` upcasts float32 to float64 and is ~6x
slower than ``scipy.fft`` at 512 x 512; ``cupyx.scipy.fft`` keeps float32 and caches cuFFT plans.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any, Literal

import numpy as np

from rig.core.errors import RigError

BackendName = Literal["auto", "numpy", "cupy"]


class BackendError(RigError):
    """The requested array backend cannot be used on this machine."""


@functools.cache
def _cupy_status() -> tuple[ModuleType | None, str]:
    """Import CuPy and count devices once; returns (module or None, reason when None)."""
    try:
        import cupy
    except Exception as e:  # ImportError, or a broken CUDA install raising at import
        return None, f"CuPy is not importable ({type(e).__name__}: {e}); install cupy-cuda12x/13x"
    try:
        n = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as e:
        return None, f"CuPy imports but no CUDA device answers ({type(e).__name__}: {e})"
    if n < 1:
        return None, "CuPy imports but reports 0 CUDA devices"
    return cupy, ""


def cupy_available() -> bool:
    """True when CuPy imports and at least one CUDA device exists."""
    return _cupy_status()[0] is not None


def resolve_backend(backend: str) -> Literal["numpy", "cupy"]:
    """Turn ``auto | numpy | cupy`` into the backend that will actually run.

    Raises
    ------
    BackendError
        Unknown name, or ``cupy`` requested but unavailable (the message says why).
    """
    if backend == "numpy":
        return "numpy"
    if backend == "auto":
        return "cupy" if cupy_available() else "numpy"
    if backend == "cupy":
        mod, why = _cupy_status()
        if mod is None:
            raise BackendError(f"backend 'cupy' requested but unavailable: {why}")
        return "cupy"
    raise BackendError(f"unknown backend {backend!r}; expected one of auto, numpy, cupy")


def get_xp(backend: str = "auto") -> ModuleType:
    """The array module (numpy or cupy) for ``backend`` (see :func:`resolve_backend`)."""
    if resolve_backend(backend) == "cupy":
        mod, _ = _cupy_status()
        assert mod is not None
        return mod
    return np


def is_cupy(xp: ModuleType) -> bool:
    return xp.__name__ == "cupy"


def xp_of(a: Any) -> ModuleType:
    """The array module that owns ``a`` (numpy for anything that is not a CuPy array)."""
    mod = type(a).__module__
    if mod.startswith("cupy"):
        cp, _ = _cupy_status()
        if cp is not None:
            return cp
    return np


def fft_module(xp: ModuleType) -> Any:
    """``scipy.fft`` for numpy (float32-preserving, fast) or ``cupyx.scipy.fft`` for CuPy."""
    if is_cupy(xp):
        import cupyx.scipy.fft as cfft

        return cfft
    import scipy.fft as sfft

    return sfft


def sparse_module(xp: ModuleType) -> Any:
    """``scipy.sparse`` or ``cupyx.scipy.sparse`` to match ``xp``."""
    if is_cupy(xp):
        import cupyx.scipy.sparse as csp

        return csp
    import scipy.sparse as sp

    return sp


def to_device(xp: ModuleType, a: Any, dtype: Any = None) -> Any:
    """Copy a host array to ``xp`` (no copy for numpy unless ``dtype`` changes it)."""
    if is_cupy(xp):
        return xp.asarray(a, dtype=dtype)
    return np.asarray(a, dtype=dtype)


def to_host(a: Any) -> np.ndarray:
    """Return ``a`` as a numpy array (downloads CuPy arrays; blocks until the copy is done)."""
    if hasattr(a, "get") and type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)


def synchronize(xp: ModuleType) -> None:
    """Wait for queued device work (no-op on numpy); needed before reading wall-clock timings."""
    if is_cupy(xp):
        xp.cuda.get_current_stream().synchronize()


def gpu_memory(xp: ModuleType) -> dict[str, int] | None:
    """Device memory in bytes: ``{"used_bytes", "pool_bytes", "total_bytes"}``; None on numpy."""
    if not is_cupy(xp):
        return None
    free, total = xp.cuda.runtime.memGetInfo()
    pool = xp.get_default_memory_pool()
    return {
        "used_bytes": int(total - free),
        "pool_bytes": int(pool.total_bytes()),
        "total_bytes": int(total),
    }


def device_name(xp: ModuleType) -> str:
    """Human-readable device name ("CPU (numpy)" or the CUDA device's name)."""
    if not is_cupy(xp):
        return "CPU (numpy)"
    props = xp.cuda.runtime.getDeviceProperties(xp.cuda.Device().id)
    name = props.get("name", b"CUDA device")
    return name.decode() if isinstance(name, bytes) else str(name)


def pinned_copy(xp: ModuleType, a: np.ndarray) -> np.ndarray:
    """A copy of host array ``a`` in page-locked memory on CuPy (DMA uploads run at full PCIe
    speed and asynchronously from it); ``a`` itself on numpy."""
    if not is_cupy(xp):
        return a
    import cupyx

    out = cupyx.empty_pinned(a.shape, a.dtype)
    out[...] = a
    return out


_CONSTANTS: dict[tuple[Any, ...], Any] = {}


def cached_constant(xp: ModuleType, key: tuple[Any, ...], make: Any) -> Any:
    """``xp.asarray(make())`` computed once per ``(backend, key)``.

    Hot paths use it for small constant arrays (frequency grids, index lists): on CuPy a fresh
    ``asarray`` of host data is a blocking copy that stalls the stream pipeline.
    """
    k = (xp.__name__, *key)
    a = _CONSTANTS.get(k)
    if a is None:
        a = _CONSTANTS[k] = xp.asarray(make())
    return a

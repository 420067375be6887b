"""Loading ROIs: suite2p ``stat.npy`` + ``iscell.npy``, ImageJ ROI zip/.roi (roifile), label images.

Every loader returns a :class:`~acquisition.rois.model.RoiSet` on the given frame shape and
raises :class:`RoiFileError` naming the file (and the ROI) when something does not fit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from acquisition.rois.model import RoiSet
from rig.core.errors import RigError


class RoiFileError(RigError):
    """An ROI file could not be read or does not fit the frame."""


def load_suite2p(
    stat_path: str | Path,
    shape: tuple[int, int],
    iscell_path: str | Path | None = None,
    only_cells: bool = True,
    drop_overlap: bool = True,
) -> RoiSet:
    """ROIs from suite2p's ``stat.npy`` (and ``iscell.npy`` next to it unless given).

    ``stat.npy`` is a pickled object array, so it is loaded with ``allow_pickle=True``: a
    pickle can run code, so only load files from a path the user gave (never from a
    network source or a path derived from untrusted input).

    Parameters
    ----------
    stat_path : path
        suite2p ``stat.npy``: per ROI a dict with ``ypix``, ``xpix``, ``lam`` (and ``overlap``).
    shape : (int, int)
        Frame shape (Y, X) of the movie the ROIs apply to.
    iscell_path : path, optional
        ``iscell.npy`` (n, 2): column 0 is the 0/1 classification. Defaults to the file next
        to ``stat.npy`` when it exists.
    only_cells : bool
        Keep only ROIs classified as cells.
    drop_overlap : bool
        Drop pixels shared with other ROIs (suite2p does the same when extracting F).
    """
    stat_path = Path(stat_path)
    try:
        stat = np.load(stat_path, allow_pickle=True)
    except Exception as e:
        # A damaged pickle fails in arbitrary ways (AttributeError, ImportError, KeyError,
        # MemoryError...): every one of them means "not a readable stat.npy".
        raise RoiFileError(
            f"{stat_path}: cannot read suite2p stat.npy ({type(e).__name__}: {e})"
        ) from e
    if iscell_path is None and (stat_path.parent / "iscell.npy").exists():
        iscell_path = stat_path.parent / "iscell.npy"
    keep = np.ones(len(stat), bool)
    if iscell_path is not None:
        try:
            iscell = np.load(Path(iscell_path), allow_pickle=False)
        except Exception as e:
            raise RoiFileError(
                f"{iscell_path}: cannot read suite2p iscell.npy ({type(e).__name__}: {e})"
            ) from e
        if iscell.ndim not in (1, 2) or iscell.dtype.kind not in "biuf":
            raise RoiFileError(
                f"{iscell_path}: expected a numeric (n,) or (n, 2) array, got "
                f"{iscell.dtype} {iscell.shape}"
            )
        if iscell.ndim == 1:
            iscell = iscell[:, None]
        if iscell.shape[0] != len(stat):
            raise RoiFileError(
                f"{iscell_path}: {iscell.shape[0]} rows but {stat_path} has {len(stat)} ROIs"
            )
        if only_cells:
            keep = iscell[:, 0] > 0.5
    ny, nx = shape
    pixels, weights, names = [], [], []
    for i, s in enumerate(stat):
        if not keep[i]:
            continue
        try:
            y = np.asarray(s["ypix"], np.int64)
            x = np.asarray(s["xpix"], np.int64)
            lam = np.asarray(s.get("lam", np.ones(y.size)), np.float32)
        except (KeyError, TypeError, IndexError) as e:
            raise RoiFileError(f"{stat_path}: ROI {i} lacks ypix/xpix ({e})") from e
        if y.shape != x.shape or lam.shape != y.shape:
            raise RoiFileError(f"{stat_path}: ROI {i}: ypix/xpix/lam lengths differ")
        if y.size and (y.min() < 0 or x.min() < 0 or y.max() >= ny or x.max() >= nx):
            raise RoiFileError(f"{stat_path}: ROI {i} has pixels outside the {shape} frame")
        if drop_overlap and "overlap" in s:
            ok = ~np.asarray(s["overlap"], bool)
            y, x, lam = y[ok], x[ok], lam[ok]
        flat = y * nx + x
        order = np.argsort(flat)
        pixels.append(flat[order])
        weights.append(lam[order])
        names.append(f"suite2p:{i}")
    return RoiSet((ny, nx), pixels, weights, names, str(stat_path))


def _polygon_pixels(xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Flat indices of pixels whose centres lie inside the polygon ``xy`` (n, 2) (x, y)."""
    from matplotlib.path import Path as MplPath

    ny, nx = shape
    x0 = max(int(np.floor(xy[:, 0].min())), 0)
    x1 = min(int(np.ceil(xy[:, 0].max())), nx)
    y0 = max(int(np.floor(xy[:, 1].min())), 0)
    y1 = min(int(np.ceil(xy[:, 1].max())), ny)
    if x1 <= x0 or y1 <= y0:
        return np.zeros(0, np.int64)
    gy, gx = np.mgrid[y0:y1, x0:x1]
    # ImageJ coordinates are pixel corners: pixel (y, x) covers [x, x+1) x [y, y+1).
    inside = MplPath(xy).contains_points(np.c_[gx.ravel() + 0.5, gy.ravel() + 0.5])
    return np.sort((gy.ravel()[inside] * nx + gx.ravel()[inside]).astype(np.int64))


def load_imagej(path: str | Path, shape: tuple[int, int]) -> RoiSet:
    """ROIs from an ImageJ/Fiji ROI set (``RoiSet.zip``) or a single ``.roi`` file (roifile).

    Polygon, freehand, rectangle and oval ROIs are rasterised by pixel centre.
    """
    import roifile

    path = Path(path)
    try:
        rois = roifile.ImagejRoi.fromfile(path)
    except Exception as e:  # roifile raises ValueError/OSError/zipfile errors on bad input
        raise RoiFileError(f"{path}: not an ImageJ ROI file or zip ({e})") from e
    if not isinstance(rois, list):
        rois = [rois]
    pixels, names = [], []
    for i, r in enumerate(rois):
        name = r.name or f"roi{i}"
        coords = np.asarray(r.coordinates(), np.float64)
        if coords.ndim != 2 or coords.shape[0] < 3:
            raise RoiFileError(f"{path}: ROI {name!r} is not an area ROI (type {r.roitype})")
        if not np.isfinite(coords).all():
            # A damaged float-coordinate block decodes to NaN/inf: no polygon to rasterise.
            raise RoiFileError(
                f"{path}: ROI {name!r} has non-finite vertex coordinates (damaged file?)"
            )
        px = _polygon_pixels(coords, shape)
        if px.size == 0:
            raise RoiFileError(f"{path}: ROI {name!r} covers no pixel of the {shape} frame")
        pixels.append(px)
        names.append(name)
    weights = [np.ones(p.size, np.float32) for p in pixels]
    return RoiSet(shape, pixels, weights, names, str(path))


def load_labels(path: str | Path, shape: tuple[int, int] | None = None) -> RoiSet:
    """ROIs from a label image in ``.npy`` or ``.tif`` (0 = background, k = ROI k)."""
    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            lab = np.load(path, allow_pickle=False)
        else:
            import tifffile

            lab = tifffile.imread(path)
    except Exception as e:
        raise RoiFileError(f"{path}: cannot read label image ({e})") from e
    lab = np.squeeze(lab)
    if shape is not None and tuple(lab.shape) != tuple(shape):
        raise RoiFileError(f"{path}: label image is {lab.shape}, movie frames are {tuple(shape)}")
    try:
        return RoiSet.from_labels(lab, str(path))
    except ValueError as e:
        raise RoiFileError(str(e)) from e


def load_rois(path: str | Path, shape: tuple[int, int], kind: str = "auto") -> RoiSet:
    """Load by ``kind`` (``suite2p | imagej | labels | auto``; auto guesses from the name)."""
    path = Path(path)
    if kind == "auto":
        name = path.name.lower()
        if name.endswith("stat.npy") or (path.is_dir() and (path / "stat.npy").exists()):
            kind = "suite2p"
        elif name.endswith((".zip", ".roi")):
            kind = "imagej"
        elif name.endswith((".npy", ".tif", ".tiff")):
            kind = "labels"
        else:
            raise RoiFileError(f"{path}: cannot tell the ROI format; give the kind explicitly")
    if kind == "suite2p":
        return load_suite2p(path / "stat.npy" if path.is_dir() else path, shape)
    if kind == "imagej":
        return load_imagej(path, shape)
    if kind == "labels":
        return load_labels(path, shape)
    raise RoiFileError(f"{path}: unknown ROI kind {kind!r}; expected suite2p|imagej|labels|auto")

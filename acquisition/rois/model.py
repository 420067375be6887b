"""``RoiSet``: cell footprints as flat pixel indices + weights on a fixed frame shape."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class RoiSet:
    """A set of cell ROIs on a ``(Y, X)`` frame.

    Attributes
    ----------
    shape : (int, int)
        Frame shape the ROIs live on, px.
    pixels : list of np.ndarray
        Per cell, int64 flat indices ``y * X + x`` (unique, sorted).
    weights : list of np.ndarray
        Per cell, float32 weights of those pixels (suite2p ``lam``; 1 for plain masks).
    names : list of str
        Per cell, a label (file name, ImageJ ROI name, suite2p index).
    source : str
        Where the ROIs came from (file path or "auto-detect").
    """

    shape: tuple[int, int]
    pixels: list[np.ndarray]
    weights: list[np.ndarray]
    names: list[str] = field(default_factory=list)
    source: str = ""

    def __post_init__(self) -> None:
        if len(self.pixels) != len(self.weights):
            raise ValueError(f"{len(self.pixels)} pixel lists but {len(self.weights)} weight lists")
        if not self.names:
            self.names = [str(i) for i in range(len(self.pixels))]
        n_px = self.shape[0] * self.shape[1]
        for i, (p, w) in enumerate(zip(self.pixels, self.weights, strict=True)):
            if p.shape != w.shape:
                raise ValueError(f"ROI {self.names[i]}: {p.size} pixels but {w.size} weights")
            if p.size and (p.min() < 0 or p.max() >= n_px):
                raise ValueError(
                    f"ROI {self.names[i]} ({self.source}): pixel outside the {self.shape} frame"
                )

    def __len__(self) -> int:
        return len(self.pixels)

    @classmethod
    def from_labels(cls, labels: np.ndarray, source: str = "") -> RoiSet:
        """ROIs from an integer label image (0 = background, k = ROI named ``k``).

        Labels need not be contiguous; ROIs come out in increasing label order.
        """
        lab = np.asarray(labels)
        if lab.ndim != 2 or not np.issubdtype(lab.dtype, np.integer):
            raise ValueError(
                f"{source or 'label image'}: expected a 2-D integer array, got "
                f"{lab.dtype} {lab.shape}"
            )
        flat = lab.ravel()
        order = np.argsort(flat, kind="stable")
        vals, starts = np.unique(flat[order], return_index=True)
        bounds = [*starts[1:], flat.size]
        pixels, names = [], []
        for v, a, b in zip(vals, starts, bounds, strict=True):
            if v <= 0:
                continue
            pixels.append(np.sort(order[a:b]).astype(np.int64))
            names.append(str(int(v)))
        weights = [np.ones(p.size, np.float32) for p in pixels]
        return cls((int(lab.shape[0]), int(lab.shape[1])), pixels, weights, names, source)

    def label_image(self) -> np.ndarray:
        """int32 (Y, X): 0 background, k = ROI k-1 (later ROIs win where ROIs overlap)."""
        out = np.zeros(self.shape[0] * self.shape[1], np.int32)
        for k, p in enumerate(self.pixels):
            out[p] = k + 1
        return out.reshape(self.shape)

    def cell_mask(self) -> np.ndarray:
        """bool (Y, X): pixels that belong to any ROI."""
        out = np.zeros(self.shape[0] * self.shape[1], bool)
        for p in self.pixels:
            out[p] = True
        return out.reshape(self.shape)

    def centroids(self) -> np.ndarray:
        """float64 (n, 2) weighted (y, x) centroids, px."""
        nx = self.shape[1]
        out = np.zeros((len(self), 2))
        for k, (p, w) in enumerate(zip(self.pixels, self.weights, strict=True)):
            ww = w / max(float(w.sum()), 1e-12)
            out[k] = (float((p // nx) @ ww), float((p % nx) @ ww))
        return out

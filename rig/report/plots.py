"""Matplotlib figures of the report (Agg backend, PNG files). Each function saves one PNG and
returns its path; none of them computes a metric (those come from ``tasks.metrics``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rig.report.align import SyncHealth, peak_order

CONTEXT_COLORS = {"cue_triggered": "tab:blue", "self_initiated": "tab:orange", "all": "k"}


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # headless: never a display, never Qt
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    _plt().close(fig)
    return path


def learning_curves(days: list[str], series: dict[str, dict[str, list[float]]], path: Path) -> Path:
    """One panel per metric, one line per context, one point per session.

    Parameters
    ----------
    days : list of str
        Session labels (x axis), in order.
    series : dict
        ``metric label -> context -> values`` (len(days) each, NaN where undefined).
    """
    plt = _plt()
    n = max(1, len(series))
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.2), squeeze=False)
    x = np.arange(len(days))
    for ax, (label, by_ctx) in zip(axes[0], series.items(), strict=False):
        for ctx, vals in by_ctx.items():
            ax.plot(x, vals, "o-", color=CONTEXT_COLORS.get(ctx), label=ctx)
        ax.set_title(label)
        ax.set_xticks(x, days, rotation=45, ha="right", fontsize=7)
    axes[0][0].legend(fontsize=7)
    return _save(fig, path)


def lever_by_context(offsets_s: np.ndarray, windows: dict[str, np.ndarray], path: Path) -> Path:
    """Lever trajectories aligned to the threshold crossing, thin per trial, thick mean."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for ctx, w in windows.items():
        c = CONTEXT_COLORS.get(ctx)
        for row in w[:50]:
            ax.plot(offsets_s, row, color=c, alpha=0.15, lw=0.6)
        if len(w):
            ax.plot(offsets_s, np.nanmean(w, axis=0), color=c, lw=2, label=f"{ctx} (n={len(w)})")
    ax.axvline(0, color="gray", ls=":")
    ax.set_xlabel("time from threshold crossing (s)")
    ax.set_ylabel("lever (mm)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def rt_histogram(rt_ms: dict[str, np.ndarray], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    allv = np.concatenate([v[np.isfinite(v)] for v in rt_ms.values()] or [np.zeros(0)])
    bins = np.linspace(0, max(1000.0, float(allv.max()) if allv.size else 1000.0), 30)
    for ctx, v in rt_ms.items():
        v = v[np.isfinite(v)]
        if v.size:
            ax.hist(v, bins=bins, alpha=0.6, color=CONTEXT_COLORS.get(ctx), label=ctx)
    ax.set_xlabel("reaction time, crossing - cue (ms)")
    ax.set_ylabel("trials")
    if allv.size:
        ax.legend(fontsize=7)
    return _save(fig, path)


def dff_heatmaps(offsets_s: np.ndarray, means: dict[str, np.ndarray], path: Path) -> Path:
    """Trial-averaged ΔF/F (k offsets, n cells) per alignment event, cells sorted by peak time
    (each panel sorted on its own)."""
    plt = _plt()
    n = max(1, len(means))
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.6), squeeze=False)
    for ax, (name, m) in zip(axes[0], means.items(), strict=False):
        if m.size == 0:
            ax.set_title(f"{name}: no events")
            continue
        order = peak_order(m)
        img = m[:, order].T
        vmax = np.nanpercentile(np.abs(img), 99) if np.isfinite(img).any() else 1.0
        ax.imshow(
            img, aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax,
            extent=(offsets_s[0], offsets_s[-1], img.shape[0], 0),
        )  # fmt: skip
        ax.axvline(0, color="k", lw=0.8)
        ax.set_title(name)
        ax.set_xlabel("s")
    axes[0][0].set_ylabel("cell (sorted by peak time)")
    return _save(fig, path)


def motion_trace(t_s: np.ndarray, dy: np.ndarray, dx: np.ndarray, path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 2.6))
    ax.plot(t_s, dy, lw=0.7, label="dy")
    ax.plot(t_s, dx, lw=0.7, label="dx")
    ax.set_xlabel("session time (s)")
    ax.set_ylabel("shift (px)")
    ax.legend(fontsize=7)
    return _save(fig, path)


def sync_health(h: SyncHealth, path: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 2.8))
    axes[0].plot(h.t_s, h.host_lag_ms, ".", ms=1.5)
    axes[0].set_xlabel("session time (s)")
    axes[0].set_ylabel("host receive - fit (ms)")
    axes[0].set_title("link latency jitter")
    if h.frame_interval_ms.size:
        axes[1].plot(h.frame_t_s, h.frame_interval_ms, ".", ms=1.5)
        axes[1].ticklabel_format(axis="y", useOffset=False)
        axes[1].set_title("frame-clock interval")
    else:
        axes[1].set_title("no frame clock")
    axes[1].set_xlabel("session time (s)")
    axes[1].set_ylabel("ms")
    return _save(fig, path)

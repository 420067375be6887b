"""``rig report SESSION``: one HTML page with PNG plots and the metrics table of one session.

Numbers come from ``tasks.metrics.session_metrics`` (lever sessions); this module only selects
data, calls the plots and writes the page. Written to ``<session>/report/`` unless told otherwise.
"""

from __future__ import annotations

import html
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rig.core.store import SessionReader
from rig.export.nwb import session_lever
from rig.report import align, plots, rotarod

LEVER_WINDOW_S = (-0.5, 2.0)
DFF_WINDOW_S = (-2.0, 4.0)  # TASKS.md default around cue, crossing and reward
DFF_EVENTS = {"cue onset": "t_cue_us", "threshold crossing": "t_cross_us", "reward": "t_reward_us"}


@dataclass
class SessionReport:
    """What :func:`session_report` made."""

    index: Path
    images: list[Path] = field(default_factory=list)
    metrics: dict[str, Any] | None = None
    rotarod: list[Any] | None = None
    label: str = ""


def _col_s(rows: list[dict[str, str]], key: str, t0_us: int) -> np.ndarray:
    return np.array(
        [(float(r[key]) - t0_us) / 1e6 if r.get(key, "") not in ("", "None") else np.nan
         for r in rows]
    )  # fmt: skip


def _col(rows: list[dict[str, str]], key: str) -> np.ndarray:
    return np.array([float(r[key]) if r.get(key, "") not in ("", "None") else np.nan for r in rows])


def _table(header: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><tr>{h}</tr>{body}</table>"


PAGE_CSS = (
    "body{font-family:sans-serif;margin:1.5em;max-width:1100px}"
    "table{border-collapse:collapse;font-size:0.85em}td,th{border:1px solid #ccc;padding:2px 6px}"
    "img{max-width:100%;display:block;margin:0.5em 0}"
)


def page(title: str, sections: list[tuple[str, str]]) -> str:
    """A standalone HTML page from ``(heading, inner html)`` sections."""
    body = "".join(f"<h2>{html.escape(h)}</h2>\n{s}\n" for h, s in sections)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{PAGE_CSS}</style></head><body><h1>{html.escape(title)}</h1>\n{body}</body></html>"
    )


def lever_metrics(reader: SessionReader) -> dict[str, Any] | None:
    """``session_metrics`` for lever sessions; None for other tasks or too little lever data."""
    from tasks.metrics import session_metrics

    rows = reader.trials()
    if not rows or "context" not in rows[0] or session_lever(reader).size == 0:
        return None
    try:
        return session_metrics(reader)
    except ValueError:  # a few samples only (a session stopped at once): no movement metrics
        return None


def session_report(session: str | Path, out_dir: str | Path | None = None) -> SessionReport:
    """Write ``index.html`` and its PNGs for one session; returns what was written."""
    from tasks.metrics import metrics_rows

    reader = SessionReader(session)
    out = Path(out_dir) if out_dir is not None else reader.folder / "report"
    out.mkdir(parents=True, exist_ok=True)
    meta = reader.meta
    rows = reader.trials()
    events = reader.events()
    lev = session_lever(reader)
    board = [e.t_device_us for e in events if e.t_device_us is not None]
    t0_us = int(min([*board, *(lev["t_device_us"][:1].tolist())])) if board or lev.size else 0
    rep = SessionReport(index=out / "index.html", label=reader.folder.name)
    info = [
        ["subject", meta.subject_id], ["task", meta.task], ["rig", meta.rig_name],
        ["started", meta.started_at.isoformat()], ["status", reader.status],
        ["stop reason", meta.stop_reason or "-"], ["trials", str(len(rows))],
        ["params hash", meta.params_hash or "-"],
    ]  # fmt: skip
    sections = [("Session", _table(["field", "value"], info))]
    m = lever_metrics(reader)
    rep.metrics = m
    if m is not None:
        header, mrows = metrics_rows(m)
        sections.append(("Behavior", _table(header, mrows)))
    imgs: list[tuple[str, Path]] = []
    contexts = sorted({r.get("context", "") for r in rows} - {""})
    if rows and lev.size and "t_cross_us" in rows[0]:
        t_s, mm = reader.lever_mm()
        t_s = t_s - t0_us / 1e6
        cross = _col_s(rows, "t_cross_us", t0_us)
        win = {}
        for c in contexts:
            sel = np.array([r.get("context") == c for r in rows])
            off, win[c] = align.aligned(t_s, mm, cross[sel], LEVER_WINDOW_S, 0.005)
        imgs.append(("Lever trajectories by context",
                     plots.lever_by_context(off, win, out / "lever_by_context.png")))  # fmt: skip
    if rows and "rt_ms" in rows[0]:
        rt = {c: _col([r for r in rows if r.get("context") == c], "rt_ms") for c in contexts}
        imgs.append(("Reaction times", plots.rt_histogram(rt, out / "rt_hist.png")))
    if rotarod.is_rotarod(rows):
        rep.rotarod = rotarod.rotarod_days(rows)
        sections.append(("Rotarod", _table(*rotarod.day_table(rep.rotarod))))
        lat = {
            f"lane {lane}": [float(r["latency_s"]) for r in rows if r["lane"] == lane]
            for lane in sorted({r["lane"] for r in rows}, key=int)
        }
        trials = [f"trial {t}" for t in sorted({int(r["trial"]) for r in rows})]
        png = plots.learning_curves(trials, {"latency to fall (s)": lat}, out / "rotarod.png")
        imgs.append(("Rotarod latency to fall", png))
    imaging_summary = None
    if (reader.folder / "imaging" / "rois.json").exists():
        imaging_summary = _imaging(reader, rows, t0_us, out, imgs)
    health = align.sync_health(events, t0_us, imaging_summary)
    imgs.append(("Sync health", plots.sync_health(health, out / "sync_health.png")))
    counts = [[k, str(v)] for k, v in health.counts.items()]
    for title, p in imgs:
        rep.images.append(p)
        sections.append((title, f"<img src='{html.escape(p.name)}' alt='{html.escape(title)}'>"))
    sections.append(("Sync counts", _table(["what", "count"], counts)))
    title = f"{meta.subject_id} · {meta.task} · {meta.started_at:%Y-%m-%d %H:%M}"
    rep.index.write_text(page(title, sections), encoding="utf-8")
    return rep


def _imaging(
    reader: SessionReader,
    rows: list[dict[str, str]],
    t0_us: int,
    out: Path,
    imgs: list[tuple[str, Path]],
) -> dict[str, Any] | None:
    from acquisition.traces.store import read_results

    res = read_results(reader.folder / "imaging")
    fr = res["frames"]
    ft = np.asarray(res.get("frame_times_us", fr["t_board_us"]), np.float64)[: len(fr)]
    if ft.size < len(fr) or (ft < 0).any():
        ft = fr["t_board_us"].astype(np.float64)
    t_s = np.where(ft >= 0, (ft - t0_us) / 1e6, np.nan)
    ok = np.isfinite(t_s)
    if ok.sum() >= 2 and rows:
        dt = float(np.median(np.diff(t_s[ok])))
        means = {}
        off = np.zeros(0)
        for name, key in DFF_EVENTS.items():
            if key not in rows[0]:
                continue
            off, w = align.aligned(t_s[ok], res["dff"][ok], _col_s(rows, key, t0_us),
                                   DFF_WINDOW_S, dt)  # fmt: skip
            with warnings.catch_warnings():  # offsets outside the recording are all-NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                means[name] = np.nanmean(w, axis=0) if len(w) else np.zeros((0, 0))
        if means:
            imgs.append(("Event-aligned ΔF/F (trial mean, cells sorted by peak time)",
                         plots.dff_heatmaps(off, means, out / "dff_heatmaps.png")))  # fmt: skip
    if ok.any():
        png = plots.motion_trace(t_s, fr["dy_px"], fr["dx_px"], out / "motion.png")
        imgs.append(("Motion correction", png))
    summary: dict[str, Any] | None = res.get("summary")
    return summary


def metric(m: dict[str, Any] | None, ctx: str, key: str) -> float:
    """One metric of a ``session_metrics`` result, NaN when absent."""
    if m is None:
        return math.nan
    v = m["contexts"].get(ctx, {}).get(key)
    return math.nan if v is None else float(v)

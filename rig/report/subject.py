"""``rig report SUBJECT_DIR``: every session of a subject (one page each) plus an index page with
learning curves across days. Long work reports progress through a callback (the CLI shows a
rich progress bar)."""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field
from math import nan
from pathlib import Path

from rig.core.errors import RigError
from rig.core.store import SessionReader
from rig.report import plots
from rig.report.session import SessionReport, metric, page, session_report

#: (panel label, metric key) of the learning curves.
CURVES = [
    ("success rate", "success_rate"),
    ("RT crossing - cue (ms)", "rt_cross_ms"),
    ("trajectory r", "trajectory_r"),
    ("rewards", "rewards"),
]


@dataclass
class SubjectReport:
    index: Path
    sessions: list[SessionReport] = field(default_factory=list)
    curves: Path | None = None


def subject_sessions(subject_dir: Path) -> list[Path]:
    """Session folders directly under ``subject_dir``, in start order."""
    found = [p.parent for p in subject_dir.glob("*/session.json")]
    return sorted(found, key=lambda p: (SessionReader(p).meta.started_at, p.name))


def subject_report(
    subject_dir: str | Path,
    out_dir: str | Path | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> SubjectReport:
    """Report every session under ``subject_dir`` into ``out_dir`` (default
    ``<subject_dir>/report``); ``progress(done, total, label)`` is called after each session."""
    subject_dir = Path(subject_dir)
    sessions = subject_sessions(subject_dir)
    if not sessions:
        raise RigError(f"{subject_dir}: no session folders (with session.json) inside")
    out = Path(out_dir) if out_dir is not None else subject_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    rep = SubjectReport(index=out / "index.html")
    for i, s in enumerate(sessions):
        rep.sessions.append(session_report(s, out / s.name))
        if progress is not None:
            progress(i + 1, len(sessions), s.name)
    days = [r.label[:10] + ("" if r.metrics else "*") for r in rep.sessions]
    ctxs: list[str] = []
    for r in rep.sessions:
        if r.metrics:
            ctxs += [c for c in r.metrics["contexts"] if c not in ctxs]
    series = {
        label: {c: [metric(r.metrics, c, key) for r in rep.sessions] for c in ctxs}
        for label, key in CURVES
    }
    rod_subjects = sorted({d.subject_id for r in rep.sessions for d in r.rotarod or []})
    if rod_subjects:  # rotarod days: mean latency per mouse, from tasks.rotarod.metrics
        series["rotarod mean latency (s)"] = {
            subj: [
                next((d.mean_latency_s for d in r.rotarod or [] if d.subject_id == subj), nan)
                for r in rep.sessions
            ]
            for subj in rod_subjects
        }
    sections = []
    if any(series.values()):
        rep.curves = plots.learning_curves(days, series, out / "learning_curves.png")
        sections.append(("Learning curves", "<img src='learning_curves.png' alt='curves'>"))
    trs = "".join(
        f"<tr><td><a href='{html.escape(r.label)}/index.html'>{html.escape(r.label)}</a></td>"
        f"<td>{len(SessionReader(s).trials())}</td></tr>"
        for r, s in zip(rep.sessions, sessions, strict=True)
    )
    table = f"<table><tr><th>session</th><th>trials</th></tr>{trs}</table>"
    sections.append(("Sessions", table))
    rep.index.write_text(page(f"subject {subject_dir.name}", sections), encoding="utf-8")
    return rep

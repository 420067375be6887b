"""`rig report`: alignment and sorting with known answers, and the pages a session and a subject
produce (real PNGs referenced from the HTML, numbers from tasks.metrics)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from f_helpers import make_lever_session
from typer.testing import CliRunner

from rig.core.errors import RigError
from rig.report.align import aligned, peak_order
from rig.report.session import session_report
from rig.report.subject import subject_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_aligned_interpolates_between_frames() -> None:
    t = np.arange(0, 10, 0.1)  # 10 Hz
    values = np.stack([t, 2 * t], axis=1)  # linear: interpolation is exact
    off, w = aligned(t, values, np.array([3.03, np.nan, 5.55]), (-1.0, 2.0), 0.25)
    assert w.shape == (2, off.size, 2)  # NaN event dropped
    np.testing.assert_allclose(w[0, :, 0], 3.03 + off)
    np.testing.assert_allclose(w[1, :, 1], 2 * (5.55 + off))
    _, w = aligned(t, t, np.array([9.5]), (-1.0, 2.0), 0.5)
    assert np.isnan(w[0, -1]) and np.isfinite(w[0, 0])  # past the end: NaN, not clamped


def test_peak_order_sorts_by_peak_time() -> None:
    k = np.arange(50)
    peaks = [30, 5, 44, 12]
    m = np.stack([np.exp(-0.5 * ((k - p) / 2.0) ** 2) for p in peaks], axis=1)
    m[0, 2] = np.nan
    assert peak_order(m).tolist() == [1, 3, 0, 2]


def _imgs(index: Path) -> list[str]:
    return re.findall(r"<img src='([^']+)'", index.read_text())


def test_session_report_page(tmp_path: Path) -> None:
    folder = make_lever_session(tmp_path / "data", n_trials=12, imaging_frames=90)
    rep = session_report(folder)
    assert rep.index == folder / "report" / "index.html"
    names = _imgs(rep.index)
    for want in ("lever_by_context.png", "rt_hist.png", "dff_heatmaps.png", "motion.png",
                 "sync_health.png"):  # fmt: skip
        assert want in names
    for n in names:
        assert (rep.index.parent / n).read_bytes()[:8] == PNG_MAGIC
    text = rep.index.read_text()
    # the metrics table carries session_metrics' numbers, per context
    assert rep.metrics is not None
    rate = rep.metrics["contexts"]["all"]["success_rate"]
    assert f"{rate:.1%}" in text
    assert "cue_triggered" in text and "self_initiated" in text
    assert "frame-clock edges</td><td>90" in text


def test_subject_report_and_cli(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for d in range(3):
        make_lever_session(data, n_trials=12, day=d, seed=d)
    calls: list[tuple[int, int]] = []
    rep = subject_report(data / "m1", progress=lambda i, n, _s: calls.append((i, n)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    assert rep.curves is not None and rep.curves.read_bytes()[:8] == PNG_MAGIC
    text = rep.index.read_text()
    links = re.findall(r"<a href='([^']+)'>", text)
    assert len(links) == 3 and all((rep.index.parent / ln).exists() for ln in links)
    # sessions in start order
    assert links == sorted(links)
    with pytest.raises(RigError, match="no session folders"):
        subject_report(tmp_path)

    from rig.cli import app

    one = rep.sessions[0].index.parent.name
    r = CliRunner().invoke(app, ["report", str(data / "m1" / one), "--out", str(tmp_path / "r")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "r" / "index.html").exists()
    r = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "no such folder" in r.output


def test_rotarod_golden_report(tmp_path: Path) -> None:
    import tarfile

    golden = Path(__file__).parent / "data" / "golden" / "rotarod.tar.xz"
    with tarfile.open(golden) as t:
        t.extractall(tmp_path, filter="data")
    folder = tmp_path / "rotarod"
    rep = session_report(folder, tmp_path / "out")
    rows = [r.split("\t") for r in (folder / "trials.tsv").read_text().splitlines()[2:]]
    by_subject: dict[str, list[float]] = {}
    for r in rows:
        by_subject.setdefault(r[0], []).append(float(r[4]))
    assert rep.rotarod is not None
    assert {d.subject_id: d.mean_latency_s for d in rep.rotarod} == pytest.approx(
        {s: float(np.mean(v)) for s, v in by_subject.items()}
    )
    text = rep.index.read_text()
    for s, v in by_subject.items():
        assert f"<td>{s}</td>" in text and f"{np.mean(v):.1f}" in text
    assert "rotarod.png" in _imgs(rep.index)

"""Headless replay of recorded sessions through the same parser and task code.

:func:`replay_session` replays a session's recorded board bytes (``rig.replay.lever``, or
``rig.replay.rotarod`` for a rotarod day), compares the regenerated events, trials and lever
samples with the recording (``rig.replay.compare``), and optionally re-runs the imaging pipeline
and compares ΔF/F (``rig.replay.imaging``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from rig.replay.compare import Comparison, compare_sessions
from rig.replay.lever import ReplayError, ReplayRun, replay_lever


@dataclass
class ReplayReport:
    """Outcome of :func:`replay_session`."""

    run: ReplayRun
    comparison: Comparison
    imaging: object | None = None
    differences: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.differences


def replay_session(
    session: str | Path,
    out_dir: str | Path | None = None,
    speed: float | None = None,
    reprocess_imaging: bool = False,
    backend: str | None = None,
) -> ReplayReport:
    """Replay ``session`` and compare; the regenerated session goes to ``out_dir`` (default a
    temporary folder)."""
    from rig.core.store import SessionReader

    recorded = SessionReader(session)
    root = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="rig-replay-"))
    if recorded.meta.task == "rotarod":
        from rig.replay.rotarod import replay_rotarod

        run = replay_rotarod(recorded.folder, root, speed=speed)
        board = (recorded.meta.rig_config.get("rotarod") or {}).get("name", "rotarod")
        cmp = compare_sessions(recorded, SessionReader(run.regenerated), board, False)
    else:
        run = replay_lever(recorded.folder, root, speed=speed)
        board = (recorded.meta.rig_config.get("lever_board") or {}).get("name", "lever_board")
        cmp = compare_sessions(recorded, SessionReader(run.regenerated), board)
    rep = ReplayReport(run, cmp, differences=list(cmp.differences))
    if reprocess_imaging:
        from rig.replay.imaging import reprocess_imaging as _reprocess

        if not (recorded.folder / "imaging" / "rois.json").exists():
            raise ReplayError(f"{recorded.folder / 'imaging'}: no imaging results to compare")
        im = _reprocess(recorded.folder, run.regenerated, backend=backend)
        rep.imaging = im
        rep.differences += im.differences
    return rep


__all__ = ["Comparison", "ReplayError", "ReplayReport", "ReplayRun", "replay_session"]

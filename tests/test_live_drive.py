"""The simulated mouse's pulls drive the synthetic movie's responsive cells in a live session
(``rig.runner.imaging_drive``, ``acquisition.sources.synthetic.apply_drive``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_runner_imaging import FAST_MIXED, _rig

from acquisition.sources.synthetic import SyntheticSource, load_truth, make_movie
from acquisition.traces.store import read_results
from rig.core.store import SessionReader
from rig.runner.imaging_drive import DRIVES_FILE, TRUTH_FILE, recorded_drives
from rig.runner.lever import LeverRunner
from tasks.params import make_params

pytestmark = pytest.mark.timeout(180)

# 12 cells: seed 2 makes several of them responsive (checked below, not assumed)
DRIVEN_MOVIE = {
    "source": {"kind": "synthetic", "size_px": 96, "n_cells": 12, "frame_rate_hz": 30.0,
               "max_shift_px": 2.0, "seed": 2},
    "backend": "numpy",
    "baseline_window_s": 5.0,
}  # fmt: skip


def _pull_onsets_us(folder: Path) -> list[int]:
    """Movement onset of each pull from the recorded events: the ``lever_unrest`` that led to
    each ``lever_up`` (within 1 s), else the crossing."""
    out, unrest = [], None
    for e in SessionReader(folder).events():
        if e.source != "lever_board" or e.t_device_us is None:
            continue
        if e.name == "lever_unrest":
            unrest = e.t_device_us
        elif e.name == "lever_rest":
            unrest = None
        elif e.name == "lever_up":
            ok = unrest is not None and e.t_device_us - unrest <= 1_000_000
            out.append(unrest if ok else e.t_device_us)
            unrest = None
    return out


@pytest.fixture(scope="module")
def driven(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("driven")
    # ROIs = the true cells (the spatial layout is drawn before anything that depends on the
    # movie's length, so a one-frame movie has the same masks), saved as a label image
    src = DRIVEN_MOVIE["source"]
    masks = make_movie(1, size_px=src["size_px"], n_cells=src["n_cells"], seed=src["seed"]).masks
    np.save(tmp / "cells.npy", masks)
    movie = {**DRIVEN_MOVIE, "rois": {"kind": "labels", "path": str(tmp / "cells.npy")}}
    params = make_params("mixed", {**FAST_MIXED, "max_rewards": 6})
    runner = LeverRunner(_rig(tmp, movie), "m1", "mixed", params, speed=None)
    summary = runner.run()
    assert runner.session_dir is not None and summary["status"] == "complete"
    return runner.session_dir, runner.imaging_summary


def test_pulls_drive_responsive_cells_in_a_live_session(
    driven: tuple[Path, dict[str, Any]],
) -> None:
    folder, summary = driven
    truth = load_truth(folder / TRUTH_FILE)
    res = read_results(folder / "imaging")
    onsets = _pull_onsets_us(folder)
    assert len(onsets) >= 5
    # every pull's onset drove the movie, in order, and both records say so
    drives = np.fromfile(folder / DRIVES_FILE, dtype=[("t", "<f8"), ("k", "<i8"), ("b", "<i8")])
    np.testing.assert_array_equal(drives["b"], onsets)
    assert summary["synthetic_drive"] == {
        "pulls": len(onsets), "applied": len(onsets), "before_first_edge": 0,
    }  # fmt: skip
    np.testing.assert_array_equal(truth["drive_events"], recorded_drives(folder))
    times = res["frame_times_us"]
    # movie time of an onset = its board time on the frame clock (frame k at k / fs)
    t_movie = (np.asarray(onsets) - times[0]) / 1e6
    np.testing.assert_allclose(truth["drive_events"][:, 0], t_movie, atol=1e-6)
    # the truth covers the frames played, and the bursts are in it: responsive cells spike
    # within 0.5 s after each onset (others only by chance)
    assert len(truth["dff_true"]) == len(res["frames"])
    resp = truth["responsive"]
    assert 2 <= resp.sum() < len(resp)
    k_on = np.floor(t_movie * 30).astype(int)
    spiked = np.array([truth["spikes"][k : k + 15].sum(0) > 0 for k in k_on])  # (pulls, cells)
    assert spiked[:, resp].all()

    # the recorded ΔF/F, ROI k = true cell k
    np.testing.assert_array_equal(np.load(folder / "imaging" / "roi_labels.npy"), truth["masks"])
    roi_resp = resp
    dff = res["dff"]

    def window(lo_s: float, hi_s: float) -> np.ndarray:
        """Mean ΔF/F per ROI over [onset + lo, onset + hi), averaged over pulls."""
        rows = []
        for t in onsets:
            sel = (times >= t + lo_s * 1e6) & (times < t + hi_s * 1e6)
            rows.append(np.nanmean(dff[sel], axis=0))
        return np.nanmean(rows, axis=0)

    before, after = window(-1.0, -0.1), window(0.2, 1.0)
    rise = after - before
    # event-triggered average: responsive cells rise after the pull, clearly more than others
    assert rise[roi_resp].min() > 0.1, rise
    assert rise[roi_resp].min() > rise[~roi_resp].max(), rise


def test_a_driven_session_reprocesses_to_the_bit_with_its_recorded_drives(
    driven: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """The recorded drives regenerate the frames that were played: the pipeline re-run over
    them (the replay's ``run_pipeline``, the live session's set-up) gives the same ΔF/F."""
    from acquisition.traces.store import FolderSink
    from rig.replay.imaging import imaging_params, run_pipeline

    folder, _ = driven
    rec = read_results(folder / "imaging")
    head = rec["header"]
    n = len(rec["frames"])
    np.testing.assert_array_equal(rec["frames"]["frame_index"], np.arange(n))
    rig_config = SessionReader(folder).meta.rig_config
    cfg = {
        k: v
        for k, v in rig_config["imaging"]["source"].items()
        if k not in ("kind", "driven_by_pulls")
    }
    src = SyntheticSource.generate(
        head["synthetic_n_frames"], stream=True, drives=recorded_drives(folder), **cfg
    )
    frames = ((k, t, f) for k, t, f in src if k < n)
    run_pipeline(
        frames, FolderSink(tmp_path), head["frame_rate_hz"], imaging_params(rig_config),
        frame_clock_us=rec["frame_times_us"].tolist(),
        roi_labels=np.load(folder / "imaging" / "roi_labels.npy"),
        warmup_frames=head["warmup_frames"], max_shift_px=head["max_shift_px"],
    )  # fmt: skip
    again = read_results(tmp_path / "imaging")
    np.testing.assert_array_equal(again["dff"], rec["dff"])
    # and without the drives the frames differ: the test above is not vacuous
    quiet = SyntheticSource.generate(head["synthetic_n_frames"], stream=True, **cfg)
    assert not np.array_equal(quiet.truth.dff_true[:n], src.truth.dff_true[:n])


def test_rig_replay_reprocesses_a_driven_session(
    driven: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from rig.cli import app

    folder, _ = driven
    r = CliRunner().invoke(
        app, ["replay", str(folder), "--reprocess-imaging", "--out", str(tmp_path / "re")]
    )
    assert r.exit_code == 0, r.output


def test_a_replayed_drive_list_renders_the_frames_that_were_played() -> None:
    """Drives applied while the movie streams (one lands inside the chunk being played, so
    that chunk is re-rendered) give the same frames and truth as a fresh movie made with the
    recorded list, which is how a re-run regenerates a driven session."""
    kw: dict[str, Any] = {"size_px": 48, "n_cells": 3, "seed": 11, "responsive_fraction": 1.0}
    src = SyntheticSource.generate(120, stream=True, **kw)
    quiet = make_movie(120, **kw)
    played = []
    for k, _, frame in src:
        if k == 20:
            src.drive(0.70)  # frame 21 on: lag >= 50 ms puts the burst at frame >= 22
        if k == 40:
            src.drive(1.20)  # already past -> the burst moves to the first frame not played
        played.append(frame.copy())
    m = src.truth
    assert m.drive_events.tolist() == [[0.70, 21.0], [1.20, 41.0]]
    again = make_movie(120, drives=m.drive_events, **kw)
    np.testing.assert_array_equal(np.stack(played), again.frames)
    np.testing.assert_array_equal(again.dff_true, m.dff_true)
    np.testing.assert_array_equal(again.spikes, m.spikes)
    # before the first drive nothing changed; afterwards every cell got a burst
    np.testing.assert_array_equal(again.frames[:22], quiet.frames[:22])
    extra = again.spikes.astype(int) - quiet.spikes
    assert extra[:21].sum() == 0 and (extra[21:41].sum(0) >= 1).all()
    assert (extra[41:45].sum(0) >= 1).all()  # late event: burst at the first unplayed frame
    assert (again.dff_true[22:60] >= quiet.dff_true[22:60] - 1e-6).all()
    # the truth stays consistent: f = f0 * (1 + ΔF/F)
    np.testing.assert_allclose(again.f_true, again.f0_true * (1 + again.dff_true), rtol=1e-4)


def test_a_fully_rendered_movie_cannot_be_driven() -> None:
    src = SyntheticSource.generate(16, size_px=32, n_cells=1, seed=1)
    with pytest.raises(ValueError, match="stream=True"):
        src.drive(0.1)


def test_source_config_can_turn_the_drive_off() -> None:
    from rig.core.config import ImagingConfig
    from rig.core.signals import RigSignals
    from rig.runner.imaging import LiveImaging

    on = ImagingConfig.model_validate(DRIVEN_MOVIE)
    off = ImagingConfig.model_validate(
        {**DRIVEN_MOVIE, "source": {**DRIVEN_MOVIE["source"], "driven_by_pulls": False}}
    )
    assert LiveImaging(on, RigSignals(), 60.0).drive
    assert not LiveImaging(off, RigSignals(), 60.0).drive
    assert not LiveImaging(on, RigSignals(), 60.0, drive=False).drive

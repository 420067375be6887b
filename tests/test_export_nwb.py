"""`rig export --nwb`: a session written by SessionWriter (imaging through the real pipeline)
round-trips through NWB, validates, and has no critical nwbinspector finding."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from f_helpers import HOST0_NS, T0_US, make_lever_session
from typer.testing import CliRunner

from acquisition.traces.store import read_results
from rig.core.errors import RigError
from rig.core.store import SessionReader
from rig.export.nwb import ExportError, export_nwb

N_FRAMES = 150


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lever_session(tmp_path_factory.mktemp("data"), n_trials=12, imaging_frames=N_FRAMES)


@pytest.fixture(scope="module")
def movie(session: Path) -> Path:
    import tifffile

    from acquisition.sources.synthetic import make_movie

    m = make_movie(N_FRAMES, size_px=64, n_cells=6, max_shift_px=2.0, seed=0)
    path = session.parent / "movie.tif"
    tifffile.imwrite(path, m.frames)
    return path


@pytest.fixture(scope="module")
def nwb_path(session: Path, movie: Path) -> Path:
    out = session.parent / "export" / "s.nwb"
    out.parent.mkdir()
    s = export_nwb(session, out, movie=[movie], age="P90D")
    assert s.warnings == []
    return out


def test_roundtrip_trials_rois_dff(session: Path, nwb_path: Path) -> None:
    from pynwb import NWBHDF5IO

    reader = SessionReader(session)
    rows = reader.trials()
    res = read_results(session / "imaging")
    with NWBHDF5IO(str(nwb_path), "r") as io:
        nwb = io.read()
        trials = nwb.trials.to_dataframe()
        assert len(trials) == len(rows) == 12
        assert list(trials["outcome"]) == [r["outcome"] for r in rows]
        assert list(trials["context"]) == [r["context"] for r in rows]
        assert trials["block"].dtype == np.int64
        # empty cells (no cue on self-initiated trials) come back as NaN, board times in s
        cue = np.array([float(r["t_cue_us"]) if r["t_cue_us"] else np.nan for r in rows])
        t0 = float(nwb.notes.split("t0_device_us=")[1].split(".")[0])
        np.testing.assert_allclose(trials["t_cue_s"], (cue - t0) / 1e6, equal_nan=True)
        np.testing.assert_allclose(
            trials["start_time"], (np.array([float(r["t_start_us"]) for r in rows]) - t0) / 1e6
        )
        ophys = nwb.processing["ophys"]
        ps = ophys["ImageSegmentation"]["PlaneSegmentation"]
        assert len(ps) == res["header"]["n_cells"] == 6
        labels = np.load(session / "imaging" / "roi_labels.npy")
        mask0 = ps["pixel_mask"][0]
        assert {(int(y), int(x)) for x, y, _ in mask0} == set(
            zip(*np.nonzero(labels == 1), strict=True)
        )
        dff = ophys["DfOverF"]["dff"]
        np.testing.assert_array_equal(dff.data[:], res["dff"])
        np.testing.assert_array_equal(ophys["Fluorescence"]["F"].data[:], res["f"])
        np.testing.assert_array_equal(ophys["Fluorescence"]["Fneu"].data[:], res["fneu"])
        # frames sit on their frame-clock edges, on the same timebase as the trials
        edges = np.array([e.t_device_us for e in reader.events() if e.name == "frame"])
        np.testing.assert_allclose(dff.timestamps[:], (edges - t0) / 1e6)
        shifts = ophys["motion_shifts"].data[:]
        np.testing.assert_array_equal(shifts[:, 0], res["frames"]["dy_px"])


def test_lever_events_and_host_time_mapping(session: Path, nwb_path: Path) -> None:
    from pynwb import NWBHDF5IO

    reader = SessionReader(session)
    t_s, mm = reader.lever_mm()
    with NWBHDF5IO(str(nwb_path), "r") as io:
        nwb = io.read()
        t0 = float(nwb.notes.split("t0_device_us=")[1].split(".")[0])
        lev = nwb.acquisition["lever_position"]
        assert lev.unit == "mm"
        np.testing.assert_array_equal(lev.data[:], mm)
        np.testing.assert_allclose(lev.get_timestamps(), t_s - t0 / 1e6, atol=1e-9)
        names = {e.name for e in reader.events()}
        assert set(nwb.events) == names
        valve = nwb.events["valve_open"].to_dataframe()
        assert (valve["volume_ul"] == 4.0).all() and valve["duration_ms"].dtype == np.float64
        n_valve = sum(e.name == "valve_open" for e in reader.events())
        assert len(valve) == n_valve
        # host-only events land where the board clock was at their host time
        built = nwb.events["trial_built"].to_dataframe()
        host = np.array(built["t_host_ns"], np.float64)
        expected_us = (host - HOST0_NS - 2_000_000) / 1000 + T0_US
        np.testing.assert_allclose(built["timestamp"], (expected_us - t0) / 1e6, atol=2e-6)
        assert (built["t_device_us"] == -1).all()


def test_external_movie_and_validation(nwb_path: Path, movie: Path) -> None:
    from pynwb import NWBHDF5IO, validate

    assert validate(path=str(nwb_path)) == []
    with NWBHDF5IO(str(nwb_path), "r") as io:
        tps = io.read().acquisition["TwoPhotonSeries"]
        rel = tps.external_file[0]
        assert not os.path.isabs(rel)
        assert (nwb_path.parent / rel).resolve() == movie.resolve()
        assert list(tps.starting_frame) == [0]
        assert len(tps.timestamps) == N_FRAMES


def test_nwbinspector_no_critical(nwb_path: Path) -> None:
    nwbinspector = pytest.importorskip("nwbinspector")
    from nwbinspector import Importance

    found = list(nwbinspector.inspect_nwbfile(nwbfile_path=str(nwb_path)))
    critical = [m for m in found if m.importance == Importance.CRITICAL]
    assert critical == [], [m.message for m in critical]


def test_missing_age_is_reported(session: Path, tmp_path: Path) -> None:
    s = export_nwb(session, tmp_path / "a.nwb")
    assert any("age" in w for w in s.warnings)
    assert any("movie" in w for w in s.warnings)  # no movie given, none in the session


def test_interrupted_session_exports(tmp_path: Path) -> None:
    folder = make_lever_session(tmp_path, n_trials=3)
    meta = json.loads((folder / "session.json").read_text())
    meta["status"] = "running"  # as a killed writer leaves it
    (folder / "session.json").write_text(json.dumps(meta))
    with open(folder / "events.jsonl", "ab") as f:
        f.write(b'{"name": "lever_up", "sou')  # torn last record
    s = export_nwb(folder, tmp_path / "i.nwb", age="P90D")
    assert s.n_trials == 3
    assert any("events.jsonl" in w for w in s.warnings)


def test_refuses_overwrite_and_non_session(session: Path, nwb_path: Path, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="exists"):
        export_nwb(session, nwb_path)
    with pytest.raises(RigError, match="session.json"):
        export_nwb(tmp_path, tmp_path / "x.nwb")


def test_cli_export(session: Path, movie: Path, tmp_path: Path) -> None:
    from rig.cli import app

    out = tmp_path / "cli.nwb"
    r = CliRunner().invoke(
        app, ["export", str(session), "--nwb", str(out), "--movie", str(movie), "--age", "P60D"]
    )
    assert r.exit_code == 0, r.output
    assert "12 trials" in r.output and "6 ROIs" in r.output and out.exists()
    r = CliRunner().invoke(app, ["export", str(tmp_path / "none"), "--nwb", str(out)])
    assert r.exit_code == 2 and "no such session folder" in r.output


def test_golden_mixed_imaging_roundtrip(tmp_path: Path) -> None:
    """The mixed-block golden session (recorded by the runner, imaging by the pipeline):
    trial count, outcomes, ROI count and ΔF/F come back from the NWB file unchanged."""
    import tarfile

    from pynwb import NWBHDF5IO

    with tarfile.open(Path(__file__).parent / "data" / "golden" / "mixed_imaging.tar.xz") as t:
        t.extractall(tmp_path, filter="data")
    src = tmp_path / "mixed_imaging"
    reader = SessionReader(src)
    res = read_results(src / "imaging")
    s = export_nwb(src, tmp_path / "g.nwb", age="P90D")
    assert s.n_trials == len(reader.trials()) > 0 and s.n_lever_samples == 0
    with NWBHDF5IO(str(tmp_path / "g.nwb"), "r") as io:
        nwb = io.read()
        trials = nwb.trials.to_dataframe()
        assert list(trials["outcome"]) == [r["outcome"] for r in reader.trials()]
        assert set(trials["context"]) == {"self_initiated", "cue_triggered"}
        ophys = nwb.processing["ophys"]
        assert len(ophys["ImageSegmentation"]["PlaneSegmentation"]) == 5
        np.testing.assert_array_equal(ophys["DfOverF"]["dff"].data[:], res["dff"])
        # board events and frames on one timebase: every frame event has its frame's time
        frame_ev = nwb.events["frame"].to_dataframe()
        np.testing.assert_allclose(
            ophys["DfOverF"]["dff"].timestamps[: len(frame_ev)], frame_ev["timestamp"]
        )

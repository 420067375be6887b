"""`rig register`, `rig traces`, `rig bench imaging` end to end on real files."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from acquisition.sources.synthetic import make_movie
from acquisition.xp import cupy_available
from rig.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def movie():
    return make_movie(150, size_px=128, n_cells=30, max_shift_px=8.0, seed=21)


def _shift_errors(csv_path, truth):
    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    est = np.array([[float(r["dy_px"]), float(r["dx_px"])] for r in rows])
    d = est - truth
    return np.abs(d - np.median(d, axis=0)), rows


def test_register_plain_tiff(movie, tmp_path):
    tifffile.imwrite(tmp_path / "m.tif", movie.frames)
    out = tmp_path / "out"
    r = runner.invoke(
        app, ["register", str(tmp_path / "m.tif"), "--out", str(out), "--backend", "numpy"]
    )
    assert r.exit_code == 0, r.output
    err, rows = _shift_errors(out / "shifts.csv", movie.shifts_px)
    assert len(rows) == 150 and err.mean() < 0.1
    reg = tifffile.imread(out / "registered.tif")
    assert reg.shape == movie.frames.shape and reg.dtype == np.uint16
    ref = tifffile.imread(out / "reference.tif")
    assert ref.shape == (128, 128) and ref.dtype == np.float32
    met = json.loads((out / "metrics.json").read_text())
    assert met["n_frames"] == 150 and met["backend"] == "numpy"
    assert met["crispness_registered_mean_image"] > met["crispness_raw_mean_image"]
    assert 0.3 < met["corr_to_reference_mean"] <= 1.0
    assert "corr to reference" in r.output


def test_register_multichannel_defaults_to_first_saved_channel(movie, tmp_path):
    from acquisition.sources.scanimage_writer import write_scanimage_tiff

    # channel 2 is channel 1 displaced by a constant 5 px: the shifts tell which was used
    ch2 = np.roll(movie.frames, 5, axis=1)
    data = np.stack([movie.frames, ch2], axis=1)[:, None]  # (T, Z, C, Y, X)
    path = write_scanimage_tiff(
        tmp_path / "si.tif", data.astype(np.int16) // 2, channels_saved=[1, 2]
    )
    dy = {}
    for ch in (None, 0, 1):
        out = tmp_path / f"out{ch}"
        args = ["register", str(path), "--out", str(out), "--backend", "numpy"]
        r = runner.invoke(app, args + ([] if ch is None else ["--channel", str(ch)]))
        assert r.exit_code == 0, r.output
        err, rows = _shift_errors(out / "shifts.csv", movie.shifts_px)
        assert err.mean() < 0.15
        dy[ch] = np.median([float(x["dy_px"]) for x in rows]) - np.median(movie.shifts_px[:, 0])
    assert dy[None] == pytest.approx(dy[0], abs=1e-3)
    # channel 1 sits 5 px lower relative to its own reference, but its reference is built from
    # itself: only the registered reference images differ by the roll
    r0 = tifffile.imread(tmp_path / "out0" / "reference.tif")
    r1 = tifffile.imread(tmp_path / "out1" / "reference.tif")
    assert np.corrcoef(np.roll(r0, 5, axis=0)[20:-20].ravel(), r1[20:-20].ravel())[0, 1] > 0.95
    r = runner.invoke(app, ["register", str(path), "--out", str(tmp_path / "x"), "--channel", "2"])
    assert r.exit_code != 0


def test_plain_four_d_tiff_channel_and_errors(movie, tmp_path):
    data = np.stack([movie.frames[:40], movie.frames[:40] // 2], axis=1)  # (T, C, Y, X)
    tifffile.imwrite(tmp_path / "tc.tif", data)
    r = runner.invoke(
        app,
        [
            "register",
            str(tmp_path / "tc.tif"),
            "--out",
            str(tmp_path / "o"),
            "--channel",
            "1",
            "--backend",
            "numpy",
        ],
    )
    assert r.exit_code == 0, r.output
    reg = tifffile.imread(tmp_path / "o" / "registered.tif")
    assert reg.shape == (40, 128, 128)
    r = runner.invoke(
        app, ["register", str(tmp_path / "tc.tif"), "--out", str(tmp_path / "o2"), "--channel", "3"]
    )
    assert r.exit_code != 0 and "2 channels" in r.output
    r = runner.invoke(app, ["register", str(tmp_path / "nope.tif"), "--out", str(tmp_path / "o3")])
    assert r.exit_code == 2 and "nope.tif: no such file" in r.output
    (tmp_path / "empty").mkdir()
    r = runner.invoke(app, ["register", str(tmp_path / "empty"), "--out", str(tmp_path / "o4")])
    assert r.exit_code == 2 and "no .tif files" in r.output


@pytest.mark.skipif(cupy_available(), reason="checks the message shown without CuPy")
def test_cupy_backend_without_cupy_says_why(movie, tmp_path):
    tifffile.imwrite(tmp_path / "m.tif", movie.frames[:20])
    r = runner.invoke(
        app,
        ["register", str(tmp_path / "m.tif"), "--out", str(tmp_path / "o"), "--backend", "cupy"],
    )
    assert r.exit_code == 2 and "backend 'cupy' requested but unavailable" in r.output


def test_traces_with_label_image(movie, tmp_path):
    tifffile.imwrite(tmp_path / "m.tif", movie.frames)
    np.save(tmp_path / "labels.npy", movie.masks)
    out = tmp_path / "tr"
    r = runner.invoke(
        app,
        [
            "traces",
            str(tmp_path / "m.tif"),
            "--rois",
            str(tmp_path / "labels.npy"),
            "--out",
            str(out),
            "--backend",
            "numpy",
        ],
    )
    assert r.exit_code == 0, r.output
    n = int(movie.masks.max())
    for name in ("F.npy", "Fneu.npy", "dFF.npy"):
        a = np.load(out / name)
        assert a.shape == (150, n) and a.dtype == np.float32
    f, fneu = np.load(out / "F.npy"), np.load(out / "Fneu.npy")
    # cells are brighter than their neuropil; traces follow the true fluorescence
    assert np.median(f.mean(0) / fneu.mean(0)) > 1.0
    r_true = [np.corrcoef(f[:, k], movie.f_true[:, k])[0, 1] for k in range(n)]
    assert np.median(r_true) > 0.5
    with open(out / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == n and int(rows[0]["n_neuropil_pixels"]) > 0
    r = runner.invoke(
        app,
        ["traces", str(tmp_path / "m.tif"), "--rois", str(tmp_path / "x.zip"), "--out", str(out)],
    )
    assert r.exit_code == 2 and "x.zip" in r.output


def test_bench_imaging_writes_json(tmp_path):
    path = tmp_path / "b.json"
    r = runner.invoke(
        app,
        [
            "bench",
            "imaging",
            "--backend",
            "numpy",
            "--size",
            "128",
            "--frames",
            "80",
            "--rois",
            "25",
            "--stream-frames",
            "20",
            "--skimage-frames",
            "3",
            "--batch",
            "32",
            "--json",
            str(path),
        ],
    )
    assert r.exit_code == 0, r.output
    res = json.loads(path.read_text())
    assert res["backend"] == "numpy" and res["n_frames"] == 80
    assert res["batch"]["frames_per_s"] > 0 and res["stream"]["latency_ms_p50"] > 0
    assert res["accuracy"]["shift_err_mean_px"] < 0.2
    assert "cpu_stream_p50_ms" in res["targets"] and "skimage_reference" in res
    assert "shift error mean" in r.output


def test_traces_with_automatic_detection(tmp_path):
    m = make_movie(300, size_px=128, n_cells=30, max_shift_px=4.0, seed=8)
    tifffile.imwrite(tmp_path / "m.tif", m.frames)
    out = tmp_path / "auto"
    r = runner.invoke(
        app,
        [
            "traces",
            str(tmp_path / "m.tif"),
            "--rois",
            "auto",
            "--out",
            str(out),
            "--backend",
            "numpy",
        ],
    )
    assert r.exit_code == 0, r.output
    dff = np.load(out / "dFF.npy")
    assert dff.shape[0] == 300 and dff.shape[1] >= 3
    with open(out / "summary.csv") as fh:
        names = [row["name"] for row in csv.DictReader(fh)]
    assert all(n.startswith("auto:") for n in names)


def test_bench_imaging_with_more_cells_than_fit_says_so():
    r = runner.invoke(
        app,
        [
            "bench",
            "imaging",
            "--backend",
            "numpy",
            "--size",
            "64",
            "--frames",
            "20",
            "--rois",
            "80",
        ],
    )
    assert r.exit_code == 2, r.output
    assert "cannot place 80 cells" in r.output and "Traceback" not in r.output

"""ScanImage TIFF writer + reader, checked with the real scanimage-tiff-reader and tifffile."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from ScanImageTiffReader import ScanImageTiffReader

from acquisition.sources.base import FrameSourceError
from acquisition.sources.scanimage_meta import parse_frame_header, parse_static_metadata
from acquisition.sources.scanimage_tiff import ScanImageTiffSource, list_scanimage_files
from acquisition.sources.scanimage_writer import (
    frame_header,
    header_fields,
    si_static_values,
    si_text,
    splice_si_block,
    write_scanimage_series,
    write_scanimage_tiff,
)
from acquisition.sources.synthetic import make_movie

STYLES = [("text", "\n"), ("json", "\n"), ("frameheader", "\n"), ("text", "\r"), ("json", "\r")]


def _volumes(n_t: int, n_z: int, n_c: int, ny: int = 24, nx: int = 20, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(-500, 3000, size=(n_t, n_z, n_c, ny, nx)).astype(np.int16)


def test_metadata_block_is_spliced_at_byte_16(tmp_path: Path) -> None:
    path = write_scanimage_tiff(tmp_path / "a.tif", _volumes(3, 1, 2), frame_rate_hz=15.0)
    raw = path.read_bytes()
    assert raw[:4] == b"II+\x00"
    magic, version, n_text, n_roi = np.frombuffer(raw[16:32], "<u4")
    assert (magic, version) == (0x07030301, 3)
    assert raw[32 + n_text - 1] == 0 and raw[32 : 32 + 3] == b"SI."
    roi = raw[32 + n_text : 32 + n_text + n_roi]
    assert roi[-1] == 0 and "imagingRoiGroup" in json.loads(roi[:-1])["RoiGroups"]
    with ScanImageTiffReader(str(path)) as r:
        md = r.metadata()
        assert r.shape() == [6, 24, 20] and r.dtype() == np.int16
    si_part, _, roi_part = md.partition("\n\n")
    assert si_part.startswith("SI.VERSION_MAJOR")
    assert "SI.hChannels.channelSave = [1;2]" in si_part
    assert json.loads(roi_part)["RoiGroups"]["imagingRoiGroup"]["name"]
    si, rois = parse_static_metadata(md)
    assert si["SI.hRoiManager.scanFrameRate"] == 15.0 and "imagingRoiGroup" in rois
    # tifffile agrees: Software holds the SI text, Artist the ROI JSON, one strip per page.
    with tifffile.TiffFile(path) as tf:
        assert tf.is_scanimage
        assert tf.scanimage_metadata["FrameData"]["SI.hChannels.channelSave"] == [[1], [2]]
        page = tf.pages[5]
        assert page.software.startswith("SI.") and json.loads(page.tags[315].value)["RoiGroups"]
        assert page.dtype == np.int16 and len(page.dataoffsets) == 1 and page.compression == 1


def test_splice_moves_every_offset_pixels_intact(tmp_path: Path) -> None:
    data = _volumes(5, 1, 1)[:, 0, 0]
    src = tmp_path / "plain.tif"
    tifffile.imwrite(src, data, bigtiff=True, description="x", metadata=None, contiguous=False)
    dst = tmp_path / "si.tif"
    shift = splice_si_block(src, dst, "SI.a = 1", '{"RoiGroups": {}}')
    assert shift % 8 == 0 and dst.stat().st_size == src.stat().st_size + shift
    np.testing.assert_array_equal(tifffile.imread(dst), data)
    with ScanImageTiffReader(str(dst)) as r:
        np.testing.assert_array_equal(r.data(), data)
        assert r.metadata().startswith("SI.a = 1")


@pytest.mark.parametrize(("style", "sep"), STYLES)
def test_two_channels_and_planes_each_header_style(tmp_path: Path, style: str, sep: str) -> None:
    vols = _volumes(5, 3, 2)
    t_s = np.array([0.0, 0.11, 0.19, 0.33, 0.41])  # uneven: must come from the headers
    path = write_scanimage_tiff(
        tmp_path / "m.tif", vols, frame_rate_hz=60.0, n_flyback=2, header_style=style,
        line_sep=sep, timestamps_s=t_s,
    )  # fmt: skip
    with ScanImageTiffReader(str(path)) as r:
        assert r.shape()[0] == 5 * (3 + 2) * 2  # flyback frames are in the file
        desc = r.description(0)
        assert (sep in desc) and (("\n" in desc) == (sep == "\n"))
        md = r.metadata()
        if style == "frameheader":
            assert json.loads(desc)["FrameHeader"]["frameNumbers"] == 1
            assert json.loads(md)["SI"]["hChannels"]["channelSave"] == [1, 2]
        elif style == "json":
            assert json.loads(desc)["frameTimestamps_sec"] == 0.0
        else:
            assert desc.startswith("frameNumbers = 1" + sep)
    for c in range(2):
        for z in range(3):
            with ScanImageTiffSource(path, channel=c, plane=z) as src:
                assert src.n_frames == 5 and src.shape == (24, 20)
                assert src.frame_rate_hz == pytest.approx(60.0 / 5)
                got = list(src)
            assert [i for i, _, _ in got] == list(range(5))
            for i, t, frame in got:
                np.testing.assert_array_equal(frame, vols[i, z, c])
                assert t == pytest.approx(t_s[i] + z / 60.0, abs=1e-9)


@pytest.mark.parametrize(("style", "sep"), STYLES[:3])
def test_aux_trigger_times_reach_the_reader(tmp_path: Path, style: str, sep: str) -> None:
    path = write_scanimage_tiff(
        tmp_path / "aux.tif", _volumes(4, 1, 1), header_style=style, line_sep=sep,
        aux_triggers={2: [[], [0.0712, 0.0801]]},
    )  # fmt: skip
    seen = {}
    with ScanImageTiffSource(path) as src:
        for i, _, _ in src:
            seen[i] = (src.last_header["frameNumbers"], src.last_header["auxTrigger1"])
    assert seen[2] == (3, pytest.approx([0.0712, 0.0801]))
    assert seen[1] == (2, []) and seen[3][1] == []


def test_header_parsers_agree_across_styles() -> None:
    fields = header_fields(7, 0.25, False, aux=[[], [0.3138, 0.3316]])
    parsed = [
        parse_frame_header(frame_header(fields, style, sep))  # type: ignore[arg-type]
        for style, sep in STYLES
    ]
    for p in parsed:
        assert p["frameNumbers"] == 7 and p["frameTimestamps_sec"] == pytest.approx(0.25)
        assert p["auxTrigger1"] == pytest.approx([0.3138, 0.3316])
    text = si_text(si_static_values((8, 8), [2], 1, 0, 30.0, 100), "\r")
    si, _ = parse_static_metadata(text)
    assert si["SI.hChannels.channelSave"] == 2


def test_synthetic_movie_round_trip(tmp_path: Path) -> None:
    m = make_movie(7, 48, 2, frame_rate_hz=20.0, seed=1)
    path = write_scanimage_tiff(tmp_path / "s.tif", m.frames, frame_rate_hz=20.0)
    with ScanImageTiffSource(path) as src:
        got = list(src)
    assert src.frame_rate_hz == 20.0 and src.dtype == np.int16
    np.testing.assert_array_equal(np.stack([f for _, _, f in got]), m.frames.astype(np.int16))
    assert [t for _, t, _ in got] == pytest.approx(list(m.t_frame_s))


def test_folder_of_files_in_scanimage_order(tmp_path: Path) -> None:
    vols = _volumes(11, 1, 2)
    paths = write_scanimage_series(tmp_path / "rec", vols, volumes_per_file=4, basename="m1")
    assert [p.name for p in paths] == [f"m1_00001_0000{k}.tif" for k in (1, 2, 3)]
    with ScanImageTiffSource(tmp_path / "rec", channel=1) as src:
        assert src.n_frames == 11
        got = list(src)
    np.testing.assert_array_equal(np.stack([f for _, _, f in got]), vols[:, 0, 1])
    assert [t for _, t, _ in got] == pytest.approx(list(np.arange(11) / 30.0))
    # Numeric, not lexicographic, order when ScanImage's zero padding is absent.
    for old, new in zip(paths, ("m_2.tif", "m_10.tif", "m_11.tif"), strict=True):
        old.rename(old.with_name(new))
    assert [p.name for p in list_scanimage_files(tmp_path / "rec")] == [
        "m_2.tif", "m_10.tif", "m_11.tif"
    ]  # fmt: skip


def test_reads_in_bounded_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vols = _volumes(20, 1, 1)
    path = write_scanimage_tiff(tmp_path / "c.tif", vols)
    spans: list[int] = []
    real = ScanImageTiffReader.data

    def spy(self, beg=None, end=None):  # type: ignore[no-untyped-def]
        assert beg is not None and end is not None, "whole-file read"
        spans.append(end - beg)
        return real(self, beg=beg, end=end)

    monkeypatch.setattr(ScanImageTiffReader, "data", spy)
    page_bytes = 24 * 20 * 2
    with ScanImageTiffSource(path, chunk_bytes=3 * page_bytes) as src:
        frames = [f for _, _, f in src]
    np.testing.assert_array_equal(np.stack(frames), vols[:, 0, 0])
    assert max(spans) <= 3 and sum(spans) == 20


@pytest.mark.parametrize("keep_fraction", [0.98, 0.6, 0.2, 0.001])
def test_truncated_file_names_file_page_and_frame(tmp_path: Path, keep_fraction: float) -> None:
    path = write_scanimage_tiff(tmp_path / "t.tif", _volumes(12, 1, 2))
    raw = path.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(raw[: int(len(raw) * keep_fraction)])
    with pytest.raises(FrameSourceError) as info:
        ScanImageTiffSource(cut)
    msg = str(info.value)
    assert str(cut) in msg and "truncated" in msg
    assert "page " in msg and "frame " in msg


def test_truncated_file_in_folder_names_that_file(tmp_path: Path) -> None:
    paths = write_scanimage_series(tmp_path / "rec", _volumes(9, 1, 1), volumes_per_file=3)
    os.truncate(paths[2], paths[2].stat().st_size - 100)
    with pytest.raises(FrameSourceError, match=rf"{paths[2].name}.*page 2 \(frame 8 "):
        ScanImageTiffSource(tmp_path / "rec")


def test_layout_mismatch_is_reported(tmp_path: Path) -> None:
    """Metadata says two channels, but every page carries its own frame number."""
    data = _volumes(4, 1, 1)[:, 0, 0]
    plain = tmp_path / "plain.tif"
    with tifffile.TiffWriter(plain, bigtiff=True) as tw:
        for i in range(4):
            desc = frame_header(header_fields(i + 1, i / 30, i == 3))
            tw.write(data[i], description=desc, metadata=None, contiguous=False)
    text = si_text(si_static_values((24, 20), [1, 2], 1, 0, 30.0, 4))
    splice_si_block(plain, tmp_path / "bad.tif", text, "")
    with ScanImageTiffSource(tmp_path / "bad.tif", channel=1) as src:
        it = iter(src)
        next(it)
        with pytest.raises(FrameSourceError, match="frameNumbers = 4, expected 3"):
            next(it)


def test_bad_channel_and_plane_are_rejected(tmp_path: Path) -> None:
    path = write_scanimage_tiff(tmp_path / "a.tif", _volumes(2, 1, 2))
    with pytest.raises(FrameSourceError, match=r"channel index 2 out of range.*\[1, 2\]"):
        ScanImageTiffSource(path, channel=2)
    with pytest.raises(FrameSourceError, match="plane 1 out of range"):
        ScanImageTiffSource(path, plane=1)
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((2, 8, 8), np.int16), bigtiff=True)
    with pytest.raises(FrameSourceError, match="magic 0x07030301 missing"):
        ScanImageTiffSource(plain)


def test_paced_reading_follows_timestamps(tmp_path: Path) -> None:
    t_s = np.array([0.0, 0.01, 0.02, 0.1, 0.11])
    path = write_scanimage_tiff(tmp_path / "p.tif", _volumes(5, 1, 1), timestamps_s=t_s)
    src = ScanImageTiffSource(path, paced=True)
    arrivals = []
    t0 = time.monotonic()
    for _ in src:
        arrivals.append(time.monotonic() - t0)
    assert arrivals[3] >= 0.1 * 0.95 and arrivals[-1] >= 0.11 * 0.95
    assert arrivals[1] < arrivals[3]


@pytest.mark.parametrize(("header", "extra"), [("text", []), ("frameheader", ["--cr"])])
def test_rig_imaging_synth_writes_tiff_and_truth(tmp_path: Path, header: str, extra) -> None:
    from typer.testing import CliRunner

    from acquisition.sources.synthetic import load_truth
    from rig.cli import app

    out = tmp_path / "syn.tif"
    args = ["imaging", "synth", "--out", str(out), "--frames", "6", "--size", "48",
            "--cells", "2", "--channels", "2", "--header", header, "--rate", "15",
            "--seed", "4", *extra]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    truth = load_truth(tmp_path / "syn.truth.npz")
    expect = make_movie(6, 48, 2, frame_rate_hz=15.0, seed=4)
    np.testing.assert_array_equal(truth["shifts_px"], expect.shifts_px)
    for channel, seed in ((0, 4), (1, 5)):
        with ScanImageTiffSource(out, channel=channel) as src:
            got = np.stack([f for _, _, f in src])
        movie = expect if seed == 4 else make_movie(6, 48, 2, frame_rate_hz=15.0, seed=seed)
        np.testing.assert_array_equal(got, movie.frames.astype(np.int16))
    with ScanImageTiffReader(str(out)) as r:
        assert ("\r" in r.description(0)) == ("--cr" in extra)


def test_rig_imaging_synth_folder_of_files(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rig.cli import app

    args = ["imaging", "synth", "--out", str(tmp_path / "rec.tif"), "--frames", "10", "--size",
            "48", "--cells", "1", "--frames-per-file", "4"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "rec").glob("rec_00001_*.tif"))) == 3
    with ScanImageTiffSource(tmp_path / "rec") as src:
        assert src.n_frames == 10
    bad = CliRunner().invoke(app, ["imaging", "synth", "--out", "x.tif", "--header", "xml"])
    assert bad.exit_code == 2 and "expected text, json or frameheader" in bad.output


def test_slow_stack_with_frames_per_slice(tmp_path: Path) -> None:
    """Slow stack (no FastZ): per volume, each slice is imaged framesPerSlice times."""
    n_vol, n_z, n_rep = 2, 2, 3
    rng = np.random.default_rng(8)
    data = rng.integers(0, 1000, size=(n_vol, n_z, n_rep, 8, 6)).astype(np.int16)
    plain = tmp_path / "plain.tif"
    with tifffile.TiffWriter(plain, bigtiff=True) as tw:
        number = 0
        for v in range(n_vol):
            for z in range(n_z):
                for r in range(n_rep):
                    number += 1
                    desc = frame_header(header_fields(number, (number - 1) / 10.0, False))
                    tw.write(data[v, z, r], description=desc, metadata=None, contiguous=False)
    values = si_static_values((8, 6), [1], n_z, 0, 10.0, 100)
    values.update({"SI.hStackManager.enable": True, "SI.hFastZ.enable": False,
                   "SI.hStackManager.framesPerSlice": n_rep})  # fmt: skip
    splice_si_block(plain, tmp_path / "stack.tif", si_text(values), "")
    with ScanImageTiffSource(tmp_path / "stack.tif", plane=1) as src:
        assert src.layout.n_repeats == 3 and src.n_frames == n_vol * n_rep
        got = list(src)
    expect = data[:, 1].reshape(n_vol * n_rep, 8, 6)
    np.testing.assert_array_equal(np.stack([f for _, _, f in got]), expect)
    # Volume 0, slice 1 starts at frame number 4 (t = 0.3 s).
    assert [t for _, t, _ in got][:3] == pytest.approx([0.3, 0.4, 0.5])


def test_corrupted_bytes_give_frames_or_a_frame_source_error(tmp_path: Path) -> None:
    """Random byte damage anywhere: either frames come out or FrameSourceError, nothing else."""
    path = write_scanimage_tiff(tmp_path / "f.tif", _volumes(4, 1, 2, ny=8, nx=8))
    raw = path.read_bytes()
    rng = np.random.default_rng(5)
    bad = tmp_path / "bad.tif"
    outcomes = {"frames": 0, "error": 0}
    for _ in range(150):
        b = bytearray(raw)
        for pos in rng.integers(0, len(b), size=rng.integers(1, 4)):
            b[pos] = rng.integers(0, 256)
        bad.write_bytes(bytes(b))
        try:
            with ScanImageTiffSource(bad, channel=1) as src:
                frames = [f for _, _, f in src]
            assert all(f.shape == (8, 8) for f in frames)
            outcomes["frames"] += 1
        except FrameSourceError as exc:
            assert str(bad) in str(exc)
            outcomes["error"] += 1
    assert outcomes["error"] > 0 and outcomes["frames"] > 0


def test_folder_with_a_different_frame_size_is_rejected(tmp_path: Path) -> None:
    write_scanimage_tiff(tmp_path / "rec" / "a_00001_00001.tif", _volumes(2, 1, 1))
    write_scanimage_tiff(tmp_path / "rec" / "a_00001_00002.tif", _volumes(2, 1, 1, ny=30))
    with ScanImageTiffSource(tmp_path / "rec") as src:
        it = iter(src)
        assert next(it)[0] == 0 and next(it)[0] == 1
        with pytest.raises(FrameSourceError, match=r"a_00001_00002.tif: pages are \(30, 20\)"):
            next(it)

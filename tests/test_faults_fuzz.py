"""Fuzzing (issue 9, item 7): the packet decoder, config loading, ROI loaders and ScanImage TIFF
reading fed damaged input give the project's own clear errors, never an unhandled exception.

"Clear error" means the loader's documented ``RigError`` subclass (``ConfigError``,
``RoiFileError``, ``FrameSourceError``) whose message names the file.
"""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import numpy as np
import pytest
import roifile
import yaml
from fault_helpers import address_space_cap
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from acquisition.rois.loaders import RoiFileError, load_imagej, load_labels, load_suite2p
from acquisition.sources.base import FrameSourceError
from acquisition.sources.scanimage_tiff import ScanImageTiffSource
from acquisition.sources.scanimage_writer import write_scanimage_tiff
from rig.core.config import RigConfig, load_rig_config
from rig.core.errors import ConfigError
from rig.core.protocol import (
    BOARD_TO_HOST,
    HOST_TO_BOARD,
    MAX_BODY,
    BadPacket,
    Packet,
    StreamDecoder,
    frame_raw,
)
from rig.core.protocol.codes import MAX_ENCODED

pytestmark = pytest.mark.faults

REPO = Path(__file__).resolve().parents[1]
SIM_YAML = (REPO / "hardware_configs" / "sim.yaml").read_bytes()
SHAPE = (32, 40)
QUIET = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]

ALL_TYPES = sorted(set(BOARD_TO_HOST) | set(HOST_TO_BOARD))
N_DECODER_CASES = 10_000


# ---------------------------------------------------------------------------- packet decoder
FRAME = st.tuples(
    st.one_of(st.sampled_from(ALL_TYPES), st.integers(0, 255)),
    st.integers(0, 255),
    st.binary(max_size=MAX_BODY),
)
FRAMES_PER_CASE = 10


@settings(
    max_examples=N_DECODER_CASES // FRAMES_PER_CASE, deadline=None, suppress_health_check=QUIET
)
@given(
    frames=st.lists(FRAME, min_size=FRAMES_PER_CASE, max_size=FRAMES_PER_CASE),
    host_side=st.booleans(),
)
def test_any_crc_valid_packet_is_parsed_or_refused_never_raises(
    frames: list[tuple[int, int, bytes]], host_side: bool
) -> None:
    """10,000 CRC-valid frames (1,000 streams of 10) of any type with any body: each one a typed
    message or a counted BadPacket, in order.

    This is the path damage cannot protect against (the CRC is right), so every body parser
    must refuse bad lengths and values with its own error, which the decoder turns into a
    BadPacket (a board answers it with NAK).
    """
    registry = BOARD_TO_HOST if host_side else HOST_TO_BOARD
    dec = StreamDecoder(registry)
    items = dec.feed(b"".join(frame_raw(t, q, b) for t, q, b in frames))
    assert len(items) == len(frames) and dec.stats.packets == len(frames)
    for (ptype, seq, _), item in zip(frames, items, strict=True):
        if isinstance(item, Packet):
            assert isinstance(item.msg, registry[ptype]) and item.seq == seq
        else:
            assert isinstance(item, BadPacket) and item.reason and item.ptype == ptype
    assert sum(isinstance(i, BadPacket) for i in items) == (
        dec.stats.unknown_type + dec.stats.bad_length
    )


@settings(max_examples=500, deadline=None, suppress_health_check=QUIET)
@given(st.lists(st.binary(min_size=0, max_size=2000), max_size=20))
def test_garbage_streams_keep_the_decoder_buffer_bounded(chunks: list[bytes]) -> None:
    dec = StreamDecoder(BOARD_TO_HOST)
    for c in chunks:
        for item in dec.feed(c):
            assert isinstance(item, Packet | BadPacket)
        assert len(dec._buf) <= MAX_ENCODED  # no unbounded growth without a delimiter


# ---------------------------------------------------------------------------- config
def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, where, value) edits: 0 replace a byte, 1 insert one, 2 delete one."""
    buf = bytearray(data)
    for kind, where, value in edits:
        if not buf:
            break
        at = where % len(buf)
        if kind == 0:
            buf[at] = value
        elif kind == 1:
            buf.insert(at, value)
        else:
            del buf[at]
    return bytes(buf)


EDITS = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1 << 20), st.integers(0, 255)))


@settings(max_examples=100, deadline=None, suppress_health_check=QUIET)
@given(edits=EDITS.filter(bool), cut=st.one_of(st.none(), st.integers(0, len(SIM_YAML))))
def test_mutated_rig_config_loads_or_raises_config_error(
    tmp_path: Path, edits: list[tuple[int, int, int]], cut: int | None
) -> None:
    path = tmp_path / "rig.yaml"
    text = _mutate(SIM_YAML, edits)[:cut]
    path.write_bytes(text)
    try:
        cfg = load_rig_config(path)
    except ConfigError as e:
        assert str(path) in str(e)
    else:
        assert isinstance(cfg, RigConfig)


def test_data_dir_of_an_unknown_user_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "rig.yaml"
    path.write_bytes(SIM_YAML.replace(b"data_dir: ~/", b"data_dir: ~no-such-user-xyz/"))
    with pytest.raises(ConfigError, match="data_dir"):
        load_rig_config(path)


YAML_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=20),
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=12), kids, max_size=4)
    ),
    max_leaves=20,
)
_SIM_DICT = yaml.safe_load(SIM_YAML)


@settings(max_examples=100, deadline=None, suppress_health_check=QUIET)
@given(
    section=st.sampled_from(sorted(_SIM_DICT)),
    key=st.one_of(st.none(), st.text(max_size=12)),
    value=YAML_VALUES,
)
def test_wrong_types_anywhere_in_the_config_raise_config_error(
    tmp_path: Path, section: str, key: str | None, value: object
) -> None:
    """Replace a section (or one key in it) by an arbitrary YAML value."""
    data = yaml.safe_load(SIM_YAML)
    if key is None or not isinstance(data[section], dict):
        data[section] = value
    else:
        data[section][key] = value
    path = tmp_path / "rig.yaml"
    path.write_text(yaml.safe_dump(data))
    try:
        load_rig_config(path)
    except ConfigError as e:
        assert str(path) in str(e)


# ---------------------------------------------------------------------------- ROI loaders
@pytest.fixture(scope="module")
def roi_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("rois")
    poly = roifile.ImagejRoi.frompoints(
        np.array([[5, 5], [20, 5], [20, 15], [5, 15]], np.float32), name="poly"
    )
    rect = roifile.ImagejRoi(
        roitype=roifile.ROI_TYPE.RECT, left=22, top=18, right=30, bottom=26, name="rect"
    )
    roifile.roiwrite(d / "RoiSet.zip", [poly, rect])
    poly.tofile(d / "one.roi")
    lab = np.zeros(SHAPE, np.int32)
    lab[2:6, 3:9] = 1
    lab[10:20, 10:12] = 7
    np.save(d / "labels.npy", lab)
    stat = np.array(
        [
            {"ypix": np.arange(2, 6), "xpix": np.arange(3, 7), "lam": np.ones(4, np.float32)},
            {"ypix": np.array([10, 11]), "xpix": np.array([10, 10]), "lam": np.ones(2)},
        ],
        dtype=object,
    )
    np.save(d / "stat.npy", stat, allow_pickle=True)
    return {p.name: p.read_bytes() for p in d.iterdir()}


LOADERS = {
    "RoiSet.zip": lambda p: load_imagej(p, SHAPE),
    "one.roi": lambda p: load_imagej(p, SHAPE),
    "labels.npy": lambda p: load_labels(p, SHAPE),
    "stat.npy": lambda p: load_suite2p(p, SHAPE),
}


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_roi_loaders_read_the_undamaged_files(
    roi_files: dict[str, bytes], tmp_path: Path, name: str
) -> None:
    path = tmp_path / name
    path.write_bytes(roi_files[name])
    assert len(LOADERS[name](path).names) == (1 if name == "one.roi" else 2)


def _roi_case(roi_files: dict[str, bytes], tmp: Path, name: str, edits: list, cut: int | None):
    path = tmp / name
    data = _mutate(roi_files[name], edits)
    path.write_bytes(data if cut is None else data[: cut % (len(data) + 1)])
    try:
        LOADERS[name](path)
    except RoiFileError as e:
        assert name in str(e)


@pytest.mark.parametrize("name", ["RoiSet.zip", "one.roi", "labels.npy"])
@settings(max_examples=60, deadline=None, suppress_health_check=QUIET)
@given(edits=EDITS, cut=st.one_of(st.none(), st.integers(0, 1 << 16)))
def test_mutated_roi_files_raise_roi_file_error(
    roi_files: dict[str, bytes], tmp_path: Path, name: str, edits: list, cut: int | None
) -> None:
    _roi_case(roi_files, tmp_path, name, edits, cut)


def test_imagej_roi_with_nan_vertex_raises_roi_file_error(tmp_path: Path) -> None:
    # the CI fuzzer found this: damaged sub-pixel coordinates decode to NaN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # roifile casts NaN for its int copy
        roi = roifile.ImagejRoi.frompoints(
            np.array([[5.5, 5], [np.nan, 5], [20, 5], [20, 15]], np.float32), name="p"
        )
        roi.tofile(tmp_path / "nan.roi")
    with pytest.raises(RoiFileError, match=r"nan\.roi: ROI 'p' has non-finite"):
        load_imagej(tmp_path / "nan.roi", SHAPE)


def test_damaged_iscell_raises_roi_file_error(roi_files: dict[str, bytes], tmp_path: Path) -> None:
    (tmp_path / "stat.npy").write_bytes(roi_files["stat.npy"])
    (tmp_path / "iscell.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(RoiFileError, match=r"iscell\.npy: cannot read"):
        load_suite2p(tmp_path / "stat.npy", SHAPE)


def test_damaged_suite2p_stat_raises_roi_file_error(
    roi_files: dict[str, bytes], tmp_path: Path
) -> None:
    # one flipped letter in a pickled global's name, as the fuzzer found (any byte there does)
    data = roi_files["stat.npy"]
    assert b"_reconstruct" in data
    path = tmp_path / "stat.npy"
    path.write_bytes(data.replace(b"_reconstruct", b"_reconstrucX", 1))
    with pytest.raises(RoiFileError, match=r"stat\.npy"):
        load_suite2p(path, SHAPE)


# ---------------------------------------------------------------------------- TIFF
@pytest.fixture(scope="module")
def si_tiff(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    d = tmp_path_factory.mktemp("tif")
    frames = np.random.default_rng(0).integers(0, 2000, (4, 16, 12)).astype(np.int16)
    return write_scanimage_tiff(d / "a.tif", frames, frame_rate_hz=10.0).read_bytes()


@settings(max_examples=100, deadline=None, suppress_health_check=QUIET)
@given(
    edits=st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), min_size=1, max_size=8),
    cut=st.one_of(st.none(), st.integers(8, 1 << 16)),
    header_only=st.booleans(),
)
def test_mutated_scanimage_tiff_raises_frame_source_error(
    si_tiff: bytes, tmp_path: Path, edits: list, cut: int | None, header_only: bool
) -> None:
    """Byte hits anywhere, or only in the first 4 KiB (TIFF header, IFDs, ScanImage block)."""
    buf = bytearray(si_tiff)
    span = 4096 if header_only else len(buf)
    for where, value in edits:
        buf[where % span] = value
    path = tmp_path / "a.tif"
    path.write_bytes(bytes(buf[:cut]))
    try:
        # a damaged tag count can make the C reader allocate gigabytes: cap it (see below)
        with address_space_cap(1 << 30), ScanImageTiffSource(path) as src:
            for _, _, frame in src:
                assert frame.shape == src.shape
    except FrameSourceError as e:
        assert "a.tif" in str(e)


def _first_ifd_entry(data: bytes, tag: int) -> int:
    """Byte offset of ``tag``'s 20-byte entry in the first IFD of a BigTIFF."""
    (ifd,) = struct.unpack_from("<Q", data, 8)
    (n,) = struct.unpack_from("<Q", data, ifd)
    for i in range(n):
        at = ifd + 8 + 20 * i
        if struct.unpack_from("<H", data, at)[0] == tag:
            return at
    raise AssertionError(f"tag {tag} not in the first IFD")


def test_tag_count_beyond_the_file_is_refused_before_allocating(
    si_tiff: bytes, tmp_path: Path
) -> None:
    buf = bytearray(si_tiff)
    at = _first_ifd_entry(si_tiff, 270)  # ImageDescription: type 2 (ASCII), count u64 at +4
    struct.pack_into("<Q", buf, at + 4, 3 << 30)  # 3 GiB of description in a 10 KiB file
    path = tmp_path / "a.tif"
    path.write_bytes(bytes(buf))
    with pytest.raises(FrameSourceError) as err, address_space_cap(1 << 30):
        ScanImageTiffSource(path)
    assert "bad_alloc" not in str(err.value) and "page 0" in str(err.value)


def test_tiff_fuzz_base_file_reads(si_tiff: bytes, tmp_path: Path) -> None:
    path = tmp_path / "a.tif"
    path.write_bytes(si_tiff)
    with ScanImageTiffSource(path) as src:
        assert len(list(src)) == 4
    assert struct.unpack_from("<H", si_tiff, 2)[0] == 43  # BigTIFF: the mutations hit real IFDs

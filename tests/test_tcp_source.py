"""TCP frame stream: real sockets on 127.0.0.1, the real `rig imaging send` sender."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from acquisition.sources.scanimage_writer import write_scanimage_tiff
from acquisition.sources.tcp import (
    HEADER_BYTES,
    HEADER_STRUCT,
    StreamError,
    TcpFrameSource,
    decode_header,
    encode_header,
    send_frames,
)

REPO = Path(__file__).resolve().parents[1]


def _frames(n: int, shape=(16, 12), dtype=np.int16, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [(i, i / 30.0, rng.integers(-1000, 1000, size=shape).astype(dtype)) for i in range(n)]


class _Receiver:
    """Run a TcpFrameSource in a thread, collecting frames or the error."""

    def __init__(self, src: TcpFrameSource) -> None:
        self.src = src
        src.open()
        self.frames: list[tuple[int, float, np.ndarray]] = []
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for item in self.src:
                self.frames.append(item)
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()

    def wait(self, timeout_s: float = 10.0) -> None:
        assert self.done.wait(timeout_s), "receiver did not finish"
        self.src.close()


def _raw_client(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5.0)


def _header(**over: object) -> bytes:
    fields = dict(
        magic=b"MRFS", version=1, hlen=48, number=1, t=0.0, ndim=2, code=4, channel=0,
        d0=4, d1=4, d2=0, payload=32,
    )  # fmt: skip
    fields.update(over)
    return HEADER_STRUCT.pack(*fields.values())


def test_header_round_trip() -> None:
    frame = np.arange(12, dtype=np.uint16).reshape(3, 4)
    raw = encode_header(42, 1.25, frame, channel=2)
    assert len(raw) == HEADER_BYTES == 48 and raw[:4] == b"MRFS"
    h = decode_header(raw, max_frame_bytes=1000)
    assert (h.frame_number, h.timestamp_s, h.shape, h.channel) == (42, 1.25, (3, 4), 2)
    assert h.dtype == np.uint16 and h.payload_bytes == 24


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"magic": b"XXXX"}, "magic"),
        ({"version": 2}, "version"),
        ({"hlen": 12}, "header_length"),
        ({"hlen": 5000}, "header_length"),
        ({"number": 0}, "frame_number"),
        ({"t": float("nan")}, "timestamp_s"),
        ({"ndim": 0}, "ndim"),
        ({"ndim": 7}, "ndim"),
        ({"code": 99}, "dtype_code"),
        ({"d0": 0}, "shape"),
        ({"d0": 100_000, "payload": 100_000 * 4 * 2}, "shape"),
        ({"d2": 3}, "shape"),
        ({"payload": 31}, "payload_bytes"),
        ({"d0": 4096, "d1": 4096, "payload": 4096 * 4096 * 2}, "payload_bytes"),
    ],
)
def test_malformed_headers_rejected_naming_the_field(override: dict, field: str) -> None:
    with pytest.raises(StreamError, match=rf"stream byte 96: {field} = "):
        decode_header(_header(**override), max_frame_bytes=1 << 20, stream_offset=96)


def test_round_trip_in_process_with_timestamps_and_indices() -> None:
    frames = _frames(25)
    rx = _Receiver(TcpFrameSource(port=0, accept_timeout_s=5))
    assert rx.src.host == "127.0.0.1"
    assert rx.src._listener is not None and rx.src._listener.getsockname()[0] == "127.0.0.1"
    assert send_frames(frames, port=rx.src.port) == 25
    rx.wait()
    assert rx.error is None
    assert [i for i, _, _ in rx.frames] == list(range(25))
    assert [t for _, t, _ in rx.frames] == pytest.approx([t for _, t, _ in frames])
    for (_, _, a), (_, _, b) in zip(rx.frames, frames, strict=True):
        np.testing.assert_array_equal(a, b)
    assert rx.src.shape == (16, 12) and rx.src.dtype == np.int16 and rx.src.gaps == []


def test_round_trip_through_rig_imaging_send(tmp_path: Path) -> None:
    vols = np.random.default_rng(3).integers(0, 4000, size=(12, 1, 2, 20, 24)).astype(np.int16)
    t_s = np.cumsum(np.full(12, 0.01)) - 0.01
    tif = write_scanimage_tiff(tmp_path / "rec.tif", vols, frame_rate_hz=100.0, timestamps_s=t_s)
    rx = _Receiver(TcpFrameSource(port=0, accept_timeout_s=20, channel=2))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "rig", "imaging", "send", str(tif), "--port", str(rx.src.port),
           "--channel", "1", "--rate", "0"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert "sent 12 frames" in proc.stdout
    rx.wait()
    assert rx.error is None
    assert len(rx.frames) == 12
    for i, t, frame in rx.frames:
        np.testing.assert_array_equal(frame, vols[i, 0, 1])
        assert t == pytest.approx(t_s[i])


def test_gaps_are_reported() -> None:
    frames = [f for f in _frames(8) if f[0] not in (2, 3, 6)]
    rx = _Receiver(TcpFrameSource(port=0, accept_timeout_s=5))
    send_frames(frames, port=rx.src.port)
    rx.wait()
    assert rx.error is None
    assert [i for i, _, _ in rx.frames] == [0, 1, 4, 5, 7]
    assert rx.src.gaps == [(3, 5), (7, 8)] and rx.src.n_missing == 3


def test_oversized_header_rejected_without_allocation() -> None:
    rx = _Receiver(TcpFrameSource(port=0, accept_timeout_s=5, max_frame_bytes=1 << 20))
    tracemalloc.start()
    try:
        with _raw_client(rx.src.port) as c:
            # 60000 x 60000 float64 = 28.8 GB claimed.
            c.sendall(_header(d0=60000, d1=60000, code=8, payload=60000 * 60000 * 8))
            rx.wait()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(rx.error, StreamError)
    assert "payload_bytes = 28800000000" in str(rx.error) and "max_frame_bytes" in str(rx.error)
    assert peak < 4 * 1024 * 1024


def test_disconnect_inside_a_frame_is_an_error() -> None:
    rx = _Receiver(TcpFrameSource(port=0, accept_timeout_s=5))
    with _raw_client(rx.src.port) as c:
        c.sendall(_header() + b"\x00" * 10)  # 10 of 32 payload bytes
    rx.wait()
    assert isinstance(rx.error, StreamError)
    assert "disconnected inside frame 1" in str(rx.error) and "10 of 32" in str(rx.error)


def test_stalled_sender_times_out() -> None:
    rx = _Receiver(TcpFrameSource(port=0, accept_timeout_s=5, stall_timeout_s=0.3))
    with _raw_client(rx.src.port) as c:
        c.sendall(_header()[:20])
        rx.wait()
    assert isinstance(rx.error, StreamError) and "stalled" in str(rx.error)


def test_no_sender_times_out() -> None:
    rx = _Receiver(TcpFrameSource(port=0, accept_timeout_s=0.2))
    rx.wait()
    assert isinstance(rx.error, StreamError) and "no sender connected" in str(rx.error)


def test_close_from_another_thread_stops_waiting() -> None:
    rx = _Receiver(TcpFrameSource(port=0, accept_timeout_s=30))
    rx.src.close()
    assert rx.done.wait(5.0)
    assert rx.frames == []


def test_other_channels_dropped_and_shape_change_rejected() -> None:
    rx = _Receiver(TcpFrameSource(port=0, accept_timeout_s=5, channel=1))
    with _raw_client(rx.src.port) as c:
        a = np.ones((4, 4), np.int16)
        for number, ch in [(1, 1), (1, 2), (2, 1), (2, 2)]:
            c.sendall(encode_header(number, number / 10, a * ch, channel=ch) + (a * ch).tobytes())
        b = np.ones((5, 4), np.int16)
        c.sendall(encode_header(3, 0.3, b, channel=1) + b.tobytes())
        rx.wait()
    assert [int(f[0, 0]) for _, _, f in rx.frames] == [1, 1]
    assert isinstance(rx.error, StreamError) and "shape (5, 4)" in str(rx.error)


def test_sender_paces_at_the_requested_rate() -> None:
    rx = _Receiver(TcpFrameSource(port=0, accept_timeout_s=5))
    t0 = time.monotonic()
    send_frames(_frames(11), port=rx.src.port, rate_hz=100.0)
    elapsed = time.monotonic() - t0
    rx.wait()
    assert len(rx.frames) == 11 and elapsed >= 0.1 * 0.95


def test_sender_reports_no_receiver() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free_port = s.getsockname()[1]
    with pytest.raises(StreamError, match=f"cannot connect to 127.0.0.1:{free_port}"):
        send_frames(_frames(1), port=free_port, connect_timeout_s=0.2)


def test_header_struct_layout_matches_docs() -> None:
    # Offsets documented in docs/imaging_stream.md and motorRigStream.m.
    raw = encode_header(7, 2.5, np.zeros((3, 5), np.uint16), channel=1)
    assert struct.unpack_from("<Q", raw, 8)[0] == 7
    assert struct.unpack_from("<d", raw, 16)[0] == 2.5
    assert raw[24] == 2 and raw[25] == 3
    assert struct.unpack_from("<H", raw, 26)[0] == 1
    assert struct.unpack_from("<3I", raw, 28) == (3, 5, 0)
    assert struct.unpack_from("<Q", raw, 40)[0] == 30


def _offset_table(text: str, pattern: str) -> list[tuple[int, int]]:
    import re

    return [(int(a), int(b)) for a, b in re.findall(pattern, text, flags=re.M)]


def test_matlab_function_and_docs_describe_the_same_layout() -> None:
    expected = [(0, 4), (4, 2), (6, 2), (8, 8), (16, 8), (24, 1), (25, 1), (26, 2), (28, 12),
                (40, 8)]  # fmt: skip
    # The struct itself: field offsets follow from its format.
    sizes = [struct.calcsize("<" + f) for f in ("4s", "H", "H", "Q", "d", "B", "B", "H", "3I", "Q")]
    assert list(zip(np.cumsum([0, *sizes[:-1]]).tolist(), sizes, strict=True)) == expected
    m_file = (REPO / "acquisition/scanimage/motorRigStream.m").read_text()
    assert _offset_table(m_file, r"^%\s+(\d+)\s+(\d+)\s+\S") == expected
    doc = (REPO / "docs/imaging_stream.md").read_text()
    assert _offset_table(doc, r"^\| (\d+) \| (\d+) \|") == expected
    # The MATLAB header assembly uses the same magic, version, length and field order.
    assert "uint8('MRFS')" in m_file and "typecast(uint16([1 48]), 'uint8')" in m_file
    order = ["frameNumberAcqMode", "frameTimestamp", "uint8([2 dtypeCode", "uint16(channel)",
             "uint32([ny nx 0])", "uint64(numel(payload))"]  # fmt: skip
    pos = [m_file.index(s, m_file.index("hdr = [")) for s in order]
    assert pos == sorted(pos)


def test_sender_reports_receiver_going_away() -> None:
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        port = lst.getsockname()[1]
        big = [(i, i / 30, np.zeros((512, 512), np.int16)) for i in range(200)]
        errors: list[BaseException] = []

        def run() -> None:
            try:
                send_frames(big, port=port)
            except BaseException as exc:
                errors.append(exc)

        th = threading.Thread(target=run)
        th.start()
        conn, _ = lst.accept()
        conn.recv(1000)
        conn.close()  # the rig goes away mid-stream
        th.join(timeout=10)
    assert not th.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], StreamError)
    assert "closed the connection after" in str(errors[0])


def test_random_headers_never_pass_unchecked() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    def near(lo: int, hi: int, full: int):  # type: ignore[no-untyped-def]
        return st.one_of(st.integers(lo, hi), st.integers(0, full))

    header = st.builds(
        lambda *f: HEADER_STRUCT.pack(b"MRFS", 1, *f),
        near(40, 300, 2**16 - 1), near(0, 10, 2**64 - 1),
        st.floats(allow_nan=True, allow_infinity=True, width=64),
        near(0, 4, 255), near(0, 9, 255), near(0, 4, 2**16 - 1),
        near(0, 70_000, 2**32 - 1), near(0, 70_000, 2**32 - 1), near(0, 3, 2**32 - 1),
        near(0, 1 << 24, 2**64 - 1),
    )  # fmt: skip

    @settings(max_examples=400, deadline=None)
    @given(st.one_of(header, st.binary(min_size=48, max_size=48)), st.integers(0, 1 << 40))
    def check(raw: bytes, max_frame_bytes: int) -> None:
        try:
            h = decode_header(raw, max_frame_bytes)
        except StreamError:
            return
        assert h.payload_bytes <= max_frame_bytes
        assert h.payload_bytes == int(np.prod(h.shape)) * h.dtype.itemsize
        assert all(1 <= d <= 65536 for d in h.shape) and 48 <= h.header_bytes <= 256

    check()
    # Valid headers with random fields round-trip.

    @settings(max_examples=200, deadline=None)
    @given(
        st.integers(1, 2**53 - 1),
        st.floats(allow_nan=False, allow_infinity=False, width=64),
        st.tuples(st.integers(1, 64), st.integers(1, 64)),
        st.sampled_from([np.int16, np.uint16, np.float32, np.uint8]),
        st.integers(0, 65535),
    )
    def roundtrip(number: int, t_s: float, shape, dtype, channel: int) -> None:
        frame = np.zeros(shape, dtype)
        h = decode_header(encode_header(number, t_s, frame, channel), 1 << 20)
        assert (h.frame_number, h.timestamp_s, h.shape, h.dtype, h.channel) == (
            number, t_s, shape, np.dtype(dtype), channel
        )  # fmt: skip

    roundtrip()


def test_rig_imaging_receive_reports_the_stream() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-u", "-m", "rig", "imaging", "receive", "--port", "0",
           "--accept-timeout", "30"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=REPO)  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # blocks until the receiver is listening
        assert first.startswith("listening on 127.0.0.1:"), first
        port = int(first.rsplit(":", 1)[1])
        frames = [f for f in _frames(10) if f[0] != 4]
        send_frames(frames, port=port)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "received 9 frames (16, 12) int16" in out
    assert "gaps [(5, 6)] (1 missing)" in out and "(30.00 Hz)" in out

"""Imaging stream abuse against the real TCP receiver (issue 9, item 6).

Malformed and oversized headers, a sender that stalls mid-frame or disconnects, frame-number
gaps, a flood of frames and a byte-at-a-time header: each is rejected with a ``StreamError``
naming what was wrong, or reported (gaps), and Python-side allocation stays bounded
(``tracemalloc`` peak). The receiver listens on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from acquisition.sources.tcp import (
    HEADER_STRUCT,
    MAGIC,
    StreamError,
    TcpFrameSource,
    encode_header,
)
from rig.core.config import TcpSource

pytestmark = pytest.mark.faults

FRAME = np.arange(64 * 48, dtype=np.int16).reshape(64, 48)


@dataclass
class Outcome:
    frames: list[int] = field(default_factory=list)
    error: StreamError | None = None
    peak_bytes: int = 0
    wall_s: float = 0.0


def receive(
    sender: Callable[[socket.socket], None], **kw: object
) -> tuple[Outcome, TcpFrameSource]:
    """Run the real receiver against ``sender`` (a function given a connected socket)."""
    src = TcpFrameSource(port=0, accept_timeout_s=5.0, **kw)  # type: ignore[arg-type]
    src.open()
    out = Outcome()

    def client() -> None:
        with socket.create_connection(("127.0.0.1", src.port), timeout=5) as s:
            sender(s)

    t = threading.Thread(target=client, daemon=True)
    t.start()
    tracemalloc.start()
    t0 = time.monotonic()
    try:
        for index, _, frame in src:
            assert frame.shape == FRAME.shape
            out.frames.append(index + 1)
    except StreamError as e:
        out.error = e
    finally:
        out.wall_s = time.monotonic() - t0
        out.peak_bytes = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        src.close()
        t.join(timeout=5)
    return out, src


def frame_bytes(number: int, frame: np.ndarray = FRAME) -> bytes:
    return encode_header(number, number / 30.0, frame) + frame.tobytes()


def header(**override: object) -> bytes:
    fields = dict(
        magic=MAGIC, version=1, hlen=48, number=1, t_s=0.0, ndim=2, code=4, channel=0,
        d0=64, d1=48, d2=0, payload=64 * 48 * 2,
    )  # fmt: skip
    fields.update(override)
    return HEADER_STRUCT.pack(*fields.values())


def test_receiver_binds_loopback_unless_configured() -> None:
    assert TcpSource(kind="tcp").host == "127.0.0.1"
    src = TcpFrameSource(port=0)
    src.open()
    try:
        assert src._listener is not None
        assert src._listener.getsockname()[0] == "127.0.0.1"
    finally:
        src.close()


@pytest.mark.parametrize(
    ("garbage", "field"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(30), "magic"),  # a stray HTTP client
        (header(version=2), "version"),
        (header(hlen=4096), "header_length"),
        (header(ndim=0), "ndim"),
        (header(code=99), "dtype_code"),
        (header(payload=12), "payload_bytes"),
        (header(number=0), "frame_number"),
        (header(t_s=float("nan")), "timestamp_s"),
        (header(d2=5), "shape"),
    ],
)
def test_malformed_header_after_good_frames_is_rejected_naming_field_and_offset(
    garbage: bytes, field: str
) -> None:
    good = frame_bytes(1) + frame_bytes(2)
    out, _ = receive(lambda s: s.sendall(good + garbage))
    assert out.frames == [1, 2]
    assert out.error is not None and field in str(out.error)
    assert f"stream byte {len(good)}" in str(out.error)


def test_oversized_frame_is_refused_before_any_allocation() -> None:
    # a consistent header for a 65536 x 65536 float64 frame: 32 GiB
    huge = header(d0=65536, d1=65536, code=8, payload=65536 * 65536 * 8)
    out, _ = receive(lambda s: s.sendall(huge + bytes(1000)), max_frame_bytes=1 << 20)
    print(f"\n32 GiB header: {out.error}; Python peak {out.peak_bytes / 1e3:.0f} kB")
    assert out.error is not None and "max_frame_bytes" in str(out.error)
    assert out.peak_bytes < 1 << 20


def test_sender_stalling_mid_frame_times_out_with_where_it_stopped() -> None:
    def stall(s: socket.socket) -> None:
        data = frame_bytes(1) + frame_bytes(2)
        s.sendall(data[: len(data) - 1000])  # frame 2 is 1000 bytes short
        # hold the connection open, silent, until the receiver gives up and closes it
        s.settimeout(5.0)
        with contextlib.suppress(OSError):
            s.recv(1)

    out, _ = receive(stall, stall_timeout_s=0.3)
    assert out.frames == [1]
    assert out.error is not None and "stalled" in str(out.error) and "frame 2" in str(out.error)
    assert out.wall_s < 3.0


@pytest.mark.parametrize("cut", [10, 48, 48 + 3000])
def test_disconnect_inside_a_frame_is_reported(cut: int) -> None:
    data = frame_bytes(1) + frame_bytes(2)[:cut]
    out, _ = receive(lambda s: s.sendall(data))
    assert out.frames == [1]
    assert out.error is not None and "disconnected inside" in str(out.error)


def test_clean_disconnect_between_frames_ends_the_stream() -> None:
    out, src = receive(lambda s: s.sendall(frame_bytes(1) + frame_bytes(2)))
    assert out.frames == [1, 2] and out.error is None and src.n_missing == 0


def test_frame_number_gaps_are_counted_and_reordering_refused() -> None:
    numbers = [1, 2, 5, 6, 10]
    out, src = receive(lambda s: s.sendall(b"".join(frame_bytes(n) for n in numbers)))
    assert out.frames == numbers and out.error is None
    assert src.gaps == [(3, 5), (7, 10)] and src.n_missing == 5
    out, src = receive(lambda s: s.sendall(b"".join(frame_bytes(n) for n in [1, 2, 2])))
    assert out.error is not None and "out of order" in str(out.error)


def test_header_trickled_one_byte_at_a_time_is_accepted() -> None:
    def trickle(s: socket.socket) -> None:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = frame_bytes(1)
        for i in range(48):
            s.sendall(data[i : i + 1])
        s.sendall(data[48:] + frame_bytes(2))

    out, _ = receive(trickle, stall_timeout_s=2.0)
    assert out.frames == [1, 2] and out.error is None


def test_a_flood_of_frames_keeps_memory_flat() -> None:
    n = 3000  # 18 MB of pixels; the receiver may hold one frame at a time
    blob = b"".join(frame_bytes(i + 1) for i in range(n))
    out, _ = receive(lambda s: s.sendall(blob))
    print(
        f"\n{n} frames ({len(blob) / 1e6:.1f} MB) in {out.wall_s:.2f} s, "
        f"Python peak {out.peak_bytes / 1e3:.0f} kB"
    )
    assert out.frames == list(range(1, n + 1))
    # the frame-number list kept here is ~100 kB of it; the stream itself is 18.6 MB
    assert out.peak_bytes < 1 << 20


def test_second_client_does_not_disturb_the_first() -> None:
    """A stray connection while ScanImage streams is left waiting, not mixed in."""
    stray_done = threading.Event()
    holder: dict[str, int] = {}

    def sender(s: socket.socket) -> None:
        s.sendall(frame_bytes(1))
        try:
            with socket.create_connection(("127.0.0.1", holder["port"]), timeout=2) as x:
                x.sendall(b"\xff" * 200)
        except OSError:
            pass
        stray_done.set()
        s.sendall(frame_bytes(2))

    src = TcpFrameSource(port=0, accept_timeout_s=5.0)
    src.open()
    holder["port"] = src.port
    t = threading.Thread(target=lambda: _with_conn(src.port, sender), daemon=True, name="scanimage")
    t.start()
    got = []
    try:
        for index, _, _frame in src:
            got.append(index + 1)
    finally:
        src.close()
        t.join(5)
    assert stray_done.is_set() and got == [1, 2]


def _with_conn(port: int, fn: Callable[[socket.socket], None]) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        fn(s)


def test_header_struct_is_48_bytes_little_endian() -> None:
    assert HEADER_STRUCT.size == 48 and struct.calcsize("<4sHHQdBBH3IQ") == 48

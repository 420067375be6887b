"""Frames over TCP: the wire header, a bounds-checked receiver (a ``FrameSource``), a sender.

The rig listens (127.0.0.1 by default); ScanImage's user function ``motorRigStream.m`` (or
``rig imaging send``) connects and sends, per frame, a 48-byte little-endian header followed by
the pixels in C order (row-major ``(Y, X)``). ``docs/imaging_stream.md`` is the reference;
the layout:

====== ==== ===================================================================
offset size field
====== ==== ===================================================================
0      4    magic ``b"MRFS"``
4      2    u16 version (1)
6      2    u16 header length in bytes (48 for version 1; up to 256, extra skipped)
8      8    u64 frame number (ScanImage's, 1-based)
16     8    f64 timestamp, s (``frameTimestamps_sec``)
24     1    u8 ndim (2)
25     1    u8 dtype code (:data:`DTYPE_CODES`)
26     2    u16 channel (ScanImage channel number, 1-based; 0 = unspecified)
28     12   3 x u32 shape; entries past ndim are 0
40     8    u64 payload bytes (= prod(shape) x itemsize)
====== ==== ===================================================================

A clean disconnect between frames ends the stream; one inside a frame is an error.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from acquisition.sources.base import FrameSource, FrameSourceError, FrameTuple

log = logging.getLogger(__name__)

MAGIC = b"MRFS"
VERSION = 1
HEADER_STRUCT = struct.Struct("<4sHHQdBBH3IQ")
HEADER_BYTES = HEADER_STRUCT.size  # 48
MAX_HEADER_BYTES = 256
MAX_DIM = 65536
DTYPE_CODES: dict[int, np.dtype] = {
    1: np.dtype("<u1"),
    2: np.dtype("<i1"),
    3: np.dtype("<u2"),
    4: np.dtype("<i2"),
    5: np.dtype("<u4"),
    6: np.dtype("<i4"),
    7: np.dtype("<f4"),
    8: np.dtype("<f8"),
}
_CODE_OF = {dt: code for code, dt in DTYPE_CODES.items()}


class StreamError(FrameSourceError):
    """A bad header or a broken connection; ``byte_offset`` is where in the stream it was seen."""


@dataclass(frozen=True)
class FrameHeader:
    """A decoded, validated frame header."""

    frame_number: int
    timestamp_s: float
    shape: tuple[int, ...]
    dtype: np.dtype
    channel: int
    payload_bytes: int
    header_bytes: int


def encode_header(
    frame_number: int, timestamp_s: float, frame: np.ndarray, channel: int = 0
) -> bytes:
    """The 48-byte header for ``frame`` (2-D, a dtype in :data:`DTYPE_CODES`)."""
    dt = frame.dtype.newbyteorder("<") if frame.dtype.byteorder == ">" else frame.dtype
    code = _CODE_OF.get(np.dtype(dt).newbyteorder("<"))
    if code is None:
        raise ValueError(f"dtype {frame.dtype} cannot be streamed; use one of {DTYPE_CODES}")
    if not 1 <= frame.ndim <= 3:
        raise ValueError(f"frame must have 1-3 dimensions, got shape {frame.shape}")
    shape = [*frame.shape, 0, 0, 0][:3]
    return HEADER_STRUCT.pack(
        MAGIC, VERSION, HEADER_BYTES, frame_number, float(timestamp_s), frame.ndim, code,
        channel, *shape, frame.nbytes,
    )  # fmt: skip


def decode_header(raw: bytes, max_frame_bytes: int, stream_offset: int = 0) -> FrameHeader:
    """Validate every field of a 48-byte header before anything is allocated.

    Raises
    ------
    StreamError
        Naming the field, its value, what was expected and the stream byte offset.
    """
    if len(raw) != HEADER_BYTES:
        raise StreamError(f"header at stream byte {stream_offset}: {len(raw)} bytes, need 48")
    magic, version, hlen, number, t_s, ndim, code, channel, d0, d1, d2, payload = (
        HEADER_STRUCT.unpack(raw)
    )

    def bad(field: str, value: object, expected: str) -> StreamError:
        return StreamError(
            f"frame header at stream byte {stream_offset}: {field} = {value!r}, expected {expected}"
        )

    if magic != MAGIC:
        raise bad("magic", magic, f"{MAGIC!r} (not a motor-rig frame stream, or out of sync)")
    if version != VERSION:
        raise bad("version", version, f"{VERSION}")
    if not HEADER_BYTES <= hlen <= MAX_HEADER_BYTES:
        raise bad("header_length", hlen, f"{HEADER_BYTES}..{MAX_HEADER_BYTES}")
    if number < 1 or number >= 2**53:
        raise bad("frame_number", number, "1..2^53 (ScanImage numbers frames from 1)")
    if not np.isfinite(t_s):
        raise bad("timestamp_s", t_s, "a finite number")
    if not 1 <= ndim <= 3:
        raise bad("ndim", ndim, "1..3")
    if code not in DTYPE_CODES:
        raise bad("dtype_code", code, f"one of {sorted(DTYPE_CODES)}")
    dims = (d0, d1, d2)
    shape = dims[:ndim]
    if any(not 1 <= d <= MAX_DIM for d in shape) or any(d != 0 for d in dims[ndim:]):
        raise bad("shape", dims, f"{ndim} dims of 1..{MAX_DIM}, then zeros")
    dtype = DTYPE_CODES[code]
    expect = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if payload != expect:
        raise bad("payload_bytes", payload, f"{expect} for shape {shape} of {dtype}")
    if payload > max_frame_bytes:
        raise bad("payload_bytes", payload, f"at most max_frame_bytes = {max_frame_bytes}")
    return FrameHeader(int(number), float(t_s), tuple(shape), dtype, int(channel), payload, hlen)


class TcpFrameSource(FrameSource):
    """Listen for one sender and yield its frames, checking every header first.

    Parameters
    ----------
    host, port : str, int
        Where to listen; ``port=0`` picks a free port (read ``port`` after :meth:`open`).
    max_frame_bytes : int
        Largest payload accepted; a header asking for more is rejected before allocating.
    channel : int or None
        Keep only frames of this ScanImage channel (others are read and dropped).
    accept_timeout_s : float
        How long :meth:`__iter__` waits for the sender to connect.
    stall_timeout_s : float
        Longest silence tolerated inside a connection (between or within frames).
    expected_shape : tuple of int, optional
        Reject frames of any other shape; otherwise the first frame's shape is locked in.

    Attributes
    ----------
    gaps : list of tuple of int
        ``(expected_frame_number, received_frame_number)`` for every jump in numbering.
    n_missing : int
        Frames missing according to the numbering.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 5555,
        max_frame_bytes: int = 64 * 1024 * 1024,
        channel: int | None = None,
        accept_timeout_s: float = 30.0,
        stall_timeout_s: float = 5.0,
        expected_shape: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(paced=False)  # a live stream arrives at its own pace
        self.host, self.port = host, port
        self.max_frame_bytes = max_frame_bytes
        self.channel = channel
        self.accept_timeout_s = accept_timeout_s
        self.stall_timeout_s = stall_timeout_s
        self.shape = expected_shape or (0, 0)
        self._shape_locked = expected_shape is not None
        self.dtype = np.dtype("<i2")
        self.frame_rate_hz = None
        self.n_frames = None
        self.gaps: list[tuple[int, int]] = []
        self.n_missing = 0
        self.bytes_received = 0
        self._listener: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        if self._listener is not None:
            return
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            lst.bind((self.host, self.port))
        except OSError as exc:
            lst.close()
            raise StreamError(f"cannot listen on {self.host}:{self.port}: {exc}") from exc
        lst.listen(1)
        self.port = lst.getsockname()[1]
        self._listener = lst

    def close(self) -> None:
        super().close()
        with self._lock:
            for s in (self._conn, self._listener):
                if s is not None:
                    with contextlib.suppress(OSError):  # already disconnected
                        s.shutdown(socket.SHUT_RDWR)
                    s.close()
            self._conn = self._listener = None

    # ------------------------------------------------------------------ receive
    def _accept(self) -> socket.socket:
        if self._listener is None:
            self.open()
        assert self._listener is not None
        self._listener.settimeout(self.accept_timeout_s)
        try:
            conn, _ = self._listener.accept()
        except TimeoutError as exc:
            raise StreamError(
                f"no sender connected to {self.host}:{self.port} within {self.accept_timeout_s} s"
            ) from exc
        except OSError as exc:
            if self._stop.is_set():
                raise StreamError("receiver closed while waiting for a sender") from exc
            raise
        conn.settimeout(self.stall_timeout_s)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conn = conn
        return conn

    def _read_into(
        self, conn: socket.socket, buf: memoryview, what: str, at_boundary: bool
    ) -> bool:
        """Fill ``buf``; False on a clean EOF before the first byte when ``at_boundary``."""
        got = 0
        while got < len(buf):
            try:
                n = conn.recv_into(buf[got:])
            except TimeoutError as exc:
                raise StreamError(
                    f"sender stalled: no data for {self.stall_timeout_s} s while reading {what} "
                    f"(stream byte {self.bytes_received})"
                ) from exc
            except OSError as exc:
                if self._stop.is_set():
                    return False
                raise StreamError(f"connection error while reading {what}: {exc}") from exc
            if n == 0:
                if got == 0 and at_boundary:
                    return False
                raise StreamError(
                    f"sender disconnected inside {what}: got {got} of {len(buf)} bytes "
                    f"(stream byte {self.bytes_received})"
                )
            got += n
            self.bytes_received += n
        return True

    def _frames(self) -> Iterator[FrameTuple]:
        conn = self._accept()
        head = bytearray(HEADER_BYTES)
        extra = bytearray(MAX_HEADER_BYTES - HEADER_BYTES)
        last_number: int | None = None
        while not self._stop.is_set():
            offset = self.bytes_received
            if not self._read_into(conn, memoryview(head), "a frame header", at_boundary=True):
                return
            hdr = decode_header(bytes(head), self.max_frame_bytes, offset)
            if hdr.header_bytes > HEADER_BYTES:
                self._read_into(
                    conn, memoryview(extra)[: hdr.header_bytes - HEADER_BYTES], "header", False
                )
            what = f"frame {hdr.frame_number} ({hdr.payload_bytes} bytes)"
            if self.channel is not None and hdr.channel not in (0, self.channel):
                self._discard(conn, hdr.payload_bytes, what)
                continue
            if len(hdr.shape) != 2:
                raise StreamError(f"{what}: shape {hdr.shape}: expected a 2-D (Y, X) frame")
            if self._shape_locked and (hdr.shape != self.shape or hdr.dtype != self.dtype):
                raise StreamError(
                    f"{what}: shape {hdr.shape} {hdr.dtype} differs from {self.shape} {self.dtype}"
                )
            frame = np.empty(hdr.shape, hdr.dtype)
            if not self._read_into(conn, frame.data.cast("B"), what, False):
                return
            if not self._shape_locked:
                self.shape, self.dtype = (hdr.shape[0], hdr.shape[1]), hdr.dtype
                self._shape_locked = True
            if last_number is not None:
                if hdr.frame_number <= last_number:
                    raise StreamError(
                        f"frame number {hdr.frame_number} after {last_number}: out of order"
                    )
                if hdr.frame_number != last_number + 1:
                    self.gaps.append((last_number + 1, hdr.frame_number))
                    self.n_missing += hdr.frame_number - last_number - 1
                    log.warning(
                        "frame stream gap: expected frame %d, got %d (%d missing)",
                        last_number + 1,
                        hdr.frame_number,
                        hdr.frame_number - last_number - 1,
                    )
            last_number = hdr.frame_number
            yield hdr.frame_number - 1, hdr.timestamp_s, frame

    def _discard(self, conn: socket.socket, n: int, what: str) -> None:
        scratch = bytearray(min(n, 1 << 20))
        left = n
        while left:
            k = min(left, len(scratch))
            self._read_into(conn, memoryview(scratch)[:k], what, False)
            left -= k


# ---------------------------------------------------------------------------- sender
def send_frames(
    frames: Iterable[FrameTuple],
    host: str = "127.0.0.1",
    port: int = 5555,
    rate_hz: float | None = None,
    channel: int = 0,
    connect_timeout_s: float = 10.0,
    first_frame_number: int = 1,
    stop: threading.Event | None = None,
) -> int:
    """Connect to a receiver and send frames as ScanImage's user function would.

    Parameters
    ----------
    frames : iterable of (index, t_s, frame)
        E.g. a :class:`FrameSource`; the frame number sent is ``first_frame_number + index``.
    rate_hz : float or None
        Send at this rate (frame ``k`` no earlier than ``k / rate_hz`` after the first); None or
        0 sends as fast as the receiver takes them.
    connect_timeout_s : float
        Keep retrying the connection this long (the receiver may not be listening yet).

    Returns
    -------
    int
        Frames sent.
    """
    stop = stop or threading.Event()
    deadline = time.monotonic() + connect_timeout_s
    while True:
        try:
            sock = socket.create_connection((host, port), timeout=max(connect_timeout_s, 0.1))
            break
        except OSError as exc:
            if time.monotonic() >= deadline:
                raise StreamError(f"cannot connect to {host}:{port}: {exc}") from exc
            if stop.wait(0.05):  # retry pacing, not a test wait
                return 0
    sent = 0
    with sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        t0 = time.monotonic()
        for index, t_s, frame in frames:
            if rate_hz:
                due = t0 + sent / rate_hz
                now = time.monotonic()
                if due > now and stop.wait(due - now):
                    break
            if stop.is_set():
                break
            arr = np.ascontiguousarray(frame)
            if arr.dtype.byteorder == ">":
                arr = arr.astype(arr.dtype.newbyteorder("<"))
            try:
                sock.sendall(encode_header(first_frame_number + index, t_s, arr, channel))
                sock.sendall(arr.data.cast("B"))
            except OSError as exc:
                raise StreamError(
                    f"receiver {host}:{port} closed the connection after {sent} frames "
                    f"(at frame number {first_frame_number + index}): {exc}"
                ) from exc
            sent += 1
    return sent

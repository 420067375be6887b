"""A minimal BigTIFF IFD walker: just enough to move offsets and to prove a file is whole.

scanimage-tiff-reader reads pixel data past the end of a truncated file without complaint (and
fails on a cut IFD chain with "unrecognized element type"), so the reader checks every page's
strips against the file size with :func:`check_pages` first, and reports the first bad page.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

# TIFF field types -> bytes per value (BigTIFF types 16-18 included).
TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8,
             13: 4, 16: 8, 17: 8, 18: 8}  # fmt: skip
_INT_FMT = {3: "H", 4: "I", 16: "Q"}
STRIP_OFFSETS, STRIP_BYTE_COUNTS, TILE_OFFSETS, TILE_BYTE_COUNTS = 273, 279, 324, 325


class TiffStructureError(ValueError):
    """The file's TIFF structure is broken; ``page`` and ``byte_offset`` say where."""

    def __init__(self, path: Path, page: int, byte_offset: int, message: str) -> None:
        self.path, self.page, self.byte_offset = path, page, byte_offset
        super().__init__(f"{path}: page {page} (IFD at byte {byte_offset}): {message}")


@dataclass
class Ifd:
    """One IFD: where it is, its raw 20-byte entries, and the next-IFD pointer."""

    page: int
    offset: int
    entries: bytearray
    next_offset: int

    def entry(self, i: int) -> tuple[int, int, int, bool]:
        """``(tag, type, count, inline)`` of entry ``i``."""
        tag, typ, count = struct.unpack_from("<HHQ", self.entries, 20 * i)
        return tag, typ, count, TYPE_SIZE.get(typ, 1) * count <= 8

    def __len__(self) -> int:
        return len(self.entries) // 20


def first_ifd_offset(fh: BinaryIO, path: Path) -> int:
    fh.seek(0)
    head = fh.read(16)
    if len(head) < 16:
        raise TiffStructureError(path, 0, 0, f"file is {len(head)} bytes: no BigTIFF header")
    bo, magic, osize, _, first = struct.unpack("<2sHHHQ", head)
    if bo != b"II" or magic != 43 or osize != 8:
        raise TiffStructureError(path, 0, 0, f"not a little-endian BigTIFF (header {head[:8]!r})")
    return int(first)


def iter_ifds(fh: BinaryIO, path: Path, pointer_shift: int = 0) -> Iterator[Ifd]:
    """Yield every IFD in chain order; raise :class:`TiffStructureError` where the chain breaks.

    ``pointer_shift`` is added to every next-IFD pointer read (for a file whose bytes were moved
    but whose pointers were not yet); ``Ifd.next_offset`` is the shifted value.
    """
    size = os.fstat(fh.fileno()).st_size
    ifd = first_ifd_offset(fh, path)
    seen: set[int] = set()
    page = 0
    while ifd:
        if ifd in seen:
            raise TiffStructureError(path, page, ifd, "IFD chain loops back")
        if ifd + 8 > size:
            raise TiffStructureError(
                path, page, ifd, f"IFD lies past the end of the file ({size} bytes): truncated"
            )
        seen.add(ifd)
        fh.seek(ifd)
        (n,) = struct.unpack("<Q", fh.read(8))
        if n == 0 or n > 4096 or ifd + 16 + 20 * n > size:
            raise TiffStructureError(
                path, page, ifd, f"IFD with {n} entries does not fit in {size} bytes: truncated"
            )
        entries = bytearray(fh.read(20 * n))
        (nxt,) = struct.unpack("<Q", fh.read(8))
        nxt = nxt + pointer_shift if nxt else 0
        yield Ifd(page, ifd, entries, int(nxt))
        ifd = int(nxt)
        page += 1


def int_values(fh: BinaryIO, ifd: Ifd, i: int, pointer_shift: int = 0) -> tuple[int, ...]:
    """The integer values of entry ``i`` (inline or out of line, at offset + ``pointer_shift``).

    Raises
    ------
    ValueError
        A non-integer type, or values that would lie past the end of the file.
    """
    tag, typ, count, inline = ifd.entry(i)
    fmt = _INT_FMT.get(typ)
    if fmt is None:
        raise ValueError(f"tag {tag} has type {typ}, expected an integer type (3, 4 or 16)")
    width = struct.calcsize("<" + fmt)
    size = os.fstat(fh.fileno()).st_size
    if count * width > size:
        raise ValueError(f"tag {tag} claims {count} values: more than the file holds")
    layout = f"<{count}{fmt}"
    if inline:
        return struct.unpack_from(layout, ifd.entries, 20 * i + 12)
    (off,) = struct.unpack_from("<Q", ifd.entries, 20 * i + 12)
    fh.seek(off + pointer_shift)
    raw = fh.read(count * width)
    if len(raw) != count * width:
        raise ValueError(f"tag {tag} values at byte {off + pointer_shift} lie past the end")
    return struct.unpack(layout, raw)


def check_pages(path: str | Path) -> int:
    """Walk every IFD and check each page's strips lie inside the file; return the page count.

    Raises
    ------
    TiffStructureError
        Naming the first page whose IFD or pixel data is missing or out of bounds.
    """
    path = Path(path)
    size = path.stat().st_size
    n_pages = 0
    with open(path, "rb") as fh:
        for ifd in iter_ifds(fh, path):
            offsets: tuple[int, ...] = ()
            counts: tuple[int, ...] = ()
            try:
                for i in range(len(ifd)):
                    tag, typ, count, inline = ifd.entry(i)
                    if not inline:
                        # Every out-of-line value must lie inside the file: a damaged count
                        # (e.g. ImageDescription's) otherwise makes the C reader allocate it.
                        (off,) = struct.unpack_from("<Q", ifd.entries, 20 * i + 12)
                        n_bytes = TYPE_SIZE.get(typ, 1) * count
                        if off + n_bytes > size:
                            raise ValueError(
                                f"tag {tag}: {n_bytes} bytes of values at byte {off} run past "
                                f"the end of the file ({size} bytes)"
                            )
                    if tag in (STRIP_OFFSETS, TILE_OFFSETS):
                        offsets = int_values(fh, ifd, i)
                    elif tag in (STRIP_BYTE_COUNTS, TILE_BYTE_COUNTS):
                        counts = int_values(fh, ifd, i)
            except ValueError as exc:
                raise TiffStructureError(path, ifd.page, ifd.offset, f"corrupt: {exc}") from exc
            if not offsets or len(offsets) != len(counts):
                raise TiffStructureError(path, ifd.page, ifd.offset, "no strip offsets/byte counts")
            end = max(o + c for o, c in zip(offsets, counts, strict=True))
            if end > size:
                raise TiffStructureError(
                    path,
                    ifd.page,
                    ifd.offset,
                    f"pixel data ends at byte {end} but the file has {size} bytes: truncated",
                )
            n_pages += 1
    return n_pages

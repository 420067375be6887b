"""Read ScanImage TIFF files or folders as a :class:`FrameSource` (scanimage-tiff-reader).

One channel and one z-plane are delivered, de-interleaved with the layout in the file's static
metadata (:class:`PageLayout`); ``t_frame_s`` comes from each page's ``frameTimestamps_sec``
(either header style). Files in a folder are taken in ScanImage's numbering order
(``name_00001_00002.tif``: acquisition, then file), compared numerically. Pixel data are read a
bounded chunk of pages at a time, never a whole file.

Every file is checked before it is read: scanimage-tiff-reader reads past the end of a truncated
file without complaint, so a truncated or corrupt file raises :class:`FrameSourceError` naming the
file, the page and the frame.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from ScanImageTiffReader import ScanImageTiffReader

from acquisition.sources.base import FrameSource, FrameSourceError, FrameTuple
from acquisition.sources.bigtiff import TiffStructureError, check_pages
from acquisition.sources.scanimage_meta import (
    SI_MAGIC,
    MetadataError,
    PageLayout,
    parse_frame_header,
    parse_static_metadata,
)

_TIFF_SUFFIXES = {".tif", ".tiff"}
DEFAULT_CHUNK_BYTES = 32 * 1024 * 1024


def _natural_key(p: Path) -> list[Any]:
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", p.name)]


def list_scanimage_files(path: str | Path) -> list[Path]:
    """The TIFF files of a recording: ``path`` itself, or a folder's ``.tif`` files in order."""
    p = Path(path)
    if p.is_dir():
        files = sorted(
            (f for f in p.iterdir() if f.suffix.lower() in _TIFF_SUFFIXES), key=_natural_key
        )
        if not files:
            raise FrameSourceError(f"{p}: folder holds no .tif/.tiff files")
        return files
    if not p.exists():
        raise FrameSourceError(f"{p}: no such file or folder")
    return [p]


def _raw_static_text(path: Path) -> str:
    """The static block read straight from byte 16, for describing a file the reader rejects."""
    with open(path, "rb") as fh:
        fh.seek(16)
        head = fh.read(16)
        if len(head) < 16:
            return ""
        magic, _, n_text, n_roi = struct.unpack("<IIII", head)
        if magic != SI_MAGIC or n_text + n_roi > 64 * 1024 * 1024:
            return ""
        text = fh.read(n_text).rstrip(b"\x00").decode("utf-8", "replace")
        roi = fh.read(n_roi).rstrip(b"\x00").decode("utf-8", "replace")
    return text + ("\n\n" + roi if roi else "")


def read_metadata(path: str | Path) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """``(raw metadata text, flat SI dict, RoiGroups)`` of one ScanImage file."""
    path = Path(path)
    try:
        with ScanImageTiffReader(str(path)) as r:
            text = r.metadata()
    except Exception as exc:  # the C reader raises bare Exception with its log text
        raise FrameSourceError(f"{path}: cannot open with scanimage-tiff-reader: {exc}") from exc
    try:
        si, rois = parse_static_metadata(text)
    except MetadataError as exc:
        raise FrameSourceError(f"{path}: {exc}") from exc
    return text, si, rois


class ScanImageTiffSource(FrameSource):
    """One channel and plane of a ScanImage recording (file or folder).

    Parameters
    ----------
    path : path
        A ``.tif`` file or a folder of them (one acquisition).
    channel : int
        Saved-channel index: 0 is the first channel in ``SI.hChannels.channelSave``.
    plane : int
        z-plane index among the real slices (flyback frames are skipped).
    paced : bool
        Deliver at the recorded timestamps.
    chunk_bytes : int
        Upper bound on pixel bytes read from disk at once.

    Attributes
    ----------
    files : list of Path
    layout : PageLayout
    si : dict
        Flat static metadata of the first file.
    shape, dtype, frame_rate_hz, n_frames
        ``(Y, X)``, int16, the per-plane rate, frames of this channel/plane in all files.
    last_header : dict
        The parsed header of the frame just yielded (``auxTrigger0..3`` edge times in s,
        ``I2CData``, ``frameNumbers``, ...), whatever style the file used.
    """

    def __init__(
        self,
        path: str | Path,
        channel: int = 0,
        plane: int = 0,
        paced: bool = False,
        chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    ) -> None:
        super().__init__(paced=paced)
        self.path = Path(path)
        self.channel = channel
        self.plane = plane
        self.chunk_bytes = chunk_bytes
        self.last_header: dict[str, Any] = {}
        self.files = list_scanimage_files(self.path)
        # Structure first: the C reader cannot even open a file whose IFD chain is cut.
        try:
            first_pages = check_pages(self.files[0])
        except TiffStructureError as exc:
            try:
                self.layout = PageLayout.from_si(
                    parse_static_metadata(_raw_static_text(exc.path))[0]
                )
            except MetadataError:
                raise FrameSourceError(
                    f"{self.files[0]}: truncated or corrupt at page {exc.page} (frame 0 or "
                    f"earlier; static metadata unreadable): {str(exc).split(': ', 2)[-1]}"
                ) from exc
            raise self._truncated(self.files[0], 0, exc) from exc
        self.metadata_text, self.si, self.roi_groups = read_metadata(self.files[0])
        try:
            self.layout = PageLayout.from_si(self.si)
        except MetadataError as exc:
            raise FrameSourceError(f"{self.files[0]}: {exc}") from exc
        if not 0 <= channel < self.layout.n_channels:
            raise FrameSourceError(
                f"{self.files[0]}: channel index {channel} out of range: the file saved channels "
                f"{list(self.layout.channels_saved)} (indices 0..{self.layout.n_channels - 1})"
            )
        if not 0 <= plane < self.layout.n_slices:
            raise FrameSourceError(
                f"{self.files[0]}: plane {plane} out of range: {self.layout.n_slices} slice(s)"
            )
        pages = [first_pages]
        for f in self.files[1:]:
            try:
                pages.append(check_pages(f))
            except TiffStructureError as exc:
                raise self._truncated(f, sum(pages), exc) from exc
        self._pages_per_file = pages
        self._file_start = np.concatenate([[0], np.cumsum(pages)]).astype(int)
        with ScanImageTiffReader(str(self.files[0])) as r:
            shp = r.shape()
            self.dtype = np.dtype(r.dtype())
        self.shape = (int(shp[-2]), int(shp[-1]))
        self.frame_rate_hz = self.layout.volume_rate_hz
        self.n_frames = len(self._target_pages())

    # ------------------------------------------------------------------ layout
    def _truncated(self, f: Path, first_page: int, exc: TiffStructureError) -> FrameSourceError:
        what = str(exc).split(": ", 2)[-1]
        return FrameSourceError(
            f"{f}: truncated or corrupt at page {exc.page} "
            f"({self._describe(first_page + exc.page)}): {what}"
        )

    def _describe(self, page: int) -> str:
        lay = self.layout
        vol, rest = divmod(page, lay.pages_per_volume)
        slot, ch = divmod(rest, lay.n_channels)
        z, rep = divmod(slot, lay.n_repeats)
        kind = "flyback" if z >= lay.n_slices else f"plane {z}"
        return f"frame {vol * lay.n_repeats + rep} of {kind}, channel index {ch}"

    def _target_pages(self) -> list[int]:
        """Global page indices of this channel/plane, in frame order (complete frames only)."""
        lay = self.layout
        total = int(self._file_start[-1])
        pages = []
        n_vol = -(-total // lay.pages_per_volume)
        for v in range(n_vol):
            for r in range(lay.n_repeats):
                g = lay.page_index(v, self.plane, self.channel, r)
                if g < total:
                    pages.append(g)
        return pages

    # ------------------------------------------------------------------ reading
    def _frames(self) -> Iterator[FrameTuple]:
        targets = np.asarray(self._target_pages(), dtype=np.int64)
        file_of = np.searchsorted(self._file_start, targets, side="right") - 1
        page_bytes = self.nbytes_per_frame
        frame_index = 0
        first_number: int | None = None
        for fi, f in enumerate(self.files):
            local = targets[file_of == fi] - self._file_start[fi]
            if local.size == 0:
                continue
            try:
                reader = ScanImageTiffReader(str(f))
            except Exception as exc:
                raise FrameSourceError(
                    f"{f}: cannot open with scanimage-tiff-reader: {exc}"
                ) from exc
            with reader:
                file_shape = tuple(int(d) for d in reader.shape()[1:])
                if file_shape != self.shape or np.dtype(reader.dtype()) != self.dtype:
                    raise FrameSourceError(
                        f"{f}: pages are {file_shape} {np.dtype(reader.dtype())}, but "
                        f"{self.files[0].name} has {self.shape} {self.dtype}: not one acquisition"
                    )
                i = 0
                while i < local.size:
                    # A chunk: consecutive target pages whose span fits the byte budget.
                    j = i + 1
                    while (
                        j < local.size
                        and (local[j] - local[i] + 1) * page_bytes <= self.chunk_bytes
                    ):
                        j += 1
                    beg, end = int(local[i]), int(local[j - 1]) + 1
                    try:
                        block = reader.data(beg=beg, end=end)
                    except Exception as exc:
                        raise FrameSourceError(
                            f"{f}: cannot read pages {beg}..{end - 1} "
                            f"({self._describe(int(self._file_start[fi]) + beg)}): {exc}"
                        ) from exc
                    for p in local[i:j]:
                        g = int(self._file_start[fi] + p)
                        hdr = self._header(reader, f, int(p), g)
                        self.last_header = hdr
                        number = hdr.get("frameNumbers")
                        if isinstance(number, (int, float)):
                            first_number = self._check_number(
                                f, int(p), g, int(number), first_number
                            )
                        t_s = hdr.get("frameTimestamps_sec")
                        if not isinstance(t_s, (int, float)):
                            t_s = frame_index / self.layout.volume_rate_hz
                        yield frame_index, float(t_s), block[p - beg]
                        frame_index += 1
                    i = j

    def _header(self, reader: ScanImageTiffReader, f: Path, page: int, g: int) -> dict[str, Any]:
        try:
            return parse_frame_header(reader.description(page))
        except (MetadataError, Exception) as exc:
            raise FrameSourceError(
                f"{f}: page {page} ({self._describe(g)}): bad frame header: {exc}"
            ) from exc

    def _check_number(self, f: Path, page: int, g: int, number: int, first: int | None) -> int:
        """Frame numbers count slice-frames; a mismatch means the layout was misread."""
        lay = self.layout
        slice_frame = g // lay.n_channels
        if first is None:
            return number - slice_frame
        if number - slice_frame != first:
            raise FrameSourceError(
                f"{f}: page {page} ({self._describe(g)}) has frameNumbers = {number}, expected "
                f"{first + slice_frame} from the channel/slice layout: frames missing or "
                "metadata inconsistent"
            )
        return first

"""Frame sources: ScanImage TIFF files/folders, a TCP stream, and synthetic movies with truth.

Every source is a :class:`FrameSource` yielding ``(frame_index, t_frame_s, frame)``;
:func:`open_source` builds one from the rig config's ``imaging.source``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from acquisition.sources.base import FrameSource, FrameSourceError, FrameTuple

if TYPE_CHECKING:
    from rig.core.config import ImagingSource

__all__ = ["FrameSource", "FrameSourceError", "FrameTuple", "open_source"]


def open_source(cfg: ImagingSource, *, paced: bool | None = None) -> FrameSource:
    """Build the source a config describes (not yet opened: use it as a context manager).

    Parameters
    ----------
    cfg : TiffSource | TcpSource | SyntheticSource (config models)
        ``rig.core.config`` imaging source.
    paced : bool, optional
        Override pacing (TIFF: the config's ``paced``; synthetic: unpaced; TCP: always live).
    """
    if cfg.kind == "tiff":
        from acquisition.sources.scanimage_tiff import ScanImageTiffSource

        return ScanImageTiffSource(
            cfg.path, channel=cfg.channel, plane=cfg.plane,
            paced=cfg.paced if paced is None else paced,
        )  # fmt: skip
    if cfg.kind == "tcp":
        from acquisition.sources.tcp import TcpFrameSource

        return TcpFrameSource(cfg.host, cfg.port, max_frame_bytes=cfg.max_frame_bytes)
    if cfg.kind == "synthetic":
        from acquisition.sources.synthetic import SyntheticSource

        # Ten minutes, rendered as it is played so memory stays bounded.
        return SyntheticSource.generate(
            max(1, round(600 * cfg.frame_rate_hz)), paced=bool(paced), stream=True,
            size_px=cfg.size_px, n_cells=cfg.n_cells, frame_rate_hz=cfg.frame_rate_hz,
            max_shift_px=cfg.max_shift_px, seed=cfg.seed,
        )  # fmt: skip
    raise ValueError(f"unknown imaging source kind {cfg.kind!r}")

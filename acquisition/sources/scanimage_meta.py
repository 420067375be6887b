"""ScanImage metadata: static ``SI.`` block, per-page frame headers, and the page layout.

Facts (see ``SCANIMAGE.md`` in the project notes): the static block at byte 16 of a ScanImage
BigTIFF holds ``SI.key = value`` text (MATLAB literals) or, in an older variant, JSON
(``{"SI": {...}, "RoiGroups": {...}}``); page headers are ``key = value`` text, JSON, or JSON
wrapped in ``{"FrameHeader": {...}}``, with ``\\n`` or ``\\r`` line separators. Pages are
interleaved channel fastest, then z-slice (FastZ flyback frames included), then time.

Everything here returns flat dictionaries keyed like the text style (``SI.hChannels.channelSave``,
``frameTimestamps_sec``) whatever style the file used, and parses MATLAB literals with
``tifffile.matlabstr2py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tifffile import matlabstr2py

SI_MAGIC = 0x07030301


class MetadataError(ValueError):
    """Metadata that cannot be parsed or is inconsistent; the message names the key."""


def _flatten(prefix: str, obj: Any, out: dict[str, Any]) -> None:
    if isinstance(obj, dict):
        for k, v in obj.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = obj


def parse_static_metadata(text: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Parse ``ScanImageTiffReader.metadata()`` (or a Software tag) into flat SI keys and ROIs.

    Parameters
    ----------
    text : str
        ``"<SI text>\\n\\n<ROI json>"`` (text style) or a JSON document with an ``"SI"`` key.

    Returns
    -------
    si : dict
        Flat ``{"SI.hChannels.channelSave": [[1], [2]], ...}``.
    roi_groups : dict
        The ``RoiGroups`` object, or ``{}``.
    """
    text = text.strip("\x00").strip()
    if not text:
        raise MetadataError("no ScanImage metadata (magic 0x07030301 missing at byte 16)")
    if text.startswith("{"):
        # Older JSON variant: one document, or the SI JSON followed by the ROI JSON.
        docs = _json_documents(text)
        si: dict[str, Any] = {}
        rois: dict[str, Any] = {}
        for doc in docs:
            if "SI" in doc:
                _flatten("SI", doc["SI"], si)
            if "RoiGroups" in doc:
                rois = doc["RoiGroups"]
        if not si:
            raise MetadataError("JSON ScanImage metadata has no 'SI' object")
        return si, rois
    si_text, _, roi_text = text.partition("\n\n")
    if "\r" in si_text and "\n\n" not in text:
        si_text, _, roi_text = text.partition("\r\r")
    try:
        parsed = matlabstr2py(si_text.replace("\r", "\n"))
    except Exception as exc:  # tifffile raises bare ValueError/IndexError on bad literals
        raise MetadataError(f"cannot parse SI text: {exc}") from exc
    if not isinstance(parsed, dict) or not any(str(k).startswith("SI.") for k in parsed):
        raise MetadataError("static metadata has no 'SI.' keys")
    rois = {}
    roi_text = roi_text.strip().strip("\x00")
    if roi_text:
        try:
            rois = json.loads(roi_text).get("RoiGroups", {})
        except json.JSONDecodeError as exc:
            raise MetadataError(f"ROI-group JSON is invalid at char {exc.pos}: {exc.msg}") from exc
    return dict(parsed), rois


def _json_documents(text: str) -> list[dict[str, Any]]:
    dec = json.JSONDecoder()
    docs, pos = [], 0
    while pos < len(text):
        while pos < len(text) and text[pos] in " \t\r\n\x00":
            pos += 1
        if pos >= len(text):
            break
        try:
            obj, pos = dec.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise MetadataError(f"JSON metadata invalid at char {exc.pos}: {exc.msg}") from exc
        if isinstance(obj, dict):
            docs.append(obj)
    return docs


def parse_frame_header(text: str) -> dict[str, Any]:
    """Parse one page's ImageDescription in any of ScanImage's styles into a flat dict.

    Raises
    ------
    MetadataError
        When the text is neither ``key = value`` lines nor JSON.
    """
    s = text.strip("\x00").strip()
    if s.startswith("{"):
        try:
            obj = json.loads(s)
        except json.JSONDecodeError as exc:
            raise MetadataError(f"JSON frame header invalid at char {exc.pos}: {exc.msg}") from exc
        if isinstance(obj, dict) and isinstance(obj.get("FrameHeader"), dict):
            obj = obj["FrameHeader"]
        if not isinstance(obj, dict):
            raise MetadataError("JSON frame header is not an object")
        return obj
    try:
        parsed = matlabstr2py(s.replace("\r\n", "\n").replace("\r", "\n"))
    except Exception as exc:
        raise MetadataError(f"cannot parse frame header: {exc}") from exc
    if not isinstance(parsed, dict):
        raise MetadataError("frame header has no 'key = value' lines")
    return parsed


def _num(si: dict[str, Any], key: str, default: float) -> float:
    v = si.get(key, default)
    if isinstance(v, list):
        v = v[0] if v else default
        if isinstance(v, list):
            v = v[0] if v else default
    if isinstance(v, bool):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError) as exc:
        raise MetadataError(f"{key} = {v!r}: expected a number") from exc


def _flat_ints(v: Any) -> list[int]:
    if isinstance(v, list):
        return [i for x in v for i in _flat_ints(x)]
    return [int(v)]


@dataclass(frozen=True)
class PageLayout:
    """How the flat page sequence maps to channels, planes and frames.

    Within one volume pages run channel fastest, then repeat (slow stacks with
    ``framesPerSlice > 1``), then slice (real slices, then FastZ flyback frames).

    Attributes
    ----------
    channels_saved : tuple of int
        ScanImage channel numbers saved (1-based), in page order.
    n_slices : int
        Real z-planes per volume.
    n_flyback : int
        FastZ flyback frames per volume (present in the file, skipped on read).
    n_repeats : int
        Frames per slice in a slow stack (1 otherwise).
    frame_rate_hz : float
        ``SI.hRoiManager.scanFrameRate``.
    volume_rate_hz : float
        Per-plane rate: ``scanVolumeRate`` for stacks, else the frame rate.
    """

    channels_saved: tuple[int, ...]
    n_slices: int
    n_flyback: int
    n_repeats: int
    frame_rate_hz: float
    volume_rate_hz: float

    @property
    def n_channels(self) -> int:
        return len(self.channels_saved)

    @property
    def pages_per_volume(self) -> int:
        return self.n_channels * self.n_repeats * (self.n_slices + self.n_flyback)

    def page_index(self, volume: int, plane: int, channel: int, repeat: int = 0) -> int:
        """Flat page index of (volume, plane, channel index, repeat)."""
        return (
            volume * self.pages_per_volume
            + (plane * self.n_repeats + repeat) * self.n_channels
            + channel
        )

    @classmethod
    def from_si(cls, si: dict[str, Any]) -> PageLayout:
        """Read the layout from flat SI keys; missing keys mean a single-plane, one-channel file."""
        save = si.get("SI.hChannels.channelSave", 1)
        try:
            channels = tuple(_flat_ints(save))
        except (TypeError, ValueError) as exc:
            raise MetadataError(
                f"SI.hChannels.channelSave = {save!r}: expected 1 or [1;2]"
            ) from exc
        if not channels:
            raise MetadataError("SI.hChannels.channelSave is empty: no channel was saved")
        n_slices = int(
            _num(si, "SI.hStackManager.actualNumSlices", _num(si, "SI.hStackManager.numSlices", 1))
        )
        fastz = bool(_num(si, "SI.hFastZ.enable", 0))
        stack_on = bool(_num(si, "SI.hStackManager.enable", 1 if (fastz or n_slices > 1) else 0))
        if not stack_on or n_slices < 1:
            n_slices = 1
        n_flyback = int(_num(si, "SI.hFastZ.numDiscardFlybackFrames", 0)) if fastz else 0
        if n_slices == 1:
            n_flyback = 0
        n_repeats = 1
        if stack_on and not fastz and n_slices > 1:
            n_repeats = max(int(_num(si, "SI.hStackManager.framesPerSlice", 1)), 1)
        frame_rate = _num(si, "SI.hRoiManager.scanFrameRate", 0.0)
        if frame_rate <= 0:
            raise MetadataError(
                f"SI.hRoiManager.scanFrameRate = {si.get('SI.hRoiManager.scanFrameRate')!r}: "
                "expected a positive frame rate"
            )
        if n_slices > 1:
            vol = _num(
                si,
                "SI.hRoiManager.scanVolumeRate",
                frame_rate / ((n_slices + n_flyback) * n_repeats),
            )
        else:
            vol = frame_rate
        return cls(channels, n_slices, n_flyback, n_repeats, frame_rate, vol)

"""Whole synthetic ScanImage recordings on disk: TIFF(s) plus the ground truth beside them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from acquisition.sources.scanimage_writer import (
    HeaderStyle,
    write_scanimage_series,
    write_scanimage_tiff,
)
from acquisition.sources.synthetic import SyntheticMovie, make_movie, truth_path_for


def write_synthetic_recording(
    out: str | Path,
    n_frames: int = 300,
    *,
    n_channels: int = 1,
    header_style: HeaderStyle = "text",
    line_sep: str = "\n",
    volumes_per_file: int | None = None,
    **movie_kwargs: Any,
) -> tuple[list[Path], Path, SyntheticMovie]:
    """Render a synthetic movie and write it as ScanImage would, with its truth ``.npz``.

    Parameters
    ----------
    out : path
        ``FILE.tif`` for one file; with ``volumes_per_file`` the files go into a folder named
        after ``out``'s stem, as ``<stem>_00001_<k>.tif``.
    n_frames : int
        Frames ``T``.
    n_channels : int
        Saved channels. Channel 1 is the movie the truth describes; channel 2 is an independent
        movie (seed + 1) so that channel mix-ups show, not a structural channel.
    header_style, line_sep
        Page-header style and separator (see :func:`write_scanimage_tiff`).
    movie_kwargs
        Passed to :func:`make_movie` (``size_px``, ``n_cells``, ``frame_rate_hz``, ``seed``, ...).

    Returns
    -------
    (tiff paths, truth path, movie)
    """
    if not 1 <= n_channels <= 4:
        raise ValueError(f"n_channels = {n_channels}: expected 1..4")
    out = Path(out)
    movie = make_movie(n_frames, **movie_kwargs)
    chans = [movie.frames]
    seed = int(movie_kwargs.get("seed", 0))
    for c in range(1, n_channels):
        chans.append(make_movie(n_frames, **{**movie_kwargs, "seed": seed + c}).frames)
    data = np.stack(chans, axis=1)[:, None]  # (T, Z=1, C, Y, X)
    common: dict[str, Any] = {
        "frame_rate_hz": movie.frame_rate_hz,
        "header_style": header_style,
        "line_sep": line_sep,
        "line_phase_px": movie.line_phase_px,
    }
    if volumes_per_file:
        folder = out.with_suffix("")
        paths = write_scanimage_series(
            folder, data, volumes_per_file=volumes_per_file, basename=folder.name, **common
        )
        truth = movie.save_truth(folder / f"{folder.name}.truth.npz")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        paths = [write_scanimage_tiff(out, data, **common)]
        truth = movie.save_truth(truth_path_for(out))
    return paths, truth, movie

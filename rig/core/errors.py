"""Error types that carry enough context (file, field, byte offset) to act on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    """One problem found in an input file.

    Attributes
    ----------
    source : str
        File path (or another name for the input, e.g. ``"<string>"``).
    location : str
        Dotted field path (``lever_board.calibration.counts_per_mm``), ``line 3``, or ``""``.
    message : str
        What is wrong and what was expected.
    """

    source: str
    location: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}: {self.location}" if self.location else self.source
        return f"{where}: {self.message}"


class RigError(Exception):
    """Base class for errors the rig reports to a person (no traceback needed)."""


class ConfigError(RigError):
    """A config file failed to load or validate; ``problems`` lists every issue found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))

    @classmethod
    def single(cls, source: str | Path, location: str, message: str) -> ConfigError:
        return cls([Problem(str(source), location, message)])


class SessionFormatError(RigError):
    """A session folder or file is not in a format this version can read."""

"""Rig, device and subject configuration models (pydantic v2, ``extra="forbid"``).

A rig is described by one YAML file in ``hardware_configs/``. Every device section is a
discriminated union on ``driver`` so the same file format selects real hardware
(``serial``), the firmware under simulation (``simavr``) or the pure-Python simulated device
(``sim``). Units are in every field name.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rig.core.errors import ConfigError, Problem

M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Base for every config and file header: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


# --------------------------------------------------------------------------- lever board
class LeverCalibration(StrictModel):
    """Lever sensor calibration: raw counts -> mm (or degrees for a rotary sensor).

    ``position_mm = (counts - rest_counts) / counts_per_mm`` (sign included, so a sensor
    mounted backwards has a negative ``counts_per_mm``).
    """

    sensor: Literal["potentiometer", "encoder"] = "potentiometer"
    unit: Literal["mm", "deg"] = "mm"
    counts_per_mm: float = Field(40.0, description="ADC or encoder counts per mm (or per degree)")
    rest_counts: int = Field(512, ge=0, le=65535, description="raw counts at rest (zero)")
    adc_bits: int = Field(10, ge=8, le=16)

    @field_validator("counts_per_mm")
    @classmethod
    def _nonzero(cls, v: float) -> float:
        if v == 0:
            raise ValueError("counts_per_mm must be non-zero (counts per mm of lever travel)")
        return v

    def mm_to_counts(self, position_mm: float) -> int:
        """Absolute sensor counts at ``position_mm`` (rounded to the nearest count)."""
        return round(self.rest_counts + position_mm * self.counts_per_mm)

    def counts_to_mm(self, counts: float) -> float:
        return (counts - self.rest_counts) / self.counts_per_mm


class ValvePoint(StrictModel):
    duration_ms: float = Field(gt=0, le=10_000)
    volume_ul: float = Field(gt=0, le=1_000)


class ValveCalibration(StrictModel):
    """Water-valve calibration table: pulse width (ms) -> delivered volume (µl).

    Interpolated linearly between points and through the origin below the first point.
    """

    points: list[ValvePoint] = Field(
        default_factory=lambda: [
            ValvePoint(duration_ms=20.0, volume_ul=2.0),
            ValvePoint(duration_ms=40.0, volume_ul=4.0),
        ],
        min_length=1,
    )
    max_valve_ms: float = Field(
        500.0, gt=0, le=10_000, description="hard cap the firmware enforces whatever the host says"
    )

    @field_validator("points")
    @classmethod
    def _monotonic(cls, pts: list[ValvePoint]) -> list[ValvePoint]:
        for a, b in pairwise(pts):
            if not (b.duration_ms > a.duration_ms and b.volume_ul > a.volume_ul):
                raise ValueError(
                    "calibration points must increase in both duration_ms and volume_ul"
                )
        return pts

    def ul_to_ms(self, volume_ul: float) -> float:
        """Pulse width (ms) that delivers ``volume_ul`` µl, by linear interpolation."""
        if volume_ul < 0:
            raise ValueError(f"volume_ul must be >= 0, got {volume_ul}")
        xs = [0.0] + [p.volume_ul for p in self.points]
        ys = [0.0] + [p.duration_ms for p in self.points]
        return _interp(volume_ul, xs, ys)

    def ms_to_ul(self, duration_ms: float) -> float:
        xs = [0.0] + [p.duration_ms for p in self.points]
        ys = [0.0] + [p.volume_ul for p in self.points]
        return _interp(duration_ms, xs, ys)


def _interp(x: float, xs: list[float], ys: list[float]) -> float:
    """Piecewise-linear interpolation, extrapolating with the last segment's slope."""
    for i in range(1, len(xs)):
        if x <= xs[i] or i == len(xs) - 1:
            x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return ys[-1]  # pragma: no cover - loop always returns


class ToneOutput(StrictModel):
    kind: Literal["pin", "ttl"] = Field("pin", description="square wave on a pin or TTL gate")
    pin: int = Field(9, ge=0, le=69)


class SimMouseConfig(StrictModel):
    """Behavioral model that drives a simulated lever (see ``tasks.sim_mouse``)."""

    model: Literal["learner", "scripted", "idle"] = "learner"
    seed: int = 1
    skill: float = Field(0.3, ge=0.0, le=1.0, description="0 = naive, 1 = expert")


class _LeverBoardBase(StrictModel):
    name: str = "lever_board"
    board: Literal["uno", "mega"] = "uno"
    calibration: LeverCalibration = Field(default_factory=LeverCalibration)
    valve: ValveCalibration = Field(default_factory=ValveCalibration)
    tone: ToneOutput = Field(default_factory=ToneOutput)
    frame_clock_pin: int = Field(2, ge=0, le=69, description="interrupt-capable input pin")
    lick_pin: int | None = Field(None, ge=0, le=69)
    heartbeat_timeout_ms: float = Field(1000.0, gt=0, le=60_000)


class LeverBoardSerial(_LeverBoardBase):
    driver: Literal["serial"]
    port: str = Field(description="serial device, e.g. /dev/ttyACM0 or COM3")
    baud: int = Field(1_000_000, gt=0)


class LeverBoardSimavr(_LeverBoardBase):
    driver: Literal["simavr"]
    firmware: Path | None = Field(None, description="compiled .elf; default: firmware/build")
    realtime: bool = True
    mouse: SimMouseConfig = Field(default_factory=SimMouseConfig)


class LeverBoardSim(_LeverBoardBase):
    driver: Literal["sim"]
    mouse: SimMouseConfig = Field(default_factory=SimMouseConfig)
    noise_counts: float = Field(1.0, ge=0, description="lever sensor noise SD, counts")


LeverBoardConfig = Annotated[
    LeverBoardSerial | LeverBoardSimavr | LeverBoardSim, Field(discriminator="driver")
]


# --------------------------------------------------------------------------- rotarod
class RodGeometry(StrictModel):
    diameter_mm: float = Field(30.0, gt=0, le=500)
    steps_per_rev: int = Field(3200, gt=0, description="full steps x microstepping")
    max_rpm: float = Field(80.0, gt=0, le=300)


class _RotarodBase(StrictModel):
    name: str = "rotarod"
    lanes: int = Field(5, ge=1, le=5)
    rod: RodGeometry = Field(default_factory=RodGeometry)
    fall_debounce_ms: float = Field(500.0, ge=500.0, le=10_000)
    passive_rotation_is_fall: bool = False


class RotarodSerial(_RotarodBase):
    driver: Literal["serial"]
    port: str
    baud: int = Field(1_000_000, gt=0)


class RotarodSimavr(_RotarodBase):
    driver: Literal["simavr"]
    firmware: Path | None = None
    realtime: bool = True


class RotarodSim(_RotarodBase):
    driver: Literal["sim"]
    seed: int = 1


RotarodConfig = Annotated[RotarodSerial | RotarodSimavr | RotarodSim, Field(discriminator="driver")]


# --------------------------------------------------------------------------- imaging
class TiffSource(StrictModel):
    kind: Literal["tiff"]
    path: Path = Field(description="ScanImage .tif file or folder of files")
    channel: int = Field(0, ge=0, description="saved-channel index (0 = first saved channel)")
    plane: int = Field(0, ge=0)
    paced: bool = Field(True, description="deliver frames at the recorded frame rate")


class TcpSource(StrictModel):
    kind: Literal["tcp"]
    host: str = "127.0.0.1"
    port: int = Field(5555, ge=1, le=65535)
    max_frame_bytes: int = Field(64 * 1024 * 1024, gt=0)


class SyntheticSource(StrictModel):
    kind: Literal["synthetic"]
    size_px: int = Field(256, ge=32, le=4096)
    n_cells: int = Field(100, ge=0, le=10_000)
    frame_rate_hz: float = Field(30.0, gt=0, le=10_000)
    max_shift_px: float = Field(5.0, ge=0, le=100)
    seed: int = 0
    # Live lever sessions: each pull's movement onset makes the movie's responsive cells fire
    # (rig/runner/imaging_drive.py), so event-aligned dF/F shows pull-related cells.
    driven_by_pulls: bool = True


ImagingSource = Annotated[TiffSource | TcpSource | SyntheticSource, Field(discriminator="kind")]


class RoiSource(StrictModel):
    kind: Literal["suite2p", "imagej", "labels", "auto"] = "auto"
    path: Path | None = None
    n_frames_for_detection: int = Field(300, ge=10)

    @model_validator(mode="after")
    def _path_needed(self) -> RoiSource:
        if self.kind != "auto" and self.path is None:
            raise ValueError(f"rois.kind={self.kind!r} needs rois.path")
        return self


class ImagingConfig(StrictModel):
    source: ImagingSource
    backend: Literal["auto", "numpy", "cupy"] = "auto"
    rois: RoiSource = Field(default_factory=RoiSource)
    neuropil_coefficient: float = Field(0.7, ge=0, le=2)
    baseline_window_s: float = Field(60.0, gt=0)
    baseline_percentile: float = Field(8.0, gt=0, lt=100)
    queue_frames: int = Field(64, ge=2, le=10_000, description="pipeline queue bound, frames")


# --------------------------------------------------------------------------- rig
class RigConfig(StrictModel):
    """One rig: its devices and where sessions are stored."""

    name: str = Field(min_length=1)
    data_dir: Path = Field(description="sessions go to <data_dir>/<subject>/<date_time>_<task>/")
    lever_board: LeverBoardConfig | None = None
    rotarod: RotarodConfig | None = None
    imaging: ImagingConfig | None = None
    fsync_interval_s: float = Field(1.0, gt=0, le=10, description="max time between fsyncs")

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        try:
            return v.expanduser()
        except RuntimeError:  # '~someone/...' naming no user on this machine
            raise ValueError(f"cannot expand {str(v)!r}: no such user's home directory") from None


# --------------------------------------------------------------------------- subject
class SubjectState(StrictModel):
    """Per-subject state that persists between sessions (shaping carries over day to day).

    ``shaping`` maps a task name to that task's shaping variables, e.g.
    ``{"self_initiated": {"hold_ms": 400.0}}``.
    """

    format_version: Literal[1] = 1
    subject_id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    shaping: dict[str, dict[str, float]] = Field(default_factory=dict)
    sessions: int = Field(0, ge=0, description="completed sessions so far")
    last_session: str | None = None
    notes: str = ""


# --------------------------------------------------------------------------- loading
def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def problems_from_validation(source: str, err: ValidationError) -> list[Problem]:
    """Turn a pydantic ``ValidationError`` into one ``Problem`` per error, with the input."""
    problems = []
    for e in err.errors(include_url=False):
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field (not part of this config; check the spelling)"
        elif e["type"] == "missing":
            msg = "required field is missing"
        elif "input" in e and not isinstance(e["input"], dict | list):
            msg = f"{msg} (got {e['input']!r})"
        problems.append(Problem(source, _format_loc(tuple(e["loc"])), msg))
    return problems


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file; every failure becomes a ``ConfigError`` naming the file and line."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError.single(p, "", "file not found") from None
    except IsADirectoryError:
        raise ConfigError.single(p, "", "is a directory, expected a YAML file") from None
    except UnicodeDecodeError as e:
        raise ConfigError.single(p, f"byte {e.start}", "not UTF-8 text") from None
    except OSError as e:
        raise ConfigError.single(p, "", f"cannot read: {e.strerror}") from None
    if not text.strip():
        raise ConfigError.single(p, "", "file is empty, expected a YAML mapping")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError.single(p, where, f"YAML syntax error: {problem}") from None
    return data


def validate_mapping(model: type[M], data: Any, source: str | Path) -> M:
    """Validate already-parsed data against ``model``, raising ``ConfigError`` on any problem."""
    if not isinstance(data, dict):
        raise ConfigError.single(
            source, "", f"expected a YAML mapping at the top level, got {type(data).__name__}"
        )
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(problems_from_validation(str(source), e)) from None


def load_model(model: type[M], path: str | Path) -> M:
    """Load ``path`` (YAML or JSON) into ``model``; errors name the file and the field."""
    return validate_mapping(model, load_yaml(path), path)


def load_rig_config(path: str | Path) -> RigConfig:
    """Load and validate a rig config YAML file."""
    return load_model(RigConfig, path)

"""``rig export SESSION --nwb OUT.nwb``: a session folder as one NWB file (pynwb).

What goes where (all times on one timebase, see :mod:`rig.export.timebase`):

- ``subject``: ``Subject`` (id from the session; species/sex/age from the caller).
- ``devices``: one ``Device`` per recorded device (firmware hello in its description), plus the
  microscope when there is imaging.
- ``intervals/trials``: one row per ``trials.tsv`` row, every column typed (int, float with NaN
  for empty, bool or text); board-time columns ``t_*_us`` become ``t_*_s`` on the timebase.
- ``acquisition/lever_position``: ``TimeSeries`` in mm (calibration from ``session.json``) with
  the board sample times.
- ``events``: one ``EventsTable`` per event name (``source``, ``trial``, ``frame``,
  ``t_device_us``, ``t_host_ns``, then one typed column per payload key); -1 stands for "none"
  in those integer columns.
- ``processing/ophys`` (when ``imaging/`` holds results): see :mod:`rig.export.nwb_ophys`.

The file is checked with ``pynwb.validate`` after writing; :func:`export_nwb` raises
:class:`ExportError` listing the problems when it fails.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from rig.core.errors import RigError
from rig.core.events import Event
from rig.core.store import LEVER_DTYPE, SessionReader
from rig.export.timebase import Timebase, fit_timebase, json_text, typed_column

#: Descriptions of the lever task's trial columns (``tasks.records.TrialRecord``).
TRIAL_COLUMN_DOCS = {
    "trial": "0-based trial number in the session",
    "context": "intended trial type, decided before the trial started",
    "block": "0-based block number (Task C blocks; 0 otherwise)",
    "outcome": "terminal state of the trial's state machine",
    "hold_ms": "required hold for this trial after shaping, ms",
    "iti_restarts": "times movement restarted the ITI/quiet period",
    "reward_ul": "water delivered, µl",
    "valve_ms": "valve pulse width that delivered it, ms",
    "rt_ms": "reaction time: threshold crossing minus cue onset, ms",
    "achieved_hold_ms": "lever_down (or reward) minus the crossing, ms",
}


class ExportError(RigError):
    """The session cannot be exported, or the written file failed validation."""


@dataclass
class ExportSummary:
    """What :func:`export_nwb` wrote."""

    path: Path
    n_trials: int = 0
    n_events: int = 0
    n_event_tables: int = 0
    n_lever_samples: int = 0
    n_frames: int = 0
    n_rois: int = 0
    timebase: str = ""
    warnings: list[str] = field(default_factory=list)


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _trial_bounds(
    rows: list[dict[str, str]], events: list[Event], tb: Timebase
) -> tuple[np.ndarray, np.ndarray]:
    """Per-trial start/stop (s): the ``t_start_us``/``t_end_us`` columns where given, else the
    span of the events stamped with that trial."""
    span: dict[int, list[float]] = {}
    for ev in events:
        if ev.trial is not None:
            t = tb.event_s(ev)
            s = span.setdefault(int(ev.trial), [t, t])
            s[0], s[1] = min(s[0], t), max(s[1], t)
    start = np.full(len(rows), np.nan)
    stop = np.full(len(rows), np.nan)
    for i, r in enumerate(rows):
        k = int(r["trial"]) if r.get("trial", "").lstrip("-").isdigit() else i
        for key, arr in (("t_start_us", start), ("t_end_us", stop)):
            v = r.get(key, "")
            if v not in ("", "None"):
                arr[i] = (int(float(v)) - tb.t0_device_us) / 1e6
        if k in span:
            if np.isnan(start[i]):
                start[i] = span[k][0]
            if np.isnan(stop[i]):
                stop[i] = span[k][1]
    for i in range(len(rows)):  # no time at all: sit at the previous trial's end
        if np.isnan(start[i]):
            start[i] = stop[i - 1] if i else 0.0
        if np.isnan(stop[i]) or stop[i] < start[i]:
            stop[i] = start[i]
    return start, stop


def add_trials(nwb: Any, rows: list[dict[str, str]], events: list[Event], tb: Timebase) -> None:
    """``trials.tsv`` -> ``nwb.trials`` with typed columns."""
    if not rows:
        return
    start, stop = _trial_bounds(rows, events, tb)
    cols: dict[str, Any] = {}
    for name in rows[0]:
        cells = [r[name] for r in rows]
        col = typed_column(cells)
        out_name, doc = name, TRIAL_COLUMN_DOCS.get(name, f"trials.tsv column {name!r}")
        if name.startswith("t_") and name.endswith("_us") and isinstance(col, np.ndarray):
            out_name = name[:-3] + "_s"
            doc = f"{name} (board time) on the session timebase, s; NaN when it did not happen"
            col = (col.astype(np.float64) - tb.t0_device_us) / 1e6
        if out_name in ("start_time", "stop_time", "id"):
            out_name = f"tsv_{out_name}"
        nwb.add_trial_column(name=out_name, description=doc)
        cols[out_name] = col
    for i in range(len(rows)):
        nwb.add_trial(
            start_time=float(start[i]),
            stop_time=float(stop[i]),
            **{k: (v[i].item() if isinstance(v, np.ndarray) else v[i]) for k, v in cols.items()},
        )


def payload_columns(evs: list[Event]) -> dict[str, Any]:
    """The events' ``data`` payloads as typed columns, one per key.

    All-int keys give int64, numbers (with gaps) float64 with NaN, all-bool bool, text ``""``
    for gaps; lists and nested objects become JSON text.
    """
    keys: list[str] = []
    for e in evs:
        keys += [k for k in e.data if k not in keys]
    out: dict[str, Any] = {}
    for k in keys:
        vals = [e.data.get(k) for e in evs]
        present = [v for v in vals if v is not None]
        if present and len(present) == len(vals) and all(isinstance(v, bool) for v in vals):
            out[k] = np.array(vals, bool)
        elif present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
            if len(present) == len(vals):
                out[k] = np.array(vals, np.int64)
            else:
                out[k] = np.array([np.nan if v is None else v for v in vals], np.float64)
        elif present and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in present
        ):
            out[k] = np.array([np.nan if v is None else v for v in vals], np.float64)
        elif all(v is None or isinstance(v, str) for v in vals):
            out[k] = ["" if v is None else v for v in vals]
        else:
            out[k] = ["" if v is None else json_text(v) for v in vals]
    return out


def add_events(nwb: Any, events: list[Event], tb: Timebase) -> int:
    """One ``EventsTable`` per event name, payload keys as columns; returns the table count."""
    from hdmf.common import VectorData
    from pynwb.event import EventsTable, TimestampVectorData

    by_name: dict[str, list[Event]] = {}
    for ev in events:
        by_name.setdefault(ev.name, []).append(ev)
    for name in sorted(by_name):
        evs = by_name[name]
        t = np.array([tb.event_s(e) for e in evs], np.float64)
        order = np.argsort(t, kind="stable")
        evs = [evs[i] for i in order]

        def icol(vals: list[int | None]) -> np.ndarray:
            return np.array([-1 if v is None else int(v) for v in vals], np.int64)

        cols = [
            TimestampVectorData(
                name="timestamp", description="event time on the session timebase, s", data=t[order]
            ),
            VectorData(name="source", description="producer", data=[e.source for e in evs]),
            VectorData(
                name="trial",
                description="0-based trial number, -1 when none",
                data=icol([e.trial for e in evs]),
            ),
            VectorData(
                name="frame",
                description="imaging frame in progress, -1 when none",
                data=icol([e.frame for e in evs]),
            ),
            VectorData(
                name="t_device_us",
                description="board time, µs (-1: host-only event)",
                data=icol([e.t_device_us for e in evs]),
            ),
            VectorData(
                name="t_host_ns",
                description="host monotonic time, ns",
                data=np.array([e.t_host_ns for e in evs], np.int64),
            ),
        ]
        taken = {c.name for c in cols} | {"duration", "annotation", "id"}
        for key, values in payload_columns(evs).items():
            col_name = key if key not in taken else f"data_{key}"
            cols.append(
                VectorData(name=col_name, description=f"payload field {key!r}", data=values)
            )
        table = EventsTable(
            name=name,
            description=f"'{name}' events from events.jsonl",
            source_description=", ".join(sorted({e.source for e in evs})),
            columns=cols,
        )
        nwb.add_events_table(table)
    return len(by_name)


def add_lever(nwb: Any, reader: SessionReader, tb: Timebase) -> int:
    """Lever position (mm) with board sample times; returns the sample count."""
    from hdmf.backends.hdf5.h5_utils import H5DataIO
    from pynwb import TimeSeries

    lev = session_lever(reader)
    if lev.size == 0:
        return 0
    _, pos_mm = reader.lever_mm()
    cal = (reader.meta.rig_config.get("lever_board") or {}).get("calibration") or {}
    t_s = tb.device_s(lev["t_device_us"])
    dt_us = np.diff(lev["t_device_us"])
    timing: dict[str, Any]
    if dt_us.size and dt_us.min() == dt_us.max() > 0:
        # no sample lost: a start and a rate say the same as the timestamps, in 16 bytes
        timing = {"starting_time": float(t_s[0]), "rate": 1e6 / float(dt_us[0])}
    else:
        timing = {"timestamps": H5DataIO(t_s, compression="gzip")}
    nwb.add_acquisition(
        TimeSeries(
            name="lever_position",
            description="lever position, 0 = rest, positive = pulled; sampled on the board",
            comments=f"calibration: {json_text(cal)}",
            data=H5DataIO(pos_mm.astype(np.float64), compression="gzip"),
            unit="mm",
            **timing,
        )
    )
    return int(lev.size)


def session_lever(reader: SessionReader) -> np.ndarray:
    """The lever samples, empty when the folder has no ``lever.bin`` (rotarod sessions written
    without one, golden sessions that keep only the raw bytes)."""
    if not (reader.folder / "lever.bin").exists():
        return np.zeros(0, LEVER_DTYPE)
    return reader.lever()


def add_devices(nwb: Any, reader: SessionReader) -> None:
    cfg = reader.meta.rig_config
    names = set(reader.meta.firmware) | set(reader.raw_devices())
    for key in ("lever_board", "rotarod"):
        if cfg.get(key):
            names.add(str(cfg[key].get("name", key)))
    for name in sorted(names):
        hello = reader.meta.firmware.get(name, {})
        drv = next(
            (cfg[k].get("driver") for k in ("lever_board", "rotarod") if cfg.get(k) and
             cfg[k].get("name", k) == name),
            None,
        )  # fmt: skip
        desc = f"{name} (driver {drv or 'unknown'}); firmware hello: {json_text(hello)}"
        nwb.create_device(name=name, description=desc)


def export_nwb(
    session: str | Path,
    out: str | Path,
    *,
    rois: str | Path | None = None,
    movie: list[Path] | None = None,
    species: str = "Mus musculus",
    sex: str = "U",
    age: str | None = None,
    overwrite: bool = False,
) -> ExportSummary:
    """Write ``session`` as an NWB file at ``out`` and validate it.

    Parameters
    ----------
    session : path
        Session folder.
    out : path
        The ``.nwb`` file to write (refused if it exists unless ``overwrite``).
    rois : path, optional
        ROI file (suite2p ``stat.npy``, ImageJ zip, label image) when the session does not hold
        ``imaging/roi_labels.npy``.
    movie : list of path, optional
        Movie files to reference (default: ``imaging/*.tif`` in the session, else the TIFF
        source in the rig config).
    species, sex, age : str
        Subject fields (NWB conventions: Latin binomial, "M"/"F"/"U"/"O", ISO 8601 "P90D").
    """
    from pynwb import NWBHDF5IO, NWBFile, validate
    from pynwb.file import Subject

    reader = SessionReader(session)
    out = Path(out)
    if out.exists() and not overwrite:
        raise ExportError(f"{out}: exists; pass overwrite to replace it")
    meta = reader.meta
    events = reader.events()
    lev = session_lever(reader)
    imaging = None
    if (reader.folder / "imaging" / "rois.json").exists():
        from acquisition.traces.store import read_results

        imaging = read_results(reader.folder / "imaging")
    frame_times = [lev["t_device_us"]]
    if imaging is not None:
        ft = imaging.get("frame_times_us", imaging["frames"]["t_board_us"])
        frame_times.append(np.asarray(ft)[np.asarray(ft) >= 0])
    tb = fit_timebase(events, frame_times)
    summary = ExportSummary(path=out, timebase=tb.describe())
    nwb = NWBFile(
        session_description=f"{meta.task} on {meta.rig_name} ({reader.status})",
        identifier=str(uuid.uuid5(uuid.NAMESPACE_URL, f"motor-rig:{reader.folder.resolve()}")),
        session_start_time=_aware(meta.started_at),
        timestamps_reference_time=_aware(meta.started_at),
        session_id=reader.folder.name,
        experiment_description=f"task {meta.task}, params hash {meta.params_hash or 'n/a'}",
        notes=(
            f"timebase: {tb.describe()}. t0_device_us={tb.t0_device_us}. "
            f"status={reader.status} stop_reason={meta.stop_reason!r}. "
            f"task_params={json_text(meta.task_params)}"
        ),
        source_script=f"motor-rig {meta.software.get('motor-rig', '')} rig export --nwb".strip(),
        source_script_file_name="rig/export/nwb.py",
        keywords=["motor learning", "head-fixed mouse", meta.task],
        experimenter=meta.extra.get("experimenter") if meta.extra else None,
    )
    subj = (meta.extra.get("subject") or {}) if meta.extra else {}
    age = age or subj.get("age")
    if not age and not subj.get("date_of_birth"):
        summary.warnings.append("subject age unknown (pass age='P90D'): NWB inspectors flag it")
    nwb.subject = Subject(
        subject_id=meta.subject_id, species=subj.get("species", species),
        sex=subj.get("sex", sex), age=age,
        date_of_birth=datetime.fromisoformat(subj["date_of_birth"])
        if subj.get("date_of_birth") else None,
        description=f"motor-rig subject {meta.subject_id}",
    )  # fmt: skip
    add_devices(nwb, reader)
    rows = reader.trials()
    add_trials(nwb, rows, events, tb)
    summary.n_trials = len(rows)
    summary.n_events = len(events)
    summary.n_event_tables = add_events(nwb, events, tb)
    summary.n_lever_samples = add_lever(nwb, reader, tb)
    if imaging is not None:
        from rig.export.nwb_ophys import add_ophys

        summary.n_frames, summary.n_rois, warn = add_ophys(
            nwb, reader, imaging, tb, out, rois=rois, movie=movie
        )
        summary.warnings += warn
    if reader.torn:
        summary.warnings.append(
            "interrupted session: dropped torn tails "
            + ", ".join(f"{t.file}@{t.offset} ({t.n_bytes} B)" for t in reader.torn)
        )
    tmp = out.with_name(out.stem + ".part.nwb")
    tmp.unlink(missing_ok=True)
    with NWBHDF5IO(str(tmp), "w") as io:
        io.write(nwb)
    errors = validate(path=str(tmp))
    if errors:
        tmp.unlink(missing_ok=True)
        raise ExportError(
            f"{out}: pynwb validation failed ({len(errors)} problem(s)): "
            + "; ".join(str(e) for e in errors[:5])
        )
    tmp.replace(out)
    return summary

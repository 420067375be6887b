"""``LeverRunner``: one lever session, from the rig config to a closed session folder.

Composition only: the task (``tasks.lever_tasks``) decides trials, the board
(``rig.core.devices.LeverBoard``) runs them, ``SessionWriter`` records everything. Threads:

- the board's reader thread calls back with raw bytes, lever batches, events and trail
  events; those are written at once (the writer is thread-safe) and the trail goes to a queue;
- the runner thread takes the trail from the queue: when trial N starts it uploads trial N+1
  and queues its start (the board swaps machines in the tick N ends, no dead time); when N
  ends it writes N's record, lets the task learn (shaping), and checks the stop criteria;
- ``stop()`` may come from any thread; it returns once the board is in its safe state and the
  files are closed. Safe state is reached on every way out (stop, criteria, error, exit).

Board commands are never sent from the reader thread: their ACKs arrive on it.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from rig.core.config import LeverBoardSim, LeverBoardSimavr, RigConfig
from rig.core.devices import LeverBoard
from rig.core.errors import RigError
from rig.core.events import Event
from rig.core.protocol import EventCode
from rig.core.signals import RigSignals
from rig.core.statemachine import TrailEvent
from rig.core.store import SessionMeta, SessionWriter
from rig.core.transport import PtyTransport
from tasks.lever_tasks import LeverTask, TrialPlan, make_task
from tasks.metrics import running_success
from tasks.params import params_hash
from tasks.shaping import load_subject, save_subject
from tasks.sim_mouse import resume_learner, save_mouse_state

log = logging.getLogger(__name__)

#: A board faster than real time would see the host's wall-clock heartbeats far apart; the
#: simulated board then gets the longest host timeout the config allows.
VIRTUAL_HOST_TIMEOUT_MS = 60_000.0


@dataclass
class ConnectedBoard:
    """A connected lever board, the simulated mouse behind it (if any), and its teardown."""

    board: LeverBoard
    driver: str
    mouse: Any = None
    closers: list[Callable[[], None]] = field(default_factory=list)
    #: Virtual clock only: the gate freezes board time at each trial start, ``resume``
    #: unfreezes it once the next trial is queued (the board answers commands while frozen).
    gate: _TrialStartGate | None = None
    resume: Callable[[], None] | None = None

    def close(self) -> None:
        try:
            self.board.close()  # puts the board in its safe state first
        finally:
            for fn in reversed(self.closers):
                fn()


class _TrialStartGate:
    """Wraps a simulated board's ``LeverInput``: at every TRIAL_START the board emits, board
    time freezes (on the board thread, so at most one step of ticks later) until the runner
    has queued the next trial and resumes it. Without this, a board on a virtual clock can run
    a short trial out before the host, starved of CPU, has uploaded its successor."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.link: Any = None
        self.paused_for: int | None = None
        if hasattr(inner, "licks"):
            self.licks = inner.licks

    def counts(self, t_us: np.ndarray) -> np.ndarray:
        return self.inner.counts(t_us)

    def on_output(self, ev: TrailEvent) -> None:
        self.inner.on_output(ev)
        if ev.code == EventCode.TRIAL_START and self.link is not None:
            self.paused_for = ev.value
            # SimBoardLink.pause() takes the link's lock, which the board thread holds here;
            # the flag it sets is read once per step, so set it directly (request filed: a
            # public "pause from the board thread" on SimBoardLink)
            self.link._paused = True


def _config_mouse(cfg: LeverBoardSim | LeverBoardSimavr, rig: RigConfig, subject_id: str) -> Any:
    """The config's simulated mouse; a learner resumes its subject's skill."""
    mc = cfg.mouse
    if mc.model == "learner":
        return resume_learner(rig.data_dir, subject_id, mc.seed, mc.skill)
    from tasks.sim_mouse import make_mouse

    return make_mouse(mc.model, mc.seed, mc.skill)


class _SimavrLever:
    """Feeds a simulated mouse's lever to the firmware under simavr (free-running, wall-clock
    throttled): a thread sets the ADC input every ``period_s`` from the mouse's position at the
    board time the host estimates (last lever sample + wall time since). The mouse perceives
    tone and valve events as the host receives them (a few ms late, like a slow mouse)."""

    def __init__(self, sim: Any, mouse: Any, cal: Any, period_s: float = 0.002) -> None:
        from rig.core.simavr import LEVER_ADC_CHANNEL

        self.sim, self.mouse, self.cal = sim, mouse, cal
        self.channel = LEVER_ADC_CHANNEL
        self.period_s = period_s
        self.pty_path: str = sim.pty_path
        self._t_us = 0
        self._t_wall = time.monotonic()
        self._rate = 1.0  # board s per wall s
        self._last_counts: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="simavr-lever", daemon=True)
        self._thread.start()

    def _board_now_us(self) -> int:
        return self._t_us + round((time.monotonic() - self._t_wall) * 1e6 * self._rate)

    def _counts(self, t_us: int) -> int:
        if hasattr(self.mouse, "counts"):  # a LeverInput (test script)
            return int(self.mouse.counts(np.array([t_us], dtype=np.int64))[0])
        mm = float(self.mouse.position_mm(np.array([t_us / 1e6]))[0])
        return int(np.clip(round(self.cal.rest_counts + mm * self.cal.counts_per_mm), 0, 1023))

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            c = self._counts(self._board_now_us())
            if c != self._last_counts:
                try:
                    self.sim.adc_counts(self.channel, c)
                except RigError:
                    return  # the harness exited; the board driver reports the lost link
                self._last_counts = c

    def chain_trail(self, nxt: Callable[[TrailEvent], None] | None) -> Callable[[TrailEvent], None]:
        percepts = {EventCode.TONE_ON: "cue_on", EventCode.TONE_OFF: "cue_off"}
        percepts[EventCode.VALVE_ON] = "reward"

        def on_trail(ev: TrailEvent) -> None:
            if hasattr(self.mouse, "on_output"):
                self.mouse.on_output(ev)
            elif ev.code in percepts:
                self.mouse.perceive(percepts[EventCode(ev.code)], ev.t_us / 1e6)
            if nxt is not None:
                nxt(ev)

        return on_trail

    def chain_lever(self, nxt: Callable[..., None] | None) -> Callable[..., None]:
        def on_lever(t_us: np.ndarray, counts: np.ndarray) -> None:
            if len(t_us):
                now, t = time.monotonic(), int(t_us[-1])
                if now > self._t_wall and t > self._t_us > 0:
                    # simavr under UART load runs slower than wall time: track its rate
                    r = (t - self._t_us) / 1e6 / (now - self._t_wall)
                    self._rate = 0.8 * self._rate + 0.2 * min(max(r, 0.05), 2.0)
                self._t_us, self._t_wall = t, now
            if nxt is not None:
                nxt(t_us, counts)

        return on_lever

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)


def _start_simavr(cfg: LeverBoardSimavr, mouse: Any, closers: list[Callable[[], None]]) -> Any:
    """Start the lever firmware under simavr with its UART on a pty, and the lever feeder."""
    import shutil
    import tempfile

    from rig.core.simavr import AvrSim, ensure_built

    elf, harness = ensure_built("lever_board", cfg.board)
    if cfg.firmware is not None:
        elf = cfg.firmware
    tmp = tempfile.mkdtemp(prefix="rig-simavr-")
    closers.append(lambda: shutil.rmtree(tmp, ignore_errors=True))
    sim = AvrSim(elf, Path(tmp) / "sim.log", board=cfg.board, realtime=cfg.realtime, pty=True,
                 harness=harness)  # fmt: skip
    sim.start()
    closers.append(sim.close)
    if sim.pty_path is None:
        raise RigError("avrsim started without a pty; cannot connect the lever board")
    feeder = _SimavrLever(sim, mouse, cfg.calibration)
    closers.append(feeder.stop)
    return feeder


def connect_lever_board(
    rig: RigConfig,
    subject_id: str,
    *,
    speed: float | None = 1.0,
    mouse: Any = None,
    board_kwargs: dict[str, Any] | None = None,
) -> ConnectedBoard:
    """Connect ``rig.lever_board`` (sim, simavr or serial) and check its HELLO.

    Parameters
    ----------
    speed : float | None
        Simulated board only: board ms per wall ms; ``None`` = as fast as the CPU allows.
    mouse : LeverMouse | LeverInput, optional
        Replaces the config's simulated mouse (tests pass scripted mice, or a ready
        ``rig.core.sim.LeverInput``).
    board_kwargs : dict
        ``LeverBoard`` keyword arguments (callbacks, ``signals``).

    Raises
    ------
    RigError
        No lever board configured, port not openable, wrong firmware (says what to flash).
    """
    cfg = rig.lever_board
    if cfg is None:
        raise RigError(f"rig {rig.name!r} has no lever_board section; a lever task needs one")
    kw = dict(board_kwargs or {})
    closers: list[Callable[[], None]] = []
    fast = speed is None or speed > 1.0
    if isinstance(cfg, LeverBoardSim):
        from rig.core.sim import MouseLever, SimBoardLink, SimLeverBoard

        if mouse is None:
            mouse = _config_mouse(cfg, rig, subject_id)
        if hasattr(mouse, "counts") and hasattr(mouse, "on_output"):
            lever = mouse  # already a LeverInput (a test's scripted lever)
        else:
            lever = MouseLever(mouse, cfg.calibration, cfg.noise_counts, seed=cfg.mouse.seed)
        gate = _TrialStartGate(lever) if fast else None
        sim = SimLeverBoard(gate or lever, board=cfg.board)
        link = SimBoardLink(sim, kind="loopback", speed=speed)
        if gate is not None:
            gate.link = link
        link.start()
        closers.append(link.stop)
        transport = link.transport()
        if fast:
            cfg = cfg.model_copy(update={"heartbeat_timeout_ms": VIRTUAL_HOST_TIMEOUT_MS})
            kw.setdefault("host_heartbeat_s", 0.05)
            kw.setdefault("command_timeout_s", 2.0)
    elif isinstance(cfg, LeverBoardSimavr):
        feeder = _start_simavr(cfg, mouse or _config_mouse(cfg, rig, subject_id), closers)
        mouse = feeder.mouse
        transport = PtyTransport(feeder.pty_path)
        user_trail = kw.get("on_trail")
        kw["on_trail"] = feeder.chain_trail(user_trail)
        user_lever = kw.get("on_lever")
        kw["on_lever"] = feeder.chain_lever(user_lever)
        # simavr runs slower than a board under UART load: give replies time
        kw.setdefault("command_timeout_s", 5.0)
    else:
        from rig.core.transport import SerialTransport

        transport = SerialTransport(cfg.port, cfg.baud)
        mouse = None
    conn = ConnectedBoard(LeverBoard(transport, cfg, **kw), cfg.driver, mouse, closers)
    if isinstance(cfg, LeverBoardSim) and fast:
        conn.gate, conn.resume = gate, link.resume
    try:
        conn.board.connect()
        if (isinstance(cfg, LeverBoardSim) and fast) or isinstance(cfg, LeverBoardSimavr):
            conn.board.set_stream(1, 50)  # fewer, fuller packets: less per-packet overhead
    except BaseException:
        conn.close()
        raise
    return conn


def _load_one_by_one(board: LeverBoard, machine: Any) -> None:
    """Upload a machine one packet at a time, each ACKed before the next.

    ``LeverBoard.load_trial`` sends every chunk at once; the Uno firmware buffers only two
    received frames, so under load (simavr, or a busy board) the later chunks are dropped and
    LOAD_COMMIT is never answered. Waiting per packet costs a few ms per trial, inside the
    upload-ahead slack. (Reported to the board work; drop this once ``load_trial`` paces.)
    """
    from rig.core.protocol import MAX_CHUNK, LoadBegin, LoadChunk, LoadCommit, crc16
    from rig.core.statemachine import validate_blob

    blob = machine.compile().encode()
    h = board.hello
    if h is not None:
        validate_blob(blob, h.max_states, h.max_transitions, int(board.config.valve.max_valve_ms))
    board.command(LoadBegin(len(blob), crc16(blob)))
    for off in range(0, len(blob), MAX_CHUNK):
        board.command(LoadChunk(off, blob[off : off + MAX_CHUNK]))
    board.command(LoadCommit())


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for pkg in ("motor-rig", "numpy", "scipy", "pydantic"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


class LeverRunner:
    """One lever session (satisfies the GUI's ``SessionRunner`` protocol).

    Parameters
    ----------
    rig : RigConfig
    subject_id : str
    task : str
        ``self_initiated`` | ``cue_triggered`` | ``mixed`` (or A/B/C).
    params : pydantic model
        The task's validated params (``tasks.params.make_params``).
    speed : float | None
        Simulated boards: x real time; ``None`` or 0 = as fast as possible (virtual clock).
    duration_s : float, optional
        Extra stop criterion, in board seconds.
    mouse : LeverMouse, optional
        Replaces the config's simulated mouse.
    """

    def __init__(
        self,
        rig: RigConfig,
        subject_id: str,
        task: str,
        params: Any,
        *,
        speed: float | None = 1.0,
        duration_s: float | None = None,
        signals: RigSignals | None = None,
        mouse: Any = None,
    ) -> None:
        self.rig = rig
        self.subject_id = subject_id
        self.task_name = task
        self.params = params
        self.speed = speed or None
        self.duration_s = duration_s
        self.signals = signals or RigSignals()
        self._mouse_override = mouse
        self.task: LeverTask | None = None
        self.conn: ConnectedBoard | None = None
        self.writer: SessionWriter | None = None
        self._q: queue.Queue[TrailEvent] = queue.Queue()
        self._stop_req = threading.Event()
        self._stop_reason = ""
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._raw_early: list[tuple[int, bytes]] = []
        self._trial: int | None = None
        self._t0_us: int | None = None
        self._t_us = 0
        self._wall0 = 0.0
        self._wall_s = 0.0
        self._status = "complete"
        self.error: BaseException | None = None
        self.records: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ SessionRunner API
    @property
    def running(self) -> bool:
        return self._thread is not None and not self._done.is_set()

    @property
    def session_dir(self) -> Path | None:
        return self.writer.folder if self.writer is not None else None

    def start(self) -> None:
        """Connect, open the session folder, start trial 0; returns once it runs."""
        if self._thread is not None:
            raise RigError("this runner has run already; make a new one per session")
        subject = load_subject(self.rig.data_dir, self.subject_id)
        lb = self.rig.lever_board
        if lb is None:
            raise RigError(f"rig {self.rig.name!r} has no lever_board section")
        self.task = make_task(self.task_name, self.params, lb.calibration, lb.valve, subject)
        self._wall0 = time.monotonic()
        self.conn = connect_lever_board(
            self.rig,
            self.subject_id,
            speed=self.speed,
            mouse=self._mouse_override,
            board_kwargs={
                "signals": self.signals,
                "on_raw": self._on_raw,
                "on_event": self._on_event,
                "on_trail": self._on_trail,
                "on_lever": self._on_lever,
            },
        )
        try:
            self._open_session()
            self._thread = threading.Thread(target=self._run, name="lever-runner", daemon=True)
            self._thread.start()
        except BaseException:
            self._teardown("aborted", "failed to start")
            raise

    def stop(self, reason: str = "stopped by the experimenter") -> None:
        """Stop now; returns once the board is safe and the files are closed."""
        if not self._stop_req.is_set() and not self._done.is_set():
            self._stop_reason = reason
            self._stop_req.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def wait(self, timeout_s: float | None = None) -> bool:
        """Wait for the session to end by itself; True if it has."""
        return self._done.wait(timeout_s)

    def run(self) -> dict[str, Any]:
        """``start()``, wait for the stop criteria, return :meth:`summary` (blocking)."""
        self.start()
        try:
            while not self._done.wait(0.2):
                pass
        finally:
            self.stop("interrupted")
        if self.error is not None:
            raise self.error
        return self.summary()

    def give_reward(self, volume_ul: float) -> None:
        self._manual("manual_reward", {"volume_ul": volume_ul})
        self._board().give_reward(volume_ul)

    def play_tone(self, freq_hz: float, duration_ms: float) -> None:
        self._manual("manual_tone", {"freq_hz": freq_hz, "duration_ms": duration_ms})
        self._board().play_tone(round(freq_hz), round(duration_ms))

    def flush_valve(self, duration_ms: float) -> None:
        self._manual("manual_flush", {"duration_ms": duration_ms})
        self._board().open_valve(duration_ms)

    def zero_lever(self) -> None:
        """Take the lever's current position as rest: trials planned from now on use it (the
        one already queued keeps the old thresholds)."""
        counts = self._board().zero_lever()
        if self.task is not None:
            old = self.task.lever_cal.rest_counts
            self.task.lever_cal = self.task.lever_cal.model_copy(update={"rest_counts": counts})
            self._manual("manual_zero_lever", {"rest_counts": counts, "old_rest_counts": old})

    # ------------------------------------------------------------------ progress
    def progress(self) -> dict[str, Any]:
        """Live figures: trials, rewards, success (all, last 20), µl, board time, hold_ms per
        context, median reaction time of cued trials (ms, None before the first)."""
        recs = [r for r in self.records if r["outcome"] != "aborted"]
        outs = [r["outcome"] for r in recs]
        n = len(outs)
        hold = self.task.shaping_state() if self.task is not None else {}
        rts = [r["rt_ms"] for r in recs if r["rt_ms"] is not None]
        return {
            "trials": n,
            "rewards": outs.count("reward"),
            "success_rate": outs.count("reward") / n if n else 0.0,
            "success_last20": float(running_success(outs)[-1]) if n else 0.0,
            "reward_ul": float(sum(r["reward_ul"] for r in recs)),
            "elapsed_s": self.elapsed_s,
            "hold_ms": {k: v["hold_ms"] for k, v in hold.items()},
            "rt_ms_median": float(np.median(rts)) if rts else None,
        }

    @property
    def elapsed_s(self) -> float:
        """Board time since the session started (s)."""
        return 0.0 if self._t0_us is None else (self._t_us - self._t0_us) / 1e6

    def summary(self) -> dict[str, Any]:
        return {
            **self.progress(),
            "folder": str(self.session_dir) if self.session_dir else "",
            "status": self._status,
            "stop_reason": self._stop_reason,
            "wall_s": self._wall_s,
        }

    # ------------------------------------------------------------------ session
    def _open_session(self) -> None:
        assert self.task is not None and self.conn is not None
        h = self.conn.board.hello
        firmware = {}
        if h is not None:
            firmware[self.conn.board.name] = {
                **{k: getattr(h, k) for k in h.__dataclass_fields__},
                "fw_version": h.fw_version,
                "simulated": h.simulated,
            }
        meta = SessionMeta(
            subject_id=self.subject_id,
            task=self.task.name,
            rig_name=self.rig.name,
            rig_config=self.rig.model_dump(mode="json"),
            task_params=self.params.model_dump(mode="json"),
            params_hash=params_hash(self.params),
            software=_versions(),
            firmware=firmware,
            started_at=datetime.now(UTC),
            extra={"driver": self.conn.driver, "speed": self.speed, "duration_s": self.duration_s},
        )
        self.writer = SessionWriter.create(self.rig.data_dir, meta, self.rig.fsync_interval_s)
        for t_ns, data in self._raw_early:
            self.writer.write_raw(self.conn.board.name, data, t_ns)
        self._raw_early.clear()
        self._host_event("session_start", {"params_hash": meta.params_hash, "task": meta.task})
        self.signals.session.emit("started", {"folder": str(self.writer.folder)})

    def _run(self) -> None:
        assert self.task is not None and self.conn is not None
        board, task = self.conn.board, self.task
        plans: dict[int, TrialPlan] = {}
        trail: list[TrailEvent] = []
        try:
            plans[0] = self._queue_trial(task.plan(0))
            while not self._stop_req.is_set():
                try:
                    ev = self._q.get(timeout=0.05)
                except queue.Empty:
                    self._check_time()
                    continue
                if ev.name == "trial_start":
                    n = ev.value
                    trail = [ev]
                    if self._t0_us is None:
                        self._t0_us = ev.t_us
                    if n + 1 not in plans:  # the pending buffer is free again: upload ahead
                        plans[n + 1] = self._queue_trial(task.plan(n + 1))
                    self._resume(upto_trial=n)
                    continue
                trail.append(ev)
                if ev.name == "trial_end":
                    self._finish_trial(plans.pop(ev.value), trail)
                    reason = task.stop_reason(self.elapsed_s)
                    if reason:
                        self._stop_reason = reason
                        self._stop_req.set()
                self._check_time()
            self._abort_running(board, plans, trail)
        except BaseException as e:  # anything: still reach safe state and close the files
            self.error = e
            self._status = "aborted"
            self._stop_reason = f"{type(e).__name__}: {e}"
            log.exception("lever runner failed")
        finally:
            self._teardown(self._status, self._stop_reason)

    def _check_time(self) -> None:
        if self.duration_s is not None and self.elapsed_s >= self.duration_s:
            self._stop_reason = f"duration reached ({self.duration_s:g} s)"
            self._stop_req.set()
        elif self.task is not None and (reason := self.task.stop_reason(self.elapsed_s)):
            self._stop_reason = reason
            self._stop_req.set()

    def _queue_trial(self, plan: TrialPlan) -> TrialPlan:
        assert self.conn is not None
        for name, data in plan.host_events:
            self._host_event(name, data, trial=plan.trial, source="task")
        if self.conn.driver == "sim":
            self.conn.board.load_trial(plan.machine)
        else:
            _load_one_by_one(self.conn.board, plan.machine)
        self.conn.board.start_trial(plan.trial)
        return plan

    def _finish_trial(self, plan: TrialPlan, trail: list[TrailEvent]) -> None:
        assert self.task is not None and self.writer is not None
        rec = self.task.record(plan, trail)
        row = rec.row()
        self.writer.write_trial(row)
        self.records.append(row)
        for name, data in self.task.finish(rec):
            self._host_event(name, data, trial=plan.trial, source="task")
        self.signals.trial.emit(row)

    def _abort_running(
        self, board: LeverBoard, plans: dict[int, TrialPlan], trail: list[TrailEvent]
    ) -> None:
        """Cancel the queued start, abort the running trial and record it as ``aborted``."""
        self._resume()  # the abort takes effect at the board's next tick
        with contextlib.suppress(RigError):
            board.stop_trial()
        if self._trial is None:
            return
        with contextlib.suppress(RigError):
            board.abort_trial()
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                ev = self._q.get(timeout=0.05)
            except queue.Empty:
                continue
            if ev.name == "trial_start":
                trail = [ev]
                continue
            trail.append(ev)
            if ev.name == "trial_end" and ev.value in plans:
                self._finish_trial(plans.pop(ev.value), trail)
                return

    def _teardown(self, status: str, reason: str) -> None:
        """Safe state, close the board, close the files, save subject and mouse state."""
        try:
            if self.conn is not None:
                self._resume()  # RESET_SAFE acts at the board's next tick
                if not self.conn.board.safe_state():
                    log.error("lever board did not confirm its safe state")
                self.conn.close()
        finally:
            self._wall_s = time.monotonic() - self._wall0
            if self.writer is not None:
                self._host_event("session_stop", {"reason": reason, "status": status})
                self.writer.close(status, reason)
                self._save_subject()
            self._status = status
            self.signals.session.emit(
                "stopped", {"folder": str(self.session_dir), "reason": reason, "status": status}
            )
            self._done.set()

    def _save_subject(self) -> None:
        assert self.task is not None and self.writer is not None
        subject = load_subject(self.rig.data_dir, self.subject_id)
        subject.shaping.update(self.task.shaping_state())
        save_subject(self.rig.data_dir, subject, session=self.writer.folder.name)
        mouse = self.conn.mouse if self.conn is not None else None
        if mouse is not None and hasattr(mouse, "end_session"):
            save_mouse_state(self.rig.data_dir, self.subject_id, mouse.end_session())

    # ------------------------------------------------------------------ reader-thread callbacks
    def _on_raw(self, t_ns: int, data: bytes) -> None:
        if self.writer is None:
            self._raw_early.append((t_ns, data))
        elif not self.writer.failed:
            with contextlib.suppress(RigError):
                self.writer.write_raw(
                    self.conn.board.name if self.conn else "lever_board", data, t_ns
                )

    def _on_trail(self, ev: TrailEvent) -> None:
        if ev.name == "trial_start":
            self._trial = ev.value
        self._t_us = max(self._t_us, ev.t_us)
        self._q.put(ev)

    def _on_event(self, ev: Event) -> None:
        ev.trial = self._trial
        if ev.name == "trial_end":
            self._trial = None
        if self.writer is not None:
            with contextlib.suppress(RigError):
                self.writer.write_event(ev)

    def _on_lever(self, t_us: np.ndarray, counts: np.ndarray) -> None:
        if len(t_us):
            self._t_us = max(self._t_us, int(t_us[-1]))
        if self.writer is not None:
            with contextlib.suppress(RigError):
                self.writer.write_lever(t_us, counts)

    # ------------------------------------------------------------------ helpers
    def _host_event(
        self, name: str, data: dict[str, Any], trial: int | None = None, source: str = "host"
    ) -> None:
        ev = Event(name, source, None, trial=trial, data=data)
        if self.writer is not None:
            with contextlib.suppress(RigError):
                self.writer.write_event(ev)
        self.signals.event.emit(ev)

    def _manual(self, name: str, data: dict[str, Any]) -> None:
        self._host_event(name, data, trial=self._trial, source="gui")

    def _resume(self, upto_trial: int | None = None) -> None:
        """Unfreeze board time, unless a later trial has started and froze it again (its
        successor is not queued yet)."""
        conn = self.conn
        if conn is None or conn.resume is None or conn.gate is None:
            return
        paused_for = conn.gate.paused_for
        if upto_trial is None or paused_for is None or paused_for <= upto_trial:
            conn.resume()

    def _board(self) -> LeverBoard:
        if self.conn is None or not self.running:
            raise RigError("no session is running")
        return self.conn.board

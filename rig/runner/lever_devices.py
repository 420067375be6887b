"""Lever board connection for the runner: the sim, simavr and serial drivers from the rig config.

:func:`connect_lever_board` builds whatever ``rig.lever_board`` names and returns a
:class:`ConnectedBoard` whose ``close()`` tears everything down (board safe state first):

- ``sim``: the byte-level ``rig.core.sim.SimLeverBoard`` behind a loopback ``SimBoardLink``, fed
  by the config's simulated mouse (or a test's scripted lever), optionally with a frame clock;
  on a virtual clock (speed > 1 or None) a :class:`_TrialStartGate` freezes board time at each
  trial start until the runner has queued the next trial;
- ``simavr``: the real firmware under simavr on a pty, with a thread feeding the mouse's lever to
  its ADC (:class:`_SimavrLever`);
- ``serial``: the real board.

:func:`load_one_by_one` is the paced trial upload the Uno firmware needs under load;
:class:`BoardRecorder` writes the board's stream to the session files.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rig.core.config import LeverBoardSim, LeverBoardSimavr, RigConfig
from rig.core.devices import LeverBoard
from rig.core.errors import RigError
from rig.core.events import Event
from rig.core.protocol import EventCode
from rig.core.statemachine import TrailEvent
from rig.core.store import SessionWriter
from rig.core.transport import PtyTransport
from tasks.sim_mouse import resume_learner

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
    #: Virtual clock only: the gate freezes board time at each trial start (and it starts
    #: frozen), ``resume`` unfreezes it once the next trial is queued (the board answers
    #: commands while frozen).
    gate: _TrialStartGate | None = None
    resume: Callable[[], None] | None = None

    def queue_trial(self, plan: Any) -> None:
        """Upload a ``TrialPlan``'s machine to the pending buffer and queue its start."""
        if self.driver == "sim":
            self.board.load_trial(plan.machine)
        else:
            load_one_by_one(self.board, plan.machine)
        self.board.start_trial(plan.trial)

    def resume_time(self, upto_trial: int | None = None) -> None:
        """Unfreeze a virtual-clock board, unless a trial after ``upto_trial`` has started and
        froze it again (its successor is not queued yet). No-op on other boards."""
        if self.resume is None or self.gate is None:
            return
        paused_for = self.gate.paused_for
        if upto_trial is None or paused_for is None or paused_for <= upto_trial:
            self.resume()

    def firmware_record(self) -> dict[str, Any]:
        """``SessionMeta.firmware``: the board's HELLO by board name (empty before one)."""
        h = self.board.hello
        if h is None:
            return {}
        fields = {k: getattr(h, k) for k in h.__dataclass_fields__}
        return {self.board.name: {**fields, "fw_version": h.fw_version, "simulated": h.simulated}}

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


class BoardRecorder:
    """Writes a board's stream (raw bytes, events, lever batches; reader thread) to the session
    writer. The board streams from the moment it connects, before the folder can be opened
    (it needs the board's HELLO): what arrives before :meth:`attach` is kept and written first,
    in arrival order, so the files start with the board."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._early: list[tuple[str, Any]] = []
        self._writer: SessionWriter | None = None
        self._name = "lever_board"

    def attach(self, writer: SessionWriter, board_name: str) -> None:
        """Write what was kept, then write everything straight through."""
        with self._lock:
            self._name = board_name
            for kind, item in self._early:
                self._write(writer, kind, item)
            self._early.clear()
            self._writer = writer

    def raw(self, t_ns: int, data: bytes) -> None:
        self._record("raw", (t_ns, data))

    def event(self, ev: Event) -> None:
        self._record("event", ev)

    def lever(self, t_us: np.ndarray, counts: np.ndarray) -> None:
        self._record("lever", (t_us, counts))

    def _record(self, kind: str, item: Any) -> None:
        with self._lock:
            writer = self._writer
            if writer is None:
                self._early.append((kind, item))
                return
        if not writer.failed:
            self._write(writer, kind, item)

    def _write(self, writer: SessionWriter, kind: str, item: Any) -> None:
        # a failed writer reports itself (``writer.failed``); the reader thread goes on
        with contextlib.suppress(RigError):
            if kind == "raw":
                writer.write_raw(self._name, item[1], item[0])
            elif kind == "event":
                writer.write_event(item)
            else:
                writer.write_lever(*item)


def connect_lever_board(
    rig: RigConfig,
    subject_id: str,
    *,
    speed: float | None = 1.0,
    mouse: Any = None,
    board_kwargs: dict[str, Any] | None = None,
    frame_clock_hz: float | None = None,
    frame_clock_start_us: int = 0,
    frame_clock_n_frames: int | None = None,
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
    frame_clock_hz : float, optional
        Simulated board only: a frame clock on ``frame_clock_pin`` at this rate (the board
        reports each edge as a ``frame`` event), as a microscope would drive it.
    frame_clock_start_us : int
        Board time of the first frame-clock edge (µs).
    frame_clock_n_frames : int, optional
        Edges to give in all (``None``: for as long as the board runs).

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
        clock = None
        if frame_clock_hz is not None:
            from rig.core.sim import FrameClock

            clock = FrameClock(frame_clock_hz, frame_clock_start_us, frame_clock_n_frames)
        sim = SimLeverBoard(gate or lever, board=cfg.board, frame_clock=clock)
        link = SimBoardLink(sim, kind="loopback", speed=speed)
        if gate is not None:
            gate.link = link
            # board time waits for the host from tick 0 until trial 0 is queued (the runner
            # resumes it; the board answers the handshake frozen): a virtual clock would
            # otherwise race ahead while the host connects, opens the session folder and starts
            # imaging, and the idle lead-in (and the simulated mouse's day) would vary by run
            link.pause()
        link.start()
        closers.append(link.stop)
        transport = link.transport()
        if fast:
            cfg = cfg.model_copy(update={"heartbeat_timeout_ms": VIRTUAL_HOST_TIMEOUT_MS})
            kw.setdefault("host_heartbeat_s", 0.05)
            # no real-time bound on a virtual clock; a host starved by imaging threads on a
            # loaded machine must not time out on a reply
            kw.setdefault("command_timeout_s", 10.0)
    elif isinstance(cfg, LeverBoardSimavr):
        if frame_clock_hz is not None:
            raise RigError("a simulated frame clock needs lever_board.driver 'sim'")
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

        if frame_clock_hz is not None:
            raise RigError("a simulated frame clock needs lever_board.driver 'sim'")

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


def load_one_by_one(board: LeverBoard, machine: Any) -> None:
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

"""Python reference interpreter of docs/state_machine.md: the board's engine, step by step.

``Engine`` holds everything the firmware holds (pending/active machine, detectors, timers,
outputs). ``Engine.tick`` runs one 1 kHz tick and ``Engine.edge`` one lick-input edge at its own
µs time (section 4a); each returns the EVENT packets the firmware would send for it, in the same
order. Call them in board-time order: an edge at ``t_us`` goes before tick ``k`` when
``t_us < t_k`` and after it otherwise. The simulated board (``rig.core.sim``) wraps it with the
byte protocol; ``run_machine`` drives it from arrays for tests and the equivalence check::

    trail = run_machine(machine, lever_counts)          # lever_counts: int16 (n,) at 1 kHz
    [(e.t_us, e.name, e.arg, e.value) for e in trail]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple, Protocol

import numpy as np

from rig.core.protocol.codes import (
    ABORTED_STATE,
    INPUT_PRIORITY,
    SOURCE_HOST,
    SOURCE_MACHINE,
    SOURCE_SAFE,
    ErrorCode,
    EventCode,
)
from rig.core.statemachine import blob as B
from rig.core.statemachine.model import StateMachine

E = EventCode
_GTIMERS = (E.GTIMER_0, E.GTIMER_1, E.GTIMER_2, E.GTIMER_3)


class _Emit(Protocol):
    def __call__(self, code: int, arg: int = 0, value: int = 0) -> None: ...


class TrailEvent(NamedTuple):
    """One EVENT packet: board time (µs), ``EventCode``, arg, value (docs/state_machine.md 8)."""

    t_us: int
    code: int
    arg: int
    value: int

    @property
    def name(self) -> str:
        return E(self.code).event_name


class Engine:
    """The board's state-machine engine (one per board).

    Commands (``commit``, ``start``, ``abort``, ``soft_event``, ``open_valve``...) take effect at
    the next ``tick`` call, as host commands received between two ticks do on the board. Those
    that can be refused return ``(ErrorCode, detail)``, or ``None`` when accepted.
    """

    def __init__(self, max_valve_ms: int = 500) -> None:
        self.max_valve_ms = max_valve_ms
        self.pending: B.CompiledMachine | None = None
        self.active: B.CompiledMachine | None = None
        self.queued_start: int | None = None
        self.running = False
        self.trial_num = 0
        self.state = ABORTED_STATE
        self.host_timed_out = False
        self.valve_on = False
        self.tone_on = False
        self.ttl = 0
        self._levels_next = False  # the next tick takes lever/lick candidates from levels
        self._k_last = -1  # last tick run
        self._x_last = 0  # its lever sample
        self._tup_at: int | None = None
        self._gt_at: list[int | None] = [None] * 4
        self._up = self._rest = self._over = False
        self._lick_prev = 0
        self._valve_end: int | None = None
        self._valve_cap_at: int | None = None  # tick an untimed opening is cut at max_valve_ms
        self._tone_end: int | None = None
        self._trans: dict[int, int] = {}
        self._cmds: list[tuple[str, int, int]] = []
        self._out: list[TrailEvent] = []
        self._t_us = 0

    # ------------------------------------------------------------------ host commands
    def commit(self, machine: B.CompiledMachine) -> tuple[ErrorCode, int] | None:
        """Make ``machine`` the pending one (LOAD_COMMIT after validation)."""
        if self.queued_start is not None:
            return ErrorCode.BUSY, 0
        self.pending = machine
        return None

    def start(self, trial_num: int) -> tuple[ErrorCode, int] | None:
        if self.queued_start is not None:
            return ErrorCode.BUSY, 0
        if self.pending is None:
            return ErrorCode.NO_MACHINE, 0
        self.queued_start = trial_num & 0xFFFFFFFF
        return None

    def stop(self) -> None:
        self.queued_start = None

    def abort(self) -> None:
        self._cmds.append(("abort", 0, 0))

    def reset_safe(self) -> None:
        self._cmds.append(("safe", 0, 0))

    def soft_event(self, n: int) -> tuple[ErrorCode, int] | None:
        if not 0 <= n <= 7:
            return ErrorCode.BAD_VALUE, 0
        self._cmds.append(("soft", n, 0))
        return None

    def open_valve(self, duration_ms: int) -> tuple[ErrorCode, int] | None:
        if duration_ms > self.max_valve_ms:
            return ErrorCode.VALVE_CAP, self.max_valve_ms
        self._cmds.append(("valve", duration_ms, 0))
        return None

    def play_tone(self, freq_hz: int, duration_ms: int) -> tuple[ErrorCode, int] | None:
        if duration_ms and not B.TONE_MIN_HZ <= freq_hz <= B.TONE_MAX_HZ:
            return ErrorCode.BAD_VALUE, 0
        self._cmds.append(("tone", freq_hz, duration_ms))
        return None

    def set_ttl(self, mask: int, value: int) -> None:
        self._cmds.append(("ttl", mask & 0xFF, value & 0xFF))

    # ------------------------------------------------------------------ the steps
    def tick(self, k: int, t_us: int, x: int, lick: int | None = None) -> list[TrailEvent]:
        """Run tick ``k`` (board time ``t_us``) with lever sample ``x`` (counts).

        ``lick``, if given, is the lick level sampled at this tick (boards simulated per tick):
        a change is taken as an edge at ``t_us``, which the ordering rule puts after the tick.
        Returns the EVENT packets of this tick (then of that edge) in emission order.
        """
        out: list[TrailEvent] = []
        self._out, self._t_us = out, t_us
        self._k_last, self._x_last = k, x
        emit = self._emit
        # 1. timed outputs expire
        if self.valve_on and k in (self._valve_end, self._valve_cap_at):
            self.valve_on, self._valve_end, self._valve_cap_at = False, None, None
            emit(E.VALVE_OFF, SOURCE_MACHINE)
        if self.tone_on and self._tone_end == k:
            self.tone_on, self._tone_end = False, None
            emit(E.TONE_OFF, SOURCE_MACHINE)
        # 2. host commands received since the last tick, in arrival order
        soft: list[int] = []
        for kind, a, b in self._cmds:
            if kind == "soft":
                soft.append(a)
            else:
                self._host_command(kind, a, b, k, emit)
        self._cmds.clear()
        # 3. the running trial
        if self.running:
            self._trial_tick(k, x, soft, emit)
        # 4. start
        self._start_step(k, x, emit)
        if lick is not None:
            out += self.edge(lick, t_us)
        return out

    def edge(self, level: int, t_us: int) -> list[TrailEvent]:
        """The lick input is at ``level`` (0/1) from board time ``t_us`` on (section 4a).

        Durations started here count from the next tick (``k_last + 1``). Returns its EVENT
        packets (none when the level did not change).
        """
        out: list[TrailEvent] = []
        level = 1 if level else 0
        if level == self._lick_prev:
            return out
        self._lick_prev = level
        self._out, self._t_us = out, t_us
        emit = self._emit
        code = E.LICK_ON if level else E.LICK_OFF
        emit(code)
        if self.running and code in self._trans:
            k = self._k_last + 1
            self._enter(k, self._trans[code], code, emit)
            # a trial that ended at this edge is followed at once by a queued one
            self._start_step(k, self._x_last, emit)
        return out

    def _start_step(self, k: int, x: int, emit: _Emit) -> None:
        if not self.running and self.queued_start is not None:
            if self.host_timed_out:
                emit(E.START_DROPPED, 0, self.queued_start)
                self.queued_start = None
            else:
                self._start(k, x, emit)

    def _emit(self, code: int, arg: int = 0, value: int = 0) -> None:
        self._out.append(TrailEvent(self._t_us, int(code), arg, value))

    def _host_command(self, kind: str, a: int, b: int, k: int, emit: _Emit) -> None:
        if kind == "abort":
            self._abort(emit)
        elif kind == "safe":
            self._abort(emit)
            self._outputs_off(emit)
            if self.ttl:
                self.ttl = 0
                emit(E.TTL, 0, 0xFF)
            self.pending = None
        elif kind == "valve":
            self._valve(a > 0, k + a if a else None, SOURCE_HOST, a, emit)
        elif kind == "tone":
            self._tone(b > 0, k + b if b else None, SOURCE_HOST, a, emit)
        elif kind == "ttl":
            self._ttl(a, b, emit)

    def _trial_tick(self, k: int, x: int, soft: list[int], emit: _Emit) -> None:
        m = self.active
        assert m is not None
        xi = -x if m.flags & B.INVERT else x
        h = m.hyst_counts
        edges: list[int] = []  # EventCode values
        if m.flags & B.OVER_ENABLED:
            if not self._over and xi >= m.over_counts:
                self._over = True
                edges.append(E.LEVER_OVER)
            elif self._over and xi < m.over_counts - h:
                self._over = False
        if not self._up and xi >= m.up_counts:
            self._up = True
            edges.append(E.LEVER_UP)
        elif self._up and xi < m.up_counts - h:
            self._up = False
            edges.append(E.LEVER_DOWN)
        if self._rest and (xi < m.rest_lo_counts or xi > m.rest_hi_counts):
            self._rest = False
            edges.append(E.LEVER_UNREST)
        elif not self._rest and m.rest_lo_counts + h <= xi <= m.rest_hi_counts - h:
            self._rest = True
            edges.append(E.LEVER_REST)
        for code in edges:
            emit(code, 0, x)
        fired: list[int] = []
        if self._tup_at == k:
            self._tup_at = None
            emit(E.TUP, self.state)
            fired.append(E.TUP)
        for i, at in enumerate(self._gt_at):
            if at == k:
                self._gt_at[i] = None
                emit(_GTIMERS[i])
                fired.append(_GTIMERS[i])
        for n in soft:
            emit(E.SOFT_0 + n)
            fired.append(E.SOFT_0 + n)
        if self._levels_next:
            self._levels_next = False
            cands: set[int] = {
                E.LEVER_UP if self._up else E.LEVER_DOWN,
                E.LEVER_REST if self._rest else E.LEVER_UNREST,
                E.LICK_ON if self._lick_prev else E.LICK_OFF,
            }
            if self._over:
                cands.add(E.LEVER_OVER)
        else:
            cands = set(edges)
        cands.update(fired)
        for code in INPUT_PRIORITY:
            if code in cands and code in self._trans:
                self._enter(k, self._trans[code], code, emit)
                return

    def _start(self, k: int, x: int, emit: _Emit) -> None:
        m = self.pending
        assert m is not None and self.queued_start is not None
        self.active, self.pending = m, None
        self.trial_num, self.queued_start = self.queued_start, None
        self.running = True
        emit(E.TRIAL_START, m.initial, self.trial_num)
        xi = -x if m.flags & B.INVERT else x
        self._up = xi >= m.up_counts
        self._rest = m.rest_lo_counts <= xi <= m.rest_hi_counts
        self._over = bool(m.flags & B.OVER_ENABLED) and xi >= m.over_counts
        self._gt_at = [None] * 4
        self._enter(k, m.initial, E.NONE, emit)

    def _enter(self, k: int, s: int, cause: int, emit: _Emit) -> None:
        m = self.active
        assert m is not None
        st = m.states[s]
        emit(E.STATE_ENTER, s, int(cause))
        self.state, self._levels_next = s, True
        self._trans = m.transitions_of(s)
        self._tup_at = k + max(st.tup_ms, 1) if st.has_tup else None
        if st.valve_mode != B.UNCHANGED:
            ms = min(st.valve_ms, self.max_valve_ms)
            timed = st.valve_mode == B.PULSE
            if st.valve_mode == B.ON and not (self.valve_on and self._valve_end is None):
                # hard cap on an untimed opening, counted from when the valve opened
                self._valve_cap_at = k + self.max_valve_ms
            self._valve(
                st.valve_mode != B.OFF,
                k + ms if timed else None,
                SOURCE_MACHINE,
                ms if timed else 0,
                emit,
            )
        if st.tone_mode != B.UNCHANGED:
            timed = st.tone_mode == B.PULSE
            self._tone(
                st.tone_mode != B.OFF,
                k + st.tone_ms if timed else None,
                SOURCE_MACHINE,
                st.tone_freq_hz,
                emit,
            )
        if st.ttl_mask:
            self._ttl(st.ttl_mask, st.ttl_value, emit)
        if st.flags & B.TRIAL_CODE:
            emit(E.TRIAL_CODE, 0, self.trial_num & 0xFFF)
        for i in range(4):
            if st.gt_cancel >> i & 1:
                self._gt_at[i] = None
        for i in range(4):
            if st.gt_start >> i & 1:
                self._gt_at[i] = k + max(m.gtimer_ms[i], 1)
        if st.terminal:
            if self.valve_on and self._valve_end is None:
                self.valve_on = False
                emit(E.VALVE_OFF, SOURCE_MACHINE)
            if self.tone_on and self._tone_end is None:
                self.tone_on = False
                emit(E.TONE_OFF, SOURCE_MACHINE)
            self._end_trial(s, emit)

    def _end_trial(self, s: int, emit: _Emit) -> None:
        self._gt_at = [None] * 4
        self._tup_at = None
        self.running = False
        emit(E.TRIAL_END, s, self.trial_num)
        self.state = ABORTED_STATE

    def _abort(self, emit: _Emit) -> None:
        self.queued_start = None
        if self.running:
            self._outputs_off(emit)
            self._end_trial(ABORTED_STATE, emit)

    def _outputs_off(self, emit: _Emit) -> None:
        if self.valve_on:
            self.valve_on, self._valve_end = False, None
            emit(E.VALVE_OFF, SOURCE_SAFE)
        if self.tone_on:
            self.tone_on, self._tone_end = False, None
            emit(E.TONE_OFF, SOURCE_SAFE)

    def _valve(self, on: bool, end: int | None, source: int, value: int, emit: _Emit) -> None:
        self.valve_on, self._valve_end = on, end if on else None
        if not on or end is not None:  # closed, or a timed pulse: no untimed cap pending
            self._valve_cap_at = None
        emit(E.VALVE_ON if on else E.VALVE_OFF, source, value if on else 0)

    def _tone(self, on: bool, end: int | None, source: int, freq_hz: int, emit: _Emit) -> None:
        self.tone_on, self._tone_end = on, end if on else None
        emit(E.TONE_ON if on else E.TONE_OFF, source, freq_hz if on else 0)

    def _ttl(self, mask: int, value: int, emit: _Emit) -> None:
        self.ttl = (self.ttl & ~mask | value & mask) & 0xFF
        emit(E.TTL, self.ttl, mask)


MachineLike = StateMachine | B.CompiledMachine


def _compiled(m: MachineLike) -> B.CompiledMachine:
    return m.compile() if isinstance(m, StateMachine) else m


def run_machine(
    machines: MachineLike | Sequence[MachineLike],
    lever_counts: np.ndarray,
    *,
    lick: np.ndarray | None = None,
    lick_edges: Iterable[tuple[int, int]] = (),
    start_tick: int = 0,
    soft_events: Iterable[tuple[int, int]] = (),
    t0_us: int = 0,
    sample_period_us: int = 1000,
    first_trial_num: int = 0,
    max_valve_ms: int = 500,
) -> list[TrailEvent]:
    """Run one machine, or several back to back, over a lever trace; return the full trail.

    Parameters
    ----------
    machines : StateMachine | CompiledMachine | sequence of them
        Trial ``i`` runs ``machines[i]``; each next machine is uploaded and its start queued
        while the previous trial runs, so it starts in the tick the previous one ends.
    lever_counts : np.ndarray
        int (n,) raw counts, one per 1 kHz tick; tick ``k`` has time ``t0_us + k * period``.
    lick : np.ndarray, optional
        (n,) lick input level per tick (0/1), each change taken as an edge at its tick's time;
        default all 0.
    lick_edges : iterable of (t_us, level)
        Lick input edges at their own board times (µs), in time order; an edge at ``t_us``
        runs before tick ``k`` when ``t_us`` is earlier than the tick's time, else after it.
    start_tick : int
        Tick at which the first START takes effect (the trial starts in that tick).
    soft_events : iterable of (tick, n)
        Soft event ``n`` (0..7) applied at ``tick``.
    max_valve_ms : int
        The board's valve cap (SET_CONFIG); pulses above it are cut.

    Returns
    -------
    list[TrailEvent]
        Every EVENT the board would send, in order (``t_us``, ``code``, ``arg``, ``value``).
    """
    seq = [machines] if isinstance(machines, StateMachine | B.CompiledMachine) else list(machines)
    compiled = [_compiled(m) for m in seq]
    x = np.asarray(lever_counts)
    n = len(x)
    lk = np.zeros(n, dtype=np.int8) if lick is None else np.asarray(lick)
    if len(lk) != n:
        raise ValueError(f"lick has {len(lk)} samples, lever_counts has {n}")
    soft: dict[int, list[int]] = {}
    for tick_k, sn in soft_events:
        soft.setdefault(int(tick_k), []).append(int(sn))
    eng = Engine(max_valve_ms=max_valve_ms)
    trail: list[TrailEvent] = []
    nxt = 0
    xs = x.tolist()
    ls = lk.tolist()
    edges = [(int(t), int(v)) for t, v in lick_edges]
    ie = 0
    for k in range(n):
        t_k = t0_us + k * sample_period_us
        while ie < len(edges) and edges[ie][0] < t_k:
            trail += eng.edge(edges[ie][1], edges[ie][0])
            ie += 1
        for sn in soft.get(k, ()):
            eng.soft_event(sn)
        if (
            k >= start_tick
            and nxt < len(compiled)
            and eng.queued_start is None
            and (eng.pending is None)
        ):
            eng.commit(compiled[nxt])
            eng.start(first_trial_num + nxt)
            nxt += 1
        trail += eng.tick(k, t_k, int(xs[k]), int(ls[k]) if lick is not None else None)
    return trail


def trial_outcomes(
    trail: Iterable[TrailEvent], machines: MachineLike | Sequence[MachineLike]
) -> list[tuple[int, str, int, int]]:
    """``(trial_num, outcome, t_start_us, t_end_us)`` per finished trial of ``run_machine``.

    ``machines`` as given to ``run_machine`` (trial ``i`` -> ``machines[i]``) to name states.
    """
    seq = [machines] if isinstance(machines, StateMachine | B.CompiledMachine) else list(machines)
    compiled = [_compiled(m) for m in seq]
    out, t_start, i = [], 0, 0
    for ev in trail:
        if ev.code == E.TRIAL_START:
            t_start = ev.t_us
        elif ev.code == E.TRIAL_END:
            m = compiled[min(i, len(compiled) - 1)]
            out.append((ev.value, m.state_name(ev.arg), t_start, ev.t_us))
            i += 1
    return out

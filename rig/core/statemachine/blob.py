"""The compiled machine and its binary blob (docs/state_machine.md, section 7).

``CompiledMachine`` is what both engines run: states and transitions by index, thresholds in
counts. ``encode()`` gives the blob uploaded with LOAD_*; ``decode_blob`` reads one back (the
simulated board does), and ``validate_blob`` applies the firmware's LOAD_COMMIT checks in the
same byte order, returning the same NAK error code and byte offset the firmware would.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from rig.core.protocol.codes import INPUT_EVENTS, ErrorCode, EventCode

FORMAT = 1
HEADER = struct.Struct("<BBBBBBhhhhH4I")
STATE = struct.Struct("<BBHBBHHBBIBB")
TRANSITION = struct.Struct("<BB")
assert HEADER.size == 32 and STATE.size == 18 and TRANSITION.size == 2

# header flags
INVERT = 0x01
OVER_ENABLED = 0x02
# state flags
TERMINAL = 0x01
HAS_TUP = 0x02
TRIAL_CODE = 0x04
# output modes
UNCHANGED, ON, OFF, PULSE = 0, 1, 2, 3
TONE_MIN_HZ, TONE_MAX_HZ = 31, 20000


def blob_size(n_states: int, n_transitions: int) -> int:
    """Bytes of a machine blob: 32 + 18 per state + 2 per transition."""
    return HEADER.size + STATE.size * n_states + TRANSITION.size * n_transitions


@dataclass(frozen=True, slots=True)
class CState:
    """One state record, field for field as in the blob."""

    flags: int = 0
    valve_mode: int = UNCHANGED
    valve_ms: int = 0
    tone_mode: int = UNCHANGED
    ttl_mask: int = 0
    tone_freq_hz: int = 0
    tone_ms: int = 0
    ttl_value: int = 0
    gt_start: int = 0  # 4-bit mask
    gt_cancel: int = 0  # 4-bit mask
    tup_ms: int = 0
    first_transition: int = 0
    n_transitions: int = 0

    @property
    def terminal(self) -> bool:
        return bool(self.flags & TERMINAL)

    @property
    def has_tup(self) -> bool:
        return bool(self.flags & HAS_TUP)


@dataclass(frozen=True, slots=True)
class CompiledMachine:
    """A machine by index, thresholds in counts. ``names`` is host-side only (not in the blob)."""

    initial: int
    flags: int
    up_counts: int
    over_counts: int
    rest_lo_counts: int
    rest_hi_counts: int
    hyst_counts: int
    gtimer_ms: tuple[int, int, int, int]
    states: tuple[CState, ...]
    transitions: tuple[tuple[int, int], ...]  # (event code, target) grouped by state
    names: tuple[str, ...] = ()

    def state_name(self, index: int) -> str:
        if index == 0xFF:
            return "aborted"
        return self.names[index] if index < len(self.names) else f"s{index}"

    def transitions_of(self, s: int) -> dict[int, int]:
        """``{event code: target}`` of state ``s``."""
        st = self.states[s]
        sl = self.transitions[st.first_transition : st.first_transition + st.n_transitions]
        return dict(sl)

    def encode(self) -> bytes:
        """The blob uploaded with LOAD_BEGIN/CHUNK/COMMIT."""
        out = bytearray(
            HEADER.pack(
                FORMAT,
                len(self.states),
                len(self.transitions),
                self.initial,
                self.flags,
                0,
                self.up_counts,
                self.over_counts,
                self.rest_lo_counts,
                self.rest_hi_counts,
                self.hyst_counts,
                *self.gtimer_ms,
            )
        )
        for s in self.states:
            out += STATE.pack(
                s.flags,
                s.valve_mode,
                s.valve_ms,
                s.tone_mode,
                s.ttl_mask,
                s.tone_freq_hz,
                s.tone_ms,
                s.ttl_value,
                (s.gt_start & 0xF) | ((s.gt_cancel & 0xF) << 4),
                s.tup_ms,
                s.first_transition,
                s.n_transitions,
            )
        for ev, tgt in self.transitions:
            out += TRANSITION.pack(ev, tgt)
        return bytes(out)


class BlobError(ValueError):
    """A blob failed validation: ``error`` (NAK code) and ``offset`` (NAK detail)."""

    def __init__(self, error: ErrorCode, offset: int, message: str) -> None:
        self.error = error
        self.offset = offset
        super().__init__(f"machine blob byte {offset}: {message} ({error.name})")


def decode_blob(blob: bytes) -> CompiledMachine:
    """Parse a blob (structure only; call ``validate_blob`` first for the board's checks)."""
    if len(blob) < HEADER.size:
        raise BlobError(ErrorCode.MACHINE_INVALID, len(blob), "shorter than the 32-byte header")
    h = HEADER.unpack_from(blob)
    n_s, n_t = h[1], h[2]
    if len(blob) != blob_size(n_s, n_t):
        raise BlobError(
            ErrorCode.MACHINE_INVALID, 1, f"length {len(blob)} != {blob_size(n_s, n_t)}"
        )
    states = []
    for i in range(n_s):
        f = STATE.unpack_from(blob, HEADER.size + STATE.size * i)
        states.append(
            CState(
                flags=f[0],
                valve_mode=f[1],
                valve_ms=f[2],
                tone_mode=f[3],
                ttl_mask=f[4],
                tone_freq_hz=f[5],
                tone_ms=f[6],
                ttl_value=f[7],
                gt_start=f[8] & 0xF,
                gt_cancel=f[8] >> 4,
                tup_ms=f[9],
                first_transition=f[10],
                n_transitions=f[11],
            )
        )
    base = HEADER.size + STATE.size * n_s
    trans = tuple(TRANSITION.unpack_from(blob, base + 2 * j) for j in range(n_t))
    return CompiledMachine(
        initial=h[3],
        flags=h[4],
        up_counts=h[6],
        over_counts=h[7],
        rest_lo_counts=h[8],
        rest_hi_counts=h[9],
        hyst_counts=h[10],
        gtimer_ms=(h[11], h[12], h[13], h[14]),
        states=tuple(states),
        transitions=trans,
    )


def validate_blob(blob: bytes, max_states: int, max_transitions: int, max_valve_ms: int) -> None:
    """Apply the LOAD_COMMIT checks of docs/state_machine.md 7, in the firmware's order.

    Raises
    ------
    BlobError
        With the NAK error code and byte offset the firmware reports for the first failure.
    """

    def bad(offset: int, msg: str, err: ErrorCode = ErrorCode.MACHINE_INVALID) -> BlobError:
        return BlobError(err, offset, msg)

    if len(blob) < HEADER.size:
        raise bad(len(blob), "shorter than the 32-byte header")
    h = HEADER.unpack_from(blob)
    fmt, n_s, n_t, initial, flags, _res = h[:6]
    rest_lo, rest_hi, hyst = h[8], h[9], h[10]
    if fmt != FORMAT:
        raise bad(0, f"format {fmt}, expected {FORMAT}")
    if not 1 <= n_s <= max_states:
        raise bad(1, f"{n_s} states, the board allows 1..{max_states}")
    if n_t > max_transitions:
        raise bad(2, f"{n_t} transitions, the board allows at most {max_transitions}")
    if len(blob) != blob_size(n_s, n_t):
        raise bad(
            1,
            f"blob is {len(blob)} bytes, {n_s} states and {n_t} transitions need "
            f"{blob_size(n_s, n_t)}",
        )
    if initial >= n_s:
        raise bad(3, f"initial state {initial} >= n_states {n_s}")
    if flags & ~(INVERT | OVER_ENABLED):
        raise bad(4, f"unknown header flag bits 0x{flags:02X}")
    if rest_lo + hyst > rest_hi - hyst:
        raise bad(10, f"rest band [{rest_lo}, {rest_hi}] is narrower than 2 x hysteresis {hyst}")
    if hyst > 32767:
        raise bad(14, f"hysteresis {hyst} > 32767")
    next_first = 0
    for i in range(n_s):
        o = HEADER.size + STATE.size * i
        f = STATE.unpack_from(blob, o)
        sflags, vmode, vms, tmode, tmask, freq, tms, tval, _gt, _tup, first, cnt = f
        if sflags & ~(TERMINAL | HAS_TUP | TRIAL_CODE):
            raise bad(o, f"state {i}: unknown flag bits 0x{sflags:02X}")
        if sflags & TERMINAL and (sflags & HAS_TUP or cnt):
            raise bad(o, f"state {i}: a terminal state has no timer and no transitions")
        if vmode > PULSE:
            raise bad(o + 1, f"state {i}: valve_mode {vmode} > 3")
        if vmode == PULSE and not 1 <= vms <= max_valve_ms:
            err = ErrorCode.VALVE_CAP if vms else ErrorCode.MACHINE_INVALID
            raise bad(o + 2, f"state {i}: valve pulse {vms} ms outside 1..{max_valve_ms}", err)
        if tmode > PULSE:
            raise bad(o + 4, f"state {i}: tone_mode {tmode} > 3")
        if tmode in (ON, PULSE) and not TONE_MIN_HZ <= freq <= TONE_MAX_HZ:
            raise bad(o + 6, f"state {i}: tone {freq} Hz outside {TONE_MIN_HZ}..{TONE_MAX_HZ}")
        if tmode == PULSE and tms == 0:
            raise bad(o + 8, f"state {i}: timed tone of 0 ms")
        if tval & ~tmask:
            raise bad(o + 10, f"state {i}: ttl_value bits outside ttl_mask")
        end = first + cnt
        if first != next_first or end > n_t or (i == n_s - 1 and end != n_t):
            raise bad(
                o + 16,
                f"state {i}: transitions [{first}, {end}) must continue at {next_first}"
                f" and the last state's must end at {n_t}",
            )
        next_first = end
    base = HEADER.size + STATE.size * n_s
    for i in range(n_s):
        o = HEADER.size + STATE.size * i
        sflags, first, cnt = blob[o], blob[o + 16], blob[o + 17]
        seen: set[int] = set()
        for j in range(first, first + cnt):
            ev, tgt = TRANSITION.unpack_from(blob, base + 2 * j)
            to = base + 2 * j
            if ev not in INPUT_EVENTS:
                raise bad(to, f"transition {j}: unknown event code 0x{ev:02X}")
            if ev == EventCode.TUP and not sflags & HAS_TUP:
                raise bad(to, f"transition {j}: tup in state {i}, which has no timer")
            if ev in seen:
                raise bad(to, f"transition {j}: event 0x{ev:02X} twice in state {i}")
            seen.add(ev)
            if tgt >= n_s:
                raise bad(to + 1, f"transition {j}: target {tgt} >= n_states {n_s}")
    if not any(blob[HEADER.size + STATE.size * i] & TERMINAL for i in range(n_s)):
        raise bad(1, "no terminal state: a trial could never end")

"""A deterministic host for the firmware under a stepped harness.

``SteppedBoard`` speaks the real protocol (``rig.core.protocol``) to the simulated board: it
feeds command bytes into the UART at the current simulated time, advances time in steps, and
decodes the board's bytes from the cycle-exact log, so every packet carries the simulated time
of its wire bytes. Tests, the equivalence check and ``rig bench board`` use it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from rig.core.protocol import (
    MAX_CHUNK,
    PROTOCOL_VERSION,
    Ack,
    GetHello,
    Hello,
    LoadBegin,
    LoadChunk,
    LoadCommit,
    Message,
    Nak,
    Packet,
    PacketEncoder,
    crc16,
)
from rig.core.simavr.harness import AvrSim, HarnessError
from rig.core.simavr.simlog import PacketStream, PinEdge, TimedPacket

M = TypeVar("M", bound=Message)


class BoardError(HarnessError):
    """The simulated board refused a command (NAK) or did not answer in time."""


class SteppedBoard:
    """Host side of one stepped ``AvrSim``; keeps every packet and pin edge it has seen."""

    def __init__(self, sim: AvrSim) -> None:
        if not sim.stepped:
            raise HarnessError("SteppedBoard needs an AvrSim started with stepped=True")
        self.sim = sim
        self.enc = PacketEncoder()
        self.stream = PacketStream()
        self.packets: list[TimedPacket] = []
        self.pins: list[PinEdge] = []
        self.rx: list[tuple[float, int]] = []
        # inputs as the harness applied them: (simulated µs, command text); an input can land
        # later than asked while the board sleeps, so timings are taken from here
        self.inputs: list[tuple[float, str]] = []
        self.end: dict[str, str] | None = None

    @property
    def now_us(self) -> float:
        return self.sim.now_us

    def send(self, msg: Message, at_us: float | None = None) -> int:
        """Queue ``msg`` into the board's UART now (or at ``at_us``); return its seq."""
        seq, wire = self.enc.encode(msg)
        self.sim.tx(wire, at_us)
        return seq

    def send_raw(self, data: bytes, at_us: float | None = None) -> None:
        """Arbitrary bytes (garbage, truncated frames) into the board's UART."""
        self.sim.tx(data, at_us)

    def advance(self, duration_us: float) -> list[TimedPacket]:
        """Run ``duration_us`` of simulated time; return the packets completed meanwhile."""
        self.sim.run_us(duration_us)
        return self._collect()

    def _collect(self) -> list[TimedPacket]:
        chunk = self.sim.log.read_new()
        new = self.stream.feed(chunk.tx)
        self.packets += new
        self.pins += chunk.pins
        self.rx += chunk.rx
        self.inputs += chunk.inputs
        if chunk.end is not None:
            self.end = chunk.end
        return new

    def applied(self, prefix: str, since: int = 0) -> list[float]:
        """Simulated µs at which inputs whose command starts with ``prefix`` (``"pin D3 "``) were
        applied, from ``inputs[since]`` on."""
        return [t for t, text in self.inputs[since:] if text.startswith(prefix)]

    def wait_for(
        self,
        pred: Callable[[TimedPacket], bool],
        timeout_us: float = 200_000,
        step_us: float = 1000,
        what: str = "packet",
        since: int | None = None,
    ) -> TimedPacket:
        """Advance in steps until a packet satisfies ``pred``; return it.

        Only packets that arrive from now on count, unless ``since`` (an index into
        ``packets``) says where to start looking: pass ``len(b.packets)`` taken before a
        command, because its effect may arrive in the same step as its ACK.
        """
        if since is not None:
            for p in self.packets[since:]:
                if pred(p):
                    return p
        t_end = self.now_us + timeout_us
        while self.now_us < t_end:
            for p in self.advance(step_us):
                if pred(p):
                    return p
        raise BoardError(f"no {what} within {timeout_us / 1000:.0f} ms of simulated time")

    def request(self, msg: Message, timeout_us: float = 200_000, step_us: float = 500) -> Ack | Nak:
        """Send ``msg`` and return the board's ACK or NAK for it."""
        seq = self.send(msg)

        def is_reply(p: TimedPacket) -> bool:
            m = p.item.msg if isinstance(p.item, Packet) else None
            return isinstance(m, Ack | Nak) and m.cmd_seq == seq and m.cmd_type == msg.TYPE

        reply = self.wait_for(is_reply, timeout_us, step_us, f"reply to {type(msg).__name__}")
        assert isinstance(reply.item, Packet) and isinstance(reply.item.msg, Ack | Nak)
        return reply.item.msg

    def command(self, msg: Message, timeout_us: float = 200_000) -> Ack:
        """``request`` that raises ``BoardError`` on a NAK."""
        reply = self.request(msg, timeout_us)
        if isinstance(reply, Nak):
            raise BoardError(
                f"{type(msg).__name__} refused: NAK error {reply.error} detail {reply.detail}"
            )
        return reply

    def boot(self, timeout_us: float = 100_000) -> Hello:
        """Wait for the board's spontaneous HELLO after reset, then ask for it (GET_HELLO)."""
        self.wait_for(
            lambda p: isinstance(p.item, Packet) and isinstance(p.item.msg, Hello),
            timeout_us,
            what="boot HELLO",
        )
        before = len(self.packets)
        self.command(GetHello(PROTOCOL_VERSION))
        hellos = [
            p.item.msg
            for p in self.packets[before:]
            if isinstance(p.item, Packet) and isinstance(p.item.msg, Hello)
        ]
        if not hellos:
            raise BoardError("GET_HELLO was ACKed without a HELLO before it")
        return hellos[-1]

    def upload(self, blob: bytes) -> Ack | Nak:
        """LOAD_BEGIN, LOAD_CHUNKs, LOAD_COMMIT; return the reply to the first refused command
        or the COMMIT's ACK."""
        replies_for: list[Message] = [LoadBegin(len(blob), crc16(blob))]
        replies_for += [
            LoadChunk(off, blob[off : off + MAX_CHUNK]) for off in range(0, len(blob), MAX_CHUNK)
        ]
        replies_for.append(LoadCommit())
        reply: Ack | Nak | None = None
        for msg in replies_for:
            reply = self.request(msg)
            if isinstance(reply, Nak):
                return reply
        assert reply is not None
        return reply

    def messages(self, kind: type[M], since: int = 0) -> list[tuple[TimedPacket, M]]:
        """Every received packet of type ``kind`` (from index ``since`` of ``packets``)."""
        out: list[tuple[TimedPacket, M]] = []
        for p in self.packets[since:]:
            if isinstance(p.item, Packet) and isinstance(p.item.msg, kind):
                out.append((p, p.item.msg))
        return out

"""Read the harness's cycle-exact log and turn its UART bytes into protocol packets.

Log lines (firmware/sim/avrsim.c): ``U <cycle> <hex>`` board->host byte, ``R <cycle> <hex>``
host->board byte, ``P <cycle> <port><bit> <0|1>`` watched pin edge, ``I <cycle> <command>``
applied input, ``#`` comments (the last one: ``# end reason=.. cycle=.. min_sp=..``).
``LogReader.read_new`` parses only what was appended since its last call, so a stepped test
reads the log after every step at constant cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rig.core.protocol import BOARD_TO_HOST, BadPacket, Packet, StreamDecoder


@dataclass(frozen=True, slots=True)
class PinEdge:
    """A watched pin changed level at ``t_us`` (simulated µs since reset)."""

    t_us: float
    pin: str
    level: int


@dataclass(frozen=True, slots=True)
class TimedPacket:
    """A packet from the board with the simulated times of its first and last wire byte (µs)."""

    t_first_us: float
    t_last_us: float
    item: Packet | BadPacket


@dataclass(slots=True)
class LogChunk:
    """What one ``read_new`` call found. Times in simulated µs."""

    tx: list[tuple[float, int]] = field(default_factory=list)  # board -> host bytes
    rx: list[tuple[float, int]] = field(default_factory=list)  # host -> board bytes
    pins: list[PinEdge] = field(default_factory=list)
    inputs: list[tuple[float, str]] = field(default_factory=list)
    end: dict[str, str] | None = None


class LogReader:
    """Incremental reader of one harness log file."""

    def __init__(self, path: Path, freq_hz: int = 16_000_000) -> None:
        self.path = Path(path)
        self.us_per_cycle = 1e6 / freq_hz
        self._offset = 0
        self._partial = b""

    def read_new(self) -> LogChunk:
        """Parse the complete lines appended since the last call."""
        chunk = LogChunk()
        if not self.path.exists():
            return chunk
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        self._offset += len(data)
        data = self._partial + data
        cut = data.rfind(b"\n") + 1
        self._partial = data[cut:]
        k = self.us_per_cycle
        for raw in data[:cut].splitlines():
            if not raw:
                continue
            tag = raw[:1]
            if tag == b"U" or tag == b"R":
                _, cyc, hx = raw.split()
                (chunk.tx if tag == b"U" else chunk.rx).append((int(cyc) * k, int(hx, 16)))
            elif tag == b"P":
                _, cyc, pin, lvl = raw.split()
                chunk.pins.append(PinEdge(int(cyc) * k, pin.decode(), int(lvl)))
            elif tag == b"I":
                _, cyc, text = raw.split(maxsplit=2)
                chunk.inputs.append((int(cyc) * k, text.decode()))
            elif raw.startswith(b"# end "):
                chunk.end = dict(kv.split("=", 1) for kv in raw[6:].decode().split())
        return chunk


class PacketStream:
    """Board->host bytes with times -> ``TimedPacket`` list, through the protocol's decoder."""

    def __init__(self) -> None:
        self.decoder = StreamDecoder(BOARD_TO_HOST)
        self._frame = bytearray()
        self._t_first: float | None = None

    def feed(self, tx: list[tuple[float, int]]) -> list[TimedPacket]:
        out: list[TimedPacket] = []
        for t_us, b in tx:
            if self._t_first is None:
                self._t_first = t_us
            if b:
                self._frame.append(b)
                continue
            items = self.decoder.feed(bytes(self._frame) + b"\x00")
            out += [TimedPacket(self._t_first, t_us, it) for it in items]
            self._frame.clear()
            self._t_first = None
        return out

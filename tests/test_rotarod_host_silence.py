"""Host silence on the rotarod: a turning rod stops by itself when the host says nothing.

The same script runs on the firmware (stepped simavr, judged in simulated time from the
cycle-exact log) and on the Python simulated rod, with the same assertions, so both behave
alike. Then the host side: the driver keeps a healthy board fed, and a session whose heartbeats
die ends safely with the reason on record.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from rig.core.config import load_rig_config
from rig.core.devices.rotarod import (
    ROTAROD_BOARD_TO_HOST,
    ROTAROD_HOST_TO_BOARD,
    STATUS_HOST_TIMED_OUT,
    STATUS_TURNING,
    STOP_CUTOFF,
    STOP_HOST_SILENT,
    RodConfig,
    RodStarted,
    RodStopped,
    Rotarod,
    RotarodError,
    StartRamp,
)
from rig.core.devices.rotarod_sim import SimRotarodTransport
from rig.core.protocol import (
    Ack,
    GetHello,
    Heartbeat,
    Hello,
    HostHeartbeat,
    Message,
    Nak,
    Packet,
    PacketEncoder,
    SetConfig,
    StreamDecoder,
)
from rig.core.simavr import DEBIAN_PACKAGES, AvrSim, ensure_built, missing_tools
from rig.core.store import SessionReader
from rig.runner.rotarod import run_rotarod_session
from tasks.rotarod import RotarodParams, SimRotarodMouse

SPR = 3200
TIMEOUT_MS = 500
# the board handles a packet, and judges the silence, in its main loop: each may come round up
# to ~2 ms late (a ROD_SPEED report's 64-bit divisions take most of that), so its stop is within
# 5 ms after the timeout; the Python rod stops exactly at it
LOOP_SLACK_US = 5000
SIM_YAML = Path(__file__).resolve().parents[1] / "hardware_configs" / "sim.yaml"


# ----------------------------------------------------------------------------- two rods, one script
@dataclass
class Seen:
    """What a rod sent: ``(board µs, message)``, and board µs of the host's packets."""

    msgs: list[tuple[float, Message]] = field(default_factory=list)
    host_us: list[float] = field(default_factory=list)
    step_us: list[float] = field(default_factory=list)  # step edges (firmware only)


class FirmwareRod:
    """The firmware under stepped simavr; times converted to the board clock."""

    def __init__(self, tmp_path: Path) -> None:
        missing = missing_tools()
        if missing:
            pytest.skip(f"needs {', '.join(missing)}: apt-get install {DEBIAN_PACKAGES}")
        elf, _ = ensure_built("rotarod", "uno")
        self.sim = AvrSim(elf, tmp_path / "avrsim.log", watch=("D4",), stepped=True, pty=False)
        self.sim.start()
        for pin in ("B0", "B1", "B2", "B3", "B4", "C0", "C1", "C2", "C3", "C4"):
            self.sim.pin(pin, 1)  # sensors idle high (pull-ups)
        self.enc = PacketEncoder()
        self.dec = StreamDecoder(ROTAROD_BOARD_TO_HOST)
        self._frame = bytearray()
        self._frame_t = 0.0
        self.offset_us: float | None = None  # simulated µs minus board µs
        self.raw = Seen()  # in simulated µs
        self.run(150_000)  # boot and the first heartbeat, which calibrates the board clock

    def send(self, msg: Message) -> None:
        self.sim.tx(self.enc.encode(msg)[1])

    def run(self, us: float) -> None:
        self.sim.run_us(us)
        chunk = self.sim.log.read_new()
        for t, b in chunk.tx:  # packets stamped with their first byte
            if not self._frame:
                self._frame_t = t
            self._frame.append(b)
            if b == 0:
                for item in self.dec.feed(bytes(self._frame)):
                    if isinstance(item, Packet):
                        if self.offset_us is None and isinstance(item.msg, Heartbeat):
                            # stamped just before it is sent: its first byte dates the clock
                            self.offset_us = self._frame_t - item.msg.t_us
                        self.raw.msgs.append((self._frame_t, item.msg))
                self._frame.clear()
        self.raw.host_us += [t for t, _ in chunk.rx]
        self.raw.step_us += [e.t_us for e in chunk.pins if e.pin == "D4" and e.level == 1]

    def result(self) -> Seen:
        """Everything in board µs; a message's time is its own ``t_us`` where it has one."""
        assert self.offset_us is not None
        off = self.offset_us
        return Seen(
            [(getattr(m, "t_us", t - off), m) for t, m in self.raw.msgs],
            [t - off for t in self.raw.host_us],  # the board acts on a packet's last byte
            [t - off for t in self.raw.step_us],
        )

    def close(self) -> None:
        self.sim.close()


class PythonRod:
    """The Python simulated rod in virtual time, driven byte for byte like the firmware."""

    def __init__(self) -> None:
        self.rod = SimRotarodTransport(SPR)
        self.enc = PacketEncoder()
        self.dec = StreamDecoder(ROTAROD_BOARD_TO_HOST)
        self.seen = Seen()

    def send(self, msg: Message) -> None:
        self.rod.write(self.enc.encode(msg)[1])
        self.seen.host_us.append(self.rod.now_us)

    def run(self, us: float) -> None:
        self.rod.advance(us / 1e6)
        for item in self.dec.feed(self.rod.take_output()):
            if isinstance(item, Packet):
                self.seen.msgs.append((getattr(item.msg, "t_us", self.rod.now_us), item.msg))

    def result(self) -> Seen:
        return self.seen

    def close(self) -> None:
        self.rod.close()


def silence_script(rod: FirmwareRod | PythonRod) -> Seen:
    """Timeout 500 ms; a ramp; heartbeats every 200 ms for 1 s; 1 s of silence; the host back
    (one heartbeat); a second ramp (10 rpm for 1 s) fed with heartbeats."""
    rod.send(GetHello(1))
    rod.send(RodConfig(SPR, 5, 500, 31, 0, 31))
    rod.send(SetConfig(0, 50))  # refused: 0 (off) or 100..60000 ms
    rod.send(SetConfig(0, TIMEOUT_MS))
    rod.run(20_000)
    rod.send(StartRamp(4000, 40000, 60_000, 60_000))
    for _ in range(5):
        rod.run(200_000)
        rod.send(HostHeartbeat())
    rod.run(1_000_000)
    rod.send(HostHeartbeat())
    rod.run(150_000)
    rod.send(StartRamp(10000, 10000, 1000, 1000))
    for _ in range(6):
        rod.run(200_000)
        rod.send(HostHeartbeat())
    rod.run(100_000)
    return rod.result()


def check_silence_stop(seen: Seen) -> tuple[float, int]:
    """The assertions both rods must pass; returns (stop - ramp start in µs, steps at the stop)."""
    msgs = seen.msgs
    naks = [(m.cmd_type, m.error, m.detail) for _, m in msgs if isinstance(m, Nak)]
    assert naks == [(SetConfig.TYPE, 3, 2)]  # BAD_VALUE at host_timeout_ms (byte 2)
    acked = {m.cmd_type for _, m in msgs if isinstance(m, Ack)}
    assert {SetConfig.TYPE, StartRamp.TYPE, HostHeartbeat.TYPE} <= acked
    starts = [t for t, m in msgs if isinstance(m, RodStarted)]
    stops = [m for _, m in msgs if isinstance(m, RodStopped)]
    assert len(starts) == 2 and [m.reason for m in stops] == [STOP_HOST_SILENT, STOP_CUTOFF]
    first, second = stops
    # heartbeats 200 ms apart kept the rod turning for 1 s; it stopped one timeout after the
    # last of them
    t_last_host = max(t for t in seen.host_us if t < first.t_us)
    assert t_last_host - starts[0] == pytest.approx(1_000_000, abs=2000)
    assert TIMEOUT_MS * 1000 <= first.t_us - t_last_host <= TIMEOUT_MS * 1000 + LOOP_SLACK_US

    beats = [(t, m.status) for t, m in msgs if isinstance(m, Heartbeat)]
    assert all(s == STATUS_TURNING for t, s in beats if starts[0] < t < first.t_us)
    idle = [s for t, s in beats if first.t_us <= t < starts[1]]
    # still and flagged from the stop until the host speaks again, then still and clear
    assert idle[0] == STATUS_HOST_TIMED_OUT and set(idle) <= {STATUS_HOST_TIMED_OUT, 0}
    assert idle == sorted(idle, reverse=True)
    # the host is back: the second ramp turns unflagged and runs to its cutoff,
    # 10 rpm for 1 s = 1/6 rev = 533 steps
    assert all(s == STATUS_TURNING for t, s in beats if starts[1] < t < second.t_us)
    assert second.steps == 533
    return first.t_us - starts[0], first.steps


@pytest.mark.faults
@pytest.mark.simavr
def test_silent_host_stops_the_rod_on_firmware_and_python_alike(tmp_path: Path) -> None:
    fw = FirmwareRod(tmp_path)
    try:
        seen_fw = silence_script(fw)
    finally:
        fw.close()
    dt_fw, steps_fw = check_silence_stop(seen_fw)
    # no step pulse after the stop, and pulses right up to it (a step every ~3.8 ms at 4.9 rpm)
    stop_us = next(m.t_us for _, m in seen_fw.msgs if isinstance(m, RodStopped))
    start_us = next(m.t_us for _, m in seen_fw.msgs if isinstance(m, RodStarted))
    steps = np.array([t for t in seen_fw.step_us if start_us < t < stop_us + 50_000])
    assert stop_us - 5000 < steps.max() <= stop_us and len(steps) == steps_fw

    py = PythonRod()
    dt_py, steps_py = check_silence_stop(silence_script(py))
    py.close()
    # the same stop: 1.5 s into the ramp, the step count of the exact ramp at that moment
    assert dt_py == 1_500_000 and dt_fw == pytest.approx(dt_py, abs=LOOP_SLACK_US)
    assert abs(steps_fw - steps_py) <= 2  # 5 ms at 4.9 rpm is 1.3 steps


# ----------------------------------------------------------------------------- the host side
def test_healthy_driver_never_trips_the_timeout() -> None:
    # a 300 s ramp of rod time in well under a second of wall time: only heartbeats paced in
    # board time can keep up, and the rod must run to its cutoff
    sim = SimRotarodTransport(SPR)
    rod = Rotarod(sim, n_lanes=1, steps_per_rev=SPR, where="sim")
    q: queue.Queue[Message] = queue.Queue()
    rod.on_event.append(q.put)
    rod.open()
    try:
        assert sim.host_timeout_ms == 2000  # the driver's default, set at open
        rod.start_ramp(4, 40, 300, 300)
        stop = _wait_for(q, RodStopped)
        assert stop.reason == STOP_CUTOFF and not sim.host_timed_out
    finally:
        rod.close()
    with pytest.raises(ValueError, match="host_timeout_ms"):
        Rotarod(sim, host_timeout_ms=50)
    with pytest.raises(ValueError, match="quarter"):
        Rotarod(sim, host_timeout_ms=400, host_heartbeat_s=0.25)


def test_firmware_1_0_runs_without_the_timeout_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # the version rules accept a 1.0 rod: it cannot judge host silence, so the driver does not
    # ask it to (1.0 would NAK SET_CONFIG) and warns, naming what to flash
    class OldRod(SimRotarodTransport):
        def _hello(self) -> Hello:
            return dataclasses.replace(super()._hello(), fw_minor=0)

    sim = OldRod(SPR)
    rod = Rotarod(sim, n_lanes=1, steps_per_rev=SPR, where="COM9")
    with caplog.at_level(logging.WARNING):
        hello = rod.open()
    rod.close()
    assert hello.fw_version == "1.0.0" and sim.host_timeout_ms == 0
    assert "COM9: rotarod firmware 1.0.0 cannot stop the rod" in caplog.text
    assert "firmware/rotarod" in caplog.text


def _wait_for(q: queue.Queue[Message], kind: type, timeout_s: float = 20.0) -> RodStopped:
    while True:
        msg = q.get(timeout=timeout_s)  # queue.Empty fails the test: nothing came
        if isinstance(msg, kind):
            assert isinstance(msg, RodStopped)
            return msg


class DeafRod(SimRotarodTransport):
    """The simulated rod, except that the host's heartbeats stop reaching it once ``deaf``:
    the host is alive for commands but its heartbeat path is dead (a stalled host as the rod
    sees it)."""

    def __init__(self) -> None:
        super().__init__(SPR)
        self.deaf = False
        self._peek = StreamDecoder(ROTAROD_HOST_TO_BOARD, resync_types=frozenset())

    def write(self, data: bytes) -> None:
        items = self._peek.feed(data)
        if self.deaf and all(
            isinstance(i, Packet) and isinstance(i.msg, HostHeartbeat) for i in items
        ):
            return
        super().write(data)

    def _handle(self, seq: int, msg: Message) -> None:
        super()._handle(seq, msg)
        if isinstance(msg, StartRamp):
            self.deaf = True  # from the ramp start on, nothing but commands gets through


@pytest.mark.faults
def test_session_ends_safely_when_the_host_goes_silent(tmp_path: Path) -> None:
    rig = load_rig_config(SIM_YAML).model_copy(update={"data_dir": tmp_path})
    rod = DeafRod()
    params = RotarodParams(lanes=1, trials_per_day=2, ramp_s=60, max_s=60)
    mouse = SimRotarodMouse("a", base_rpm=30.0, noise_sd_rpm=0.0, p_cling=0.0)  # falls at 47 s
    with pytest.raises(RotarodError, match=r"stopped itself 2\.000 s into the ramp"):
        run_rotarod_session(rig, params, ["a"], mice={0: mouse}, transport=rod)
    assert rod._ramp is None  # (its flag was cleared by safe_state's STOP_ROD: a host packet)
    r = SessionReader(next((tmp_path / "rotarod").iterdir()))
    assert r.status == "aborted" and "host timeout" in r.meta.stop_reason
    names = [e.name for e in r.events()]
    assert names.count("rotarod_host_timeout") == 1 and "rotarod_fall" not in names
    assert r.trials() == []  # the cut trial has no record: no lane was timed or censored
    # the aborted session replays to the same abort (it used to raise out of the replay and
    # leave the regenerated folder "running")
    from rig.replay.rotarod import replay_rotarod

    run = replay_rotarod(r.folder, out_dir=tmp_path / "replay")
    again = SessionReader(run.regenerated)
    assert again.status == "aborted" and "stopped itself" in again.meta.stop_reason
    assert [e.name for e in again.events()].count("rotarod_host_timeout") == 1
    assert again.trials() == []

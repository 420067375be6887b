"""Transports: the in-process loopback link keeps every host byte, in order, when the device is
slow to read (a non-blocking socket's partial sends)."""

from __future__ import annotations

import threading

from rig.core.transport import LoopbackTransport


def test_loopback_write_to_a_device_that_is_not_reading_loses_and_repeats_nothing() -> None:
    host, device = LoopbackTransport.pair()
    # 8 MB: many times a socketpair's buffer, so writes block part-way (partial sends)
    payload = bytes(range(256)) * (8 * 4096)

    def write_all() -> None:
        for i in range(0, len(payload), 1_000_000):
            host.write(payload[i : i + 1_000_000])

    writer = threading.Thread(target=write_all)
    writer.start()
    writer.join(0.2)
    assert writer.is_alive(), "the write should wait for the device to read"
    device.setblocking(True)
    device.settimeout(10.0)
    got = bytearray()
    while len(got) < len(payload):
        chunk = device.recv(1 << 20)
        assert chunk, "link closed early"
        got += chunk
    writer.join(10.0)
    assert not writer.is_alive()
    assert bytes(got) == payload
    host.close()
    device.close()

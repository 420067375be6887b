"""Arduino pin numbers -> AVR port/bit names as the harness takes them (``"D4"`` = PORTD bit 4)."""

from __future__ import annotations

UNO_PINS: dict[int, str] = {
    **{p: f"D{p}" for p in range(8)},
    **{p: f"B{p - 8}" for p in range(8, 14)},
    **{14 + i: f"C{i}" for i in range(6)},  # A0..A5
}
MEGA_PINS: dict[int, str] = {
    0: "E0", 1: "E1", 2: "E4", 3: "E5", 4: "G5", 5: "E3", 6: "H3", 7: "H4", 8: "H5", 9: "H6",
    10: "B4", 11: "B5", 12: "B6", 13: "B7",
}  # fmt: skip
BOARD_PINS = {"uno": UNO_PINS, "mega": MEGA_PINS}

# The lever board's wiring (firmware/lever_board/lever_board.ino, docs/firmware.md).
LEVER_BOARD = {
    "frame": 2,
    "lick": 3,
    "valve": 4,
    "ttl0": 5,
    "ttl1": 6,
    "ttl2": 7,
    "ttl3": 8,
    "tone": 9,
    "trial_code": 10,
}
LEVER_ADC_CHANNEL = 0


def port_bit(pin: int, board: str = "uno") -> str:
    """``"D4"``-style name of Arduino ``pin`` on ``board``."""
    try:
        return BOARD_PINS[board][pin]
    except KeyError:
        raise ValueError(f"no mapping for pin {pin} on board {board!r}") from None


def lever_pin(name: str, board: str = "uno") -> str:
    """Port/bit of a named lever-board pin (``"valve"``, ``"frame"``, ...)."""
    if name not in LEVER_BOARD:
        raise ValueError(f"unknown lever-board pin {name!r}; known: {sorted(LEVER_BOARD)}")
    return port_bit(LEVER_BOARD[name], board)

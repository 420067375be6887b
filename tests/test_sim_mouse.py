"""Simulated lever mice: determinism, chunking independence, learning."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.sim_mouse import LearnerMouse, Pull, ScriptedMouse, make_mouse


def _drive(mouse: LearnerMouse, chunk_s: float, cues_s: list[float], t_end_s: float) -> np.ndarray:
    """Sample the mouse at 1 kHz in chunks, telling it about cues as their time comes."""
    t = np.arange(0, t_end_s, 1e-3)
    out = np.empty_like(t)
    pending = sorted(cues_s)
    n = max(1, round(chunk_s / 1e-3))
    for i in range(0, len(t), n):
        while pending and pending[0] <= t[i]:
            mouse.perceive("cue_on", pending.pop(0))
        out[i : i + n] = mouse.position_mm(t[i : i + n])
    return out


def _cued_success(pos: np.ndarray, cues_s: list[float], hold_s: float) -> float:
    """Fraction of cues followed within 1 s by a crossing of 1 mm held for ``hold_s``."""
    ok = 0
    for c in cues_s:
        i0, i1 = round(c * 1e3), round((c + 1.0) * 1e3)
        up = np.flatnonzero(pos[i0:i1] >= 1.0)
        if len(up):
            k = i0 + up[0]
            ok += bool(np.all(pos[k : k + round(hold_s * 1e3)] >= 0.95))
    return ok / len(cues_s)


CUES = [5.0 + 8.0 * i for i in range(60)]


def test_deterministic_and_chunking_independent() -> None:
    cues = CUES[:20]  # cue times are multiples of 1 s: both chunkings deliver them on time
    a = _drive(LearnerMouse(seed=7, skill=0.5), 0.050, cues, 165.0)
    b = _drive(LearnerMouse(seed=7, skill=0.5), 0.050, cues, 165.0)
    c = _drive(LearnerMouse(seed=7, skill=0.5), 0.008, cues, 165.0)
    d = _drive(LearnerMouse(seed=8, skill=0.5), 0.050, cues, 165.0)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)  # 1 ms vs 10 ms chunks: same lever
    assert not np.array_equal(a, d)
    assert a.max() > 1.0 and a.min() >= -0.5 and a.max() <= 5.0


def test_expert_beats_naive() -> None:
    rates = {}
    for skill in (0.0, 1.0):
        vals = [
            _cued_success(_drive(LearnerMouse(seed=s, skill=skill), 0.05, CUES, 490.0), CUES, 0.4)
            for s in (1, 2, 3)
        ]
        rates[skill] = float(np.mean(vals))
    assert rates[1.0] > 0.6
    assert rates[0.0] < 0.3
    assert rates[1.0] > 2 * rates[0.0]


def test_naive_fidgets_more_than_expert() -> None:
    def onsets(skill: float) -> int:
        pos = _drive(LearnerMouse(seed=3, skill=skill), 0.05, [], 600.0)
        moving = np.abs(pos) > 0.2
        return int(np.count_nonzero(np.diff(moving.astype(int)) == 1))

    assert onsets(0.0) > 1.8 * onsets(1.0)


def test_reward_teaches_and_stops_pulling_while_drinking() -> None:
    m = LearnerMouse(seed=1, skill=0.2)
    m.position_mm(np.arange(0, 1, 1e-3))
    m.perceive("reward", 1.0)
    assert m.skill == pytest.approx(0.2 + 0.004 * 0.8)
    assert m.state() == {"skill": m.skill, "rewards": 1.0}
    # no pull may start during the 1.5 s of drinking
    assert np.all(m.position_mm(np.arange(1.0, 2.5, 1e-3)) == 0.0)
    with pytest.raises(ValueError, match="skill"):
        LearnerMouse(skill=1.5)


def test_scripted_mouse() -> None:
    m = ScriptedMouse(
        pulls=[Pull(1.0, 2.0, 0.1, 0.5, 0.1)],
        cue_responses=[None, Pull(0.3, 1.5, 0.1, 0.2, 0.1)],
    )
    t = np.arange(0, 10, 1e-3)
    m.perceive("cue_on", 3.0)  # ignored
    m.perceive("cue_on", 5.0)  # pull at 5.3
    pos = m.position_mm(t)
    assert pos[round(1.35e3)] == pytest.approx(2.0)
    assert pos[round(3.5e3)] == 0.0
    assert pos[round(5.45e3)] == pytest.approx(1.5)
    assert m.perceived == [("cue_on", 3.0), ("cue_on", 5.0)]
    assert isinstance(make_mouse("learner"), LearnerMouse)
    with pytest.raises(ValueError, match="unknown simulated mouse"):
        make_mouse("cat")

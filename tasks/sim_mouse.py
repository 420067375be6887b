"""Simulated mice on the lever: a seeded naive-to-expert learner and a scripted mouse.

Both implement :class:`LeverMouse`: they *perceive* what a head-fixed mouse would (cue on/off,
water) at board times, and produce the lever position (mm, 0 = rest) for any non-decreasing
sequence of sample times. Output depends only on the seed, the skill and the sequence of
perceived events (never on how the sample times are chunked), so a session is reproducible.

The learner's behavior as a function of ``skill`` (0 naive .. 1 expert):

- spontaneous pulls, after waits that grow with skill (naive mice fidget; experts wait out the
  ITI), a fraction of them sub-threshold twitches (fewer with skill);
- cue responses with probability ``0.3 + 0.65 * skill`` after a log-normal reaction time whose
  median falls from 0.5 s to 0.25 s;
- hold durations log-normal with a median rising from 0.15 s to 1.0 s;
- no pulls while drinking; every reward raises skill by ``learning_rate * (1 - skill)``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

Percept = Literal["cue_on", "cue_off", "reward"]
LEVER_MIN_MM, LEVER_MAX_MM = -0.5, 5.0


class LeverMouse(Protocol):
    """What drives a simulated lever."""

    def perceive(self, what: Percept, t_s: float) -> None:
        """Something the mouse can sense happened at board time ``t_s``."""

    def position_mm(self, t_s: np.ndarray) -> np.ndarray:
        """Lever position (mm) at ``t_s`` (float64 (n,), s); calls come in time order."""


@dataclass(frozen=True)
class Pull:
    """One lever movement: raised-cosine rise to ``amp_mm``, hold, raised-cosine return."""

    onset_s: float
    amp_mm: float
    rise_s: float = 0.15
    hold_s: float = 0.5
    fall_s: float = 0.15

    @property
    def end_s(self) -> float:
        return self.onset_s + self.rise_s + self.hold_s + self.fall_s

    def at(self, t_s: np.ndarray) -> np.ndarray:
        up = np.clip((t_s - self.onset_s) / self.rise_s, 0.0, 1.0)
        down = np.clip((t_s - self.onset_s - self.rise_s - self.hold_s) / self.fall_s, 0.0, 1.0)
        return self.amp_mm * ((1 - np.cos(np.pi * up)) - (1 - np.cos(np.pi * down))) / 2


class _PullTrack:
    """Scheduled pulls, evaluated lazily; finished ones are dropped."""

    def __init__(self) -> None:
        self.pulls: list[Pull] = []
        self.busy_until_s = -math.inf

    def add(self, pull: Pull) -> Pull:
        """Schedule ``pull``, delayed to start after the one in progress (one arm, one lever)."""
        if pull.onset_s < self.busy_until_s:
            pull = Pull(self.busy_until_s, pull.amp_mm, pull.rise_s, pull.hold_s, pull.fall_s)
        self.pulls.append(pull)
        self.busy_until_s = max(self.busy_until_s, pull.end_s)
        return pull

    def eval(self, t_s: np.ndarray) -> np.ndarray:
        out = np.zeros(len(t_s))
        if not len(t_s):
            return out
        t0, t1 = t_s[0], t_s[-1]
        self.pulls = [p for p in self.pulls if p.end_s >= t0]
        for p in self.pulls:
            if p.onset_s <= t1:
                out += p.at(t_s)
        return np.clip(out, LEVER_MIN_MM, LEVER_MAX_MM)


@dataclass
class LearnerParams:
    """Knobs of :class:`LearnerMouse` (defaults give ~2-3x more rewards at skill 1 than at 0)."""

    learning_rate: float = 0.004
    amp_mm: float = 2.0
    amp_sd_mm: float = 0.35
    twitch_amp_mm: float = 0.6
    spont_wait_naive_s: float = 4.0
    spont_wait_expert_s: float = 8.0
    rt_naive_s: float = 0.5
    rt_expert_s: float = 0.25
    rt_sigma: float = 0.35
    hold_naive_s: float = 0.15
    hold_expert_s: float = 1.0
    hold_sigma: float = 0.35
    drink_s: float = 1.5


@dataclass
class LearnerMouse:
    """Seeded naive-to-expert lever mouse (see the module docstring).

    Parameters
    ----------
    seed : int
    skill : float
        0 = naive, 1 = expert; rises with every reward (``learning_rate``).
    """

    seed: int = 1
    skill: float = 0.3
    params: LearnerParams = field(default_factory=LearnerParams)
    rewards: int = 0
    sessions: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.skill <= 1.0:
            raise ValueError(f"skill must be in [0, 1], got {self.skill}")
        self._rng = np.random.default_rng(self.seed)
        self._track = _PullTrack()
        self._next_spont_s: float | None = None
        self._no_pull_until_s = -math.inf

    # -------------------------------------------------------------- behavior draws
    def _lerp(self, naive: float, expert: float) -> float:
        return naive + (expert - naive) * self.skill

    def _spont_wait_s(self) -> float:
        p = self.params
        return float(self._rng.exponential(self._lerp(p.spont_wait_naive_s, p.spont_wait_expert_s)))

    def _make_pull(self, onset_s: float, twitch_ok: bool) -> Pull:
        p = self.params
        r = self._rng
        if twitch_ok and r.random() < 0.5 * (1.0 - self.skill):
            return Pull(onset_s, p.twitch_amp_mm * r.uniform(0.6, 1.3), 0.12, 0.05, 0.12)
        hold_med = self._lerp(p.hold_naive_s, p.hold_expert_s)
        hold = float(hold_med * math.exp(p.hold_sigma * r.standard_normal()))
        amp = max(0.3, float(r.normal(p.amp_mm, p.amp_sd_mm * (1.3 - self.skill))))
        rise = float(r.uniform(0.10, 0.20))
        return Pull(onset_s, amp, rise, hold, float(r.uniform(0.10, 0.20)))

    def _schedule_spont(self, after_s: float) -> None:
        self._next_spont_s = max(after_s, self._no_pull_until_s) + self._spont_wait_s()

    # -------------------------------------------------------------- LeverMouse API
    def perceive(self, what: Percept, t_s: float) -> None:
        if self._next_spont_s is None:
            self._schedule_spont(t_s)
        p = self.params
        if what == "cue_on":
            if self._rng.random() < 0.3 + 0.65 * self.skill:
                rt = self._lerp(p.rt_naive_s, p.rt_expert_s)
                rt *= math.exp(p.rt_sigma * self._rng.standard_normal())
                pull = self._track.add(self._make_pull(t_s + rt, twitch_ok=False))
                self._schedule_spont(pull.end_s)
        elif what == "reward":
            self.rewards += 1
            self.skill = min(1.0, self.skill + p.learning_rate * (1.0 - self.skill))
            self._no_pull_until_s = t_s + p.drink_s
            self._schedule_spont(t_s)

    def position_mm(self, t_s: np.ndarray) -> np.ndarray:
        t_s = np.asarray(t_s, dtype=np.float64)
        if len(t_s) and self._next_spont_s is None:
            self._schedule_spont(float(t_s[0]))
        # spontaneous pulls due within this chunk are scheduled from their own due time,
        # so the result does not depend on the chunking
        while len(t_s) and self._next_spont_s is not None and self._next_spont_s <= t_s[-1]:
            due = self._next_spont_s
            pull = self._track.add(self._make_pull(due, twitch_ok=True))
            self._schedule_spont(pull.end_s)
        return self._track.eval(t_s)

    def state(self) -> dict[str, float]:
        """What carries over to the next day (the skill; the RNG restarts from the seed)."""
        return {"skill": self.skill, "rewards": float(self.rewards)}

    def end_session(self) -> dict[str, float]:
        """Count a finished session; returns the state to save."""
        self.sessions += 1
        return {**self.state(), "sessions": float(self.sessions)}


@dataclass
class ScriptedMouse:
    """A mouse that does exactly what a test says.

    Parameters
    ----------
    pulls : list[Pull]
        Pulls at fixed board times.
    cue_responses : list[Pull | None]
        The response to the i-th ``cue_on``: a pull whose ``onset_s`` is the reaction time
        after cue onset (s), or ``None`` to ignore that cue.
    """

    pulls: list[Pull] = field(default_factory=list)
    cue_responses: list[Pull | None] = field(default_factory=list)
    perceived: list[tuple[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._track = _PullTrack()
        for p in sorted(self.pulls, key=lambda p: p.onset_s):
            self._track.add(p)
        self._n_cues = 0

    def perceive(self, what: Percept, t_s: float) -> None:
        self.perceived.append((what, t_s))
        if what == "cue_on":
            i = self._n_cues
            self._n_cues += 1
            if i < len(self.cue_responses) and (r := self.cue_responses[i]) is not None:
                self._track.add(Pull(t_s + r.onset_s, r.amp_mm, r.rise_s, r.hold_s, r.fall_s))

    def position_mm(self, t_s: np.ndarray) -> np.ndarray:
        return self._track.eval(np.asarray(t_s, dtype=np.float64))


def make_mouse(model: str, seed: int = 1, skill: float = 0.3) -> LeverMouse:
    """The mouse named in a rig config's ``lever_board.mouse`` (``learner`` / ``idle``)."""
    if model == "learner":
        return LearnerMouse(seed=seed, skill=skill)
    if model in ("idle", "scripted"):
        return ScriptedMouse()
    raise ValueError(f"unknown simulated mouse model {model!r}; expected learner|scripted|idle")


SIM_MOUSE_FILE = "sim_mouse.json"


def load_mouse_state(data_dir: Path, subject_id: str) -> dict[str, float]:
    """A simulated subject's carried-over state (``skill``, ``rewards``, ``sessions``), or {}.

    Raises
    ------
    ConfigError
        The file exists but is not a JSON object with a numeric ``skill``.
    """
    from rig.core.errors import ConfigError

    path = Path(data_dir).expanduser() / subject_id / SIM_MOUSE_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError.single(path, "", f"not a simulated-mouse state file: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("skill"), int | float):
        raise ConfigError.single(path, "skill", "expected a number in [0, 1]")
    return {k: float(v) for k, v in data.items() if isinstance(v, int | float)}


def save_mouse_state(data_dir: Path, subject_id: str, state: dict[str, float]) -> Path:
    """Write the state atomically next to the subject's ``subject.json``."""
    from rig.core.store.writer import atomic_write_text

    path = Path(data_dir).expanduser() / subject_id / SIM_MOUSE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(state, indent=2) + "\n")
    return path


def resume_learner(data_dir: Path, subject_id: str, seed: int, skill: float) -> LearnerMouse:
    """A learner that resumes the skill its subject reached last session, with a per-session
    seed (the same subject on the same day count behaves the same)."""
    state = load_mouse_state(data_dir, subject_id)
    sessions = int(state.get("sessions", 0))
    mouse = LearnerMouse(seed=seed * 1000 + sessions, skill=state.get("skill", skill))
    mouse.rewards = int(state.get("rewards", 0))
    mouse.sessions = sessions
    return mouse

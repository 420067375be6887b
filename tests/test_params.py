"""Task parameter models: TASKS.md defaults, validation messages, overrides and the hash."""

from __future__ import annotations

import re

import pytest

from rig.core.errors import ConfigError
from tasks.params import (
    CueTriggeredParams,
    MixedParams,
    SelfInitiatedParams,
    ShapingParams,
    make_params,
    params_hash,
    parse_overrides,
)


def test_tasks_md_defaults() -> None:
    a = SelfInitiatedParams()
    assert (a.iti_s, a.quiet_s, a.hold_ms, a.consume_s, a.timeout_s) == (3.0, 1.0, 600.0, 1.5, 0)
    assert (a.rest_band_mm, a.pull_threshold_mm, a.hysteresis_mm, a.max_mm) == (
        0.2,
        1.0,
        0.05,
        None,
    )
    assert a.reward_ul == 4 and a.restart_iti_on_move
    assert (a.max_rewards, a.max_duration_min) == (300, 60)
    b = CueTriggeredParams()
    assert (b.iti_min_s, b.iti_max_s, b.quiet_precue_s) == (3, 6, 1.0)
    assert (b.tone_freq_hz, b.tone_ms, b.response_window_s, b.hold_ms) == (10000, 1000, 1.0, 200)
    c = MixedParams()
    assert c.block_trials == 30 and c.schedule == "blocks"
    s = ShapingParams()
    assert (s.step_ms, s.success_threshold, s.window_trials) == (50, 0.7, 20)
    assert s.ramp_ms == [0, 200, 400, 600]


@pytest.mark.parametrize(
    ("model", "data", "needle"),
    [
        (CueTriggeredParams, {"iti_min_s": 7, "iti_max_s": 6}, "iti_min_s (7.0) must be <="),
        (CueTriggeredParams, {"min_rt_s": 2.0}, "min_rt_s (2.0) must be below"),
        (SelfInitiatedParams, {"max_mm": 0.5}, "max_mm (0.5) must be above"),
        (SelfInitiatedParams, {"rest_band_mm": 1.0}, "must be below pull_threshold_mm"),
        (SelfInitiatedParams, {"hold_msec": 3}, "extra"),
        (ShapingParams, {"mode": "ramp", "ramp_ms": [0, 400, 200]}, "increase strictly"),
        (MixedParams, {"block_order": []}, "at least one block"),
    ],
)
def test_validation_names_the_problem(model: type, data: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=re.escape(needle)):
        model.model_validate(data)


def test_make_params_errors_name_field() -> None:
    with pytest.raises(ConfigError) as ei:
        make_params("cue_triggered", {"tone_ms": -5})
    assert "tone_ms" in str(ei.value) and "greater than 0" in str(ei.value)
    with pytest.raises(ConfigError, match="unknown task 'D'"):
        make_params("D")


def test_overrides_nested_and_typed() -> None:
    o = parse_overrides(["hold_ms=300", "cue_triggered.tone_ms=500", "schedule=random", "x.y.z=1"])
    assert o == {
        "hold_ms": 300,
        "cue_triggered": {"tone_ms": 500},
        "schedule": "random",
        "x": {"y": {"z": 1}},
    }
    p = make_params("C", {"cue_triggered": {"tone_ms": 500}, "block_trials": 10})
    assert isinstance(p, MixedParams)
    assert p.cue_triggered.tone_ms == 500 and p.block_trials == 10
    with pytest.raises(ValueError, match="expected key=value"):
        parse_overrides(["hold_ms"])


def test_hash_stable_and_sensitive() -> None:
    a1, a2 = SelfInitiatedParams(), SelfInitiatedParams.model_validate({"iti_s": 3})
    assert params_hash(a1) == params_hash(a2)
    assert params_hash(a1).startswith("sha256:") and len(params_hash(a1)) == 7 + 64
    assert params_hash(a1) != params_hash(SelfInitiatedParams(hold_ms=601))
    # the hash is of content, not of Python object identity or key order
    assert params_hash(MixedParams(block_trials=5, seed=3)) == params_hash(
        MixedParams(seed=3, block_trials=5)
    )


def test_block_sequence() -> None:
    assert MixedParams().block_sequence() == ["self_initiated", "cue_triggered"]
    assert MixedParams(first_block="cue_triggered").block_sequence() == [
        "cue_triggered",
        "self_initiated",
    ]
    seq = MixedParams(block_order=["cue_triggered", "cue_triggered", "self_initiated"])
    assert seq.block_sequence() == ["cue_triggered", "cue_triggered", "self_initiated"]

"""Per-trial state machine (spec: docs/state_machine.md): model, blob, reference interpreter.

- ``StateMachine``/``State``/``LeverThresholds`` (``model``): what tasks build; thresholds in
  counts, made from mm with ``LeverThresholds.from_mm(calibration, ...)``.
- ``CompiledMachine`` (``blob``): index form; ``encode()`` -> upload blob; ``decode_blob`` and
  ``validate_blob`` mirror the firmware's LOAD_COMMIT.
- ``Engine``/``run_machine``/``TrailEvent`` (``engine``): the Python engine, exact to the tick.
"""

from rig.core.statemachine.blob import (
    BlobError,
    CompiledMachine,
    CState,
    decode_blob,
    validate_blob,
)
from rig.core.statemachine.engine import Engine, TrailEvent, run_machine, trial_outcomes
from rig.core.statemachine.model import EVENT_BY_NAME, LeverThresholds, State, StateMachine

__all__ = [
    "EVENT_BY_NAME",
    "BlobError",
    "CState",
    "CompiledMachine",
    "Engine",
    "LeverThresholds",
    "State",
    "StateMachine",
    "TrailEvent",
    "decode_blob",
    "run_machine",
    "trial_outcomes",
    "validate_blob",
]

"""A run's progress beyond its networks: phase, counters, labels, early
stopping, and how it goes in and out of a checkpoint.

:func:`pack` turns a :class:`RunState`, the networks' state dicts and the RNGs
into the checkpoint's dictionary (plain tensors and Python values, so
``torch.load(weights_only=True)`` reads it); :func:`unpack` checks and returns
them. Neither calls back into :class:`~engine.steps.run.Run`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import UserError
from .phases import Phase

#: :class:`RunState` fields saved as they are (plain Python values).
SCALARS = ("step", "phase_epoch", "student_epoch", "teacher_epoch", "noise_rate_estimate", "best_holdout",
           "bad_epochs", "best_teacher_epoch", "teacher_stopped", "wall_seconds")
#: The networks and optimisers a checkpoint holds, by attribute name of :class:`~engine.steps.networks.Networks`.
MODULES = ("teacher", "student", "opt_teacher", "opt_student", "weight_net", "opt_weight")


@dataclass
class RunState:
    """Everything a checkpoint must hold beyond the networks and the RNGs."""

    phase: Phase
    step: int = 0  # steps done
    phase_epoch: int = 0  # steps done in the current phase
    student_epoch: int = 0
    teacher_epoch: int = 0
    refined: np.ndarray | None = None
    noise_rate_estimate: float | None = None
    best_holdout: float = -1.0
    bad_epochs: int = 0
    best_teacher_epoch: int = 0  # the teacher epoch whose weights the run keeps (its last, without a hold-out)
    teacher_stopped: bool = False
    best_teacher_state: dict | None = field(default=None, repr=False)
    wall_seconds: float = 0.0


def pack(state: RunState, config_json: str, num_train: int, modules: dict, rng: np.random.Generator,
         generator: torch.Generator) -> dict:
    """The checkpoint's dictionary: ``modules`` maps each name of :data:`MODULES` to its object."""
    return {
        "config": config_json, "num_train": num_train, "phase": state.phase.value,
        **{key: getattr(state, key) for key in SCALARS},
        "refined": torch.as_tensor(state.refined), "best_teacher_state": state.best_teacher_state,
        **{name: modules[name].state_dict() for name in MODULES},
        "numpy_rng": _encode_rng(rng.bit_generator.state), "torch_rng": generator.get_state(),
    }


def unpack(data: dict, config_json: str, num_train: int, modules: dict, rng: np.random.Generator,
           generator: torch.Generator, source: str) -> RunState:
    """Load the networks and RNGs from ``data`` and return its :class:`RunState`.

    :class:`UserError` naming ``source`` if it belongs to another run or does not fit.
    """
    if data.get("config") != config_json or data.get("num_train") != num_train:
        raise UserError(f"{source} belongs to a different run (config or data differ); "
                        "it cannot resume this run directory")
    try:
        for name in MODULES:
            modules[name].load_state_dict(data[name])
        rng.bit_generator.state = _decode_rng(data["numpy_rng"])
        generator.set_state(data["torch_rng"])
        return RunState(phase=Phase(data["phase"]), refined=data["refined"].numpy().astype(np.int64),
                        best_teacher_state=data["best_teacher_state"], **{key: data[key] for key in SCALARS})
    except (KeyError, RuntimeError, ValueError, TypeError, AttributeError) as exc:
        raise UserError(f"{source} does not match this run: {str(exc).splitlines()[0]}") from None


def _encode_rng(state: dict) -> dict:
    """numpy bit-generator state with its 128-bit integers as strings."""
    inner = {k: str(v) for k, v in state["state"].items()}
    return {"bit_generator": state["bit_generator"], "state": inner,
            "has_uint32": int(state["has_uint32"]), "uinteger": int(state["uinteger"])}


def _decode_rng(state: dict) -> dict:
    return {**state, "state": {k: int(v) for k, v in state["state"].items()}}

"""Checkpoints: everything a run needs to continue exactly where it stopped.

Written after every step, atomically (temp file + rename): models, optimisers,
the weight network, RNG states, labels, early-stopping state. Loaded with
``torch.load(..., weights_only=True)``: plain tensors and Python values only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .errors import UserError
from .store import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    from .run import Run

VERSION = 1


def save(run: Run, path: Path) -> None:
    s = run.state
    payload = {
        "version": VERSION,
        "config": run.config.to_json(),
        "num_train": len(run.given),
        "phase": s.phase.value, "step": s.step, "phase_epoch": s.phase_epoch,
        "student_epoch": s.student_epoch, "teacher_epoch": s.teacher_epoch,
        "refined": torch.as_tensor(s.refined),
        "noise_rate_estimate": s.noise_rate_estimate,
        "best_holdout": s.best_holdout, "bad_epochs": s.bad_epochs,
        "best_teacher_epoch": s.best_teacher_epoch, "teacher_stopped": s.teacher_stopped,
        "best_teacher_state": s.best_teacher_state, "wall_seconds": s.wall_seconds,
        "teacher": run.teacher.state_dict(), "student": run.student.state_dict(),
        "opt_teacher": run.opt_teacher.state_dict(), "opt_student": run.opt_student.state_dict(),
        "weight_net": run.weight_net.state_dict(), "opt_weight": run.opt_weight.state_dict(),
        "numpy_rng": _encode_rng(run.rng.bit_generator.state),
        "torch_rng": run.generator.get_state(),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load(run: Run, path: Path) -> None:
    """Restore ``run`` from its checkpoint; :class:`UserError` if it is unusable."""
    from .run import Phase

    data = read(path)
    if data.get("config") != run.config.to_json() or data.get("num_train") != len(run.given):
        raise UserError(f"checkpoint {str(path)!r} belongs to a different run (config or data differ); "
                        "it cannot resume this run directory")
    try:
        run.teacher.load_state_dict(data["teacher"])
        run.student.load_state_dict(data["student"])
        run.opt_teacher.load_state_dict(data["opt_teacher"])
        run.opt_student.load_state_dict(data["opt_student"])
        run.weight_net.load_state_dict(data["weight_net"])
        run.opt_weight.load_state_dict(data["opt_weight"])
        run.rng.bit_generator.state = _decode_rng(data["numpy_rng"])
        run.generator.set_state(data["torch_rng"])
        s = run.state
        s.phase = Phase(data["phase"])
        for key in ("step", "phase_epoch", "student_epoch", "teacher_epoch", "noise_rate_estimate",
                    "best_holdout", "bad_epochs", "best_teacher_epoch", "teacher_stopped",
                    "best_teacher_state", "wall_seconds"):
            setattr(s, key, data[key])
        s.refined = data["refined"].numpy().astype(np.int64)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise UserError(f"checkpoint {str(path)!r} does not match this run: {str(exc).splitlines()[0]}") from None


def read(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {str(path)!r} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means a bad file
        raise UserError(f"checkpoint {str(path)!r} is corrupt or not a checkpoint: {type(exc).__name__}") from None
    if not isinstance(data, dict):
        raise UserError(f"checkpoint {str(path)!r} is not a dictionary of weights")
    return data


def load_teacher(model: torch.nn.Module, path: str | Path) -> None:
    """Load teacher weights from a bare state_dict or a run's checkpoint.pt."""
    data = read(path)
    state = data.get("teacher", data)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1:2] or [str(exc)]
        raise UserError(f"teacher checkpoint {str(path)!r} does not fit the teacher architecture or class "
                        f"count: {first[0].strip()}") from None


def _encode_rng(state: dict) -> dict:
    """numpy bit-generator state with its 128-bit integers as strings."""
    inner = {k: str(v) for k, v in state["state"].items()}
    return {"bit_generator": state["bit_generator"], "state": inner,
            "has_uint32": int(state["has_uint32"]), "uinteger": int(state["uinteger"])}


def _decode_rng(state: dict) -> dict:
    return {**state, "state": {k: int(v) for k, v in state["state"].items()}}

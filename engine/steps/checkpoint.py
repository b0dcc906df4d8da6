"""Checkpoints: state in, state out.

A checkpoint is the dictionary :func:`engine.steps.state.pack` builds: models,
optimisers, the weight network, RNG states, labels, early-stopping state.
Written after every step, atomically (temp file + rename); read with
``torch.load(..., weights_only=True)``: plain tensors and Python values only.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import UserError, writing
from ..rundir.store import atomic_path

VERSION = 1


def save(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` atomically; a full disk or a read-only folder is one :class:`UserError`."""
    with writing(path), atomic_path(path) as tmp:
        torch.save({"version": VERSION, **data}, tmp)


def read(path: str | Path) -> dict:
    """The checkpoint's dictionary; :class:`UserError` if the file is missing, corrupt or not one."""
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

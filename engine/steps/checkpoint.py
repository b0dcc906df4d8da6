"""Checkpoints: everything a run needs to continue exactly where it stopped.

Written after every step, atomically (temp file + rename): models, optimisers,
the weight network, RNG states, labels, early-stopping state. Loaded with
``torch.load(..., weights_only=True)``: plain tensors and Python values only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..errors import UserError
from ..rundir.store import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    from .run import Run

VERSION = 1


def save(run: Run, path: Path) -> None:
    """Write ``run.state_dict()`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save({"version": VERSION, **run.state_dict()}, tmp)


def load(run: Run, path: Path) -> None:
    """Restore ``run`` from its checkpoint; :class:`UserError` if it is unusable."""
    run.load_state_dict(read(path), source=f"checkpoint {str(path)!r}")


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

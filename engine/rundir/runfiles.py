"""Checked readers of a run's files for the commands that only read a run
(``export``, ``compare``, ``import-decisions``) and the report.

Each returns what :class:`engine.rundir.store.RunStore` reads, or raises one
:class:`UserError` that names the damaged file and what to do about it
(:func:`engine.errors.damaged`). Light on purpose: it imports neither torch
nor faiss, so ``python -m engine compare`` starts quickly.
"""

from __future__ import annotations

import json
import numbers

import numpy as np

from ..errors import damaged, reading
from .store import RunStore

#: The summary fields the report and ``compare`` show (key, label).
SUMMARY_ROWS = (
    ("given_label_precision", "given label precision"),
    ("refined_label_precision", "refined label precision"),
    ("teacher_test_accuracy", "teacher test accuracy"),
    ("student_test_accuracy", "student test accuracy"),
    ("awe_auroc", "AWE AUROC (clean vs noisy)"),
    ("noise_rate_estimate", "noise rate, estimated"),
    ("noise_rate_true", "noise rate, true"),
    ("wall_seconds", "seconds of training"),
)
DATASET_ADVICE = ("it cannot be rebuilt from the run's other files: restore it from a backup, or create the run "
                  "again (python -m engine run ... --force)")


def read_dataset(store: RunStore) -> dict[str, np.ndarray]:
    """``dataset.npz`` with its ``given``, ``keys`` and ``true`` arrays, or one clear line naming it."""
    path = store.path / "dataset.npz"
    with reading(path, DATASET_ADVICE):
        data = store.dataset_arrays()
        missing = [name for name in ("given", "keys", "true") if name not in data]
        if missing:
            raise KeyError(f"no {', '.join(missing)} array")
        if not len(data["given"]) == len(data["keys"]) == len(data["true"]):
            raise ValueError("given, keys and true differ in length")
    return data


def read_snapshot(store: RunStore, step: int) -> dict[str, np.ndarray]:
    """Every array of a step's snapshot, or one clear line naming the file and an earlier step."""
    earlier = [s for s in store.steps() if s < step]
    advice = (f"export an earlier step (--step {earlier[-1]})" if earlier else
              "no earlier step exists: restore it from a backup, or create the run again")
    with reading(store.snapshot_path(step), advice):
        return store.snapshot(step)


#: Summary fields that tables format as numbers (a damaged value there is refused by name).
SUMMARY_NUMBERS = tuple(key for key, _ in SUMMARY_ROWS) + ("seed", "steps")


def read_summary(store: RunStore) -> dict | None:
    """``summary.json`` (None while the run is unfinished), or one clear line naming it."""
    path = store.path / "summary.json"
    advice = f"delete it, then `python -m engine resume {store.path}` writes it again"
    with reading(path, advice):
        summary = store.summary()
        if summary is None:
            return None
        if not isinstance(summary, dict):
            raise ValueError(f"a JSON {type(summary).__name__}, not an object")
    for key in SUMMARY_NUMBERS:
        value = summary.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
            raise damaged(path, ValueError(f"field {key!r} is {json.dumps(value)[:40]}, not a number"), advice)
    return summary


def read_metrics(store: RunStore) -> list[dict]:
    """The per-step metrics lines that are JSON objects with a step (others are left out)."""
    with reading(store.path / "metrics.jsonl", "delete the damaged lines, or resume the run to rewrite them"):
        return [m for m in store.metrics() if isinstance(m, dict) and isinstance(m.get("step"), int)]

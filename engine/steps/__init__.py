"""The step machine: sequencing only.

``phases`` (phase order, lengths, next-step sentences), ``run``
(``Run.step()``: one unit of work, one snapshot), ``handlers`` (what one step
of each phase does), ``lifecycle`` (create, open, resume a run directory),
``checkpoint`` (state in, state out).

The face is lazy (PEP 562): ``from engine.steps import phase_plan`` does not
import torch; ``Run`` does.
"""

from importlib import import_module

_FACE = {"Run": "run", "StepResult": "run", "Phase": "phases", "PHASES": "phases", "phase_plan": "phases",
         "load_teacher": "checkpoint", "teacher_mode_seconds": "timing",
         "recorded_processes": "lifecycle"}

__all__ = sorted(_FACE)


def __getattr__(name: str):
    if name not in _FACE:
        raise AttributeError(f"module 'engine.steps' has no attribute {name!r}")
    return getattr(import_module(f".{_FACE[name]}", __name__), name)

"""The method: AML-KD's pure rules and solvers, no files and no run.

``config`` (every run setting), ``noise`` (noise models), ``confident`` (noise
rate, posterior and estimated precision without the truth),
``graph`` (kNN, faiss), ``propagate`` (label propagation), ``select`` (small
loss), ``ambiguity`` (AWE), ``refinery`` (the label rules), ``losses``,
``training`` (one epoch), ``augment``, ``metrics``.

This face exports only the settings and the noise specs, and imports neither
torch nor faiss: the app and the run directory read settings cheaply. Every
other module is imported by its own name by the layers above.
"""

from .config import (ABLATIONS, METHODS, SMALL_PAIR_TEACHER, GraphConfig, PropagationConfig, RunConfig,
                     ScheduleConfig, TrainConfig, check_runnable, defaults_for_teacher)
from .noise import CIFAR10_CLASSES, asym_targets, load_matrix, nominal_noise_rate, parse_noise_spec

__all__ = ["ABLATIONS", "CIFAR10_CLASSES", "METHODS", "SMALL_PAIR_TEACHER", "GraphConfig", "PropagationConfig", "RunConfig",
           "ScheduleConfig", "TrainConfig", "asym_targets", "check_runnable", "defaults_for_teacher", "load_matrix",
           "nominal_noise_rate", "parse_noise_spec"]

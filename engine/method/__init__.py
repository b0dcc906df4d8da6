"""The method: AML-KD's pure rules and solvers, no files and no run.

``config`` (every run setting, declared once), ``presets`` (named configs of
``assets/presets.json``), ``stages`` (phase names and their sets), ``noise``
(noise models, the "known noise rate" rule), ``confident`` (noise rate, posterior and
estimated precision without the truth), ``transition`` (rate estimators by a transition
matrix, compared in ``bench/noise_estimators.py``), ``graph``
(kNN, faiss), ``propagate`` (label propagation), ``select`` (small loss),
``ambiguity`` (AWE), ``refinery`` (the label rules), ``losses``, ``training``
(one epoch), ``augment``, ``metrics``, ``stats`` (how much is chance).

This face exports the settings, the presets, the phase names and the noise
specs, and imports neither torch nor faiss: the app and the run directory read
settings cheaply. Every other module is imported by its own name by the layers
above.
"""

from .config import (ABLATIONS, METHOD_NAMES, METHODS, SMALL_PAIR_TEACHER, TEACHER_MODES, GraphConfig,
                     PropagationConfig,
                     RunConfig, ScheduleConfig, Setting, TrainConfig, check_runnable, declared, defaults_for_teacher,
                     widget_limits, with_settings, with_teacher_defaults)
from .noise import (CIFAR10_CLASSES, RATE_WITHOUT_DATA, asym_targets, known_noise_rate, load_matrix,
                    parse_noise_spec)
from .presets import Preset, default_preset, load_presets, preset_named
from .stages import (CLAMPED_PHASES, LP_PHASES, REFINE_PHASES, STUDENT_PHASES, TEACHER_PHASES, WORKING_PHASES,
                     Phase)

__all__ = ["ABLATIONS", "CIFAR10_CLASSES", "CLAMPED_PHASES", "LP_PHASES", "METHODS", "METHOD_NAMES",
           "RATE_WITHOUT_DATA", "REFINE_PHASES", "SMALL_PAIR_TEACHER", "STUDENT_PHASES", "TEACHER_MODES", "TEACHER_PHASES",
           "WORKING_PHASES", "GraphConfig", "Phase", "Preset", "PropagationConfig", "RunConfig", "ScheduleConfig",
           "Setting", "TrainConfig", "asym_targets", "check_runnable", "declared", "default_preset",
           "defaults_for_teacher", "known_noise_rate", "load_matrix", "load_presets", "parse_noise_spec",
           "preset_named", "widget_limits", "with_settings", "with_teacher_defaults"]

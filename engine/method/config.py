"""Run configuration: frozen dataclasses per concept, composed into
:class:`RunConfig`, validated on construction and saved with the run as JSON.
"""

from __future__ import annotations

import json
import math
import numbers
from dataclasses import asdict, dataclass, field, fields, replace

from ..errors import UserError
from .noise import parse_noise_spec

METHODS = ("aml-kd", "ce", "kd")
#: How a propagating step may change labels (engine.method.refinery.RULES): ours, or the authors' as published.
RELABEL_RULES = ("calibrated", "authors")
#: Components of AML-KD an ablation can remove (``--without``), and what replaces each.
ABLATIONS = {
    "awe": "uniform weights instead of the ambiguity-aware weights (stage 1 seeds and CE weights)",
    "mutual": "the refine stage (teacher graph) runs to the end instead of the mutual stage",
    "stage0": "no teacher-guided propagation: the student starts from the given labels",
}


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class GraphConfig:
    """Settings of the kNN graph (:mod:`engine.method.graph`).

    Parameters
    ----------
    k : int
        Neighbours per sample, self excluded.
    power : float
        Exponent applied to the (non-negative) cosine similarity of an edge.
    """

    k: int = 20  # the authors' value; enough to connect each class, few cross-class edges
    power: float = 3.0  # s**3 as in Iscen et al.: sharpens the kernel towards close pairs

    def __post_init__(self) -> None:
        if not _is_int(self.k) or self.k < 1:
            raise UserError(f"k={self.k!r} is out of range; valid: a whole number >= 1")
        if not _is_real(self.power) or not self.power > 0 or not math.isfinite(self.power):
            raise UserError(f"edge-power={self.power!r} is out of range; valid: a finite number > 0")


@dataclass(frozen=True)
class PropagationConfig:
    """Settings of the label propagation solver (:mod:`engine.method.propagate`).

    Parameters
    ----------
    alpha : float
        Weight of the graph against the seeds, ``0 < alpha < 1``.
    max_iter : int
        Conjugate-gradient iterations at most.
    tol : float
        A class column stops once its relative residual is ``<= tol``.
    """

    alpha: float = 0.99  # the authors' value: labels travel far along the graph
    max_iter: int = 20  # the authors' value: LP is re-run every epoch, 20 CG steps suffice
    tol: float = 1e-6  # the authors' value; rarely reached within 20 steps

    def __post_init__(self) -> None:
        if not _is_real(self.alpha) or not 0 < self.alpha < 1:
            raise UserError(f"alpha={self.alpha!r} is out of range; valid: 0 < alpha < 1")
        if not _is_int(self.max_iter) or self.max_iter < 1:
            raise UserError(f"lp-iterations={self.max_iter!r} is out of range; valid: a whole number >= 1")
        if not _is_real(self.tol) or not self.tol > 0 or not math.isfinite(self.tol):
            raise UserError(f"tol={self.tol!r} is out of range; valid: a finite number > 0")



@dataclass(frozen=True)
class ScheduleConfig:
    """Epochs per phase. Digits defaults keep the authors' proportions of 240
    epochs (warm-up 1/12, refine to 3/4, mutual the rest) scaled to 48."""

    teacher_epochs: int = 30  # upper bound; early stopping usually ends sooner
    teacher_patience: int = 5  # epochs without a better held-out accuracy before stopping
    teacher_holdout: float = 0.1  # fraction of given labels held out to stop the teacher
    warmup_epochs: int = 4  # 48 / 12
    refine_epochs: int = 32  # to epoch 36 = 3/4 of 48
    mutual_epochs: int = 12  # the last quarter

    def __post_init__(self):
        for f in ("teacher_epochs", "warmup_epochs", "refine_epochs", "mutual_epochs", "teacher_patience"):
            value = getattr(self, f)
            if not isinstance(value, int) or value < 0:
                raise UserError(f"{f.replace('_', '-')}={value} must be a whole number >= 0")
        if not 0.0 <= self.teacher_holdout < 0.5:
            raise UserError(f"teacher-holdout={self.teacher_holdout} must lie in [0, 0.5)")

    @property
    def student_epochs(self) -> int:
        return self.warmup_epochs + self.refine_epochs + self.mutual_epochs


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and loss knobs (the authors' values where they give one)."""

    batch_size: int = 64  # small data: many steps per epoch
    lr: float = 0.05  # student SGD, cosine-annealed over the student's epochs
    teacher_lr: float = 0.01  # smaller: on noisy labels a calmer teacher early-stops more reliably
    momentum: float = 0.9
    weight_decay: float = 5e-4
    temperature: float = 4.0  # KD temperature tau
    kd_weight: float = 0.9  # weight of the KD term
    clean_kd_weight: float = 0.0  # AML-KD phases: weight of a second KD term on the un-mixed inputs
    relational_weight: float = 0.5  # weight of MSE(G_S, G_T)
    mixup_alpha: float = 4.0  # lambda ~ Beta(4, 4)
    keep_least_confident: float = 0.05  # stage 0: this fraction keeps the given label
    awe_iterations: int = 100  # full-batch steps fitting the weight network each round
    awe_lr: float = 0.01

    def __post_init__(self):
        checks = {  # name: (value, ok, what is valid)
            "batch-size": (self.batch_size, self.batch_size >= 2, "a whole number >= 2"),
            "lr": (self.lr, self.lr > 0, "> 0"),
            "teacher-lr": (self.teacher_lr, self.teacher_lr > 0, "> 0"),
            "temperature": (self.temperature, self.temperature > 0, "> 0"),
            "kd-weight": (self.kd_weight, 0 <= self.kd_weight <= 1, "0..1"),
            "clean-kd-weight": (self.clean_kd_weight, 0 <= self.clean_kd_weight <= 1, "0..1"),
            "relational-weight": (self.relational_weight, self.relational_weight >= 0, ">= 0"),
            "mixup-alpha": (self.mixup_alpha, self.mixup_alpha > 0, "> 0"),
            "keep-least-confident": (self.keep_least_confident, 0 <= self.keep_least_confident < 1, "0 <= x < 1"),
        }
        for name, (value, ok, valid) in checks.items():
            if not ok:
                raise UserError(f"{name}={value} is out of range; valid: {valid}")


@dataclass(frozen=True)
class RunConfig:
    dataset: str = "digits"
    noise: str = "symmetric:0.4"
    method: str = "aml-kd"
    seed: int = 0
    noise_rate: float | None = None  # None: estimate from stage 0
    teacher: str | None = None  # architecture; None: the dataset's default pair
    student: str | None = None
    teacher_checkpoint: str | None = None  # load the teacher instead of training it
    teacher_features: str | None = None  # features from elsewhere for the graph and stage 0 (engine.data.features)
    labels: str | None = None  # label CSV replacing the given labels
    key_column: str = "path"
    label_column: str = "label"
    truth_column: str | None = None
    graph: GraphConfig = field(default_factory=GraphConfig)
    propagation: PropagationConfig = field(default_factory=PropagationConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    without: tuple[str, ...] = ()  # AML-KD ablations (ABLATIONS); empty: the whole method
    relabel_rule: str = "calibrated"  # a label changes only where the calibrated posterior favours it; "authors": as published

    def __post_init__(self):
        if self.method not in METHODS:
            raise UserError(f"unknown method {self.method!r}; valid: {', '.join(METHODS)}")
        if isinstance(self.without, str) or not all(isinstance(w, str) for w in self.without):
            raise UserError(f"without={self.without!r} must be a list of components; valid: {', '.join(ABLATIONS)}")
        object.__setattr__(self, "without", tuple(sorted(set(self.without))))
        unknown = [w for w in self.without if w not in ABLATIONS]
        if unknown:
            raise UserError(f"--without {unknown[0]!r} is not a component of AML-KD; valid: {', '.join(ABLATIONS)}")
        if self.without and self.method != "aml-kd":
            raise UserError(f"--without applies to method aml-kd only, not {self.method!r}")
        parse_noise_spec(self.noise)
        if self.noise_rate is not None and not 0.0 <= self.noise_rate < 1.0:
            raise UserError(f"noise-rate={self.noise_rate} is outside [0, 1)")
        if self.relabel_rule not in RELABEL_RULES:
            raise UserError(f"relabel-rule={self.relabel_rule!r} is unknown; valid: {', '.join(RELABEL_RULES)}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise UserError(f"seed={self.seed} must be a whole number >= 0")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> RunConfig:
        nested = {"graph": GraphConfig, "propagation": PropagationConfig,
                  "schedule": ScheduleConfig, "train": TrainConfig}
        if not isinstance(data, dict):
            raise UserError(f"a run config is a JSON object of settings, not {type(data).__name__}")
        for key in nested:
            if key in data and not isinstance(data[key], dict):
                raise UserError(f"{key!r} must be an object of {key} settings, not {str(data[key])[:60]!r}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise UserError(f"unknown config keys {sorted(unknown)}; valid: {sorted(known)}")
        kwargs = dict(data)
        for key, sub in nested.items():
            if key in kwargs and isinstance(kwargs[key], dict):
                try:
                    kwargs[key] = sub(**kwargs[key])
                except TypeError as exc:
                    raise UserError(f"bad {key} config: {exc}") from None
                except ValueError as exc:
                    raise UserError(str(exc)) from None
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise UserError(f"bad run config: {exc}") from None

    def with_changes(self, **changes) -> RunConfig:
        return replace(self, **changes)


# ---------------------------------------------------------------- defaults that follow the networks
# The dataclass defaults above are the digits schedule. The small CPU pair for
# 32x32 images (``cifar-small-teacher`` -> ``cifar-small-student``, the default
# pair there without CUDA) gets its own, sized for about 20 minutes over 10,000
# images on 2 cores; bench/cifar10_small.py measures it. Measured on
# cifar10-small, 40% symmetric noise, one thread:
# - the teacher trains at lr 0.05 (0.01 is too timid for 24 epochs on noisy
#   labels) on all given labels for its 24 epochs, without the hold-out: on
#   this data the held-out accuracy against noisy labels picked epoch 28 of 40
#   (test 0.649) over the last (0.659), and the hold-out costs 10% of the data.
#   The cosine schedule ends the training before the labels are memorised
#   (training predictions 0.75 right against 0.64 for the given labels);
# - 32 student epochs (3 + 22 + 7, the authors' proportions) rather than 20:
#   AML-KD 0.606 / KD 0.600 / CE 0.575 against 0.581 / 0.579 / 0.553;
# - lambda ~ Beta(0.4, 0.4) instead of the authors' Beta(4, 4): a 24k-parameter
#   student trained for 20 epochs learns little from images that are mostly
#   half-and-half blends (AML-KD student 0.602 against 0.584 with Beta(4, 4),
#   same teacher, same labels);
# - a second KD term on the un-mixed images (clean_kd_weight 0.9; the authors
#   distil on mixed images only): AML-KD student 0.632 against 0.622, same
#   teacher checkpoint, same labels (docs/ALGORITHM.md).
SMALL_PAIR_TEACHER = "cifar-small-teacher"
SMALL_PAIR_SCHEDULE = ScheduleConfig(teacher_epochs=24, teacher_holdout=0.0, warmup_epochs=3, refine_epochs=22,
                                     mutual_epochs=7)
SMALL_PAIR_TRAIN = {"teacher_lr": 0.05, "mixup_alpha": 0.4, "clean_kd_weight": 0.9}


def defaults_for_teacher(teacher: str | None) -> tuple[ScheduleConfig, TrainConfig]:
    """The default schedule and training knobs for runs whose teacher is ``teacher``."""
    if teacher == SMALL_PAIR_TEACHER:
        return SMALL_PAIR_SCHEDULE, replace(TrainConfig(), **SMALL_PAIR_TRAIN)
    return ScheduleConfig(), TrainConfig()


# ---------------------------------------------------------------- runnable?
def check_runnable(config: RunConfig, num_train: int | None = None, num_classes: int | None = None,
                   dataset_name: str | None = None) -> list[str]:
    """Reasons a (valid) config cannot make a run on its data, each naming the
    setting as the CLI spells it and what would be valid. The CLI, the step
    machine and the Setup page all call this, so they say the same words.

    Parameters
    ----------
    config : RunConfig
        Already valid on its own (its ranges hold).
    num_train, num_classes : int, optional
        Facts of the dataset; a check that needs one is skipped while it is
        unknown (a dataset still to be downloaded).
    dataset_name : str, optional
        For the messages.

    Returns
    -------
    list of str
        Empty when the run can start.
    """
    problems = []
    s = config.schedule
    name = repr(dataset_name or config.dataset)
    if num_classes is not None and num_classes < 2:
        problems.append(f"dataset {name} has {num_classes} class; at least 2 are needed")
    if num_train is not None and config.graph.k >= num_train:
        problems.append(f"k={config.graph.k} needs more training samples than neighbours; dataset {name} has "
                        f"{num_train}: valid k is 1..{num_train - 1}")
    if config.method != "ce" and s.teacher_epochs < 1 and not config.teacher_checkpoint:
        problems.append("teacher-epochs=0 leaves no teacher to learn from; valid: at least 1, or a "
                        "teacher-checkpoint, or method ce (no teacher)")
    if s.student_epochs < 1:
        problems.append("warmup-epochs, refine-epochs and mutual-epochs are all 0, so the student never trains; "
                        "valid: at least 1 epoch in one of them")
    elif config.method == "aml-kd" and s.refine_epochs + s.mutual_epochs < 1:
        problems.append("refine-epochs=0 and mutual-epochs=0: AML-KD would never refine a label; valid: at least "
                        "1 epoch in one of them (or method kd)")
    return problems

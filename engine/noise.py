"""Synthetic label noise and noise-rate estimation.

Noise specs (strings, as on the command line):

- ``none``                 given labels are the true labels;
- ``symmetric:R``          as the authors' code: a fraction R of samples draw a
                           label uniformly from *all* C classes (so about
                           R (C-1)/C of labels end up wrong);
- ``pairflip:R``           a fraction R of each class flips to the next class
                           (c -> c+1 mod C);
- ``matrix:FILE``          a user-given C x C row-stochastic transition matrix
                           T[i, j] = P(given = j | true = i), as CSV or .npy.

The true labels are always kept, so every metric against ground truth stays
available. All draws come from a seeded ``numpy.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError

KINDS = ("none", "symmetric", "pairflip", "matrix")


@dataclass(frozen=True)
class NoiseSpec:
    kind: str = "symmetric"
    rate: float = 0.4
    matrix_path: str | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise UserError(f"unknown noise type {self.kind!r}; valid: {', '.join(KINDS)}")
        if self.kind in ("symmetric", "pairflip") and not 0.0 <= self.rate < 1.0:
            raise UserError(f"noise rate {self.rate} is outside [0, 1)")

    def __str__(self) -> str:
        if self.kind == "none":
            return "none"
        if self.kind == "matrix":
            return f"matrix:{self.matrix_path}"
        return f"{self.kind}:{self.rate:g}"


def parse_noise_spec(spec: str) -> NoiseSpec:
    """``symmetric:0.4`` -> ``NoiseSpec('symmetric', 0.4)``."""
    text = (spec or "").strip()
    if text in ("", "none", "clean"):
        return NoiseSpec("none", 0.0)
    kind, _, arg = text.partition(":")
    kind = kind.lower()
    if kind == "matrix":
        if not arg:
            raise UserError("noise 'matrix' needs a file: matrix:PATH (CSV or .npy, C x C)")
        return NoiseSpec("matrix", 0.0, arg)
    if kind not in KINDS:
        raise UserError(
            f"unknown noise spec {spec!r}; valid: none, symmetric:R, pairflip:R, matrix:FILE (R in [0, 1))"
        )
    try:
        rate = float(arg)
    except ValueError:
        raise UserError(f"noise spec {spec!r} needs a rate, e.g. {kind}:0.4") from None
    return NoiseSpec(kind, rate)


def transition_matrix(spec: NoiseSpec, num_classes: int) -> np.ndarray:
    """The (C, C) matrix T[true, given] the spec stands for."""
    c = num_classes
    if spec.kind == "none":
        return np.eye(c)
    if spec.kind == "symmetric":
        return (1 - spec.rate) * np.eye(c) + spec.rate / c
    if spec.kind == "pairflip":
        return (1 - spec.rate) * np.eye(c) + spec.rate * np.roll(np.eye(c), 1, axis=1)
    return load_matrix(spec.matrix_path, c)


def load_matrix(path: str | None, num_classes: int) -> np.ndarray:
    p = Path(path or "")
    if not p.is_file():
        raise UserError(f"noise matrix file {str(p)!r} does not exist")
    try:
        m = np.load(p) if p.suffix == ".npy" else np.loadtxt(p, delimiter=",", ndmin=2)
    except Exception as exc:  # noqa: BLE001 - any parse failure is the user's file
        raise UserError(f"noise matrix file {str(p)!r} could not be read: {exc}") from None
    if m.shape != (num_classes, num_classes):
        raise UserError(
            f"noise matrix in {str(p)!r} is {m.shape[0]}x{m.shape[1]}; the dataset needs "
            f"{num_classes}x{num_classes}"
        )
    if (m < 0).any() or not np.allclose(m.sum(1), 1.0, atol=1e-6):
        raise UserError(f"noise matrix in {str(p)!r} must be non-negative with rows summing to 1")
    return m


def apply_noise(true_labels: np.ndarray, spec: NoiseSpec, num_classes: int,
                rng: np.random.Generator) -> np.ndarray:
    """Given labels (N,) drawn from the truth under ``spec``.

    Symmetric noise follows the authors' code: exactly ``round(R N)`` samples
    (chosen at random) take a uniform label over all classes.
    """
    labels = np.asarray(true_labels, dtype=np.int64).copy()
    n = len(labels)
    if spec.kind == "none" or n == 0:
        return labels
    if spec.kind == "symmetric":
        chosen = rng.permutation(n)[: int(round(spec.rate * n))]
        labels[chosen] = rng.integers(0, num_classes, size=len(chosen))
        return labels
    if spec.kind == "pairflip":
        chosen = rng.permutation(n)[: int(round(spec.rate * n))]
        labels[chosen] = (labels[chosen] + 1) % num_classes
        return labels
    matrix = transition_matrix(spec, num_classes)
    cumulative = matrix.cumsum(1)[labels]  # (N, C)
    draws = rng.random(n)[:, None]
    return np.minimum((draws > cumulative).sum(1), num_classes - 1).astype(np.int64)


def estimate_noise_rate(given_labels: np.ndarray, propagated_labels: np.ndarray) -> float:
    """Fraction of samples whose given label disagrees with label propagation.

    Used when the noise rate is not given: after stage 0 the teacher-guided
    propagation is mostly right, so its disagreement with the given labels
    estimates the fraction of wrong labels.
    """
    given = np.asarray(given_labels)
    if len(given) == 0:
        return 0.0
    return float(np.mean(given != np.asarray(propagated_labels)))

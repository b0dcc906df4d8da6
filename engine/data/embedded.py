"""Data that ships with the project: scikit-learn's digits and 2-D toys.

``digits``: 1,797 real 8x8 handwritten digits (UCI), scaled to [0, 1] and
split 80/20 stratified with a fixed seed (1,437 train, 360 test).
Toys (``moons``, ``blobs``, ``circles``): generated points with their own test
split, size ``n`` and spread configurable.
"""

from __future__ import annotations

import numpy as np
from sklearn import datasets as skd
from sklearn.model_selection import train_test_split

from ..errors import UserError
from .base import Dataset, DatasetSpec

SPLIT_SEED = 0  # the train/test split never changes with the run's seed
TEST_FRACTION = 0.2


DIGITS_OPTIONS = ()
TOY_OPTIONS = {"moons": ("n", "spread"), "circles": ("n", "spread"), "blobs": ("n", "spread", "classes")}


def load_digits(spec: DatasetSpec) -> Dataset:
    spec.check_options(DIGITS_OPTIONS)
    bunch = skd.load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(
        idx, test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED
    )
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)
    return Dataset(
        name="digits",
        kind="image",
        class_names=tuple(str(c) for c in range(10)),
        train_x=images[train_idx],
        train_true=labels[train_idx],
        test_x=images[test_idx],
        test_true=labels[test_idx],
        train_keys=tuple(f"digits/{i}" for i in train_idx),
    )


def _toy_points(name: str, n: int, spread: float, classes: int, rng_seed: int):
    if name == "moons":
        return skd.make_moons(n_samples=n, noise=spread, random_state=rng_seed)
    if name == "circles":
        return skd.make_circles(n_samples=n, noise=spread, factor=0.5, random_state=rng_seed)
    return skd.make_blobs(
        n_samples=n, centers=classes, cluster_std=spread, random_state=rng_seed
    )


TOY_DEFAULTS = {"moons": (0.15, 2), "circles": (0.08, 2), "blobs": (1.5, 4)}


def load_toy(spec: DatasetSpec) -> Dataset:
    """A 2-D toy set; options ``n`` (train size), ``spread``, ``classes`` (blobs)."""
    spec.check_options(TOY_OPTIONS[spec.name])
    default_spread, default_classes = TOY_DEFAULTS[spec.name]
    n = spec.option("n", 600, int)
    spread = spec.option("spread", default_spread, float)
    classes = spec.option("classes", default_classes, int) if spec.name == "blobs" else 2
    if not 20 <= n <= 200_000:
        raise UserError(f"toy dataset size n={n} is out of range; valid: 20..200000")
    if spread < 0:
        raise UserError(f"toy dataset spread={spread} must be >= 0")
    if not 2 <= classes <= 20:
        raise UserError(f"blobs classes={classes} is out of range; valid: 2..20")
    x_train, y_train = _toy_points(spec.name, n, spread, classes, SPLIT_SEED)
    x_test, y_test = _toy_points(spec.name, max(n // 4, 20), spread, classes, SPLIT_SEED + 1)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-8
    return Dataset(
        name=spec.name if not spec.options else f"{spec.name}?" + "&".join(f"{k}={v}" for k, v in spec.options),
        kind="points",
        class_names=tuple(f"class {c}" for c in range(classes)),
        train_x=((x_train - mean) / std).astype(np.float32),
        train_true=y_train.astype(np.int64),
        test_x=((x_test - mean) / std).astype(np.float32),
        test_true=y_test.astype(np.int64),
    )

"""Instance-dependent and asymmetric CIFAR-10 noise (engine/method/noise.py)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.method.config import RunConfig
from engine.errors import UserError
from engine.method.noise import (CIFAR10_CLASSES, NoiseSpec, apply_noise, instance_noise, known_noise_rate,
                          parse_noise_spec, transition_matrix)

NAMES = CIFAR10_CLASSES


def _inputs(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 3, 4, 4)).astype(np.float32)


# ---------------------------------------------------------------- specs
@pytest.mark.parametrize("text,kind,rate", [("instance:0.4", "instance", 0.4), ("idn:0.2", "instance", 0.2),
                                            ("asym:0.4", "asym", 0.4), ("asymmetric:0.3", "asym", 0.3)])
def test_specs_parse_with_aliases_and_print_back(text, kind, rate):
    spec = parse_noise_spec(text)
    assert (spec.kind, spec.rate) == (kind, rate) and str(spec) == f"{kind}:{rate:g}"
    RunConfig(noise=text)  # the run config accepts it


@pytest.mark.parametrize("text", ["instance:1.0", "asym:-0.1", "asym", "instance:x"])
def test_bad_rates_are_refused(text):
    with pytest.raises(UserError):
        parse_noise_spec(text)


# ---------------------------------------------------------------- asymmetric
def test_asym_flips_exactly_the_cifar10_pairs_and_nothing_else():
    true = np.repeat(np.arange(10), 50)
    given = apply_noise(true, NoiseSpec("asym", 0.4), 10, np.random.default_rng(0), class_names=NAMES)
    idx = {name: i for i, name in enumerate(NAMES)}
    for source, target in (("truck", "automobile"), ("bird", "airplane"), ("deer", "horse"), ("cat", "dog"),
                           ("dog", "cat")):
        members = true == idx[source]
        assert np.sum(given[members] == idx[target]) == 20  # exactly round(0.4 * 50)
        assert np.sum(given[members] == idx[source]) == 30
    for clean in ("airplane", "automobile", "frog", "horse", "ship"):
        assert (given[true == idx[clean]] == idx[clean]).all()
    assert np.mean(given != true) == pytest.approx(0.2)


def test_asym_follows_class_names_in_any_order_and_case():
    shuffled = ("Truck", "ship", "horse", "frog", "dog", "deer", "cat", "bird", "automobile", "airplane")
    true = np.repeat(np.arange(10), 10)
    given = apply_noise(true, NoiseSpec("asym", 1.0 - 1e-9), 10, np.random.default_rng(0), class_names=shuffled)
    assert (given[true == 0] == 8).all()  # truck -> automobile
    assert (given[true == 4] == 6).all() and (given[true == 6] == 4).all()  # dog <-> cat
    matrix = transition_matrix(NoiseSpec("asym", 0.3), 10, shuffled)
    assert np.allclose(matrix.sum(1), 1.0) and matrix[0, 8] == pytest.approx(0.3)


def test_asym_needs_the_cifar10_class_names():
    true = np.arange(10)
    with pytest.raises(UserError, match="ten CIFAR-10 classes"):
        apply_noise(true, NoiseSpec("asym", 0.4), 10, np.random.default_rng(0),
                    class_names=[str(i) for i in range(10)])
    with pytest.raises(UserError, match="ten CIFAR-10 classes"):
        apply_noise(true, NoiseSpec("asym", 0.4), 10, np.random.default_rng(0))


# ---------------------------------------------------------------- instance-dependent
def test_instance_noise_hits_the_rate_only_flips_to_other_classes_and_is_seeded():
    true = np.repeat(np.arange(5), 400)
    x = _inputs(len(true))
    a = apply_noise(true, NoiseSpec("instance", 0.3), 5, np.random.default_rng(7), inputs=x)
    b = apply_noise(true, NoiseSpec("instance", 0.3), 5, np.random.default_rng(7), inputs=x)
    c = apply_noise(true, NoiseSpec("instance", 0.3), 5, np.random.default_rng(8), inputs=x)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.mean(a != true) == pytest.approx(0.3, abs=0.03)
    assert set(np.unique(a)) <= set(range(5))
    assert np.array_equal(instance_noise(true, 0.0, x, 5, np.random.default_rng(0)), true)


def test_instance_noise_depends_on_the_input():
    """Copies of one input share a flip direction; different inputs do not.
    (With image-sized inputs the projections are far apart, so the softmax
    over wrong classes is nearly one-hot, as in Xia et al.'s generator.)"""
    rng = np.random.default_rng(0)
    base = rng.random((20, 3, 16, 16))
    x = np.repeat(base, 50, axis=0)  # 20 distinct inputs, 50 copies each
    true = np.zeros(len(x), dtype=np.int64)
    true[: len(x) // 2] = 1
    given = apply_noise(true, NoiseSpec("instance", 0.5), 4, np.random.default_rng(1), inputs=x)
    directions = []
    for i in range(20):
        copies = slice(50 * i, 50 * (i + 1))
        flipped = given[copies][given[copies] != true[copies]]
        if len(flipped):
            values, counts = np.unique(flipped, return_counts=True)
            assert counts.max() / len(flipped) > 0.9  # the same wrong class for look-alikes
            directions.append(values[counts.argmax()])
    assert len(set(directions)) > 1  # but not one wrong class for everyone


def test_instance_noise_needs_inputs_and_has_no_matrix():
    with pytest.raises(UserError, match="needs the training inputs"):
        apply_noise(np.arange(4), NoiseSpec("instance", 0.2), 4, np.random.default_rng(0))
    with pytest.raises(UserError, match="no single transition matrix"):
        transition_matrix(NoiseSpec("instance", 0.2), 4)


def test_known_noise_rate_is_what_a_user_knows():  # every kind: tests/test_config.py
    true = np.repeat(np.arange(10), 10)
    assert known_noise_rate(NoiseSpec("symmetric", 0.4), true) == 0.4
    assert known_noise_rate(NoiseSpec("instance", 0.3), true) == 0.3
    assert known_noise_rate(NoiseSpec("asym", 0.4), true, NAMES) == pytest.approx(0.2)
    assert known_noise_rate(NoiseSpec("none", 0.0), true) == 0.0

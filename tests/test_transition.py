"""engine.method.transition: each estimator recovers a known transition matrix on synthetic data built to meet
its assumption, and the trusted-set estimator does so where the features mix the classes (where the others fail)."""

from __future__ import annotations

import numpy as np
import pytest

from engine.method import transition

C = 4
# asymmetric, non-uniform flips: a transposed or mis-indexed matrix gives other numbers
T_TRUE = np.array([[0.70, 0.20, 0.05, 0.05],
                   [0.10, 0.80, 0.10, 0.00],
                   [0.00, 0.05, 0.90, 0.05],
                   [0.25, 0.00, 0.15, 0.60]])
PRIOR = np.array([0.4, 0.3, 0.2, 0.1])
RATE = 1.0 - float(PRIOR @ np.diag(T_TRUE))  # 0.24


def flip(clean: np.ndarray, rng) -> np.ndarray:
    """Given labels drawn through T_TRUE from the clean ones."""
    u = rng.random(len(clean))[:, None]
    return (np.cumsum(T_TRUE[clean], 1) < u).sum(1)


def test_rate_of_and_prior():
    assert transition.rate_of(T_TRUE, PRIOR) == pytest.approx(0.24)
    assert transition.prior_from_given(T_TRUE, PRIOR @ T_TRUE) == pytest.approx(PRIOR, abs=1e-9)


def test_hoc_recovers_t_from_clusterable_triplets():
    rng = np.random.default_rng(0)
    clean = rng.choice(C, size=40000, p=PRIOR)
    triplets = np.stack([flip(clean, rng) for _ in range(3)], 1)  # a sample and two neighbours of its clean class
    rate, t, prior = transition.hoc_fit(*transition.consensus_counts(triplets, C))
    assert rate == pytest.approx(RATE, abs=0.01)
    assert np.abs(t - T_TRUE).max() < 0.04
    assert np.abs(prior - PRIOR).max() < 0.02


def test_two_nn_triplets_reads_the_two_nearest():
    given = np.array([0, 1, 2, 3])
    idx = np.array([[1, 2, 3], [0, 3, 2], [3, -1, 0], [2, 1, 0]])
    assert transition.two_nn_triplets(idx, given).tolist() == [[0, 1, 2], [1, 0, 3], [3, 2, 1]]


def test_consensus_counts():
    c1, c2, c3 = transition.consensus_counts(np.array([[0, 1, 1], [1, 1, 0]]), 2)
    assert c1.tolist() == [0.5, 0.5]
    assert c2.tolist() == [[0.0, 0.5], [0.25, 0.25]]
    assert c3[0, 1, 1] == 0.5 and c3[1, 1, 0] == 0.5 and c3.sum() == 1.0


def test_anchor_recovers_t_where_anchors_exist():
    rng = np.random.default_rng(1)
    n = 20000
    clean = rng.choice(C, size=n, p=PRIOR)
    pi = np.eye(C)[clean] * 0.5 + rng.dirichlet(np.ones(C), n) * 0.5  # mixed clean posteriors ...
    sure = rng.random(n) < 0.5
    pi[sure] = np.eye(C)[clean[sure]]  # ... and half sure of their class: anchors (class 3: 5%, above the 3% skipped)
    probs = pi @ T_TRUE  # P(given | x)
    given = (np.cumsum(probs, 1) < rng.random(n)[:, None]).sum(1)
    rate, t, _ = transition.anchor_transition(probs, given, C)
    assert np.abs(t - T_TRUE).max() < 0.01
    assert rate == pytest.approx(RATE, abs=0.02)


def mixed_scores(clean: np.ndarray, rng) -> np.ndarray:
    """P(given | x) of a weak model: half of each sample's clean posterior is spread over other classes."""
    pi = 0.5 * np.eye(C)[clean] + 0.5 * rng.dirichlet(np.ones(C), len(clean))
    return pi @ T_TRUE


@pytest.mark.parametrize("fit", ["clip", "nnls"])
def test_trusted_cancels_the_classes_the_features_mix(fit):
    rng = np.random.default_rng(2)
    clean = rng.choice(C, size=40000, p=PRIOR)
    given = flip(clean, rng)  # independent of the score, given the clean class
    trusted = rng.choice(C, size=8000, p=PRIOR)
    rate, t, prior = transition.trusted_transition(mixed_scores(clean, rng), given, mixed_scores(trusted, rng),
                                                   trusted, C, fit)
    assert rate == pytest.approx(RATE, abs=0.02)
    assert np.abs(t - T_TRUE).max() < 0.05
    assert np.abs(prior - PRIOR).max() < 0.02
    # gold loss correction's T = R reads the mixing as noise here
    r = transition.class_means(mixed_scores(trusted, rng), trusted, C)
    gold = transition.rate_of(r, transition.prior_from_given(r, np.bincount(given, minlength=C) / len(given)))
    assert gold > RATE + 0.2


def test_trusted_finds_no_noise_in_clean_labels():
    rng = np.random.default_rng(3)
    clean = rng.choice(C, size=40000, p=PRIOR)
    trusted = rng.choice(C, size=8000, p=PRIOR)
    scores = 0.5 * np.eye(C)[clean] + 0.5 * rng.dirichlet(np.ones(C), len(clean))
    tscores = 0.5 * np.eye(C)[trusted] + 0.5 * rng.dirichlet(np.ones(C), len(trusted))
    rate, t, _ = transition.trusted_transition(scores, clean, tscores, trusted, C, "nnls")
    assert rate < 0.02
    assert np.diag(t).min() > 0.97


def test_trusted_refuses_an_unknown_fit():
    with pytest.raises(ValueError, match="valid: clip, nnls"):
        transition.trusted_transition(np.eye(C), np.arange(C), np.eye(C), np.arange(C), C, "lsq")

"""Noise-rate estimators that read a transition matrix ``T[true, given]``
instead of counting disagreements: compared against the confident joint
(:mod:`engine.method.confident`) in ``bench/noise_estimators.py``.

Each returns ``(rate, T, prior)``: the share of wrong given labels
``r = 1 - sum_c prior_c T[c, c]``, the transition and the clean class prior.

Anchor points (Patrini et al., "Making deep neural networks robust to label
noise: a loss correction approach", CVPR 2017; Xia et al., "Are anchor
points really indispensable in label-noise learning?", NeurIPS 2019)
    ``P (N, C)`` = a model's P(given label | x). A sample whose clean class
    is surely ``c`` (an anchor) has ``P[x] = T[c, :]``; per class the
    sample at the ``quantile`` of ``P[:, c]`` stands in for it (the
    maximum is an outlier with a flexible model: Patrini et al. take the
    97th percentile). The clean prior solves ``q = prior T`` for the given
    labels' frequencies ``q`` (projected onto the simplex).

HOC, high-order consensus (Zhu, Song and Liu, "Clusterability as an
alternative to anchor points when learning with noisy labels", ICML 2021)
    Assume each sample and its two nearest neighbours in a feature space
    share their clean class (2-NN clusterability) and their labels are
    flipped independently through ``T``. Then the given labels' first-,
    second- and third-order statistics over such triplets are
    ``c1 = prior T``, ``c2[a, b] = sum_c prior_c T[c, a] T[c, b]``,
    ``c3[a, b, e] = sum_c prior_c T[c, a] T[c, b] T[c, e]``; ``prior`` and
    ``T`` (rows on the simplex, through softmax) are fitted to the measured
    ``c1, c2, c3`` by least squares (Adam, from a diagonal start).

Both identify ``T`` only under their assumption: anchors exist and the
model's probabilities are calibrated at them; the 2-NN share a clean class.
A weak teacher breaks both in the same way the neighbour vote does
(docs/ALGORITHM.md, "Which estimator with a weak teacher").

Cost: anchors O(N C); HOC O(N) for the counts and a fixed number of
optimisation steps on O(C^3) numbers. Nothing here reads or writes files.
"""

from __future__ import annotations

import numpy as np

from .confident import project_to_simplex

ANCHOR_QUANTILE = 0.97  # Patrini et al.'s choice: the surest 3% per class are passed over as possible outliers
HOC_STEPS = 1500  # Adam steps of the HOC fit: on the stored runs the rate moves < 0.002 from 600 to 3000 steps
HOC_LR = 0.1


def rate_of(transition: np.ndarray, prior: np.ndarray) -> float:
    """``1 - sum_c prior_c T[c, c]``: the share of samples whose given label is not their clean class."""
    return float(1.0 - np.dot(np.asarray(prior, np.float64), np.diag(np.asarray(transition, np.float64))))


def prior_from_given(transition: np.ndarray, given_freq: np.ndarray) -> np.ndarray:
    """The clean prior ``p`` with ``p T = q`` (``q`` the given labels' frequencies), projected onto the simplex."""
    prior = np.asarray(given_freq, np.float64) @ np.linalg.pinv(np.asarray(transition, np.float64))
    return project_to_simplex(prior[None, :])[0]


def anchor_transition(probs: np.ndarray, given: np.ndarray, num_classes: int,
                      quantile: float = ANCHOR_QUANTILE) -> tuple[float, np.ndarray, np.ndarray]:
    """``(rate, T, prior)`` from the anchor points of ``probs (N, C)`` = P(given label | x).

    Row ``c`` of ``T`` is ``probs`` of the sample whose ``probs[:, c]`` is
    at the ``quantile`` (the first at or above it). ``given`` sets the
    label frequencies the prior must reproduce.
    """
    probs = np.asarray(probs, np.float64)
    transition = np.zeros((num_classes, num_classes))
    for c in range(num_classes):
        column = probs[:, c]
        level = np.quantile(column, quantile)
        anchor = int(np.flatnonzero(column >= level)[np.argmin(column[column >= level])])
        transition[c] = probs[anchor] / probs[anchor].sum()
    freq = np.bincount(np.asarray(given, np.int64), minlength=num_classes) / len(given)
    prior = prior_from_given(transition, freq)
    return rate_of(transition, prior), transition, prior


def consensus_counts(triplets: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(c1 (C,), c2 (C, C), c3 (C, C, C))``: the given labels' frequencies over ``triplets (M, 3)`` of labels
    (a sample's and its two nearest neighbours'); ``c2`` is symmetrised over the two neighbours."""
    t = np.asarray(triplets, np.int64)
    c = num_classes
    c1 = np.bincount(t[:, 0], minlength=c) / len(t)
    pairs = np.concatenate([t[:, 0] * c + t[:, 1], t[:, 0] * c + t[:, 2]])
    c2 = np.bincount(pairs, minlength=c * c).reshape(c, c) / len(pairs)
    c3 = np.bincount((t[:, 0] * c + t[:, 1]) * c + t[:, 2], minlength=c ** 3).reshape(c, c, c) / len(t)
    return c1, c2, c3


def hoc_fit(c1: np.ndarray, c2: np.ndarray, c3: np.ndarray, steps: int = HOC_STEPS,
            seed: int = 0) -> tuple[float, np.ndarray, np.ndarray]:
    """``(rate, T, prior)`` fitted to the consensus counts (:func:`consensus_counts`) by least squares."""
    import torch

    c = len(c1)
    gen = torch.Generator().manual_seed(seed)
    targets = [torch.as_tensor(x, dtype=torch.float64) for x in (c1, c2, c3)]
    # a diagonal start (T[c, c] about 0.7 for C = 10): the fit's other optimum relabels the classes
    t_logits = (torch.eye(c, dtype=torch.float64) * np.log(0.7 * (c - 1) / 0.3)
                + 0.01 * torch.randn(c, c, generator=gen, dtype=torch.float64)).requires_grad_()
    p_logits = torch.zeros(c, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([t_logits, p_logits], lr=HOC_LR)
    for _ in range(steps):
        opt.zero_grad()
        t, p = torch.softmax(t_logits, 1), torch.softmax(p_logits, 0)
        m1 = p @ t
        m2 = torch.einsum("k,ka,kb->ab", p, t, t)
        m3 = torch.einsum("k,ka,kb,ke->abe", p, t, t, t)
        loss = sum(((m - x) ** 2).sum() * w for m, x, w in zip((m1, m2, m3), targets, (1.0, c, c * c)))
        loss.backward()
        opt.step()
    t = torch.softmax(t_logits, 1).detach().numpy()
    p = torch.softmax(p_logits, 0).detach().numpy()
    return rate_of(t, p), t, p


def two_nn_triplets(neighbor_idx: np.ndarray, given: np.ndarray) -> np.ndarray:
    """``(N', 3)`` labels of each sample and its two nearest neighbours (``neighbor_idx (N, >=2)``, nearest first,
    self excluded); samples lacking two neighbours are left out."""
    idx = np.asarray(neighbor_idx, np.int64)[:, :2]
    keep = (idx >= 0).all(1)
    given = np.asarray(given, np.int64)
    rows = np.flatnonzero(keep)
    return np.stack([given[rows], given[idx[rows, 0]], given[idx[rows, 1]]], 1)


def hoc_transition(neighbor_idx: np.ndarray, given: np.ndarray, num_classes: int,
                   seed: int = 0) -> tuple[float, np.ndarray, np.ndarray]:
    """``(rate, T, prior)`` by HOC on the 2-NN of each sample (:func:`two_nn_triplets`, :func:`hoc_fit`)."""
    return hoc_fit(*consensus_counts(two_nn_triplets(neighbor_idx, given), num_classes), seed=seed)


def class_means(scores: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``(C, C)``: row ``c`` the mean of ``scores (M, C)`` over the samples labelled ``c`` (uniform if none)."""
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, np.int64)
    sums = np.zeros((num_classes, scores.shape[1]))
    np.add.at(sums, labels, scores)
    counts = np.bincount(labels, minlength=num_classes)[:, None]
    return np.where(counts > 0, sums / np.maximum(counts, 1), 1.0 / scores.shape[1])


def trusted_transition(scores: np.ndarray, given: np.ndarray, trusted_scores: np.ndarray, trusted: np.ndarray,
                       num_classes: int, fit: str = "clip") -> tuple[float, np.ndarray, np.ndarray]:
    """``(rate, T, prior)`` from a model's scores on the training samples and on samples with trusted labels.

    ``scores (N, C)`` and ``trusted_scores (M, C)``: any out-of-label evidence
    of P(given label | x), for example the teacher's softmax or the neighbour
    vote of the training samples' given labels. On the trusted samples
    ``R[t, :]`` = mean score of those truly ``t`` (gold loss correction,
    Hendrycks et al. 2018, takes ``R`` itself as ``T``: right only where the
    features separate the classes; with a weak teacher ``R = S T``, ``S``
    the classes the features mix). On the training samples ``G[g, :]`` =
    sum of the scores of those given ``g``, over ``N``. If a training
    sample's score depends on its clean class only (not its given label),
    ``G = Q^T R`` with ``Q[t, g]`` = P(true t, given g), whatever ``S``:
    ``Q = (G R^-1)^T``, clipped at 0 and renormalised (``fit="clip"``), or
    each column of ``Q`` fitted by non-negative least squares
    (``fit="nnls"``; then renormalised). The mixing ``S`` cancels; what is
    left is the lean of a trained model's score toward its own training
    label, and the sampling noise of ``R`` (clipping keeps its positive
    part: an upward bias near 0 noise; see docs/ALGORITHM.md).
    """
    scores = np.asarray(scores, np.float64)
    given = np.asarray(given, np.int64)
    r = class_means(trusted_scores, trusted, num_classes)
    g = np.zeros((num_classes, scores.shape[1]))
    np.add.at(g, given, scores)
    g /= len(given)
    if fit == "nnls":
        from scipy.optimize import nnls

        q = np.stack([nnls(r.T, g[k])[0] for k in range(num_classes)], 1)  # (true, given)
    elif fit == "clip":
        q = np.clip((g @ np.linalg.pinv(r)).T, 0.0, None)  # (true, given)
    else:
        raise ValueError(f"fit={fit!r}; valid: clip, nnls")
    q /= q.sum()
    prior = q.sum(1)
    t = np.where(prior[:, None] > 0, q / np.maximum(prior[:, None], 1e-12), np.eye(num_classes))
    return float(1.0 - np.trace(q)), t, prior

"""Label propagation: closed form, the authors' per-class CG, edge cases."""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from engine.method.graph import GraphConfig, build_graph
from engine.method.propagate import PropagationConfig, PropagationResult, propagate, seed_matrix


def clustered(n_per_class: int, num_classes: int, seed: int, spread: float = 0.6):
    """Gaussian clusters in 5-D, labels, and their graph."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((num_classes, 5))
    true_labels = np.repeat(np.arange(num_classes), n_per_class)
    features = centres[true_labels] + spread * rng.standard_normal((true_labels.size, 5))
    graph = build_graph(features, GraphConfig(k=6))
    return graph, true_labels, rng


def column_normalised(seeds: np.ndarray) -> np.ndarray:
    mass = seeds.sum(axis=0)
    return seeds / np.where(mass > 0, mass, 1)


def row_normalised(z: np.ndarray) -> np.ndarray:
    z = np.maximum(z, 0)
    return z / z.sum(axis=1, keepdims=True)


def test_seed_matrix():
    labels = np.array([0, 2, 1, -1])
    seeds = seed_matrix(labels, 3, weights=np.array([0.5, 1.0, 0.2, 9.0]), mask=np.array([1, 1, 0, 0], bool))
    np.testing.assert_array_equal(seeds, [[0.5, 0, 0], [0, 0, 1.0], [0, 0, 0], [0, 0, 0]])
    assert seeds.dtype == np.float32
    np.testing.assert_array_equal(seed_matrix(np.array([1, 0]), 2), np.eye(2)[[1, 0]])
    with pytest.raises(ValueError, match="0..2"):
        seed_matrix(labels, 3)  # -1 inside the (default, full) mask
    with pytest.raises(ValueError, match="non-negative"):
        seed_matrix(np.array([0, 1]), 2, weights=np.array([1.0, -1.0]))


@pytest.mark.parametrize("alpha", [0.1, 0.5, 0.9, 0.99])
def test_matches_closed_form(alpha):
    graph, true_labels, rng = clustered(12, 3, seed=0)
    labels = true_labels.copy()
    flip = rng.random(labels.size) < 0.25
    labels[flip] = rng.integers(0, 3, flip.sum())
    seeds = seed_matrix(labels, 3, weights=rng.uniform(0.2, 1.0, labels.size))
    config = PropagationConfig(alpha=alpha, max_iter=500, tol=1e-7)
    result = propagate(graph.normalized, seeds, config)

    wn = graph.normalized.toarray().astype(np.float64)
    z = np.linalg.solve(np.eye(len(wn)) - config.alpha * wn, column_normalised(seeds))
    np.testing.assert_allclose(result.scores, row_normalised(z), atol=1e-4)
    np.testing.assert_array_equal(result.labels, z.argmax(axis=1))
    assert result.iterations < config.max_iter  # converged
    if alpha == 0.9:  # on these clusters: far enough to fix flipped labels, not so far that one class floods another
        assert (result.labels == true_labels).mean() > (labels == true_labels).mean()


def test_block_solve_equals_authors_per_class_cg():
    graph, true_labels, rng = clustered(20, 4, seed=1, spread=1.0)
    labels = np.where(rng.random(true_labels.size) < 0.4, rng.integers(0, 4, true_labels.size), true_labels)
    seeds = seed_matrix(labels, 4)
    result = propagate(graph.normalized, seeds, PropagationConfig())

    # The authors' loop: one scipy CG per class, maxiter=20, tol=1e-6, from zero.
    wn = graph.normalized.astype(np.float64)
    a = sp.eye(wn.shape[0]) - 0.99 * wn
    y = column_normalised(seeds.astype(np.float64))
    z = np.stack([spla.cg(a, y[:, c], rtol=1e-6, maxiter=20)[0] for c in range(4)], axis=1)
    np.testing.assert_array_equal(result.labels, row_normalised(z).argmax(axis=1))
    np.testing.assert_allclose(result.scores, row_normalised(z), atol=1e-4)
    assert result.iterations == 20


def test_result_invariants_and_confidence():
    graph, true_labels, _ = clustered(10, 3, seed=2)
    result = propagate(graph.normalized, seed_matrix(true_labels, 3), PropagationConfig())
    assert isinstance(result, PropagationResult)
    assert result.scores.shape == (30, 3) and result.scores.dtype == np.float32
    assert result.labels.dtype == np.int64 and result.confidence.dtype == np.float32
    assert np.all(result.scores >= 0)
    np.testing.assert_allclose(result.scores.sum(axis=1), 1, atol=1e-6)
    np.testing.assert_array_equal(result.labels, result.scores.argmax(axis=1))
    assert np.all((result.confidence >= 0) & (result.confidence <= 1))
    p = result.scores.astype(np.float64)
    entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), axis=1)
    np.testing.assert_allclose(result.confidence, 1 - entropy / np.log(3), atol=1e-5)


def test_history_recorded_at_asked_iterations():
    graph, true_labels, _ = clustered(10, 3, seed=3)
    seeds = seed_matrix(true_labels, 3, mask=np.arange(30) % 3 == 0)
    nodes = [0, 1, 29]
    last = propagate(graph.normalized, seeds, PropagationConfig()).iterations
    assert 5 < last <= 20
    asked = [0, 1, 5, last, 21]
    result = propagate(graph.normalized, seeds, PropagationConfig(), record_nodes=nodes, record_iters=asked)
    assert sorted(result.history) == [0, 1, 5, last]  # 21 was never run
    for scores in result.history.values():
        assert scores.shape == (3, 3)
        np.testing.assert_allclose(scores.sum(axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(result.history[0][0], np.eye(3)[true_labels[0]])  # a seed
    np.testing.assert_allclose(result.history[0][1], 1 / 3)  # not a seed: uniform
    np.testing.assert_allclose(result.history[last], result.scores[nodes], atol=1e-7)
    assert not np.allclose(result.history[1], result.history[5])

    every = propagate(graph.normalized, seeds, PropagationConfig(max_iter=4), record_nodes=nodes)
    assert sorted(every.history) == [0, 1, 2, 3, 4]
    assert propagate(graph.normalized, seeds, PropagationConfig(max_iter=4)).history == {}


def test_empty_class_and_unreached_node():
    # Nodes 0-2 a path, node 3 isolated; class 2 has no seed.
    w = sp.csr_matrix(np.array([[0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=np.float32))
    degree = np.maximum(w.sum(axis=1).A1, 1)
    wn = sp.csr_matrix(w.toarray() / np.sqrt(np.outer(degree, degree)))
    seeds = seed_matrix(np.array([0, 1, 1, 0]), 3, mask=np.array([1, 0, 1, 0], bool))
    result = propagate(wn, seeds, PropagationConfig(max_iter=50))
    assert np.all(np.isfinite(result.scores)) and np.all(np.isfinite(result.confidence))
    assert np.all(result.scores[:3, 2] == 0)  # the empty class gets nothing
    np.testing.assert_allclose(result.scores[3], 1 / 3)  # no seed reaches node 3: uniform
    assert result.confidence[3] == 0
    assert result.labels[0] == 0 and result.labels[2] == 1


def test_one_class():
    graph, _, _ = clustered(5, 2, seed=4)
    result = propagate(graph.normalized, np.ones((10, 1), np.float32), PropagationConfig())
    np.testing.assert_array_equal(result.scores, 1)
    np.testing.assert_array_equal(result.confidence, 1)
    np.testing.assert_array_equal(result.labels, 0)


def test_inputs_not_mutated():
    graph, true_labels, _ = clustered(8, 2, seed=5)
    seeds = seed_matrix(true_labels, 2, weights=np.linspace(0.1, 1, 16))
    seeds_before = seeds.copy()
    normalized = graph.normalized.copy()
    propagate(graph.normalized, seeds, PropagationConfig(), record_nodes=[0])
    np.testing.assert_array_equal(seeds, seeds_before)
    assert (graph.normalized != normalized).nnz == 0
    np.testing.assert_array_equal(graph.normalized.indices, normalized.indices)


def test_bad_inputs_raise():
    graph, true_labels, _ = clustered(4, 2, seed=6)
    seeds = seed_matrix(true_labels, 2)
    with pytest.raises(ValueError, match="seeds"):
        propagate(graph.normalized, seeds[:-1], PropagationConfig())
    with pytest.raises(ValueError, match="non-negative"):
        propagate(graph.normalized, -seeds, PropagationConfig())
    with pytest.raises(ValueError, match="record_nodes"):
        propagate(graph.normalized, seeds, PropagationConfig(), record_nodes=[8])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    graph, true_labels, _ = clustered(30, 4, seed=7, spread=1.0)
    seeds = seed_matrix(true_labels, 4)
    on_cpu = propagate(graph.normalized, seeds, PropagationConfig(), device="cpu")
    on_gpu = propagate(graph.normalized, seeds, PropagationConfig(), device="cuda")
    np.testing.assert_allclose(on_gpu.scores, on_cpu.scores, atol=1e-5)
    np.testing.assert_array_equal(on_gpu.labels, on_cpu.labels)


@pytest.mark.parametrize("n, classes, widths", [
    (1_797, 10, [10]),  # digits: one block, as always
    (10_000, 10, [10]),  # cifar10-small
    (50_000, 100, [15] * 6 + [10]),  # 3 MiB blocks of 15 columns
    (1_000_000, 10, [10]),  # past 80k nodes: never under 16 columns (was ten blocks of one)
    (1_000_000, 100, [15] * 6 + [10]),
])
def test_column_blocks_fill_cache_lines_at_scale(n, classes, widths):
    import torch

    from engine.method.propagate import _column_blocks

    blocks = _column_blocks(n, classes, torch.device("cpu"))
    assert [b.stop - b.start for b in blocks] == widths
    assert blocks[0].start == 0 and blocks[-1].stop == classes
    assert all(a.stop == b.start for a, b in zip(blocks, blocks[1:]))


def test_column_blocks_give_the_same_result(monkeypatch):
    graph, true_labels, rng = clustered(15, 4, seed=8, spread=1.0)
    labels = np.where(true_labels == 3, 0, true_labels)  # class 3 has no seed: its block stops at once
    seeds = seed_matrix(labels, 4, weights=rng.uniform(0.5, 1.0, labels.size))
    config = PropagationConfig(max_iter=60, tol=1e-4)
    whole = propagate(graph.normalized, seeds, config, record_nodes=[0, 59])
    monkeypatch.setattr("engine.method.propagate._CPU_BLOCK_BYTES", 4 * 60 * 1)  # one column per block
    monkeypatch.setattr("engine.method.propagate._MIN_BLOCK_COLUMNS", 1)
    blocks = propagate(graph.normalized, seeds, config, record_nodes=[0, 59])
    assert 1 < whole.iterations < 60 and blocks.iterations == whole.iterations
    np.testing.assert_allclose(blocks.scores, whole.scores, atol=1e-6)
    np.testing.assert_array_equal(blocks.labels, whole.labels)
    assert sorted(blocks.history) == list(range(whole.iterations + 1))
    for t, scores in whole.history.items():
        np.testing.assert_allclose(blocks.history[t], scores, atol=1e-6)

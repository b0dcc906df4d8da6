"""kNN graph: hand-checkable fixtures, brute-force reference, edge cases."""

import numpy as np
import pytest
import scipy.sparse as sp

from engine.method.graph import Graph, GraphConfig, affinity, build_graph, knn, normalize_affinity

# Two clusters in 2-D: points 0-2 around angle 0, points 3-5 around angle pi/2.
ANGLES = np.array([0.0, 0.1, 0.25, np.pi / 2, np.pi / 2 - 0.1, np.pi / 2 - 0.3])
SCALES = np.array([1.0, 2.0, 0.5, 3.0, 1.0, 1.0])[:, None]  # cosine ignores the scale
TWO_CLUSTERS = np.stack([np.cos(ANGLES), np.sin(ANGLES)], axis=1) * SCALES


def brute_force_knn(features: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    x = features / np.linalg.norm(features, axis=1, keepdims=True)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    idx = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(sim, idx, axis=1)


def test_two_clusters_exact_neighbours():
    idx, sim = knn(TWO_CLUSTERS, k=2)
    expected = [{1, 2}, {0, 2}, {1, 0}, {4, 5}, {3, 5}, {4, 3}]
    assert [set(row) for row in idx.tolist()] == expected
    # order: most similar first (angles, so scale does not matter)
    assert idx[0].tolist() == [1, 2] and idx[2].tolist() == [1, 0] and idx[5].tolist() == [4, 3]
    np.testing.assert_allclose(sim[0], np.cos([0.1, 0.25]), rtol=1e-6)
    assert idx.dtype == np.int64 and sim.dtype == np.float32 and idx.shape == (6, 2)


def test_knn_matches_brute_force():
    rng = np.random.default_rng(0)
    features = rng.standard_normal((300, 16))
    k = 7
    idx, sim = knn(features, k)
    ref_idx, ref_sim = brute_force_knn(features, k)
    np.testing.assert_allclose(sim, ref_sim, atol=1e-5)
    gaps = np.diff(-np.sort(-ref_sim, axis=1), axis=1)
    no_ties = np.all(np.abs(gaps) > 1e-5, axis=1)
    assert no_ties.mean() > 0.9
    np.testing.assert_array_equal(idx[no_ties], ref_idx[no_ties])
    assert np.all(np.diff(sim, axis=1) <= 0)


def test_knn_does_not_mutate_input():
    rng = np.random.default_rng(1)
    for dtype in (np.float32, np.float64):
        features = rng.standard_normal((50, 4)).astype(dtype) * 5
        before = features.copy()
        knn(features, 3)
        np.testing.assert_array_equal(features, before)


def test_duplicate_rows_never_list_self():
    rng = np.random.default_rng(2)
    base = rng.standard_normal((5, 3))
    features = np.concatenate([base, base, base])  # every point has two exact copies
    idx, sim = knn(features, k=2)
    n = features.shape[0]
    assert not np.any(idx == np.arange(n)[:, None])
    for i in range(n):
        assert set(idx[i]) == {j for j in range(n) if j % 5 == i % 5 and j != i}
    np.testing.assert_allclose(sim, 1.0, atol=1e-6)


def test_more_copies_than_k_drops_last_column():
    features = np.ones((5, 2))  # all identical: self may not be among the k+1 returned
    idx, sim = knn(features, k=1)
    assert idx.shape == (5, 1)
    assert not np.any(idx[:, 0] == np.arange(5))


@pytest.mark.parametrize("k", [0, -1, 6, 10])
def test_bad_k_raises(k):
    with pytest.raises(ValueError, match=rf"k={k}.*N=6.*1\.\.5"):
        knn(TWO_CLUSTERS, k)


def test_smallest_graph():
    idx, sim = knn(np.array([[1.0, 0.0], [0.0, 1.0]]), k=1)
    assert idx.tolist() == [[1], [0]]
    np.testing.assert_allclose(sim, 0.0, atol=1e-7)


def test_affinity_hand_checked():
    neighbor_idx = np.array([[1, 2], [0, 2], [0, 1]])
    neighbor_sim = np.array([[0.5, -0.2], [0.5, 0.9], [-0.3, 0.9]])
    w = affinity(neighbor_idx, neighbor_sim, power=3)
    assert isinstance(w, sp.csr_matrix) and w.dtype == np.float32
    expected = np.array(
        [
            [0.0, 2 * 0.125, 0.0],  # 0->1 and 1->0 both 0.5**3; negatives give 0 both ways
            [2 * 0.125, 0.0, 2 * 0.729],
            [0.0, 2 * 0.729, 0.0],
        ]
    )
    np.testing.assert_allclose(w.toarray(), expected, rtol=1e-6)
    assert w.nnz == 4  # no explicit zeros kept


def test_affinity_symmetric_zero_diagonal_power():
    rng = np.random.default_rng(3)
    idx, sim = knn(rng.standard_normal((40, 5)), k=4)
    w = affinity(idx, sim, power=2.0).toarray()
    np.testing.assert_array_equal(w, w.T)
    assert np.all(np.diag(w) == 0) and np.all(w >= 0)
    one_way = np.zeros_like(w)
    np.put_along_axis(one_way, idx, np.maximum(sim, 0) ** 2, axis=1)
    np.testing.assert_allclose(w, one_way + one_way.T, rtol=1e-6)


def test_affinity_drops_self_edges_and_checks_input():
    w = affinity(np.array([[0], [0]]), np.array([[1.0], [0.5]]), power=1)
    np.testing.assert_allclose(w.toarray(), [[0, 0.5], [0.5, 0]])
    with pytest.raises(ValueError, match="shape"):
        affinity(np.zeros((3, 2), dtype=int), np.zeros((3, 1)), power=1)
    with pytest.raises(ValueError, match="power"):
        affinity(np.zeros((3, 1), dtype=int), np.zeros((3, 1)), power=0)


def test_normalize_affinity_hand_checked_with_isolated_node():
    w = sp.csr_matrix(np.array([[0, 1, 3, 0], [1, 0, 0, 0], [3, 0, 0, 0], [0, 0, 0, 0]], dtype=np.float32))
    before = w.toarray().copy()
    wn = normalize_affinity(w).toarray()
    degree = np.array([4.0, 1.0, 3.0, 1.0])  # node 3 isolated: degree 0 -> 1
    np.testing.assert_allclose(wn, before / np.sqrt(np.outer(degree, degree)), rtol=1e-6)
    assert np.all(np.isfinite(wn)) and np.all(wn[3] == 0)
    np.testing.assert_array_equal(w.toarray(), before)


def _coo_affinity(idx, sim, power):
    """The affinity by its definition: every (row, neighbour) entry but self edges into a COO matrix (repeats
    summed), plus its transpose, in float32."""
    n, k = idx.shape
    rows, cols = np.repeat(np.arange(n), k), idx.ravel()
    weights = np.maximum(sim.ravel().astype(np.float32), 0) ** np.float32(power)
    off = rows != cols
    w = sp.coo_matrix((weights[off], (rows[off], cols[off])), shape=(n, n), dtype=np.float32).tocsr()
    w = (w + w.T).tocsr()
    w.eliminate_zeros()
    w.sort_indices()
    return w


@pytest.mark.parametrize("case", ["plain", "self edges", "repeated neighbour", "zero weights"])
def test_affinity_and_normalisation_equal_their_definitions_bit_for_bit(case):
    """The direct CSR construction and the entry-wise scaling give the very arrays of the COO construction
    and of ``D^-1/2 @ W @ D^-1/2`` (float32 products in that order): runs' graphs do not move."""
    rng = np.random.default_rng(["plain", "self edges", "repeated neighbour", "zero weights"].index(case))
    n, k = 300, 6
    idx = np.stack([rng.choice(n, k, replace=False) for _ in range(n)])
    sim = rng.uniform(-0.3, 1.0, (n, k)).astype(np.float32)
    if case == "self edges":
        idx[::3, 0] = np.arange(0, n, 3)
    if case == "repeated neighbour":
        idx[::5, 1] = idx[::5, 0]
    if case == "zero weights":
        sim[rng.random((n, k)) < 0.4] = 0.0
    w, expected = affinity(idx, sim, power=3.0), _coo_affinity(idx, sim, 3.0)
    for name in ("indptr", "indices", "data"):
        np.testing.assert_array_equal(getattr(w, name), getattr(expected, name), err_msg=name)
    assert w.has_canonical_format and w.dtype == np.float32
    degree = np.asarray(expected.sum(axis=1), dtype=np.float64).ravel()
    degree[degree == 0] = 1.0
    scale = sp.diags((1.0 / np.sqrt(degree)).astype(np.float32))
    by_products = (scale @ expected @ scale).tocsr()
    by_products.sort_indices()
    wn = normalize_affinity(w)
    for name in ("indptr", "indices", "data"):
        np.testing.assert_array_equal(getattr(wn, name), getattr(by_products, name), err_msg=name)


def test_normalize_affinity_sums_repeated_entries_without_touching_its_input():
    w = sp.csr_matrix((np.array([1.0, 2.0, 3.0], np.float32), np.array([1, 1, 0]), np.array([0, 2, 3])),
                      shape=(2, 2))  # row 0 lists column 1 twice: 1 + 2
    assert not w.has_canonical_format
    normalized = normalize_affinity(w)
    assert normalized.has_canonical_format and normalized.nnz == 2  # one entry per edge, as the products gave
    wn = normalized.toarray()
    np.testing.assert_allclose(wn, [[0, 3 / np.sqrt(3 * 3)], [3 / np.sqrt(3 * 3), 0]], rtol=1e-6)
    assert w.data.tolist() == [1.0, 2.0, 3.0] and w.indices.tolist() == [1, 1, 0]


def test_normalized_spectrum_bounded():
    rng = np.random.default_rng(4)
    graph = build_graph(rng.standard_normal((60, 3)), GraphConfig(k=5))
    eigenvalues = np.linalg.eigvalsh(graph.normalized.toarray())
    assert eigenvalues.max() <= 1 + 1e-5 and eigenvalues.min() >= -1 - 1e-5
    np.testing.assert_allclose(eigenvalues.max(), 1.0, atol=1e-5)


def test_build_graph_two_clusters():
    graph = build_graph(TWO_CLUSTERS, GraphConfig(k=2, power=3.0), use_gpu=False)
    assert isinstance(graph, Graph)
    w = graph.affinity.toarray()
    assert np.all(w[:3, 3:] == 0) and np.all(w[3:, :3] == 0)  # no edge between the clusters
    np.testing.assert_allclose(w[0, 1], 2 * np.cos(0.1) ** 3, rtol=1e-5)
    np.testing.assert_allclose(w[0, 2], np.cos(0.25) ** 3 + np.cos(0.25) ** 3, rtol=1e-5)
    degree = w.sum(axis=1)
    np.testing.assert_allclose(graph.normalized.toarray(), w / np.sqrt(np.outer(degree, degree)), rtol=1e-5)


def test_gpu_request_without_gpu_falls_back_to_cpu(caplog, monkeypatch):
    monkeypatch.setattr("engine.method.search.gpu_available", lambda: False)
    with caplog.at_level("WARNING", logger="engine.method.search"):
        idx, _ = knn(TWO_CLUSTERS, k=2, use_gpu=True)
    assert "using CPU" in caplog.text
    np.testing.assert_array_equal(idx, knn(TWO_CLUSTERS, k=2, use_gpu=False)[0])


def test_neighbour_vote_agreement_prefers_the_graph_whose_neighbours_share_labels():
    from engine.method.graph import neighbour_vote_agreement

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 40)
    centres = np.eye(3, 8) * 6
    clustered = centres[labels] + rng.normal(0, 1, (120, 8))  # neighbours share labels
    shuffled = clustered[rng.permutation(120)]  # the same points, labels scattered over them
    trusted = np.ones(120, bool)
    good = neighbour_vote_agreement(build_graph(clustered.astype(np.float32), GraphConfig(k=5)), labels, trusted, 3)
    bad = neighbour_vote_agreement(build_graph(shuffled.astype(np.float32), GraphConfig(k=5)), labels, trusted, 3)
    assert good == 1.0 and bad < 0.6
    # only trusted neighbours vote, only trusted samples count; none trusted: 0
    graph = build_graph(clustered.astype(np.float32), GraphConfig(k=5))
    wrong = labels.copy()
    wrong[:20] = 1  # twenty class-0 samples mislabelled and left out of the trusted set
    assert neighbour_vote_agreement(graph, wrong, np.arange(120) >= 20, 3) == 1.0
    assert neighbour_vote_agreement(graph, labels, np.zeros(120, bool), 3) == 0.0

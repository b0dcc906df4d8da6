"""kNN by size (engine.method.search): approximate indexes against exact search on clustered data, the recall they
report, ``--knn`` on the command line and in a run's metrics."""

from dataclasses import replace

import numpy as np
import pytest

from engine.method import search
from engine.method.config import GraphConfig, RunConfig, ScheduleConfig
from engine.method.graph import build_graph, knn, search_knn


def clustered(n=3000, dim=32, centres=30, seed=0):
    """Unit-variance blobs around ``centres`` well-apart means, (n, dim) float32."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((centres, dim)) * 4
    return (means[rng.integers(0, centres, n)] + rng.standard_normal((n, dim))).astype(np.float32)


def true_recall(features, found_idx, k):
    """Recall@k of ``found_idx`` against brute force (numpy) over every row."""
    x = features / np.linalg.norm(features, axis=1, keepdims=True)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    exact = np.argsort(-sim, axis=1)[:, :k]
    return np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(exact, found_idx)])


@pytest.mark.parametrize("method", ["ivf", "hnsw"])
def test_an_approximate_index_reaches_its_recall_target_and_reports_it_truly(method):
    features, k = clustered(), 10
    idx, sim, report = search_knn(features, k, method)
    assert idx.shape == (3000, k) and not (idx == np.arange(3000)[:, None]).any() and (idx >= 0).all()
    assert np.all(np.diff(sim, axis=1) <= 1e-6)  # most similar first
    full = true_recall(features, idx, k)
    # tuned until 1,000 sampled rows reach 0.96: over all rows it stays near that (the sample's error is ~0.01)
    assert full >= 0.93, full
    assert report.method == method and report.queries == 1000
    assert abs(report.recall - full) < 0.02, (report.recall, full)  # 1,000 of 3,000 rows: the sample is honest
    assert report.factory.startswith("IVF75" if method == "ivf" else "HNSW32")  # 4 sqrt(N) capped at N / 40


def test_a_crippled_index_shows_in_its_recall(monkeypatch):
    """One probe of 75 lists finds far fewer true neighbours; the reported recall must say so."""
    features, k = clustered(), 10
    good = search_knn(features, k, "ivf")[2].recall
    monkeypatch.setattr(search, "IVF_NPROBES", (1,))
    idx, _, report = search_knn(features, k, "ivf")
    assert report.recall < good - 0.2, (report.recall, good)
    assert abs(report.recall - true_recall(features, idx, k)) < 0.03
    assert report.factory == "IVF75_HNSW32,SQfp16,RFlat,nprobe=1"


def test_exact_search_is_unchanged_and_reports_recall_one_without_measuring():
    features = clustered(n=500)
    idx, sim, report = search_knn(features, 5, "exact")
    old_idx, old_sim = knn(features, 5)  # the default of knn: exact, one faiss call
    np.testing.assert_array_equal(idx, old_idx)
    np.testing.assert_array_equal(sim, old_sim)
    assert (report.method, report.recall, report.queries) == ("exact", 1.0, 0)
    assert true_recall(features, idx, 5) == 1.0


def test_batched_search_finds_the_one_call_neighbours():
    """Batches (and a short tail joined to the one before) find the same neighbours; a similarity may differ in
    its last bit (other BLAS shapes), which is why exact search stays one call."""
    import faiss

    x = clustered(n=9000)
    faiss.normalize_L2(x)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    whole_sim, whole_idx = index.search(x, 6)
    for batch in (4096, 8192, 8990):  # 8990: a tail of 10 rows joins the batch before it
        sim, idx = search.batched_search(index, x, 6, batch=batch)
        np.testing.assert_array_equal(idx, whole_idx)
        np.testing.assert_allclose(sim, whole_sim, atol=1e-6)


def test_auto_is_exact_up_to_the_measured_size_and_ivf_above():
    assert search.resolve_method("auto", search.AUTO_EXACT_MAX) == "exact"
    assert search.resolve_method("auto", search.AUTO_EXACT_MAX + 1) == "ivf"
    assert search.resolve_method("hnsw", 10) == "hnsw"
    assert build_graph(clustered(n=300), GraphConfig(k=5)).search.method == "exact"


def test_rows_an_index_leaves_short_are_searched_exactly():
    import faiss

    x = clustered(n=400)
    faiss.normalize_L2(x)
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    sim, idx = flat.search(x, 4)
    broken_sim, broken_idx = sim.copy(), idx.copy()
    broken_idx[[3, 70], 2:] = -1
    assert search.fill_missing(x, broken_sim, broken_idx) == 2
    np.testing.assert_array_equal(broken_idx, idx)


def test_bad_knn_value_is_one_line_and_exit_2(tmp_path, capsys):
    from engine.cli import main

    assert main(["run", "--out", str(tmp_path / "r"), "--knn", "annoy"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "annoy" in err[-1] and "exact, ivf, hnsw, auto" in err[-1], err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_a_run_reports_its_graphs_search_in_every_metrics_line_that_builds_one(tmp_path):
    from engine.rundir.store import RunStore
    from engine.steps.run import Run

    tiny = ScheduleConfig(teacher_epochs=2, teacher_patience=2, warmup_epochs=1, refine_epochs=1, mutual_epochs=2)
    for method in ("exact", "ivf"):
        config = RunConfig(dataset="blobs?n=2000&classes=4", noise="symmetric:0.3", schedule=tiny)
        config = replace(config, graph=GraphConfig(knn=method))
        run = Run.create(tmp_path / method, config)
        run.run_until(None)
        lines = RunStore(tmp_path / method).metrics()
        graphed = [m for m in lines if m["phase"] != "teacher"]
        assert [m["phase"] for m in graphed] == ["propagate", "warmup", "refine", "mutual", "mutual"]
        assert all("knn_index" not in m for m in lines if m["phase"] == "teacher")
        if method == "exact":
            assert all((m["knn_index"], m["knn_recall"], m["knn_recall_queries"]) == ("exact", 1.0, 0)
                       for m in graphed)
        else:
            assert all(m["knn_index"] == "ivf" and m["knn_recall_queries"] == 1000 for m in graphed)
            assert all(0.9 <= m["knn_recall"] <= 1.0 for m in graphed), [m["knn_recall"] for m in graphed]


@pytest.mark.parametrize("method", ["ivf", "hnsw"])
def test_ties_are_not_misses_duplicates_any_of_which_is_a_nearest_neighbour(method):
    """50 copies of one row and 50 of another: any 5 copies are exact nearest neighbours, so recall is 1."""
    features = np.repeat(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], np.float32), 50, axis=0)
    idx, _, report = search_knn(features, 5, method)
    assert report.recall == 1.0
    assert (idx // 50 == np.arange(100)[:, None] // 50).all()  # every neighbour a copy of the row itself


def test_ivf_queries_go_list_by_list_and_come_back_in_row_order():
    """search_rows takes an inverted file's rows list after list (a permutation that keeps each list together)
    and returns each row's own results, exactly those of a search in row order."""
    import faiss

    x = clustered(n=3000)
    faiss.normalize_L2(x)
    index = search.build_index(x, "ivf")
    search.set_reach(index, "ivf", 4)
    order = search.list_order(index)
    assert sorted(order.tolist()) == list(range(3000))
    _, assigned = faiss.extract_index_ivf(index).quantizer.search(x[order], 1)
    assert (np.diff(assigned[:, 0]) != 0).sum() < 75  # each list one run: at most nlist - 1 changes
    assert not np.array_equal(order, np.arange(3000))  # not row order, or the test shows nothing
    sim, idx = search.search_rows(index, x, 6, batch=512)
    row_sim, row_idx = search.batched_search(index, x, 6, batch=512)
    np.testing.assert_array_equal(idx, row_idx)
    np.testing.assert_allclose(sim, row_sim, atol=1e-6)
    assert search.list_order(search.build_index(x, "hnsw")) is None
    assert search.list_order(search.build_index(x, "exact")) is None


def test_list_ordered_queries_are_gathered_a_bounded_batch_at_a_time(monkeypatch):
    """search_rows never gathers a reordered copy of every row: its calls take at most GATHER_BYTES of query
    rows each, and the results, written straight to their rows, equal one whole search's bit for bit."""
    import faiss

    x = clustered(n=3000)
    faiss.normalize_L2(x)
    index = search.build_index(x, "ivf")
    search.set_reach(index, "ivf", 4)
    whole_sim, whole_idx = search.search_rows(index, x, 6)
    order = search.list_order(index)
    calls = []

    class Spy:  # the index, counting the queries of each call
        def search(self, queries, width):
            calls.append(len(queries))
            return index.search(queries, width)

    monkeypatch.setattr(search, "list_order", lambda _: order)
    monkeypatch.setattr(search, "GATHER_BYTES", 700 * x.shape[1] * x.itemsize)
    sim, idx = search.search_rows(Spy(), x, 6)
    assert calls == [700, 700, 700, 700, 200]
    np.testing.assert_array_equal(idx, whole_idx)
    np.testing.assert_array_equal(sim, whole_sim)


def test_ivf_similarities_are_exact_though_its_lists_are_float16():
    """The ivf rows are stored in float16; the kept results are re-scored against the float32 rows, so a
    similarity is the exact dot product (float16 alone is off by ~1e-4) and rows are sorted by it."""
    import faiss

    x = clustered(n=3000)
    faiss.normalize_L2(x)
    index = search.build_index(x, "ivf")
    search.set_reach(index, "ivf", 8)
    sim, idx = search.search_rows(index, x, 6)
    exact = np.einsum("nd,nkd->nk", x, x[idx])
    np.testing.assert_allclose(sim, exact, atol=2e-6)
    base = faiss.downcast_index(index.base_index)  # the float16 inverted file without the re-scoring
    coded_sim, coded_idx = base.search(x[:200], 6)
    coded_error = np.abs(coded_sim - np.einsum("nd,nkd->nk", x[:200], x[coded_idx])).max()
    assert coded_error > 1e-5, coded_error  # the check above would catch a missing re-scoring


def test_tuning_takes_the_first_reach_whose_recall_clears_the_target_by_the_margin(monkeypatch):
    """The tuned nprobe reaches target + margin on the tuning rows and the rung below it does not; a margin just
    above what the margin-free choice reached moves the choice up."""
    import faiss

    monkeypatch.setattr(search, "IVF_NPROBES", (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 24))  # fine rungs: 75 lists
    x = clustered()
    faiss.normalize_L2(x)
    index = search.build_index(x, "ivf")
    monkeypatch.setattr(search, "TUNE_MARGIN", 0.0)
    plain_reach, plain_recall = search.tune_reach(index, x, "ivf", 10)
    assert plain_recall >= search.RECALL_TARGET and plain_recall < 0.99
    margin = plain_recall - search.RECALL_TARGET + 0.002
    monkeypatch.setattr(search, "TUNE_MARGIN", margin)
    reach, recall = search.tune_reach(index, x, "ivf", 10)
    assert reach > plain_reach and recall >= search.RECALL_TARGET + margin, (plain_reach, reach, recall)
    below = search.IVF_NPROBES[search.IVF_NPROBES.index(reach) - 1]
    rows = search._sample(len(x), search.TUNE_QUERIES, 1)  # the tuning rows (seed + 1)
    search.set_reach(index, "ivf", below)
    sim, idx = index.search(x[rows], 11)
    below_recall = search._recall(x, rows, search.drop_self(idx, sim, rows)[0],
                                  search._exact_kth_similarity(x, rows, 10))
    assert below_recall < search.RECALL_TARGET + margin, (below, below_recall, reach, recall)


def test_recall_searches_with_wide_blas_blocks_and_puts_faiss_default_back():
    """The recall's exact search takes 4 Mi / queries database rows per BLAS block (less CPU at 1M on busy cores) and
    leaves faiss's process-wide setting as it found it, also when the search fails; its k-th similarities
    equal those of faiss's default blocks to float32 rounding."""
    import faiss

    from engine.method import search

    default = faiss.cvar.distance_compute_blas_database_bs
    with search.wide_database_blocks(1_000):
        assert faiss.cvar.distance_compute_blas_database_bs == 4 * 2**20 // 1_000  # 16 MiB of similarities
    with search.wide_database_blocks(4_096, search.KMEANS_BLOCK_FLOATS):
        assert faiss.cvar.distance_compute_blas_database_bs == 4_096
    with search.wide_database_blocks(10):
        assert faiss.cvar.distance_compute_blas_database_bs == 65_536  # capped
    with search.wide_database_blocks(100_000):
        assert faiss.cvar.distance_compute_blas_database_bs == default  # never narrower than faiss's own
    with pytest.raises(RuntimeError), search.wide_database_blocks(1_000):
        raise RuntimeError("search failed")
    assert faiss.cvar.distance_compute_blas_database_bs == default
    x = np.random.default_rng(5).standard_normal((30_000, 16)).astype(np.float32)
    faiss.normalize_L2(x)
    rows = np.arange(0, 30_000, 100)
    sim, idx = search.exact_search(x[rows], x, 11)  # faiss's default blocks
    wide = search._exact_kth_similarity(x, rows, 10)
    np.testing.assert_allclose(wide, search.drop_self(idx, sim, rows)[1][:, -1], atol=1e-6)
    assert faiss.cvar.distance_compute_blas_database_bs == default

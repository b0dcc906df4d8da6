"""Nearest-neighbour search by size: exact, or an approximate faiss index, with its recall measured.

Algorithm
---------
Rows are L2-normalised, so inner product = cosine similarity. Each row's
``k + 1`` most similar rows are searched (itself among them) with one of:

- ``exact``: ``IndexFlatIP``, every pair compared. ``O(N^2 D)``.
- ``ivf``: ``index_factory("IVF{nlist}_HNSW32,SQfp16,RFlat")``: k-means cuts
  the rows into ``nlist`` lists (an HNSW graph over the centroids finds a
  row's lists); a query scans its ``nprobe`` nearest lists only, whose rows
  are stored in float16 (half the memory traffic of float32, the same
  neighbours here), and the ``k + 1`` it keeps are re-scored exactly against
  the float32 rows (``RFlat``), so similarities and their order are exact.
  ``nlist = 4 sqrt(N)`` (at most ``N / 40``); k-means on ``20 nlist`` sampled
  rows, 5 iterations. Cost about ``N (nlist + nprobe N / nlist) D``. The
  queries are the indexed rows themselves, so they are searched list by list
  (in the order of the inverted lists): consecutive queries probe nearly the
  same lists, which then stay in the CPU cache (2x faster than in row order).
  On a GPU: ``IVF{nlist},Flat``, searched in row order.
- ``hnsw``: ``index_factory("HNSW32")``, a navigable small-world graph searched
  greedily with a beam of ``efSearch``. No training; building costs about
  ``N log N``; CPU only (faiss has no GPU HNSW).
- ``auto``: exact up to :data:`AUTO_EXACT_MAX` rows, ivf above (measured in
  bench/scale.py, see README "At scale").

How far an approximate search looks (ivf's ``nprobe``, hnsw's ``efSearch``)
is tuned on the data: the smallest value of a short ladder whose recall@k on
:data:`TUNE_QUERIES` sampled rows reaches :data:`RECALL_TARGET` plus
:data:`TUNE_MARGIN` (the largest when none does), as faiss's own auto-tuning picks an operating point.

An approximate index is searched in batches of :data:`BATCH` queries, so
its per-call buffers stay bounded (faiss's GPU indexes size theirs by the
queries of a call). Exact search is one faiss call, as it always was: faiss's
flat search already works through blocks of 4096 queries with a k-heap per
query, so its memory beyond the ``(N, k + 1)`` result is bounded, and one call
keeps its results bit-identical at every size (batching changes the BLAS
shapes, hence the last bit of a similarity).

Recall. An approximate search is checked against exact search on a seeded
sample of :data:`RECALL_QUERIES` rows (other rows than the tuning's): recall@k is the mean share of a row's
``k`` exact neighbours (self excluded) that the index also returned. An exact
search reports 1.0 without computing anything.

References
----------
H. Jegou, M. Douze, C. Schmid. "Product quantization for nearest neighbor
search" (the inverted file). IEEE TPAMI 2011.
Y. Malkov, D. Yashunin. "Efficient and robust approximate nearest neighbor
search using Hierarchical Navigable Small World graphs". IEEE TPAMI 2018.
J. Johnson, M. Douze, H. Jegou. "Billion-scale similarity search with GPUs"
(faiss). IEEE TBD 2019.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass

import faiss
import numpy as np

from .config import AUTO_EXACT_MAX, KNN_METHODS

logger = logging.getLogger(__name__)

#: Queries per faiss call of an approximate index.
BATCH = 65_536
#: Bytes of list-ordered query rows gathered for one call of :func:`search_rows` (at 128-D: 65,536 rows).
GATHER_BYTES = 32 * 2**20
#: Rows whose neighbours are searched exactly to measure an approximate index's recall.
RECALL_QUERIES = 1_000
#: The recall@k an approximate search is tuned to reach, and the rows it is tuned on.
RECALL_TARGET = 0.95
#: 1,000, not 500: faiss 1.15 searches a flat index with fewer queries than about that without BLAS (500 exact
#: queries at 1M: 17 CPU-s, 1,000: 3.6).
TUNE_QUERIES = 1_000
#: What the tuning rows must reach beyond the target: they estimate a recall to about +-0.01, and at 100k an
#: nprobe that reached 0.950 on 500 of them gave 0.948 on the 1,000 rows of the check (bench/scale.py).
TUNE_MARGIN = 0.01
#: ivf: lists per sqrt(N) (faiss's guideline: 4 to 16), at most one list per this many rows, k-means training
#: rows per list and iterations (at 1M: 5 CPU-s instead of 20 for 40 rows x 10 iterations, the same recall at
#: a given nprobe; bench/scale.py), the probes tried in turn.
IVF_LISTS_PER_SQRT_N = 4
IVF_ROWS_PER_LIST = 40
IVF_TRAIN_PER_LIST = 20
IVF_KMEANS_ITERATIONS = 5
IVF_NPROBES = (8, 12, 16, 20, 24, 32, 48, 64, 128, 256)
#: hnsw: links per node, beam width at build, the search beams tried in turn.
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCHES = (32, 48, 64, 96, 128, 256, 512)


@dataclass(frozen=True)
class SearchReport:
    """How a kNN search was made and how good it was.

    Attributes
    ----------
    method : str
        ``exact``, ``ivf`` or ``hnsw`` (``auto`` resolved).
    recall : float
        Recall@k against exact search, in [0, 1]; 1.0 for exact search.
    queries : int
        Rows the recall was measured on (0 for exact search: nothing to measure).
    factory : str
        The faiss index factory string, with its search parameter.
    """

    method: str
    recall: float
    queries: int
    factory: str


def resolve_method(method: str, n: int) -> str:
    """``auto`` -> exact up to :data:`AUTO_EXACT_MAX` rows, ivf above; others as given."""
    if method not in KNN_METHODS:
        raise ValueError(f"knn method {method!r} is not one of {', '.join(KNN_METHODS)}")
    if method == "auto":
        return "exact" if n <= AUTO_EXACT_MAX else "ivf"
    return method


def ivf_lists(n: int) -> int:
    """Lists of the inverted file: ``4 sqrt(N)``, at most ``N / 40`` so each has training rows, at least 1."""
    return max(1, min(int(round(IVF_LISTS_PER_SQRT_N * math.sqrt(n))), n // IVF_ROWS_PER_LIST))


def factory_string(method: str, n: int, gpu: bool = False) -> str:
    """The faiss ``index_factory`` string of a (resolved) method for ``n`` rows (on a GPU, ivf's lists are
    found by a flat search of the centroids, which the GPU does fast, and its rows are float32)."""
    if method == "exact":
        return "Flat"
    if method == "ivf":
        return f"IVF{ivf_lists(n)},Flat" if gpu else f"IVF{ivf_lists(n)}_HNSW32,SQfp16,RFlat"
    if method == "hnsw":
        return f"HNSW{HNSW_M}"
    raise ValueError(f"no index for knn method {method!r}")


def gpu_available() -> bool:
    """faiss built with GPU support and a CUDA device present."""
    if not hasattr(faiss, "StandardGpuResources"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def build_index(x: np.ndarray, method: str, use_gpu: bool | None = None, seed: int = 0) -> faiss.Index:
    """An inner-product index of the rows of ``x`` (already normalised), ready to search.

    Parameters
    ----------
    x : np.ndarray, shape (N, D), float32, C-contiguous
    method : str
        ``exact``, ``ivf`` or ``hnsw``.
    use_gpu : bool or None
        ``None``: on the GPU when :func:`gpu_available`; hnsw always on the CPU.
    seed : int
        Which rows train the ivf lists (k-means on a sample of ``20 nlist`` rows).
    """
    n, dim = x.shape
    gpu = gpu_available()
    if use_gpu and not gpu:
        logger.warning("GPU kNN requested but faiss has no GPU support or CUDA is absent; using CPU")
    on_gpu = gpu and use_gpu is not False and method != "hnsw"
    if method == "exact":
        index = faiss.IndexFlatIP(dim)
    else:
        index = faiss.index_factory(dim, factory_string(method, n, on_gpu), faiss.METRIC_INNER_PRODUCT)
    if method == "hnsw":
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    if method == "ivf":
        ivf = faiss.extract_index_ivf(index)
        ivf.cp.niter = IVF_KMEANS_ITERATIONS
        ivf.cp.min_points_per_centroid = IVF_TRAIN_PER_LIST  # faiss warns below this many rows per list
    if on_gpu:  # pragma: no cover - needs faiss-gpu and CUDA
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    if not index.is_trained:
        rows = np.random.default_rng(seed).permutation(n)[: IVF_TRAIN_PER_LIST * ivf_lists(n)]
        # k-means assigns the rows by faiss's exact search, 4,096 rows a block: one block of centroids
        # instead of four (at 1M, 4,000 lists: 12.6 -> 8.4 CPU-s, the same centroids; bench/scale.py)
        with wide_database_blocks(faiss.cvar.distance_compute_blas_query_bs, KMEANS_BLOCK_FLOATS):
            index.train(x[np.sort(rows)])
    index.add(x)
    return index


def set_reach(index: faiss.Index, method: str, value: int) -> None:
    """How far a search looks: ivf's ``nprobe`` or hnsw's ``efSearch`` (CPU or GPU index)."""
    name = "nprobe" if method == "ivf" else "efSearch"
    space = faiss.GpuParameterSpace() if type(index).__name__.startswith("Gpu") else faiss.ParameterSpace()
    space.set_index_parameter(index, name, value)


def tune_reach(index: faiss.Index, x: np.ndarray, method: str, k: int, seed: int = 0) -> tuple[int, float]:
    """The smallest reach of the method's ladder whose recall@k on :data:`TUNE_QUERIES` sampled rows is at
    least :data:`RECALL_TARGET` + :data:`TUNE_MARGIN` (the ladder's last when none is), set on ``index``.

    Returns
    -------
    reach : int
        ``nprobe`` or ``efSearch``.
    recall : float
        Its recall on the tuning rows.
    """
    rows = _sample(len(x), TUNE_QUERIES, seed + 1)
    kth = _exact_kth_similarity(x, rows, k)
    for value in IVF_NPROBES if method == "ivf" else HNSW_EF_SEARCHES:
        set_reach(index, method, value)
        sim, idx = index.search(x[rows], k + 1)
        recall = _recall(x, rows, drop_self(idx, sim, rows)[0], kth)
        if recall >= RECALL_TARGET + TUNE_MARGIN:
            break
    return value, recall


def batched_search(index: faiss.Index, queries: np.ndarray, width: int,
                   batch: int = BATCH) -> tuple[np.ndarray, np.ndarray]:
    """``index.search`` of ``width`` results per query, :data:`BATCH` queries per call.

    A last batch under 20 rows (faiss's BLAS threshold) joins the one before it, so every query
    goes through the same faiss path as in one call.

    Returns
    -------
    sim : np.ndarray, shape (Q, width), float32
    idx : np.ndarray, shape (Q, width), int64 (-1 where the index found fewer rows)
    """
    q = len(queries)
    sim = np.empty((q, width), np.float32)
    idx = np.empty((q, width), np.int64)
    starts = list(range(0, q, batch))
    if len(starts) > 1 and q - starts[-1] < 20:
        starts.pop()
    for i, start in enumerate(starts):
        stop = starts[i + 1] if i + 1 < len(starts) else q
        sim[start:stop], idx[start:stop] = index.search(queries[start:stop], width)
    return sim, idx


def search_rows(index: faiss.Index, x: np.ndarray, width: int, batch: int = BATCH
                ) -> tuple[np.ndarray, np.ndarray]:
    """``width`` results for every row of ``x``, the rows ``index`` holds: :func:`batched_search`, the
    queries of a CPU inverted file taken list by list (:func:`list_order`), results in row order.

    The list-ordered queries are gathered a batch at a time (at most :data:`GATHER_BYTES` of them) and their
    results written straight to their rows: no reordered copy of ``x`` and no reordered copy of the results
    (at 40k photos' 576-D features, 92 MB and 10 MB less at the peak of stage 0). A query's results do not
    depend on the batch it is searched in.

    Returns
    -------
    sim : np.ndarray, shape (N, width), float32
    idx : np.ndarray, shape (N, width), int64
    """
    order = list_order(index)
    if order is None:
        return batched_search(index, x, width, batch)
    n = len(order)
    sim = np.empty((n, width), np.float32)
    idx = np.empty((n, width), np.int64)
    rows_per_call = max(1, min(batch, GATHER_BYTES // max(1, x.shape[1] * x.itemsize)))
    starts = list(range(0, n, rows_per_call))
    if len(starts) > 1 and n - starts[-1] < 20:  # as batched_search: no last call of under 20 queries
        starts.pop()
    for i, start in enumerate(starts):
        rows = order[start:starts[i + 1] if i + 1 < len(starts) else n]
        sim[rows], idx[rows] = index.search(x[rows], width)
    return sim, idx


def list_order(index: faiss.Index) -> np.ndarray | None:
    """The row ids of a CPU inverted file list after list (the order its rows were assigned in when added), or
    ``None`` for another index. Rows of one list probe nearly the same lists, so searched in this order the
    lists a query scans are mostly still in cache from the query before."""
    ivf = faiss.try_extract_index_ivf(index)  # None for a flat, HNSW or GPU index
    if ivf is None or ivf.ntotal != index.ntotal:
        return None
    lists = ivf.invlists
    ids = []
    for i in range(ivf.nlist):
        pointer = lists.get_ids(i)
        ids.append(faiss.rev_swig_ptr(pointer, lists.list_size(i)).copy())
        lists.release_ids(i, pointer)
    order = np.concatenate(ids).astype(np.int64)
    return order


def fill_missing(x: np.ndarray, sim: np.ndarray, idx: np.ndarray) -> int:
    """Search exactly, in place, the rows an approximate index left short (an index of -1).

    Returns
    -------
    int
        How many rows were searched again.
    """
    short = np.flatnonzero((idx < 0).any(axis=1))
    if len(short):
        sim[short], idx[short] = exact_search(x[short], x, idx.shape[1])
    return len(short)


def exact_search(queries: np.ndarray, x: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``width`` largest inner products of each query with the rows of ``x``: what an ``IndexFlatIP`` holding
    ``x`` finds (the same faiss routine, bit for bit), without the index's own copy of ``x`` (N x D float32)."""
    return faiss.knn(queries, x, width, metric=faiss.METRIC_INNER_PRODUCT)


def recall_at_k(x: np.ndarray, neighbor_idx: np.ndarray, queries: int = RECALL_QUERIES, seed: int = 0
                ) -> tuple[float, int]:
    """Recall@k of a kNN result against exact search on a seeded sample of rows.

    Parameters
    ----------
    x : np.ndarray, shape (N, D), float32, normalised
    neighbor_idx : np.ndarray, shape (N, k), self excluded
    queries : int
        Rows sampled (all of them when N is smaller).

    Returns
    -------
    recall : float
        Share of the sampled rows' found neighbours that are among their exact ``k`` nearest: whose
        similarity reaches the exact ``k``-th one (so that among tied rows, duplicates, any choice counts);
        higher is better.
    sampled : int
    """
    n, k = neighbor_idx.shape
    rows = _sample(n, queries, seed)
    return _recall(x, rows, neighbor_idx[rows], _exact_kth_similarity(x, rows, k)), len(rows)


def _sample(n: int, count: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n, size=min(count, n), replace=False))


def _exact_kth_similarity(x: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The similarity ``(Q,)`` of each of ``x[rows]``'s exact ``k``-th nearest neighbour, self excluded.

    Searched with faiss's BLAS blocks of :func:`wide_database_blocks` rows (at 1M rows, 1,000 queries, on
    busy cores: 6 CPU-s instead of 15; about the same on idle ones): the last bit of a similarity may differ
    from a search with faiss's default blocks, which only this recall measurement sees (it compares within
    :data:`TIE`); the graph's own exact search keeps faiss's defaults, so runs' graphs do not move."""
    # the block at most an eighth of the rows' own bytes: 64 MiB at 1M x 128 (2 s less than 16 MiB there),
    # 16 MiB at 40k x 1,024 (a 64 MiB block raised a 40k-photo run's peak by 63 MB; bench/photos.py)
    with wide_database_blocks(len(rows), max(BLAS_BLOCK_FLOATS, min(KMEANS_BLOCK_FLOATS, x.size // 8))):
        sim, idx = exact_search(x[rows], x, k + 1)
    return drop_self(idx, sim, rows)[1][:, -1]


#: Floats of one BLAS block of similarities (queries x database rows) in :func:`wide_database_blocks` by
#: default, 16 MiB (the recall's 1,000 queries: 4,194 rows a block); the recall's block grows to an eighth of
#: the rows' own bytes, up to 64 MiB (:func:`_exact_kth_similarity`).
BLAS_BLOCK_FLOATS = 4 * 2**20
#: k-means assigns 4,096 rows a block to every centroid: one block of up to 4,096 centroids (64 MiB).
KMEANS_BLOCK_FLOATS = 16 * 2**20


@contextlib.contextmanager
def wide_database_blocks(queries: int, block_floats: int | None = None):
    """Within the block, faiss's exact search multiplies its queries by ``block_floats / queries`` database
    rows at a time (default :data:`BLAS_BLOCK_FLOATS`; at least faiss's default 1,024, at most 65,536)
    instead of 1,024.

    With a few thousand queries against a large set, faiss's default blocks of 1,024 rows spend most of the
    time between the products (per block: threads started, results merged), not in them. The setting is
    faiss's process-wide ``distance_compute_blas_database_bs``; the engine searches from one thread, and the
    old value is put back on leaving."""
    before = faiss.cvar.distance_compute_blas_database_bs
    floats = BLAS_BLOCK_FLOATS if block_floats is None else block_floats
    faiss.cvar.distance_compute_blas_database_bs = int(min(65_536, max(before, floats // max(queries, 1))))
    try:
        yield
    finally:
        faiss.cvar.distance_compute_blas_database_bs = before


#: Similarities this close to the exact k-th one count as reaching it (float32 sums in another order).
TIE = 1e-5


def _recall(x: np.ndarray, rows: np.ndarray, found_idx: np.ndarray, kth: np.ndarray) -> float:
    """Share of found neighbours ``(Q, k)`` of ``x[rows]`` whose similarity reaches the exact ``k``-th ``(Q,)``."""
    found_sim = np.einsum("qd,qkd->qk", x[rows], x[found_idx])  # (Q, k), recomputed: the index's own may be coded
    return float(np.mean(found_sim >= kth[:, None] - TIE))


def drop_self(idx: np.ndarray, sim: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Remove each query's own index from its ``k + 1`` results.

    ``rows`` (Q,) are the queries' own indices (default ``0..Q-1``). With
    duplicate rows, self ties with its copies and need not come first, so the
    query's own index is removed wherever it is; a row that does not contain
    it (more than ``k`` exact copies, or an approximate index that missed it)
    loses its last column instead.

    Returns
    -------
    idx, sim : np.ndarray, shape (Q, k) each
    """
    n = idx.shape[0]
    rows = np.arange(n) if rows is None else np.asarray(rows)
    drop = idx == rows[:, None]  # (Q, k+1)
    drop[~drop.any(axis=1), -1] = True
    keep = ~drop
    k = idx.shape[1] - 1
    return idx[keep].reshape(n, k), sim[keep].reshape(n, k)

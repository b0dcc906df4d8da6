"""k-nearest-neighbour graph over features, the domain of label propagation.

Algorithm
---------
Given features ``(N, D)`` (penultimate activations of a network):

1. L2-normalise every row, so that inner product = cosine similarity ``s``.
2. For each sample find its ``k`` nearest neighbours by ``s``, itself excluded
   (:mod:`engine.method.search`: exact search, faiss ``IndexFlatIP``, or an
   approximate index for large N, ``GraphConfig.knn``; on the GPU when faiss
   has GPU support and CUDA is present). An approximate search reports its
   recall@k against exact search on a sample of rows (``Graph.search``).
3. Edge weight ``w_ij = max(s_ij, 0) ** power`` (``power = 3``): negative
   similarities carry no affinity, the power sharpens the kernel.
4. Symmetrise ``W <- W + W^T`` and zero the diagonal.
5. Normalise ``Wn = D^-1/2 W D^-1/2``, ``D = diag(W 1)``, a degree of 0 taken
   as 1 so that isolated nodes stay at zero instead of dividing by zero.

Cost: exact search is ``O(N^2 D)`` time and ``O(N k)`` memory for the result
(the approximate indexes' costs: :mod:`engine.method.search`); the sparse
matrices hold at most ``2 N k`` non-zeros.

References
----------
A. Iscen, G. Tolias, Y. Avrithis, O. Chum. "Label Propagation for Deep
Semi-supervised Learning". CVPR 2019.

Y. Jiang et al. "Knowledge Distillation With Noisy Labels by Ambiguity-Guided
Mutual Label Refinery" (AML-KD). IEEE TNNLS 2023. doi:10.1109/TNNLS.2023.3335829
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import faiss
import numpy as np
import scipy.sparse as sp

from .config import GraphConfig  # noqa: F401 - the graph's settings live with the run config
from ..errors import UserError
from .search import (SearchReport, build_index, drop_self, exact_search, factory_string, fill_missing, gpu_available,
                     recall_at_k, resolve_method, search_rows, tune_reach)

logger = logging.getLogger(__name__)


@dataclass
class Graph:
    """A kNN graph and its affinity matrices.

    Attributes
    ----------
    neighbor_idx : np.ndarray, shape (N, k), int64
        Neighbours of each sample, most similar first, self excluded.
    neighbor_sim : np.ndarray, shape (N, k), float32
        Cosine similarity to each neighbour (decreasing along a row).
    affinity : scipy.sparse.csr_matrix, shape (N, N), float32
        Symmetric edge weights ``W`` with zero diagonal.
    normalized : scipy.sparse.csr_matrix, shape (N, N), float32
        ``D^-1/2 W D^-1/2``.
    search : SearchReport
        Which index found the neighbours and its recall@k against exact search.
    """

    neighbor_idx: np.ndarray
    neighbor_sim: np.ndarray
    affinity: sp.csr_matrix
    normalized: sp.csr_matrix
    search: SearchReport = field(default_factory=lambda: EXACT)


#: The report of an exact search: recall 1.0, nothing measured.
EXACT = SearchReport("exact", 1.0, 0, "Flat")


def _check_k(k, n: int) -> None:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= n - 1:
        raise UserError(f"k={k!r} is invalid for N={n} samples: valid range is 1..{n - 1}")


def search_knn(features: np.ndarray, k: int, method: str = "exact", use_gpu: bool | None = None,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray, SearchReport]:
    """k nearest neighbours by cosine similarity, self excluded, by ``method``, with its recall.

    Parameters
    ----------
    features : np.ndarray, shape (N, D)
        Any float dtype; not modified (a float32 copy is normalised).
    k : int
        Neighbours per sample, ``1 <= k <= N - 1``.
    method : str
        ``exact``, ``ivf``, ``hnsw`` or ``auto`` (:func:`engine.method.search.resolve_method`).
    use_gpu : bool or None
        ``None``: GPU when faiss has GPU support and CUDA is available.
    seed : int
        Seeds the ivf training sample and the rows the recall is measured on.

    Returns
    -------
    neighbor_idx : np.ndarray, shape (N, k), int64
    neighbor_sim : np.ndarray, shape (N, k), float32
        Cosine similarities, decreasing along each row (higher = closer).
    report : SearchReport
        Recall@k against exact search on a sample of rows (1.0, unmeasured, for exact search).
    """
    neighbor_idx, neighbor_sim, measure = _search(features, k, method, use_gpu, seed)
    return neighbor_idx, neighbor_sim, measure()


def _search(features: np.ndarray, k: int, method: str, use_gpu: bool | None, seed: int
            ) -> tuple[np.ndarray, np.ndarray, Callable[[], SearchReport]]:
    """:func:`search_knn`, its report left to a function: an approximate search's recall check (an exact
    search of 1,000 rows against all of them) can run while the caller goes on (:func:`build_graph`)."""
    if features.ndim != 2:
        raise ValueError(f"features must be 2-D (N, D), got shape {features.shape}")
    n = features.shape[0]
    _check_k(k, n)
    method = resolve_method(method, n)
    x = np.array(features, dtype=np.float32, order="C", copy=True)  # (N, D)
    faiss.normalize_L2(x)
    # exact on the CPU: the flat index's search routine without the index's own copy of x (N x D float32)
    cpu_exact = method == "exact" and (use_gpu is False or (use_gpu is None and not gpu_available()))
    index = None if cpu_exact else build_index(x, method, use_gpu, seed)
    reach = None if method == "exact" else tune_reach(index, x, method, int(k), seed)[0]
    if method == "exact":  # one call: bit-identical to every earlier run
        sim, idx = exact_search(x, x, int(k) + 1) if cpu_exact else index.search(x, int(k) + 1)  # (N, k+1) each
    else:
        sim, idx = search_rows(index, x, int(k) + 1)
        refilled = fill_missing(x, sim, idx)
        if refilled:
            logger.info("kNN %s: %d rows had fewer than k+1 results and were searched exactly", method, refilled)
    neighbor_idx, neighbor_sim = drop_self(idx, sim)
    del sim, idx
    if method == "exact":
        return neighbor_idx, neighbor_sim.astype(np.float32, copy=False), lambda: EXACT
    described = _described(method, index, reach)
    del index  # its own copy of x (N x D): gone before the recall's exact search

    def measure() -> SearchReport:
        recall, queries = recall_at_k(x, neighbor_idx, seed=seed)
        return SearchReport(method, recall, queries, described)

    return neighbor_idx, neighbor_sim.astype(np.float32, copy=False), measure


def _described(method: str, index: faiss.Index, reach: int) -> str:
    """The index as faiss's factory names it, with its tuned search parameter."""
    gpu = type(index).__name__.startswith("Gpu")
    return f"{factory_string(method, index.ntotal, gpu)},{'efSearch' if method == 'hnsw' else 'nprobe'}={reach}"


def knn(
    features: np.ndarray, k: int, use_gpu: bool | None = None, method: str = "exact"
) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours by cosine similarity, self excluded (:func:`search_knn` without its report).

    Returns
    -------
    neighbor_idx : np.ndarray, shape (N, k), int64
    neighbor_sim : np.ndarray, shape (N, k), float32
    """
    neighbor_idx, neighbor_sim, _ = search_knn(features, k, method, use_gpu)
    return neighbor_idx, neighbor_sim


def affinity(neighbor_idx: np.ndarray, neighbor_sim: np.ndarray, power: float) -> sp.csr_matrix:
    """Symmetric edge weights from kNN results.

    Parameters
    ----------
    neighbor_idx : np.ndarray, shape (N, k), int
    neighbor_sim : np.ndarray, shape (N, k), float
        Cosine similarities; negative values give weight 0.
    power : float
        Weight of an edge is ``max(s, 0) ** power``.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (N, N), float32
        ``W + W^T`` with zero diagonal and no explicit zeros.
    """
    if neighbor_idx.shape != neighbor_sim.shape or neighbor_idx.ndim != 2:
        raise ValueError(
            "neighbor_idx and neighbor_sim must be 2-D of one shape (N, k), got "
            f"{neighbor_idx.shape} and {neighbor_sim.shape}"
        )
    if not isinstance(power, numbers.Real) or isinstance(power, bool) or not power > 0 or not np.isfinite(power):
        raise UserError(f"power must be a finite number > 0, got {power!r}")
    n, k = neighbor_idx.shape
    cols = neighbor_idx.astype(np.int64, copy=False)
    if cols.size and (cols.min() < 0 or cols.max() >= n):
        raise ValueError(f"neighbor_idx must lie in 0..{n - 1}, got {cols.min()}..{cols.max()}")
    weights = np.maximum(neighbor_sim.astype(np.float32, copy=False), 0) ** np.float32(power)  # (N, k)
    one_way = _one_way(cols, weights)
    # W + W^T by scipy's own kernels: the transpose (csr -> csc of the same arrays) and the sorted merge;
    # the sum of an edge found both ways is w_ij + w_ji, as a COO sum of the 2 N k entries would give
    w = (one_way + one_way.T.tocsr()).tocsr()
    w.eliminate_zeros()
    w.sort_indices()
    return w


def _one_way(cols: np.ndarray, weights: np.ndarray) -> sp.csr_matrix:
    """The directed kNN edges ``(N, N)`` as a canonical CSR matrix (each row's neighbours sorted by column,
    self edges left out), built from the ``(N, k)`` arrays without a COO detour (at 1M x 20 a third of the
    time). A row that lists a neighbour twice (no search here does) goes through COO, which sums the two."""
    n, k = cols.shape
    order = np.argsort(cols, axis=1, kind="stable")  # (N, k)
    cols = np.take_along_axis(cols, order, axis=1)
    weights = np.take_along_axis(weights, order, axis=1)
    keep = cols != np.arange(n)[:, None]  # (N, k): no self edges
    if k > 1 and (cols[:, 1:] == cols[:, :-1]).any():
        rows = np.repeat(np.arange(n), k).reshape(n, k)
        return sp.csr_matrix((weights[keep], (rows[keep], cols[keep])), shape=(n, n), dtype=np.float32)
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(keep.sum(axis=1), out=indptr[1:])
    small = max(n, int(indptr[-1])) < np.iinfo(np.int32).max  # scipy's own choice of index type
    index_dtype = np.int32 if small else np.int64
    return sp.csr_matrix((weights[keep], cols[keep].astype(index_dtype), indptr.astype(index_dtype)),
                         shape=(n, n))


def normalize_affinity(affinity_matrix: sp.spmatrix) -> sp.csr_matrix:
    """Symmetric normalisation ``D^-1/2 W D^-1/2``.

    Parameters
    ----------
    affinity_matrix : scipy.sparse matrix, shape (N, N)
        Non-negative, symmetric ``W``.

    Returns
    -------
    scipy.sparse.csr_matrix, shape (N, N), float32
        Degree ``D`` = row sums of ``W``; a degree of 0 is taken as 1.
    """
    w = sp.csr_matrix(affinity_matrix, dtype=np.float32)
    degree = np.asarray(w.sum(axis=1), dtype=np.float64).ravel()  # (N,)
    degree[degree == 0] = 1.0
    inv_sqrt = (1.0 / np.sqrt(degree)).astype(np.float32)  # (N,)
    if not w.has_canonical_format:  # repeated or unsorted entries: summed and sorted in a copy of our own
        w = w.copy()
        w.sum_duplicates()
    # (d_i w_ij) d_j in float32, entry by entry: what D^-1/2 @ W @ D^-1/2 computes, without two sparse products
    rows = np.repeat(inv_sqrt, np.diff(w.indptr))
    data = (rows * w.data) * inv_sqrt[w.indices]
    normalized = sp.csr_matrix((data, w.indices.copy(), w.indptr.copy()), shape=w.shape)
    normalized.eliminate_zeros()  # a product that underflows is no edge (the sparse product kept none)
    return normalized


def build_graph(features: np.ndarray, config: GraphConfig, use_gpu: bool | None = None) -> Graph:
    """kNN search, edge weights and normalisation in one call.

    Parameters
    ----------
    features : np.ndarray, shape (N, D)
    config : GraphConfig
    use_gpu : bool or None
        See :func:`knn`.

    Returns
    -------
    Graph
    """
    neighbor_idx, neighbor_sim, measure = _search(features, config.k, config.knn, use_gpu, 0)
    # the recall check (faiss, which lets go of the GIL) runs beside the edge weights (numpy and scipy, one
    # thread): at 1M rows 2 s less of wall time; it reads x and the neighbours, which nothing here changes
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="knn-recall") as pool:
        pending = pool.submit(measure)
        w = affinity(neighbor_idx, neighbor_sim, config.power)
        normalized = normalize_affinity(w)
        report = pending.result()
    logger.debug("kNN graph: N=%d k=%d nnz=%d search=%s recall=%.4f", w.shape[0], config.k, w.nnz,
                 report.factory, report.recall)
    return Graph(neighbor_idx, neighbor_sim, w, normalized, report)


def neighbour_vote_agreement(graph: Graph, labels: np.ndarray, mask: np.ndarray, num_classes: int) -> float:
    """How well a graph's neighbourhoods agree with trusted labels.

    Each sample in ``mask`` takes the similarity-weighted vote of its
    neighbours that are also in ``mask``; the result is the fraction whose vote
    equals its own label (samples without such a neighbour are left out; 0.0
    when none is left). A graph whose neighbours share labels propagates them
    well, so stage 2 uses it to choose between the student's and the
    teacher's graph.

    Parameters
    ----------
    labels : np.ndarray, shape (N,), int
    mask : np.ndarray, shape (N,), bool
        The trusted samples (stage 1's small-loss 'easy' set).
    """
    labels, mask = np.asarray(labels), np.asarray(mask, dtype=bool)
    idx = graph.neighbor_idx
    weight = np.clip(graph.neighbor_sim, 0.0, None) * mask[idx]  # (N, k): trusted neighbours only
    votes = np.zeros((len(labels), num_classes), dtype=np.float64)
    np.add.at(votes, (np.repeat(np.arange(len(labels)), idx.shape[1]), labels[idx].ravel()), weight.ravel())
    counted = mask & (weight.sum(1) > 0)
    if not counted.any():
        return 0.0
    return float(np.mean(votes[counted].argmax(1) == labels[counted]))

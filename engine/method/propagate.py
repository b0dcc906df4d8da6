"""Label propagation over a normalised kNN graph, all classes at once.

Algorithm
---------
Given the normalised affinity ``Wn (N, N)`` (see :mod:`engine.method.graph`) and seeds
``(N, C)`` (one-hot labels, optionally weighted, zero for unlabelled rows):

1. ``Y``: each seed column divided by its sum, so every class injects the same
   mass whatever its size (a class without seeds stays zero).
2. Solve ``(I - alpha Wn) Z = Y`` by conjugate gradient from ``Z = 0``: one
   independent CG per column, all columns advanced together with per-column
   step sizes, a column frozen once its residual ``||r|| <= tol ||y||``, at most
   ``max_iter`` iterations. These are the iterates of the authors' code, which
   calls ``scipy.sparse.linalg.cg`` once per class (``maxiter=20, tol=1e-6``,
   float64), in float32, and one sparse-times-dense product per iteration
   serves a whole block of classes.
3. Scores: ``Z`` clipped at 0, each row divided by its sum; confidence
   ``1 - H(scores) / log C``.

Cost: ``O(max_iter * nnz(Wn) * C)`` time and ``O(N C)`` memory, float32.
CUDA is used when available. On the CPU the nodes are put in reverse
Cuthill-McKee order (neighbours close in memory) and the classes are solved in
blocks of columns small enough to stay in cache, but of at least 16 columns (a
cache line per row) where there are that many; neither changes the labels,
together they make the solve about twice as fast.

References
----------
A. Iscen, G. Tolias, Y. Avrithis, O. Chum. "Label Propagation for Deep
Semi-supervised Learning". CVPR 2019.

Y. Jiang et al. "Knowledge Distillation With Noisy Labels by Ambiguity-Guided
Mutual Label Refinery" (AML-KD). IEEE TNNLS 2023. doi:10.1109/TNNLS.2023.3335829
"""

from __future__ import annotations

import functools
import logging
import numbers
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import reverse_cuthill_mckee

from .config import PropagationConfig  # noqa: F401 - the solver's settings live with the run config
from ..device import default_device

logger = logging.getLogger(__name__)

# Columns are solved in blocks of about this many bytes of (N, b) float32: on the
# 2-core CI machine (2 MiB L2 per core) blocks of 3 MiB ran the solve 2x faster
# than all 100 columns at once (bench/lp.py, N=50000).
_CPU_BLOCK_BYTES = 3 * 2**20
# ... but at least this many columns (a 64-byte cache line of float32 per row): past about 80k nodes a 3 MiB
# block is a column or two, and the solve then reads the whole matrix once per column and iteration for a
# few useful bytes per cache line fetched (1M nodes, 10 classes: 20.9 CPU-s in ten one-column blocks, 9.7 in
# one block, the same labels; the scores differ by at most 5e-7). Runs under about 80k nodes with 10 classes
# solve in one block as before.
_MIN_BLOCK_COLUMNS = 16


@dataclass
class PropagationResult:
    """Outcome of one propagation.

    Attributes
    ----------
    scores : np.ndarray, shape (N, C), float32
        Non-negative class scores, rows sum to 1 (higher = more likely).
    labels : np.ndarray, shape (N,), int64
        ``argmax`` of ``scores`` (class 0 for a row no seed reached).
    confidence : np.ndarray, shape (N,), float32
        ``1 - H(scores) / log C`` in [0, 1] (higher = more certain); 1 when
        ``C == 1``; 0 for a row no seed reached.
    iterations : int
        CG iterations run (the most over classes).
    history : dict[int, np.ndarray]
        Iteration -> scores ``(len(record_nodes), C)`` of the recorded nodes,
        normalised like ``scores``; iteration 0 is the normalised seeds.
    """

    scores: np.ndarray
    labels: np.ndarray
    confidence: np.ndarray
    iterations: int
    history: dict[int, np.ndarray] = field(default_factory=dict)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def seed_matrix(
    labels: np.ndarray,
    num_classes: int,
    weights: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """One-hot seeds, optionally weighted and restricted to a mask.

    Parameters
    ----------
    labels : np.ndarray, shape (N,), int
        Class of each sample, in ``0..num_classes-1`` where ``mask`` is true
        (anything, e.g. -1, elsewhere).
    num_classes : int
        ``C``.
    weights : np.ndarray, shape (N,), float, optional
        Non-negative weight of each seed (e.g. AWE weights); default 1.
    mask : np.ndarray, shape (N,), bool, optional
        Rows that are seeds; default all.

    Returns
    -------
    np.ndarray, shape (N, C), float32
    """
    labels = np.asarray(labels)
    n = labels.shape[0]
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D (N,), got shape {labels.shape}")
    if not _is_int(num_classes) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    mask = np.ones(n, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    weights = np.ones(n, dtype=np.float32) if weights is None else np.asarray(weights, dtype=np.float32)
    if mask.shape != (n,) or weights.shape != (n,):
        raise ValueError(f"weights and mask must have shape ({n},), got {weights.shape} and {mask.shape}")
    seeded = labels[mask]
    if seeded.size and (seeded.min() < 0 or seeded.max() >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}, got {seeded.min()}..{seeded.max()}")
    if np.any(weights[mask] < 0) or not np.all(np.isfinite(weights[mask])):
        raise ValueError("weights must be finite and non-negative")
    seeds = np.zeros((n, num_classes), dtype=np.float32)  # (N, C)
    rows = np.flatnonzero(mask)
    seeds[rows, labels[rows].astype(np.int64)] = weights[rows]
    return seeds


def normalize_scores(z: torch.Tensor) -> torch.Tensor:
    """Clip at 0 and L1-normalise rows; an all-zero row becomes uniform.

    Parameters
    ----------
    z : torch.Tensor, shape (M, C)

    Returns
    -------
    torch.Tensor, shape (M, C), rows summing to 1
    """
    z = z.clamp_min(0)
    total = z.sum(dim=1, keepdim=True)  # (M, 1)
    uniform = torch.full_like(z, 1.0 / z.shape[1])
    return torch.where(total > 0, z / total.clamp_min(torch.finfo(z.dtype).tiny), uniform)


def _confidence(scores: torch.Tensor, reached: torch.Tensor) -> torch.Tensor:
    """``1 - H(p) / log C`` per row, 0 where ``reached`` is false."""
    num_classes = scores.shape[1]
    if num_classes == 1:
        conf = torch.ones(scores.shape[0], dtype=scores.dtype, device=scores.device)
    else:
        plogp = torch.special.xlogy(scores, scores)  # 0 log 0 = 0
        conf = 1 + plogp.sum(dim=1) / np.log(num_classes)
    return torch.where(reached, conf.clamp(0, 1), torch.zeros_like(conf))


def _to_torch_csr(matrix: sp.csr_matrix, device: torch.device) -> torch.Tensor:
    index_dtype = torch.int64 if matrix.indptr[-1] > np.iinfo(np.int32).max else torch.int32
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr).to(index_dtype),
            torch.from_numpy(matrix.indices).to(index_dtype),
            torch.from_numpy(matrix.data.astype(np.float32, copy=False)),
            size=matrix.shape,
            check_invariants=False,
        ).to(device)


def _block_cg(
    graph: torch.Tensor,
    rhs: torch.Tensor,
    config: PropagationConfig,
    on_iteration: Callable[[int, torch.Tensor], None],
) -> tuple[torch.Tensor, int]:
    """Independent CGs on every column of ``(I - alpha Wn) Z = Y`` at once.

    Parameters
    ----------
    graph : torch.Tensor, sparse CSR, shape (N, N)
        ``Wn``.
    rhs : torch.Tensor, shape (N, C)
        ``Y``.
    on_iteration : callable
        Called with ``(t, Z_t)`` after each iteration ``t >= 1``.

    Returns
    -------
    z : torch.Tensor, shape (N, C)
    iterations : int
    """
    z = torch.zeros_like(rhs)  # (N, C)
    residual = rhs.clone()  # r = Y - A z
    direction = rhs.clone()  # p
    rr = (residual * residual).sum(dim=0)  # (C,) r.r
    threshold = config.tol * rr.sqrt()
    active = rr.sqrt() > threshold  # a zero column is solved already
    iteration = 0
    while iteration < config.max_iter and bool(active.any()):
        iteration += 1
        a_p = torch.addmm(direction, graph, direction, alpha=-config.alpha)  # (N, C) = (I - alpha Wn) p
        step = torch.where(active, rr / (direction * a_p).sum(dim=0), 0.0)  # (C,)
        z.addcmul_(step, direction)
        residual.addcmul_(step, a_p, value=-1.0)
        rr_new = (residual * residual).sum(dim=0)
        active &= rr_new.sqrt() > threshold
        beta = torch.where(active, rr_new / rr, 0.0)
        direction.mul_(beta).add_(residual)
        rr = rr_new
        on_iteration(iteration, z)
    return z, iteration


def _locality_order(normalized: sp.csr_matrix, device: torch.device) -> np.ndarray | None:
    """Reverse Cuthill-McKee order of the nodes on the CPU, ``None`` on a GPU."""
    if device.type != "cpu" or normalized.shape[0] < 2:
        return None
    return np.asarray(reverse_cuthill_mckee(normalized, symmetric_mode=True), dtype=np.int64)


def _check_inputs(normalized: sp.spmatrix, seeds: np.ndarray) -> None:
    n = normalized.shape[0]
    if normalized.ndim != 2 or normalized.shape != (n, n):
        raise ValueError(f"normalized must be square (N, N), got shape {normalized.shape}")
    if seeds.ndim != 2 or seeds.shape[0] != n or seeds.shape[1] < 1:
        raise ValueError(f"seeds must have shape ({n}, C) with C >= 1, got {seeds.shape}")
    if not np.all(np.isfinite(seeds)) or np.any(seeds < 0):
        raise ValueError("seeds must be finite and non-negative")


def propagate(
    normalized: sp.spmatrix,
    seeds: np.ndarray,
    config: PropagationConfig,
    record_nodes: Iterable[int] | None = None,
    record_iters: Iterable[int] | None = None,
    device: str | torch.device | None = None,
) -> PropagationResult:
    """Propagate seed labels over a graph: solve ``(I - alpha Wn) Z = Y``.

    Parameters
    ----------
    normalized : scipy.sparse matrix, shape (N, N)
        ``Wn = D^-1/2 W D^-1/2`` (e.g. ``Graph.normalized``); not modified.
    seeds : np.ndarray, shape (N, C)
        Non-negative seed mass per class (see :func:`seed_matrix`); not modified.
    config : PropagationConfig
    record_nodes : iterable of int, optional
        Nodes whose scores to keep per iteration; default all when
        ``record_iters`` is given.
    record_iters : iterable of int, optional
        Iterations to keep (0 = seeds); default every iteration run when
        ``record_nodes`` is given. Iterations past the last one run (CG
        converged first) are absent. Nothing is recorded if both are ``None``.
    device : str or torch.device, optional
        Default CUDA when available, else CPU.

    Returns
    -------
    PropagationResult
    """
    seeds = np.ascontiguousarray(seeds, dtype=np.float32)  # read only, never written
    _check_inputs(normalized, seeds)
    device = default_device() if device is None else torch.device(device)
    matrix = sp.csr_matrix(normalized, dtype=np.float32)
    order = _locality_order(matrix, device)
    if order is not None:
        matrix = matrix[order][:, order]
    rhs = torch.from_numpy(seeds[order] if order is not None else seeds).to(device, torch.float32)
    mass = rhs.sum(dim=0)  # (C,)
    rhs = rhs / torch.where(mass > 0, mass, 1.0)  # Y: column sums 1, or 0 for a seedless class

    recorder = _Recorder.create(*seeds.shape, order, record_nodes, record_iters, config.max_iter, device)
    z, iterations = _solve_blocks(_to_torch_csr(matrix, device), rhs, config, recorder)
    logger.debug("label propagation: N=%d C=%d iterations=%d", *seeds.shape, iterations)
    if order is not None:
        z = z[torch.from_numpy(np.argsort(order)).to(device)]  # back to the caller's node order
    return _result(z, iterations, recorder.history(iterations))


def _column_blocks(n: int, num_classes: int, device: torch.device) -> list[slice]:
    """Split the classes into blocks whose ``(N, b)`` iterates stay in the CPU cache."""
    if device.type != "cpu":
        return [slice(0, num_classes)]
    width = min(num_classes, max(_MIN_BLOCK_COLUMNS, _CPU_BLOCK_BYTES // (4 * n)))
    count = -(-num_classes // width)
    width = -(-num_classes // count)  # even blocks
    return [slice(start, min(start + width, num_classes)) for start in range(0, num_classes, width)]


def _solve_blocks(
    graph: torch.Tensor, rhs: torch.Tensor, config: PropagationConfig, recorder: _Recorder
) -> tuple[torch.Tensor, int]:
    """Block CG on each block of columns in turn; ``Z (N, C)`` and the most iterations run."""
    z = torch.empty_like(rhs)  # (N, C)
    iterations = 0
    for cols in _column_blocks(*rhs.shape, rhs.device):
        rhs_block = rhs[:, cols].contiguous()  # (N, b)
        recorder.record(cols, 0, rhs_block)
        z_block, done = _block_cg(graph, rhs_block, config, functools.partial(recorder.record, cols))
        recorder.finish(cols, done, z_block)
        z[:, cols] = z_block
        iterations = max(iterations, done)
    return z, iterations


class _Recorder:
    """Scores of some nodes at some iterations, gathered block of columns by block.

    A block that converges before another keeps its final values at later
    iterations; :meth:`history` drops iterations past the last one run.
    """

    def __init__(self, rows: torch.Tensor | None, iterations: set[int], num_classes: int) -> None:
        self.rows = rows  # (M,) positions in the solver's node order; None: record nothing
        self.iterations = iterations
        self.num_classes = num_classes
        self.raw: dict[int, torch.Tensor] = {}  # iteration -> (M, C) unnormalised Z

    @classmethod
    def create(
        cls,
        n: int,
        num_classes: int,
        order: np.ndarray | None,
        record_nodes: Iterable[int] | None,
        record_iters: Iterable[int] | None,
        max_iter: int,
        device: torch.device,
    ) -> _Recorder:
        """Validate the asked nodes and map them to the solver's node ``order``."""
        if record_nodes is None and record_iters is None:
            return cls(None, set(), num_classes)
        iterations = set(range(max_iter + 1)) if record_iters is None else {int(t) for t in record_iters}
        nodes = np.arange(n) if record_nodes is None else np.asarray(list(record_nodes), dtype=np.int64)
        if nodes.size and (nodes.min() < -n or nodes.max() >= n):
            raise ValueError(f"record_nodes must lie in 0..{n - 1}, got {nodes.min()}..{nodes.max()}")
        if order is not None:
            nodes = np.argsort(order)[nodes]  # positions of the asked nodes after reordering
        return cls(torch.from_numpy(nodes).to(device), iterations, num_classes)

    def record(self, cols: slice, iteration: int, z_block: torch.Tensor) -> None:
        if self.rows is None or iteration not in self.iterations:
            return
        if iteration not in self.raw:
            self.raw[iteration] = z_block.new_zeros(len(self.rows), self.num_classes)
        self.raw[iteration][:, cols] = z_block[self.rows]

    def finish(self, cols: slice, last: int, z_block: torch.Tensor) -> None:
        for iteration in self.iterations:
            if iteration > last:
                self.record(cols, iteration, z_block)

    def history(self, iterations: int) -> dict[int, np.ndarray]:
        return {
            t: normalize_scores(self.raw[t]).cpu().numpy() for t in sorted(self.raw) if t <= iterations
        }


def _result(z: torch.Tensor, iterations: int, history: dict[int, np.ndarray]) -> PropagationResult:
    """Scores, labels and confidence from the solution ``Z (N, C)``."""
    reached = (z > 0).any(dim=1)  # (N,) some positive score after clipping
    scores = normalize_scores(z)  # (N, C)
    confidence = _confidence(scores, reached)
    return PropagationResult(
        scores=scores.cpu().numpy().astype(np.float32, copy=False),
        labels=scores.argmax(dim=1).cpu().numpy().astype(np.int64),
        confidence=confidence.cpu().numpy().astype(np.float32, copy=False),
        iterations=iterations,
        history=history,
    )

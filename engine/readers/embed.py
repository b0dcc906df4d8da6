"""2-D projections (UMAP) of a run's features, aligned across steps.

Algorithm
---------
For a step and a feature source (``teacher``, ``student`` or ``input``):

1. Features ``(N, D)`` of that step: the snapshot's own features when they are
   of the asked source (teacher features in teacher/propagate steps, the
   student's in student steps), else the frozen teacher's
   (``teacher_features.npy``) for ``teacher``; ``input`` is the raw 2-D
   coordinates of a toy dataset, returned as they are.
2. A cosine kNN graph for UMAP (self first, ``n_neighbors`` columns): the one
   the engine already built (the snapshot's ``neighbor_idx``/``neighbor_sim``)
   when it was built on these very features, checked on a few rows; otherwise
   an exact search (:func:`engine.method.graph.knn`, faiss), which on a few thousand
   samples is faster than UMAP's own approximate search and its compilation.
3. UMAP with a fixed ``random_state`` (deterministic, single-threaded). The
   first layout of a source starts from the spectral embedding; every later
   one starts from the cached layout of the nearest step already projected
   (``init=`` its coordinates) and runs fewer epochs at a lower learning
   rate, so that a replay of the steps moves points instead of redrawing the
   map. A step whose features are byte-identical to a cached step's (the
   frozen teacher after its phase) reuses that layout outright.
4. Above ``EmbedConfig.fit_max`` samples (20k) UMAP fits on a seeded random
   subset of that size and places every other sample with the fitted model's
   ``transform`` (:func:`project_subsample`; features read in batches, so a
   memory-mapped million never sits in memory at once as float32).
5. The layout is cached as ``embeddings/{source}_step_{NNNNN}.npy`` with a
   sidecar ``.json`` holding the features' digest (shape, dtype and 64 rows
   spread over them: :func:`features_digest`) and the settings; a cached
   layout whose digest no longer matches the step's features is recomputed.
   Opening a page with a cached layout reads those 64 rows and the layout.

Cost: the exact kNN is ``O(N^2 D)``; UMAP's layout is ``O(n_epochs N
n_neighbors)``; above ``fit_max``, the fit costs as at ``fit_max`` and
``transform`` grows linearly with N (``bench/scale_app.py`` times it at 100k and 1M). On 1,437 digits and 2 shared cores (``bench/app.py``): ~0.5 s
warm-started, ~1 s from scratch once numba has compiled UMAP's kernels; the
first projection in a process waits ~15-20 s for that compilation, which
:func:`warm_up` does ahead of time.

References
----------
L. McInnes, J. Healy, J. Melville. "UMAP: Uniform Manifold Approximation and
Projection for Dimension Reduction". arXiv:1802.03426, 2018.
"""

from __future__ import annotations

import hashlib
import json
import logging
import numbers
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..method.graph import knn
from ..method.stages import TEACHER_PHASES
from ..rundir.store import RunStore, atomic_path, atomic_write_text

logger = logging.getLogger(__name__)

#: Feature sources a layout can be made of.
SOURCES = ("teacher", "student", "input")


@dataclass(frozen=True)
class EmbedConfig:
    """Settings of the 2-D projection.

    Parameters
    ----------
    n_neighbors : int
        UMAP's neighbourhood size, self included.
    min_dist : float
        UMAP's minimum distance between embedded points.
    scratch_epochs : int
        Layout epochs of a first projection (spectral start).
    warm_epochs : int
        Layout epochs when starting from a previous step's layout.
    warm_learning_rate : float
        Initial learning rate of a warm start (UMAP's default is 1.0).
    random_state : int
        Seed of UMAP; fixed so that a replay is reproducible.
    fit_max : int
        UMAP fits on at most this many samples (a seeded random subset); the
        others are placed by the fitted model's ``transform``.
    transform_batch : int
        Samples placed per ``transform`` call (bounds the memory of one call).
    """

    n_neighbors: int = 15  # UMAP's default; the engine's k=20 graph holds enough columns
    min_dist: float = 0.1  # UMAP's default: tight clusters, readable at a glance
    scratch_epochs: int = 200  # UMAP uses 500 below 10k points; 200 already converges on digits
    warm_epochs: int = 100  # the start is close to the answer: 100 epochs match a fresh layout's kNN recall
    warm_learning_rate: float = 0.5  # gentler steps keep the previous layout recognisable
    random_state: int = 0
    fit_max: int = 20_000  # a fit on 20k points shows every cluster; its cost grows with N, transform's linearly
    transform_batch: int = 50_000  # ~25 MB of float32 features per call at D = 128

    def __post_init__(self) -> None:
        for name in ("n_neighbors", "scratch_epochs", "warm_epochs", "random_state", "fit_max", "transform_batch"):
            value = getattr(self, name)
            low = {"n_neighbors": 2, "fit_max": 3, "transform_batch": 1}.get(name, 1 if name.endswith("epochs") else 0)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise UserError(f"EmbedConfig.{name} must be an integer >= {low}, got {value!r}")
        if not 0 <= self.min_dist <= 1:
            raise UserError(f"EmbedConfig.min_dist must lie in [0, 1], got {self.min_dist!r}")
        if not self.warm_learning_rate > 0:
            raise UserError(f"EmbedConfig.warm_learning_rate must be > 0, got {self.warm_learning_rate!r}")


# ---------------------------------------------------------------------- pure parts


#: Rows of the features a cache digest reads (spread evenly over them).
DIGEST_ROWS = 64


def features_digest(features: np.ndarray, rows: int = DIGEST_ROWS) -> str:
    """Short hex digest of an array's shape, dtype and the bytes of ``rows`` rows spread evenly over it.

    A few rows tell one step's features from another's (training moves every
    row) and find the very same features again (the frozen teacher), without
    reading a million rows each time a page opens.
    """
    n = features.shape[0]
    pick = np.unique(np.linspace(0, n - 1, num=min(rows, n)).astype(np.int64)) if n else np.zeros(0, np.int64)
    h = hashlib.blake2b(digest_size=12)
    h.update(f"{features.shape}{features.dtype}".encode())
    h.update(np.ascontiguousarray(features[pick]).tobytes())
    return h.hexdigest()


def graph_matches(features: np.ndarray, neighbor_idx: np.ndarray, neighbor_sim: np.ndarray,
                  rows: int = 32, atol: float = 2e-2) -> bool:
    """Whether a stored kNN graph was built on these features.

    Recomputes the cosine similarity of a few rows to their listed neighbours
    and compares it with the stored one.

    Parameters
    ----------
    features : np.ndarray, shape (N, D)
    neighbor_idx : np.ndarray, shape (N, k), int
    neighbor_sim : np.ndarray, shape (N, k)
    rows : int
        Rows checked, spread evenly over ``0..N-1``.
    atol : float
        Tolerance (the snapshot stores similarities and features as float16).

    Returns
    -------
    bool
    """
    n = features.shape[0]
    if neighbor_idx.shape != neighbor_sim.shape or neighbor_idx.ndim != 2 or neighbor_idx.shape[0] != n:
        return False
    pick = np.unique(np.linspace(0, n - 1, num=min(rows, n)).astype(np.int64))
    x = features.astype(np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    idx = neighbor_idx[pick].astype(np.int64)  # (R, k)
    if idx.min() < 0 or idx.max() >= n:
        return False
    sims = np.einsum("rd,rkd->rk", x[pick], x[idx])  # (R, k)
    return bool(np.allclose(sims, neighbor_sim[pick].astype(np.float32), atol=atol))


def umap_knn(features: np.ndarray, n_neighbors: int, neighbor_idx: np.ndarray | None = None,
             neighbor_sim: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """UMAP's precomputed kNN: self first, then neighbours, as cosine distances.

    Parameters
    ----------
    features : np.ndarray, shape (N, D)
    n_neighbors : int
        Columns of the result, self included (clipped to ``N``).
    neighbor_idx, neighbor_sim : np.ndarray, shape (N, k), optional
        A graph already built on ``features`` (self excluded); used when it
        has at least ``n_neighbors - 1`` columns, else an exact search is run.

    Returns
    -------
    knn_indices : np.ndarray, shape (N, n_neighbors), int32
    knn_dists : np.ndarray, shape (N, n_neighbors), float32
        ``1 - cosine similarity``, clipped at 0; column 0 is self at distance 0.
    """
    n = features.shape[0]
    width = min(n_neighbors, n) - 1
    if neighbor_idx is None or neighbor_idx.shape[1] < width:
        neighbor_idx, neighbor_sim = knn(features, width)
    idx = np.concatenate([np.arange(n)[:, None], neighbor_idx[:, :width]], axis=1).astype(np.int32)
    sim = np.concatenate([np.ones((n, 1)), neighbor_sim[:, :width].astype(np.float64)], axis=1)
    return idx, np.maximum(1.0 - sim, 0.0).astype(np.float32)


def project(features: np.ndarray, config: EmbedConfig = EmbedConfig(), init: np.ndarray | None = None,
            neighbor_idx: np.ndarray | None = None, neighbor_sim: np.ndarray | None = None) -> np.ndarray:
    """UMAP of features into 2-D.

    Parameters
    ----------
    features : np.ndarray, shape (N, D)
    config : EmbedConfig
    init : np.ndarray, shape (N, 2), optional
        Start layout (a previous step's); default the spectral embedding.
    neighbor_idx, neighbor_sim : np.ndarray, shape (N, k), optional
        A cosine kNN graph already built on ``features`` (see :func:`umap_knn`).

    Returns
    -------
    np.ndarray, shape (N, 2), float32
        Coordinates, roughly in [0, 10] on each axis.
    """
    import umap  # heavy import (numba), kept out of module import time

    features = np.asarray(features, dtype=np.float32)
    n = features.shape[0]
    if features.ndim != 2 or n < 3:
        raise UserError(f"a 2-D projection needs features of shape (N, D) with N >= 3, got {features.shape}")
    if init is not None and np.asarray(init).shape != (n, 2):
        raise ValueError(f"init must have shape ({n}, 2), got {np.asarray(init).shape}")
    knn_idx, knn_dist = umap_knn(features, config.n_neighbors, neighbor_idx, neighbor_sim)
    warm = init is not None
    reducer = umap.UMAP(
        n_neighbors=knn_idx.shape[1], min_dist=config.min_dist, metric="cosine",
        n_epochs=config.warm_epochs if warm else config.scratch_epochs,
        learning_rate=config.warm_learning_rate if warm else 1.0,
        init=np.asarray(init, dtype=np.float32) if warm else "spectral",
        random_state=config.random_state, precomputed_knn=(knn_idx, knn_dist),
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*knn_search_index.*")
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        warnings.filterwarnings("ignore", message=".*Graph is not fully connected.*")
        coords = reducer.fit_transform(features)
    return np.asarray(coords, dtype=np.float32)


def project_subsample(features: np.ndarray, config: EmbedConfig = EmbedConfig(),
                      init: np.ndarray | None = None) -> np.ndarray:
    """UMAP of many features into 2-D: fit on ``config.fit_max`` of them, place the rest with ``transform``.

    Parameters
    ----------
    features : np.ndarray, shape (N, D), N > config.fit_max
        May be memory-mapped: read in ``config.transform_batch`` rows at a time.
    config : EmbedConfig
    init : np.ndarray, shape (N, 2), optional
        A previous step's layout; its rows of the fitted subset start the fit.

    Returns
    -------
    np.ndarray, shape (N, 2), float32
        The fitted subset at its fitted place, every other sample where the
        fitted model's ``transform`` puts it (near its nearest fitted neighbours).
    """
    import umap

    n = features.shape[0]
    fit_rows = np.sort(np.random.default_rng(config.random_state).choice(n, size=config.fit_max, replace=False))
    warm = init is not None
    reducer = umap.UMAP(
        n_neighbors=config.n_neighbors, min_dist=config.min_dist, metric="cosine",
        n_epochs=config.warm_epochs if warm else config.scratch_epochs,
        learning_rate=config.warm_learning_rate if warm else 1.0,
        init=np.asarray(init, dtype=np.float32)[fit_rows] if warm else "spectral",
        random_state=config.random_state, low_memory=True,
    )
    coords = np.empty((n, 2), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        warnings.filterwarnings("ignore", message=".*Graph is not fully connected.*")
        fitted = reducer.fit_transform(np.asarray(features[fit_rows], dtype=np.float32))
        for start in range(0, n, config.transform_batch):
            chunk = np.asarray(features[start:start + config.transform_batch], dtype=np.float32)
            coords[start:start + len(chunk)] = reducer.transform(chunk)
    coords[fit_rows] = fitted
    return coords


def warm_up() -> float:
    """Compile UMAP's numba kernels on a tiny input (both start paths).

    Returns
    -------
    float
        Seconds it took.
    """
    import time

    started = time.perf_counter()
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 8)).astype(np.float32)
    small = EmbedConfig(n_neighbors=5, scratch_epochs=5, warm_epochs=5)
    layout = project(features, small)
    project(features, small, init=layout)
    seconds = time.perf_counter() - started
    logger.info("UMAP warm-up took %.1f s", seconds)
    return seconds


# ---------------------------------------------------------------------- run directory


def _phase_of(store: RunStore, step: int) -> str | None:
    for m in store.metrics():
        if m.get("step") == step:
            return m.get("phase")
    return None


def step_features(store: RunStore, step: int, source: str,
                  snapshot: dict | None = None) -> np.ndarray | None:
    """Features of ``source`` at ``step``, or ``None`` where the run has none.

    Parameters
    ----------
    store : RunStore
    step : int
    source : {'teacher', 'student'}
    snapshot : dict, optional
        The step's snapshot, when the caller has loaded it already.

    Returns
    -------
    np.ndarray, shape (N, D), float16, or None
        Teacher features: the snapshot's in teacher/propagate steps, the frozen
        teacher's afterwards. Student features: the snapshot's in student steps
        (none before the student trains).
    """
    if source not in ("teacher", "student"):
        raise UserError(f"feature source {source!r} is unknown; valid: teacher, student")
    phase = _phase_of(store, step)
    if phase is None:
        return None
    own = phase in TEACHER_PHASES if source == "teacher" else phase not in TEACHER_PHASES
    if own:
        snap = snapshot if snapshot is not None else store.snapshot(step)
        return snap.get("features")
    if source == "teacher":
        features = store.teacher_features(mapped=True)  # float16 as stored; rows read only when used
        return None if features is None else features
    return None


def embedding_path(store: RunStore, source: str, step: int) -> Path:
    return store.embeddings_dir / f"{source}_step_{step:05d}.npy"


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _read_cached(path: Path) -> tuple[np.ndarray, dict] | None:
    """A cached layout and its metadata; None when missing or damaged (a cache: it is computed again)."""
    try:
        meta = json.loads(_sidecar(path).read_text())
        coords = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if not isinstance(meta, dict) or coords.ndim != 2 or not np.issubdtype(coords.dtype, np.floating) \
            or not np.isfinite(coords).all():
        return None
    return coords, meta


def _write_cached(path: Path, coords: np.ndarray, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, coords.astype(np.float32))
    atomic_write_text(_sidecar(path), json.dumps(meta, sort_keys=True))


def cached_steps(store: RunStore, source: str) -> list[int]:
    """Steps of ``source`` with a cached layout, ascending."""
    folder = store.embeddings_dir
    if not folder.is_dir():
        return []
    steps = []
    for p in folder.glob(f"{source}_step_*.npy"):
        try:
            steps.append(int(p.stem.rsplit("_", 1)[1]))
        except ValueError:
            continue
    return sorted(steps)


def _start_layout(store: RunStore, source: str, step: int, digest: str, n: int, settings: dict):
    """The cached layout to reuse (same digest) or to start from (nearest step).

    Returns
    -------
    (coords or None, reuse: bool, from_step or None)
    """
    steps = cached_steps(store, source)
    candidates = [s for s in steps if s != step]
    earlier = [s for s in candidates if s < step][::-1]
    later = [s for s in candidates if s > step]
    found = None
    for s in earlier + later:
        cached = _read_cached(embedding_path(store, source, s))
        if cached is None or cached[0].shape != (n, 2) or cached[1].get("settings") != settings:
            continue
        if cached[1].get("digest") == digest:
            return cached[0], True, s
        if found is None:
            found = (cached[0], s)
    return (found[0], False, found[1]) if found else (None, False, None)


def embedding(store: RunStore, step: int, source: str, config: EmbedConfig = EmbedConfig(),
              inputs: np.ndarray | None = None, snapshot: dict | None = None) -> np.ndarray | None:
    """The 2-D layout of ``source`` at ``step``, cached in the run directory.

    Parameters
    ----------
    store : RunStore
    step : int
        A step with a snapshot.
    source : {'teacher', 'student', 'input'}
    config : EmbedConfig
    inputs : np.ndarray, shape (N, 2), optional
        The raw training inputs; needed for ``source='input'`` (2-D toys only).
    snapshot : dict, optional
        The step's snapshot, when the caller has it loaded already.

    Returns
    -------
    np.ndarray, shape (N, 2), float32, or None
        ``None`` when the run has no features of that source at that step
        (e.g. student features during the teacher phase).
    """
    if source not in SOURCES:
        raise UserError(f"embedding source {source!r} is unknown; valid: {', '.join(SOURCES)}")
    if source == "input":
        return input_coordinates(inputs)
    snapshot = store.snapshot(step) if snapshot is None else snapshot
    features = step_features(store, step, source, snapshot)
    if features is None:
        return None
    digest, settings = features_digest(features), asdict(config)
    path = embedding_path(store, source, step)
    cached = _read_cached(path) if path.is_file() else None
    if cached is not None and cached[1].get("digest") == digest and cached[1].get("settings") == settings:
        return cached[0]
    start, reuse, from_step = _start_layout(store, source, step, digest, features.shape[0], settings)
    if reuse:
        coords = start
    else:
        idx, sim = snapshot.get("neighbor_idx"), snapshot.get("neighbor_sim")
        if features.shape[0] > config.fit_max:
            coords = project_subsample(features, config, init=start)
            idx = None
        else:
            if idx is None or not graph_matches(features, idx, sim):
                idx = sim = None
            coords = project(np.asarray(features), config, init=start, neighbor_idx=idx, neighbor_sim=sim)
        logger.info("embedded %s features of step %d (start: %s, engine graph reused: %s)",
                    source, step, from_step if start is not None else "spectral", idx is not None)
    _write_cached(path, coords, {"digest": digest, "settings": settings, "from_step": from_step, "reused": reuse})
    return coords


def input_coordinates(inputs: np.ndarray | None) -> np.ndarray:
    """Raw 2-D inputs as layout coordinates.

    Parameters
    ----------
    inputs : np.ndarray, shape (N, 2)

    Returns
    -------
    np.ndarray, shape (N, 2), float32 (a copy)
    """
    if inputs is None:
        raise UserError("source 'input' needs the dataset's raw inputs")
    inputs = np.asarray(inputs)
    if inputs.ndim != 2 or inputs.shape[1] != 2:
        raise UserError(f"source 'input' is only for 2-D point datasets; inputs have shape {inputs.shape}")
    return inputs.astype(np.float32, copy=True)

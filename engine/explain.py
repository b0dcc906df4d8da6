"""Explanations of a step, for the app: per-sample losses, the kNN
neighbourhood of a sample, a replay of the step's label propagation recorded
iteration by iteration, and what-if propagations with other settings.

Nothing here writes to the run directory: a what-if is computed from a step's
snapshot and thrown away.

Seeds of a replay or a what-if are the step's own, as far as the snapshot
holds them: in stage 0 (``propagate``) one-hot teacher predictions; in stages
1-2 the working labels (after small-loss selection; the teacher's prediction
where a snapshot has none), weighted by the snapshot's AWE ``weight`` where it
is finite. (The engine weighs stage-1 seeds by the weight of the *working*
label and stage-2 seeds by the label-centre similarity; the snapshot keeps the
weight of the label trained on, so a replay of stages 1-2 is close to, not
always equal to, the step.)

Relabelling follows the step: stage 0 takes the propagated label except for
the ``keep_fraction`` least confident samples, which keep the given one;
stages 1-2 keep the working label of the small-loss ('easy') samples and take
the propagated label elsewhere (a ``keep_fraction`` there also keeps the
working label of the least confident).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .errors import UserError
from .graph import GraphConfig, affinity, build_graph, normalize_affinity
from .propagate import PropagationConfig, PropagationResult, propagate, seed_matrix
from .store import RunStore

#: Phases whose step ran a label propagation.
LP_PHASES = ("propagate", "refine", "mutual")
#: Per-sample losses of a snapshot, in order of preference.
LOSS_FIELDS = ("selection_loss", "student_loss", "teacher_loss")


# ---------------------------------------------------------------------- losses


def per_sample_loss(snapshot: dict) -> tuple[np.ndarray, np.ndarray]:
    """The loss that decided the step, per sample.

    Parameters
    ----------
    snapshot : dict of np.ndarray

    Returns
    -------
    losses : np.ndarray, shape (N,), float32
        ``selection_loss`` where finite, else ``student_loss``, else
        ``teacher_loss``; NaN where none is known. Lower = more likely clean.
    source : np.ndarray, shape (N,), int8
        Index into :data:`LOSS_FIELDS` of the loss used, -1 where none.
    """
    n = len(snapshot["refined"])
    losses = np.full(n, np.nan, dtype=np.float32)
    source = np.full(n, -1, dtype=np.int8)
    for i, name in enumerate(LOSS_FIELDS):
        values = snapshot.get(name)
        if values is None:
            continue
        take = np.isnan(losses) & np.isfinite(values)
        losses[take] = values[take]
        source[take] = i
    return losses, source


def cutoff_switches(losses: np.ndarray, easy: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Samples that a different small-loss cut-off would move across it.

    Parameters
    ----------
    losses : np.ndarray, shape (N,)
        NaN losses never switch.
    easy : np.ndarray, shape (N,), bool
        The step's 'easy' flags.
    cutoff : float
        The new cut-off: a loss ``<= cutoff`` is easy.

    Returns
    -------
    to_easy : np.ndarray of int64
        Not easy now, easy under ``cutoff``, ascending loss.
    to_hard : np.ndarray of int64
        Easy now, not under ``cutoff``, descending loss.
    """
    losses = np.asarray(losses, dtype=np.float64)
    easy = np.asarray(easy, dtype=bool)
    known = np.isfinite(losses)
    new_easy = known & (losses <= cutoff)
    to_easy = np.flatnonzero(new_easy & ~easy & known)
    to_hard = np.flatnonzero(~new_easy & easy & known)
    return (to_easy[np.argsort(losses[to_easy], kind="stable")],
            to_hard[np.argsort(-losses[to_hard], kind="stable")])


#: Snapshot fields :func:`step_values` reads.
TRAJECTORY_FIELDS = ("refined", "weight", "weight_given") + LOSS_FIELDS


def step_values(store: RunStore, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample loss and AWE weights of one step, reading only those fields.

    Returns
    -------
    loss, weight, weight_given : np.ndarray, shape (N,), float32
        See :func:`trajectories`.
    """
    path = store.snapshot_path(step)
    if not path.is_file():
        raise UserError(f"run {str(store.path)!r} has no snapshot for step {step}")
    with np.load(path, allow_pickle=False) as data:  # npz members load lazily: skip the features
        snap = {name: data[name] for name in TRAJECTORY_FIELDS if name in data.files}
    return (per_sample_loss(snap)[0], snap["weight"].astype(np.float32),
            snap["weight_given"].astype(np.float32))


def trajectories(store: RunStore) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Loss and AWE weights of every sample at every step.

    Parameters
    ----------
    store : RunStore

    Returns
    -------
    steps : np.ndarray, shape (T,), int
    losses : np.ndarray, shape (T, N), float32
        :func:`per_sample_loss` of each step.
    weights : np.ndarray, shape (T, N), float32
        ``weight`` (of the label trained on) of each step; NaN where none.
    weights_given : np.ndarray, shape (T, N), float32
        ``weight_given`` (of the given label) of each step; NaN where none.
    """
    steps = store.steps()
    if not steps:
        empty = np.zeros((0, 0), np.float32)
        return np.zeros(0, int), empty, empty, empty
    losses, weights, weights_given = zip(*(step_values(store, step) for step in steps))
    return np.asarray(steps), np.stack(losses), np.stack(weights), np.stack(weights_given)


def flipped_samples(given: np.ndarray, refined: np.ndarray, true: np.ndarray | None = None,
                    limit: int = 4, losses: np.ndarray | None = None) -> np.ndarray:
    """A few samples worth following: relabelled ones (``refined != given``),
    those the refinery fixed first.

    Parameters
    ----------
    given, refined : np.ndarray, shape (N,)
    true : np.ndarray, shape (N,), optional
        -1 where unknown; when given, samples the refinery fixed
        (``refined == true``) come before the other relabelled ones.
    limit : int
    losses : np.ndarray, shape (N,), optional
        When nothing was relabelled (a plain CE run): the samples with a wrong
        given label, else the largest losses.

    Returns
    -------
    np.ndarray of int64, at most ``limit`` indices
    """
    given, refined = np.asarray(given), np.asarray(refined)
    flipped = np.flatnonzero(given != refined)
    if true is not None:
        fixed = np.asarray(true)[flipped] == refined[flipped]
        flipped = np.concatenate([flipped[fixed], flipped[~fixed]])
    if not flipped.size and true is not None:
        true = np.asarray(true)
        flipped = np.flatnonzero((true >= 0) & (true != given))
    if not flipped.size and losses is not None:
        losses = np.asarray(losses, dtype=np.float64)
        flipped = np.argsort(-np.where(np.isfinite(losses), losses, -np.inf), kind="stable")
    return flipped[:limit].astype(np.int64)


# ---------------------------------------------------------------------- neighbourhood


def neighbourhood(neighbor_idx: np.ndarray, center: int, hops: int = 1) -> np.ndarray:
    """Nodes within ``hops`` out-edges of ``center`` in a kNN graph.

    Parameters
    ----------
    neighbor_idx : np.ndarray, shape (N, k), int
    center : int
    hops : int
        1 or 2.

    Returns
    -------
    np.ndarray of int64, shape (M,)
        ``center`` first, then its neighbours (most similar first), then the
        2-hop nodes in order of discovery; no repeats.
    """
    n = neighbor_idx.shape[0]
    if not 0 <= center < n:
        raise UserError(f"sample index {center} is out of range; valid: 0..{n - 1}")
    if hops not in (1, 2):
        raise UserError(f"hops={hops} is not supported; valid: 1, 2")
    order = [int(center)]
    frontier = [int(center)]
    seen = {int(center)}
    for _ in range(hops):
        nxt = []
        for node in frontier:
            for j in neighbor_idx[node]:
                j = int(j)
                if j >= 0 and j not in seen:
                    seen.add(j)
                    order.append(j)
                    nxt.append(j)
        frontier = nxt
    return np.asarray(order, dtype=np.int64)


def neighbourhood_edges(neighbor_idx: np.ndarray, neighbor_sim: np.ndarray, nodes: np.ndarray,
                        power: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """kNN edges among ``nodes``, with their similarity and weight.

    Parameters
    ----------
    neighbor_idx, neighbor_sim : np.ndarray, shape (N, k)
    nodes : np.ndarray, shape (M,), int
    power : float
        Edge weight ``max(s, 0) ** power`` as in :func:`engine.graph.affinity`.

    Returns
    -------
    edges : np.ndarray, shape (E, 2), int64
        Positions in ``nodes`` (source, neighbour); an undirected pair listed
        in both kNN lists appears once.
    similarity : np.ndarray, shape (E,), float32
    weight : np.ndarray, shape (E,), float32
    """
    position = {int(node): i for i, node in enumerate(nodes)}
    pairs: dict[tuple[int, int], float] = {}
    for i, node in enumerate(nodes):
        for j, s in zip(neighbor_idx[node], neighbor_sim[node]):
            p = position.get(int(j))
            if p is None or p == i:
                continue
            key = (min(i, p), max(i, p))
            pairs[key] = max(pairs.get(key, -np.inf), float(s))
    if not pairs:
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32)
    edges = np.array(list(pairs), dtype=np.int64)
    similarity = np.array(list(pairs.values()), dtype=np.float32)
    return edges, similarity, np.maximum(similarity, 0) ** np.float32(power)


# ---------------------------------------------------------------------- seeds + relabelling


def step_seeds(snapshot: dict, phase: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Seed labels and weights of a step's propagation.

    Parameters
    ----------
    snapshot : dict of np.ndarray
    phase : str
        The step's phase.

    Returns
    -------
    labels : np.ndarray, shape (N,), int64
    weights : np.ndarray, shape (N,), float32, or None (unweighted)
    """
    teacher_pred = snapshot["teacher_pred"].astype(np.int64)
    if phase == "propagate":
        labels, weights = teacher_pred, None
    else:
        working = snapshot["working"].astype(np.int64)
        labels = np.where(working >= 0, working, teacher_pred)
        # The exact seed weights when the step stored them; else the AWE weight.
        weight = snapshot.get("seed_weight", snapshot["weight"]).astype(np.float32)
        weights = np.where(np.isfinite(weight) & (weight >= 0), weight, 1.0).astype(np.float32)
    if labels.size and labels.min() < 0:
        raise UserError("this step holds neither working labels nor teacher predictions to seed a propagation")
    return labels, weights


def relabel(phase: str, result_labels: np.ndarray, confidence: np.ndarray, given: np.ndarray,
            snapshot: dict, keep_fraction: float) -> np.ndarray:
    """Labels a step would end with after a propagation.

    Parameters
    ----------
    phase : str
    result_labels : np.ndarray, shape (N,)
        ``argmax`` of the propagation scores.
    confidence : np.ndarray, shape (N,)
    given : np.ndarray, shape (N,)
    snapshot : dict
        Supplies ``working`` and ``easy`` in stages 1-2.
    keep_fraction : float
        Fraction of least-confident samples that keep their label from
        before the propagation (given in stage 0, working in stages 1-2).

    Returns
    -------
    np.ndarray, shape (N,), int64
    """
    if not 0 <= keep_fraction < 1:
        raise UserError(f"relabel percentile {100 * keep_fraction:g}% is out of range; valid: 0..<100")
    refined = np.asarray(result_labels, dtype=np.int64).copy()
    before = np.asarray(given, dtype=np.int64)
    if phase != "propagate":
        working = snapshot["working"].astype(np.int64)
        before = np.where(working >= 0, working, before)
        refined = np.where(snapshot["easy"], before, refined)
    keep = int(round(keep_fraction * len(refined)))
    least_confident = np.argsort(confidence, kind="stable")[:keep]
    refined[least_confident] = before[least_confident]
    return refined


def confidence_cutoff(confidence: np.ndarray, keep_fraction: float) -> float | None:
    """Largest confidence among the ``keep_fraction`` least confident (None if none)."""
    keep = int(round(keep_fraction * len(confidence)))
    return float(np.sort(confidence)[keep - 1]) if keep > 0 else None


# ---------------------------------------------------------------------- replay + what-if


def snapshot_graph(snapshot: dict, power: float):
    """``Wn (N, N)`` of the graph a step stored (see :func:`engine.graph.affinity`)."""
    if "neighbor_idx" not in snapshot:
        raise UserError("this step stored no kNN graph")
    w = affinity(snapshot["neighbor_idx"].astype(np.int64), snapshot["neighbor_sim"].astype(np.float32), power)
    return normalize_affinity(w)


def replay(snapshot: dict, phase: str, num_classes: int, graph: GraphConfig,
           propagation: PropagationConfig, nodes: np.ndarray) -> PropagationResult:
    """Re-run a step's propagation on its stored graph, recording ``nodes`` at
    every iteration (``history[t]`` is ``(len(nodes), C)``; 0 = seeds)."""
    labels, weights = step_seeds(snapshot, phase)
    seeds = seed_matrix(labels, num_classes, weights)
    return propagate(snapshot_graph(snapshot, graph.power), seeds, propagation, record_nodes=nodes,
                     record_iters=range(propagation.max_iter + 1))


def graph_features(store: RunStore, step: int, snapshot: dict) -> np.ndarray | None:
    """Features the step built its propagation graph on, or ``None``.

    The graph was the teacher's unless the step's metrics say
    ``graph_source == 'student'`` (stage 2, every other epoch), whose graph is
    built on the snapshot's (student) features.
    """
    metrics = next((m for m in store.metrics() if m.get("step") == step), {})
    if metrics.get("graph_source") == "student" or metrics.get("phase") == "propagate":
        features = snapshot.get("features")
    else:
        features = store.teacher_features()
    return None if features is None else np.asarray(features, dtype=np.float32)


@dataclass
class WhatIf:
    """A propagation with other settings, against the step's own labels.

    Attributes
    ----------
    labels : np.ndarray, shape (N,), int64
        Labels the step would end with.
    changed : np.ndarray of int64
        Samples whose label differs from the step's ``refined``.
    confidence : np.ndarray, shape (N,), float32
    cutoff : float or None
        Confidence of the last sample that keeps its label (see ``keep_fraction``).
    seconds : float
        Wall time of graph + propagation + relabelling.
    """

    labels: np.ndarray
    changed: np.ndarray
    confidence: np.ndarray
    cutoff: float | None
    seconds: float


def what_if(features: np.ndarray, snapshot: dict, phase: str, given: np.ndarray, num_classes: int,
            graph: GraphConfig, propagation: PropagationConfig, keep_fraction: float,
            stored_graph: GraphConfig | None = None) -> WhatIf:
    """Propagate a step's seeds with other settings; the run is not touched.

    Parameters
    ----------
    features : np.ndarray, shape (N, D)
        Features of the step's graph (:func:`graph_features`).
    snapshot : dict
    phase : str
    given : np.ndarray, shape (N,)
    num_classes : int
    graph : GraphConfig
        ``k`` and ``power`` to try.
    propagation : PropagationConfig
        ``alpha`` to try.
    keep_fraction : float
        See :func:`relabel`.
    stored_graph : GraphConfig, optional
        The step's own graph settings: when ``graph.k`` equals them the stored
        kNN lists are reused instead of searched again.

    Returns
    -------
    WhatIf
    """
    if phase not in LP_PHASES:
        raise UserError(f"a {phase!r} step runs no propagation; valid phases: {', '.join(LP_PHASES)}")
    started = time.perf_counter()
    if stored_graph is not None and graph.k == stored_graph.k and "neighbor_idx" in snapshot:
        normalized = snapshot_graph(snapshot, graph.power)
    else:
        n = features.shape[0]
        if graph.k >= n:
            raise UserError(f"k={graph.k} must be smaller than the number of samples ({n})")
        normalized = build_graph(features, graph).normalized
    labels, weights = step_seeds(snapshot, phase)
    result = propagate(normalized, seed_matrix(labels, num_classes, weights), propagation)
    refined = relabel(phase, result.labels, result.confidence, given, snapshot, keep_fraction)
    changed = np.flatnonzero(refined != snapshot["refined"])
    return WhatIf(refined, changed, result.confidence, confidence_cutoff(result.confidence, keep_fraction),
                  time.perf_counter() - started)

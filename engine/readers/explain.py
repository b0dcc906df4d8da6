"""Explanations of a step, for the app and the CLI: per-sample losses, the
kNN neighbourhood of a sample, a replay of the step's label propagation
recorded iteration by iteration, why a sample has its label, and what-if
propagations with other settings.

A replay is the step: seeds come from :func:`engine.rundir.snapshot.step_seeds`, the
graph from :func:`engine.rundir.snapshot.step_graph`, and the relabelling from
:func:`engine.method.refinery.relabel`, the same rules the step machine called. With
the step's own settings (:func:`step_settings`) a what-if changes no label.

Nothing here writes to the run directory: a what-if is computed from a step's
snapshot and thrown away.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from ..method import refinery
from ..rundir import snapshot as snap
from ..method.config import GraphConfig, PropagationConfig, RunConfig, declared
from ..errors import UserError
from ..method.stages import LP_PHASES
from ..method.propagate import PropagationResult, propagate
from ..method.refinery import Reason, Relabelling
from ..rundir.store import RunStore

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


def easy_under(losses: np.ndarray, cutoff: float, rule: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Mask (N,) of the samples a step would take as 'easy' with small-loss cut-off ``cutoff``: a loss ``<= cutoff``
    where the step's rule lets a sample be easy by its loss, and every reviewed sample (``rule`` from
    :func:`easy_rule`; None: the loss alone)."""
    losses = np.asarray(losses, dtype=np.float64)
    easy = np.isfinite(losses) & (losses <= cutoff)
    if rule is not None:
        allowed, reviewed = rule
        easy = (easy & allowed) | reviewed
    return easy


def easy_rule(snapshot: dict[str, np.ndarray], given: np.ndarray, config: RunConfig) -> tuple[np.ndarray, np.ndarray]:
    """What besides its loss decides whether a sample of this step is easy, as the step decided it:
    ``(allowed, reviewed)``. The calibrated rule (estimated noise rate) lets a small-loss sample be easy only
    where the step's posterior supports its given label (:func:`engine.method.refinery.supported_easy`);
    reviewed samples are easy whatever their loss."""
    n = len(given)
    allowed = np.ones(n, dtype=bool)
    if config.relabel_rule == "calibrated" and config.noise_rate is None and "posterior" in snapshot:
        allowed = refinery.supported_easy(allowed, given, np.asarray(snapshot["posterior"], np.float32))
    reviewed = np.asarray(snapshot.get("clamped", np.full(n, -1)), dtype=np.int64) >= 0
    return allowed, reviewed


def cutoff_switches(losses: np.ndarray, easy: np.ndarray, cutoff: float,
                    rule: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Samples that a different small-loss cut-off would move across it.

    Parameters
    ----------
    losses : np.ndarray, shape (N,)
        NaN losses never switch.
    easy : np.ndarray, shape (N,), bool
        The step's 'easy' flags.
    cutoff : float
        The new cut-off: a loss ``<= cutoff`` is easy (where the step's ``rule`` lets it be: :func:`easy_rule`).

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
    new_easy = easy_under(losses, cutoff, rule)
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
    arrays = snap.read(store, step, TRAJECTORY_FIELDS)  # lazily: the features are never decompressed
    return (per_sample_loss(arrays)[0], arrays["weight"].astype(np.float32),
            arrays["weight_given"].astype(np.float32))


def trajectories(store: RunStore, samples=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Loss and AWE weights of every sample (or only of ``samples``: only their rows are read) at every step.

    Parameters
    ----------
    store : RunStore
    samples : array of int, shape (M,), optional

    Returns
    -------
    steps : np.ndarray, shape (T,), int
    losses : np.ndarray, shape (T, N) (or (T, M)), float32
        :func:`per_sample_loss` of each step.
    weights : np.ndarray, shape (T, N) (or (T, M)), float32
        ``weight`` (of the label trained on) of each step; NaN where none.
    weights_given : np.ndarray, shape (T, N) (or (T, M)), float32
        ``weight_given`` (of the given label) of each step; NaN where none.
    """
    steps = store.steps()
    if not steps:
        empty = np.zeros((0, 0), np.float32)
        return np.zeros(0, int), empty, empty, empty
    if samples is None:
        losses, weights, weights_given = zip(*(step_values(store, step) for step in steps))
        return np.asarray(steps), np.stack(losses), np.stack(weights), np.stack(weights_given)
    steps, values = snap.history(store, TRAJECTORY_FIELDS, steps, samples=samples)
    losses = np.stack([per_sample_loss({name: values[name][t] for name in TRAJECTORY_FIELDS})[0]
                       for t in range(len(steps))])
    return steps, losses, values["weight"].astype(np.float32), values["weight_given"].astype(np.float32)


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
        Edge weight ``max(s, 0) ** power`` as in :func:`engine.method.graph.affinity`.

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



# ---------------------------------------------------------------------- replay + what-if


@dataclass(frozen=True)
class StepSettings:
    """The settings a propagating step ran with (a what-if starts from these).

    ``keep_least_confident`` is the fraction of least confident samples that
    keep their label (stage 0 with the noise rate unknown: the run's
    ``keep_least_confident``; stages 1-2: 0). ``noise_rate`` is stage 0's
    known rate (its 'support' rule), else None. ``relabel_rule`` is
    ``'calibrated'`` where the step filtered the proposals by its stored
    posterior (stage 0; stages 1-2 when the rate was estimated), else
    ``'authors'``.
    """

    k: int
    power: float
    alpha: float
    keep_least_confident: float
    noise_rate: float | None
    relabel_rule: str = "authors"

    @property
    def rule(self) -> str:
        return "support" if self.noise_rate is not None else "confidence"


def step_settings(config: RunConfig, phase: str) -> StepSettings:
    """The own settings of a ``phase`` step of a run with ``config``."""
    stage0 = phase == "propagate"
    return StepSettings(k=config.graph.k, power=float(config.graph.power), alpha=float(config.propagation.alpha),
                        keep_least_confident=float(config.train.keep_least_confident) if stage0 else 0.0,
                        noise_rate=config.noise_rate if stage0 else None,
                        relabel_rule=config.relabel_rule if stage0 or config.noise_rate is None else "authors")


def _check_phase(phase: str) -> None:
    if phase not in LP_PHASES:
        raise UserError(f"a {phase!r} step runs no propagation; valid phases: {', '.join(LP_PHASES)}")


def replay(snapshot: dict, phase: str, num_classes: int, graph: GraphConfig,
           propagation: PropagationConfig, nodes: np.ndarray) -> PropagationResult:
    """Re-run a step's propagation on its stored graph, recording ``nodes`` at
    every iteration (``history[t]`` is ``(len(nodes), C)``; 0 = seeds)."""
    _check_phase(phase)
    seeds = snap.step_seeds(snapshot, phase, num_classes)
    return propagate(snap.step_graph(snapshot, graph.power), seeds.matrix(num_classes), propagation,
                     record_nodes=nodes, record_iters=range(propagation.max_iter + 1))


def stored_history(snapshot: dict, phase: str, num_classes: int, nodes: np.ndarray,
                   iterations: int) -> dict[int, np.ndarray]:
    """A step's propagation at ``nodes`` as the step stored it, without propagating again: the seeds and
    the outcome, for a run too large to replay on every look (:func:`replay` solves for every sample).

    Parameters
    ----------
    nodes : np.ndarray of int, shape (M,)
    iterations : int
        The iterations the step ran (its metrics' ``lp_iterations``): the outcome's key.

    Returns
    -------
    dict
        ``{0: seeds (M, C), iterations: scores (M, C)}``, normalised as :func:`replay`'s history: a seed
        row is one-hot (zero where the sample seeded nothing); the outcome row holds the stored top classes'
        scores (``lp_top_scores``, the other classes 0).
    """
    _check_phase(phase)
    nodes = np.asarray(nodes, np.int64)
    seeds = snap.step_seeds(snapshot, phase, num_classes)
    seed_rows = np.zeros((len(nodes), num_classes), np.float32)
    seeded = (seeds.labels[nodes] >= 0) & (seeds.weights[nodes] > 0)
    seed_rows[np.flatnonzero(seeded), seeds.labels[nodes][seeded]] = 1.0
    outcome = np.zeros((len(nodes), num_classes), np.float32)
    top = np.asarray(snapshot["lp_top_classes"][nodes], np.int64)  # (M, T)
    scores = np.asarray(snapshot["lp_top_scores"][nodes], np.float32)  # (M, T)
    for column in range(top.shape[1]):
        rows = np.flatnonzero(top[:, column] >= 0)
        outcome[rows, top[rows, column]] = scores[rows, column]
    return {0: seed_rows, max(int(iterations), 1): outcome}


def relabel_step(snapshot: dict, phase: str, given: np.ndarray, num_classes: int, settings: StepSettings,
                 features: np.ndarray | None = None, clamped_labels: np.ndarray | None = None,
                 outlier_mask: np.ndarray | None = None, normalized=None) -> tuple[PropagationResult, Relabelling]:
    """Replay a step's propagation and relabelling with ``settings``.

    The graph is the step's stored kNN graph when ``settings.k`` is its k
    (edge weights recomputed with ``settings.power``), else rebuilt from
    ``features`` (:func:`graph_features`). ``clamped_labels`` /
    ``outlier_mask``, when given, are reviews applied on top of the step's own
    seeds (the ripple); otherwise the step's own reviews, already in its seeds.
    ``normalized`` (the step's ``Wn``, from :func:`engine.rundir.snapshot.step_graph`)
    saves rebuilding it when replaying one step many times.
    """
    _check_phase(phase)
    n = len(given)
    seeds = snap.step_seeds(snapshot, phase, num_classes)
    working = np.asarray(snapshot["working"], np.int64)
    easy = np.asarray(snapshot["easy"], bool)
    own_clamps = snapshot.get("clamped", np.full(n, -1, np.int64))
    clamps = own_clamps
    if clamped_labels is not None or outlier_mask is not None:
        clamps = np.full(n, -1, np.int64) if clamped_labels is None else np.asarray(clamped_labels, np.int64)
        outliers = np.zeros(n, bool) if outlier_mask is None else np.asarray(outlier_mask, bool)
        seeds, working, easy, _ = refinery.clamp_seeds(seeds, num_classes, working, easy, clamps, outliers)
        clamps = np.where(clamps >= 0, clamps, own_clamps)
    stored_k = snapshot["neighbor_idx"].shape[1] if "neighbor_idx" in snapshot else None
    if normalized is not None:
        pass
    elif settings.k == stored_k or features is None:
        normalized = snap.step_graph(snapshot, settings.power, settings.k)
    else:
        normalized = snap.step_graph({"features": features}, settings.power, settings.k)
    config = replace(PropagationConfig(), alpha=settings.alpha)
    result = propagate(normalized, seeds.matrix(num_classes), config)
    posterior = snapshot.get("posterior")
    relabelling = refinery.relabel(phase, given, working, easy, result, settings.noise_rate,
                                   settings.keep_least_confident, clamps, rule=settings.relabel_rule,
                                   posterior=None if posterior is None else np.asarray(posterior, np.float32),
                                   previous=snapshot.get("previous"), audit_verdict=snapshot.get("audit_verdict"))
    return result, relabelling


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
        features = store.graph_features()
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
    relabelling : Relabelling
        Why each sample would have its label (:class:`engine.method.refinery.Reason`).
    settings : StepSettings
        The settings tried.
    seconds : float
        Wall time of graph + propagation + relabelling.
    """

    labels: np.ndarray
    changed: np.ndarray
    confidence: np.ndarray
    relabelling: Relabelling
    settings: StepSettings
    seconds: float

    @property
    def cutoff(self) -> float | None:
        return self.relabelling.cutoff

    def counts(self, refined: np.ndarray, true: np.ndarray | None, known: bool | None = None) -> dict:
        """``changed``, and where the truth is known ``to_correct`` / ``to_wrong`` (``known``: whether any
        truth is, as :meth:`engine.rundir.store.RunStore.truth_known` says; None: told from every row of
        ``true``). With ``known`` given, only the changed rows of ``refined`` and ``true`` are read."""
        out = {"changed": int(len(self.changed)), "to_correct": None, "to_wrong": None}
        if known is None:
            known = true is not None and bool((np.asarray(true) >= 0).any())
        if true is not None and known:
            c = self.changed
            out["to_correct"] = int(np.sum(self.labels[c] == true[c]))
            out["to_wrong"] = int(np.sum(refined[c] == true[c]))
        return out


def what_if(store: RunStore, step: int, k: int | None = None, alpha: float | None = None,
            power: float | None = None, keep_least_confident: float | None = None,
            num_classes: int | None = None) -> WhatIf:
    """Propagate step ``step`` again with other settings (None: the step's own); the run is not touched.

    Raises
    ------
    UserError
        The step ran no propagation, or a setting is out of range.
    """
    started = time.perf_counter()
    phase = step_phase(store, step)
    _check_phase(phase)
    own = step_settings(store.config(), phase)
    if keep_least_confident is not None:  # the run setting's range (engine.method.config declares it)
        declared()["keep_least_confident"].setting.check(keep_least_confident)
    try:
        settings = StepSettings(k=own.k if k is None else int(k), power=own.power if power is None else float(power),
                                alpha=own.alpha if alpha is None else float(alpha),
                                keep_least_confident=own.keep_least_confident if keep_least_confident is None
                                else float(keep_least_confident), noise_rate=own.noise_rate,
                                relabel_rule=own.relabel_rule)
        GraphConfig(k=settings.k, power=settings.power)
        PropagationConfig(alpha=settings.alpha)
    except (TypeError, ValueError) as exc:
        raise UserError(str(exc)) from None
    snapshot = store.snapshot(step)
    given = store.dataset_arrays()["given"].astype(np.int64)
    num_classes = num_classes or len(store.class_names())
    features = graph_features(store, step, snapshot)
    result, relabelling = relabel_step(snapshot, phase, given, num_classes, settings, features)
    changed = np.flatnonzero(relabelling.labels != snapshot["refined"])
    return WhatIf(relabelling.labels, changed, result.confidence, relabelling, settings,
                  time.perf_counter() - started)


def step_phase(store: RunStore, step: int) -> str:
    """The phase step ``step`` ran in (from its metrics line)."""
    for m in store.metrics():
        if m.get("step") == step:
            return m.get("phase", "")
    raise UserError(f"run {str(store.path)!r} has no step {step}; steps: {store.steps()[-5:]}")


def propagating_steps(store: RunStore) -> list[int]:
    """Steps whose phase ran a label propagation, in order."""
    return [m["step"] for m in store.metrics() if m.get("phase") in LP_PHASES and "step" in m]


# ---------------------------------------------------------------------- kept by the calibrated rule
def kept_given(snapshot: dict, sample: int, given: int, config: RunConfig,
               phase: str) -> tuple[int, float, float] | None:
    """Where a step's calibrated rule kept ``sample``'s given label although the propagation favoured another
    class: ``(that class, P(given label), P(that class))`` from the step's posterior; None elsewhere.

    Read from the snapshot alone (no replay): the step ran the calibrated rule (:func:`step_settings`), the sample
    ended with its given label, the propagation's argmax (``lp_labels``) is another class, the sample was
    neither 'easy' (kept unexamined) nor reviewed, and :func:`engine.method.refinery.calibrated_filter` on its
    posterior row keeps the given label against that class (:attr:`Reason.KEPT_GIVEN`).
    """
    if phase not in LP_PHASES or step_settings(config, phase).relabel_rule != "calibrated" or \
            any(name not in snapshot for name in ("posterior", "lp_labels", "refined")):
        return None
    proposed, given = int(snapshot["lp_labels"][sample]), int(given)
    if int(snapshot["refined"][sample]) != given or proposed == given:
        return None
    if ("easy" in snapshot and bool(snapshot["easy"][sample])) or \
            ("clamped" in snapshot and int(snapshot["clamped"][sample]) >= 0):
        return None
    posterior = np.asarray(snapshot["posterior"][sample], np.float32)[None]  # (1, C)
    proposal = Relabelling(np.array([proposed], np.int64), np.array([Reason.PROPAGATED], np.int8), "", None)
    if refinery.calibrated_filter(np.array([given]), proposal, posterior).reasons[0] != Reason.KEPT_GIVEN:
        return None
    return proposed, float(posterior[0, given]), float(posterior[0, proposed])


# ---------------------------------------------------------------------- why


def why(sample: int, relabelling: Relabelling, given: np.ndarray, working: np.ndarray, names,
        confidence: float, keep_least_confident: float = 0.0, noise_rate: float | None = None) -> str:
    """One or two sentences (Markdown): why ``sample`` has its label after a replayed step.

    Built from the :class:`~engine.method.refinery.Reason` the step's own rule gave
    the sample, so the text cannot disagree with what the step did.
    """
    label, g = int(relabelling.labels[sample]), int(given[sample])
    reason = Reason(int(relabelling.reasons[sample]))
    cut = relabelling.cutoff
    if reason == Reason.REVIEWED:
        return f"A reviewer set its label: it is a fixed seed, **{names[label]}**."
    if reason == Reason.KEPT_UNSURE:
        return (f"Its propagation confidence {confidence:.3f} is among the {keep_least_confident:.0%} least "
                f"confident (cut-off {cut:.3f}), so it **kept its given label {names[g]}**.")
    if reason == Reason.KEPT_SUPPORTED:
        return (f"The noise rate is known ({noise_rate:.0%}): only the {noise_rate:.0%} of samples whose given "
                f"label the propagation supports least may change, and its given label is supported better "
                f"than that (cut-off score {cut:.3f}), so it **kept its given label {names[g]}**.")
    if reason == Reason.KEPT_EASY:
        return (f"Its loss was among the smallest (an *easy* sample), so it **kept its label "
                f"{names[int(working[sample])]}** whatever the propagation said.")
    if reason == Reason.KEPT_LEAST_CONFIDENT:
        return (f"Its propagation confidence {confidence:.3f} is among the {keep_least_confident:.0%} least "
                f"confident, so it **kept its working label {names[int(working[sample])]}**.")
    if reason == Reason.KEPT_GIVEN:
        proposed = "another label" if relabelling.proposed is None else names[int(relabelling.proposed[sample])]
        return (f"The propagation proposed **{proposed}**, but the calibrated posterior does not favour it over the given label, so it **kept its given "
                f"label {names[g]}**.")
    if reason == Reason.KEPT_AUDIT:
        proposed = "another label" if relabelling.proposed is None else names[int(relabelling.proposed[sample])]
        return (f"The propagation proposed **{proposed}**, but on the random audit the step's changes as unsure as "
                f"this one did not fix more labels than they broke, so it **kept its label {names[label]}**.")
    if reason == Reason.KEPT_PREVIOUS:
        return (f"The step's estimated precision fell below that of the labels before it, so it **kept its "
                f"previous label {names[label]}**.")
    verb = "kept" if label == g else "was relabelled"
    base_rule, _, calibrated = relabelling.rule.partition("+")
    if calibrated and label != g:
        verb = "was relabelled (the calibrated posterior favours the new label)"
    if base_rule == "support":
        return (f"Its given label is among the {noise_rate:.0%} the propagation supports least (score at most "
                f"{cut:.3f}), so it took the propagated label: it **{verb} {names[g]} → {names[label]}** "
                f"(confidence {confidence:.3f}).")
    if base_rule == "confidence":
        above = f"above the cut-off {cut:.3f}" if cut is not None else "not cut (no sample keeps its label)"
        return (f"Its confidence {confidence:.3f} is {above}, so it took the propagated label: it "
                f"**{verb} {names[g]} → {names[label]}**.")
    return (f"Its loss was not among the smallest, so its label came from the student "
            f"({names[int(working[sample])]}) and then from the propagation: **{names[g]} → {names[label]}** "
            f"(confidence {confidence:.3f}).")

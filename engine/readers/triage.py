"""What to review, and what a review changes: the queue, its orders
(expected change, ambiguity, confidence, expected impact), bulk candidates,
and the re-propagation of a step with reviewers' clamps (the ripple).

The default queue ranks by *expected change*: the chance that a review
changes the sample's label, estimated as one minus the probability the step's
sources (student, teacher, propagation; their mean) give the given label
(:func:`given_label_probability`). Samples whose proposal differs from the
given label, and samples whose given label the sources doubt (expected change
>= 0.5) are "worth reviewing"; the rest, where accepting the proposal and
keeping the given label are the same decision and the method is sure of it,
stay out of the default queue, which holds at most :data:`QUEUE_FRACTION` of
the samples (:func:`build_queue`). ``bench/review_queue.py`` compares it with
cleanlab's self-confidence ranking (the student's probability of the given
label, lowest first).

Pure functions over a step's snapshot; the decisions themselves live in
:mod:`engine.rundir.review`.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from ..rundir.review import run_class_names

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- what to review
#: Why a sample is in the review queue.
FLAGS = ("relabelled", "ambiguous", "low confidence")
#: Orders of the queue: largest expected change, most ambiguous, least confident, largest expected impact first.
ORDERS = ("change", "ambiguity", "confidence", "impact")
#: Which samples the queue holds: see :func:`build_queue`.
QUEUE_FILTERS = ("worth reviewing", "relabelled", "ambiguous", "low confidence", "disputed", "reviewed", "all")
#: Default queue size, as a fraction of the samples.
QUEUE_FRACTION = 0.2
#: Expected change from which a sample whose proposal is its given label is still worth reviewing.
UNSURE_CHANGE = 0.5
#: (classes, probabilities) field pairs of a snapshot whose probability of the given label counts.
PROBABILITY_SOURCES = (("student_top", "student_prob"), ("teacher_top", "teacher_prob"),
                       ("lp_top_classes", "lp_top_scores"))


def ambiguity(snapshot: dict[str, np.ndarray]) -> np.ndarray:
    """How ambiguous each sample's label is, in [0, 1] (higher = more ambiguous).

    ``1 - AWE weight`` where the step has weights; else one minus the margin
    between the two best propagation scores; else between the student's (or
    teacher's) two best probabilities; else 0.
    """
    n = len(snapshot["refined"])
    weight = np.asarray(snapshot.get("weight", np.full(n, np.nan)), dtype=np.float64)
    score = 1.0 - weight
    for name in ("lp_top_scores", "student_prob", "teacher_prob"):
        if name in snapshot:
            top = np.asarray(snapshot[name], dtype=np.float64)
            margin = 1.0 - (top[:, 0] - top[:, 1]) if top.shape[1] > 1 else np.zeros(n)
            score = np.where(np.isfinite(score), score, margin)
    return np.clip(np.nan_to_num(score, nan=0.0), 0.0, 1.0)


def review_flags(snapshot: dict[str, np.ndarray], given: np.ndarray, fraction: float = 0.1) -> dict[str, np.ndarray]:
    """Masks (N,) of the samples flagged for review, one per :data:`FLAGS`.

    ``relabelled``: refined label differs from the given one; ``ambiguous``:
    the ``fraction`` with the highest :func:`ambiguity`; ``low confidence``:
    the ``fraction`` with the lowest propagation confidence (none when the
    step did not propagate).
    """
    n = len(given)
    count = int(np.ceil(fraction * n))
    ambiguous = np.zeros(n, bool)
    ambiguous[np.argsort(-ambiguity(snapshot), kind="stable")[:count]] = True
    low = np.zeros(n, bool)
    if "lp_confidence" in snapshot:
        low[np.argsort(np.asarray(snapshot["lp_confidence"]), kind="stable")[:count]] = True
    return {"relabelled": np.asarray(snapshot["refined"]) != given, "ambiguous": ambiguous, "low confidence": low}


def top_k_probability(top_classes: np.ndarray, top_probs: np.ndarray, labels: np.ndarray,
                      num_classes: int) -> np.ndarray:
    """Probability of ``labels`` from a top-k summary of a distribution.

    Parameters
    ----------
    top_classes, top_probs : np.ndarray, shape (N, k)
        The k most likely classes and their probabilities.
    labels : np.ndarray, shape (N,)
    num_classes : int

    Returns
    -------
    np.ndarray, shape (N,), float64
        The label's probability where it is among the top k; else the mass
        left outside the top k, spread evenly over the other classes.
    """
    top_classes = np.asarray(top_classes, dtype=np.int64)
    top_probs = np.asarray(top_probs, dtype=np.float64)
    hit = top_classes == np.asarray(labels, dtype=np.int64)[:, None]
    rest = np.clip(1.0 - top_probs.sum(axis=1), 0.0, 1.0) / max(num_classes - top_classes.shape[1], 1)
    return np.where(hit.any(axis=1), (top_probs * hit).sum(axis=1), rest)


def given_label_probability(snapshot: dict[str, np.ndarray], given: np.ndarray,
                            num_classes: int | None = None, sources=PROBABILITY_SOURCES) -> np.ndarray | None:
    """Mean probability (N,) that the step's sources give each sample's given label.

    The sources are the :data:`PROBABILITY_SOURCES` the snapshot holds
    (student, teacher, propagation); ``None`` when it holds none. Higher =
    the given label looks right.
    """
    given = np.asarray(given, dtype=np.int64)
    found = [(snapshot[c], snapshot[p]) for c, p in sources if c in snapshot and p in snapshot]
    if not found:
        return None
    if num_classes is None:
        num_classes = int(max([given.max(initial=0)] + [np.asarray(c).max(initial=0) for c, _ in found])) + 1
    return np.mean([top_k_probability(c, p, given, num_classes) for c, p in found], axis=0)


def expected_change(snapshot: dict[str, np.ndarray], given: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """Chance (N,) in [0, 1] that a review changes a sample's label (higher = review first).

    ``1 - given_label_probability``; without probabilities in the snapshot,
    1 where the proposal differs from the given label, else its ambiguity / 2.
    """
    probability = given_label_probability(snapshot, given, num_classes)
    if probability is None:
        relabelled = np.asarray(snapshot["refined"]) != np.asarray(given)
        return np.where(relabelled, 1.0, ambiguity(snapshot) / 2)
    return np.clip(1.0 - probability, 0.0, 1.0)


def self_confidence_ranking(snapshot: dict[str, np.ndarray], given: np.ndarray,
                            num_classes: int | None = None) -> np.ndarray:
    """The baseline: all samples by the student's probability of the given label,
    lowest first (cleanlab's 'self_confidence' label-quality score).

    Returns
    -------
    np.ndarray, shape (N,), int64
    """
    probability = given_label_probability(snapshot, given, num_classes, sources=PROBABILITY_SOURCES[:1])
    if probability is None:
        raise UserError("this step's snapshot has no student probabilities; choose a warm-up or later step")
    return np.argsort(probability, kind="stable").astype(np.int64)


def worth_reviewing(snapshot: dict[str, np.ndarray], given: np.ndarray, change: np.ndarray | None = None) -> np.ndarray:
    """Mask (N,): the proposal differs from the given label, or the expected change is >= :data:`UNSURE_CHANGE`."""
    change = expected_change(snapshot, given) if change is None else change
    return (np.asarray(snapshot["refined"]) != np.asarray(given)) | (change >= UNSURE_CHANGE)


def build_queue(snapshot: dict[str, np.ndarray], given: np.ndarray, which: str = "worth reviewing",
                order: str = "change", fraction: float = QUEUE_FRACTION, classes=None,
                disputed: np.ndarray | None = None, reviewed: np.ndarray | None = None,
                impact: np.ndarray | None = None) -> np.ndarray:
    """The review queue: indices, in review order, at most ``ceil(fraction * N)``.

    Parameters
    ----------
    which : str
        One of :data:`QUEUE_FILTERS`: ``worth reviewing`` (:func:`worth_reviewing`),
        one of :data:`FLAGS`, ``disputed`` (needs ``disputed``), ``reviewed``
        (needs ``reviewed``), or ``all``.
    order : str
        One of :data:`ORDERS`; ties fall back to expected change.
    fraction : float in (0, 1]
        Queue size as a fraction of the samples (the control that widens it).
    classes : iterable of int, optional
        Keep samples whose given or refined label is one of these.
    disputed, reviewed : np.ndarray, shape (N,), bool, optional
    impact : np.ndarray, shape (N,), optional
        For ``order="impact"`` (NaN where not computed).
    """
    given = np.asarray(given, dtype=np.int64)
    n = len(given)
    if which not in QUEUE_FILTERS:
        raise UserError(f"unknown queue {which!r}; valid: {', '.join(QUEUE_FILTERS)}")
    if order not in ORDERS:
        raise UserError(f"unknown queue order {order!r}; valid: {', '.join(ORDERS)}")
    if not 0.0 < fraction <= 1.0:
        raise UserError(f"queue fraction {fraction!r} must lie in (0, 1]")
    change = expected_change(snapshot, given)
    if which == "worth reviewing":
        keep = worth_reviewing(snapshot, given, change)
    elif which in FLAGS:
        keep = review_flags(snapshot, given)[which]
    elif which in ("disputed", "reviewed"):
        mask = disputed if which == "disputed" else reviewed
        keep = np.zeros(n, bool) if mask is None else np.asarray(mask, bool)
    else:
        keep = np.ones(n, bool)
    if classes is not None:
        chosen = np.asarray(list(classes), dtype=np.int64)
        keep = keep & (np.isin(given, chosen) | np.isin(snapshot["refined"], chosen))
    keys = [-change]
    if order == "ambiguity":
        keys.append(-ambiguity(snapshot))
    elif order == "confidence":
        conf = np.asarray(snapshot.get("lp_confidence", np.full(n, np.nan)), dtype=np.float64)
        keys.append(np.nan_to_num(conf, nan=np.inf))
    elif order == "impact":
        if impact is None:
            raise UserError("queue order 'impact' needs the expected impact of the samples")
        keys.append(-np.nan_to_num(np.asarray(impact, dtype=np.float64), nan=-1.0))
    ranked = np.lexsort(keys)  # the last key is the primary one
    return ranked[keep[ranked]][: int(np.ceil(fraction * n))].astype(np.int64)


def queue_precision(queue: np.ndarray, given: np.ndarray, true: np.ndarray, at: int) -> float | None:
    """Fraction of the first ``at`` queued samples whose given label is wrong (``None``: empty queue)."""
    head = np.asarray(queue, dtype=np.int64)[:at]
    if not len(head):
        return None
    return float(np.mean(np.asarray(given)[head] != np.asarray(true)[head]))


def bulk_candidates(snapshot: dict[str, np.ndarray], given: np.ndarray, reviewed: np.ndarray,
                    min_confidence: float, limit: int) -> np.ndarray:
    """Proposals to accept in bulk: relabelled, not yet reviewed samples whose
    propagation confidence is at least ``min_confidence``, most confident
    first, at most ``limit`` (empty when the step did not propagate).

    Parameters
    ----------
    reviewed : np.ndarray, shape (N,), bool
        Samples with an effective decision (left out).
    """
    if "lp_confidence" not in snapshot:
        return np.zeros(0, dtype=np.int64)
    confidence = np.asarray(snapshot["lp_confidence"], dtype=np.float64)
    eligible = (np.asarray(snapshot["refined"]) != given) & ~np.asarray(reviewed, bool) & (confidence >= min_confidence)
    rows = np.flatnonzero(eligible)
    return rows[np.argsort(-confidence[rows], kind="stable")][: max(int(limit), 0)].astype(np.int64)


# ---------------------------------------------------------------- re-propagation and its ripple
@contextmanager
def _one_thread():
    """Run torch on one CPU thread: these sparse products are small, and on a
    busy machine thread hand-off costs far more than it saves (20-50x here)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Ripple:
    """What clamping some labels does to one step's propagation.

    Attributes
    ----------
    before, after : np.ndarray, shape (N,), int64
        Labels of the replayed step without and with the clamps (``before``
        is the step's own refined labels: a replay is the step).
    changed : np.ndarray, int64
        Unclamped samples whose label changed (the ripple), by index.
    clamped : np.ndarray, int64
        Samples clamped by a reviewer.
    confidence : np.ndarray, shape (N,), float32
        Propagation confidence with the clamps.
    step : int
        The propagating step replayed.
    """

    before: np.ndarray
    after: np.ndarray
    changed: np.ndarray
    clamped: np.ndarray
    confidence: np.ndarray
    step: int = 0


@dataclass
class StepReplay:
    """A propagating step ready to be replayed with other clamps."""

    step: int
    phase: str
    snapshot: dict
    given: np.ndarray
    num_classes: int
    settings: object
    normalized: object

    def run(self, clamped_labels=None, outlier_mask=None):
        from .explain import relabel_step

        with _one_thread():
            return relabel_step(self.snapshot, self.phase, self.given, self.num_classes, self.settings,
                                clamped_labels=clamped_labels, outlier_mask=outlier_mask,
                                normalized=self.normalized)


def step_replay(store, step: int, num_classes: int | None = None) -> StepReplay:
    """The last propagating step at or before ``step`` (the one whose labels the run trains on)."""
    from .explain import propagating_steps, step_phase, step_settings
    from ..rundir.snapshot import step_graph

    earlier = [s for s in propagating_steps(store) if s <= step]
    if not earlier:
        raise UserError(f"no step up to step {step} propagated labels; step the run past 'propagate' first")
    step = earlier[-1]
    phase = step_phase(store, step)
    snapshot = store.snapshot(step)
    config = store.config()
    given = store.dataset_arrays()["given"].astype(np.int64)
    return StepReplay(step, phase, snapshot, given, num_classes or len(run_class_names(store)),
                   step_settings(config, phase), step_graph(snapshot, config.graph.power))


def repropagate(store, step: int, clamped_labels: np.ndarray, outlier_mask: np.ndarray | None = None,
                num_classes: int | None = None) -> Ripple:
    """Replay step ``step``'s propagation (or the last one before it) with
    reviewed labels clamped on top of its own seeds.

    Both replays, with and without the clamps, run the step's own rules
    (:func:`engine.readers.explain.relabel_step`) on its own graph and seeds, so every
    change is due to the clamps.
    """
    replay = step_replay(store, step, num_classes)
    n = len(replay.given)
    outlier_mask = np.zeros(n, bool) if outlier_mask is None else np.asarray(outlier_mask, bool)
    _, before = replay.run()
    result, after = replay.run(np.asarray(clamped_labels, np.int64), outlier_mask)
    clamped = np.flatnonzero(np.asarray(clamped_labels) >= 0)
    moved = before.labels != after.labels
    moved[clamped] = False
    return Ripple(before.labels, after.labels, np.flatnonzero(moved), clamped, result.confidence, replay.step)


def impact_fix_labels(snapshot: dict[str, np.ndarray], given: np.ndarray, seed_labels: np.ndarray) -> np.ndarray:
    """The label a reviewer would most likely set on each sample (N,), to estimate impact.

    The refined label where it differs from the seed; else the given label
    where that differs; else the runner-up class of the propagation (or of the
    student, or the next class).
    """
    refined = np.asarray(snapshot["refined"], dtype=np.int64)
    runner_up = (seed_labels + 1) % max(int(max(given.max(), refined.max())) + 1, 2)
    for name in ("student_top", "lp_top_classes"):
        if name in snapshot and np.shape(snapshot[name])[1] > 1:
            top = np.asarray(snapshot[name], dtype=np.int64)
            runner_up = np.where(top[:, 0] == seed_labels, top[:, 1], top[:, 0])
    fix = np.where(given != seed_labels, given, runner_up)
    return np.where(refined != seed_labels, refined, fix)


def impact_proxy(neighbor_idx: np.ndarray, labels: np.ndarray, fix_labels: np.ndarray) -> np.ndarray:
    """Cheap expected impact (N,): how many samples list this one among their
    k nearest neighbours and hold a label other than its fix (who could flip)."""
    n, k = neighbor_idx.shape
    rows = np.repeat(np.arange(n), k)  # j, whose neighbour is i
    cols = neighbor_idx.ravel().astype(np.int64)  # i
    could_flip = labels[rows] != fix_labels[cols]
    return np.bincount(cols[could_flip], minlength=n)


def expected_impact(replay: StepReplay, candidates: np.ndarray, fix_labels: np.ndarray,
                    clamped_labels: np.ndarray | None = None) -> np.ndarray:
    """Exact expected impact of fixing each candidate: how many *other*
    samples change label when it alone is clamped to its fix label (one
    replay of the step per candidate, so keep ``candidates`` short, ~20).

    Returns
    -------
    np.ndarray, shape (M,), int64
        Higher = fixing this sample moves more labels.
    """
    n = len(replay.given)
    base_clamps = np.full(n, -1, np.int64) if clamped_labels is None else np.asarray(clamped_labels, np.int64)
    no_outliers = np.zeros(n, bool)
    base = replay.run(base_clamps, no_outliers)[1].labels
    counts = np.zeros(len(candidates), dtype=np.int64)
    for i, (sample, fix) in enumerate(zip(candidates, fix_labels)):
        clamps = base_clamps.copy()
        clamps[sample] = fix
        moved = replay.run(clamps, no_outliers)[1].labels != base
        moved[sample] = False
        counts[i] = int(moved.sum())
    return counts


def impact_scores(store, step: int, queue: np.ndarray, exact: int = 40,
                  clamped_labels: np.ndarray | None = None) -> tuple[np.ndarray, dict[int, int]]:
    """Expected impact of fixing each queued sample, for the queue's 'impact' order.

    The cheap :func:`impact_proxy` ranks the whole queue; the ``exact``
    samples it ranks highest then get :func:`expected_impact` (one replay of
    the step each, ~5 ms for 1,500 samples). Those come first, by their exact
    count, ties broken by the proxy; the rest follow by the proxy.

    Returns
    -------
    scores : np.ndarray, shape (N,), float64
        Higher = review earlier; NaN outside ``queue``.
    exact_counts : dict
        sample -> number of other samples whose label changes when it is fixed.
    """
    from ..rundir.snapshot import step_seeds

    replay = step_replay(store, step)
    snapshot, given = replay.snapshot, replay.given
    labels = step_seeds(snapshot, replay.phase, replay.num_classes).labels
    fix = impact_fix_labels(snapshot, given, labels)
    neighbor_idx = np.asarray(snapshot["neighbor_idx"], np.int64)
    proxy = impact_proxy(neighbor_idx, labels, fix).astype(np.float64)
    queue = np.asarray(queue, dtype=np.int64)
    candidates = queue[np.argsort(-proxy[queue], kind="stable")][:exact]
    counts = expected_impact(replay, candidates, fix[candidates], clamped_labels)
    scores = np.full(len(given), np.nan)
    scores[queue] = proxy[queue] / (proxy.max() + 1.0)  # in [0, 1): the proxy only breaks ties
    scores[candidates] += 1.0 + counts
    return scores, {int(i): int(c) for i, c in zip(candidates, counts)}

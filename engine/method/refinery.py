"""The method's label rules, as pure functions: what seeds a propagation,
which samples it may relabel, and how reviewers' decisions clamp both.

The step machine (:mod:`engine.steps.run`) calls these to train; every explainer
(the what-if and the "why" text, :mod:`engine.readers.explain`; the ripple and the
review queue's impact, :mod:`engine.readers.triage`) calls the same functions on a
step's snapshot to replay it. A replay with the step's own settings is the
step, not an approximation of it (``tests/test_refinery.py`` checks that for
every propagating step of a run).

Stage 0 (``propagate``), paper Sec. III-B, authors' ``stage0``:
    seeds = one-hot(teacher prediction); every sample takes argmax of the
    propagation, except (noise rate unknown, the authors' rule) the
    ``keep_least_confident`` fraction with the least confident propagation,
    which keeps its given label; or (noise rate ``r`` known, our deviation,
    docs/ALGORITHM.md) only the ``r`` fraction whose given label the
    propagation supports least may change.
Stages 1-2 (``refine``, ``mutual``):
    working label = given label for the small-loss ('easy') samples, the
    student's prediction otherwise; seeds = one-hot(working) x seed weight
    (AWE in stage 1, label-centre similarity in stage 2); easy samples keep
    their working label, the others take argmax of the propagation.
The calibrated rule (``relabel_rule='calibrated'``, our deviation,
docs/ALGORITHM.md) filters what the authors' rule proposes:
    a sample whose proposed label differs from its given label takes it only
    where the step's posterior (:mod:`engine.method.confident`, P(true class
    | sample, given label)) puts more mass on the proposed label than on the
    given one; elsewhere it keeps the given label. Stage 0 proposes the
    propagation's argmax for every sample; stages 1-2 (when the noise rate is
    estimated) propose the small-loss rule's labels, and a step whose
    estimated precision (mean posterior of its labels) is below that of the
    labels before it keeps those previous labels.
With a random audit (``engine.method.audit``, our deviation, docs/ALGORITHM.md):
    the step's audit gate gives each sample a verdict (``audit_verdict``):
    take the authors' proposal, keep the label before the step (the given
    label in stage 0, the previous labels in stages 1-2), or not judged (the
    rule's own label). The step machine decides the verdicts
    (:func:`engine.method.audit.gate_changes`) and stores them, so a replay
    applies the same ones.
Reviews, every stage:
    a reviewed label is a clamped seed of weight 1 and keeps its label; an
    outlier seeds nothing and sits out training.

Nothing here reads or writes files, or imports the run, the store, the
review log or the app.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from .propagate import PropagationResult, seed_matrix
from .stages import LP_PHASES, REFINE_PHASES


class Reason(IntEnum):
    """Why a sample ended a propagating step with its label (one per sample)."""

    PROPAGATED = 0  # took the propagation's label (which may equal the old one)
    KEPT_UNSURE = 1  # stage 0, noise rate unknown: among the least confident, kept its given label
    KEPT_SUPPORTED = 2  # stage 0, noise rate known: its given label well supported, kept it
    KEPT_EASY = 3  # stages 1-2: a small-loss ('easy') sample, kept its working label
    REVIEWED = 4  # a reviewer's label, clamped
    KEPT_LEAST_CONFIDENT = 5  # what-if only (stages 1-2): among the least confident, kept its working label
    KEPT_GIVEN = 6  # calibrated rule: the posterior did not favour the proposed label over the given one
    KEPT_PREVIOUS = 7  # calibrated rule: the step's estimated precision fell, so the sample kept its previous label
    KEPT_AUDIT = 8  # calibrated rule with an audit: the audit did not support the change, the label before it stayed


@dataclass(frozen=True)
class Seeds:
    """Seeds of one propagation: a class and a mass per sample.

    Attributes
    ----------
    labels : np.ndarray, shape (N,), int64
        Seed class of each sample.
    weights : np.ndarray, shape (N,), float32
        Its seed mass (>= 0; 0: not a seed, e.g. a reviewed outlier).
    """

    labels: np.ndarray
    weights: np.ndarray

    def matrix(self, num_classes: int) -> np.ndarray:
        """The seed matrix ``Y (N, C)`` the solver takes (columns normalised there)."""
        return seed_matrix(self.labels, num_classes, self.weights)


@dataclass(frozen=True)
class Relabelling:
    """Labels after a propagating step, and why each sample has its label.

    Attributes
    ----------
    labels : np.ndarray, shape (N,), int64
    reasons : np.ndarray, shape (N,), int8
        :class:`Reason` of each sample.
    rule : str
        ``'confidence'`` (stage 0, rate unknown), ``'support'`` (stage 0,
        rate known), ``'small-loss'`` (stages 1-2), or any of them followed
        by ``'+calibrated'`` (the calibrated filter applied).
    cutoff : float or None
        Confidence (``'confidence'``) or given-label score (``'support'``) of
        the last sample on the kept side of the rule's cut; None when no
        sample is cut.
    proposed : np.ndarray, shape (N,), int64, optional
        Calibrated rule: the labels the authors' rule proposed (None otherwise).
    """

    labels: np.ndarray
    reasons: np.ndarray
    rule: str
    cutoff: float | None
    proposed: np.ndarray | None = None


# ---------------------------------------------------------------- reviews
def apply_clamps(seeds: np.ndarray, refined: np.ndarray, easy: np.ndarray, clamped_labels: np.ndarray,
                 outlier_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Make reviewed labels fixed seeds and drop outliers, before a propagation.

    Parameters
    ----------
    seeds : np.ndarray, shape (N, C)
        Seed matrix of the propagation about to run (see ``seed_matrix``).
    refined : np.ndarray, shape (N,), int
        Labels the 'easy' samples keep after propagation (the working labels).
    easy : np.ndarray, shape (N,), bool
        Samples whose label propagation does not change.
    clamped_labels : np.ndarray, shape (N,), int
        Reviewed label, -1 where none (``ReviewStore.clamps``).
    outlier_mask : np.ndarray, shape (N,), bool
        Samples excluded by a reviewer.

    Returns
    -------
    seeds : np.ndarray, shape (N, C), float32
        Clamped rows one-hot with weight 1; outlier rows zero.
    refined : np.ndarray, shape (N,), int64
        Clamped rows set to their reviewed label.
    easy : np.ndarray, shape (N,), bool
        True on clamped rows, so ``np.where(easy, refined, lp_labels)`` keeps them.
    train_mask : np.ndarray, shape (N,), bool
        False on outliers: multiply the training weights by it.

    Inputs are not modified.
    """
    n, num_classes = seeds.shape
    clamped_labels = np.asarray(clamped_labels, dtype=np.int64)
    outlier_mask = np.asarray(outlier_mask, dtype=bool)
    if clamped_labels.shape != (n,) or outlier_mask.shape != (n,) or np.shape(refined) != (n,) \
            or np.shape(easy) != (n,):
        raise ValueError(f"refined, easy, clamped_labels and outlier_mask must have shape ({n},)")
    if clamped_labels.max(initial=-1) >= num_classes:
        raise ValueError(f"clamped_labels must lie in -1..{num_classes - 1}, got {clamped_labels.max()}")
    rows = np.flatnonzero(clamped_labels >= 0)
    seeds = np.array(seeds, dtype=np.float32, copy=True)
    seeds[rows] = 0.0
    seeds[rows, clamped_labels[rows]] = 1.0
    seeds[outlier_mask] = 0.0
    refined = np.array(refined, dtype=np.int64, copy=True)
    refined[rows] = clamped_labels[rows]
    easy = np.array(easy, dtype=bool, copy=True)
    easy[rows] = True
    return seeds, refined, easy, ~outlier_mask


def clamp_seeds(seeds: Seeds, num_classes: int, working: np.ndarray, easy: np.ndarray,
                clamped_labels: np.ndarray, outlier_mask: np.ndarray) -> tuple[Seeds, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`apply_clamps` on :class:`Seeds`: reviewed rows seed their label with mass 1,
    outliers seed nothing; returns ``(seeds, working, easy, train_mask)``."""
    n = len(seeds.labels)
    matrix, working, easy, train_mask = apply_clamps(seed_matrix(seeds.labels, num_classes, seeds.weights),
                                                     working, easy, clamped_labels, outlier_mask)
    labels = np.where(np.asarray(clamped_labels) >= 0, clamped_labels, seeds.labels).astype(np.int64)
    weights = matrix[np.arange(n), labels].astype(np.float32)  # one non-zero per row, or none
    return Seeds(labels, weights), working, easy, train_mask


# ---------------------------------------------------------------- stage 0
def stage0_seeds(teacher_pred: np.ndarray, num_classes: int, clamped_labels: np.ndarray,
                 outlier_mask: np.ndarray) -> Seeds:
    """Stage 0's seeds: one-hot teacher predictions, reviewed labels clamped, outliers left out."""
    teacher_pred = np.asarray(teacher_pred, dtype=np.int64)
    n = len(teacher_pred)
    seeds, _, _, _ = clamp_seeds(Seeds(teacher_pred, np.ones(n, np.float32)), num_classes, teacher_pred,
                                 np.zeros(n, bool), clamped_labels, outlier_mask)
    return seeds


def stage0_relabel(given: np.ndarray, result: PropagationResult, noise_rate: float | None,
                   keep_least_confident: float, clamped_labels: np.ndarray | None = None) -> Relabelling:
    """Stage 0's labels from the teacher-guided propagation ``result``.

    Noise rate unknown (the authors' rule): every sample takes the propagated
    label except the ``keep_least_confident`` fraction with the least
    confident propagation, which keeps its given label. Noise rate ``r``
    known: only the ``r`` fraction whose given label the propagation supports
    least (lowest score) may change, to the propagated label; the rest keep
    their given label. The second is stage 1's small-loss rule with
    propagation scores for losses: a teacher weaker than the given labels
    (asymmetric noise, a small CPU teacher) cannot overwrite more labels than
    are wrong. Reviewed labels (``clamped_labels >= 0``) win over both.

    Parameters
    ----------
    given : np.ndarray, shape (N,), int
    result : PropagationResult
    noise_rate : float or None
    keep_least_confident : float
        In [0, 1); used only when ``noise_rate`` is None.
    clamped_labels : np.ndarray, shape (N,), int, optional
        -1 where none.
    """
    given = np.asarray(given, dtype=np.int64)
    n = len(given)
    if noise_rate is None:
        if not 0 <= keep_least_confident < 1:
            raise ValueError(f"keep_least_confident={keep_least_confident} must lie in [0, 1)")
        labels = result.labels.astype(np.int64).copy()
        reasons = np.full(n, Reason.PROPAGATED, np.int8)
        keep = np.argsort(result.confidence, kind="stable")[:int(round(keep_least_confident * n))]
        labels[keep] = given[keep]
        reasons[keep] = Reason.KEPT_UNSURE
        rule, cutoff = "confidence", float(result.confidence[keep[-1]]) if len(keep) else None
    else:
        support = result.scores[np.arange(n), given]
        suspicious = np.argsort(support, kind="stable")[:int(round(noise_rate * n))]
        labels = given.copy()
        labels[suspicious] = result.labels[suspicious]
        reasons = np.full(n, Reason.KEPT_SUPPORTED, np.int8)
        reasons[suspicious] = Reason.PROPAGATED
        rule, cutoff = "support", float(support[suspicious[-1]]) if len(suspicious) else None
    return _clamp_labels(Relabelling(labels, reasons, rule, cutoff), clamped_labels)


# ---------------------------------------------------------------- stages 1-2
def small_loss_working(given: np.ndarray, student_pred: np.ndarray, easy: np.ndarray,
                       clamped_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stages 1-2, step 1: working labels after small-loss selection and reviews.

    Returns
    -------
    working : np.ndarray, shape (N,), int64
        Given label of easy samples, the student's prediction elsewhere, the
        reviewed label where there is one.
    easy : np.ndarray, shape (N,), bool
        Small-loss samples and reviewed ones (both keep their working label).
    clean_target : np.ndarray, shape (N,), float32
        What the AWE network learns as 'this given label is clean': the
        small-loss flag, or for a reviewed sample whether the reviewer kept
        the given label.
    """
    given = np.asarray(given, dtype=np.int64)
    clamped_labels = np.asarray(clamped_labels, dtype=np.int64)
    reviewed = clamped_labels >= 0
    working = np.where(easy, given, np.asarray(student_pred, dtype=np.int64))
    clean_target = np.where(reviewed, clamped_labels == given, easy).astype(np.float32)
    working = np.where(reviewed, clamped_labels, working)
    return working, np.asarray(easy, bool) | reviewed, clean_target


def refine_seeds(working: np.ndarray, easy: np.ndarray, seed_weights: np.ndarray, num_classes: int,
                 clamped_labels: np.ndarray, outlier_mask: np.ndarray) -> tuple[Seeds, np.ndarray, np.ndarray, np.ndarray]:
    """Stages 1-2, step 3: seeds one-hot(working) x weight, reviews clamped;
    returns ``(seeds, working, easy, train_mask)`` after the clamps."""
    return clamp_seeds(Seeds(np.asarray(working, np.int64), np.asarray(seed_weights, np.float32)), num_classes,
                       working, easy, clamped_labels, outlier_mask)


def refine_relabel(working: np.ndarray, easy: np.ndarray, result: PropagationResult,
                   clamped_labels: np.ndarray | None = None, keep_least_confident: float = 0.0) -> Relabelling:
    """Stages 1-2: easy samples keep their working label, the others take the propagated one.

    ``keep_least_confident`` (0 in the method) is a what-if knob: that
    fraction of least confident samples also keeps its working label.
    """
    if not 0 <= keep_least_confident < 1:
        raise ValueError(f"keep_least_confident={keep_least_confident} must lie in [0, 1)")
    working = np.asarray(working, dtype=np.int64)
    easy = np.asarray(easy, dtype=bool)
    labels = np.where(easy, working, result.labels).astype(np.int64)
    reasons = np.where(easy, Reason.KEPT_EASY, Reason.PROPAGATED).astype(np.int8)
    keep = np.argsort(result.confidence, kind="stable")[:int(round(keep_least_confident * len(labels)))]
    keep = keep[~easy[keep]]
    labels[keep] = working[keep]
    reasons[keep] = Reason.KEPT_LEAST_CONFIDENT
    cutoff = float(np.sort(result.confidence)[len(keep) - 1]) if len(keep) else None
    return _clamp_labels(Relabelling(labels, reasons, "small-loss", cutoff), clamped_labels)


# ---------------------------------------------------------------- the calibrated filter
RULES = ("calibrated", "authors")


def calibrated_filter(given: np.ndarray, proposal: Relabelling, posterior: np.ndarray,
                      previous: np.ndarray | None = None) -> Relabelling:
    """Keep a proposed change of a given label only where the posterior favours it.

    Parameters
    ----------
    given : np.ndarray, shape (N,), int
    proposal : Relabelling
        What the authors' rule would do (reviews already applied).
    posterior : np.ndarray, shape (N, C)
        P(true class | sample, given label) (:func:`engine.method.confident.label_posterior`).
    previous : np.ndarray, shape (N,), int, optional
        Labels before the step (stages 1-2), passed through the same filter.
        When the filtered labels' mean posterior is below the filtered
        previous labels', the samples it would change keep their previous
        label (reviewed samples keep their reviewed label).

    Returns
    -------
    Relabelling
        Labels: the proposal where it equals the given label, is a review,
        or has a strictly larger posterior than the given label; the given
        label elsewhere (:attr:`Reason.KEPT_GIVEN`). ``cutoff`` is None.
    """
    given = np.asarray(given, dtype=np.int64)
    posterior = np.asarray(posterior, dtype=np.float32)
    rows = np.arange(len(given))
    reviewed = proposal.reasons == Reason.REVIEWED

    def allowed(labels: np.ndarray) -> np.ndarray:  # (N,) bool: the given label, a review, or favoured over it
        return (labels == given) | (posterior[rows, labels] > posterior[rows, given]) | reviewed

    proposed = proposal.labels
    take = allowed(proposed)
    labels = np.where(take, proposed, given).astype(np.int64)
    reasons = np.where(take, proposal.reasons, np.int8(Reason.KEPT_GIVEN)).astype(np.int8)
    if previous is not None:
        previous = np.asarray(previous, dtype=np.int64)
        previous = np.where(allowed(previous), previous, given)  # the same filter holds for what is kept
        mean_new = float(np.mean(posterior[rows, labels], dtype=np.float64))
        mean_old = float(np.mean(posterior[rows, previous], dtype=np.float64))
        if mean_new < mean_old:
            back = (labels != previous) & ~reviewed
            labels = np.where(back, previous, labels)
            reasons = np.where(back, np.int8(Reason.KEPT_PREVIOUS), reasons).astype(np.int8)
    return Relabelling(labels, reasons, f"{proposal.rule}+calibrated", None, proposed)


def supported_easy(easy: np.ndarray, given: np.ndarray, posterior: np.ndarray) -> np.ndarray:
    """Calibrated rule, stages 1-2: a small-loss sample stays 'easy' (keeps its given label unexamined) only
    where the posterior puts at least as much mass on its given label as on any other class.

    Small-loss selection keeps the ``1 - r`` fraction with the smallest loss; when ``r`` is
    underestimated, wrongly labelled samples slip in and are never relabelled. The others are
    still protected: they take a new label only through :func:`calibrated_filter`.
    """
    given = np.asarray(given, dtype=np.int64)
    posterior = np.asarray(posterior, dtype=np.float32)
    supported = posterior[np.arange(len(given)), given] >= posterior.max(1)
    return np.asarray(easy, dtype=bool) & supported


def better_labeller(posterior: np.ndarray, candidates: dict[str, np.ndarray], mask: np.ndarray) -> str:
    """The name of the candidate labelling ``(N,)`` with the largest mean posterior over ``mask``.

    Ties go to the first name in ``candidates``; an empty mask picks the first.
    """
    mask = np.asarray(mask, dtype=bool)
    rows = np.flatnonzero(mask)
    posterior = np.asarray(posterior, dtype=np.float64)
    best, best_score = next(iter(candidates)), -np.inf
    if len(rows) == 0:
        return best
    for name, labels in candidates.items():
        score = float(np.mean(posterior[rows, np.asarray(labels, np.int64)[rows]]))
        if score > best_score:
            best, best_score = name, score
    return best


def labeller_on_holdout(candidates: dict[str, np.ndarray], reference: np.ndarray,
                        holdout: np.ndarray) -> tuple[str, dict[str, float], dict[str, int]]:
    """The candidate labelling ``(N,)`` that agrees with more ``reference`` labels on the ``holdout`` samples,
    each candidate's share of agreements there, and how many held-out samples each one alone agrees on (the
    discordant pairs a paired test of two candidates reads).

    The hold-out is data neither candidate was fitted to (the teacher's early-stopping part, which the student
    sits out too under the calibrated rule). Its labels are the given ones, noisy: under noise that keeps each
    given label more likely right than any one wrong class, agreement with them ranks two labellers as their
    accuracy against the truth does (for symmetric noise the agreement is linear in the accuracy; Chen et al.,
    ICML 2019). Ties go to the first name; an empty hold-out picks the first.
    """
    rows = np.flatnonzero(np.asarray(holdout, dtype=bool))
    reference = np.asarray(reference, np.int64)[rows]
    right = {name: np.asarray(labels, np.int64)[rows] == reference for name, labels in candidates.items()}
    shares = {name: float(hits.mean()) if len(rows) else 0.0 for name, hits in right.items()}
    alone = {name: int(np.sum(hits & ~np.any([right[other] for other in right if other != name], axis=0)))
             if len(right) > 1 else int(hits.sum()) for name, hits in right.items()}
    best = max(shares, key=lambda name: shares[name])  # the first of equal shares
    return best, shares, alone


def relabel(phase: str, given: np.ndarray, working: np.ndarray, easy: np.ndarray, result: PropagationResult,
            noise_rate: float | None, keep_least_confident: float,
            clamped_labels: np.ndarray | None = None, rule: str = "authors",
            posterior: np.ndarray | None = None, previous: np.ndarray | None = None,
            audit_verdict: np.ndarray | None = None) -> Relabelling:
    """The relabelling rule of a propagating ``phase``: stage 0's or stages 1-2's.

    ``rule='calibrated'`` with a ``posterior`` applies :func:`calibrated_filter`
    on top (stages 1-2 with ``previous``); ``'authors'`` (or no posterior) is
    the authors' rule alone. ``audit_verdict (N,)`` (calibrated rule only):
    where 0 the authors' proposal, where 1 the label before the step
    (:attr:`Reason.KEPT_AUDIT`), where -1 the rule's own label.
    """
    if rule not in RULES:
        raise ValueError(f"relabel rule {rule!r} is unknown; valid: {', '.join(RULES)}")
    calibrated = rule == "calibrated" and posterior is not None
    if phase == "propagate":  # the calibrated filter replaces the authors' least-confident keep: it proposes all
        proposal = stage0_relabel(given, result, noise_rate, 0.0 if calibrated else keep_least_confident,
                                  clamped_labels)
    elif phase in REFINE_PHASES:
        proposal = refine_relabel(working, easy, result, clamped_labels, keep_least_confident)
    else:
        raise ValueError(f"a {phase!r} step runs no propagation; valid phases: {', '.join(LP_PHASES)}")
    if not calibrated:
        return proposal
    filtered = calibrated_filter(given, proposal, posterior, previous if phase != "propagate" else None)
    if audit_verdict is None:
        return filtered
    return _audited(filtered, proposal, given if phase == "propagate" or previous is None else previous,
                    audit_verdict)


def _audited(filtered: Relabelling, proposal: Relabelling, before: np.ndarray, verdict: np.ndarray) -> Relabelling:
    """The calibrated rule's labels where the audit gate did not judge; the proposal or the label ``before`` the
    step where it did (reviewed samples are never judged)."""
    verdict = np.asarray(verdict, dtype=np.int8)
    if verdict.shape != filtered.labels.shape:
        raise ValueError(f"audit_verdict has shape {verdict.shape}, the labels {filtered.labels.shape}")
    before = np.asarray(before, dtype=np.int64)
    take, keep = verdict == 0, verdict == 1
    labels = np.where(take, proposal.labels, np.where(keep, before, filtered.labels)).astype(np.int64)
    reasons = np.where(take, proposal.reasons, np.where(keep, np.int8(Reason.KEPT_AUDIT), filtered.reasons))
    return Relabelling(labels, reasons.astype(np.int8), filtered.rule + "+audit", None, proposal.labels)


def _clamp_labels(relabelling: Relabelling, clamped_labels: np.ndarray | None) -> Relabelling:
    if clamped_labels is None:
        return relabelling
    clamped_labels = np.asarray(clamped_labels, dtype=np.int64)
    reviewed = clamped_labels >= 0
    labels = np.where(reviewed, clamped_labels, relabelling.labels)
    reasons = np.where(reviewed, np.int8(Reason.REVIEWED), relabelling.reasons).astype(np.int8)
    return Relabelling(labels, reasons, relabelling.rule, relabelling.cutoff)

"""A random audit: the noise rate and the precision of any labelling, counted
on a random sample of training samples whose class people named.

Why
---
Every estimate that reads only the teacher's outputs and the given labels
(the vote's confident joint, anchor points, HOC: ``engine.method.confident``,
``engine.method.transition``) needs features that name each sample's class.
A weak teacher's do not (cifar10-small with the small CPU pair: the rate is
overstated by 0.17-0.26 at every noise level, docs/ALGORITHM.md), and the
votes cannot say by how much. Counting is what is left: people name the class
of ``M`` samples drawn at random, and the share of wrong given labels among
them is an unbiased estimate of the noise rate whatever the teacher, with a
binomial interval of half-width about ``z sqrt(r (1 - r) / M)`` (0.03 at
r = 0.4 and 90% with M = 720). The same audited samples give the precision of
any labelling (the refined labels of any step), and, paired, the change
between two labellings.

Algorithm
---------
1. The order: a seeded permutation of the training samples
   (:func:`audit_order`). Reviewers audit its first samples, in order; a
   sample they cannot place (``unsure``) is left out (the only way the sample
   can stop being random, so the count of such samples is reported).
2. An audited sample's class is its reviewers' consensus label; a sample
   they call an outlier belongs to no class (every label of it is wrong).
3. Shares with Wilson score intervals (:func:`engine.method.stats.wilson_interval`,
   here at ``LEVEL``): the noise rate (given label != audited class), the
   precision of a labelling (label == audited class).
4. A change from labelling ``a`` to ``b``: on the audited samples where they
   differ, ``fixed`` (b right, a wrong) and ``broken`` (a right, b wrong).
   The precision difference is ``(fixed - broken) / M`` with Newcombe's
   interval for paired proportions (:func:`engine.method.stats.paired_difference`,
   the one Compare uses for two students on one test set). It is *within
   chance* while that interval holds 0.

Cost: O(M) per share, O(N) for the order. Nothing here reads or writes files.
Which direction is better: a lower rate, a higher precision, a positive change.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from .stats import paired_difference, wilson_interval

LEVEL = 0.9  # the intervals' coverage: as the joint's (engine.method.confident.LEVEL)
NOT_AUDITED = -1  # audit label of a sample nobody audited (or only 'unsure')
NO_CLASS = -2  # audit label of a sample its reviewers called an outlier: no label of it is right
_ORDER_STREAM = 0xA0D17  # the permutation's own stream of the run seed (no other draw uses it)


def audit_order(num_samples: int, seed: int) -> np.ndarray:
    """``(N,)`` int64: the order in which to audit the training samples, a seeded permutation of ``0..N-1``.

    The same ``(num_samples, seed)`` always gives the same order, so several
    reviewers (and a resumed audit) work through one random sample.
    """
    if num_samples < 0:
        raise ValueError(f"num_samples={num_samples} must be >= 0")
    return np.random.default_rng([int(seed), _ORDER_STREAM]).permutation(num_samples).astype(np.int64)


def audit_size(rate: float, half_width: float = 0.03, level: float = LEVEL) -> int:
    """Audited samples needed for a share near ``rate`` to be known within ``+-half_width``
    (normal approximation ``z^2 r (1 - r) / h^2``; at least 1)."""
    if not 0 < half_width < 1:
        raise ValueError(f"half_width={half_width} must lie in (0, 1)")
    rate = min(max(float(rate), 0.0), 1.0)
    z = NormalDist().inv_cdf(0.5 + level / 2)
    return max(1, int(np.ceil(z ** 2 * rate * (1 - rate) / half_width ** 2)))


@dataclass(frozen=True)
class Share:
    """A share counted on the audited samples, with its Wilson interval.

    Attributes
    ----------
    count, total : int
        ``count`` of ``total`` audited samples.
    value, low, high : float
        ``count / total`` (nan when ``total`` is 0) and the interval.
    """

    count: int
    total: int
    value: float
    low: float
    high: float

    @classmethod
    def of(cls, count: int, total: int, level: float = LEVEL) -> Share:
        low, high = wilson_interval(int(count), int(total), level)
        return cls(int(count), int(total), count / total if total else float("nan"), low, high)

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class Change:
    """What going from one labelling to another did on the audited samples.

    Attributes
    ----------
    fixed : int
        Audited samples the new labelling has right and the old one wrong.
    broken : int
        Right before, wrong now.
    total : int
        Audited samples.
    value, low, high : float
        Precision difference ``(fixed - broken) / total`` and its Newcombe interval.
    """

    fixed: int
    broken: int
    total: int
    value: float
    low: float
    high: float

    @property
    def verdict(self) -> str:
        """``'better'`` or ``'worse'`` when the interval excludes 0, else ``'within chance'``."""
        if self.total and self.low > 0:
            return "better"
        if self.total and self.high < 0:
            return "worse"
        return "within chance"


@dataclass(frozen=True)
class Audit:
    """The audited samples of a run: who they are and the class people named.

    Attributes
    ----------
    samples : np.ndarray, shape (M,), int64
        Indices of the audited training samples.
    classes : np.ndarray, shape (M,), int64
        Their audited class, :data:`NO_CLASS` for an outlier.
    given : np.ndarray, shape (M,), int64
        Their given labels.
    left_out : int
        Samples reviewers looked at in the audit and left unplaced (``unsure``, or a tie).
    """

    samples: np.ndarray
    classes: np.ndarray
    given: np.ndarray
    left_out: int = 0

    @property
    def size(self) -> int:
        return int(len(self.samples))

    def rate(self, level: float = LEVEL) -> Share:
        """The noise rate: the share of audited samples whose given label is not their class."""
        return Share.of(int(np.sum(self.given != self.classes)), self.size, level)

    def precision(self, labels: np.ndarray, level: float = LEVEL) -> Share:
        """The share of audited samples that ``labels (N,)`` (a labelling of every training sample) has right."""
        return Share.of(int(np.sum(self._on_audit(labels) == self.classes)), self.size, level)

    def change(self, before: np.ndarray, after: np.ndarray, level: float = LEVEL) -> Change:
        """Going from ``before (N,)`` to ``after (N,)``: fixed, broken, and the precision difference."""
        right_before = self._on_audit(before) == self.classes
        right_after = self._on_audit(after) == self.classes
        if self.size == 0:
            return Change(0, 0, 0, float("nan"), -1.0, 1.0)
        paired = paired_difference(right_after, right_before, level)
        return Change(paired.only_a, paired.only_b, paired.n, paired.difference, paired.low, paired.high)

    def _on_audit(self, labels: np.ndarray) -> np.ndarray:
        return np.asarray(labels, dtype=np.int64)[self.samples]


def audit_of(audit_labels: np.ndarray, given: np.ndarray, left_out: int = 0) -> Audit:
    """The :class:`Audit` from ``audit_labels (N,)`` (a class, :data:`NO_CLASS`, or :data:`NOT_AUDITED`)."""
    audit_labels = np.asarray(audit_labels, dtype=np.int64)
    given = np.asarray(given, dtype=np.int64)
    if audit_labels.shape != given.shape:
        raise ValueError(f"audit_labels {audit_labels.shape} and given {given.shape} must have one shape")
    if np.any(audit_labels < NO_CLASS):
        raise ValueError(f"audit labels must be a class, {NO_CLASS} (no class) or {NOT_AUDITED} (not audited)")
    samples = np.flatnonzero(audit_labels != NOT_AUDITED)
    return Audit(samples, audit_labels[samples], given[samples], int(left_out))


# ---------------------------------------------------------------- the audit as a relabel rule's evidence
#: Fewest audited samples for a run to use its audit (its rate, its labeller and its gate); below, the audit is
#: only reported. 50 samples know a rate near 0.4 within about +-0.11 (90%).
MIN_AUDIT = 50
#: Confidence groups of the changes a gate weighs (:func:`gate_changes`); fewer when there are few audited changes.
GATE_BINS = 5
#: Audited changes per group at least (a group's net count of fixed minus broken labels is its evidence).
GATE_MIN_PER_BIN = 10
#: A step whose own estimate is informative is gated only with at least this many audited changes; a vague step
#: is always gated (no audited change: no change).
GATE_MIN_CHANGES = 20

TAKE, KEEP, UNJUDGED = 0, 1, -1  # a gate's verdict per sample: the proposal, the reference label, not judged


@dataclass(frozen=True)
class Gate:
    """What an audit gate decided for one step.

    Attributes
    ----------
    verdict : np.ndarray, shape (N,), int8
        :data:`TAKE` (the proposed label), :data:`KEEP` (the reference label) or :data:`UNJUDGED`.
    changes : int
        Proposed changes (proposal != reference, not protected).
    audited : int
        Of those, audited ones.
    accepted : int
        Changes taken (the most confident ones, :func:`gate_changes`).
    fixed, broken : int
        Among the audited changes taken: right now and wrong before, and the reverse.
    cutoff : float or None
        Least propagation confidence of a change taken (None: none taken).
    """

    verdict: np.ndarray
    changes: int
    audited: int
    accepted: int
    fixed: int
    broken: int
    cutoff: float | None


def gate_changes(reference: np.ndarray, proposed: np.ndarray, confidence: np.ndarray, audit: Audit,
                 protected: np.ndarray | None = None, judge_all: bool = False, bins: int = GATE_BINS) -> Gate:
    """Take a proposal's changes of ``reference`` only as far as the audit says they fix more than they break.

    The changes (``proposed != reference``, outside ``protected``) are ranked by
    the propagation's ``confidence (N,)``, most confident first, and split into
    up to ``bins`` groups of equal size (at least :data:`GATE_MIN_PER_BIN`
    audited changes each). Taking the first ``j`` groups fixes ``F_j`` and
    breaks ``B_j`` audited labels; the gate takes the ``j`` with the largest
    ``F_j - B_j`` (the smallest such ``j`` on a tie), and none unless that is
    above 0. The rest keep their reference label. With ``judge_all`` every
    unprotected sample gets a verdict (unchanged ones :data:`TAKE`, which
    keeps their label); otherwise only the changes do.

    Choosing ``j`` on the audit makes the audit's count of the result slightly
    optimistic (at most ``bins + 1`` candidates); docs/ALGORITHM.md.
    """
    reference = np.asarray(reference, dtype=np.int64)
    proposed = np.asarray(proposed, dtype=np.int64)
    n = len(reference)
    protected = np.zeros(n, bool) if protected is None else np.asarray(protected, dtype=bool)
    verdict = np.full(n, UNJUDGED, dtype=np.int8)
    if judge_all:
        verdict[~protected] = TAKE
    changed = np.flatnonzero((proposed != reference) & ~protected)
    ranked = changed[np.argsort(-np.asarray(confidence, dtype=np.float64)[changed], kind="stable")]
    classes = np.full(n, NOT_AUDITED, dtype=np.int64)
    classes[audit.samples] = audit.classes
    audited = classes[ranked] != NOT_AUDITED
    gain = ((proposed[ranked] == classes[ranked]).astype(np.int64)
            - (reference[ranked] == classes[ranked]).astype(np.int64)) * audited  # +1 fixed, -1 broken, 0 else
    groups = max(1, min(bins, int(audited.sum()) // GATE_MIN_PER_BIN))
    edges = np.linspace(0, len(ranked), groups + 1).round().astype(int)
    net = np.array([gain[:e].sum() for e in edges])  # net[j]: the first j groups taken
    best = int(np.argmax(net)) if net.max() > 0 else 0
    taken = edges[best]
    verdict[ranked[:taken]] = TAKE
    verdict[ranked[taken:]] = KEEP
    fixed, broken = int(np.sum(gain[:taken] > 0)), int(np.sum(gain[:taken] < 0))
    cutoff = float(np.asarray(confidence)[ranked[taken - 1]]) if taken else None
    return Gate(verdict, len(changed), int(audited.sum()), int(taken), fixed, broken, cutoff)


def better_labeller(candidates: dict[str, np.ndarray], audit: Audit) -> str:
    """The name of the candidate labelling ``(N,)`` right on the most audited samples (ties: the first name)."""
    scores = {name: audit.precision(labels).count for name, labels in candidates.items()}
    return max(scores, key=lambda name: (scores[name], -list(scores).index(name)))

"""Label noise without the truth: out-of-sample probabilities, confident
learning's joint, the noise rate with an interval, each sample's posterior
over its true class, and the estimated precision of any labelling.

Algorithm
---------
1. Out-of-sample probabilities ``P~ (N, C)`` = P(given label | x): the
   weighted vote of each sample's neighbours' given labels on the teacher's
   kNN graph (self excluded, so a sample's own label never counts for
   itself), calibrated as ``P~ ∝ (V + floor) ** sharpness`` with both numbers
   fitted by maximum likelihood of the given labels. (Cross-fitted logistic
   heads on the teacher features were measured first and rejected: the
   features were learnt from the same noisy labels, so a wrongly labelled
   sample's own features lean to its given label; docs/ALGORITHM.md.)
2. Confident joint (Northcutt, Jiang and Chuang, "Confident learning:
   estimating uncertainty in dataset labels", JAIR 2021, Sec. 3.1): per class
   ``j`` the threshold ``t_j`` = mean ``P~[i, j]`` over samples given ``j``; a
   sample given ``i`` counts in ``CJ[i, j]`` for the class ``j`` with the
   largest ``P~[i, j]`` among those at or above their threshold (none: not
   counted). Calibrated: each row rescaled to the count of its given label,
   then the whole matrix to sum 1: ``Q[given, true]``.
3. Noise rate ``r = 1 - trace(Q)``; transition ``T[true, given] =
   Q[given, true] / sum_g Q[g, true]``. Interval: the same estimate on
   bootstrap resamples of the samples (basic bootstrap, ``LEVEL``).
4. Posterior of the true class given the sample *and* its given label, under
   class-conditional noise: the clean class probabilities ``pi = P~ T^-1``
   (since ``P~ = pi T``), projected onto the simplex and sharpened by an
   exponent fitted by maximum likelihood of the given labels through ``T``
   (:func:`fit_sharpness`); then ``post[i, c] ∝ pi[i, c] T[c, given_i] ** e``
   (Bayes' rule for ``e = 1``: the given label is evidence). ``e`` in [0, 1]
   is chosen so that the posterior's mean support of the given labels equals
   the joint's ``1 - r`` (:func:`evidence_weight`). When the rate's interval
   reaches 0 the posterior is the given labels (:func:`no_noise_posterior`).
5. The estimated precision of a labelling ``l`` is ``mean_i post[i, l_i]``
   (its expected share of right labels, if ``post`` is calibrated), bias-
   corrected with the bootstrap (each resample re-estimates ``T``, ``e`` and
   ``post``), with the basic bootstrap interval.
6. Whether the votes can tell noise at all (:func:`clean_ambiguity`): the
   joint counts as noise every sample whose vote names another class, which
   is right only where the features name each sample's clean class. The
   share of samples whose clean class ``pi`` leaves open,
   ``A = mean_i (1 - max_c pi[i, c])``, measures how far that holds; above
   ``AMBIGUITY_LIMIT`` the votes cannot tell label noise from classes the
   features mix (a weak teacher), the estimate is *uninformative*: its rate
   interval is ``[0, upper end]``, its point the interval's middle, its
   posterior the given labels (no rule changes a label on its word), and
   the precision of a labelling is given only as an interval.
7. Whether the noise rises above that confusion (:func:`beyond_confusion`,
   stage 0): an informative estimate whose rate interval's lower end is at
   most ``A`` finds no noise (the confusion alone can explain the joint's
   count): the given labels kept, the rate ``[0, upper end]``.

Cost: O(N k) for the votes, a 2-parameter fit of O(N C) per evaluation, the
joint and the posterior O(N C + C^3); B bootstrap rounds O(B N C).

Which direction is better: a higher precision estimate, a lower noise rate.
Nothing here reads or writes files.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

BOOTSTRAP = 100  # resamples for the intervals; the 5th-95th percentile spread moves < 0.005 beyond ~100
LEVEL = 0.9  # the intervals' coverage
#: Largest clean-class ambiguity (:func:`clean_ambiguity`) at which the joint's rate is taken as an estimate:
#: midway between the largest measured where the joint was within 0.03 of the truth (digits, 40% instance noise,
#: seed 2: 0.147; seeds 0-1 0.084 and 0.110, symmetric noise <= 0.047) and the smallest where it was off by more
#: than 0.15 (cifar10-small with a 5-epoch teacher: 0.174 at 0% noise, joint 0.222; 0.178 at 40%, joint 0.605
#: against 0.361; overlapping blobs 0.189-0.29). A thin margin: docs/ALGORITHM.md.
AMBIGUITY_LIMIT = 0.16


# ---------------------------------------------------------------- 1. out-of-sample probabilities
def neighbour_votes(neighbor_idx: np.ndarray, neighbor_weight: np.ndarray, given: np.ndarray,
                    num_classes: int) -> np.ndarray:
    """``V (N, C)``: each sample's neighbours' given labels, weighted by edge weight, rows summing to 1.

    A sample is not its own neighbour (the kNN graph excludes self), so its row
    never counts its own given label. A sample whose edges all weigh 0 gets a
    uniform row.

    Parameters
    ----------
    neighbor_idx : np.ndarray, shape (N, k), int
    neighbor_weight : np.ndarray, shape (N, k), >= 0
    given : np.ndarray, shape (N,), int
    """
    neighbor_idx = np.asarray(neighbor_idx, dtype=np.int64)
    weight = np.clip(np.asarray(neighbor_weight, dtype=np.float64), 0.0, None)
    given = np.asarray(given, dtype=np.int64)
    n, k = neighbor_idx.shape
    votes = np.zeros((n, num_classes))
    valid = neighbor_idx >= 0
    rows = np.repeat(np.arange(n), k).reshape(n, k)
    np.add.at(votes, (rows[valid], given[neighbor_idx[valid]]), weight[valid])
    total = votes.sum(1, keepdims=True)
    return np.where(total > 0, votes / np.maximum(total, 1e-12), 1.0 / num_classes)


def _vote_probabilities(votes: np.ndarray, sharpness: float, log_floor: float) -> np.ndarray:
    z = sharpness * np.log(votes + np.exp(log_floor))
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def calibrate_votes(votes: np.ndarray, given: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """``P~ (N, C)`` = P(given label | neighbours) from ``votes``, and the fitted ``(sharpness, log_floor)``.

    ``P~ ∝ (V + floor) ** sharpness``, the two numbers chosen by maximum
    likelihood of the given labels (Nelder-Mead). The fit is out-of-sample:
    a sample's own label is not in its vote.
    """
    from scipy.optimize import minimize

    votes = np.asarray(votes, dtype=np.float64)
    given = np.asarray(given, dtype=np.int64)
    rows = np.arange(len(given))

    def nll(params):
        return -np.mean(np.log(_vote_probabilities(votes, *params)[rows, given] + 1e-12))

    fit = minimize(nll, np.array([1.0, np.log(0.05)]), method="Nelder-Mead",
                   options={"xatol": 1e-4, "fatol": 1e-7, "maxiter": 400})
    sharpness, log_floor = float(fit.x[0]), float(fit.x[1])
    return _vote_probabilities(votes, sharpness, log_floor), (sharpness, log_floor)


# ---------------------------------------------------------------- 2-3. joint, rate, transition
def confident_joint(given: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Counts ``CJ (C, C)``: ``CJ[i, j]`` samples given ``i`` whose confident true class is ``j``.

    Per-class thresholds ``t_j`` = mean ``probs[given == j, j]`` (a class
    never given: never confident). Among the classes with ``probs >= t``, the
    one with the largest probability; samples above no threshold are not counted.
    """
    given = np.asarray(given, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    num_classes = probs.shape[1]
    sums = np.bincount(given, weights=probs[np.arange(len(given)), given], minlength=num_classes)
    counts = np.bincount(given, minlength=num_classes)
    thresholds = np.where(counts > 0, sums / np.maximum(counts, 1), np.inf)  # (C,)
    above = probs >= thresholds[None, :] - 1e-12  # (N, C)
    confident = np.where(above, probs, -1.0).argmax(1)
    counted = above.any(1)
    joint = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(joint, (given[counted], confident[counted]), 1)
    return joint


def calibrate_joint(joint: np.ndarray, given_counts: np.ndarray) -> np.ndarray:
    """``Q[given, true]`` summing to 1: each row of ``joint`` rescaled to its given label's count.

    A given class whose row counted nothing is taken as clean (all its mass on the diagonal).
    """
    joint = np.asarray(joint, dtype=np.float64)
    given_counts = np.asarray(given_counts, dtype=np.float64)
    rows = joint.sum(1)
    scaled = np.where(rows[:, None] > 0, joint / np.maximum(rows, 1e-12)[:, None], np.eye(len(joint)))
    scaled = scaled * given_counts[:, None]
    total = scaled.sum()
    return scaled / total if total > 0 else np.eye(len(joint)) / len(joint)


def transition_from_joint(joint: np.ndarray) -> np.ndarray:
    """``T[true, given] = Q[given, true] / P(true)``; a true class with no mass maps to itself."""
    q = np.asarray(joint, dtype=np.float64).T  # (true, given)
    mass = q.sum(1, keepdims=True)
    return np.where(mass > 0, q / np.maximum(mass, 1e-12), np.eye(len(q)))


def noise_rate_from_joint(joint: np.ndarray) -> float:
    """Share of wrong given labels: ``1 - trace(Q)``."""
    return float(1.0 - np.trace(joint))


# ---------------------------------------------------------------- 4. posterior
def project_to_simplex(rows: np.ndarray) -> np.ndarray:
    """Each row of ``rows (N, C)`` replaced by the nearest probability vector (Euclidean projection onto the
    simplex: ``max(v - theta, 0)`` with ``theta`` making the row sum 1; Held, Wolfe and Crowder 1974)."""
    rows = np.asarray(rows, dtype=np.float64)
    n, c = rows.shape
    ordered = -np.sort(-rows, axis=1)  # (N, C), descending
    excess = np.cumsum(ordered, axis=1) - 1.0
    positive = ordered - excess / np.arange(1, c + 1) > 0  # (N, C): True on a prefix of each row
    last = c - 1 - np.argmax(positive[:, ::-1], axis=1)  # the prefix's last index
    theta = excess[np.arange(n), last] / (last + 1)
    return np.clip(rows - theta[:, None], 0.0, None)


def clean_probabilities(probs: np.ndarray, transition: np.ndarray, sharpness: float = 1.0) -> np.ndarray:
    """``pi (N, C)``: P(true class | x) from ``P~ = pi T``, projected onto the simplex, then raised to
    ``sharpness`` and renormalised (:func:`fit_sharpness`; 1: as projected).

    ``P~ T^-1`` already sums to 1 per row but has negative entries where the
    vote's sampling noise pushes a class below its noise floor. Clipping
    those to 0 and renormalising keeps the positive noise on every other
    class and so spreads mass away from the true class (digits, 40% instance
    noise: the posterior's mean support of right labels 0.81 where 0.95 of
    them are right); the projection takes the same amount off every class
    instead (0.88 there; docs/ALGORITHM.md).
    """
    probs = np.asarray(probs, dtype=np.float64)
    return _sharpen(project_to_simplex(probs @ np.linalg.pinv(np.asarray(transition, dtype=np.float64))), sharpness)


def _sharpen(pi: np.ndarray, sharpness: float) -> np.ndarray:
    if sharpness == 1.0:
        return pi
    z = np.where(pi > 0, np.power(np.maximum(pi, 1e-300), sharpness), 0.0)
    return z / z.sum(1, keepdims=True)


SHARPNESS_RANGE = (0.25, 8.0)  # fitted sharpness bounds: from much flatter to much sharper than the projection


def fit_sharpness(probs: np.ndarray, transition: np.ndarray, given: np.ndarray) -> float:
    """The exponent ``s`` of the clean probabilities that best predicts the given labels through the noise.

    ``P(given | x) = sum_c pi_s[c] T[c, given]`` with ``pi_s ∝ pi ** s``; ``s``
    maximises the likelihood of the given labels (bounded by ``SHARPNESS_RANGE``).
    This is temperature scaling (Guo et al. 2017) calibrated on noisy labels
    through the estimated transition. ``pi`` from the vote is too flat where the
    vote's sampling noise meets the noise floor: digits at 40% symmetric noise,
    ``s`` = 1.4, and the refined labels' estimated precision goes from 0.935 to
    0.963 (true 0.970; docs/ALGORITHM.md).
    """
    from scipy.optimize import minimize_scalar

    given = np.asarray(given, dtype=np.int64)
    transition = np.asarray(transition, dtype=np.float64)
    pi = clean_probabilities(probs, transition)
    rows = np.arange(len(given))
    to_given = transition[:, given].T  # (N, C): T[c, given_i]

    def nll(sharpness: float) -> float:
        return -float(np.mean(np.log(np.sum(_sharpen(pi, sharpness) * to_given, 1) + 1e-12)))

    fit = minimize_scalar(nll, bounds=SHARPNESS_RANGE, method="bounded", options={"xatol": 1e-3})
    return float(fit.x) if nll(float(fit.x)) < nll(1.0) else 1.0


def label_posterior(probs: np.ndarray, transition: np.ndarray, given: np.ndarray,
                    evidence: float = 1.0, sharpness: float = 1.0) -> np.ndarray:
    """``post (N, C)``: P(true class = c | x, given label), rows summing to 1.

    ``post[i, c] ∝ pi[i, c] T[c, given_i] ** evidence``; ``evidence`` 1 is
    Bayes' rule under class-conditional noise, smaller values trust the given
    label less (see :func:`evidence_weight`); ``pi`` with ``sharpness``
    (:func:`fit_sharpness`). A row where that is 0 everywhere falls back to ``pi``.
    """
    given = np.asarray(given, dtype=np.int64)
    pi = clean_probabilities(probs, transition, sharpness)
    likelihood = np.clip(np.asarray(transition, dtype=np.float64)[:, given].T, 1e-12, None)  # (N, C)
    post = pi * likelihood ** evidence
    total = post.sum(1, keepdims=True)
    return np.where(total > 0, post / np.maximum(total, 1e-12), pi)


def evidence_weight(probs: np.ndarray, transition: np.ndarray, given: np.ndarray, rate: float,
                    sharpness: float = 1.0) -> float:
    """The weight in [0, 1] of the given label's evidence that makes the posterior agree with the joint.

    The neighbours' votes of a wrongly labelled sample still lean to its given
    label (its features were learnt from it), so Bayes' rule with weight 1
    keeps too many wrong labels: on digits at 40% noise the posterior's mean
    support of the given labels is 0.70 where the joint says 0.66 (truth
    0.64). This chooses the weight at which ``mean_i post[i, given_i]`` equals
    ``1 - rate``, the joint's own share of right labels (1 when even weight 1
    gives less; 0 when even weight 0 gives more).
    """
    from scipy.optimize import brentq

    given = np.asarray(given, dtype=np.int64)
    rows = np.arange(len(given))
    target = 1.0 - rate

    def gap(weight: float) -> float:
        return float(np.mean(label_posterior(probs, transition, given, weight, sharpness)[rows, given]) - target)

    low, high = gap(0.0), gap(1.0)
    if high <= 0:
        return 1.0
    if low >= 0:
        return 0.0
    return float(brentq(gap, 0.0, 1.0, xtol=1e-4))


def clean_ambiguity(probs: np.ndarray, transition: np.ndarray, sharpness: float = 1.0) -> float:
    """``A = mean_i (1 - max_c pi[i, c])``: the share of samples whose clean class the votes leave open.

    ``pi`` are the clean probabilities (:func:`clean_probabilities`). The
    confident joint assumes the features name each sample's clean class
    (out-of-sample probabilities that are good, not only calibrated:
    Northcutt et al. 2021, Sec. 4); where neighbourhoods mix classes, a vote
    against the given label is as well explained by the mix as by noise, and
    the joint counts it as noise. ``A`` is the model's own expected error of
    ``argmax pi``: near 0 when the features separate the classes, large when
    the teacher is weak. Lower is better.
    """
    pi = clean_probabilities(probs, transition, sharpness)
    return float(np.mean(1.0 - pi.max(1))) if len(pi) else 0.0


# ---------------------------------------------------------------- the estimate, with intervals
@dataclass(frozen=True)
class NoiseEstimate:
    """What the out-of-sample probabilities say about the given labels.

    Attributes
    ----------
    rate, rate_low, rate_high : float
        Estimated share of wrong given labels and its interval (``LEVEL``).
    joint : np.ndarray, shape (C, C)
        Calibrated confident joint ``Q[given, true]``.
    transition : np.ndarray, shape (C, C)
        ``T[true, given]``.
    evidence : float
        The given label's evidence weight (:func:`evidence_weight`).
    sharpness : float
        The clean probabilities' exponent (:func:`fit_sharpness`).
    posterior : np.ndarray, shape (N, C), float32
        ``post[i, c]`` = P(true class c | x_i, given_i), rounded to float16
        values: the steps store it as float16 and the rules use it as stored,
        so a replay decides alike.
    probs : np.ndarray, shape (N, C)
        The out-of-sample ``P~`` it came from.
    boot_transitions : np.ndarray, shape (B, C, C)
        ``T`` of each bootstrap resample, ``boot_evidence (B,)`` its
        evidence weight and ``boot_sharpness (B,)`` its sharpness (for the precision intervals).
    seed : int
        Seed of the resamples (the same draws for every interval of a run).
    noise_found : bool
        False when the joint cannot tell the noise rate from 0 (the lower end
        of its interval is 0) or the estimate is not informative: then
        ``posterior`` is the given labels, one-hot, and no rule changes a
        given label on this estimate's word (:func:`no_noise_posterior`).
    ambiguity : float
        :func:`clean_ambiguity` of the votes.
    informative : bool
        ``ambiguity <= AMBIGUITY_LIMIT``. If not, ``rate_low`` is 0,
        ``rate_high`` the joint's upper end, ``rate`` their middle, and
        ``joint_rate`` keeps the joint's own number.
    confused : bool
        Informative, but the joint's rate does not rise above the features'
        own confusion (:func:`beyond_confusion`): the rate is reported as
        ``[0, rate_high]`` (its middle the point, ``joint_rate`` the joint's
        number), ``noise_found`` is False and the posterior the given labels.
    """

    rate: float
    rate_low: float
    rate_high: float
    joint: np.ndarray
    transition: np.ndarray
    evidence: float
    posterior: np.ndarray
    probs: np.ndarray
    boot_transitions: np.ndarray
    boot_evidence: np.ndarray
    seed: int
    noise_found: bool = True
    sharpness: float = 1.0
    boot_sharpness: np.ndarray | None = None
    ambiguity: float = 0.0
    informative: bool = True
    joint_rate: float | None = None
    confused: bool = False


def _joint(given: np.ndarray, probs: np.ndarray, num_classes: int) -> np.ndarray:
    return calibrate_joint(confident_joint(given, probs), np.bincount(given, minlength=num_classes))


def _resamples(n: int, seed: int, rounds: int):
    rng = np.random.default_rng([seed, 7])
    for _ in range(rounds):
        yield rng.integers(0, n, size=n)


def estimate_noise(given: np.ndarray, probs: np.ndarray, seed: int, rounds: int = BOOTSTRAP) -> NoiseEstimate:
    """Noise rate, joint, transition and posterior from out-of-sample ``probs (N, C)``, with bootstrap intervals."""
    given = np.asarray(given, dtype=np.int64)
    probs = np.asarray(probs, dtype=np.float64)
    num_classes = probs.shape[1]
    joint = _joint(given, probs, num_classes)
    rate, transition = noise_rate_from_joint(joint), transition_from_joint(joint)
    boot_rates, boot_t, boot_e, boot_s = [], [], [], []
    for idx in _resamples(len(given), seed, rounds):
        q = _joint(given[idx], probs[idx], num_classes)
        boot_rates.append(noise_rate_from_joint(q))
        boot_t.append(transition_from_joint(q))
        boot_s.append(fit_sharpness(probs[idx], boot_t[-1], given[idx]))
        boot_e.append(evidence_weight(probs[idx], boot_t[-1], given[idx], boot_rates[-1], boot_s[-1]))
    low, high = _interval(boot_rates, rate)
    sharpness = fit_sharpness(probs, transition, given)
    evidence = evidence_weight(probs, transition, given, rate, sharpness)
    ambiguity = clean_ambiguity(probs, transition, sharpness)
    informative = ambiguity <= AMBIGUITY_LIMIT
    joint_rate = rate
    if not informative:  # the joint is an upper end only: the votes cannot tell noise from mixed classes
        low, rate = 0.0, high / 2
    noise_found = informative and low > 0
    if noise_found:
        posterior = label_posterior(probs, transition, given, evidence, sharpness)
        posterior = posterior.astype(np.float16).astype(np.float32)
    else:
        posterior = no_noise_posterior(given, num_classes)
    return NoiseEstimate(rate, low, high, joint, transition, evidence, posterior, probs,
                         np.array(boot_t).reshape(-1, num_classes, num_classes), np.array(boot_e, dtype=np.float64),
                         seed, noise_found, sharpness, np.array(boot_s, dtype=np.float64), ambiguity, informative,
                         joint_rate)


def beyond_confusion(estimate: NoiseEstimate, given: np.ndarray) -> NoiseEstimate:
    """``estimate``, or, when the lower end of its rate's interval is not above its clean-class ambiguity
    (``0 < rate_low <= ambiguity``), the estimate *confused*: no noise found, the posterior the ``given (N,)``
    labels, the rate ``[0, rate_high]`` with its middle as the point (``joint_rate`` keeps the joint's).

    ``ambiguity`` (:func:`clean_ambiguity`) is the share of samples whose
    clean class the features leave open; each of them, rightly labelled, can
    have a vote that names another class, and the joint counts it as noise.
    A rate the confusion alone explains is no evidence of wrong labels: on
    cifar10-small with clean labels and the small pair's 24-epoch teacher the
    joint said 0.034 [0.031, 0.039] at an ambiguity of 0.073, and the rule
    changed 238 right labels (docs/ALGORITHM.md). Applied to stage 0's
    estimate (the teacher's graph), which gates the later steps
    (:func:`gated_by`). With the ambiguity 0 this is the plain rule (noise
    found when the interval leaves 0).
    """
    if not (estimate.informative and estimate.noise_found) or estimate.rate_low > estimate.ambiguity:
        return estimate
    return replace(estimate, rate=estimate.rate_high / 2, rate_low=0.0, noise_found=False, confused=True,
                   posterior=no_noise_posterior(given, estimate.posterior.shape[1]), joint_rate=estimate.rate)


def gated_by(estimate: NoiseEstimate, reference: NoiseEstimate, given: np.ndarray) -> NoiseEstimate:
    """``estimate``, or, when ``reference`` (stage 0's, on the teacher's graph) found no noise, ``estimate`` with
    the ``given (N,)`` labels for its posterior and ``noise_found`` False (and, when ``reference`` was not
    informative, ``informative`` False); or ``reference`` itself when it was informative and ``estimate`` is not.

    A later step's graph (a young student's features) counts a few atypical
    samples as noise where the teacher's saw none (digits at 0% noise: 4-10
    of 1,437 in the refine epochs), and nothing else says those labels are
    wrong. A step whose own graph mixes the classes (a young student) cannot
    judge the labels, but stage 0's estimate still can. A ``reference`` whose
    rate its features' confusion explains (:func:`beyond_confusion`) judges
    every later step itself: no label changes on a later step's word either.
    """
    if reference.confused or (reference.informative and not estimate.informative):
        return reference
    if reference.noise_found or not estimate.noise_found:
        return estimate
    return replace(estimate, posterior=no_noise_posterior(given, estimate.posterior.shape[1]), noise_found=False,
                   informative=estimate.informative and reference.informative)


def no_noise_posterior(given: np.ndarray, num_classes: int) -> np.ndarray:
    """``(N, C)`` float32: all mass on the given label, the posterior when the joint finds no noise.

    A joint whose interval reaches 0 rests on a handful of samples counted as
    confidently another class, and each of them is then the main evidence
    for its own change: at 0% noise on digits, one true 5 among 9s in the
    student's features made ``Q[5, 9]`` 1/1437, and the posterior moved it to
    9 (docs/ALGORITHM.md). Without evidence that any label is wrong, none is changed.
    """
    given = np.asarray(given, dtype=np.int64)
    posterior = np.zeros((len(given), num_classes), dtype=np.float32)
    posterior[np.arange(len(given)), given] = 1.0
    return posterior


def _interval(values, point: float) -> tuple[float, float]:
    """The basic bootstrap interval ``[2 point - q_high, 2 point - q_low]``: resamples repeat samples, which
    shifts a plug-in estimate like the joint's; reflecting the percentiles about the point undoes that shift."""
    if len(values) == 0:
        return point, point
    tail = 100 * (1 - LEVEL) / 2
    q_low, q_high = np.percentile(values, [tail, 100 - tail])
    return float(np.clip(2 * point - q_high, 0.0, 1.0)), float(np.clip(2 * point - q_low, 0.0, 1.0))


def estimated_precision(labels: np.ndarray, posterior: np.ndarray) -> float:
    """Expected share of right labels in ``labels (N,)``: ``mean_i post[i, labels_i]`` (higher is better)."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return float("nan")
    return float(np.mean(np.asarray(posterior, dtype=np.float64)[np.arange(len(labels)), labels]))


def precision_interval(labels: np.ndarray, given: np.ndarray, estimate: NoiseEstimate) -> tuple[float, float, float]:
    """``(estimate, low, high)`` of the precision of ``labels (N,)``, bias-corrected, with its interval.

    Each bootstrap resample re-estimates the transition, the evidence weight
    and the posterior on its own samples. The plain mean posterior
    (:func:`estimated_precision`) is a plug-in estimate whose resamples fall
    below it on average; the estimate reported is Efron's bias-corrected
    ``2 theta - mean(resamples)`` (clipped to [0, 1]), and the interval the
    basic bootstrap around ``theta``, which is centred on it.
    """
    labels = np.asarray(labels, dtype=np.int64)
    given = np.asarray(given, dtype=np.int64)
    if not estimate.informative or estimate.confused:
        return _uninformed_precision(labels, given, estimate)
    point = estimated_precision(labels, estimate.posterior)
    if not estimate.noise_found:  # the given labels taken as right: the share that keeps them, exactly
        return point, point, point
    values = []
    draws = _resamples(len(labels), estimate.seed, len(estimate.boot_transitions))
    sharpness = estimate.boot_sharpness
    if sharpness is None:
        sharpness = np.ones(len(estimate.boot_evidence))
    for idx, transition, evidence, exponent in zip(draws, estimate.boot_transitions, estimate.boot_evidence,
                                                   sharpness):
        post = label_posterior(estimate.probs[idx], transition, given[idx], evidence, exponent)
        values.append(estimated_precision(labels[idx], post))
    if not values:
        return point, point, point
    low, high = _interval(values, point)
    corrected = float(np.clip(2 * point - np.mean(values), 0.0, 1.0))
    return corrected, min(low, corrected), max(high, corrected)


def _uninformed_precision(labels: np.ndarray, given: np.ndarray,
                          estimate: NoiseEstimate) -> tuple[float, float, float]:
    """Precision of ``labels`` when the votes cannot tell noise (``estimate.informative`` False, or
    ``estimate.confused``): the kept given labels are right at a rate within ``[1 - rate_high, 1 - rate_low]``,
    a changed label anywhere in [0, 1]; the point is the interval's middle."""
    kept = float(np.mean(labels == given)) if len(labels) else float("nan")
    low = kept * (1.0 - estimate.rate_high)
    high = kept * (1.0 - estimate.rate_low) + (1.0 - kept)
    return (low + high) / 2, low, high


def estimate_from_graph(neighbor_idx: np.ndarray, neighbor_weight: np.ndarray, given: np.ndarray,
                        num_classes: int, seed: int, rounds: int = BOOTSTRAP) -> NoiseEstimate:
    """:func:`estimate_noise` on the calibrated neighbour votes of a kNN graph (steps 1-4 of the module)."""
    votes = neighbour_votes(neighbor_idx, neighbor_weight, given, num_classes)
    probs, _ = calibrate_votes(votes, given)
    return estimate_noise(given, probs, seed, rounds)

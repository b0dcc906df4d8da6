"""Checks that say when a run went wrong, each with what to do.

:func:`run_warnings` reads a run's metrics and its last snapshot after every
step; the finished run keeps them in ``summary.json`` (``warnings``: a list of
``{"code", "message"}``), and the Train and Compare pages show them as a
banner. A NaN or infinite loss is not a warning but a failed step
(:mod:`engine.steps.run`).

=================  =====================================================
code               when
=================  =====================================================
teacher_chance     the teacher's accuracy is at or near chance (1/C + 10%
                   of the way to 1): its predictions and graph carry no signal
refined_worse      truth known: the refined labels are less precise than the
                   given ones
relabel_excess     truth unknown: the propagation changed far more labels
                   than the noise rate allows (more than twice the rate, and
                   10 points over it; the rate known, or the synthetic
                   noise's, or 25% for a label file: at most half changed)
refined_worse_est  the estimate without the truth (engine.method.confident)
                   says the refined labels are less precise than the given
                   ones (by more than WORSE_MARGIN)
estimate_vague     the estimate without the truth cannot tell noise from
                   classes the teacher's features mix (its ambiguity is
                   over confident.AMBIGUITY_LIMIT): rate and precision are
                   wide intervals, and the calibrated rule kept the labels
                   (with a random audit: took only the changes the audit
                   supports)
audit_worse        on the random audit the refined labels are worse than
                   the given ones beyond chance (:func:`audit_warning`)
below_ce           the student's test accuracy is below the CE baseline's of
                   the same data (:func:`below_baseline`)
=================  =====================================================
"""

from __future__ import annotations

import numpy as np

from ..method.noise import parse_noise_spec
from .snapshot import read

#: How far above chance a teacher must be, as a share of the way from chance to 1.
CHANCE_MARGIN = 0.10
#: Refined labels this much less precise than the given ones trigger ``refined_worse``.
WORSE_MARGIN = 0.01


def _warning(code: str, message: str) -> dict:
    return {"code": code, "message": message}


def teacher_warning(metrics: list[dict], num_classes: int) -> dict | None:
    """``teacher_chance`` from the last teacher step's accuracy (test, else held-out against the given labels)."""
    teacher = [m for m in metrics if m.get("phase") == "teacher"]
    if not teacher or num_classes < 2:
        return None
    last = teacher[-1]
    accuracy, what = last.get("teacher_test_accuracy"), "test accuracy"
    if accuracy is None:
        accuracy, what = last.get("teacher_holdout_accuracy"), "held-out agreement with the given labels"
    if accuracy is None:
        return None
    chance = 1.0 / num_classes
    if accuracy > chance + CHANCE_MARGIN * (1 - chance):
        return None
    return _warning("teacher_chance", f"The teacher's {what} is {accuracy:.3f}, at chance for {num_classes} classes "
                    f"({chance:.3f}): its predictions and its kNN graph carry no signal, so stage 0 relabels at "
                    "random. Train the teacher longer (teacher epochs), raise its learning rate, or load a "
                    "teacher checkpoint.")


def label_warning(given: np.ndarray, refined: np.ndarray, true: np.ndarray | None, noise_rate: float | None,
                  given_precision: float | None, refined_precision: float | None) -> dict | None:
    """``refined_worse`` (truth known) or ``relabel_excess`` (truth unknown)."""
    if given_precision is not None and refined_precision is not None:
        if refined_precision < given_precision - WORSE_MARGIN:
            return _warning("refined_worse", f"The refined labels are less precise than the given ones "
                            f"({refined_precision:.3f} against {given_precision:.3f}): the method is making the "
                            "labels worse. Check the teacher's accuracy; with a known noise rate, pass it "
                            "(--noise-rate) so that stage 0 changes no more labels than are wrong.")
        return None
    if true is not None and (np.asarray(true) >= 0).any():
        return None
    changed = float(np.mean(np.asarray(given) != np.asarray(refined))) if len(given) else 0.0
    rate = noise_rate if noise_rate is not None else 0.0
    if changed > max(2 * rate, rate + 0.10):
        return _warning("relabel_excess", f"The propagation changed {changed:.0%} of the labels, far more than the "
                        f"noise rate allows ({rate:.0%}): without a truth to check against, treat the refined "
                        "labels with care. Pass the noise rate if you know it (--noise-rate), or review a sample "
                        "of the changes on the Review page.")
    return None


def estimate_warning(metrics: dict) -> dict | None:
    """``refined_worse_est``: the step's precision estimates (no truth needed) say the labels got worse."""
    given, refined = metrics.get("given_precision_estimate"), metrics.get("refined_precision_estimate")
    if given is None or refined is None or refined >= given - WORSE_MARGIN:
        return None
    if metrics.get("estimate_informative") is False:  # two middles of wide intervals: estimate_vague says so
        return None
    return _warning("refined_worse_est", f"Estimated without the truth, the refined labels are less precise than "
                    f"the given ones ({refined:.3f} against {given:.3f}): the method may be making the labels "
                    "worse. Use the calibrated relabel rule (--relabel-rule calibrated), check the teacher's "
                    "accuracy, or review a sample of the changes on the Review page.")


def vague_estimate_warning(metrics: list[dict], rule: str = "calibrated") -> dict | None:
    """``estimate_vague``: stage 0's noise estimate was not informative (``estimate_informative`` False)."""
    stage0 = next((m for m in metrics if m.get("phase") == "propagate"), {})
    if stage0.get("estimate_informative", True) is not False:
        return None
    audited = stage0.get("audit_size") or 0
    if rule == "calibrated" and audited:
        kept = (f"The calibrated rule took only the changes the random audit ({audited} samples) showed fixing more "
                "labels than they broke. ")
    elif rule == "calibrated":
        kept = "The calibrated rule kept the given labels. "
    else:
        kept = "The authors' rule relabelled without that evidence. "
    return _warning("estimate_vague", f"The teacher's features leave the class of "
                    f"{stage0.get('estimate_ambiguity', float('nan')):.0%} of the samples open, so the neighbour "
                    "votes cannot tell wrong labels from classes the features mix: the noise rate is somewhere in "
                    f"[{stage0.get('noise_rate_low', 0):.2f}, {stage0.get('noise_rate_high', 1):.2f}] and the "
                    "precision estimates are as wide. " + kept
                    + ("" if audited else "Audit a random sample on the Review page (about 700 samples give the "
                       "rate within 0.03; from 50 on, the calibrated rule uses it). ")
                    + "Train the teacher longer or give better features (--teacher-features); if you know the noise "
                    "rate R, --relabel-rule authors --noise-rate R changes only the R share of labels the "
                    "propagation supports least.")


def run_warnings(store) -> list[dict]:
    """Every warning that applies to the run in ``store`` now (reads metrics and the last snapshot)."""
    metrics = store.metrics()
    if not metrics:
        return []
    config = store.config()
    num_classes = len(store.class_names())
    out = [teacher_warning(metrics, num_classes)]
    last = metrics[-1]
    if config.method == "aml-kd" and last.get("phase") != "teacher":  # the labels have been refined
        arrays = store.dataset_arrays()
        refined = read(store, last["step"], ("refined",))["refined"] if store.steps() else arrays["given"]
        # The rate the changes are held against: the known one, else the synthetic noise's; the stage-0
        # estimate comes from the very propagation being judged, so it is no check (a label file: at most half).
        if config.noise_rate is not None:
            rate = config.noise_rate
        elif not config.labels:
            spec = parse_noise_spec(config.noise)
            rate = 0.0 if spec.kind == "none" else spec.rate
        else:
            rate = 0.25
        out.append(label_warning(arrays["given"], refined, arrays["true"], rate,
                                 last.get("given_label_precision"), last.get("refined_label_precision")))
        out.append(estimate_warning(last))
        out.append(vague_estimate_warning(metrics, config.relabel_rule))
        out.append(audit_warning(store, arrays["given"], refined))
    return [w for w in out if w is not None]


def audit_warning(store, given: np.ndarray, refined: np.ndarray) -> dict | None:
    """``audit_worse``: on the random audit (``audit.sqlite``), the refined labels break more audited
    labels than they fix, beyond chance (the paired interval of the change is below 0)."""
    if not store.audit_path.is_file():
        return None
    from ..method.audit import audit_of
    from .review import AuditStore

    labels, left_out = AuditStore(store.path).audit_labels(len(given))
    change = audit_of(labels, given, left_out).change(given, refined)
    if change.verdict != "worse":
        return None
    return _warning("audit_worse", f"On the random audit ({change.total} samples) the refined labels break "
                    f"{change.broken} audited labels and fix {change.fixed}: worse than the given labels, beyond "
                    f"chance ({change.value:+.3f}, 90% interval {change.low:+.3f} to {change.high:+.3f}). Use the "
                    "calibrated relabel rule (it takes only the changes the audit supports), or train the teacher "
                    "longer.")


def below_baseline(student_accuracy: float | None, ce_accuracy: float | None, margin: float = 0.005) -> dict | None:
    """``below_ce``: the student's test accuracy under the CE baseline's on the same data."""
    if student_accuracy is None or ce_accuracy is None or student_accuracy >= ce_accuracy - margin:
        return None
    return _warning("below_ce", f"The student's test accuracy {student_accuracy:.3f} is below the plain CE "
                    f"baseline's {ce_accuracy:.3f} on the same data: here the method does not pay. Check the "
                    "teacher (its accuracy, its schedule) before trusting the refined labels.")

"""What a lecture says at the end, and the honest labels of the Train page.

Pure helpers (run directories and arrays in, numbers and sentences out), so
every number the Train page shows here is unit-tested:

- :func:`precision_label`: the headline's label precision is the *given*
  labels' until a step has propagated labels;
- :func:`noise_rate_line`: stage 0's noise-rate estimate with its interval,
  beside the true rate where known, and whether it found noise at all;
- :func:`early_stop_note`: one line when the teacher stopped early, and why;
- :func:`noise_outcome`: noise found (fixed), relabelled to another wrong
  class, missed; right labels broken;
- :func:`comparison_runs`: finished CE and KD runs on the same data (same
  dataset, noise and seed) in the runs folder, for the student's accuracy;
- :func:`instructive_samples`: the fixed samples that tell the story best.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.method import LP_PHASES, METHOD_NAMES, RunConfig
from engine.rundir import RunStore, list_runs

TAKEAWAY_SAMPLES = 5


def precision_label(metrics: list[dict]) -> tuple[str, str]:
    """``(metric key, label)`` of the headline's label precision.

    Before any step propagated labels (the teacher phase, or a CE/KD run) the
    refined labels are the given ones: say so.
    """
    if any(m.get("phase") in LP_PHASES for m in metrics):  # until then the refined labels are the given ones
        return "refined_label_precision", "Refined-label precision"
    return "given_label_precision", "Given-label precision"


def noise_rate_line(metrics: list[dict]) -> str | None:
    """One line on the noise rate stage 0 estimated, with its 90% interval and the true rate where known, e.g.
    ``"Noise rate estimated at stage 0: 0.398 (90% interval 0.371–0.420); true 0.400."``; where its interval
    reaches 0 (``noise_found`` false) it adds that no label changed for it: ``"... · no evidence of noise:
    labels kept."``; where it does not rise above the teacher's confusion (``estimate_confused``) the rate is
    said as its bound only. Without a stage 0 (the ablation) the rate estimated from the teacher; ``None``
    before any estimate."""
    stage0 = next((m for m in reversed(metrics) if m.get("phase") == "propagate"), None)
    if stage0 is None or stage0.get("noise_rate_estimate") is None:
        rate = next((m["noise_rate_estimate"] for m in reversed(metrics) if m.get("noise_rate_estimate") is not None),
                    None)
        return None if rate is None else f"Noise rate estimated from the teacher: {rate:.3f}."
    low, high = stage0.get("noise_rate_low"), stage0.get("noise_rate_high")
    given = stage0.get("given_label_precision")
    truth = f"; true {1 - given:.3f}" if given is not None else ""
    ambiguity = stage0.get("estimate_ambiguity")
    audited = stage0.get("audit_size") or 0
    outcome = (f"the random audit ({audited} samples, rate {stage0['audit_rate']:.3f}) decided which changes to "
               "take" if audited and stage0.get("audit_rate") is not None else "**labels kept**")
    if stage0.get("estimate_informative") is False and high is not None:  # no point to show: only a bound
        why = f" (the teacher leaves the class of {ambiguity:.0%} of the samples open)" if ambiguity is not None else ""
        # without an audit, say what lets the method act: the audit is the evidence the votes lack
        hint = "" if audited else (". An audit of random samples can tell instead (Review page, Queue: Audit): "
                                   "from 50 on, a run's later steps take the changes it shows fixing more than "
                                   "they break")
        return (f"Noise rate at stage 0: **cannot be told** from the teacher's votes{why}: between 0 and {high:.3f}"
                f"{truth} · {outcome}{hint}.")
    if stage0.get("estimate_confused") and high is not None:  # informative, but within the teacher's confusion
        why = f" (it leaves the class of {ambiguity:.1%} of the samples open)" if ambiguity is not None else ""
        kept = f"no evidence of noise beyond it; {outcome}" if audited else "**no evidence of noise: labels kept**"
        return (f"Noise rate at stage 0: between 0 and {high:.3f}: the votes disagree with no more labels than "
                f"the teacher's own confusion explains{why}{truth} · {kept}.")
    line = f"Noise rate estimated at stage 0: {stage0['noise_rate_estimate']:.3f}"
    line += f" (90% interval {low:.3f}–{high:.3f})" if low is not None and high is not None else ""
    return line + truth + (" · **no evidence of noise: labels kept**." if stage0.get("noise_found") is False else ".")


def precision_estimate_line(last: dict) -> str | None:
    """One line on the labels' precision estimated without the truth (engine.method.confident), beside the
    true one where known, e.g. ``"Estimated without the truth: refined labels 0.918 (90% interval 0.906-0.917),
    given labels 0.641. True: 0.976 and 0.640."``; ``None`` where the step has no estimate."""
    refined, given = last.get("refined_precision_estimate"), last.get("given_precision_estimate")
    if refined is None or given is None:
        return None
    low, high = last.get("refined_precision_low"), last.get("refined_precision_high")
    if (last.get("estimate_informative") is False or last.get("estimate_confused")) and low is not None \
            and high is not None:
        # the votes cannot tell noise: the point is only the middle of a bound, so the bound is what is said
        line = (f"Estimated without the truth: refined labels between {low:.3f} and {high:.3f} "
                "(the votes cannot tell more).")
    else:
        interval = f" (90% interval {low:.3f}–{high:.3f})" if low is not None and high is not None else ""
        line = f"Estimated without the truth: refined labels {refined:.3f}{interval}, given labels {given:.3f}."
    true_refined, true_given = last.get("refined_label_precision"), last.get("given_label_precision")
    if true_refined is not None and true_given is not None:
        line += f" True: {true_refined:.3f} and {true_given:.3f}."
    return line


def early_stop_note(metrics: list[dict], config: RunConfig) -> str | None:
    """One line when the teacher stopped before its planned epochs, e.g. ``"The teacher stopped at epoch 11:
    held-out accuracy stopped improving (best at epoch 6, patience 5); 19 steps fewer than planned."``

    ``None`` when it did not stop early (or loaded a checkpoint, or the run has no teacher).
    """
    teacher = [m for m in metrics if m.get("phase") == "teacher"]
    if config.teacher_checkpoint or not teacher or not any(m.get("teacher_early_stopped") for m in teacher):
        return None
    epochs = len(teacher)
    planned = config.schedule.teacher_epochs
    fewer = planned - epochs
    if fewer <= 0:
        return None
    best = next((m.get("teacher_best_epoch") for m in reversed(teacher) if m.get("teacher_best_epoch")), None)
    why = "held-out accuracy stopped improving"
    detail = f" (best at epoch {best}, patience {config.schedule.teacher_patience})" if best else ""
    return (f"The teacher stopped at epoch {epochs} of {planned}: {why}{detail}; "
            f"{fewer} step{'s' if fewer != 1 else ''} fewer than planned.")


@dataclass(frozen=True)
class NoiseOutcome:
    """What the refinery did to the wrong given labels (counts of samples)."""

    noisy: int  # given label wrong
    fixed: int  # ... and the refined label is the true one
    moved_wrong: int  # ... relabelled, but to another wrong class
    missed: int  # ... kept its wrong given label
    broken: int  # given label right, refined label wrong


def noise_outcome(given: np.ndarray, refined: np.ndarray, true: np.ndarray) -> NoiseOutcome | None:
    """Counts over the samples whose truth is known (``true >= 0``); ``None`` when none is."""
    known = np.asarray(true) >= 0
    if not known.any():
        return None
    g, r, t = (np.asarray(a)[known] for a in (given, refined, true))
    noisy = g != t
    return NoiseOutcome(noisy=int(noisy.sum()), fixed=int(np.sum(noisy & (r == t))),
                        moved_wrong=int(np.sum(noisy & (r != t) & (r != g))), missed=int(np.sum(noisy & (r == g))),
                        broken=int(np.sum(~noisy & (r != t))))


def _same_data(a: RunConfig, b: RunConfig) -> bool:
    return a.dataset == b.dataset and a.noise == b.noise and a.seed == b.seed and a.noise_rate == b.noise_rate


def comparison_runs(root: str | Path, config: RunConfig, exclude: str | Path | None = None) -> dict[str, dict]:
    """Finished runs on the same data as ``config`` under ``root``, by method (``"ce"``, ``"kd"``,
    ``"aml-kd"``): ``{"path", "student_test_accuracy"}`` of the latest of each.

    Runs that are not finished, or whose files cannot be read, are left out.
    """
    out: dict[str, dict] = {}
    skip = Path(exclude).resolve() if exclude is not None else None
    for path in list_runs(root):  # newest first
        if skip is not None and path.resolve() == skip:
            continue
        store = RunStore(path)
        try:
            other = store.config()
            finished = store.status().get("phase") == "done"
            metrics = store.metrics() if finished else []
        except Exception:  # noqa: BLE001 - a damaged or half-written run is no comparison: skip it
            continue
        if not finished or other.method in out or not _same_data(config, other):
            continue
        accuracy = next((m["student_test_accuracy"] for m in reversed(metrics)
                         if m.get("student_test_accuracy") is not None), None)
        if accuracy is not None:
            out[other.method] = {"path": str(path), "student_test_accuracy": float(accuracy)}
    return out


def instructive_samples(given: np.ndarray, refined: np.ndarray, true: np.ndarray, confidence: np.ndarray | None,
                        count: int = TAKEAWAY_SAMPLES, positions: np.ndarray | None = None) -> list[int]:
    """The fixed samples (given wrong, refined right) the propagation was surest of: clear stories, each
    one a label the method corrected. Ties (or no confidences) by index.

    ``positions`` (N, D), e.g. the points of a 2-D dataset: the samples are also spread apart (the surest
    first, then each next one the farthest from those chosen, among the surest quarter of the fixed
    samples), so that their pictures differ rather than show one corner of the data five times.

    Returns
    -------
    list of int
        At most ``count`` sample indices.
    """
    given, refined, true = (np.asarray(a) for a in (given, refined, true))
    fixed = np.flatnonzero((true >= 0) & (given != true) & (refined == true))
    if not fixed.size:
        return []
    if confidence is None:
        ranked = fixed
    else:
        conf = np.nan_to_num(np.asarray(confidence, dtype=np.float64)[fixed], nan=-1.0)
        ranked = fixed[np.lexsort((fixed, -conf))]
    if positions is None or len(ranked) <= count:
        return [int(i) for i in ranked[:count]]
    pool = ranked[: max(count * 4, len(ranked) // 4)]
    xy = np.asarray(positions, dtype=np.float64)[pool]
    chosen = [0]
    distance = np.linalg.norm(xy - xy[0], axis=1)
    while len(chosen) < min(count, len(pool)):
        nxt = int(np.argmax(distance))  # the farthest from every sample chosen (first of a tie: the surer)
        chosen.append(nxt)
        distance = np.minimum(distance, np.linalg.norm(xy - xy[nxt], axis=1))
    return [int(pool[i]) for i in chosen]


def takeaway_lines(metrics: list[dict], outcome: NoiseOutcome | None, method: str,
                   comparisons: dict[str, dict]) -> list[str]:
    """The takeaway as Markdown lines: label precision given -> refined, the noise, the student against
    the plain baselines (where such runs exist)."""
    first, last = (metrics[0], metrics[-1]) if metrics else ({}, {})
    lines = []
    given_p, refined_p = first.get("given_label_precision"), last.get("refined_label_precision")
    refines = method == "aml-kd"  # CE and KD train on the given labels: nothing refined, no noise found
    if given_p is not None and refined_p is not None and refines:
        lines.append(f"**Label precision** {given_p:.1%} given → **{refined_p:.1%}** refined "
                     f"({(refined_p - given_p) * 100:+.1f} points).")
    elif given_p is not None:
        lines.append(f"**Given-label precision** {given_p:.1%}: {METHOD_NAMES.get(method, method)} trains on the "
                     "given labels as they are (AML-KD would refine them).")
    if outcome is not None and outcome.noisy and refines:
        lines.append(f"**Noise:** {outcome.fixed} of {outcome.noisy} wrong labels fixed "
                     f"({outcome.fixed / outcome.noisy:.0%}), {outcome.moved_wrong} moved to another wrong class, "
                     f"{outcome.missed} missed; {outcome.broken} right labels broken.")
    student = next((m["student_test_accuracy"] for m in reversed(metrics)
                    if m.get("student_test_accuracy") is not None), None)
    if student is not None:
        text = f"**Student test accuracy** {student:.1%}"
        others = [(METHOD_NAMES[key], comparisons[key]["student_test_accuracy"]) for key in ("ce", "kd")
                  if key in comparisons and key != method]
        if others:
            text += " against " + ", ".join(f"{name} {acc:.1%} ({(student - acc) * 100:+.1f})"
                                            for name, acc in others)
            text += " on the same data."
        else:
            text += " (no finished CE or KD run on the same data in the runs folder to compare with)."
        lines.append(text)
    return lines

"""Scalar metrics of one step against the ground truth, where it is known.

Direction: higher is better for precisions, recalls, accuracies and AUROC.
Every function returns ``None`` where the truth is unknown, so the app can
hide a metric rather than show a made-up number.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def _known(true_labels):
    if true_labels is None:
        return None
    mask = np.asarray(true_labels) >= 0
    return mask if mask.any() else None


def precision(labels: np.ndarray, true_labels: np.ndarray | None) -> float | None:
    """Fraction of labels equal to the truth."""
    mask = _known(true_labels)
    return None if mask is None else float(np.mean(labels[mask] == true_labels[mask]))


def detection(given: np.ndarray, refined: np.ndarray, true_labels: np.ndarray | None) -> dict:
    """Noise detection: flagged = refined differs from given; noisy = given is wrong."""
    mask = _known(true_labels)
    if mask is None:
        return {"detection_precision": None, "detection_recall": None}
    flagged = (given != refined)[mask]
    noisy = (given != true_labels)[mask]
    tp = int(np.sum(flagged & noisy))
    return {
        "detection_precision": tp / int(flagged.sum()) if flagged.any() else None,
        "detection_recall": tp / int(noisy.sum()) if noisy.any() else None,
    }


def relabel_counts(given: np.ndarray, refined: np.ndarray, true_labels: np.ndarray | None) -> dict:
    """How many relabels fixed a wrong given label, and how many broke a right one."""
    out = {"relabelled": int(np.sum(given != refined))}
    mask = _known(true_labels)
    if mask is None:
        out.update(wrong_to_right=None, right_to_wrong=None)
        return out
    g, r, t = given[mask], refined[mask], true_labels[mask]
    out["wrong_to_right"] = int(np.sum((g != t) & (r == t)))
    out["right_to_wrong"] = int(np.sum((g == t) & (r != t)))
    return out


def weight_auroc(weights: np.ndarray | None, given: np.ndarray, true_labels: np.ndarray | None) -> float | None:
    """AUROC of a weight as a predictor of 'the given label is correct'."""
    mask = _known(true_labels)
    if weights is None or mask is None:
        return None
    clean = (given == true_labels)[mask]
    if clean.all() or not clean.any():
        return None
    return float(roc_auc_score(clean, weights[mask]))


def selection_precision(easy: np.ndarray | None, given: np.ndarray, true_labels: np.ndarray | None) -> float | None:
    """Fraction of 'easy' (small-loss) samples whose given label is right."""
    mask = _known(true_labels)
    if easy is None or mask is None:
        return None
    chosen = easy & mask
    return float(np.mean(given[chosen] == true_labels[chosen])) if chosen.any() else None


def label_metrics(given, refined, true_labels, weights_given=None, easy=None) -> dict:
    out = {
        "given_label_precision": precision(given, true_labels),
        "refined_label_precision": precision(refined, true_labels),
        "awe_auroc": weight_auroc(weights_given, given, true_labels),
        "awe_std": None if weights_given is None else float(np.std(weights_given)),
        "selection_precision": selection_precision(easy, given, true_labels),
    }
    out.update(detection(given, refined, true_labels))
    out.update(relabel_counts(given, refined, true_labels))
    return out

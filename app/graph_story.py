"""What the Propagation graph page shows first, and the what-if's starting point.

Pure helpers (config and arrays in), unit-tested:

- :func:`relabelled_in_step`: the samples whose label this very step changed;
- :func:`story_order`: those samples, the ones whose neighbourhood shows the
  most movement first (neighbours seeded with other classes than the label
  the sample ends with), so that the replay of the iterations moves;
- :func:`busiest_step`: the step that relabelled the most samples (where the page opens);
- :func:`fixed_first`: the samples a step fixed (truth known), those whose own colour changes during
  Play first; the ones it broke only when asked;
- :func:`walk`: previous / next in that order;
- :func:`knn_caption`: how the step's neighbours were searched and the search's recall;
- :func:`seed_caption`: whose predictions seeded a refine or mutual step's not-easy samples, and what judged it.
"""

from __future__ import annotations

import numpy as np

from engine.readers.compare import within_chance


def relabelled_in_step(refined: np.ndarray, before: np.ndarray) -> np.ndarray:
    """Samples whose refined label differs from the label they had before the step.

    Parameters
    ----------
    refined : np.ndarray, shape (N,)
        The step's refined labels.
    before : np.ndarray, shape (N,)
        The previous step's refined labels (the given labels before the first propagation).

    Returns
    -------
    np.ndarray, shape (M,), int64, ascending
    """
    return np.flatnonzero(np.asarray(refined) != np.asarray(before)).astype(np.int64)


def story_order(samples: np.ndarray, neighbor_idx: np.ndarray, seeds: np.ndarray, refined: np.ndarray,
                confidence: np.ndarray | None = None) -> np.ndarray:
    """``samples`` ordered so that the most telling come first.

    A sample whose neighbours were seeded with classes other than the one it
    ends with shows label mass competing over the iterations; a sample whose
    neighbours all agree shows one colour from start to end. Order: most
    neighbours seeded otherwise first, then the propagation's confidence
    (higher first: a clear outcome), then the index.

    Parameters
    ----------
    samples : np.ndarray, shape (M,)
    neighbor_idx : np.ndarray, shape (N, k)
    seeds : np.ndarray, shape (N,)
        Seed class of each sample (-1: no seed).
    refined : np.ndarray, shape (N,)
    confidence : np.ndarray, shape (N,), optional

    Returns
    -------
    np.ndarray, shape (M,), int64
    """
    samples = np.asarray(samples, dtype=np.int64)
    if not samples.size:
        return samples
    neighbour_seeds = np.asarray(seeds)[_rows(neighbor_idx, samples)]  # (M, k)
    contest = np.sum((neighbour_seeds >= 0) & (neighbour_seeds != _rows(refined, samples)[:, None]), axis=1)
    conf = np.zeros(len(samples)) if confidence is None else np.nan_to_num(_rows(confidence, samples), nan=0.0)
    return samples[np.lexsort((samples, -conf, -contest))]


def _rows(array, rows: np.ndarray) -> np.ndarray:
    """``array[rows]`` as a plain array: only those rows of a memory-mapped (or recorded) array are read."""
    if isinstance(array, (list, tuple)):
        array = np.asarray(array)
    return np.asarray(array[rows])


def walk(order: np.ndarray, current: int, delta: int) -> int | None:
    """The sample ``delta`` places from ``current`` in ``order`` (wrapping); the first one when ``current``
    is not in it; ``None`` when ``order`` is empty."""
    order = [int(i) for i in order]
    if not order:
        return None
    if current not in order:
        return order[0] if delta >= 0 else order[-1]
    return order[(order.index(current) + delta) % len(order)]


def busiest_step(changes: dict[int, int]) -> int | None:
    """The step with the most relabelled samples (the earliest of a tie); ``None`` without steps.

    Parameters
    ----------
    changes : dict of step -> number of samples whose label that step changed
    """
    if not changes:
        return None
    return min(changes, key=lambda step: (-changes[step], step))


def fixed_first(order: np.ndarray, before: np.ndarray, refined: np.ndarray, true: np.ndarray | None,
                seeds: np.ndarray, include_broken: bool = False) -> np.ndarray:
    """The samples of ``order`` (already most telling first) to walk through, best for a lecture first.

    With a truth: the samples the step *fixed* (label wrong before, right after), then, only with
    ``include_broken``, the others (moved from wrong to wrong, or broken: right before, wrong after).
    Within each group, samples whose seed differs from the label they end with come first: the centre
    itself changes colour during Play (its seed is iteration 0's colour). Without a truth, every sample,
    the changing ones first.

    Parameters
    ----------
    order : np.ndarray, shape (M,)
    before, refined : np.ndarray, shape (N,)
        Labels before and after the step.
    true : np.ndarray, shape (N,), or None
        -1 where unknown.
    seeds : np.ndarray, shape (N,)
        The step's seed class per sample (-1: no seed).
    """
    order = np.asarray(order, dtype=np.int64)
    if not order.size:
        return order
    refined, true = _rows(refined, order), None if true is None else _rows(true, order)  # (M,) the walked rows
    changes_colour = _rows(seeds, order) != refined
    if true is None or not (true >= 0).any():
        keep = np.ones(len(order), bool)
        rank = np.where(changes_colour, 0, 1)
    else:
        fixed = (_rows(before, order) != true) & (refined == true)
        keep = fixed | include_broken
        rank = np.where(fixed, 0, 2) + np.where(changes_colour, 0, 1)
    picked = np.flatnonzero(keep)
    return order[picked[np.argsort(rank[picked], kind="stable")]]


def knn_caption(metrics: dict, k: int) -> str | None:
    """One line on the step's kNN search: ``kNN: ivf, recall@20 0.97 on 1,000 sampled queries``.

    Parameters
    ----------
    metrics : dict
        The step's metrics line (``knn_index``, ``knn_recall``, ``knn_recall_queries``).
    k : int
        Neighbours per sample.

    Returns
    -------
    str or None
        None for a step written before the search was recorded.
    """
    index, recall = metrics.get("knn_index"), metrics.get("knn_recall")
    if index is None or recall is None:
        return None
    if index == "exact":
        return f"kNN: exact (every pair compared), recall@{k} 1.00"
    queries = int(metrics.get("knn_recall_queries") or 0)
    return f"kNN: {index}, recall@{k} {recall:.2f} on {queries:,} sampled queries"


def seed_caption(metrics: dict) -> str | None:
    """One line on a refine or mutual step's seeds: whose predictions seeded the not-easy samples and why.

    ``metrics`` is the step's metrics line (``seed_labeller``, ``labeller_judge``, ``holdout_judged``,
    ``holdout_agreement_*``, ``holdout_only_*``). None for a step with no seeds of that kind
    (the teacher's, stage 0, the baselines).
    """
    labeller = metrics.get("seed_labeller")
    if labeller not in ("student", "teacher"):
        return None
    other = "teacher" if labeller == "student" else "student"
    head = f"Not-easy samples seeded by the {labeller}'s predictions"
    judge = metrics.get("labeller_judge")
    if judge == "held-out":
        return f"{head}: {_held_out_verdict(metrics, labeller, other)}"
    if judge == "audit":
        return f"{head}: it is right on more of the random audit's samples."
    if judge == "posterior":
        return f"{head}: the better labeller by stage 0's estimate (no hold-out or audit to judge on)."
    return f"{head} (the authors' rule: the student seeds every refine and mutual step)." \
        if labeller == "student" else f"{head}."


def _held_out_verdict(metrics: dict, labeller: str, other: str) -> str:
    """The held-out judge's counts, and whether their difference is beyond chance (exact McNemar at Compare's
    level, :func:`engine.readers.compare.within_chance`)."""
    n = metrics.get("holdout_judged")
    mine, theirs = (metrics.get(f"holdout_agreement_{name}") for name in (labeller, other))
    if n is None or mine is None or theirs is None:
        return "it agrees with more of the held-out samples neither network trained on."
    counts = (f"of the {n:,} held-out samples neither network trained on, it agrees with {round(mine * n):,} "
              f"given labels, the {other} with {round(theirs * n):,}")
    if mine == theirs:
        return f"{counts}; a tie goes to the teacher."
    alone = (metrics.get(f"holdout_only_{labeller}"), metrics.get(f"holdout_only_{other}"))
    if None in alone:
        return f"{counts}."
    if within_chance(*alone):
        return (f"{counts}; within chance (they disagree on {sum(alone)} of them, split {alone[0]} to "
                f"{alone[1]}), so either would seed about as well.")
    return f"{counts}; more than chance explains ({alone[0]} to {alone[1]} where they disagree)."

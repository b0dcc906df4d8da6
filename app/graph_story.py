"""What the Propagation graph page shows first, and the what-if's starting point.

Pure helpers (config and arrays in), unit-tested:

- :func:`relabelled_in_step`: the samples whose label this very step changed;
- :func:`story_order`: those samples, the ones whose neighbourhood shows the
  most movement first (neighbours seeded with other classes than the label
  the sample ends with), so that the replay of the iterations moves;
- :func:`walk`: previous / next in that order.
"""

from __future__ import annotations

import numpy as np


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
    neighbour_seeds = np.asarray(seeds)[np.asarray(neighbor_idx)[samples]]  # (M, k)
    contest = np.sum((neighbour_seeds >= 0) & (neighbour_seeds != np.asarray(refined)[samples, None]), axis=1)
    conf = np.zeros(len(samples)) if confidence is None else np.nan_to_num(np.asarray(confidence)[samples], nan=0.0)
    return samples[np.lexsort((samples, -conf, -contest))]


def walk(order: np.ndarray, current: int, delta: int) -> int | None:
    """The sample ``delta`` places from ``current`` in ``order`` (wrapping); the first one when ``current``
    is not in it; ``None`` when ``order`` is empty."""
    order = [int(i) for i in order]
    if not order:
        return None
    if current not in order:
        return order[0] if delta >= 0 else order[-1]
    return order[(order.index(current) + delta) % len(order)]

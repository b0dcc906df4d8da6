"""Small-loss selection (Han et al., NeurIPS 2018 "Co-teaching"; AML-KD
stage 1 step 1): the samples whose loss against the given label is smallest
are taken as clean ('easy') and keep their given label.
"""

from __future__ import annotations

import numpy as np


def small_loss_mask(losses: np.ndarray, keep_fraction: float) -> np.ndarray:
    """Boolean mask (N,) of exactly ``round(keep_fraction * N)`` smallest losses.

    Ties are broken by index (stable sort), so the mask is reproducible.
    Lower loss is better (more likely clean).
    """
    if not 0.0 <= keep_fraction <= 1.0:
        raise ValueError(f"keep_fraction={keep_fraction} must lie in [0, 1]")
    losses = np.asarray(losses)
    keep = int(round(keep_fraction * len(losses)))
    mask = np.zeros(len(losses), dtype=bool)
    mask[np.argsort(losses, kind="stable")[:keep]] = True
    return mask


def loss_cutoff(losses: np.ndarray, keep_fraction: float) -> float:
    """The loss value at the selection boundary (largest kept loss)."""
    losses = np.sort(np.asarray(losses))
    keep = int(round(keep_fraction * len(losses)))
    return float(losses[keep - 1]) if keep > 0 else float("-inf")

"""How much of a difference in test accuracy is chance.

A test set of ``n`` images measures a classifier's accuracy only to within a
few images: on 36 images one image is 2.8 points. Three pure functions say how
much:

- :func:`wilson_interval`: a 95% interval for one accuracy ``k / n``, the
  Wilson score interval (Wilson 1927; Agresti & Coull 1998 show it keeps its
  coverage for small ``n`` and ``k`` near 0 or ``n``, where the textbook
  ``p +- 1.96 sqrt(p(1-p)/n)`` does not).
- :func:`paired_difference`: the difference of two accuracies measured on
  the *same* test images, with Newcombe's (1998, method 10) interval for
  paired proportions, which combines the two Wilson intervals with the
  correlation of the pairs: images both classifiers get right or wrong say
  nothing about the difference.
- :func:`mcnemar_exact`: McNemar's test, exact: under "no difference" each
  of the ``b + c`` discordant images (right for one, wrong for the other) is
  a fair coin, so the two-sided p-value is a binomial tail (Fagerland, Lydersen
  & Laake 2013 recommend the exact or mid-p test for small counts).
- :func:`chance_margin`: with ``m`` discordant images, the smallest
  difference, in images, that the exact test calls significant.

Cost: ``O(n)`` for the counts; the exact test sums ``O(b + c)`` binomial
coefficients. Standard library and numpy only (``python -m engine compare`` starts fast).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

LEVEL = 0.95  # the confidence of every interval here; 1 - LEVEL is the test's significance level


def _z(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level={level!r} is outside (0, 1)")
    return NormalDist().inv_cdf(0.5 + level / 2)


def wilson_interval(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Wilson score interval for a proportion ``k / n``.

    Returns ``(low, high)`` in [0, 1]; ``(0.0, 1.0)`` for ``n == 0`` (nothing measured).
    """
    if n < 0 or not 0 <= k <= max(n, 0):
        raise ValueError(f"k={k!r}, n={n!r}: need 0 <= k <= n")
    if n == 0:
        return 0.0, 1.0
    z = _z(level)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low = 0.0 if k == 0 else max(0.0, centre - half)  # exact ends: no rounding residue at 0 or n
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts.

    ``b``: images only the first classifier gets right; ``c``: only the second.
    ``p = min(1, 2 P(X <= min(b, c)))`` with ``X ~ Binomial(b + c, 1/2)``; 1.0 when ``b + c == 0``.
    """
    if b < 0 or c < 0:
        raise ValueError(f"b={b!r}, c={c!r}: counts are >= 0")
    if b + c == 0:
        return 1.0
    m = b + c
    tail = sum(math.comb(m, i) for i in range(min(b, c) + 1)) / 2 ** m  # exact: integers, then one division
    return float(min(1.0, 2.0 * tail))


def chance_margin(discordant: int, level: float = LEVEL) -> int | None:
    """The smallest ``|b - c|`` (in images) that :func:`mcnemar_exact` calls
    significant at ``1 - level`` when ``b + c == discordant``; ``None`` when no
    split of so few discordant images is (fewer than 6 at 95%)."""
    for diff in range(discordant % 2, discordant + 1, 2):
        if mcnemar_exact((discordant + diff) // 2, (discordant - diff) // 2) < 1 - level:
            return diff
    return None


@dataclass(frozen=True)
class PairedDifference:
    """Accuracy of A minus accuracy of B on the same ``n`` images.

    ``both``, ``only_a``, ``only_b``, ``neither``: the 2x2 counts (right/wrong
    for A and B); ``difference`` = (only_a - only_b) / n; ``low``, ``high`` its
    interval; ``p_value``: exact McNemar; ``margin``: :func:`chance_margin` of
    the discordant count (``None``: none would be significant).
    """

    n: int
    both: int
    only_a: int
    only_b: int
    neither: int
    difference: float
    low: float
    high: float
    p_value: float
    margin: int | None

    @property
    def images(self) -> int:
        """The difference in images (A right and B wrong, minus the reverse)."""
        return self.only_a - self.only_b

    @property
    def within_chance(self) -> bool:
        return self.p_value >= 1 - LEVEL


def paired_difference(right_a: np.ndarray, right_b: np.ndarray, level: float = LEVEL) -> PairedDifference:
    """Difference of two accuracies on the same images, its interval and its exact McNemar test.

    Parameters
    ----------
    right_a, right_b : np.ndarray, shape (n,), bool
        Per test image, whether A (and B) classify it right; the same images in the same order.

    The interval is Newcombe's hybrid score interval for paired proportions
    (method 10, without continuity correction)::

        d = p_a - p_b, (l_a, u_a), (l_b, u_b) the Wilson intervals,
        phi = (both*neither - only_a*only_b) / sqrt((both+only_a)(only_b+neither)(both+only_b)(only_a+neither))
              (0 when a margin is empty)
        low  = d - sqrt((p_a-l_a)^2 - 2 phi (p_a-l_a)(u_b-p_b) + (u_b-p_b)^2)
        high = d + sqrt((u_a-p_a)^2 - 2 phi (u_a-p_a)(p_b-l_b) + (p_b-l_b)^2)
    """
    a, b = np.asarray(right_a, dtype=bool), np.asarray(right_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"right_a {a.shape} and right_b {b.shape} must be 1-D and of one length")
    n = int(a.size)
    both, only_a = int(np.sum(a & b)), int(np.sum(a & ~b))
    only_b, neither = int(np.sum(~a & b)), int(np.sum(~a & ~b))
    if n == 0:
        return PairedDifference(0, 0, 0, 0, 0, 0.0, -1.0, 1.0, 1.0, None)
    p_a, p_b = (both + only_a) / n, (both + only_b) / n
    l_a, u_a = wilson_interval(both + only_a, n, level)
    l_b, u_b = wilson_interval(both + only_b, n, level)
    denominator = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    phi = (both * neither - only_a * only_b) / math.sqrt(denominator) if denominator > 0 else 0.0
    d = p_a - p_b
    low = d - math.sqrt(max(0.0, (p_a - l_a) ** 2 - 2 * phi * (p_a - l_a) * (u_b - p_b) + (u_b - p_b) ** 2))
    high = d + math.sqrt(max(0.0, (u_a - p_a) ** 2 - 2 * phi * (u_a - p_a) * (p_b - l_b) + (p_b - l_b) ** 2))
    return PairedDifference(n=n, both=both, only_a=only_a, only_b=only_b, neither=neither, difference=d,
                            low=max(-1.0, low), high=min(1.0, high), p_value=mcnemar_exact(only_a, only_b),
                            margin=chance_margin(only_a + only_b, level))


def mean_and_spread(values) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (``ddof=1``; 0.0 for one value) of the values that are not None."""
    known = [float(v) for v in values if v is not None]
    if not known:
        return None, None
    return float(np.mean(known)), float(np.std(known, ddof=1)) if len(known) > 1 else 0.0

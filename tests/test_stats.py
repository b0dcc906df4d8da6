"""engine.method.stats against hand computations on tiny cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.method.stats import chance_margin, mcnemar_exact, mean_and_spread, paired_difference, wilson_interval

Z = 1.959963984540054  # the 97.5% normal quantile


def test_wilson_three_of_four_by_hand():
    # p = 0.75, n = 4: centre = (0.75 + z^2/8) / (1 + z^2/4) = 1.230183 / 1.960364 = 0.627531;
    # half = z / (1 + z^2/4) * sqrt(0.75*0.25/4 + z^2/64) = 0.999789 * 0.326847 = 0.326779
    low, high = wilson_interval(3, 4)
    assert low == pytest.approx(0.300642, abs=1e-6)
    assert high == pytest.approx(0.954413, abs=1e-6)


def test_wilson_ends_and_width():
    assert wilson_interval(0, 10) == (0.0, pytest.approx(Z * Z / (10 + Z * Z)))  # (0, z^2 / (n + z^2)) at k = 0
    assert wilson_interval(10, 10) == (pytest.approx(10 / (10 + Z * Z)), 1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # 36 test images, 20 right: the interval is wide (about +-16 points), 360 images: about +-5
    lo36, hi36 = wilson_interval(20, 36)
    lo360, hi360 = wilson_interval(200, 360)
    assert 0.30 < hi36 - lo36 < 0.33 and 0.09 < hi360 - lo360 < 0.11
    with pytest.raises(ValueError, match="k=5"):
        wilson_interval(5, 4)


def test_mcnemar_exact_by_hand():
    # b=1, c=5: P(X <= 1 | 6, 1/2) = (1 + 6) / 64; two-sided 14/64
    assert mcnemar_exact(1, 5) == pytest.approx(14 / 64)
    assert mcnemar_exact(5, 1) == pytest.approx(14 / 64)
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)
    assert mcnemar_exact(2, 8) == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert mcnemar_exact(3, 3) == 1.0 and mcnemar_exact(0, 0) == 1.0


def test_chance_margin():
    # 5 discordant images: even 5-0 has p = 2/32 = 0.0625, never significant
    assert [chance_margin(m) for m in range(6)] == [None] * 6
    assert chance_margin(6) == 6  # 6-0: p = 2/64
    assert chance_margin(8) == 8  # 7-1: 2*9/256 = 0.070; 8-0: 2/256
    assert chance_margin(10) == 8  # 9-1: 2*11/1024 = 0.021; 8-2: 2*56/1024 = 0.109


def test_paired_difference_by_hand():
    # 10 images: both right 3, only A 3, only B 1, neither 3
    a = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0, 0], bool)
    b = np.array([1, 1, 1, 0, 0, 0, 1, 0, 0, 0], bool)
    r = paired_difference(a, b)
    assert (r.n, r.both, r.only_a, r.only_b, r.neither, r.images) == (10, 3, 3, 1, 3, 2)
    assert r.difference == pytest.approx(0.2)
    assert r.p_value == pytest.approx(2 * (1 + 4) / 16)  # b=3, c=1: 2 P(X <= 1 | 4) = 10/16
    assert r.within_chance and r.margin is None
    # Newcombe by hand: p_a = 0.6, p_b = 0.4, Wilson(6, 10) = (0.312674, 0.831820), Wilson(4, 10) = (0.168180, 0.687326),
    # phi = (3*3 - 3*1) / sqrt(6*4*4*6) = 0.25
    la, ua = wilson_interval(6, 10)
    lb, ub = wilson_interval(4, 10)
    assert (la, ua, lb, ub) == pytest.approx((0.312674, 0.831820, 0.168180, 0.687326), abs=1e-6)
    low = 0.2 - math.sqrt((0.6 - la) ** 2 - 2 * 0.25 * (0.6 - la) * (ub - 0.4) + (ub - 0.4) ** 2)
    high = 0.2 + math.sqrt((ua - 0.6) ** 2 - 2 * 0.25 * (ua - 0.6) * (0.4 - lb) + (0.4 - lb) ** 2)
    assert (r.low, r.high) == pytest.approx((low, high))
    assert (r.low, r.high) == pytest.approx((-0.151901, 0.483920), abs=1e-6)


def test_paired_difference_large_sample_matches_wald():
    # many images: Newcombe's interval approaches the Wald interval of a paired difference,
    # d +- z sqrt((b + c) / n^2 - (b - c)^2 / n^3)
    rng = np.random.default_rng(0)
    a = rng.random(20_000) < 0.8
    b = np.where(rng.random(20_000) < 0.9, a, ~a)
    r = paired_difference(a, b)
    n, bb, cc = 20_000, r.only_a, r.only_b
    half = Z * math.sqrt((bb + cc) / n ** 2 - (bb - cc) ** 2 / n ** 3)
    assert (r.low, r.high) == pytest.approx((r.difference - half, r.difference + half), abs=2e-4)
    assert r.high - r.low < 0.02


def test_paired_difference_significant_and_identical():
    a = np.ones(36, bool)
    b = np.ones(36, bool)
    b[:8] = False  # A right on 8 more images, none the other way: 8-0, p = 2/256
    r = paired_difference(a, b)
    assert r.p_value == pytest.approx(2 / 256) and not r.within_chance and r.margin == 8
    assert r.low > 0 and r.difference == pytest.approx(8 / 36)
    same = paired_difference(a, a)
    assert same.difference == 0 and same.p_value == 1.0 and same.low <= 0 <= same.high
    with pytest.raises(ValueError, match="one length"):
        paired_difference(a, b[:5])


def test_mean_and_spread():
    assert mean_and_spread([0.8, 0.9, None, 1.0]) == (pytest.approx(0.9), pytest.approx(0.1))
    assert mean_and_spread([0.7]) == (0.7, 0.0)
    assert mean_and_spread([None]) == (None, None)

"""The label rules of engine.method.refinery and small-loss selection, on
fixtures where the right answer and the likely wrong ones differ: no tied
losses unless ties are the point, easy and student labels that disagree,
reviews that change a label, a case between two thresholds, orders checked.
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.method import refinery
from engine.method.propagate import PropagationResult
from engine.method.select import loss_cutoff, small_loss_mask


def result(scores) -> PropagationResult:
    scores = np.asarray(scores, dtype=np.float32)
    c = scores.shape[1]
    entropy = -np.sum(np.where(scores > 0, scores * np.log(np.maximum(scores, 1e-12)), 0), axis=1)
    confidence = (1 - entropy / np.log(c)).astype(np.float32)
    return PropagationResult(scores, scores.argmax(1).astype(np.int64), confidence, 1, {})


# ---------------------------------------------------------------- small loss
def test_small_loss_rounds_to_the_nearest_count_not_down():
    losses = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8])  # 7 samples, no ties
    # 0.5 * 7 = 3.5 -> round half to even = 4; floor would keep 3
    np.testing.assert_array_equal(np.flatnonzero(small_loss_mask(losses, 0.5)), [1, 2, 3, 5])
    np.testing.assert_array_equal(np.flatnonzero(small_loss_mask(losses, 0.6)), [1, 2, 3, 5])  # 4.2 -> 4
    np.testing.assert_array_equal(np.flatnonzero(small_loss_mask(losses, 0.65)), [1, 2, 3, 4, 5])  # 4.55 -> 5
    assert loss_cutoff(losses, 0.65) == pytest.approx(0.7)


def test_small_loss_ties_go_to_the_lower_index():
    losses = np.array([0.4, 0.2, 0.4, 0.4, 0.1])
    np.testing.assert_array_equal(np.flatnonzero(small_loss_mask(losses, 0.6)), [0, 1, 4])  # of the tied, #0
    np.testing.assert_array_equal(np.flatnonzero(small_loss_mask(losses, 0.8)), [0, 1, 2, 4])


# ---------------------------------------------------------------- stages 1-2, step 1
def test_small_loss_working_takes_given_labels_on_easy_and_predictions_elsewhere():
    given = np.array([0, 1, 2, 0, 1])
    student = np.array([1, 2, 0, 0, 2])  # differs from given everywhere but #3
    easy = np.array([True, False, True, False, False])
    clamped = np.array([-1, -1, -1, 2, 0])  # #3 relabelled by a reviewer, #4 kept... to 0 (not its given 1)
    working, easy_out, clean = refinery.small_loss_working(given, student, easy, clamped)
    np.testing.assert_array_equal(working, [0, 2, 2, 2, 0])
    np.testing.assert_array_equal(easy_out, [True, False, True, True, True])  # reviewed count as easy
    np.testing.assert_array_equal(clean, [1, 0, 1, 0, 0])  # a review that changed the label: not clean
    kept = refinery.small_loss_working(given, student, easy, np.array([-1, -1, -1, 0, 1]))[2]
    np.testing.assert_array_equal(kept, [1, 0, 1, 1, 1])  # reviews that kept the given label: clean
    assert given.tolist() == [0, 1, 2, 0, 1] and easy.tolist() == [True, False, True, False, False]  # untouched


# ---------------------------------------------------------------- stage 0
SCORES = [[0.90, 0.05, 0.05],   # sure of 0
          [0.40, 0.35, 0.25],   # unsure, leans 0
          [0.10, 0.80, 0.10],   # sure of 1
          [0.30, 0.30, 0.40],   # least sure, leans 2
          [0.05, 0.15, 0.80]]   # sure of 2


def test_stage0_keeps_the_given_labels_of_the_least_confident_only():
    given = np.array([1, 1, 1, 1, 1])
    out = refinery.stage0_relabel(given, result(SCORES), None, keep_least_confident=0.4)  # 2 of 5 kept
    np.testing.assert_array_equal(out.labels, [0, 1, 1, 1, 2])  # #1, #3 (least confident) keep 1
    assert out.rule == "confidence"
    np.testing.assert_array_equal(out.reasons, [0, 1, 0, 1, 0])
    everything = refinery.stage0_relabel(given, result(SCORES), None, keep_least_confident=0.0)
    np.testing.assert_array_equal(everything.labels, [0, 0, 1, 2, 2])


def test_stage0_with_a_known_rate_changes_only_the_least_supported_given_labels():
    given = np.array([0, 2, 2, 0, 1])  # supports: 0.90, 0.25, 0.10, 0.30, 0.15
    out = refinery.stage0_relabel(given, result(SCORES), 0.4, keep_least_confident=0.05)
    np.testing.assert_array_equal(out.labels, [0, 2, 1, 0, 2])  # #2 (0.10) and #4 (0.15) change
    assert out.rule == "support" and out.cutoff == pytest.approx(0.15)
    # a rate between two supports' cut (0.6 of 5 = 3): #1 (0.25) goes too, #3 (0.30) stays
    np.testing.assert_array_equal(refinery.stage0_relabel(given, result(SCORES), 0.6, 0.05).labels, [0, 0, 1, 0, 2])


def test_a_review_wins_over_both_stage0_rules():
    given = np.array([0, 2, 2, 0, 1])
    clamped = np.array([-1, -1, 0, -1, -1])
    for rate in (None, 0.4):
        out = refinery.stage0_relabel(given, result(SCORES), rate, 0.2, clamped)
        assert out.labels[2] == 0 and out.reasons[2] == refinery.Reason.REVIEWED


# ---------------------------------------------------------------- stages 1-2, step 3 and 4
def test_refine_relabel_keeps_easy_working_labels_and_propagates_the_rest():
    working = np.array([2, 2, 0, 0, 0])  # differs from the propagated labels [0, 0, 1, 2, 2] everywhere
    easy = np.array([True, False, False, True, False])
    out = refinery.refine_relabel(working, easy, result(SCORES))
    np.testing.assert_array_equal(out.labels, [2, 0, 1, 0, 2])
    np.testing.assert_array_equal(out.reasons, [3, 0, 0, 3, 0])


def test_clamps_fix_reviewed_seeds_and_silence_outliers():
    seeds = np.full((4, 3), 0.5, np.float32)
    working, easy = np.array([0, 1, 2, 0]), np.array([False, False, True, False])
    clamped, outliers = np.array([-1, 2, -1, -1]), np.array([False, False, False, True])
    out_seeds, out_working, out_easy, train = refinery.apply_clamps(seeds, working, easy, clamped, outliers)
    np.testing.assert_array_equal(out_seeds, [[0.5] * 3, [0, 0, 1], [0.5] * 3, [0, 0, 0]])
    np.testing.assert_array_equal(out_working, [0, 2, 2, 0])
    np.testing.assert_array_equal(out_easy, [False, True, True, False])
    np.testing.assert_array_equal(train, [True, True, True, False])
    assert seeds[1].tolist() == [0.5] * 3  # inputs untouched


def test_the_learning_rate_ramps_up_linearly_after_a_change_of_objective():
    from engine.method.training import ramped_lr

    assert [ramped_lr(0.04, e, 3) for e in range(5)] == pytest.approx([0.01, 0.02, 0.03, 0.04, 0.04])
    assert ramped_lr(0.04, 0, 0) == 0.04 and ramped_lr(0.04, -2, 3) == pytest.approx(0.01)


# ---------------------------------------------------------------- the calibrated rule and the estimate's word
def test_stage0_calibrated_rule_changes_labels_on_strong_votes_and_none_on_vague_ones():
    from engine.method import confident as cf

    rng = np.random.default_rng(3)
    true = np.repeat([0, 1, 2], 200)
    given = true.copy()
    wrong = rng.choice(600, 120, replace=False)
    given[wrong] = (true[wrong] + rng.integers(1, 3, 120)) % 3  # 20% symmetric noise
    # strong votes: each sample's neighbours carry its true class at 0.8 (the noise's share elsewhere)
    strong = np.full((600, 3), 0.1)
    strong[np.arange(600), true] = 0.8
    # vague votes: the neighbourhoods mix classes, the true class only a little ahead
    vague = np.full((600, 3), 0.3)
    vague[np.arange(600), true] = 0.4
    vague += rng.normal(0, 0.05, (600, 3))
    vague = np.clip(vague, 0.01, None) / np.clip(vague, 0.01, None).sum(1, keepdims=True)
    proposal = result(np.eye(3)[true] * 0.9 + 0.05)  # a propagation that names every true class
    n = len(given)
    estimates = {name: cf.estimate_noise(given, votes, seed=0, rounds=5) for name, votes in
                 (("strong", strong), ("vague", vague))}
    assert estimates["strong"].informative and not estimates["vague"].informative
    out = {name: refinery.relabel("propagate", given, given, np.zeros(n, bool), proposal, None, 0.05,
                                  rule="calibrated", posterior=e.posterior) for name, e in estimates.items()}
    # strong: the wrong labels change to the truth, the right ones stay
    assert np.mean(out["strong"].labels == true) > 0.97
    # vague: the same proposal (all of them right) changes nothing, since nothing says the given labels are wrong
    np.testing.assert_array_equal(out["vague"].labels, given)
    assert set(out["vague"].reasons[wrong].tolist()) == {refinery.Reason.KEPT_GIVEN}

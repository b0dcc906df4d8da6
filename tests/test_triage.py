"""engine.readers.triage: which samples a review should see first, on hand-made snapshots."""

from __future__ import annotations

import numpy as np
import pytest

from engine.errors import UserError
from engine.readers import triage


def snap():
    given = np.array([0, 0, 1, 1, 2])
    snapshot = {
        "refined": np.array([1, 0, 1, 2, 2]),
        "weight": np.array([0.2, 0.9, 0.6, 0.3, 0.8], np.float32),  # ambiguity 0.8 0.1 0.4 0.7 0.2
        "lp_confidence": np.array([0.5, 0.9, 0.3, 0.4, 0.8], np.float32),
        "student_top": np.array([[1, 0, 2], [0, 1, 2], [1, 2, 0], [2, 1, 0], [2, 0, 1]], np.int16),
        "student_prob": np.array([[0.7, 0.2, 0.1], [0.9, 0.05, 0.05], [0.5, 0.4, 0.1], [0.6, 0.3, 0.1],
                                  [0.8, 0.1, 0.1]], np.float16),
    }
    return snapshot, given


def test_ambiguity_is_one_minus_the_weight_else_the_margin():
    snapshot, _ = snap()
    np.testing.assert_allclose(triage.ambiguity(snapshot), [0.8, 0.1, 0.4, 0.7, 0.2], atol=1e-6)
    no_weight = {**snapshot, "weight": np.full(5, np.nan, np.float32)}
    np.testing.assert_allclose(triage.ambiguity(no_weight), [0.5, 0.15, 0.9, 0.7, 0.3], atol=2e-3)


def test_expected_change_is_one_minus_the_given_labels_probability():
    snapshot, given = snap()
    np.testing.assert_allclose(triage.expected_change(snapshot, given, 3), [0.8, 0.1, 0.5, 0.7, 0.2], atol=2e-3)


def test_queue_orders_by_expected_change_then_the_chosen_key():
    snapshot, given = snap()
    assert triage.build_queue(snapshot, given, "all", fraction=1.0).tolist() == [0, 3, 2, 4, 1]
    tied = {**snapshot, "student_prob": np.full((5, 3), 1 / 3, np.float16)}  # equal change: the key decides
    assert triage.build_queue(tied, given, "all", order="confidence", fraction=1.0).tolist() == [2, 3, 0, 4, 1]
    assert triage.build_queue(tied, given, "all", order="ambiguity", fraction=1.0).tolist() == [0, 3, 2, 4, 1]
    assert triage.build_queue(snapshot, given, "all", fraction=0.4).tolist() == [0, 3]  # ceil(0.4 * 5)
    with pytest.raises(UserError, match="unknown queue order"):
        triage.build_queue(snapshot, given, order="random")


def test_worth_reviewing_is_a_proposed_change_or_an_unsure_label():
    snapshot, given = snap()
    np.testing.assert_array_equal(triage.worth_reviewing(snapshot, given), [True, False, True, True, False])


def test_self_confidence_ranks_the_lowest_given_label_probability_first():
    snapshot, given = snap()
    assert triage.self_confidence_ranking(snapshot, given, 3).tolist() == [0, 3, 2, 4, 1]

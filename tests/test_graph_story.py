"""app.graph_story: where the Propagation graph opens."""

import numpy as np

from app.graph_story import busiest_step, fixed_first, knn_caption, seed_caption


def test_busiest_step_takes_the_most_changes_and_the_earliest_of_a_tie():
    assert busiest_step({4: 3, 9: 12, 12: 0, 15: 12}) == 9
    assert busiest_step({}) is None


def test_fixed_first_keeps_fixed_samples_those_changing_colour_first():
    # samples 0..5: before, after, truth
    before = np.array([1, 1, 0, 0, 1, 1])
    refined = np.array([0, 0, 1, 1, 0, 0])
    true = np.array([0, 0, 0, 1, -1, 0])
    seeds = np.array([0, 1, 1, 0, 1, 1])  # sample 0 seeded with its final label: its colour does not change
    order = np.array([0, 1, 2, 3, 4, 5])  # as story_order gave it
    # fixed: 0 (1->0, true 0), 1, 3 (0->1, true 1), 5; broken: 2 (0->1, true 0); unknown truth: 4
    assert fixed_first(order, before, refined, true, seeds).tolist() == [1, 3, 5, 0]
    assert fixed_first(order, before, refined, true, seeds, include_broken=True).tolist() == [1, 3, 5, 0, 4, 2]
    assert fixed_first(order, before, refined, None, seeds).tolist() == [1, 3, 4, 5, 0, 2]
    assert fixed_first(np.array([], np.int64), before, refined, true, seeds).size == 0


def test_knn_caption_names_the_index_and_its_measured_recall():
    ivf = {"knn_index": "ivf", "knn_recall": 0.9731, "knn_recall_queries": 1000}
    assert knn_caption(ivf, 20) == "kNN: ivf, recall@20 0.97 on 1,000 sampled queries"
    assert knn_caption({**ivf, "knn_index": "hnsw", "knn_recall": 0.955}, 10) == \
        "kNN: hnsw, recall@10 0.95 on 1,000 sampled queries"
    exact = {"knn_index": "exact", "knn_recall": 1.0, "knn_recall_queries": 0}
    assert knn_caption(exact, 20) == "kNN: exact (every pair compared), recall@20 1.00"
    assert knn_caption({"graph_source": "teacher"}, 20) is None  # a step from before the search was recorded


def test_seed_caption_says_whose_predictions_seeded_and_what_judged():
    held = {"seed_labeller": "student", "labeller_judge": "held-out", "holdout_judged": 144,
            "holdout_agreement_teacher": 79 / 144, "holdout_agreement_student": 80 / 144,
            "holdout_only_teacher": 6, "holdout_only_student": 7}
    assert seed_caption(held) == ("Not-easy samples seeded by the student's predictions: of the 144 held-out samples "
                                  "neither network trained on, it agrees with 80 given labels, the teacher with 79; "
                                  "within chance (they disagree on 13 of them, split 7 to 6), so either would seed "
                                  "about as well.")
    clear = {**held, "seed_labeller": "teacher", "holdout_agreement_teacher": 91 / 144,
             "holdout_only_teacher": 17, "holdout_only_student": 6}  # exact McNemar p = 0.035
    assert seed_caption(clear).endswith("it agrees with 91 given labels, the student with 80; more than chance "
                                        "explains (17 to 6 where they disagree).")
    assert "within chance" in seed_caption({**clear, "holdout_only_teacher": 16})  # p = 0.052
    tie = {**held, "seed_labeller": "teacher", "holdout_agreement_teacher": 80 / 144}
    assert seed_caption(tie).endswith("the student with 80; a tie goes to the teacher.")
    assert seed_caption({"seed_labeller": "teacher", "labeller_judge": "audit"}) == \
        "Not-easy samples seeded by the teacher's predictions: it is right on more of the random audit's samples."
    assert "stage 0's estimate" in seed_caption({"seed_labeller": "teacher", "labeller_judge": "posterior"})
    assert "authors' rule" in seed_caption({"seed_labeller": "student"})  # no judge: the authors' rule
    assert seed_caption({"phase": "propagate"}) is None and seed_caption({"seed_labeller": None}) is None

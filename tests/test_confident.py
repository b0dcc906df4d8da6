"""The noise estimate without the truth (engine.method.confident) and the calibrated relabel rule
(engine.method.refinery.calibrated_filter): hand-computed cases, then real data with known noise."""

from dataclasses import replace

import numpy as np
import pytest

from engine.method import confident as cf
from engine.method.config import GraphConfig, RunConfig
from engine.method.graph import build_graph
from engine.method.noise import NoiseSpec, apply_noise
from engine.method.refinery import Reason, Relabelling, better_labeller, calibrated_filter, relabel
from engine.errors import UserError

GIVEN = np.array([0, 0, 1, 1, 2, 2])
PROBS = np.array([[0.8, 0.1, 0.1],   # given 0, confidently 0
                  [0.2, 0.7, 0.1],   # given 0, confidently 1 (t_1 = 0.7): a label error
                  [0.1, 0.8, 0.1],   # given 1, confidently 1
                  [0.1, 0.6, 0.3],   # given 1, above no threshold: not counted
                  [0.1, 0.1, 0.8],   # given 2, confidently 2
                  [0.2, 0.2, 0.6]])  # given 2, above no threshold (t_0 = 0.5, t_2 = 0.7)


def test_confident_joint_by_hand():
    # thresholds t = (0.5, 0.7, 0.7): the per-class mean probability of the given class
    np.testing.assert_array_equal(cf.confident_joint(GIVEN, PROBS), [[1, 1, 0], [0, 1, 0], [0, 0, 1]])


def test_calibrated_joint_rate_and_transition_by_hand():
    q = cf.calibrate_joint(cf.confident_joint(GIVEN, PROBS), np.bincount(GIVEN))
    # each row rescaled to its 2 given labels, then all to sum 1
    np.testing.assert_allclose(q, [[1 / 6, 1 / 6, 0], [0, 1 / 3, 0], [0, 0, 1 / 3]])
    assert cf.noise_rate_from_joint(q) == pytest.approx(1 / 6)
    # T[true, given]: of the true class 1 (mass 1/2), 1/6 was given 0
    np.testing.assert_allclose(cf.transition_from_joint(q), [[1, 0, 0], [1 / 3, 2 / 3, 0], [0, 0, 1]])


def test_posterior_by_hand_changes_the_label_error_only():
    transition = np.array([[1, 0, 0], [1 / 3, 2 / 3, 0], [0, 0, 1]])
    # sample 1: P~ = pi T gives pi = (0.2 - 0.35, 1.05, 0.1) -> projected onto the simplex (0, 0.975, 0.025);
    # times T[:, given 0] = (1, 1/3, 0): all mass on class 1
    post = cf.label_posterior(PROBS, transition, GIVEN)
    np.testing.assert_allclose(post[1], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(post.sum(1), 1)
    assert post.argmax(1).tolist() == [0, 1, 1, 1, 2, 2]
    # with no weight on the given label's evidence it is the clean probabilities
    np.testing.assert_allclose(cf.label_posterior(PROBS, transition, GIVEN, 0.0),
                               cf.clean_probabilities(PROBS, transition))


def test_simplex_projection_by_hand_and_against_a_solver():
    # (0.8, 0.5, -0.3): theta = 0.15 takes the same off both positive entries; clipping and renormalising
    # would give (0.615, 0.385, 0) instead
    np.testing.assert_allclose(cf.project_to_simplex(np.array([[0.8, 0.5, -0.3]])), [[0.65, 0.35, 0.0]])
    np.testing.assert_allclose(cf.project_to_simplex(np.array([[0.2, 0.3, 0.5]])), [[0.2, 0.3, 0.5]])  # kept
    np.testing.assert_allclose(cf.clean_probabilities(PROBS[1:2], np.array([[1, 0, 0], [1 / 3, 2 / 3, 0], [0, 0, 1]])),
                               [[0.0, 0.975, 0.025]])
    from scipy.optimize import minimize

    rows = np.random.default_rng(0).normal(0.2, 0.5, (6, 5))
    for row, projected in zip(rows, cf.project_to_simplex(rows)):
        best = minimize(lambda x: np.sum((x - row) ** 2), np.full(5, 0.2), method="SLSQP", bounds=[(0, None)] * 5,
                        constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1}], options={"ftol": 1e-12})
        np.testing.assert_allclose(projected, best.x, atol=1e-5)


def test_the_fitted_sharpness_undoes_a_flattening_of_the_clean_probabilities():
    rng = np.random.default_rng(0)
    n, transition = 6000, np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.15, 0.15, 0.7]])
    pi = np.full((n, 3), 0.05)
    pi[np.arange(n), rng.integers(0, 3, n)] = 0.9  # P(true class | x)
    true = (rng.random(n)[:, None] > np.cumsum(pi, 1)).sum(1)
    given = (rng.random(n)[:, None] > np.cumsum(transition[true], 1)).sum(1)
    assert cf.fit_sharpness(pi @ transition, transition, given) == pytest.approx(1.0, abs=0.15)
    flat = np.sqrt(pi) / np.sqrt(pi).sum(1, keepdims=True)  # pi ** (1/2): the fit should square it back
    assert cf.fit_sharpness(flat @ transition, transition, given) == pytest.approx(2.0, abs=0.3)
    np.testing.assert_allclose(cf.clean_probabilities(flat @ transition, transition, 2.0), pi, atol=1e-9)


def test_a_joint_that_cannot_tell_noise_from_none_changes_no_label():
    # 300 samples, 3 classes, the votes agree with every given label but one, which is confidently class 2
    given = np.repeat([0, 1, 2], 100)
    probs = np.full((300, 3), 0.05)
    probs[np.arange(300), given] = 0.9
    probs[7] = [0.05, 0.05, 0.9]
    estimate = cf.estimate_noise(given, probs, seed=0, rounds=50)
    assert estimate.rate == pytest.approx(1 / 300) and estimate.rate_low == 0.0
    assert not estimate.noise_found
    np.testing.assert_array_equal(estimate.posterior, np.eye(3, dtype=np.float32)[given])  # the given labels
    labels = given.copy()
    labels[7] = 2
    assert cf.precision_interval(labels, given, estimate) == (299 / 300, 299 / 300, 299 / 300)
    proposal = Relabelling(labels, np.zeros(300, np.int8), "confidence", None)
    assert calibrated_filter(given, proposal, estimate.posterior).labels.tolist() == given.tolist()
    # ten such samples, all confidently class 2: the interval leaves 0 and sample 7 may change
    probs[:10] = [0.05, 0.05, 0.9]
    found = cf.estimate_noise(given, probs, seed=0, rounds=50)
    assert found.noise_found and found.rate_low > 0
    assert found.posterior[7].argmax() == 2 and found.posterior[50].argmax() == 0
    # a later step's estimate that finds noise where stage 0's found none is gated: the given labels again
    gated = cf.gated_by(found, estimate, given)
    assert not gated.noise_found and gated.rate == found.rate
    np.testing.assert_array_equal(gated.posterior, estimate.posterior)
    assert cf.gated_by(found, found, given) is found and cf.gated_by(estimate, found, given) is estimate


def test_neighbour_votes_exclude_self_and_weigh_edges():
    given = np.array([0, 1, 1, 0])
    idx = np.array([[1, 2], [2, 3], [1, 0], [0, 1]])
    weights = np.array([[3.0, 1.0], [1.0, 1.0], [0.0, 0.0], [1.0, 3.0]])
    votes = cf.neighbour_votes(idx, weights, given, 2)
    np.testing.assert_allclose(votes, [[0, 1], [0.5, 0.5], [0.5, 0.5], [0.25, 0.75]])


def _blobs(n=600, classes=4, rate=0.3, seed=0):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, classes, n)
    centres = rng.normal(0, 4.0, (classes, 8))
    features = (centres[true] + rng.normal(0, 1.0, (n, 8))).astype(np.float32)
    given = apply_noise(true, NoiseSpec("symmetric", rate), classes, np.random.default_rng([seed, 1]))
    return features, true, given


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3])
def test_estimate_on_separable_blobs_finds_the_true_rate(rate):
    features, true, given = _blobs(rate=rate)
    graph = build_graph(features, GraphConfig(k=10))
    estimate = cf.estimate_from_graph(graph.neighbor_idx, np.clip(graph.neighbor_sim, 0, None) ** 3, given, 4,
                                      seed=0, rounds=30)
    true_rate = float(np.mean(given != true))
    assert abs(estimate.rate - true_rate) <= 0.03, (estimate.rate, true_rate)
    assert estimate.rate_low <= estimate.rate <= estimate.rate_high
    assert estimate.informative and estimate.ambiguity < 0.05  # the classes are separable: the joint is believed
    # the posterior agrees with the joint on the given labels (the evidence weight's definition; at 30% the
    # sharpened clean probabilities give the given labels a little less even with weight 1, its bound)
    assert cf.estimated_precision(given, estimate.posterior) == pytest.approx(1 - estimate.rate, abs=5e-3)
    # the truth is estimated more precise than the given labels when there is noise
    point, low, high = cf.precision_interval(true, given, estimate)
    assert low <= point <= high
    if rate > 0:
        assert point > cf.estimated_precision(given, estimate.posterior) + rate / 2
        # the posterior's argmax fixes labels and breaks almost none
        fixed = estimate.posterior.argmax(1)
        assert np.mean(fixed == true) > np.mean(given == true) + 0.8 * true_rate


def test_clean_ambiguity_by_hand():
    # with no noise (T = I) pi is the vote itself: 1 - max per row, averaged
    probs = np.array([[0.7, 0.2, 0.1], [0.4, 0.4, 0.2], [1.0, 0.0, 0.0]])
    assert cf.clean_ambiguity(probs, np.eye(3)) == pytest.approx((0.3 + 0.6 + 0.0) / 3)
    # the same votes read through a symmetric T with rate 0.3: pi sharper than the votes, less ambiguous
    t = np.full((3, 3), 0.15) + 0.55 * np.eye(3)
    assert cf.clean_ambiguity(probs, t) < cf.clean_ambiguity(probs, np.eye(3)) - 0.1


def _overlapping_blobs(rate, n=900, classes=10, seed=0, spread=0.4):
    """Ten classes whose centres lie within the points' own spread (``spread`` 0.4: the features leave most
    classes open; 1: some)."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, classes, n)
    features = (rng.normal(0, spread, (classes, 16))[true] + rng.normal(0, 1.0, (n, 16))).astype(np.float32)
    given = apply_noise(true, NoiseSpec("symmetric", rate), classes, np.random.default_rng([seed, 1]))
    return features, true, given


@pytest.mark.parametrize("rate", [0.0, 0.3])
def test_votes_that_cannot_name_the_classes_keep_every_label_and_say_so(rate):
    features, true, given = _overlapping_blobs(rate)
    graph = build_graph(features, GraphConfig(k=20))
    estimate = cf.estimate_from_graph(graph.neighbor_idx, np.clip(graph.neighbor_sim, 0, None) ** 3, given, 10,
                                      seed=0, rounds=5)
    true_rate = float(np.mean(given != true))
    # the joint alone calls far more noise than there is (mixed classes look like wrong labels) ...
    assert estimate.joint_rate > true_rate + 0.2
    # ... so the estimate says it cannot tell: interval from 0 to the joint's upper end, the middle as its point
    assert estimate.ambiguity > cf.AMBIGUITY_LIMIT and not estimate.informative and not estimate.noise_found
    assert estimate.rate_low == 0.0 and estimate.rate_high >= estimate.joint_rate
    assert estimate.rate == pytest.approx(estimate.rate_high / 2)
    assert estimate.rate_low <= true_rate <= estimate.rate_high
    # no label changes on its word: the posterior is the given labels, the filter keeps every given label
    np.testing.assert_array_equal(estimate.posterior.argmax(1), given)
    proposal = Relabelling(estimate.probs.argmax(1), np.zeros(len(given), np.int8), "confidence", None)
    assert np.mean(proposal.labels != given) > 0.3  # the votes would change many
    assert calibrated_filter(given, proposal, estimate.posterior).labels.tolist() == given.tolist()
    # the given labels' precision is an interval that holds the truth, not a number that claims 1
    point, low, high = cf.precision_interval(given, given, estimate)
    assert low <= 1 - true_rate <= high and high - low > 0.3 and point == pytest.approx((low + high) / 2)


@pytest.mark.parametrize("rate", [0.0, 0.2])
def test_a_rate_the_features_confusion_explains_is_no_evidence_of_noise(rate):
    features, true, given = _overlapping_blobs(rate, n=1000, spread=1.0)
    graph = build_graph(features, GraphConfig(k=20))
    estimate = cf.estimate_from_graph(graph.neighbor_idx, np.clip(graph.neighbor_sim, 0, None) ** 3, given, 10,
                                      seed=0, rounds=20)
    judged = cf.beyond_confusion(estimate, given)
    true_rate = float(np.mean(given != true))
    assert estimate.informative and 0.03 < estimate.ambiguity < cf.AMBIGUITY_LIMIT  # some classes mixed
    if rate == 0:
        # the joint's interval leaves 0 (the plain rule finds noise), and its posterior would break right labels
        assert estimate.noise_found and 0 < estimate.rate_low <= estimate.ambiguity
        assert np.mean(estimate.posterior.argmax(1) != given) > 0.005
        # the features' confusion explains that count: no noise found, the rate only as its bound
        assert judged.confused and not judged.noise_found and judged.informative
        assert judged.rate_low == 0.0 and judged.rate_high == estimate.rate_high
        assert judged.rate == pytest.approx(estimate.rate_high / 2) and judged.joint_rate == estimate.rate
        np.testing.assert_array_equal(judged.posterior.argmax(1), given)
        proposal = Relabelling(estimate.probs.argmax(1), np.zeros(len(given), np.int8), "confidence", None)
        assert calibrated_filter(given, proposal, judged.posterior).labels.tolist() == given.tolist()
        point, low, high = cf.precision_interval(given, given, judged)  # kept labels: right at [1 - high, 1]
        assert (low, high) == (pytest.approx(1 - estimate.rate_high), 1.0) and point == pytest.approx((low + 1) / 2)
        # it judges every later step: a later graph's finding changes nothing
        assert cf.gated_by(estimate, judged, given) is judged
    else:  # 20% noise rises far above the confusion: the estimate stands as it was
        assert judged is estimate and estimate.noise_found and estimate.rate_low > 2 * estimate.ambiguity
        assert abs(estimate.rate - true_rate) <= 0.03


def test_the_precision_of_a_labelling_when_the_estimate_is_vague_by_hand():
    given = np.array([0, 1, 2, 0])
    vague = cf.NoiseEstimate(0.3, 0.0, 0.6, np.eye(3) / 3, np.eye(3), 1.0, np.eye(3, dtype=np.float32)[given],
                             np.eye(3)[given], np.zeros((0, 3, 3)), np.zeros(0), 0, False, ambiguity=0.4,
                             informative=False)
    # three of four labels kept: right at 0.4-1 each; the changed one anywhere in [0, 1]
    point, low, high = cf.precision_interval(np.array([0, 1, 2, 2]), given, vague)
    assert (low, high) == (pytest.approx(0.75 * 0.4), pytest.approx(1.0)) and point == pytest.approx(0.65)


def test_a_step_whose_own_graph_cannot_tell_follows_stage0():
    features, true, given = _blobs(rate=0.3)
    graph = build_graph(features, GraphConfig(k=10))
    informed = cf.estimate_from_graph(graph.neighbor_idx, np.clip(graph.neighbor_sim, 0, None) ** 3, given, 4,
                                      seed=0, rounds=5)
    assert informed.informative and informed.noise_found and informed.ambiguity < 0.05
    vague = replace(informed, informative=False, noise_found=False, ambiguity=0.5,
                    posterior=cf.no_noise_posterior(given, 4))
    assert cf.gated_by(vague, informed, given) is informed  # the teacher's estimate still judges
    gated = cf.gated_by(informed, vague, given)  # stage 0 could not tell: nothing changes later either
    assert not gated.informative and not gated.noise_found
    np.testing.assert_array_equal(gated.posterior.argmax(1), given)


def test_the_vague_estimate_warning_names_the_interval_and_the_rule():
    from engine.rundir.health import vague_estimate_warning

    stage0 = {"phase": "propagate", "estimate_informative": False, "estimate_ambiguity": 0.31,
              "noise_rate_low": 0.0, "noise_rate_high": 0.62}
    warning = vague_estimate_warning([{"phase": "teacher"}, stage0])
    assert warning["code"] == "estimate_vague" and "31%" in warning["message"]
    assert "[0.00, 0.62]" in warning["message"] and "kept the given labels" in warning["message"]
    assert "Audit a random sample on the Review page" in warning["message"]
    audited = vague_estimate_warning([{**stage0, "audit_size": 720}])["message"]
    assert "random audit (720 samples)" in audited and "kept the given labels" not in audited
    assert "Audit a random sample" not in audited
    assert "authors' rule relabelled" in vague_estimate_warning([stage0], "authors")["message"]
    assert vague_estimate_warning([{**stage0, "estimate_informative": True}]) is None
    assert vague_estimate_warning([{"phase": "propagate"}]) is None  # a run from before the field


def test_calibrated_filter_keeps_what_the_posterior_does_not_favour():
    given = np.array([0, 0, 1, 2])
    posterior = np.array([[0.2, 0.8, 0.0], [0.6, 0.4, 0.0], [0.0, 0.5, 0.5], [0.1, 0.1, 0.8]], np.float32)
    proposal = Relabelling(np.array([1, 1, 2, 0]), np.zeros(4, np.int8), "confidence", None)
    out = calibrated_filter(given, proposal, posterior)
    # 0: favoured (0.8 > 0.2); 1: not (0.4 < 0.6); 2: a tie is not favour; 3: not
    assert out.labels.tolist() == [1, 0, 1, 2]
    assert out.reasons.tolist() == [Reason.PROPAGATED, Reason.KEPT_GIVEN, Reason.KEPT_GIVEN, Reason.KEPT_GIVEN]
    assert out.rule == "confidence+calibrated" and out.proposed.tolist() == [1, 1, 2, 0]
    reviewed = Relabelling(np.array([1, 1, 2, 0]), np.array([0, 4, 0, 0], np.int8), "confidence", None)
    assert calibrated_filter(given, reviewed, posterior).labels.tolist() == [1, 1, 1, 2]  # a review always wins


def test_a_step_whose_estimate_falls_keeps_the_previous_labels():
    given = np.array([0, 0, 0])
    posterior = np.array([[0.1, 0.9, 0.0], [0.1, 0.3, 0.6], [0.5, 0.5, 0.0]], np.float32)
    previous = np.array([1, 2, 0])  # mean posterior (0.9 + 0.6 + 0.5) / 3
    proposal = Relabelling(np.array([1, 1, 0]), np.zeros(3, np.int8), "small-loss", None)
    # sample 1 -> class 1 is favoured over the given 0 (0.3 > 0.1) but worse than its previous 2: the mean falls
    out = calibrated_filter(given, proposal, posterior, previous)
    assert out.labels.tolist() == [1, 2, 0] and out.reasons[1] == Reason.KEPT_PREVIOUS
    better = Relabelling(np.array([1, 2, 0]), np.zeros(3, np.int8), "small-loss", None)
    assert calibrated_filter(given, better, posterior, np.array([0, 0, 0])).labels.tolist() == [1, 2, 0]


def test_better_labeller_by_mean_posterior_on_the_mask():
    posterior = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    candidates = {"student": np.array([1, 1, 1]), "teacher": np.array([0, 0, 0])}
    assert better_labeller(posterior, candidates, np.array([True, False, True])) == "teacher"
    assert better_labeller(posterior, candidates, np.array([False, True, False])) == "student"
    assert better_labeller(posterior, candidates, np.zeros(3, bool)) == "student"


def test_relabel_rule_setting_is_validated():
    assert RunConfig().relabel_rule == "calibrated"
    with pytest.raises(UserError, match="--relabel-rule 'mine' is not valid; valid: calibrated, authors"):
        RunConfig(relabel_rule="mine")
    with pytest.raises(ValueError, match="valid: calibrated, authors"):
        relabel("propagate", GIVEN, GIVEN, np.zeros(6, bool), None, None, 0.05, rule="mine")


def test_an_easy_sample_stays_easy_only_where_the_posterior_supports_its_given_label():
    from engine.method.refinery import supported_easy

    given = np.array([0, 1, 2, 0])
    posterior = np.array([[0.6, 0.4, 0.0], [0.7, 0.3, 0.0], [0.2, 0.3, 0.5], [0.5, 0.5, 0.0]], np.float32)
    easy = np.array([True, True, False, True])
    # 1: the posterior favours class 0 over its given 1 -> not easy; 2 was not easy; 3: a tie keeps it
    assert supported_easy(easy, given, posterior).tolist() == [True, False, False, True]


def test_the_cli_takes_the_relabel_rule_and_refuses_an_unknown_one(capsys, tmp_path):
    import argparse

    from engine.cli import build_parser, config_from_args, main

    code = main(["run", "--relabel-rule", "mine", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == "error: --relabel-rule 'mine' is not valid; valid: calibrated, authors"
    assert not (tmp_path / "r").exists()
    parsed = build_parser().parse_args(["run", "--relabel-rule", "authors", "--out", str(tmp_path / "r")])
    assert isinstance(parsed, argparse.Namespace) and config_from_args(parsed).relabel_rule == "authors"


def test_labeller_on_holdout_counts_agreements_on_the_holdout_only():
    from engine.method.refinery import labeller_on_holdout

    reference = np.array([0, 1, 2, 0, 1, 2])
    holdout = np.array([True, True, True, False, False, False])
    teacher = np.array([0, 1, 0, 0, 1, 2])  # 2 of 3 held out right, every other right
    student = np.array([0, 1, 2, 1, 0, 0])  # 3 of 3 held out right, every other wrong
    best, shares, alone = labeller_on_holdout({"teacher": teacher, "student": student}, reference, holdout)
    assert best == "student" and shares == pytest.approx({"teacher": 2 / 3, "student": 1.0})
    assert alone == {"teacher": 0, "student": 1}  # sample 2: only the student; 0 and 1: both
    assert labeller_on_holdout({"teacher": teacher, "student": teacher}, reference, holdout)[0] == "teacher"
    assert labeller_on_holdout({"student": teacher, "teacher": teacher}, reference, holdout)[0] == "student"
    assert labeller_on_holdout({"teacher": teacher, "student": student}, reference, ~holdout)[0] == "teacher"
    assert labeller_on_holdout({"teacher": teacher, "student": student}, reference, ~holdout)[2] == {
        "teacher": 3, "student": 0}
    assert labeller_on_holdout({"teacher": teacher, "student": student}, reference, np.zeros(6, bool)) == (
        "teacher", {"teacher": 0.0, "student": 0.0}, {"teacher": 0, "student": 0})



def test_the_audit_gate_weighs_the_authors_proposal_where_stage_0_could_not_tell():
    from engine.steps.handlers import _tells

    features, true, given = _overlapping_blobs(0.0, n=1000, spread=1.0)
    graph = build_graph(features, GraphConfig(k=20))
    estimate = cf.estimate_from_graph(graph.neighbor_idx, np.clip(graph.neighbor_sim, 0, None) ** 3, given, 10,
                                      seed=0, rounds=5)
    assert _tells(estimate)  # informative and found: the gate weighs the filter's own changes
    assert not _tells(cf.beyond_confusion(estimate, given))  # within the confusion: the authors' proposal
    assert not _tells(replace(estimate, informative=False))  # vague: the same

"""engine.readers.explain: per-sample losses, cut-off switches, neighbourhoods,
seeds and relabelling as the step did them, replays and what-ifs."""

import hashlib
from dataclasses import replace

import numpy as np
import pytest

from engine.readers import explain
from engine.errors import UserError
from engine.method.config import RunConfig
from engine.method.propagate import normalize_scores
from engine.rundir.snapshot import step_seeds
from engine.rundir.store import RunStore

NAN = np.nan


def test_per_sample_loss_prefers_selection_then_student_then_teacher():
    snap = {"refined": np.zeros(4, int),
            "selection_loss": np.array([0.1, NAN, NAN, NAN], np.float32),
            "student_loss": np.array([9.0, 0.2, NAN, NAN], np.float32),
            "teacher_loss": np.array([9.0, 9.0, 0.3, NAN], np.float32)}
    losses, source = explain.per_sample_loss(snap)
    assert np.allclose(losses[:3], [0.1, 0.2, 0.3]) and np.isnan(losses[3])
    assert list(source) == [0, 1, 2, -1]


def test_cutoff_switches_lists_who_crosses():
    losses = np.array([0.1, 0.5, 0.9, 1.5, NAN])
    easy = np.array([True, True, False, False, False])
    to_easy, to_hard = explain.cutoff_switches(losses, easy, 1.0)
    assert list(to_easy) == [2] and list(to_hard) == []
    to_easy, to_hard = explain.cutoff_switches(losses, easy, 0.2)
    assert list(to_easy) == [] and list(to_hard) == [1]
    to_easy, _ = explain.cutoff_switches(losses, easy, 2.0)
    assert list(to_easy) == [2, 3]  # ascending loss; the NaN never switches


HAND_IDX = np.array([[1, 2], [0, 3], [0, 1], [1, 4], [3, 0]])
HAND_SIM = np.array([[0.9, 0.5], [0.9, 0.8], [0.5, 0.4], [0.8, 0.7], [0.7, -0.2]], np.float32)


def test_neighbourhood_one_and_two_hops():
    assert list(explain.neighbourhood(HAND_IDX, 0, 1)) == [0, 1, 2]
    assert list(explain.neighbourhood(HAND_IDX, 0, 2)) == [0, 1, 2, 3]
    assert list(explain.neighbourhood(HAND_IDX, 4, 2)) == [4, 3, 0, 1, 2]
    with pytest.raises(UserError, match="valid: 0..4"):
        explain.neighbourhood(HAND_IDX, 5)
    with pytest.raises(UserError, match="hops"):
        explain.neighbourhood(HAND_IDX, 0, 3)


def test_neighbourhood_edges_once_per_pair_with_powered_weights():
    nodes = np.array([0, 1, 2])
    edges, sim, weight = explain.neighbourhood_edges(HAND_IDX, HAND_SIM, nodes, power=2.0)
    pairs = {tuple(e): s for e, s in zip(edges.tolist(), sim)}
    assert set(pairs) == {(0, 1), (0, 2), (1, 2)}  # 0-1 listed by both, drawn once
    assert pairs[(0, 1)] == pytest.approx(0.9) and pairs[(1, 2)] == pytest.approx(0.4)
    assert np.allclose(weight, sim ** 2)
    _, _, w = explain.neighbourhood_edges(HAND_IDX, HAND_SIM, np.array([4, 0]), power=3.0)
    assert np.allclose(w, [0.0])  # a negative similarity weighs nothing


def _snapshot(**fields):
    n = len(fields.get("refined", fields.get("teacher_pred")))
    base = {"teacher_pred": np.zeros(n, int), "working": np.full(n, -1), "weight": np.full(n, NAN, np.float32),
            "easy": np.zeros(n, bool), "refined": np.zeros(n, int)}
    return {**base, **fields}


def test_seeds_as_the_step_made_them():
    snap = _snapshot(teacher_pred=np.array([2, 1, 0]), working=np.array([0, 1, 1]),
                     weight=np.array([0.5, NAN, 0.25], np.float32), clamped=np.array([-1, 0, -1]),
                     outlier=np.array([False, False, True]))
    seeds = step_seeds(snap, "propagate", 3)  # teacher predictions; the review clamps #1 to 0, drops #2
    assert list(seeds.labels) == [2, 0, 0] and list(seeds.weights) == [1.0, 1.0, 0.0]
    seeds = step_seeds(snap, "refine", 3)  # no seed_weight stored: the AWE weight, 1 where unknown
    assert list(seeds.labels) == [0, 1, 1] and np.allclose(seeds.weights, [0.5, 1.0, 0.25])
    snap["seed_weight"] = np.array([0.5, 1.0, 0.0], np.float32)
    assert np.allclose(step_seeds(snap, "mutual", 3).weights, [0.5, 1.0, 0.0])
    with pytest.raises(UserError, match="working labels"):
        step_seeds(_snapshot(teacher_pred=np.array([-1, -1])), "refine", 2)
    with pytest.raises(UserError, match="runs no propagation"):
        step_seeds(snap, "warmup", 3)


def test_flipped_samples_fixed_ones_first():
    given = np.array([0, 1, 1, 0, 1])
    refined = np.array([1, 1, 0, 1, 0])
    true = np.array([0, 1, 0, 1, -1])
    assert list(explain.flipped_samples(given, refined, true, limit=4)) == [2, 3, 0, 4]
    assert list(explain.flipped_samples(given, refined, None, limit=2)) == [0, 2]
    # nothing relabelled (plain CE): the wrong given labels, else the largest losses
    assert list(explain.flipped_samples(given, given, true)) == [2, 3]
    losses = np.array([0.1, 3.0, NAN, 2.0, 0.5])
    assert list(explain.flipped_samples(given, given, None, limit=2, losses=losses)) == [1, 3]


# ---------------------------------------------------------------- on a real (tiny) run


def _digest(store: RunStore) -> str:
    h = hashlib.sha256()
    for p in sorted(store.path.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("step", [3, 5, 7])  # propagate; refine (teacher graph); mutual (student graph)
def test_what_if_at_the_step_settings_is_the_step(tiny_moons_run, step):
    store = RunStore(tiny_moons_run)
    given = store.dataset_arrays()["given"]
    before = _digest(store)
    own = explain.what_if(store, step)
    assert own.changed.size == 0  # a replay is the step
    np.testing.assert_array_equal(own.labels, store.snapshot(step)["refined"])
    other = explain.what_if(store, step, k=3, power=1.0, alpha=0.5, keep_least_confident=0.3)
    assert (other.settings.k, other.settings.power, other.settings.alpha) == (3, 1.0, 0.5)
    if step == 3:  # keeping 30% of the given labels instead of 5% undoes some relabelling
        assert other.changed.size > 0
    assert np.array_equal(np.flatnonzero(other.labels != store.snapshot(step)["refined"]), other.changed)
    counts = other.counts(store.snapshot(step)["refined"], store.dataset_arrays()["true"])
    assert counts["changed"] == other.changed.size and 0 <= counts["to_correct"] <= counts["changed"]
    assert len(given) == len(other.labels)
    assert _digest(store) == before  # the run is not touched


def test_what_if_refuses_a_step_without_propagation_and_bad_knobs(tiny_moons_run):
    store = RunStore(tiny_moons_run)
    with pytest.raises(UserError, match="runs no propagation"):
        explain.what_if(store, 4)
    with pytest.raises(UserError, match=r"^--keep-least-confident 1.0 is out of range; valid: a finite number in "
                                         r"\[0, 1\)$"):
        explain.what_if(store, 3, keep_least_confident=1.0)
    with pytest.raises(UserError, match=r"^--alpha 1.5 is out of range; valid: a finite number in \(0, 1\)$"):
        explain.what_if(store, 3, alpha=1.5)
    with pytest.raises(UserError, match="no step 99"):
        explain.what_if(store, 99)


def test_graph_features_follow_the_graph_source(tiny_moons_run, make_tiny_run):
    """A step on the student's graph (the CE run's steps: the student's own features) reads the snapshot's
    features; a step on the teacher's graph reads the run's teacher features, whose width differs."""
    ce = RunStore(make_tiny_run("ce", "moons", "symmetric:0.3", "ce"))
    step = next(m["step"] for m in ce.metrics() if m.get("graph_source") == "student")
    snap = ce.snapshot(step)
    assert np.array_equal(explain.graph_features(ce, step, snap), snap["features"].astype(np.float32))
    store = RunStore(tiny_moons_run)
    teacher_steps = [m["step"] for m in store.metrics() if m.get("graph_source") == "teacher"
                     and m["phase"] in ("refine", "mutual")]  # snapshots of the student's features
    assert teacher_steps and store.graph_features().shape[1] != store.snapshot(teacher_steps[0])["features"].shape[1]
    for step in teacher_steps:
        assert np.array_equal(explain.graph_features(store, step, store.snapshot(step)), store.graph_features())


def test_replay_records_every_iteration_of_the_neighbourhood(tiny_moons_run):
    store = RunStore(tiny_moons_run)
    config = store.config()
    snap = store.snapshot(3)
    nodes = explain.neighbourhood(snap["neighbor_idx"], 0, 1)
    result = explain.replay(snap, "propagate", 2, config.graph, config.propagation, nodes)
    assert sorted(result.history) == list(range(result.iterations + 1))
    assert all(h.shape == (len(nodes), 2) for h in result.history.values())
    assert np.allclose(result.history[result.iterations], result.scores[nodes], atol=1e-6)
    seeds = np.eye(2, dtype=np.float32)[snap["teacher_pred"]]
    seeds /= seeds.sum(axis=0)
    import torch
    assert np.allclose(result.history[0], normalize_scores(torch.from_numpy(seeds[nodes])).numpy())
    assert np.array_equal(result.labels[snap["lp_confidence"] > 0], snap["lp_labels"][snap["lp_confidence"] > 0])


def test_trajectories_stack_every_step(tiny_moons_run):
    store = RunStore(tiny_moons_run)
    steps, losses, weights, weights_given = explain.trajectories(store)
    n = len(store.dataset_arrays()["given"])
    assert list(steps) == list(range(1, 9)) and losses.shape == weights.shape == weights_given.shape == (8, n)
    assert np.allclose(losses[4], explain.per_sample_loss(store.snapshot(5))[0], equal_nan=True)
    assert np.isnan(weights[0]).all() and np.isfinite(weights[4]).all()


def test_kept_given_names_the_class_the_calibrated_rule_refused_and_nothing_else():
    kept_given = explain.kept_given
    given = np.array([0, 0, 0, 0, 0, 1])
    snapshot = {
        "lp_labels": np.array([1, 1, 0, 1, 2, 2]),
        "refined": np.array([0, 1, 0, 0, 0, 1]),
        "easy": np.array([False, False, False, True, False, False]),
        "clamped": np.array([-1, -1, -1, -1, 0, -1]),
        "posterior": np.array([[0.5, 0.4, 0.1],  # 0: kept, the posterior favours the given label
                               [0.3, 0.6, 0.1],  # 1: relabelled
                               [0.8, 0.1, 0.1],  # 2: the propagation agrees with the given label
                               [0.5, 0.4, 0.1],  # 3: easy (kept unexamined, not by the rule)
                               [0.5, 0.1, 0.4],  # 4: reviewed
                               [0.1, 0.45, 0.45]], np.float16),  # 5: a tie is no evidence for a change: kept
    }
    calibrated = RunConfig()
    found = [kept_given(snapshot, i, given[i], calibrated, "refine") for i in range(6)]
    assert [f is None for f in found] == [False, True, True, True, True, False]
    assert found[0] == (1, pytest.approx(0.5, abs=1e-3), pytest.approx(0.4, abs=1e-3))
    assert found[5] == (2, pytest.approx(0.45, abs=1e-3), pytest.approx(0.45, abs=1e-3))
    assert kept_given(snapshot, 0, 0, calibrated, "propagate") is not None
    assert kept_given(snapshot, 0, 0, replace(calibrated, relabel_rule="authors"), "propagate") is None
    assert kept_given(snapshot, 0, 0, replace(calibrated, noise_rate=0.3), "refine") is None  # known rate: authors'
    assert kept_given(snapshot, 0, 0, calibrated, "warmup") is None  # no propagation in this step
    assert kept_given({k: v for k, v in snapshot.items() if k != "posterior"}, 0, 0, calibrated, "refine") is None

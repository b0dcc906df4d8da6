"""engine.explain: per-sample losses, cut-off switches, neighbourhoods,
seeds and relabelling as the step did them, replays and what-ifs."""

import hashlib

import numpy as np
import pytest

from engine import explain
from engine.errors import UserError
from engine.graph import GraphConfig
from engine.propagate import PropagationConfig, normalize_scores
from engine.store import RunStore

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
    snap = _snapshot(teacher_pred=np.array([2, 1, 0]), working=np.array([0, -1, 1]),
                     weight=np.array([0.5, NAN, 0.25], np.float32))
    labels, weights = explain.step_seeds(snap, "propagate")
    assert list(labels) == [2, 1, 0] and weights is None
    labels, weights = explain.step_seeds(snap, "refine")
    assert list(labels) == [0, 1, 1] and np.allclose(weights, [0.5, 1.0, 0.25])
    with pytest.raises(UserError, match="seed"):
        explain.step_seeds(_snapshot(teacher_pred=np.array([-1, -1])), "refine")


def test_relabel_keeps_the_least_confident_in_stage_0_and_the_easy_later():
    lp = np.array([1, 1, 1, 1])
    conf = np.array([0.9, 0.1, 0.5, 0.05])
    given = np.array([0, 0, 0, 0])
    assert list(explain.relabel("propagate", lp, conf, given, {}, 0.5)) == [1, 0, 1, 0]
    assert list(explain.relabel("propagate", lp, conf, given, {}, 0.0)) == [1, 1, 1, 1]
    snap = _snapshot(refined=np.zeros(4, int), working=np.array([2, 2, 0, 0]),
                     easy=np.array([True, False, False, False]))
    assert list(explain.relabel("refine", lp, conf, given, snap, 0.0)) == [2, 1, 1, 1]
    assert list(explain.relabel("refine", lp, conf, given, snap, 0.25)) == [2, 1, 1, 0]
    assert explain.confidence_cutoff(conf, 0.5) == pytest.approx(0.1)
    assert explain.confidence_cutoff(conf, 0.0) is None
    with pytest.raises(UserError, match="percentile"):
        explain.relabel("propagate", lp, conf, given, {}, 1.0)


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
def test_what_if_at_the_step_settings_reproduces_the_step(tiny_moons_run, step):
    store = RunStore(tiny_moons_run)
    config, given = store.config(), store.dataset_arrays()["given"]
    snap = store.snapshot(step)
    phase = store.metrics()[step - 1]["phase"]
    keep = config.train.keep_least_confident if phase == "propagate" else 0.0
    before = _digest(store)
    features = explain.graph_features(store, step, snap)
    result = explain.what_if(features, snap, phase, given, 2, config.graph, config.propagation, keep,
                             stored_graph=config.graph)
    assert len(result.changed) <= 0.01 * len(given)
    rebuilt = explain.what_if(features, snap, phase, given, 2, config.graph, config.propagation, keep)
    assert len(rebuilt.changed) <= 0.01 * len(given)
    other = explain.what_if(features, snap, phase, given, 2, GraphConfig(k=3, power=1.0),
                            PropagationConfig(alpha=0.5), 0.3)
    if phase == "propagate":  # keeping 30% of given labels instead of 5% undoes some relabelling
        assert len(other.changed) > len(result.changed)
    assert np.array_equal(np.flatnonzero(other.labels != snap["refined"]), other.changed)
    assert _digest(store) == before  # the run is not touched


def test_what_if_refuses_a_step_without_propagation(tiny_moons_run):
    store = RunStore(tiny_moons_run)
    snap = store.snapshot(4)
    with pytest.raises(UserError, match="runs no propagation"):
        explain.what_if(snap["features"], snap, "warmup", store.dataset_arrays()["given"], 2, GraphConfig(),
                        PropagationConfig(), 0.0)


def test_graph_features_follow_the_graph_source(tiny_moons_run):
    store = RunStore(tiny_moons_run)
    student_graph = store.snapshot(7)
    assert np.array_equal(explain.graph_features(store, 7, student_graph), student_graph["features"].astype(np.float32))
    assert np.array_equal(explain.graph_features(store, 5, store.snapshot(5)), store.teacher_features())


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

"""Review decisions: the SQLite log (undo, concurrency, kill -9), clamps in
propagation, the review queue, re-propagation and its ripple."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from engine.method.config import RunConfig
from engine.errors import UserError
from engine.method.graph import GraphConfig, build_graph
from engine.method.propagate import PropagationConfig, propagate, seed_matrix
from engine.method.refinery import apply_clamps
from engine.rundir.review import (Decision, ReviewStore, agreement, consensus_of, current_decisions,
                                  reviewer_agreement, samples_digest)
from engine.rundir.snapshot import step_seeds
from engine.readers.triage import (build_queue, bulk_candidates, expected_change, expected_impact, given_label_probability,
                           impact_proxy, queue_precision, repropagate, review_flags,
                           self_confidence_ranking, step_replay, top_k_probability, worth_reviewing)
from engine.rundir.store import RunStore

ROOT = Path(__file__).resolve().parents[1]


def two_clusters(n_per_cluster: int = 6, seed: int = 0):
    """Two tight, far-apart clusters in 2-D: samples 0..n-1 and n..2n-1."""
    rng = np.random.default_rng(seed)
    a = rng.normal([0.0, 1.0], 0.05, (n_per_cluster, 2))
    b = rng.normal([1.0, 0.0], 0.05, (n_per_cluster, 2))
    return np.vstack([a, b]).astype(np.float32)


def make_run(path: Path, given=None, refined=None, weight=None, features=None, k: int = 3) -> RunStore:
    """A run directory written by hand: moons (2 classes), one refinery-like snapshot.

    Defaults: 12 samples in two clusters, given = true = cluster, weight 1.
    """
    features = two_clusters() if features is None else features
    n = len(features)
    true = np.repeat([0, 1], n // 2)
    given = true.copy() if given is None else np.asarray(given)
    refined = given.copy() if refined is None else np.asarray(refined)
    weight = np.ones(n, np.float32) if weight is None else np.asarray(weight, np.float32)
    config = RunConfig(dataset="moons?n=40", graph=GraphConfig(k=k), propagation=PropagationConfig(max_iter=200))
    store = RunStore(path)
    store.create(config)
    store.write_dataset(given=given, true=true, keys=np.array([f"s{i}" for i in range(n)]),
                        holdout=np.zeros(n, bool))
    graph = build_graph(features, config.graph)
    confidence = np.linspace(0.2, 0.9, n).astype(np.float32)
    snapshot = {"refined": refined, "working": given, "easy": np.zeros(n, bool), "weight": weight,
                "weight_given": weight, "lp_confidence": confidence,
                "lp_top_classes": np.stack([refined, 1 - refined, refined], 1).astype(np.int16),
                "lp_top_scores": np.tile([0.7, 0.3, 0.0], (n, 1)).astype(np.float16),
                "neighbor_idx": graph.neighbor_idx.astype(np.int32), "neighbor_sim": graph.neighbor_sim,
                "features": features.astype(np.float16)}
    store.write_step(1, snapshot, {"step": 1, "phase": "refine"})
    return store


@pytest.fixture
def run_dir(tmp_path):
    """A run directory with only dataset.npz: 10 samples, given = index % 3."""
    store = RunStore(tmp_path / "run")
    store.path.mkdir()
    store.write_dataset(given=np.arange(10) % 3, true=np.full(10, -1), keys=np.array([f"k{i}" for i in range(10)]),
                        holdout=np.zeros(10, bool))
    return store.path


# ---------------------------------------------------------------- the log
def test_record_fills_key_and_labels(run_dir):
    reviews = ReviewStore(run_dir, num_classes=3)
    keep = reviews.record(4, "keep", "ann")
    accept = reviews.record(5, "accept", "ann", proposal=1, step=7)
    relabel = reviews.record(6, "relabel", " bob ", 2, blind=True)
    assert (keep.key, keep.label) == ("k4", 1)  # given[4] = 4 % 3
    assert (accept.label, accept.proposal, accept.step) == (1, 1, 7)
    assert (relabel.reviewer, relabel.label, relabel.blind) == ("bob", 2, True)
    assert reviews.record(7, "unsure", "ann", 2).label is None  # no label for unsure
    assert [d.id for d in reviews.history()] == [1, 2, 3, 4]


@pytest.mark.parametrize("args, message", [
    ((1, "maybe", "ann"), "unknown decision 'maybe'"),
    ((1, "keep", "  "), "reviewer name is required"),
    ((1, "relabel", "ann"), "needs a label"),
    ((1, "relabel", "ann", 3), "class 3 does not exist; valid: 0..2"),
    ((10, "keep", "ann"), "sample 10 does not exist; valid: 0..9"),
    ((-1, "keep", "ann"), "sample must be a whole number"),
    ((1, "undo", "ann"), "unknown decision 'undo'"),
])
def test_record_rejects_bad_input(run_dir, args, message):
    reviews = ReviewStore(run_dir, num_classes=3)
    with pytest.raises(UserError, match=message):
        reviews.record(*args)
    assert reviews.history() == []


def test_undo_cancels_own_latest_decision(run_dir):
    reviews = ReviewStore(run_dir, num_classes=3)
    first = reviews.record(2, "relabel", "ann", 0)
    second = reviews.record(2, "relabel", "ann", 1)
    bob = reviews.record(3, "outlier", "bob")
    assert reviews.latest()[2].id == second.id
    undo = reviews.undo("ann", 2)
    assert (undo.decision, undo.undoes, undo.sample) == ("undo", second.id, 2)
    assert reviews.latest()[2].id == first.id  # the earlier decision counts again
    reviews.undo("ann", 2)
    assert 2 not in reviews.latest()
    with pytest.raises(UserError, match="no decision on sample 2 left to undo"):
        reviews.undo("ann", 2)
    with pytest.raises(UserError, match="'carol' has no decision"):
        reviews.undo("carol")  # never touches bob's decision
    assert reviews.latest()[3].id == bob.id
    assert [d.decision for d in reviews.history(2)] == ["relabel", "relabel", "undo", "undo"]  # full history kept


def test_undo_of_one_reviewer_leaves_the_other(run_dir):
    reviews = ReviewStore(run_dir, num_classes=3)
    ann = reviews.record(1, "keep", "ann")
    reviews.record(1, "relabel", "bob", 2)
    reviews.record(5, "unsure", "ann")
    assert reviews.undo("bob").undoes == 2  # bob's latest anywhere
    assert reviews.latest()[1].id == ann.id
    assert reviews.undo("ann").sample == 5  # ann's latest anywhere: the unsure on 5


def test_clamps(run_dir):
    reviews = ReviewStore(run_dir, num_classes=3)
    reviews.record(0, "accept", "ann", proposal=2)
    reviews.record(1, "keep", "ann")  # given 1
    reviews.record(2, "relabel", "ann", 0)
    reviews.record(3, "unsure", "ann")
    reviews.record(4, "outlier", "ann")
    reviews.record(5, "outlier", "ann")
    reviews.record(5, "relabel", "bob", 1)  # a tie with no proposal recorded: unresolved, no clamp
    reviews.record(6, "relabel", "ann", 0)
    reviews.record(6, "relabel", "ann", 2)  # ann changed her mind: her newer decision counts
    clamped, outliers = reviews.clamps(10)
    np.testing.assert_array_equal(clamped, [2, 1, 0, -1, -1, -1, 2, -1, -1, -1])
    np.testing.assert_array_equal(np.flatnonzero(outliers), [4])
    assert clamped.dtype == np.int64
    reviews.record(5, "outlier", "carol")  # two outlier votes to one: the majority excludes it
    clamped, outliers = reviews.clamps(10)
    assert clamped[5] == -1 and outliers[5]


def test_empty_log_reads_without_creating_anything(run_dir):
    reviews = ReviewStore(run_dir)
    assert reviews.latest() == {} and reviews.version() == 0
    assert not (run_dir / "reviews.sqlite").exists()
    with pytest.raises(UserError, match="does not exist"):
        ReviewStore(run_dir / "missing").record(0, "keep", "ann", 0)


def test_database_is_wal_and_synchronous_full(run_dir):
    reviews = ReviewStore(run_dir)
    reviews.record(0, "keep", "ann")
    with reviews._connect(write=False) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_concurrent_threads_lose_nothing(run_dir):
    errors = []

    def writer(name):
        try:
            reviews = ReviewStore(run_dir, num_classes=3)  # shared object, own connection per call
            for i in range(25):
                reviews.record(i % 10, "relabel", name, i % 3, step=i)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"t{t}",)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    events = ReviewStore(run_dir).history()
    assert len(events) == 200 and len({e.id for e in events}) == 200
    for t in range(8):
        assert sorted(e.step for e in events if e.reviewer == f"t{t}") == list(range(25))


WRITER = textwrap.dedent("""
    import sys
    from engine.rundir.review import ReviewStore
    reviews = ReviewStore(sys.argv[1])
    for i in range(int(sys.argv[3])):
        reviews.record(i % 10, "unsure", sys.argv[2], step=i)
    print("saved", flush=True)
    if len(sys.argv) > 4:
        import time
        time.sleep(60)
""")


def _writer(run_dir, name, count, hang=False):
    args = [sys.executable, "-c", WRITER, str(run_dir), name, str(count)] + (["hang"] if hang else [])
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)


def test_concurrent_processes_lose_nothing(run_dir):
    procs = [_writer(run_dir, f"p{i}", 60) for i in range(2)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    events = ReviewStore(run_dir).history()
    assert len(events) == 120
    for i in range(2):
        assert sorted(e.step for e in events if e.reviewer == f"p{i}") == list(range(60))


def test_decision_survives_kill_9(run_dir):
    proc = _writer(run_dir, "ann", 3, hang=True)
    try:
        assert proc.stdout.readline().strip() == "saved"  # record() returned: committed
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    events = ReviewStore(run_dir).history()
    assert [(e.sample, e.reviewer, e.step) for e in events] == [(0, "ann", 0), (1, "ann", 1), (2, "ann", 2)]
    con = sqlite3.connect(run_dir / "reviews.sqlite")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


# ---------------------------------------------------------------- clamps in propagation
def test_apply_clamps_sets_seeds_and_copies_inputs():
    seeds = np.array([[0.5, 0.0], [0.0, 0.2], [0.9, 0.0], [0.0, 0.4]], np.float32)
    refined = np.array([0, 1, 0, 1])
    easy = np.array([False, True, False, False])
    clamped = np.array([1, -1, -1, 0])
    outliers = np.array([False, False, True, False])
    new_seeds, new_refined, new_easy, train_mask = apply_clamps(seeds, refined, easy, clamped, outliers)
    np.testing.assert_array_equal(new_seeds, np.array([[0, 1], [0, 0.2], [0, 0], [1, 0]], np.float32))
    np.testing.assert_array_equal(new_refined, [1, 1, 0, 0])
    np.testing.assert_array_equal(new_easy, [True, True, False, True])
    np.testing.assert_array_equal(train_mask, [True, True, False, True])
    assert seeds[0, 0] == 0.5 and refined[0] == 0 and not easy[0]  # inputs untouched
    with pytest.raises(ValueError, match="-1..1"):
        apply_clamps(seeds, refined, easy, np.array([2, -1, -1, -1]), outliers)


def test_propagation_keeps_clamped_labels():
    features = two_clusters()
    graph = build_graph(features, GraphConfig(k=3))
    labels = np.repeat([0, 1], 6)
    config = PropagationConfig(max_iter=200)
    seeds = seed_matrix(labels, 2)
    plain = propagate(graph.normalized, seeds, config)
    assert plain.labels[2] == 0  # inside cluster 0, propagation says 0
    clamped = np.full(12, -1)
    clamped[2] = 1  # a reviewer says 1
    seeds, kept, easy, _ = apply_clamps(seeds, labels, np.zeros(12, bool), clamped, np.zeros(12, bool))
    result = propagate(graph.normalized, seeds, config)
    refined = np.where(easy, kept, result.labels)
    assert refined[2] == 1  # never relabelled
    np.testing.assert_array_equal(np.delete(refined, 2), np.delete(labels, 2))


# ---------------------------------------------------------------- the queue
def test_review_flags_and_queue_orders():
    given = np.array([0, 0, 1, 1, 0, 1, 0, 1, 0, 1])
    refined = given.copy()
    refined[[1, 6]] = 1 - refined[[1, 6]]
    weight = np.array([0.9, 0.1, 0.8, 0.05, 0.7, 0.95, 0.6, 0.99, 0.85, 0.3], np.float32)
    confidence = np.array([0.9, 0.8, 0.2, 0.7, 0.1, 0.6, 0.5, 0.4, 0.3, 0.95], np.float32)
    snap = {"refined": refined, "weight": weight, "lp_confidence": confidence}
    flags = review_flags(snap, given, fraction=0.2)
    np.testing.assert_array_equal(np.flatnonzero(flags["relabelled"]), [1, 6])
    np.testing.assert_array_equal(np.flatnonzero(flags["ambiguous"]), [1, 3])  # lowest weights
    np.testing.assert_array_equal(np.flatnonzero(flags["low confidence"]), [2, 4])


def test_bulk_candidates():
    given = np.array([0, 0, 0, 0, 1])
    snap = {"refined": np.array([1, 1, 1, 0, 0]), "lp_confidence": np.array([0.9, 0.5, 0.95, 0.99, 0.7])}
    reviewed = np.array([False, False, True, False, False])
    np.testing.assert_array_equal(bulk_candidates(snap, given, reviewed, 0.6, 10), [0, 4])
    np.testing.assert_array_equal(bulk_candidates(snap, given, reviewed, 0.0, 2), [0, 4])
    assert bulk_candidates({"refined": given}, given, reviewed, 0.0, 5).size == 0


def test_agreement():
    from engine.rundir.review import Decision

    def d(sample, label, proposal, blind=True, decision="relabel"):
        return Decision(0, sample, None, decision, label, "ann", 0.0, 1, proposal, blind)

    true = np.array([0, 1, 2, -1])
    decisions = [d(0, 0, 0), d(1, 1, 0), d(2, 1, 2), d(3, 1, 1), d(0, 2, 2, blind=False), d(1, None, 1, True, "unsure")]
    stats = agreement(decisions, true)
    assert stats["labelled"] == 4
    assert stats["with_method"] == pytest.approx(2 / 4)
    assert stats["with_truth"] == pytest.approx(2 / 3)  # sample 3's truth is unknown
    assert stats["method_with_truth"] == pytest.approx(2 / 3)
    assert agreement(decisions, None, blind_only=False)["labelled"] == 5
    # a reviewer who fixes the method's mistakes: the two agreements with the truth differ
    better = agreement([d(0, 0, 1), d(1, 1, 0), d(2, 2, 2)], true)
    assert better["with_truth"] == pytest.approx(1.0) and better["method_with_truth"] == pytest.approx(1 / 3)
    assert better["with_method"] == pytest.approx(1 / 3)


# ---------------------------------------------------------------- re-propagation
def three_cluster_run(path: Path) -> RunStore:
    """Clusters A (0..3) and B (4..7) labelled 0, C (8..11) labelled 1; B's
    seeds are weak (weight 0.01): fixing one sample of B should pull B along."""
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 1.0], [1.0, 0.0], [-1.0, -1.0]])
    features = (np.repeat(centres, 4, axis=0) + rng.normal(0, 0.05, (12, 2))).astype(np.float32)
    given = np.repeat([0, 0, 1], 4)
    weight = np.where((np.arange(12) >= 4) & (np.arange(12) < 8), 0.01, 1.0)
    return make_run(path, given=given, weight=weight, features=features)


def test_repropagate_shows_the_ripple(tmp_path):
    store = three_cluster_run(tmp_path / "run")
    clamped = np.full(12, -1)
    clamped[5] = 1
    ripple = repropagate(store, 1, clamped)
    np.testing.assert_array_equal(ripple.before, np.repeat([0, 0, 1], 4))
    assert ripple.after[5] == 1 and list(ripple.clamped) == [5]
    np.testing.assert_array_equal(ripple.changed, [4, 6, 7])  # the rest of cluster B, not the clamp itself
    outliers = np.zeros(12, bool)
    outliers[5] = True  # an outlier is no seed at all: nothing moves
    assert repropagate(store, 1, np.full(12, -1), outliers).changed.size == 0


def test_expected_impact_and_proxy(tmp_path):
    store = three_cluster_run(tmp_path / "run")
    snap = store.snapshot(1)
    given = store.dataset_arrays()["given"]
    seeds = step_seeds(snap, "refine", 2)
    np.testing.assert_array_equal(seeds.labels, given)
    np.testing.assert_array_equal(seeds.weights, snap["weight"])  # no seed_weight stored: the AWE weight
    counts = expected_impact(step_replay(store, 1), np.array([1, 5]), np.array([1, 1]))
    np.testing.assert_array_equal(counts, [0, 3])  # A is held by strong seeds; B follows its fixed sample
    # 0 <-> 1 are mutual neighbours, 2 lists 0; fixing anyone to 1 could flip a neighbour labelled 0
    neighbor_idx = np.array([[1], [0], [0]])
    np.testing.assert_array_equal(impact_proxy(neighbor_idx, np.array([0, 0, 1]), np.array([1, 1, 1])), [1, 1, 0])
    np.testing.assert_array_equal(impact_proxy(neighbor_idx, np.array([0, 0, 1]), np.array([0, 0, 0])), [1, 0, 0])


# ---------------------------------------------------------------- several reviewers
def vote(id_, sample, reviewer, decision="relabel", label=None, proposal=None, undoes=None, batch=None):
    return Decision(id_, sample, None, decision, label, reviewer, float(id_), 1, proposal, False, undoes, batch)


def test_current_decisions_per_reviewer_with_undo():
    events = [vote(1, 0, "ann", label=1), vote(2, 0, "bob", label=2), vote(3, 0, "ann", label=3),
              vote(4, 0, "ann", "undo", undoes=3), vote(5, 1, "bob", "unsure"), vote(6, 1, "bob", "undo", undoes=5)]
    current = current_decisions(events)
    assert [(d.id, d.reviewer, d.label) for d in current] == [(1, "ann", 1), (2, "bob", 2)]  # ann's undo restores 1


def test_consensus_majority_ties_and_abstentions():
    decisions = [
        vote(1, 0, "ann", label=1), vote(2, 0, "bob", label=1), vote(3, 0, "cy", label=2),  # 2:1 -> 1, disputed
        vote(4, 1, "ann", label=0, proposal=2), vote(5, 1, "bob", label=2, proposal=2),  # tie, proposal among: 2
        vote(6, 2, "ann", label=0, proposal=2), vote(7, 2, "bob", label=1, proposal=2),  # tie, proposal not: unresolved
        vote(8, 3, "ann", "unsure"), vote(9, 3, "bob", label=1),  # unsure abstains: 1, not disputed
        vote(10, 4, "ann", "outlier"), vote(11, 4, "bob", "outlier"), vote(12, 4, "cy", label=0),  # outlier wins
        vote(13, 5, "ann", "unsure"),  # all abstain
        vote(14, 6, "ann", "keep", label=3),
    ]
    verdicts = consensus_of(decisions)
    got = {s: (v.label, v.outlier, v.disputed, v.tie_broken) for s, v in verdicts.items()}
    assert got == {0: (1, False, True, False), 1: (2, False, True, True), 2: (None, False, True, False),
                   3: (1, False, False, False), 4: (None, True, True, False), 5: (None, False, False, False),
                   6: (3, False, False, False)}
    assert verdicts[0].reviewers == ("ann", "bob", "cy") and verdicts[0].decision == "relabel"
    assert verdicts[4].decision == "outlier" and verdicts[2].decision == "unsure" and verdicts[6].decision == "keep"
    # an explicit proposal (the step on screen) breaks the tie instead of the recorded one
    assert consensus_of(decisions, proposals={2: 1})[2].label == 1
    assert consensus_of(decisions, proposals=np.array([0, 0, 0, 0, 0, 0, 0]))[1].label == 0


def test_reviewer_agreement_on_a_hand_made_log():
    decisions = [
        vote(1, 0, "ann", label=1), vote(2, 0, "bob", label=1), vote(3, 0, "cy", label=2),
        vote(4, 1, "ann", label=0), vote(5, 1, "bob", label=0), vote(6, 1, "cy", label=0),
        vote(7, 2, "ann", label=2),  # ann alone: no agreement to measure
        vote(8, 3, "cy", "unsure"), vote(9, 3, "bob", label=1),
    ]
    true = np.array([1, 0, 1, -1])
    stats = reviewer_agreement(decisions, true)
    assert list(stats) == ["ann", "bob", "cy"]
    assert stats["ann"] == {"decisions": 3, "labelled": 3, "disputed": 1, "with_consensus": 1.0,
                            "compared_with_consensus": 2, "with_truth": pytest.approx(2 / 3), "compared_with_truth": 3}
    assert stats["cy"]["with_consensus"] == 0.5 and stats["cy"]["compared_with_consensus"] == 2  # unsure not compared
    assert stats["cy"]["with_truth"] == 0.5 and stats["cy"]["decisions"] == 3 and stats["cy"]["labelled"] == 2
    assert stats["bob"]["with_consensus"] == 1.0 and stats["bob"]["compared_with_consensus"] == 2
    assert reviewer_agreement([vote(1, 0, "ann", label=1)])["ann"]["with_truth"] is None


def test_two_reviewers_both_kept_and_disputed(run_dir):
    reviews = ReviewStore(run_dir, num_classes=3)
    reviews.record(2, "relabel", "ann", 0, proposal=1)
    reviews.record(2, "relabel", "bob", 2, proposal=1)  # never replaces ann's
    verdict = reviews.consensus()[2]
    assert verdict.disputed and verdict.label is None and verdict.reviewers == ("ann", "bob")
    reviews.record(2, "accept", "cy", proposal=1)  # three votes, three labels: tie, proposal 1 among them
    verdict = reviews.consensus()[2]
    assert verdict.label == 1 and verdict.tie_broken and reviews.clamps(10)[0][2] == 1
    reviews.undo("cy", 2)
    assert reviews.clamps(10)[0][2] == -1


def test_record_once_skips_a_repeat_of_the_current_decision(run_dir):
    reviews = ReviewStore(run_dir, num_classes=3)
    first = reviews.record(4, "accept", "ann", proposal=2, once=True)
    again = reviews.record(4, "accept", "ann", proposal=2, once=True)  # a second tab, a repeated key
    assert again.id == first.id and len(reviews.history()) == 1
    other = reviews.record(4, "accept", "bob", proposal=2, once=True)  # another reviewer counts
    changed = reviews.record(4, "relabel", "ann", 0, once=True)  # a change of mind counts
    assert len({first.id, other.id, changed.id}) == 3 and len(reviews.history()) == 3
    assert len(reviews.record_many([dict(sample=4, decision="relabel", reviewer="ann", label=0),
                                    dict(sample=5, decision="keep", reviewer="ann")], once=True)) == 2
    assert len(reviews.history()) == 4


def test_undo_last_undoes_a_bulk_action_whole(run_dir):
    reviews = ReviewStore(run_dir, num_classes=3)
    reviews.record(9, "keep", "ann")
    bulk = reviews.record_many([dict(sample=i, decision="accept", reviewer="ann", proposal=1) for i in (1, 2, 3)],
                               batch=True)
    assert len({d.batch for d in bulk}) == 1 and bulk[0].batch is not None
    reviews.record(7, "keep", "bob")  # another reviewer's later decision is not ann's last action
    undone = reviews.undo_last("ann")
    assert sorted(u.undoes for u in undone) == sorted(d.id for d in bulk)
    assert sorted(reviews.latest()) == [7, 9]
    assert [u.undoes for u in reviews.undo_last("ann")] == [1]  # then her single decision before it
    with pytest.raises(UserError, match="'ann' has no decision left to undo"):
        reviews.undo_last("ann")


def test_a_browsers_undo_is_recorded_once_and_names_what_is_left(run_dir):
    reviews = ReviewStore(run_dir, num_classes=3)
    assert reviews.submit(9, "keep", "ann", client_id="t-1", seen=0)[0] == "saved"
    assert reviews.submit(9, "relabel", "ann", 2, client_id="t-2", seen=reviews.latest()[9].id)[0] == "saved"
    bulk = reviews.record_many([dict(sample=i, decision="accept", reviewer="ann", proposal=1) for i in (1, 2, 3)],
                               batch=True)
    status, current = reviews.undo_last_client("ann", "t-3")  # Z on a bulk action: all of it, one client id
    assert status == "undone" and current is None
    undone = [d for d in reviews.history() if d.decision == "undo"]
    assert sorted(u.undoes for u in undone) == sorted(d.id for d in bulk)
    assert [u.client_id for u in undone] == ["t-3", None, None]  # the first undo event carries the client id
    assert reviews.undo_last_client("ann", "t-3") == ("duplicate", None)  # a resend: nothing more undone
    assert len(reviews.history()) == 2 + 3 + 3
    status, current = reviews.undo_client("ann", "t-2", "t-4")  # the relabel: the keep before it is current again
    assert status == "undone" and (current.decision, current.client_id) == ("keep", "t-1")
    assert reviews.undo_client("ann", "t-2", "t-5") == ("gone", current)  # undone already
    assert reviews.undo_client("bob", "t-1", "t-6") == ("gone", None)  # not bob's decision
    assert reviews.undo_client("ann", "t-9", "t-7") == ("gone", None)  # never recorded
    assert reviews.undo_client("ann", "t-2", "t-4")[0] == "duplicate"
    status, current = reviews.undo_last_client("ann", "t-8")
    assert status == "undone" and current is None and not reviews.latest()
    assert reviews.undo_last_client("ann", "t-10") == ("gone", None)


@pytest.mark.parametrize("name, message", [("", "required"), ("x" * 65, "at most 64"), ("a\nb", "control")])
def test_reviewer_names_checked(run_dir, name, message):
    with pytest.raises(UserError, match=message):
        ReviewStore(run_dir).record(1, "keep", name)


def test_reviewer_name_with_quotes_and_markup_is_kept_as_text(run_dir):
    name = """<b>O'Neil</b> "x" <script>"""
    assert ReviewStore(run_dir).record(1, "keep", name).reviewer == name
    assert ReviewStore(run_dir).latest()[1].reviewer == name


# ---------------------------------------------------------------- the log belongs to its samples
def test_samples_digest():
    keys, given = np.array(["a", "b", "c"]), np.array([0, 1, 2])
    digest = samples_digest(keys, given)
    assert len(digest) == 64 and digest == samples_digest(list(keys), [0, 1, 2])
    assert digest != samples_digest(keys, [0, 1, 1]) and digest != samples_digest(["a", "c", "b"], given)
    assert digest != samples_digest(keys[:2], given[:2])


def _dataset(path: Path, given, keys=None) -> None:
    keys = np.array([f"k{i}" for i in range(len(given))]) if keys is None else keys
    RunStore(path).write_dataset(given=np.asarray(given), true=np.full(len(given), -1), keys=keys,
                                 holdout=np.zeros(len(given), bool))


def test_log_of_other_samples_is_refused(run_dir):
    reviews = ReviewStore(run_dir, num_classes=3)
    reviews.record(1, "keep", "ann")
    assert reviews.samples_digest() == samples_digest([f"k{i}" for i in range(10)], np.arange(10) % 3)
    _dataset(run_dir, np.arange(10) % 2)  # the same keys, other given labels: another dataset
    for call in (lambda r: r.latest(), lambda r: r.clamps(10), lambda r: r.record(2, "keep", "ann"),
                 lambda r: r.undo_last("ann")):
        with pytest.raises(UserError, match="was written for other samples") as info:
            call(ReviewStore(run_dir))
        assert "reviews.sqlite" in str(info.value) and "\n" not in str(info.value)
    _dataset(run_dir, np.arange(10) % 3)  # its own samples again: readable, nothing lost
    assert len(ReviewStore(run_dir).history()) == 1


def _legacy_log(run_dir: Path, samples) -> None:
    con = sqlite3.connect(run_dir / "reviews.sqlite")
    con.execute("CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, sample INTEGER NOT NULL, key TEXT, "
                "decision TEXT NOT NULL, label INTEGER, reviewer TEXT NOT NULL, time REAL NOT NULL, step INTEGER, "
                "proposal INTEGER, blind INTEGER NOT NULL DEFAULT 0, undoes INTEGER)")
    for s in samples:
        con.execute("INSERT INTO events (sample, decision, label, reviewer, time) VALUES (?, 'relabel', 1, 'ann', 0)",
                    (s,))
    con.commit()
    con.close()


def test_log_made_before_digests_adopts_the_run_when_it_fits(run_dir):
    _legacy_log(run_dir, [2, 9])
    reviews = ReviewStore(run_dir, num_classes=3)
    assert sorted(reviews.latest()) == [2, 9]
    assert reviews.samples_digest() == samples_digest([f"k{i}" for i in range(10)], np.arange(10) % 3)
    reviews.record_many([dict(sample=i, decision="keep", reviewer="ann") for i in (3, 4)], batch=True)
    assert len(ReviewStore(run_dir).undo_last("ann")) == 2  # the batch column was added


def test_log_made_before_digests_naming_missing_samples_is_refused(run_dir):
    _legacy_log(run_dir, [2, 10])  # the run has samples 0..9
    with pytest.raises(UserError, match="names sample 10, but this run has 10 samples"):
        ReviewStore(run_dir).latest()
    con = sqlite3.connect(run_dir / "reviews.sqlite")
    assert con.execute("SELECT name FROM sqlite_master WHERE name = 'meta'").fetchone() is None  # not adopted
    con.close()


@pytest.mark.parametrize("content", [b"not a database at all, just text" * 40, b"SQLite format 3\x00" + b"\xff" * 600])
def test_garbage_log_is_one_clear_error(run_dir, content):
    (run_dir / "reviews.sqlite").write_bytes(content)
    for call in (lambda r: r.latest(), lambda r: r.record(1, "keep", "ann"), lambda r: r.version()):
        with pytest.raises(UserError, match="is damaged") as info:
            call(ReviewStore(run_dir))
        assert "reviews.sqlite" in str(info.value) and "move it out" in str(info.value)
        assert "disk is full" not in str(info.value) and "read-only" not in str(info.value)
    assert (run_dir / "reviews.sqlite").read_bytes() == content  # left as it was


# ---------------------------------------------------------------- a queue worth reviewing
def queue_snapshot():
    """8 samples, 3 classes; given = [0, 0, 1, 1, 2, 2, 0, 1].

    0: relabelled to 1, sources sure of 1          -> change ~0.9
    1: kept, sources sure of the given label       -> ~0.05 (accept = keep: out)
    2: kept, but the sources doubt it (p 0.3)      -> 0.7 (genuinely unsure: in)
    3: relabelled, sources split (p given 0.45)    -> 0.55
    4: kept, sure                                  -> ~0.1 (out)
    5: relabelled, given not in the top-2 at all   -> ~1.0
    6: kept, mildly doubted (p 0.6)                -> 0.4 (out: below 0.5)
    7: kept, sure                                  -> 0 (out)
    """
    given = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    refined = np.array([1, 0, 1, 2, 2, 0, 0, 1])
    top = np.array([[1, 0], [0, 1], [0, 1], [2, 1], [2, 0], [0, 1], [0, 2], [1, 0]])
    prob = np.array([[0.9, 0.1], [0.95, 0.05], [0.7, 0.3], [0.55, 0.45], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4],
                     [1.0, 0.0]])
    return {"refined": refined, "student_top": top, "student_prob": prob}, given


def test_top_k_probability_spreads_the_rest():
    p = top_k_probability(np.array([[0, 1], [0, 1]]), np.array([[0.6, 0.3], [0.6, 0.3]]), np.array([1, 3]), 5)
    np.testing.assert_allclose(p, [0.3, 0.1 / 3])


def test_queue_ranks_by_expected_change_and_leaves_out_accept_equals_keep():
    snap, given = queue_snapshot()
    change = expected_change(snap, given)
    np.testing.assert_allclose(change, [0.9, 0.05, 0.7, 0.55, 0.1, 1.0, 0.4, 0.0])
    np.testing.assert_array_equal(np.flatnonzero(worth_reviewing(snap, given)), [0, 2, 3, 5])
    np.testing.assert_array_equal(build_queue(snap, given, fraction=1.0), [5, 0, 2, 3])
    np.testing.assert_array_equal(build_queue(snap, given, fraction=0.25), [5, 0])  # at most 25% of 8
    np.testing.assert_array_equal(build_queue(snap, given, "all", fraction=1.0), [5, 0, 2, 3, 6, 4, 1, 7])
    np.testing.assert_array_equal(build_queue(snap, given, "relabelled", fraction=1.0), [5, 0, 3])
    disputed = np.zeros(8, bool)
    disputed[[1, 3]] = True
    np.testing.assert_array_equal(build_queue(snap, given, "disputed", disputed=disputed), [3, 1])
    np.testing.assert_array_equal(build_queue(snap, given, "worth reviewing", classes=[2], fraction=1.0), [5, 3])
    with pytest.raises(UserError, match="unknown queue 'nope'"):
        build_queue(snap, given, "nope")
    with pytest.raises(UserError, match="fraction"):
        build_queue(snap, given, fraction=0.0)


def test_queue_uses_every_source_and_beats_self_confidence_on_a_hand_made_case():
    # the student alone is fooled on sample 1 (wrong label, high student probability); the teacher and the
    # propagation are not: the mean of the sources ranks it above the clean sample 2
    given = np.array([0, 0, 0, 0])
    true = np.array([1, 1, 0, 0])
    snap = {"refined": np.array([1, 1, 0, 0]),
            "student_top": np.array([[1, 0], [0, 1], [1, 0], [0, 1]]),
            "student_prob": np.array([[0.9, 0.1], [0.6, 0.4], [0.55, 0.45], [0.9, 0.1]]),
            "teacher_top": np.array([[1, 0], [1, 0], [0, 1], [0, 1]]),
            "teacher_prob": np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.9, 0.1]])}
    np.testing.assert_allclose(given_label_probability(snap, given), [0.1, 0.35, 0.675, 0.9])
    ours = build_queue(snap, given, "all", fraction=1.0)
    baseline = self_confidence_ranking(snap, given)
    np.testing.assert_array_equal(ours, [0, 1, 2, 3])
    np.testing.assert_array_equal(baseline, [0, 2, 1, 3])  # student P(given): 0.1, 0.6, 0.45, 0.9
    assert queue_precision(ours, given, true, 2) == 1.0 and queue_precision(baseline, given, true, 2) == 0.5
    assert queue_precision(np.array([], np.int64), given, true, 2) is None


# ---------------------------------------------------------------- several reviewers through export and import
def test_decisions_export_has_reviewer_and_consensus_rows_and_imports_back(tmp_path):
    import shutil

    from engine.readers.export import decisions_table, import_decisions, samples_table

    store = make_run(tmp_path / "run")
    reviews = ReviewStore(store.path, num_classes=2)
    reviews.record(3, "relabel", "ann", 1, proposal=0)
    reviews.record(3, "keep", "bob", proposal=0)  # disputed; a tie the proposal (0 = keep) breaks
    reviews.record(5, "outlier", "ann")
    reviews.record(5, "outlier", "bob")
    table = decisions_table(reviews.effective(), ["class 0", "class 1"])
    assert table[["index", "kind", "reviewer", "decision", "label", "disputed"]].values.tolist() == [
        [3, "reviewer", "ann", "relabel", "class 1", 1], [3, "reviewer", "bob", "keep", "class 0", 1],
        [5, "reviewer", "ann", "outlier", "", 0], [5, "reviewer", "bob", "outlier", "", 0],
        [3, "consensus", "ann, bob", "keep", "class 0", 1], [5, "consensus", "ann, bob", "outlier", "", 0]]
    samples = samples_table(store).set_index("index")
    assert samples.loc[3, ["final", "decision", "reviewer"]].tolist() == ["class 0", "keep", "ann, bob"]
    copy = RunStore(tmp_path / "copy")
    shutil.copytree(store.path, copy.path)
    for name in ("reviews.sqlite", "reviews.sqlite-wal", "reviews.sqlite-shm"):
        (copy.path / name).unlink(missing_ok=True)
    (tmp_path / "decisions.csv").write_text(table.to_csv(index=False))
    imported = import_decisions(copy, tmp_path / "decisions.csv")
    assert len(imported) == 4  # the consensus rows are not imported as decisions
    again = ReviewStore(copy.path).consensus()
    assert {s: (v.label, v.outlier, v.disputed, v.reviewers) for s, v in again.items()} == \
        {3: (0, False, True, ("ann", "bob")), 5: (None, True, False, ("ann", "bob"))}

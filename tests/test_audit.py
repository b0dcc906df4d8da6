"""The random audit's counts and intervals (engine.method.audit), on hand-checkable fixtures."""

from pathlib import Path

import numpy as np
import pytest

from engine.method import audit as au
from engine.rundir.review import AuditStore


def test_order_is_a_seeded_permutation():
    order = au.audit_order(1000, seed=3)
    assert sorted(order.tolist()) == list(range(1000))
    assert np.array_equal(order, au.audit_order(1000, seed=3))
    assert not np.array_equal(order, au.audit_order(1000, seed=4))
    assert not np.array_equal(order, np.arange(1000))
    # the first audited samples do not depend on how many samples follow in a longer run of the same seed? no:
    # a permutation of another N is another order; what must hold is that the order is the same for one run
    assert au.audit_order(0, seed=1).shape == (0,)
    with pytest.raises(ValueError, match="num_samples"):
        au.audit_order(-1, seed=0)


def test_shares_use_the_wilson_interval_at_the_audit_level():
    share = au.Share.of(36, 100)
    # by hand at 90%: centre 0.3637, half-width 0.0780
    assert (share.value, share.low, share.high) == pytest.approx((0.36, 0.2857, 0.4417), abs=5e-4)
    rng = np.random.default_rng(0)
    for rate, n in ((0.36, 700), (0.05, 200)):  # the interval covers the rate about 90% of the time
        draws = rng.binomial(n, rate, size=4000)
        inside = [s.low <= rate <= s.high for s in (au.Share.of(int(k), n) for k in draws)]
        assert 0.87 <= np.mean(inside) <= 0.93
    empty = au.Share.of(0, 0)
    assert np.isnan(empty.value) and (empty.low, empty.high) == (0.0, 1.0)


def test_audit_size_gives_the_half_width():
    n = au.audit_size(0.4, 0.03)
    assert 700 <= n <= 730  # 1.645^2 * 0.24 / 0.0009 = 721.6
    share = au.Share.of(int(0.4 * n), n)
    assert share.half_width == pytest.approx(0.03, abs=0.002)
    assert au.audit_size(0.0) == 1


def _fixture():
    # 8 samples; 5 audited: 0, 2, 3, 5 with a class, 7 an outlier
    given = np.array([0, 1, 1, 2, 0, 2, 1, 0])
    audit_labels = np.array([0, -1, 2, 2, -1, 1, -1, -2])
    return given, au.audit_of(audit_labels, given, left_out=1)


def test_rate_counts_wrong_given_labels_and_outliers():
    given, audit = _fixture()
    assert audit.size == 5 and audit.left_out == 1
    assert audit.samples.tolist() == [0, 2, 3, 5, 7]
    rate = audit.rate()
    assert (rate.count, rate.total) == (3, 5)  # 2 (given 1, class 2), 5 (given 2, class 1), 7 (no class)
    assert rate.value == pytest.approx(0.6)
    assert rate.low < 0.6 < rate.high


def test_precision_and_change_of_two_labellings():
    given, audit = _fixture()
    refined = given.copy()
    refined[[2, 5]] = [2, 0]  # 2 fixed; 5 still wrong (0, class 1)
    refined[0] = 1  # 0 broken
    refined[1] = 2  # not audited: no effect
    assert audit.precision(given).count == 2
    assert audit.precision(refined).count == 2
    change = audit.change(given, refined)
    assert (change.fixed, change.broken, change.total) == (1, 1, 5)
    assert change.value == 0.0 and change.verdict == "within chance"
    assert change.low < 0 < change.high


def test_change_verdicts():
    n = 400
    given = np.zeros(n, np.int64)
    classes = np.where(np.arange(n) < 100, 1, 0)  # 100 wrong given labels
    audit = au.audit_of(classes, given)
    better = given.copy()
    better[:90] = 1  # fixes 90
    better[300:305] = 1  # breaks 5
    change = audit.change(given, better)
    assert (change.fixed, change.broken) == (90, 5)
    assert change.value == pytest.approx(85 / 400)
    assert change.verdict == "better"
    assert audit.change(better, given).verdict == "worse"
    assert au.audit_of(np.full(n, -1), given).change(given, better).verdict == "within chance"


def test_audit_of_refuses_bad_labels():
    with pytest.raises(ValueError, match="one shape"):
        au.audit_of(np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError, match="no class"):
        au.audit_of(np.array([-3]), np.array([0]))


# ---------------------------------------------------------------- the audit log (engine.rundir.review.AuditStore)
def _run_dir(tmp_path, n=10):
    from engine.rundir.store import RunStore

    store = RunStore(tmp_path / "run")
    store.path.mkdir()
    store.write_dataset(given=np.arange(n) % 3, true=np.full(n, -1), keys=np.array([f"k{i}" for i in range(n)]),
                        holdout=np.zeros(n, bool))
    return store.path


def test_audit_log_is_its_own_file_and_never_clamps(tmp_path):
    from engine.rundir.review import AuditStore, ReviewStore

    run_dir = _run_dir(tmp_path)
    audit = AuditStore(run_dir, num_classes=3)
    audit.record(4, "relabel", "ann", 0)  # given 1, class 0
    audit.record(5, "keep", "ann")  # given 2: right
    audit.record(6, "outlier", "ann")
    audit.record(7, "unsure", "ann")
    assert (run_dir / "audit.sqlite").exists() and not (run_dir / "reviews.sqlite").exists()
    clamped, outliers = ReviewStore(run_dir, num_classes=3).clamps(10)
    assert (clamped == -1).all() and not outliers.any()
    labels, left_out = audit.audit_labels(10)
    assert labels.tolist() == [-1, -1, -1, -1, 0, 2, -2, -1, -1, -1]
    assert left_out == 1
    counted = au.audit_of(labels, np.arange(10) % 3, left_out)
    assert counted.rate().count == 2 and counted.size == 3  # sample 4 (wrong) and 6 (no class)


def test_audit_log_consensus_undo_and_refusals(tmp_path):
    from engine.errors import UserError
    from engine.rundir.review import AuditStore

    run_dir = _run_dir(tmp_path)
    audit = AuditStore(run_dir, num_classes=3)
    audit.record(1, "relabel", "ann", 2)
    audit.record(1, "relabel", "bob", 2)
    audit.record(1, "keep", "cy")  # 2 against 1: class 2
    audit.record(2, "relabel", "ann", 0)
    audit.record(2, "keep", "bob")  # a tie: left out, never broken
    assert audit.audit_labels(10)[0][[1, 2]].tolist() == [2, -1]
    assert audit.audit_labels(10)[1] == 1
    audit.undo("bob", sample=2)
    assert audit.audit_labels(10)[0][2] == 0
    with pytest.raises(UserError, match="audit"):
        audit.record(3, "accept", "ann", 1, proposal=1)
    stored = audit.record(3, "relabel", "ann", 1, proposal=0)
    assert stored.proposal is None and stored.blind  # blind to the method, whatever the caller sent
    with pytest.raises(UserError, match="audit log"):
        audit.audit_labels(3)  # names sample 3 of a 3-sample run


def test_a_run_made_again_keeps_an_audit_of_the_same_samples_only(tmp_path, capsys):
    from engine.cli import main
    from engine.rundir.review import AuditStore

    out = tmp_path / "run"
    base = ["run", "--dataset", "moons?n=120", "--k", "8", "--teacher-epochs", "1", "--warmup-epochs", "1",
            "--refine-epochs", "1", "--mutual-epochs", "0", "--out", str(out)]
    assert main(base) == 0
    AuditStore(out, num_classes=2).record(3, "relabel", "ann", 1)
    assert main(base + ["--force", "--relabel-rule", "authors"]) == 0  # same samples, other settings: kept
    assert AuditStore(out).audit_labels(120)[0][3] == 1
    capsys.readouterr()
    assert main(base + ["--force", "--noise", "symmetric:0.3"]) == 0  # other given labels: set aside
    assert "audit (of other samples) was moved to" in capsys.readouterr().err
    assert (out / "audit-old-1.sqlite").exists() and not (out / "audit.sqlite").exists()


# ---------------------------------------------------------------- the gate (engine.method.audit.gate_changes)
def _changes(pattern, n_extra=10):
    """40 changes of label 0 -> 1 ranked by confidence (first most confident), every one audited: ``pattern``
    says per change whether the audit names 1 (the change fixes) or 0 (it breaks); ``n_extra`` unchanged
    samples after them."""
    n = len(pattern) + n_extra
    reference = np.zeros(n, np.int64)
    proposed = np.zeros(n, np.int64)
    proposed[:len(pattern)] = 1
    confidence = np.linspace(1.0, 0.1, n)
    classes = np.full(n, -1)
    classes[:len(pattern)] = pattern
    return reference, proposed, confidence, au.audit_of(classes, reference)


def test_gate_takes_the_prefix_that_fixes_most():
    pattern = [1] * 24 + [0] * 16  # groups of 10: +10, +10, -2, -10: the best is the first two groups
    reference, proposed, confidence, audit = _changes(pattern)
    gate = au.gate_changes(reference, proposed, confidence, audit)
    assert (gate.changes, gate.audited, gate.accepted, gate.fixed, gate.broken) == (40, 40, 20, 20, 0)
    assert gate.verdict[:20].tolist() == [au.TAKE] * 20
    assert gate.verdict[20:40].tolist() == [au.KEEP] * 20
    assert gate.verdict[40:].tolist() == [au.UNJUDGED] * 10  # unchanged, not judged
    assert gate.cutoff == pytest.approx(confidence[19])


def test_gate_takes_nothing_without_evidence_for_a_change():
    reference, proposed, confidence, audit = _changes([0] * 40)
    gate = au.gate_changes(reference, proposed, confidence, audit)
    assert gate.accepted == 0 and gate.cutoff is None and (gate.verdict[:40] == au.KEEP).all()
    unaudited = au.audit_of(np.full(50, -1), reference)
    gate = au.gate_changes(reference, proposed, confidence, unaudited)
    assert gate.accepted == 0 and gate.audited == 0 and (gate.verdict[:40] == au.KEEP).all()
    # a tie between taking the first group and none: none (+5 - 5 = 0)
    reference, proposed, confidence, audit = _changes([1, 0] * 5 + [0] * 30)
    assert au.gate_changes(reference, proposed, confidence, audit).accepted == 0


def test_gate_takes_all_when_every_group_helps_and_protects_reviews():
    reference, proposed, confidence, audit = _changes([1] * 40)
    protected = np.zeros(50, bool)
    protected[[0, 45]] = True  # a reviewed change and a reviewed unchanged sample
    gate = au.gate_changes(reference, proposed, confidence, audit, protected=protected, judge_all=True)
    assert gate.changes == 39 and gate.accepted == 39 and gate.fixed == 39
    assert gate.verdict[0] == au.UNJUDGED and gate.verdict[45] == au.UNJUDGED
    assert (gate.verdict[1:45] == au.TAKE).all() and (gate.verdict[46:] == au.TAKE).all()  # judge_all: unchanged too


def test_gate_uses_fewer_groups_with_few_audited_changes():
    pattern = [1] * 12 + [0] * 28
    reference, proposed, confidence, audit = _changes(pattern)
    classes = np.full(50, -1)
    classes[[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 30, 31, 32, 33, 34, 35, 36]] = [1] * 12 + [0] * 7
    few = au.audit_of(classes, reference)  # 19 audited changes: one group, net +12 - 7 > 0: all taken
    gate = au.gate_changes(reference, proposed, confidence, few)
    assert gate.audited == 19 and gate.accepted == 40 and (gate.fixed, gate.broken) == (12, 7)


def test_better_labeller_counts_audited_right_predictions():
    given = np.zeros(6, np.int64)
    audit = au.audit_of(np.array([1, 1, 2, -1, 0, -2]), given)
    student = np.array([1, 0, 2, 2, 0, 1])  # right on 0, 2, 4
    teacher = np.array([1, 1, 0, 1, 1, 1])  # right on 0, 1
    assert au.better_labeller({"student": student, "teacher": teacher}, audit) == "student"
    assert au.better_labeller({"teacher": teacher, "student": teacher}, audit) == "teacher"  # tie: the first


def test_the_summary_and_a_warning_count_the_audit(tmp_path):
    """summary.json carries the audit's counts of the last labels; an audit that shows the refined labels worse
    than the given ones beyond chance warns (audit_worse), one that shows them better does not."""
    from engine.method.config import RunConfig, ScheduleConfig
    from engine.rundir.health import audit_warning
    from engine.rundir.review import AuditStore
    from engine.rundir.store import RunStore
    from engine.steps.run import Run

    schedule = ScheduleConfig(teacher_epochs=2, teacher_patience=2, warmup_epochs=1, refine_epochs=1, mutual_epochs=0)
    run = Run.create(tmp_path / "run", RunConfig(dataset="moons", noise="symmetric:0.4", seed=0, schedule=schedule,
                                                 relabel_rule="authors"))
    run.run_until(None)
    summary = RunStore(run.store.path).summary()
    assert summary["audit_size"] == 0 and summary["audit_change"] is None
    given, refined, true = run.given, run.state.refined, run.true
    changed = np.flatnonzero(given != refined)
    assert len(changed) >= 30
    log = AuditStore(run.store.path, 2)
    # an audit that calls the given label right wherever the labels changed: every change breaks one
    log.record_many([{"sample": int(i), "decision": "keep", "reviewer": "ann"} for i in changed[:30]])
    warning = audit_warning(run.store, given, refined)
    assert warning["code"] == "audit_worse" and "break 30 audited labels and fix 0" in warning["message"]
    summary = run.summary()
    assert summary["audit_size"] == 30 and summary["audit_rate"] == 0.0 and summary["audit_precision"] == 0.0
    assert summary["audit_change"] == "worse"
    assert "audit_worse" in [w["code"] for w in summary["warnings"]]
    # the same samples audited with the refined label as their class: better, no warning
    for i in changed[:30]:
        log.record(int(i), "relabel", "ann", int(refined[i]))
    assert audit_warning(run.store, given, refined) is None
    summary = run.summary()
    assert summary["audit_precision"] == 1.0 and summary["audit_rate"] == 1.0 and summary["audit_change"] == "better"
    assert summary["audit_precision_low"] < 1.0 < summary["audit_precision_high"] + 1e-9


def test_the_command_line_lists_imports_and_counts_an_audit(tmp_path, capsys):
    import csv
    import io
    import json

    from engine.cli import main
    from engine.rundir.store import RunStore

    out = tmp_path / "run"
    assert main(["run", "--dataset", "moons?n=120", "--noise", "symmetric:0.4", "--k", "8", "--teacher-epochs", "1",
                 "--warmup-epochs", "1", "--refine-epochs", "1", "--mutual-epochs", "0", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["audit", str(out)]) == 0
    assert capsys.readouterr().out.startswith("nothing audited yet")
    assert main(["audit", str(out), "--next", "8", "--reviewer", "ann"]) == 0
    listed = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    arrays = RunStore(out).dataset_arrays()
    keys = {str(k): i for i, k in enumerate(arrays["keys"])}
    samples = [keys[r["key"]] for r in listed]
    assert samples == au.audit_order(120, 0)[:8].tolist()  # the run's seed (0): its audit order
    names = [str(c) for c in RunStore(out).class_names()]
    assert [r["given"] for r in listed] == [names[arrays["given"][i]] for i in samples]
    filled = tmp_path / "audit.csv"
    with filled.open("w") as f:
        f.write("key,class\n" + "".join(f"{r['key']},{names[arrays['true'][keys[r['key']]]]}\n" for r in listed))
    assert main(["audit", str(out), "--import", str(filled), "--reviewer", "ann", "--json"]) == 0
    text = capsys.readouterr().out
    report = json.loads(text[text.index("{"):])
    wrong = int(np.sum(arrays["given"][samples] != arrays["true"][samples]))
    assert report["audited"] == 8 and report["rate"]["count"] == wrong
    assert report["refined_precision"]["total"] == 8
    # a sample far down the order, a class the run does not have: refused, nothing recorded
    late = int(au.audit_order(120, 0)[100])
    (tmp_path / "late.csv").write_text(f"sample,class\n{late},{names[0]}\n")
    assert main(["audit", str(out), "--import", str(tmp_path / "late.csv"), "--reviewer", "ann"]) == 2
    assert "number 101 of the audit order, beyond the first 9" in capsys.readouterr().err
    (tmp_path / "bad.csv").write_text(f"key,class\n{listed[0]['key']},zebra\n")
    assert main(["audit", str(out), "--import", str(tmp_path / "bad.csv"), "--reviewer", "ann"]) == 2
    err = capsys.readouterr().err
    assert "line 2: class 'zebra' is not a class of this run" in err and "Traceback" not in err
    assert main(["audit", str(out), "--next", "3"]) == 2
    assert main(["audit", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["audited"] == 8


def test_the_benchmarks_simulated_audit_is_the_truth_on_the_audit_order(tmp_path):
    """bench/noise_sweep.py --audit: the first N samples of the run's own audit order, each audited with its true
    class; its columns count them, and its goals judge the audit's counts."""
    import importlib.util

    from engine.method.config import RunConfig, ScheduleConfig
    from engine.steps.run import Run

    spec = importlib.util.spec_from_file_location("noise_sweep", Path(__file__).resolve().parents[1] / "bench" /
                                                  "noise_sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    schedule = ScheduleConfig(teacher_epochs=1, teacher_patience=1, warmup_epochs=1, refine_epochs=1, mutual_epochs=0)
    run = Run.create(tmp_path / "run", RunConfig(dataset="moons?n=200", noise="symmetric:0.4", seed=3,
                                                 schedule=schedule))
    sweep.simulate_audit(run, 60)
    labels, left_out = AuditStore(run.store.path).audit_labels(200)
    audited = np.flatnonzero(labels >= 0)
    assert sorted(audited.tolist()) == sorted(au.audit_order(200, 3)[:60].tolist()) and left_out == 0
    np.testing.assert_array_equal(labels[audited], run.true[audited])
    run.run_until(None)
    columns = sweep.audit_columns(run, 60)
    wrong = int(np.sum(run.given[audited] != run.true[audited]))
    assert columns["audit_size"] == 60 and columns["audit_rate"] == pytest.approx(wrong / 60)
    right = int(np.sum(run.state.refined[audited] == run.true[audited]))
    assert columns["audit_prec"] == pytest.approx(right / 60)
    outside = np.setdiff1d(np.arange(200), audited)
    assert columns["prec_true_outside"] == pytest.approx(np.mean(run.state.refined[outside] == run.true[outside]))
    row = {"noise": "symmetric:0.4", "given": 0.6, "ours_end": 0.7, "authors_end": 0.71, "rate_est": 0.3,
           "rate_true": 0.4, "prec_est": 0.6, "audit_size": 60, "audit_rate": 0.38, "audit_prec": 0.75}
    assert sweep.goals(row) == {"no harm": True, "r error": False, "prec error": False, "r error (audit)": True,
                                "prec error (audit)": False, ">= authors": False}


def test_an_audit_copies_between_runs_of_the_same_samples_only(tmp_path, capsys):
    from engine.cli import main

    base = ["run", "--dataset", "moons?n=120", "--noise", "symmetric:0.3", "--k", "8", "--teacher-epochs", "1",
            "--warmup-epochs", "1", "--refine-epochs", "1", "--mutual-epochs", "0"]
    for name, extra in (("a", []), ("b", ["--relabel-rule", "authors"]), ("c", ["--seed", "1"])):
        assert main(base + extra + ["--out", str(tmp_path / name)]) == 0
    log = AuditStore(tmp_path / "a", 2)
    log.record(5, "relabel", "ann", 1)
    log.record(7, "outlier", "bob")
    capsys.readouterr()
    assert main(["audit", str(tmp_path / "b"), "--copy-from", str(tmp_path / "a")]) == 0
    assert "copied 2 audit decisions" in capsys.readouterr().out
    labels, _ = AuditStore(tmp_path / "b").audit_labels(120)
    assert labels[5] == 1 and labels[7] == au.NO_CLASS and (labels >= -1).sum() == 119
    assert main(["audit", str(tmp_path / "b"), "--copy-from", str(tmp_path / "a")]) == 0  # again: nothing new
    assert "copied 0 audit decisions" in capsys.readouterr().out
    assert main(["audit", str(tmp_path / "c"), "--copy-from", str(tmp_path / "a")]) == 2  # seed 1: other noise
    assert "other samples or given labels" in capsys.readouterr().err
    assert not (tmp_path / "c" / "audit.sqlite").exists()


def test_the_students_graph_competes_only_when_the_student_is_the_better_labeller():
    """Mutual stage, the student's turn: its graph (features clustered by the working labels) wins the agreement
    over a teacher graph of random features; it is used only when ``student_may``; off its turn, never."""
    from types import SimpleNamespace

    from engine.method.graph import GraphConfig, build_graph
    from engine.steps.handlers import _refine_graph

    rng = np.random.default_rng(0)
    working = np.repeat([0, 1], 30)
    student = np.where(working[:, None] == 0, [1.0, 0.0], [0.0, 1.0]) + rng.normal(0, 0.05, (60, 2))
    teacher_graph = build_graph(rng.normal(size=(60, 2)).astype(np.float32), GraphConfig(k=5))
    run = SimpleNamespace(nets=SimpleNamespace(teacher_graph=lambda: teacher_graph),
                          state=SimpleNamespace(phase_epoch=0), config=SimpleNamespace(graph=GraphConfig(k=5)),
                          dataset=SimpleNamespace(num_classes=2))
    easy = np.ones(60, bool)
    graph, choice = _refine_graph(run, True, student.astype(np.float32), working, easy, student_may=True)
    assert graph is not teacher_graph and choice["graph_agreement_student"] > choice["graph_agreement_teacher"]
    graph, choice = _refine_graph(run, True, student.astype(np.float32), working, easy, student_may=False)
    assert graph is teacher_graph and choice == {}
    run.state.phase_epoch = 1  # the teacher's turn
    assert _refine_graph(run, True, student.astype(np.float32), working, easy)[0] is teacher_graph
    run.state.phase_epoch = 0
    assert _refine_graph(run, False, student.astype(np.float32), working, easy)[0] is teacher_graph  # refine

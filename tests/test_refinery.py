"""One truth per step: a replay of a propagating step with its own settings
gives exactly the step's refined labels; every snapshot key is in the
documented field list; the method modules stand alone; the run-directory
contract imports no torch or faiss."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.readers import explain; from engine.rundir import snapshot
from engine.method.config import RunConfig, ScheduleConfig
from engine.method.refinery import Reason, Seeds, apply_clamps, clamp_seeds, refine_relabel
from engine.method.audit import KEEP, TAKE, audit_order
from engine.rundir.review import AuditStore, ReviewStore
from engine.steps.run import Run
from engine.rundir.store import RunStore


ROOT = Path(__file__).resolve().parents[1]
# As tests/conftest.py's TINY_SCHEDULE (not imported: under tests/browser another conftest shadows it).
TINY_SCHEDULE = ScheduleConfig(teacher_epochs=2, teacher_patience=2, warmup_epochs=1, refine_epochs=2,
                               mutual_epochs=2)


def _run(path: Path, noise_rate=None, reviews: bool = False, dataset="moons", noise="symmetric:0.3",
         rule="calibrated", audit: str | None = None) -> RunStore:
    config = RunConfig(dataset=dataset, noise=noise, method="aml-kd", seed=0, noise_rate=noise_rate,
                       schedule=TINY_SCHEDULE, relabel_rule=rule)
    run = Run.create(path, config)
    if audit:  # 150 samples of the audit order, audited before stage 0: their true class, or their given label
        order = audit_order(len(run.given), config.seed)[:150]
        classes = run.true if audit == "truth" else run.given
        AuditStore(path, run.dataset.num_classes).record_many(
            [{"sample": int(i), "decision": "relabel", "reviewer": "ann", "label": int(classes[i])} for i in order])
    if reviews:  # decisions made after the teacher's phase clamp stage 0 and every later step
        run.run_until("propagate")
        log = ReviewStore(path, num_classes=run.dataset.num_classes)
        given = run.given
        for sample in (0, 5, 9, 35):  # 35 and 48: in the teacher's hold-out, where the labeller is judged
            log.record(sample, "relabel", "ann", int((given[sample] + 1) % run.dataset.num_classes))
        log.record(12, "keep", "ann")
        log.record(20, "outlier", "ann")
        log.record(48, "outlier", "ann")
    run.run_until(None)
    return run.store


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("replay")
    return {
        "estimated": _run(root / "estimated", rule="authors"),
        "known": _run(root / "known", noise_rate=0.3, rule="authors"),
        "calibrated": _run(root / "calibrated"),
        "custom": _run(root / "custom", noise_rate=0.12),
        "reviewed": _run(root / "reviewed", reviews=True),
        "reviewed-known": _run(root / "reviewed-known", noise_rate=0.3, reviews=True),
        "audited": _run(root / "audited", audit="truth"),
        "audited-given": _run(root / "audited-given", audit="given"),
    }


@pytest.mark.parametrize("variant", ["estimated", "known", "calibrated", "custom", "reviewed", "reviewed-known",
                                     "audited", "audited-given"])
def test_a_replay_with_the_step_settings_is_the_step(runs, variant):
    store = runs[variant]
    steps = explain.propagating_steps(store)
    assert [explain.step_phase(store, s) for s in steps] == ["propagate", "refine", "refine", "mutual", "mutual"]
    for step in steps:
        result = explain.what_if(store, step)
        refined = store.snapshot(step)["refined"]
        np.testing.assert_array_equal(result.labels, refined, err_msg=f"{variant}, step {step}")
    if variant.startswith("reviewed"):
        snap = store.snapshot(steps[0])
        assert snap["clamped"][[0, 5, 9, 12, 35]].min() >= 0 and snap["outlier"][[20, 48]].all()
        reasons = explain.what_if(store, steps[0]).relabelling.reasons
        assert set(np.flatnonzero(reasons == Reason.REVIEWED)) == {0, 5, 9, 12, 35}


def test_the_rule_a_replay_explains_is_the_rule_the_step_ran(runs):
    known = explain.what_if(runs["known"], explain.propagating_steps(runs["known"])[0])
    assert known.relabelling.rule == "support" and known.settings.noise_rate == 0.3
    # only the 30% least supported labels may change: the other 70% keep their given label by that rule
    n = len(known.labels)
    assert np.sum(known.relabelling.reasons == Reason.KEPT_SUPPORTED) == n - round(0.3 * n)
    estimated = explain.what_if(runs["estimated"], 3)
    assert estimated.relabelling.rule == "confidence"
    assert np.sum(estimated.relabelling.reasons == Reason.KEPT_UNSURE) == round(0.05 * n)
    given = runs["known"].dataset_arrays()["given"]
    sample = int(np.flatnonzero(known.relabelling.reasons == Reason.KEPT_SUPPORTED)[0])
    text = explain.why(sample, known.relabelling, given, np.full(n, -1), ["a", "b"], 0.5, 0.0, 0.3)
    assert "noise rate is known (30%)" in text and "kept its given label" in text


def test_the_calibrated_rule_changes_a_given_label_only_where_the_posterior_favours_it(runs):
    store = runs["calibrated"]
    given = store.dataset_arrays()["given"].astype(np.int64)
    rows = np.arange(len(given))
    for step in explain.propagating_steps(store):
        snap = store.snapshot(step)
        replay = explain.what_if(store, step).relabelling
        assert replay.rule.endswith("+calibrated"), replay.rule
        post, labels = snap["posterior"].astype(np.float32), snap["refined"]
        changed = labels != given
        assert (post[rows, labels] > post[rows, given])[changed].all(), step
        refused = replay.reasons == Reason.KEPT_GIVEN
        assert (replay.proposed[refused] != given[refused]).all() and (labels[refused] == given[refused]).all()
        if "previous" in snap:  # stages 1-2: never below the labels before the step, by its own estimate
            assert post[rows, labels].mean() >= post[rows, snap["previous"]].mean() - 1e-6


def test_an_audit_gates_every_change_it_has_evidence_on(runs):
    """An audit that calls every given label right lets no judged change through; one that tells the truth lets
    through changes that fix more audited labels than they break. Either way the labels a judged change would
    have replaced stay."""
    for variant in ("audited", "audited-given"):
        store = runs[variant]
        arrays = store.dataset_arrays()
        given = arrays["given"].astype(np.int64)
        true_rate = float(np.mean(given != arrays["true"]))
        metrics = {m["step"]: m for m in store.metrics()}
        steps = explain.propagating_steps(store)
        for step in steps:
            m, snap = metrics[step], store.snapshot(step)
            assert m["audit_size"] == 150 and m["audit_rate"] == pytest.approx(
                0.0 if variant == "audited-given" else true_rate, abs=0.08)  # 150 samples: sd about 0.03
            if m.get("audit_gate_changes") is None:
                continue  # too few audited changes to judge (an informative estimate's own changes stand)
            before = given if m["phase"] == "propagate" else snap["previous"]
            verdict = snap["audit_verdict"]
            kept = verdict == KEEP
            np.testing.assert_array_equal(snap["refined"][kept], before[kept])
            assert np.sum(kept) == m["audit_gate_changes"] - m["audit_gate_accepted"]
            assert m["audit_gate_fixed"] >= m["audit_gate_broken"]
            reasons = explain.what_if(store, step).relabelling.reasons
            assert set(np.flatnonzero(reasons == Reason.KEPT_AUDIT)) <= set(np.flatnonzero(kept))
            if variant == "audited-given":
                assert m["audit_gate_accepted"] == 0 and not np.any(verdict == TAKE)
                kept_audit = np.flatnonzero(reasons == Reason.KEPT_AUDIT)
                if len(kept_audit):  # the "why" text names the audit and the label the sample kept
                    i = int(kept_audit[0])
                    replay = explain.what_if(store, step).relabelling
                    text = explain.why(i, replay, given, np.full(len(given), -1), ["a", "b"], 0.5)
                    assert "random audit" in text and f"kept its label {'ab'[int(snap['refined'][i])]}" in text
        stage0 = metrics[steps[0]]
        assert stage0["audit_gate_changes"] is not None  # 150 of the samples audited: stage 0 is judged
        if variant == "audited-given":
            np.testing.assert_array_equal(store.snapshot(steps[0])["refined"], given)
        else:
            assert stage0["audit_gate_accepted"] > 0 and stage0["audit_gate_fixed"] > stage0["audit_gate_broken"]


def test_every_snapshot_key_is_documented_with_its_dtype(runs):
    store = runs["reviewed"]
    for m in store.metrics():
        arrays = store.snapshot(m["step"])
        for name, values in arrays.items():
            assert name in snapshot.FIELDS, name
            assert values.dtype == np.dtype(snapshot.FIELDS[name].dtype), (name, values.dtype)
            assert m["phase"] in snapshot.FIELDS[name].phases, (name, m["phase"])
        required = {n for n, f in snapshot.FIELDS.items() if m["phase"] in f.phases and not f.optional}
        assert required <= set(arrays), (m["phase"], required - set(arrays))
    with pytest.raises(ValueError, match="not in snapshot.FIELDS"):
        snapshot.validate({"refined": np.zeros(3, np.int64), "mystery": np.zeros(3)}, "teacher")
    with pytest.raises(ValueError, match="dtype"):
        snapshot.validate({"refined": np.zeros(3, np.int32)}, "teacher")


def test_history_reads_only_the_asked_fields(runs):
    store = runs["estimated"]
    steps, values = snapshot.history(store, ("refined", "weight"))
    assert list(steps) == store.steps() and values["refined"].dtype == np.int64
    n = len(store.dataset_arrays()["given"])
    assert values["refined"].shape == (len(steps), n) and np.isnan(values["weight"][0]).all()
    np.testing.assert_array_equal(values["refined"][-1], store.snapshot(steps[-1])["refined"])


def test_class_names_live_in_the_run_directory(runs):
    store = runs["estimated"]
    assert "class_names" in store.dataset_arrays() and store.class_names() == ("class 0", "class 1")


def test_clamp_seeds_equals_the_matrix_form():
    rng = np.random.default_rng(0)
    labels, weights = rng.integers(0, 3, 8), rng.random(8).astype(np.float32)
    clamped = np.array([-1, 2, -1, -1, 0, -1, -1, -1])
    outliers = np.array([False, False, True, False, True, False, False, False])
    easy = rng.random(8) < 0.5
    seeds, working, new_easy, mask = clamp_seeds(Seeds(labels, weights), 3, labels, easy, clamped, outliers)
    from engine.method.propagate import seed_matrix
    matrix, working2, easy2, mask2 = apply_clamps(seed_matrix(labels, 3, weights), labels, easy, clamped, outliers)
    np.testing.assert_array_equal(seeds.matrix(3), matrix)
    np.testing.assert_array_equal(working, working2)
    np.testing.assert_array_equal(new_easy, easy2)
    np.testing.assert_array_equal(mask, mask2)
    assert seeds.weights[2] == 0 and seeds.weights[4] == 0 and seeds.weights[1] == 1 and seeds.labels[1] == 2


def test_refine_relabel_keeps_easy_and_optionally_the_least_confident():
    from types import SimpleNamespace

    result = SimpleNamespace(labels=np.array([1, 1, 1, 1]), confidence=np.array([0.9, 0.1, 0.5, 0.05]))
    working, easy = np.array([2, 2, 0, 0]), np.array([True, False, False, False])
    assert refine_relabel(working, easy, result).labels.tolist() == [2, 1, 1, 1]
    what_if = refine_relabel(working, easy, result, keep_least_confident=0.5)  # 2 least confident: 3, 1
    assert what_if.labels.tolist() == [2, 2, 1, 0]
    assert what_if.reasons.tolist() == [Reason.KEPT_EASY, Reason.KEPT_LEAST_CONFIDENT, Reason.PROPAGATED,
                                        Reason.KEPT_LEAST_CONFIDENT]
    with pytest.raises(ValueError, match="keep_least_confident"):
        refine_relabel(working, easy, result, keep_least_confident=1.0)


def test_the_run_directory_contract_imports_no_torch_or_faiss():
    code = ("import sys, engine.rundir.store, engine.method.config, engine.steps.phases, engine.rundir.snapshot;"
            "print(sorted(m for m in ('torch', 'faiss') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.replace("'", '"')) == []


def test_the_what_if_cli_replays_every_propagating_step(runs, capsys):
    from engine.cli import main

    path = str(runs["known"].path)
    assert main(["what-if", path, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["step"] for r in rows] == explain.propagating_steps(runs["known"])
    assert all(set(r) == {"step", "changed", "to_correct", "to_wrong"} and r["changed"] == 0 for r in rows)
    assert main(["what-if", path, "--step", "3", "--k", "4", "--alpha", "0.5", "--json"]) == 0
    (row,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    expected = explain.what_if(runs["known"], 3, k=4, alpha=0.5)
    assert row["changed"] == len(expected.changed) > 0
    assert main(["what-if", path, "--step", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "step 4 of run" in err and "ran no propagation; valid steps: 3, 5" in err


def test_the_seed_labeller_is_judged_on_the_held_out_part_neither_network_fitted(runs):
    """Every refine and mutual step of the calibrated run (no audit) judges on the teacher's hold-out: each
    network's share of its given labels, from the predictions the step saw (the teacher's, and the student's
    after the step before), and the network with more agreements seeds, ties to the teacher. The authors'
    rule has no judge."""
    for variant in ("calibrated", "reviewed"):  # reviewed: held-out 35 relabelled and 48 an outlier by reviewers
        store = runs[variant]
        arrays = store.dataset_arrays()
        holdout, given = arrays["holdout"].astype(bool), arrays["given"].astype(np.int64)
        assert 0 < holdout.sum() < len(given)
        lines = {m["step"]: m for m in store.metrics()}
        judged = [s for s, m in lines.items() if m["phase"] in ("refine", "mutual")]
        assert len(judged) == 4
        for step in judged:
            m, snap = lines[step], store.snapshot(step)
            student, teacher = store.snapshot(step - 1)["student_pred"], snap["teacher_pred"]
            clamped = snap.get("clamped", np.full(len(given), -1))
            reference = np.where(clamped >= 0, clamped, given)
            rows = holdout & ~snap.get("outlier", np.zeros(len(given), bool))
            shares = {name: float(np.mean(pred[rows] == reference[rows])) for name, pred in
                      (("teacher", teacher), ("student", student))}
            t_right, s_right = teacher[rows] == reference[rows], student[rows] == reference[rows]
            assert m["holdout_judged"] == rows.sum() and m["holdout_only_teacher"] == np.sum(t_right & ~s_right)
            assert m["holdout_only_student"] == np.sum(s_right & ~t_right)
            assert m["labeller_judge"] == "held-out"
            assert m["holdout_agreement_teacher"] == pytest.approx(shares["teacher"])
            assert m["holdout_agreement_student"] == pytest.approx(shares["student"])
            assert m["seed_labeller"] == ("student" if shares["student"] > shares["teacher"] else "teacher")
    assert all("labeller_judge" not in m for m in runs["estimated"].metrics())
    for m in runs["audited"].metrics():  # an audit judges instead
        assert m.get("labeller_judge") in (None, "audit")


@pytest.mark.parametrize("rule", ["calibrated", "authors"])
def test_the_student_never_trains_on_the_held_out_part_under_the_calibrated_rule(tmp_path, monkeypatch, rule):
    """The judge's part must be data the student never fitted: under the calibrated rule every student epoch
    (warm-up, refine, mutual) leaves out exactly the teacher's hold-out; under the authors' rule it trains on
    every sample, as the authors' code does."""
    from engine.steps import handlers

    seen = []
    real = handlers.student_epoch

    def recording(student, teacher, opt, x, targets, *args, **kwargs):
        seen.append(x.detach().cpu().numpy().copy())
        return real(student, teacher, opt, x, targets, *args, **kwargs)

    monkeypatch.setattr(handlers, "student_epoch", recording)
    config = RunConfig(dataset="moons", noise="symmetric:0.3", seed=0, schedule=TINY_SCHEDULE, relabel_rule=rule)
    run = Run.create(tmp_path / rule, config)
    run.run_until(None)
    x = run.nets.x.detach().cpu().numpy()
    held = {tuple(row) for row in x[run.holdout]}
    assert len(seen) == 5 and 0 < len(held) == run.holdout.sum()
    for rows in seen:
        inside = sum(tuple(row) in held for row in rows)
        if rule == "calibrated":
            assert inside == 0 and len(rows) == len(x) - len(held)
        else:
            assert inside == len(held) and len(rows) == len(x)
    # the metric says as much (a last batch of one sample is left out: batch norm needs two)
    rows = len(x) - (len(held) if rule == "calibrated" else 0)
    tail = rows % config.train.batch_size
    trained = [m["student_samples"] for m in RunStore(tmp_path / rule).metrics() if "student_samples" in m]
    assert trained == [rows - (tail if tail == 1 else 0)] * 5

"""engine.readers.compare: which runs are comparable, and the table, curves and
per-sample labels of a comparison, on tiny real runs (AML-KD, CE, KD on the
same moons data) and on hand-made run directories for the refusals."""

from __future__ import annotations

import os
import json
import shutil

import numpy as np
import pytest

from engine.cli import main
from engine.readers.compare import (comparison_table, curves, dataset_label, format_table, label_disagreement,
                            method_label, noise_label, per_sample, require_same_data, run_results, same_data)
from engine.method.config import RunConfig
from engine.errors import UserError
from engine.rundir.store import RunStore


@pytest.fixture(scope="module")
def trio(make_tiny_run):
    """Finished AML-KD, CE and KD tiny runs on the same moons data, noise and seed."""
    return [make_tiny_run("moons", "moons", "symmetric:0.3"),
            make_tiny_run("moons-ce", "moons", "symmetric:0.3", method="ce"),
            make_tiny_run("moons-kd", "moons", "symmetric:0.3", method="kd")]


def fake_run(path, n=6, given=None, keys=None, classes=("a", "b"), dataset="digits", noise="symmetric:0.4",
             seed=0, labels=None):
    """A run directory with only config.json and dataset.npz."""
    store = RunStore(path)
    store.create(RunConfig(dataset=dataset, noise=noise, seed=seed, labels=labels))
    given = np.arange(n) % 2 if given is None else np.asarray(given)
    keys = [f"train/{i:03d}.png" for i in range(n)] if keys is None else keys
    store.write_dataset(given=given, true=np.arange(n) % 2, keys=np.array(keys), holdout=np.zeros(n, bool),
                        class_names=np.array(classes))
    return store


# ---------------------------------------------------------------- comparable?
def test_runs_with_the_same_data_noise_and_seed_are_comparable(trio):
    assert same_data(trio) == []
    given = [RunStore(p).dataset_arrays()["given"] for p in trio]
    assert all(np.array_equal(given[0], g) for g in given[1:])


def test_different_sample_counts_are_refused_naming_both_runs(tmp_path):
    a, b = fake_run(tmp_path / "small", n=6), fake_run(tmp_path / "large", n=8)
    [problem] = same_data([a, b])
    assert "'small' and 'large'" in problem and "sample counts (6 and 8" in problem


def test_different_keys_are_refused_with_the_first_differing_key(tmp_path):
    a = fake_run(tmp_path / "a")
    b = fake_run(tmp_path / "b", keys=[f"train/{i:03d}.png" for i in range(5)] + ["train/other.png"])
    [problem] = same_data([a, b])
    assert "different samples: 1 of 6 keys differ" in problem and "'train/other.png'" in problem


def test_different_given_labels_are_refused_with_their_count(tmp_path):
    a = fake_run(tmp_path / "a")
    b = fake_run(tmp_path / "b", given=[1, 1, 0, 1, 0, 0])  # same noise and seed, other labels: 4 of 6 differ
    [problem] = same_data([a, b])
    wrong = int(np.sum(np.array([1, 1, 0, 1, 0, 0]) != np.arange(6) % 2))
    assert f"different given labels on {wrong} of 6 samples" in problem and "seed 0 and 0" in problem
    with pytest.raises(UserError, match="cannot compare: runs 'a' and 'b' have different given labels"):
        require_same_data([a, b])


def test_other_seeds_are_comparable_under_the_same_noise_and_checked_within_their_seed(tmp_path):
    a = fake_run(tmp_path / "a")
    b = fake_run(tmp_path / "b", given=[1, 1, 0, 1, 0, 0], seed=3)  # seed 3 draws other noisy labels
    c = fake_run(tmp_path / "c", given=[1, 1, 0, 1, 0, 0], seed=3)
    assert same_data([a, b, c]) == []
    d = fake_run(tmp_path / "d", given=[0, 0, 0, 1, 0, 0], seed=3)  # seed 3 again, but not b's labels
    [problem] = same_data([a, b, d])
    assert problem.startswith("runs 'b' and 'd' have different given labels on 2 of 6 samples") and "seed 3 and 3" in problem
    e = fake_run(tmp_path / "e", seed=4, noise="pairflip:0.4")
    [problem] = same_data([a, e])
    assert "differ in seed (0 and 4) and in noise ('symmetric:0.4' and 'pairflip:0.4')" in problem


def test_different_classes_and_index_keys_of_other_data_are_refused(tmp_path):
    a = fake_run(tmp_path / "a")
    b = fake_run(tmp_path / "b", classes=("cat", "dog"))
    assert "different classes (a, b and cat, dog)" in same_data([a, b])[0]
    keys = [str(i) for i in range(6)]  # built-in data: keys are indices, the spec names the data
    c = fake_run(tmp_path / "c", keys=keys, dataset="moons?n=6&spread=0.1")
    d = fake_run(tmp_path / "d", keys=keys, dataset="moons?n=6&spread=0.3")
    assert "different data ('moons?n=6&spread=0.1' and 'moons?n=6&spread=0.3')" in same_data([c, d])[0]


def test_a_damaged_dataset_is_reported_not_raised(tmp_path):
    a, b = fake_run(tmp_path / "a"), fake_run(tmp_path / "b")
    b.dataset_path.write_bytes(b"not a zip")
    [problem] = same_data([a, b])
    assert problem.startswith("run 'b' cannot be read") and "damaged" in problem


# ---------------------------------------------------------------- the table
def test_table_values_are_each_runs_summary_and_the_difference_to_ce(trio):
    rows = comparison_table(trio)
    summaries = [RunStore(p).summary() for p in trio]
    assert [r["method"] for r in rows] == ["AML-KD", "CE", "KD"]
    for row, summary in zip(rows, summaries):
        assert row["dataset"] == "moons" and row["noise"] == "symmetric 30%" and row["seed"] == 0
        for key in ("given_label_precision", "refined_label_precision", "student_test_accuracy", "steps",
                    "wall_seconds"):
            assert row[key] == summary[key]
        assert row["finished"]
    ce = summaries[1]["student_test_accuracy"]
    assert rows[0]["student_vs_ce"] == pytest.approx(summaries[0]["student_test_accuracy"] - ce)
    assert rows[2]["student_vs_ce"] == pytest.approx(summaries[2]["student_test_accuracy"] - ce)
    assert rows[1]["baseline"] and rows[1]["student_vs_ce"] is None and rows[1]["teacher_test_accuracy"] is None
    assert rows[2]["teacher_test_accuracy"] == summaries[2]["teacher_test_accuracy"]
    assert rows[0]["refined_label_precision"] > rows[0]["given_label_precision"]  # AML-KD relabelled
    assert [[w["code"] for w in r["warnings"]] for r in rows] == [[], [], ["below_ce"]]  # KD: 0.007 under CE


def test_without_a_ce_run_there_is_no_difference(trio):
    rows = comparison_table([trio[0], trio[2]])
    assert all(r["student_vs_ce"] is None and not r["baseline"] for r in rows)


def test_an_unfinished_run_reads_its_last_metrics_line(make_tiny_run):
    path = make_tiny_run("moons-kd-part", "moons", "symmetric:0.3", method="kd", steps=3)
    [row] = comparison_table([path])
    metrics = RunStore(path).metrics()
    assert row["method"] == "KD (unfinished)" and not row["finished"] and row["steps"] == 3
    assert row["teacher_test_accuracy"] == metrics[-1]["teacher_test_accuracy"]
    assert row["wall_seconds"] == pytest.approx(sum(m["step_seconds"] for m in metrics))
    assert "3/7" in format_table([row])


def test_a_damaged_summary_is_one_message_naming_it_or_in_a_list_falls_back_to_the_metrics(tmp_path, trio):
    path = tmp_path / "damaged"
    shutil.copytree(trio[1], path)
    (path / "summary.json").write_text('{"method": "ce", "student_te')
    with pytest.raises(UserError, match="summary.json.*damaged.*resume"):
        comparison_table([path])
    results, finished = run_results(RunStore(path), strict=False)
    assert not finished and results["steps"] == 5
    assert results["student_test_accuracy"] == RunStore(path).metrics()[-1]["student_test_accuracy"]


def test_text_table_has_one_line_per_run_and_marks_the_baseline(trio):
    lines = format_table(comparison_table(trio)).splitlines()
    assert len(lines) == 5 and lines[0].split()[:4] == ["run", "method", "dataset", "noise"]
    assert "baseline" in lines[3] and "–" in lines[3].split()  # CE: no teacher
    assert lines[2].split()[1] == "AML-KD"


# ---------------------------------------------------------------- curves and samples
def test_curves_have_one_point_per_student_epoch(trio):
    points = curves(trio)
    for path in trio:
        store = RunStore(path)
        mine = [p for p in points if p["run"] == path.name]
        student = [m for m in store.metrics() if m["phase"] in ("warmup", "refine", "mutual", "student")]
        assert [p["epoch"] for p in mine] == list(range(1, 6))  # 1 + 2 + 2 or 5 plain epochs
        assert [p["student_test_accuracy"] for p in mine] == [m["student_test_accuracy"] for m in student]
        assert [p["label_precision"] for p in mine] == [m["refined_label_precision"] for m in student]


def test_per_sample_holds_each_runs_last_labels_and_whether_they_are_right(trio):
    view = per_sample(trio)
    stores = [RunStore(p) for p in trio]
    last = [s.snapshot(s.steps()[-1]) for s in stores]
    true = stores[0].dataset_arrays()["true"]
    for r, snap in enumerate(last):
        assert np.array_equal(view.refined[r], snap["refined"])
        assert np.array_equal(view.student[r], snap["student_pred"])
    assert np.array_equal(view.refined[1], view.given)  # CE trains on the given labels
    assert np.array_equal(view.right(), view.refined == true)
    assert view.disagree().sum() == np.sum(view.refined[0] != view.given)  # only AML-KD relabels
    rows = view.rows()
    assert len(rows) == len(true)
    i = int(np.flatnonzero(view.disagree())[0])
    assert rows[i]["refined labels disagree"] and rows[i]["moons: refined right"] == bool(view.right()[0, i])


def test_per_sample_refuses_runs_on_different_data(tmp_path, trio):
    other = fake_run(tmp_path / "other", n=6)
    with pytest.raises(UserError, match="cannot compare: runs 'moons' and 'other' have different sample counts"):
        per_sample([trio[0], other])


# ---------------------------------------------------------------- names
@pytest.mark.parametrize("spec,label", [
    ("digits", "digits"), ("moons?n=600&spread=0.15", "moons (600 points)"),
    ("folder:/srv/runs/uploads/pets-0123456789ab/pets?size=32", "pets.zip"),
    ("folder:/srv/runs/uploads/pets-0123456789ab", "pets.zip"),
    ("folder:/data/cats/train", "cats"), ("folder:/data/cats", "cats"), ("mnist:data?n=100", "mnist"),
])
def test_dataset_is_named_as_the_user_named_it(spec, label):
    assert dataset_label(spec) == label


def test_ablations_are_named_by_what_they_leave_out():
    assert method_label(RunConfig(without=("awe",))) == "AML-KD w/o AWE"
    assert method_label(RunConfig(without=("stage0", "mutual"))) == "AML-KD w/o mutual, stage 0"
    assert method_label(RunConfig(method="kd")) == "KD"


def test_label_file_noise_shows_its_measured_disagreement():
    config = RunConfig(noise="none", labels="/tmp/labels.csv")
    given, true = np.array([0, 1, 1, 0, 1]), np.array([0, 1, 0, 0, -1])
    assert label_disagreement(given, true) == 0.25
    assert noise_label(config, given, true) == "label file (25% wrong)"
    assert noise_label(config, given, None) == "label file"
    assert noise_label(RunConfig(noise="pairflip:0.2")) == "pairflip 20%"
    assert noise_label(RunConfig(noise="none")) == "none"


# ---------------------------------------------------------------- the CLI
def test_cli_compare_prints_the_table_and_json(trio, capsys):
    assert main(["compare", *map(str, trio)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(format_table(comparison_table(trio, chance=True)) + "\n\n")
    assert main(["compare", "--json", *map(str, trio)]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = data["runs"]
    assert [r["run"] for r in rows] == [p.name for p in trio] and rows[1]["baseline"] is True
    n = rows[0]["test_samples"]
    assert n > 0 and data["chance"].startswith(f"{n} test samples: one sample is {100 / n:.1f} points.")
    for row in rows:
        assert row["student_acc_low"] <= row["student_test_accuracy"] <= row["student_acc_high"]
    for row in (rows[0], rows[2]):
        assert row["vs_ce_low"] <= row["student_vs_ce"] <= row["vs_ce_high"] and 0 < row["vs_ce_p"] <= 1
        assert row["vs_ce_samples"] == round(row["student_vs_ce"] * n)
    assert rows[1]["vs_ce_p"] is None
    assert [m["method"] for m in data["by_method"]] == ["AML-KD", "CE", "KD"]


def test_cli_compare_refuses_runs_on_different_data_with_one_line(tmp_path, trio, capsys):
    other = fake_run(tmp_path / "other", n=6)
    assert main(["compare", str(trio[0]), str(other.path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot compare: runs 'moons' and 'other' have different sample counts" in err


def test_a_run_whose_process_is_gone_reads_as_stopped(make_tiny_run, tmp_path):
    import shutil
    import subprocess
    import sys

    path = tmp_path / "left-running"
    shutil.copytree(make_tiny_run("moons-kd-part", "moons", "symmetric:0.3", method="kd", steps=3), path)
    store = RunStore(path)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    store.write_status(**{**store.status(), "state": "running", "pid": int(gone.stdout)})
    assert comparison_table([path])[0]["method"] == "KD (stopped)"
    store.write_status(**{**store.status(), "state": "running", "pid": os.getpid()})  # this process: alive
    assert comparison_table([path])[0]["method"] == "KD (training)"


def test_the_exported_report_carries_the_comparison_table(trio, tmp_path):
    from pathlib import Path

    from engine.readers.report import comparison_runs, write_report

    store = RunStore(trio[0])
    runs = comparison_runs(store)
    assert runs[0].path == store.path and {r.path for r in runs} >= {Path(p) for p in trio}
    text = write_report(store, tmp_path / "report").read_text()
    assert "## Comparison" in text
    table = text.split("## Comparison")[1].split("\n## ")[0]
    for row in comparison_table(runs):
        assert f"| {row['run']} | {row['method']} |" in table


# ---------------------------------------------------------------- several seeds
def test_several_seeds_compare_each_against_its_own_ce_and_summarise_per_method(trio, tmp_path):
    from engine.readers.compare import by_method
    from engine.steps.run import Run

    base = RunStore(trio[0]).config()  # (not conftest's helper: tests/browser's conftest shadows it in a full run)
    seed1 = [tmp_path / "aml-s1", tmp_path / "ce-s1"]
    for path, method in zip(seed1, ("aml-kd", "ce")):
        Run.create(path, base.with_changes(method=method, seed=1, without=())).run_until(None)
    stores = [trio[0], trio[1], *seed1]
    assert same_data(stores) == []  # other seed, same noise: comparable
    rows = comparison_table(stores, chance=True)
    assert [r["baseline_run"] for r in rows] == [trio[1].name, None, "ce-s1", None]
    assert rows[1]["baseline"] and rows[3]["baseline"]
    accs = [r["student_test_accuracy"] for r in rows]
    assert rows[2]["student_vs_ce"] == pytest.approx(accs[2] - accs[3])
    assert rows[2]["vs_ce_samples"] == round((accs[2] - accs[3]) * rows[2]["test_samples"])
    methods = {m["method"]: m for m in by_method(rows)}
    aml, ce = methods["AML-KD"], methods["CE"]
    assert aml["runs"] == 2 and aml["seeds"] == [0, 1]
    assert aml["student_acc_mean"] == pytest.approx((accs[0] + accs[2]) / 2)
    assert aml["student_acc_sd"] == pytest.approx(abs(accs[0] - accs[2]) / np.sqrt(2))
    assert aml["student_acc_min"] == min(accs[0], accs[2]) and ce["vs_ce_mean"] is None
    assert aml["vs_ce_mean"] == pytest.approx((rows[0]["student_vs_ce"] + rows[2]["student_vs_ce"]) / 2)


def test_features_from_elsewhere_are_named_in_the_method_and_the_worse_labels_warning():
    from engine.readers.compare import _features_named

    config = RunConfig(teacher_features="/data/pets/resnet50.npz")
    assert method_label(config) == "AML-KD + features resnet50.npz"
    assert method_label(RunConfig()) == "AML-KD"
    worse = {"code": "refined_worse", "message": "The refined labels are less precise than the given ones (0.6 "
             "against 0.7): the method is making the labels worse. Check the teacher's accuracy."}
    other = {"code": "below_ce", "message": "below"}
    [named, kept] = _features_named([worse, other], "resnet50.npz")
    assert named["message"].startswith("The refined labels are less precise than the given ones (0.6 against 0.7): "
                                       "the kNN graph and stage 0 came from the features in 'resnet50.npz'")
    assert "teacher's accuracy" not in named["message"] and kept == other
    assert _features_named([worse], None) == [worse]


def test_within_chance_is_exact_mcnemar_at_comparisons_level():
    from engine.readers.compare import within_chance

    assert within_chance(7, 6) and within_chance(0, 0) and within_chance(5, 0)  # p = 1, 1, 0.0625
    assert not within_chance(6, 0) and not within_chance(0, 6)  # p = 0.031
    assert within_chance(16, 6) and not within_chance(17, 6)  # p = 0.052, 0.035

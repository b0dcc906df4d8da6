"""A run says when it went wrong: each warning on a run made to trigger it."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from engine.rundir import health
from engine.method.config import RunConfig, ScheduleConfig, TrainConfig
from engine.steps.run import Run
from engine.rundir.store import RunStore

SCHEDULE = ScheduleConfig(teacher_epochs=1, teacher_patience=1, warmup_epochs=1, refine_epochs=1, mutual_epochs=0)


def _chance_run(path, rule):
    """Digits with a teacher that barely moved from its initialisation (lr 1e-6, one epoch), evaluated on its
    running batch-norm averages: with recomputed statistics its stage 0 breaks the labels as much (0.04 against
    0.82 given), but the one refine epoch's student graph then repairs them (0.833), and the run ends with no
    worse labels to flag."""
    config = RunConfig(dataset="digits", noise="symmetric:0.2", schedule=SCHEDULE,
                       train=replace(TrainConfig(), teacher_lr=1e-6, bn_stats="running"), relabel_rule=rule)
    Run.create(path, config).run_until(None)
    return path


@pytest.fixture(scope="module")
def chance_teacher_run(tmp_path_factory):
    """The authors' relabel rule trusts the chance teacher's propagation."""
    return _chance_run(tmp_path_factory.mktemp("health") / "chance", "authors")


@pytest.fixture(scope="module")
def healthy_run(make_tiny_run):
    return make_tiny_run("digits", "digits", "symmetric:0.4")


def test_a_chance_teacher_and_worse_labels_are_flagged_in_the_summary(chance_teacher_run):
    summary = RunStore(chance_teacher_run).summary()
    codes = [w["code"] for w in summary["warnings"]]
    # the last step's own estimate (on a one-epoch student's graph) may or may not see it: on one CPU its
    # estimates were 0.199 against 0.190 given, on another below; stage 0's estimate sees it (below)
    assert codes[:2] == ["teacher_chance", "refined_worse"]
    assert set(codes) <= {"teacher_chance", "refined_worse", "refined_worse_est"}
    assert summary["teacher_test_accuracy"] < 0.19  # 10 classes: chance 0.1
    assert summary["refined_label_precision"] < summary["given_label_precision"] - 0.01
    # without the truth, stage 0's estimate saw it too (0.09 against 0.81 given; true 0.09 and 0.82)
    stage0 = next(m for m in RunStore(chance_teacher_run).metrics() if m["phase"] == "propagate")
    assert stage0["refined_precision_estimate"] < stage0["given_precision_estimate"] - 0.5
    assert abs(stage0["refined_precision_estimate"] - stage0["refined_label_precision"]) < 0.03
    warning = health.estimate_warning(stage0)
    assert warning["code"] == "refined_worse_est" and "Estimated without the truth" in warning["message"]
    assert health.estimate_warning(dict(stage0, refined_precision_estimate=0.805)) is None  # within the margin
    # a vague estimate's points are the middles of wide intervals: no verdict on them (estimate_vague says why)
    assert health.estimate_warning(dict(stage0, estimate_informative=False)) is None
    message = summary["warnings"][0]["message"]
    assert "at chance for 10 classes" in message and "teacher epochs" in message


def test_the_calibrated_rule_does_no_harm_with_a_chance_teacher(tmp_path):
    summary = RunStore(_chance_run(tmp_path / "chance-calibrated", "calibrated")).summary()
    assert [w["code"] for w in summary["warnings"]] == ["teacher_chance"]
    assert summary["refined_label_precision"] >= summary["given_label_precision"] - 0.005


def test_without_truth_too_many_changes_are_flagged(chance_teacher_run, tmp_path):
    path = tmp_path / "no-truth"
    shutil.copytree(chance_teacher_run, path)
    store = RunStore(path)
    # at stage 0, where the authors' rule took the chance teacher's propagation (the refine step's small-loss
    # selection, with the rate now estimated at 0.19, changes few labels)
    store.truncate_after(next(m["step"] for m in store.metrics() if m["phase"] == "propagate"))
    arrays = store.dataset_arrays()
    arrays["true"] = np.full(len(arrays["given"]), -1)  # as a label file without a truth column
    store.write_dataset(**arrays)
    lines = [{k: v for k, v in m.items() if "precision" not in k} for m in store.metrics()]  # no truth, no precision
    store.metrics_path.write_text("".join(json.dumps(m) + "\n" for m in lines))
    codes = [w["code"] for w in health.run_warnings(store)]
    assert "relabel_excess" in codes and "refined_worse" not in codes


def test_a_healthy_run_has_no_warning(healthy_run):
    assert RunStore(healthy_run).summary()["warnings"] == []
    assert health.run_warnings(RunStore(healthy_run)) == []


def test_hand_made_cases():
    assert health.teacher_warning([{"phase": "teacher", "teacher_test_accuracy": 0.36}], 3)["code"] == "teacher_chance"
    assert health.teacher_warning([{"phase": "teacher", "teacher_test_accuracy": 0.45}], 3) is None
    assert health.teacher_warning([{"phase": "teacher", "teacher_holdout_accuracy": 0.5}], 2) is not None
    given, refined = np.zeros(10, int), np.array([1] * 3 + [0] * 7)
    assert health.label_warning(given, refined, None, 0.1, None, None)["code"] == "relabel_excess"  # 30% > 20%
    assert health.label_warning(given, refined, None, 0.2, None, None) is None  # 30% <= max(40%, 30%)
    assert health.label_warning(given, refined, None, None, 0.8, 0.795) is None  # within the margin
    assert health.below_baseline(0.60, 0.62)["code"] == "below_ce"
    assert health.below_baseline(0.618, 0.62) is None and health.below_baseline(None, 0.6) is None


def _train_page(run_dir):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "views" / "train.py"),
                           default_timeout=60)
    at.session_state["run_dir"] = str(run_dir)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _chart_titles(at) -> list[str]:
    return [(json.loads(c.proto.spec)["layout"].get("title") or {}).get("text", "") for c in at.get("plotly_chart")]


def test_the_train_page_shows_the_warnings_as_banners(chance_teacher_run):
    at = _train_page(chance_teacher_run)
    warnings = [w.value for w in at.warning]
    assert any("at chance for 10 classes" in w for w in warnings)
    assert any("less precise than the given ones" in w for w in warnings)


def test_ce_and_kd_pages_show_only_what_they_have(make_tiny_run, healthy_run):
    full = _chart_titles(_train_page(healthy_run))
    ce = _train_page(make_tiny_run("digits-ce", "digits", "symmetric:0.4", method="ce"))
    kd = _train_page(make_tiny_run("digits-kd", "digits", "symmetric:0.4", method="kd"))
    labels = lambda at: [m.label for m in at.metric]  # noqa: E731
    assert "Teacher test accuracy" not in labels(ce) and "Teacher test accuracy" in labels(kd)
    assert "Refined-label precision" not in labels(ce) + labels(kd)
    assert "Given-label precision" in labels(ce) and "Refined-label precision" in labels(_train_page(healthy_run))
    assert len(_chart_titles(ce)) < len(full) and len(_chart_titles(kd)) == len(_chart_titles(ce))
    dropped = set(full) - set(_chart_titles(ce)) - {""}
    assert dropped and not any("ccuracy" in t or "oss" in t for t in dropped)  # accuracy and losses stay

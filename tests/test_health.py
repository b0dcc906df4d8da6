"""A run says when it went wrong: each warning on a run made to trigger it."""

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from engine import health
from engine.config import RunConfig, ScheduleConfig, TrainConfig
from engine.run import Run
from engine.store import RunStore

SCHEDULE = ScheduleConfig(teacher_epochs=1, teacher_patience=1, warmup_epochs=1, refine_epochs=1, mutual_epochs=0)


@pytest.fixture(scope="module")
def chance_teacher_run(tmp_path_factory):
    """Digits with a teacher that barely moved from its initialisation (lr 1e-6, one epoch)."""
    path = tmp_path_factory.mktemp("health") / "chance"
    config = RunConfig(dataset="digits", noise="symmetric:0.2", schedule=SCHEDULE,
                       train=replace(TrainConfig(), teacher_lr=1e-6))
    Run.create(path, config).run_until(None)
    return path


@pytest.fixture(scope="module")
def healthy_run(make_tiny_run):
    return make_tiny_run("digits", "digits", "symmetric:0.4")


def test_a_chance_teacher_and_worse_labels_are_flagged_in_the_summary(chance_teacher_run):
    summary = RunStore(chance_teacher_run).summary()
    codes = [w["code"] for w in summary["warnings"]]
    assert codes == ["teacher_chance", "refined_worse"]
    assert summary["teacher_test_accuracy"] < 0.19  # 10 classes: chance 0.1
    assert summary["refined_label_precision"] < summary["given_label_precision"] - 0.01
    message = summary["warnings"][0]["message"]
    assert "at chance for 10 classes" in message and "teacher epochs" in message


def test_without_truth_too_many_changes_are_flagged(chance_teacher_run, tmp_path):
    path = tmp_path / "no-truth"
    shutil.copytree(chance_teacher_run, path)
    store = RunStore(path)
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

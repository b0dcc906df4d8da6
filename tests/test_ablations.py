"""Each ablation flag of AML-KD changes exactly its component, nothing else."""

from dataclasses import replace

import numpy as np
import pytest

from engine.cli import main
from engine.method.config import RunConfig, ScheduleConfig
from engine.errors import UserError
from engine.steps.run import Run
from engine.rundir.store import RunStore

SCHEDULE = ScheduleConfig(teacher_epochs=2, teacher_patience=2, warmup_epochs=1, refine_epochs=2, mutual_epochs=2)
BASE = RunConfig(dataset="moons?n=300", noise="symmetric:0.3", seed=1, schedule=SCHEDULE,
                 graph=replace(RunConfig().graph, k=8))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ablations")
    out = {}
    for name, without in (("full", ()), ("awe", ("awe",)), ("mutual", ("mutual",)), ("stage0", ("stage0",))):
        Run.create(root / name, replace(BASE, without=without)).run_until(None)
        out[name] = RunStore(root / name)
    return out


def phases(store):
    return [m["phase"] for m in store.metrics()]


def refined(store, step):
    return store.snapshot(step)["refined"]


def test_without_awe_uses_uniform_weights_and_changes_nothing_before_refine(runs):
    full, ablated = runs["full"], runs["awe"]
    assert phases(ablated) == phases(full)
    for step, phase in enumerate(phases(full), 1):
        if phase in ("teacher", "propagate", "warmup"):
            np.testing.assert_array_equal(refined(ablated, step), refined(full, step))
        if phase == "refine":
            snap = ablated.snapshot(step)
            assert (snap["weight"] == 1).all() and np.isnan(snap["weight_given"]).all()
            assert (snap["seed_weight"][snap["outlier"] == 0] == 1).all()
            assert np.isfinite(full.snapshot(step)["weight_given"]).all()
            assert ablated.metrics()[step - 1]["awe_loss"] is None
    assert ablated.summary()["awe_auroc"] is None and full.summary()["awe_auroc"] is not None


def test_without_mutual_refines_on_the_teacher_graph_to_the_end(runs):
    full, ablated = runs["full"], runs["mutual"]
    assert phases(ablated) == ["teacher", "teacher", "propagate", "warmup"] + ["refine"] * 4
    assert phases(full)[-2:] == ["mutual", "mutual"]
    assert {m["graph_source"] for m in ablated.metrics()[4:]} == {"teacher"}
    for step in range(1, 7):  # identical until the mutual stage would have begun
        np.testing.assert_array_equal(refined(ablated, step), refined(full, step))


def test_without_stage0_the_student_starts_from_the_given_labels(runs):
    full, ablated = runs["full"], runs["stage0"]
    assert phases(ablated) == ["teacher", "teacher", "warmup", "refine", "refine", "mutual", "mutual"]
    given = ablated.dataset_arrays()["given"]
    np.testing.assert_array_equal(refined(ablated, 3), given)  # warm-up trained on the given labels
    assert not np.array_equal(refined(full, 4), full.dataset_arrays()["given"])  # the full run's stage 0 relabelled
    for step in (1, 2):
        np.testing.assert_array_equal(ablated.snapshot(step)["teacher_pred"], full.snapshot(step)["teacher_pred"])
    assert ablated.summary()["noise_rate_estimate"] is not None  # from the teacher's disagreement instead


def test_ablation_flags_on_the_cli(tmp_path, capsys):
    args = ["run", "--dataset", "moons?n=200", "--k", "8", "--teacher-epochs", "1", "--warmup-epochs", "1",
            "--refine-epochs", "1", "--mutual-epochs", "1"]
    assert main(args + ["--without", "awe", "--without", "stage0", "--out", str(tmp_path / "a")]) == 0
    assert RunStore(tmp_path / "a").config().without == ("awe", "stage0")
    assert main(args + ["--without", "teacher", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "--without 'teacher' is not a component of AML-KD; valid: awe, mutual, stage0" in err
    assert main(args + ["--without", "awe", "--method", "ce", "--out", str(tmp_path / "c")]) == 2
    assert "applies to method aml-kd only" in capsys.readouterr().err
    with pytest.raises(UserError, match="must be a list"):
        replace(BASE, without="awe")

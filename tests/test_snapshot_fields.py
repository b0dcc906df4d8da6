"""engine.rundir.snapshot (the snapshot format) and engine.rundir.fields (the
summary and metrics field lists): what a run writes is what is listed."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest

from engine.rundir import fields, snapshot
from engine.rundir.store import RunStore

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- snapshots
def test_every_snapshot_of_a_run_holds_exactly_its_phases_fields(tiny_moons_run):
    store = RunStore(tiny_moons_run)
    phases = [m["phase"] for m in store.metrics()]
    assert phases == ["teacher", "teacher", "propagate", "warmup", "refine", "refine", "mutual", "mutual"]
    for step, phase in zip(store.steps(), phases):
        arrays = store.snapshot(step)
        snapshot.validate(arrays, phase)
        required = {n for n, f in snapshot.FIELDS.items() if phase in f.phases and not f.optional}
        allowed = {n for n, f in snapshot.FIELDS.items() if phase in f.phases}
        assert required <= set(arrays) <= allowed, (step, phase)
        for name, values in arrays.items():
            assert values.dtype == np.dtype(snapshot.FIELDS[name].dtype), name


def test_validate_names_the_first_misfit(tiny_moons_run):
    arrays = RunStore(tiny_moons_run).snapshot(5)
    with pytest.raises(ValueError, match="'weight' has dtype float64"):
        snapshot.validate({**arrays, "weight": arrays["weight"].astype(np.float64)}, "refine")
    with pytest.raises(ValueError, match="'lp_top_classes' is not listed for phase 'warmup'"):
        snapshot.validate(arrays, "warmup")
    with pytest.raises(ValueError, match="lacks \\['lp_confidence'\\]"):
        snapshot.validate({k: v for k, v in arrays.items() if k != "lp_confidence"}, "refine")
    with pytest.raises(ValueError, match="'mystery' is not in snapshot.FIELDS"):
        snapshot.validate({**arrays, "mystery": arrays["refined"]}, "refine")


def test_read_takes_only_the_asked_fields_and_history_orders_steps(tiny_moons_run):
    store = RunStore(tiny_moons_run)
    assert set(snapshot.read(store, 5, ["refined", "weight", "not-there"])) == {"refined", "weight"}
    steps, values = snapshot.history(store, ("refined", "weight"), steps=[6, 2, 5])
    assert steps.tolist() == [6, 2, 5]
    np.testing.assert_array_equal(values["refined"][1], store.snapshot(2)["refined"])
    np.testing.assert_array_equal(values["refined"][0], store.snapshot(6)["refined"])
    assert np.isnan(values["weight"][1]).all() and np.isfinite(values["weight"][0]).all()  # teacher: no weights


# ---------------------------------------------------------------- summary.json and metrics.jsonl
def test_the_summary_written_is_the_summary_listed(tiny_moons_run, make_tiny_run):
    for path in (tiny_moons_run, make_tiny_run("ce", "moons", "symmetric:0.3", "ce")):
        summary = json.loads(RunStore(path).summary_path.read_text())
        assert list(summary) == sorted(f.name for f in fields.SUMMARY_FIELDS)
    ce = RunStore(make_tiny_run("ce", "moons", "symmetric:0.3", "ce")).summary()
    assert ce["teacher_best_epoch"] is None and ce["teacher_test_accuracy"] is None


def test_every_metrics_key_written_is_listed_and_refinery_lines_carry_theirs(tiny_moons_run):
    lines = RunStore(tiny_moons_run).metrics()
    written = set().union(*lines)
    assert written <= fields.METRICS_NAMES, written - fields.METRICS_NAMES
    refine = next(m for m in lines if m["phase"] == "refine")
    assert {"loss_cutoff", "noise_rate_used", "awe_loss", "selection_precision", "loss_rel"} <= set(refine)
    mutual = [m for m in lines if m["phase"] == "mutual"]
    # the student's graph competes on every other mutual step, and then only when the student seeded the step
    assert ("graph_agreement_student" in mutual[0]) == (mutual[0]["seed_labeller"] == "student")
    assert "graph_agreement_student" not in mutual[1]
    assert {m["labeller_judge"] for m in lines if m["phase"] in ("refine", "mutual")} == {"held-out"}


def test_an_unlisted_field_is_refused():
    with pytest.raises(KeyError, match="'student_test_acuracy'"):
        fields.check_metrics({"step": 1, "student_test_acuracy": 0.5})
    values = {f.name: None for f in fields.SUMMARY_FIELDS}
    with pytest.raises(KeyError, match="missing \\['seed'\\]"):
        fields.summary(**{k: v for k, v in values.items() if k != "seed"})
    assert list(fields.summary(**values)) == [f.name for f in fields.SUMMARY_FIELDS]


def test_the_small_pair_without_a_hold_out_reports_the_epoch_it_kept(tmp_path):
    """summary's teacher_best_epoch: without a hold-out the teacher kept is its last epoch, not 0."""
    from dataclasses import replace

    from engine.method.config import RunConfig, ScheduleConfig
    from engine.steps.run import Run

    schedule = ScheduleConfig(teacher_epochs=3, teacher_holdout=0.0, warmup_epochs=1, refine_epochs=0,
                              mutual_epochs=0)
    run = Run.create(tmp_path / "run", replace(RunConfig(dataset="moons?n=200", method="kd"), schedule=schedule))
    run.run_until(None)
    assert run.store.summary()["teacher_best_epoch"] == 3
    assert [m.get("teacher_best_epoch") for m in run.store.metrics()[:3]] == [1, 2, 3]


SUMMARY_LIKE = re.compile(r"^[a-z]+(_[a-z0-9]+)*_(accuracy|precision|auroc|estimate|true|epoch|parameters)$")


#: Names of that shape that are not summary or metrics keys: argparse's action, the checkpoint state's
#: counters (engine.steps.state), the Compare page's curve of refined-label precision over epochs, and the
#: audit report's two shares (engine.readers.audit.audit_report).
NOT_FIELDS = {"store_true", "student_epoch", "teacher_epoch", "best_teacher_epoch", "label_precision",
              "given_precision", "refined_precision"}


def test_readers_only_name_listed_fields():
    """A misspelt summary or metrics key in a reader fails here instead of showing a blank."""
    listed = fields.SUMMARY_NAMES | fields.METRICS_NAMES | NOT_FIELDS
    wrong = []
    for path in sorted([*(ROOT / "engine").rglob("*.py"), *(ROOT / "app").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and SUMMARY_LIKE.match(node.value):
                if node.value not in listed:
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert not wrong, "\n".join(wrong)

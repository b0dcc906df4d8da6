"""The step machine end to end on small real data: phases, snapshots,
resume equality, baselines, and the CLI's handling of bad input."""

import hashlib
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.method.config import RunConfig, ScheduleConfig, TrainConfig
from engine.errors import UserError
from engine.steps.run import Phase, Run
from engine.rundir.store import RunStore

REPO = Path(__file__).resolve().parents[1]
TINY = ScheduleConfig(teacher_epochs=3, teacher_patience=3, warmup_epochs=1, refine_epochs=3, mutual_epochs=2)
TIMING_KEYS = {"step_seconds", "train_seconds", "eval_seconds", "lp_seconds", "graph_seconds", "select_seconds",
               "estimate_seconds"}


from engine.method.refinery import supported_easy  # noqa: E402
from engine.method.select import small_loss_mask  # noqa: E402


def moons_config(**changes):
    return replace(RunConfig(dataset="moons", noise="symmetric:0.3", schedule=TINY), **changes)


def _strip(metrics):
    return [{k: v for k, v in m.items() if k not in TIMING_KEYS} for m in metrics]


def test_phase_sequence_and_one_snapshot_per_step(tmp_path):
    run = Run.create(tmp_path / "r", moons_config())
    phases = [run.step().phase for _ in range(run.total_steps())]
    assert run.done
    expected = [Phase.TEACHER] * 3 + [Phase.PROPAGATE] + [Phase.WARMUP] + [Phase.REFINE] * 3 + [Phase.MUTUAL] * 2
    assert phases == expected
    store = RunStore(tmp_path / "r")
    assert store.steps() == list(range(1, 11))
    assert [m["phase"] for m in store.metrics()] == [p.value for p in expected]
    snap = store.snapshot(8)
    n = run.dataset.num_train
    assert snap["refined"].shape == (n,) and snap["easy"].dtype == bool
    # easy: the small-loss fraction 1 - r, less those whose given label the step's posterior does not support
    small_loss = small_loss_mask(snap["selection_loss"], 1 - store.metrics()[7]["noise_rate_used"])
    assert small_loss.sum() == round((1 - store.metrics()[7]["noise_rate_used"]) * n)
    np.testing.assert_array_equal(snap["easy"], supported_easy(small_loss, run.given, snap["posterior"]))
    assert 0 < snap["easy"].sum() < small_loss.sum()
    assert snap["neighbor_idx"].shape == (n, 20) and snap["features"].shape[0] == n
    assert np.all((snap["weight"] > 0) & (snap["weight"] < 1))
    # the student's rate: cosine over its 6 epochs; its first 2 ramp up by 1/3, 2/3 (the start), and the 3 after
    # the warm-up by 1/4, 2/4, 3/4 (the refine stage), both at once where they meet
    cosine = [0.5 * 0.05 * (1 + np.cos(np.pi * e / 6)) for e in range(6)]
    ramp = [1 / 3, 2 / 3 * 1 / 4, 2 / 4, 3 / 4, 1, 1]
    lrs = [m["student_lr"] for m in store.metrics() if "student_lr" in m]
    np.testing.assert_allclose(lrs, np.array(cosine) * ramp)
    mutual = [m for m in store.metrics() if m["phase"] == "mutual"]
    # the first mutual epoch may take the student's graph, if the student seeds that step (the calibrated rule's
    # better labeller) and its graph agrees with the labels at least as well
    first = mutual[0]
    if first["seed_labeller"] == "student":
        expected_source = "student" if first["graph_agreement_student"] >= first["graph_agreement_teacher"] \
            else "teacher"
    else:
        assert "graph_agreement_student" not in first
        expected_source = "teacher"
    assert [m["graph_source"] for m in mutual] == [expected_source, "teacher"]
    summary = store.summary()
    for key in ("method", "given_label_precision", "refined_label_precision", "student_test_accuracy",
                "teacher_test_accuracy", "awe_auroc", "noise_rate_estimate", "wall_seconds"):
        assert key in summary
    assert summary["refined_label_precision"] > summary["given_label_precision"]
    assert store.status()["state"] == "done"
    with pytest.raises(UserError):
        run.step()


def test_resume_equals_an_uninterrupted_run(tmp_path):
    config = moons_config(seed=3)
    straight = Run.create(tmp_path / "a", config)
    straight.run_until(None)
    partial = Run.create(tmp_path / "b", config)
    for _ in range(6):  # stop in the middle of the refine phase
        partial.step()
    del partial
    resumed = Run.open(tmp_path / "b")
    assert resumed.state.step == 6 and resumed.phase == Phase.REFINE
    resumed.run_until(None)
    a, b = RunStore(tmp_path / "a"), RunStore(tmp_path / "b")
    assert _strip(a.metrics()) == _strip(b.metrics())
    assert np.array_equal(a.snapshot(10)["refined"], b.snapshot(10)["refined"])
    assert np.array_equal(a.snapshot(10)["weight"], b.snapshot(10)["weight"])


def test_run_until_stops_at_the_asked_phase(tmp_path):
    run = Run.create(tmp_path / "r", moons_config())
    run.run_until("refine")
    assert run.phase == Phase.REFINE and run.state.step == 5
    with pytest.raises(UserError):
        run.run_until("student")


@pytest.mark.parametrize("method,phases", [("ce", ["student"] * 6), ("kd", ["teacher"] * 3 + ["student"] * 6)])
def test_baselines_train_plain_students(tmp_path, method, phases):
    run = Run.create(tmp_path / method, moons_config(method=method))
    run.run_until(None)
    metrics = RunStore(tmp_path / method).metrics()
    assert [m["phase"] for m in metrics] == phases
    last = metrics[-1]
    assert last["refined_label_precision"] == last["given_label_precision"]  # baselines never relabel
    assert 0.5 < last["student_test_accuracy"] <= 1.0


def test_every_student_starts_on_a_ramp(tmp_path):
    cosine = [0.5 * 0.05 * (1 + np.cos(np.pi * e / 6)) for e in range(6)]
    ce = Run.create(tmp_path / "ce", moons_config(method="ce", train=replace(TrainConfig(), start_ramp=3)))
    ce.run_until(None)
    lrs = [m["student_lr"] for m in RunStore(tmp_path / "ce").metrics()]
    np.testing.assert_allclose(lrs, np.array(cosine) * [1 / 4, 2 / 4, 3 / 4, 1, 1, 1])


def test_digits_default_schedule_keeps_authors_proportions():
    s = ScheduleConfig()
    total = s.student_epochs
    assert s.warmup_epochs == total // 12
    assert s.warmup_epochs + s.refine_epochs == 3 * total // 4


# ---------------------------------------------------------------- bad input
def _tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(path.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def existing_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "done"
    Run.create(out, moons_config()).run_until(None)
    return out


BAD_ARGS = {
    "unknown dataset": (["--dataset", "imagenet"], "unknown dataset"),
    "unknown method": (["--method", "coteaching"], "--method 'coteaching' is not valid; valid: aml-kd, ce, kd"),
    "unknown noise": (["--noise", "gaussian:0.3"], "noise"),
    "rate out of range": (["--noise", "symmetric:1.5"], "outside [0, 1)"),
    "noise-rate out of range": (["--noise-rate", "1.2"], "noise-rate"),
    "k too small": (["--k", "0"], "k"),
    "k too large": (["--k", "100000"], "--k 100000 needs more training samples"),  # as typed, not k=100000
    "negative epochs": (["--refine-epochs", "-1"], "refine-epochs"),
    # the same words as the Setup page (engine.method.config.check_runnable)
    "no student epochs": (["--warmup-epochs", "0", "--refine-epochs", "0", "--mutual-epochs", "0"],
                          "--warmup-epochs, --refine-epochs and --mutual-epochs are all 0, so the student never "
                          "trains"),
    "AML-KD that never refines": (["--refine-epochs", "0", "--mutual-epochs", "0"],
                                  "--refine-epochs 0 and --mutual-epochs 0: AML-KD would never refine a label"),
    "no teacher": (["--teacher-epochs", "0"], "--teacher-epochs 0 leaves no teacher to learn from"),
}


@pytest.mark.parametrize("name", list(BAD_ARGS))
def test_bad_run_arguments_exit_2_with_one_line(tmp_path, capsys, name):
    args, needle = BAD_ARGS[name]
    out = tmp_path / "new"
    code = main(["run", "--dataset", "moons", "--out", str(out), *args])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and needle in err
    assert not (out / "config.json").exists()


def test_existing_run_is_refused_and_left_untouched(existing_run, capsys):
    before = _tree_digest(existing_run)
    code = main(["run", "--dataset", "moons", "--out", str(existing_run)])
    err = capsys.readouterr().err
    assert code == 2 and "already holds a run" in err and "--force" in err
    assert _tree_digest(existing_run) == before


@pytest.mark.parametrize("damage", ["missing", "corrupt", "mismatched"])
def test_bad_checkpoint_on_resume(tmp_path, existing_run, capsys, damage):
    import shutil

    run_dir = tmp_path / "copy"
    shutil.copytree(existing_run, run_dir)
    ckpt = run_dir / "checkpoint.pt"
    if damage == "missing":
        ckpt.unlink()
    elif damage == "corrupt":
        ckpt.write_bytes(b"not a checkpoint")
    else:
        config = json.loads((run_dir / "config.json").read_text())
        config["seed"] = 99
        (run_dir / "config.json").write_text(json.dumps(config))
    before = _tree_digest(run_dir)
    code = main(["resume", str(run_dir)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "checkpoint" in err
    assert _tree_digest(run_dir) == before


def test_cli_prints_one_line_and_no_traceback_in_a_real_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "engine", "run", "--dataset", "nope", "--out", str(tmp_path / "x")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0
    assert "unknown dataset 'nope'" in proc.stderr


def test_compare_prints_one_table(existing_run, capsys):
    assert main(["compare", str(existing_run), str(existing_run)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:4] == ["run", "method", "dataset", "noise"]
    assert len(out) == 6 and out[4] == "" and out[5].endswith("test samples: one sample is 0.7 points.")


def test_engine_imports_no_streamlit_or_plotly():
    code = ("import sys, engine, engine.steps.run, engine.cli, engine.rundir.store, engine.data, engine.models; "
            "import pkgutil, importlib; [importlib.import_module('engine.' + m.name) for m in "
            "pkgutil.iter_modules(engine.__path__) if m.name not in ('__main__',)]; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('streamlit', 'plotly')]; print(bad); "
            "sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_reviewed_labels_are_clamped_and_outliers_sit_out(tmp_path):
    from engine.rundir.review import ReviewStore

    run = Run.create(tmp_path / "r", moons_config())
    run.run_until("refine")
    wrong = int(1 - run.true[0])  # a reviewer insists on the wrong class: the run must obey
    reviews = ReviewStore(tmp_path / "r", num_classes=2)
    reviews.record(0, "relabel", "ann", label=wrong)
    reviews.record(1, "outlier", "ann")
    reviews.record(2, "keep", "ann")
    for _ in range(3):
        result = run.step()
        snap = RunStore(tmp_path / "r").snapshot(result.step)
        assert snap["refined"][0] == wrong and snap["refined"][2] == run.given[2]
        assert snap["easy"][0] and snap["clamped"][0] == wrong and snap["outlier"][1]
        assert result.metrics["reviewed_clamped"] == 2 and result.metrics["reviewed_outliers"] == 1


def test_outliers_are_left_out_of_training(tmp_path):
    from engine.rundir.review import ReviewStore

    run = Run.create(tmp_path / "r", moons_config(method="ce"))
    seen = []
    run.on_progress = lambda done, total: seen.append(total)
    run.step()
    ReviewStore(tmp_path / "r", num_classes=2).record(5, "outlier", "ann")
    run.step()
    n = run.dataset.num_train
    assert seen[0] == n and seen[-1] == n - 1


def test_stage0_with_a_known_rate_changes_only_the_least_supported_labels():
    from types import SimpleNamespace

    from engine.method.refinery import Reason, stage0_relabel

    def stage0_labels(given, result, rate, keep):
        return stage0_relabel(given, result, rate, keep).labels

    given = np.array([0, 0, 1, 1, 2, 2, 0, 1, 2, 0])
    scores = np.full((10, 3), 0.1, dtype=np.float32)
    lp = np.array([0, 1, 1, 2, 2, 0, 0, 1, 1, 0])  # disagrees with given on samples 1, 3, 5, 8
    scores[np.arange(10), lp] = 0.8
    scores[3] = [0.1, 0.45, 0.45]  # disagrees, but gives its given label nearly the same support
    confidence = scores.max(1) - np.sort(scores, 1)[:, -2]
    result = SimpleNamespace(labels=lp, scores=scores, confidence=confidence)
    # r = 0.3: the three least supported given labels (1, 5, 8) change, sample 3 keeps its label
    assert stage0_labels(given, result, 0.3, 0.05).tolist() == [0, 1, 1, 1, 2, 0, 0, 1, 1, 0]
    assert stage0_labels(given, result, 0.0, 0.05).tolist() == given.tolist()
    # unknown rate (the authors' rule): the propagated labels, the 10% least confident keep theirs
    assert stage0_labels(given, result, None, 0.1).tolist() == [0, 1, 1, 1, 2, 0, 0, 1, 1, 0]
    assert stage0_labels(given, result, None, 0.0).tolist() == lp.tolist()
    known = stage0_relabel(given, result, 0.3, 0.05)
    assert np.flatnonzero(known.reasons == Reason.PROPAGATED).tolist() == [1, 5, 8] and known.rule == "support"
    assert known.cutoff == pytest.approx(0.1)  # the support of the last label allowed to change
    unknown = stage0_relabel(given, result, None, 0.1)  # sample 3 is the least confident: it keeps its label
    assert np.flatnonzero(unknown.reasons == Reason.KEPT_UNSURE).tolist() == [3] and unknown.rule == "confidence"
    clamped = np.full(10, -1)
    clamped[0] = 2
    reviewed = stage0_relabel(given, result, 0.3, 0.05, clamped)
    assert reviewed.labels[0] == 2 and reviewed.reasons[0] == Reason.REVIEWED

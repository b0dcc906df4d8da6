"""Features from elsewhere (--teacher-features): checked with one clear
message, and a run given its own teacher's outputs reproduces its stage 0."""

from dataclasses import replace

import numpy as np
import pytest

from engine.cli import main
from engine.method.config import RunConfig, ScheduleConfig
from engine.errors import UserError
from engine.data.features import linear_head_predictions, load_teacher_features
from engine.steps.run import Run
from engine.rundir.store import RunStore

SCHEDULE = ScheduleConfig(teacher_epochs=2, teacher_patience=2, warmup_epochs=1, refine_epochs=1, mutual_epochs=0)
CONFIG = RunConfig(dataset="moons?n=300", noise="symmetric:0.3", seed=2, schedule=SCHEDULE,
                   graph=replace(RunConfig().graph, k=8))
KEYS = [f"s{i}" for i in range(6)]


@pytest.mark.parametrize("write, message", [
    (lambda p: np.save(p.with_suffix(".npy"), np.zeros((5, 3))), "has 5 rows; the dataset has 6 training samples"),
    (lambda p: np.save(p.with_suffix(".npy"), np.zeros(6)), "has shape (6,)"),
    (lambda p: np.savez(p.with_suffix(".npz"), features=np.zeros((6, 2)), keys=np.array(KEYS[:5] + ["zz"])),
     "1 training sample(s) missing, e.g. 's5'; 1 key(s) that are no training sample, e.g. 'zz'"),
    (lambda p: np.savez(p.with_suffix(".npz"), other=np.zeros((6, 2))), "has no 'features' array"),
    (lambda p: np.save(p.with_suffix(".npy"), np.array([[0.0, 1], [np.nan, 1], [0, 1], [0, 1], [0, 1], [0, 1]])),
     "1 row(s) hold NaN or infinite values, e.g. sample(s) '1'"),
    (lambda p: p.with_suffix(".csv").write_text("key,a\n" + "".join(f"{k},x\n" for k in KEYS)), "are not numbers"),
    (lambda p: p.with_suffix(".txt").write_text("1 2 3"), ".txt is not a features file"),
])
def test_bad_feature_files_name_the_file_and_what_is_valid(tmp_path, write, message):
    write(tmp_path / "f")
    (path,) = list(tmp_path.iterdir())
    with pytest.raises(UserError) as err:
        load_teacher_features(path, KEYS)
    assert message in str(err.value) and str(path)[:50] in str(err.value)


def test_keyed_files_are_aligned_to_the_sample_order(tmp_path):
    features = np.arange(12, dtype=float).reshape(6, 2)
    np.savez(tmp_path / "f.npz", features=features[::-1], keys=np.array(KEYS[::-1]), pred=np.arange(6)[::-1])
    aligned, pred = load_teacher_features(tmp_path / "f.npz", KEYS)
    np.testing.assert_array_equal(aligned, features)
    np.testing.assert_array_equal(pred, np.arange(6))
    (tmp_path / "f.csv").write_text("key,a,b\n" + "".join(f"{k},{i},{-i}\n" for i, k in reversed(list(enumerate(KEYS)))))
    aligned, pred = load_teacher_features(tmp_path / "f.csv", KEYS)
    np.testing.assert_array_equal(aligned[:, 0], np.arange(6))
    assert pred is None


def test_the_linear_head_predicts_out_of_fold():
    rng = np.random.default_rng(0)
    features = np.vstack([rng.normal([3, 0], 0.3, (40, 2)), rng.normal([-3, 0], 0.3, (40, 2))])
    given = np.repeat([0, 1], 40)
    given[:4] = 1  # noisy labels: the head, not having seen them, predicts the true class
    pred = linear_head_predictions(features, given, 2, seed=0)
    assert (pred[:4] == 0).all() and (pred[40:] == 1).all()


def test_a_run_given_its_own_teacher_outputs_reproduces_its_stage0(tmp_path, capsys):
    first = Run.create(tmp_path / "own", CONFIG)
    first.run_until(None)
    outputs = RunStore(tmp_path / "own").teacher_outputs_path
    assert outputs.is_file()
    second = Run.create(tmp_path / "given", replace(CONFIG, teacher_features=str(outputs)))
    second.run_until(None)
    a, b = RunStore(tmp_path / "own"), RunStore(tmp_path / "given")
    stage0 = next(m["step"] for m in a.metrics() if m["phase"] == "propagate")
    np.testing.assert_array_equal(b.snapshot(stage0)["refined"], a.snapshot(stage0)["refined"])
    # the CLI names a bad file in one line and exits 2, before writing anything
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 2)))
    code = main(["run", "--dataset", "moons?n=300", "--k", "8", "--teacher-features", str(bad),
                 "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "has 3 rows; the dataset has" in err
    assert not (tmp_path / "x").exists()


def test_features_from_elsewhere_build_the_graph_and_seed_stage0(tmp_path):
    """Features that separate the true classes (here: the clean labels one-hot plus noise) give
    stage 0 far better labels than the run's own two-epoch teacher."""
    base = Run.create(tmp_path / "base", CONFIG)
    base.run_until("warmup")
    true = base.true
    rng = np.random.default_rng(0)
    features = np.eye(2)[true] + rng.normal(0, 0.1, (len(true), 2))
    np.save(tmp_path / "clean.npy", features)
    better = Run.create(tmp_path / "better", replace(CONFIG, teacher_features=str(tmp_path / "clean.npy")))
    better.run_until("warmup")
    precision = lambda run: RunStore(run.store.path).metrics()[-1]["refined_label_precision"]  # noqa: E731
    assert precision(better) > 0.97 and precision(better) > precision(base)
    np.testing.assert_allclose(RunStore(tmp_path / "better").graph_features(), features.astype(np.float32))

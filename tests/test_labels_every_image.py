"""A practitioner's label file: it may label every image of a train/-only
folder (held-out ones included), its report lists every problem at once, and a
held-out fraction of 0 is allowed."""

import numpy as np
import pytest

from engine.cli import main
from engine.data import load_dataset
from engine.data.labels import apply_label_file
from engine.errors import UserError
from engine.rundir.store import RunStore

from test_data_folder import make_image_folder

CLASSES = ("cat", "dog", "fox")
SHORT = ["--k", "5", "--teacher-epochs", "2", "--warmup-epochs", "1", "--refine-epochs", "1", "--mutual-epochs", "0",
         "--threads", "1"]


def write_labels(path, folder, wrong_every: int = 5, truth: bool = False, extra: str = ""):
    """One row per image of ``folder/train`` (as the README says), every ``wrong_every``-th label wrong."""
    rows = ["path,label" + (",true_label" if truth else "")]
    for i, image in enumerate(sorted((folder / "train").rglob("*.png"))):
        cls = image.parent.name
        label = CLASSES[(CLASSES.index(cls) + 1) % 3] if i % wrong_every == 0 else cls
        rows.append(f"train/{cls}/{image.name},{label}" + (f",{cls}" if truth else ""))
    path.write_text("\n".join(rows) + "\n" + extra)
    return path


@pytest.fixture
def folder(tmp_path):
    return make_image_folder(tmp_path / "pets", per_class=15, classes=CLASSES)


def test_held_out_images_take_the_file_labels(folder, tmp_path):
    dataset = load_dataset(f"folder:{folder}")
    assert len(dataset.test_keys) == 9 and not set(dataset.test_keys) & set(dataset.keys())
    labelled = apply_label_file(dataset, write_labels(tmp_path / "labels.csv", folder))
    assert labelled.test_labels == "given"
    rows = {line.split(",")[0]: line.split(",")[1] for line in (tmp_path / "labels.csv").read_text().split()[1:]}
    expected = [CLASSES.index(rows[k]) for k in dataset.test_keys]
    np.testing.assert_array_equal(labelled.test_true, expected)  # the file's labels, some of them wrong
    with_truth = apply_label_file(dataset, write_labels(tmp_path / "truth.csv", folder, truth=True),
                                  truth_column="true_label")
    assert with_truth.test_labels == "truth"
    np.testing.assert_array_equal(with_truth.test_true, dataset.test_true)


def test_the_documented_path_runs_end_to_end_on_the_cli(folder, tmp_path, capsys):
    labels = write_labels(tmp_path / "labels.csv", folder)
    out = tmp_path / "run"
    code = main(["run", "--dataset", f"folder:{folder}", "--labels", str(labels), "--key-column", "path",
                 "--label-column", "label", "--out", str(out), *SHORT])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = RunStore(out).summary()
    assert summary["test_labels"] == "given" and summary["noise"] == "none"
    assert 0 <= summary["student_test_accuracy"] <= 1
    assert "agreement with the given (possibly noisy) labels of its held-out images" in captured.out
    from test_health import _train_page  # the Train page names the metric for what it is

    at = _train_page(out)
    assert "Student agreement with given test labels" in [m.label for m in at.metric]
    assert any("has no truth column" in c.value for c in at.caption)


def test_every_problem_is_listed_at_once(folder, tmp_path):
    labels = write_labels(tmp_path / "bad.csv", folder)
    lines = labels.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",wolf"  # an unknown class
    lines.append(lines[2])  # a duplicate row
    del lines[5:8]  # three images left out
    lines.append("train/cat/elsewhere.png,cat")  # a key of another folder
    labels.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError) as err:
        apply_label_file(load_dataset(f"folder:{folder}"), labels)
    message = str(err.value)
    assert len(message.splitlines()) == 1 and message.count("; ") >= 3
    assert "has 4 problems" in message
    assert "1 value(s) in column 'label' are not classes" in message and "'wolf' (line 2)" in message
    assert "1 key(s) match no image" in message and "'train/cat/elsewhere.png'" in message
    assert "1 sample(s) appear more than once" in message
    assert "leaves out" in message  # missing training samples (held-out ones may be left out)


def test_a_held_out_fraction_of_zero_trains_on_every_image(folder, tmp_path, capsys):
    out = tmp_path / "all"
    assert main(["run", "--dataset", f"folder:{folder}?test=0", "--noise", "symmetric:0.2", "--out", str(out),
                 *SHORT]) == 0
    summary = RunStore(out).summary()
    assert summary["student_test_accuracy"] is None and summary["test_labels"] is None
    assert len(RunStore(out).dataset_arrays()["given"]) == 45
    assert "no held-out images" in capsys.readouterr().out
    from test_health import _train_page

    assert any("it has no test metrics" in c.value for c in _train_page(out).caption)

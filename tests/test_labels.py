"""Label files (engine/data/labels.py): given labels from a CSV, truth where known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.method.config import RunConfig, ScheduleConfig
from engine.data import load_dataset
from engine.data.labels import (apply_label_file, guess_columns, key_columns, label_file_report,
                                 label_table_preview, labels_with_noise_problem)
from engine.errors import UserError
from engine.method.graph import GraphConfig
from engine.steps.run import Phase, Run
from test_data_folder import make_image_folder


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture()
def pets(tmp_path):
    return load_dataset(f"folder:{make_image_folder(tmp_path / 'pets', per_class=4, test_per_class=1)}")


def _write(tmp_path, rows: dict, name: str = "labels.csv"):
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _error(dataset, path, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        apply_label_file(dataset, path, **{"key_column": "path", "label_column": "label", **kwargs})
    return str(info.value)


# ---------------------------------------------------------------- applying
def test_integer_keys_on_digits_replace_the_given_labels_and_keep_the_truth(digits, tmp_path):
    indices = [int(k.split("/")[1]) for k in digits.keys()]
    given = (digits.train_true + 1) % 10
    path = _write(tmp_path, {"index": indices[::-1], "label": given[::-1]})
    labelled = apply_label_file(digits, path, "index", "label", None)
    assert np.array_equal(labelled.train_given, given)
    assert labelled.train_true is digits.train_true
    full_keys = _write(tmp_path, {"key": list(digits.keys()), "label": given}, "full.csv")
    assert np.array_equal(apply_label_file(digits, full_keys, "key", "label").train_given, given)


def test_folder_keys_take_class_names_or_ids_and_folder_names_stay_the_truth(pets, tmp_path):
    keys = list(pets.keys())
    names = ["dog" if k.startswith("train/cat") else pets.class_names[t] for k, t in zip(keys, pets.train_true)]
    names[1] = "2"  # an id, meaning 'fox'
    names[2] = "DOG"  # names match regardless of case
    short = [k[len("train/"):] if i % 2 else k for i, k in enumerate(keys)]  # 'cat/000.png' works too
    labelled = apply_label_file(pets, _write(tmp_path, {"path": short, "label": names}), "path", "label")
    assert labelled.train_given[:4].tolist() == [1, 2, 1, 1]
    assert np.array_equal(labelled.train_true, pets.train_true)


def test_a_truth_column_overrides_and_empty_cells_mean_unknown(pets, tmp_path):
    keys = list(pets.keys())
    truth = ["fox"] * len(keys)
    truth[0] = ""
    path = _write(tmp_path, {"path": keys, "label": ["cat"] * len(keys), "truth": truth})
    labelled = apply_label_file(pets, path, "path", "label", "truth")
    assert labelled.train_true[0] == -1 and (labelled.train_true[1:] == 2).all()
    report = label_file_report(pets, path, "path", "label", "truth")
    assert report == {"ok": True, "error": None, "rows": len(keys), "changed": len(keys) - 1,
                      "truth_known": len(keys) - 1, "noise_rate": 1.0}  # every known truth differs


# ---------------------------------------------------------------- errors naming the offenders
def test_unknown_classes_are_named_with_their_lines_and_count(pets, tmp_path):
    labels = ["cat"] * pets.num_train
    labels[0], labels[3], labels[5] = "caat", "wolf", "7"
    message = _error(pets, _write(tmp_path, {"path": list(pets.keys()), "label": labels}))
    assert "3 value(s)" in message and "'caat' (line 2)" in message and "'wolf' (line 5)" in message
    assert "'7' (line 7)" in message and "valid: 'cat', 'dog', 'fox' or ids 0..2" in message


def test_duplicate_keys_unmatched_keys_and_missing_samples(pets, tmp_path):
    keys = list(pets.keys())
    dup = _write(tmp_path, {"path": keys + [keys[0]], "label": ["cat"] * (len(keys) + 1)}, "dup.csv")
    message = _error(pets, dup)
    assert "1 sample(s) appear more than once" in message and "'train/cat/000.png'" in message
    stray = _write(tmp_path, {"path": keys + ["train/cat/999.png", "x.png"], "label": ["cat"] * (len(keys) + 2)},
                   "stray.csv")
    message = _error(pets, stray)
    assert "2 key(s) match no image" in message and "'train/cat/999.png' (line" in message and "'x.png' (line" in message
    few = _write(tmp_path, {"path": keys[:-7], "label": ["cat"] * (len(keys) - 7)}, "few.csv")
    message = _error(pets, few)
    assert f"leaves out 7 of {len(keys)}" in message and f"'{keys[-7]}'" in message and "and 2 more" in message


def test_missing_columns_files_and_empty_files(pets, tmp_path):
    path = _write(tmp_path, {"file": list(pets.keys()), "label": ["cat"] * pets.num_train})
    message = _error(pets, path)
    assert "no key column 'path'" in message and "'file', 'label'" in message and "--key-column" in message
    assert "no truth column 'gold'" in _error(pets, path, key_column="file", truth_column="gold")
    assert "does not exist" in _error(pets, tmp_path / "nope.csv")
    (tmp_path / "empty.csv").write_text("")
    assert "not a readable CSV" in _error(pets, tmp_path / "empty.csv")
    (tmp_path / "header.csv").write_text("path,label\n")
    assert "has no rows" in _error(pets, tmp_path / "header.csv")
    report = label_file_report(pets, path, "path", "label")
    assert report["ok"] is False and "no key column" in report["error"]


def test_column_guesses():
    columns = ["Filename", "noisy_label", "gold"]
    assert guess_columns(columns) == {"key": "Filename", "label": "noisy_label", "truth": "gold"}
    assert guess_columns(["a", "b"]) == {"key": None, "label": None, "truth": None}


# ---------------------------------------------------------------- unknown truth in a run
def test_metrics_against_the_truth_are_none_where_no_truth_is_known(tmp_path):
    moons = load_dataset("moons?n=60")
    path = _write(tmp_path, {"path": list(moons.keys()), "label": moons.train_true, "truth": [""] * 60})
    labelled = apply_label_file(moons, path, "path", "label", "truth")
    config = RunConfig(dataset="moons?n=60", noise="none", seed=0, graph=GraphConfig(k=5),
                       schedule=ScheduleConfig(teacher_epochs=1, warmup_epochs=1, refine_epochs=1, mutual_epochs=1))
    run = Run.create(tmp_path / "run", config, dataset=labelled)
    run.run_until(Phase.WARMUP)
    teacher_step, propagate_step = run.store.metrics()
    assert teacher_step["teacher_train_accuracy"] is None and teacher_step["teacher_test_accuracy"] is not None
    assert propagate_step["given_label_precision"] is None and propagate_step["refined_label_precision"] is None
    assert propagate_step["detection_precision"] is None and propagate_step["wrong_to_right"] is None
    assert propagate_step["relabelled"] is not None
    assert (run.store.dataset_arrays()["true"] == -1).all()


# ---------------------------------------------------------------- refusals that used to crash or mislead
def test_unicode_digits_are_not_class_ids_and_are_named(digits, tmp_path):
    labels = ["\u00b2" if i == 4 else str(i % 10) for i in range(digits.num_train)]
    path = _write(tmp_path, {"path": list(digits.keys()), "label": labels})
    assert "'\u00b2' (line 6)" in _error(digits, path)  # '²'.isdigit() is True, int('²') raises


def test_a_huge_key_is_cut_to_about_200_characters(digits, tmp_path):
    keys = list(digits.keys())
    keys[0] = "k" * 1_000_000
    message = _error(digits, _write(tmp_path, {"path": keys, "label": ["1"] * len(keys)}))
    assert "(1,000,000 characters)" in message and len(message) < 700


def test_key_columns_are_those_holding_the_samples_keys(digits):
    table = pd.DataFrame({"file": list(digits.keys())[:10], "index": [str(i) for i in range(10)],
                          "label": ["three"] * 10, "half": ["x", "1"] * 5, "few": ["x"] * 6 + ["1"] * 4})
    assert key_columns(table, digits) == ["file", "index", "half"]  # at least half of the values are keys


def test_the_preview_refuses_a_table_without_keys_and_shows_one_with_them(digits, tmp_path):
    other = _write(tmp_path, {"user": ["alice", "bob"], "password": ["hunter2", "letmein"]}, "other.csv")
    preview = label_table_preview(digits, other)
    assert not preview["ok"] and preview["head"] is None and "hunter2" not in preview["error"]
    assert "none of its 2 column(s) holds the samples' keys" in preview["error"]
    good = _write(tmp_path, {"path": list(digits.keys()), "label": ["1"] * digits.num_train})
    preview = label_table_preview(digits, good, rows=3)
    assert preview["ok"] and preview["columns"] == ["path", "label"] and len(preview["head"]) == 3


@pytest.mark.parametrize("noise, refused", [("none", False), ("", False), ("symmetric:0.4", True),
                                            ("pairflip:0.2", True), ("symmetric:0", True)])
def test_a_label_file_takes_no_synthetic_noise(noise, refused):
    problem = labels_with_noise_problem("labels.csv", noise)
    assert (problem is not None) == refused
    if refused:
        assert f"--noise {noise!r}" in problem and "'labels.csv'" in problem
    assert labels_with_noise_problem(None, noise) is None

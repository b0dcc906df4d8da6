"""``vectors:FILE``: precomputed embeddings as a dataset (engine.data.vectors) end to end on small real files, and
every kind of bad file refused in one line (CLI exit 2)."""

import csv
import json

import numpy as np
import pandas as pd
import pytest

from engine.cli import main
from engine.data import load_dataset
from engine.rundir.store import RunStore

N, C, D = 400, 3, 16
CLASSES = ("cat", "dog", "fox")
SHORT = ["--threads", "1", "--teacher-epochs", "3", "--warmup-epochs", "1", "--refine-epochs", "2",
         "--mutual-epochs", "1", "--batch-size", "32"]


def blobs(seed=0):
    """Three separated Gaussian blobs in 16-D: features (N, D) float32, labels (N,)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, C, N)
    means = rng.standard_normal((C, D)) * 3
    return (means[labels] + rng.standard_normal((N, D))).astype(np.float32), labels


@pytest.fixture
def npz(tmp_path):
    features, labels = blobs()
    path = tmp_path / "emb.npz"
    np.savez(path, features=features, keys=np.array([f"item-{i:04d}" for i in range(N)]), labels=labels,
             class_names=np.array(CLASSES))
    return path


def _one_line_exit_2(capsys, args):
    code = main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    return err[0]


def test_a_vectors_npz_loads_with_its_keys_classes_and_a_stratified_split(npz):
    data = load_dataset(f"vectors:{npz}")
    features, labels = blobs()
    assert data.kind == "vectors" and data.class_names == CLASSES
    assert (data.num_train, len(data.test_x)) == (N - 80, 80)  # test=0.2, stratified per class
    assert np.bincount(data.test_true, minlength=C).tolist() == [round(0.2 * c) for c in np.bincount(labels)]
    rows = np.array([int(k.split("-")[1]) for k in data.keys()])  # the keys are the file's, row by row
    np.testing.assert_array_equal(data.train_true, labels[rows])
    standard = (features[rows] - features[rows].mean(0)) / features[rows].std(0)
    np.testing.assert_allclose(data.train_x, standard, atol=1e-4)
    assert load_dataset(f"vectors:{npz}?test=0.5").num_train == N // 2


@pytest.mark.slow
def test_a_vectors_run_end_to_end_keeps_its_keys_and_reports_an_exact_graph(npz, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--dataset", f"vectors:{npz}", "--noise", "symmetric:0.3", "--out", str(out), *SHORT]) == 0
    store = RunStore(out)
    lines = store.metrics()
    assert [m["phase"] for m in lines] == ["teacher"] * 3 + ["propagate", "warmup", "refine", "refine", "mutual"]
    for m in lines[3:]:
        assert (m["knn_index"], m["knn_recall"], m["knn_recall_queries"]) == ("exact", 1.0, 0)
    summary = store.summary()
    assert summary["teacher"] == "mlp-large" and summary["student"] == "mlp-small"
    assert 0.7 < summary["given_label_precision"] < 0.85  # 30% symmetric noise (a label may draw itself)
    assert summary["refined_label_precision"] > summary["given_label_precision"] + 0.15
    assert summary["student_test_accuracy"] > 0.9  # separated blobs
    export = tmp_path / "export"
    assert main(["export", str(out), "--out", str(export), "--no-report"]) == 0
    samples = pd.read_csv(next(export.rglob("samples.csv")), dtype=str)
    keys = set(load_dataset(f"vectors:{npz}").keys())
    key_column = next(c for c in samples.columns if samples[c].isin(keys).all())
    assert set(samples[key_column]) == keys  # every training sample, named by the file's key


@pytest.mark.slow
def test_an_npy_of_features_takes_its_labels_and_classes_from_the_label_file(tmp_path, capsys):
    features, labels = blobs(1)
    np.save(tmp_path / "emb.npy", features)
    rng = np.random.default_rng(2)
    given = np.where(rng.random(N) < 0.25, (labels + 1) % C, labels)
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["key", "label", "truth"])
        writer.writerows([i, CLASSES[given[i]], CLASSES[labels[i]]] for i in range(N))
    out = tmp_path / "run"
    assert main(["run", "--dataset", f"vectors:{tmp_path / 'emb.npy'}", "--labels", str(tmp_path / "labels.csv"),
                 "--key-column", "key", "--truth-column", "truth", "--noise", "none", "--out", str(out),
                 *SHORT]) == 0
    store = RunStore(out)
    arrays = store.dataset_arrays()
    train_rows = np.array([int(k) for k in load_dataset(f"vectors:{tmp_path / 'emb.npy'}").keys()])
    np.testing.assert_array_equal(arrays["given"], given[train_rows])  # the file's labels, by key
    np.testing.assert_array_equal(arrays["true"], labels[train_rows])
    assert json.loads((out / "config.json").read_text())["labels"] == str(tmp_path / "labels.csv")
    assert store.summary()["refined_label_precision"] > store.summary()["given_label_precision"]


def _bad_files(tmp_path):
    features, labels = blobs()
    keys = np.array([f"k{i}" for i in range(N)])
    cases = {}

    def npz(name, **arrays):
        np.savez(tmp_path / f"{name}.npz", **arrays)
        cases[name] = tmp_path / f"{name}.npz"

    cases["missing"] = tmp_path / "nowhere.npz"
    (tmp_path / "emb.txt").write_text("1,2\n")
    cases["not numpy"] = tmp_path / "emb.txt"
    (tmp_path / "broken.npz").write_bytes(b"PK not a zip")
    cases["broken"] = tmp_path / "broken.npz"
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    cases["pickled"] = tmp_path / "objects.npy"
    npz("pickled keys", features=features, keys=np.array([("k", i) for i in range(N)], dtype=object))
    npz("1-D", features=features[:, 0], keys=keys)
    nan = features.copy()
    nan[123, 4] = np.nan
    npz("NaN", features=nan, keys=keys)
    npz("no keys", features=features)
    npz("short keys", features=features, keys=keys[:-1])
    npz("repeated keys", features=features, keys=np.where(np.arange(N) == 7, "k3", keys))
    npz("bad labels", features=features, keys=keys, labels=labels.astype(np.float32))
    return cases


BAD = {
    "missing": "does not exist",
    "not numpy": "is not .npy or .npz",
    "broken": "is not a readable NumPy file",
    "pickled": "holds pickled Python objects",
    "pickled keys": "holds pickled Python objects",
    "1-D": "features have shape (400,)",
    "NaN": "row 123 has a NaN",
    "no keys": "has no 'keys' array",
    "short keys": "keys are <U4 of shape (399,)",
    "repeated keys": "1 key(s) repeat, e.g. 'k3'",
    "bad labels": "labels are float32",
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_vectors_file_is_one_line_and_exit_2(tmp_path, capsys, case):
    path = _bad_files(tmp_path)[case]
    line = _one_line_exit_2(capsys, ["run", "--dataset", f"vectors:{path}", "--out", str(tmp_path / "r"), *SHORT])
    assert BAD[case] in line and "vectors file" in line, line
    assert not (tmp_path / "r" / "config.json").exists()


def test_keys_not_matching_the_label_file_and_no_labels_at_all_are_one_line(tmp_path, capsys):
    features, _ = blobs()
    np.save(tmp_path / "emb.npy", features)
    pd.DataFrame({"key": [f"x{i}" for i in range(N)], "label": ["cat"] * N}).to_csv(tmp_path / "l.csv", index=False)
    line = _one_line_exit_2(capsys, ["run", "--dataset", f"vectors:{tmp_path / 'emb.npy'}", "--labels",
                                     str(tmp_path / "l.csv"), "--key-column", "key", "--noise", "none",
                                     "--out", str(tmp_path / "r"), *SHORT])
    assert "match no image" in line and "'x0'" in line, line
    line = _one_line_exit_2(capsys, ["run", "--dataset", f"vectors:{tmp_path / 'emb.npy'}", "--out",
                                     str(tmp_path / "r"), *SHORT])
    assert "has no labels; give them with --labels FILE" in line, line


def test_vectors_have_no_picture_a_blank_tile_where_a_page_needs_one():
    from app.samples import POINT_BACKGROUND, thumbnails

    features, _ = blobs()
    tiles = thumbnails("vectors", features, [0, 5, 9])
    assert len(tiles) == 3 and all(t.shape == (64, 64) and (t == POINT_BACKGROUND).all() for t in tiles)
    with pytest.raises(ValueError, match="valid: image, points, vectors"):
        thumbnails("audio", features, [0])


#: Bad files that only reading every row tells (the Setup form's facts read headers and labels; the run refuses).
EVERY_ROW = {"NaN", "repeated keys"}


@pytest.mark.parametrize("case", sorted(set(BAD) - EVERY_ROW))
def test_the_facts_of_a_bad_vectors_file_refuse_it_with_the_loaders_line(tmp_path, case):
    """engine.data.vectors_facts (Setup, before a run exists) refuses each bad file that its headers or labels
    tell with the very line the loader gives."""
    from engine.data import parse_dataset_spec, vectors_facts
    from engine.errors import UserError

    spec = f"vectors:{_bad_files(tmp_path)[case]}"
    with pytest.raises(UserError) as loaded:
        load_dataset(spec)
    with pytest.raises(UserError) as told:
        vectors_facts(parse_dataset_spec(spec))
    assert str(told.value) == str(loaded.value) and BAD[case] in str(told.value)


def test_nan_and_repeated_keys_pass_the_facts_and_are_left_to_the_loader(tmp_path):
    """What only every row tells is not read by the facts (the loader refuses it: the test above)."""
    from engine.data import parse_dataset_spec, vectors_facts

    files = _bad_files(tmp_path)
    for case in sorted(EVERY_ROW):
        assert vectors_facts(parse_dataset_spec(f"vectors:{files[case]}")).num_train == 320  # 400 less 20%

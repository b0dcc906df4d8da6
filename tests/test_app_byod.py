"""Bring your own data on the Setup page (AppTest, no browser) and the
Streamlit-free helpers behind it (``app.byod``, ``app.settings``).

Data are tiny folders of generated PNGs (3 classes x 12 images of 16x16)
written to the test's tmp dir; Create only builds the run (no training).
"""

from __future__ import annotations

import io
import os
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from app.byod import (DataFacts, dataset_facts, folder_facts, folder_spec, known_noise_rate, label_report,
                      noise_problem, run_name_stem, save_label_upload, scan_summary, torchvision_spec, unpack_upload,
                      uploads_dir, vectors_spec)
from app.settings import SetupValues, settings_problems, suggest_run_name
from engine.method.config import SMALL_PAIR_TEACHER, RunConfig, defaults_for_teacher
from engine.data import load_dataset
from engine.errors import UserError
from engine.method.graph import GraphConfig
from engine.models import build_model
from engine.method.noise import CIFAR10_CLASSES
from engine.rundir.store import RunStore

KEY = "setup-digits-symmetric-40-"  # widget keys of the custom form started from the default preset
CLASSES = ("cat", "dog", "fox")
COLOURS = {"cat": (220, 40, 40), "dog": (40, 200, 40), "fox": (40, 40, 220)}


# ---------------------------------------------------------------- data
def make_folder(root: Path, per_class: int = 12, size: int = 16, classes=CLASSES, seed: int = 0) -> Path:
    """``root/train/<class>/<i>.png``: one colour per class plus pixel noise."""
    rng = np.random.default_rng(seed)
    for name in classes:
        folder = root / "train" / name
        folder.mkdir(parents=True, exist_ok=True)
        colour = np.array(COLOURS.get(name, (128, 128, 128)), dtype=float)
        for i in range(per_class):
            pixels = np.clip(colour + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, "RGB").save(folder / f"{i:03d}.png")
    return root


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def zip_folder(folder: Path, prefix: str) -> bytes:
    return zip_bytes({f"{prefix}/{p.relative_to(folder).as_posix()}": p.read_bytes()
                      for p in sorted(folder.rglob("*")) if p.is_file()})


@pytest.fixture(scope="module")
def pets(tmp_path_factory) -> Path:
    """3 classes x 12 images of 16x16 (read-only): 30 for training, 6 held out."""
    return make_folder(tmp_path_factory.mktemp("data") / "pets")


def _errors(at) -> list[str]:
    return [e.value for e in at.error]


def _successes(at) -> list[str]:
    return [s.value for s in at.success]


def _choose_folder(at, path: Path):
    at.radio(key=KEY + "source").set_value("folder").run()
    at.text_input(key=KEY + "folder_path").set_value(str(path)).run()
    assert not at.exception
    return at


def _create(at):
    assert not at.button(key="setup-create").disabled, _errors(at)
    at.button(key="setup-create").click().run()
    assert not at.exception
    return Path(at.session_state["run_dir"])


# ---------------------------------------------------------------- the page
def test_a_folder_path_shows_its_summary_and_creates_the_run(app, runs_dir, pets):
    app.radio(key=KEY + "source").set_value("folder").run()
    assert app.button(key="setup-create").disabled  # no folder yet
    app.text_input(key=KEY + "folder_path").set_value(str(pets / "nowhere")).run()
    (message,) = _errors(app)
    assert "nowhere" in message and "does not exist" in message and "train/\\<class\\>" in message  # as text
    assert app.button(key="setup-create").disabled

    _choose_folder(app, pets)
    assert not _errors(app)
    (summary,) = _successes(app)
    assert "**3 classes** · 36 images: 30 for training, 6 held out for testing" in summary
    assert "16x16 (36)" in summary and "3x16x16" in summary
    assert app.selectbox(key=KEY + "teacher-image-3x16x16").value == "digits-cnn-large"
    assert next(t for t in app.text_input if t.label == "Run name").value == "pets-symmetric40-aml-kd-s0"

    run_dir = _create(app)
    assert run_dir == runs_dir / "pets-symmetric40-aml-kd-s0"
    store = RunStore(run_dir)
    assert store.config().dataset == f"folder:{pets.resolve()}"
    arrays = store.dataset_arrays()
    assert len(arrays["given"]) == 30 and np.bincount(arrays["true"]).tolist() == [10, 10, 10]
    assert set(arrays["keys"]) < {f"train/{c}/{i:03d}.png" for c in CLASSES for i in range(12)}


# ---------------------------------------------------------------- vectors
def make_vectors(folder: Path, n: int = 90, d: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three separated blobs of ``n`` ``d``-D vectors: ``emb.npz`` (features, keys ``v000``..., labels, class
    names), ``emb.npy`` (features alone) and ``rows.csv`` (row number, class name) in ``folder``."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    features = (rng.standard_normal((3, d))[labels] * 4 + rng.standard_normal((n, d))).astype(np.float32)
    np.savez(folder / "emb.npz", features=features, keys=np.array([f"v{i:03d}" for i in range(n)]), labels=labels,
             class_names=np.array(CLASSES))
    np.save(folder / "emb.npy", features)
    (folder / "rows.csv").write_text("row,label\n" + "".join(f"{i},{CLASSES[c]}\n" for i, c in enumerate(labels)))
    return features, labels


def test_a_vectors_file_shows_what_it_holds_and_creates_the_run(app, runs_dir, tmp_path):
    make_vectors(tmp_path)
    app.radio(key=KEY + "source").set_value("vectors").run()
    assert app.button(key="setup-create").disabled  # no file yet
    app.text_input(key=KEY + "vectors_path").set_value(str(tmp_path / "emb.npz")).run()
    assert not _errors(app)
    assert _successes(app) == ["**6-D vectors** · 72 training rows · 3 classes"]  # 18 of 90 held out (0.2)
    assert app.selectbox(key=KEY + "teacher-vectors-6").value == "mlp-large"  # the data's own pair
    assert next(t for t in app.text_input if t.label == "Run name").value == "emb-symmetric40-aml-kd-s0"
    make_vectors(tmp_path, n=60)  # the file changed since: the form reads it again
    app.run()
    assert _successes(app) == ["**6-D vectors** · 48 training rows · 3 classes"]
    app.slider(key=KEY + "vectors_test").set_value(0.3).run()
    assert _successes(app) == ["**6-D vectors** · 42 training rows · 3 classes"]
    app.selectbox(key=KEY + "knn").set_value("hnsw").run()
    store = RunStore(_create(app))
    config = store.config()
    assert config.dataset == f"vectors:{tmp_path / 'emb.npz'}?test=0.3" and config.graph.knn == "hnsw"
    assert (config.teacher, config.student) == ("mlp-large", "mlp-small")
    keys = store.dataset_arrays()["keys"]
    assert len(keys) == 42 and set(keys) < {f"v{i:03d}" for i in range(60)}


def test_an_npy_of_vectors_needs_its_label_file_and_runs_with_it(app, runs_dir, tmp_path):
    _, labels = make_vectors(tmp_path)
    app.radio(key=KEY + "source").set_value("vectors").run()
    app.text_input(key=KEY + "vectors_path").set_value(str(tmp_path / "emb.npy")).run()
    assert "no labels in the file" in _successes(app)[0]
    (message,) = _errors(app)
    assert message.startswith("This vectors file holds no labels: choose its label file")
    assert app.button(key="setup-create").disabled

    app.radio(key=KEY + "labels_source").set_value("path").run()
    app.text_input(key=KEY + "labels_path").set_value(str(tmp_path / "rows.csv")).run()
    assert not _errors(app)
    assert any(s.startswith("All 72 training samples have exactly one row") for s in _successes(app))
    store = RunStore(_create(app))
    config = store.config()
    assert config.dataset == f"vectors:{tmp_path / 'emb.npy'}" and config.labels == str(tmp_path / "rows.csv")
    assert (config.key_column, config.label_column, config.noise) == ("row", "label", "none")
    arrays = store.dataset_arrays()
    rows = arrays["keys"].astype(int)  # an .npy's keys are its row numbers
    assert tuple(store.class_names()) == CLASSES and (arrays["given"] == labels[rows]).all()


def test_an_uploaded_vectors_file_is_kept_under_the_runs_folder_and_listed_with_its_run(app, runs_dir, tmp_path):
    from app.byod import list_uploads

    make_vectors(tmp_path)
    data = (tmp_path / "emb.npz").read_bytes()
    app.radio(key=KEY + "source").set_value("vectors").run()
    app.radio(key=KEY + "vectors_from").set_value("upload").run()
    assert app.button(key="setup-create").disabled  # nothing uploaded yet
    app.file_uploader(key=KEY + "vectors_upload").set_value(("my emb.npz", data, "application/octet-stream")).run()
    assert not app.exception and not _errors(app)
    (kept,) = list((uploads_dir(runs_dir) / "vectors").iterdir())
    assert kept.name.endswith("-my-emb.npz") and kept.read_bytes() == data
    assert _successes(app) == ["**6-D vectors** · 72 training rows · 3 classes"]
    run_dir = _create(app)
    assert RunStore(run_dir).config().dataset == f"vectors:{kept}"
    assert [(e["name"], e["used_by"]) for e in list_uploads(runs_dir)] == [(f"vectors/{kept.name}", [run_dir.name])]


def test_a_vectors_upload_of_another_kind_or_past_the_budget_keeps_nothing(tmp_path, monkeypatch):
    from app.byod import save_vectors_upload

    with pytest.raises(UserError, match=r"upload 'emb.csv' is not a vectors file; valid: an .npz"):
        save_vectors_upload("emb.csv", b"a,b\n", tmp_path)
    monkeypatch.setenv("AMLKD_UPLOADS_TOTAL_MB", "1")
    kept = save_vectors_upload("a.npy", b"x" * 1000, tmp_path)
    assert kept.parent == (uploads_dir(tmp_path) / "vectors").absolute() and kept.suffix == ".npy"
    assert save_vectors_upload("a.npy", b"x" * 1000, tmp_path) == kept  # the same upload again: the same file
    with pytest.raises(UserError, match="the uploads hold 0 MiB of their 1 MiB budget"):
        save_vectors_upload("big.npz", b"x" * (1 << 20), tmp_path)
    assert list(kept.parent.iterdir()) == [kept]


@pytest.mark.parametrize("content, needle", [
    (b"not numpy", "is not a readable NumPy file"),
    (None, "does not exist"),
])
def test_a_bad_vectors_file_is_the_engines_one_line_in_the_page(app, runs_dir, tmp_path, content, needle):
    path = tmp_path / "bad.npz"
    if content is not None:
        path.write_bytes(content)
    app.radio(key=KEY + "source").set_value("vectors").run()
    app.text_input(key=KEY + "vectors_path").set_value(str(path)).run()
    (message,) = _errors(app)
    with pytest.raises(UserError) as engine:
        load_dataset(f"vectors:{path}")
    assert needle in message and message == str(engine.value).replace("_", "\\_")  # the engine's words, as text
    assert app.button(key="setup-create").disabled and not app.exception and not list(runs_dir.glob("*"))


def test_files_skipped_at_creation_are_listed_with_the_run(app, runs_dir, tmp_path):
    folder = make_folder(tmp_path / "messy")
    (folder / "train" / "cat" / "broken.png").write_bytes(b"not a png at all")
    (folder / "train" / "dog" / "notes.txt").write_text("hello")
    _choose_folder(app, folder)
    assert any("2 file(s) skipped" in w.value for w in app.warning)
    run_dir = _create(app)
    expected = ["train/cat/broken.png", "train/dog/notes.txt"]
    recorded = RunStore(run_dir).skipped()
    assert [line.split(":")[0] for line in recorded] == expected
    assert app.title[0].value == f"Train · {run_dir.name}"
    (box,) = [e for e in app.expander if "skipped" in e.label]
    assert box.label.endswith("2 input file(s) were skipped when this run was made")
    assert [line.split(":")[0] for line in box.code[0].value.splitlines()] == expected


def test_the_small_image_pair_brings_its_own_schedule_and_knobs(app, runs_dir, tmp_path):
    folder = make_folder(tmp_path / "big", per_class=10, size=32)
    _choose_folder(app, folder)
    teacher = app.selectbox(key=KEY + "teacher-image-3x32x32").value
    schedule, train = defaults_for_teacher(teacher)
    assert teacher == ("wrn-40-2" if torch.cuda.is_available() else SMALL_PAIR_TEACHER)
    key = f"{KEY}{teacher}-" if teacher == SMALL_PAIR_TEACHER else KEY  # with CUDA: the general defaults
    shown = {name: app.number_input(key=key + name).value
             for name in ("teacher_epochs", "warmup_epochs", "refine_epochs", "mutual_epochs")}
    assert shown == {name: getattr(schedule, name) for name in shown}
    weights = ("kd_weight", "clean_kd_weight", "relational_weight")
    assert {name: app.slider(key=key + name).value for name in weights} == {n: getattr(train, n) for n in weights}
    app.number_input(key=key + "refine_epochs").set_value(3).run()
    app.slider(key=key + "relational_weight").set_value(1.25).run()
    config = RunStore(_create(app)).config()
    assert config.schedule.refine_epochs == 3 and config.schedule.teacher_epochs == schedule.teacher_epochs
    assert config.schedule.teacher_holdout == schedule.teacher_holdout
    assert config.train == replace(train, relational_weight=1.25)


def test_image_options_change_the_shape_the_networks_see(app, pets):
    _choose_folder(app, pets)
    app.selectbox(key=KEY + "image_size-16x16").set_value(8).run()
    app.selectbox(key=KEY + "image_mode-RGB").set_value("L").run()
    app.slider(key=KEY + "test_fraction").set_value(0.25).run()
    (summary,) = _successes(app)
    assert "1x8x8" in summary and "27 for training, 9 held out" in summary  # 3 of each 12 held out
    run_dir = _create(app)
    assert RunStore(run_dir).config().dataset == f"folder:{pets.resolve()}?size=8&mode=L&test=0.25"
    assert len(RunStore(run_dir).dataset_arrays()["given"]) == 27


def test_a_zip_upload_is_unpacked_under_the_runs_folder_once(app, runs_dir, pets):
    app.radio(key=KEY + "source").set_value("upload").run()
    assert any("at most 200 MB" in c.value for c in app.caption)
    app.file_uploader(key=KEY + "upload").set_value(("pets.zip", zip_folder(pets, "pets"), "application/zip")).run()
    assert not app.exception and not _errors(app)
    (unpacked,) = list(uploads_dir(runs_dir).iterdir())
    assert unpacked.name.startswith("pets-") and (unpacked / "pets" / "train" / "fox" / "011.png").is_file()
    assert "**3 classes**" in _successes(app)[0]
    made = unpacked.stat().st_mtime_ns
    app.run()  # a rerun reuses the folder unpacked before
    assert list(uploads_dir(runs_dir).iterdir()) == [unpacked] and unpacked.stat().st_mtime_ns == made

    run_dir = _create(app)
    assert run_dir.name == "pets-symmetric40-aml-kd-s0"
    assert RunStore(run_dir).config().dataset == f"folder:{(unpacked / 'pets').resolve()}"
    assert len(RunStore(run_dir).dataset_arrays()["given"]) == 30


def test_a_zip_with_an_entry_outside_the_archive_is_refused_and_writes_nothing(app, runs_dir, tmp_path):
    png = (make_folder(tmp_path / "one", per_class=1) / "train" / "cat" / "000.png").read_bytes()
    evil = zip_bytes({"pets/train/cat/0.png": png, "pets/train/dog/0.png": png, "../evil.txt": b"gotcha"})
    app.radio(key=KEY + "source").set_value("upload").run()
    app.file_uploader(key=KEY + "upload").set_value(("evil.zip", evil, "application/zip")).run()
    assert not app.exception
    (message,) = _errors(app)
    assert "'evil.zip' was refused" in message and "'../evil.txt'" in message and "outside the archive" in message
    assert app.button(key="setup-create").disabled
    assert not (runs_dir.parent / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert [p for p in runs_dir.rglob("*")] == []  # no upload folder, no staging folder, no run


def test_a_label_csv_with_an_unknown_class_keeps_create_disabled(app, runs_dir, pets, tmp_path):
    keys = load_dataset(f"folder:{pets}").keys()
    truth = [key.split("/")[1] for key in keys]
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\n" + "".join(f"{k},{'wolf' if i == 3 else t}\n" for i, (k, t) in
                                            enumerate(zip(keys, truth))))
    _choose_folder(app, pets)
    app.radio(key=KEY + "labels_source").set_value("path").run()
    app.text_input(key=KEY + "labels_path").set_value(str(bad)).run()
    assert not app.exception
    (message,) = _errors(app)
    assert "'wolf' (line 5)" in message and "not classes" in message and "'cat', 'dog', 'fox'" in message
    assert app.button(key="setup-create").disabled
    assert app.dataframe  # the preview is there

    flipped = {3: "dog", 4: "fox", 15: "cat"}  # three wrong labels out of 30
    good = tmp_path / "good.csv"
    good.write_text("file,given_label\n" + "".join(f"{k},{flipped.get(i, t)}\n" for i, (k, t) in
                                                   enumerate(zip(keys, truth))))
    app.text_input(key=KEY + "labels_path").set_value(str(good)).run()
    assert not _errors(app)
    assert "3 of 30 labels differ from the truth: **10.0% noise**" in _successes(app)[-1]
    assert any("No synthetic noise" in i.value for i in app.info)
    app.radio(key=KEY + "noise_rate_mode").set_value("known").run()
    run_dir = _create(app)
    config = RunStore(run_dir).config()
    assert (config.labels, config.key_column, config.label_column, config.noise) == (str(good), "file",
                                                                                       "given_label", "none")
    assert config.noise_rate == pytest.approx(0.1) and run_dir.name == "pets-labels-aml-kd-s0"
    arrays = RunStore(run_dir).dataset_arrays()
    assert np.flatnonzero(arrays["given"] != arrays["true"]).tolist() == [3, 4, 15]


def test_an_uploaded_label_csv_is_kept_under_the_runs_folder(app, runs_dir, pets):
    keys = load_dataset(f"folder:{pets}").keys()
    data = ("path,label\n" + "".join(f"{k},{k.split('/')[1]}\n" for k in keys)).encode()
    _choose_folder(app, pets)
    app.radio(key=KEY + "labels_source").set_value("upload").run()
    app.file_uploader(key=KEY + "labels_upload").set_value(("my labels.csv", data, "text/csv")).run()
    assert not _errors(app)
    (kept,) = list((uploads_dir(runs_dir) / "labels").iterdir())
    assert kept.read_bytes() == data and kept.name.endswith("-my-labels.csv")
    assert "0 of 30 labels differ" in _successes(app)[-1]


def test_torchvision_download_offline_answers_within_seconds(app, runs_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("AMLKD_DOWNLOAD_PROBE", "http://10.255.255.1/mnist")  # unroutable: the probe must time out
    app.radio(key=KEY + "source").set_value("torchvision").run()
    app.text_input(key=KEY + "tv_root").set_value(str(tmp_path / "data")).run()
    (message,) = _errors(app)
    assert "mnist files not found" in message and "Download if missing" in message
    assert app.button(key="setup-create").disabled

    app.checkbox(key=KEY + "tv_download").check().run()
    assert not _errors(app) and any("downloaded when you press" in i.value for i in app.info)
    assert app.selectbox(key=KEY + "teacher-image-1x28x28").value == "cifar-small-teacher"
    started = time.monotonic()
    app.button(key="setup-create").click().run()
    assert time.monotonic() - started < 10
    assert not app.exception
    (message,) = _errors(app)
    assert message.startswith("The run was not created: cannot download mnist") and "offline" in message
    assert "run_dir" not in app.session_state and not (runs_dir / "mnist-symmetric40-aml-kd-s0").exists()


def test_asym_noise_needs_cifar10_classes_and_its_known_rate_follows_the_data(app, pets, tmp_path):
    _choose_folder(app, pets)
    app.selectbox(key=KEY + "noise_kind").set_value("asym").run()
    (message,) = _errors(app)
    assert "CIFAR-10" in message and "cat, dog, fox" in message
    assert app.button(key="setup-create").disabled
    app.selectbox(key=KEY + "noise_kind").set_value("instance").run()
    assert not _errors(app) and not app.button(key="setup-create").disabled

    _choose_folder(app, make_folder(tmp_path / "cifar", per_class=5, size=8, classes=CIFAR10_CLASSES))
    app.selectbox(key=KEY + "noise_kind").set_value("asym").run()
    app.radio(key=KEY + "noise_rate_mode").set_value("known").run()
    assert not _errors(app) and not app.button(key="setup-create").disabled
    assert any("on this data: 0.200" in c.value for c in app.caption)  # R x half the classes flip


@pytest.mark.parametrize("noise", ["asym", "instance"])
def test_asym_and_instance_noise_runs_are_created(app, tmp_path, noise):
    _choose_folder(app, make_folder(tmp_path / "cifar", per_class=5, size=8, classes=CIFAR10_CLASSES))
    app.selectbox(key=KEY + "noise_kind").set_value(noise).run()
    app.number_input(key=KEY + "k").set_value(5).run()
    app.radio(key=KEY + "noise_rate_mode").set_value("known").run()
    store = RunStore(_create(app))
    assert store.config().noise == f"{noise}:0.4"
    assert store.config().noise_rate == pytest.approx(0.2 if noise == "asym" else 0.4)
    arrays = store.dataset_arrays()
    assert 0.05 < np.mean(arrays["given"] != arrays["true"]) < 0.6


def test_a_teacher_checkpoint_is_checked_inline_and_on_create(app, runs_dir, pets, tmp_path):
    _choose_folder(app, pets)
    app.text_input(key=KEY + "teacher_checkpoint").set_value(str(tmp_path / "missing.pt")).run()
    (message,) = _errors(app)
    assert "missing.pt" in message and "is not a file" in message
    assert app.button(key="setup-create").disabled

    wrong = tmp_path / "student.pt"
    torch.save(build_model("digits-cnn-small", (3, 16, 16), 3, "image").state_dict(), wrong)
    app.text_input(key=KEY + "teacher_checkpoint").set_value(str(wrong)).run()
    assert not _errors(app)
    app.button(key="setup-create").click().run()
    assert not app.exception
    (message,) = _errors(app)
    assert message.startswith("The run was not created:") and "does not fit the teacher" in message
    assert "run_dir" not in app.session_state and list(runs_dir.iterdir()) == []

    right = tmp_path / "teacher.pt"
    torch.save(build_model("digits-cnn-large", (3, 16, 16), 3, "image").state_dict(), right)
    app.text_input(key=KEY + "teacher_checkpoint").set_value(str(right)).run()
    app.number_input(key=KEY + "teacher_epochs").set_value(0).run()  # allowed with a checkpoint
    assert RunStore(_create(app)).config().teacher_checkpoint == str(right)


# ---------------------------------------------------------------- helpers
def test_specs_of_folders_and_torchvision_sets():
    assert folder_spec("/d/pets") == "folder:/d/pets"
    assert folder_spec("/d/pets", size=32, mode="L", test=0.3, augment="none") == \
        "folder:/d/pets?size=32&mode=L&test=0.3&augment=none"
    assert torchvision_spec("cifar10", "/d", n=1000, download=True) == "cifar10:/d?n=1000&download=1"
    assert torchvision_spec("mnist", "") == "mnist:data"
    with pytest.raises(UserError, match="valid: mnist, fashion-mnist, cifar10, cifar100"):
        torchvision_spec("svhn", "/d")
    assert run_name_stem("folder:/d/my pets/train?size=8") == "my-pets"
    assert run_name_stem("folder:/r/uploads/pets-0123456789ab") == "pets"
    assert run_name_stem("cifar10:/d?n=10") == "cifar10" and run_name_stem("moons?n=5") == "moons"
    assert vectors_spec(" /d/emb.npz ") == "vectors:/d/emb.npz" and vectors_spec("/d/e.npz", 0.2) == "vectors:/d/e.npz"
    assert vectors_spec("/d/e.npy", 0.3) == "vectors:/d/e.npy?test=0.3"
    assert run_name_stem("vectors:/d/clip emb.npz?test=0.3") == "clip-emb"


def test_the_form_round_trips_configs_of_own_data():
    configs = [
        RunConfig(dataset="folder:/d/pets?size=8&mode=L&test=0.3", noise="instance:0.2", teacher="wrn-16-2",
                  student="cifar-small-student", teacher_checkpoint="/d/t.pt"),
        RunConfig(dataset="cifar10:/d?n=1000&download=1", noise="asym:0.4", teacher="cifar-small-teacher",
                  student="cifar-small-student", noise_rate=0.2),
        RunConfig(dataset="folder:/d/pets", noise="none", labels="/d/l.csv", key_column="file",
                  label_column="given", truth_column="gold", teacher="digits-cnn-large",
                  student="digits-cnn-small"),
        RunConfig(dataset="digits", noise="matrix:/d/T.csv", teacher="digits-cnn-large", student="digits-cnn-small"),
        RunConfig(dataset="vectors:/d/emb.npy?test=0.1", noise="none", labels="/d/rows.csv", key_column="row",
                  teacher="mlp-large", student="mlp-small", graph=GraphConfig(knn="ivf")),
    ]
    for config in configs:
        assert SetupValues.from_config(config).to_config(config) == config
    values = SetupValues.from_config(configs[0])
    assert (values.source, values.folder_path, values.image_size, values.image_mode) == ("folder", "/d/pets", 8, "L")
    tv = SetupValues.from_config(configs[1])
    assert (tv.source, tv.tv_name, tv.tv_root, tv.tv_n, tv.tv_download) == ("torchvision", "cifar10", "/d", 1000, True)
    vectors = SetupValues.from_config(configs[-1])
    assert (vectors.source, vectors.vectors_path, vectors.vectors_test, vectors.knn) == \
        ("vectors", "/d/emb.npy", 0.1, "ivf")


def test_known_noise_rate_and_its_problems():
    labelled = SetupValues(labels="/d/l.csv", noise_rate_mode="known")
    with pytest.raises(UserError, match="label file.*choose 'estimate' or 'custom'"):
        labelled.to_config()
    assert replace(labelled, known_noise_rate=0.1).to_config().noise_rate == 0.1
    assert replace(labelled, known_noise_rate=0.1).to_config().noise == "none"
    cifar = DataFacts("image", (3, 32, 32), CIFAR10_CLASSES, (10,) * 10, 100)
    assert known_noise_rate("asym:0.4", cifar) == pytest.approx(0.2)
    assert known_noise_rate("symmetric:0.3", None) == 0.3 and known_noise_rate("asym:0.4", None) is None
    pets = DataFacts("image", (3, 16, 16), CLASSES, (10, 10, 10), 30)
    assert "CIFAR-10" in noise_problem("asym:0.4", pets) and noise_problem("asym:0.4", cifar) is None
    assert "does not exist" in noise_problem("matrix:/nowhere/T.csv", pets)
    assert settings_problems(RunConfig(), None) == []  # k is checked on Create when the size is not known


def test_folder_facts_match_what_the_engine_loads(pets, tmp_path):
    with_test = make_folder(tmp_path / "split", per_class=4, size=8)
    make_folder(tmp_path / "other", per_class=2, size=8).joinpath("train").rename(with_test / "test")
    for folder, size, mode, test in ((pets, 0, "auto", 0.2), (pets, 8, "L", 0.35), (with_test, 0, "auto", 0.2)):
        summary = scan_summary(str(folder))
        facts = folder_facts(summary, size, mode, test)
        dataset = load_dataset(folder_spec(folder, size, mode, test))
        assert facts.num_train == dataset.num_train and facts.input_shape == dataset.input_shape
        assert facts.class_counts == tuple(np.bincount(dataset.train_true).tolist())
    assert facts.num_train == 12 and summary["test_counts"] == {"cat": 2, "dog": 2, "fox": 2}
    moons = dataset_facts("moons?n=60&spread=0.1")
    assert (moons.kind, moons.input_shape, moons.num_train) == ("points", (2,), load_dataset("moons?n=60").num_train)
    with pytest.raises(UserError, match="no folder given"):
        scan_summary("  ")


def test_unpack_upload_reuses_a_folder_and_refuses_bombs_without_writing(tmp_path, pets):
    data = zip_folder(pets, "pets")
    first = unpack_upload("pets.zip", data, tmp_path)
    assert first == uploads_dir(tmp_path) / first.parent.name / "pets"
    assert unpack_upload("again.zip", data, tmp_path).parent.name.startswith("again-")  # its own name
    assert unpack_upload("pets.zip", data, tmp_path) == first
    before = sorted(p for p in tmp_path.rglob("*"))
    bomb = zip_bytes({"pets/train/cat/big.png": b"\0" * 200_000})
    with pytest.raises(UserError, match="'bomb.zip' was refused.*at most 0 MiB"):
        unpack_upload("bomb.zip", bomb, tmp_path, max_bytes=1000)
    with pytest.raises(UserError, match="not a readable zip"):
        unpack_upload("junk.zip", b"not a zip", tmp_path)
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_label_report_measures_the_noise_and_is_cached_per_file_version(tmp_path, pets):
    spec = f"folder:{pets}"
    keys = load_dataset(spec).keys()
    path = save_label_upload("labels.csv", ("path,label\n" + "".join(
        f"{k},{'fox' if i < 6 else k.split('/')[1]}\n" for i, k in enumerate(keys))).encode(), tmp_path)
    report = label_report(spec, path, "path", "label", None)
    assert report["ok"] and report["rows"] == 30 and report["changed"] == 6  # the first six are cats
    assert report["noise_rate"] == pytest.approx(0.2)
    before = path.stat().st_mtime_ns
    path.write_text("path,label\n" + "".join(f"{k},{k.split('/')[1]}\n" for k in keys[:-1]))
    os.utime(path, ns=(before + 10**9, before + 10**9))  # a later mtime, as an edit a second later has
    report = label_report(spec, path, "path", "label", None)
    assert not report["ok"] and "leaves out 1 of 30" in report["error"]


def test_suggested_names_for_own_data(tmp_path):
    config = RunConfig(dataset="folder:/d/pets?size=8", noise="none", labels="/d/l.csv")
    assert suggest_run_name(config, tmp_path) == "pets-labels-aml-kd-s0"
    assert suggest_run_name(RunConfig(dataset="cifar10:/d", noise="asym:0.4"), tmp_path) == \
        "cifar10-asym40-aml-kd-s0"
    assert suggest_run_name(replace(RunConfig(), graph=GraphConfig(k=5)), tmp_path) == "digits-symmetric40-aml-kd-s0"


def test_a_second_zip_with_the_same_name_never_replaces_the_first(tmp_path):
    """Two different uploads both called pets.zip: each gets its own folder (named by its content),
    so the first run's data stay as they were."""
    first = make_folder(tmp_path / "a", per_class=3)
    second = make_folder(tmp_path / "b", per_class=4, seed=1)
    root = tmp_path / "runs"
    one = unpack_upload("pets.zip", zip_folder(first, "pets"), root)
    before = sorted(p.relative_to(one) for p in one.rglob("*.png"))
    two = unpack_upload("pets.zip", zip_folder(second, "pets"), root)
    assert one != two and one.is_dir() and two.is_dir()
    assert sorted(p.relative_to(one) for p in one.rglob("*.png")) == before
    assert len(list(two.rglob("*.png"))) == 4 * len(CLASSES)
    assert unpack_upload("pets.zip", zip_folder(first, "pets"), root) == one  # the same zip again: reused

"""Bring your own data, end to end: image folders and label files through the
CLI, torchvision sets from local files, teacher checkpoints, offline
downloads, and every bad input as one line and exit status 2."""

from __future__ import annotations

import gzip
import inspect
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from engine.cli import main
from engine.method.config import SMALL_PAIR_TEACHER, RunConfig, ScheduleConfig, defaults_for_teacher
from engine.data import load_dataset, torchvision_sets
from engine.data.folder import scan_folder
from engine.data.torchvision_sets import SETS, check_online, probe_url
from engine.errors import UserError
from engine.method.graph import GraphConfig
from engine.models import build_model
from engine.method.noise import CIFAR10_CLASSES
from engine.steps.run import Run
from engine.rundir.store import RunStore
from test_data_folder import make_image_folder

REPO = Path(__file__).resolve().parents[1]
CIFAR10_SMALL = REPO.parent / "shared" / "data" / "cifar10-small"
TINY = ["--k", "5", "--teacher-epochs", "1", "--warmup-epochs", "1", "--refine-epochs", "1", "--mutual-epochs", "1"]
UNREACHABLE = "http://127.0.0.1:9/cifar-10-python.tar.gz"  # the discard port: refused at once


def _cli(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m engine ...`` in a fresh process (one thread: the test machine is shared)."""
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def _fails_with_one_line(capsys, *args: str) -> str:
    """Run the CLI in-process; it must exit 2 with one 'error:' line (after any
    progress bar, which tqdm ends with a carriage return) and no traceback."""
    code = main(list(args))
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and "Traceback" not in err
    assert sum(line.startswith("error: ") for line in lines) == 1
    return lines[-1]


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def pets(tmp_path_factory) -> Path:
    return make_image_folder(tmp_path_factory.mktemp("byod") / "pets", per_class=12, test_per_class=3)


@pytest.fixture(scope="module")
def noisy_labels(pets) -> tuple[Path, np.ndarray]:
    """A label CSV in which every third training image is called 'fox'."""
    ds = load_dataset(f"folder:{pets}")
    given = np.where(np.arange(ds.num_train) % 3 == 0, 2, ds.train_true)
    path = pets.parent / "labels.csv"
    pd.DataFrame({"path": ds.keys(), "label": [ds.class_names[g] for g in given]}).to_csv(path, index=False)
    return path, given


@pytest.fixture(scope="module")
def folder_run(pets, noisy_labels) -> Path:
    """One tiny AML-KD run on the folder with the label file, through the CLI's ``main``."""
    out = pets.parent / "run"
    assert main(["run", "--dataset", f"folder:{pets}", "--labels", str(noisy_labels[0]), "--out", str(out),
                 *TINY]) == 0
    return out


# ---------------------------------------------------------------- folders and label files
def test_folder_and_label_file_run_end_to_end_from_the_cli(pets, noisy_labels, folder_run):
    store = RunStore(folder_run)
    arrays = store.dataset_arrays()
    ds = load_dataset(f"folder:{pets}")
    assert list(arrays["keys"]) == list(ds.keys())
    assert np.array_equal(arrays["given"], noisy_labels[1])  # the file's labels, no synthetic noise
    assert np.array_equal(arrays["true"], ds.train_true)  # folder names stay the truth
    summary = store.summary()
    assert summary["given_label_precision"] == pytest.approx(np.mean(noisy_labels[1] == ds.train_true))
    assert summary["teacher"] == "digits-cnn-large" and summary["steps"] == 5
    assert store.status()["state"] == "done"


def test_teacher_checkpoint_of_a_run_and_a_bare_state_dict_are_loaded(folder_run, pets, tmp_path, capsys):
    out = tmp_path / "kd"
    code = main(["run", "--dataset", f"folder:{pets}", "--method", "kd", "--teacher-checkpoint",
                 str(folder_run / "checkpoint.pt"), "--out", str(out), "--k", "5", "--warmup-epochs", "1",
                 "--refine-epochs", "0", "--mutual-epochs", "0"])
    assert code == 0, capsys.readouterr().err
    first = RunStore(out).metrics()[0]
    assert first["teacher_source"] == "checkpoint" and first["phase"] == "teacher"
    saved = torch.load(folder_run / "checkpoint.pt", weights_only=True)["teacher"]
    loaded = torch.load(out / "checkpoint.pt", weights_only=True)["teacher"]
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    bare = tmp_path / "teacher.pt"
    torch.save(saved, bare)
    run = Run.create(tmp_path / "bare", RunConfig(dataset=f"folder:{pets}", method="kd", teacher_checkpoint=str(bare),
                                                  graph=GraphConfig(k=5)))
    run.step()
    assert all(torch.equal(saved[k], v) for k, v in run.teacher.state_dict().items())


def test_a_teacher_checkpoint_that_does_not_fit_is_one_line(pets, tmp_path, capsys):
    wrong = tmp_path / "student.pt"
    torch.save(build_model("digits-cnn-small", (3, 16, 16), 3, "image").state_dict(), wrong)
    err = _fails_with_one_line(capsys, "run", "--dataset", f"folder:{pets}", "--teacher-checkpoint", str(wrong),
                               "--out", str(tmp_path / "a"), *TINY)
    assert "student.pt" in err and "does not fit the teacher" in err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    err = _fails_with_one_line(capsys, "run", "--dataset", f"folder:{pets}", "--teacher-checkpoint", str(junk),
                               "--out", str(tmp_path / "b"), *TINY)
    assert "junk.pt" in err and "corrupt or not a checkpoint" in err


def _bad_folders(root: Path) -> dict[str, tuple[str, str]]:
    """name -> (dataset spec, fragment the error must hold)."""
    (root / "empty").mkdir()
    single = make_image_folder(root / "single", per_class=2, classes=("cat",))
    hollow = make_image_folder(root / "hollow", per_class=2)
    for f in (hollow / "train" / "dog").iterdir():
        f.unlink()
    return {
        "missing": (f"folder:{root / 'missing'}", "missing' does not exist"),
        "empty": (f"folder:{root / 'empty'}", "empty' is empty"),
        "single class": (f"folder:{single}", "only one class folder ('cat')"),
        "class without images": (f"folder:{hollow}", "'train/dog'"),
        "unknown option": (f"folder:{hollow}?colour=1", "valid: size, mode, augment, test"),
    }


def test_bad_folders_are_one_line_naming_the_offender(tmp_path, capsys):
    for name, (spec, fragment) in _bad_folders(tmp_path).items():
        err = _fails_with_one_line(capsys, "run", "--dataset", spec, "--out", str(tmp_path / "r"), *TINY)
        assert fragment in err, name
    assert not (tmp_path / "r").exists()


def test_bad_label_files_are_one_line_naming_the_offenders(pets, noisy_labels, tmp_path, capsys):
    table = pd.read_csv(noisy_labels[0])
    cases = {
        "unknown class": (table.assign(label=["wolf"] + list(table.label[1:])), "'wolf' (line 2)"),
        "duplicate": (pd.concat([table, table.head(1)]), "appear more than once"),
        "unmatched": (pd.concat([table, pd.DataFrame({"path": ["train/cat/nope.png"], "label": ["cat"]})]),
                      "'train/cat/nope.png'"),
        "missing samples": (table.iloc[:-2], "leaves out 2 of"),
    }
    for name, (frame, fragment) in cases.items():
        path = tmp_path / f"{name.replace(' ', '_')}.csv"
        frame.to_csv(path, index=False)
        err = _fails_with_one_line(capsys, "run", "--dataset", f"folder:{pets}", "--labels", str(path),
                                   "--out", str(tmp_path / "r"), *TINY)
        assert fragment in err and path.name in err, name


def test_the_real_cli_exits_2_without_a_traceback(tmp_path):
    done = _cli("run", "--dataset", f"folder:{tmp_path / 'nowhere'}", "--out", str(tmp_path / "r"), *TINY)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "nowhere' does not exist" in lines[0] and "Traceback" not in done.stderr


# ---------------------------------------------------------------- torchvision sets from local files
def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def fake_mnist(root: Path, train: int = 40, test: int = 20) -> Path:
    """MNIST in torchvision's layout: gzipped train files, plain test files."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n, packed in (("train", train, True), ("t10k", test, False)):
        labels = np.arange(n) % 10
        images = (rng.random((n, 28, 28)) * 60 + labels[:, None, None] * 19).astype(np.uint8)
        for kind, data in (("images-idx3", images), ("labels-idx1", labels)):
            path = raw / f"{prefix}-{kind}-ubyte"
            if packed:
                path.with_name(path.name + ".gz").write_bytes(gzip.compress(_idx(data)))
            else:
                path.write_bytes(_idx(data))
    return root


def fake_cifar10(root: Path, per_batch: int = 20, test: int = 20) -> Path:
    """CIFAR-10 python batches (5 train batches, a test batch, batches.meta)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def batch(n, offset):
        labels = (np.arange(n) + offset) % 10
        data = (rng.random((n, 3072)) * 100 + labels[:, None] * 15).astype(np.uint8)
        return {"data": data, "labels": labels.tolist(), "batch_label": "fake",
                "filenames": [f"{i}.png" for i in range(n)]}

    for i in range(1, 6):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch(per_batch, i), protocol=2))
    (folder / "test_batch").write_bytes(pickle.dumps(batch(test, 0), protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list(CIFAR10_CLASSES)}, protocol=2))
    return root


def fake_cifar100(root: Path, train: int = 200, test: int = 100) -> Path:
    """CIFAR-100 python files (train, test, meta) with fine labels."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for name, n in (("train", train), ("test", test)):
        data = {"data": np.zeros((n, 3072), np.uint8), "fine_labels": (np.arange(n) % 100).tolist(),
                "coarse_labels": (np.arange(n) % 20).tolist()}
        (folder / name).write_bytes(pickle.dumps(data, protocol=2))
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": [f"c{i}" for i in range(100)]}, protocol=2))
    return root


def test_fashion_mnist_and_cifar100_load_from_local_files(tmp_path):
    fake_mnist(tmp_path / "f")
    (tmp_path / "f" / "MNIST").rename(tmp_path / "f" / "FashionMNIST")
    fashion = load_dataset(f"fashion-mnist:{tmp_path / 'f'}")
    assert fashion.class_names[0] == "T-shirt/top" and fashion.num_train == 40
    cifar100 = load_dataset(f"cifar100:{fake_cifar100(tmp_path / 'h')}")
    assert cifar100.num_classes == 100 and cifar100.train_x.shape == (200, 3, 32, 32)
    assert cifar100.train_true[:3].tolist() == [0, 1, 2] and len(cifar100.test_true) == 100


def test_mnist_and_cifar10_load_from_local_files(tmp_path):
    mnist = load_dataset(f"mnist:{fake_mnist(tmp_path / 'm')}")
    assert mnist.train_x.shape == (40, 1, 28, 28) and mnist.test_x.shape == (20, 1, 28, 28)
    assert mnist.class_names[3] == "3" and mnist.train_true[:3].tolist() == [0, 1, 2]
    assert mnist.keys()[5] == "train/5" and mnist.augment == "none" and mnist.train_x.max() <= 1.0
    cifar = load_dataset(f"cifar10:{fake_cifar10(tmp_path / 'c')}")
    assert cifar.train_x.shape == (100, 3, 32, 32) and cifar.class_names == CIFAR10_CLASSES
    assert cifar.augment == "crop_flip" and cifar.train_true[:2].tolist() == [1, 2]
    subset = load_dataset(f"cifar10:{tmp_path / 'c'}?n=50&test_n=10")
    assert subset.num_train == 50 and np.bincount(subset.train_true).tolist() == [5] * 10
    assert len(subset.test_x) == 10


def test_missing_files_bad_options_and_hostile_pickles_are_refused(tmp_path):
    with pytest.raises(UserError, match="cifar10 files not found .* add \\?download=1"):
        load_dataset(f"cifar10:{tmp_path}")
    with pytest.raises(UserError, match="valid: download, n, test_n, size, stream"):
        load_dataset(f"mnist:{tmp_path}?sizes=3")
    root = fake_cifar10(tmp_path / "c")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    (root / "cifar-10-batches-py" / "batches.meta").write_bytes(pickle.dumps({"label_names": Evil()}))
    with pytest.raises(UserError, match="refusing to load"):
        load_dataset(f"cifar10:{root}")
    assert not (tmp_path / "pwned").exists()


def test_a_torchvision_set_runs_end_to_end(tmp_path, capsys):
    root = fake_cifar10(tmp_path / "c")
    code = main(["run", "--dataset", f"cifar10:{root}", "--method", "ce", "--out", str(tmp_path / "run"),
                 "--k", "5", "--warmup-epochs", "1", "--refine-epochs", "0", "--mutual-epochs", "0"])
    assert code == 0, capsys.readouterr().err
    summary = RunStore(tmp_path / "run").summary()
    assert summary["student"] == "cifar-small-student" and summary["student_test_accuracy"] is not None


@pytest.mark.parametrize("probe", [UNREACHABLE, "http://no-such-host.invalid/mnist.gz"])
def test_offline_download_fails_fast_with_a_clear_message(tmp_path, monkeypatch, probe):
    monkeypatch.setenv("AMLKD_DOWNLOAD_PROBE", probe)
    timeouts = _spy_probe(monkeypatch)
    with pytest.raises(UserError, match="cannot download mnist: .* not reachable .* drop \\?download=1"):
        load_dataset(f"mnist:{tmp_path}?download=1")
    assert timeouts == [torchvision_sets.PROBE_TIMEOUT] and torchvision_sets.PROBE_TIMEOUT <= 5  # one short probe
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_download_is_not_tried_when_the_files_are_already_there(tmp_path, monkeypatch):
    monkeypatch.setenv("AMLKD_DOWNLOAD_PROBE", UNREACHABLE)
    calls = []
    monkeypatch.setattr(torchvision_sets, "check_online", lambda url, timeout=0: calls.append(url) or False)
    cifar = load_dataset(f"cifar10:{fake_cifar10(tmp_path / 'c')}?download=1")
    assert cifar.train_x.shape == (100, 3, 32, 32) and calls == []  # offline, yet it loads: no probe at all


def test_the_cli_warns_about_skipped_files_and_records_them(tmp_path, capsys):
    folder = make_image_folder(tmp_path / "d")
    (next((folder / "train").iterdir()) / "zz-corrupt.png").write_bytes(b"\x89PNG broken")
    code = main(["run", "--dataset", f"folder:{folder}", "--method", "ce", "--out", str(tmp_path / "r"),
                 "--k", "3", "--warmup-epochs", "1", "--refine-epochs", "0", "--mutual-epochs", "0"])
    err = capsys.readouterr().err
    assert code == 0, err
    (line,) = RunStore(tmp_path / "r").skipped()
    assert line.startswith("train/") and "zz-corrupt.png: " in line
    assert "warning: 1 input file(s) skipped, e.g. train/" in err and "skipped.txt" in err


def test_schedule_and_knobs_left_out_follow_the_networks(tmp_path, capsys):
    folder = make_image_folder(tmp_path / "d", per_class=4, size=(32, 32))
    short = ["--teacher-epochs", "1", "--warmup-epochs", "1", "--refine-epochs", "1", "--mutual-epochs", "0"]
    code = main(["run", "--dataset", f"folder:{folder}", "--out", str(tmp_path / "img"), "--k", "3", *short])
    assert code == 0, capsys.readouterr().err
    config, summary = RunStore(tmp_path / "img").config(), RunStore(tmp_path / "img").summary()
    schedule, train = defaults_for_teacher(summary["teacher"])
    assert summary["teacher"] == ("wrn-40-2" if torch.cuda.is_available() else SMALL_PAIR_TEACHER)
    assert (config.schedule.teacher_epochs, config.schedule.warmup_epochs, config.schedule.refine_epochs) == (1, 1, 1)
    assert config.schedule.teacher_holdout == schedule.teacher_holdout  # not given: the pair's default
    assert config.train == train
    if summary["teacher"] == SMALL_PAIR_TEACHER:
        assert (train.mixup_alpha, train.teacher_lr, train.clean_kd_weight, schedule.teacher_epochs) == (0.4, 0.05, 0.9, 24)
        assert schedule.teacher_holdout == 0.0 and schedule.student_epochs == 32
    code = main(["run", "--dataset", f"folder:{folder}", "--out", str(tmp_path / "own"), "--k", "3", *short,
                 "--mixup-alpha", "2", "--teacher-lr", "0.02", "--clean-kd-weight", "0.3", "--teacher", "digits-cnn-large",
                 "--student", "digits-cnn-small"])
    assert code == 0, capsys.readouterr().err
    config = RunStore(tmp_path / "own").config()
    assert (config.train.mixup_alpha, config.train.teacher_lr, config.train.clean_kd_weight) == (2.0, 0.02, 0.3)
    assert config.schedule.teacher_holdout == ScheduleConfig().teacher_holdout  # this teacher: the general ones


def test_offline_download_from_the_cli_is_one_line_within_seconds(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("AMLKD_DOWNLOAD_PROBE", UNREACHABLE)
    timeouts = _spy_probe(monkeypatch)
    err = _fails_with_one_line(capsys, "run", "--dataset", f"cifar10:{tmp_path}?download=1",
                               "--out", str(tmp_path / "r"), *TINY)
    assert "cannot download cifar10" in err and timeouts == [torchvision_sets.PROBE_TIMEOUT]


def test_the_real_download_hosts_fail_fast_here_when_offline(tmp_path):
    assert probe_url("mnist") == SETS["mnist"][2]
    if check_online(SETS["mnist"][2], timeout=1.0):
        pytest.skip("this machine is online; the offline path is covered with an unreachable probe")
    with pytest.raises(UserError, match="not reachable"):
        load_dataset(f"mnist:{tmp_path}?download=1")


def test_the_probe_gives_up_after_its_timeout(monkeypatch):
    """A host that never answers: the probe's own timeout (injected small) ends it, not the network's."""
    import threading
    import urllib.request

    never = threading.Event()

    def hang(*args, **kwargs):  # blocks until the test ends, then fails as a dropped connection does
        never.wait()
        raise OSError("connection closed")

    monkeypatch.setattr(urllib.request, "urlopen", hang)
    try:
        assert check_online("https://example.invalid/x", timeout=0.05) is False
    finally:
        never.set()


def _spy_probe(monkeypatch) -> list[float]:
    """Record the timeout of every connectivity probe (a download must be preceded by one short probe)."""
    seen, real = [], torchvision_sets.check_online
    monkeypatch.setattr(torchvision_sets, "check_online",
                        lambda url, timeout=torchvision_sets.PROBE_TIMEOUT: seen.append(timeout) or real(url, timeout))
    return seen


# ---------------------------------------------------------------- noise kinds that need Run's inputs
def test_instance_and_asym_noise_through_a_run(tmp_path):
    tiny = ScheduleConfig(teacher_epochs=1, warmup_epochs=1, refine_epochs=1, mutual_epochs=1)
    run = Run.create(tmp_path / "i", RunConfig(dataset="digits", noise="instance:0.3", schedule=tiny))
    assert np.mean(run.given != run.true) == pytest.approx(0.3, abs=0.04)
    root = fake_cifar10(tmp_path / "c", per_batch=40)
    run = Run.create(tmp_path / "a", RunConfig(dataset=f"cifar10:{root}", noise="asym:0.5", schedule=tiny,
                                               graph=GraphConfig(k=5)))
    cat, dog, truck, automobile = (CIFAR10_CLASSES.index(c) for c in ("cat", "dog", "truck", "automobile"))
    assert np.sum(run.given[run.true == cat] == dog) == 10 and np.sum(run.given[run.true == truck] == automobile) == 10
    assert np.mean(run.given != run.true) == pytest.approx(0.25)


def test_asym_noise_on_other_classes_is_one_line(pets, tmp_path, capsys):
    err = _fails_with_one_line(capsys, "run", "--dataset", f"folder:{pets}", "--noise", "asym:0.4",
                               "--out", str(tmp_path / "r"), *TINY)
    assert "ten CIFAR-10 classes" in err


# ---------------------------------------------------------------- the shared CIFAR-10 subset
@pytest.mark.skipif(not CIFAR10_SMALL.is_dir(), reason="../shared/data/cifar10-small is not here")
def test_cifar10_small_folder_scans_as_ten_balanced_classes():
    scan = scan_folder(CIFAR10_SMALL)
    assert scan.class_names == CIFAR10_CLASSES
    assert set(scan.class_counts("train").values()) == {1000} and set(scan.class_counts("test").values()) == {200}
    assert scan.sizes == {(32, 32): 12000} and scan.default_size() == (32, 32) and scan.skipped == ()

"""Creating, opening and resuming a run (engine.steps.lifecycle): what a
resume must match (threads, device, inputs), one trainer per run (the lock),
and a full disk or read-only folder said as such, then resumed identically.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import engine.rundir.store as store_module
import engine.steps.run as run_module
from engine.cli import main
from engine.errors import UserError
from engine.method.config import RunConfig, ScheduleConfig
from engine.rundir.store import RunStore
from engine.steps import lifecycle
from engine.steps.run import Run

ROOT = Path(__file__).resolve().parents[1]
SCHEDULE = ScheduleConfig(teacher_epochs=2, teacher_patience=2, warmup_epochs=1, refine_epochs=1, mutual_epochs=1)
CONFIG = RunConfig(dataset="moons?n=200", noise="symmetric:0.3", seed=3, schedule=SCHEDULE,
                   graph=replace(RunConfig().graph, k=8))


def tree(path: Path) -> dict:
    """Every file of a run directory (the lock file aside) with its bytes."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.name != ".lock"}


def outcome(path: Path) -> tuple[dict, dict]:
    store = RunStore(path)
    refined = {s: store.snapshot(s)["refined"] for s in store.steps()}
    summary = {k: v for k, v in store.summary().items() if k != "wall_seconds"}
    return refined, summary


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("lifecycle") / "reference"
    run = Run.create(path, CONFIG)
    run.run_until(None)
    run.close()
    return path, outcome(path)


# ---------------------------------------------------------------- what determines the numbers
def test_the_runtime_record_names_threads_device_and_every_input(tmp_path):
    features = tmp_path / "features.npy"
    np.save(features, np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32))
    run = Run.create(tmp_path / "run", replace(CONFIG, teacher_features=str(features)), threads=1)
    record = json.loads(RunStore(tmp_path / "run").runtime_path.read_text())
    assert record["threads"] == 1 and record["device"] == "cpu"
    assert set(record["inputs"]) == {"teacher_features"}
    assert record["inputs"]["teacher_features"]["bytes"] == features.stat().st_size
    run.close()


def test_open_uses_the_recorded_threads_and_refuses_others(tmp_path):
    before = torch.get_num_threads()
    try:
        Run.create(tmp_path / "run", CONFIG, threads=2).close()
        torch.set_num_threads(1)
        run = Run.open(tmp_path / "run")
        assert run.threads == 2 and torch.get_num_threads() == 2
        run.close()
        with pytest.raises(UserError, match=r"--threads 1 differs from the 2 thread\(s\)"):
            Run.open(tmp_path / "run", threads=1)
        assert Run.open(tmp_path / "run", threads=2).threads == 2
    finally:
        torch.set_num_threads(before)


def test_a_step_uses_the_runs_threads_whatever_the_process_has(tmp_path, monkeypatch):
    seen = []
    real = run_module.HANDLERS if hasattr(run_module, "HANDLERS") else None
    run = Run.create(tmp_path / "run", CONFIG, threads=2)
    torch.set_num_threads(1)
    original = dict(real)
    monkeypatch.setitem(real, run.phase, lambda r: (seen.append(torch.get_num_threads()), original[r.phase](r))[1])
    try:
        run.step()
    finally:
        torch.set_num_threads(1)
    assert seen == [2]


@pytest.mark.slow
def test_a_resume_typed_without_threads_equals_the_uninterrupted_run(tmp_path):
    """The issue's case: digits, killed in its first step, resumed as anyone would type it."""
    flags = ["--dataset", "digits", "--teacher-epochs", "2", "--warmup-epochs", "1", "--refine-epochs", "2",
             "--mutual-epochs", "1", "--threads", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # a resume's default here would be 1 thread
    cmd = [sys.executable, "-m", "engine", "run", *flags]
    done = subprocess.run([*cmd, "--out", str(tmp_path / "whole")], cwd=ROOT, env=env, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-400:]
    child = subprocess.Popen([*cmd, "--out", str(tmp_path / "killed")], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    status = tmp_path / "killed" / "status.json"
    deadline = time.time() + 120
    while time.time() < deadline and not (status.is_file() and '"running"' in status.read_text()):
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not (tmp_path / "killed" / "checkpoint.pt").exists()  # killed in its first step
    resumed = subprocess.run([sys.executable, "-m", "engine", "resume", str(tmp_path / "killed")], cwd=ROOT,
                             env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-400:]
    whole, killed = outcome(tmp_path / "whole"), outcome(tmp_path / "killed")
    assert sorted(whole[0]) == sorted(killed[0])
    for step in whole[0]:
        np.testing.assert_array_equal(killed[0][step], whole[0][step], err_msg=f"step {step}")
    assert killed[1] == whole[1]


@pytest.mark.parametrize("setting", ["teacher_features", "noise"])
def test_a_resume_with_a_changed_input_is_refused_naming_it(tmp_path, capsys, setting):
    source = tmp_path / "input.npy"
    if setting == "teacher_features":
        np.save(source, np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32))
        config = replace(CONFIG, teacher_features=str(source))
    else:
        source = tmp_path / "matrix.csv"
        source.write_text("0.8,0.2\n0.3,0.7\n")
        config = replace(CONFIG, noise=f"matrix:{source}")
    path = tmp_path / "run"
    run = Run.create(path, config)
    run.step()
    run.close()
    Run.open(path).close()  # the same content: opens
    if setting == "teacher_features":
        np.save(source, np.random.default_rng(1).normal(size=(200, 4)).astype(np.float32))
    else:
        source.write_text("0.7,0.3\n0.3,0.7\n")
    before = tree(path)
    with pytest.raises(UserError, match=rf"input --{setting.replace('_', '-')} .*changed \(sha256"):
        Run.open(path)
    assert main(["resume", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(source) in err and "changed" in err
    assert tree(path) == before


def test_a_folder_digest_sees_a_changed_byte_and_nothing_else(tmp_path):
    folder = tmp_path / "images" / "train" / "cat"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(b"\x89PNG one")
    (folder / "b.png").write_bytes(b"\x89PNG two")
    first = lifecycle.digest(tmp_path / "images")
    assert lifecycle.digest(tmp_path / "images") == first
    (folder / "b.png").write_bytes(b"\x89PNG twO")
    assert lifecycle.digest(tmp_path / "images")["sha256"] != first["sha256"]
    assert lifecycle.digest(tmp_path / "gone")["sha256"] is None


def test_an_unchanged_folder_is_checked_by_stat_alone_and_an_edit_that_keeps_size_and_mtime_still_shows(
        tmp_path, monkeypatch):
    import shutil

    folder = tmp_path / "images" / "train" / "cat"
    folder.mkdir(parents=True)
    for name, data in (("a.jpg", b"\xff\xd8 one"), ("b.jpg", b"\xff\xd8 two")):
        (folder / name).write_bytes(data)
    record = lifecycle.digest(tmp_path / "images")
    assert record["files"] == 2 and record["stat"] != record["sha256"]
    with monkeypatch.context() as m:  # as recorded: no file is read
        m.setattr(lifecycle, "_folder_digest", lambda *a, **k: pytest.fail("read the files"))
        assert lifecycle._unchanged(record) is None
    stat = (folder / "b.jpg").stat()
    time.sleep(0.01)
    (folder / "b.jpg").write_bytes(b"\xff\xd8 twO")  # same size, and its modification time set back
    os.utime(folder / "b.jpg", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (folder / "b.jpg").stat().st_mtime_ns == stat.st_mtime_ns
    changed = lifecycle._unchanged(record)
    assert changed is not None and changed["sha256"] != record["sha256"]
    (folder / "b.jpg").write_bytes(b"\xff\xd8 two")  # restored: the contents decide, whatever the times
    assert lifecycle._unchanged(record) is None
    shutil.copytree(tmp_path / "images", tmp_path / "copy")  # a copy: new times, same files
    moved = {**record, "path": str(tmp_path / "copy")}
    assert lifecycle.folder_stat_digest(tmp_path / "copy") != record["stat"] and lifecycle._unchanged(moved) is None
    (folder / "c.jpg").write_bytes(b"\xff\xd8 new")  # a file added
    assert lifecycle._unchanged(record)["files"] == 3


def test_a_folder_recorded_before_the_stat_digest_is_still_checked_as_then(tmp_path):
    folder = tmp_path / "images" / "cat"
    folder.mkdir(parents=True)
    (folder / "a.jpg").write_bytes(b"\xff\xd8 one")
    record = lifecycle.digest(tmp_path / "images")
    old = {k: v for k, v in record.items() if k != "stat"}  # runtime.json of an older run: content digest
    assert lifecycle._unchanged(old) is None
    (folder / "a.jpg").write_bytes(b"\xff\xd8 onE")
    assert lifecycle._unchanged(old) is not None


# ---------------------------------------------------------------- one trainer per run
HOLDER = """
import sys, time
from pathlib import Path
from engine.rundir.lock import acquire
acquire(Path(sys.argv[1]) / ".lock", Path(sys.argv[1]))
print("held", flush=True)
time.sleep(60)
"""


def _hold(path: Path) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_trainer_is_refused_naming_the_holder_and_a_dead_one_never_blocks(tmp_path, capsys):
    path = tmp_path / "run"
    run = Run.create(path, CONFIG)
    run.step()
    run.close()
    child = _hold(path)
    try:
        with pytest.raises(UserError, match=rf"being trained by process {child.pid} on .* \(since "):
            Run.open(path)
        assert main(["resume", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"process {child.pid}" in err
        with pytest.raises(UserError, match="being trained"):  # nor replaced under it
            Run.create(path, CONFIG, force=True)
        assert RunStore(path).trainer()["pid"] == child.pid
        run.on_progress = None
        with pytest.raises(UserError, match="being trained"):  # a Run that gave its lock back cannot step
            run.step()
    finally:
        child.kill()
        child.wait()
    assert RunStore(path).trainer() is None  # the kernel dropped it with the process
    resumed = Run.open(path)
    resumed.step()
    assert resumed.state.step == 2
    resumed.close()


def test_a_run_given_back_then_moved_on_elsewhere_is_not_stepped_blindly(tmp_path):
    path = tmp_path / "run"
    first = Run.create(path, CONFIG)
    first.step()
    first.close()
    other = Run.open(path)
    other.step()
    other.close()
    with pytest.raises(UserError, match="moved on to step 2 since it was opened at step 1"):
        first.step()


# ---------------------------------------------------------------- full disk, read-only folder
@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only")])
def test_a_step_that_cannot_write_says_why_then_resumes_identically(reference, tmp_path, monkeypatch, code, words):
    _, (ref_refined, ref_summary) = reference
    path = tmp_path / "run"
    run = Run.create(path, CONFIG)
    run.run_until("warmup")

    class NoSpace:
        def __getattr__(self, name):
            return getattr(os, name)

        def replace(self, src, dst):
            if Path(dst).name.startswith("step_"):
                raise OSError(code, os.strerror(code))
            return os.replace(src, dst)

    monkeypatch.setattr(store_module, "os", NoSpace())
    with pytest.raises(UserError) as info:
        run.step()
    message = str(info.value)
    assert words in message and "damaged" not in message and "\n" not in message
    status = RunStore(path).status()
    assert status["state"] == "error" and words in status["error"] and status["step"] == 3
    monkeypatch.setattr(store_module, "os", os)
    run.close()
    Run.open(path).run_until(None)
    refined, summary = outcome(path)
    assert sorted(refined) == sorted(ref_refined)
    for step in ref_refined:
        np.testing.assert_array_equal(refined[step], ref_refined[step])
    assert summary == ref_summary


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_a_really_full_disk(reference, tmp_path):
    """A real tmpfs filled to the last block (needs root and mount; skipped elsewhere)."""
    _, (ref_refined, ref_summary) = reference
    disk = tmp_path / "disk"
    if not _tmpfs(disk, "16m"):
        pytest.skip("cannot mount a tmpfs here")
    try:
        run = Run.create(disk / "run", CONFIG)
        run.run_until("warmup")
        filler = disk / "filler"
        with open(filler, "wb", buffering=0) as fh:
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        with pytest.raises(UserError, match="disk is full"):
            run.step()
        assert RunStore(disk / "run").status()["state"] == "error"
        run.close()
        filler.unlink()
        Run.open(disk / "run").run_until(None)
        refined, summary = outcome(disk / "run")
        for step in ref_refined:
            np.testing.assert_array_equal(refined[step], ref_refined[step])
        assert summary == ref_summary
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_review_log_on_a_full_disk_is_not_called_damaged(tmp_path, monkeypatch):
    import sqlite3

    from engine.rundir.review import ReviewStore

    path = tmp_path / "run"
    Run.create(path, CONFIG).close()
    reviews = ReviewStore(path, num_classes=2)
    reviews.record(1, "keep", "ann")

    full = sqlite3.OperationalError("database or disk is full")
    full.sqlite_errorcode = 13
    error = reviews._damaged(full)
    assert "disk is full" in str(error) and "intact" in str(error) and "move it" not in str(error)
    readonly = sqlite3.OperationalError("attempt to write a readonly database")
    readonly.sqlite_errorcode = 8
    assert "read-only" in str(reviews._damaged(readonly)) and "move it" not in str(reviews._damaged(readonly))
    assert list(ReviewStore(path, num_classes=2).latest()) == [1]


def test_a_review_decision_on_a_really_full_disk(tmp_path):
    from engine.rundir.review import ReviewStore

    disk = tmp_path / "disk"
    if not _tmpfs(disk, "8m"):
        pytest.skip("cannot mount a tmpfs here")
    try:
        Run.create(disk / "run", CONFIG).close()
        reviews = ReviewStore(disk / "run", num_classes=2)
        reviews.record(1, "keep", "ann")
        with open(disk / "filler", "wb", buffering=0) as fh:
            try:
                while True:
                    fh.write(b"\0" * 65536)
            except OSError:
                pass
        with pytest.raises(UserError) as info:
            for sample in range(2, 200):  # the WAL has some room left: write until the disk refuses
                reviews.record(sample, "relabel", "ann", label=0)
        message = str(info.value)
        assert "disk is full" in message and "damaged" not in message and "move it" not in message
        (disk / "filler").unlink()
        kept = ReviewStore(disk / "run", num_classes=2).latest()
        assert 1 in kept and len(kept) >= 1
        reviews.record(199, "keep", "ann")  # space is back: decisions go on
        assert 199 in ReviewStore(disk / "run", num_classes=2).latest()
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)

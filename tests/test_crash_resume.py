"""A run killed at any write resumes to the result of a run never stopped.

Fault injection: every file of a run directory is written by renaming a
temporary file into place (``engine.rundir.store``). The test kills the run (raises
an exception nothing catches) right before the N-th rename, with the
temporary file left on disk as a real SIGKILL leaves it, then opens the run
again and trains it to the end. The refined labels of every snapshot and the
summary (apart from wall time) must equal the uninterrupted run's, and no
temporary file may remain. Two cases also kill a real process with SIGKILL.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import engine.steps.run as run_module
import engine.rundir.store as store_module
from engine.method.config import RunConfig, ScheduleConfig
from engine.steps.run import Run
from engine.rundir.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
SCHEDULE = ScheduleConfig(teacher_epochs=2, teacher_patience=2, warmup_epochs=1, refine_epochs=1, mutual_epochs=1)
CONFIG = RunConfig(dataset="moons?n=200", noise="symmetric:0.3", seed=3, schedule=SCHEDULE,
                   graph=replace(RunConfig().graph, k=8))


class Killed(BaseException):
    """Stands for SIGKILL: nothing in the engine catches it."""


class FaultyOs:
    """``os`` as engine.rundir.store sees it, dying before its ``kill_at``-th rename."""

    def __init__(self, kill_at: int):
        self.kill_at, self.renames, self.names = kill_at, 0, []

    def __getattr__(self, name):
        return getattr(os, name)

    def replace(self, src, dst):
        self.renames += 1
        self.names.append(Path(dst).name)
        if self.renames == self.kill_at:
            # the half-finished temp file (or a snapshot's temp folder) a kill leaves
            (shutil.copytree if Path(src).is_dir() else shutil.copy)(src, str(src)[:-4] + "k.tmp")
            raise Killed(Path(dst).name)
        return os.replace(src, dst)


def _outcome(path: Path) -> tuple[dict, dict]:
    store = RunStore(path)
    refined = {s: store.snapshot(s)["refined"] for s in store.steps()}
    summary = {k: v for k, v in store.summary().items() if k not in ("wall_seconds",)}
    return refined, summary


def _temporary_files(path: Path) -> list[Path]:
    return [p for p in path.rglob("*.tmp")]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("crash") / "reference"
    probe = FaultyOs(kill_at=-1)
    mp = pytest.MonkeyPatch()
    mp.setattr(store_module, "os", probe)
    mp.setattr(run_module, "HEARTBEAT_SECONDS", float("inf"))
    try:
        Run.create(path, CONFIG).run_until(None)
    finally:
        mp.undo()
    return path, _outcome(path), probe.names


def test_the_reference_run_writes_every_kind_of_file(reference):
    _, _, names = reference
    for kind in ("config.json", "dataset.npz", "skipped.txt", "status.json", "metrics.jsonl", "checkpoint.pt",
                 "teacher_features.npy", "summary.json"):
        assert kind in names
    assert any(n.startswith("step_") for n in names)


def _kill_points(names: list[str]) -> list[int]:
    """Every write of creation, of the first two steps and of the last one, plus the
    first write of each kind elsewhere: all the windows, at a CI-friendly cost."""
    first_checkpoint = names.index("checkpoint.pt")
    second_checkpoint = names.index("checkpoint.pt", first_checkpoint + 1)
    last_checkpoint = len(names) - 1 - names[::-1].index("checkpoint.pt")
    points = set(range(1, second_checkpoint + 3)) | set(range(last_checkpoint, len(names) + 1))
    for kind in set(names):
        points.add(names.index(kind) + 1)
    return sorted(points)


def test_a_kill_at_any_write_resumes_to_the_same_run(reference, tmp_path, monkeypatch):
    ref_path, (ref_refined, ref_summary), names = reference
    monkeypatch.setattr(run_module, "HEARTBEAT_SECONDS", float("inf"))
    points = _kill_points(names)
    assert len(points) >= 15
    for kill_at in points:
        path = tmp_path / f"kill{kill_at}"
        faulty = FaultyOs(kill_at)
        monkeypatch.setattr(store_module, "os", faulty)
        with pytest.raises(Killed):
            Run.create(path, CONFIG).run_until(None)
        monkeypatch.setattr(store_module, "os", os)
        killed_in = names[kill_at - 1]
        assert _temporary_files(path), killed_in
        if killed_in == "config.json":  # no run yet: the same command again creates it, despite the stray file
            Run.create(path, CONFIG).run_until(None)
        else:
            Run.open(path).run_until(None)
        refined, summary = _outcome(path)
        assert sorted(refined) == sorted(ref_refined), killed_in
        for step in ref_refined:
            np.testing.assert_array_equal(refined[step], ref_refined[step], err_msg=f"killed in {killed_in}")
        assert summary == ref_summary, killed_in
        assert _temporary_files(path) == [], killed_in
        assert RunStore(path).status()["state"] == "done"


def test_resume_after_the_last_checkpoint_writes_the_summary_and_exits_0(reference, tmp_path, capsys):
    from engine.cli import main

    ref_path, (_, ref_summary), _ = reference
    path = tmp_path / "nosummary"
    shutil.copytree(ref_path, path)
    (path / "summary.json").unlink()
    assert main(["resume", str(path)]) == 0
    out = capsys.readouterr().out
    assert "already finished" in out and "aml-kd" in out
    assert {k: v for k, v in RunStore(path).summary().items() if k != "wall_seconds"} == ref_summary


def test_a_damaged_metrics_line_is_refused_with_its_number(reference, tmp_path, capsys):
    from engine.cli import main

    ref_path, _, _ = reference
    path = tmp_path / "damaged"
    shutil.copytree(ref_path, path)
    lines = (path / "metrics.jsonl").read_text().splitlines()
    lines[2] = lines[2][: len(lines[2]) // 2]  # a truncated line in the middle
    (path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    before = (path / "metrics.jsonl").read_bytes()
    assert main(["resume", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "metrics.jsonl' line 3 is damaged" in err
    assert (path / "metrics.jsonl").read_bytes() == before  # nothing dropped
    assert len(RunStore(path).metrics()) == len(lines) - 1  # readers skip only the damaged line


def test_a_failing_step_is_an_error_not_a_crash(tmp_path, capsys):
    from engine.cli import main

    out = tmp_path / "diverge"
    code = main(["run", "--dataset", "moons?n=200", "--k", "8", "--teacher-epochs", "2", "--warmup-epochs", "1",
                 "--refine-epochs", "1", "--mutual-epochs", "0", "--teacher-lr", "1e6", "--out", str(out)])
    stderr = capsys.readouterr().err
    err = [line for line in stderr.splitlines() if line.startswith("error")]  # the rest is the progress bar
    assert code == 2 and "Traceback" not in stderr
    assert len(err) == 1 and err[0].startswith("error: step 1 (teacher) failed: the loss became nan")
    assert "--teacher-lr" in err[0] and "the run stays at step 0" in err[0]
    status = RunStore(out).status()
    assert status["state"] == "error" and status["error"] == err[0][len("error: "):]
    assert status["pid"] == os.getpid()
    assert RunStore(out).steps() == [] and (out / "error.log").read_text().startswith("step 1 (teacher) failed")


def test_a_running_status_of_a_dead_process_reads_as_stopped(tmp_path):
    store = RunStore(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    store.write_status(state="running", pid=int(dead.stdout), step=3)
    assert store.live_state() == "stopped"
    store.write_status(state="running", step=3)  # this process: alive
    assert store.live_state() == "running"
    store.write_status(state="running", host="elsewhere", updated=0.0)
    assert store.live_state() == "stopped"  # another host: by the heartbeat's age
    store.write_status(state="idle")
    assert store.live_state() == "idle"


def test_force_sets_old_reviews_aside_and_keep_reviews_needs_the_same_samples(tmp_path, capsys):
    from engine.cli import main
    from engine.rundir.review import ReviewStore

    out = tmp_path / "run"
    base = ["run", "--dataset", "moons?n=200", "--k", "8", "--teacher-epochs", "1", "--warmup-epochs", "1",
            "--refine-epochs", "1", "--mutual-epochs", "0", "--out", str(out)]
    assert main(base) == 0
    ReviewStore(out, num_classes=2).record(3, "relabel", "ann", 1)
    assert main(base + ["--force", "--keep-reviews"]) == 0  # same samples: kept
    assert (out / "reviews.sqlite").exists() and not (out / "reviews-old-1.sqlite").exists()
    assert RunStore(out).metrics()[-1]["reviewed_clamped"] == 1
    capsys.readouterr()
    assert main(base + ["--force", "--keep-reviews", "--noise", "symmetric:0.1"]) == 2  # other given labels
    assert "--keep-reviews: the decisions in" in capsys.readouterr().err
    assert main(base + ["--force", "--method", "ce", "--noise", "none"]) == 0
    err = capsys.readouterr().err
    assert "moved to" in err and (out / "reviews-old-1.sqlite").exists() and not (out / "reviews.sqlite").exists()
    assert RunStore(out).metrics()[-1]["reviewed_clamped"] == 0  # the new run trains on no stale clamp


SIGKILL_CHILD = textwrap.dedent("""
    import os, signal, sys
    import engine.steps.run as run_module, engine.rundir.store as store_module
    from engine.method.config import RunConfig, ScheduleConfig
    from engine.steps.run import Run
    sys.path.insert(0, {tests!r})
    from test_crash_resume import CONFIG
    run_module.HEARTBEAT_SECONDS = float("inf")
    target, count = {target!r}, [0]
    class Os:
        def __getattr__(self, name):
            return getattr(os, name)
        def replace(self, src, dst):
            if os.path.basename(dst) == target:
                count[0] += 1
                if count[0] == {nth}:
                    os.kill(os.getpid(), signal.SIGKILL)
            return os.replace(src, dst)
    store_module.os = Os()
    Run.create({path!r}, CONFIG).run_until(None)
""")


@pytest.mark.parametrize("target, nth", [("checkpoint.pt", 1)])  # the other windows: in-process above
def test_a_real_sigkill_then_cli_resume(reference, tmp_path, target, nth):
    _, (ref_refined, ref_summary), _ = reference
    path = tmp_path / "killed"
    code = SIGKILL_CHILD.format(tests=str(ROOT / "tests"), target=target, nth=nth, path=str(path))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert child.returncode == -9, child.stderr[-500:]
    assert json.loads((path / "status.json").read_text())["state"] == "running"
    assert RunStore(path).live_state() == "stopped"
    resumed = subprocess.run([sys.executable, "-m", "engine", "resume", str(path)], cwd=ROOT, env=env,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-500:]
    refined, summary = _outcome(path)
    assert summary == ref_summary and _temporary_files(path) == []
    for step in ref_refined:
        np.testing.assert_array_equal(refined[step], ref_refined[step])


def test_a_damaged_embedding_cache_is_computed_again(reference, tmp_path):
    from engine.readers import embed

    ref_path, _, _ = reference
    path = tmp_path / "embed"
    shutil.copytree(ref_path, path)
    store = RunStore(path)
    step = store.steps()[-1]
    first = embed.embedding(store, step, "student")
    cache = embed.embedding_path(store, "student", step)
    for damage in (b"garbage", None):
        if damage is None:
            cache.with_suffix(".json").write_text("null")  # a sidecar that is no object
        else:
            cache.write_bytes(damage)
        again = embed.embedding(store, step, "student")
        assert again.shape == first.shape and np.isfinite(again).all()

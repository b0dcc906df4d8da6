"""The background worker: commands, one worker per run, errors that leave the
run at its last good step, the fault-injection hook, following the CLI."""

import threading

import pytest

from app import worker as worker_module
from app.worker import (FAIL_ENV, Worker, forget_worker, get_worker, peek_worker, shutdown_all,
                        trained_elsewhere)
from engine.errors import UserError
from engine.steps.run import HANDLERS, Phase, Run
from engine.rundir.store import RunStore

WAIT = 120  # seconds a command may take on a busy 2-core machine


@pytest.fixture(autouse=True)
def _no_workers_left():
    yield
    shutdown_all()


def _done(worker: Worker) -> None:
    assert worker.wait(WAIT), "the worker did not finish in time"


def test_step_then_run_to_end_of_phase(fresh_tiny_run):
    worker = get_worker(fresh_tiny_run)
    assert worker.submit("step")
    _done(worker)
    store = RunStore(fresh_tiny_run)
    assert store.status()["step"] == 1 and store.status()["phase"] == "teacher"
    assert worker.submit("phase")
    _done(worker)
    status = store.status()
    assert (status["step"], status["phase"], status["state"]) == (2, "propagate", "idle")
    assert [m["phase"] for m in store.metrics()] == ["teacher", "teacher"]


def test_play_runs_to_the_end(fresh_tiny_run):
    worker = get_worker(fresh_tiny_run)
    assert worker.submit("play")
    _done(worker)
    store = RunStore(fresh_tiny_run)
    assert store.status()["state"] == "done"
    assert store.steps() == list(range(1, 9))
    assert store.summary()["steps"] == 8
    worker.submit("step")  # nothing left to do: a no-op, not an error
    _done(worker)
    assert store.status()["step"] == 8 and store.status()["state"] == "done" and worker.error is None


def test_a_second_command_is_refused_while_one_runs_and_pause_stops_play(fresh_tiny_run):
    worker = get_worker(fresh_tiny_run)
    entered, release = threading.Event(), threading.Event()
    real_step = Run.step

    def slow_step(run):
        entered.set()
        release.wait(WAIT)
        return real_step(run)

    Run.step = slow_step
    try:
        assert worker.submit("play")
        assert entered.wait(WAIT) and worker.busy
        assert worker.submit("step") is False
        assert worker.submit("reset") is False
        assert worker.submit("pause") is True  # there was something to pause
        release.set()
        _done(worker)
    finally:
        Run.step = real_step
    status = RunStore(fresh_tiny_run).status()
    assert status["step"] == 1, "play must stop after the step in progress"
    assert status["state"] == "idle"
    assert worker.command is None and worker.progress == (0, 0)


def test_injected_fault_keeps_the_run_at_its_last_good_step(fresh_tiny_run, monkeypatch):
    monkeypatch.setenv(FAIL_ENV, "3")
    worker = get_worker(fresh_tiny_run)
    assert worker.submit("play")
    _done(worker)
    store = RunStore(fresh_tiny_run)
    status = store.status()
    assert status["state"] == "error" and status["step"] == 2
    assert "step 3" in status["error"] and FAIL_ENV in status["error"]
    assert worker.error == status["error"]
    assert store.steps() == [1, 2] and len(store.metrics()) == 2
    monkeypatch.delenv(FAIL_ENV)
    assert worker.submit("step")
    _done(worker)
    status = store.status()
    assert (status["step"], status["phase"], status["error"], status["state"]) == (3, "warmup", None, "idle")
    assert worker.error is None


def test_a_step_that_raises_midway_is_rolled_back_to_the_checkpoint(fresh_tiny_run, monkeypatch):
    worker = get_worker(fresh_tiny_run)
    assert worker.submit("phase")  # the two teacher epochs
    _done(worker)

    def broken(run):
        run.store.write_step(3, {"refined": run.given}, {"step": 3, "phase": "propagate"})  # half-done work
        raise RuntimeError("solver blew up\nsecond line")

    monkeypatch.setitem(HANDLERS, Phase.PROPAGATE, broken)
    assert worker.submit("step")
    _done(worker)
    store = RunStore(fresh_tiny_run)
    status = store.status()
    assert status["state"] == "error" and status["step"] == 2 and status["phase"] == "propagate"
    assert status["error"] == ("step 3 (propagate) failed: RuntimeError: solver blew up; the run stays at step 2; "
                               "details in error.log")
    assert store.steps() == [1, 2], "the half-written step 3 must be dropped"
    assert [m["step"] for m in store.metrics()] == [1, 2]
    monkeypatch.undo()
    assert worker.submit("step")
    _done(worker)
    assert RunStore(fresh_tiny_run).status()["step"] == 3


def test_reset_recreates_the_run_from_its_config(fresh_tiny_run):
    store = RunStore(fresh_tiny_run)
    config = store.config()
    worker = get_worker(fresh_tiny_run)
    assert worker.submit("phase")
    _done(worker)
    assert store.steps() == [1, 2]
    assert worker.submit("reset")
    _done(worker)
    assert store.steps() == [] and store.metrics() == []
    assert store.status()["step"] == 0 and store.status()["phase"] == "teacher"
    assert store.config() == config
    assert worker.submit("step")
    _done(worker)
    assert store.steps() == [1]


def test_the_worker_follows_steps_another_process_made(fresh_tiny_run):
    worker = get_worker(fresh_tiny_run)
    assert worker.submit("step")
    _done(worker)
    other = Run.open(fresh_tiny_run)  # e.g. `python -m engine resume`
    other.step()
    assert worker.submit("step")
    _done(worker)
    store = RunStore(fresh_tiny_run)
    assert store.steps() == [1, 2, 3]
    assert [m["phase"] for m in store.metrics()] == ["teacher", "teacher", "propagate"]


def test_one_worker_per_run_directory_across_threads(fresh_tiny_run):
    found = []
    threads = [threading.Thread(target=lambda: found.append(get_worker(fresh_tiny_run))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(w) for w in found}) == 1
    assert get_worker(str(fresh_tiny_run) + "/.") is found[0]
    assert peek_worker(fresh_tiny_run) is found[0]
    forget_worker(fresh_tiny_run)
    assert peek_worker(fresh_tiny_run) is None


def test_forgetting_a_training_worker_is_refused(fresh_tiny_run):
    worker = get_worker(fresh_tiny_run)
    release = threading.Event()
    real_step = Run.step
    Run.step = lambda run: (release.wait(WAIT), real_step(run))[1]
    try:
        worker.submit("step")
        with pytest.raises(UserError, match="training"):
            forget_worker(fresh_tiny_run)
        release.set()
        _done(worker)
    finally:
        Run.step = real_step
    forget_worker(fresh_tiny_run)
    assert peek_worker(fresh_tiny_run) is None


def test_unknown_command_is_rejected(fresh_tiny_run):
    with pytest.raises(ValueError, match="valid: step, play"):
        get_worker(fresh_tiny_run).submit("jump")


def test_trained_elsewhere_needs_a_fresh_running_status(tmp_path):
    now = 1000.0
    running = {"state": "running", "updated": now - 5}
    assert trained_elsewhere(running, tmp_path, now=now)
    assert not trained_elsewhere({**running, "updated": now - 10_000}, tmp_path, now=now)
    assert not trained_elsewhere({**running, "state": "idle"}, tmp_path, now=now)
    import socket
    import subprocess
    import sys
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    # a fresh 'running' written by a process that has exited: a stopped run, not a live one
    assert not trained_elsewhere({**running, "pid": int(gone.stdout), "host": socket.gethostname()}, tmp_path, now=now)
    assert not trained_elsewhere({}, tmp_path, now=now)


def test_thread_count_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(worker_module.THREADS_ENV, "3")
    assert worker_module.torch_threads() == 3
    monkeypatch.setenv(worker_module.THREADS_ENV, "many")
    assert worker_module.torch_threads() >= 1
    monkeypatch.delenv(worker_module.THREADS_ENV)
    monkeypatch.setattr(worker_module.os, "cpu_count", lambda: 2)
    assert worker_module.torch_threads() == 1
    monkeypatch.setattr(worker_module.os, "cpu_count", lambda: 8)
    assert worker_module.torch_threads() == 7


def test_progress_is_reported_while_a_step_trains(fresh_tiny_run):
    worker = get_worker(fresh_tiny_run)
    seen = []
    original = Worker._on_progress

    def spy(self, done, total):
        original(self, done, total)
        seen.append(self.progress)

    Worker._on_progress = spy
    try:
        worker.submit("step")
        _done(worker)
    finally:
        Worker._on_progress = original
    assert seen, "no progress was reported"
    dones = [d for d, _ in seen]
    assert dones == sorted(dones) and seen[-1][0] == seen[-1][1] > 0
    assert worker.progress == (0, 0)  # cleared once the command ends

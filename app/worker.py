"""Background training owned by the server process, one worker per run.

Pages never train: they send a command to the run's :class:`Worker` and
render from the run directory. A worker holds the open :class:`engine.steps.run.Run`
and runs each command in its own daemon thread, so closing the browser
neither stops nor corrupts a run, and a reopened page shows it where it is.

Commands
--------
``step``   one step.
``play``   steps until the run is done or ``pause`` arrives.
``phase``  steps until the current phase ends (or ``pause``).
``reset``  recreate the run from its own config (all steps are lost).
``pause``  stop ``play``/``phase`` after the step in progress.

A run created with several processes (Setup's "Processes", recorded in
``runtime.json``) is never stepped in the server: each of its steps is
``python -m engine resume RUN --steps 1``, which starts torchrun with the
recorded number of processes (DistributedDataParallel; rank 0 writes the run
directory); ``play`` and ``phase`` repeat it, and ``pause`` is honoured between
steps, as for a run trained here.

A :class:`TrainQueue` (:func:`train_in_turn`) trains several runs one after
another (the Compare page's comparison set), each by its own
worker's ``play``; one queue at a time per process.

Only one command runs at a time; another one sent meanwhile is refused
(``submit`` returns ``False``), except ``pause``.

:meth:`Worker.prepare` opens the run in the background ahead of the first
command (loading the data and the networks takes seconds), so that the first
Step a lecturer presses costs what a step costs.

Errors
------
If a step raises, the worker re-opens the run from its last checkpoint
(``Run.open``: the run stays at its last good step, later files are dropped)
and records the error in ``status.json`` (``Run.record_error``), where every
page (and a restarted server) finds it. The next good step clears it.

Registry
--------
:func:`get_worker` keeps one worker per run directory for the whole process
(a module-level dict under a lock): every browser session that opens the run
talks to the same worker, so two threads never train the same run.

Fault injection (tests): with ``AMLKD_FAIL_AT_STEP=N`` in the environment the
worker raises :class:`InjectedFault` just before it would do step ``N``.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from engine.errors import UserError
from engine.steps import Phase, Run, recorded_processes
from engine.rundir import RunStore

log = logging.getLogger(__name__)

COMMANDS = ("step", "play", "phase", "reset", "reset-keep", "pause")
FAIL_ENV = "AMLKD_FAIL_AT_STEP"
THREADS_ENV = "AMLKD_TORCH_THREADS"
#: A ``running`` status newer than this (seconds) without a worker of ours
#: means another process (the CLI) is training the run.
EXTERNAL_FRESH_SECONDS = 120.0


class InjectedFault(RuntimeError):
    """Raised on purpose by ``AMLKD_FAIL_AT_STEP`` (tests of the error path)."""


def torch_threads() -> int:
    """Intra-op threads for training: ``$AMLKD_TORCH_THREADS``, else all cores but one.

    Leaving a core to the web server keeps the pages answering while a run
    trains; on a small, busy machine it also avoids the large slow-down of
    oversubscribed OpenMP threads.
    """
    text = os.environ.get(THREADS_ENV)
    if text:
        try:
            return max(1, int(text))
        except ValueError:
            log.warning("%s=%r is not a whole number; using the default", THREADS_ENV, text)
    return max(1, (os.cpu_count() or 2) - 1)


def max_processes() -> int:
    """The most processes a run may ask for here: one per GPU, else one per CPU core."""
    if torch.cuda.is_available():
        return max(1, torch.cuda.device_count())
    return max(1, os.cpu_count() or 1)


def run_processes(path: str | os.PathLike) -> int:
    """How many processes train the run at ``path`` (its ``runtime.json``; 1 when it records none)."""
    try:
        return recorded_processes(RunStore(path).runtime())
    except UserError:
        return 1


def _fault_step() -> int | None:
    text = os.environ.get(FAIL_ENV)
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        log.warning("%s=%r is not a step number; ignored", FAIL_ENV, text)
        return None


def describe_error(exc: BaseException) -> str:
    """One line for the page: a user error's own message, else type and message."""
    if isinstance(exc, UserError):
        return str(exc)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Worker:
    """Trains one run directory in background threads, one command at a time.

    Parameters
    ----------
    path : path-like
        The run directory (it must hold a run before the first command).

    Attributes read by pages (plain values, safe to read from any thread):
    ``busy``, ``command`` (the one running, or ``None``), ``progress``
    (``(done, total)`` samples of the epoch in progress), ``step_started``
    (``time.time()`` when the step in progress began), ``error`` (the last
    failure's one-line message, ``None`` after a good step).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.command: str | None = None
        self.progress: tuple[int, int] = (0, 0)
        self.step_started: float | None = None
        self.error: str | None = None
        self._run: Run | None = None
        self._thread: threading.Thread | None = None
        self._preparing: threading.Thread | None = None
        self._lock = threading.Lock()
        self._pause = threading.Event()

    # ---------------------------------------------------------------- commands
    @property
    def busy(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def submit(self, command: str) -> bool:
        """Start ``command``; ``False`` when another command is still running.

        ``pause`` is always accepted; it returns whether there was anything to pause.
        """
        if command not in COMMANDS:
            raise ValueError(f"unknown worker command {command!r}; valid: {', '.join(COMMANDS)}")
        if command == "pause":
            self._pause.set()
            return self.busy
        with self._lock:
            if self.busy:
                return False
            self._pause.clear()
            self.command = command
            self._thread = threading.Thread(target=self._job, args=(command,), daemon=True,
                                            name=f"amlkd-{command}-{self.path.name}")
            self._thread.start()
            return True

    def prepare(self) -> bool:
        """Open the run in a background thread unless it is open, opening or busy; whether it started."""
        with self._lock:
            preparing = self._preparing is not None and self._preparing.is_alive()
            if self.busy or preparing or self._run is not None or not RunStore(self.path).exists():
                return False
            self._preparing = threading.Thread(target=self._prepare, daemon=True,
                                               name=f"amlkd-open-{self.path.name}")
            self._preparing.start()
            return True

    def _prepare(self) -> None:
        if run_processes(self.path) > 1:  # stepped by processes of its own, never opened here
            return
        torch.set_num_threads(torch_threads())
        try:
            run = Run.open(self.path)
        except Exception:  # noqa: BLE001 - the first command opens it again and reports what fails
            log.info("opening %s ahead of the first command failed", self.path, exc_info=True)
            return
        run.close()  # opened ahead, not training yet: another process may still train it meanwhile
        with self._lock:
            if self._run is None and not self.busy:
                self._run = run

    def _wait_prepared(self) -> None:
        preparing = self._preparing
        if preparing is not None and preparing is not threading.current_thread():
            preparing.join()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the running command ends; ``True`` if it did within ``timeout``."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.busy

    def adopt(self, run: Run) -> None:
        """Take a run the page just created, so the first step need not reopen it."""
        run.close()
        with self._lock:
            if not self.busy:
                self._run = run

    def release(self) -> None:
        """Drop the open run (before its directory is renamed or deleted)."""
        self._wait_prepared()
        with self._lock:
            if self.busy:
                raise UserError(f"run {self.path.name!r} is training; pause it and wait for the step to end")
            if self._run is not None:
                self._run.close()
            self._run = None

    # ---------------------------------------------------------------- the job
    def _job(self, command: str) -> None:
        torch.set_num_threads(torch_threads())
        self._wait_prepared()
        try:
            if command in ("reset", "reset-keep"):
                self._reset(keep_reviews=command == "reset-keep")
                return
            if run_processes(self.path) > 1:
                self._job_in_processes(command)
                return
            run = self._open()
            if command == "step":
                self._step(run)
            elif command == "play":
                while not run.done and not self._pause.is_set() and self._step(run):
                    run = self._run
            elif command == "phase":
                start = run.phase
                while (not run.done and run.phase == start and not self._pause.is_set() and self._step(run)):
                    run = self._run
        except Exception as exc:  # noqa: BLE001 - opening or resetting failed: report, keep the thread alive
            log.exception("worker command %r on %s failed", command, self.path)
            self._fail(f"{command} failed: {describe_error(exc)}")
        finally:
            if self._run is not None:
                self._run.close()  # the lock is the trainer's: held while a command trains, not between
            self.progress, self.step_started, self.command = (0, 0), None, None

    def _open(self) -> Run:
        """The open run, re-opened when the directory moved on without us (the CLI)."""
        run = self._run
        on_disk = RunStore(self.path).status().get("step")
        if run is None or (on_disk is not None and on_disk != run.state.step):
            run = Run.open(self.path)
            self._run = run
        run.on_progress = self._on_progress
        return run

    def _reset(self, keep_reviews: bool = False) -> None:
        """Recreate the run from its own settings; its review decisions are set aside
        (``reviews-old-N.sqlite``) unless ``keep_reviews``."""
        config, processes = RunStore(self.path).config(), run_processes(self.path)
        self._run = None
        self._run = Run.create(self.path, config, force=True, keep_reviews=keep_reviews, threads=torch_threads(),
                               processes=processes)
        self.error = None

    def _step(self, run: Run) -> bool:
        """One step; on failure re-open at the last good step and record why."""
        upcoming, phase = run.state.step + 1, run.phase
        if phase == Phase.DONE:
            return False
        self.progress, self.step_started = (0, 0), time.time()
        try:
            if _fault_step() == upcoming:
                raise InjectedFault(f"injected fault before step {upcoming} ({FAIL_ENV}={upcoming})")
            run.step()
        except Exception as exc:  # noqa: BLE001 - any failure of a step is shown, the run survives
            if not isinstance(exc, (UserError, InjectedFault)):
                log.exception("step %d (%s) of %s failed", upcoming, phase.value, self.path)
            message = describe_error(exc)
            if not message.startswith(f"step {upcoming} ({phase.value}) failed"):  # the engine's own words say it
                message = f"step {upcoming} ({phase.value}) failed: {message}"
            self._recover(message)
            return False
        self.error = None
        return True

    def _job_in_processes(self, command: str) -> None:
        """``step``, ``play`` or ``phase`` of a run trained by several processes: one CLI step at a time."""
        if self._run is not None:
            self._run.close()
        self._run = None  # never stepped in this process
        start = RunStore(self.path).status().get("phase")
        while True:
            phase = RunStore(self.path).status().get("phase")
            if phase == Phase.DONE.value or (command == "phase" and phase != start):
                return
            self.progress, self.step_started = (0, 0), time.time()
            if not self._step_in_processes() or command == "step" or self._pause.is_set():
                return

    def _step_in_processes(self) -> bool:
        """``python -m engine resume RUN --steps 1`` (torchrun with the recorded processes); whether it stepped."""
        root = Path(__file__).resolve().parents[1]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root)] + [p for p in [os.environ.get("PYTHONPATH")]
                                                                          if p]))
        done = subprocess.run([sys.executable, "-m", "engine", "resume", str(self.path), "--steps", "1"],
                              cwd=root, env=env, capture_output=True, text=True)
        if done.returncode == 0:
            self.error = None
            return True
        lines = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        message = lines[-1].removeprefix("error: ") if lines else f"the training processes exited with status " \
                                                                   f"{done.returncode}"
        log.warning("a step of %s in several processes failed: %s", self.path, message)
        self._fail(message)
        return False

    def _recover(self, message: str) -> None:
        self._run = None
        try:
            run = Run.open(self.path)
        except Exception as exc:  # noqa: BLE001
            log.exception("re-opening %s after a failed step failed", self.path)
            self._fail(f"{message}; re-opening the run failed too: {describe_error(exc)}")
            return
        run.record_error(message)
        self._run = run
        self.error = message

    def _fail(self, message: str) -> None:
        """Record an error without a run object: straight into ``status.json``."""
        self.error = message
        store = RunStore(self.path)
        if store.path.is_dir():
            status = store.status()
            status.update(state="error", error=message, updated=time.time())
            store.write_status(**status)

    def _on_progress(self, done: int, total: int) -> None:
        self.progress = (int(done), int(total))


# ---------------------------------------------------------------- registry
_WORKERS: dict[str, Worker] = {}
_REGISTRY_LOCK = threading.Lock()


def _key(path: str | os.PathLike) -> str:
    return str(Path(path).resolve())


def get_worker(path: str | os.PathLike) -> Worker:
    """The process-wide worker of a run directory (made on first use)."""
    key = _key(path)
    with _REGISTRY_LOCK:
        worker = _WORKERS.get(key)
        if worker is None:
            worker = _WORKERS[key] = Worker(key)
        return worker


def peek_worker(path: str | os.PathLike) -> Worker | None:
    """The run's worker if one exists; makes none."""
    with _REGISTRY_LOCK:
        return _WORKERS.get(_key(path))


def forget_worker(path: str | os.PathLike) -> None:
    """Drop a run's worker (before renaming or deleting it); refused while it trains."""
    key = _key(path)
    with _REGISTRY_LOCK:
        worker = _WORKERS.get(key)
        if worker is not None:
            worker.release()
            del _WORKERS[key]


def is_training(path: str | os.PathLike) -> bool:
    """Whether a worker of this process is running a command on the run."""
    worker = peek_worker(path)
    return worker is not None and worker.busy


def trained_elsewhere(status: dict, path: str | os.PathLike, now: float | None = None) -> bool:
    """Whether another process (the CLI) seems to be training the run now.

    True when ``status.json`` says ``running``, was written within
    :data:`EXTERNAL_FRESH_SECONDS`, and no worker of this process is busy on it.
    """
    if status.get("state") != "running" or is_training(path):
        return False
    if RunStore(path).live_state(status, EXTERNAL_FRESH_SECONDS, now) != "running":  # its process is gone: a stopped run, not a live one
        return False
    updated = status.get("updated") or 0.0
    return (now or time.time()) - float(updated) < EXTERNAL_FRESH_SECONDS


def is_live(path: str | os.PathLike, status: dict | None = None) -> bool:
    """Whether the run trains now: in a worker of this process, or in another process (see
    :func:`trained_elsewhere`). ``status`` is the run's ``status.json`` when the caller has read it."""
    if is_training(path):
        return True
    return trained_elsewhere(RunStore(path).status() if status is None else status, path)


def shutdown_all(timeout: float = 60.0) -> None:
    """Pause every worker and wait for its step to end (tests, server shutdown)."""
    stop_queue(timeout)
    with _REGISTRY_LOCK:
        workers = list(_WORKERS.values())
    for worker in workers:
        worker.submit("pause")
    for worker in workers:
        worker.wait(timeout)
    with _REGISTRY_LOCK:
        _WORKERS.clear()


# ---------------------------------------------------------------- several runs, one after another
class TrainQueue:
    """Train runs one after another in one daemon thread, each by its worker's
    ``play`` to the end.

    ``states`` holds one line per run for the page: ``waiting``, ``training``,
    ``done``, or why it stopped. The queue stops at the first run that does not
    finish (paused, failed, or already training); the runs after it stay
    ``waiting``.
    """

    def __init__(self, paths: list[str | os.PathLike]):
        self.paths = [Path(path) for path in paths]
        self.states = ["waiting"] * len(self.paths)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, daemon=True, name="amlkd-queue")

    @property
    def busy(self) -> bool:
        return self._thread.is_alive()

    def _work(self) -> None:
        for i, path in enumerate(self.paths):
            if self._stop.is_set():
                return
            worker = get_worker(path)
            self.states[i] = "training"
            if not worker.submit("play"):
                self.states[i] = "stopped: it was already training"
                return
            worker.wait()
            if RunStore(path).status().get("phase") != Phase.DONE.value:
                self.states[i] = f"stopped: {worker.error}" if worker.error else "stopped (paused)"
                return
            self.states[i] = "done"

    def stop(self, timeout: float | None = None) -> None:
        """Pause the run in training and train no further one."""
        self._stop.set()
        for path in self.paths:
            worker = peek_worker(path)
            if worker is not None:
                worker.submit("pause")
        self._thread.join(timeout)


_QUEUE: TrainQueue | None = None


def train_in_turn(paths: list[str | os.PathLike]) -> TrainQueue:
    """Start a :class:`TrainQueue` over the run directories ``paths``.

    Raises
    ------
    UserError
        While a queue of this process is still working.
    """
    global _QUEUE
    with _REGISTRY_LOCK:
        if _QUEUE is not None and _QUEUE.busy:
            raise UserError("a comparison set is still training; wait for it or pause its run")
        _QUEUE = TrainQueue(paths)
        _QUEUE._thread.start()
        return _QUEUE


def current_queue() -> TrainQueue | None:
    """The last queue started in this process (working or finished), or ``None``."""
    return _QUEUE


def stop_queue(timeout: float | None = 60.0) -> None:
    """Stop the queue, if any (tests, server shutdown)."""
    global _QUEUE
    queue = _QUEUE
    if queue is not None:
        queue.stop(timeout)
        _QUEUE = None

"""Creating, opening and resuming a run directory.

A run records at creation what determines its numbers besides its config
(``runtime.json``, :meth:`engine.rundir.store.RunStore.write_runtime`): the
torch thread count, the device, the number of processes that train it
(``torchrun``, :mod:`engine.steps.distributed`), the deterministic settings, and a content
digest of every input file (label file, teacher features, teacher checkpoint,
noise matrix, the image folder or uploaded archive's files). Opening a run
applies the recorded threads and settings, so a resume typed without
``--threads`` gives the numbers of the uninterrupted run; it refuses a
different ``--threads``, another device, another number of processes, and any
input whose content changed, in one line naming it. A folder of photos is
checked by one ``stat`` per file when nothing changed
(:func:`folder_stat_digest`), and by its contents only when something did.
Whoever creates or opens a run to train it
holds the run's lock (:mod:`engine.rundir.lock`) until :meth:`Run.close` or
the end of its process.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..data import Dataset
from ..errors import UserError, shown
from ..method.config import RunConfig
from ..rundir.store import RunStore
from . import checkpoint as ckpt

if TYPE_CHECKING:  # pragma: no cover
    from .run import Run

#: Runs recorded before the stat digest: their folders above this many files were digested by name, size and
#: modification time only (every folder is digested by content now, once, when its run is created).
FOLDER_CONTENT_LIMIT = 20_000


# ---------------------------------------------------------------- create
def create_run(cls, out: str | Path, config: RunConfig, force: bool = False, dataset: Dataset | None = None,
               device: torch.device | None = None, keep_reviews: bool = False, threads: int | None = None,
               processes: int = 1) -> Run:
    """Start a new run in ``out`` (refused if it holds one, unless ``force``).

    Replacing a run (``force``) sets its review log aside (``reviews-old-N.sqlite``,
    in ``run.reviews_set_aside``), so the new run never trains on another run's
    decisions; ``keep_reviews`` keeps it instead, only when the new run has the very
    same samples and given labels. An audit log (``audit.sqlite``) stays when the new run
    has the same samples and given labels (it measures, it never trains), and is set aside
    (``audit-old-N.sqlite``, ``run.audit_set_aside``) otherwise. Refused while another process trains ``out``.
    ``threads``: torch's thread count for every step of the run (default: the
    process's now), recorded so that a resume uses it too; so is ``processes``, how many train it.
    """
    store = RunStore(out)
    if store.exists() and not force:
        store.create(config, force=False)  # raises the clear error
    if threads is not None and threads < 1:
        raise UserError(f"--threads {threads} must be at least 1")
    run = cls(store, config, dataset, device)  # validate before touching the directory
    run.threads = threads or run.threads
    if config.labels:
        from ..data.labels import labels_with_noise_problem

        problem = labels_with_noise_problem(config.labels, config.noise)
        if problem:
            raise UserError(problem)
    if config.teacher_checkpoint:
        ckpt.load_teacher(run.teacher, config.teacher_checkpoint)  # a bad file fails here, not at step 1
    inputs = input_digests(config)
    if store.path.exists() and not store.path.is_dir():
        store.create(config, force=force)  # raises the clear error
    store.path.mkdir(parents=True, exist_ok=True)
    run.hold_lock()  # refused while another process trains the run this one replaces
    try:
        if store.exists() and store.reviews_path.exists():
            if keep_reviews:
                _check_same_samples(run)
            else:
                run.reviews_set_aside = store.set_reviews_aside()
        if store.exists() and store.audit_path.exists() and not _same_samples(run):
            run.audit_set_aside = store.set_audit_aside()  # an audit of the same samples stays: it never trains
        store.create(run.config, force=force)  # with the teacher mode decided
    except BaseException:
        run.close()
        raise
    store.write_runtime(runtime_record(run.device, run.threads, inputs, processes))
    write_static_files(run)
    return run


def write_static_files(run: Run) -> None:
    """What a new run directory holds besides its config: samples, skipped inputs, status."""
    true = run.true if run.true is not None else np.full(len(run.given), -1)
    run.store.write_skipped(run.dataset.skipped)
    run.store.write_dataset(given=run.given, true=true, keys=np.array(run.dataset.keys()), holdout=run.holdout,
                            class_names=np.array([str(c) for c in run.dataset.class_names]),
                            test_labels=np.array(run.test_labels() or "none"))
    run.write_status("idle")


def _same_samples(run: Run) -> bool:
    """Whether the run directory's ``dataset.npz`` (the run being replaced) has this run's keys and given labels."""
    try:
        old = run.store.dataset_arrays()
        return bool(np.array_equal(old["keys"], np.array(run.dataset.keys())) and np.array_equal(old["given"], run.given))
    except (UserError, KeyError):
        return False


def _check_same_samples(run: Run) -> None:
    """Refuse to keep a review log made for other samples or other given labels."""
    if not _same_samples(run):
        raise UserError(f"--keep-reviews: the decisions in {str(run.store.reviews_path)!r} were made for other "
                        "samples or given labels than this run's; leave out --keep-reviews to set them aside")


# ---------------------------------------------------------------- open
def open_run(cls, path: str | Path, device: torch.device | None = None, threads: int | None = None,
             processes: int = 1) -> Run:
    """Open a run directory where its last checkpoint left it, with the threads and settings it recorded
    (refused when ``processes`` differs from the number that trained it)."""
    store = RunStore(path)
    config = store.config()
    record = store.runtime()
    check_processes(store, record, processes)
    threads = apply_runtime(store, record, threads)
    check_inputs(store, config, record)
    device = device or _recorded_device(store, record)
    run = cls(store, config, device=device)
    run.threads = threads
    if store.checkpoint_path.exists():
        run.load_state_dict(ckpt.read(store.checkpoint_path), source=f"checkpoint {str(store.checkpoint_path)!r}")
    elif max(store.steps(), default=0) > 1 or len(store.metrics()) > 1:
        raise UserError(f"run {str(path)!r} has {len(store.steps())} snapshots but no checkpoint.pt; it cannot "
                        "be resumed (restore checkpoint.pt, or create the run again)")
    # else: killed within the first step, before its checkpoint: start again from step 0, as created
    damaged = store.damaged_metrics()
    if damaged:
        raise UserError(f"{str(store.metrics_path)!r} line {damaged[0]} is damaged (not a JSON object with a "
                        "step); restore the file, or delete that line to drop its step's metrics, then resume")
    run.hold_lock()  # nothing was written before this line: a refused open leaves the directory as it was
    if record is None and not store.steps():  # killed while being created, before its runtime record
        store.write_runtime(runtime_record(run.device, run.threads, input_digests(config), processes))
    if not store.dataset_path.exists():  # killed while being created: finish creating it
        write_static_files(run)
    store.truncate_after(run.state.step)
    store.remove_temporary_files()
    if run.done and not _summary_readable(store):  # killed before it was written, or damaged since
        store.write_summary(run.summary())
    run.write_status("done" if run.done else "idle")
    return run


def _summary_readable(store: RunStore) -> bool:
    try:
        return store.summary() is not None
    except UserError:
        return False


# ---------------------------------------------------------------- what determines the numbers
def runtime_record(device: torch.device, threads: int, inputs: dict, processes: int = 1) -> dict:
    """What a resume must match besides the config: threads, device, processes, deterministic settings,
    inputs."""
    return {"threads": int(threads), "device": torch.device(device).type, "processes": int(processes),
            "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark), "torch": torch.__version__,
            "inputs": inputs}


def recorded_processes(record: dict | None) -> int:
    """How many processes trained the run (1 for runs made before the count was recorded)."""
    return int((record or {}).get("processes", 1))


def check_processes(store: RunStore, record: dict | None, processes: int) -> None:
    """Refuse to resume a run with another number of processes than the one that trained it."""
    recorded = recorded_processes(record)
    if processes != recorded:
        raise UserError(f"run {str(store.path)!r} was trained by {recorded} process(es) and this resume has "
                        f"{processes}, which would change its numbers; resume it with --nproc {recorded} "
                        "(python -m engine resume RUN starts that many)")


def apply_runtime(store: RunStore, record: dict | None, threads: int | None) -> int:
    """Use the recorded thread count and settings; refuse an explicit ``--threads`` that differs.

    Returns the thread count the run's steps use."""
    if threads is not None and threads < 1:
        raise UserError(f"--threads {threads} must be at least 1")
    if record is None:  # a run made before runtime.json: nothing recorded to match
        threads = threads or torch.get_num_threads()
        torch.set_num_threads(threads)
        return threads
    recorded = int(record.get("threads", torch.get_num_threads()))
    if threads is not None and threads != recorded:
        raise UserError(f"--threads {threads} differs from the {recorded} thread(s) run {str(store.path)!r} was "
                        f"trained with, which would change its numbers; leave out --threads (a resume uses "
                        f"{recorded}) or create a new run")
    torch.set_num_threads(recorded)
    deterministic = bool(record.get("deterministic_algorithms", False))
    if torch.are_deterministic_algorithms_enabled() != deterministic:  # setting it imports torch's compiler: seconds
        torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = bool(record.get("cudnn_benchmark", False))
    return recorded


def _recorded_device(store: RunStore, record: dict | None) -> torch.device | None:
    if record is None:
        return None
    kind = record.get("device", "cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UserError(f"run {str(store.path)!r} was trained on a GPU (cuda) and this machine has none; resuming "
                        "on the CPU would change its numbers: resume it on a machine with CUDA")
    return torch.device(kind)


def input_files(config: RunConfig) -> dict[str, Path]:
    """Every input file or folder of ``config``, by the setting that names it."""
    found = {"labels": config.labels, "teacher_features": config.teacher_features,
             "teacher_checkpoint": config.teacher_checkpoint}
    for role in ("teacher", "student"):  # pretrained torchvision weights: the file read (imagenet: the hub's)
        weights = getattr(config, f"{role}_weights")
        if weights and weights != "none":
            from ..models.zoo import arch_of, weights_path

            try:
                found[f"{role}_weights"] = weights_path(arch_of(getattr(config, role)), weights)
            except UserError:
                found[f"{role}_weights"] = weights  # absent: recorded as gone; creating the run refuses it first
    if config.noise.startswith("matrix:"):
        found["noise"] = config.noise.split(":", 1)[1]
    if config.dataset.startswith("folder:"):
        found["dataset"] = config.dataset.split(":", 1)[1].split("?", 1)[0]
    return {name: Path(value) for name, value in found.items() if value}


def input_digests(config: RunConfig) -> dict:
    return {name: digest(path) for name, path in input_files(config).items()}


def digest(path: Path) -> dict:
    """What an input is now: a file's SHA-256 and size; a folder's content digest (every file's relative path,
    size and content) and stat digest (:func:`folder_stat_digest`)."""
    path = Path(path)
    if path.is_file():
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return {"path": str(path), "sha256": h.hexdigest(), "bytes": path.stat().st_size}
    if not path.is_dir():
        return {"path": str(path), "sha256": None, "bytes": None}
    files = _folder_files(path)
    return {"path": str(path), "sha256": _folder_digest(path, files, by_content=True), "files": len(files),
            "stat": folder_stat_digest(path, files)}


def _folder_files(path: Path) -> list[tuple[str, os.stat_result]]:
    """``(relative path, stat)`` of every file under ``path`` (links followed, as ``Path.rglob`` and
    ``is_file`` did), sorted by relative path."""
    found = []
    for dirpath, _, filenames in os.walk(path, followlinks=False):
        prefix = os.path.relpath(dirpath, path)
        for name in filenames:
            full = os.path.join(dirpath, name)
            try:
                stat = os.stat(full)
            except OSError:  # a dangling link: not a file
                continue
            if S_ISREG(stat.st_mode):
                found.append((name if prefix == "." else os.path.join(prefix, name), stat))
    return sorted(found, key=lambda item: item[0].split(os.sep))  # as Path objects sort: part by part


def _folder_digest(path: Path, files: list[tuple[str, os.stat_result]], by_content: bool) -> str:
    """Every file's relative path and size, and its content (else, in runs made before the stat digest, above
    :data:`FOLDER_CONTENT_LIMIT` files, its modification time)."""
    h = hashlib.sha256()
    for rel, stat in files:
        h.update(f"{rel}\0{stat.st_size}\0".encode())
        if by_content:
            with open(os.path.join(path, rel), "rb") as fh:
                h.update(hashlib.sha256(fh.read()).digest())
        else:
            h.update(str(stat.st_mtime_ns).encode())
    return h.hexdigest()


def folder_stat_digest(path: Path, files: list[tuple[str, os.stat_result]] | None = None) -> str:
    """A digest of every file's relative path, size, modification and status-change time (one ``stat`` each,
    nothing read): equal to the one recorded means no file was added, removed, written or replaced since.

    The status-change time (``st_ctime_ns``) moves whenever a file's content or metadata is written and cannot be
    set back by a user's tools (``touch -d``, ``cp -p`` and ``rsync -t`` set only the modification time), so an
    edit that keeps size and modification time still shows. A differing stat digest is not a change by itself
    (a copied or restored folder has new status-change times): the contents decide (:func:`check_inputs`).
    """
    h = hashlib.sha256()
    for rel, stat in files if files is not None else _folder_files(path):
        h.update(f"{rel}\0{stat.st_size}\0{stat.st_mtime_ns}\0{stat.st_ctime_ns}\0".encode())
    return h.hexdigest()


def _unchanged(before: dict) -> dict | None:
    """``None`` when the input recorded as ``before`` is as it was; else what it is now (its :func:`digest`).

    A folder whose stat digest is the recorded one is unchanged without reading a file (opening a run of 40,000
    photos stats them only); otherwise its contents are digested again and compared."""
    path = Path(before["path"])
    if "stat" in before and path.is_dir() and folder_stat_digest(path) == before["stat"]:
        return None
    if "files" in before and "stat" not in before and path.is_dir():  # recorded before the stat digest
        files = _folder_files(path)
        now = {"path": str(path), "files": len(files),
               "sha256": _folder_digest(path, files, by_content=before["files"] <= FOLDER_CONTENT_LIMIT)}
    else:
        now = digest(path)
    return None if now.get("sha256") == before.get("sha256") else now


def check_inputs(store: RunStore, config: RunConfig, record: dict | None) -> None:
    """Refuse a resume whose input files changed since the run was created, in one line naming the first."""
    if record is None:
        return
    for name, before in record.get("inputs", {}).items():
        now = _unchanged(before)
        if now is None:
            continue
        flag = "--" + name.replace("_", "-")
        if now.get("sha256") is None:
            what = "is gone"
        elif "files" in before:
            what = f"changed ({before['files']:,} files then, {now['files']:,} now, or their content)"
        else:
            what = (f"changed (sha256 {before['sha256'][:12]}..., {before['bytes']:,} bytes then; "
                    f"{now['sha256'][:12]}..., {now['bytes']:,} bytes now)")
        raise UserError(f"input {flag} {shown(before['path'])} of run {str(store.path)!r} {what} since the run was "
                        "created; resuming would train on other data: restore the file, or create a new run "
                        "from it")

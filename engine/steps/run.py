"""The step machine: a run moves through phases and ``step()`` does one unit
of work (one epoch, or the one propagation) and writes one snapshot.

The same ``step()`` drives the CLI, the tests and the app. This module only
sequences: what one step of each phase does is :mod:`engine.steps.handlers`,
the phase table :mod:`engine.steps.phases`, creating and reopening a run
directory :mod:`engine.steps.lifecycle`, the checkpoint's contents
:mod:`engine.steps.state`, the files :class:`engine.rundir.store.RunStore`.
"""

from __future__ import annotations

import logging
import time
import traceback
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data import Dataset, dataset_for_config
from ..data.features import load_teacher_features
from ..device import default_device
from ..errors import UserError, cannot_write
from ..method.audit import MIN_AUDIT, Audit, audit_of
from ..method.config import RunConfig, check_runnable, resolve_teacher_mode
from ..method.noise import apply_noise, parse_noise_spec
from ..models import default_pair, is_torchvision
from ..rundir import fields, snapshot
from ..rundir.health import run_warnings
from ..rundir.review import AuditStore, ReviewStore
from ..rundir.store import RunStore
from . import checkpoint as ckpt
from . import phases as plan
from . import state as run_state
from .handlers import HANDLERS, finish_teacher
from .networks import Networks
from .phases import PHASES, Phase

log = logging.getLogger(__name__)

#: Seconds between heartbeats in ``status.json`` while a step trains.
HEARTBEAT_SECONDS = 5.0

__all__ = ["Phase", "PHASES", "Run", "StepResult"]


@dataclass
class StepResult:
    step: int
    phase: Phase
    phase_epoch: int
    metrics: dict
    description: str


class Run:
    """One AML-KD (or baseline) run bound to a run directory.

    Make one with :meth:`create` or :meth:`open` (:mod:`engine.steps.lifecycle`),
    which also take the run's lock; :meth:`close` gives it back.
    """

    def __init__(self, store: RunStore, config: RunConfig, dataset: Dataset | None = None,
                 device: torch.device | None = None):
        self.device = device or default_device()
        self.dataset = dataset or dataset_for_config(config)
        config = _decided(config, self.dataset, self.device)
        self.store, self.config = store, config
        problems = check_runnable(config, self.dataset.num_train, self.dataset.num_classes, self.dataset.name)
        if problems:
            raise UserError("; ".join(problems))
        self.rng = np.random.default_rng(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.true = self.dataset.train_true
        self.given = given_labels(config, self.dataset)
        self.holdout = holdout_mask(config, len(self.given))
        external = (load_teacher_features(config.teacher_features, self.dataset.keys()) if config.teacher_features
                    else (None, None))
        self.nets = Networks(config, self.dataset, self.given, self.device, *external, store=store)
        self.state = run_state.RunState(phase=plan.first_phase(config), refined=self.given.copy())
        #: Optional ``fn(done, total)`` called after every training batch (the app's progress bar).
        self.on_progress = None
        self._failed = False  # a step raised: this object's state is no longer the run's
        self._last_heartbeat = time.time()
        self.reviews = ReviewStore(store.path, num_classes=self.dataset.num_classes)
        self.reviews_set_aside: Path | None = None
        self.audit_set_aside: Path | None = None
        #: torch's intra-op threads for this run's steps (recorded at creation; a resume uses the same)
        self.threads = torch.get_num_threads()
        #: the processes that train this run together (engine.steps.distributed); None: this one alone
        self.group = None
        self._lock_held = [False]  # shared with the finaliser: a forgotten Run gives its lock back
        weakref.finalize(self, _release, store, self._lock_held)

    # ------------------------------------------------------------------ making and closing
    @classmethod
    def create(cls, out: str | Path, config: RunConfig, force: bool = False, dataset: Dataset | None = None,
               device: torch.device | None = None, keep_reviews: bool = False, threads: int | None = None,
               processes: int = 1) -> Run:
        """Start a new run in ``out`` (see :func:`engine.steps.lifecycle.create_run`)."""
        from .lifecycle import create_run

        return create_run(cls, out, config, force=force, dataset=dataset, device=device, keep_reviews=keep_reviews,
                          threads=threads, processes=processes)

    @classmethod
    def open(cls, path: str | Path, device: torch.device | None = None, threads: int | None = None,
             processes: int = 1) -> Run:
        """Open a run where its last checkpoint left it (see :func:`engine.steps.lifecycle.open_run`)."""
        from .lifecycle import open_run

        return open_run(cls, path, device=device, threads=threads, processes=processes)

    def hold_lock(self) -> None:
        """Hold the run's lock (:mod:`engine.rundir.lock`) unless this object holds it already."""
        if not self._lock_held[0]:
            self.store.lock()
            self._lock_held[0] = True

    def close(self) -> None:
        """Give back the run's lock (another process may train it then); the next step takes it again."""
        _release(self.store, self._lock_held)

    # ------------------------------------------------------------------ what the app and CLI read
    @property
    def teacher(self) -> torch.nn.Module:
        return self.nets.teacher

    @property
    def student(self) -> torch.nn.Module:
        return self.nets.student

    @property
    def phase(self) -> Phase:
        return self.state.phase

    @property
    def done(self) -> bool:
        return self.state.phase == Phase.DONE

    @property
    def phases(self) -> tuple[Phase, ...]:
        return PHASES[self.config.method]

    def describe_next(self) -> str:
        """One sentence a student can follow: what the next step will do."""
        return plan.describe_next(self.config, self.phase, self.state.phase_epoch)

    def total_steps(self) -> int:
        """Steps done plus steps left (the teacher's count is an upper bound until early stopping ends it)."""
        return plan.total_steps(self.config, self.phase, self.state.phase_epoch, self.state.step)

    def noise_rate(self, audit: Audit | None = None) -> float:
        """r for small-loss selection: given in the config, else the audit's count (``audit``, when the
        calibrated rule uses one), else the stage-0 estimate."""
        if self.config.noise_rate is not None:
            return self.config.noise_rate
        if audit is not None:
            return audit.rate().value
        return self.state.noise_rate_estimate or 0.0

    def audit(self) -> Audit | None:
        """The run's random audit (``audit.sqlite``, read afresh every step) when the calibrated rule estimates
        the rate and at least ``MIN_AUDIT`` samples are audited; else None (an audit then is only reported)."""
        if self.config.relabel_rule != "calibrated" or self.config.noise_rate is not None \
                or not self.store.audit_path.exists():
            return None
        labels, left_out = AuditStore(self.store.path, self.dataset.num_classes).audit_labels(len(self.given))
        audit = audit_of(labels, self.given, left_out)
        return audit if audit.size >= MIN_AUDIT else None

    @property
    def judge_part(self) -> np.ndarray | None:
        """The samples (N,) neither network trains on, where the calibrated rule judges whether the student or
        the teacher labels better when no audit does: the teacher's hold-out, which the student then sits out
        too (with an audit as well: one can be made or set aside between steps). None under the authors' rule,
        with a given rate, for a baseline, or without a hold-out."""
        cfg = self.config
        if cfg.method != "aml-kd" or cfg.relabel_rule != "calibrated" or cfg.noise_rate is not None \
                or not self.holdout.any():
            return None
        return self.holdout

    def review_clamps(self) -> tuple[np.ndarray, np.ndarray]:
        """Reviewers' decisions, read afresh every step: clamped labels (N,), -1 where none, and outliers (N,)."""
        n = len(self.given)
        if not self.reviews.path.exists():
            return np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=bool)
        return self.reviews.clamps(n)

    def test_labels(self) -> str | None:
        """What test accuracies are measured against: ``"truth"``, ``"given"`` (a label file's labels of the
        held-out images, without a truth column: agreement, not accuracy), or None (no test set)."""
        if self.dataset.test_true is None or not (np.asarray(self.dataset.test_true) >= 0).any():
            return None
        return self.dataset.test_labels

    # ------------------------------------------------------------------ stepping
    def step(self) -> StepResult:
        """Do one unit of work, write its snapshot, metrics and checkpoint."""
        if self.done:
            raise UserError("the run is finished; there is no next step")
        if self._failed:
            raise UserError(f"a step of run {str(self.store.path)!r} failed; open the run again to continue from its "
                            "last good step")
        started = time.perf_counter()
        phase, description, before = self.phase, self.describe_next(), self.state.step
        if not self._lock_held[0]:  # given back between commands (the app's worker): take it, check nobody moved on
            self.hold_lock()
            if self.store.steps() and max(self.store.steps()) > self.state.step:
                raise UserError(f"run {str(self.store.path)!r} moved on to step {max(self.store.steps())} since it "
                                f"was opened at step {self.state.step}; open it again")
        if torch.get_num_threads() != self.threads:  # the app's other runs may have changed the process's count
            torch.set_num_threads(self.threads)
        try:
            self.write_status("running")
            arrays, metrics = HANDLERS[phase](self)
            _check_finite(metrics)
            self.state.step += 1
            self.state.phase_epoch += 1
            metrics.update(step=self.state.step, phase=phase.value, phase_epoch=self.state.phase_epoch)
            self._advance()
            metrics["step_seconds"] = time.perf_counter() - started
            self.state.wall_seconds += metrics["step_seconds"]
            snapshot.validate(arrays, phase.value)
            self.store.write_step(self.state.step, arrays, fields.check_metrics(_clean(metrics)))
            ckpt.save(self.store.checkpoint_path, self.state_dict())
            if self.done:
                self.store.write_summary(self.summary())
            self.write_status("done" if self.done else "idle")
        except Exception as exc:  # noqa: BLE001 - any failure of a step leaves the run at its last good step
            raise self._step_failed(phase, before, exc) from None
        return StepResult(self.state.step, phase, self.state.phase_epoch, metrics, description)

    def _advance(self) -> None:
        s = self.state
        finished = s.phase_epoch >= plan.phase_length(self.config, s.phase)
        if s.phase == Phase.TEACHER and s.teacher_stopped:
            finished = True
        if not finished:
            return
        if s.phase == Phase.TEACHER:
            finish_teacher(self)
        s.phase, s.phase_epoch = plan.following_phase(self.config, s.phase), 0

    def _step_failed(self, phase: Phase, before: int, exc: Exception) -> UserError:
        """Record a failed step: ``status.json`` says error, ``error.log`` has the details.

        The run directory keeps its last good step (snapshots and metrics past it
        are dropped when it is opened again), so a resume repeats the step whole.
        """
        self._failed = True
        number = before + 1
        full = cannot_write(self.store.snapshot_dir, exc) if not isinstance(exc, UserError) else None
        if full is not None:
            exc = full
        detail = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        if not isinstance(exc, UserError):
            detail = f"{type(exc).__name__}: {detail}"
            if not self.nets.weights_finite():
                detail += " (the network's weights are no longer finite: lower --lr or --teacher-lr)"
        message = (f"step {number} ({phase.value}) failed: {detail}; the run stays at step {before}"
                   f"{'' if isinstance(exc, UserError) else '; details in error.log'}")
        try:
            self.store.write_error_log(f"{message}\n\n{traceback.format_exc()}")
        except (OSError, UserError):  # a full disk: the status line below still says why
            log.warning("could not write error.log of %s", self.store.path)
        try:
            self.store.write_status(state="error", phase=phase.value, step=before, total_steps=self.total_steps(),
                                    next=description_or_none(self), error=message, updated=time.time())
        except (OSError, UserError):
            log.exception("could not record the failure of step %d", number)
        return UserError(message)

    def progress(self, done: int, total: int) -> None:
        """After every training batch: a heartbeat in ``status.json`` every few seconds, then the app's hook."""
        now = time.time()
        if now - self._last_heartbeat >= HEARTBEAT_SECONDS:
            self._last_heartbeat = now
            self.write_status("running")
        if self.on_progress is not None:
            self.on_progress(done, total)

    def run_until(self, phase: Phase | str | None = None, callback=None) -> list[StepResult]:
        """Step until ``phase`` is reached (``None`` or ``done``: to the end)."""
        target = Phase(phase) if phase else Phase.DONE
        if target not in self.phases:
            raise UserError(f"phase {target.value!r} is not part of method {self.config.method!r}")
        results = []
        while not self.done and self.phase != target:
            results.append(self.step())
            if callback:
                callback(results[-1])
        return results

    def write_status(self, state: str, error: str | None = None) -> None:
        self.store.write_status(state=state, phase=self.phase.value, step=self.state.step,
                                total_steps=self.total_steps(), next=self.describe_next(), error=error,
                                updated=time.time())

    def record_error(self, message: str) -> None:
        """Mark the run as stopped by an error at its last good step."""
        self.write_status("error", error=message)

    # ------------------------------------------------------------------ checkpoint and summary
    def state_dict(self) -> dict:
        """Everything needed to continue exactly here (:func:`engine.steps.state.pack`)."""
        return run_state.pack(self.state, self.config.to_json(), len(self.given), self.nets.modules(), self.rng,
                              self.generator)

    def load_state_dict(self, data: dict, source: str = "checkpoint") -> None:
        """Restore :meth:`state_dict`; :class:`UserError` naming ``source`` if it does not fit this run."""
        self.state = run_state.unpack(data, self.config.to_json(), len(self.given), self.nets.modules(), self.rng,
                                      self.generator, source)
        self.nets.forget()

    def summary(self) -> dict:
        """``summary.json``'s fields (:func:`summary_of`)."""
        return summary_of(self)


def given_labels(config: RunConfig, dataset: Dataset) -> np.ndarray:
    """The labels the run is given: the dataset's (a label file), else its truth with the config's noise."""
    if dataset.train_given is not None:
        return dataset.train_given.astype(np.int64)
    if dataset.train_true is None:
        raise UserError(f"dataset {dataset.name!r} has neither given nor true labels")
    spec = parse_noise_spec(config.noise)
    if spec.kind == "instance" and dataset.streamed:
        raise UserError(f"noise {config.noise!r} reads every image's pixels, and dataset {dataset.name!r} streams "
                        "its images from files; valid: symmetric, pairflip, asym or matrix noise, a label file, or "
                        "the folder in memory (?stream=0)")
    noise_rng = np.random.default_rng([config.seed, 1])  # same noise for every method
    return apply_noise(dataset.train_true, spec, dataset.num_classes, noise_rng, inputs=dataset.train_x,
                       class_names=dataset.class_names)


def holdout_mask(config: RunConfig, n: int) -> np.ndarray:
    """The teacher's held-out samples (N,): its early stopping's judge, drawn from the run's seed."""
    mask = np.zeros(n, dtype=bool)
    count = int(round(config.schedule.teacher_holdout * n))
    mask[np.random.default_rng([config.seed, 2]).permutation(n)[:count]] = True
    return mask


def summary_of(run: Run) -> dict:
    """``summary.json``'s fields (:data:`engine.rundir.fields.SUMMARY_FIELDS`), from the run's last metrics line,
    its networks and its state."""
    metrics = run.store.metrics()
    last = metrics[-1] if metrics else {}
    stage0 = next((m for m in metrics if m.get("phase") == "propagate"), {})
    nets, cfg = run.nets, run.config
    distils = cfg.method != "ce"
    return fields.summary(
        method=cfg.method, dataset=cfg.dataset, noise=cfg.noise, seed=cfg.seed, steps=run.state.step,
        given_label_precision=last.get("given_label_precision"),
        refined_label_precision=last.get("refined_label_precision"),
        student_test_accuracy=nets.test_accuracy(nets.student),
        teacher_test_accuracy=nets.test_accuracy(nets.teacher) if distils else None,
        awe_auroc=last.get("awe_auroc"), awe_std=last.get("awe_std"),
        noise_rate_estimate=run.state.noise_rate_estimate,
        noise_rate_low=stage0.get("noise_rate_low"), noise_rate_high=stage0.get("noise_rate_high"),
        estimate_informative=stage0.get("estimate_informative"),
        estimate_confused=stage0.get("estimate_confused"),
        relabel_rule=cfg.relabel_rule, given_precision_estimate=last.get("given_precision_estimate"),
        refined_precision_estimate=last.get("refined_precision_estimate"),
        refined_precision_low=last.get("refined_precision_low"),
        refined_precision_high=last.get("refined_precision_high"),
        noise_rate_true=None if run.true is None else float(np.mean(run.given != run.true)),
        **_audit_summary(run),
        teacher_best_epoch=run.state.best_teacher_epoch if distils else None,
        teacher=nets.teacher_arch, student=nets.student_arch, **nets.parameters(),
        wall_seconds=run.state.wall_seconds, device=str(run.device), without=list(cfg.without),
        warnings=run_warnings(run.store), test_labels=run.test_labels())


def _audit_summary(run: Run) -> dict:
    """The random audit's counts of the rate and of the last refined labels (whatever the rule and the size)."""
    empty = dict(audit_size=0, audit_rate=None, audit_rate_low=None, audit_rate_high=None, audit_precision=None,
                 audit_precision_low=None, audit_precision_high=None, audit_change=None)
    if not run.store.audit_path.exists():
        return empty
    labels, left_out = AuditStore(run.store.path, run.dataset.num_classes).audit_labels(len(run.given))
    audit = audit_of(labels, run.given, left_out)
    if audit.size == 0:
        return empty
    rate, precision = audit.rate(), audit.precision(run.state.refined)
    return dict(audit_size=audit.size, audit_rate=rate.value, audit_rate_low=rate.low, audit_rate_high=rate.high,
                audit_precision=precision.value, audit_precision_low=precision.low,
                audit_precision_high=precision.high, audit_change=audit.change(run.given, run.state.refined).verdict)


def _decided(config: RunConfig, dataset: Dataset, device: torch.device) -> RunConfig:
    """``config`` with what its data and device decide, recorded in ``config.json``: a default pair of
    torchvision networks (photos) named, so their ImageNet weights are asked for, never silently left
    out; a torchvision teacher's mode (:func:`engine.method.config.resolve_teacher_mode`)."""
    if config.teacher is None:
        teacher, student = default_pair(dataset.kind, dataset.input_shape)
        if is_torchvision(teacher):
            config = config.with_changes(teacher=teacher, student=config.student or student)
    return resolve_teacher_mode(config, cuda=device.type == "cuda")


def _release(store: RunStore, held: list) -> None:
    if held[0]:
        held[0] = False
        store.unlock()


def description_or_none(run: Run) -> str | None:
    try:
        return run.describe_next()
    except Exception:  # noqa: BLE001 - a status line never hides the failure it reports
        return None


def _check_finite(metrics: dict) -> None:
    """A loss that is NaN or infinite fails the step (before anything of it is written)."""
    bad = {k: v for k, v in metrics.items()
           if "loss" in k and isinstance(v, (float, np.floating)) and not np.isfinite(v)}
    if bad:
        name, value = next(iter(bad.items()))
        raise UserError(f"the loss became {value} ({name}); the learning rate may be too high: lower --lr "
                        "(or --teacher-lr in the teacher's phase)")


def _clean(metrics: dict) -> dict:
    """JSON-safe scalars: numpy types to Python, NaN to None."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, (np.floating, float)):
            v = None if np.isnan(v) else float(v)
        elif isinstance(v, (np.integer,)):
            v = int(v)
        elif isinstance(v, (np.bool_,)):
            v = bool(v)
        out[k] = v
    return out

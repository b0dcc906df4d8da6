"""The step machine: a run moves through phases and ``step()`` does one unit
of work (one epoch, or the one propagation) and writes one snapshot.

The same ``step()`` drives the CLI, the tests and the app. The phase table
(what one step of each phase is) lives in :mod:`engine.steps.phases`, the label rules in :mod:`engine.method.refinery`, the
snapshot format in :mod:`engine.rundir.snapshot`; this module only sequences them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..steps import checkpoint as ckpt
from ..steps import phases as plan
from ..method import refinery
from ..rundir import snapshot
from ..method.ambiguity import (WeightNet, centre_similarity, class_centres, label_centre_weight,
                        predict_weights, train_weight_net)
from ..method.config import RunConfig, check_runnable
from ..data import Dataset, dataset_for_config
from ..device import default_device
from ..errors import UserError
from ..data.features import linear_head_predictions, load_teacher_features
from ..method.graph import Graph, build_graph, neighbour_vote_agreement
from ..rundir.health import run_warnings
from ..method.metrics import label_metrics
from ..models import build_model, default_pair, parameter_count
from ..method.noise import apply_noise, estimate_noise_rate, parse_noise_spec
from .phases import PHASES, Phase
from ..method.propagate import propagate
from ..rundir.review import ReviewStore
from ..method.select import loss_cutoff, small_loss_mask
from ..rundir.store import RunStore, atomic_write_text
from ..method.training import Outputs, cosine_lr, forward_all, make_optimizer, set_lr, student_epoch, train_epoch

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


@dataclass
class _State:
    """Everything a checkpoint must hold beyond the models and optimisers."""

    phase: Phase
    step: int = 0  # steps done
    phase_epoch: int = 0  # steps done in the current phase
    student_epoch: int = 0
    teacher_epoch: int = 0
    refined: np.ndarray | None = None
    noise_rate_estimate: float | None = None
    best_holdout: float = -1.0
    bad_epochs: int = 0
    best_teacher_epoch: int = 0
    teacher_stopped: bool = False
    best_teacher_state: dict | None = field(default=None, repr=False)
    wall_seconds: float = 0.0


class Run:
    """One AML-KD (or baseline) run bound to a run directory."""

    def __init__(self, store: RunStore, config: RunConfig, dataset: Dataset | None = None,
                 device: torch.device | None = None):
        self.store, self.config = store, config
        self.device = device or default_device()
        self.dataset = dataset or dataset_for_config(config)
        self._check_config()
        self.rng = np.random.default_rng(config.seed)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.true = self.dataset.train_true
        self.given = self._given_labels()
        self.holdout = self._holdout_mask()
        self._build_models()
        self.external_features, self.external_pred = (
            load_teacher_features(config.teacher_features, self.dataset.keys()) if config.teacher_features
            else (None, None))
        self.state = _State(phase=plan.first_phase(config), refined=self.given.copy())
        self._student_cache: Outputs | None = None
        self._teacher_cache: Outputs | None = None
        self._teacher_graph: Graph | None = None
        #: Optional ``fn(done, total)`` called after every training batch (the app's progress bar).
        self.on_progress = None
        self._failed = False  # a step raised: this object's state is no longer the run's
        self._last_heartbeat = time.time()
        self.reviews = ReviewStore(store.path, num_classes=self.dataset.num_classes)

    # ------------------------------------------------------------------ set-up
    @classmethod
    def create(cls, out: str | Path, config: RunConfig, force: bool = False,
               dataset: Dataset | None = None, device: torch.device | None = None,
               keep_reviews: bool = False) -> Run:
        """Start a new run in ``out`` (refused if it holds one, unless ``force``).

        Replacing a run (``force``) sets its review log aside
        (``reviews-old-N.sqlite``, in :attr:`reviews_set_aside`), so the new run
        never trains on another run's decisions; ``keep_reviews`` keeps it
        instead, only when the new run has the very same samples and given labels.
        """
        store = RunStore(out)
        if store.exists() and not force:
            store.create(config, force=False)  # raises the clear error
        run = cls(store, config, dataset, device)  # validate before touching the directory
        if config.labels:
            from ..data.labels import labels_with_noise_problem

            problem = labels_with_noise_problem(config.labels, config.noise)
            if problem:
                raise UserError(problem)
        if config.teacher_checkpoint:
            ckpt.load_teacher(run.teacher, config.teacher_checkpoint)  # a bad file fails here, not at step 1
        run.reviews_set_aside = None
        if store.exists() and store.reviews_path.exists():
            if keep_reviews:
                run._check_same_samples()
            else:
                run.reviews_set_aside = store.set_reviews_aside()
        store.create(config, force=force)
        run._write_static_files()
        return run

    def _write_static_files(self) -> None:
        """What a new run directory holds besides its config: samples, skipped inputs, status."""
        true = self.true if self.true is not None else np.full(len(self.given), -1)
        self.store.write_skipped(self.dataset.skipped)
        self.store.write_dataset(given=self.given, true=true, keys=np.array(self.dataset.keys()), holdout=self.holdout,
                                 class_names=np.array([str(c) for c in self.dataset.class_names]),
                                 test_labels=np.array(self.test_labels() or "none"))
        self._write_status("idle")

    def _check_same_samples(self) -> None:
        """Refuse to keep a review log made for other samples or other given labels."""
        try:
            old = self.store.dataset_arrays()
            same = (np.array_equal(old["keys"], np.array(self.dataset.keys()))
                    and np.array_equal(old["given"], self.given))
        except (UserError, KeyError):
            same = False
        if not same:
            raise UserError(f"--keep-reviews: the decisions in {str(self.store.reviews_path)!r} were made for other "
                            "samples or given labels than this run's; leave out --keep-reviews to set them aside")

    @classmethod
    def open(cls, path: str | Path, device: torch.device | None = None) -> Run:
        """Open a run directory where its last checkpoint left it."""
        store = RunStore(path)
        config = store.config()
        run = cls(store, config, device=device)
        if not store.dataset_path.exists():  # killed while being created: finish creating it
            run._write_static_files()
        if store.checkpoint_path.exists():
            ckpt.load(run, store.checkpoint_path)
        elif max(store.steps(), default=0) > 1 or len(store.metrics()) > 1:
            raise UserError(f"run {str(path)!r} has {len(store.steps())} snapshots but no checkpoint.pt; it cannot "
                            "be resumed (restore checkpoint.pt, or create the run again)")
        # else: killed within the first step, before its checkpoint: start again from step 0, as created
        damaged = [n for n in store.damaged_metrics()]
        if damaged:
            raise UserError(f"{str(store.metrics_path)!r} line {damaged[0]} is damaged (not a JSON object with a "
                            "step); restore the file, or delete that line to drop its step's metrics, then resume")
        store.truncate_after(run.state.step)
        store.remove_temporary_files()
        if run.done and not _summary_readable(store):  # killed before it was written, or damaged since
            store.write_summary(run.summary())
        run._write_status("done" if run.done else "idle")
        return run

    def _check_config(self) -> None:
        problems = check_runnable(self.config, self.dataset.num_train, self.dataset.num_classes, self.dataset.name)
        if problems:
            raise UserError("; ".join(problems))

    def _given_labels(self) -> np.ndarray:
        if self.dataset.train_given is not None:
            return self.dataset.train_given.astype(np.int64)
        if self.true is None:
            raise UserError(f"dataset {self.dataset.name!r} has neither given nor true labels")
        spec = parse_noise_spec(self.config.noise)
        noise_rng = np.random.default_rng([self.config.seed, 1])  # same noise for every method
        return apply_noise(self.true, spec, self.dataset.num_classes, noise_rng,
                           inputs=self.dataset.train_x, class_names=self.dataset.class_names)

    def _holdout_mask(self) -> np.ndarray:
        n, frac = len(self.given), self.config.schedule.teacher_holdout
        mask = np.zeros(n, dtype=bool)
        mask[np.random.default_rng([self.config.seed, 2]).permutation(n)[: int(round(frac * n))]] = True
        return mask

    def _build_models(self) -> None:
        ds, cfg = self.dataset, self.config
        teacher_arch, student_arch = default_pair(ds.kind, ds.input_shape)
        self.teacher_arch = cfg.teacher or teacher_arch
        self.student_arch = cfg.student or student_arch
        torch.manual_seed(cfg.seed)
        self.teacher = build_model(self.teacher_arch, ds.input_shape, ds.num_classes, ds.kind).to(self.device)
        self.student = build_model(self.student_arch, ds.input_shape, ds.num_classes, ds.kind).to(self.device)
        self.opt_teacher = make_optimizer(self.teacher, cfg.train)
        self.opt_student = make_optimizer(self.student, cfg.train)
        self.weight_net = WeightNet(ds.num_classes)
        self.opt_weight = torch.optim.Adam(self.weight_net.parameters(), lr=cfg.train.awe_lr)
        self.x = torch.as_tensor(ds.train_x, device=self.device)
        self.x_test = torch.as_tensor(ds.test_x, device=self.device)
        self.given_t = torch.as_tensor(self.given, device=self.device)

    # ------------------------------------------------------------------ public API
    @property
    def phase(self) -> Phase:
        return self.state.phase

    @property
    def done(self) -> bool:
        return self.state.phase == Phase.DONE

    @property
    def phases(self) -> tuple[Phase, ...]:
        return PHASES[self.config.method]

    def phase_length(self, phase: Phase) -> int:
        return plan.phase_length(self.config, phase)

    def describe_next(self) -> str:
        """One sentence a student can follow: what the next step will do."""
        return plan.describe_next(self.config, self.phase, self.state.phase_epoch)

    def step(self) -> StepResult:
        """Do one unit of work, write its snapshot, metrics and checkpoint."""
        if self.done:
            raise UserError("the run is finished; there is no next step")
        if self._failed:
            raise UserError(f"a step of run {str(self.store.path)!r} failed; open the run again to continue from its "
                            "last good step")
        started = time.perf_counter()
        phase, description = self.phase, self.describe_next()
        self._write_status("running")
        try:
            arrays, metrics = HANDLERS[phase](self)
            _check_finite(metrics)
        except Exception as exc:  # noqa: BLE001 - any failure of a step leaves the run at its last good step
            raise self._step_failed(phase, exc) from None
        self.state.step += 1
        self.state.phase_epoch += 1
        metrics.update(step=self.state.step, phase=phase.value, phase_epoch=self.state.phase_epoch)
        self._advance()
        metrics["step_seconds"] = time.perf_counter() - started
        self.state.wall_seconds += metrics["step_seconds"]
        snapshot.validate(arrays, phase.value)
        self.store.write_step(self.state.step, arrays, _clean(metrics))
        ckpt.save(self, self.store.checkpoint_path)
        if self.done:
            self.store.write_summary(self.summary())
        self._write_status("done" if self.done else "idle")
        return StepResult(self.state.step, phase, self.state.phase_epoch, metrics, description)

    def _step_failed(self, phase: Phase, exc: Exception) -> UserError:
        """Record a failed step: ``status.json`` says error, ``error.log`` has the details."""
        import traceback

        self._failed = True
        number = self.state.step + 1
        detail = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        if not isinstance(exc, UserError):
            detail = f"{type(exc).__name__}: {detail}"
            if not all(torch.isfinite(p).all() for m in (self.teacher, self.student) for p in m.parameters()):
                detail += " (the network's weights are no longer finite: lower --lr or --teacher-lr)"
        message = (f"step {number} ({phase.value}) failed: {detail}; the run stays at step {self.state.step}"
                   f"{'' if isinstance(exc, UserError) else '; details in error.log'}")
        try:
            atomic_write_text(self.store.error_log_path, f"{message}\n\n{traceback.format_exc()}")
            self._write_status("error", error=message)
        except OSError:
            log.exception("could not record the failure of step %d", number)
        return UserError(message)

    def _progress(self, done: int, total: int) -> None:
        """After every training batch: a heartbeat in ``status.json`` every few seconds, then the app's hook."""
        now = time.time()
        if now - self._last_heartbeat >= HEARTBEAT_SECONDS:
            self._last_heartbeat = now
            self._write_status("running")
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

    def total_steps(self) -> int:
        """Steps done plus steps left (the teacher's count is an upper bound
        until early stopping ends its phase)."""
        return plan.total_steps(self.config, self.phase, self.state.phase_epoch, self.state.step)

    # ------------------------------------------------------------------ phases
    def _advance(self) -> None:
        s = self.state
        finished = s.phase_epoch >= self.phase_length(s.phase)
        if s.phase == Phase.TEACHER and s.teacher_stopped:
            finished = True
        if not finished:
            return
        if s.phase == Phase.TEACHER:
            self._finish_teacher()
        s.phase, s.phase_epoch = plan.following_phase(self.config, s.phase), 0

    def review_clamps(self) -> tuple[np.ndarray, np.ndarray]:
        """Reviewers' decisions, read afresh every step: clamped labels (N,),
        -1 where none, and the outlier mask (N,)."""
        n = len(self.given)
        if not self.reviews.path.exists():
            return np.full(n, -1, dtype=np.int64), np.zeros(n, dtype=bool)
        return self.reviews.clamps(n)

    def _teacher_step(self):
        cfg, s = self.config, self.state
        t0 = time.perf_counter()
        if cfg.teacher_checkpoint:
            ckpt.load_teacher(self.teacher, cfg.teacher_checkpoint)
            s.teacher_stopped = True
            extra = {"teacher_source": "checkpoint"}
        else:
            set_lr(self.opt_teacher, cosine_lr(cfg.train.teacher_lr, s.teacher_epoch, cfg.schedule.teacher_epochs))
            train_idx = torch.as_tensor(np.flatnonzero(~self.holdout), device=self.device)
            losses = train_epoch(self.teacher, self.opt_teacher, self.x[train_idx], self.given_t[train_idx],
                                 cfg.train, self.generator, self.dataset.augment, self._progress)
            s.teacher_epoch += 1
            extra = {"teacher_loss": losses["loss_ce"], **self._early_stop()}
        out = forward_all(self.teacher, self.x)
        self._teacher_cache = out
        metrics = {"teacher_test_accuracy": self._test_accuracy(self.teacher),
                   "teacher_train_accuracy": _acc(out.pred, self.true), "train_seconds": time.perf_counter() - t0,
                   **extra, **label_metrics(self.given, self.state.refined, self.true)}
        arrays = self._arrays(teacher=out, features=out.features)
        return arrays, metrics

    def _early_stop(self) -> dict:
        s, sched = self.state, self.config.schedule
        if not self.holdout.any():
            return {"teacher_holdout_accuracy": None}
        out = forward_all(self.teacher, self.x[torch.as_tensor(np.flatnonzero(self.holdout), device=self.device)])
        acc = float(np.mean(out.pred == self.given[self.holdout]))
        if acc > s.best_holdout:
            s.best_holdout, s.bad_epochs, s.best_teacher_epoch = acc, 0, s.teacher_epoch
            s.best_teacher_state = {k: v.detach().clone() for k, v in self.teacher.state_dict().items()}
        else:
            s.bad_epochs += 1
        s.teacher_stopped = s.bad_epochs >= sched.teacher_patience
        return {"teacher_holdout_accuracy": acc, "teacher_best_epoch": s.best_teacher_epoch,
                "teacher_early_stopped": s.teacher_stopped}

    def _finish_teacher(self) -> None:
        """Restore the teacher's best held-out epoch and freeze its features and graph."""
        if self.state.best_teacher_state is not None:
            self.teacher.load_state_dict(self.state.best_teacher_state)
        self._teacher_cache = None
        self.store.write_teacher_features(self.teacher_outputs().features)
        self.store.write_teacher_outputs(features=self.graph_features().astype(np.float32),
                                         pred=self.stage0_predictions(), keys=np.array(self.dataset.keys()))
        if "stage0" in self.config.without:  # no propagation to estimate r from: the teacher's disagreement
            self.state.noise_rate_estimate = estimate_noise_rate(self.given, self.teacher_outputs().pred)

    def teacher_outputs(self) -> Outputs:
        if self._teacher_cache is None:
            self._teacher_cache = forward_all(self.teacher, self.x)
        return self._teacher_cache

    def graph_features(self) -> np.ndarray:
        """Features of the teacher's graph: the teacher network's, or the ones given (``--teacher-features``)."""
        return self.teacher_outputs().features if self.external_features is None else self.external_features

    def teacher_graph(self) -> Graph:
        if self._teacher_graph is None:
            self._teacher_graph = build_graph(self.graph_features(), self.config.graph)
        return self._teacher_graph

    def stage0_predictions(self) -> np.ndarray:
        """Stage 0's seed classes: the teacher's predictions; with features from elsewhere, the file's
        predictions, else a linear head's out-of-fold predictions on those features (engine.data.features)."""
        if self.external_features is None:
            return self.teacher_outputs().pred
        if self.external_pred is None:  # computed once: deterministic for the run's seed
            self.external_pred = linear_head_predictions(self.external_features, self.given,
                                                         self.dataset.num_classes, self.config.seed)
        return self.external_pred

    def student_outputs(self) -> Outputs:
        if self._student_cache is None:
            self._student_cache = forward_all(self.student, self.x)
        return self._student_cache

    def _propagate_step(self):
        t0 = time.perf_counter()
        teacher = self.teacher_outputs()
        graph = self.teacher_graph()
        t_graph = time.perf_counter() - t0
        clamped, outliers = self.review_clamps()
        seeds = refinery.stage0_seeds(self.stage0_predictions(), self.dataset.num_classes, clamped, outliers)
        result = propagate(graph.normalized, seeds.matrix(self.dataset.num_classes), self.config.propagation)
        refined = refinery.stage0_relabel(self.given, result, self.config.noise_rate,
                                          self.config.train.keep_least_confident, clamped).labels
        self.state.refined = refined
        self.state.noise_rate_estimate = estimate_noise_rate(self.given, result.labels)
        metrics = {"graph_seconds": t_graph, "lp_seconds": time.perf_counter() - t0 - t_graph,
                   "lp_iterations": result.iterations, "graph_source": "teacher",
                   "teacher_test_accuracy": self._test_accuracy(self.teacher),
                   **_review_metrics(clamped, outliers), **label_metrics(self.given, refined, self.true)}
        arrays = self._arrays(teacher=teacher, features=self.graph_features(), graph=graph, lp=result,
                              clamped=clamped, outliers=outliers, seeds=seeds)
        return arrays, metrics

    def _student_train(self, targets: np.ndarray, mode: str, weights: np.ndarray | None = None,
                       train_mask: np.ndarray | None = None) -> dict:
        """One student epoch; samples outside ``train_mask`` (reviewed outliers) sit it out."""
        cfg = self.config
        set_lr(self.opt_student, cosine_lr(cfg.train.lr, self.state.student_epoch, cfg.schedule.student_epochs))
        t0 = time.perf_counter()
        x = self.x
        if train_mask is not None and not train_mask.all():
            keep = np.flatnonzero(train_mask)
            x, targets = x[torch.as_tensor(keep, device=self.device)], targets[keep]
            weights = None if weights is None else weights[keep]
        losses = student_epoch(
            self.student, self.teacher, self.opt_student, x, torch.as_tensor(targets, device=self.device),
            cfg.train, mode, self.rng, self.generator,
            None if weights is None else torch.as_tensor(weights, device=self.device), self.dataset.augment,
            self._progress)
        self.state.student_epoch += 1
        self._student_cache = None
        return {**losses, "train_seconds": time.perf_counter() - t0}

    def _warmup_step(self):
        clamped, outliers = self.review_clamps()
        self.state.refined = np.where(clamped >= 0, clamped, self.state.refined)
        metrics = self._student_train(self.state.refined, "warmup", train_mask=~outliers)
        metrics.update(_review_metrics(clamped, outliers))
        return self._student_snapshot(metrics, clamped=clamped, outliers=outliers)

    def _plain_student_step(self):
        """Baselines train on the given labels, with reviewers' decisions applied."""
        mode = "kd" if self.config.method == "kd" else "ce"
        clamped, outliers = self.review_clamps()
        targets = np.where(clamped >= 0, clamped, self.given)
        self.state.refined = targets
        metrics = self._student_train(targets, mode, train_mask=~outliers)
        metrics.update(_review_metrics(clamped, outliers))
        return self._student_snapshot(metrics, clamped=clamped, outliers=outliers)

    def _refine_step(self):
        return self._refinery(mutual=False)

    def _mutual_step(self):
        return self._refinery(mutual=True)

    def noise_rate(self) -> float:
        """r for small-loss selection: given in the config, else the stage-0 estimate."""
        if self.config.noise_rate is not None:
            return self.config.noise_rate
        return self.state.noise_rate_estimate or 0.0

    def _refinery(self, mutual: bool):
        """Stage 1 (``mutual=False``) or stage 2: select, weigh, propagate, train."""
        t0 = time.perf_counter()
        C = self.dataset.num_classes
        before = self.student_outputs()
        selection_loss = before.loss(self.given)
        keep_fraction = 1.0 - self.noise_rate()
        easy = small_loss_mask(selection_loss, keep_fraction)
        clamped, outliers = self.review_clamps()  # reviewed labels count as easy, fixed seeds
        working, easy, awe_target = refinery.small_loss_working(self.given, before.pred, easy, clamped)
        similarity = centre_similarity(before.features, class_centres(before.features, working, C))
        use_awe = "awe" not in self.config.without
        awe_loss = train_weight_net(self.weight_net, self.opt_weight, similarity, self.given, awe_target,
                                    self.config.train.awe_iterations) if use_awe else None
        uniform = np.ones(len(self.given), np.float32)
        t_select = time.perf_counter() - t0
        graph, graph_choice = self.teacher_graph(), {}
        if mutual and self.state.phase_epoch % 2 == 0:  # the student's turn, if its graph is as good
            student_graph = build_graph(before.features, self.config.graph)
            graph_choice = {f"graph_agreement_{name}": neighbour_vote_agreement(g, working, easy, C)
                            for name, g in (("student", student_graph), ("teacher", graph))}
            if graph_choice["graph_agreement_student"] >= graph_choice["graph_agreement_teacher"]:
                graph = student_graph
        use_student_graph = graph is not self._teacher_graph
        if mutual:
            seed_weights = label_centre_weight(similarity, working)
        else:
            seed_weights = predict_weights(self.weight_net, similarity, working) if use_awe else uniform
        t1 = time.perf_counter()
        seeds, working, easy, train_mask = refinery.refine_seeds(working, easy, seed_weights, C, clamped, outliers)
        result = propagate(graph.normalized, seeds.matrix(C), self.config.propagation)
        refined = refinery.refine_relabel(working, easy, result, clamped).labels
        t_lp = time.perf_counter() - t1
        weights = predict_weights(self.weight_net, similarity, refined) if use_awe else uniform
        weights_given = predict_weights(self.weight_net, similarity, self.given) if use_awe else None
        self.state.refined = refined
        metrics = self._student_train(refined, "refine", weights, train_mask=train_mask)
        metrics.update(_review_metrics(clamped, outliers))
        metrics.update(graph_choice)
        metrics.update(select_seconds=t_select, lp_seconds=t_lp, awe_loss=awe_loss,
                       graph_source="student" if use_student_graph else "teacher",
                       noise_rate_used=self.noise_rate(),
                       loss_cutoff=loss_cutoff(selection_loss, keep_fraction))
        arrays, metrics = self._student_snapshot(metrics, graph=graph, lp=result, easy=easy, working=working,
                                                 weights=weights, weights_given=weights_given,
                                                 selection_loss=selection_loss, student_features=before.features,
                                                 clamped=clamped, outliers=outliers, seeds=seeds)
        return arrays, metrics

    def _student_snapshot(self, metrics: dict, graph: Graph | None = None, lp=None, easy=None, working=None,
                          weights=None, weights_given=None, selection_loss=None, student_features=None,
                          clamped=None, outliers=None, seeds=None):
        t0 = time.perf_counter()
        after = self.student_outputs()
        teacher = self.teacher_outputs() if self.config.method != "ce" else None
        metrics.update(
            student_test_accuracy=self._test_accuracy(self.student),
            student_train_accuracy=_acc(after.pred, self.true),
            teacher_test_accuracy=self._test_accuracy(self.teacher) if teacher is not None else None,
            noise_rate_estimate=self.state.noise_rate_estimate,
            **label_metrics(self.given, self.state.refined, self.true, weights_given, easy))
        if graph is None:
            graph = self.teacher_graph() if teacher is not None else build_graph(after.features, self.config.graph)
            metrics.setdefault("graph_source", "teacher" if teacher is not None else "student")
        arrays = self._arrays(teacher=teacher, student=after, graph=graph, lp=lp, easy=easy, working=working,
                              weights=weights, weights_given=weights_given, selection_loss=selection_loss,
                              features=after.features if student_features is None else student_features,
                              clamped=clamped, outliers=outliers, seeds=seeds)
        metrics["eval_seconds"] = time.perf_counter() - t0
        return arrays, metrics

    # ------------------------------------------------------------------ snapshots
    def _arrays(self, **parts) -> dict:
        """This step's snapshot (:func:`engine.rundir.snapshot.pack`)."""
        return snapshot.pack(self.state.refined, given=self.given, **parts)

    def test_labels(self) -> str | None:
        """What test accuracies are measured against: ``"truth"``, ``"given"`` (a label file's labels of the
        held-out images, without a truth column: agreement, not accuracy), or None (no test set)."""
        if self.dataset.test_true is None or not (np.asarray(self.dataset.test_true) >= 0).any():
            return None
        return self.dataset.test_labels

    def _test_accuracy(self, model) -> float | None:
        """Accuracy on the test samples whose label is known (None without any)."""
        true = self.dataset.test_true
        if true is None or not (np.asarray(true) >= 0).any():
            return None
        known = np.asarray(true) >= 0
        return float(np.mean(forward_all(model, self.x_test).pred[known] == true[known]))

    def _write_status(self, state: str, error: str | None = None) -> None:
        self.store.write_status(state=state, phase=self.phase.value, step=self.state.step,
                                total_steps=self.total_steps(), next=self.describe_next(), error=error,
                                updated=time.time())

    def record_error(self, message: str) -> None:
        """Mark the run as stopped by an error at its last good step."""
        self._write_status("error", error=message)

    # ------------------------------------------------------------------ checkpoint state
    #: :class:`_State` fields saved as they are (plain Python values).
    _STATE_SCALARS = ("step", "phase_epoch", "student_epoch", "teacher_epoch", "noise_rate_estimate",
                      "best_holdout", "bad_epochs", "best_teacher_epoch", "teacher_stopped", "wall_seconds")
    _MODULES = ("teacher", "student", "opt_teacher", "opt_student", "weight_net", "opt_weight")

    def state_dict(self) -> dict:
        """Everything needed to continue exactly here: models, optimisers, RNGs, labels, counters.
        Plain tensors and Python values only (``torch.load(weights_only=True)`` reads it)."""
        s = self.state
        return {
            "config": self.config.to_json(), "num_train": len(self.given), "phase": s.phase.value,
            **{key: getattr(s, key) for key in self._STATE_SCALARS},
            "refined": torch.as_tensor(s.refined), "best_teacher_state": s.best_teacher_state,
            **{name: getattr(self, name).state_dict() for name in self._MODULES},
            "numpy_rng": _encode_rng(self.rng.bit_generator.state), "torch_rng": self.generator.get_state(),
        }

    def load_state_dict(self, data: dict, source: str = "checkpoint") -> None:
        """Restore :meth:`state_dict`; :class:`UserError` naming ``source`` if it does not fit this run."""
        if data.get("config") != self.config.to_json() or data.get("num_train") != len(self.given):
            raise UserError(f"{source} belongs to a different run (config or data differ); "
                            "it cannot resume this run directory")
        try:
            for name in self._MODULES:
                getattr(self, name).load_state_dict(data[name])
            self.rng.bit_generator.state = _decode_rng(data["numpy_rng"])
            self.generator.set_state(data["torch_rng"])
            state = _State(phase=Phase(data["phase"]), refined=data["refined"].numpy().astype(np.int64),
                           best_teacher_state=data["best_teacher_state"],
                           **{key: data[key] for key in self._STATE_SCALARS})
        except (KeyError, RuntimeError, ValueError, TypeError, AttributeError) as exc:
            raise UserError(f"{source} does not match this run: {str(exc).splitlines()[0]}") from None
        self.state = state
        self._student_cache = self._teacher_cache = self._teacher_graph = None

    # ------------------------------------------------------------------ summary
    def summary(self) -> dict:
        metrics = self.store.metrics()
        last = metrics[-1] if metrics else {}
        student_acc = self._test_accuracy(self.student)
        teacher_acc = self._test_accuracy(self.teacher) if self.config.method != "ce" else None
        true_rate = None if self.true is None else float(np.mean(self.given != self.true))
        return {
            "method": self.config.method, "dataset": self.config.dataset, "noise": self.config.noise,
            "seed": self.config.seed, "steps": self.state.step,
            "given_label_precision": last.get("given_label_precision"),
            "refined_label_precision": last.get("refined_label_precision"),
            "student_test_accuracy": student_acc, "teacher_test_accuracy": teacher_acc,
            "awe_auroc": last.get("awe_auroc"), "awe_std": last.get("awe_std"),
            "noise_rate_estimate": self.state.noise_rate_estimate, "noise_rate_true": true_rate,
            "teacher_best_epoch": self.state.best_teacher_epoch if self.config.method != "ce" else None,
            "teacher": self.teacher_arch, "student": self.student_arch,
            "teacher_parameters": parameter_count(self.teacher), "student_parameters": parameter_count(self.student),
            "wall_seconds": self.state.wall_seconds, "device": str(self.device),
            "without": list(self.config.without), "warnings": run_warnings(self.store),
            "test_labels": self.test_labels(),
        }


def _encode_rng(state: dict) -> dict:
    """numpy bit-generator state with its 128-bit integers as strings."""
    inner = {k: str(v) for k, v in state["state"].items()}
    return {"bit_generator": state["bit_generator"], "state": inner,
            "has_uint32": int(state["has_uint32"]), "uinteger": int(state["uinteger"])}


def _decode_rng(state: dict) -> dict:
    return {**state, "state": {k: int(v) for k, v in state["state"].items()}}


def _summary_readable(store: RunStore) -> bool:
    from ..rundir.runfiles import read_summary

    try:
        return read_summary(store) is not None
    except UserError:
        return False


def _check_finite(metrics: dict) -> None:
    """A loss that is NaN or infinite fails the step (before anything of it is written)."""
    bad = {k: v for k, v in metrics.items()
           if "loss" in k and isinstance(v, (float, np.floating)) and not np.isfinite(v)}
    if bad:
        name, value = next(iter(bad.items()))
        raise UserError(f"the loss became {value} ({name}); the learning rate may be too high: lower --lr "
                        "(or --teacher-lr in the teacher's phase)")


def _review_metrics(clamped: np.ndarray, outliers: np.ndarray) -> dict:
    return {"reviewed_clamped": int(np.sum(clamped >= 0)), "reviewed_outliers": int(np.sum(outliers))}


def _acc(pred: np.ndarray, true: np.ndarray | None) -> float | None:
    if true is None:
        return None
    mask = true >= 0
    return float(np.mean(pred[mask] == true[mask])) if mask.any() else None


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


HANDLERS = {
    Phase.TEACHER: Run._teacher_step,
    Phase.PROPAGATE: Run._propagate_step,
    Phase.WARMUP: Run._warmup_step,
    Phase.REFINE: Run._refine_step,
    Phase.MUTUAL: Run._mutual_step,
    Phase.STUDENT: Run._plain_student_step,
}

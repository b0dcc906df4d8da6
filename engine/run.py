"""The step machine: a run moves through phases and ``step()`` does one unit
of work (one epoch, or the one propagation) and writes one snapshot.

=========  ==============================================================
phase      one step is
=========  ==============================================================
teacher    one teacher epoch on the given labels (early-stopped on a held-out
           part of them), or loading a teacher checkpoint
propagate  stage 0: teacher-guided label propagation, once
warmup     one student epoch: CE + mixup CE + KD
refine     stage 1: small-loss selection, AWE, teacher-graph LP, student epoch
mutual     stage 2: LP on the student / teacher graph alternately, epoch
student    (baselines ``ce`` and ``kd``) one plain student epoch
done       evaluation and summary
=========  ==============================================================

The same ``step()`` drives the CLI, the tests and the app.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import numpy as np
import torch

from . import checkpoint as ckpt
from .ambiguity import (WeightNet, centre_similarity, class_centres, label_centre_weight,
                        predict_weights, train_weight_net)
from .config import RunConfig
from .data import Dataset, dataset_for_config
from .device import default_device
from .errors import UserError
from .graph import Graph, build_graph, neighbour_vote_agreement
from .metrics import label_metrics
from .models import build_model, default_pair, parameter_count
from .noise import apply_noise, estimate_noise_rate, parse_noise_spec
from .propagate import propagate, seed_matrix
from .review import ReviewStore, apply_clamps
from .select import loss_cutoff, small_loss_mask
from .store import RunStore
from .training import Outputs, cosine_lr, forward_all, make_optimizer, set_lr, student_epoch, train_epoch

log = logging.getLogger(__name__)


class Phase(str, Enum):
    TEACHER = "teacher"
    PROPAGATE = "propagate"
    WARMUP = "warmup"
    REFINE = "refine"
    MUTUAL = "mutual"
    STUDENT = "student"
    DONE = "done"


PHASES = {
    "aml-kd": (Phase.TEACHER, Phase.PROPAGATE, Phase.WARMUP, Phase.REFINE, Phase.MUTUAL, Phase.DONE),
    "kd": (Phase.TEACHER, Phase.STUDENT, Phase.DONE),
    "ce": (Phase.STUDENT, Phase.DONE),
}

NEXT_STEP_TEXT = {
    Phase.TEACHER: "Train the teacher for one epoch on the given (noisy) labels.",
    Phase.PROPAGATE: "Spread the teacher's predictions over its kNN graph and relabel every sample (stage 0).",
    Phase.WARMUP: "Warm up the student for one epoch on the propagated labels, learning from the teacher too.",
    Phase.REFINE: "Pick the small-loss samples, weigh every label by its ambiguity, propagate on the teacher's "
                  "graph, and train the student one epoch on the refined labels.",
    Phase.MUTUAL: "Refine labels on the {graph}'s graph this time, then train the student one epoch.",
    Phase.STUDENT: "Train the student for one epoch on the given labels{kd}.",
    Phase.DONE: "The run is finished: nothing left to do.",
}

TOP = 3  # classes kept per sample in snapshots


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
        self.state = _State(phase=PHASES[config.method][0], refined=self.given.copy())
        self._student_cache: Outputs | None = None
        self._teacher_cache: Outputs | None = None
        self._teacher_graph: Graph | None = None
        #: Optional ``fn(done, total)`` called after every training batch (the app's progress bar).
        self.on_progress = None
        self.reviews = ReviewStore(store.path, num_classes=self.dataset.num_classes)

    # ------------------------------------------------------------------ set-up
    @classmethod
    def create(cls, out: str | Path, config: RunConfig, force: bool = False,
               dataset: Dataset | None = None, device: torch.device | None = None) -> Run:
        """Start a new run in ``out`` (refused if it holds one, unless ``force``)."""
        store = RunStore(out)
        if store.exists() and not force:
            store.create(config, force=False)  # raises the clear error
        run = cls(store, config, dataset, device)  # validate before touching the directory
        if config.teacher_checkpoint:
            ckpt.load_teacher(run.teacher, config.teacher_checkpoint)  # a bad file fails here, not at step 1
        store.create(config, force=force)
        store.write_dataset(given=run.given, true=run.true if run.true is not None else np.full(len(run.given), -1),
                            keys=np.array(run.dataset.keys()), holdout=run.holdout)
        store.write_skipped(run.dataset.skipped)
        run._write_status("idle")
        return run

    @classmethod
    def open(cls, path: str | Path, device: torch.device | None = None) -> Run:
        """Open a run directory where its last checkpoint left it."""
        store = RunStore(path)
        config = store.config()
        run = cls(store, config, device=device)
        if store.checkpoint_path.exists():
            ckpt.load(run, store.checkpoint_path)
        elif store.steps():
            raise UserError(f"run {str(path)!r} has snapshots but no checkpoint.pt; it cannot be resumed")
        store.truncate_after(run.state.step)
        run._write_status("done" if run.done else "idle")
        return run

    def _check_config(self) -> None:
        n = self.dataset.num_train
        k = self.config.graph.k
        if k >= n:
            raise UserError(f"k={k} must be smaller than the number of training samples ({n}); valid: 1..{n - 1}")
        if self.config.method != "ce" and self.config.schedule.teacher_epochs < 1 and not self.config.teacher_checkpoint:
            raise UserError("teacher-epochs=0 needs --teacher-checkpoint; otherwise use at least 1")
        if self.dataset.num_classes < 2:
            raise UserError(f"dataset {self.dataset.name!r} has {self.dataset.num_classes} class; at least 2 are needed")

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
        s = self.config.schedule
        return {Phase.TEACHER: 1 if self.config.teacher_checkpoint else s.teacher_epochs,
                Phase.PROPAGATE: 1, Phase.WARMUP: s.warmup_epochs, Phase.REFINE: s.refine_epochs,
                Phase.MUTUAL: s.mutual_epochs, Phase.STUDENT: s.student_epochs, Phase.DONE: 0}[phase]

    def describe_next(self) -> str:
        """One sentence a student can follow: what the next step will do."""
        text = NEXT_STEP_TEXT[self.phase]
        if self.phase == Phase.MUTUAL:
            text = text.format(graph="student" if self.state.phase_epoch % 2 == 0 else "teacher")
        if self.phase == Phase.STUDENT:
            text = text.format(kd=", distilling from the teacher" if self.config.method == "kd" else "")
        if self.phase == Phase.TEACHER and self.config.teacher_checkpoint:
            text = "Load the teacher from its checkpoint."
        return text

    def step(self) -> StepResult:
        """Do one unit of work, write its snapshot, metrics and checkpoint."""
        if self.done:
            raise UserError("the run is finished; there is no next step")
        started = time.perf_counter()
        phase, description = self.phase, self.describe_next()
        self._write_status("running")
        arrays, metrics = HANDLERS[phase](self)
        self.state.step += 1
        self.state.phase_epoch += 1
        metrics.update(step=self.state.step, phase=phase.value, phase_epoch=self.state.phase_epoch)
        self._advance()
        metrics["step_seconds"] = time.perf_counter() - started
        self.state.wall_seconds += metrics["step_seconds"]
        self.store.write_step(self.state.step, arrays, _clean(metrics))
        ckpt.save(self, self.store.checkpoint_path)
        if self.done:
            self.store.write_summary(self.summary())
        self._write_status("done" if self.done else "idle")
        return StepResult(self.state.step, phase, self.state.phase_epoch, metrics, description)

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
        order = self.phases
        current = order.index(self.phase)
        left = self.phase_length(self.phase) - self.state.phase_epoch
        left += sum(self.phase_length(p) for p in order[current + 1:])
        return self.state.step + max(left, 0)

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
        order = self.phases
        i = order.index(s.phase) + 1
        while order[i] != Phase.DONE and self.phase_length(order[i]) == 0:
            i += 1
        s.phase, s.phase_epoch = order[i], 0

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
                                 cfg.train, self.generator, self.dataset.augment, self.on_progress)
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

    def teacher_outputs(self) -> Outputs:
        if self._teacher_cache is None:
            self._teacher_cache = forward_all(self.teacher, self.x)
        return self._teacher_cache

    def teacher_graph(self) -> Graph:
        if self._teacher_graph is None:
            self._teacher_graph = build_graph(self.teacher_outputs().features, self.config.graph)
        return self._teacher_graph

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
        seeds = seed_matrix(teacher.pred, self.dataset.num_classes)
        seeds, _, _, _ = apply_clamps(seeds, teacher.pred, np.zeros(len(seeds), bool), clamped, outliers)
        result = propagate(graph.normalized, seeds, self.config.propagation)
        refined = stage0_labels(self.given, result, self.config.noise_rate, self.config.train.keep_least_confident)
        refined[clamped >= 0] = clamped[clamped >= 0]
        self.state.refined = refined
        self.state.noise_rate_estimate = estimate_noise_rate(self.given, result.labels)
        metrics = {"graph_seconds": t_graph, "lp_seconds": time.perf_counter() - t0 - t_graph,
                   "lp_iterations": result.iterations, "graph_source": "teacher",
                   "teacher_test_accuracy": self._test_accuracy(self.teacher),
                   **_review_metrics(clamped, outliers), **label_metrics(self.given, refined, self.true)}
        arrays = self._arrays(teacher=teacher, features=teacher.features, graph=graph, lp=result)
        arrays.update(clamped=clamped, outlier=outliers)
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
            self.on_progress)
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
        working = np.where(easy, self.given, before.pred)
        clamped, outliers = self.review_clamps()  # reviewed labels count as easy, fixed seeds
        reviewed = clamped >= 0
        awe_target = np.where(reviewed, clamped == self.given, easy).astype(np.float32)
        working = np.where(reviewed, clamped, working)
        easy = easy | reviewed
        similarity = centre_similarity(before.features, class_centres(before.features, working, C))
        awe_loss = train_weight_net(self.weight_net, self.opt_weight, similarity, self.given, awe_target,
                                    self.config.train.awe_iterations)
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
            seed_weights = predict_weights(self.weight_net, similarity, working)
        t1 = time.perf_counter()
        seeds, working, easy, train_mask = apply_clamps(seed_matrix(working, C, seed_weights), working, easy,
                                                        clamped, outliers)
        seed_weights = seeds.sum(1)
        result = propagate(graph.normalized, seeds, self.config.propagation)
        refined = np.where(easy, working, result.labels)
        t_lp = time.perf_counter() - t1
        weights = predict_weights(self.weight_net, similarity, refined)
        weights_given = predict_weights(self.weight_net, similarity, self.given)
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
                                                 clamped=clamped, outliers=outliers)
        arrays["seed_weight"] = seed_weights.astype(np.float32)
        return arrays, metrics

    def _student_snapshot(self, metrics: dict, graph: Graph | None = None, lp=None, easy=None, working=None,
                          weights=None, weights_given=None, selection_loss=None, student_features=None,
                          clamped=None, outliers=None):
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
                              features=after.features if student_features is None else student_features)
        if clamped is not None:
            arrays.update(clamped=clamped, outlier=outliers)
        metrics["eval_seconds"] = time.perf_counter() - t0
        return arrays, metrics

    def _done_step(self):  # never dispatched: DONE has no steps
        raise UserError("the run is finished")

    # ------------------------------------------------------------------ snapshots
    def _arrays(self, teacher: Outputs | None = None, student: Outputs | None = None, graph: Graph | None = None,
                lp=None, easy=None, working=None, weights=None, weights_given=None, selection_loss=None,
                features=None) -> dict:
        n = len(self.given)
        nan = np.full(n, np.nan, dtype=np.float32)
        minus = np.full(n, -1, dtype=np.int64)
        arrays = {"refined": self.state.refined, "working": minus if working is None else working,
                  "easy": np.zeros(n, bool) if easy is None else easy,
                  "weight": nan if weights is None else weights,
                  "weight_given": nan if weights_given is None else weights_given,
                  "selection_loss": nan if selection_loss is None else selection_loss}
        for name, out in (("teacher", teacher), ("student", student)):
            arrays[f"{name}_loss"] = nan if out is None else out.loss(self.given)
            arrays[f"{name}_pred"] = minus if out is None else out.pred
            if out is not None:
                probs = out.probs()
                top = np.argsort(-probs, axis=1, kind="stable")[:, :TOP]
                arrays[f"{name}_top"] = top.astype(np.int16)
                arrays[f"{name}_prob"] = np.take_along_axis(probs, top, 1).astype(np.float16)
        if lp is not None:
            top = np.argsort(-lp.scores, axis=1, kind="stable")[:, :TOP]
            arrays.update(lp_top_classes=top.astype(np.int16),
                          lp_top_scores=np.take_along_axis(lp.scores, top, 1).astype(np.float16),
                          lp_confidence=lp.confidence.astype(np.float32), lp_labels=lp.labels)
        if graph is not None:
            arrays.update(neighbor_idx=graph.neighbor_idx.astype(np.int32),
                          neighbor_sim=graph.neighbor_sim.astype(np.float16))
        if features is not None:
            arrays["features"] = features.astype(np.float16)
        return arrays

    def _test_accuracy(self, model) -> float | None:
        if self.dataset.test_true is None or len(self.dataset.test_true) == 0:
            return None
        return forward_all(model, self.x_test).accuracy(self.dataset.test_true)

    def _write_status(self, state: str, error: str | None = None) -> None:
        self.store.write_status(state=state, phase=self.phase.value, step=self.state.step,
                                total_steps=self.total_steps(), next=self.describe_next(), error=error,
                                updated=time.time())

    def record_error(self, message: str) -> None:
        """Mark the run as stopped by an error at its last good step."""
        self._write_status("error", error=message)

    # ------------------------------------------------------------------ summary
    def summary(self) -> dict:
        last = self.store.metrics()[-1] if self.store.metrics() else {}
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
        }


def stage0_labels(given: np.ndarray, result, noise_rate: float | None, keep_least_confident: float) -> np.ndarray:
    """Stage 0's labels from the teacher-guided propagation ``result``.

    Noise rate unknown (the authors' rule): every sample takes the propagated
    label except the ``keep_least_confident`` fraction with the least confident
    propagation, which keeps its given label. Noise rate ``r`` known: only the
    ``r`` fraction whose given label the propagation supports least (lowest
    score) may change, to the propagated label; the rest keep their given
    label. The second is stage 1's small-loss rule with propagation scores for
    losses: a teacher weaker than the given labels (asymmetric noise, a small
    CPU teacher) cannot overwrite more labels than are wrong.
    """
    n = len(given)
    if noise_rate is None:
        refined = result.labels.copy()
        keep = np.argsort(result.confidence, kind="stable")[:int(round(keep_least_confident * n))]
        refined[keep] = given[keep]
        return refined
    support = result.scores[np.arange(n), given]
    suspicious = np.argsort(support, kind="stable")[:int(round(noise_rate * n))]
    refined = given.copy()
    refined[suspicious] = result.labels[suspicious]
    return refined


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
    Phase.DONE: Run._done_step,
}

"""What one step of each phase does: the dispatch table from phase to handler.

Each handler takes the :class:`~engine.steps.run.Run`, does its phase's unit
of work (one teacher or student epoch, or the one propagation) and returns
``(arrays, metrics)``: the step's snapshot (:mod:`engine.rundir.snapshot`) and
its metrics line (:mod:`engine.rundir.fields`). The label rules are
:mod:`engine.method.refinery`'s; the solvers are the method layer's.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..method import audit as audit_rule
from ..method import refinery
from ..method.ambiguity import (centre_similarity, class_centres, label_centre_weight, predict_weights,
                                train_weight_net)
from ..method.graph import Graph, build_graph, neighbour_vote_agreement
from ..method.metrics import label_metrics
from ..method.confident import NoiseEstimate, gated_by, precision_interval
from ..method.propagate import propagate
from ..method.select import loss_cutoff, small_loss_mask
from ..method.training import ramped_lr, scheduled_lr, set_lr, student_epoch, train_epoch
from ..rundir import snapshot
from . import checkpoint as ckpt
from . import distributed
from .networks import graph_estimate
from .phases import Phase, phase_length

if TYPE_CHECKING:  # pragma: no cover
    from .run import Run


# ---------------------------------------------------------------- teacher
def teacher_step(run: Run):
    """One teacher epoch on the given labels (or: load its checkpoint)."""
    cfg, s, nets = run.config, run.state, run.nets
    t0 = time.perf_counter()
    if cfg.teacher_checkpoint:
        ckpt.load_teacher(nets.teacher, cfg.teacher_checkpoint)
        nets.settle_batch_norm(nets.teacher)  # statistics of this run's images (a no-op for this version's own)
        s.teacher_stopped = True
        extra = {"teacher_source": "checkpoint"}
    else:
        set_lr(nets.opt_teacher, scheduled_lr(cfg.train.teacher_lr, s.teacher_epoch, cfg.schedule.teacher_epochs,
                                              cfg.train.lr_schedule))
        train_idx = torch.as_tensor(np.flatnonzero(~run.holdout), device=nets.device)
        if nets.frozen:  # a head on the backbone's features, computed once (the first epoch pays for them)
            features = nets.backbone_features()[0]  # (N, D); indexed only for a hold-out (a copy of its rows)
            rows = (features, nets.given_t) if not run.holdout.any() else \
                (features[train_idx], nets.given_t[train_idx])
            losses = train_epoch(nets.head_model(), nets.opt_teacher, *rows, cfg.train, run.generator, "none",
                                 run.progress)
        elif run.group is not None:  # every process trains its part of each batch (engine.steps.distributed)
            rows = np.flatnonzero(~run.holdout)
            losses = distributed.lead_epoch(run, "teacher", run.given[rows], "ce", s.teacher_epoch, rows=rows,
                                            augment_kind=run.dataset.augment)
        else:
            losses = train_epoch(nets.teacher, nets.opt_teacher, nets.x[train_idx], nets.given_t[train_idx],
                                 cfg.train, run.generator, run.dataset.augment, run.progress)
        s.teacher_epoch += 1
        nets.settle_batch_norm(nets.teacher)  # before the hold-out's check keeps a copy of the epoch
        extra = {"teacher_loss": losses["loss_ce"], **_early_stop(run)}
        if nets.frozen:
            extra["teacher_source"] = "frozen backbone"
    nets.teacher_changed()
    out = nets.teacher_outputs()
    metrics = {"teacher_test_accuracy": nets.test_accuracy(nets.teacher),
               "teacher_train_accuracy": _accuracy(out.pred, run.true), "train_seconds": time.perf_counter() - t0,
               **extra, **label_metrics(run.given, s.refined, run.true)}
    return _pack(run, teacher=out, features=out.features), metrics


def _early_stop(run: Run) -> dict:
    """Held-out accuracy against the given labels; keep the best epoch, stop after ``patience`` worse ones.

    Without a hold-out the teacher is the one of its last epoch, and that is the epoch reported.
    """
    s, sched, nets = run.state, run.config.schedule, run.nets
    if not run.holdout.any():
        s.best_teacher_epoch = s.teacher_epoch
        return {"teacher_holdout_accuracy": None, "teacher_best_epoch": s.best_teacher_epoch}
    out = nets.teacher_outputs_of(np.flatnonzero(run.holdout))
    acc = float(np.mean(out.pred == run.given[run.holdout]))
    if acc > s.best_holdout:
        s.best_holdout, s.bad_epochs, s.best_teacher_epoch = acc, 0, s.teacher_epoch
        s.best_teacher_state = {k: v.detach().clone() for k, v in nets.teacher.state_dict().items()}
    else:
        s.bad_epochs += 1
    s.teacher_stopped = s.bad_epochs >= sched.teacher_patience
    return {"teacher_holdout_accuracy": acc, "teacher_best_epoch": s.best_teacher_epoch,
            "teacher_early_stopped": s.teacher_stopped}


def finish_teacher(run: Run) -> None:
    """Restore the teacher's best held-out epoch and freeze its features and graph."""
    nets = run.nets
    if run.state.best_teacher_state is not None:
        nets.teacher.load_state_dict(run.state.best_teacher_state)
    nets.teacher_changed()
    run.store.write_teacher_features(nets.teacher_outputs().features)
    run.store.write_teacher_outputs(features=np.asarray(nets.graph_features(), np.float32),
                                    pred=nets.stage0_predictions(), keys=np.array(run.dataset.keys()))
    if "stage0" in run.config.without:  # no stage 0 to estimate r in: estimate it here
        run.state.noise_rate_estimate = nets.teacher_estimate().rate


# ---------------------------------------------------------------- stage 0
def propagate_step(run: Run):
    """Stage 0: teacher-guided label propagation, once."""
    nets, cfg = run.nets, run.config
    t0 = time.perf_counter()
    teacher = nets.teacher_outputs()
    graph = nets.teacher_graph()
    t_graph = time.perf_counter() - t0
    clamped, outliers = run.review_clamps()
    seeds = refinery.stage0_seeds(nets.stage0_predictions(), run.dataset.num_classes, clamped, outliers)
    result = propagate(graph.normalized, seeds.matrix(run.dataset.num_classes), cfg.propagation)
    t1 = time.perf_counter()
    estimate = nets.teacher_estimate()
    t_estimate = time.perf_counter() - t1
    n = len(run.given)
    audit = run.audit()

    def relabelling(verdict=None):
        return refinery.relabel("propagate", run.given, run.given, np.zeros(n, bool), result, cfg.noise_rate,
                                cfg.train.keep_least_confident, clamped, rule=cfg.relabel_rule,
                                posterior=estimate.posterior, audit_verdict=verdict)

    refined, gate = _gated(relabelling, audit, run.given, result.confidence, clamped, _tells(estimate))
    refined = refined.labels
    run.state.refined = refined
    run.state.noise_rate_estimate = estimate.rate
    metrics = {"graph_seconds": t_graph, "lp_seconds": time.perf_counter() - t0 - t_graph - t_estimate,
               "estimate_seconds": t_estimate, "lp_iterations": result.iterations, "graph_source": "teacher",
               **_knn_metrics(graph),
               "teacher_test_accuracy": nets.test_accuracy(nets.teacher),
               "noise_rate_estimate": estimate.rate, "noise_rate_low": estimate.rate_low,
               "noise_rate_high": estimate.rate_high,
               **_review_metrics(clamped, outliers), **label_metrics(run.given, refined, run.true),
               **_precision_estimates(run, refined, estimate), **_audit_metrics(audit, gate, refined)}
    arrays = _pack(run, teacher=teacher, features=nets.graph_features(), graph=graph, lp=result,
                   clamped=clamped, outliers=outliers, seeds=seeds, posterior=estimate.posterior,
                   audit_verdict=None if gate is None else gate.verdict)
    return arrays, metrics


def _tells(estimate: NoiseEstimate) -> bool:
    """Whether the calibrated filter's changes rest on the estimate (the audit gate then weighs them), or the
    estimate could not tell noise (vague, or within the features' confusion) and the gate weighs the authors'
    proposal instead."""
    return estimate.informative and not estimate.confused


def _gated(relabel, audit, before: np.ndarray, confidence: np.ndarray, clamped: np.ndarray,
           informative: bool) -> tuple[refinery.Relabelling, audit_rule.Gate | None]:
    """``relabel(verdict)``'s labelling without an audit; with one, relabelled with the audit gate's verdicts on
    its changes of the labels ``before`` the step (:func:`_audit_gate`; the gate's record, or None)."""
    relabelling = relabel(None)
    if audit is None:
        return relabelling, None
    gate = _audit_gate(audit, before, relabelling, confidence, clamped, informative)
    return (relabelling if gate is None else relabel(gate.verdict)), gate


def _audit_gate(audit, before: np.ndarray, relabelling: refinery.Relabelling, confidence: np.ndarray,
                clamped: np.ndarray, informative: bool) -> audit_rule.Gate | None:
    """The audit's verdicts on a calibrated step's changes of the labels ``before`` it (None: not gated).

    A vague estimate let the calibrated filter change nothing: the gate weighs the authors' proposal instead,
    every sample judged. An informative one: the gate weighs the filter's own changes, and only with at least
    ``GATE_MIN_CHANGES`` of them audited; a change it lets through keeps the filter's label (not judged).
    """
    vague = not informative
    candidates = relabelling.proposed if vague else relabelling.labels
    gate = audit_rule.gate_changes(before, candidates, confidence, audit, protected=clamped >= 0, judge_all=vague)
    if vague:
        return gate
    if gate.audited < audit_rule.GATE_MIN_CHANGES:
        return None
    verdict = np.where(gate.verdict == audit_rule.TAKE, audit_rule.UNJUDGED, gate.verdict).astype(np.int8)
    return audit_rule.Gate(verdict, gate.changes, gate.audited, gate.accepted, gate.fixed, gate.broken, gate.cutoff)


def _audit_metrics(audit, gate: audit_rule.Gate | None, refined: np.ndarray) -> dict:
    """What the step took from the audit (its size and rate; the gate's counts when it judged) and the audit's
    count of the step's labels."""
    if audit is None:
        return {"audit_size": 0, "audit_rate": None}
    precision = audit.precision(refined)
    metrics = {"audit_size": audit.size, "audit_rate": audit.rate().value, "audit_precision": precision.value,
               "audit_precision_low": precision.low, "audit_precision_high": precision.high}
    if gate is not None:
        metrics.update(audit_gate_changes=gate.changes, audit_gate_audited=gate.audited,
                       audit_gate_accepted=gate.accepted, audit_gate_fixed=gate.fixed,
                       audit_gate_broken=gate.broken)
    return metrics


# ---------------------------------------------------------------- student
def _student_train(run: Run, targets: np.ndarray, mode: str, weights: np.ndarray | None = None,
                   train_mask: np.ndarray | None = None) -> dict:
    """One student epoch; samples outside ``train_mask`` (reviewed outliers) sit it out."""
    cfg, nets = run.config, run.nets
    lr = scheduled_lr(cfg.train.lr, run.state.student_epoch, cfg.schedule.student_epochs, cfg.train.lr_schedule)
    lr = ramped_lr(lr, run.state.student_epoch, cfg.train.start_ramp)  # every student starts cold
    if mode == "refine":  # the refine and mutual stages ramp up from the warm-up (docs/ALGORITHM.md)
        lr = ramped_lr(lr, run.state.student_epoch - cfg.schedule.warmup_epochs, cfg.train.lr_ramp)
    set_lr(nets.opt_student, lr)
    t0 = time.perf_counter()
    x, keep = nets.x, None
    if train_mask is not None and not train_mask.all():
        keep = np.flatnonzero(train_mask)
        x, targets = x[torch.as_tensor(keep, device=nets.device)], targets[keep]
        weights = None if weights is None else weights[keep]
    if run.group is not None:  # every process trains its part of each batch (engine.steps.distributed)
        losses = distributed.lead_epoch(run, "student", targets, mode, run.state.student_epoch, rows=keep,
                                        weights=weights, augment_kind=run.dataset.augment)
    else:
        losses = student_epoch(
            nets.student, nets.kd_teacher(keep), nets.opt_student, x, torch.as_tensor(targets, device=nets.device),
            cfg.train, mode, run.rng, run.generator,
            None if weights is None else torch.as_tensor(weights, device=nets.device), run.dataset.augment,
            run.progress)
    run.state.student_epoch += 1
    nets.settle_batch_norm(nets.student)
    nets.student_changed()
    trained = losses.pop("samples")
    return {**losses, "student_lr": lr, "student_samples": trained, "train_seconds": time.perf_counter() - t0}


def warmup_step(run: Run):
    """One student epoch on stage 0's labels: CE + mixup CE + KD."""
    clamped, outliers = run.review_clamps()
    run.state.refined = np.where(clamped >= 0, clamped, run.state.refined)
    metrics = _student_train(run, run.state.refined, "warmup", train_mask=_sits_out(run, ~outliers))
    metrics.update(_review_metrics(clamped, outliers))
    metrics.update(_precision_estimates(run, run.state.refined, run.nets.teacher_estimate()))
    return _student_snapshot(run, metrics, clamped=clamped, outliers=outliers)


def plain_student_step(run: Run):
    """Baselines (CE, KD) train on the given labels, with reviewers' decisions applied."""
    mode = "kd" if run.config.method == "kd" else "ce"
    clamped, outliers = run.review_clamps()
    targets = np.where(clamped >= 0, clamped, run.given)
    run.state.refined = targets
    metrics = _student_train(run, targets, mode, train_mask=~outliers)
    metrics.update(_review_metrics(clamped, outliers))
    return _student_snapshot(run, metrics, clamped=clamped, outliers=outliers)


def refine_step(run: Run):
    return _refinery(run, mutual=False)


def mutual_step(run: Run):
    return _refinery(run, mutual=True)


def _refinery(run: Run, mutual: bool):
    """Stage 1 (``mutual=False``) or stage 2: select, weigh, propagate, train."""
    t0 = time.perf_counter()
    nets, cfg, C = run.nets, run.config, run.dataset.num_classes
    before = nets.student_outputs()
    selection_loss = before.loss(run.given)
    audit = run.audit()
    keep_fraction = 1.0 - run.noise_rate(audit)
    easy = small_loss_mask(selection_loss, keep_fraction)
    clamped, outliers = run.review_clamps()  # reviewed labels count as easy, fixed seeds
    t_est = time.perf_counter()
    stage0 = nets.teacher_estimate()
    if stage0.confused:  # it judges every later step (gated_by would return it): no student-graph estimate
        estimate = stage0
    else:
        estimate = graph_estimate(build_graph(before.features, cfg.graph), run.given, C, cfg, STEP_BOOTSTRAP)
        estimate = gated_by(estimate, stage0, run.given)  # no noise at stage 0: none later
    t_est = time.perf_counter() - t_est
    calibrated = cfg.relabel_rule == "calibrated" and cfg.noise_rate is None
    labeller, judged = "student", {}
    if calibrated:  # easy only where the posterior supports the given label; the rest seeded by the better labeller
        easy = refinery.supported_easy(easy, run.given, estimate.posterior)
        labeller, judged = _better_labeller(run, before.pred, audit, estimate, easy, clamped, outliers)
    labeller_pred = before.pred if labeller == "student" else nets.teacher_outputs().pred
    working, easy, awe_target = refinery.small_loss_working(run.given, labeller_pred, easy, clamped)
    similarity = centre_similarity(before.features, class_centres(before.features, working, C))
    use_awe = "awe" not in cfg.without
    awe_loss = train_weight_net(nets.weight_net, nets.opt_weight, similarity, run.given, awe_target,
                                cfg.train.awe_iterations) if use_awe else None
    uniform = np.ones(len(run.given), np.float32)
    t_select = time.perf_counter() - t0
    graph, graph_choice = _refine_graph(run, mutual, before.features, working, easy,
                                        student_may=labeller == "student")
    if mutual:
        seed_weights = label_centre_weight(similarity, working)
    else:
        seed_weights = predict_weights(nets.weight_net, similarity, working) if use_awe else uniform
    t1 = time.perf_counter()
    seeds, working, easy, train_mask = refinery.refine_seeds(working, easy, seed_weights, C, clamped, outliers)
    result = propagate(graph.normalized, seeds.matrix(C), cfg.propagation)
    previous = run.state.refined

    def relabel(verdict=None):
        return refinery.relabel("mutual" if mutual else "refine", run.given, working, easy, result, None, 0.0,
                                clamped, rule=cfg.relabel_rule, posterior=estimate.posterior if calibrated else None,
                                previous=previous, audit_verdict=verdict)

    relabelling, gate = _gated(relabel, audit, previous, result.confidence, clamped, _tells(estimate))
    refined = relabelling.labels
    t_lp = time.perf_counter() - t1
    weights = predict_weights(nets.weight_net, similarity, refined) if use_awe else uniform
    weights_given = predict_weights(nets.weight_net, similarity, run.given) if use_awe else None
    run.state.refined = refined
    metrics = _student_train(run, refined, "refine", weights, train_mask=_sits_out(run, train_mask))
    metrics.update(_review_metrics(clamped, outliers))
    metrics.update(graph_choice)
    metrics.update(_precision_estimates(run, refined, estimate))
    metrics.update(seed_labeller=labeller, **judged, estimate_seconds=t_est,
                   kept_previous=bool(np.any(relabelling.reasons == refinery.Reason.KEPT_PREVIOUS)))
    metrics.update(select_seconds=t_select, lp_seconds=t_lp, awe_loss=awe_loss,
                   graph_source="teacher" if nets.is_teacher_graph(graph) else "student",
                   noise_rate_used=run.noise_rate(audit), loss_cutoff=loss_cutoff(selection_loss, keep_fraction),
                   **_audit_metrics(audit, gate, refined))
    return _student_snapshot(run, metrics, graph=graph, lp=result, easy=easy, working=working, weights=weights,
                             weights_given=weights_given, selection_loss=selection_loss,
                             student_features=before.features, clamped=clamped, outliers=outliers, seeds=seeds,
                             posterior=estimate.posterior, previous=previous,
                             audit_verdict=None if gate is None else gate.verdict)


def _sits_out(run: Run, train_mask: np.ndarray) -> np.ndarray:
    """``train_mask`` without the judge's part (:attr:`Run.judge_part`): the student never fits it."""
    judge = run.judge_part
    return train_mask if judge is None else train_mask & ~judge


def _better_labeller(run: Run, student_pred: np.ndarray, audit, estimate, easy: np.ndarray,
                     clamped: np.ndarray, outliers: np.ndarray) -> tuple[str, dict]:
    """Whose predictions seed the not-easy samples under the calibrated rule, and the judge's metrics.

    The audit, when there is one: right on more audited samples. Else the judge's part, which neither network
    trained on: agreeing with more of its given (or reviewed) labels, reviewed outliers left out; ties to the
    teacher, whose labels stage 0 took. Else stage 0's posterior on the teacher's graph when that can tell (it
    leans to the teacher), else the step's own (docs/ALGORITHM.md, "every stage earns its place").
    """
    nets = run.nets
    teacher_pred = nets.teacher_outputs().pred
    predictions = {"student": student_pred, "teacher": teacher_pred}  # ties: the student
    if audit is not None:
        return audit_rule.better_labeller(predictions, audit), {"labeller_judge": "audit"}
    if run.judge_part is not None:
        reference = np.where(clamped >= 0, clamped, run.given)
        rows = run.judge_part & ~outliers
        labeller, shares, alone = refinery.labeller_on_holdout(  # ties: the teacher
            {"teacher": teacher_pred, "student": student_pred}, reference, rows)
        return labeller, {"labeller_judge": "held-out", "holdout_judged": int(rows.sum()),
                          "holdout_agreement_teacher": shares["teacher"],
                          "holdout_agreement_student": shares["student"],
                          "holdout_only_teacher": alone["teacher"], "holdout_only_student": alone["student"]}
    judge = nets.teacher_estimate() if nets.teacher_estimate().informative else estimate
    return refinery.better_labeller(judge.posterior, predictions, ~easy), {"labeller_judge": "posterior"}


def _refine_graph(run: Run, mutual: bool, student_features: np.ndarray, working: np.ndarray,
                  easy: np.ndarray, student_may: bool = True) -> tuple[Graph, dict]:
    """The teacher's graph; in the mutual stage every other epoch the student's, if its graph is as good and
    (``student_may``) the student is the better labeller this step (the calibrated rule's judge: the audit, the
    held-out part or stage 0's posterior; the authors' rule always lets it compete)."""
    graph = run.nets.teacher_graph()
    if not (mutual and run.state.phase_epoch % 2 == 0) or not student_may:
        return graph, {}
    student_graph = build_graph(student_features, run.config.graph)
    C = run.dataset.num_classes
    choice = {f"graph_agreement_{name}": neighbour_vote_agreement(g, working, easy, C)
              for name, g in (("student", student_graph), ("teacher", graph))}
    if choice["graph_agreement_student"] >= choice["graph_agreement_teacher"]:
        graph = student_graph
    return graph, choice


def _student_snapshot(run: Run, metrics: dict, graph: Graph | None = None, student_features=None, **parts):
    """Evaluate the student (and teacher), then pack the step's snapshot."""
    t0 = time.perf_counter()
    nets = run.nets
    after = nets.student_outputs()
    teacher = nets.teacher_outputs() if run.config.method != "ce" else None
    metrics.update(
        student_test_accuracy=nets.test_accuracy(nets.student),
        student_train_accuracy=_accuracy(after.pred, run.true),
        teacher_test_accuracy=nets.test_accuracy(nets.teacher) if teacher is not None else None,
        noise_rate_estimate=run.state.noise_rate_estimate,
        **label_metrics(run.given, run.state.refined, run.true, parts.get("weights_given"), parts.get("easy")))
    if graph is None:
        graph = nets.teacher_graph() if teacher is not None else build_graph(after.features, run.config.graph)
        metrics.setdefault("graph_source", "teacher" if teacher is not None else "student")
    metrics.update(_knn_metrics(graph))
    arrays = _pack(run, teacher=teacher, student=after, graph=graph,
                   features=after.features if student_features is None else student_features, **parts)
    metrics["eval_seconds"] = time.perf_counter() - t0
    return arrays, metrics


# ---------------------------------------------------------------- shared
#: Bootstrap rounds of a refine or mutual step's estimate (stage 0 has BOOTSTRAP): its intervals, every epoch.
STEP_BOOTSTRAP = 30


def _precision_estimates(run: Run, refined: np.ndarray, estimate: NoiseEstimate) -> dict:
    """The refined labels' estimated precision with its interval, and the given labels' (no truth needed)."""
    point, low, high = precision_interval(refined, run.given, estimate)
    return {"refined_precision_estimate": point, "refined_precision_low": low, "refined_precision_high": high,
            "given_precision_estimate": precision_interval(run.given, run.given, estimate)[0],
            "evidence_weight": estimate.evidence, "noise_found": estimate.noise_found,
            "estimate_ambiguity": estimate.ambiguity, "estimate_informative": estimate.informative,
            "estimate_confused": estimate.confused}


def _pack(run: Run, **parts) -> dict:
    """This step's snapshot (:func:`engine.rundir.snapshot.pack`); features only where the format's policy
    keeps them (:func:`engine.rundir.snapshot.keeps_features`)."""
    features = parts.get("features")
    if features is not None and not snapshot.keeps_features(
            *np.shape(features), run.state.phase_epoch + 1, phase_length(run.config, run.state.phase)):
        parts["features"] = None
    return snapshot.pack(run.state.refined, given=run.given, **parts)


def _knn_metrics(graph: Graph) -> dict:
    """How the step's graph was searched and its recall@k against exact search."""
    return {"knn_index": graph.search.method, "knn_recall": graph.search.recall,
            "knn_recall_queries": graph.search.queries}


def _review_metrics(clamped: np.ndarray, outliers: np.ndarray) -> dict:
    return {"reviewed_clamped": int(np.sum(clamped >= 0)), "reviewed_outliers": int(np.sum(outliers))}


def _accuracy(pred: np.ndarray, true: np.ndarray | None) -> float | None:
    if true is None:
        return None
    mask = true >= 0
    return float(np.mean(pred[mask] == true[mask])) if mask.any() else None


HANDLERS = {
    Phase.TEACHER: teacher_step,
    Phase.PROPAGATE: propagate_step,
    Phase.WARMUP: warmup_step,
    Phase.REFINE: refine_step,
    Phase.MUTUAL: mutual_step,
    Phase.STUDENT: plain_student_step,
}

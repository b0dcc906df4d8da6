"""The field lists of ``summary.json`` and ``metrics.jsonl``, as
:mod:`engine.rundir.snapshot` lists the snapshot's arrays.

Each field: name, JSON type, meaning, who writes it. :func:`summary` builds
the summary from exactly the listed fields; :func:`check_metrics` refuses a
metrics line with a key nobody listed. Readers name fields through these
lists (``SUMMARY_ROWS`` for the tables), so a misspelt key fails a test
instead of showing a blank.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # JSON type; "|null" where the value can be missing
    meaning: str
    writer: str  # the module (and phase) that writes it


_S = "engine.steps.run (Run.summary)"
SUMMARY_FIELDS: tuple[Field, ...] = (
    Field("method", "str", "aml-kd, ce or kd", _S),
    Field("dataset", "str", "the dataset spec as given", _S),
    Field("noise", "str", "the noise spec (none with a label file)", _S),
    Field("seed", "int", "the run's seed", _S),
    Field("steps", "int", "steps done", _S),
    Field("given_label_precision", "float|null", "share of given labels equal to the truth (null without truth)", _S),
    Field("refined_label_precision", "float|null", "share of refined labels equal to the truth, last step", _S),
    Field("student_test_accuracy", "float|null", "the student's accuracy on the test split (null without one)", _S),
    Field("teacher_test_accuracy", "float|null", "the teacher's accuracy on the test split (null for CE)", _S),
    Field("awe_auroc", "float|null", "AUROC of the AWE weights separating clean from noisy given labels", _S),
    Field("awe_std", "float|null", "spread of the AWE weights, last step", _S),
    Field("noise_rate_estimate", "float|null", "the noise rate stage 0 estimated (confident joint on the "
                                               "teacher graph's calibrated neighbour votes)", _S),
    Field("noise_rate_low", "float|null", "lower end of the noise-rate estimate's 90% bootstrap interval", _S),
    Field("noise_rate_high", "float|null", "upper end of that interval", _S),
    Field("estimate_informative", "bool|null", "stage 0's votes could tell noise from classes the teacher's "
                                               "features mix (engine.method.confident.AMBIGUITY_LIMIT); if not, the "
                                               "rate is the middle of [0, upper end] and no label changed on its word",
          _S),
    Field("estimate_confused", "bool|null", "stage 0's rate did not rise above the features' own confusion "
                                            "(engine.method.confident.beyond_confusion): no noise found, the rate "
                                            "the middle of [0, upper end], no label changed on its word", _S),
    Field("relabel_rule", "str", "calibrated (a label changes only where the calibrated posterior favours the "
                                 "new one) or authors (as published)", _S),
    Field("given_precision_estimate", "float|null", "the given labels' precision estimated without the truth "
                                                    "(mean posterior of the given label), last step", _S),
    Field("refined_precision_estimate", "float|null", "the refined labels' precision estimated without the truth, "
                                                      "last step", _S),
    Field("refined_precision_low", "float|null", "lower end of its 90% bootstrap interval", _S),
    Field("refined_precision_high", "float|null", "upper end of its 90% bootstrap interval", _S),
    Field("noise_rate_true", "float|null", "the true share of wrong given labels (null without truth)", _S),
    Field("audit_size", "int", "samples of the random audit when the summary was written (audit.sqlite; 0: none)",
          _S),
    Field("audit_rate", "float|null", "the noise rate counted on the audit (null: nothing audited)", _S),
    Field("audit_rate_low", "float|null", "lower end of its 90% Wilson interval", _S),
    Field("audit_rate_high", "float|null", "upper end of its 90% Wilson interval", _S),
    Field("audit_precision", "float|null", "the refined labels' precision counted on the audit, last step", _S),
    Field("audit_precision_low", "float|null", "lower end of its 90% Wilson interval", _S),
    Field("audit_precision_high", "float|null", "upper end of its 90% Wilson interval", _S),
    Field("audit_change", "str|null", "given -> refined on the audit: better, worse or within chance (the paired "
                                      "90% interval)", _S),
    Field("teacher_best_epoch", "int|null", "the teacher epoch whose weights the run kept (its last without a "
                                             "hold-out; null for CE)", _S),
    Field("teacher", "str", "teacher architecture", _S),
    Field("student", "str", "student architecture", _S),
    Field("teacher_parameters", "int", "teacher parameter count", _S),
    Field("student_parameters", "int", "student parameter count", _S),
    Field("wall_seconds", "float", "seconds spent in steps (resumes included)", _S),
    Field("device", "str", "cpu or cuda", _S),
    Field("without", "list[str]", "AML-KD components left out (ablations)", _S),
    Field("warnings", "list[str]", "what engine.rundir.health found wrong", _S),
    Field("test_labels", "str|null", "truth, given (agreement with a label file's test labels) or null", _S),
)

_T, _P, _ST = "handlers.teacher_step", "handlers.propagate_step", "handlers (student phases)"
_R, _M = "handlers._refinery (refine, mutual)", "engine.method.metrics.label_metrics"
METRICS_FIELDS: tuple[Field, ...] = (
    Field("step", "int", "the step's number, from 1", "Run.step"),
    Field("phase", "str", "the phase the step belonged to", "Run.step"),
    Field("phase_epoch", "int", "steps done in that phase, this one included", "Run.step"),
    Field("step_seconds", "float", "wall seconds of the step", "Run.step"),
    Field("snapshot_bytes", "int", "bytes the step's snapshot takes on disk (engine.rundir.snapshot's policy)",
          "RunStore.write_step"),
    Field("train_seconds", "float", "seconds of the training epoch", f"{_T}, {_ST}"),
    Field("eval_seconds", "float", "seconds of the evaluation passes", _ST),
    Field("graph_seconds", "float", "seconds building the kNN graph", _P),
    Field("lp_seconds", "float", "seconds of label propagation", f"{_P}, {_R}"),
    Field("select_seconds", "float", "seconds of small-loss selection and AWE", _R),
    Field("lp_iterations", "int", "conjugate-gradient iterations", _P),
    Field("graph_source", "str", "teacher or student: whose features the step's graph was built from",
          f"{_P}, {_ST}"),
    Field("knn_index", "str", "exact, ivf or hnsw: how the neighbours of the step's graph were searched "
                              "(engine.method.search)", f"{_P}, {_ST}"),
    Field("knn_recall", "float", "recall@k of that search against exact search on sampled queries (1.0 for exact, "
                                 "not computed)", f"{_P}, {_ST}"),
    Field("knn_recall_queries", "int", "queries the recall was measured on (0 for exact search)", f"{_P}, {_ST}"),
    Field("graph_agreement_student", "float", "neighbour-vote agreement of the student's graph (mutual)", _R),
    Field("graph_agreement_teacher", "float", "neighbour-vote agreement of the teacher's graph (mutual)", _R),
    Field("teacher_source", "str", "checkpoint: the teacher was loaded, not trained; frozen backbone: only its "
                                     "head trained, on features computed once", _T),
    Field("teacher_loss", "float", "the teacher's mean CE over the epoch", _T),
    Field("teacher_holdout_accuracy", "float|null", "teacher accuracy on the held-out part against given labels",
          _T),
    Field("teacher_best_epoch", "int", "the teacher epoch kept so far", _T),
    Field("teacher_early_stopped", "bool", "the hold-out stopped the teacher", _T),
    Field("teacher_train_accuracy", "float|null", "teacher accuracy on the training samples against the truth",
          _T),
    Field("teacher_test_accuracy", "float|null", "teacher accuracy on the test split", "handlers"),
    Field("student_test_accuracy", "float|null", "student accuracy on the test split", _ST),
    Field("student_train_accuracy", "float|null", "student accuracy on the training samples against the truth",
          _ST),
    Field("student_lr", "float", "the student's learning rate in the epoch (schedule and ramp)", _ST),
    Field("student_samples", "int", "samples the student trained on in the epoch, every process's together (the "
          "judge's hold-out and reviewed outliers sit out; a last batch too small for batch norm is left out)", _ST),
    Field("loss_ce", "float", "CE term of the epoch", _ST),
    Field("loss_mixup", "float", "mixup CE term", _ST),
    Field("loss_kd", "float", "KD term on mixed inputs", _ST),
    Field("loss_kd_clean", "float", "KD term on un-mixed inputs", _ST),
    Field("loss_rel", "float", "relational (Gram matrix) term", _ST),
    Field("awe_loss", "float|null", "the weight network's training loss", _R),
    Field("loss_cutoff", "float", "the small-loss cut-off", _R),
    Field("noise_rate_used", "float", "r used for small-loss selection", _R),
    Field("noise_rate_estimate", "float|null", "the stage-0 estimate of r", f"{_P}, {_ST}"),
    Field("noise_rate_low", "float", "lower end of the estimate's 90% bootstrap interval", _P),
    Field("noise_rate_high", "float", "upper end of that interval", _P),
    Field("estimate_seconds", "float", "seconds of the noise estimate (votes, joint, posterior, bootstrap)",
          f"{_P}, {_R}"),
    Field("given_precision_estimate", "float", "given labels' precision estimated without the truth: mean "
                                               "posterior of the given label", "handlers (aml-kd phases)"),
    Field("refined_precision_estimate", "float", "refined labels' precision estimated without the truth",
          "handlers (aml-kd phases)"),
    Field("refined_precision_low", "float", "lower end of its 90% bootstrap interval", "handlers (aml-kd phases)"),
    Field("refined_precision_high", "float", "upper end of that interval", "handlers (aml-kd phases)"),
    Field("evidence_weight", "float", "weight of the given label's evidence in the posterior (engine.method."
                                      "confident.evidence_weight)", "handlers (aml-kd phases)"),
    Field("noise_found", "bool", "the step's noise estimate tells its rate from 0 (the lower end of its interval "
                                 "is above 0 and, at stage 0, above the ambiguity); if not, its posterior is the "
                                 "given labels and no given label changes", "handlers (aml-kd phases)"),
    Field("estimate_ambiguity", "float", "share of samples whose clean class the step's votes leave open (engine."
                                         "method.confident.clean_ambiguity; lower is better)", "handlers (aml-kd phases)"),
    Field("estimate_informative", "bool", "the ambiguity is at most confident.AMBIGUITY_LIMIT; if not, the votes "
                                          "cannot tell noise from classes the features mix: the rate and precision "
                                          "are intervals only and no given label changes on the estimate's word",
          "handlers (aml-kd phases)"),
    Field("estimate_confused", "bool", "informative, but the lower end of the rate's interval is at most the "
                                       "ambiguity: the features' own confusion can explain the joint's count, so no "
                                       "noise is found, the rate is [0, upper end] and the precision an interval "
                                       "(confident.beyond_confusion)", "handlers (aml-kd phases)"),
    Field("seed_labeller", "str", "student or teacher: whose predictions seeded the not-easy samples", _R),
    Field("labeller_judge", "str", "what judged the seed labeller (calibrated rule): audit (right on more audited "
                                   "samples), held-out (agrees with more given labels of the part neither network "
                                   "trains on) or posterior (stage 0's, without a hold-out)", _R),
    Field("holdout_agreement_teacher", "float", "share of the held-out part's given labels the teacher "
                                                "predicts (calibrated rule, judged there)", _R),
    Field("holdout_agreement_student", "float", "the same for the student, which never trains on that part", _R),
    Field("holdout_judged", "int", "held-out samples the seed labeller was judged on (reviewed outliers left out)",
          _R),
    Field("holdout_only_teacher", "int", "of those, samples only the teacher agrees with (McNemar's discordant "
                                         "pairs)", _R),
    Field("holdout_only_student", "int", "of those, samples only the student agrees with", _R),
    Field("kept_previous", "bool", "the calibrated rule kept the previous labels: the step's estimated "
                                   "precision fell", _R),
    Field("audit_size", "int", "samples of the random audit the step used (engine.method.audit; 0: none, or fewer "
                               "than audit.MIN_AUDIT)", "handlers (aml-kd phases, calibrated rule)"),
    Field("audit_rate", "float|null", "the noise rate counted on the audit (the step's r when it used one)",
          "handlers (aml-kd phases, calibrated rule)"),
    Field("audit_precision", "float|null", "the step's refined labels' precision counted on the audit the step "
                                           "used", "handlers (aml-kd phases, calibrated rule)"),
    Field("audit_precision_low", "float|null", "lower end of its 90% Wilson interval", "handlers (aml-kd phases)"),
    Field("audit_precision_high", "float|null", "upper end of its 90% Wilson interval", "handlers (aml-kd phases)"),
    Field("audit_gate_changes", "int|null", "label changes the step proposed that the audit gate weighed "
                                            "(engine.method.audit.gate_changes)", "handlers (aml-kd phases)"),
    Field("audit_gate_audited", "int|null", "of those, audited ones", "handlers (aml-kd phases)"),
    Field("audit_gate_accepted", "int|null", "changes the gate let through (the most confident ones)",
          "handlers (aml-kd phases)"),
    Field("audit_gate_fixed", "int|null", "audited labels the changes let through fix", "handlers (aml-kd phases)"),
    Field("audit_gate_broken", "int|null", "audited labels the changes let through break", "handlers (aml-kd phases)"),
    Field("reviewed_clamped", "int", "samples whose label reviewers fixed", "handlers"),
    Field("reviewed_outliers", "int", "samples reviewers marked as outliers", "handlers"),
    Field("given_label_precision", "float|null", "share of given labels equal to the truth", _M),
    Field("refined_label_precision", "float|null", "share of refined labels equal to the truth", _M),
    Field("relabelled", "int", "samples whose refined label differs from the given one", _M),
    Field("wrong_to_right", "int", "wrong given labels the refined ones fix", _M),
    Field("right_to_wrong", "int", "right given labels the refined ones break", _M),
    Field("detection_precision", "float|null", "share of relabelled samples whose given label was wrong", _M),
    Field("detection_recall", "float|null", "share of wrong given labels that were relabelled", _M),
    Field("awe_auroc", "float|null", "AUROC of the AWE weights on the given labels", _M),
    Field("awe_std", "float|null", "spread of the AWE weights", _M),
    Field("selection_precision", "float|null", "share of 'easy' samples whose given label is right", _M),
)

SUMMARY_NAMES = frozenset(f.name for f in SUMMARY_FIELDS)
METRICS_NAMES = frozenset(f.name for f in METRICS_FIELDS)

#: The summary fields the report and ``compare`` show (key, label).
SUMMARY_ROWS = (
    ("given_label_precision", "given label precision"),
    ("refined_label_precision", "refined label precision"),
    ("teacher_test_accuracy", "teacher test accuracy"),
    ("student_test_accuracy", "student test accuracy"),
    ("awe_auroc", "AWE AUROC (clean vs noisy)"),
    ("noise_rate_estimate", "noise rate, estimated"),
    ("noise_rate_true", "noise rate, true"),
    ("given_precision_estimate", "given label precision, estimated without truth"),
    ("refined_precision_estimate", "refined label precision, estimated without truth"),
    ("refined_precision_low", "refined label precision, estimated: 90% interval from"),
    ("refined_precision_high", "refined label precision, estimated: 90% interval to"),
    ("wall_seconds", "seconds of training"),
)
#: Summary fields that tables format as numbers (a damaged value there is refused by name).
SUMMARY_NUMBERS = tuple(f.name for f in SUMMARY_FIELDS if f.type.split("|")[0] in ("int", "float"))


def summary(**values) -> dict:
    """The summary: exactly the listed fields (a missing or unlisted one is a bug, raised as ``KeyError``)."""
    missing, extra = SUMMARY_NAMES - set(values), set(values) - SUMMARY_NAMES
    if missing or extra:
        raise KeyError(f"summary fields: missing {sorted(missing)}, unlisted {sorted(extra)}")
    return {f.name: values[f.name] for f in SUMMARY_FIELDS}


def check_metrics(metrics: dict) -> dict:
    """``metrics`` as it is, if every key is listed; ``KeyError`` naming the unlisted ones otherwise."""
    extra = set(metrics) - METRICS_NAMES
    if extra:
        raise KeyError(f"metrics fields not in engine.rundir.fields.METRICS_FIELDS: {sorted(extra)}")
    return metrics

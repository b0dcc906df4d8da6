"""Headless runs: ``python -m engine run|resume|compare ...``.

Every error a user can cause prints one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace

from .method.config import (ABLATIONS, METHODS, SMALL_PAIR_TEACHER, GraphConfig, PropagationConfig, RunConfig,
                     ScheduleConfig, TrainConfig, defaults_for_teacher)
from .errors import UserError
from .rundir.store import RunStore

SUMMARY_COLUMNS = (
    ("method", "method", "{}"),
    ("noise", "noise", "{}"),
    ("seed", "seed", "{}"),
    ("given_label_precision", "given prec", "{:.3f}"),
    ("refined_label_precision", "refined prec", "{:.3f}"),
    ("teacher_test_accuracy", "teacher acc", "{:.3f}"),
    ("student_test_accuracy", "student acc", "{:.3f}"),
    ("awe_auroc", "AWE AUROC", "{:.3f}"),
    ("noise_rate_estimate", "r est", "{:.3f}"),
    ("noise_rate_true", "r true", "{:.3f}"),
    ("wall_seconds", "seconds", "{:.1f}"),
)


SCHEDULE_FLAGS = ("teacher_epochs", "teacher_patience", "warmup_epochs", "refine_epochs", "mutual_epochs")
TRAIN_FLAGS = ("temperature", "kd_weight", "clean_kd_weight", "relational_weight", "mixup_alpha", "batch_size", "lr",
               "teacher_lr")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2, no usage dump
        self.exit(2, f"error: {message}\n")


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    d, s, t, g, lp = RunConfig(), ScheduleConfig(), TrainConfig(), GraphConfig(), PropagationConfig()
    p.add_argument("--dataset", default=d.dataset, help="digits, moons, blobs, circles (?n=&spread=), folder:DIR[?size=32&mode=RGB&augment=crop_flip"
                        "&test=0.2], mnist:ROOT, fashion-mnist:ROOT, cifar10:ROOT, cifar100:ROOT "
                        "(?download=1, ?n=N) (default digits)")
    p.add_argument("--noise", default=None, help="none, symmetric:R, pairflip:R, asym:R (CIFAR-10 classes), "
                   f"instance:R, matrix:FILE (default {d.noise}; none with --labels, which takes no synthetic noise)")
    p.add_argument("--method", default=d.method, help=f"one of {', '.join(METHODS)}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice; 1 is best on a busy machine)")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--force", action="store_true", help="replace a run already in --out (its review decisions "
                                                         "are set aside as reviews-old-N.sqlite)")
    p.add_argument("--keep-reviews", action="store_true", help="with --force: keep the review decisions, when the "
                                                                "new run has the same samples and given labels")
    p.add_argument("--noise-rate", default=None,
                   help="r for small-loss selection: a number in [0, 1), 'known' (the synthetic rate), "
                        "or omit to estimate it from stage 0")
    p.add_argument("--teacher", default=None, help="teacher architecture (default: the dataset's pair)")
    p.add_argument("--student", default=None, help="student architecture")
    p.add_argument("--teacher-checkpoint", default=None, help="load the teacher instead of training it")
    p.add_argument("--teacher-features", default=None, metavar="FILE",
                   help="features from a stronger model for the kNN graph and stage 0: .npy (N, D) in sample "
                        "order, .npz (features, optional keys, pred) or CSV with a key column")
    p.add_argument("--without", action="append", default=[], metavar="COMPONENT",
                   help="AML-KD ablation, repeatable: " + "; ".join(f"{k}: {v}" for k, v in ABLATIONS.items()))
    p.add_argument("--relabel-rule", default=d.relabel_rule, help="calibrated: a label changes only where the calibrated posterior favours the new one (default); authors: as published")
    p.add_argument("--labels", default=None, help="CSV of given labels replacing the dataset's")
    p.add_argument("--key-column", default=d.key_column)
    p.add_argument("--label-column", default=d.label_column)
    p.add_argument("--truth-column", default=None)
    p.add_argument("--k", type=int, default=g.k, help="neighbours per sample in the kNN graph")
    p.add_argument("--edge-power", type=float, default=g.power, help="edge weight = similarity ** power")
    p.add_argument("--alpha", type=float, default=lp.alpha, help="propagation alpha in (0, 1)")
    p.add_argument("--lp-iterations", type=int, default=lp.max_iter, help="conjugate-gradient iterations")
    default = "(default: {} for the digits pair, {} for the small 32x32 CPU pair)"
    small_schedule, small_train = defaults_for_teacher(SMALL_PAIR_TEACHER)
    p.add_argument("--temperature", type=float, default=None, help=f"KD temperature (default {t.temperature})")
    p.add_argument("--kd-weight", type=float, default=None, help=f"(default {t.kd_weight})")
    p.add_argument("--clean-kd-weight", type=float, default=None,
                   help="AML-KD: weight of a KD term on the un-mixed inputs, in [0, 1] "
                        + default.format(t.clean_kd_weight, small_train.clean_kd_weight))
    p.add_argument("--relational-weight", type=float, default=None, help=f"(default {t.relational_weight})")
    p.add_argument("--mixup-alpha", type=float, default=None,
                   help="lambda ~ Beta(a, a) " + default.format(t.mixup_alpha, small_train.mixup_alpha))
    p.add_argument("--batch-size", type=int, default=None, help=f"(default {t.batch_size})")
    p.add_argument("--lr", type=float, default=None, help=f"student learning rate (default {t.lr})")
    p.add_argument("--teacher-lr", type=float, default=None,
                   help=default.format(t.teacher_lr, small_train.teacher_lr))
    for name in SCHEDULE_FLAGS:
        p.add_argument("--" + name.replace("_", "-"), type=int, default=None,
                       help=default.format(getattr(s, name), getattr(small_schedule, name)))


def config_from_args(a: argparse.Namespace, teacher: str | None = None) -> RunConfig:
    """Build and validate the run config from parsed flags (before any work).

    Schedule and training flags left out take the defaults of ``teacher`` (the
    architecture the run will train; see :func:`engine.method.config.defaults_for_teacher`).
    """
    try:
        graph = GraphConfig(k=a.k, power=a.edge_power)
        propagation = PropagationConfig(alpha=a.alpha, max_iter=a.lp_iterations)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    base_schedule, base_train = defaults_for_teacher(teacher)
    chosen = {name: getattr(a, name) for name in SCHEDULE_FLAGS if getattr(a, name) is not None}
    schedule = replace(base_schedule, **chosen)
    chosen = {name: getattr(a, name) for name in TRAIN_FLAGS if getattr(a, name) is not None}
    train = replace(base_train, **chosen)
    noise = _noise(a.noise, a.labels)
    if a.labels and a.noise_rate == "known":
        raise UserError(f"--noise-rate known is the rate of synthetic noise, and --labels {a.labels!r} has none; "
                        "give the label file's noise rate as a number, or omit --noise-rate to estimate it")
    return RunConfig(dataset=a.dataset, noise=noise, method=a.method, seed=a.seed,
                     noise_rate=_noise_rate(a.noise_rate, noise), teacher=a.teacher, student=a.student,
                     teacher_checkpoint=a.teacher_checkpoint, teacher_features=a.teacher_features, labels=a.labels,
                     key_column=a.key_column,
                     label_column=a.label_column, truth_column=a.truth_column, graph=graph,
                     propagation=propagation, schedule=schedule, train=train, without=tuple(a.without),
                     relabel_rule=a.relabel_rule)


def _noise(noise: str | None, labels: str | None) -> str:
    """The run's noise spec: the default, or ``none`` with a label file (which refuses any other)."""
    from .data.labels import labels_with_noise_problem

    if labels:
        problem = labels_with_noise_problem(labels, noise or "none")
        if problem:
            raise UserError(problem)
        return "none"
    return noise if noise is not None else RunConfig().noise


def _noise_rate(text: str | None, noise: str) -> float | None:
    from .method.noise import parse_noise_spec

    if text is None or text == "estimate":
        return None
    if text == "known":
        spec = parse_noise_spec(noise)
        if spec.kind not in ("symmetric", "pairflip", "instance", "none"):
            raise UserError(f"--noise-rate known needs symmetric, pairflip or instance noise, not {noise!r}; "
                            "give the rate as a number instead (asym:R flips about R/2 of balanced CIFAR-10)")
        return spec.rate
    try:
        return float(text)
    except ValueError:
        raise UserError(f"--noise-rate {text!r} must be a number in [0, 1), 'known' or 'estimate'") from None


def _drive(run) -> dict:
    from tqdm import tqdm

    with tqdm(total=run.total_steps(), initial=run.state.step, unit="step", file=sys.stderr,
              dynamic_ncols=True) as bar:
        while not run.done:
            bar.set_description(run.phase.value)
            result = run.step()
            shown = {k: result.metrics.get(k) for k in ("refined_label_precision", "student_test_accuracy")}
            bar.set_postfix({k.split("_")[0]: f"{v:.3f}" for k, v in shown.items() if v is not None})
            bar.total = run.total_steps()
            bar.update(1)
    return RunStore(run.store.path).summary()


def format_table(rows: list[dict]) -> str:
    """A plain-text table of summaries, one row per run."""
    header = ["run"] + [label for _, label, _ in SUMMARY_COLUMNS]
    body = []
    for row in rows:
        cells = [row.get("run", "")]
        for key, _, fmt in SUMMARY_COLUMNS:
            value = row.get(key)
            cells.append("-" if value is None else fmt.format(value))
        body.append(cells)
    widths = [max(len(str(r[i])) for r in [header] + body) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if any(row.get("test_labels") == "given" for row in rows):
        lines.append("teacher/student acc of a run with a label file and no truth column: agreement with the "
                     "given (possibly noisy) labels of its held-out images")
    if any("test_labels" in row and row["test_labels"] is None for row in rows):
        lines.append("'-' accuracies: the run has no held-out images (test fraction 0), so no test metrics")
    return "\n".join(lines)


def _set_threads(threads: int | None) -> None:
    if threads is None:
        return
    if threads < 1:
        raise UserError(f"--threads {threads} must be at least 1")
    import torch

    torch.set_num_threads(threads)


def cmd_run(a) -> int:
    from .data import dataset_for_config
    from .models import default_pair
    from .steps.run import Run

    _set_threads(a.threads)
    config = config_from_args(a)
    dataset = None  # the defaults follow the networks: the data decide the teacher unless it is named
    if config.teacher is None:
        dataset = dataset_for_config(config)
    teacher = config.teacher or default_pair(dataset.kind, dataset.input_shape)[0]
    config = config_from_args(a, teacher)
    run = Run.create(a.out, config, force=a.force, dataset=dataset, keep_reviews=a.keep_reviews)
    if run.reviews_set_aside is not None:
        print(f"note: the replaced run's review decisions were moved to {run.reviews_set_aside}", file=sys.stderr)
    skipped = run.dataset.skipped
    if skipped:
        print(f"warning: {len(skipped)} input file(s) skipped, e.g. {skipped[0]}; all listed in "
              f"{run.store.skipped_path}", file=sys.stderr)
    summary = _drive(run)
    print(format_table([{"run": a.out, **summary}]))
    return 0


def cmd_resume(a) -> int:
    from .steps.run import Run

    run = Run.open(a.path, threads=a.threads)  # the recorded threads unless given; a different count is refused
    if run.done:
        print(f"run {a.path} is already finished")
    _drive(run)
    print(format_table([{"run": a.path, **RunStore(a.path).summary()}]))
    return 0


def cmd_compare(a) -> int:
    from .readers.compare import comparison_table, format_table as comparison_text, require_same_data

    stores = [RunStore(path) for path in a.runs]
    for store, path in zip(stores, a.runs):
        if not store.exists():
            raise UserError(f"{path!r} is not a run directory (no config.json)")
    require_same_data(stores)
    rows = comparison_table(stores)
    if a.json:
        print(json.dumps(rows, indent=2))
    else:
        print(comparison_text(rows))
    return 0


def cmd_what_if(a) -> int:
    """Replay propagating steps with other settings (none given: the step's own) and count the changes."""
    from .readers.explain import propagating_steps, what_if

    store = RunStore(a.path)
    if not store.exists():
        raise UserError(f"{a.path!r} is not a run directory (no config.json)")
    steps = propagating_steps(store)
    if not steps:
        raise UserError(f"run {a.path!r} has no step that propagated labels yet; step it past 'propagate' first")
    if a.step is not None:
        if a.step not in steps:
            raise UserError(f"step {a.step} of run {a.path!r} ran no propagation; valid steps: "
                            f"{', '.join(map(str, steps))}")
        steps = [a.step]
    true = store.dataset_arrays()["true"]
    rows = []
    for step in steps:
        result = what_if(store, step, k=a.k, alpha=a.alpha, power=a.edge_power,
                         keep_least_confident=a.keep_least_confident)
        counts = result.counts(store.snapshot(step)["refined"], true)
        rows.append({"step": step, **counts})
    if a.json:
        for row in rows:
            print(json.dumps(row))
    else:
        for row in rows:
            truth = "" if row["to_correct"] is None else \
                f", {row['to_correct']} would become correct, {row['to_wrong']} wrong"
            print(f"step {row['step']}: {row['changed']} sample(s) would change label{truth}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m engine", description="AML-KD runs, headless.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p_run = sub.add_parser("run", help="start a run and train it to the end")
    _add_run_flags(p_run)
    p_run.set_defaults(func=cmd_run)
    p_resume = sub.add_parser("resume", help="continue a stopped run")
    p_resume.add_argument("path")
    p_resume.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p_resume.set_defaults(func=cmd_resume)
    p_cmp = sub.add_parser("compare", help="one table of several runs on the same data")
    p_cmp.add_argument("runs", nargs="+")
    p_cmp.add_argument("--json", action="store_true")
    p_cmp.set_defaults(func=cmd_compare)
    p_wif = sub.add_parser("what-if", help="replay propagating steps with other settings; count label changes")
    p_wif.add_argument("path", help="run directory")
    p_wif.add_argument("--step", type=int, default=None, help="one step (default: every propagating step)")
    p_wif.add_argument("--k", type=int, default=None, help="neighbours (default: the step's own)")
    p_wif.add_argument("--alpha", type=float, default=None, help="propagation alpha (default: the step's own)")
    p_wif.add_argument("--edge-power", type=float, default=None, help="edge power (default: the step's own)")
    p_wif.add_argument("--keep-least-confident", type=float, default=None,
                       help="fraction of least confident samples that keep their label (default: the step's own)")
    p_wif.add_argument("--json", action="store_true", help="one JSON object per step: step, changed, to_correct, "
                                                          "to_wrong")
    p_wif.set_defaults(func=cmd_what_if)
    p_exp = sub.add_parser("export", help="write a run's samples, decisions, clean labels, student and report")
    p_exp.add_argument("path", help="run directory")
    p_exp.add_argument("--out", required=True, help="folder to write the exports into")
    p_exp.add_argument("--step", type=int, default=None, help="snapshot step to export (default: the last)")
    p_exp.add_argument("--no-report", action="store_true", help="skip the Markdown/PNG report")
    p_exp.set_defaults(func=cmd_export)
    p_imp = sub.add_parser("import-decisions", help="record review decisions from a CSV or JSON file")
    p_imp.add_argument("path", help="run directory")
    p_imp.add_argument("file", help="decisions.csv / samples.csv / .json from an export")
    p_imp.add_argument("--reviewer", default=None, help="reviewer name for rows without one")
    p_imp.set_defaults(func=cmd_import_decisions)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; continue with: python -m engine resume RUN_DIR", file=sys.stderr)
        return 130


def cmd_export(a) -> int:
    from .readers.export import export_run

    store = RunStore(a.path)
    if not store.exists():
        raise UserError(f"{a.path!r} is not a run directory (no config.json)")
    if a.step is not None and a.step not in store.steps():
        raise UserError(f"run {a.path!r} has no step {a.step}; steps: {store.steps()[-5:]}")
    written = export_run(store, a.out, step=a.step, report=not a.no_report)
    for name, path in written.items():
        print(f"{name:20s} {path}")
    return 0


def cmd_import_decisions(a) -> int:
    from .readers.export import import_decisions

    events = import_decisions(RunStore(a.path), a.file, reviewer=a.reviewer)
    print(f"imported {len(events)} decisions into {a.path}")
    return 0

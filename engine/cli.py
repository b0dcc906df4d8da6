"""Headless runs: ``python -m engine run|resume|compare ...``.

Every error a user can cause prints one line and exits with status 2.

``run`` and ``resume`` train with several processes (:mod:`engine.steps.distributed`) when started by
``torchrun``, or with ``--nproc N``, which starts torchrun (``torch.distributed.run``) on this machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from dataclasses import replace

from .errors import UserError, shown
from .method.config import (SMALL_PAIR_TEACHER, RunConfig, ScheduleConfig, TrainConfig, declared,
                            defaults_for_teacher, schedule_note, with_settings, with_teacher_defaults)
from .method.noise import known_noise_rate, parse_noise_spec
from .method.presets import load_presets, preset_named
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


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2, no usage dump
        self.exit(2, f"error: {message}\n")


def _default_text(item, small_schedule: ScheduleConfig, small_train: TrainConfig) -> str:
    """`` (default X; valid: ...)``, with both defaults where the small 32x32 CPU pair has its own."""
    meta = item.setting
    valid = f"; valid: {meta.valid()}" if meta.kind in ("int", "real", "choice") else ""
    if item.default is None or item.default == ():
        return f" (default: {meta.why.removeprefix('None: ').removeprefix('empty: ')}{valid})"
    block = {"schedule": small_schedule, "train": small_train}.get(item.path[0])
    small = getattr(block, item.path[-1]) if block is not None else item.default
    if small != item.default:
        return f" (default: {item.default} for the digits pair, {small} for the small 32x32 CPU pair{valid})"
    return f" (default {item.default}{valid})"


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    """One flag per declared run setting (:func:`engine.method.config.declared`), then the run's own."""
    small_schedule, small_train = defaults_for_teacher(SMALL_PAIR_TEACHER)
    presets, _ = load_presets()
    p.add_argument("--preset", default=None, metavar="NAME",
                   help="start from an app preset (" + ", ".join(p.short for p in presets) + "); other flags "
                        "given with it override its values")
    for item in declared().values():
        meta = item.setting
        text = meta.help + _default_text(item, small_schedule, small_train)
        if meta.kind == "list":
            p.add_argument(meta.flag, dest=item.dest, action="append", default=None, metavar="COMPONENT",
                           help=text)
        else:  # every value is read as text and checked by the config, so a bad one says what is valid
            metavar = {"int": "N", "real": "X", "choice": "{" + ",".join(meta.choices) + "}"}.get(meta.kind)
            p.add_argument(meta.flag, dest=item.dest, default=None, metavar=metavar, help=text)
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice; 1 is best on a busy machine)")
    _add_nproc_flag(p)
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--force", action="store_true", help="replace a run already in --out (its review decisions "
                                                         "are set aside as reviews-old-N.sqlite)")
    p.add_argument("--keep-reviews", action="store_true", help="with --force: keep the review decisions, when the "
                                                                "new run has the same samples and given labels")


def _add_nproc_flag(p: argparse.ArgumentParser, resume: bool = False) -> None:
    default = "the number that started the run" if resume else "1"
    p.add_argument("--nproc", default=None, metavar="N",
                   help=f"processes that train the run together, each on its part of every batch "
                        f"(DistributedDataParallel: gloo on CPUs, NCCL with one GPU each; default {default}); "
                        "starts torchrun on this machine. Several machines: torchrun --nnodes ... -m engine run")


def parse_nproc(value: str | int | None) -> int | None:
    """``--nproc``'s value as a count of processes (None when not given); one clear error otherwise."""
    if value is None:
        return None
    try:
        count = int(str(value).strip())
    except ValueError:
        count = 0
    if count < 1 or str(value).strip() != str(count):
        raise UserError(f"--nproc {value} is not a number of processes; valid: a whole number, at least 1")
    import torch

    if count > 1 and torch.cuda.is_available() and count > torch.cuda.device_count():
        raise UserError(f"--nproc {count}: each process trains on a GPU of its own and this machine has "
                        f"{torch.cuda.device_count()}; valid: 1 to {torch.cuda.device_count()}")
    return count


def _join_processes(nproc: int | None):
    """This process's :class:`engine.steps.distributed.Group` when torchrun started several (else None)."""
    from .steps import distributed

    world = distributed.launched_processes()
    if world > 1 and nproc is not None and nproc != world:
        raise UserError(f"--nproc {nproc} differs from the {world} processes torchrun started; leave out --nproc "
                        "under torchrun")
    return distributed.join()


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def launch(nproc: int, argv: list[str], threads: int | None) -> int:
    """Run ``python -m engine ARGV`` in ``nproc`` processes on this machine under torchrun
    (``torch.distributed.run``, standalone rendezvous); the exit status of the first process that failed."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run as torchrun

    os.environ["OMP_NUM_THREADS"] = str(threads or os.environ.get("OMP_NUM_THREADS") or 1)
    root = str(Path(__file__).resolve().parents[1])  # the processes import this engine, wherever they start
    os.environ["PYTHONPATH"] = os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    for name in ("torch.distributed.elastic", "torch.distributed.run", "torch.distributed.launcher"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # a failed process has said why in one line
    args = get_args_parser().parse_args(["--standalone", "--nproc-per-node", str(nproc), "--module", "engine",
                                         *_without_nproc(argv)])
    try:
        torchrun(args)
    except ChildFailedError as exc:
        _, failure = exc.get_first_failure()
        return failure.exitcode if failure.exitcode > 0 else 1
    except SignalException:  # Ctrl-C or a kill: torchrun stopped the processes; rank 0 said how to resume
        return 130
    return 0


def config_from_args(a: argparse.Namespace, teacher: str | None = None, dataset=None) -> RunConfig:
    """Build and validate the run config from parsed flags (before any work).

    Settings come from, first to last: the declared defaults, the preset
    (``--preset``), the defaults of ``teacher`` (the architecture the run
    will train; :func:`engine.method.config.with_teacher_defaults`) where
    the schedule or training knobs keep the general ones, then every flag
    given. ``--noise-rate known`` follows
    :func:`engine.method.noise.known_noise_rate`; where that needs the data
    (asym, a matrix, a label file) it reads ``dataset``, or loads it.
    """
    base = preset_named(a.preset).config if getattr(a, "preset", None) else RunConfig()
    settings = declared()
    given = {dest: item.setting.parse(getattr(a, dest)) if item.setting.kind != "list" else tuple(getattr(a, dest))
             for dest, item in settings.items() if getattr(a, dest, None) is not None}
    rate = given.pop("noise_rate", None)
    given["noise"] = _noise(given.get("noise"), given.get("labels", base.labels), base.noise)
    base = with_teacher_defaults(base, given.get("teacher", base.teacher) or teacher)
    if isinstance(rate, str) and rate not in settings["noise_rate"].setting.words:
        given["noise_rate"] = rate  # not a number: the config names it
    config = with_settings(base, given)
    if rate is None:
        return config
    if rate == "estimate":
        return replace(config, noise_rate=None)
    if rate == "known":
        return replace(config, noise_rate=_known_rate(config, dataset))
    return with_settings(config, {"noise_rate": rate})


def _noise(noise: str | None, labels: str | None, default: str) -> str:
    """The run's noise spec: the one given, else ``default``; ``none`` with a label file (which refuses any
    other)."""
    from .data.labels import labels_with_noise_problem

    if labels:
        problem = labels_with_noise_problem(labels, noise or "none")
        if problem:
            raise UserError(problem)
        return "none"
    return noise if noise is not None else default


def _known_rate(config: RunConfig, dataset=None) -> float:
    """``--noise-rate known``: :func:`engine.method.noise.known_noise_rate`, with the data where it needs them."""
    spec = parse_noise_spec(config.noise)
    labelled = bool(config.labels)
    rate = known_noise_rate(spec, label_file=labelled)
    if rate is not None:
        return rate
    if dataset is None:
        from .data import dataset_for_config

        dataset = dataset_for_config(config)
    rate = known_noise_rate(spec, dataset.train_true, dataset.class_names, given_labels=dataset.train_given,
                            label_file=labelled)
    if rate is None:
        raise UserError(f"--noise-rate known is the share of the label file's labels that differ from the truth, "
                        f"and no sample of --labels {shown(config.labels)} has a known truth; give the noise "
                        "rate as a number, or omit --noise-rate to estimate it")
    return rate


def _drive(run, steps: int | None = None) -> dict:
    """Step ``run`` to its end (or ``steps`` steps) with a progress bar; its summary (None unless done)."""
    from tqdm import tqdm

    last = None if steps is None else run.state.step + steps
    with tqdm(total=run.total_steps(), initial=run.state.step, unit="step", file=sys.stderr,
              dynamic_ncols=True) as bar:
        while not run.done and (last is None or run.state.step < last):
            bar.set_description(run.phase.value)
            result = run.step()
            shown = {k: result.metrics.get(k) for k in ("refined_label_precision", "student_test_accuracy")}
            bar.set_postfix({k.split("_")[0]: f"{v:.3f}" for k, v in shown.items() if v is not None})
            bar.total = run.total_steps()
            bar.update(1)
    return RunStore(run.store.path).summary() if run.done else None


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
    _set_threads(a.threads)
    nproc = parse_nproc(a.nproc)
    # every flag checked before any data is read ('known' may need the data: resolved once they are loaded)
    draft = config_from_args(a if a.noise_rate != "known" else argparse.Namespace(**{**vars(a), "noise_rate": None}))
    group = _join_processes(nproc)
    if group is None and (nproc or 1) > 1:
        return launch(nproc, a.argv, a.threads)
    if group is not None and not group.leads:
        from .steps.distributed import follow

        return follow(group)
    from .data import dataset_for_config
    from .models import default_pair
    from .steps.run import Run

    dataset = None  # the defaults follow the networks: the data decide the teacher unless it is named
    if draft.teacher is None or a.noise_rate == "known":
        dataset = dataset_for_config(draft)
    teacher = draft.teacher or default_pair(dataset.kind, dataset.input_shape)[0]
    config = config_from_args(a, teacher, dataset)
    note = schedule_note(replace(config, teacher=teacher))
    if note:
        print(f"note: {note}", file=sys.stderr)
    run = Run.create(a.out, config, force=a.force, dataset=dataset, keep_reviews=a.keep_reviews,
                     device=group.device if group else None, processes=group.world if group else 1)
    if run.reviews_set_aside is not None:
        print(f"note: the replaced run's review decisions were moved to {run.reviews_set_aside}", file=sys.stderr)
    if run.audit_set_aside is not None:
        print(f"note: the replaced run's audit (of other samples) was moved to {run.audit_set_aside}", file=sys.stderr)
    skipped = run.dataset.skipped
    if skipped:
        print(f"warning: {len(skipped)} input file(s) skipped, e.g. {skipped[0]}; all listed in "
              f"{run.store.skipped_path}", file=sys.stderr)
    summary = _drive_with(run, group)
    print(format_table([{"run": a.out, **summary}]))
    return 0


def _drive_with(run, group, steps: int | None = None) -> dict | None:
    """Drive ``run`` to its end (or ``steps`` steps), the other processes training with it when there are any."""
    from .steps import distributed

    if group is not None:
        distributed.lead(run, group)
    summary = _drive(run, steps)
    distributed.stop(group)  # on an error this process exits and torchrun ends the others
    return summary


def cmd_resume(a) -> int:
    from .steps.lifecycle import check_processes, recorded_processes
    from .steps.run import Run

    nproc = parse_nproc(a.nproc)
    if a.steps is not None and a.steps < 1:
        raise UserError(f"--steps {a.steps} must be at least 1 (or leave it out to train to the end)")
    group = _join_processes(nproc)
    if group is None:
        store = RunStore(a.path)
        recorded = recorded_processes(store.runtime() if store.exists() else None)
        check_processes(store, {"processes": recorded}, nproc or recorded)
        if recorded > 1:
            return launch(recorded, a.argv, a.threads)
    elif not group.leads:
        from .steps.distributed import follow

        return follow(group)
    # the recorded threads unless given; a different count is refused, as another number of processes
    run = Run.open(a.path, threads=a.threads, device=group.device if group else None,
                   processes=group.world if group else 1)
    if run.done:
        print(f"run {a.path} is already finished")
    if _drive_with(run, group, a.steps) is None:
        print(f"run {a.path} stopped at step {run.state.step} of {run.total_steps()}")
        return 0
    print(format_table([{"run": a.path, **RunStore(a.path).summary()}]))
    return 0


def cmd_compare(a) -> int:
    from .readers.compare import (by_method, by_method_text, chance_sentence, comparison_table,
                                  format_table as comparison_text, require_same_data, text_table)

    stores = [RunStore(path) for path in a.runs]
    for store, path in zip(stores, a.runs):
        if not store.exists():
            raise UserError(f"{path!r} is not a run directory (no config.json)")
    require_same_data(stores)
    rows = comparison_table(stores, chance=True)
    methods, sentence = by_method(rows), chance_sentence(rows)
    if a.json:
        print(json.dumps({"runs": rows, "by_method": methods, "chance": sentence}, indent=2))
        return 0
    print(comparison_text(rows))
    if sentence:
        print("\n" + sentence)
    if len({r["seed"] for r in rows}) > 1:
        print("\nOver the seeds:\n" + text_table(by_method_text(methods)))
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


def cmd_audit(a) -> int:
    """A run's random audit: its counts, the next samples to audit, or audit decisions from a CSV file."""
    from .readers.audit import audit_report, copy_audit, next_to_audit, read_audit_file, report_lines
    from .rundir.review import AuditStore

    store = RunStore(a.path)
    if not store.exists():
        raise UserError(f"{a.path!r} is not a run directory (no config.json)")
    if (a.next is not None or a.import_file) and not a.reviewer:
        raise UserError("--next and --import need --reviewer NAME (whose audit it is)")
    if a.next is not None:
        keys, given = store.dataset_arrays()["keys"], store.dataset_arrays()["given"]
        names = [str(c) for c in store.class_names()]
        print("key,given,class")
        for sample in next_to_audit(store, a.reviewer, a.next):
            print(f"{keys[sample]},{names[int(given[sample])]},")
        return 0
    if a.copy_from:
        added = copy_audit(store, a.copy_from)
        print(f"copied {added} audit decisions of {a.copy_from} into {store.audit_path}")
    if a.import_file:
        events = read_audit_file(store, a.import_file, a.reviewer)
        stored = AuditStore(store.path, num_classes=len(store.class_names())).record_many(events, once=True)
        print(f"recorded {len(stored)} audit decisions of {a.reviewer!r} in {store.audit_path}")
    if a.step is not None and a.step not in store.steps():
        raise UserError(f"step {a.step} of run {a.path!r} has no snapshot; valid: "
                        f"{', '.join(map(str, store.steps())) or 'none yet'}")
    report = audit_report(store, a.step)
    if a.json:
        print(json.dumps(report, indent=2))
    else:
        print("\n".join(report_lines(report)))
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
    _add_nproc_flag(p_resume, resume=True)
    p_resume.add_argument("--steps", type=int, default=None, help="stop after this many steps (default: train to "
                                                                   "the end)")
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
    p_exp.add_argument("--force", action="store_true", help="replace an export in --out that was edited since")
    p_exp.set_defaults(func=cmd_export)
    p_imp = sub.add_parser("import-decisions", help="record review decisions from a CSV or JSON file")
    p_imp.add_argument("path", help="run directory")
    p_imp.add_argument("file", help="decisions.csv / samples.csv / .json from an export")
    p_imp.add_argument("--reviewer", default=None, help="reviewer name for rows without one")
    p_imp.set_defaults(func=cmd_import_decisions)
    p_aud = sub.add_parser("audit", help="a run's random audit: its counts (noise rate, labels' precision), the "
                                         "next samples to audit, or audited classes from a CSV")
    p_aud.add_argument("path", help="run directory")
    p_aud.add_argument("--step", type=int, default=None, help="count this step's refined labels (default: the last)")
    p_aud.add_argument("--next", type=int, default=None, metavar="N",
                       help="print the next N samples of the audit order for --reviewer as CSV (key,given,class)")
    p_aud.add_argument("--import", dest="import_file", default=None, metavar="FILE",
                       help="record a CSV's audited classes (key or sample, class: a name, an index, outlier or "
                            "unsure) for --reviewer")
    p_aud.add_argument("--copy-from", default=None, metavar="RUN",
                       help="record the audit of another run of the same samples and given labels in this run's "
                            "(its calibrated rule uses its own run's audit only)")
    p_aud.add_argument("--reviewer", default=None, help="whose audit (--next, --import)")
    p_aud.add_argument("--json", action="store_true", help="the counts as one JSON object")
    p_aud.set_defaults(func=cmd_audit)
    p_users = sub.add_parser("users", help="accounts of the shared app: the users file named by $AMLKD_USERS")
    p_users.add_argument("action", choices=("add", "remove"), help="add (or change) a user, or remove one")
    p_users.add_argument("name", help="user name (1-64 printable characters)")
    p_users.add_argument("--role", choices=("admin", "reviewer", "viewer"), default="viewer",
                         help="admin: runs and trainings; reviewer: review and export; viewer: look (default)")
    p_users.set_defaults(func=cmd_users)
    p_feat = sub.add_parser("features", help="features of a dataset's training samples from a pretrained "
                                             "backbone, written as the .npz --teacher-features reads")
    p_feat.add_argument("--dataset", required=True, help="a dataset spec, as for run")
    p_feat.add_argument("--backbone", default="torchvision:resnet50",
                        help="torchvision:NAME (default torchvision:resnet50)")
    p_feat.add_argument("--weights", default="imagenet", help="imagenet (TORCH_HOME/hub/checkpoints) or a file")
    p_feat.add_argument("--out", required=True, help="the .npz to write (features, keys)")
    p_feat.add_argument("--batch-size", type=int, default=64)
    p_feat.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p_feat.set_defaults(func=cmd_features)
    p_fetch = sub.add_parser("fetch-weights", help="download torchvision's ImageNet weights into TORCH_HOME "
                                                   "(needs a connection; runs never download)")
    p_fetch.add_argument("arch", help="e.g. resnet18, resnet50, mobilenet_v3_small (torchvision: prefix optional)")
    p_fetch.set_defaults(func=cmd_fetch_weights)
    return parser


def cmd_features(a) -> int:
    from .data import load_dataset
    from .device import default_device
    from .models.features import dataset_features, write_features
    from .models.zoo import arch_of, weights_path

    _set_threads(a.threads)
    if a.batch_size < 1:
        raise UserError(f"--batch-size {a.batch_size} must be at least 1")
    arch = arch_of(a.backbone)
    weights_path(arch, a.weights)  # absent weights fail before the dataset is read
    dataset = load_dataset(a.dataset)
    features = dataset_features(dataset, arch, a.weights, default_device(), a.batch_size)
    path = write_features(a.out, features, dataset.keys())
    print(f"{path}: {features.shape[0]} samples x {features.shape[1]} features from torchvision:{arch}")
    return 0


def cmd_fetch_weights(a) -> int:
    from .models.zoo import fetch_weights

    print(fetch_weights(a.arch))
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what --nproc hands to torchrun
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
    written = export_run(store, a.out, step=a.step, report=not a.no_report, force=a.force)
    for name, path in written.items():
        print(f"{name:20s} {path}")
    return 0


def cmd_users(a) -> int:
    from .rundir import users

    path = users.users_path()
    if path is None:
        raise UserError(f"set {users.USERS_ENV} to the users file (e.g. {users.USERS_ENV}=/data/users.json)")
    if a.action == "add":
        password = sys.stdin.readline().rstrip("\r\n")
        new = users.add_user(a.name, a.role, password, path)
        print(f"{'added' if new else 'updated'} {a.name} ({a.role}) in {path}")
    else:
        users.remove_user(a.name, path)
        print(f"removed {a.name} from {path}")
    return 0


def cmd_import_decisions(a) -> int:
    from .readers.export import import_decisions

    events = import_decisions(RunStore(a.path), a.file, reviewer=a.reviewer)
    print(f"imported {len(events)} new decisions into {a.path} (rows already in its review log are skipped)")
    return 0

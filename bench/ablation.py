"""Ablation benchmark: what each component of AML-KD is worth.

    .venv/bin/python bench/ablation.py [--quick] [--seeds 0 1 2] [--threads 2] [--jobs 2] [--data DIR]

For each setting it first trains one teacher (an AML-KD run stepped to the
end of its teacher phase), then trains, on the same given labels and each
distilling from *that* teacher (``teacher_checkpoint``): AML-KD, AML-KD without
each component (``--without awe``, ``mutual``, ``stage0``) and KD; and CE.
Sharing the teacher makes the runs differ only in the component: the same
teacher network, the same graph features and the same random stream from the
student's first epoch on. Settings: digits with 40% symmetric noise (seeds
0-2; the default schedule), and cifar10-small (``../shared/data/cifar10-small``
or ``--data``) with 40% symmetric and 40% instance-dependent noise (seed 0
each; ``--quick`` skips them). cifar10-small uses the small CPU pair's
teacher schedule (24 epochs) and, by default, a student schedule cut to half
(``--cifar-student-epochs 16``: warm-up 2, refine 11, mutual 3, the default's
proportions) so that both settings fit about an hour on 2 cores with
``--jobs 2`` (each setting in its own process, one torch thread each).

It prints given and refined label precision and the student's test accuracy
per run, the mean over seeds, and each component's worth (AML-KD minus the
run without it). Then, on digits, the graph built on features from elsewhere
(``--teacher-features``: those of a teacher trained on clean labels) against
the run's own teacher. The bar: AML-KD is the best student on digits on
average; the rest is reported as measured. ``--out DIR --reuse`` keeps the
runs and reuses every finished one whose settings match (a resumed bench).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.digits import train  # noqa: E402
from engine.method.config import ABLATIONS, RunConfig, defaults_for_teacher  # noqa: E402
from engine.data import dataset_for_config  # noqa: E402
from engine.models import default_pair  # noqa: E402
from engine.steps.phases import Phase  # noqa: E402
from engine.steps.run import Run  # noqa: E402
from engine.rundir.store import RunStore  # noqa: E402

CIFAR10_SMALL = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10-small"
METHODS = ["aml-kd"] + [f"without {name}" for name in ABLATIONS] + ["kd", "ce"]


def base_config(dataset: str, noise: str, seed: int, student_epochs: int | None = None) -> RunConfig:
    """The default config of a dataset, with its teacher's schedule (the small CPU pair's on 32x32 images);
    ``student_epochs`` rescales warm-up, refine and mutual in the schedule's proportions."""
    config = RunConfig(dataset=dataset, noise=noise, seed=seed)
    data = dataset_for_config(config)
    teacher = default_pair(data.kind, data.input_shape)[0]
    schedule, train_config = defaults_for_teacher(teacher)
    if student_epochs:
        total = schedule.student_epochs
        warmup = max(1, round(schedule.warmup_epochs * student_epochs / total))
        mutual = max(1, int(schedule.mutual_epochs * student_epochs / total))
        schedule = replace(schedule, warmup_epochs=warmup, refine_epochs=student_epochs - warmup - mutual,
                           mutual_epochs=mutual)
    return config.with_changes(schedule=schedule, train=train_config)


def _finished(path: Path, config: RunConfig) -> bool:
    try:
        store = RunStore(path)
        return store.config() == config and store.status().get("phase") == Phase.DONE.value
    except Exception:  # noqa: BLE001 - anything unreadable is trained again
        return False


def train_or_reuse(path: Path, config: RunConfig, reuse: bool) -> dict:
    if reuse and _finished(path, config):
        summary = RunStore(path).summary()
        summary["process_seconds"] = summary.get("wall_seconds")
        return summary
    return train(path, config)


def shared_teacher(path: Path, config: RunConfig, reuse: bool) -> Path:
    """Train the setting's teacher once: an AML-KD run stepped to the end of its teacher phase (the best
    held-out epoch restored); its checkpoint.pt is every distillation run's ``teacher_checkpoint``."""
    store = RunStore(path)
    if reuse and store.exists() and store.config() == config and store.checkpoint_path.exists():
        run = Run.open(path)
    else:
        run = Run.create(path, config, force=True)
    while run.phase == Phase.TEACHER:
        run.step()
    return store.checkpoint_path


def bench_setting(dataset: str, noise: str, seed: int, root: Path, student_epochs: int | None = None,
                  reuse: bool = False, threads: int | None = None) -> dict[str, dict]:
    if threads:
        torch.set_num_threads(threads)
    base = base_config(dataset, noise, seed, student_epochs)
    name = f"{Path(dataset.split(':', 1)[-1]).name}-{noise.replace(':', '')}-{seed}"
    teacher = str(shared_teacher(root / f"{name}-teacher", base, reuse))
    taught = base.with_changes(teacher_checkpoint=teacher)
    results = {"aml-kd": train_or_reuse(root / f"{name}-amlkd", taught, reuse)}
    for component in ABLATIONS:
        results[f"without {component}"] = train_or_reuse(root / f"{name}-no-{component}",
                                                         taught.with_changes(without=(component,)), reuse)
    results["kd"] = train_or_reuse(root / f"{name}-kd", taught.with_changes(method="kd"), reuse)
    results["ce"] = train_or_reuse(root / f"{name}-ce", base.with_changes(method="ce"), reuse)
    line = "  ".join(f"{m} {r['student_test_accuracy']:.3f}" for m, r in results.items())
    print(f"  {name}: {line}", flush=True)
    return results


def features_check(root: Path, seed: int = 0, reuse: bool = False) -> str:
    """``--teacher-features``: the features of a teacher trained on clean labels (a KD run without noise)
    against the run's own teacher, on digits with 40% symmetric noise; both runs distil from the setting's
    shared teacher, so only the graph's features (and stage 0's seeds) differ."""
    base = base_config("digits", "symmetric:0.4", seed)
    clean = root / f"digits-clean-teacher-{seed}"
    train_or_reuse(clean, base.with_changes(method="kd", noise="none"), reuse)
    own = root / f"digits-symmetric0.4-{seed}-amlkd"
    given = root / f"digits-symmetric0.4-{seed}-clean-features"
    teacher = str(root / f"digits-symmetric0.4-{seed}-teacher" / "checkpoint.pt")
    train_or_reuse(given, base.with_changes(teacher_checkpoint=teacher,
                                            teacher_features=str(RunStore(clean).teacher_outputs_path)), reuse)
    lines = ["digits, symmetric:0.4, seed 0: the graph's features", f"{'features':<28}  {'stage 0':>7}  "
             f"{'refined':>7}  {'student':>7}", "-" * 56]
    for label, path in (("the run's own teacher", own), ("a clean-label teacher's", given)):
        store = RunStore(path)
        stage0 = next(m for m in store.metrics() if m["phase"] == "propagate")["refined_label_precision"]
        summary = store.summary()
        lines.append(f"{label:<28}  {stage0:>7.3f}  {summary['refined_label_precision']:>7.3f}  "
                     f"{summary['student_test_accuracy']:>7.3f}")
    return "\n".join(lines)


def table(title: str, per_seed: list[dict[str, dict]]) -> str:
    head = f"{'method':<16}  {'given':>6}  {'refined':>7}  {'student':>7}  {'vs AML-KD':>9}  {'warnings'}"
    lines = [title, head, "-" * len(head)]
    mean = {m: {k: statistics.mean(r[m][k] for r in per_seed if r[m][k] is not None) if any(
        r[m][k] is not None for r in per_seed) else None
        for k in ("given_label_precision", "refined_label_precision", "student_test_accuracy")} for m in METHODS}
    for method in METHODS:
        row = mean[method]
        delta = row["student_test_accuracy"] - mean["aml-kd"]["student_test_accuracy"]
        warned = sorted({w["code"] for r in per_seed for w in r[method].get("warnings", [])})
        fmt = lambda v, w: f"{v:>{w}.3f}" if v is not None else f"{'-':>{w}}"  # noqa: E731
        lines.append(f"{method:<16}  {fmt(row['given_label_precision'], 6)}  {fmt(row['refined_label_precision'], 7)}"
                     f"  {fmt(row['student_test_accuracy'], 7)}  {delta:>+9.3f}  {', '.join(warned) or '-'}")
    lines.append("component worth (AML-KD minus the run without it, student accuracy): " + ", ".join(
        f"{c} {mean['aml-kd']['student_test_accuracy'] - mean[f'without {c}']['student_test_accuracy']:+.3f}"
        for c in ABLATIONS))
    return "\n".join(lines), mean


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="digits only (skip cifar10-small)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="digits seeds")
    parser.add_argument("--data", default=str(CIFAR10_SMALL), help="cifar10-small: train/ and test/ image folders")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", default=None, help="keep the runs here (default: a temp folder)")
    parser.add_argument("--reuse", action="store_true", help="with --out: reuse finished runs of the same settings")
    parser.add_argument("--cifar-student-epochs", type=int, default=16,
                        help="cifar10-small student epochs (0: the small pair's full 32)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="settings trained at once, each in its own process (threads each: --threads)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, jobs {args.jobs}, "
          f"device {'cuda' if torch.cuda.is_available() else 'cpu'}", flush=True)
    settings = [("digits", "symmetric:0.4", args.seeds, None)]
    if not args.quick:
        if Path(args.data).is_dir():
            epochs = args.cifar_student_epochs or None
            settings += [(f"folder:{args.data}", "symmetric:0.4", [0], epochs),
                         (f"folder:{args.data}", "instance:0.4", [0], epochs)]
        else:
            print(f"cifar10-small not found at {args.data}: only digits (pass --data DIR)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        root.mkdir(parents=True, exist_ok=True)
        jobs = [(dataset, noise, seed, root, epochs, args.reuse, args.threads)
                for dataset, noise, seeds, epochs in settings for seed in seeds]
        if args.jobs > 1:  # the long cifar10-small settings first, so that they start at once
            order = sorted(range(len(jobs)), key=lambda i: jobs[i][0] == "digits")
            with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) \
                    as pool:
                futures = {i: pool.submit(bench_setting, *jobs[i]) for i in order}
                done = [futures[i].result() for i in range(len(jobs))]
        else:
            done = [bench_setting(*job) for job in jobs]
        outputs, k = [], 0
        for dataset, noise, seeds, epochs in settings:
            per_seed, k = done[k:k + len(seeds)], k + len(seeds)
            schedule = f", student {epochs} epochs" if epochs else ""
            outputs.append(table(f"{dataset}, {noise}, seeds {seeds}{schedule}", per_seed))
        features = features_check(root, seed=args.seeds[0], reuse=args.reuse)
    for text, _ in outputs:
        print()
        print(text)
    print()
    print(features)
    digits_mean = outputs[0][1]
    accuracy = {m: digits_mean[m]["student_test_accuracy"] for m in METHODS}
    top = max(accuracy.values())
    best = [m for m in METHODS if abs(accuracy[m] - top) < 1e-9]
    others = ", ".join(f"{m} {accuracy[m]:.4f}" for m in METHODS if m != "aml-kd")
    if best == ["aml-kd"]:
        verdict = "PASS"
    elif "aml-kd" in best:
        verdict = f"TIE with {', '.join(m for m in best if m != 'aml-kd')}"
    else:
        verdict = "FAIL"
    print()
    print(f"  [{verdict}] AML-KD is the best student on digits on average: AML-KD {accuracy['aml-kd']:.4f}; "
          f"{others}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Is the review queue worth an annotator's time? Its precision against a standard baseline.

    python bench/review_queue.py [--seeds 0 1 2] [--threads 1] [--cifar-teacher-epochs 8]

For digits with 40% symmetric noise (seeds 0-2) and cifar10-small with 40%
symmetric noise (seed 0; skipped with a message when ../shared/data/cifar10-small
is absent), it trains an AML-KD run up to its first refine step and compares,
on two steps' snapshots of the same run:

- the *first student step* (warm-up epoch 1): the earliest step with student
  probabilities, where a review has the most propagations left to act on and
  one model's opinion is least reliable;
- the *first refine step* (the phase the issue's annotator reviews in; on
  digits the student is already so sure there that both rankings are perfect
  at 200: they can only tie).

The rankings:

- ours: the default review queue (:func:`engine.readers.triage.build_queue`: samples
  worth reviewing, largest expected change first, at most 20% of the samples);
- baseline: cleanlab's self-confidence ranking, the student's probability of
  the given label, lowest first (:func:`engine.readers.triage.self_confidence_ranking`).

Precision at K is the fraction of the first K samples whose given label is
wrong (higher = less of the annotator's time wasted); ``@Q`` is at the
queue's own length. Prints one row per run and step; the last line is
``queue_fraction=F precision_at_200=P baseline_at_200=B`` for digits seed 0
at the first student step.

Schedules: digits uses its default schedule up to the first refine step
(teacher with early stopping, stage-0 propagation, 4 warm-up epochs, one
refine epoch). cifar10-small uses the small CPU pair with a shortened teacher
(``--cifar-teacher-epochs``, default 8 of 24) and 3 warm-up epochs, so that it
fits a shared 2-core machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine.method.config import SMALL_PAIR_TEACHER, RunConfig, defaults_for_teacher  # noqa: E402
from engine.steps.run import Run  # noqa: E402
from engine.rundir.store import RunStore  # noqa: E402
from engine.readers.triage import QUEUE_FRACTION, build_queue, queue_precision, self_confidence_ranking  # noqa: E402

CIFAR = REPO.parent / "shared" / "data" / "cifar10-small"
AT = (50, 200)
POINTS = ("first student", "first refine")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="digits seeds (default 0 1 2)")
    p.add_argument("--noise", default="symmetric:0.4")
    p.add_argument("--cifar", default=str(CIFAR), help="cifar10-small folder (default ../shared/data/cifar10-small)")
    p.add_argument("--cifar-teacher-epochs", type=int, default=8)
    p.add_argument("--no-cifar", action="store_true")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1: the machine is shared)")
    p.add_argument("--out", default=None, help="keep the runs here (default: a temporary folder)")
    return p.parse_args(argv)


def to_first_refine(path: Path, config: RunConfig) -> tuple[RunStore, dict[str, int], float]:
    """Train until the first refine step is written; (store, {point: step}, seconds), the points
    being the first student (warm-up) step and the first refine step."""
    started = time.perf_counter()
    run = Run.create(path, config, force=True)
    steps: dict[str, int] = {}
    while not run.done:
        result = run.step()
        if result.phase.value in ("warmup", "refine"):
            steps.setdefault(POINTS[0], result.step)  # the first step with student probabilities
        if result.phase.value == "refine":
            steps[POINTS[1]] = result.step
            return RunStore(path), steps, time.perf_counter() - started
    raise RuntimeError(f"run {path} finished without a refine step")


def measure(store: RunStore, step: int) -> dict:
    arrays = store.dataset_arrays()
    given, true = arrays["given"].astype(np.int64), arrays["true"].astype(np.int64)
    snapshot = store.snapshot(step)
    ours = build_queue(snapshot, given)
    baseline = self_confidence_ranking(snapshot, given)
    row = {"n": len(given), "noisy": int(np.sum(given != true)), "queue": len(ours),
           "queue_fraction": len(ours) / len(given)}
    for k in AT:
        row[f"ours@{k}"] = queue_precision(ours, given, true, k)
        row[f"base@{k}"] = queue_precision(baseline, given, true, k)
    row["ours@Q"] = queue_precision(ours, given, true, len(ours))
    row["base@Q"] = queue_precision(baseline, given, true, len(ours))
    return row


def fmt(value) -> str:
    return "  -  " if value is None else f"{value:.3f}"


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    root = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="review-queue-"))
    runs = [(f"digits seed {seed}", RunConfig(dataset="digits", noise=args.noise, seed=seed), f"digits-{seed}")
            for seed in args.seeds]
    if args.no_cifar:
        print("cifar10-small: skipped (--no-cifar)")
    elif not (Path(args.cifar) / "train").is_dir():
        print(f"cifar10-small: skipped, no data at {args.cifar} (expected train/ and test/ folders)")
    else:
        schedule, train = defaults_for_teacher(SMALL_PAIR_TEACHER)
        schedule = replace(schedule, teacher_epochs=args.cifar_teacher_epochs)
        runs.append(("cifar10-small seed 0", RunConfig(
            dataset=f"folder:{args.cifar}", noise=args.noise, seed=0, teacher=SMALL_PAIR_TEACHER,
            student="cifar-small-student", schedule=schedule, train=train, noise_rate=0.4), "cifar-0"))
    print(f"Default queue (worth reviewing, expected change, at most {QUEUE_FRACTION:.0%}) vs self-confidence "
          f"(student P(given label), lowest first), {args.noise}.")
    header = (f"{'run':22s} {'at step':14s} {'step':>4s} {'N':>6s} {'noisy':>6s} {'queue':>6s} {'frac':>5s}  "
              f"{'ours@50':>7s} {'base@50':>7s}  {'ours@200':>8s} {'base@200':>8s}  {'ours@Q':>6s} {'base@Q':>6s}"
              f"  {'seconds':>7s}")
    print(header)
    print("-" * len(header))
    results: dict[tuple[str, str], dict] = {}
    for name, config, folder in runs:
        store, steps, seconds = to_first_refine(root / folder, config)
        for point, step in steps.items():
            row = measure(store, step)
            results[name, point] = row
            print(f"{name:22s} {point:14s} {step:4d} {row['n']:6d} {row['noisy']:6d} {row['queue']:6d} "
                  f"{row['queue_fraction']:5.2f}  {fmt(row['ours@50']):>7s} {fmt(row['base@50']):>7s}  "
                  f"{fmt(row['ours@200']):>8s} {fmt(row['base@200']):>8s}  {fmt(row['ours@Q']):>6s} "
                  f"{fmt(row['base@Q']):>6s}  {seconds:7.0f}", flush=True)
    for point in POINTS:
        rows = {n: r for (n, p), r in results.items() if p == point}
        wins = [n for n, r in rows.items() if r["ours@200"] > r["base@200"]]
        ties = [n for n, r in rows.items() if r["ours@200"] == r["base@200"]]
        losses = [n for n, r in rows.items() if r["ours@200"] < r["base@200"]]
        print(f"precision at 200 at the {point} step, ours vs baseline: better on {len(wins)}, equal on {len(ties)}, "
              f"worse on {len(losses)}" + (f" (worse: {', '.join(losses)})" if losses else ""))
    first = results.get((f"digits seed {args.seeds[0]}", POINTS[0]))
    if first is not None:
        print(f"queue_fraction={first['queue_fraction']:.3f} precision_at_200={first['ours@200']:.3f} "
              f"baseline_at_200={first['base@200']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

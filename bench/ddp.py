"""One process against several: what ``--nproc`` costs and changes (engine.steps.distributed).

    .venv/bin/python bench/ddp.py [--nproc 2] [--seeds 0] [--spread-seeds 1] [--threads 1]
                                  [--cifar-schedule 4,1,3,2] [--skip-cifar] [--skip-digits]
                                  [--digits-schedule T,W,R,M] [--jobs 1] [--out DIR [--reuse]]

Trains the same run twice through the CLI, once in one process and once in ``--nproc`` processes (gloo,
``--threads`` torch threads each), on digits (40% symmetric noise, its default schedule unless
``--digits-schedule``) and on cifar10-small (``../shared/data/cifar10-small``; skipped with a note when it is
absent; the schedule of ``--cifar-schedule``: teacher, warm-up, refine and mutual epochs, short by default
so that it fits on 2 busy cores). Per run it prints the seconds per teacher and per student epoch (the
training part of a step, from ``metrics.jsonl``'s ``train_seconds``), the share of a student step spent
outside training (forward passes over the whole set, graph, propagation, evaluation: rank 0 alone), the
refined labels' precision and the student's test accuracy; then the ratios and the differences, against the
goals: refined precision within 0.01 and student accuracy within 0.02 of one process.

``--spread-seeds S ...`` also trains one process with each seed S and prints how far those runs are from
the first seed's one-process run: the differences that chance alone makes, to read the 1-vs-N differences
against. With several ``--seeds`` the goal is also read on the mean difference over them (one seed's
difference is mostly chance); ``--reuse`` reads runs already finished under ``--out`` instead of training
them again. ``--jobs J`` trains up to J runs at once: for the accuracy comparison only (the runs share the
cores, so their seconds are not timings then).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CIFAR10_SMALL = REPO.parent / "shared" / "data" / "cifar10-small"
PRECISION_GOAL, ACCURACY_GOAL = 0.01, 0.02
STUDENT_PHASES = ("warmup", "refine", "mutual", "student")


def _schedule(text: str | None) -> list[str]:
    if not text:
        return []
    teacher, warmup, refine, mutual = (int(v) for v in text.split(","))
    return ["--teacher-epochs", str(teacher), "--warmup-epochs", str(warmup), "--refine-epochs", str(refine),
            "--mutual-epochs", str(mutual)]


def train(out: Path, dataset: str, seed: int, nproc: int, threads: int, schedule: list[str]) -> dict:
    """One CLI run; its summary and per-epoch seconds from its metrics."""
    cmd = [sys.executable, "-m", "engine", "run", "--dataset", dataset, "--noise", "symmetric:0.4", "--seed",
           str(seed), "--threads", str(threads), "--out", str(out), "--force", *schedule]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(REPO))
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return measure(out, wall)


def measure(out: Path, wall: float = float("nan")) -> dict:
    """A finished run's seconds per epoch, share of a student step outside its epoch, refined precision and
    student accuracy (``wall``: the seconds the whole run took, when known)."""
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    teacher = [m["train_seconds"] for m in metrics if m["phase"] == "teacher" and m.get("train_seconds")]
    student = [m for m in metrics if m["phase"] in STUDENT_PHASES]
    return {"teacher_epoch_s": statistics.mean(teacher) if teacher else float("nan"),
            "student_epoch_s": statistics.mean(m["train_seconds"] for m in student),
            "eval_share": statistics.mean(1 - m["train_seconds"] / m["step_seconds"] for m in student),
            "refined": summary["refined_label_precision"], "student_acc": summary["student_test_accuracy"],
            "wall_s": wall, "steps": len(metrics)}


def _table(rows: list[dict]) -> str:
    cols = [("setting", "{}"), ("seed", "{}"), ("procs", "{}"), ("teacher s/ep", "{:.2f}"),
            ("student s/ep", "{:.2f}"), ("outside epoch", "{:.2f}"), ("refined prec", "{:.4f}"),
            ("student acc", "{:.4f}"), ("wall s", "{:.0f}")]
    keys = ["setting", "seed", "procs", "teacher_epoch_s", "student_epoch_s", "eval_share", "refined",
            "student_acc", "wall_s"]
    body = [[fmt.format(r[k]) for (_, fmt), k in zip(cols, keys)] for r in rows]
    header = [c for c, _ in cols]
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)) for line in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nproc", type=int, default=2)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--spread-seeds", type=int, nargs="*", default=[],
                   help="one-process runs with these seeds too: the spread that chance makes")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once (accuracy only: no timings then)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--digits-schedule", default=None, help="T,W,R,M epochs (default: digits' own schedule)")
    p.add_argument("--cifar-schedule", default="4,1,3,2", help="T,W,R,M epochs of cifar10-small (default 4,1,3,2)")
    p.add_argument("--skip-cifar", action="store_true")
    p.add_argument("--skip-digits", action="store_true")
    p.add_argument("--data", default=str(CIFAR10_SMALL))
    p.add_argument("--out", default=None, help="keep the runs here (default: a temporary folder)")
    p.add_argument("--reuse", action="store_true",
                   help="a run already finished under --out (its summary.json and wall.txt there) is read, not "
                        "trained again: add seeds to an earlier comparison")
    a = p.parse_args()
    settings = [] if a.skip_digits else [("digits", "digits", _schedule(a.digits_schedule))]
    if a.skip_cifar:
        print("cifar10-small: skipped (--skip-cifar)")
    elif not (Path(a.data) / "train").is_dir():
        print(f"cifar10-small: skipped ({a.data} has no train/ folder)")
    else:
        settings.append(("cifar10-small", f"folder:{a.data}", _schedule(a.cifar_schedule)))
    base = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="bench-ddp-"))
    jobs = [(name, dataset, schedule, seed, nproc) for name, dataset, schedule in settings for seed in a.seeds
            for nproc in (1, a.nproc)]
    jobs += [(name, dataset, schedule, seed, 1) for name, dataset, schedule in settings for seed in a.spread_seeds
             if seed not in a.seeds]

    def one(job):
        name, dataset, schedule, seed, nproc = job
        out = base / f"{name}-s{seed}-n{nproc}"
        if a.reuse and (out / "summary.json").is_file():
            wall = out / "wall.txt"
            measured = measure(out, float(wall.read_text()) if wall.is_file() else float("nan"))
        else:
            measured = train(out, dataset, seed, nproc, a.threads, schedule)
            (out / "wall.txt").write_text(f"{measured['wall_s']:.1f}\n")
        result = {"setting": name, "seed": seed, "procs": nproc, **measured}
        print(_table([result]).splitlines()[-1], flush=True)
        return result

    with ThreadPoolExecutor(max(1, a.jobs)) as pool:
        rows = list(pool.map(one, jobs))
    found = {(r["setting"], r["seed"], r["procs"]): r for r in rows}
    pairs = [(name, seed, found[name, seed, 1], found[name, seed, a.nproc]) for name, _, _ in settings
             for seed in a.seeds]
    spreads = [(name, seed, other, found[name, seed, 1], found[name, other, 1]) for name, _, _ in settings
               for seed in a.seeds[:1] for other in a.spread_seeds if other != seed]
    print()
    print(_table(rows))
    print()
    print(f"{a.nproc} processes against 1 ({a.threads} thread(s) each):")
    verdicts = {}
    for name, seed, one, many in pairs:
        d_prec, d_acc = many["refined"] - one["refined"], many["student_acc"] - one["student_acc"]
        within = abs(d_prec) <= PRECISION_GOAL and abs(d_acc) <= ACCURACY_GOAL
        verdicts[name] = verdicts.get(name, True) and within
        print(f"  {name} seed {seed}: teacher s/ep x{many['teacher_epoch_s'] / one['teacher_epoch_s']:.2f}, "
              f"student s/ep x{many['student_epoch_s'] / one['student_epoch_s']:.2f}, "
              f"wall x{many['wall_s'] / one['wall_s']:.2f}; refined prec {d_prec:+.4f} (goal within "
              f"{PRECISION_GOAL}), student acc {d_acc:+.4f} (goal within {ACCURACY_GOAL}): "
              f"{'within' if within else 'MISSES'}")
    for name, _, _ in settings:
        diffs = [(many["refined"] - one["refined"], many["student_acc"] - one["student_acc"])
                 for setting, _, one, many in pairs if setting == name]
        if len(diffs) > 1:  # the goal read on the mean over seeds: one seed's difference is mostly chance
            d_prec, d_acc = (statistics.mean(d[i] for d in diffs) for i in (0, 1))
            within = abs(d_prec) <= PRECISION_GOAL and abs(d_acc) <= ACCURACY_GOAL
            verdicts[name] = within
            print(f"  {name}, mean over {len(diffs)} seeds (the goal read here): refined prec {d_prec:+.4f} (sd "
                  f"{statistics.stdev(d[0] for d in diffs):.4f}), student acc {d_acc:+.4f} (sd "
                  f"{statistics.stdev(d[1] for d in diffs):.4f}): {'within' if within else 'MISSES'}")
    ok = all(verdicts.values())
    print("all within the goals" if ok else "some settings miss the goals")
    if spreads:
        print("one process, another seed against the first (what chance alone moves):")
    for name, seed, other, first, again in spreads:
        print(f"  {name} seed {other} - seed {seed}: refined prec {again['refined'] - first['refined']:+.4f}, "
              f"student acc {again['student_acc'] - first['student_acc']:+.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

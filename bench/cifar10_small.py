"""AML-KD against plain training (CE) and plain distillation (KD) on the
cifar10-small image folder (10,000 train / 2,000 test 32x32 JPEGs), with
synthetic noise, the small CPU pair (cifar-small-teacher -> cifar-small-student),
the same seed and the same number of student epochs for every method.

    python bench/cifar10_small.py                       # symmetric:0.4
    python bench/cifar10_small.py --noise asym:0.4      # CIFAR-10 asymmetric noise

KD distils from the teacher the AML-KD run trained (loaded from its
checkpoint), so both compare students of the same teacher. The noisy labels
are drawn here, as ``Run`` draws them (same seed), and handed to every run as
the dataset's given labels, so every noise kind works. Small-loss selection
uses the known noise rate, as the paper does (``--noise-rate estimate`` lets
stage 0 estimate it). Prints one table: given and refined label precision,
test accuracies, wall seconds per method, and whether AML-KD's student beats
CE's by at least 5 points and KD's.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import replace
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine.method.config import SMALL_PAIR_TEACHER, RunConfig, declared, defaults_for_teacher  # noqa: E402
from engine.data import load_dataset  # noqa: E402
from engine.method.noise import apply_noise, known_noise_rate, parse_noise_spec  # noqa: E402
from engine.steps.run import Run  # noqa: E402

#: The schedule and training settings (engine.method.config declares them); their flags are the CLI's.
KNOBS = {dest: item for dest, item in declared().items() if item.path[0] in ("schedule", "train")}
BAR_OVER_CE = 0.05  # AML-KD's student must beat CE's by this much (accuracy)
COLUMNS = (("method", "{}"), ("given_label_precision", "{:.3f}"), ("refined_label_precision", "{:.3f}"),
           ("teacher_test_accuracy", "{:.3f}"), ("student_test_accuracy", "{:.3f}"),
           ("noise_rate_estimate", "{:.3f}"), ("steps", "{}"), ("wall_seconds", "{:.0f}"))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-small"),
                   help="ImageFolder-style folder with train/ and test/ (default ../shared/data/cifar10-small)")
    p.add_argument("--noise", default="symmetric:0.4")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default="aml-kd,kd,ce", help="comma-separated, in order")
    schedule, train = defaults_for_teacher(SMALL_PAIR_TEACHER)
    for dest, item in KNOBS.items():
        default = getattr(schedule if item.path[0] == "schedule" else train, item.path[-1])
        p.add_argument(item.setting.flag, dest=dest, type=int if item.setting.kind == "int" else float,
                       default=default, help=f"{item.setting.help} (default {default}: the small pair's)")
    p.add_argument("--noise-rate", default="known",
                   help="r for small-loss selection: 'known' (the spec's nominal rate), 'estimate', or a number")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: torch's choice; 1 is faster on a busy machine)")
    p.add_argument("--out", default=str(REPO / "bench" / "out" / "cifar10_small"))
    return p.parse_args(argv)


def noisy_dataset(dataset, noise: str, seed: int):
    """The dataset with synthetic given labels drawn exactly as ``Run`` draws them."""
    spec = parse_noise_spec(noise)
    given = apply_noise(dataset.train_true, spec, dataset.num_classes, np.random.default_rng([seed, 1]),
                        inputs=dataset.train_x, class_names=dataset.class_names)
    return dataclasses.replace(dataset, train_given=given)


def selection_rate(text: str, dataset, noise: str) -> float | None:
    if text == "estimate":
        return None
    if text == "known":
        return known_noise_rate(parse_noise_spec(noise), dataset.train_true, dataset.class_names)
    return float(text)


def config_for(args, method: str, teacher_checkpoint: str | None) -> RunConfig:
    schedule, train = defaults_for_teacher(SMALL_PAIR_TEACHER)
    schedule = replace(schedule, **{i.path[-1]: getattr(args, d) for d, i in KNOBS.items() if i.path[0] == "schedule"})
    train = replace(train, **{i.path[-1]: getattr(args, d) for d, i in KNOBS.items() if i.path[0] == "train"})
    return RunConfig(dataset=f"folder:{args.data}", noise=args.noise, method=method, seed=args.seed,
                     noise_rate=args.selection_rate, teacher=SMALL_PAIR_TEACHER, student="cifar-small-student",
                     teacher_checkpoint=teacher_checkpoint, schedule=schedule, train=train)


def run_method(args, method: str, dataset, teacher_checkpoint: str | None) -> dict:
    out = Path(args.out) / f"{args.noise.replace(':', '-')}-{method}"
    run = Run.create(out, config_for(args, method, teacher_checkpoint), force=True, dataset=dataset)
    started = time.perf_counter()
    while not run.done:
        result = run.step()
        m = result.metrics
        print(f"  {method:6s} step {result.step:3d} {result.phase.value:9s} {m['step_seconds']:6.1f}s"
              f"  refined {_fmt(m.get('refined_label_precision'))}  student {_fmt(m.get('student_test_accuracy'))}"
              f"  teacher {_fmt(m.get('teacher_test_accuracy'))}", flush=True)
    summary = run.summary()
    summary["wall_seconds"] = time.perf_counter() - started
    summary["run"] = str(out)
    return summary


def _fmt(value) -> str:
    return "  -  " if value is None else f"{value:.3f}"


def table(rows: list[dict]) -> str:
    header = [name for name, _ in COLUMNS]
    body = [["-" if row.get(k) is None else fmt.format(row[k]) for k, fmt in COLUMNS] for row in rows]
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [header] + body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict(rows: list[dict]) -> list[str]:
    acc = {row["method"]: row.get("student_test_accuracy") for row in rows}
    lines = []
    if acc.get("aml-kd") is not None and acc.get("ce") is not None:
        gap = acc["aml-kd"] - acc["ce"]
        lines.append(f"AML-KD - CE student accuracy: {100 * gap:+.1f} points "
                     f"(bar >= {100 * BAR_OVER_CE:.0f}): {'PASS' if gap >= BAR_OVER_CE else 'FAIL'}")
    if acc.get("aml-kd") is not None and acc.get("kd") is not None:
        gap = acc["aml-kd"] - acc["kd"]
        lines.append(f"AML-KD - KD student accuracy: {100 * gap:+.1f} points (bar > 0): "
                     f"{'PASS' if gap > 0 else 'FAIL'}")
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    if not (Path(args.data) / "train").is_dir():
        print(f"no image folder at {args.data!r} (needs train/<class>/); pass --data", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    dataset = noisy_dataset(load_dataset(f"folder:{args.data}"), args.noise, args.seed)
    args.selection_rate = selection_rate(args.noise_rate, dataset, args.noise)
    print(f"loaded {dataset.num_train} train / {len(dataset.test_x)} test images {dataset.input_shape} "
          f"in {time.perf_counter() - t0:.1f}s; noise {args.noise}, seed {args.seed}, "
          f"{torch.get_num_threads()} thread(s); wrong labels {np.mean(dataset.train_given != dataset.train_true):.3f}, "
          f"selection rate {args.selection_rate}", flush=True)
    rows, teacher_checkpoint = [], None
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        row = run_method(args, method, dataset, teacher_checkpoint if method == "kd" else None)
        if method == "aml-kd":
            teacher_checkpoint = str(Path(row["run"]) / "checkpoint.pt")
        rows.append(row)
    print()
    print(f"cifar10-small, noise {args.noise}, seed {args.seed}, {rows[0]['student']} student, "
          f"{rows[0]['teacher']} teacher")
    print(table(rows))
    for line in verdict(rows):
        print(line)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"summary-{args.noise.replace(':', '-')}.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

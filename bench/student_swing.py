"""The small pair's student on cifar10-small: how its test accuracy swings, with the learning rate and the
batch-norm statistics.

    .venv/bin/python bench/student_swing.py [--noise symmetric:0.4] [--lrs 0.05] [--bn-stats recomputed running]
        [--methods ce] [--teacher PATH/checkpoint.pt] [--threads 1] [--cifar ../shared/data/cifar10-small]

On the small pair's default schedule (32 student epochs: 3 warm-up, 22
refine, 7 mutual for AML-KD; 32 for CE) the student's test accuracy swings by
0.1-0.3 from one epoch to the next while the learning rate is high (the issue
that asked for "do no harm" saw 0.18 at refine epoch 2), for every method,
CE included, at any learning rate (0.05, 0.02, 0.01 alike): it is the
batch-norm layers' running statistics (``--bn-stats``). This trains the
student once per learning rate, kind of statistics and method, side by side
in one run, and prints each run's test accuracy per epoch, then
per run: the final and best accuracy, the lowest after the warm-up (epoch 4
on), and the swing (the mean absolute change between consecutive epochs over
epochs 4-24, where the rate is highest). ``--methods aml-kd`` needs a teacher
checkpoint (``--teacher``, e.g. a noise_sweep run's ``checkpoint.pt`` on the
same noise and seed), so that every arm distils from the same teacher.

A CE run is about 3 minutes on one idle core, an AML-KD run (teacher loaded)
about 30; 2,000 test images (one image is 0.0005). docs/ALGORITHM.md, "The
Batch-norm statistics", has the numbers.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.noise_sweep import CIFAR, base_config  # noqa: E402
from engine.method.config import with_settings  # noqa: E402
from engine.rundir.store import RunStore  # noqa: E402
from engine.steps.run import Run  # noqa: E402

SWING_EPOCHS = range(4, 25)  # 1-based epochs whose rate is highest (after the warm-up's 3)


def curve(out: Path, noise: str, seed: int, method: str, lr: float, bn_stats: str, teacher: Path | None,
          cifar: Path) -> list[float]:
    """The student's test accuracy after each of its epochs, for one method, learning rate and kind of
    batch-norm statistics."""
    config = with_settings(base_config("cifar10-small", noise, seed, cifar),
                           {"lr": lr, "method": method, "bn_stats": bn_stats})
    if teacher is not None and method == "aml-kd":
        config = config.with_changes(teacher_checkpoint=str(teacher))
    run = Run.create(out, config, force=True)
    run.run_until(None)
    run.close()
    return [m["student_test_accuracy"] for m in RunStore(out).metrics()
            if m["phase"] in ("warmup", "refine", "mutual", "student") and m.get("student_test_accuracy") is not None]


def summary(accuracies: list[float]) -> dict[str, float]:
    """Final, best, lowest after the warm-up, and the mean absolute epoch-to-epoch change over SWING_EPOCHS."""
    after = accuracies[3:]
    steps = [abs(accuracies[e] - accuracies[e - 1]) for e in SWING_EPOCHS if e < len(accuracies)]
    return {"final": accuracies[-1], "best": max(accuracies), "lowest": min(after) if after else float("nan"),
            "swing": statistics.fmean(steps) if steps else float("nan")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", default="symmetric:0.4")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lrs", type=float, nargs="+", default=[0.05])
    parser.add_argument("--bn-stats", nargs="+", default=["recomputed", "running"],
                        choices=["recomputed", "running"])
    parser.add_argument("--methods", nargs="+", default=["ce"], choices=["ce", "aml-kd"])
    parser.add_argument("--teacher", type=Path, default=None, help="teacher checkpoint for the AML-KD runs")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cifar", type=Path, default=CIFAR)
    parser.add_argument("--root", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    args = parser.parse_args(argv)
    if not (args.cifar / "train").is_dir():
        print(f"cifar10-small not found at {args.cifar} (train/ and test/ image folders); pass --cifar",
              file=sys.stderr)
        return 2
    if "aml-kd" in args.methods and (args.teacher is None or not args.teacher.is_file()):
        print("--methods aml-kd needs --teacher, an existing checkpoint.pt", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp)
        for method in args.methods:
            for lr in args.lrs:
                for bn in args.bn_stats:
                    accuracies = curve(root / f"{method}-{lr}-{bn}", args.noise, args.seed, method, lr, bn,
                                       args.teacher, args.cifar)
                    rows.append((method, lr, bn, accuracies, summary(accuracies)))
                    print(f"{method} lr {lr} {bn}: " + " ".join(f"{a:.3f}" for a in accuracies), flush=True)
    print(f"\ncifar10-small, {args.noise}, seed {args.seed}, the small pair's default schedule\n")
    print("| method | lr | batch-norm statistics | final | best | lowest after warm-up | swing (mean abs. change, "
          "epochs 4-24) |")
    print("|---|---|---|---|---|---|---|")
    for method, lr, bn, _, s in rows:
        print(f"| {method} | {lr} | {bn} | {s['final']:.3f} | {s['best']:.3f} | {s['lowest']:.3f} "
              f"| {s['swing']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The student's warm-up: does it learn from its first epochs, with and without the start ramp?

    .venv/bin/python bench/warmup_start.py [--noise symmetric:0] [--seeds 0 1 2 3 4 5 6 7 8 9] [--threads 1]

Trains one digits teacher (an AML-KD run with seed 0 stepped to the end of its
teacher phase), then, for each student seed, four AML-KD runs that load it
(``teacher_checkpoint``) and stop after the warm-up and two refine epochs:
the student trains on every sample or sits out the teacher's hold-out (the
held-out judge's part; ``teacher_holdout`` 0 or 0.1, the calibrated rule),
with the start ramp or at the full rate from its first step (``start_ramp``
2 or 0). It prints each run's test accuracy per epoch, then per arm the mean
after the first epoch and at the end of the warm-up, the worst end, and how
many students ended the warm-up below 0.9 ("stuck"). docs/ALGORITHM.md, "The
student's start", has the numbers. About 5 seconds a run at 0% noise, 10 at
10% instance noise, on one core.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from engine.method.config import RunConfig  # noqa: E402
from engine.rundir.store import RunStore  # noqa: E402
from engine.steps.phases import Phase  # noqa: E402
from engine.steps.run import Run  # noqa: E402

ARMS = {"every sample, full rate": (0.0, 0), "every sample, start ramp 2": (0.0, 2),
        "hold-out sat out, full rate": (0.1, 0), "hold-out sat out, start ramp 2": (0.1, 2)}
STUCK = 0.9


def teacher(root: Path, noise: str) -> Path:
    """A digits teacher trained once (seed 0, the default schedule); the path of its checkpoint."""
    run = Run.create(root / "teacher", RunConfig(dataset="digits", noise=noise, seed=0))
    run.run_until(Phase.PROPAGATE.value)
    run.close()
    return root / "teacher" / "checkpoint.pt"


def warmup_curve(root: Path, noise: str, seed: int, checkpoint: Path, holdout: float, ramp: int) -> list[float]:
    """The student's test accuracy after each warm-up epoch and the first two refine epochs."""
    config = RunConfig(dataset="digits", noise=noise, seed=seed, teacher_checkpoint=str(checkpoint))
    config = replace(config, schedule=replace(config.schedule, teacher_holdout=holdout),
                     train=replace(config.train, start_ramp=ramp))
    path = root / f"{seed}-{holdout}-{ramp}"
    run = Run.create(path, config)
    while run.state.student_epoch < config.schedule.warmup_epochs + 2:
        run.step()
    run.close()
    return [m["student_test_accuracy"] for m in RunStore(path).metrics() if "student_test_accuracy" in m]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--noise", default="symmetric:0")
    p.add_argument("--seeds", nargs="+", type=int, default=list(range(10)))
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    warmup = RunConfig().schedule.warmup_epochs
    curves: dict[str, list[list[float]]] = {arm: [] for arm in ARMS}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint = teacher(root, a.noise)
        for seed in a.seeds:
            for arm, (holdout, ramp) in ARMS.items():
                curve = warmup_curve(root, a.noise, seed, checkpoint, holdout, ramp)
                curves[arm].append(curve)
                print(f"seed {seed}  {arm:32s} " + " ".join(f"{x:.3f}" for x in curve), flush=True)
    print(f"\ndigits, {a.noise}, seeds {' '.join(map(str, a.seeds))}; the end of the warm-up is epoch {warmup}\n")
    print("| arm | after epoch 1 | end of warm-up | worst end | stuck (< 0.9) |")
    print("|---|---|---|---|---|")
    for arm, runs in curves.items():
        ends = [c[warmup - 1] for c in runs]
        print(f"| {arm} | {statistics.mean(c[0] for c in runs):.3f} | {statistics.mean(ends):.3f} | "
              f"{min(ends):.3f} | {sum(e < STUCK for e in ends)} of {len(ends)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

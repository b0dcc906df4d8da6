"""Speed of what the explorer's pages compute after a step, on digits.

Usage::

    .venv/bin/python bench/app.py [--run runs/NAME] [--repeat 5]

Without ``--run`` a tiny digits run (1,437 training images; teacher 2 epochs,
warm-up 1, refine 2, mutual 2) is made in a temporary folder first.

Prints medians of ``--repeat`` timings (seconds) of:

- ``embedding, first in process``: the first 2-D projection in a fresh
  process, numba compiling UMAP's kernels (once; the app hides it behind
  ``engine.readers.embed.warm_up`` in a background thread at server start);
- ``embedding from scratch``: a UMAP of the student's features with a
  spectral start, kernels compiled;
- ``embedding warm-started``: the next step's features starting from the
  previous layout (what the step slider and a live run do);
- ``what-if propagation``: the graph page's what-if, graph rebuilt (k changed)
  and on the stored graph (alpha or power changed);
- ``figure, 10,000 points``: :func:`app.figures.embedding.embedding_figure`
  plus its JSON serialisation (what ``st.plotly_chart`` sends).

Targets (2 cores): warm-started embedding <= 3 s, what-if <= 2 s. Exit status
1 when one is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from app.figures.embedding import embedding_figure  # noqa: E402
from engine.readers import embed, explain  # noqa: E402
from engine.method.config import RunConfig, ScheduleConfig  # noqa: E402
from engine.method.stages import STUDENT_PHASES  # noqa: E402
from engine.rundir.store import RunStore  # noqa: E402

TARGETS = {"embedding warm-started": 3.0, "what-if propagation (k changed)": 2.0,
           "what-if propagation (stored graph)": 2.0}


def timed(fn, repeat: int) -> tuple[float, object]:
    """Median seconds of ``repeat`` calls, and the last result."""
    seconds, out = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        out = fn()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), out


def tiny_digits_run(folder: str) -> RunStore:
    from engine.steps.run import Run

    schedule = ScheduleConfig(teacher_epochs=2, teacher_patience=2, warmup_epochs=1, refine_epochs=2,
                              mutual_epochs=2)
    config = replace(RunConfig(dataset="digits", noise="symmetric:0.4"), schedule=schedule)
    print("making a tiny digits run …", flush=True)
    Run.create(os.path.join(folder, "digits"), config).run_until(None)
    return RunStore(os.path.join(folder, "digits"))


def student_steps(store: RunStore) -> tuple[int, int]:
    """Two consecutive student steps whose features differ."""
    phases = {m["step"]: m["phase"] for m in store.metrics()}
    steps = [s for s in store.steps() if phases[s] in STUDENT_PHASES]
    for a, b in zip(steps, steps[1:]):
        fa, fb = embed.step_features(store, a, "student"), embed.step_features(store, b, "student")
        if not np.array_equal(fa, fb):
            return a, b
    raise SystemExit("the run needs two student steps with different features")


def bench(store: RunStore, repeat: int) -> dict[str, float]:
    results: dict[str, float] = {}
    a, b = student_steps(store)
    features_a = embed.step_features(store, a, "student").astype(np.float32)
    features_b = embed.step_features(store, b, "student").astype(np.float32)
    print(f"run {store.path}: N={len(features_a)}, student steps {a} -> {b}", flush=True)

    started = time.perf_counter()
    layout_a = embed.project(features_a)
    results["embedding, first in process (numba compiling)"] = time.perf_counter() - started
    results["embedding from scratch"], layout_a = timed(lambda: embed.project(features_a), repeat)
    results["embedding warm-started"], _ = timed(lambda: embed.project(features_b, init=layout_a), repeat)

    lp_step = explain.propagating_steps(store)[-1]
    results["what-if propagation (k changed)"], _ = timed(
        lambda: explain.what_if(store, lp_step, k=10, keep_least_confident=0.05), repeat)
    results["what-if propagation (stored graph)"], _ = timed(
        lambda: explain.what_if(store, lp_step, power=2.0, keep_least_confident=0.05), repeat)

    rng = np.random.default_rng(0)
    coords, labels, sizes = rng.normal(size=(10_000, 2)), rng.integers(0, 10, 10_000), rng.random(10_000)
    hover = [f"#{i} · given {labels[i]} → refined {labels[i]}" for i in range(10_000)]
    results["figure, 10,000 points (build + JSON)"], _ = timed(
        lambda: embedding_figure(coords, labels, "category", sizes=sizes, hover=hover).to_json(), repeat)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="a run directory with student steps (default: make a tiny digits run)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = RunStore(args.run) if args.run else tiny_digits_run(folder)
        results = bench(store, args.repeat)
    width = max(len(k) for k in results)
    print(f"\n{'median seconds':<{width}}  value   target")
    failed = False
    for name, seconds in results.items():
        target = TARGETS.get(name)
        ok = target is None or seconds <= target
        failed |= not ok
        mark = "" if target is None else f"<= {target:g} {'ok' if ok else 'MISSED'}"
        print(f"{name:<{width}}  {seconds:6.2f}  {mark}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

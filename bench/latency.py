"""How fast the Train page answers while a run trains in the same process.

    .venv/bin/python bench/latency.py [--repeat 15]

Creates the default digits run (AML-KD, 40% symmetric) in a temporary runs
folder, starts the server-side worker playing it, and meanwhile reruns the
Train page with Streamlit's AppTest (one full script run = what the server does
for one interaction: a button press, a fragment refresh). Prints the median
and 90th percentile of the page's script time idle and while training. Target:
every interaction answers in under 300 ms while a step runs.

AppTest runs the script in this process, like the server does, so the
training thread competes with it for the interpreter exactly as in the app;
the browser's own rendering is not included.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET = 0.3


def page_times(runs: Path, run_dir: Path, repeat: int, worker=None) -> list[float]:
    from streamlit.testing.v1 import AppTest

    times = []
    for _ in range(repeat):
        app = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py"),
                                default_timeout=60)
        app.session_state["run_dir"] = str(run_dir)
        app.run()
        app.switch_page("views/train.py")
        started = time.perf_counter()
        app.run()
        times.append(time.perf_counter() - started)
        if worker is not None and not worker.busy:
            break
    return times


def summary(name: str, times: list[float]) -> str:
    times = sorted(times)
    p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
    ok = p90 <= TARGET
    return f"{name:<28} {statistics.median(times):7.3f} {p90:7.3f} {len(times):5d}   {'ok' if ok else 'MISSED'}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        runs = Path(folder) / "runs"
        os.environ["AMLKD_RUNS_DIR"] = str(runs)
        from app.worker import get_worker, shutdown_all
        from engine.method.config import RunConfig
        from engine.steps.run import Run

        run_dir = runs / "digits-default"
        Run.create(run_dir, RunConfig())
        page_times(runs, run_dir, 1)  # first run imports the pages' modules: not an interaction
        idle = page_times(runs, run_dir, args.repeat)
        worker = get_worker(run_dir)
        worker.submit("play")
        time.sleep(1.0)
        busy = page_times(runs, run_dir, args.repeat, worker)
        worker.submit("pause")
        shutdown_all()
    print(f"\n{'Train page script, seconds':<28} {'median':>7} {'p90':>7} {'runs':>5}   target p90 <= {TARGET}")
    print(summary("idle", idle))
    print(summary("while a run trains", busy))
    return 0


if __name__ == "__main__":
    sys.exit(main())

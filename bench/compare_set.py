"""How long a comparison set takes in the app, against the same runs trained by the engine alone.

    .venv/bin/python bench/compare_set.py [--preset moons] [--threads 1]

Creates one run from a preset (``--preset``, default the moons teaching
preset) in a temporary runs folder and, side by side on the same machine:

1. *engine*: trains the comparison set's runs (AML-KD, CE, KD with the
   preset's settings, as :func:`app.compare_widgets.plan_set` makes them) one
   after another in this process, ``Run.run_until(None)``;
2. *app*: starts ``streamlit run`` on a free local port, opens the Compare page
   of the source run in headless Chromium (1024x768), presses **Create and
   train them** and waits, with the page open (it polls the progress and the
   results while runs train), until every progress line says ``done``.

Prints one row per run (engine seconds, the app's seconds from the
"training" line to "done" as the page saw them) and the totals, with the
ratio app / engine as the last line: ``engine_s=E app_s=A ratio=R``. The
app's time includes its page redraws while training; a ratio near 1 means the
page costs the training little.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "browser"))

VIEWPORT = {"width": 1024, "height": 768}
PROGRESS_JS = """() => Array.from(document.querySelectorAll('[data-testid="stMarkdownContainer"] li'))
    .map(li => li.innerText).filter(t => /: (waiting|training|done|stopped)/.test(t))"""


def engine_times(root: Path, source: Path) -> dict[str, float]:
    from app.compare_widgets import plan_set
    from engine.steps.run import Run

    times = {}
    for member in plan_set(source):
        config = member.config if member.config is not None else Run.open(member.path).config
        started = time.perf_counter()
        run = Run.create(root / f"engine-{member.path.name}", config, force=True)
        run.run_until(None)
        times[member.label] = time.perf_counter() - started
        print(f"engine  {member.label:<8} {times[member.label]:7.1f} s", flush=True)
    return times


def app_times(root: Path, name: str, timeout_s: float, leave: bool = False) -> dict[str, float]:
    from conftest import chromium_launch_args, serve_app, wait_for_app
    from playwright.sync_api import sync_playwright

    seen: dict[str, dict[str, float]] = {}
    with serve_app(root) as url, sync_playwright() as pw:
        browser = pw.chromium.launch(**chromium_launch_args())
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(f"{url}/compare?run={name}")
        wait_for_app(page, 120_000)
        page.get_by_role("button", name="Create and train them").click()
        deadline = time.monotonic() + timeout_s
        if leave:
            page.get_by_text(": training").first.wait_for(timeout=120_000)
            lines = page.evaluate(PROGRESS_JS)
            page.goto("about:blank")  # no page polls the server while the set trains
        while time.monotonic() < deadline:
            now = time.perf_counter()
            lines = page.evaluate(PROGRESS_JS) if not leave else _lines_on_disk(root, lines)
            for line in lines:
                run, state = re.match(r"`?([^`\s]+)`?: (\w+)", line).groups()
                times = seen.setdefault(run, {})
                times.setdefault(state, now)
            if lines and all(": done" in line for line in lines):
                break
            if any(": stopped" in line for line in lines):
                raise RuntimeError(f"the comparison set stopped: {lines}")
            page.wait_for_timeout(200)
        else:
            raise TimeoutError(f"the comparison set did not finish in {timeout_s:.0f} s")
        browser.close()
    out = {}
    for run, states in seen.items():
        start = states.get("training", states.get("waiting"))
        out[run] = states["done"] - start
        print(f"app     {run:<36} {out[run]:7.1f} s", flush=True)
    return out


def _lines_on_disk(root: Path, lines: list[str]) -> list[str]:
    """The progress lines as the runs' status files tell them (``--leave``: no page is open)."""
    from engine.rundir.store import RunStore

    out = []
    for line in lines:
        run = line.split(":")[0].strip("` ")
        status = RunStore(root / run).status()
        state = "done" if status.get("phase") == "done" else "training" if status.get("step") else "waiting"
        out.append(f"{run}: {state}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="moons", help="preset id of the source run (app/presets)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads, here and in the app")
    parser.add_argument("--leave", action="store_true",
                        help="leave the page once the set trains (measures the training without the page)")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds to wait for the app")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    from app.settings import load_presets
    from engine.steps.run import Run

    presets = {p.id: p for p in load_presets()[0]}
    with tempfile.TemporaryDirectory(prefix="amlkd-compare-set-") as tmp:
        root = Path(tmp)
        name = f"{args.preset}-aml-kd-s0"
        Run.create(root / name, presets[args.preset].config.with_changes(method="aml-kd"))
        engine = engine_times(root / "engine", root / name)
        app = app_times(root, name, args.timeout, args.leave)
    engine_total, app_total = sum(engine.values()), sum(app.values())
    print()
    print(f"{'':<10} {'seconds':>8}")
    print(f"{'engine':<10} {engine_total:8.1f}   (the set's runs, one after another, no app)")
    print(f"{'app':<10} {app_total:8.1f}   (Create and train them, the Compare page open)")
    print(f"engine_s={engine_total:.1f} app_s={app_total:.1f} ratio={app_total / engine_total:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

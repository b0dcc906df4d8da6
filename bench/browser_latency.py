"""How fast the app answers in a real browser, as a lecturer drives it.

    .venv/bin/python bench/browser_latency.py [--steps 10] [--changes 10] [--present 1]

Makes two fresh runs in a temporary runs folder (the moons teaching preset and
the default digits preset), starts ``streamlit run`` on a free local port and
drives it in headless Chromium (Playwright; see tests/browser/conftest.py) at
1024x768, in presentation mode:

1. On the Train page of each run, presses Step ``--steps`` times. Each time it
   measures, in the browser, from the click to the moment the page shows the
   new step: the Step metric reads ``N / total`` and the label-precision
   chart holds N points. Beside it: the engine's own time for that step
   (``step_seconds`` in metrics.jsonl) and the difference, the app's overhead.
2. On the Embeddings page of the digits run (layouts of its steps projected
   beforehand, as "Project every step" does), makes ``--changes`` changes:
   alternately the step slider (keyboard, one step) and the colour select
   box, each measured from the key press / option click to the chart showing
   the change.

Targets (issue 12): Step overhead <= 0.5 s on moons and digits; an Embeddings
change < 1 s on digits. Prints one row per action, medians and 90th
percentiles, and as its last line ``step_overhead_median_s=X
embedding_change_median_s=Y``. Exit status 1 when a median misses its target.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "browser"))

STEP_TARGET = 0.5
EMBEDDING_TARGET = 1.0
VIEWPORT = {"width": 1024, "height": 768}
WARM_UP_MS = 15_000  # a lecturer opens the page before pressing Step

#: In the page: start a clock, and stop it at the first animation frame where ``cond`` holds.
ARM_JS = """([kind, target]) => {
  window.__lat = null;
  const t0 = performance.now();
  const plots = () => Array.from(document.querySelectorAll('.js-plotly-plot'))
      .filter(el => el.getBoundingClientRect().height > 0 && el._fullData);
  const title = (el) => ((el.layout && el.layout.title && el.layout.title.text) || '').replace(/<[^>]+>/g, '');
  const cond = () => {
    if (kind === 'step') {
      const shown = Array.from(document.querySelectorAll('[data-testid="stMetricValue"]'))
          .some(m => m.innerText.startsWith(target + ' / '));
      const chart = plots().find(el => title(el).startsWith('Label precision'));
      return shown && chart && chart._fullData[0] && chart._fullData[0].x && chart._fullData[0].x.length === target;
    }
    if (kind === 'legend') {
      return plots().some(el => el.layout && el.layout.legend && el.layout.legend.title
          && el.layout.legend.title.text === target);
    }
    return plots().some(el => title(el).includes(target));
  };
  const check = () => { if (cond()) { window.__lat = (performance.now() - t0) / 1000; } else { requestAnimationFrame(check); } };
  requestAnimationFrame(check);
}"""
DONE_JS = "() => window.__lat !== null"


def _quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def make_runs(root: Path) -> dict[str, Path]:
    from app.settings import load_presets
    from engine.steps.run import Run

    presets = {p.id: p for p in load_presets()[0]}
    out = {}
    for name, preset in (("moons", "moons"), ("digits", "digits-symmetric-40")):
        Run.create(root / name, presets[preset].config)
        out[name] = root / name
    return out


def project_every_step(run_dir: Path) -> list[int]:
    from engine.readers import embed
    from engine.rundir.store import RunStore

    store = RunStore(run_dir)
    for step in store.steps():
        embed.embedding(store, step, "teacher")
    return store.steps()


def engine_seconds(run_dir: Path, step: int) -> float:
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        m = json.loads(line)
        if m.get("step") == step:
            return float(m.get("step_seconds") or 0.0)
    return float("nan")


def measure(page, kind: str, target, act, timeout_ms: float = 120_000) -> float:
    page.evaluate(ARM_JS, [kind, target])
    act()
    page.wait_for_function(DONE_JS, timeout=timeout_ms, polling=50)
    return float(page.evaluate("() => window.__lat"))


def drive_steps(page, url: str, name: str, run_dir: Path, count: int, present: bool) -> list[tuple]:
    from conftest import wait_for_app

    page.goto(f"{url}/train?run={name}" + ("&present=1" if present else ""))
    wait_for_app(page, 120_000)
    page.locator(".st-key-train-step button").first.wait_for(timeout=60_000)
    page.wait_for_timeout(WARM_UP_MS)  # the server warms up UMAP and opens the run in the background
    rows = []
    for step in range(1, count + 1):
        button = page.locator(".st-key-train-step button").first
        page.wait_for_function("(b) => !b.disabled", arg=button.element_handle(), timeout=120_000)
        wait_for_app(page, 120_000)
        seconds = measure(page, "step", step, button.click)
        engine = engine_seconds(run_dir, step)
        rows.append((name, step, engine, seconds, seconds - engine))
        print(f"{name:<7} step {step:3d}   engine {engine:6.3f} s   click to drawn {seconds:6.3f} s   "
              f"overhead {seconds - engine:6.3f} s", flush=True)
    return rows


def drive_embeddings(page, url: str, steps: list[int], count: int, present: bool) -> list[float]:
    from conftest import wait_for_app

    page.goto(f"{url}/embeddings?run=digits" + ("&present=1" if present else ""))
    wait_for_app(page, 180_000)
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length > 0", timeout=180_000)
    wait_for_app(page, 180_000)
    times = []
    colours = ["given label", "refined label"]
    position = len(steps) - 1
    for i in range(count):
        wait_for_app(page, 120_000)
        if i % 2 == 0:  # the step slider, one step left (or right at the start)
            delta = -1 if position > 0 else 1
            position += delta
            thumb = page.get_by_role("slider").first
            thumb.focus()
            label = f"step {steps[position]} ·"
            seconds = measure(page, "embedding", label, lambda: page.keyboard.press("ArrowLeft" if delta < 0 else
                                                                                      "ArrowRight"))
            what = f"step slider to {steps[position]}"
        else:  # the colour select box
            colour = colours[(i // 2) % 2]
            page.get_by_role("combobox").nth(0).click()
            option = page.get_by_role("option", name=colour, exact=True)
            option.wait_for(timeout=10_000)
            seconds = measure(page, "legend", colour, option.click)
            what = f"colour to {colour}"
        times.append(seconds)
        print(f"digits  embeddings {what:<24} change to drawn {seconds:6.3f} s", flush=True)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--present", type=int, default=1, help="1: in presentation mode (?present=1)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from conftest import chromium_launch_args, serve_app
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="amlkd-browser-latency-") as tmp:
        root = Path(tmp)
        runs = make_runs(root)
        with serve_app(root) as url, sync_playwright() as pw:
            browser = pw.chromium.launch(**chromium_launch_args())
            page = browser.new_page(viewport=VIEWPORT)
            rows = []
            for name in ("moons", "digits"):
                rows += drive_steps(page, url, name, runs[name], args.steps, bool(args.present))
            steps = project_every_step(runs["digits"])
            changes = drive_embeddings(page, url, steps, args.changes, bool(args.present))
            browser.close()
    print()
    print(f"{'':<26} {'median':>8} {'p90':>8} {'n':>4}")
    overheads = []
    for name in ("moons", "digits"):
        mine = [r for r in rows if r[0] == name]
        for label, column in (("engine step", 2), ("click to drawn", 3), ("overhead", 4)):
            values = [r[column] for r in mine]
            print(f"{name + ' ' + label:<26} {statistics.median(values):8.3f} {_quantile(values, 0.9):8.3f} "
                  f"{len(values):4d}")
        overheads += [r[4] for r in mine]
    print(f"{'digits embedding change':<26} {statistics.median(changes):8.3f} {_quantile(changes, 0.9):8.3f} "
          f"{len(changes):4d}")
    step_median, change_median = statistics.median(overheads), statistics.median(changes)
    print(f"targets: step overhead <= {STEP_TARGET} s: {'ok' if step_median <= STEP_TARGET else 'MISSED'}; "
          f"embedding change < {EMBEDDING_TARGET} s: {'ok' if change_median < EMBEDDING_TARGET else 'MISSED'}")
    print(f"step_overhead_median_s={step_median:.3f} embedding_change_median_s={change_median:.3f}")
    return 0 if step_median <= STEP_TARGET and change_median < EMBEDDING_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())

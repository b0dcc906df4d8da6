"""From a key press to the next card on screen, on digits, in a real browser.

    python bench/review_latency.py [--decisions 30] [--gap 0.3]

Trains a short digits run (40% symmetric noise; teacher 6 epochs, warm-up 1,
refine 1), serves the app with ``streamlit run`` on a free local port
(``tests/browser/conftest.py``'s ``serve_app``), opens its Review page in
headless Chromium at 1024x768 and presses ``A`` (accept) ``--decisions``
times. Each press is timed from ``keyboard.press`` until the heading of the
*next* card is on screen ("next card"), and until the page's script run has
finished ("page idle": every chart of the card drawn). Prints both as median
and p90, and checks the bar: next card <= 0.5 s median.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BAR_SECONDS = 0.5
RUN = "latency-digits"


def _browser_helpers():
    spec = importlib.util.spec_from_file_location("browser_conftest", REPO / "tests" / "browser" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_run(path: Path) -> None:
    import torch

    from engine.method.config import RunConfig, ScheduleConfig
    from engine.steps.run import Run

    torch.set_num_threads(1)
    schedule = ScheduleConfig(teacher_epochs=6, warmup_epochs=1, refine_epochs=1, mutual_epochs=0)
    Run.create(path, replace(RunConfig(dataset="digits", noise="symmetric:0.4", seed=0), schedule=schedule),
               force=True).run_until(None)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--decisions", type=int, default=30)
    p.add_argument("--gap", type=float, default=0.3, help="seconds to wait after a card settles, before the next key")
    args = p.parse_args(argv)
    helpers = _browser_helpers()
    if helpers.find_chromium() is None:
        print("skipped: no Chromium found (apt-get install -y chromium)")
        return 0
    from playwright.sync_api import sync_playwright

    runs = Path(tempfile.mkdtemp(prefix="review-latency-"))
    started = time.perf_counter()
    make_run(runs / RUN)
    print(f"digits run trained in {time.perf_counter() - started:.0f} s")
    heading = 'h3:has-text("Sample ")'
    next_card, idle = [], []
    with helpers.serve_app(runs) as server, sync_playwright() as playwright:
        browser = playwright.chromium.launch(**helpers.chromium_launch_args())
        page = browser.new_page(viewport={"width": 1024, "height": 768})
        page.goto(f"{server}/review?run={RUN}&reviewer=bench")
        page.locator(heading).first.wait_for(timeout=120_000)
        page.get_by_role("button", name="Next Shortcut L").wait_for(timeout=120_000)
        helpers.wait_for_app(page, 120_000)
        page.wait_for_timeout(1000)
        for _ in range(args.decisions + 1):  # the first press warms caches up: not counted
            before = page.locator(heading).first.inner_text()
            t0 = time.perf_counter()
            page.keyboard.press("a")
            page.wait_for_function("old => { const h = [...document.querySelectorAll('h3')].find("
                                   "e => e.innerText.startsWith('Sample ')); return h && h.innerText !== old; }",
                                   arg=before, polling="raf", timeout=60_000)
            t1 = time.perf_counter()
            helpers.wait_for_app(page)
            t2 = time.perf_counter()
            next_card.append(t1 - t0)
            idle.append(t2 - t0)
            page.wait_for_timeout(int(args.gap * 1000))
        browser.close()
    next_card, idle = next_card[1:], idle[1:]
    print(f"{'':12s} {'median':>8s} {'p90':>8s}  (seconds, {len(next_card)} decisions)")
    print(f"{'next card':12s} {statistics.median(next_card):8.3f} {percentile(next_card, 0.9):8.3f}")
    print(f"{'page idle':12s} {statistics.median(idle):8.3f} {percentile(idle, 0.9):8.3f}")
    verdict = "PASS" if statistics.median(next_card) <= BAR_SECONDS else "FAIL"
    print(f"bar: next card median <= {BAR_SECONDS} s: {verdict}")
    print(f"median_next_card={statistics.median(next_card):.3f} p90_next_card={percentile(next_card, 0.9):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The app in a real Chromium: create a run from the default preset with a
tiny schedule, step it into the refine phase, watch the charts change, visit
every page, and check that no page shows an exception and that nothing left
127.0.0.1.

Screenshots go to ``$AMLKD_SHOTS_DIR`` when set, else to the test's tmp dir.
"""

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from conftest import assert_no_exception, goto, wait_for_app

pytestmark = pytest.mark.browser

TINY = {"Teacher (upper bound, early-stopped)": 2, "Warm-up": 1, "Refine (stage 1)": 2, "Mutual (stage 2)": 1}
PAGES = ("Setup", "Train", "Embeddings", "Propagation graph", "Losses", "Review")
STEP_TIMEOUT_MS = 90_000
# Streamlit's theme wraps chart titles in <b> tags (again on every redraw): compare them without tags.
TITLE_JS = "(el) => (el.layout && el.layout.title && el.layout.title.text || '').replace(/<[^>]+>/g, '')"
# Points per trace; x may be a typed array that plotly decoded only into _fullData.
POINTS_JS = "((el) => (el._fullData || el.data).map(t => (t.x ? t.x.length : 0)))"
# Only charts on screen: while Streamlit redraws, a stale copy of a chart may linger with no height.
PLOTS_JS = ("Array.from(document.querySelectorAll('.js-plotly-plot'))"
            ".filter(el => el.getBoundingClientRect().height > 0)")
CHART_POINTS_JS = f"""() => Object.fromEntries({PLOTS_JS}
    .map(el => [({TITLE_JS})(el), {POINTS_JS}(el)]).filter(([title]) => title))"""


def _chart_points(page, title_start: str = "Label precision") -> dict[str, list[int]]:
    """Points per trace of every titled chart, once the one whose title starts so is drawn."""
    page.wait_for_function(f"(t) => {PLOTS_JS}.some(el => ({TITLE_JS})(el).startsWith(t))", arg=title_start,
                           timeout=30_000)
    return page.evaluate(CHART_POINTS_JS)


def _wait_for_points(page, expected: dict[str, list], timeout_ms: float = 30_000) -> dict[str, list[int]]:
    """Wait until the charts so titled have these points per trace (``None``: any), then return all charts'.

    Plotly draws the charts one by one after a redraw, so one chart can be new while the next is still old.
    """
    check = f"""(want) => {{ const got = ({CHART_POINTS_JS})();
        return Object.entries(want).every(([title, points]) => got[title] && points.every(
            (n, i) => n === null || got[title][i] === n)); }}"""
    try:
        page.wait_for_function(check, arg=expected, timeout=timeout_ms)
    except PlaywrightTimeout:
        pass  # the assertions that follow show what the charts hold
    return page.evaluate(CHART_POINTS_JS)


def _shots_dir(tmp_path) -> Path:
    folder = Path(os.environ.get("AMLKD_SHOTS_DIR") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _metric(page, label: str) -> str:
    metric = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return metric.locator('[data-testid="stMetricValue"]').inner_text().strip()


def _set_number(page, label: str, value: int) -> None:
    field = page.get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Enter")
    page.wait_for_function("([el, v]) => el.value === v", arg=[field.element_handle(), str(value)])
    wait_for_app(page)


STEP_BUTTON_JS = "document.querySelector('.st-key-train-step button')"  # its label also shows its key
STEP_TAKEN_JS = (f"(n) => {{ const b = {STEP_BUTTON_JS}; return (b && b.disabled) || Array.from("
                 "document.querySelectorAll('[data-testid=\"stMetricValue\"]')).some(m => m.innerText.startsWith(n + ' / ')); }")


def _step(page, expected_step: int) -> None:
    """Press Step and wait for the step. A click that lands while the app redraws (or while the worker
    still closes the previous step) can be dropped; it shows as neither a busy button nor a new step,
    and is pressed again."""
    for _ in range(3):
        wait_for_app(page)
        page.locator(".st-key-train-step button").first.click()
        try:
            page.wait_for_function(STEP_TAKEN_JS, arg=expected_step, timeout=20_000)
            break
        except PlaywrightTimeout:
            continue
    try:
        page.locator('[data-testid="stMetricValue"]').filter(has_text=f"{expected_step} / ").wait_for(
            timeout=STEP_TIMEOUT_MS)
    except PlaywrightTimeout:
        shot = Path(os.environ.get("AMLKD_SHOTS_DIR") or "/tmp") / f"step{expected_step}_failed.png"
        page.screenshot(path=str(shot), full_page=True)
        text = page.locator('[data-testid="stMain"]').inner_text()[:3000]
        pytest.fail(f"step {expected_step} never showed (screenshot {shot}); the page said:\n{text}")
    page.wait_for_function(f"() => {{ const b = {STEP_BUTTON_JS}; return b && !b.disabled; }}", timeout=STEP_TIMEOUT_MS)


def _visit(page, title: str, url_path: str) -> None:
    page.get_by_role("link", name=title, exact=True).click()
    page.wait_for_url(re.compile(rf"^https?://[^/]+/{url_path}(\?.*)?$"))  # every page at its own address
    page.wait_for_timeout(500)
    wait_for_app(page, timeout_ms=120_000)
    page.wait_for_timeout(500)
    wait_for_app(page, timeout_ms=120_000)


def test_default_run_steps_into_refine_and_every_page_renders(app_page, app_server, tmp_path):
    page, shots = app_page, _shots_dir(tmp_path)
    goto(page, app_server, "setup")  # "/" is Setup only while no run exists (other tests may have made some)
    page.get_by_text("Quick start").wait_for()
    for label, value in TINY.items():
        _set_number(page, label, value)
    page.get_by_role("button", name="Create run", exact=True).click()
    page.locator(".st-key-train-step button").first.wait_for(timeout=60_000)
    page.get_by_text("Next step:").wait_for()
    assert _metric(page, "Step") == "0 / 7"  # teacher 2, propagate 1, warm-up 1, refine 2, mutual 1
    before = _chart_points(page)
    assert before["Label precision"] == [0, 0, 0]  # given, refined, refined estimated without the truth

    for step in range(1, 6):  # teacher, teacher, propagate, warm-up, then one refine step
        _step(page, step)
        if step == 4:
            assert _metric(page, "Phase") == "refine"
    after = _wait_for_points(page, {"Label precision": [5, 5, 3],  # no estimate for the teacher's steps
                                    "Test accuracy": [5, 2],  # the student exists from the warm-up on
                                    "Noise detection": [None, 5]})
    assert after["Label precision"] == [5, 5, 3]
    assert after["Test accuracy"] == [5, 2]
    assert after["Noise detection"][1] == 5
    assert float(_metric(page, "Refined-label precision")) > 0.7  # propagation fixed most of the 40% noise
    assert_no_exception(page)

    page.reload()  # a new session on the same address (?run=NAME) shows the run where it is
    wait_for_app(page)
    page.get_by_text("Next step:").wait_for()
    assert _metric(page, "Step") == "5 / 7" and "run=digits-symmetric40-aml-kd-s0" in page.url

    page.set_viewport_size({"width": 1500, "height": 2100})
    for title in PAGES:
        url_path = {"Propagation graph": "graph"}.get(title, title.lower())
        _visit(page, title, url_path)
        if title == "Embeddings":
            _lasso_the_middle(page)
            page.screenshot(path=str(shots / "embeddings_selected.png"))
        if title == "Propagation graph":  # it centres on the first sample of the lasso selection
            page.get_by_text(re.compile(r"around sample #\d+: \d+ nodes")).wait_for(timeout=60_000)
        page.screenshot(path=str(shots / f"{url_path}.png"))
        assert_no_exception(page)
    assert page.blocked == [], f"requests left 127.0.0.1: {page.blocked}"
    assert "Traceback" not in app_server.read_log()


def _lasso_the_middle(page) -> None:
    """Draw a lasso loop over the middle of the embedding, as a user would with the mouse."""
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for(timeout=120_000)
    page.wait_for_timeout(2000)  # the layout is computed on the first visit; let the final chart settle
    wait_for_app(page, timeout_ms=120_000)
    box = plot.bounding_box()
    cx, cy = box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5
    rx, ry = box["width"] * 0.3, box["height"] * 0.3
    page.mouse.move(cx - rx, cy - ry)
    page.mouse.down()
    for dx, dy in ((rx, -ry), (rx, ry), (-rx, ry), (-rx, -ry + 1)):
        page.mouse.move(cx + dx, cy + dy, steps=8)
    page.mouse.up()
    page.get_by_text(re.compile(r"Selected samples \([1-9]\d*\)")).wait_for(timeout=60_000)
    page.locator('[data-testid="stImage"]').first.wait_for(timeout=30_000)  # the digits' pixels
    wait_for_app(page, timeout_ms=120_000)

"""Lecture mode in a real Chromium at projector sizes: in presentation mode (``?present=1``) no heading,
metric label or button text is wider than its box, a double press of the clicker's key steps the run exactly
once, a press made while the new step's redraw still runs steps once more (not taken for the double press),
PageDown steps too, and the replay controls move the step (Embeddings) and the iteration (Propagation
graph)."""

import os
from dataclasses import replace
from pathlib import Path

import pytest

from conftest import assert_no_exception, goto, offline_page, settle, wait_for_app

pytestmark = pytest.mark.browser

RUN = "lecture-moons"
TIMEOUT_MS = 120_000
#: Visible headings, metric labels and button texts whose content is wider than their box.
OVERFLOW_JS = """() => Array.from(document.querySelectorAll(
    'h1, h2, h3, h4, [data-testid="stMetricLabel"], [data-testid="stMetricLabel"] *, button, button p'))
  .filter(el => el.offsetParent !== null && el.getBoundingClientRect().width > 0
          && el.scrollWidth > el.clientWidth + 1)
  .map(el => `${el.tagName} "${el.innerText.trim().slice(0, 40)}" ${el.scrollWidth} > ${el.clientWidth}`)"""
REPLAY_JS = """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
  .filter(el => el._fullLayout && el._fullLayout.sliders && el._fullLayout.sliders.length)
  .map(el => el._fullLayout.sliders[0].active)"""


@pytest.fixture(scope="module")
def lecture_run(app_server):
    from app.settings import load_presets
    from engine.steps.run import Run

    preset = {p.id: p for p in load_presets()[0]}["moons"]
    config = replace(preset.config, schedule=replace(preset.config.schedule, teacher_epochs=2, warmup_epochs=1,
                                                     refine_epochs=2, mutual_epochs=1))
    path = Path(app_server.runs_dir) / RUN
    Run.create(path, config)
    return path


#: Arms a press of ArrowRight for the first moment the step metric shows ``want`` while the app is still
#: redrawing (the Step's redraw, or the whole-app rerun that follows it); records what was on screen then.
PRESS_DURING_STEP_REDRAW = """(want) => {
  const app = document.querySelector('[data-testid="stApp"]');
  const watch = new MutationObserver(() => {
    const metric = document.querySelector('[data-testid="stMetricValue"]');
    if (!metric || !metric.innerText.trim().startsWith(want)) return;
    if (app.getAttribute('data-test-script-state') !== 'running') return;
    watch.disconnect();
    const guard = window.__amlkdGuard;
    window.__pressedDuring = {state: app.getAttribute('data-test-script-state'), shown: metric.innerText.trim(),
                              last_shown: guard.lastShown};
    guard.last = performance.now() - 100;  // as if the previous press were 100 ms ago, however long the step took
    document.dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowRight', code: 'ArrowRight', bubbles: true}));
  });
  watch.observe(document.body, {subtree: true, childList: true, characterData: true, attributes: true,
                                attributeFilter: ['data-test-script-state']});
}"""


def _step_metric(page) -> str:
    metric = page.locator('[data-testid="stMetric"]').filter(has_text="Step").first
    return metric.locator('[data-testid="stMetricValue"]').inner_text().strip()


def _shot(page, name: str) -> None:
    folder = Path(os.environ.get("AMLKD_SHOTS_DIR") or "/tmp")
    page.screenshot(path=str(folder / f"lecture_{name}.png"))


@pytest.mark.parametrize("size", [(1024, 768), (1280, 720)])
def test_presentation_mode_cuts_no_heading_label_or_button(app_server, browser, lecture_run, size):
    context, page = offline_page(browser, *size)
    try:
        goto(page, app_server, f"train?run={RUN}&present=1", TIMEOUT_MS)
        page.locator(".st-key-train-step button").first.wait_for(timeout=TIMEOUT_MS)
        settle(page)
        assert page.locator("h1").first.inner_text().strip() == "Train"  # the short title
        right = page.evaluate("() => { const s = document.querySelector('[data-testid=\"stSidebar\"]');"
                              " return s ? s.getBoundingClientRect().right : 0; }")
        assert right <= 5  # collapsed at load: off the screen
        assert page.evaluate(OVERFLOW_JS) == []
        assert "present=1" in page.url
        for url_path in ("embeddings", "graph", "losses"):
            goto(page, app_server, f"{url_path}?run={RUN}&present=1", TIMEOUT_MS)
            settle(page)
            assert_no_exception(page)
            assert page.evaluate(OVERFLOW_JS) == [], url_path
    finally:
        _shot(page, f"train_{size[0]}")
        context.close()


def test_clicker_keys_step_exactly_once_and_the_replays_move(app_server, browser, lecture_run):
    from engine.rundir.store import RunStore

    store = RunStore(lecture_run)
    context, page = offline_page(browser, 1024, 768)
    try:
        goto(page, app_server, f"train?run={RUN}&present=1", TIMEOUT_MS)
        page.locator(".st-key-train-step button").first.wait_for(timeout=TIMEOUT_MS)
        settle(page)
        start = store.status().get("step", 0)
        page.locator("h1").first.click()  # the focus on the page, not in a field
        page.keyboard.press("ArrowRight")
        page.wait_for_timeout(50)  # a clicker's double press
        page.keyboard.press("ArrowRight")
        page.locator('[data-testid="stMetricValue"]').filter(has_text=f"{start + 1} / ").first.wait_for(
            timeout=TIMEOUT_MS)
        settle(page)
        page.wait_for_timeout(1500)
        settle(page)
        assert store.status()["step"] == start + 1, "a double press stepped twice"
        assert _step_metric(page).startswith(f"{start + 1} / ")
        page.locator('[data-testid="stSidebar"]').get_by_text(f"step {start + 1}/").wait_for(
            state="attached", timeout=30_000)  # the sidebar follows a Step drawn in place

        page.locator("h1").first.click()
        page.keyboard.press("PageDown")
        page.locator('[data-testid="stMetricValue"]').filter(has_text=f"{start + 2} / ").first.wait_for(
            timeout=TIMEOUT_MS)
        settle(page)
        assert store.status()["step"] == start + 2
        # A press made while the new step's redraw still runs, the new step already on screen, lands once:
        # only a press made before the screen changed counts as a double press (the step on screen binds
        # it, not a clock). The page presses the moment both hold, the previous press 100 ms before (well
        # inside the guard's time window, however long the step took on this machine).
        page.locator("h1").first.click()
        page.evaluate(PRESS_DURING_STEP_REDRAW, f"{start + 3} / ")
        page.keyboard.press("ArrowRight")
        page.wait_for_function("window.__pressedDuring !== undefined", timeout=TIMEOUT_MS)
        page.locator('[data-testid="stMetricValue"]').filter(has_text=f"{start + 4} / ").first.wait_for(
            timeout=TIMEOUT_MS)
        settle(page)
        page.wait_for_timeout(1500)
        settle(page)
        during = page.evaluate("window.__pressedDuring")
        assert during["state"] == "running" and during["shown"].startswith(f"{start + 3} / ")
        assert during["last_shown"].startswith(f"{start + 2} / ")  # the previous press was made on the step before
        assert store.status()["step"] == start + 4, "a press during the new step's redraw was lost or doubled"
        for _ in range(4):  # on to the propagation, so that both replays have something to play
            page.locator("h1").first.click()
            page.keyboard.press("ArrowRight")
            page.wait_for_timeout(300)
            settle(page)
        assert store.status()["step"] >= start + 5
        assert_no_exception(page)

        goto(page, app_server, f"embeddings?run={RUN}&present=1", TIMEOUT_MS)
        page.get_by_text("Raw 2-D inputs").click()
        wait_for_app(page, TIMEOUT_MS)
        page.get_by_text("Replay the steps").click()
        page.wait_for_function(f"() => ({REPLAY_JS})().length > 0", timeout=TIMEOUT_MS)
        settle(page)
        (before,) = page.evaluate(REPLAY_JS)
        page.locator(".updatemenu-button").first.click()  # ▶ Play
        page.wait_for_function(f"(b) => ({REPLAY_JS})()[0] !== b", arg=before, timeout=30_000)
        page.locator(".updatemenu-button").nth(1).click()  # ❚❚ Pause
        page.wait_for_timeout(300)
        (paused,) = page.evaluate(REPLAY_JS)
        page.wait_for_timeout(1500)
        assert page.evaluate(REPLAY_JS) == [paused] and paused != before
        _shot(page, "embeddings_replay")

        goto(page, app_server, f"graph?run={RUN}&present=1", TIMEOUT_MS)
        page.wait_for_function(f"() => ({REPLAY_JS})().length > 0", timeout=TIMEOUT_MS)
        settle(page)
        (last,) = page.evaluate(REPLAY_JS)
        page.locator(".updatemenu-button").first.click()
        page.wait_for_function(f"(b) => ({REPLAY_JS})()[0] !== b", arg=last, timeout=30_000)
        assert_no_exception(page)
        _shot(page, "graph_replay")
    finally:
        context.close()

"""A lecture that lands, in a real Chromium at 1024x768: every Losses group is drawn in its colour (bars and
legend), presentation mode stays in the address across Create, Reset and page changes, and every page answers
at its own address (any case) with the most recent run open."""

from __future__ import annotations

import io
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_no_exception, goto, offline_page, settle

pytestmark = pytest.mark.browser

RUN = "lands-moons"
TIMEOUT_MS = 120_000


def _shot_dir() -> Path:
    folder = Path(os.environ.get("AMLKD_SHOTS_DIR") or "/tmp")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def trained_run(app_server):
    """The teaching preset on a short schedule, trained into its refine phase (easy flags, noisy labels)."""
    from app.settings import load_presets
    from engine.steps.run import Run

    preset = {p.id: p for p in load_presets()[0]}["moons"]
    config = replace(preset.config, schedule=replace(preset.config.schedule, teacher_epochs=3, teacher_patience=3,
                                                     warmup_epochs=1, refine_epochs=2, mutual_epochs=1))
    path = Path(app_server.runs_dir) / RUN
    run = Run.create(path, config)
    while run.phase.value != "mutual":
        run.step()
    return path


def _pixels_near(png: bytes, hex_color: str, tolerance: int = 12) -> int:
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    rgb = np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)])
    return int(np.sum(np.all(np.abs(image - rgb) <= tolerance, axis=-1)))


def test_every_losses_group_shows_its_colour_in_bars_and_legend(app_server, browser, trained_run):
    from app.figures.losses import GROUP_COLORS

    context, page = offline_page(browser)
    try:
        goto(page, app_server, f"losses?run={RUN}", TIMEOUT_MS)
        chart = page.locator(".stPlotlyChart").first
        chart.wait_for(timeout=TIMEOUT_MS)
        settle(page, 500)
        assert_no_exception(page)
        png = chart.screenshot(path=str(_shot_dir() / "lands_losses_1024.png"))
        legend = page.locator(".stPlotlyChart .legend").first.screenshot()
        for group in (("clean", "easy"), ("clean", "not easy"), ("noisy", "easy"), ("noisy", "not easy")):
            color = GROUP_COLORS[group]
            assert _pixels_near(png, color) > 150, f"{group} ({color}) is not visible in the histogram"
            assert _pixels_near(legend, color) > 10, f"{group} ({color}) has no visible legend swatch"
    finally:
        context.close()


def test_presentation_mode_stays_in_the_address_across_create_reset_and_pages(app_server, browser):
    context, page = offline_page(browser)
    try:
        goto(page, app_server, "Setup?present=1", TIMEOUT_MS)  # any case
        assert page.locator("h1").first.inner_text().strip() == "Setup"
        page.locator(".st-key-preset-create-moons button").click()
        page.locator(".st-key-train-step button").first.wait_for(timeout=TIMEOUT_MS)
        settle(page, 500)
        assert "present=1" in page.url and "/train" in page.url, page.url
        assert page.locator("h1").first.inner_text().strip() == "Train"  # the short, presenting title
        page.locator(".st-key-train-step button").first.click()
        page.locator('[data-testid="stMetricValue"]').filter(has_text="1 / ").first.wait_for(timeout=TIMEOUT_MS)
        settle(page, 500)
        page.get_by_role("button", name="Reset").first.click()
        page.locator(".st-key-train-reset button").first.click()
        page.locator('[data-testid="stMetricValue"]').filter(has_text="0 / ").first.wait_for(timeout=TIMEOUT_MS)
        settle(page, 500)
        assert "present=1" in page.url, page.url
        page.locator('[data-testid="stExpandSidebarButton"], [data-testid="stSidebarCollapsedControl"] button') \
            .first.click()
        page.locator('[data-testid="stSidebarNav"]').get_by_text("Compare", exact=True).click()
        page.locator("h1").filter(has_text="Compare").first.wait_for(timeout=TIMEOUT_MS)
        settle(page, 500)
        assert "present=1" in page.url and "/compare" in page.url, page.url
        toggle = page.locator(".st-key-present-toggle input").first
        assert toggle.is_checked()
        page.screenshot(path=str(_shot_dir() / "lands_present_compare_1024.png"))
    finally:
        context.close()


def test_every_page_answers_at_its_address_with_the_most_recent_run(app_server, browser, trained_run):
    context, page = offline_page(browser)
    try:
        (Path(trained_run) / "touch").mkdir(exist_ok=True)  # the most recent run of the folder
        (Path(trained_run) / "touch").rmdir()
        for address, title in (("setup", "Setup"), ("SETUP", "Setup"), ("Train", f"Train · {RUN}"),
                               ("losses", "Losses"), ("compare", "Compare"), ("", f"Train · {RUN}")):
            goto(page, app_server, address, TIMEOUT_MS)
            settle(page, 500)
            assert_no_exception(page)
            assert page.get_by_text("Page not found").count() == 0, address
            assert page.locator("h1").first.inner_text().strip() == title, address
            assert page.get_by_text("No run is open").count() == 0, address
            assert f"run={RUN}" in page.url, (address, page.url)
        page.screenshot(path=str(_shot_dir() / "lands_start_1024.png"))
    finally:
        context.close()


def test_no_grey_focus_frame_after_a_key_press(app_server, browser):
    """After a clicker's key the main area would hold the focus, which Chrome frames in grey: it is handed back."""
    from app.settings import load_presets
    from engine.steps.run import Run

    preset = {p.id: p for p in load_presets()[0]}["moons"]
    Run.create(Path(app_server.runs_dir) / "lands-keys",
               replace(preset.config, schedule=replace(preset.config.schedule, teacher_epochs=3, teacher_patience=3)))
    context, page = offline_page(browser)
    try:
        goto(page, app_server, "train?run=lands-keys&present=1", TIMEOUT_MS)
        page.locator(".st-key-train-step button").first.wait_for(timeout=TIMEOUT_MS)
        settle(page, 500)
        page.locator("h1").first.click()
        page.keyboard.press("ArrowRight")
        page.locator('[data-testid="stMetricValue"]').filter(has_text="1 / ").first.wait_for(timeout=TIMEOUT_MS)
        settle(page, 500)
        page.wait_for_timeout(500)
        assert page.evaluate("() => document.activeElement.getAttribute('data-testid')") != "stMain"
        png = page.screenshot(path=str(_shot_dir() / "lands_after_key_1024.png"))
        from PIL import Image

        edge = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))[200:600, 0:3]
        assert (edge >= 250).all(), "a grey frame at the left edge of the main area"
    finally:
        context.close()

"""The Review page in a real Chromium: review with the keyboard only, undo,
reload, and download the exported samples.

Set ``AMLKD_SCREENSHOTS=DIR`` to keep screenshots of each stage.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from engine.review import ReviewStore
from engine.store import RunStore

pytestmark = pytest.mark.browser
RUN = "review-moons"
APP_IDLE = ('[data-testid="stApp"][data-test-connection-state="CONNECTED"]'
            '[data-test-script-state="notRunning"]')


def wait_for_app(page, timeout_ms: float = 60_000) -> None:
    page.wait_for_selector(APP_IDLE, state="attached", timeout=timeout_ms)


def assert_no_exception(page) -> None:
    found = page.locator('[data-testid="stException"]')
    if found.count():
        pytest.fail(f"the page shows an exception: {found.first.inner_text()[:2000]}")


@pytest.fixture(scope="module")
def review_run(app_server, tiny_moons_run) -> Path:
    """A copy of the tiny moons run inside the served app's runs folder."""
    path = Path(app_server.runs_dir) / RUN
    shutil.copytree(tiny_moons_run, path)
    return path


def shot(page, name: str) -> None:
    folder = os.environ.get("AMLKD_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def ready(page) -> None:
    """Wait for the sample card and its buttons (their shortcuts exist once they are drawn)."""
    page.locator("h3", has_text="Sample ").wait_for(timeout=60_000)
    page.get_by_role("button", name="Next Shortcut L").wait_for(timeout=60_000)
    wait_for_app(page)
    page.wait_for_timeout(300)
    wait_for_app(page)


def keys_released(page) -> None:
    """Wait until no input holds the focus (the page's script hands the keys back), then for the card."""
    page.wait_for_function("document.activeElement?.tagName !== 'INPUT'", timeout=30_000)
    ready(page)


def sample_heading(page) -> str:
    return page.locator("h3", has_text="Sample ").first.inner_text()


def key(page, name: str, expect: str) -> str:
    """Press a key with the focus on the page body; wait for the message it leaves."""
    page.keyboard.press(name)
    page.get_by_text(expect).first.wait_for(timeout=30_000)
    ready(page)
    return page.get_by_text(expect).first.inner_text()


def test_review_with_keys_undo_reload_and_export(app_page, app_server, review_run):
    page = app_page
    page.goto(f"{app_server}/review?run={RUN}&reviewer=kim")
    ready(page)
    assert_no_exception(page)
    reviews = ReviewStore(review_run)

    first = sample_heading(page)
    page.keyboard.press("ArrowRight")
    page.locator("h3", has_text="2 of").wait_for(timeout=30_000)
    ready(page)
    page.keyboard.press("j")  # J: previous
    page.locator("h3", has_text="1 of").wait_for(timeout=30_000)
    ready(page)
    assert sample_heading(page) == first

    seen = []
    for name in ("a", "k", "1", "u"):  # accept, keep given, class 1, unsure
        seen.append(sample_heading(page).split(" · ")[0].removeprefix("Sample "))
        assert "(by kim)" in key(page, name, f"Saved: {seen[-1]}:")
        page.locator("h3", has_text=f"{len(seen) + 1} of").wait_for(timeout=30_000)
        ready(page)
    shot(page, "review_after_keys")
    key(page, "z", f"Undone: your last decision on {seen[-1]}")
    assert sample_heading(page).startswith(f"Sample {seen[-1]} ")
    assert_no_exception(page)
    latest = reviews.latest()
    assert sorted(d.key for d in latest.values()) == sorted(seen[:3])
    assert {d.reviewer for d in latest.values()} == {"kim"}

    # typing a name that holds shortcut letters records nothing; Enter hands the keys back
    field = page.get_by_label("Reviewer")
    field.fill("")
    field.type("kimo")
    wait_for_app(page)
    assert len(reviews.history()) == 5
    field.press("Enter")
    page.wait_for_url("**reviewer=kimo**", timeout=30_000)
    keys_released(page)
    key(page, "u", "(by kimo)")
    # so does a click on a toggle (which keeps the focus otherwise)
    page.get_by_text("Hide reviewed").click()
    wait_for_app(page)
    keys_released(page)
    key(page, "z", "Undone: your last decision")
    assert len(reviews.history()) == 7 and len(reviews.latest()) == 3
    page.get_by_text("Hide reviewed").click()
    wait_for_app(page)
    page.get_by_label("Reviewer").fill("kim")
    page.get_by_label("Reviewer").press("Enter")
    wait_for_app(page)

    page.reload()
    ready(page)
    page.get_by_text("3 reviewed in this run").wait_for(timeout=30_000)
    assert sample_heading(page).startswith(f"Sample {seen[-1]} ")  # the URL kept the place

    page.get_by_text("Export and import").click()
    button = page.get_by_role("button", name="samples.csv")
    button.wait_for(timeout=30_000)
    with page.expect_download(timeout=60_000) as download:
        button.click()
    shot(page, "review_export")
    table = pd.read_csv(download.value.path(), dtype=str, keep_default_na=False)
    assert len(table) == len(RunStore(review_run).dataset_arrays()["given"])
    decided = table[table["decision"] != ""].set_index("sample")
    assert sorted(decided.index) == sorted(seen[:3])
    assert set(decided["reviewer"]) == {"kim"}
    assert decided.loc[seen[0], "decision"] == "accept"
    assert decided.loc[seen[1], "decision"] == "keep"
    assert decided.loc[seen[1], "final"] == decided.loc[seen[1], "given"]
    assert page.blocked == []

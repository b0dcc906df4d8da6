"""The Review page in a real Chromium: review with the keyboard only, undo,
reload, and download the exported samples; rapid keys (one decision per
card), two reviewers in two tabs (disputed on both screens), the reviewer
across pages and reloads, a bulk accept undone whole by Z.

Set ``AMLKD_SCREENSHOTS=DIR`` to keep screenshots of each stage.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from engine.rundir.review import ReviewStore
from engine.rundir.store import RunStore

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
    page.get_by_text("Hide samples I decided").click()
    wait_for_app(page)
    keys_released(page)
    key(page, "z", "Undone: your last decision")
    assert len(reviews.history()) == 7 and len(reviews.latest()) == 3
    page.get_by_text("Hide samples I decided").click()
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


def heading_key(page) -> str:
    return sample_heading(page).split(" · ")[0].removeprefix("Sample ")


def test_rapid_keys_record_one_decision_per_card(app_page, app_server, review_run):
    page = app_page
    page.goto(f"{app_server}/review?run={RUN}&reviewer=rapid")
    ready(page)
    for _ in range(10):  # human-fast: 50 ms apart, without waiting for the page
        page.keyboard.press("a")
        page.wait_for_timeout(50)
    wait_for_app(page)
    page.wait_for_timeout(1500)
    wait_for_app(page)
    assert_no_exception(page)
    mine = [d for d in ReviewStore(review_run).history() if d.reviewer == "rapid"]
    samples = [d.sample for d in mine]
    assert 1 <= len(mine) <= 10 and len(samples) == len(set(samples)), samples  # never two on one card
    shot(page, "review_rapid_keys")
    for d in mine:  # undo them all, for the next tests
        ReviewStore(review_run).undo("rapid", d.sample)


def test_two_reviewers_on_one_sample_disputed_on_both_screens(browser, app_server, review_run):
    tabs = []
    for name in ("ann", "bob"):
        context = browser.new_context(viewport={"width": 1024, "height": 768})
        tabs.append(context.new_page())
        tabs[-1].goto(f"{app_server}/review?run={RUN}&reviewer={name}")
        ready(tabs[-1])
    ann, bob = tabs
    sample = heading_key(ann)
    assert heading_key(bob) == sample
    key(ann, "0", f"Saved: {sample}:")
    key(bob, "1", f"Saved: {sample}:")
    for page, me in ((ann, "ann"), (bob, "bob")):
        page.goto(f"{app_server}/review?run={RUN}&reviewer={me}&sample={sample}")
        ready(page)
        box = page.locator(".st-key-review_disputed")
        box.wait_for(timeout=30_000)
        text = box.inner_text()
        assert "Disputed" in text and "ann" in text and "bob" in text and f"{me} (you)" in text, text
        assert_no_exception(page)
    shot(bob, "review_disputed")
    verdict = ReviewStore(review_run).consensus()[int(ReviewStore(review_run).history()[-1].sample)]
    assert verdict.disputed and verdict.reviewers[-2:] == ("ann", "bob")
    for page in tabs:
        page.context.close()
    for name in ("ann", "bob"):
        ReviewStore(review_run).undo(name, int(verdict.sample))


def test_reviewer_survives_another_page_and_a_reload(app_page, app_server, review_run):
    page = app_page
    name = 'Zoë "Q" <i>x</i>'
    page.goto(f"{app_server}/review?run={RUN}")
    ready(page)
    field = page.get_by_label("Reviewer")
    field.fill(name)
    field.press("Enter")
    page.wait_for_url("**reviewer=**", timeout=30_000)
    keys_released(page)
    page.get_by_role("link", name="Losses").click()
    wait_for_app(page)
    page.wait_for_url("**reviewer=**", timeout=30_000)  # the other page keeps it in the address
    page.reload()
    wait_for_app(page)
    page.get_by_role("link", name="Review").click()
    ready(page)
    assert page.get_by_label("Reviewer").input_value() == name
    page.get_by_text(f"reviewing as {name}").wait_for(timeout=30_000)  # shown as text, not markup
    assert page.locator("i", has_text="x").count() == 0
    key(page, "u", "Saved:")
    mine = [d for d in ReviewStore(review_run).effective() if d.reviewer == name]
    assert len(mine) == 1
    key(page, "z", "Undone:")


def test_z_undoes_a_bulk_accept_whole(app_page, app_server, review_run):
    page = app_page
    page.goto(f"{app_server}/review?run={RUN}&reviewer=bulk")
    ready(page)
    page.keyboard.press("ArrowRight")
    page.locator("h3", has_text="2 of").wait_for(timeout=30_000)
    ready(page)
    where = heading_key(page)
    page.get_by_text("Bulk accept").click()
    button = page.get_by_role("button", name="Accept these")
    button.wait_for(timeout=30_000)
    count = int(button.inner_text().split()[2])
    assert count > 1
    button.click()
    page.get_by_text(f"Accepted {count} proposals").wait_for(timeout=30_000)
    ready(page)
    assert len([d for d in ReviewStore(review_run).effective() if d.reviewer == "bulk"]) == count
    page.keyboard.press("l")  # move on; Z still undoes the whole bulk accept and comes back
    ready(page)
    keys_released(page)
    key(page, "z", f"Undone: your bulk accept of {count} samples")
    assert heading_key(page) == where
    assert [d for d in ReviewStore(review_run).effective() if d.reviewer == "bulk"] == []
    assert_no_exception(page)

"""The Review card in a real Chromium, at a practised annotator's pace.

The card is a custom component that handles its keys in the browser
(``app/review/card_component.js``). Every test records, from a listener that
runs before the card's own, which sample the card showed when each key went
down and whether the server was redrawing at that moment; then checks the
review log: one decision per press, on the sample that was on screen, in queue
order. Set ``AMLKD_SCREENSHOTS=DIR`` to keep screenshots.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from conftest import shot, wait_for_app
from engine.rundir.review import ReviewStore

pytestmark = pytest.mark.browser
#: Runs before the page's scripts, so its keydown listener runs before the card's.
PRESS_LOG = """
window.__pressLog = [];
window.addEventListener('keydown', (e) => {
  const S = window.__amlkdCard;
  const card = S && S.root && S.root.querySelector('.amlkd-card');
  const app = document.querySelector('[data-testid="stApp"]');
  window.__pressLog.push({key: e.key, sample: card && card.dataset.sample ? Number(card.dataset.sample) : null,
                          state: app ? app.getAttribute('data-test-script-state') : null});
}, true);
"""




@pytest.fixture
def digits_run(app_server, tiny_digits_run, request) -> str:
    """A fresh copy of the tiny digits run in the served runs folder, one per test (a session of an earlier
    test that is still finishing a redraw never writes into this one's log)."""
    test, _, variant = request.node.name.partition("[")
    name = "review-digits-" + test.removeprefix("test_")[:40] + (f"-{variant.rstrip(']')}" if variant else "")
    path = Path(app_server.runs_dir) / name
    if path.exists():
        shutil.rmtree(path)
    shutil.copytree(tiny_digits_run, path)
    return name


@pytest.fixture
def fresh_log(app_server, digits_run):
    """The review log of this test's run."""
    return ReviewStore(Path(app_server.runs_dir) / digits_run)


def open_card(context, base: str, query: str):
    page = context.new_page()
    page.add_init_script(PRESS_LOG)
    page.goto(f"{base}/review?{query}")
    wait_for_app(page)
    page.wait_for_function("window.__amlkdCard && window.__amlkdCard.root && "
                           "window.__amlkdCard.root.querySelector('.amlkd-card[data-sample]')", timeout=60_000)
    return page


def card_order(page) -> list[int]:
    return page.evaluate("window.__amlkdCard.cards.map(c => c.sample)")


def on_screen(page) -> int:
    return page.evaluate("Number(window.__amlkdCard.root.querySelector('.amlkd-card').dataset.sample)")


def settled(page, presses: int | None = None, timeout_ms: float = 90_000) -> None:
    """Every press acknowledged by the server (nothing pending in the card).

    ``presses``: wait first until that many keys have gone down (presses made by the page itself, such as the
    redraw test's, may come after this is called: an empty outbox before them says nothing).
    """
    if presses is not None:
        page.wait_for_function(f"window.__pressLog.length >= {int(presses)}", timeout=timeout_ms)
    page.wait_for_function("window.__amlkdCard.outbox.length === 0", timeout=timeout_ms)
    wait_for_app(page)


def press_at_pace(page, keys: str, gap: float) -> None:
    start = time.perf_counter()
    for n, key in enumerate(keys):
        delay = start + n * gap - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        page.keyboard.press(key)


def decisions(reviews: ReviewStore):
    return [d for d in reviews.history() if d.decision != "undo"]


def test_a_hundred_presses_50_ms_apart_make_a_hundred_decisions(browser, app_server, digits_run, fresh_log):
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    page = open_card(context, app_server, f"run={digits_run}&reviewer=kim&queue=all&size=100")
    order = card_order(page)
    assert len(order) >= 100
    press_at_pace(page, "a" * 100, 0.050)
    settled(page)
    shot(page, "review_after_100")
    log = page.evaluate("window.__pressLog")
    assert len(log) == 100 and page.evaluate("window.__amlkdCard.presses") == 100  # every key reached the card
    made = decisions(fresh_log)
    assert len(made) == 100 and {d.decision for d in made} == {"accept"} and {d.reviewer for d in made} == {"kim"}
    assert [d.sample for d in made] == order[:100]  # 100 distinct samples, in queue order
    assert [entry["sample"] for entry in log] == order[:100]  # each on the card shown when its key went down
    assert sum(entry["state"] == "running" for entry in log) > 0  # and presses did land during server redraws
    text = page.evaluate("window.__amlkdCard.root.querySelector('.amlkd-sync').textContent")
    assert text == "all saved"
    context.close()


#: Presses K then U the moment the app starts a redraw (a MutationObserver on its script state): no round trip
#: between seeing the redraw start and the key going down, so the presses surely land during it.
PRESS_DURING_REDRAW = """() => {
  const app = document.querySelector('[data-testid="stApp"]');
  const watch = new MutationObserver(() => {
    if (app.getAttribute('data-test-script-state') !== 'running') return;
    watch.disconnect();
    for (const key of ['k', 'u']) window.dispatchEvent(new KeyboardEvent('keydown', {key, bubbles: true}));
  });
  watch.observe(app, {attributes: true, attributeFilter: ['data-test-script-state']});
}"""


def test_a_press_during_a_server_redraw_lands_on_the_card_on_screen(browser, app_server, digits_run, fresh_log):
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    page = open_card(context, app_server, f"run={digits_run}&reviewer=kim&queue=all&size=100")
    order = card_order(page)
    page.evaluate(PRESS_DURING_REDRAW)
    page.get_by_text("Details of the sample on the card").click()  # a redraw: history chart, neighbours
    settled(page, presses=2)  # the presses go down once the redraw has started, after the click returns
    log = page.evaluate("window.__pressLog")
    assert [(entry["key"], entry["state"]) for entry in log] == [("k", "running"), ("u", "running")]
    assert [entry["sample"] for entry in log] == order[:2]  # each on the card shown when its key went down
    assert [(d.sample, d.decision) for d in decisions(fresh_log)] == [(order[0], "keep"), (order[1], "unsure")]
    mine = page.evaluate("window.__amlkdCard.cards.slice(0, 2).map(c => [c.mine && c.mine.decision, c.local])")
    assert mine == [["keep", None], ["unsure", None]]  # both acknowledged to the card: saved, nothing pending
    text = page.evaluate("window.__amlkdCard.root.querySelector('.amlkd-sync').textContent")
    assert text == "all saved"
    context.close()


def test_one_reviewer_in_two_tabs_sees_the_other_tabs_decision(browser, app_server, digits_run, fresh_log):
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    query = f"run={digits_run}&reviewer=kim&queue=all&size=100"
    tab_a, tab_b = open_card(context, app_server, query), open_card(context, app_server, query)
    sample = on_screen(tab_a)
    assert on_screen(tab_b) == sample
    tab_a.keyboard.press("a")
    settled(tab_a)
    tab_b.keyboard.press("k")  # tab B still shows the sample as undecided
    settled(tab_b)
    notice = tab_b.evaluate("window.__amlkdCard.root.querySelector('.amlkd-notice').textContent")
    assert "another tab of yours decided first (accept" in notice and "not recorded" in notice
    assert [(d.sample, d.decision) for d in decisions(fresh_log)] == [(sample, "accept")]
    tab_b.keyboard.press("j")  # back to it: the card now knows tab A's decision, and a press changes it
    status = tab_b.evaluate("window.__amlkdCard.root.querySelector('.amlkd-status .amlkd-value').textContent")
    assert status.startswith("saved: accept")
    tab_b.keyboard.press("k")
    settled(tab_b)
    assert fresh_log.latest()[sample].decision == "keep" and len(decisions(fresh_log)) == 2
    shot(tab_b, "review_two_tabs")
    context.close()


def test_two_reviewers_both_count(browser, app_server, digits_run, fresh_log):
    ann_context = browser.new_context(viewport={"width": 1024, "height": 768})
    bob_context = browser.new_context(viewport={"width": 1024, "height": 768})
    ann = open_card(ann_context, app_server, f"run={digits_run}&reviewer=ann&queue=all&size=100")
    bob = open_card(bob_context, app_server, f"run={digits_run}&reviewer=bob&queue=all&size=100")
    sample = on_screen(ann)
    ann.keyboard.press("a")
    bob.keyboard.press("k")
    settled(ann)
    settled(bob)
    verdict = fresh_log.consensus()[sample]
    assert sorted(verdict.reviewers) == ["ann", "bob"] and verdict.disputed  # whichever the server heard first
    bob.reload()
    wait_for_app(bob)
    bob.wait_for_function("window.__amlkdCard && window.__amlkdCard.root.querySelector('.amlkd-card[data-sample]')")
    bob.keyboard.press("j")
    votes = bob.evaluate("window.__amlkdCard.root.querySelector('.amlkd-card').textContent")
    assert "ann: accept" in votes and "bob (you): keep" in votes
    ann_context.close()
    bob_context.close()


def test_a_reload_mid_queue_comes_back_to_the_next_card_and_the_filters(browser, app_server, digits_run,
                                                                       fresh_log):
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    page = open_card(context, app_server, f"run={digits_run}&reviewer=kim&queue=all&size=100&hide=1")
    order = card_order(page)
    press_at_pace(page, "aaaaa", 0.05)
    settled(page)
    page.wait_for_function(f"new URLSearchParams(location.search).get('sample') === '{order[5]}'", timeout=30_000)
    page.reload()
    wait_for_app(page)
    page.wait_for_function("window.__amlkdCard && window.__amlkdCard.root.querySelector('.amlkd-card[data-sample]')")
    assert on_screen(page) == order[5]
    assert not set(card_order(page)) & set(order[:5])  # hidden once decided, after the reload too
    query = page.evaluate("Object.fromEntries(new URLSearchParams(location.search))")
    assert (query["queue"], query["size"], query["hide"], query["reviewer"]) == ("all", "100", "1", "kim")
    assert page.get_by_role("switch", name="Hide samples I decided").is_checked()
    context.close()


def test_undo_reaches_pending_presses(browser, app_server, digits_run, fresh_log):
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    page = open_card(context, app_server, f"run={digits_run}&reviewer=kim&queue=all&size=100")
    order = card_order(page)
    press_at_pace(page, "aakz", 0.03)  # the undo goes out before the server has answered the presses
    assert on_screen(page) == order[2]  # back on the card of the undone press
    settled(page)
    latest = fresh_log.latest()
    assert {s: d.decision for s, d in latest.items()} == {order[0]: "accept", order[1]: "accept"}
    undone = [d for d in fresh_log.history() if d.decision == "undo"]
    assert len(undone) == 1 and undone[0].sample == order[2]
    context.close()


#: Each bulk-accept caption: its text, its first line and how many lines it takes on screen.
CAPTIONS = """() => Array.from(document.querySelectorAll(
    '.st-key-review_bulk_preview [data-testid="stImageCaption"] p')).map(p => {
  const range = document.createRange();
  range.selectNodeContents(p);
  const tops = new Set(Array.from(range.getClientRects()).map(r => Math.round(r.top)));
  return {text: p.textContent, lines: tops.size, cut: p.scrollWidth > p.clientWidth};
})"""


def test_bulk_accept_captions_keep_keys_whole_and_the_outcome_shows_where_the_button_was(browser, app_server,
                                                                                        digits_run, fresh_log):
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    page = open_card(context, app_server, f"run={digits_run}&reviewer=kim")
    page.get_by_text("Bulk accept").click()
    wait_for_app(page)
    page.locator(".st-key-review_bulk_preview img").first.wait_for(timeout=30_000)
    captions = page.evaluate(CAPTIONS)
    assert len(captions) == 20
    keys = [c["text"].split("\n")[0] for c in captions]
    assert all(k.startswith("digits/") and k[7:].isdigit() for k in keys)  # the whole key on its own line
    assert {c["lines"] for c in captions} == {2} and not any(c["cut"] for c in captions)
    button = page.get_by_role("button", name="Accept these 20 proposals")
    button.scroll_into_view_if_needed()
    shot(page, "review_bulk_before")
    button.click()
    outcome = page.locator(".st-key-review_bulk_outcome [data-testid='stAlertContentSuccess']")
    outcome.wait_for(timeout=30_000)
    wait_for_app(page)
    box = outcome.bounding_box()
    assert box is not None and 0 <= box["y"] and box["y"] + box["height"] <= 768  # in sight, no scrolling
    assert "Accepted 20 proposals in one action" in outcome.inner_text()
    assert page.get_by_role("button", name="Accept these").count() == 0  # no new set under the same button
    assert page.locator(".st-key-review_bulk_preview").count() == 0
    shot(page, "review_bulk_after")
    accepted = {d.key for d in decisions(fresh_log)}
    assert accepted == set(keys) and {d.batch for d in decisions(fresh_log)} != {None}
    page.get_by_role("button", name="Show the next candidates").click()
    wait_for_app(page)
    page.locator(".st-key-review_bulk_preview img").first.wait_for(timeout=30_000)
    fresh = {c["text"].split("\n")[0] for c in page.evaluate(CAPTIONS)}
    assert len(fresh) == 20 and not fresh & accepted  # the next set, none of the accepted samples
    context.close()

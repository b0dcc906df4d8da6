"""The audit card in a real Chromium: keys 50 ms apart, every one recorded in audit.sqlite, in order, on the
sample that was on screen; the card shows no proposal. Set ``AMLKD_SCREENSHOTS=DIR`` to keep a screenshot."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from engine.rundir import AuditStore, ReviewStore

pytestmark = pytest.mark.browser
APP_IDLE = ('[data-testid="stApp"][data-test-connection-state="CONNECTED"]'
            '[data-test-script-state="notRunning"]')
#: Runs before the page's scripts: which sample the audit card showed when each key went down.
PRESS_LOG = """
window.__pressLog = [];
window.addEventListener('keydown', (e) => {
  const S = window.__amlkdAudit;
  const card = S && S.root && S.root.querySelector('.amlkd-card');
  window.__pressLog.push({key: e.key, sample: card && card.dataset.sample ? Number(card.dataset.sample) : null});
}, true);
"""
KEYS = "k3k0uk7ok1k5kk2k9ku4k8k6kok0k"  # 30 presses: keep, classes, unsure, outlier


@pytest.fixture
def audit_run(app_server, tiny_digits_run) -> str:
    name = "audit-digits"
    path = Path(app_server.runs_dir) / name
    if path.exists():
        shutil.rmtree(path)
    shutil.copytree(tiny_digits_run, path)
    return name


def expected(key: str, given: int) -> tuple[str, int | None]:
    if key == "k":
        return "keep", given
    if key == "u":
        return "unsure", None
    if key == "o":
        return "outlier", None
    return ("keep", given) if int(key) == given else ("relabel", int(key))


def test_thirty_keys_50_ms_apart_are_recorded_in_order(browser, app_server, audit_run):
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    page = context.new_page()
    page.add_init_script(PRESS_LOG)
    page.goto(f"{app_server}/review?run={audit_run}&reviewer=kim&queue=audit")
    page.wait_for_selector(APP_IDLE, state="attached", timeout=60_000)
    page.wait_for_function("window.__amlkdAudit && window.__amlkdAudit.root && "
                           "window.__amlkdAudit.root.querySelector('.amlkd-card[data-sample]')", timeout=60_000)
    card_text = page.evaluate("window.__amlkdAudit.root.querySelector('.amlkd-card').innerText")
    assert "Given label" in card_text and "Proposal" not in card_text and "Accept" not in card_text
    cards = page.evaluate("window.__amlkdAudit.cards.map(c => [c.sample, c.given, c.proposal === undefined])")
    assert len(cards) >= len(KEYS) and all(hidden for _, _, hidden in cards)
    start = time.perf_counter()
    for n, key in enumerate(KEYS):
        delay = start + n * 0.050 - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        page.keyboard.press(key)
    page.wait_for_function(f"window.__pressLog.length >= {len(KEYS)}", timeout=60_000)
    page.wait_for_function("window.__amlkdAudit.outbox.length === 0", timeout=90_000)
    page.wait_for_selector(APP_IDLE, state="attached", timeout=60_000)
    page.wait_for_timeout(1500)
    if os.environ.get("AMLKD_SCREENSHOTS"):
        page.screenshot(path=str(Path(os.environ["AMLKD_SCREENSHOTS"]) / "audit_after_30.png"), full_page=True)
    run = Path(app_server.runs_dir) / audit_run
    made = [d for d in AuditStore(run).history() if d.decision != "undo"]
    assert len(made) == len(KEYS) and {d.reviewer for d in made} == {"kim"}
    log = page.evaluate("window.__pressLog")
    assert [entry["sample"] for entry in log] == [s for s, _, _ in cards[:len(KEYS)]]  # the card on screen
    assert [d.sample for d in made] == [s for s, _, _ in cards[:len(KEYS)]]  # in the audit order
    assert [(d.decision, d.label) for d in made] == [expected(k, g) for k, (_, g, _) in zip(KEYS, cards)]
    assert all(d.proposal is None for d in made) and not ReviewStore(run).history()
    assert not (run / "reviews.sqlite").exists()
    placed = len(made) - sum(d.decision == "unsure" for d in made)
    page.wait_for_function("document.body.innerText.includes('Audited ')", timeout=30_000)
    numbers = page.locator(".st-key-audit_numbers").inner_text()
    assert f"Audited {placed} of about" in numbers and f"you: {len(KEYS)}" in numbers, numbers
    context.close()


def test_two_reviewers_in_two_tabs_keying_in_turn_are_each_recorded_and_agree_where_they_agree(
        browser, app_server, audit_run):
    """ann and bob audit the same run in two tabs, their keys alternating 50 ms apart: each reviewer's decisions
    land in order on their own walk of the audit order; a sample both place alike gets that class, one they place
    differently stays a tie (left out)."""
    ann_keys, bob_keys = "k3k0k7k1k5k2", "k3k0k7k1k5k9"  # the same but the last: a tie on one sample
    pages = {}
    contexts = []
    for name in ("ann", "bob"):
        context = browser.new_context(viewport={"width": 1024, "height": 768})
        contexts.append(context)
        page = context.new_page()
        page.goto(f"{app_server}/review?run={audit_run}&reviewer={name}&queue=audit")
        page.wait_for_selector(APP_IDLE, state="attached", timeout=60_000)
        page.wait_for_function("window.__amlkdAudit && window.__amlkdAudit.root && "
                               "window.__amlkdAudit.root.querySelector('.amlkd-card[data-sample]')", timeout=60_000)
        pages[name] = page
    cards = pages["ann"].evaluate("window.__amlkdAudit.cards.map(c => [c.sample, c.given])")
    assert cards == pages["bob"].evaluate("window.__amlkdAudit.cards.map(c => [c.sample, c.given])")
    start = time.perf_counter()
    for n, (a, b) in enumerate(zip(ann_keys, bob_keys)):
        for m, (page, key) in enumerate(((pages["ann"], a), (pages["bob"], b))):
            delay = start + (2 * n + m) * 0.050 - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            page.keyboard.press(key)
    for page in pages.values():
        page.wait_for_function("window.__amlkdAudit.outbox.length === 0", timeout=90_000)
    run = Path(app_server.runs_dir) / audit_run
    made = [d for d in AuditStore(run).history() if d.decision != "undo"]
    for name, keys in (("ann", ann_keys), ("bob", bob_keys)):
        mine = [d for d in made if d.reviewer == name]
        assert [d.sample for d in mine] == [s for s, _ in cards[:len(keys)]], name
        assert [(d.decision, d.label) for d in mine] == [expected(k, g) for k, (_, g) in zip(keys, cards)], name
    labels, left_out = AuditStore(run).audit_labels(max(s for s, _ in cards) + 1)
    agreed = [expected(k, g)[1] for k, (_, g) in zip(ann_keys[:-1], cards)]
    assert [int(labels[s]) for s, _ in cards[:len(ann_keys) - 1]] == agreed
    last = cards[len(ann_keys) - 1][0]
    tie = expected(ann_keys[-1], cards[len(ann_keys) - 1][1]) != expected(bob_keys[-1], cards[len(ann_keys) - 1][1])
    assert tie and labels[last] == -1 and left_out == 1
    for context in contexts:
        context.close()

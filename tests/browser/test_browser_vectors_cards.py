"""Vectors in a real Chromium at 1024x768, where the rendering is the point: Compare shows a vectors sample as a
card of its key and labels (no picture), and the review card (a custom component) says why the calibrated rule kept
a given label. (Setup on a vectors file and Train's noise-rate line are AppTests: tests/test_app_byod.py,
tests/test_app_setup_train.py.) Set ``AMLKD_SCREENSHOTS=DIR`` to keep the screenshots."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.browser.conftest import assert_no_exception, goto, settle, shot, wait_for_app
from tests.conftest import blobs_npz

pytestmark = pytest.mark.browser
NAMES = {"aml-kd": "vec-symmetric30-aml-kd-s0", "ce": "vec-symmetric30-ce-s0"}
#: Elements whose text is wider than their box (cut), among the given selector's.
CUT_JS = """(selector) => Array.from(document.querySelectorAll(selector))
    .filter(el => el.scrollWidth > el.clientWidth + 1 || el.getBoundingClientRect().right > window.innerWidth)
    .map(el => el.innerText)"""


@pytest.fixture(scope="module")
def vector_runs(app_server, tmp_path_factory) -> Path:
    """Finished AML-KD and CE runs (short schedule) on 300 16-D vectors keyed ``emb-0000``... in the served runs
    folder; returns the vectors file."""
    from engine.method.config import RunConfig, ScheduleConfig
    from engine.steps.run import Run

    folder = tmp_path_factory.mktemp("vec")
    rng = np.random.default_rng(3)
    labels = np.arange(300) % 3
    blobs_npz(folder / "vec.npz", labels, 16, 2, rng, "emb-{:04d}")
    schedule = ScheduleConfig(teacher_epochs=2, teacher_patience=2, warmup_epochs=1, refine_epochs=2, mutual_epochs=0)
    for method, name in NAMES.items():
        config = RunConfig(dataset=f"vectors:{folder / 'vec.npz'}", noise="symmetric:0.3", method=method,
                           schedule=schedule)
        Run.create(Path(app_server.runs_dir) / name, config).run_until(None)
    return folder / "vec.npz"


def test_compare_shows_a_vectors_sample_as_a_card_of_its_key_and_labels(browser, app_server, vector_runs):
    from engine.readers.compare import per_sample
    from engine.rundir.store import RunStore

    view = per_sample([RunStore(Path(app_server.runs_dir) / NAMES[m]) for m in ("aml-kd", "ce")])
    shown = np.flatnonzero(view.disagree())[:18]
    assert len(shown) > 0
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    page = context.new_page()
    try:
        goto(page, app_server, f"compare?run={NAMES['aml-kd']}")
        page.get_by_text("Per sample", exact=True).wait_for(timeout=90_000)
        settle(page)
        assert_no_exception(page)
        keys = page.locator('[data-testid="stText"]').all_inner_texts()
        assert keys == [view.keys[i] for i in shown]
        assert page.locator('[data-testid="stImage"]').count() == 0  # no blank tiles
        card = page.locator('[data-testid="stColumn"]').filter(has=page.locator('[data-testid="stText"]')).first
        card.scroll_into_view_if_needed()
        shot(page, "compare_vectors_cards")
        box = card.bounding_box()  # three cards a row: each a third of the main area's width
        assert 150 < box["width"] < 300 and box["x"] + box["width"] <= 1024, box
        assert page.evaluate(CUT_JS, '[data-testid="stText"], [data-testid="stCaptionContainer"]') == []
        first = int(shown[0])
        caption = f"#{first} · given {view.class_names[view.given[first]]}"
        assert page.get_by_text(caption).count() >= 1
    finally:
        context.close()


def test_the_review_card_says_why_the_calibrated_rule_kept_the_given_label(browser, app_server, vector_runs):
    from engine.readers.explain import kept_given
    from engine.rundir.store import RunStore

    store = RunStore(Path(app_server.runs_dir) / NAMES["aml-kd"])
    given, names, config = store.dataset_arrays()["given"], store.class_names(), store.config()
    found = None
    for m in store.metrics():  # a step and sample the calibrated rule kept
        if m["phase"] in ("propagate", "refine", "mutual"):
            snapshot = store.snapshot(m["step"])
            hits = [(i, kept_given(snapshot, i, given[i], config, m["phase"])) for i in range(len(given))]
            hits = [(i, k) for i, k in hits if k is not None]
            if hits:
                found = (m["step"], *hits[0])
    assert found is not None, "the fixture must hold a sample the calibrated rule kept"
    step, sample, (other, p_given, p_other) = found
    line = (f"kept: the evidence does not favour a change (P given {names[given[sample]]} {p_given:.2f} vs "
            f"{names[other]} {p_other:.2f})")
    context = browser.new_context(viewport={"width": 1024, "height": 768})
    page = context.new_page()
    try:
        page.goto(f"{app_server}/review?run={NAMES['aml-kd']}&reviewer=kim&queue=all&size=100&step={step}"
                  f"&sample={sample}")
        wait_for_app(page, 90_000)
        page.wait_for_function(f"window.__amlkdCard && window.__amlkdCard.root && "
                               f"window.__amlkdCard.root.querySelector('.amlkd-card[data-sample=\"{sample}\"]')",
                               timeout=90_000)
        evidence = page.locator(f'.amlkd-card[data-sample="{sample}"] .amlkd-evidence')
        assert evidence.first.inner_text() == line
        assert evidence.first.is_visible() and page.evaluate(CUT_JS, ".amlkd-evidence") == []
        assert_no_exception(page)
        shot(page, "review_card_kept")
    finally:
        context.close()

"""A ``vectors:`` run in a real Chromium: the review card and the Embeddings page show the sample's key and no
picture, without an error. Set ``AMLKD_SCREENSHOTS=DIR`` to keep screenshots (1024x768)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import shot, wait_for_app
from tests.conftest import blobs_npz

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def vectors_run(app_server, tmp_path_factory) -> str:
    """A finished short AML-KD run on 300 16-D vectors with keys ``item-0000``... in the served runs folder."""
    from engine.method.config import RunConfig, ScheduleConfig
    from engine.steps.run import Run

    folder = tmp_path_factory.mktemp("vectors")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    blobs_npz(folder / "emb.npz", labels, 16, 3, rng, "item-{:04d}")
    schedule = ScheduleConfig(teacher_epochs=2, teacher_patience=2, warmup_epochs=1, refine_epochs=2, mutual_epochs=0)
    config = RunConfig(dataset=f"vectors:{folder / 'emb.npz'}", noise="symmetric:0.3", schedule=schedule)
    Run.create(Path(app_server.runs_dir) / "vectors-run", config).run_until(None)
    return "vectors-run"


def test_the_review_card_of_a_vector_shows_its_key_and_no_picture(browser, app_server, vectors_run):
    from engine.data import load_dataset
    from engine.rundir.store import RunStore

    keys = load_dataset(RunStore(Path(app_server.runs_dir) / vectors_run).config().dataset).keys()
    page = browser.new_context(viewport={"width": 1024, "height": 768}).new_page()
    page.goto(f"{app_server}/review?run={vectors_run}&reviewer=kim&queue=all")
    wait_for_app(page, 90_000)
    page.wait_for_function("window.__amlkdCard && window.__amlkdCard.root && "
                           "window.__amlkdCard.root.querySelector('.amlkd-card[data-sample]')", timeout=90_000)
    card = page.evaluate("""(() => { const c = window.__amlkdCard.root.querySelector('.amlkd-card');
        return {sample: Number(c.dataset.sample), title: c.querySelector('.amlkd-title').textContent,
                images: c.querySelectorAll('img').length, points: c.querySelectorAll('.amlkd-point').length}; })()""")
    assert card["title"] == f"Sample {keys[card['sample']]}" and card["title"].startswith("Sample item-")
    assert card["images"] == 0 and card["points"] == 0
    assert page.locator('[data-testid="stException"]').count() == 0
    shot(page, "vectors_review_card")


def test_the_embeddings_page_of_a_vectors_run_draws_without_an_error(browser, app_server, vectors_run):
    page = browser.new_context(viewport={"width": 1024, "height": 768}).new_page()
    page.goto(f"{app_server}/embeddings?run={vectors_run}")
    wait_for_app(page, 180_000)
    page.wait_for_selector(".js-plotly-plot", timeout=180_000)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.get_by_text("raw 2-D inputs").count() == 0  # 16-D vectors have no input layout to offer
    assert page.locator(".js-plotly-plot .scatterlayer .point, .js-plotly-plot canvas").count() > 0
    shot(page, "vectors_embeddings")

"""Names from data are text on every page: markdown, HTML and URLs planted in class names, file names (sample
keys), run names, label values and reviewer names render as nothing and make the browser fetch nothing.

Two runs on the same data (so Compare shows both), with planted names, are copied into the served runs folder;
each page is opened in Chromium with every request that leaves 127.0.0.1 aborted and counted
(``app_page.blocked``), and the page is searched for what a rendered name would have made: an image or a link
to the planted host, bold or emphasised text, a heading.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest

from engine.rundir.review import ReviewStore
from engine.rundir.store import RunStore

pytestmark = pytest.mark.browser
HOST = "evil.example"
CLASS_NAMES = [f"![c{c}](http://{HOST}/class{c}.png)" if c % 3 == 0 else
               f"<b>BOLD{c}</b><img src=http://{HOST}/i{c}.png>" if c % 3 == 1 else
               f"**STAR{c}** [link{c}](http://{HOST}/l{c})" for c in range(10)]
REVIEWER = f"![rev](http://{HOST}/rev.png) **REVSTAR**"
RUNS = (f"[runlink]({HOST}) _EMRUN_", f"![runimg]({HOST}.png) second")
APP_IDLE = ('[data-testid="stApp"][data-test-connection-state="CONNECTED"]'
            '[data-test-script-state="notRunning"]')
#: What a rendered name would have made: elements pointing at the planted host, or bold/emphasis/headings
#: holding planted words.
RENDERED = f"""() => {{
  const found = [];
  const roots = [document];
  for (const el of document.querySelectorAll('*')) if (el.shadowRoot) roots.push(el.shadowRoot);
  for (const root of roots) {{
    for (const el of root.querySelectorAll('img, a, image, source, iframe, link, script')) {{
      const url = el.getAttribute('src') || el.getAttribute('href') || el.getAttribute('xlink:href') || '';
      const where = (el.closest('[data-testid]') || {{}}).getAttribute?.('data-testid');
      if (!url.startsWith('#') && (url.includes('{HOST}') || url.includes('evil'))) found.push(el.tagName + ' ' + url + ' in ' + where + ': ' + ((el.closest('[data-testid]') || el).parentElement || el).outerHTML.slice(0, 400));
    }}
    for (const el of root.querySelectorAll('b, strong, em, i, tspan')) {{
      const t = el.textContent || '';
      const bold = el.tagName !== 'TSPAN' || /bold|italic/.test(el.getAttribute('style') || '');
      const where = (el.closest('[data-testid]') || {{}}).getAttribute?.('data-testid');
      if (bold && /BOLD|STAR|EMRUN|REVSTAR/.test(t)) found.push(el.tagName + ' ' + t.slice(0, 80) + ' in ' + where);
    }}
  }}
  return found;
}}"""


@pytest.fixture(scope="module")
def planted(app_server, tiny_digits_run) -> list[str]:
    """Two copies of the tiny digits run under names holding markup, with class names, keys and a reviewer
    holding markup too."""
    names = []
    for run in RUNS:
        path = Path(app_server.runs_dir) / run
        shutil.copytree(tiny_digits_run, path)
        store = RunStore(path)
        arrays = store.dataset_arrays()
        arrays["class_names"] = np.array(CLASS_NAMES)
        arrays["keys"] = np.array([f"![k{i}](http://{HOST}/k{i}.png)" for i in range(len(arrays["keys"]))])
        store.write_dataset(**arrays)
        reviews = ReviewStore(path, num_classes=10)
        snapshot = store.snapshot(store.steps()[-1])
        for sample in range(5):
            reviews.record(sample, "accept", REVIEWER, proposal=int(snapshot["refined"][sample]), step=1)
        names.append(run)
    return names


def visit(page, base: str, path: str) -> None:
    page.goto(f"{base}/{path}")
    page.wait_for_selector(APP_IDLE, state="attached", timeout=90_000)
    page.wait_for_timeout(1500)
    page.wait_for_selector(APP_IDLE, state="attached", timeout=90_000)


@pytest.mark.parametrize("where", ["setup", "train", "graph", "losses", "review", "compare", "embeddings"])
def test_planted_names_render_nothing_and_fetch_nothing(app_page, app_server, planted, where):
    page = app_page
    run = quote(planted[0], safe="")
    query = f"?run={run}&reviewer={quote(REVIEWER, safe='')}&queue=all&size=100"
    visit(page, app_server, f"{where}{query}")
    if where == "review":
        page.wait_for_function("window.__amlkdCard && window.__amlkdCard.root.querySelector('.amlkd-card')")
        card = page.evaluate("window.__amlkdCard.root.querySelector('.amlkd-card').textContent")
        assert f"](http://{HOST}/k" in card and CLASS_NAMES[0] in card  # a key and the class names, as typed
        assert REVIEWER in page.evaluate("document.body.innerText")  # "reviewing as ...", as typed
        for label in ("Queue", "Reviewers", "Bulk accept", "Export and import"):
            page.get_by_text(label, exact=True).first.click()
            page.wait_for_selector(APP_IDLE, state="attached", timeout=90_000)
    if where == "compare":
        page.wait_for_timeout(1000)
    if where == "setup":
        assert page.get_by_text(planted[0]).count() >= 1  # the run's name, as typed, in the runs table
    assert not page.locator('[data-testid="stException"]').count()
    assert page.evaluate(RENDERED) == []
    assert page.blocked == []


def test_the_report_writes_names_as_text(app_server, planted, tmp_path):
    from engine.readers.report import write_report

    report = write_report(RunStore(Path(app_server.runs_dir) / planted[1]), tmp_path).read_text()
    first = report.splitlines()[0]
    assert first == "# Run report: \\!\\[runimg\\](evil.example.png) second"
    assert f"](http" not in report.replace("\\](http", "")  # no link or image syntax survives

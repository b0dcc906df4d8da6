"""The Compare page in a real browser at 1280x800: three tiny runs on the same
data (AML-KD, CE, KD) picked by opening one of them, both curve charts drawn
with one trace of points per run, and every table (the comparison, the
per-sample patterns; on Setup, the runs table with a label-file run whose
dataset is an uploaded zip) fully visible: no cell cut, no table wider than
its place. Screenshots go to ``$AMLKD_SHOTS_DIR`` (else the test's tmp dir)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from engine.method.config import RunConfig
from engine.rundir.store import RunStore
from tests.browser.conftest import assert_no_exception, goto, wait_for_app

NAMES = {"aml-kd": "trial-symmetric30-aml-kd-s0", "ce": "trial-symmetric30-ce-s0", "kd": "trial-symmetric30-kd-s0"}
LABEL_RUN = "cats-and-dogs-photos-labels-aml-kd-s0"
#: Cells wider than their box, and tables wider than their parent or past the window's right edge.
CUT_JS = """() => { const cut = [];
    document.querySelectorAll('[data-testid="stTable"] table').forEach((table, t) => {
        const box = table.getBoundingClientRect();
        if (table.scrollWidth > table.parentElement.clientWidth + 1 || box.right > window.innerWidth)
            cut.push(`table ${t}: ${table.scrollWidth}px in ${table.parentElement.clientWidth}px`);
        table.querySelectorAll('th, td').forEach(cell => {
            if (cell.scrollWidth > cell.clientWidth + 1) cut.push(`table ${t}: '${cell.innerText}'`); });
    });
    return cut; }"""
#: Rendered points per trace of each chart, by chart title.
POINTS_JS = """() => Object.fromEntries(Array.from(document.querySelectorAll('.js-plotly-plot')).map(el => [
    (el.layout.title.text || '').replace(/<[^>]+>/g, ''),
    Array.from(el.querySelectorAll('.scatterlayer .trace')).map(tr => tr.querySelectorAll('.point').length)]))"""


def _shots_dir(tmp_path) -> Path:
    folder = Path(os.environ.get("AMLKD_SHOTS_DIR") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _label_file_run(root: Path) -> None:
    """A run (config and dataset only) on an uploaded zip with a label file that is 20% wrong."""
    store = RunStore(root / LABEL_RUN)
    store.create(RunConfig(dataset=f"folder:{root}/uploads/cats-and-dogs-photos-0123456789ab/cats-and-dogs-photos",
                           noise="none", labels=f"{root}/uploads/labels-0123456789ab.csv", truth_column="truth"))
    true = np.arange(50) % 2
    given = true.copy()
    given[:10] = 1 - given[:10]
    store.write_dataset(given=given, true=true, keys=np.array([f"train/{i}.jpg" for i in range(50)]),
                        holdout=np.zeros(50, bool), class_names=np.array(["cat", "dog"]))


def test_compare_page_draws_the_curves_and_every_table_fits_1280(app_server, browser, make_tiny_run, tmp_path):
    root = Path(app_server.runs_dir)
    made = {"aml-kd": make_tiny_run("moons", "moons", "symmetric:0.3"),
            "ce": make_tiny_run("moons-ce", "moons", "symmetric:0.3", method="ce"),
            "kd": make_tiny_run("moons-kd", "moons", "symmetric:0.3", method="kd")}
    for method, name in NAMES.items():
        shutil.copytree(made[method], root / name, dirs_exist_ok=True)
    _label_file_run(root)
    shots = _shots_dir(tmp_path)
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        goto(page, app_server, f"compare?run={NAMES['aml-kd']}")
        page.get_by_text("Over the student's epochs").wait_for(timeout=60_000)
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .scatterlayer .trace').length >= 6",
                               timeout=30_000)
        wait_for_app(page)
        assert_no_exception(page)
        points = page.evaluate(POINTS_JS)
        assert points == {"Student test accuracy": [5, 5, 5], "Label precision (refined labels)": [5, 5, 5]}
        assert page.evaluate(CUT_JS) == []
        table = page.locator('[data-testid="stTable"]').first
        assert table.inner_text().count("\n") > 3 and "baseline" in table.inner_text()
        page.screenshot(path=str(shots / "compare_1280.png"))
        with page.expect_download() as table_csv:
            page.get_by_role("button", name="Table (CSV)").click()
        lines = Path(table_csv.value.path()).read_text().splitlines()
        assert lines[0].startswith("run,method,dataset,noise,seed,given prec") and len(lines) == 4
        for button, name in (("Chart (PNG)", "student_test_accuracy.png"), ("Table (PNG)", "comparison.png"),
                             ("These samples (PNG)", "samples.png")):
            with page.expect_download() as png:
                page.get_by_role("button", name=button).first.click()
            assert png.value.suggested_filename == name
            picture = Image.open(png.value.path())
            assert picture.format == "PNG" and picture.width > 300 and picture.height > 150, (button, picture.size)
            assert len(np.unique(np.asarray(picture.convert("L")))) > 8  # drawn, not a blank canvas
        page.set_viewport_size({"width": 1280, "height": 2600})
        page.wait_for_timeout(1000)
        page.screenshot(path=str(shots / "compare_1280_whole.png"))

        page.set_viewport_size({"width": 1280, "height": 800})
        goto(page, app_server, "setup")  # "/" opens the most recent run's Train page
        runs = page.locator('[data-testid="stTable"]').filter(has_text=LABEL_RUN)
        runs.wait_for(timeout=60_000)
        runs.scroll_into_view_if_needed()
        text = runs.inner_text()
        assert "cats-and-dogs-photos.zip" in text and "label file (20% wrong)" in text and "uploads" not in text
        assert page.evaluate(CUT_JS) == []
        page.screenshot(path=str(shots / "setup_runs_1280.png"))
        assert_no_exception(page)
    finally:
        context.close()
    assert "Traceback" not in app_server.read_log()

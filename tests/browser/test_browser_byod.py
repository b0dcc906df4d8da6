"""Bring your own data in a real Chromium: upload a zip of an image folder
through the browser's file input, see the folder's summary, create the run
and land on the Train page; nothing leaves 127.0.0.1.

Screenshots go to ``$AMLKD_SHOTS_DIR`` when set, else to the test's tmp dir.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import assert_no_exception, wait_for_app
from engine.store import RunStore

pytestmark = pytest.mark.browser
RUN = "pets-symmetric40-aml-kd-s0"


def pets_zip(path: Path, per_class: int = 12, size: int = 16) -> Path:
    """A zip of ``pets/train/<class>/<i>.png``: 3 classes, one colour each plus noise."""
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as archive:
        for name, colour in (("cat", (220, 40, 40)), ("dog", (40, 200, 40)), ("fox", (40, 40, 220))):
            for i in range(per_class):
                pixels = np.clip(np.array(colour) + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
                png = io.BytesIO()
                Image.fromarray(pixels, "RGB").save(png, format="PNG")
                archive.writestr(f"pets/train/{name}/{i:03d}.png", png.getvalue())
    return path


def test_upload_a_zip_see_its_summary_and_create_the_run(app_page, app_server, tmp_path):
    page = app_page
    shots = Path(os.environ.get("AMLKD_SHOTS_DIR") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    page.get_by_text("Upload a zip", exact=True).click()
    wait_for_app(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(
        str(pets_zip(tmp_path / "pets.zip")))
    summary = page.get_by_text("36 images: 30 for training, 6 held out for testing")
    summary.wait_for(timeout=30_000)
    wait_for_app(page)
    assert "the networks see 3x16x16" in summary.inner_text()
    page.screenshot(path=str(shots / "setup-byod-upload.png"), full_page=True)
    assert_no_exception(page)

    page.get_by_role("button", name="Create run", exact=True).click()
    page.get_by_role("button", name="Step", exact=True).wait_for(timeout=60_000)
    page.get_by_text("Next step:").wait_for()
    assert_no_exception(page)
    store = RunStore(Path(app_server.runs_dir) / RUN)
    (unpacked,) = (Path(app_server.runs_dir) / "uploads").iterdir()
    assert store.config().dataset == f"folder:{(unpacked / 'pets').resolve()}"
    assert len(store.dataset_arrays()["given"]) == 30
    assert page.blocked == [], f"requests left 127.0.0.1: {page.blocked}"
    assert "Traceback" not in app_server.read_log()

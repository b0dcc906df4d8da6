"""Bring your own data in a real Chromium: upload a zip of a 32x32 image folder
(with one corrupt file) through the browser's file input, see the folder's
summary, the skipped file and the small CPU pair's schedule, create the run and
land on the Train page, which lists the skipped file; nothing leaves 127.0.0.1.

Screenshots go to ``$AMLKD_SHOTS_DIR`` when set, else to the test's tmp dir.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_no_exception, goto, wait_for_app
from engine.method.config import SMALL_PAIR_TEACHER, defaults_for_teacher
from engine.rundir.store import RunStore

pytestmark = pytest.mark.browser
RUN = "pets-symmetric40-aml-kd-s0"


def pets_zip(path: Path, per_class: int = 12, size: int = 32) -> Path:
    """A zip of ``pets/train/<class>/<i>.png``: 3 classes, one colour each plus
    noise, and a corrupt ``pets/train/cat/broken.png``."""
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as archive:
        for name, colour in (("cat", (220, 40, 40)), ("dog", (40, 200, 40)), ("fox", (40, 40, 220))):
            for i in range(per_class):
                pixels = np.clip(np.array(colour) + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
                png = io.BytesIO()
                Image.fromarray(pixels, "RGB").save(png, format="PNG")
                archive.writestr(f"pets/train/{name}/{i:03d}.png", png.getvalue())
        archive.writestr("pets/train/cat/broken.png", b"not a png")
    return path


def test_upload_a_zip_see_its_summary_and_create_the_run(app_page, app_server, tmp_path):
    page = app_page
    goto(page, app_server, "setup")  # the start page opens the most recent run once there is one
    shots = Path(os.environ.get("AMLKD_SHOTS_DIR") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    page.get_by_text("Upload a zip", exact=True).click()
    wait_for_app(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(
        str(pets_zip(tmp_path / "pets.zip")))
    summary = page.get_by_text("36 images: 30 for training, 6 held out for testing")
    summary.wait_for(timeout=30_000)
    wait_for_app(page)
    assert "the networks see 3x32x32" in summary.inner_text()
    page.get_by_text("1 file(s) skipped").wait_for()
    if not torch.cuda.is_available():  # the small CPU pair, with its own schedule
        schedule, _ = defaults_for_teacher(SMALL_PAIR_TEACHER)
        teacher_epochs = page.get_by_label("Teacher (upper bound, early-stopped)")
        assert teacher_epochs.input_value() == str(schedule.teacher_epochs)
        assert page.get_by_label("Refine (stage 1)").input_value() == str(schedule.refine_epochs)
    page.screenshot(path=str(shots / "setup-byod-upload.png"), full_page=True)
    assert_no_exception(page)

    page.get_by_role("button", name="Create run", exact=True).click()
    page.locator(".st-key-train-step button").first.wait_for(timeout=60_000)  # its label also shows its key
    page.get_by_text("Next step:").wait_for()
    page.get_by_text("1 input file(s) were skipped when this run was made").click()
    page.get_by_text("train/cat/broken.png").wait_for()
    wait_for_app(page)
    page.wait_for_timeout(500)  # the expander's opening animation
    page.screenshot(path=str(shots / "train-byod-skipped.png"), full_page=True)
    assert_no_exception(page)
    store = RunStore(Path(app_server.runs_dir) / RUN)
    (unpacked,) = (Path(app_server.runs_dir) / "uploads").iterdir()
    assert store.config().dataset == f"folder:{(unpacked / 'pets').resolve()}"
    assert len(store.dataset_arrays()["given"]) == 30
    assert page.blocked == [], f"requests left 127.0.0.1: {page.blocked}"
    assert "Traceback" not in app_server.read_log()


def test_a_label_csv_for_every_image_of_a_train_only_zip(app_page, app_server, tmp_path):
    """The documented path: a train/-only zip and a CSV naming every image (held-out ones too),
    20% of the labels wrong; the run is made, its held-out images take the file's labels."""
    page = app_page
    goto(page, app_server, "setup")  # the start page opens the most recent run once there is one
    shots = Path(os.environ.get("AMLKD_SHOTS_DIR") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    archive = pets_zip(tmp_path / "three.zip")
    with zipfile.ZipFile(archive) as z:
        images = sorted(n for n in z.namelist() if n.endswith(".png") and "broken" not in n)
    classes = ("cat", "dog", "fox")
    rows = ["path,label"]
    for i, name in enumerate(images):
        cls = name.split("/")[2]
        label = classes[(classes.index(cls) + 1) % 3] if i % 5 == 0 else cls  # every fifth label wrong
        rows.append(f"{name.split('/', 1)[1]},{label}")
    labels = tmp_path / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    page.get_by_text("Upload a zip", exact=True).click()
    wait_for_app(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(archive))
    page.get_by_text("30 for training, 6 held out for testing").wait_for(timeout=30_000)
    wait_for_app(page)
    page.get_by_text("Upload a CSV", exact=True).click()
    wait_for_app(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').nth(1).set_input_files(str(labels))
    wait_for_app(page)
    page.get_by_text("Key column").wait_for(timeout=30_000)  # the file matched the images: its columns show
    wait_for_app(page)
    errors = [e.inner_text() for e in page.locator('[data-testid="stAlertContentError"]').all()]
    page.screenshot(path=str(shots / "setup-byod-labels.png"), full_page=True)
    assert errors == [], errors
    page.get_by_role("button", name="Create run", exact=True).click()
    page.locator(".st-key-train-step button").first.wait_for(timeout=60_000)  # its label also shows its key
    assert_no_exception(page)
    (made,) = [p for p in Path(app_server.runs_dir).iterdir() if "-labels-" in p.name]
    store = RunStore(made)
    assert store.config().labels and store.config().noise == "none"
    from engine.data import dataset_for_config

    dataset = dataset_for_config(store.config())
    assert dataset.test_labels == "given" and len(dataset.test_keys) == 6
    assert page.blocked == [], f"requests left 127.0.0.1: {page.blocked}"

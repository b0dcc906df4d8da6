"""A photo folder through the app in a real Chromium at 1024x768: Setup sees photos (streamed, the frozen
pretrained teacher by default on a CPU), Create, the Train page's steps through the teacher phase and stage 0,
and the Review card shows the original file (96x96 here), not the 224x224 training tensor.

Real images: cifar10-small's, upscaled to 96x96; seeded weights files stand in for ImageNet's in a TORCH_HOME
of the test's own (the app's server reads it)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch
import torchvision
from PIL import Image

from engine.rundir.store import RunStore

from conftest import assert_no_exception, goto, serve_app, wait_for_app

CIFAR = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-small" / "train"
SIDE = 96


def photo_folder(root: Path, per_class: int = 12) -> Path:  # 29 training images: k=20 neighbours fit
    for c in ("cat", "ship", "truck"):
        out = root / "train" / c
        out.mkdir(parents=True)
        for f in sorted((CIFAR / c).iterdir())[:per_class]:
            with Image.open(f) as img:
                img.convert("RGB").resize((SIDE, SIDE), Image.Resampling.BICUBIC).save(out / f"{f.stem}.jpg")
    return root


def torch_home(home: Path) -> Path:
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    for arch, name in (("resnet18", "resnet18-f37072fd.pth"), ("mobilenet_v3_small", "mobilenet_v3_small-047dcff4.pth")):
        torch.manual_seed(0)
        torch.save(torchvision.models.get_model(arch).state_dict(), folder / name)
    return home


def wait_phase(store: RunStore, phases: tuple[str, ...], timeout: float = 600.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = store.status() or {}
        if status.get("phase") in phases and status.get("state") != "running":
            return status
        time.sleep(0.5)
    raise AssertionError(f"the run did not reach {phases}: {store.status()}")


@pytest.mark.slow
def test_a_photo_folder_trained_in_the_app_shows_its_original_files_on_review(tmp_path, browser):
    # the session's browser (one Playwright per process: a second sync_playwright inside it is refused)
    if not CIFAR.is_dir():
        pytest.skip(f"{CIFAR} is absent (the photos are made from ../shared's cifar10-small)")
    folder = photo_folder(tmp_path / "photos")
    shots = Path(os.environ.get("AMLKD_SHOTS_DIR") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    runs = tmp_path / "runs"
    env = {"TORCH_HOME": str(torch_home(tmp_path / "torch")), "OMP_NUM_THREADS": "1"}
    with serve_app(runs, env=env) as server:
        context = browser.new_context(viewport={"width": 1024, "height": 768})
        page = context.new_page()
        goto(page, server, "setup")
        page.get_by_text("Image folder on disk", exact=True).click()
        wait_for_app(page)
        page.get_by_label("Image folder", exact=True).fill(str(folder))
        page.get_by_label("Image folder", exact=True).press("Enter")
        page.get_by_text("36 images").first.wait_for(timeout=60_000)
        wait_for_app(page, 120_000)
        page.get_by_text("Teacher mode", exact=True).wait_for()
        page.screenshot(path=str(shots / "setup-photos.png"), full_page=True)
        assert_no_exception(page)
        create = page.get_by_role("button", name="Create run", exact=True)
        alerts = page.locator('[data-testid="stAlert"]')
        assert create.is_enabled(), [alerts.nth(i).inner_text()[:300] for i in range(alerts.count())]
        create.click()
        page.locator(".st-key-train-step button").first.wait_for(timeout=120_000)
        (run_dir,) = [p for p in runs.iterdir() if (p / "config.json").is_file()]
        store = RunStore(run_dir)
        config = store.config()
        assert config.teacher == "torchvision:resnet18" and config.teacher_mode == "frozen"
        for _ in range(2):  # the teacher phase, then stage 0
            wait_for_app(page, 120_000)
            page.locator(".st-key-train-phase button").first.click()
            time.sleep(1.0)
            wait_phase(store, ("propagate", "warmup", "refine"))
        status = wait_phase(store, ("warmup",))
        assert status["step"] >= 2 and store.backbone_features() is not None
        wait_for_app(page, 120_000)
        page.screenshot(path=str(shots / "train-photos.png"), full_page=True)
        assert_no_exception(page)
        page.goto(f"{server}/review?run={run_dir.name}&queue=all")
        wait_for_app(page, 120_000)
        page.wait_for_function("window.__amlkdCard && window.__amlkdCard.root && "
                               "window.__amlkdCard.root.querySelector('.amlkd-card[data-sample] img')",
                               timeout=120_000)
        size = page.evaluate("(() => { const img = window.__amlkdCard.root.querySelector('.amlkd-card img');"
                             " return [img.naturalWidth, img.naturalHeight, img.alt]; })()")
        assert size[:2] == [SIDE, SIDE], size  # the original file, not the 224x224 tensor the networks read
        page.wait_for_timeout(500)
        page.screenshot(path=str(shots / "review-photos.png"), full_page=False)
        assert_no_exception(page)
        assert "Traceback" not in server.read_log()
        context.close()

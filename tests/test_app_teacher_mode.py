"""Setup page, a torchvision teacher: weights and teacher modes offered with the time per epoch measured on a
few batches of the chosen data (AppTest; a resnet18 file saved from a seeded initialisation stands in for
ImageNet's weights in TORCH_HOME)."""

from __future__ import annotations

import pytest
import torch
import torchvision

from app.setup.teacher_mode import default_mode, mode_label
from engine.rundir.store import RunStore
from tests.test_app_byod import KEY, _choose_folder, _create, _errors, make_folder


def test_mode_labels_carry_the_measured_seconds():
    seconds = {"finetune": 95.0, "frozen_features": 12.4, "frozen": 0.02}
    assert mode_label("finetune", seconds) == "Fine-tune every weight: ≈ 95 s per epoch"
    assert mode_label("frozen", seconds) == ("Frozen backbone, train a head: features once ≈ 12 s, then under 1 s "
                                             "per epoch")
    assert mode_label("finetune", {"finetune": 600.0}).endswith("≈ 10 min per epoch")
    assert mode_label("frozen", None) == "Frozen backbone, train a head"
    assert default_mode(cuda=False) == "frozen" and default_mode(cuda=True) == "finetune"


@pytest.mark.slow
def test_a_torchvision_teacher_offers_timed_modes_and_creates_a_frozen_run(app, runs_dir, tmp_path, monkeypatch):
    home = tmp_path / "torch"
    monkeypatch.setenv("TORCH_HOME", str(home))
    folder = make_folder(tmp_path / "pets", per_class=12, size=16)
    _choose_folder(app, folder)
    app.selectbox(key=KEY + "teacher-image-3x16x16").set_value("torchvision:resnet18").run()
    errors = _errors(app)  # no weights yet: one line naming the file, the folder and the command
    assert any("resnet18-f37072fd.pth" in e and "python -m engine fetch-weights resnet18" in e for e in errors)
    assert app.button(key="setup-create").disabled
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.manual_seed(1)
    torch.save(torchvision.models.resnet18().state_dict(), home / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    app.text_input(key=KEY + "teacher_weights-torchvision:resnet18").set_value("imagenet").run()
    app.run()  # errors are not cached: measured now
    assert not any("resnet18" in e for e in _errors(app)), _errors(app)
    radio = app.radio(key=KEY + "teacher_mode")
    chosen = radio.value
    assert chosen == ("finetune" if torch.cuda.is_available() else "frozen")
    labels = list(radio.options)  # as shown: each mode with its measured seconds
    assert labels[1].startswith("Frozen backbone, train a head: features once ≈ ") and "per epoch" in labels[1]
    assert labels[0].startswith("Fine-tune every weight: ≈ ") and labels[0].endswith(" per epoch")
    config = RunStore(_create(app)).config()
    assert config.teacher == "torchvision:resnet18" and config.teacher_weights == "imagenet"
    assert config.teacher_mode == chosen

"""torchvision backbones (engine.models.zoo): names in the registry, (logits, features), weights from
TORCH_HOME under torchvision's file names or a file, and the one-line refusals (absent, another
architecture, truncated, a pickle). No network here: weights files are saved from a seeded initialisation."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision

from engine.errors import UserError
from engine.models import available_models, build_model, build_with_weights
from engine.models import zoo

ROOT = Path(__file__).resolve().parents[1]
SMALL = "mobilenet_v3_small"  # the smallest of the offered architectures: quick to build and save


@pytest.fixture()
def torch_home(tmp_path, monkeypatch):
    home = tmp_path / "torch"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def _seeded_state(arch: str, seed: int = 7, num_classes: int = 1000) -> dict:
    torch.manual_seed(seed)
    return torchvision.models.get_model(arch, weights=None, num_classes=num_classes).state_dict()


def _save_imagenet(home: Path, arch: str, state: dict) -> Path:
    folder = home / "hub" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / torchvision.models.get_model_weights(arch).DEFAULT.url.rsplit("/", 1)[-1]
    torch.save(state, path)
    return path


def test_every_offered_architecture_is_in_the_registry():
    names = available_models("image")
    for arch in ("resnet18", "resnet34", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0",
                 "convnext_tiny"):
        assert f"torchvision:{arch}" in names


@pytest.mark.parametrize("arch, dim", [("resnet18", 512), (SMALL, 1024)])
def test_forward_gives_logits_and_the_classifier_input_as_features(arch, dim):
    torch.manual_seed(0)
    model = build_model(f"torchvision:{arch}", (3, 32, 32), 5, "image").eval()
    x = torch.rand(2, 3, 32, 32)
    logits, features = model(x)
    assert logits.shape == (2, 5) and features.shape == (2, dim)
    assert torch.allclose(logits, model.head(features), atol=1e-6)
    gray_logits, _ = model(x[:, :1])  # one channel is repeated to three
    assert torch.allclose(gray_logits, model(x[:, :1].expand(-1, 3, -1, -1))[0], atol=1e-6)


def test_imagenet_weights_are_read_from_torch_home_under_torchvisions_file_name(torch_home):
    state = _seeded_state("resnet18")
    path = _save_imagenet(torch_home, "resnet18", state)
    assert path.name == "resnet18-f37072fd.pth"
    assert zoo.imagenet_file("resnet18") == path
    model = build_with_weights("torchvision:resnet18", (3, 32, 32), 4, "image", "imagenet")
    loaded = model.backbone.state_dict()
    assert torch.equal(loaded["conv1.weight"], state["conv1.weight"])
    assert torch.equal(loaded["layer4.1.bn2.running_var"], state["layer4.1.bn2.running_var"])
    assert "fc.weight" not in loaded and model.head.weight.shape == (4, 512)  # a fresh head for 4 classes
    assert model.input_size == 224  # pretrained: images meet the weights' training size


def test_a_file_of_the_same_architecture_with_another_class_count_loads(tmp_path):
    state = _seeded_state(SMALL, num_classes=10)
    torch.save(state, tmp_path / "mine.pth")
    model = build_with_weights(f"torchvision:{SMALL}", (3, 32, 32), 3, "image", str(tmp_path / "mine.pth"))
    assert torch.equal(model.backbone.state_dict()["features.0.0.weight"], state["features.0.0.weight"])


def test_absent_imagenet_weights_name_the_file_the_folder_and_the_fetch_command(torch_home):
    with pytest.raises(UserError) as err:
        build_with_weights("torchvision:resnet50", (3, 32, 32), 3, "image", "imagenet")
    text = str(err.value)
    assert "resnet50-11ad3fa6.pth" in text and str(torch_home / "hub" / "checkpoints") in text
    assert "python -m engine fetch-weights resnet50" in text and "\n" not in text


def test_weights_of_another_architecture_are_refused(tmp_path):
    torch.save(_seeded_state("resnet18"), tmp_path / "r18.pth")
    with pytest.raises(UserError, match=r"not a state dict of torchvision's mobilenet_v3_small"):
        build_with_weights(f"torchvision:{SMALL}", (3, 32, 32), 3, "image", str(tmp_path / "r18.pth"))
    torch.save(_seeded_state("resnet34"), tmp_path / "r34.pth")  # same key names for the first layers, more blocks
    with pytest.raises(UserError, match=r"resnet18 \(.*are not resnet18's, e\.g\. layer1\.2"):
        build_with_weights("torchvision:resnet18", (3, 32, 32), 3, "image", str(tmp_path / "r34.pth"))


def test_a_truncated_file_is_refused_in_one_line(tmp_path):
    torch.save(_seeded_state(SMALL), tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="unreadable or truncated") as err:
        build_with_weights(f"torchvision:{SMALL}", (3, 32, 32), 3, "image", str(tmp_path / "cut.pth"))
    assert "\n" not in str(err.value)


class _Payload:
    """Unpickling this would run code: weights_only must refuse it."""

    ran = False

    def __reduce__(self):
        return (_mark_ran, ())


def _mark_ran():
    _Payload.ran = True
    return {}


def test_a_pickle_of_python_objects_is_refused_and_never_run(tmp_path):
    torch.save({"conv1.weight": torch.zeros(1), "extra": _Payload()}, tmp_path / "evil.pth")
    with pytest.raises(UserError, match="holds Python objects, not only tensors; refused"):
        build_with_weights("torchvision:resnet18", (3, 32, 32), 3, "image", str(tmp_path / "evil.pth"))
    assert not _Payload.ran
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"a": _Payload()}))  # a bare pickle, not torch.save
    with pytest.raises(UserError, match="holds Python objects"):
        build_with_weights("torchvision:resnet18", (3, 32, 32), 3, "image", str(tmp_path / "plain.pkl"))
    assert not _Payload.ran
    torch.save({"a": [1, 2]}, tmp_path / "lists.pth")  # loads under weights_only, but holds no tensors
    with pytest.raises(UserError, match="is not a state dict"):
        build_with_weights("torchvision:resnet18", (3, 32, 32), 3, "image", str(tmp_path / "lists.pth"))


def test_weights_for_a_network_that_is_not_torchvisions_are_refused():
    with pytest.raises(UserError, match="for torchvision networks"):
        build_with_weights("cifar-small-student", (3, 32, 32), 3, "image", "imagenet")


def test_frozen_backbone_keeps_weights_and_batchnorm_statistics():
    torch.manual_seed(0)
    model = build_model("torchvision:resnet18", (3, 32, 32), 3, "image").freeze()
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model.train()
    logits, _ = model(torch.rand(4, 3, 32, 32))
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0])).backward()
    opt.step()
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running stats too: eval-mode batch norm
    assert model.head.weight.grad is not None


def _cli(*args, env_home: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, TORCH_HOME=str(env_home), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "engine", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow
def test_cli_run_with_absent_imagenet_weights_exits_2_in_one_line_before_writing(tmp_path):
    out = tmp_path / "run"
    proc = _cli("run", "--dataset", "digits", "--teacher", "torchvision:resnet18", "--out", str(out),
                env_home=tmp_path / "torch")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "resnet18-f37072fd.pth" in lines[0] and "fetch-weights resnet18" in lines[0]
    assert not out.exists()


@pytest.mark.slow
def test_cli_weights_without_a_torchvision_network_exit_2(tmp_path):
    proc = _cli("run", "--dataset", "digits", "--teacher-weights", "imagenet", "--out", str(tmp_path / "r"),
                env_home=tmp_path / "torch")
    assert proc.returncode == 2 and "needs a torchvision teacher" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_fetch_weights_finds_a_file_already_there_without_a_download(tmp_path):
    path = _save_imagenet(tmp_path / "torch", SMALL, _seeded_state(SMALL))
    proc = _cli("fetch-weights", SMALL, env_home=tmp_path / "torch")
    assert proc.returncode == 0 and proc.stdout.strip() == str(path)
    proc = _cli("fetch-weights", "vgg11", env_home=tmp_path / "torch")
    assert proc.returncode == 2 and "unknown torchvision architecture 'vgg11'" in proc.stderr

"""torchvision's architectures as teachers and students: ``torchvision:resnet18``,
``torchvision:resnet50``, ``torchvision:mobilenet_v3_small``, ...

Each network is torchvision's own, its ImageNet classifier (the last linear
layer) replaced by a linear head for the dataset's classes; ``forward`` returns
``(logits (B, C), features (B, D))``, the features being what the ImageNet
classifier read (ResNet-18: 512, ResNet-50: 2048, MobileNet-V3-small: 1024).
Inputs are images in [0, 1], ``(B, 1 or 3, H, W)``; the network normalises them
with ImageNet's mean and standard deviation and repeats a gray channel. With
pretrained weights it resizes images of another size to 224x224 (bilinear),
the size the weights were trained at; a streaming dataset decodes at that size,
so nothing is resized twice.

Weights
-------
``imagenet`` names torchvision's ImageNet weights, looked up where torch keeps
downloads: ``TORCH_HOME/hub/checkpoints`` (default ``~/.cache/torch``) under
torchvision's own file name (``resnet18-f37072fd.pth``, the last part of the
weights' URL). Nothing is downloaded while a run is made: weights that are not
there are one error naming the file, the folder and the command that fetches
them (``python -m engine fetch-weights resnet18``, the one download a user
asks for). Any other value is a file holding a state dict of the same
architecture (torchvision's format; the file's classifier, of any class count,
is ignored). Files are read with ``torch.load(weights_only=True)``: a pickle of
Python objects is refused, never run.

A frozen backbone (:meth:`TorchvisionNet.freeze`) keeps its weights and its
batch-norm statistics; only the head trains (the CPU teacher for photos).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import UserError, shown

PREFIX = "torchvision:"
#: The architectures offered (every one has torchvision ImageNet weights).
ARCHITECTURES = ("resnet18", "resnet34", "resnet50", "mobilenet_v3_small", "mobilenet_v3_large",
                 "efficientnet_b0", "convnext_tiny")
IMAGENET = "imagenet"
INPUT_SIZE = 224  # the size torchvision's ImageNet weights were trained and evaluated at
_MEAN = (0.485, 0.456, 0.406)  # ImageNet's channel statistics, as torchvision's transforms use them
_STD = (0.229, 0.224, 0.225)


def is_torchvision(name: str | None) -> bool:
    return bool(name) and name.startswith(PREFIX)


def arch_of(name: str) -> str:
    """``torchvision:resnet18`` -> ``resnet18``; :class:`UserError` for an architecture not offered."""
    arch = name[len(PREFIX):] if is_torchvision(name) else name
    if arch not in ARCHITECTURES:
        raise UserError(f"unknown torchvision architecture {shown(arch)}; valid: {', '.join(ARCHITECTURES)}")
    return arch


def _last_linear(net: nn.Module) -> tuple[str, nn.Linear]:
    """The module name and layer of the network's last ``nn.Linear`` (its ImageNet classifier)."""
    found = [(name, m) for name, m in net.named_modules() if isinstance(m, nn.Linear)]
    return found[-1]


def _replace(net: nn.Module, dotted: str, new: nn.Module) -> None:
    parent_name, _, child = dotted.rpartition(".")
    parent = net.get_submodule(parent_name) if parent_name else net
    setattr(parent, child, new)


class TorchvisionNet(nn.Module):
    """A torchvision backbone without its classifier, and a linear head for ``num_classes``."""

    def __init__(self, arch: str, num_classes: int):
        super().__init__()
        import torchvision

        self.arch = arch
        backbone = torchvision.models.get_model(arch, weights=None)
        classifier_name, classifier = _last_linear(backbone)
        _replace(backbone, classifier_name, nn.Identity())
        self.classifier_name = classifier_name  # its keys in torchvision's files are skipped on loading
        self.feature_dim = classifier.in_features
        self.backbone = backbone
        self.head = nn.Linear(self.feature_dim, num_classes)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)
        self.frozen = False
        #: side the images are resized to before the backbone (None: as they come); pretrained weights set
        #: their training size, 224, so that 32x32 or 8x8 data meet the scale the features were learnt at
        self.input_size: int | None = None

    def freeze(self) -> TorchvisionNet:
        """Keep the backbone as it is (no gradients, batch norm in eval mode); only the head trains."""
        self.frozen = True
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.backbone.eval()
        return self

    def train(self, mode: bool = True) -> TorchvisionNet:
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features ``(B, D)`` of images ``(B, 1 or 3, H, W)`` in [0, 1]."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.input_size is not None and tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.input_size)
        x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.embed(x)  # (B, D)
        return self.head(features), features


def factory(arch: str):
    """A registry factory ``(input_shape, num_classes) -> model`` for ``arch``."""

    def build(input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
        if len(input_shape) != 3 or input_shape[0] not in (1, 3):
            raise UserError(f"torchvision:{arch} takes images with 1 or 3 channels, not inputs of shape "
                            f"{tuple(input_shape)}")
        return TorchvisionNet(arch, num_classes)

    return build


# ---------------------------------------------------------------- weights
def weights_enum(arch: str):
    """torchvision's default ImageNet weights entry of ``arch`` (its URL names the file)."""
    import torchvision

    return torchvision.models.get_model_weights(arch).DEFAULT


def hub_folder() -> Path:
    """Where torch keeps downloaded weights: ``TORCH_HOME/hub/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def imagenet_file(arch: str) -> Path:
    """The file torchvision downloads ``arch``'s ImageNet weights to, e.g. ``.../resnet18-f37072fd.pth``."""
    return hub_folder() / weights_enum(arch).url.rsplit("/", 1)[-1]


def fetch_command(arch: str) -> str:
    return f"python -m engine fetch-weights {arch}"


def weights_path(arch: str, weights: str) -> Path:
    """The file ``weights`` (``imagenet`` or a path) names for ``arch``; :class:`UserError` when absent."""
    if weights == IMAGENET:
        path = imagenet_file(arch)
        if not path.is_file():
            raise UserError(f"ImageNet weights for {arch} are not on this machine: expected {path.name} in "
                            f"{path.parent} (TORCH_HOME); fetch them on a connected machine with: "
                            f"{fetch_command(arch)}")
        return path
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UserError(f"weights file {shown(weights)} is not a file; valid: imagenet, or a .pth state dict of "
                        f"torchvision's {arch}")
    return path


def read_state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    """A state dict read with ``weights_only=True``; :class:`UserError` naming ``what`` if it is not one."""
    name = shown(str(path))
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"{what} {name} holds Python objects, not only tensors; refused (files are loaded with "
                        "weights_only=True); valid: a state dict saved with torch.save(model.state_dict())") from None
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file fails in many ways
        raise UserError(f"{what} {name} is unreadable or truncated ({type(exc).__name__}); valid: a complete "
                        "state dict saved with torch.save(model.state_dict())") from None
    if not isinstance(data, dict) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise UserError(f"{what} {name} is not a state dict (a dict of tensors); valid: a file saved with "
                        "torch.save(model.state_dict())")
    return data


def load_weights(model: TorchvisionNet, weights: str) -> Path:
    """Load ``weights`` (``imagenet`` or a file) into ``model``'s backbone; returns the file read.

    Raises
    ------
    UserError
        Absent ImageNet weights (naming file, folder and fetch command), an
        unreadable, truncated or pickled file, or one of another architecture.
    """
    arch = model.arch
    path = weights_path(arch, weights)
    state = read_state_dict(path, f"weights file for {arch}")
    skip = (model.classifier_name + ".weight", model.classifier_name + ".bias")
    state = {k: v for k, v in state.items() if k not in skip}
    expected = model.backbone.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        if wrong:
            detail = f"{wrong[0]} has shape {tuple(state[wrong[0]].shape)}, {arch} has {tuple(expected[wrong[0]].shape)}"
        elif missing:
            detail = f"{len(missing)} of {arch}'s tensors are missing, e.g. {missing[0]}"
        else:
            detail = f"{len(unexpected)} tensors are not {arch}'s, e.g. {unexpected[0]}"
        raise UserError(f"weights file {shown(str(path))} is not a state dict of torchvision's {arch} ({detail}); "
                        f"valid: {arch}'s ImageNet weights ({fetch_command(arch)}) or a file saved from "
                        f"torchvision.models.{arch}()")
    model.backbone.load_state_dict(state)
    model.input_size = INPUT_SIZE
    return path


def fetch_weights(arch: str) -> Path:
    """Download ``arch``'s ImageNet weights into :func:`hub_folder` (the one download a user asks for)."""
    arch = arch_of(arch)
    path = imagenet_file(arch)
    if path.is_file():
        return path
    try:
        torch.hub.load_state_dict_from_url(weights_enum(arch).url, model_dir=str(path.parent), progress=True,
                                           check_hash=True)
    except Exception as exc:  # noqa: BLE001 - offline, DNS, HTTP errors, a bad hash: one line
        raise UserError(f"could not download {arch}'s ImageNet weights from {weights_enum(arch).url} "
                        f"({type(exc).__name__}: {str(exc)[:120]}); copy {path.name} into {path.parent} from a "
                        "machine that has it") from None
    return path

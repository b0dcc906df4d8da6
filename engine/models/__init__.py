"""Teacher and student networks. Every model's ``forward`` returns
``(logits (B, C), features (B, D))``, the features being the penultimate
activations (the graph L2-normalises them).

Architectures are looked up by name in a registry; ``default_pair`` picks a
teacher/student pair for a dataset. ``torchvision:NAME`` names torchvision's
networks (:mod:`engine.models.zoo`), with ImageNet weights or a file.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from ..errors import UserError
from . import cifar, small, zoo
from .zoo import ARCHITECTURES as TORCHVISION_ARCHITECTURES
from .zoo import IMAGENET, is_torchvision, load_weights

Factory = Callable[[tuple[int, ...], int], nn.Module]

#: Name -> (factory, the dataset kinds it takes).
_REGISTRY: dict[str, tuple[Factory, tuple[str, ...]]] = {
    "digits-cnn-large": (small.DigitsTeacher, ("image",)),
    "digits-cnn-small": (small.DigitsStudent, ("image",)),
    "mlp-large": (small.MlpLarge, ("points", "vectors")),
    "mlp-small": (small.MlpSmall, ("points", "vectors")),
    **{name: (factory, ("image",)) for name, factory in cifar.MODELS.items()},
    **{zoo.PREFIX + arch: (zoo.factory(arch), ("image",)) for arch in zoo.ARCHITECTURES},
}


#: Above this side images are photos, taught by :data:`PHOTO_PAIR` (engine.data.folder streams them at 224).
PHOTO_SIDE = 64
#: ImageNet ResNet-18 (frozen on a CPU: a head on its features) -> MobileNet-V3-small trained from a random start.
PHOTO_PAIR = ("torchvision:resnet18", "torchvision:mobilenet_v3_small")


def available_models(kind: str | None = None) -> list[str]:
    return sorted(n for n, (_, kinds) in _REGISTRY.items() if kind is None or kind in kinds)


def build_model(name: str, input_shape: tuple[int, ...], num_classes: int, kind: str) -> nn.Module:
    """Instantiate architecture ``name``; :class:`UserError` if unknown or unfit."""
    if name not in _REGISTRY:
        raise UserError(f"unknown model {name!r}; valid: {', '.join(available_models())}")
    factory, kinds = _REGISTRY[name]
    if kind not in kinds:
        raise UserError(
            f"model {name!r} is for {' or '.join(kinds)} data, not {kind}; valid: {', '.join(available_models(kind))}"
        )
    return factory(input_shape, num_classes)


def default_pair(kind: str, input_shape: tuple[int, ...]) -> tuple[str, str]:
    """(teacher, student) architecture names for a dataset."""
    if kind in ("points", "vectors"):
        return "mlp-large", "mlp-small"
    if input_shape[-1] <= 16:
        return "digits-cnn-large", "digits-cnn-small"
    if input_shape[-1] > PHOTO_SIDE:  # photos (streamed at 224): a pretrained backbone teaches a small student
        return PHOTO_PAIR
    if "cifar-small-teacher" in _REGISTRY:
        import torch

        if torch.cuda.is_available() and "wrn-40-2" in _REGISTRY:
            return "wrn-40-2", "wrn-16-2"
        return "cifar-small-teacher", "cifar-small-student"
    raise UserError(f"no default models for images of shape {input_shape}; choose --teacher/--student")


def build_with_weights(name: str, input_shape: tuple[int, ...], num_classes: int, kind: str,
                       weights: str | None) -> nn.Module:
    """:func:`build_model`, then ``weights`` (``imagenet`` or a file) loaded into a torchvision backbone.

    Weights for a network that is not torchvision's are refused in one line.
    """
    model = build_model(name, input_shape, num_classes, kind)
    if weights:
        if not is_torchvision(name):
            raise UserError(f"weights {weights!r} are for torchvision networks; {name!r} is not one (valid: "
                            f"{', '.join(zoo.PREFIX + a for a in zoo.ARCHITECTURES)})")
        load_weights(model, weights)
    return model


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

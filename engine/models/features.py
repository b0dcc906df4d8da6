"""Features of a dataset's training samples from a pretrained backbone: what
``python -m engine features`` writes and ``--teacher-features`` reads
(:mod:`engine.data.features`).

Images with files (image folders, zips) are decoded from their original files
at the backbone's input size (224x224) in DataLoader workers; data held only as
arrays (digits, torchvision's sets) are resized from them by the network. The
file is an ``.npz`` with ``features (N, D)`` float32 and ``keys (N,)``, rows
in the dataset's sample order.

Cost: one forward pass per image (ResNet-18 at 224x224: about 1.8 GFLOPs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..data.base import Dataset
from ..data.stream import ImageFiles
from ..errors import UserError, shown
from . import zoo

BATCH = 64


@torch.no_grad()
def embed_all(model: nn.Module, x, device: torch.device, batch_size: int = BATCH) -> np.ndarray:
    """Features ``(N, D)`` float32 of inputs ``x`` (a tensor, an array or image files), un-augmented, in order.

    A torchvision network gives its backbone's features (:meth:`TorchvisionNet.embed`), any other model
    the second output of its ``forward``.
    """
    model.eval()
    embed = model.embed if hasattr(model, "embed") else (lambda b: model(b)[1])
    if isinstance(x, ImageFiles):
        batches = x.in_order(batch_size, pin_memory=device.type == "cuda")
    else:
        x = torch.as_tensor(x)
        batches = (x[s:s + batch_size] for s in range(0, len(x), batch_size))
    out, start = None, 0  # filled in place: no second copy of (N, D) at the end (40,000 x 1024: 164 MB)
    for b in batches:
        part = embed(b.to(device, non_blocking=True)).float().cpu().numpy()  # (B, D)
        if out is None:
            out = np.empty((len(x), part.shape[1]), np.float32)
        out[start:start + len(part)] = part
        start += len(part)
    return out if out is not None else np.zeros((0, getattr(model, "feature_dim", 0)), np.float32)


def input_files(dataset: Dataset, size: int) -> ImageFiles | None:
    """The training samples' original files read at ``size`` (None for data without files)."""
    if dataset.root is None or not dataset.train_keys:
        return None
    mode = "L" if dataset.input_shape[0] == 1 else "RGB"
    paths = [dataset.original_file(i) for i in range(dataset.num_train)]
    return ImageFiles(paths, size, mode, cache_bytes=0)  # one pass in order: a cache would keep what is not read again


def dataset_features(dataset: Dataset, backbone: str, weights: str, device: torch.device | None = None,
                     batch_size: int = BATCH) -> np.ndarray:
    """Features ``(N, D)`` of ``dataset``'s training samples from torchvision's ``backbone`` with ``weights``."""
    device = device or torch.device("cpu")
    arch = zoo.arch_of(backbone)
    if dataset.kind != "image":
        raise UserError(f"features from torchvision:{arch} need images; dataset {shown(dataset.name)} holds "
                        f"{dataset.kind}")
    model = zoo.TorchvisionNet(arch, dataset.num_classes)
    zoo.load_weights(model, weights)
    model.to(device)
    files = input_files(dataset, zoo.INPUT_SIZE)
    return embed_all(model, files if files is not None else dataset.train_x, device, batch_size)


def write_features(path: str | Path, features: np.ndarray, keys: tuple[str, ...]) -> Path:
    """``features`` and ``keys`` as the ``.npz`` that ``--teacher-features`` reads."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise UserError(f"--out {shown(str(path))} must end in .npz (the file --teacher-features reads)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, features=features.astype(np.float32), keys=np.array(keys, dtype=str))
    tmp.replace(path)
    return path

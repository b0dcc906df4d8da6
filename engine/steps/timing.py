"""What a teacher epoch costs on this machine, per teacher mode, measured on a
few batches of the run's own data (the Setup page shows it beside the modes).

- ``finetune``: a training epoch of the whole network (forward, backward,
  step), measured on ``batches`` batches and scaled to the training set;
- ``frozen``: the backbone's features once per run (a forward pass per image,
  measured and scaled the same way), then an epoch of the linear head on them.

Nothing is written; the network is built as the run would build it (with its
weights, so absent ImageNet weights are the same one-line error).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..data import Dataset
from ..method.config import RunConfig
from ..method.training import make_optimizer, train_epoch
from ..models import build_with_weights, default_pair
from ..models.features import embed_all
from .networks import _HeadOnly, _pretrained


def teacher_mode_seconds(config: RunConfig, dataset: Dataset, batches: int = 2,
                         device: torch.device | None = None) -> dict[str, float]:
    """Measured seconds: ``finetune`` (per epoch), ``frozen`` (per epoch of the head) and ``frozen_features``
    (once per run), for ``config``'s teacher on ``dataset``.

    Parameters
    ----------
    batches : int
        Training batches timed (after one untimed warm-up batch); more is steadier and slower.
    """
    device = device or torch.device("cpu")
    arch = config.teacher or default_pair(dataset.kind, dataset.input_shape)[0]
    weights = _pretrained(config.teacher_weights)
    size = config.train.batch_size
    epoch_batches = math.ceil(dataset.num_train / size)
    count = min(dataset.num_train, size * (batches + 1))
    index = np.arange(count)
    x = dataset.train_x[index] if dataset.streamed else torch.as_tensor(dataset.train_x[index], device=device)
    labels = np.asarray(dataset.train_true if dataset.train_true is not None else np.zeros(dataset.num_train))
    targets = torch.as_tensor(np.clip(labels[index], 0, None).astype(np.int64), device=device)
    generator = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)

    def per_batch(fn) -> float:
        """Seconds per batch of ``fn(sample_index)``: one untimed warm-up batch, then ``batches`` timed."""
        fn(index[:size])
        rest = index[size:] if count > size else index
        t0 = time.perf_counter()
        fn(rest)
        return (time.perf_counter() - t0) / math.ceil(len(rest) / size)

    model = build_with_weights(arch, dataset.input_shape, dataset.num_classes, dataset.kind, weights).to(device)
    optimizer = make_optimizer(model, config.train)
    out = {"finetune": epoch_batches * per_batch(
        lambda i: train_epoch(model, optimizer, x[i], targets[i], config.train, generator, dataset.augment))}
    if weights is None or not hasattr(model, "freeze"):
        return out
    model.freeze()
    features: dict[str, np.ndarray] = {}
    out["frozen_features"] = epoch_batches * per_batch(
        lambda i: features.update(last=embed_all(model, x[i], device)))
    feats = torch.as_tensor(features["last"], device=device)  # (len(rest), D)
    head = _HeadOnly(model.head)
    head_optimizer = make_optimizer(head, config.train)
    out["frozen"] = epoch_batches * per_batch(
        lambda i: train_epoch(head, head_optimizer, feats[:len(i)], targets[:len(i)], config.train, generator))
    return out

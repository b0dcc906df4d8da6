"""One epoch of a network, and evaluation passes over a whole set.

The student's objective per phase (DESIGN.md, 'The algorithm'):

- ``ce``      CE(S(x), y)                                    plain training
- ``kd``      (1 - a) CE(S(x), y) + a tau^2 KL(T(x) || S(x))  Hinton KD
- ``warmup``  CE + mixup CE + a tau^2 KL(T(x_mix) || S(x_mix))
- ``refine``  mean(w CE) + mixup CE + KD on x_mix + b MSE(G_S, G_T)

``clean_kd_weight`` c > 0 adds c tau^2 KL(T(x) || S(x)) on the un-mixed
inputs to ``warmup`` and ``refine`` (our deviation for the small CPU pair;
docs/ALGORITHM.md).

With a :class:`Shard` (N processes under ``torchrun``, the network wrapped in
``DistributedDataParallel`` by the caller) every process walks the same seeded
order of the set in batches of the configured size and trains on its 1/N part of
each batch; the loss is scaled so that DDP's average of the N gradients is the
gradient of the whole batch's mean loss (docs/ALGORITHM.md, 'Several processes').

A frozen teacher (a pretrained backbone with a linear head) can be given as a
:class:`CachedTeacher`: its backbone features of the un-augmented training
images, computed once. Then T(x) is the head on those features and T(x_mix)
the head on the same mix of them (the head is linear: the mix of the two
logits), so no image passes through the backbone during the student's
epochs (our deviation for a CPU: docs/ALGORITHM.md).

On CUDA the passes run in automatic mixed precision (:class:`MixedPrecision`:
bfloat16 where the GPU supports it, else float16 with a gradient scaler) on
``channels_last`` images; ``AMLKD_AMP=0`` keeps float32. On a CPU nothing
changes: float32, the same numbers as ever.
"""

from __future__ import annotations

import contextlib
import math
import os
import weakref
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .augment import augment
from .config import TrainConfig
from .losses import kd_loss, mixup_batch, mixup_ce, relational_loss, weighted_ce

EVAL_BATCH = 1024
FILES_EVAL_BATCH = 64  # images decoded from files per evaluation batch (224x224: about 38 MB as float32)
#: Training inputs whose batch-norm statistics :func:`recompute_batch_norm` averages (evenly spaced over the set):
#: Wu and Johnson (2021) find about 10^4 samples enough for ImageNet's 1,000 classes; on cifar10-small the test
#: accuracy with 4,096 is within 0.003 of all 10,000 (docs/ALGORITHM.md, "Batch-norm statistics").
BN_SAMPLES = 4096
BN_BATCH = FILES_EVAL_BATCH  # its batches, from memory and from files alike: the same statistics either way


def cosine_lr(base_lr: float, epoch: int, total_epochs: int) -> float:
    """Cosine annealing from ``base_lr`` at epoch 0 towards 0 at ``total_epochs``."""
    if total_epochs <= 0:
        return base_lr
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(epoch, total_epochs) / total_epochs))


def step_lr(base_lr: float, epoch: int, total_epochs: int) -> float:
    """Step decay: ``base_lr`` times 0.1 from 5/8, 3/4 and 7/8 of ``total_epochs`` on (the authors' epochs
    150, 180 and 210 of 240)."""
    if total_epochs <= 0:
        return base_lr
    drops = sum(epoch >= round(total_epochs * f) for f in (5 / 8, 3 / 4, 7 / 8))
    return base_lr * 0.1 ** drops


def scheduled_lr(base_lr: float, epoch: int, total_epochs: int, schedule: str = "cosine") -> float:
    """The learning rate of ``epoch`` under ``schedule`` (``cosine`` or ``step``)."""
    return step_lr(base_lr, epoch, total_epochs) if schedule == "step" else cosine_lr(base_lr, epoch, total_epochs)


def ramped_lr(lr: float, epochs_in: int, ramp: int) -> float:
    """``lr`` times ``(epochs_in + 1) / (ramp + 1)`` for the first ``ramp`` epochs of a stage, then ``lr``: a linear
    warm-up of the rate after the objective changes (Goyal et al. 2017, "Accurate, large minibatch SGD", Sec. 2.2)."""
    if ramp <= 0 or epochs_in >= ramp:
        return lr
    return lr * (max(epochs_in, 0) + 1) / (ramp + 1)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay, nesterov=True)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


@dataclass
class Outputs:
    """A network's outputs over a whole set (numpy, on the CPU)."""

    logits: np.ndarray  # (N, C)
    features: np.ndarray  # (N, D)

    @property
    def pred(self) -> np.ndarray:
        return self.logits.argmax(1)

    def probs(self) -> np.ndarray:
        z = self.logits - self.logits.max(1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)

    def loss(self, labels: np.ndarray) -> np.ndarray:
        """Per-sample cross-entropy against ``labels`` (N,)."""
        z = self.logits - self.logits.max(1, keepdims=True)
        log_norm = np.log(np.exp(z).sum(1))
        return (log_norm - z[np.arange(len(labels)), labels]).astype(np.float32)

    def accuracy(self, labels: np.ndarray) -> float:
        return float(np.mean(self.pred == labels)) if len(labels) else float("nan")


class MixedPrecision:
    """Autocast and the backward step for one optimiser on one device (a no-op on a CPU).

    CUDA: bfloat16 where supported (no scaler needed: its range is float32's), else float16 with a
    :class:`torch.amp.GradScaler` kept per optimiser across epochs (:func:`precision_for`).
    """

    def __init__(self, device: torch.device):
        self.enabled = device.type == "cuda" and os.environ.get("AMLKD_AMP", "1") != "0"
        bf16 = self.enabled and torch.cuda.is_bf16_supported()
        self.dtype = torch.bfloat16 if bf16 else torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if self.enabled and not bf16 else None

    def autocast(self):
        return torch.autocast("cuda", dtype=self.dtype) if self.enabled else contextlib.nullcontext()

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad()
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()


_PRECISION: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def precision_for(optimizer: torch.optim.Optimizer, device: torch.device) -> MixedPrecision:
    """The optimiser's :class:`MixedPrecision` (one per optimiser, so a float16 scaler keeps its scale)."""
    if optimizer not in _PRECISION:
        _PRECISION[optimizer] = MixedPrecision(device)
    return _PRECISION[optimizer]


class CachedTeacher:
    """A frozen teacher known by its outputs on the un-augmented training samples.

    Parameters
    ----------
    head : nn.Module
        The teacher's linear head, features ``(B, D)`` -> logits ``(B, C)``.
    features : torch.Tensor (N, D)
        The frozen backbone's features of the N samples the epoch trains on, in their order.
    """

    def __init__(self, head: nn.Module, features: torch.Tensor):
        self.head, self.features = head, features

    def eval(self) -> CachedTeacher:
        self.head.eval()
        return self

    @torch.no_grad()
    def outputs(self, idx: torch.Tensor, perm: torch.Tensor | None = None, lam: float = 1.0):
        """``(logits (B, C), features (B, D))`` of samples ``idx``; with ``perm``, of the mix
        ``lam f + (1 - lam) f[perm]`` of their features (what mixup does to the images)."""
        features = self.features[idx.to(self.features.device)]
        if perm is not None:
            features = lam * features + (1.0 - lam) * features[perm.to(features.device)]
        return self.head(features).float(), features


def _on_device(xb: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch on the device; images on CUDA as channels_last (what cuDNN's fast kernels read)."""
    xb = xb.to(device, non_blocking=True)
    if device.type == "cuda" and xb.dim() == 4:
        xb = xb.contiguous(memory_format=torch.channels_last)
    return xb


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _in_order(x, device: torch.device):
    """Batches of every sample in order: slices of a tensor, or images decoded from files."""
    if isinstance(x, torch.Tensor):
        for start in range(0, x.shape[0], EVAL_BATCH):
            yield x[start:start + EVAL_BATCH]
        return
    for xb in x.in_order(FILES_EVAL_BATCH, pin_memory=device.type == "cuda"):
        yield _on_device(xb, device)


def _inputs(x, batches: list, device: torch.device):
    """``(idx, inputs)`` per batch: rows of an in-memory tensor, or files decoded in DataLoader workers
    (:class:`engine.data.stream.ImageFiles`), in the order the seeded generator chose."""
    if isinstance(x, torch.Tensor):
        for idx in batches:
            yield idx, (_on_device(x[idx], device) if device.type == "cuda" else x[idx])
        return
    for idx, xb in zip(batches, x.batches(batches, pin_memory=device.type == "cuda")):
        yield idx, _on_device(xb, device)


@torch.no_grad()
def forward_all(model: nn.Module, x) -> Outputs:
    """Un-augmented forward pass in eval mode, in batches (``x``: a tensor, or image files)."""
    model.eval()
    logits, features = [], []
    device = _device_of(model)
    for xb in _in_order(x, device):
        with MixedPrecision(device).autocast():
            out_logits, out_features = model(xb)
        logits.append(out_logits.float().cpu())
        features.append(out_features.float().cpu())
    return Outputs(torch.cat(logits).numpy(), torch.cat(features).numpy())


@torch.no_grad()
def recompute_batch_norm(model: nn.Module, x, samples: int = BN_SAMPLES, augment_kind: str = "none",
                         seed: int = 0) -> bool:
    """Replace the running statistics of every batch-norm layer of ``model`` by their average over up to
    ``samples`` training inputs of ``x`` (a tensor, or image files), augmented as in training (``augment_kind``,
    drawn from a generator of its own seeded with ``seed``), in batches of ``BN_BATCH`` (from memory and from
    files alike, so that a streamed set gets the statistics of the same set in memory); returns whether
    ``model`` has any such layer.

    "Precise BN" (Wu and Johnson, "Rethinking 'Batch' in BatchNorm", 2021, Sec. 3): the running averages a
    layer keeps while training (momentum 0.1: mostly its last ~10 batches, taken under weights that moved
    since) are not the statistics of the weights as they are; on cifar10-small they made the student's test
    accuracy swing by up to 0.2 from one epoch to the next, at any learning rate. The samples are chosen
    without randomness (evenly spaced) and the augmentation draws from its own generator, so no training draw
    moves; the network's own training is unchanged (in train mode a layer reads its batch's statistics), only
    what it computes in eval mode: its test accuracy, features and predictions, and so what other steps take
    from it (stage 0's labels, the student's soft targets, the refinery's seeds and graphs). Augmented as in
    training because the layers after each norm learnt on inputs normalised by those statistics: on the
    24-epoch cifar10-small teachers un-augmented statistics cost 0.013 of test accuracy, augmented ones 0.003
    (docs/ALGORITHM.md).
    """
    norms = [m for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms:
        return False
    n = len(x)
    chosen = np.arange(n) if n <= samples else np.linspace(0, n - 1, samples).round().astype(np.int64)
    batches = [torch.as_tensor(chosen[i:i + BN_BATCH]) for i in range(0, len(chosen), BN_BATCH)]
    if len(batches) > 1 and len(batches[-1]) < 2:  # batch norm needs two samples in train mode: join the last two
        batches = batches[:-2] + [torch.cat(batches[-2:])]
    momenta, training = [m.momentum for m in norms], model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    model.train()
    device, generator = _device_of(model), torch.Generator().manual_seed(seed)
    try:
        for _, xb in _inputs(x, batches, device):
            with MixedPrecision(device).autocast():
                model(augment(xb, augment_kind, generator))
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
        model.train(training)
    return True


def _batches(n: int, batch_size: int, generator: torch.Generator):
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        if len(idx) >= 2:  # batch norm needs two samples
            yield idx


@dataclass(frozen=True)
class Shard:
    """This process's part of an epoch when ``world`` processes train one network together.

    ``order_seed`` seeds the epoch's order of the samples and must be the same on every process (the run's
    seed and epoch: :func:`engine.steps.distributed.order_seed`); augmentation and mixup draw from each
    process's own generators.
    """

    rank: int
    world: int
    order_seed: int

    def __post_init__(self):
        if not (self.world >= 1 and 0 <= self.rank < self.world):
            raise ValueError(f"shard rank {self.rank} of {self.world} processes: valid ranks are 0..world-1")


def shard_batches(n: int, batch_size: int, shard: Shard) -> Iterator[tuple[torch.Tensor, float]]:
    """``(idx, scale)`` per batch: this process's rows of each global batch of ``batch_size`` and the factor
    its mean loss is multiplied by, ``len(idx) * world / len(batch)``.

    The order is ``randperm(n)`` of a generator seeded with ``shard.order_seed``; each global batch is cut
    into ``world`` contiguous parts whose sizes differ by at most one. DDP averages the processes' gradients,
    so with these scales the update is the gradient of the global batch's mean loss. A global batch smaller
    than ``2 * world`` is left out (every part needs two samples for batch norm, and every process must take
    part in every batch).
    """
    order = torch.randperm(n, generator=torch.Generator().manual_seed(shard.order_seed))
    for start in range(0, n, batch_size):
        batch = order[start:start + batch_size]
        if len(batch) < 2 * shard.world:
            continue
        idx = torch.tensor_split(batch, shard.world)[shard.rank]
        yield idx, len(idx) * shard.world / len(batch)


def _epoch_batches(n: int, batch_size: int, generator: torch.Generator, shard: Shard | None):
    """The epoch's batches and their loss scales (None: one process, the loss as it is)."""
    if shard is None:
        batches = list(_batches(n, batch_size, generator))
        return batches, [None] * len(batches)
    pairs = list(shard_batches(n, batch_size, shard))
    return [idx for idx, _ in pairs], [scale for _, scale in pairs]


def _scaled(loss: torch.Tensor, scale: float | None) -> torch.Tensor:
    return loss if scale is None else loss * scale


def _summed_over_processes(sums: dict[str, float], count: int, shard: Shard | None,
                           device: torch.device) -> tuple[dict[str, float], int]:
    """Loss sums and sample count of the whole epoch: this process's alone, or every process's added up."""
    if shard is None or shard.world == 1:
        return sums, count
    import torch.distributed as dist

    names = sorted(sums)
    values = torch.tensor([sums[k] for k in names] + [float(count)], dtype=torch.float64, device=device)
    dist.all_reduce(values)
    totals = values.tolist()
    return dict(zip(names, totals[:-1])), int(totals[-1])


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                targets: torch.Tensor, cfg: TrainConfig, generator: torch.Generator,
                augment_kind: str = "none", progress=None, shard: Shard | None = None) -> dict:
    """Plain cross-entropy epoch over (x, targets); returns mean losses and ``samples``, how many were trained
    on (every process's together).

    ``progress(done, total)`` is called after each batch when given. ``shard``: this process's part of
    each batch when several train ``model`` (a ``DistributedDataParallel``) together.
    """
    model.train()
    total, count = 0.0, 0
    batches, scales = _epoch_batches(x.shape[0], cfg.batch_size, generator, shard)
    amp = precision_for(optimizer, targets.device)
    for (idx, xb), scale in zip(_inputs(x, batches, targets.device), scales):
        xb = augment(xb, augment_kind, generator)
        with amp.autocast():
            logits, _ = model(xb)
            loss = F.cross_entropy(logits.float(), targets[idx])
        amp.step(_scaled(loss, scale), optimizer)
        total, count = total + loss.item() * len(idx), count + len(idx)
        if progress:
            progress(count * (shard.world if shard else 1), x.shape[0])
    sums, count = _summed_over_processes({"ce": total}, count, shard, targets.device)
    return {"loss_ce": sums["ce"] / max(count, 1), "samples": count}


def student_epoch(student: nn.Module, teacher: nn.Module | CachedTeacher | None, optimizer: torch.optim.Optimizer,
                  x: torch.Tensor, targets: torch.Tensor, cfg: TrainConfig, mode: str,
                  rng: np.random.Generator, generator: torch.Generator,
                  weights: torch.Tensor | None = None, augment_kind: str = "none", progress=None,
                  shard: Shard | None = None) -> dict:
    """One student epoch with the objective of ``mode`` (see module docstring); ``shard`` as in
    :func:`train_epoch`."""
    if mode == "ce":
        return train_epoch(student, optimizer, x, targets, cfg, generator, augment_kind, progress, shard)
    student.train()
    teacher.eval()
    sums: dict[str, float] = {}
    count = 0
    batches, scales = _epoch_batches(x.shape[0], cfg.batch_size, generator, shard)
    amp = precision_for(optimizer, targets.device)
    for (idx, xb), scale in zip(_inputs(x, batches, targets.device), scales):
        xb, yb = augment(xb, augment_kind, generator), targets[idx]
        with amp.autocast():
            terms = _student_terms(student, teacher, xb, yb, cfg, mode, rng, generator,
                                   None if weights is None else weights[idx], idx)
            loss = sum(terms.values())
        amp.step(_scaled(loss, scale), optimizer)
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + value.item() * len(idx)
        count += len(idx)
        if progress:
            progress(count * (shard.world if shard else 1), x.shape[0])
    sums, count = _summed_over_processes(sums, count, shard, targets.device)
    return {**{f"loss_{k}": v / max(count, 1) for k, v in sums.items()}, "samples": count}


def _student_terms(student, teacher, xb, yb, cfg: TrainConfig, mode: str, rng, generator, wb, idx=None) -> dict:
    cached = isinstance(teacher, CachedTeacher)
    logits, features = student(xb)
    if mode == "kd":
        with torch.no_grad():
            t_logits = teacher.outputs(idx)[0] if cached else teacher(xb)[0]
        return {"ce": (1 - cfg.kd_weight) * F.cross_entropy(logits, yb),
                "kd": cfg.kd_weight * kd_loss(logits, t_logits, cfg.temperature)}
    terms = {"ce": weighted_ce(logits, yb, wb) if wb is not None else F.cross_entropy(logits, yb)}
    x_mix, perm, lam = mixup_batch(xb, rng, generator, cfg.mixup_alpha)
    mix_logits, _ = student(x_mix)
    relational = mode == "refine" and cfg.relational_weight > 0
    clean = relational or cfg.clean_kd_weight > 0  # does the teacher also see the un-mixed batch?
    b = x_mix.shape[0]
    if cached:
        mix_t_logits = teacher.outputs(idx, perm, lam)[0]
        t_logits, t_features = teacher.outputs(idx) if clean else (None, None)
    else:
        with torch.no_grad():  # the teacher is in eval mode: one pass over both batches is the same as two
            both_logits, both_features = teacher(torch.cat([x_mix, xb]) if clean else x_mix)
        mix_t_logits, t_logits, t_features = both_logits[:b], both_logits[b:], both_features[b:]
    terms["mixup"] = mixup_ce(mix_logits, yb, perm, lam)
    terms["kd"] = cfg.kd_weight * kd_loss(mix_logits, mix_t_logits, cfg.temperature)
    if cfg.clean_kd_weight > 0:
        terms["kd_clean"] = cfg.clean_kd_weight * kd_loss(logits, t_logits, cfg.temperature)
    if relational:
        terms["rel"] = cfg.relational_weight * relational_loss(features, t_features)
    return terms

"""Losses of the student's objective, each a small function naming its source.

- :func:`kd_loss` — Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in
  a Neural Network": tau^2 KL(softmax(t/tau) || softmax(s/tau)).
- :func:`mixup_batch`, :func:`mixup_ce` — Zhang et al. (2018), "mixup"; the
  AML-KD code draws lambda ~ Beta(4, 4).
- :func:`relational_loss` — similarity-preserving distillation (Tung & Mori,
  ICCV 2019) as AML-KD uses it: MSE between the batch Gram matrices of
  L2-normalised student and teacher features.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """tau^2 KL(softmax(teacher/tau) || softmax(student/tau)), mean over the batch (B, C)."""
    tau = temperature
    log_p_student = F.log_softmax(student_logits / tau, dim=1)
    p_teacher = F.softmax(teacher_logits / tau, dim=1)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * tau * tau


def mixup_batch(x: torch.Tensor, rng: np.random.Generator, generator: torch.Generator,
                alpha: float = 4.0) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Mix each input with a random partner: ``lam x + (1 - lam) x[perm]``.

    Returns ``(x_mix, perm, lam)``; ``lam ~ Beta(alpha, alpha)`` from ``rng``.
    """
    lam = float(rng.beta(alpha, alpha))
    perm = torch.randperm(x.shape[0], generator=generator).to(x.device)
    return lam * x + (1.0 - lam) * x[perm], perm, lam


def mixup_ce(logits: torch.Tensor, targets: torch.Tensor, perm: torch.Tensor, lam: float) -> torch.Tensor:
    """Cross-entropy against the mixed targets: lam CE(y) + (1 - lam) CE(y[perm])."""
    return lam * F.cross_entropy(logits, targets) + (1.0 - lam) * F.cross_entropy(logits, targets[perm])


def gram(features: torch.Tensor) -> torch.Tensor:
    """Batch Gram matrix of L2-normalised features: (B, D) -> (B, B)."""
    normed = F.normalize(features, dim=1)
    return normed @ normed.T


def relational_loss(student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """MSE(G_S, G_T) between the students' and teacher's batch Gram matrices."""
    return F.mse_loss(gram(student_features), gram(teacher_features))


def weighted_ce(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """mean(w * CE): per-sample cross-entropy scaled by the AWE weights (B,)."""
    return (weights * F.cross_entropy(logits, targets, reduction="none")).mean()

"""Training-time augmentation on a batch tensor (inputs for features are never
augmented): random crop with zero padding and horizontal flip, the standard
CIFAR recipe."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Randomly crop (after zero-padding) and flip each image of (B, C, H, W)."""
    b, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    flip = torch.rand(b, generator=generator) < 0.5
    rows = (dy[:, None] + torch.arange(h)[None]).to(x.device)  # (B, H)
    cols = (dx[:, None] + torch.arange(w)[None]).to(x.device)  # (B, W)
    cols = torch.where(flip.to(x.device)[:, None], cols.flip(1), cols)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def augment(x: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    if kind == "crop_flip":
        return crop_flip(x, generator)
    return x

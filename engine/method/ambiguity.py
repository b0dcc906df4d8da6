"""Class centres and the ambiguity-aware weight (AWE), AML-KD stage 1 step 2.

Each sample is described by its cosine similarities to all class centres
(mean student feature per class) and the one-hot of a label; a small network
(2C -> C -> 1, PReLU, sigmoid) maps that to a weight w in (0, 1). A sample
close to several centres, or far from its label's centre, is ambiguous and
should get a low weight.

Deviation from the public code (see docs/ALGORITHM.md): there the network
learns only from the w-weighted cross-entropy, whose minimum is w = 0 for
every sample, so the weights collapse. Here the network is trained as a
calibrated 'is this label clean' classifier: binary cross-entropy against
the small-loss selection (easy = 1, others = 0, classes balanced), inputs
built from the *given* labels. At use, it is evaluated with whatever label
the sample is about to be trained on.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def class_centres(features: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Unit-norm mean feature per class (C, D); an empty class gets zeros."""
    normed = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    centres = np.zeros((num_classes, features.shape[1]), dtype=np.float32)
    np.add.at(centres, labels, normed)
    norms = np.linalg.norm(centres, axis=1, keepdims=True)
    return centres / np.maximum(norms, 1e-12)


def centre_similarity(features: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Cosine similarity of each sample to each class centre (N, C)."""
    normed = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    return (normed @ centres.T).astype(np.float32)


def label_centre_weight(similarity: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Stage-2 seed weight: sigmoid(cosine(feature, centre of its label)) (N,)."""
    sim = similarity[np.arange(len(labels)), labels]
    return (1.0 / (1.0 + np.exp(-sim))).astype(np.float32)


class WeightNet(nn.Module):
    """AWE: (N, 2C) [similarities | one-hot label] -> (N,) weight in (0, 1)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 * num_classes, num_classes), nn.PReLU(), nn.Linear(num_classes, 1)
        )
        self.num_classes = num_classes

    def forward(self, similarity: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(labels, self.num_classes).to(similarity.dtype)
        return torch.sigmoid(self.net(torch.cat([similarity, one_hot], dim=1))).squeeze(1)


def train_weight_net(net: WeightNet, optimizer: torch.optim.Optimizer, similarity: np.ndarray,
                     labels: np.ndarray, clean_target: np.ndarray, iterations: int = 100) -> float:
    """Fit the AWE to the small-loss 'clean' target with class-balanced BCE.

    Full-batch; returns the final loss. ``clean_target`` (N,) is 1 for easy
    samples and 0 for the rest.
    """
    sim = torch.as_tensor(similarity, dtype=torch.float32)
    lab = torch.as_tensor(labels, dtype=torch.long)
    target = torch.as_tensor(clean_target, dtype=torch.float32)
    positive = float(target.mean().clamp(1e-3, 1 - 1e-3))
    balance = torch.where(target > 0.5, 0.5 / positive, 0.5 / (1 - positive))
    net.train()
    loss = torch.tensor(0.0)
    for _ in range(iterations):
        optimizer.zero_grad()
        w = net(sim, lab).clamp(1e-6, 1 - 1e-6)
        loss = F.binary_cross_entropy(w, target, weight=balance)
        loss.backward()
        optimizer.step()
    return float(loss.detach())


@torch.no_grad()
def predict_weights(net: WeightNet, similarity: np.ndarray, labels: np.ndarray) -> np.ndarray:
    net.eval()
    sim = torch.as_tensor(similarity, dtype=torch.float32)
    lab = torch.as_tensor(labels, dtype=torch.long)
    return net(sim, lab).numpy().astype(np.float32)

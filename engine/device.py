"""Device choice: CUDA when present, CPU otherwise; nothing requires a GPU."""

from __future__ import annotations

import torch


def default_device() -> torch.device:
    """The device training runs on: ``cuda`` when available, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")

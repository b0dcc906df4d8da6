"""Setup, a torchvision teacher: its weights and its mode (fine-tune, or a head on the frozen backbone),
each mode offered with the time per epoch measured on a few batches of the chosen data on this machine."""

from __future__ import annotations

import streamlit as st

from engine.data import load_dataset
from engine.errors import UserError
from engine.method import TEACHER_MODES, RunConfig, TrainConfig
from engine.models import is_torchvision
from engine.steps import teacher_mode_seconds

MODE_NAMES = {"frozen": "Frozen backbone, train a head", "finetune": "Fine-tune every weight"}


def default_mode(cuda: bool) -> str:
    """Frozen on a CPU (the head trains in seconds), fine-tuning on CUDA."""
    return "finetune" if cuda else "frozen"


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "under 1 s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"


def mode_label(mode: str, seconds: dict | None) -> str:
    """A mode's name with its measured cost (``seconds`` from :func:`engine.steps.teacher_mode_seconds`)."""
    name = MODE_NAMES[mode]
    if not seconds or mode not in seconds:
        return name
    if mode == "frozen":
        return (f"{name}: features once ≈ {_duration(seconds['frozen_features'])}, then "
                f"{_duration(seconds['frozen'])} per epoch")
    return f"{name}: ≈ {_duration(seconds['finetune'])} per epoch"


@st.cache_data(show_spinner="Timing a teacher epoch on a few batches…", max_entries=8)
def measured_seconds(dataset: str, teacher: str, weights: str, batch_size: int, seed: int) -> dict:
    """Seconds per mode; :class:`UserError` (never cached: fetched weights count at once) when it cannot be
    measured (absent weights, bad data)."""
    config = RunConfig(dataset=dataset, teacher=teacher, teacher_weights=weights, seed=seed,
                       train=TrainConfig(batch_size=batch_size))
    return teacher_mode_seconds(config, load_dataset(dataset))


def teacher_mode_inputs(weights: str, mode: str, key: str, dataset: str | None, teacher: str,
                        method: str) -> tuple[dict, list[str]]:
    """Weights and mode widgets for a torchvision teacher (nothing for other teachers or CE)."""
    if not is_torchvision(teacher) or method == "ce":
        return {"teacher_weights": "", "teacher_mode": ""}, []
    out = {"teacher_weights": st.text_input(
        "Teacher weights", weights or "imagenet", key=f"{key}teacher_weights-{teacher}",
        help="imagenet: torchvision's ImageNet weights from TORCH_HOME/hub/checkpoints (python -m engine "
             "fetch-weights NAME on a connected machine); a state-dict file; none: a random start").strip()}
    seconds, problems = None, []
    if dataset and out["teacher_weights"] != "none":
        try:
            seconds = measured_seconds(dataset, teacher, out["teacher_weights"], TrainConfig().batch_size, 0)
        except UserError as exc:
            problems.append(str(exc))
            st.error(problems[-1])
    import torch

    modes = list(TEACHER_MODES) if out["teacher_weights"] != "none" else ["finetune"]
    chosen = mode if mode in modes else default_mode(torch.cuda.is_available())
    chosen = chosen if chosen in modes else modes[0]
    out["teacher_mode"] = st.radio("Teacher mode", modes, index=modes.index(chosen), key=f"{key}teacher_mode",
                                   format_func=lambda m: mode_label(m, seconds),
                                   help="Measured on a few batches of this data on this machine. The student "
                                        "learns from the images in both modes.")
    return out, problems

"""GPU paths: mixed precision, channels_last, pinned non-blocking batches, faiss on the GPU. The CUDA tests are
marked ``cuda`` and skip without a GPU (bench/gpu_check.sh runs them with the GPU benchmarks); the CPU checks
here make sure none of it changes a CPU run."""

from __future__ import annotations

import contextlib
from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.method.config import RunConfig, ScheduleConfig
from engine.method.training import MixedPrecision, precision_for

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
SHORT = ScheduleConfig(teacher_epochs=3, teacher_patience=3, warmup_epochs=1, refine_epochs=2, mutual_epochs=1)


def test_mixed_precision_is_off_on_a_cpu():
    amp = MixedPrecision(torch.device("cpu"))
    assert not amp.enabled and amp.scaler is None
    assert isinstance(amp.autocast(), contextlib.nullcontext)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1)
    assert precision_for(opt, torch.device("cpu")) is precision_for(opt, torch.device("cpu"))  # one per optimiser


@pytest.mark.cuda
@cuda
def test_mixed_precision_on_cuda_picks_bf16_or_fp16_with_a_scaler():
    amp = MixedPrecision(torch.device("cuda"))
    assert amp.enabled
    if torch.cuda.is_bf16_supported():
        assert amp.dtype == torch.bfloat16 and amp.scaler is None
    else:
        assert amp.dtype == torch.float16 and amp.scaler is not None


@pytest.mark.cuda
@cuda
def test_a_digits_run_on_cuda_learns_with_channels_last_networks(tmp_path):
    from engine.steps.run import Run

    run = Run.create(tmp_path / "gpu", replace(RunConfig(dataset="digits"), schedule=SHORT),
                     device=torch.device("cuda"))
    assert run.nets.x.is_cuda
    conv = next(m for m in run.teacher.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    run.run_until(None)
    summary = run.store.summary()
    assert summary["device"] == "cuda" and summary["student_test_accuracy"] > 0.8
    assert summary["refined_label_precision"] > 0.85


@pytest.mark.cuda
@cuda
def test_faiss_on_the_gpu_finds_the_cpu_neighbours():
    from engine.method.graph import knn
    from engine.method.search import gpu_available

    if not gpu_available():
        pytest.skip("the installed faiss has no GPU support")
    features = np.random.default_rng(0).normal(size=(500, 16)).astype(np.float32)
    gpu_idx, gpu_sim = knn(features, 10, use_gpu=True)
    cpu_idx, cpu_sim = knn(features, 10, use_gpu=False)
    assert (gpu_idx == cpu_idx).mean() > 0.99 and np.allclose(gpu_sim, cpu_sim, atol=1e-4)


@pytest.mark.cuda
@cuda
def test_ivf_on_the_gpu_reaches_its_recall_and_says_so():
    """The GPU ivf path (flat centroid search on the GPU, nprobe set through GpuParameterSpace) tuned and checked
    against exact search as on the CPU."""
    from engine.method.graph import search_knn
    from engine.method.search import gpu_available

    if not gpu_available():
        pytest.skip("the installed faiss has no GPU support")
    rng = np.random.default_rng(0)
    features = (rng.standard_normal((30, 32))[rng.integers(0, 30, 30_000)] * 4
                + rng.standard_normal((30_000, 32))).astype(np.float32)
    idx, _, report = search_knn(features, 10, "ivf", use_gpu=True)
    cpu_idx, _, cpu_report = search_knn(features, 10, "ivf", use_gpu=False)
    assert report.factory.startswith("IVF") and report.queries == 1000
    assert report.recall >= 0.93 and cpu_report.recall >= 0.93
    assert np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(idx[:2000], cpu_idx[:2000])]) > 0.9


@pytest.mark.cuda
@cuda
def test_streamed_batches_arrive_pinned_and_on_the_gpu(tmp_path):
    from PIL import Image

    from engine.data.stream import ImageFiles
    from engine.method.training import _inputs

    paths = []
    for i in range(6):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.full((40, 40, 3), i * 40, np.uint8)).save(path)
        paths.append(str(path))
    files = ImageFiles(paths, 32, "RGB", workers=1)
    assert all(b.is_pinned() for b in files.batches([np.arange(3), np.arange(3, 6)], pin_memory=True))
    (idx, xb), = list(_inputs(files, [np.array([5, 1])], torch.device("cuda")))
    assert xb.is_cuda and xb.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(xb[:, 0, 0, 0].cpu(), torch.tensor([200, 40]) / 255)


# ---------------------------------------------------------------- the paper's pair, the authors' schedule
def test_the_wrn_pair_defaults_to_the_authors_schedule():
    from engine.method.config import defaults_for_teacher, schedule_note
    from engine.method.training import scheduled_lr

    schedule, train = defaults_for_teacher("wrn-40-2")
    assert (schedule.warmup_epochs, schedule.warmup_epochs + schedule.refine_epochs, schedule.student_epochs) == \
        (20, 180, 240)
    assert (train.lr, train.batch_size, train.lr_schedule) == (0.05, 256, "step")
    lrs = [scheduled_lr(0.05, e, 240, "step") for e in (0, 149, 150, 179, 180, 209, 210, 239)]
    assert np.allclose(lrs, [0.05, 0.05, 0.005, 0.005, 0.0005, 0.0005, 0.00005, 0.00005])
    assert scheduled_lr(0.05, 120, 240, "cosine") == pytest.approx(0.025)
    full = RunConfig(teacher="wrn-40-2", schedule=schedule, train=train)
    assert schedule_note(full) is None
    short = replace(full, schedule=replace(schedule, refine_epochs=10, mutual_epochs=5))
    assert "shorter schedule than the authors'" in schedule_note(short) and "20 + 10 + 5" in schedule_note(short)
    assert schedule_note(RunConfig()) is None  # digits: its own schedule, nothing to say

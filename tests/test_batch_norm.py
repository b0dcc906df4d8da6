"""Batch-norm statistics recomputed after each epoch (``--bn-stats recomputed``): what they are, and what they
leave alone (the parameters, so the training; the random draws; old runs)."""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn as nn

from engine.method.config import RunConfig, ScheduleConfig, TrainConfig
from engine.method.training import BN_BATCH, recompute_batch_norm
from engine.rundir.store import RunStore
from engine.steps.run import Run

TINY = ScheduleConfig(teacher_epochs=2, teacher_patience=2, warmup_epochs=1, refine_epochs=2, mutual_epochs=1)


def _net(momentum: float = 0.1) -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, momentum=momentum), nn.ReLU(), nn.Linear(4, 2))


def test_recomputed_statistics_are_those_of_the_training_inputs():
    net, x = _net(), torch.randn(60, 3, generator=torch.Generator().manual_seed(1)) * 2 + 1
    norm = net[1]
    norm.running_mean.fill_(5.0)
    norm.running_var.fill_(100.0)
    params = [p.detach().clone() for p in net.parameters()]
    net.eval()
    assert recompute_batch_norm(net, x) is True
    before_norm = net[0](x).detach()  # one batch: its mean and unbiased variance
    np.testing.assert_allclose(norm.running_mean, before_norm.mean(0), atol=1e-5)
    np.testing.assert_allclose(norm.running_var, before_norm.var(0, unbiased=True), rtol=1e-4)
    assert norm.momentum == 0.1 and not net.training  # the layer's momentum and the mode as they were
    assert all(torch.equal(a, b) for a, b in zip(params, net.parameters()))


def test_a_large_set_is_sampled_evenly_and_every_batch_counts_alike():
    net, x = _net(momentum=0.3), torch.randn(5000, 3, generator=torch.Generator().manual_seed(2)) * 3
    net.train()
    recompute_batch_norm(net, x, samples=2000)
    chosen = np.linspace(0, 4999, 2000).round().astype(np.int64)
    h = net[0](x[torch.as_tensor(chosen)]).detach()
    parts = [h[i:i + BN_BATCH] for i in range(0, 2000, BN_BATCH)]  # 31 of 64 and one of 16
    np.testing.assert_allclose(net[1].running_mean, sum(p.mean(0) for p in parts) / len(parts), atol=1e-5)
    np.testing.assert_allclose(net[1].running_var, sum(p.var(0, unbiased=True) for p in parts) / len(parts),
                               rtol=1e-4)
    assert not np.allclose(net[1].running_mean, h.mean(0) + 0.05)  # the average is of these rows, not others
    assert net[1].momentum == 0.3 and net.training


def test_images_are_augmented_as_in_training_from_a_generator_of_their_own():
    from engine.method.augment import augment

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
    x = torch.rand(40, 3, 8, 8, generator=torch.Generator().manual_seed(4)) + 0.5  # zero padding moves the mean
    state = torch.get_rng_state()
    recompute_batch_norm(net, x, augment_kind="crop_flip", seed=7)
    assert torch.equal(state, torch.get_rng_state())  # no draw from the global generator
    h = net[0](augment(x, "crop_flip", torch.Generator().manual_seed(7))).detach()
    np.testing.assert_allclose(net[1].running_mean, h.mean((0, 2, 3)), atol=1e-5)
    plain = net[0](x).detach().mean((0, 2, 3))
    assert (net[1].running_mean - plain).abs().max() > 1e-3  # the un-augmented mean is another number


def test_a_last_batch_of_one_sample_joins_the_one_before():
    net, x = _net(), torch.randn(BN_BATCH + 1, 3, generator=torch.Generator().manual_seed(3))
    recompute_batch_norm(net, x)  # batch norm cannot take one sample in train mode
    h = net[0](x).detach()
    np.testing.assert_allclose(net[1].running_mean, h.mean(0), atol=1e-5)  # one batch of every sample
    np.testing.assert_allclose(net[1].running_var, h.var(0, unbiased=True), rtol=1e-4)


def test_a_network_without_batch_norm_is_left_alone():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    state = copy.deepcopy(net.state_dict())
    assert recompute_batch_norm(net, torch.randn(50, 3)) is False
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


def _digits(bn_stats: str, method: str = "aml-kd") -> RunConfig:
    return RunConfig(dataset="digits", noise="symmetric:0.2", seed=1, method=method, schedule=TINY,
                     train=replace(TrainConfig(), bn_stats=bn_stats))


@pytest.mark.parametrize("method", ["ce", "aml-kd"])
def test_recomputing_leaves_the_training_alone_and_settles_what_the_networks_compute(tmp_path, method):
    runs = {mode: Run.create(tmp_path / mode, _digits(mode, method)) for mode in ("recomputed", "running")}
    steps = 2 if method == "ce" else 4  # aml-kd: both teacher epochs, stage 0, the warm-up epoch
    for run in runs.values():
        for _ in range(steps):
            run.step()
    settled, running = runs["recomputed"].nets, runs["running"].nets
    networks = ("student",) if method == "ce" else ("teacher", "student")
    for name in networks:
        a, b = getattr(settled, name), getattr(running, name)
        # the network trained alone (CE's student, the teacher): the same parameters, the recomputation changes
        # nothing its training reads or draws; AML-KD's student learns from what the teacher computes in eval
        # mode (stage 0's labels, its soft targets), so it differs
        same = all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
        assert same == (method == "ce" or name == "teacher"), name
        means = [(m.running_mean, n.running_mean) for m, n in zip(a.modules(), b.modules())
                 if isinstance(m, nn.BatchNorm2d)]
        assert means and all(not torch.allclose(m, n) for m, n in means), name
        # and the statistics are exactly those of the training images under these weights
        again = copy.deepcopy(a)
        recompute_batch_norm(again, running.x, augment_kind=running.dataset.augment, seed=1)
        for m, n in zip(a.modules(), again.modules()):
            if isinstance(m, nn.BatchNorm2d):
                assert torch.allclose(m.running_mean, n.running_mean, atol=1e-6)
                assert torch.allclose(m.running_var, n.running_var, rtol=1e-5)
    # what the runs record is computed with them: the same test accuracy as the network that has them
    last = RunStore(tmp_path / "recomputed").metrics()[-1]
    assert last["student_test_accuracy"] == settled.test_accuracy(settled.student)
    if method == "aml-kd":
        assert RunStore(tmp_path / "recomputed").metrics()[1]["teacher_test_accuracy"] == \
            settled.test_accuracy(settled.teacher)


def test_a_loaded_teacher_gets_the_statistics_of_this_runs_images(tmp_path):
    source = Run.create(tmp_path / "source", _digits("running"))
    source.run_until("propagate")
    source.close()
    loaded = Run.create(tmp_path / "loaded", replace(_digits("recomputed"),
                                                     teacher_checkpoint=str(tmp_path / "source" / "checkpoint.pt")))
    loaded.step()
    expected = copy.deepcopy(source.nets.teacher)
    recompute_batch_norm(expected, source.nets.x, augment_kind=source.dataset.augment, seed=1)
    pairs = [(m, n) for m, n in zip(loaded.nets.teacher.modules(), expected.modules()) if isinstance(m, nn.BatchNorm2d)]
    assert pairs and all(torch.allclose(m.running_var, n.running_var, rtol=1e-5) for m, n in pairs)
    assert not torch.allclose(pairs[0][0].running_var, source.nets.teacher.body[1].running_var)


def test_a_run_written_before_the_setting_goes_on_with_the_running_averages(tmp_path):
    Run.create(tmp_path / "old", _digits("recomputed")).close()
    path = tmp_path / "old" / "config.json"
    data = json.loads(path.read_text())
    assert data["train"]["bn_stats"] == "recomputed"
    del data["train"]["bn_stats"]
    path.write_text(json.dumps(data))
    assert RunStore(tmp_path / "old").config().train.bn_stats == "running"
    assert RunConfig().train.bn_stats == "recomputed"  # a new run recomputes


def test_a_bad_bn_stats_value_is_refused_by_name():
    with pytest.raises(ValueError, match="--bn-stats"):
        TrainConfig(bn_stats="precise")

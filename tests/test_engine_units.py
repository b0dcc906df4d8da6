"""Unit checks of the engine's small parts against their formulas."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from engine.method.ambiguity import (WeightNet, centre_similarity, class_centres, label_centre_weight,
                              predict_weights, train_weight_net)
from engine.errors import UserError
from engine.method.losses import gram, kd_loss, mixup_ce, relational_loss, weighted_ce
from engine.method.metrics import detection, label_metrics, relabel_counts, weight_auroc
from engine.method.noise import NoiseSpec, apply_noise, estimate_noise_rate, parse_noise_spec, transition_matrix
from engine.method.select import loss_cutoff, small_loss_mask


# ---------------------------------------------------------------- selection
@pytest.mark.parametrize("n,keep", [(10, 0.6), (101, 0.64), (7, 0.0), (7, 1.0), (1437, 0.635)])
def test_small_loss_mask_keeps_exactly_the_asked_fraction(n, keep):
    losses = np.random.default_rng(0).random(n)
    mask = small_loss_mask(losses, keep)
    assert mask.sum() == round(keep * n)
    if 0 < mask.sum() < n:
        assert losses[mask].max() <= losses[~mask].min()


def test_small_loss_mask_breaks_ties_by_index_and_cutoff_matches():
    losses = np.array([1.0, 0.5, 0.5, 0.5, 2.0])
    mask = small_loss_mask(losses, 0.4)
    assert mask.tolist() == [False, True, True, False, False]
    assert loss_cutoff(losses, 0.4) == 0.5


# ---------------------------------------------------------------- losses
def test_kd_loss_matches_the_formula():
    gen = torch.Generator().manual_seed(0)
    s, t, tau = torch.randn(5, 4, generator=gen), torch.randn(5, 4, generator=gen), 4.0
    p_t = torch.softmax(t / tau, 1)
    expected = (p_t * (p_t.log() - torch.log_softmax(s / tau, 1))).sum(1).mean() * tau ** 2
    assert torch.allclose(kd_loss(s, t, tau), expected, atol=1e-6)
    assert kd_loss(t, t, tau).abs() < 1e-6


def test_relational_loss_is_mse_of_normalised_gram_matrices():
    gen = torch.Generator().manual_seed(1)
    fs, ft = torch.randn(6, 3, generator=gen), torch.randn(6, 8, generator=gen)
    ns, nt = fs / fs.norm(dim=1, keepdim=True), ft / ft.norm(dim=1, keepdim=True)
    expected = ((ns @ ns.T - nt @ nt.T) ** 2).mean()
    assert torch.allclose(relational_loss(fs, ft), expected, atol=1e-6)
    assert torch.allclose(torch.diagonal(gram(fs)), torch.ones(6), atol=1e-6)


def test_mixup_ce_and_weighted_ce():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1])
    perm = torch.tensor([1, 0])
    lam = 0.3
    expected = lam * F.cross_entropy(logits, y) + (1 - lam) * F.cross_entropy(logits, y[perm])
    assert torch.allclose(mixup_ce(logits, y, perm, lam), expected)
    per_sample = F.cross_entropy(logits, y, reduction="none")
    w = torch.tensor([0.5, 0.0])
    assert torch.allclose(weighted_ce(logits, y, w), (0.5 * per_sample[0]) / 2)


# ---------------------------------------------------------------- noise
def test_symmetric_noise_corrupts_the_asked_fraction_uniformly():
    true = np.repeat(np.arange(10), 200)
    given = apply_noise(true, parse_noise_spec("symmetric:0.4"), 10, np.random.default_rng(0))
    wrong = np.mean(given != true)
    assert 0.33 < wrong < 0.39  # 0.4 * 9/10 = 0.36 in expectation
    assert set(np.unique(given)) == set(range(10))


def test_pairflip_noise_flips_to_the_next_class_only():
    true = np.repeat(np.arange(4), 100)
    given = apply_noise(true, parse_noise_spec("pairflip:0.25"), 4, np.random.default_rng(0))
    flipped = given != true
    assert flipped.sum() == 100
    assert np.all(given[flipped] == (true[flipped] + 1) % 4)


def test_matrix_noise_follows_the_transition_matrix(tmp_path):
    m = np.array([[0.7, 0.3], [0.0, 1.0]])
    path = tmp_path / "t.csv"
    np.savetxt(path, m, delimiter=",")
    true = np.repeat([0, 1], 5000)
    given = apply_noise(true, parse_noise_spec(f"matrix:{path}"), 2, np.random.default_rng(0))
    assert abs(np.mean(given[true == 0] == 1) - 0.3) < 0.03
    assert np.all(given[true == 1] == 1)


def test_noise_is_seeded_and_keeps_the_truth_untouched():
    true = np.arange(50) % 5
    before = true.copy()
    a = apply_noise(true, NoiseSpec("symmetric", 0.5), 5, np.random.default_rng(3))
    b = apply_noise(true, NoiseSpec("symmetric", 0.5), 5, np.random.default_rng(3))
    assert np.array_equal(a, b) and np.array_equal(true, before)


@pytest.mark.parametrize("spec", ["gaussian:0.2", "symmetric:1.0", "symmetric:-0.1", "symmetric:abc", "pairflip"])
def test_bad_noise_specs_are_rejected(spec):
    with pytest.raises(UserError):
        parse_noise_spec(spec)


def test_transition_matrix_rows_sum_to_one():
    for spec in ("symmetric:0.4", "pairflip:0.3", "none"):
        assert np.allclose(transition_matrix(parse_noise_spec(spec), 6).sum(1), 1.0)


def test_noise_rate_estimate_is_the_disagreement():
    assert estimate_noise_rate(np.array([0, 1, 2, 3]), np.array([0, 1, 0, 0])) == 0.5


# ---------------------------------------------------------------- ambiguity (AWE)
def _two_class_problem(n=200, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 2, n)
    features = np.stack([true * 2.0 - 1.0, np.zeros(n)], 1) + rng.normal(0, 0.4, (n, 2))
    given = true.copy()
    flip = rng.random(n) < noise
    given[flip] = 1 - given[flip]
    return features.astype(np.float32), true, given


def test_class_centres_are_unit_means_and_empty_class_is_zero():
    features = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]], dtype=np.float32)
    centres = class_centres(features, np.array([0, 1, 0]), 3)
    assert np.allclose(centres[0], [1, 0]) and np.allclose(centres[1], [0, 1]) and np.allclose(centres[2], 0)
    sim = centre_similarity(features, centres)
    assert sim.shape == (3, 3) and np.allclose(sim[:, 0], [1, 0, 1])
    w = label_centre_weight(sim, np.array([0, 1, 0]))
    assert np.allclose(w, 1 / (1 + np.exp(-1.0)))
    # directions count, not lengths: [10, 0] and [0, 1] average to the diagonal (raw sums would lean to x)
    mixed = class_centres(np.array([[10.0, 0.0], [0.0, 1.0]], np.float32), np.array([0, 0]), 1)
    assert np.allclose(mixed[0], [np.sqrt(0.5), np.sqrt(0.5)])


def test_awe_stays_in_range_does_not_collapse_and_separates_clean_from_noisy():
    features, true, given = _two_class_problem()
    torch.manual_seed(0)
    centres = class_centres(features, true, 2)  # centres from the cleaner (easy) view
    sim = centre_similarity(features, centres)
    sim_self = sim[np.arange(len(given)), given]
    easy = sim_self > np.quantile(sim_self, 0.3)  # proxy for small loss
    net = WeightNet(2)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    train_weight_net(net, opt, sim, given, easy.astype(np.float32), iterations=200)
    w = predict_weights(net, sim, given)
    assert np.all((w > 0) & (w < 1))
    assert w.std() > 0.05
    assert weight_auroc(w, given, true) > 0.9


# ---------------------------------------------------------------- metrics
def test_detection_and_relabel_counts_by_hand():
    true = np.array([0, 0, 1, 1, 2])
    given = np.array([0, 1, 1, 2, 2])  # samples 1 and 3 are noisy
    refined = np.array([0, 0, 0, 2, 2])  # fixes 1, breaks 2, misses 3
    d = detection(given, refined, true)
    assert d == {"detection_precision": 0.5, "detection_recall": 0.5}
    c = relabel_counts(given, refined, true)
    assert c == {"relabelled": 2, "wrong_to_right": 1, "right_to_wrong": 1}
    m = label_metrics(given, refined, None)
    assert m["refined_label_precision"] is None and m["detection_recall"] is None


def test_detection_precision_and_recall_differ_when_flagged_and_noisy_counts_differ():
    true = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    given = np.array([1, 0, 0, 1, 1, 0, 2, 0])  # noisy: 0, 5, 7 (three)
    refined = np.array([0, 1, 2, 0, 1, 1, 2, 2])  # flagged (changed): 0, 1, 2, 3, 5, 7 (six); caught 0, 5, 7
    d = detection(given, refined, true)
    assert d == {"detection_precision": 3 / 6, "detection_recall": 3 / 3}
    few = np.array([0, 0, 0, 1, 1, 0, 2, 0])  # flags only 0: one of three noisy
    assert detection(given, few, true) == {"detection_precision": 1.0, "detection_recall": 1 / 3}


class _Linear(torch.nn.Module):
    """A network without batch norm: (logits, features) like the engine's models."""

    def __init__(self, seed: int, d: int = 6, c: int = 3):
        super().__init__()
        torch.manual_seed(seed)
        self.body, self.head = torch.nn.Linear(d, 5), torch.nn.Linear(5, c)

    def forward(self, x):
        features = torch.relu(self.body(x))
        return self.head(features), features


@pytest.mark.parametrize("mode", ["warmup", "refine"])
def test_clean_kd_weight_adds_kd_on_the_unmixed_inputs_and_nothing_else(mode):
    from dataclasses import replace

    from engine.method.config import TrainConfig
    from engine.method.training import _student_terms

    student, teacher = _Linear(0), _Linear(1)
    x, y = torch.randn(8, 6, generator=torch.Generator().manual_seed(2)), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])

    def terms(cfg):
        return _student_terms(student, teacher, x, y, cfg, mode, np.random.default_rng(3),
                              torch.Generator().manual_seed(4), None)

    plain, clean = terms(TrainConfig()), terms(replace(TrainConfig(), clean_kd_weight=0.5))
    assert "kd_clean" not in plain and set(clean) == set(plain) | {"kd_clean"}
    for name, value in plain.items():  # the same mixing draws: every other term is unchanged
        assert torch.allclose(clean[name], value), name
    expected = 0.5 * kd_loss(student(x)[0], teacher(x)[0], TrainConfig().temperature)
    assert torch.allclose(clean["kd_clean"], expected, atol=1e-6) and expected > 0


class _HeadOnly(torch.nn.Module):
    """A teacher whose 'images' are its backbone features: forward(f) = (head(f), f)."""

    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, f):
        return self.head(f), f


@pytest.mark.parametrize("mode", ["kd", "warmup", "refine"])
def test_a_cached_frozen_teacher_gives_the_terms_of_its_head_on_the_mixed_features(mode):
    """With inputs that are the backbone's features, mixing images is mixing features: the cached teacher
    (head on the cached, mixed features) must give exactly the terms of running the teacher on the batch."""
    from dataclasses import replace

    from engine.method.config import TrainConfig
    from engine.method.training import CachedTeacher, _student_terms

    torch.manual_seed(5)
    head = torch.nn.Linear(6, 3)
    features = torch.randn(20, 6, generator=torch.Generator().manual_seed(2))  # (N, D): every sample's
    idx = torch.tensor([13, 2, 7, 19, 0, 5, 11, 8])  # a batch out of order
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    cfg = replace(TrainConfig(), clean_kd_weight=0.3)
    student = _Linear(0)

    def terms(teacher, with_idx):
        return _student_terms(student, teacher, features[idx], y, cfg, mode, np.random.default_rng(3),
                              torch.Generator().manual_seed(4), None, idx if with_idx else None)

    full, cached = terms(_HeadOnly(head), False), terms(CachedTeacher(head, features), True)
    assert set(full) == set(cached) and "kd" in full
    for name in full:
        assert torch.allclose(full[name], cached[name], atol=1e-6), name
    shifted = terms(CachedTeacher(head, features.roll(1, 0)), True)  # other samples' features: other KD
    assert not torch.allclose(shifted["kd"], full["kd"], atol=1e-4)

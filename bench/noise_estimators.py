"""Which noise-rate estimator is right with a weak teacher? Four estimators on stored runs, against the truth.

    .venv/bin/python bench/noise_estimators.py RUN_DIR [RUN_DIR ...] [--cache DIR] [--rounds 30] [--threads 1]

Each RUN_DIR is a finished or stopped run directory (``teacher_outputs.npz``,
``dataset.npz``, ``config.json``, a checkpoint with the teacher: its own or
``teacher_checkpoint``). Nothing is trained: the teacher's logits on the
training set are computed once from the checkpoint (checked against the
stored stage-0 predictions) and cached in ``--cache``. Estimators, each with
a basic bootstrap interval (``--rounds`` resamples of the samples, 90%):

- ``joint votes``: the current estimate, confident learning's joint on the
  calibrated neighbour votes of the teacher's kNN graph (engine.method.confident);
- ``joint probs``: the same joint on the teacher's own softmax (out-of-sample only
  on the held-out rows; the cifar10-small short runs hold none out, so their
  teacher's probabilities are in-sample, on samples it fitted for 5 epochs);
- ``joint held-out``: the joint on the held-out rows alone (where there are any);
- ``anchor``: the anchor-point transition on the teacher's softmax, temperature
  fitted to the given labels (engine.method.transition);
- ``HOC``: high-order consensus of each sample's and its 2 nearest neighbours'
  given labels on the teacher's graph features (engine.method.transition);
- where the test labels are the truth (``test_labels == "truth"``), two that read
  them as a trusted set: ``gold on test`` (gold loss correction, Hendrycks et al.
  2018: ``T[t, :]`` = the mean teacher softmax over the test samples truly ``t``)
  and ``trusted test`` (``Q = (G R^-1)^T``, engine.method.transition.trusted_transition:
  the classes the features mix cancel), on the teacher's softmax (``probs``) and on
  the neighbour votes of the training samples' given labels (``votes``; a test
  sample's neighbours are training samples), with ``Q`` clipped at 0 (``clip``) or
  fitted by non-negative least squares (``nnls``). The trusted set is here the
  run's test split: an analysis, not a method (nothing in a run reads test labels).

``--trusted-sizes 250 500 1000`` adds how the trusted estimator (on the votes)
fares with that many random test labels, beside counting the wrong labels among
as many random training samples (what a person's review of random samples gives).

Prints one row per run x estimator: estimate [interval], the bootstrap's standard
deviation, true rate, error; and A (clean ambiguity), the teacher's training-set
accuracy against the truth, and the share of samples whose nearest neighbour
has their clean class (what HOC assumes is near 1).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from engine.method import confident, transition  # noqa: E402
from engine.method.config import RunConfig  # noqa: E402
from engine.method.graph import build_graph  # noqa: E402

LEVEL = 0.9


def teacher_arrays(run_dir: Path, cache: Path) -> dict:
    """The run's given and true labels, held-out mask, graph features and the stage-0 teacher's logits, and the
    teacher's logits and features on the test samples with their labels."""
    out = cache / (run_dir.name + ".npz")
    arrays = {}
    if out.is_file():
        with np.load(out) as data:
            arrays = {k: data[k] for k in data.files}
        if "test_logits" in arrays:
            return arrays
    from engine.data import dataset_for_config
    from engine.steps import checkpoint as ckpt
    from engine.steps.networks import Networks
    from engine.steps.run import given_labels
    from engine.method.training import forward_all

    config = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    dataset = dataset_for_config(config)
    given = given_labels(config, dataset)
    saved = np.load(run_dir / "dataset.npz")
    stored = np.load(run_dir / "teacher_outputs.npz")
    if not np.array_equal(saved["given"], given):
        raise SystemExit(f"{run_dir}: the given labels do not reproduce")
    nets = Networks(config, dataset, given, torch.device("cpu"))
    nets.teacher.load_state_dict(ckpt.read(config.teacher_checkpoint or run_dir / "checkpoint.pt")["teacher"])
    if "logits" not in arrays:
        arrays["logits"] = nets.teacher_outputs().logits
    agree = float(np.mean(arrays["logits"].argmax(1) == stored["pred"]))
    if agree < 0.999:
        raise SystemExit(f"{run_dir}: the checkpoint's teacher is not stage 0's ({agree:.3f} of predictions agree)")
    test = forward_all(nets.teacher, nets.x_test)
    arrays.update({"features": stored["features"], "given": given, "true": saved["true"],
                   "holdout": saved["holdout"], "k": np.array(config.graph.k), "power": np.array(config.graph.power),
                   "seed": np.array(config.seed), "test_logits": test.logits, "test_features": test.features,
                   "test_true": np.asarray(dataset.test_true, np.int64),
                   "test_is_truth": np.array(dataset.test_labels == "truth")})
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    return arrays


def test_votes(train_features, test_features, given, num_classes, k, power) -> np.ndarray:
    """``(M, C)``: each test sample's vote of its ``k`` most cosine-similar training samples' given labels,
    weighted by similarity ** power (the teacher graph's edges, from outside the training set)."""
    a = train_features / np.maximum(np.linalg.norm(train_features, axis=1, keepdims=True), 1e-12)
    b = test_features / np.maximum(np.linalg.norm(test_features, axis=1, keepdims=True), 1e-12)
    votes = np.zeros((len(b), num_classes))
    for start in range(0, len(b), 1024):
        sim = b[start:start + 1024] @ a.T
        idx = np.argpartition(-sim, k, axis=1)[:, :k]
        w = np.clip(np.take_along_axis(sim, idx, 1), 0, None) ** power
        rows = np.repeat(np.arange(len(idx)), k)
        np.add.at(votes, (start + rows, given[idx].ravel()), w.ravel())
    return votes / np.maximum(votes.sum(1, keepdims=True), 1e-12)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def fit_temperature(logits: np.ndarray, given: np.ndarray) -> float:
    """The softmax temperature that maximises the likelihood of the given labels (P(given | x) calibrated)."""
    from scipy.optimize import minimize_scalar

    rows = np.arange(len(given))

    def nll(log_t):
        return -np.mean(np.log(softmax(logits / np.exp(log_t))[rows, given] + 1e-12))

    return float(np.exp(minimize_scalar(nll, bounds=(-3, 3), method="bounded").x))


def joint_rate(given, probs, num_classes) -> float:
    return confident.noise_rate_from_joint(confident._joint(given, probs, num_classes))


def basic_interval(values, point):
    tail = 100 * (1 - LEVEL) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(np.clip(2 * point - hi, 0, 1)), float(np.clip(2 * point - lo, 0, 1))


def with_interval(fn, n: int, rounds: int, seed: int):
    """``fn(index)`` on all samples and on ``rounds`` bootstrap resamples: (point, low, high)."""
    point = fn(np.arange(n))
    rng = np.random.default_rng([seed, 11])
    values = [fn(rng.integers(0, n, n)) for _ in range(rounds)]
    return (point, *basic_interval(values, point), float(np.std(values)))


def analyse(arrays: dict, rounds: int) -> tuple[list[tuple], dict]:
    given, true = arrays["given"].astype(np.int64), arrays["true"].astype(np.int64)
    logits, features, holdout = arrays["logits"], arrays["features"], arrays["holdout"].astype(bool)
    seed, num_classes, n = int(arrays["seed"]), logits.shape[1], len(given)
    from engine.method.config import GraphConfig

    graph = build_graph(features.astype(np.float32), GraphConfig(k=int(arrays["k"]), power=float(arrays["power"])))
    weights = np.clip(graph.neighbor_sim.astype(np.float64), 0, None) ** float(arrays["power"])
    votes = confident.neighbour_votes(graph.neighbor_idx, weights, given, num_classes)
    vote_probs, _ = confident.calibrate_votes(votes, given)
    temperature = fit_temperature(logits, given)
    probs = softmax(logits / temperature)
    rows = []
    est = confident.estimate_noise(given, vote_probs, seed, rounds)
    boot = [confident.noise_rate_from_joint(confident._joint(given[i], vote_probs[i], num_classes))
            for i in confident._resamples(n, seed, rounds)]
    rows.append(("joint votes", est.joint_rate, *confident._interval(boot, est.joint_rate), float(np.std(boot))))
    rows.append(("joint probs", *with_interval(lambda i: joint_rate(given[i], probs[i], num_classes), n, rounds,
                                               seed)))
    if holdout.sum() >= 5 * num_classes:
        h = np.flatnonzero(holdout)
        rows.append((f"joint held-out ({len(h)})", *with_interval(
            lambda i: joint_rate(given[h][i], probs[h][i], num_classes), len(h), rounds, seed)))
    rows.append(("anchor", *with_interval(lambda i: transition.anchor_transition(probs[i], given[i],
                                                                                  num_classes)[0], n, rounds, seed)))
    triplets = transition.two_nn_triplets(graph.neighbor_idx, given)
    rows.append(("HOC", *with_interval(lambda i: transition.hoc_fit(
        *transition.consensus_counts(triplets[i], num_classes), steps=600)[0], len(triplets), max(rounds // 3, 5),
        seed)))
    test_true = arrays["test_true"].astype(np.int64)
    if bool(arrays["test_is_truth"]) and (test_true >= 0).sum() >= 5 * num_classes:
        known = np.flatnonzero(test_true >= 0)
        t_probs = softmax(arrays["test_logits"][known] / temperature)
        t_votes = test_votes(features.astype(np.float64), arrays["test_features"][known].astype(np.float64), given,
                             num_classes, int(arrays["k"]), float(arrays["power"]))
        tt = test_true[known]
        m = len(known)

        def trusted(train_scores, test_scores, fit):
            def fn(i):
                j = rng_t.integers(0, m, m)
                return transition.trusted_transition(train_scores[i], given[i], test_scores[j], tt[j], num_classes,
                                                     fit)[0]
            rng_t = np.random.default_rng([seed, 13])
            point = transition.trusted_transition(train_scores, given, test_scores, tt, num_classes, fit)[0]
            values = [fn(rng_t.integers(0, n, n)) for _ in range(rounds)]
            return (point, *basic_interval(values, point), float(np.std(values)))

        def gold(train_scores, test_scores):  # Hendrycks et al.: T = R, the prior from the given frequencies
            def rate(i, j):
                r = transition.class_means(test_scores[j], tt[j], num_classes)
                freq = np.bincount(given[i], minlength=num_classes) / len(i)
                return transition.rate_of(r, transition.prior_from_given(r, freq))
            rng_g = np.random.default_rng([seed, 17])
            point = rate(np.arange(n), np.arange(m))
            values = [rate(rng_g.integers(0, n, n), rng_g.integers(0, m, m)) for _ in range(rounds)]
            return (point, *basic_interval(values, point), float(np.std(values)))

        # the lean of a training sample's vote toward its own given label: its vote for that label against
        # a test image's of the same true class (R[true, given]); equal if the votes ignored the labels' noise
        r_votes = transition.class_means(t_votes, tt, num_classes)
        right = given == true
        lean = {kind: (float(np.mean(votes[mask, given[mask]])), float(np.mean(r_votes[true[mask], given[mask]])))
                for kind, mask in (("right", right), ("wrong", ~right)) if mask.any()}
        rows.append((f"gold on test ({m}), probs", *gold(probs, t_probs)))
        for fit in ("clip", "nnls"):
            rows.append((f"trusted test ({m}), probs, {fit}", *trusted(probs, t_probs, fit)))
            rows.append((f"trusted test ({m}), votes, {fit}", *trusted(votes, t_votes, fit)))
    else:
        lean = {}
    facts = {"lean": lean, "true": float(np.mean(given != true)), "A": est.ambiguity, "teacher_acc": float(np.mean(
        logits.argmax(1) == true)), "temperature": temperature,
        "nn_same_clean": float(np.mean(true[graph.neighbor_idx[:, 0]] == true))}
    return rows, facts


def trusted_sizes(arrays: dict, sizes: list[int], draws: int = 40) -> list[str]:
    """Rows: the trusted estimator on the votes with ``m`` random test labels (``draws`` subsets), mean error and
    spread per fit, beside counting the wrong labels among ``m`` random training samples (a person's review)."""
    given, true = arrays["given"].astype(np.int64), arrays["true"].astype(np.int64)
    num_classes, n = arrays["logits"].shape[1], len(given)
    from engine.method.config import GraphConfig

    features = arrays["features"].astype(np.float32)
    graph = build_graph(features, GraphConfig(k=int(arrays["k"]), power=float(arrays["power"])))
    weights = np.clip(graph.neighbor_sim.astype(np.float64), 0, None) ** float(arrays["power"])
    votes = confident.neighbour_votes(graph.neighbor_idx, weights, given, num_classes)
    tt = arrays["test_true"].astype(np.int64)
    tv = test_votes(features.astype(np.float64), arrays["test_features"].astype(np.float64), given, num_classes,
                    int(arrays["k"]), float(arrays["power"]))
    rate = float(np.mean(given != true))
    rng = np.random.default_rng([int(arrays["seed"]), 19])
    rows = []
    for m in sizes:
        if m > len(tt):
            rows.append(f"| {m} | more than the {len(tt)} test labels | - | - |")
            continue
        cells = []
        for fit in ("nnls", "clip"):
            values = []
            for _ in range(draws):
                j = rng.choice(len(tt), m, replace=False)
                values.append(transition.trusted_transition(votes, given, tv[j], tt[j], num_classes, fit)[0])
            cells.append(f"{np.mean(values) - rate:+.3f} ({np.std(values):.3f})")
        counted = [np.mean(given[k] != true[k]) for k in (rng.choice(n, m, replace=False) for _ in range(draws))]
        rows.append(f"| {m} | {cells[0]} | {cells[1]} | {np.std(counted):.3f} |")
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--cache", default="/tmp/noise_estimators")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--trusted-sizes", nargs="*", type=int, default=[],
                   help="also: the trusted estimator with this many random test labels, against counting as many "
                        "reviewed training labels")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    print("| run | A | teacher acc (true) | 1-NN same clean class | estimator | rate [90%] | bootstrap sd | true | "
          "error |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in a.runs:
        run_dir = Path(run)
        if not (run_dir / "teacher_outputs.npz").is_file():
            print(f"  {run}: no teacher_outputs.npz (a run directory past stage 0 is needed)", file=sys.stderr)
            return 2
        rows, facts = analyse(teacher_arrays(run_dir, Path(a.cache)), a.rounds)
        for name, point, low, high, spread in rows:
            print(f"| {run_dir.name} | {facts['A']:.3f} | {facts['teacher_acc']:.3f} | {facts['nn_same_clean']:.3f} "
                  f"| {name} | {point:.3f} [{low:.3f}, {high:.3f}] | {spread:.3f} | {facts['true']:.3f} | "
                  f"{point - facts['true']:+.3f} |", flush=True)
        for kind, (train_vote, test_like) in facts["lean"].items():
            print(f"  {run_dir.name}: vote for the given label where it is {kind}: {train_vote:.3f} on the training "
                  f"samples, {test_like:.3f} on test images of the same true class", flush=True)
    if a.trusted_sizes:
        print("\n| run | trusted labels | votes NNLS: mean error (sd) | votes clip: mean error (sd) | "
              "counting as many reviewed training labels: sd |")
        print("|---|---|---|---|---|")
        for run in a.runs:
            arrays = teacher_arrays(Path(run), Path(a.cache))
            if bool(arrays["test_is_truth"]):
                for row in trusted_sizes(arrays, a.trusted_sizes):
                    print(f"| {Path(run).name} {row}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

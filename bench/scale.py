"""At scale: kNN search, one propagation and ``vectors:`` runs on 100k and 1M synthetic embeddings.

Usage::

    .venv/bin/python bench/scale.py [--n 100000 [--n 1000000]] [--parts knn,propagate,vectors]
                                    [--threads 1] [--workdir /tmp/amlkd-scale]

Data (:func:`clustered_embeddings`, seeded): ``C = 10`` classes, each a mixture of 5 Gaussian modes in a
16-dimensional latent space (mode means drawn N(0, 2^2), unit spread inside a mode: separation 2), mapped into
128 dimensions by a random orthonormal map plus isotropic noise 0.05; true label = the mode's class; given labels
= symmetric noise at 20% (each label moved to another class at random with probability 0.2). The 16-D latent
spread inside a mode is what makes a neighbour search hard (a blob of high intrinsic dimension); real embeddings
are not easier than that.

Parts, each measured in its own process (``--child``), so that the peak RSS (``resource.getrusage`` maxrss of that
process) is its own:

- ``knn``: exact, ivf and hnsw (engine.method.search, as a graph-building step calls it): index build, tuning of
  its search parameter, the search of all rows, the recall check; recall@20 against exact search. At 100k exact
  search runs in full and ivf's and hnsw's recall is measured on every row; at 1M exact search is timed on 1,000
  sampled queries and *extrapolated* (x N / 1,000), and recall is measured on 1,000 sampled queries (the engine's
  own check).
- ``propagate``: one propagation as the propagate step runs it: build_graph (``--knn auto``), then
  ``propagate`` of one-hot given labels (alpha 0.99, 20 CG iterations), and the precision of its argmax labels.
- ``vectors``: ``python -m engine run --dataset vectors:FILE.npz --noise symmetric:0.2`` on the same data (MLP
  teacher and student), 1 teacher epoch, stage 0, 1 refine epoch: seconds of each step from metrics.jsonl.

Goals (issue 19): at 1M ivf recall@20 >= 0.95 and >= 10x faster than exact; kNN + propagation <= 60 s at 1M.
Besides wall seconds each child reports its CPU seconds (user + system): on a machine shared with others the wall
time includes waiting for a core, the CPU time does not.

``--parts knn,propagate,vectors,app`` adds the app's page open times at the same sizes (bench/scale_app.py).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DIM, CLASSES, MODES, LATENT, SEPARATION, SPREAD, NOISE = 128, 10, 5, 16, 2.0, 0.05, 0.2
K = 20
SAMPLED_QUERIES = 1_000
FULL_EXACT_MAX = 200_000  # above this, exact search is timed on sampled queries and extrapolated
GOALS = {"recall": 0.95, "speedup": 10.0, "knn_plus_lp_seconds": 60.0}


# ---------------------------------------------------------------- data
def clustered_embeddings(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Synthetic embeddings ``(n, 128)`` float32, true labels ``(n,)`` and given labels ``(n,)`` (20% symmetric)."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((CLASSES * MODES, LATENT)) * SEPARATION  # (M, L)
    basis = np.linalg.qr(rng.standard_normal((DIM, LATENT)))[0].T.astype(np.float32)  # (L, D), orthonormal rows
    mode = rng.integers(0, CLASSES * MODES, n)
    features = np.empty((n, DIM), np.float32)
    for start in range(0, n, 100_000):
        m = mode[start:start + 100_000]
        latent = (means[m] + rng.standard_normal((len(m), LATENT))).astype(np.float32)
        features[start:start + len(m)] = latent @ basis + SPREAD * rng.standard_normal((len(m), DIM), np.float32)
    true = (mode // MODES).astype(np.int64)
    flip = rng.random(n) < NOISE
    given = np.where(flip, (true + rng.integers(1, CLASSES, n)) % CLASSES, true)
    return features, true, given


def data_file(workdir: Path, n: int) -> Path:
    """``workdir/embeddings-N.npz`` (features, keys, labels = the truth, given), written once."""
    path = workdir / f"embeddings-{n}.npz"
    if not path.exists():
        features, true, given = clustered_embeddings(n)
        keys = np.array([f"s{i:07d}" for i in range(n)])
        workdir.mkdir(parents=True, exist_ok=True)
        np.savez(path.with_suffix(".tmp.npz"), features=features, keys=keys, labels=true, given=given)
        os.replace(path.with_suffix(".tmp.npz"), path)
    return path


def _load(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {name: z[name] for name in ("features", "labels", "given")}


# ---------------------------------------------------------------- children: one measurement each
def _usage() -> dict:
    """Peak RSS and CPU seconds of this whole process (imports and data loading included)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    return {"peak_rss_mib": me.ru_maxrss / 1024, "process_cpu_seconds": me.ru_utime + me.ru_stime}


class Clock:
    """Wall and CPU seconds (this process) since the last lap."""

    def __init__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        self.start = (self.wall, self.cpu)

    def lap(self) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        out = (wall - self.wall, cpu - self.cpu)
        self.wall, self.cpu = wall, cpu
        return out

    def total(self) -> tuple[float, float]:
        return time.perf_counter() - self.start[0], time.process_time() - self.start[1]


def child_knn(path: Path, method: str) -> dict:
    import faiss

    from engine.method import search
    from engine.method.search import drop_self

    x = _load(path)["features"]
    n = len(x)
    faiss.normalize_L2(x)
    clock = Clock()
    if method == "exact":
        index = search.build_index(x, "exact", use_gpu=False)
        if n <= FULL_EXACT_MAX:
            sim, idx = index.search(x, K + 1)
            wall, cpu = clock.total()
            np.save(path.with_name(f"exact-{n}.npy"), drop_self(idx, sim)[0].astype(np.int32))
            return {"seconds": wall, "cpu": cpu, "recall": 1.0, "extrapolated": False}
        rows = np.sort(np.random.default_rng(0).choice(n, SAMPLED_QUERIES, replace=False))
        index.search(x[rows], K + 1)
        wall, cpu = clock.total()
        scale = n / SAMPLED_QUERIES
        return {"seconds": wall * scale, "cpu": cpu * scale, "recall": 1.0, "extrapolated": True}
    parts = {}
    index = search.build_index(x, method, use_gpu=False)
    parts["build"] = clock.lap()
    reach, _ = search.tune_reach(index, x, method, K)
    parts["tune"] = clock.lap()
    sim, idx = search.search_rows(index, x, K + 1)
    search.fill_missing(x, sim, idx)
    neighbor_idx = drop_self(idx, sim)[0]
    parts["search"] = clock.lap()
    recall, queries = search.recall_at_k(x, neighbor_idx)
    parts["recall_check"] = clock.lap()
    wall, cpu = clock.total()
    out = {"seconds": wall, "cpu": cpu, **{name: c for name, (_, c) in parts.items()}, "reach": reach,
           "recall": recall, "recall_queries": queries, "extrapolated": False}
    exact_file = path.with_name(f"exact-{n}.npy")
    if exact_file.exists():  # recall on every row
        exact = np.load(exact_file)
        out["recall_all_rows"] = float(np.mean((exact[:, :, None] == neighbor_idx[:, None, :]).any(2)))
    return out


def child_propagate(path: Path) -> dict:
    from engine.method.config import GraphConfig, PropagationConfig
    from engine.method.graph import build_graph
    from engine.method.propagate import propagate, seed_matrix

    data = _load(path)
    clock = Clock()
    graph = build_graph(data["features"], GraphConfig(k=K, knn="auto"))
    graph_wall, graph_cpu = clock.lap()
    result = propagate(graph.normalized, seed_matrix(data["given"], CLASSES), PropagationConfig(),
                       device="cpu")
    lp_wall, lp_cpu = clock.lap()
    refined = np.asarray(result.scores).argmax(1)
    return {"graph": graph_wall, "lp": lp_wall, "seconds": graph_wall + lp_wall, "graph_cpu": graph_cpu,
            "lp_cpu": lp_cpu, "cpu": graph_cpu + lp_cpu, "index": graph.search.method,
            "recall": graph.search.recall, "iterations": result.iterations,
            "given_precision": float(np.mean(data["given"] == data["labels"])),
            "refined_precision": float(np.mean(refined == data["labels"]))}


def child_vectors(path: Path, workdir: Path, threads: int) -> dict:
    from engine.cli import main
    from engine.rundir.store import RunStore

    out = workdir / f"run-{path.stem}"
    args = ["run", "--dataset", f"vectors:{path}", "--noise", f"symmetric:{NOISE}", "--out", str(out), "--force",
            "--threads", str(threads), "--teacher-epochs", "1", "--teacher-holdout", "0", "--warmup-epochs", "0",
            "--refine-epochs", "1", "--mutual-epochs", "0", "--batch-size", "512"]
    t0 = time.perf_counter()
    code = main(args)
    if code:
        raise SystemExit(f"engine run exited {code}")
    metrics = RunStore(out).metrics()
    by_phase = {m["phase"]: m for m in metrics}
    return {"seconds": time.perf_counter() - t0,
            **{f"{phase}_seconds": by_phase[phase]["step_seconds"] for phase in ("teacher", "propagate", "refine")},
            "knn_index": by_phase["propagate"].get("knn_index"), "knn_recall": by_phase["propagate"].get("knn_recall"),
            "refined_precision": by_phase["refine"].get("refined_label_precision"),
            "student_test_accuracy": by_phase["refine"].get("student_test_accuracy")}


def run_child(part: str, args: argparse.Namespace, n: int, method: str = "") -> dict:
    """One measurement in a fresh process; its JSON result with its own peak RSS and CPU seconds."""
    path = data_file(Path(args.workdir), n)
    # PASSIVE: an OpenMP thread waiting at a barrier sleeps instead of spinning; on a machine shared with other
    # jobs a spinning thread counts as CPU seconds and takes the core its partner needs (2 threads, spinning:
    # exact search of 1,000 queries at 1M counted 16.5 CPU-s, against 3.7 on one thread)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "OMP_WAIT_POLICY": "PASSIVE"}
    cmd = [sys.executable, __file__, "--child", part, "--data", str(path), "--method", method,
           "--threads", str(args.threads), "--workdir", args.workdir]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child_main(args: argparse.Namespace) -> None:
    import faiss
    import torch

    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    path = Path(args.data)
    if args.child == "knn":
        result = child_knn(path, args.method)
    elif args.child == "propagate":
        result = child_propagate(path)
    else:
        result = child_vectors(path, Path(args.workdir), args.threads)
    print(json.dumps({**result, **_usage()}))


# ---------------------------------------------------------------- tables
def _f(value, fmt="{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def knn_table(args, sizes) -> list[dict]:
    rows = []
    for n in sizes:
        results = {m: run_child("knn", args, n, m) for m in args.methods.split(",")}
        exact = results["exact"].get("cpu")
        print(f"\nkNN, N = {n:,} x {DIM}, k = {K}, {args.threads} thread(s); seconds of CPU (wall: with the waits "
              "for a shared core); build, tune, search, check: CPU seconds of each part")
        print(f"{'index':<7}{'wall s':>10}{'cpu s':>9}{'build':>8}{'tune':>7}{'search':>8}{'check':>7}"
              f"{'reach':>7}{'recall@20':>11}{'all rows':>10}{'peak MiB':>10}{'x exact':>9}")
        for method, r in results.items():
            if "error" in r:
                print(f"{method:<7} failed: {r['error']}")
                continue
            note = " (extrapolated from 1,000 queries)" if r.get("extrapolated") else ""
            speedup = exact / r["cpu"] if exact else None
            print(f"{method:<7}{r['seconds']:>10.1f}{r['cpu']:>9.1f}{_f(r.get('build')):>8}"
                  f"{_f(r.get('tune')):>7}{_f(r.get('search')):>8}{_f(r.get('recall_check')):>7}"
                  f"{_f(r.get('reach'), '{}'):>7}{r['recall']:>11.4f}{_f(r.get('recall_all_rows'), '{:.4f}'):>10}"
                  f"{r['peak_rss_mib']:>10.0f}{_f(speedup, '{:.1f}x'):>9}{note}")
            rows.append({"part": "knn", "n": n, "method": method, **r})
        ivf = results["ivf"]
        if exact and "error" not in ivf:
            print(f"goal (at 1M; here N = {n:,}): ivf recall@20 {ivf['recall']:.3f} >= {GOALS['recall']} "
                  f"{'met' if ivf['recall'] >= GOALS['recall'] else 'MISSED'}; "
                  f"{exact / ivf['cpu']:.1f}x faster than exact (CPU) >= {GOALS['speedup']:.0f}x "
                  f"{'met' if exact / ivf['cpu'] >= GOALS['speedup'] else 'MISSED'}")
    return rows


def _part_rows(part: str, args, sizes, title: str, header: str, line) -> list[dict]:
    """Measure ``part`` at each size in its own process (:func:`run_child`) and print ``title``, ``header`` and
    ``line(n, result)`` a row; the results as rows."""
    rows = []
    print(title)
    print(header)
    for n in sizes:
        r = run_child(part, args, n)
        if "error" in r:
            print(f"{n:>10,} failed: {r['error']}")
            continue
        print(line(n, r))
        rows.append({"part": part, "n": n, **r})
    return rows


def _propagate_line(n: int, r: dict) -> str:
    limit = GOALS["knn_plus_lp_seconds"]  # wall seconds on this machine (CPU seconds beside them)
    verdict = "met" if r["seconds"] <= limit else f"{r['seconds'] / limit:.2f}x over"
    return (f"{n:>10,}{r['index']:>7}{r['recall']:>8.3f}{r['graph']:>9.1f}{r['lp']:>7.1f}{r['seconds']:>9.1f}"
            f"{r['graph_cpu']:>10.1f}{r['lp_cpu']:>8.1f}{r['cpu']:>8.1f}{r['peak_rss_mib']:>10.0f}"
            f"{r['given_precision']:>12.3f}{r['refined_precision']:>9.3f}{verdict:>17}")


def propagate_table(args, sizes) -> list[dict]:
    return _part_rows(
        "propagate", args, sizes,
        f"\nOne propagation (build_graph --knn auto + propagate, alpha 0.99, 20 CG iterations), "
        f"{args.threads} thread(s)",
        f"{'N':>10}{'index':>7}{'recall':>8}{'graph s':>9}{'LP s':>7}{'total s':>9}{'graph cpu':>10}{'LP cpu':>8}"
        f"{'cpu s':>8}{'peak MiB':>10}{'given prec':>12}{'LP prec':>9}{'goal 60 s (wall)':>17}",
        _propagate_line)


def _vectors_line(n: int, r: dict) -> str:
    return (f"{n:>10,}{r['teacher_seconds']:>9.1f}{r['propagate_seconds']:>9.1f}{r['refine_seconds']:>8.1f}"
            f"{r['seconds']:>9.1f}{r['process_cpu_seconds']:>8.1f}{r['peak_rss_mib']:>10.0f}{r['knn_index']:>6}"
            f"{r['knn_recall']:>8.3f}{_f(r['refined_precision'], '{:.3f}'):>14}"
            f"{_f(r['student_test_accuracy'], '{:.3f}'):>13}")


def vectors_table(args, sizes) -> list[dict]:
    return _part_rows(
        "vectors", args, sizes,
        f"\nvectors: runs (mlp-large -> mlp-small, batch 512, {args.threads} thread(s)): seconds per step",
        f"{'N':>10}{'teacher':>9}{'stage 0':>9}{'refine':>8}{'total s':>9}{'cpu s':>8}{'peak MiB':>10}"
        f"{'kNN':>6}{'recall':>8}{'refined prec':>14}{'student acc':>13}",
        _vectors_line)


# ---------------------------------------------------------------- the place for rows measured elsewhere
def app_table(args, sizes: list[int]) -> list[dict]:
    """The app at these sizes: bench/scale_app.py's page open times in headless Chromium (the Embeddings page's
    first drawn chart, goal <= 5 s at 1M once the projection is cached); it prints its own table."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import scale_app

    scale_app.main(["--sizes", *[str(n) for n in sizes]])
    return []


#: Parts measured by other scripts, run after these (name, function(args, sizes) -> rows), each printing its own
#: table: the app's pages at these sizes (``--parts ...,app``).
EXTRA_PARTS: list[tuple[str, object]] = []

PARTS = {"knn": knn_table, "propagate": propagate_table, "vectors": vectors_table, "app": app_table}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, action="append", help="sizes (repeatable; default 100000)")
    p.add_argument("--parts", default="knn,propagate,vectors")
    p.add_argument("--methods", default="exact,ivf,hnsw", help="kNN indexes to measure (exact first)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of faiss and torch in each child")
    p.add_argument("--workdir", default="/tmp/amlkd-scale", help="data files and runs (kept between calls)")
    p.add_argument("--json", default=None, help="also write every row to this JSON file")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--data", default=None, help=argparse.SUPPRESS)
    p.add_argument("--method", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        _child_main(args)
        return 0
    sizes = args.n or [100_000]
    rows = []
    for part in args.parts.split(","):
        rows += PARTS[part](args, sizes)
    for name, function in EXTRA_PARTS:
        rows += function(args, sizes)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Snapshot format options at scale: write time, disk per step, and the time to read 200 rows of 3 fields.

Usage::

    .venv/bin/python bench/snapshot_format.py [--n 1000000] [--d 128] [--c 10] [--k 20] [--out DIR]

One refine step's snapshot (every field a refine step writes, synthetic values of the listed dtypes and shapes:
``engine.rundir.snapshot.FIELDS``), with and without the features, written three ways:

(a) ``npz-compressed``: one ``np.savez_compressed`` file (the format until 2026-12-07);
(b) ``npz-stored``: one ``np.savez`` file (no compression);
(c) ``npy-per-field``: a folder of uncompressed ``.npy`` files, read with ``np.load(mmap_mode="r")`` (the
    format now: ``engine.rundir.store.RunStore.write_snapshot``).

Reads: 200 random rows of ``refined``, ``weight`` and ``lp_top_scores`` (what a page of the Review queue
shows), from a cold start of the reader (a new ``np.load``; the page cache is dropped where the OS lets us,
else the file was just written and is warm: said in the output). Prints a table and the ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.rundir import snapshot  # noqa: E402
from engine.rundir.store import RunStore  # noqa: E402

SHOWN = ("refined", "weight", "lp_top_scores")


def synthetic_snapshot(n: int, d: int, c: int, k: int, features: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """Arrays of a refine step with the listed dtypes and shapes (random values: compression sees noise-like
    floats, as real losses and similarities are, and small integers, as labels are)."""
    rng = np.random.default_rng(seed)
    width = {"(N,)": None, "(N, T)": min(3, c), "(N, k)": k, "(N, D)": d, "(N, C)": c}
    out = {}
    for name, field in snapshot.FIELDS.items():
        if "refine" not in field.phases or (name == "features" and not features):
            continue
        shape = (n,) if width[field.shape] is None else (n, width[field.shape])
        dtype = np.dtype(field.dtype)
        if dtype == bool:
            values = rng.random(shape) < 0.3
        elif np.issubdtype(dtype, np.integer):
            values = rng.integers(0, n if name == "neighbor_idx" else c, size=shape)
        else:
            values = rng.random(shape, dtype=np.float32)
        out[name] = values.astype(dtype)
    return out


def _drop_cache(path: Path) -> bool:
    """Ask the OS to forget the file's pages (Linux: posix_fadvise DONTNEED); True when it could."""
    try:
        for p in ([path] if path.is_file() else list(path.glob("*.npy"))):
            fd = os.open(p, os.O_RDONLY)
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
        return True
    except (AttributeError, OSError):
        return False


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.glob("*.npy")) if path.is_dir() else path.stat().st_size


def measure(arrays: dict[str, np.ndarray], folder: Path, rows: np.ndarray) -> list[tuple]:
    out = []
    for option in ("npz-compressed", "npz-stored", "npy-per-field"):
        path = folder / option
        started = time.perf_counter()
        if option == "npy-per-field":
            store = RunStore(folder / "run")
            store.write_snapshot(1, arrays)
            path = store.snapshot_path(1)
        else:
            with open(path, "wb") as fh:
                (np.savez_compressed if option == "npz-compressed" else np.savez)(fh, **arrays)
                fh.flush()
                os.fsync(fh.fileno())
        write = time.perf_counter() - started
        cold = _drop_cache(path)
        started = time.perf_counter()
        if path.is_dir():
            shown = snapshot.rows(store, 1, SHOWN, rows)
        else:
            with np.load(path, allow_pickle=False) as data:
                shown = {name: data[name][rows] for name in SHOWN}
        read = time.perf_counter() - started
        assert all(len(v) == len(rows) for v in shown.values())
        out.append((option, write, _size(path), read, cold))
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--d", type=int, default=128)
    parser.add_argument("--c", type=int, default=10)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--out", default=None, help="folder for the files (default: a temporary folder)")
    a = parser.parse_args(argv)
    rows = np.sort(np.random.default_rng(1).choice(a.n, size=200, replace=False))
    print(f"N={a.n:,} D={a.d} C={a.c} k={a.k}: one refine step's snapshot; read = 200 random rows of "
          f"{', '.join(SHOWN)}")
    print(f"{'snapshot':<16} {'option':<15} {'write s':>8} {'MB on disk':>11} {'read 200x3 ms':>14} {'cold':>5}")
    results = {}
    with tempfile.TemporaryDirectory(dir=a.out) as tmp:
        for features in (True, False):
            arrays = synthetic_snapshot(a.n, a.d, a.c, a.k, features)
            label = "with features" if features else "no features"
            for option, write, size, read, cold in measure(arrays, Path(tmp), rows):
                results[(label, option)] = (write, size, read)
                print(f"{label:<16} {option:<15} {write:8.2f} {size / 1e6:11.1f} {read * 1e3:14.1f} "
                      f"{'yes' if cold else 'no':>5}")
    for label in ("with features", "no features"):
        base, new = results[(label, "npz-compressed")], results[(label, "npy-per-field")]
        print(f"{label}: npy-per-field vs npz-compressed: write {base[0] / new[0]:.1f}x faster, "
              f"disk {new[1] / base[1]:.2f}x, read {base[2] / new[2]:.0f}x faster")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Fixtures shared by every test module.

Tiny finished runs, made once per test session and shared (treat them as
read-only; copy one with ``shutil.copytree`` before changing it):

- ``tiny_moons_run``: ``pathlib.Path`` of a finished AML-KD run on ``moons``
  (600 points, 2 classes, ``symmetric:0.3``), 8 steps: teacher x2,
  propagate, warmup, refine x2, mutual x2.
- ``tiny_digits_run``: the same schedule on ``digits`` (1,437 images,
  10 classes, ``symmetric:0.4``), 8 steps.
- ``make_tiny_run(name, dataset=..., noise=..., method=..., steps=None)``:
  the factory behind them, session-scoped; it caches by its arguments, so
  asking twice for the same run costs nothing. ``steps=None`` runs to the end,
  ``steps=n`` stops after n steps (an unfinished run).

``TINY_SCHEDULE`` is the schedule they use.

- ``moons_copy``: a copy of ``tiny_moons_run`` in the test's own tmp dir
  (function-scoped; write reviews or an audit into it).
- ``fresh_tiny_run``: a new, unstarted tiny moons run in the test's own tmp
  dir (function-scoped; change it freely).

Torch runs on one thread in tests (and in subprocesses they start, through
``OMP_NUM_THREADS``): the machine has 2 cores that other processes share, and
oversubscribed OpenMP threads make a tiny step ten times slower or worse.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.method.config import RunConfig, ScheduleConfig

TINY_SCHEDULE = ScheduleConfig(teacher_epochs=2, teacher_patience=2, warmup_epochs=1, refine_epochs=2,
                               mutual_epochs=2)


def pytest_configure(config):
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("AMLKD_TORCH_THREADS", "1")


def blobs_npz(path: Path, labels: np.ndarray, dim: int, spread: float, rng: np.random.Generator, key: str) -> Path:
    """A ``vectors:`` file at ``path``: one Gaussian blob per class of ``labels`` (3 classes, cat/dog/fox), centres
    ``spread`` apart in ``dim`` dimensions, unit noise; keys ``key.format(i)``."""
    features = (rng.standard_normal((3, dim))[labels] * spread + rng.standard_normal((len(labels), dim)))
    np.savez(path, features=features.astype(np.float32), keys=np.array([key.format(i) for i in range(len(labels))]),
             labels=labels, class_names=np.array(["cat", "dog", "fox"]))
    return path


def tiny_config(dataset: str = "moons", noise: str = "symmetric:0.3", method: str = "aml-kd",
                seed: int = 0) -> RunConfig:
    """A :class:`RunConfig` with :data:`TINY_SCHEDULE`."""
    return replace(RunConfig(dataset=dataset, noise=noise, method=method, seed=seed), schedule=TINY_SCHEDULE)


@pytest.fixture(scope="session")
def make_tiny_run(tmp_path_factory):
    """Factory ``(name, dataset, noise, method, steps) -> Path`` of a run made once per session."""
    from engine.steps.run import Run

    made: dict[tuple, Path] = {}
    root = tmp_path_factory.mktemp("tiny_runs")

    def make(name: str, dataset: str = "moons", noise: str = "symmetric:0.3", method: str = "aml-kd",
             steps: int | None = None) -> Path:
        key = (name, dataset, noise, method, steps)
        if key not in made:
            run = Run.create(root / name, tiny_config(dataset, noise, method))
            if steps is None:
                run.run_until(None)
            else:
                for _ in range(steps):
                    run.step()
            made[key] = root / name
        return made[key]

    return make


@pytest.fixture(scope="session")
def tiny_moons_run(make_tiny_run) -> Path:
    """A finished 8-step AML-KD run on moons (read-only)."""
    return make_tiny_run("moons", "moons", "symmetric:0.3")


@pytest.fixture(scope="session")
def tiny_digits_run(make_tiny_run) -> Path:
    """A finished 8-step AML-KD run on digits (read-only)."""
    return make_tiny_run("digits", "digits", "symmetric:0.4")


@pytest.fixture
def moons_copy(tmp_path, tiny_moons_run) -> Path:
    """A copy of the finished tiny moons run in this test's tmp dir (``moons``; free to change: reviews, audits)."""
    import shutil

    path = tmp_path / "moons"
    shutil.copytree(tiny_moons_run, path)
    return path


@pytest.fixture
def fresh_tiny_run(tmp_path) -> Path:
    """A new, unstarted tiny AML-KD run on moons in this test's tmp dir (free to change)."""
    from engine.steps.run import Run

    path = tmp_path / "fresh-moons"
    Run.create(path, tiny_config())
    return path


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    """An empty runs folder the app uses (``AMLKD_RUNS_DIR``); stops every worker afterwards."""
    from app.worker import FAIL_ENV, shutdown_all

    root = tmp_path / "runs"
    monkeypatch.setenv("AMLKD_RUNS_DIR", str(root))
    monkeypatch.delenv(FAIL_ENV, raising=False)
    yield root
    shutdown_all()


@pytest.fixture
def app(runs_dir):
    """The whole app in AppTest, run once, on an empty runs folder."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "streamlit_app.py"),
                           default_timeout=60)
    at.run()
    assert not at.exception
    return at

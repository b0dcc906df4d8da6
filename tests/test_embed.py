"""engine.readers.embed: UMAP's kNN input, which features a step has, the layout
cache in the run directory, reuse of the engine's graph, warm starts."""

import json
import shutil

import numpy as np
import pytest

from engine.readers import embed
from engine.errors import UserError
from engine.method.graph import knn
from engine.rundir.store import RunStore

# The tiny moons run (conftest): steps 1-2 teacher, 3 propagate, 4 warmup, 5-6 refine, 7-8 mutual.


@pytest.fixture(scope="module")
def moons_store(tiny_moons_run, tmp_path_factory) -> RunStore:
    """A private copy of the tiny moons run: layouts are written into it."""
    path = tmp_path_factory.mktemp("embed") / "moons"
    shutil.copytree(tiny_moons_run, path)
    return RunStore(path)


@pytest.fixture
def fresh_store(tiny_moons_run, tmp_path) -> RunStore:
    shutil.copytree(tiny_moons_run, tmp_path / "run")
    return RunStore(tmp_path / "run")


def _meta(store, source, step) -> dict:
    return json.loads(embed.embedding_path(store, source, step).with_suffix(".json").read_text())


def _no_projection(*args, **kwargs):
    raise AssertionError("project() must not run here")


def test_umap_knn_puts_self_first_and_uses_cosine_distances():
    features = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    idx, sim = knn(features, 10)
    knn_idx, knn_dist = embed.umap_knn(features, 5, idx, sim)
    assert knn_idx.shape == knn_dist.shape == (30, 5)
    assert (knn_idx[:, 0] == np.arange(30)).all() and (knn_dist[:, 0] == 0).all()
    assert (knn_idx[:, 1:] == idx[:, :4]).all()
    assert np.allclose(knn_dist[:, 1:], 1 - sim[:, :4], atol=1e-6)
    searched = embed.umap_knn(features, 5)  # no graph given: exact search, same answer
    assert (searched[0] == knn_idx).all() and np.allclose(searched[1], knn_dist, atol=1e-6)


def test_graph_matches_only_the_features_it_was_built_on():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(50, 6)).astype(np.float16)
    idx, sim = knn(features.astype(np.float32), 8)
    assert embed.graph_matches(features, idx, sim.astype(np.float16))
    other = rng.normal(size=(50, 6)).astype(np.float16)
    assert not embed.graph_matches(other, idx, sim)
    assert not embed.graph_matches(features[:40], idx, sim)


def test_step_features_follow_the_phase(moons_store):
    store = moons_store
    assert np.array_equal(embed.step_features(store, 1, "teacher"), store.snapshot(1)["features"])
    assert embed.step_features(store, 1, "student") is None
    teacher_after = embed.step_features(store, 5, "teacher")
    assert teacher_after.dtype == np.float16
    assert np.array_equal(teacher_after, store.teacher_features().astype(np.float16))
    assert np.array_equal(embed.step_features(store, 5, "student"), store.snapshot(5)["features"])
    assert embed.step_features(store, 99, "teacher") is None
    with pytest.raises(UserError, match="valid: teacher, student"):
        embed.step_features(store, 5, "pixels")


def test_layout_reuses_the_engine_graph_and_is_cached(moons_store, monkeypatch):
    store = moons_store
    monkeypatch.setattr(embed, "knn", lambda *a, **k: pytest.fail("the propagate step's graph should be reused"))
    coords = embed.embedding(store, 3, "teacher")
    n = len(store.dataset_arrays()["given"])
    assert coords.shape == (n, 2) and coords.dtype == np.float32 and np.isfinite(coords).all()
    path = embed.embedding_path(store, "teacher", 3)
    assert path.name == "teacher_step_00003.npy" and np.array_equal(np.load(path), coords)
    assert _meta(store, "teacher", 3)["reused"] is False
    monkeypatch.setattr(embed, "project", _no_projection)
    assert np.array_equal(embed.embedding(store, 3, "teacher"), coords)


def test_identical_features_reuse_the_cached_layout(moons_store, monkeypatch):
    store = moons_store
    first = embed.embedding(store, 3, "teacher")
    monkeypatch.setattr(embed, "project", _no_projection)
    later = embed.embedding(store, 6, "teacher")  # the frozen teacher: same features as step 3
    assert np.array_equal(later, first)
    assert _meta(store, "teacher", 6)["reused"] is True
    assert embed.cached_steps(store, "teacher") == [3, 6]


def test_each_step_starts_from_the_nearest_cached_layout(moons_store):
    store = moons_store
    warmup = embed.embedding(store, 4, "student")
    assert _meta(store, "student", 4)["from_step"] is None  # the first student layout: spectral start
    same = embed.embedding(store, 5, "student")  # selection features = the warm-up's output
    assert _meta(store, "student", 5)["reused"] is True and np.array_equal(same, warmup)
    refine = embed.embedding(store, 6, "student")
    assert _meta(store, "student", 6)["from_step"] == 5 and _meta(store, "student", 6)["reused"] is False
    # The same features started from the previous layout turned half a turn: a layout that follows its start
    # lands far from the previous one (a spectral start can land near it or far by chance, so it proves nothing).
    turned = warmup.max(axis=0) + warmup.min(axis=0) - warmup
    elsewhere = embed.project(embed.step_features(store, 6, "student"), init=turned)
    moved_warm = np.linalg.norm(refine - warmup, axis=1).mean()
    moved_elsewhere = np.linalg.norm(elsewhere - warmup, axis=1).mean()
    assert moved_warm < 0.5 * moved_elsewhere


def test_a_stale_layout_is_recomputed(fresh_store, monkeypatch):
    store = fresh_store
    embed.embedding(store, 3, "teacher")
    meta_path = embed.embedding_path(store, "teacher", 3).with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "digest": "0" * 24}))
    calls = []
    real = embed.project
    monkeypatch.setattr(embed, "project", lambda *a, **k: calls.append(1) or real(*a, **k))
    embed.embedding(store, 3, "teacher")
    assert calls == [1] and _meta(store, "teacher", 3)["digest"] == meta["digest"]


def test_projection_is_reproducible():
    features = np.random.default_rng(2).normal(size=(80, 5)).astype(np.float32)
    config = embed.EmbedConfig(scratch_epochs=30, warm_epochs=10)
    first = embed.project(features, config)
    assert np.array_equal(first, embed.project(features, config))
    assert np.array_equal(embed.project(features, config, init=first), embed.project(features, config, init=first))


def test_sources_without_features(moons_store):
    assert embed.embedding(moons_store, 1, "student") is None
    with pytest.raises(UserError, match="valid: teacher, student, input"):
        embed.embedding(moons_store, 3, "pixels")


def test_input_source_is_the_raw_points():
    points = np.array([[0.5, -1.0], [2.0, 3.0]], dtype=np.float64)
    coords = embed.input_coordinates(points)
    assert coords.dtype == np.float32 and np.array_equal(coords, points.astype(np.float32))
    coords[0, 0] = 9
    assert points[0, 0] == 0.5  # a copy
    with pytest.raises(UserError, match="2-D point datasets"):
        embed.input_coordinates(np.zeros((3, 1, 8, 8)))


def test_config_is_validated():
    with pytest.raises(UserError, match="n_neighbors"):
        embed.EmbedConfig(n_neighbors=1)
    with pytest.raises(UserError, match="min_dist"):
        embed.EmbedConfig(min_dist=2.0)


def test_warm_up_compiles_and_reports_seconds():
    assert embed.warm_up() > 0

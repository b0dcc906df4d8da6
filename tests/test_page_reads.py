"""Pages read only what they show: the Review queue, Losses, Compare and the Propagation graph, rendered with
Streamlit's AppTest while engine.rundir.snapshot records every row and field a reader touches.

Each page may read whole only the columns of the step it shows that its picture is made of (a queue ranks every
sample, a histogram counts every loss, the graph replays its step's propagation); every other access, at any
step, stays under :data:`ROWS` rows. The features (N, D) are never read whole by these pages, nor the sample
keys: whether runs hold the same samples, and whether a review log is a run's, is told by the digests
dataset.npz stores (old runs: by reading, as before). The pages of a vectors run never load the vectors file,
and Setup tells a vectors file's facts from its headers and labels."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from engine.readers import explain
from engine.rundir import snapshot
from engine.rundir.store import RunStore

PAGES = Path(__file__).resolve().parents[1] / "app" / "views"
ROWS = 64  # the most rows of a field a page may read at once outside its listed columns (a card's neighbours)

#: page -> the fields it may read whole at the step it shows, and why.
WHOLE = {
    # the queue ranks every sample by its expected change (propagation and model top classes), flags and weight
    "review": {"refined", "lp_top_classes", "lp_top_scores", "lp_confidence", "student_top", "student_prob",
               "teacher_top", "teacher_prob", "weight"},
    # the histogram counts every loss; the cut-off's switches apply the step's easy rule to every sample
    "losses": {"selection_loss", "student_loss", "teacher_loss", "easy", "refined", "posterior", "clamped"},
    # the step's propagation replayed over its graph (seeds, rule inputs), and which samples it changed
    "graph": {"refined", "seed_label", "seed_weight", "neighbor_idx", "neighbor_sim", "lp_confidence", "working",
              "easy", "posterior", "clamped", "outlier", "previous"},
    # how many samples each combination of runs labels right: every sample's final label and prediction
    "compare": {"refined", "student_pred"},
}


#: page -> the arrays of the run's dataset.npz it may read whole, and why (any other: at most ROWS rows). No page
#: reads the sample keys whole: each reads the keys of the rows it shows (whether runs hold the same samples is
#: told by the digests dataset.npz stores: engine.rundir.digest).
DATASET_WHOLE = {
    "review": {"given", "true"},  # the queue ranks every sample (expected change, disagreement with the truth)
    "losses": {"given", "true"},  # the easy rule and the histogram's split by the truth, over every sample
    "graph": {"given"},  # a small run's step replayed on opening: its rule keeps given labels (stage 0)
    "compare": {"given", "true"},  # which runs label each sample right (truth); the label warnings (given)
    "embeddings": {"given", "true"},  # a small run draws every sample (a large one: the drawn rows only)
}


def violations(log: snapshot.AccessLog, allowed: set[str], shown_steps: set[int],
               dataset: set[str] = frozenset(), rows: int = ROWS) -> list[str]:
    """What a page read beyond its bound: whole fields not allowed (or at a step it does not show), whole
    arrays of dataset.npz not in ``dataset``, and partial reads of more than ``rows`` rows (ROWS, or the rows
    a page walks through) of any other."""
    out = []
    for (step, name), count in sorted(log.touched.items()):
        whole = count >= log.sizes[(step, name)]
        if step == snapshot.DATASET_STEP:
            if whole and name != "class_names" and name not in dataset:
                out.append(f"dataset {name}: whole ({count} rows)")
            elif not whole and count > rows and name not in dataset:
                out.append(f"dataset {name}: {count} rows")
            continue
        may_be_whole = name in allowed and step in shown_steps
        if whole and not may_be_whole:
            out.append(f"step {step} {name}: whole ({count} rows)")
        elif not whole and count > rows and not may_be_whole:
            out.append(f"step {step} {name}: {count} rows")
    return out


def render(page: str, run_dir: Path, **state) -> tuple[AppTest, snapshot.AccessLog]:
    at = AppTest.from_file(str(PAGES / f"{page}.py"), default_timeout=240)
    at.session_state["run_dir"] = str(run_dir)
    for key, value in state.items():
        at.session_state[key] = value
    with snapshot.recording() as log:
        at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at, log


@pytest.fixture(scope="module")
def digits_run(tiny_digits_run, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("reads") / "digits"
    shutil.copytree(tiny_digits_run, path)
    return path


def test_review_reads_its_ranking_columns_and_the_cards_rows(digits_run):
    store = RunStore(digits_run)
    last = store.steps()[-1]
    at, log = render("review", digits_run, review_details_section=True)  # the card's details drawn too
    assert at.get("bidi_component")  # the card
    assert violations(log, WHOLE["review"], {last}, DATASET_WHOLE["review"]) == []
    assert log.touched[(snapshot.DATASET_STEP, "keys")] <= ROWS  # the card's and the table's keys, by row
    assert (last, "refined") in log.whole() and (last, "features") not in log.touched
    # the card's history: one row of each earlier step, not every sample of every step
    assert log.touched.get((1, "refined")) == 1


def test_losses_reads_the_histograms_columns_and_the_followed_samples_rows(digits_run):
    last = RunStore(digits_run).steps()[-1]
    at, log = render("losses", digits_run)
    assert at.get("plotly_chart")
    assert violations(log, WHOLE["losses"], {last}, DATASET_WHOLE["losses"]) == []
    followed = len(at.multiselect(key="loss_samples").value)
    assert 0 < followed <= 12 and log.touched[(1, "weight")] == followed  # trajectories: the followed rows only


def test_graph_reads_its_steps_propagation_and_never_the_features_whole(digits_run):
    store = RunStore(digits_run)
    render("graph", digits_run)  # the first opening projects the step's features (UMAP): cached from then on
    at, log = render("graph", digits_run)
    step = at.session_state["graph_step"]
    lp_steps = [m["step"] for m in store.metrics() if m["phase"] in explain.LP_PHASES]
    # the step shown, the labels before it (the previous step's refined), and each propagating step's refined
    # labels to count what it changed (the step slider's captions)
    allowed_steps = {step, step - 1, *lp_steps}
    import app.graph_view as graph_view

    walked = len(graph_view.relabelled(store, str(digits_run), step))  # the samples the story walks through
    assert violations(log, WHOLE["graph"], allowed_steps, DATASET_WHOLE["graph"], rows=walked) == []
    assert log.touched[(snapshot.DATASET_STEP, "true")] == walked  # the truth of the walked samples only
    assert not any(name == "features" and c >= log.sizes[(s, name)]
                                   for (s, name), c in log.touched.items())


def test_compare_reads_only_the_final_labels_and_predictions(digits_run, make_tiny_run, runs_dir):
    ce = make_tiny_run("digits-ce", "digits", "symmetric:0.4", method="ce")
    runs = [runs_dir / "digits-aml-kd", runs_dir / "digits-ce"]
    shutil.copytree(digits_run, runs[0])
    shutil.copytree(ce, runs[1])
    at, log = render("compare", runs[0])
    assert at.multiselect(key="compare-runs").value == [p.name for p in runs]
    last = {RunStore(p).steps()[-1] for p in runs}
    assert violations(log, WHOLE["compare"], last, DATASET_WHOLE["compare"]) == []
    assert {name for step, name in log.touched if step != snapshot.DATASET_STEP} == {"refined", "student_pred"}
    assert 0 < log.touched[(snapshot.DATASET_STEP, "keys")] <= 50  # built-in data? the first 50 keys tell


def _as_made_before_digests(run_dir: Path) -> None:
    """Rewrite a run's dataset.npz without the stored digests, as runs made before them hold it."""
    from engine.rundir.digest import DIGESTS, RECORD

    path = RunStore(run_dir).dataset_path
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files if name not in (*DIGESTS, RECORD)}
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def test_whether_runs_hold_the_same_samples_is_told_by_their_digests_and_old_runs_by_reading(
        digits_run, tmp_path):
    """engine.readers.compare.same_data: runs with stored digests are compared without reading a key or a
    label whole; a run made before digests reads them (every key) and is judged the same way; a differing
    key or given label is still found and named either way."""
    from engine.readers.compare import same_data

    same, other_key, other_given = (tmp_path / name for name in ("same", "other-key", "other-given"))
    for path in (same, other_key, other_given):
        shutil.copytree(digits_run, path)
    arrays = {name: np.array(a) for name, a in RunStore(digits_run).dataset_arrays().items()}
    keys, given = arrays["keys"].astype("U40"), arrays["given"].copy()
    keys[700] = "train/elsewhere.png"
    given[[3, 9]] = (given[[3, 9]] + 1) % 10
    RunStore(other_key).write_dataset(**{**arrays, "keys": keys})  # the digests are made again on writing
    RunStore(other_given).write_dataset(**{**arrays, "given": given})
    assert RunStore(other_key).dataset_digest("keys_digest") != RunStore(digits_run).dataset_digest("keys_digest")

    with snapshot.recording() as log:
        assert same_data([digits_run, same]) == []
    names = (snapshot.DATASET_STEP, "class_names")  # ten names, read whole
    assert log.whole() <= {names} and log.most_rows(exclude=("class_names",)) <= 50  # 50 keys: row numbers?
    expected_key = f"1 of 1437 keys differ (sample 700: '{arrays['keys'][700]}' and 'train/elsewhere.png')"
    expected_given = "different given labels on 2 of 1437 samples"
    with snapshot.recording() as log:
        assert expected_key in same_data([digits_run, other_key])[0]
        assert expected_given in same_data([digits_run, other_given])[0]
    assert (snapshot.DATASET_STEP, "keys") in log.whole() and (snapshot.DATASET_STEP, "given") in log.whole()

    for path in (same, other_key, other_given):
        _as_made_before_digests(path)
        assert RunStore(path).dataset_digest("keys_digest") is None
    with snapshot.recording() as log:
        assert same_data([digits_run, same]) == []
    assert log.whole() - {names} == {(snapshot.DATASET_STEP, "keys"), (snapshot.DATASET_STEP, "given")}  # read
    assert expected_key in same_data([digits_run, other_key])[0]
    assert expected_given in same_data([digits_run, other_given])[0]


def test_the_review_log_reads_the_rows_it_records_and_refuses_a_log_of_other_samples_old_runs_too(
        digits_run, tmp_path):
    """engine.rundir.review.ReviewStore: its samples digest comes from dataset.npz (no key read); a decision
    reads its own sample's key and given label; a log moved into a run with other given labels is refused,
    whether that run stores its digest or was made before digests (then every key is read once)."""
    from engine.errors import UserError
    from engine.rundir.review import ReviewStore

    run, moved = tmp_path / "run", tmp_path / "moved"
    shutil.copytree(digits_run, run)
    with snapshot.recording() as log:
        decision = ReviewStore(run).record(5, "keep", "ann")
    assert (decision.key, decision.label) == ("digits/5", int(RunStore(run).dataset_arrays()["given"][5]))
    assert log.touched == {(snapshot.DATASET_STEP, "keys"): 1, (snapshot.DATASET_STEP, "given"): 1}

    shutil.copytree(run, moved)
    arrays = {name: np.array(a) for name, a in RunStore(moved).dataset_arrays().items()}
    arrays["given"][100] = (arrays["given"][100] + 1) % 10  # one given label differs: other samples
    RunStore(moved).write_dataset(**arrays)
    with pytest.raises(UserError, match="was written for other samples"):
        ReviewStore(moved).history()
    stale = {name: np.array(a) for name, a in RunStore(run).dataset_arrays().items()}  # digests included
    np.savez(RunStore(moved).dataset_path, **{**stale, "given": arrays["given"]})  # by hand, not write_dataset
    assert RunStore(moved).dataset_digest("samples_digest") is None  # they describe the old given labels
    with pytest.raises(UserError, match="was written for other samples"):
        ReviewStore(moved).history()
    _as_made_before_digests(moved)
    with snapshot.recording() as log:
        with pytest.raises(UserError, match="was written for other samples"):
            ReviewStore(moved).history()
    assert (snapshot.DATASET_STEP, "keys") in log.whole()  # an old run: its digest computed from every key
    _as_made_before_digests(run)
    assert len(ReviewStore(run).history()) == 1  # the log's own run, made before digests: still its log


def test_the_bound_fails_a_page_that_reads_a_whole_field(digits_run, monkeypatch):
    """The check can fail: the Losses page made to read the step's features whole."""
    original = explain.per_sample_loss

    def greedy(snap):
        np.asarray(snap["features"]).sum()
        return original(snap)

    monkeypatch.setattr(explain, "per_sample_loss", greedy)
    last = RunStore(digits_run).steps()[-1]
    _, log = render("losses", digits_run)
    assert f"step {last} features: whole (1437 rows)" in violations(log, WHOLE["losses"], {last})


def test_the_access_log_counts_rows_of_indexing_and_whole_of_any_other_use(digits_run):
    store = RunStore(digits_run)
    with snapshot.recording() as log:
        arrays = snapshot.read(store, 5, ("refined", "weight", "lp_top_scores", "features"))
        arrays["refined"][[3, 9, 9]]
        arrays["lp_top_scores"][:10, 0]
        arrays["weight"][np.arange(1437) < 5]
        arrays["features"] + 1  # arithmetic: whole
    assert log.touched == {(5, "refined"): 2, (5, "lp_top_scores"): 10, (5, "weight"): 5, (5, "features"): 1437}
    assert log.whole() == {(5, "features")}


def test_embeddings_reads_the_keys_of_the_selected_samples_only_and_fails_a_page_that_reads_them_all(
        digits_run, monkeypatch):
    """The selection's grid shows its samples' keys by row; the same page made to read every key fails."""
    import app.samples

    from app.embedding_view import SHOWN_FIELDS

    last = RunStore(digits_run).steps()[-1]
    chosen = [5, 700, 1400]
    render("embeddings", digits_run)  # the first opening projects the step's features: cached from then on
    _, log = render("embeddings", digits_run, selected_samples=chosen)
    # a small run: every sample drawn, so its colour and size fields are read whole (a large run: the drawn rows)
    assert violations(log, set(SHOWN_FIELDS), {last}, DATASET_WHOLE["embeddings"]) == []
    assert log.touched.get((snapshot.DATASET_STEP, "keys"), 0) <= 1  # pictures here; vectors: a key per cell
    original = app.samples.render_sample_grid

    def greedy(*args, keys=None, **kwargs):
        np.asarray(keys).tolist()  # every key, to look one up
        return original(*args, keys=keys, **kwargs)

    monkeypatch.setattr(app.samples, "render_sample_grid", greedy)
    _, log = render("embeddings", digits_run, selected_samples=chosen)
    assert "dataset keys: whole (1437 rows)" in violations(log, set(SHOWN_FIELDS), {last},
                                                           DATASET_WHOLE["embeddings"])


def test_a_large_runs_graph_page_shows_the_stored_outcome_and_propagates_nothing_until_asked(
        digits_run, monkeypatch):
    """Above REPLAY_ON_OPEN_MAX samples the page draws the step's seeds and stored outcome (the same as the
    replay's first and last iteration at the drawn nodes) and calls no propagation; the button replays."""
    import app.graph_view as graph_view

    store = RunStore(digits_run)
    render("graph", digits_run)  # the layout projected (cached) and the step chosen
    monkeypatch.setattr(graph_view, "REPLAY_ON_OPEN_MAX", 1000)  # 1,437 samples: a large run here

    def refuse(*args, **kwargs):
        raise AssertionError("the page propagated on opening")

    for name in ("cached_replay", "cached_what_if"):
        monkeypatch.setattr(graph_view, name, refuse)
    at, _ = render("graph", digits_run)
    assert at.get("plotly_chart") and any("stored outcome" in c.value for c in at.caption)
    step, center = at.session_state["graph_step"], at.session_state["graph_sample"]
    phase, config = explain.step_phase(store, step), store.config()
    snap = store.snapshot(step)
    nodes = explain.neighbourhood(snap["neighbor_idx"], center, 1)
    stored = explain.stored_history(snap, phase, 10, nodes, 20)
    replayed = explain.replay(snap, phase, 10, config.graph, config.propagation, nodes)
    last = max(replayed.history)
    np.testing.assert_array_equal(stored[0], replayed.history[0])  # the seeds, one-hot
    np.testing.assert_array_equal(stored[20].argmax(1), replayed.history[last].argmax(1))  # the outcome
    np.testing.assert_allclose(stored[20].max(1), replayed.history[last].max(1), atol=2e-3)  # float16 stored
    assert [b.label for b in at.button if "Replay this step" in b.label]  # and the way to the iterations


def test_a_large_runs_graph_page_reads_the_labels_of_the_samples_it_walks_only(digits_run, monkeypatch):
    """Above REPLAY_ON_OPEN_MAX samples the graph page reads the given and true labels of the samples its
    story walks (those the step relabelled, counted once per server: cached) and of the centre's
    neighbourhood, never every sample's; the same page made to read them whole fails."""
    import app.graph_view as graph_view

    store = RunStore(digits_run)
    render("graph", digits_run)  # the layout projected and the step's relabelled samples found (cached)
    monkeypatch.setattr(graph_view, "REPLAY_ON_OPEN_MAX", 1000)  # 1,437 samples: a large run here
    at, log = render("graph", digits_run)
    walked = len(graph_view.relabelled(store, str(digits_run), at.session_state["graph_step"]))
    assert 0 < walked < 1437 // 2
    for name in ("given", "true"):
        assert 0 < log.touched[(snapshot.DATASET_STEP, name)] <= max(walked, ROWS), name
    assert not [key for key, count in log.touched.items()  # no array of dataset.npz read whole
                if key[0] == snapshot.DATASET_STEP and key[1] != "class_names" and count >= log.sizes[key]]

    original = graph_view.previous_labels

    def greedy(store_, run_dir, step, given):
        np.asarray(given).max()  # every sample's given label, to rank them
        return original(store_, run_dir, step, given)

    monkeypatch.setattr(graph_view, "previous_labels", greedy)
    _, log = render("graph", digits_run)
    assert log.touched[(snapshot.DATASET_STEP, "given")] == 1437


def test_dataset_npz_is_mapped_array_by_array_and_a_compressed_one_still_reads(tmp_path, monkeypatch):
    """engine.rundir.npzmap: each stored array mapped at its offset (equal to np.load's, read-only, backed by
    the file), a compressed file read whole, scalars and empty arrays as they are."""
    from engine.rundir import npzmap

    monkeypatch.setattr(npzmap, "MAP_MIN_BYTES", 0)  # map even these small arrays
    arrays = {"given": np.arange(1000) % 7, "keys": np.array([f"train/{i}.png" for i in range(1000)]),
              "grid": np.asfortranarray(np.arange(12.0).reshape(3, 4)), "test_labels": np.array("none"),
              "empty": np.zeros(0, np.int64)}
    stored, packed = tmp_path / "stored.npz", tmp_path / "packed.npz"
    np.savez(stored, **arrays)
    np.savez_compressed(packed, **arrays)
    for path, mapped in ((stored, True), (packed, False)):
        loaded = npzmap.load(path)
        assert set(loaded) == set(arrays)
        for name, array in arrays.items():
            np.testing.assert_array_equal(loaded[name], array)
            assert loaded[name].dtype == array.dtype and loaded[name].shape == array.shape
        assert isinstance(loaded["keys"].base, np.memmap) == mapped and loaded["keys"].flags.writeable != mapped
        assert loaded["keys"][[3, 999]].tolist() == ["train/3.png", "train/999.png"]
    monkeypatch.setattr(npzmap, "MAP_MIN_BYTES", 1 << 20)
    assert npzmap.load(stored)["keys"].flags.writeable  # small arrays: read whole


def test_setup_tells_a_vectors_file_by_its_headers_and_labels_and_never_reads_its_features(tmp_path, monkeypatch):
    """app.byod.dataset_facts of a vectors file (the Setup form): the facts a full load gives (width, rows
    after the held-out split, classes, rows per class), while NumPy reads only the labels and the class names
    of an .npz and nothing of an .npy (the headers tell the shapes): never the features (N, D), nor the keys."""
    import app.byod as byod
    from engine.data import load_dataset
    from tests.conftest import blobs_npz

    rng = np.random.default_rng(3)
    labels = rng.choice(3, size=500, p=[0.6, 0.3, 0.1])  # unequal classes: counts that a wrong split would move
    labels[:9] = -1  # truth unknown for some rows
    npz = blobs_npz(tmp_path / "emb.npz", labels, 16, 3.0, rng, "row-{}")
    npy = tmp_path / "emb.npy"
    np.save(npy, rng.standard_normal((300, 7)).astype(np.float32))
    specs = (f"vectors:{npz}?test=0.3", f"vectors:{npz}", f"vectors:{npy}?test=0.1")
    expected = []
    for spec in specs:
        data = load_dataset(spec)
        counts = None if data.train_true is None else \
            tuple(np.bincount(data.train_true[data.train_true >= 0], minlength=data.num_classes).tolist())
        expected.append(byod.DataFacts("vectors", data.input_shape, tuple(data.class_names) or None, counts,
                                       data.num_train))
    assert [e.num_train for e in expected] == [350, 400, 270]  # 491 labelled rows split by class, 9 unknown
    assert [e.class_counts for e in expected] == [(206, 110, 28), (235, 126, 32), None]

    reads, loads = [], []
    read_array, load = np.lib.format.read_array, np.load

    def recorded(*args, **kwargs):
        array = read_array(*args, **kwargs)
        reads.append(array.shape)
        return array

    monkeypatch.setattr(np.lib.format, "read_array", recorded)
    monkeypatch.setattr(np, "load", lambda *a, **k: loads.append(a[0]) or load(*a, **k))
    byod.dataset_facts.cache_clear()
    assert [byod.dataset_facts(spec) for spec in specs] == expected
    assert loads == [] and reads == [(500,), (3,)] * 2  # labels and class names of each .npz spec; the .npy: none


@pytest.fixture(scope="module")
def vectors_run(make_tiny_run, tmp_path_factory) -> Path:
    """A finished tiny AML-KD run on a ``vectors:`` file of 300 rows (3 blobs in 8-D, keys ``vec-{i}``)."""
    from tests.conftest import blobs_npz

    folder = tmp_path_factory.mktemp("vectors")
    labels = np.arange(300) % 3
    path = blobs_npz(folder / "emb.npz", labels, 8, 4.0, np.random.default_rng(0), "vec-{}")
    return make_tiny_run("vectors", f"vectors:{path}", "symmetric:0.3")


def test_the_pages_of_a_vectors_run_never_load_its_vectors_file(vectors_run, monkeypatch):
    """Embeddings, Propagation graph and Review draw a vectors sample as its key and labels: their dataset is
    the run's class names and keys (app.samples.RunVectors), and loading the vectors file (every row read,
    checked and standardised: 0.5 GB at 1M x 128) fails this test; the keys are read by row."""
    import app.samples

    render("embeddings", vectors_run)  # the first opening projects the step's features: cached from then on
    render("graph", vectors_run)

    def refuse(*args, **kwargs):
        raise AssertionError("a page loaded the vectors file")

    from engine.data import registry

    monkeypatch.setitem(registry._LOADERS, "vectors", refuse)  # whichever way a page would load it
    app.samples._load_dataset.clear()
    store = RunStore(vectors_run)
    chosen = [4, 150, 239]  # of the 240 training rows
    at, log = render("embeddings", vectors_run, selected_samples=chosen)
    keys = [str(k) for k in store.dataset_arrays()["keys"][chosen]]
    assert [t.value for t in at.text] == keys and all(k.startswith("vec-") for k in keys)  # the cards' keys
    assert log.touched[(snapshot.DATASET_STEP, "keys")] <= len(chosen)
    for page, state in (("graph", {}), ("review", {"review_details_section": True})):
        at, log = render(page, vectors_run, **state)
        assert log.touched.get((snapshot.DATASET_STEP, "keys"), 0) <= ROWS, page

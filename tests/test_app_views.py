"""AppTest of the Embeddings, Propagation graph and Losses pages on finished
tiny runs: the charts hold the right points, a selection injected through
session state opens the sample grid, the graph view and the what-if diff."""

import base64
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from app.figures.palette import class_color
from app.samples import SELECTED_KEY, sample_caption
from engine.readers import embed, explain
from engine.rundir.snapshot import step_seeds
from engine.rundir.store import RunStore

PAGES = Path(__file__).resolve().parents[1] / "app" / "views"
TIMEOUT = 180  # the first UMAP in a process waits for numba to compile


@pytest.fixture(scope="module")
def digits_run(tiny_digits_run, tmp_path_factory) -> Path:
    """A private copy of the tiny digits run (pages cache layouts in it)."""
    path = tmp_path_factory.mktemp("views") / "digits"
    shutil.copytree(tiny_digits_run, path)
    return path


def open_page(name: str, run_dir: Path, **state) -> AppTest:
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=TIMEOUT)
    at.session_state["run_dir"] = str(run_dir)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def array(value) -> np.ndarray:
    """A trace field as an array (plotly sends numpy arrays base64-encoded)."""
    if isinstance(value, dict) and "bdata" in value:
        out = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        return out.reshape([int(s) for s in str(value["shape"]).split(",")]) if "shape" in value else out
    return np.asarray(value)


def points(trace: dict) -> int:
    return len(array(trace["x"])) if "x" in trace else 0


def metric(at: AppTest, label: str):
    return next(m.value for m in at.metric if m.label == label)


# ---------------------------------------------------------------- embeddings


def test_embeddings_chart_and_injected_selection(digits_run):
    store = RunStore(digits_run)
    n = len(store.dataset_arrays()["given"])
    at = open_page("embeddings", digits_run)
    (spec,) = charts(at)
    refined = store.snapshot(store.steps()[-1])["refined"]
    assert all(t["type"] == "scattergl" for t in spec["data"])
    assert [t["name"] for t in spec["data"]] == [str(c) for c in np.unique(refined)]
    assert sum(points(t) for t in spec["data"]) == n
    ids = np.concatenate([array(t["customdata"]).ravel() for t in spec["data"]])
    assert sorted(ids.tolist()) == list(range(n))
    assert embed.cached_steps(store, "teacher") == [store.steps()[-1]]

    at.session_state[SELECTED_KEY] = [0, 5, 9]
    at.run()
    assert at.subheader[0].value == "Selected samples (3)"
    snap, given = store.snapshot(store.steps()[-1]), store.dataset_arrays()["given"]
    captions = [caption for img in at.image for caption in img.captions]
    names = [str(c) for c in range(10)]
    assert captions == [sample_caption(i, given[i], snap["refined"][i], float(snap["weight"][i]), names)
                        for i in (0, 5, 9)]
    highlight = charts(at)[0]["data"][-1]
    assert highlight["name"] == "selected" and points(highlight) == 3


def test_embeddings_student_features_at_a_teacher_step_is_a_note(digits_run):
    at = open_page("embeddings", digits_run)
    at.radio(key="emb_source").set_value("student")
    at.select_slider(key="emb_step").set_value(1)
    at.run()
    assert not at.get("plotly_chart")
    assert "has no student features" in at.info[0].value


def test_embeddings_continuous_colour_and_index_entry(digits_run):
    at = open_page("embeddings", digits_run)
    at.selectbox(key="emb_colour").set_value("AWE weight")
    at.text_input(key="emb_index_text").set_value("3, 4")
    at.button(key="emb_select_text").click()
    at.run()
    assert at.session_state[SELECTED_KEY] == [3, 4]
    data = charts(at)[0]["data"]
    weight = RunStore(digits_run).snapshot(8)["weight"]
    scale = [t for t in data if t.get("marker", {}).get("showscale")]
    assert len(scale) == 1 and points(scale[0]) == int(np.isfinite(weight).sum())
    assert np.allclose(np.sort(array(scale[0]["marker"]["color"])), np.sort(weight), atol=1e-6)


def test_embeddings_of_a_toy_can_show_the_raw_points(tiny_moons_run, tmp_path):
    shutil.copytree(tiny_moons_run, tmp_path / "moons")
    at = open_page("embeddings", tmp_path / "moons", **{SELECTED_KEY: [7]})
    at.radio(key="emb_source").set_value("input")
    at.run()
    from engine.data import dataset_for_config

    train_x = dataset_for_config(RunStore(tmp_path / "moons").config()).train_x
    data = [t for t in charts(at)[0]["data"] if t["name"] != "selected"]
    xs = np.concatenate([array(t["x"]) for t in data])
    assert len(xs) == len(train_x) and np.allclose(np.sort(xs), np.sort(train_x[:, 0]), atol=1e-6)
    assert len(at.image) == 1


# ---------------------------------------------------------------- propagation graph


def _graph_nodes(spec: dict) -> tuple[dict, dict]:
    by_name = {t.get("name"): t for t in spec["data"]}
    centre = next(t for t in spec["data"] if str(t.get("name", "")).startswith("sample #"))
    return by_name["nodes"], centre


def test_graph_page_follows_the_selection_and_explains(digits_run):
    store = RunStore(digits_run)
    at = open_page("graph", digits_run, **{SELECTED_KEY: [42]})
    assert at.number_input(key="graph_sample").value == 42
    snap = store.snapshot(8)
    nodes = explain.neighbourhood(snap["neighbor_idx"], 42, 1)
    neighbourhood, scores, confidence, what_if_chart = charts(at)
    node_trace, centre = _graph_nodes(neighbourhood)
    assert points(node_trace) == len(nodes) and centre["name"] == "sample #42"
    assert "kNN: exact (every pair compared), recall@20 1.00" in [c.value for c in at.caption]
    assert sorted(array(node_trace["customdata"]).ravel().tolist()) == sorted(nodes.tolist())
    # the replay: one frame per recorded iteration, the first one the seeds
    frames = neighbourhood["frames"]
    history, iterations, _, _ = _replay(store, 8, nodes)
    assert len(frames) == len(history) and frames[0]["name"] == "iteration-0"
    seeds = step_seeds(snap, "mutual", 10).labels
    first = frames[0]["data"][0]["marker"]["color"]
    for pos, node in enumerate(nodes):
        if seeds[node] >= 0:
            assert first[pos] == class_color(int(seeds[node]))
    assert neighbourhood["layout"]["sliders"][0]["active"] == len(frames) - 1  # opens on the outcome
    assert len(array(scores["data"][0]["y"])) == 10
    assert "Why does #42 have label" in at.subheader[0].value
    table = at.dataframe[0].value
    assert list(table["sample"]) == list(snap["neighbor_idx"][42])

    at.radio(key="graph_hops").set_value(2)
    at.run()
    node_trace, _ = _graph_nodes(charts(at)[0])
    assert points(node_trace) == len(explain.neighbourhood(snap["neighbor_idx"], 42, 2))


def _replay(store, step, nodes):
    snap, config = store.snapshot(step), store.config()
    result = explain.replay(snap, "mutual", 10, config.graph, config.propagation, np.asarray(nodes))
    return result.history, result.iterations, None, None


def _busiest(store):
    """The propagating step that relabelled the most samples, its labels before, and the step's snapshot."""
    steps, phases = store.steps(), {m["step"]: m["phase"] for m in store.metrics()}
    given = store.dataset_arrays()["given"]
    counts = {}
    for i, step in enumerate(steps):
        if phases[step] in explain.LP_PHASES:
            before = store.snapshot(steps[i - 1])["refined"] if i else given
            counts[step] = (int(np.sum(store.snapshot(step)["refined"] != before)), before)
    best = min(counts, key=lambda s: (-counts[s][0], s))
    return best, counts[best][1], store.snapshot(best)


def test_graph_page_opens_on_a_sample_the_step_relabelled_and_walks_them(digits_run):
    store = RunStore(digits_run)
    at = open_page("graph", digits_run)
    step, before, snap = _busiest(store)
    assert at.select_slider(key="graph_step").value == step  # the step that relabelled the most
    true = store.dataset_arrays()["true"]
    changed = set(np.flatnonzero((snap["refined"] != before) & (snap["refined"] == true) & (before != true)).tolist())
    assert changed, "the fixture's busiest step fixes some samples"
    first = at.number_input(key="graph_sample").value
    assert first in changed  # a sample the step fixed
    at.button(key="graph_next").click().run()
    second = at.number_input(key="graph_sample").value
    assert second in changed and (second != first or len(changed) == 1)
    at.button(key="graph_prev").click().run()
    assert at.number_input(key="graph_sample").value == first


def test_the_graphs_first_sample_changes_label_during_play(digits_run):
    at = open_page("graph", digits_run)
    centre = at.number_input(key="graph_sample").value
    chart = next(c for c in charts(at) if c.get("frames"))
    frames = chart["frames"]
    star = [next(t for t in f["data"] if t.get("name") == f"sample #{centre}") for f in frames]
    first, last = star[0]["marker"]["color"], star[-1]["marker"]["color"]
    assert len(frames) > 1 and first != last  # the centre's own colour changes between the seeds and the end
    store = RunStore(digits_run)
    step = at.select_slider(key="graph_step").value
    assert last == class_color(int(store.snapshot(step)["refined"][centre]))


def test_graph_what_if_sliders_start_from_the_steps_own_settings_and_reset_with_the_step(digits_run):
    store = RunStore(digits_run)
    config = store.config()
    phases = {m["step"]: m["phase"] for m in store.metrics()}
    propagate = next(s for s, p in phases.items() if p == "propagate")
    last = store.steps()[-1]
    at = open_page("graph", digits_run)
    at.toggle(key="graph_all").set_value(True).run()  # every propagating step, quiet ones too
    at.select_slider(key="graph_step").set_value(last).run()
    assert at.slider(key=f"whatif_keep_{last}").value == 0  # a mutual step keeps no least-confident fraction
    at.slider(key=f"whatif_k_{last}").set_value(5)
    at.run()
    at.select_slider(key="graph_step").set_value(propagate)
    at.run()
    assert not at.exception
    assert at.slider(key=f"whatif_k_{propagate}").value == config.graph.k
    assert at.slider(key=f"whatif_power_{propagate}").value == config.graph.power
    assert abs(at.slider(key=f"whatif_alpha_{propagate}").value - config.propagation.alpha) < 1e-9
    keep = config.train.keep_least_confident if config.noise_rate is None else 0.0
    assert at.slider(key=f"whatif_keep_{propagate}").value == round(keep * 100)
    assert metric(at, "Samples that would change label") == "0"  # the step's own settings replay the step
    at.select_slider(key="graph_step").set_value(last)
    at.run()
    assert at.slider(key=f"whatif_k_{last}").value == config.graph.k  # back to the step's own, not the 5 set


def test_graph_what_if_diff_matches_the_engine(digits_run):
    store = RunStore(digits_run)
    _config, _given = store.config(), store.dataset_arrays()["given"]
    at = open_page("graph", digits_run, **{SELECTED_KEY: [1]})
    at.toggle(key="graph_all").set_value(True).run()
    at.select_slider(key="graph_step").set_value(7).run()
    at.slider(key="whatif_alpha_7").set_value(0.5)  # (the last step, under the calibrated rule, changes nothing)
    at.run()
    expected = explain.what_if(store, 7, alpha=0.5)
    assert len(expected.changed) > 0
    assert metric(at, "Samples that would change label") == str(len(expected.changed))
    fixed = int(np.sum(expected.labels[expected.changed] == store.dataset_arrays()["true"][expected.changed]))
    assert metric(at, "would become correct") == str(fixed)
    diff = at.dataframe[1].value
    assert list(diff["sample"]) == list(expected.changed)
    highlight = charts(at)[-1]["data"][-1]
    assert highlight["name"] == "would change" and points(highlight) == len(expected.changed)


# ---------------------------------------------------------------- losses


def test_losses_histogram_cut_off_and_trajectories(digits_run):
    store = RunStore(digits_run)
    n = len(store.dataset_arrays()["given"])
    at = open_page("losses", digits_run)
    hist, traj = charts(at)
    assert sum(int(array(t["y"]).sum()) for t in hist["data"]) == n
    assert {t["name"] for t in hist["data"]} <= {"clean · easy", "clean · not easy", "noisy · easy",
                                                  "noisy · not easy"}
    assert metric(at, "Would become easy") == "0" and metric(at, "Would stop being easy") == "0"
    followed = at.multiselect(key="loss_samples").value
    assert followed and len(traj["data"]) == 3 * len(followed)
    given, snap = store.dataset_arrays()["given"], store.snapshot(8)
    assert all(snap["refined"][i] != given[i] for i in followed)

    losses, _ = explain.per_sample_loss(snap)
    moved = float(np.quantile(losses, 0.3))
    at.slider(key="loss_cutoff").set_value(moved)
    at.run()
    to_easy, to_hard = explain.cutoff_switches(losses, snap["easy"], moved)
    assert metric(at, "Would stop being easy") == str(len(to_hard)) and len(to_hard) > 0
    assert metric(at, "Would become easy") == str(len(to_easy))


def test_pages_on_a_run_without_steps_show_a_note(fresh_tiny_run):
    for name in ("embeddings", "losses"):
        at = open_page(name, fresh_tiny_run)
        assert not at.get("plotly_chart") and "no steps yet" in at.info[0].value
    at = open_page("graph", fresh_tiny_run)
    assert not at.get("plotly_chart") and "No step has propagated labels yet" in at.info[0].value

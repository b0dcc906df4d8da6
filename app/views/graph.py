"""Propagation graph: a sample's kNN neighbourhood at a step that propagated
labels, label mass spreading from the seeds iteration by iteration, why the
sample got its label, and what-if propagations with other settings (the run is
never changed).

Session state
-------------
Reads ``st.session_state["selected_samples"]`` (``app.samples.SELECTED_KEY``):
a new selection on the Embeddings page centres the view on its first sample.
Clicking a node (or any faint sample behind it) in the neighbourhood chart
moves the centre there.

The page opens on a sample that the chosen step relabelled, the one whose
neighbourhood shows the most competing label mass (:mod:`app.graph_story`);
Previous / Next (keys J / L) walk through the samples relabelled at that
step. The chart plays the propagation's iterations (Play, or drag the
iteration scrubber). The what-if sliders (keyed per step) start from the
step's own settings (:func:`engine.readers.explain.step_settings`) and return to them
whenever the step changes.
"""

from __future__ import annotations

import streamlit as st

from app import present
from app.common import require_store
from app.figures.animation import SPEEDS, propagation_animation
from app.graph_story import busiest_step, fixed_first, knn_caption, seed_caption, story_order
from app.graph_view import (
    CHART_KEY,
    SAMPLE_KEY,
    cached_replay,
    follow_step,
    layout,
    previous_labels,
    relabelled,
    render_what_if,
    render_why,
    replay_allowed,
    replay_button,
    story_buttons,
    step_changes,
    sync_centre,
)
from app.samples import load_dataset, load_snapshot, step_label, step_phases
from engine.readers import explain
from engine.rundir import step_seeds


def main() -> None:
    st.title("Propagation graph")
    store = require_store()
    phases = step_phases(store.metrics())
    lp_steps = [s for s in store.steps() if phases.get(s) in explain.LP_PHASES]
    if not lp_steps:
        st.info("No step has propagated labels yet. The first propagation is the 'propagate' step right after "
                "the teacher's phase (AML-KD only); step the run on the Train page.")
        st.stop()
    run_dir, config = str(store.path), store.config()
    dataset = load_dataset(run_dir)
    arrays = store.dataset_arrays()  # memory-mapped: the page reads the given and true labels of its rows
    given, true, truth = arrays["given"], arrays["true"], store.truth_known()
    names = [str(c) for c in dataset.class_names]
    n, num_classes = len(given), len(names)

    changes = step_changes(store, run_dir, lp_steps)
    show_all = st.toggle("Also quiet steps and labels the method broke", key="graph_all",
                         help="By default the page walks through the steps that relabelled samples and the "
                              "samples they fixed.")
    options = lp_steps if show_all or not any(changes.values()) else [s for s in lp_steps if changes[s]]
    if st.session_state.get("graph_step") not in options:  # on opening: the step that relabelled the most
        st.session_state["graph_step"] = busiest_step({s: changes[s] for s in options})
    step = st.select_slider("Step (steps that propagated labels)", options=options, key="graph_step",
                            format_func=lambda s: f"{step_label(s, phases)} · {changes[s]} relabelled")
    phase = phases[step]
    snapshot = load_snapshot(run_dir, step)
    metrics = next(m for m in store.metrics() if m.get("step") == step)
    source = metrics.get("graph_source") or "teacher"
    mtime = store.snapshot_path(step).stat().st_mtime

    seeds = step_seeds(snapshot, phase, num_classes).labels
    before = previous_labels(store, run_dir, step, given)
    changed = relabelled(store, run_dir, step)  # every sample compared once per server (cached): the walk's samples
    order = story_order(changed, snapshot["neighbor_idx"], seeds, snapshot["refined"], snapshot.get("lp_confidence"))
    order = fixed_first(order, before, snapshot["refined"], true if truth else None, seeds,  # the walked rows
                        include_broken=show_all)
    follow_step(step, order, picked=sync_centre(n))
    c1, c2, c3 = st.columns([1, 1, 1])
    center = int(c1.number_input("Sample index", min_value=0, max_value=n - 1, step=1, key=SAMPLE_KEY,
                                 help="Or select samples on the Embeddings page, or click a point below."))
    hops = c2.radio("Neighbourhood", (1, 2), format_func=lambda h: f"{h} hop" + ("s" if h > 1 else ""),
                    horizontal=True, key="graph_hops")
    speed = c3.radio("Replay speed", list(SPEEDS), index=1, horizontal=True, key="graph_speed")
    story_buttons(order, center, step_label(step, phases),
                  "fixed" if truth and not show_all else "relabelled")

    coords = layout(store, step, source, dataset, snapshot)
    if coords is None:
        st.info(f"No {source} features at step {step}; cannot place the graph.")
        st.stop()
    nodes = explain.neighbourhood(snapshot["neighbor_idx"], center, hops)
    edges, _, weights = explain.neighbourhood_edges(snapshot["neighbor_idx"], snapshot["neighbor_sim"], nodes,
                                                    config.graph.power)
    full = replay_allowed(run_dir, step, n)  # a large run: the stored outcome until a replay is asked for
    if full:
        history, iterations, _, _ = cached_replay(run_dir, step, phase, num_classes, tuple(int(i) for i in nodes),
                                                  config.to_json(), mtime)
    else:
        iterations = int(metrics.get("lp_iterations") or config.propagation.max_iter)
        history = explain.stored_history(snapshot, phase, num_classes, nodes, iterations)
    st.caption(f"The {source}'s kNN graph (k = {config.graph.k}, weight = similarity^{config.graph.power:g}) "
               f"around sample #{center}: {len(nodes)} nodes, {len(edges)} edges. Colour = leading class, "
               "size = its score; grey = no label mass yet. "
               + ("▶ Play replays the propagation's iterations (0 = the seeds); click any point to centre on it."
                  if full else f"The seeds, then the step's stored outcome: at {n:,} samples the iterations "
                  "between are replayed only when asked. Click any point to centre on it."))
    if not full:
        replay_button(run_dir, step, n, "to play its iterations")
    for line in (knn_caption(metrics, config.graph.k), seed_caption(metrics)):
        if line:
            st.caption(line)
    done = max(history)
    fig = propagation_animation(coords[nodes], nodes, history, edges, weights, names, seed_labels=seeds[nodes],
                                center=0, background_xy=coords, duration_ms=SPEEDS[speed],
                                title=f"{iterations} iterations · step {step_label(step, phases)}")
    st.plotly_chart(present.style_figure(fig), key=CHART_KEY, on_select="rerun", selection_mode=("points",),
                    width="stretch")

    render_why(run_dir, step, center, snapshot, given, true, names, seeds, history[done][0], config, mtime, full,
               truth)
    render_what_if(run_dir, store, step, phase, snapshot, coords, given, true, names, config, mtime, full, truth)




main()

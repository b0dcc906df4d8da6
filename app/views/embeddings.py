"""Embeddings: a 2-D UMAP of the teacher's or the student's features at a
step, coloured by labels, flags or numbers; a box or lasso selection opens a
grid of the selected samples.

Session state
-------------
``st.session_state["selected_samples"]`` (``app.samples.SELECTED_KEY``): the
selected sample indices, a list of int. A selection in the chart or the
"Select by index" field writes it; the Propagation graph and Losses pages read
it. Setting it from outside (a test) selects those samples.

"Replay the steps" turns the chart into an animation of every step (plotly
frames: Play, Pause, drag the step scrubber; three speeds). Layouts of the
steps not projected yet are computed on request; raw 2-D inputs need none
(the points stay, the colours move).
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from app.text import md

from app import present
from app.common import require_steps, require_store
from app.embedding_view import (
    FLAG_FIELDS,
    POINTS_MAX,
    SOURCE_LABELS,
    chart_selection,
    colour_fields,
    density,
    drawn_rows,
    hover_texts,
    parse_indices,
    replay,
    size_fields,
    update_selection,
)
from app.figures.embedding import embedding_figure, with_density
from app.samples import SELECTED_KEY, load_dataset, load_snapshot, render_sample_grid, selected, step_label, step_phases
from engine.readers import embed
from engine.errors import UserError


def main() -> None:
    st.title("Embeddings")
    store = require_store()
    steps = require_steps(store)
    run_dir = str(store.path)
    phases = step_phases(store.metrics())
    config = store.config()
    dataset = load_dataset(run_dir)
    arrays = store.dataset_arrays()  # memory-mapped: the page reads the rows it draws
    n = len(arrays["given"])

    sources = [s for s in ("teacher", "student") if not (s == "teacher" and config.method == "ce")]
    if dataset.kind == "points":
        sources.append("input")
    c1, c2, c3 = st.columns([1.2, 1.4, 1.2])
    source = c1.radio("Features", sources, format_func=SOURCE_LABELS.get, horizontal=True, key="emb_source")
    s1, s2 = st.columns([3, 1.3], vertical_alignment="bottom")  # room for the toggle's label at 1024 px
    step = s1.select_slider("Step", options=steps, value=steps[-1], key="emb_step",
                            format_func=lambda s: step_label(s, phases),
                            help="Each step's layout starts from the nearest step already projected, so "
                                 "points move rather than jump.")
    s2.toggle("▶ Replay the steps", key="emb_replay", help="Play every step as an animation.")
    snapshot = load_snapshot(run_dir, step)
    rows, shown = drawn_rows(snapshot, n, selected())  # above 20k samples: a sample, over a density
    sampled = len(rows) < n
    given, true = (arrays[name][rows].astype(np.int64) for name in ("given", "true"))  # (M,) the drawn rows
    fields = colour_fields(shown, given, true, dataset.class_names)
    colour = c2.selectbox("Colour by", list(fields), key="emb_colour")
    sizes = size_fields(shown, len(rows))
    size = c3.selectbox("Size by", list(sizes), key="emb_size")

    try:
        with st.spinner(f"Projecting the {SOURCE_LABELS[source]} of step {step} (UMAP)…"):
            coords = embed.embedding(store, step, source, inputs=dataset.train_x if source == "input" else None,
                                     snapshot=snapshot)
    except UserError as exc:
        st.error(md(exc))
        st.stop()
    if coords is None:
        st.info(f"Step {step_label(step, phases)} has no {SOURCE_LABELS[source]}: the student only trains after "
                "the teacher's phases, and a large run keeps features only at some steps. Pick another step, "
                "or the teacher's features.")
        st.stop()

    values, kind, names = fields[colour]
    if st.session_state.get("emb_replay"):
        if sampled:
            st.info(f"The replay animates every point of every step: it is for runs of up to {POINTS_MAX:,} "
                    "samples. Move the step slider instead.")
        else:
            replay(store, steps, phases, source, colour, step, dataset, given, true)  # every row: not sampled
        st.stop()
    if kind == "continuous" and not np.isfinite(np.asarray(values, dtype=float)).any():
        st.info(f"Step {step_label(step, phases)} has no {colour} (this phase does not compute it); "
                "points are drawn grey.")
    refined = shown["refined"].astype(np.int64)
    chosen = np.asarray(selected(), dtype=np.int64)
    ringed = np.flatnonzero(np.isin(rows, chosen)) if len(chosen) else None
    fig = embedding_figure(coords[rows], values, kind, category_names=names, sizes=sizes[size],
                           hover=None if sampled else hover_texts(given, refined, true, dataset.class_names, rows),
                           highlight=ringed, sample_ids=rows, flag_field=FLAG_FIELDS.get(colour),
                           color_title=colour, title=f"{SOURCE_LABELS[source]} · step {step_label(step, phases)}")
    if sampled:
        fig = with_density(fig, density(store, step, source, coords), n, len(rows))
    event = st.plotly_chart(present.style_figure(fig), key="embedding_chart", on_select="rerun",
                            selection_mode=("points", "box", "lasso"), width="stretch")
    update_selection(chart_selection(event.selection if event else None, coords, sampled))

    with st.expander("Select by index, or project every step"):
        text = st.text_input("Sample indices (comma or space separated)", key="emb_index_text")
        b1, b2, b3 = st.columns(3)
        if b1.button("Select these", key="emb_select_text"):
            try:
                st.session_state[SELECTED_KEY] = parse_indices(text, n)
                st.rerun()
            except UserError as exc:
                st.error(md(exc))
        if b2.button("Clear selection", key="emb_clear"):
            st.session_state[SELECTED_KEY] = []
            st.rerun()
        if source != "input" and b3.button("Project every step", key="emb_all",
                                           help="Caches a layout for each step so the slider replays smoothly."):
            bar = st.progress(0.0)
            for i, s in enumerate(steps):
                embed.embedding(store, s, source)
                bar.progress((i + 1) / len(steps), text=f"step {s}")

    chosen = selected()
    st.subheader(f"Selected samples ({len(chosen)})")
    render_sample_grid(chosen, dataset.kind, dataset.train_x, arrays["given"], snapshot["refined"],
                       snapshot["weight"], dataset.class_names, dataset=dataset, keys=arrays["keys"])




main()

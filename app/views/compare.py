"""Compare: runs on the same data side by side (AML-KD against plain training
and plain distillation): a table with the differences to CE, the curves over
the student's epochs, and which samples each run labels right. Runs whose
samples or given labels differ are refused with the reason. A comparison set
can be made from one run's settings and is trained one run after another by
the background worker. The numbers come from :mod:`engine.readers.compare`."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app.access import can, require
from app.common import current_store, runs_root
from app.compare_sections import audit_section, per_sample_view
from app.compare_widgets import (MAX_SEEDS, by_method_frame, comparable_with, compact, create_and_queue,
                                 curves_frame, describe_plan, figure_buttons, plan_set, progress_lines, queue_on_data,
                                 run_labels, run_names, split_shared, table_buttons, table_frame, table_note,
                                 warnings_block, with_chance)
from app.figures.compare import METRICS, curve_figure
from app.text import md, text_table
from app.worker import current_queue, is_live
from engine.readers.compare import by_method, chance_sentence, comparison_table, curves, same_data
from engine.errors import UserError
from engine.rundir import RunStore

PICK = "compare-runs"


def comparison_set(root: Path, names: list[str], expanded: bool) -> None:
    with st.expander("Create a comparison set from one run's settings", expanded=expanded):
        open_store = current_store()
        index = names.index(open_store.path.name) if open_store and open_store.path.name in names else 0
        chosen = st.selectbox("Settings of run", names, index=index, key="compare-set-source")
        ablations = st.checkbox("Also the ablations: AML-KD without AWE, without the mutual stage, without stage 0",
                                key="compare-set-ablations")
        seeds = st.number_input("Seeds", min_value=1, max_value=MAX_SEEDS, value=1, step=1, key="compare-set-seeds",
                                help="Train the set on this many seeds (the run's seed and the next ones; each seed "
                                     "draws its own noisy labels): the table then shows each method's mean and "
                                     "spread.")
        authors = st.checkbox("Also AML-KD with the authors' relabel rule (every label the teacher's propagation "
                              "proposes, without the calibrated check)", key="compare-set-authors")
        try:
            members = plan_set(root / chosen, ablations, int(seeds), authors)
        except UserError as exc:
            st.error(f"No comparison set from {md(chosen)}: {md(exc)}")
            return
        same = "Same data, noise, seed and schedule" if seeds == 1 else "Same data, noise and schedule, per seed"
        st.markdown(f"{same}; only the method changes:\n\n" +
                    "\n".join(f"- {line}" for line in describe_plan(members)))
        if st.button("Create and train them", key="compare-set-create", type="primary",
                     disabled=not can("train")) and require("train"):
            start_set(members)
    queue = current_queue()
    if queue is not None and queue_on_data(queue, root / chosen):
        st.fragment(_progress, run_every=2.0 if queue.busy else None)(queue.busy)


def start_set(members) -> None:
    with st.spinner("Creating the comparison set's runs (loading the data, building the networks)..."):
        problem = create_and_queue(members, runs_root(), is_live)
    if problem:
        st.error(md(problem))
        return
    st.session_state[PICK] = [m.path.name for m in members]
    st.rerun()


def _progress(was_busy: bool) -> None:
    queue = current_queue()
    if queue is None or (was_busy and not queue.busy):
        st.rerun()  # the set is trained: redraw the whole page once, without the timers
    st.caption("Comparison set" + (", training one run after another:" if queue.busy else ":"))
    st.markdown("\n".join(f"- {line}" for line in progress_lines(queue)))  # names as code spans


def results(names: list[str], was_live: bool = False) -> None:
    if was_live and not any(is_live(runs_root() / n) for n in names):
        st.rerun()  # training ended: redraw once without the timer
    stores = [RunStore(runs_root() / n) for n in names]
    problems = same_data(stores)
    if problems:
        st.error("These runs cannot be compared: a fair comparison needs the same training samples with the "
                 "same given labels.\n\n" + "\n".join(f"- {md(p)}" for p in problems))
        return
    try:
        rows, points = comparison_table(stores), curves(stores)
        rows = with_chance(rows, stores)
    except UserError as exc:
        st.error(f"These runs cannot be shown: {md(exc)}")
        return
    st.subheader("Results")
    block = warnings_block(rows)
    if block:
        st.warning(block, icon=":material/warning:")
    frame, note, sentence = table_frame(rows), table_note(rows), chance_sentence(rows)
    table, shared = split_shared(compact(frame))
    st.markdown(f"Every run: {shared}" if shared else "")  # its names escaped by split_shared
    st.table(text_table(table))
    if sentence:
        st.info(sentence, icon=":material/casino:")
    st.caption(note)
    methods = by_method(rows)
    several = len({r["seed"] for r in rows}) > 1
    table_buttons(frame, note + (f" {sentence}" if sentence else ""), by_method_frame(methods) if several else None)
    if several:
        st.markdown("**Over the seeds** (finished runs; mean ± sample standard deviation)")
        st.table(text_table(by_method_frame(methods)))
    audit_section(stores)

    st.subheader("Over the student's epochs")
    frame = curves_frame(points)
    for column, key in zip(st.columns(2), METRICS):
        with column:
            if frame[key].notna().any():
                figure = curve_figure(points, key)
                st.plotly_chart(figure, key=f"compare-curve-{key}", config={"displaylogo": False})
                figure_buttons(points, frame[["run", "method", "epoch", key]], key, f"compare-{key}")
                if key == "label_precision":
                    st.caption("CE and KD train on the given labels: their line is the given labels' precision.")
            else:
                st.info(f"{METRICS[key]}: not measured (no truth for the given labels).")
    seed = rows[0]["seed"]  # the per-sample view: one seed's runs (other seeds have other given labels)
    own = [(st_, r) for st_, r in zip(stores, rows) if r["seed"] == seed]
    if several:
        st.caption(f"Per sample: the runs of seed {seed}.")
    per_sample_view([s_ for s_, _ in own], run_labels([r for _, r in own]))


st.title("Compare")
st.caption("AML-KD against plain training (CE) and plain distillation (KD) on the same data: pick runs whose "
           "training samples and given labels match, or create the set from one run's settings.")
root = runs_root()
names = run_names(root)
if not names:
    st.info("No runs yet: create one on the Setup page, then make its comparison set here.")
    st.stop()
if PICK not in st.session_state:
    open_store = current_store()
    st.session_state[PICK] = comparable_with(open_store.path.name, root, names) if open_store else []
st.session_state[PICK] = [n for n in st.session_state[PICK] if n in names]
comparison_set(root, names, expanded=len(st.session_state[PICK]) < 2)
picked = st.multiselect("Runs to compare", names, key=PICK)
if len(picked) < 2:
    st.info("Pick two or more runs on the same data, or create a comparison set above.")
    st.stop()
live = any(is_live(root / n) for n in picked)
st.fragment(results, run_every=3.0 if live else None)(picked, live)

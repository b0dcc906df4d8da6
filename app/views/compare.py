"""Compare: runs on the same data side by side (AML-KD against plain training
and plain distillation): a table with the differences to CE, the curves over
the student's epochs, and which samples each run labels right. Runs whose
samples or given labels differ are refused with the reason. A comparison set
can be made from one run's settings and is trained one run after another by
the background worker. The numbers come from :mod:`engine.readers.compare`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app.text import md, text_table
from app.audit_text import compare_row

from app.access import can, require
from app.common import current_store, runs_root
from app.compare_widgets import (LABEL_KINDS, MAX_SEEDS, by_method_frame, comparable_with, compact, create_and_queue,
                                 csv_button, curves_frame, describe_plan, figure_buttons, filtered_samples,
                                 is_vectors_run, outcome_patterns, plan_set, png_button, progress_lines, queue_on_data,
                                 run_labels, run_names, sample_caption, sample_filters, split_shared, table_buttons,
                                 table_frame, table_note, vector_cards, warnings_block, with_chance)
from app.figures.compare import METRICS, curve_figure
from app.figures.compare_png import grid_png
from app.samples import load_dataset, original_pictures, thumbnails
from app.worker import current_queue, is_live
from engine.readers.audit import audit_rows
from engine.readers.compare import by_method, chance_sentence, comparison_table, curves, per_sample, same_data
from engine.errors import UserError
from engine.rundir import RunStore

PICK = "compare-runs"
GRID = 18


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


def audit_section(stores) -> None:
    """Each run's numbers counted on a random audit (the Review page's audit mode); runs of the same samples
    share the audit of whichever run has one."""
    try:
        rows = audit_rows(stores)
    except UserError as exc:
        st.warning(f"The audit cannot be read: {md(exc)}", icon=":material/warning:")
        return
    if not any(r["report"] for r in rows):
        return
    st.markdown("**Counted on a random audit** (90% intervals; the change is given → refined labels, "
                "\"within chance\" while its interval holds 0)")
    st.table(text_table(pd.DataFrame([compare_row(r) for r in rows]).set_index("run")))
    borrowed = sorted({(r["run"], r["audit_of"]) for r in rows if r["audit_of"] not in (None, r["run"])})
    if borrowed:
        st.caption("Same samples and given labels, so one audit serves: " +
                   "; ".join(f"{md(run)} uses the audit of {md(source)}" for run, source in borrowed) + ".")


def per_sample_view(stores, labels: dict[str, str]) -> None:
    st.subheader("Per sample")
    try:
        view = per_sample(stores)
    except UserError as exc:
        st.info(f"No per-sample view yet: {md(exc)}.")
        return
    which = st.radio("Compare each run's", list(LABEL_KINDS), format_func=LABEL_KINDS.get, horizontal=True,
                     key="compare-which")
    patterns = outcome_patterns(view, which, labels)
    if patterns is not None:
        st.caption("Samples by which runs label them right (truth known):")
        st.table(text_table(patterns))
    choice = st.selectbox("Show samples", sample_filters(view), key="compare-filter")
    indices = filtered_samples(view, which, choice)
    st.caption(f"{len(indices)} samples {choice}" + (f"; the first {GRID} shown." if len(indices) > GRID else "."))
    shown, pictures, captions = [], [], []
    if len(indices):
        shown = [int(i) for i in indices[:GRID]]
        captions = [sample_caption(view, which, i, labels) for i in shown]
        if is_vectors_run(stores[0]):  # no picture to draw: a card of its key and labels
            vector_cards(view.keys, shown, captions)
        else:
            dataset = load_dataset(str(stores[0].path))
            pictures = original_pictures(dataset, shown) or thumbnails(dataset.kind, dataset.train_x, shown)
            for start in range(0, len(shown), 6):
                for cell, picture, caption in zip(st.columns(6), pictures[start:start + 6], captions[start:start + 6]):
                    cell.image(picture, caption=md(caption), width="stretch")  # image captions are Markdown
    with st.container(horizontal=True):
        csv_button("Every sample (CSV)", lambda: pd.DataFrame(view.rows()), "per_sample.csv",  # made on click
                   "compare-samples-csv")
        if pictures:
            first = f" (the first {len(shown)})" if len(indices) > len(shown) else ""
            title = f"{len(indices)} samples {choice}{first}; each run's {LABEL_KINDS[which]}"
            png_button("These samples (PNG)", lambda: grid_png(pictures, captions, title), "samples.png",
                       "compare-samples-png")


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

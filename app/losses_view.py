"""The Losses page's parts: cached per-step losses, the cut-off switch table, trajectories
(the page: app/views/losses.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app.figures.losses import trajectory_figure
from app.samples import selected
from engine.readers import explain
from engine.rundir import RunStore

MAX_FOLLOWED = 12
MAX_OPTIONS = 5000  # samples offered by index in 'Samples to follow' (beyond: the likely ones)
LOSS_NAMES = {"selection_loss": "student loss before the epoch (selection)", "student_loss": "student loss",
              "teacher_loss": "teacher loss"}


@st.cache_data(show_spinner=False, max_entries=64)
def cached_trajectories(run_dir: str, samples: tuple, stamp: float):
    """``(steps (T,), losses (T, M), weights (T, M), weights_given (T, M))`` of the followed samples: only
    their rows of each step are read (cached per metrics file version)."""
    return explain.trajectories(RunStore(run_dir), samples=list(samples))


def switch_table(indices, losses, given, true, names) -> pd.DataFrame:
    name = lambda c: names[c] if c >= 0 else "?"  # noqa: E731
    table = pd.DataFrame({"sample": indices, "loss": losses[indices].round(4),
                          "given": [name(int(given[i])) for i in indices]})
    if (true >= 0).any():
        table["given label is wrong"] = [bool(true[i] >= 0 and true[i] != given[i]) for i in indices]
    return table


def store_class_names(run_dir: str, fallback: int):
    """Class names of the run (stored in its directory), else ``0..fallback-1``."""
    try:
        return RunStore(run_dir).class_names()
    except Exception:  # noqa: BLE001 - a dataset that no longer loads still has numbered classes
        return [str(i) for i in range(fallback)]


def render_switches(losses, easy, moved, given, true, names, noisy, rule=None) -> None:
    to_easy, to_hard = explain.cutoff_switches(losses, easy, moved, rule)
    c1, c2, c3 = st.columns(3)
    c1.metric("Would become easy", len(to_easy))
    c2.metric("Would stop being easy", len(to_hard))
    if noisy is not None:
        new_easy = explain.easy_under(losses, moved, rule)
        precision = float(np.mean(~noisy[new_easy])) if new_easy.any() else float("nan")
        c3.metric("Clean among the easy", f"{precision:.1%}" if np.isfinite(precision) else "—")
    left, right = st.columns(2)
    for column, indices, title in ((left, to_easy, "Would become easy"), (right, to_hard, "Would stop being easy")):
        column.markdown(f"**{title}**")
        if len(indices):
            column.dataframe(switch_table(indices, losses, given, true, names), hide_index=True, width="stretch",
                             height=min(300, 38 + 35 * len(indices)))
        else:
            column.caption("none")


def render_trajectories(run_dir, steps, phases, snapshot, given, true) -> None:
    st.subheader("Samples across steps")
    n = len(given)
    chosen = [i for i in selected() if 0 <= i < n][:MAX_FOLLOWED]
    losses = explain.per_sample_loss(snapshot)[0]
    truth = true if (true >= 0).any() else None
    default = chosen or [int(i) for i in explain.flipped_samples(given, snapshot["refined"], truth, 4, losses)]
    if n <= MAX_OPTIONS:
        options = list(range(n))
    else:  # a list of a million options would itself be the slow part: offer the likely ones
        options = sorted(set(default) | set(selected()[:MAX_OPTIONS]) | {
            int(i) for i in explain.flipped_samples(given, snapshot["refined"], truth, 200, losses)})
    picks = st.multiselect("Samples to follow", options, default=default, key="loss_samples",
                           max_selections=MAX_FOLLOWED,
                           help="Default: the samples selected on the Embeddings page, else a few relabelled ones "
                                "(in a run that relabels none: wrong given labels, else the largest losses)."
                                + ("" if n <= MAX_OPTIONS else " Offered: the selected and 200 relabelled samples; "
                                   "select others on the Embeddings page."))
    if not picks:
        st.info("Pick samples to follow across the steps.")
        return
    picks = [int(i) for i in picks]
    store = RunStore(run_dir)
    with st.spinner("Reading the steps…"):
        all_steps, loss_matrix, weight_matrix, given_weight_matrix = cached_trajectories(
            run_dir, tuple(picks), store.metrics_path.stat().st_mtime if store.metrics_path.is_file() else 0.0)
    labels = [f"#{i} (given {given[i]}" + (f", true {true[i]})" if true[i] >= 0 else ")") for i in picks]
    st.plotly_chart(trajectory_figure(all_steps, loss_matrix.T, weight_matrix.T, picks,
                                      phases=[phases.get(int(s), "") for s in all_steps], labels=labels,
                                      weights_given=given_weight_matrix.T),
                    key="loss_trajectories", width="stretch")

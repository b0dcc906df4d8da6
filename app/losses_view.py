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
LOSS_NAMES = {"selection_loss": "student loss before the epoch (selection)", "student_loss": "student loss",
              "teacher_loss": "teacher loss"}


@st.cache_data(show_spinner=False, max_entries=4096)
def cached_step_values(run_dir: str, step: int, mtime: float):
    """Loss and weights of every sample at one step (cached per snapshot file version)."""
    return explain.step_values(RunStore(run_dir), step)


def trajectories(store: RunStore, steps: list[int]):
    """``(steps (T,), losses (T, N), weights (T, N), weights_given (T, N))``; a new step reads one file."""
    values = [cached_step_values(str(store.path), s, store.snapshot_path(s).stat().st_mtime) for s in steps]
    losses, weights, weights_given = (np.stack(v) for v in zip(*values))
    return np.asarray(steps), losses, weights, weights_given


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
    with st.spinner("Reading the steps…"):
        all_steps, loss_matrix, weight_matrix, given_weight_matrix = trajectories(RunStore(run_dir), steps)
    n = loss_matrix.shape[1]
    chosen = [i for i in selected() if 0 <= i < n][:MAX_FOLLOWED]
    losses = explain.per_sample_loss(snapshot)[0]
    default = chosen or [int(i) for i in explain.flipped_samples(given, snapshot["refined"],
                                                                  true if (true >= 0).any() else None, 4, losses)]
    picks = st.multiselect("Samples to follow", list(range(n)), default=default, key="loss_samples",
                           max_selections=MAX_FOLLOWED,
                           help="Default: the samples selected on the Embeddings page, else a few relabelled ones "
                                "(in a run that relabels none: wrong given labels, else the largest losses).")
    if not picks:
        st.info("Pick samples to follow across the steps.")
        return
    picks = [int(i) for i in picks]
    labels = [f"#{i} (given {given[i]}" + (f", true {true[i]})" if true[i] >= 0 else ")") for i in picks]
    st.plotly_chart(trajectory_figure(all_steps, loss_matrix[:, picks].T, weight_matrix[:, picks].T, picks,
                                      phases=[phases.get(int(s), "") for s in all_steps], labels=labels,
                                      weights_given=given_weight_matrix[:, picks].T),
                    key="loss_trajectories", width="stretch")

"""Losses: a step's per-sample losses split clean/noisy and easy/not with
the small-loss cut-off; a movable cut-off showing which samples would switch
sides; and loss and AWE-weight trajectories of chosen samples over the steps.

Session state
-------------
Reads ``st.session_state["selected_samples"]`` (``app.samples.SELECTED_KEY``):
when samples are selected on the Embeddings page they are the default
samples to follow; otherwise a few relabelled ones are.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app.common import require_steps, require_store
from app.figures.losses import loss_histogram_figure, trajectory_figure
from app.samples import load_snapshot, selected, step_label, step_phases
from engine import explain
from engine.store import RunStore

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


def main() -> None:
    st.title("Losses")
    store = require_store()
    steps = require_steps(store)
    run_dir = str(store.path)
    metrics = store.metrics()
    phases = step_phases(metrics)
    arrays = store.dataset_arrays()
    given, true = arrays["given"].astype(np.int64), arrays["true"].astype(np.int64)
    names = [str(c) for c in store_class_names(run_dir, int(max(given.max(), true.max())) + 1)]

    step = st.select_slider("Step", options=steps, value=steps[-1], key="loss_step",
                            format_func=lambda s: step_label(s, phases))
    snapshot = load_snapshot(run_dir, step)
    losses, source = explain.per_sample_loss(snapshot)
    used = [explain.LOSS_FIELDS[i] for i in np.unique(source) if i >= 0]
    loss_name = " / ".join(LOSS_NAMES[u] for u in used) or "loss"
    known = true >= 0
    noisy = np.where(known, given != true, False) if known.any() else None
    easy = snapshot["easy"].astype(bool)
    step_metrics = next((m for m in metrics if m.get("step") == step), {})
    cutoff = step_metrics.get("loss_cutoff")

    finite = losses[np.isfinite(losses)]
    if finite.size == 0:
        st.info(f"Step {step_label(step, phases)} has no per-sample losses.")
        st.stop()
    st.caption(f"Per-sample {loss_name} against the given label. " + (
        "Clean/noisy compares the given label with the truth. " if noisy is not None else
        "The truth is unknown, so clean and noisy cannot be told apart. ") + (
        f"Samples at or under the cut-off {cutoff:.3f} were 'easy' and kept their given label."
        if cutoff is not None else "This step made no small-loss selection (only refine and mutual steps do)."))

    lo, hi = float(finite.min()), float(finite.max())
    start = float(cutoff) if cutoff is not None else float(np.median(finite))
    moved = st.slider("Move the cut-off", lo, max(hi, lo + 1e-6), min(max(start, lo), hi), key="loss_cutoff",
                      format="%.3f", help="Samples with a loss at or under it would be easy.")
    st.plotly_chart(loss_histogram_figure(losses, noisy, easy if easy.any() else None, cutoff,
                                          moved if cutoff is None or abs(moved - cutoff) > 1e-9 else None,
                                          loss_name=loss_name), key="loss_hist", width="stretch")
    render_switches(losses, easy, moved, given, true, names, noisy)
    render_trajectories(run_dir, steps, phases, snapshot, given, true)


def store_class_names(run_dir: str, fallback: int):
    """Class names of the run (stored in its directory), else ``0..fallback-1``."""
    try:
        return RunStore(run_dir).class_names()
    except Exception:  # noqa: BLE001 - a dataset that no longer loads still has numbered classes
        return [str(i) for i in range(fallback)]


def render_switches(losses, easy, moved, given, true, names, noisy) -> None:
    to_easy, to_hard = explain.cutoff_switches(losses, easy, moved)
    c1, c2, c3 = st.columns(3)
    c1.metric("Would become easy", len(to_easy))
    c2.metric("Would stop being easy", len(to_hard))
    if noisy is not None:
        new_easy = np.isfinite(losses) & (losses <= moved)
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


main()

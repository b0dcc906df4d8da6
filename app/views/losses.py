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
import streamlit as st

from app.common import require_steps, require_store
from app.figures.losses import loss_histogram_figure
from app.losses_view import LOSS_NAMES, render_switches, render_trajectories, store_class_names
from app.samples import load_snapshot, step_label, step_phases
from engine.readers import explain


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
    rule = explain.easy_rule(snapshot, given, store.config()) if cutoff is not None else None
    render_switches(losses, easy, moved, given, true, names, noisy, rule)
    render_trajectories(run_dir, steps, phases, snapshot, given, true)




main()

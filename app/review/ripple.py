"""Apply and re-propagate: the step's propagation re-run with the reviewers' consensus clamped."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app.figures import review as figs
from app.review.context import ReviewContext
from engine.rundir import ReviewStore
from engine.rundir import RunStore
from engine.readers.triage import repropagate

RIPPLE = "review_ripple"


@st.cache_data(show_spinner="Re-propagating with the reviewed labels…", max_entries=4)
def _ripple(path: str, step: int, stamp: int, version: int):
    store = RunStore(path)
    clamped, outliers = ReviewStore(path).clamps(len(store.dataset_arrays()["given"]))
    return repropagate(store, step, clamped, outliers)


def layout(ctx: ReviewContext) -> tuple[np.ndarray, str]:
    """2-D coordinates for the ripple: the points themselves, a cached UMAP layout, or PCA."""
    from engine.readers.embed import embedding_path

    if ctx.dataset.kind == "points":
        return ctx.dataset.train_x, "the points"
    for source in ("student", "teacher"):
        path = embedding_path(ctx.store, source, ctx.opts.step)
        if path.is_file():
            return np.load(path), f"the {source} UMAP layout"
    features = ctx.snapshot["features"].astype(np.float32)
    centred = features - features.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T, "the first two principal components of the step's features"


def _compute_umap(store: RunStore, step: int) -> None:
    from engine.readers.embed import embedding

    with st.spinner("Computing the UMAP layout of this step…"):
        for source in ("student", "teacher"):
            if embedding(store, step, source) is not None:
                return


def ripple_section(ctx: ReviewContext) -> None:
    names = ctx.class_names
    st.caption("Re-runs this step's propagation with every consensus label clamped (weight 1, never relabelled) "
               "and outliers left out, and shows which other samples change label.")
    if st.button("Apply and re-propagate", key="review_apply", icon=":material/bubble_chart:"):
        st.session_state[RIPPLE] = True
    if not st.session_state.get(RIPPLE):
        return
    ripple = _ripple(ctx.path, ctx.opts.step, ctx.stamp, ctx.version)
    coords, how = layout(ctx)
    cols = st.columns(3)
    cols[0].metric("Reviewed labels clamped", len(ripple.clamped))
    cols[1].metric("Other samples changed", len(ripple.changed))
    if ctx.true is not None:
        fixed = int(np.sum(ripple.after[ripple.changed] == ctx.true[ripple.changed]))
        cols[2].metric("Of those now correct", fixed)
    st.plotly_chart(figs.ripple_figure(coords, ripple.before, ripple.after, ripple.changed, ripple.clamped, names),
                    key="review_ripple_fig")
    st.caption(f"Layout: {how}.")
    if how.startswith("the first two principal"):
        if st.button("Lay out with UMAP instead", key="review_umap", help="Cached in the run for the other pages."):
            _compute_umap(ctx.store, ctx.opts.step)
            st.rerun()
    rows = ripple.changed
    st.dataframe(pd.DataFrame({"sample": ctx.keys[rows], "before": [names[ripple.before[i]] for i in rows],
                               "after": [names[ripple.after[i]] for i in rows]}), hide_index=True, height=200)

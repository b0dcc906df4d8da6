"""Below the review card (:mod:`app.review.live_card`): the sample's place among the points (2-D data),
its label's history over the steps, its nearest neighbours and its decision log; the vote and verdict
texts the card shows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app.figures import review as figs
from app.review.context import ReviewContext, md
from app.samples import original_pictures
from engine.readers.explain import kept_given
from engine.readers.export import decisions_table
from engine.rundir import Consensus

NEIGHBOURS_SHOWN = 20


def vote_lines(verdict: Consensus | None, class_names, me: str = "") -> list[str]:
    """Who chose what (pure): ``"name: decision → label"`` per reviewer, oldest first; ``(you)`` marks ``me``."""
    if verdict is None:
        return []
    lines = []
    for d in verdict.votes:
        label = "" if d.label is None else f" → {class_names[d.label]}"
        lines.append(f"{d.reviewer}{' (you)' if d.reviewer == me else ''}: {d.decision}{label}")
    return lines


def kept_line(ctx: ReviewContext, sample: int) -> str | None:
    """Why the card proposes the given label although the propagation favours another class (pure of
    Streamlit): ``"kept: the evidence does not favour a change (P given cat 0.41 vs truck 0.38)"`` where the
    step's calibrated rule kept it (:func:`engine.readers.explain.kept_given`: its posterior, as the step used
    it); None elsewhere."""
    if ctx.config is None:
        return None
    kept = kept_given(ctx.snapshot, sample, int(ctx.given[sample]), ctx.config, ctx.phase)
    if kept is None:
        return None
    other, p_given, p_other = kept
    names = ctx.class_names
    return (f"kept: the evidence does not favour a change (P given {names[int(ctx.given[sample])]} {p_given:.2f} "
            f"vs {names[other]} {p_other:.2f})")


def verdict_text(verdict: Consensus | None, class_names) -> str:
    """The consensus in words (pure)."""
    if verdict is None:
        return "not reviewed yet"
    if verdict.outlier:
        what = "outlier (left out of training)"
    elif verdict.label is not None:
        what = class_names[verdict.label] + (" (tie broken by the method's proposal)" if verdict.tie_broken else "")
    else:
        what = "no label yet (a tie)" if verdict.disputed else "unsure"
    return f"{what} · {len(verdict.votes)} reviewer{'s' if len(verdict.votes) != 1 else ''}"


def neighbours(ctx: ReviewContext, sample: int) -> tuple[np.ndarray, np.ndarray]:
    """The sample's nearest neighbours (indices, cosine similarities) in the step's graph or features."""
    snap = ctx.snapshot
    if "neighbor_idx" in snap:
        return snap["neighbor_idx"][sample].astype(np.int64), snap["neighbor_sim"][sample].astype(np.float32)
    if "features" not in snap:  # a large run's step that kept no features (engine.rundir.snapshot's policy)
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    features = snap["features"].astype(np.float32)
    features /= np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    sims = features @ features[sample]
    sims[sample] = -np.inf
    order = np.argsort(-sims, kind="stable")[:NEIGHBOURS_SHOWN]
    return order, sims[order]


def details(ctx: ReviewContext, sample: int, revealed: bool) -> None:
    """Below the card (which shows the image, labels and evidence): where the sample lies among the points
    (2-D data; vectors have no place to draw), its label's history over the steps, its nearest neighbours, and its decision log."""
    names, dataset = ctx.class_names, ctx.dataset
    near, sims = neighbours(ctx, sample)
    labels = ctx.snapshot["refined"] if revealed else ctx.given
    left, right = st.columns([1.0, 1.5])
    with left:
        if dataset.kind == "points":
            st.plotly_chart(figs.points_figure(dataset.train_x, labels, names, sample, near, size=340),
                            key="review_points", width="content")
    with right:
        if revealed:
            steps, values = ctx.history_of(sample)
            events = [d for d in ctx.decisions if d.sample == sample and d.step is not None]
            st.plotly_chart(figs.history_figure(steps, values["refined"], values["weight"],
                                                values["student_loss"], names, int(ctx.given[sample]),
                                                [(d.step, d.decision) for d in events]), key="review_history")
        else:
            st.caption("The label's history is hidden in blind mode until you decide.")
    edge = np.maximum(sims, 0) ** ctx.power
    st.caption(f"{len(near)} nearest neighbours ({'refined' if revealed else 'given'} label · edge weight)")
    if dataset.kind == "image":
        st.image(original_pictures(dataset, near, 112) or [figs.thumbnail(dataset.train_x[j], scale=6) for j in near],
                 caption=[md(f"{names[labels[j]]} · {w:.2f}") for j, w in zip(near, edge)], width=56)
    else:
        st.dataframe(pd.DataFrame({"sample": ctx.keys[near], "label": [names[labels[j]] for j in near],
                                   "edge weight": edge.astype(np.float64)}), hide_index=True, height=240,
                     column_config={"edge weight": st.column_config.NumberColumn(format="%.3f")}, width=420)
    decision_log(ctx, sample)


def decision_log(ctx: ReviewContext, sample: int) -> None:
    events = ctx.reviews.history(sample)
    if events:
        table = decisions_table(events, ctx.class_names, history=True)
        table["time"] = pd.to_datetime(table["time"], unit="s").dt.strftime("%Y-%m-%d %H:%M:%S")
        st.dataframe(table.drop(columns=["sample", "index", "kind", "disputed"]), hide_index=True)

"""How the reviewers agree: per reviewer, and (blind mode) my labels against the method's."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.review.context import ReviewContext
from engine.rundir import agreement, reviewer_agreement


def pct(value) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def reviewers_frame(stats: dict) -> pd.DataFrame:
    """The per-reviewer table (pure) from :func:`engine.rundir.review.reviewer_agreement`."""
    return pd.DataFrame({
        "reviewer": list(stats),
        "decisions": [s["decisions"] for s in stats.values()],
        "disputed": [s["disputed"] for s in stats.values()],
        "agreement with consensus": [f"{pct(s['with_consensus'])} of {s['compared_with_consensus']}"
                                     for s in stats.values()],
        "agreement with truth": [f"{pct(s['with_truth'])} of {s['compared_with_truth']}" for s in stats.values()]},
        columns=["reviewer", "decisions", "disputed", "agreement with consensus", "agreement with truth"])


def reviewers_section(ctx: ReviewContext) -> None:
    stats = reviewer_agreement(ctx.decisions, ctx.true)
    if not stats:
        st.caption("No decisions yet.")
        return
    st.dataframe(reviewers_frame(stats), hide_index=True, key="review_reviewers_table")
    disputed = sum(v.disputed for v in ctx.verdicts.values())
    st.caption(f"{len(ctx.verdicts)} samples reviewed, {disputed} disputed. Agreement with consensus counts the "
               "samples another reviewer also decided (majority vote; the method's proposal breaks a tie); "
               "agreement with truth, the samples whose true label is known.")


def blind_agreement(ctx: ReviewContext) -> None:
    stats = agreement(ctx.mine.values(), ctx.true, blind_only=True)
    if not stats["labelled"]:
        st.caption("Blind mode: your labels will be compared with the method's proposals (and with the truth, "
                   "where known) once you decide.")
        return
    st.caption(f"Blind mode, {stats['labelled']} labelled by you: agreement with the method {pct(stats['with_method'])}"
               f"; with the truth {pct(stats['with_truth'])} (the method's own: {pct(stats['method_with_truth'])}).")

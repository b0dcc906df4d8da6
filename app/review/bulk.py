"""Bulk accept: the method's most confident relabels, previewed with thumbnails, accepted as
one action (one Z undoes all of it)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app.access import can, require
from app.common import current_reviewer
from app.figures import review as figs
from app.review.context import ReviewContext, flash, md
from app.samples import original_pictures
from engine.errors import UserError
from engine.rundir import ReviewStore
from engine.readers.triage import bulk_candidates

THUMBNAILS = 60


def preview_captions(rows: np.ndarray, keys: np.ndarray, given: np.ndarray, refined: np.ndarray,
                     confidence: np.ndarray, class_names) -> list[str]:
    """One caption per candidate (pure): ``key: given → proposal (confidence)``."""
    return [f"{keys[i]}: {class_names[given[i]]} → {class_names[refined[i]]} ({confidence[i]:.2f})" for i in rows]


def bulk_accept(path: str, rows: tuple, proposals: tuple, step: int, num_classes: int) -> None:
    if not require("review"):
        return
    events = [dict(sample=i, decision="accept", reviewer=current_reviewer(), label=p, proposal=p, step=step)
              for i, p in zip(rows, proposals)]
    try:
        ReviewStore(path, num_classes=num_classes).record_many(events, once=True, batch=True)
    except UserError as exc:
        flash("error", md(exc))
        return
    flash("success", f"Accepted {len(events)} proposals in one action (Z undoes all of them).")


def bulk_section(ctx: ReviewContext) -> None:
    names, snap, opts = ctx.class_names, ctx.snapshot, ctx.opts
    if "lp_confidence" not in snap:
        st.caption("This step did not propagate labels: choose a propagation or refinery step.")
        return
    cols = st.columns(2)
    threshold = cols[0].slider("Minimum propagation confidence", 0.0, 1.0, 0.5, 0.05, key="review_bulk_conf")
    limit = cols[1].number_input("At most", 1, 100_000, 20, key="review_bulk_limit")
    reviewed = np.zeros(ctx.num_samples, bool)
    reviewed[list(ctx.mine)] = True
    rows = bulk_candidates(snap, ctx.given, reviewed, threshold, limit)
    captions = preview_captions(rows, ctx.keys, ctx.given, snap["refined"], snap["lp_confidence"], names)
    if ctx.dataset.kind == "image" and len(rows):
        shown = rows[:THUMBNAILS]
        with st.container(key="review_bulk_preview"):
            pictures = original_pictures(ctx.dataset, shown, 128) or \
                [figs.thumbnail(ctx.dataset.train_x[i], scale=5) for i in shown]
            st.image(pictures, caption=[md(c) for c in captions[:len(shown)]], width=64)
        if len(rows) > THUMBNAILS:
            st.caption(f"Thumbnails of the first {THUMBNAILS} of {len(rows)}.")
    else:
        st.dataframe(pd.DataFrame({"sample": ctx.keys[rows], "given": [names[ctx.given[i]] for i in rows],
                                   "proposal": [names[snap["refined"][i]] for i in rows],
                                   "confidence": snap["lp_confidence"][rows].round(3)}), hide_index=True, height=200)
    st.button(f"Accept these {len(rows)} proposals", key="review_bulk_accept", on_click=bulk_accept,
              args=(ctx.path, tuple(int(i) for i in rows), tuple(int(snap["refined"][i]) for i in rows), opts.step,
                    len(names)),
              disabled=not len(rows) or not opts.reviewer or opts.blind or not can("review"),
              help="One action: Z on the card undoes all of it. Disabled in blind mode and without a reviewer name.")

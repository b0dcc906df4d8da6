"""Bulk accept: the method's most confident relabels, previewed with thumbnails, accepted as
one action (one Z undoes all of it).

After an accept the section says so right above where the button was, and shows the next
candidates only when asked: a new set never appears under the button just pressed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app.access import can, require
from app.common import current_reviewer
from app.figures import review as figs
from app.review.context import ReviewContext, md
from app.samples import original_pictures
from engine.errors import UserError
from engine.rundir import ReviewStore
from engine.readers.triage import bulk_candidates

THUMBNAILS = 60
THUMB_PX = 96  # wide enough for a key such as "digits/1797" on one line; a longer one ends in "…"
DONE_KEY = "review_bulk_done"  # ("success" | "error", text) of the last bulk accept, shown in the section
#: Captions: the key on its own line, never broken inside (cut with "…" when too long), the change below.
CAPTION_CSS = (".st-key-review_bulk_preview [data-testid='stImageCaption'] p {white-space: pre; overflow: hidden; "
               "text-overflow: ellipsis; margin: 0;}")


def preview_captions(rows: np.ndarray, keys: np.ndarray, given: np.ndarray, refined: np.ndarray,
                     confidence: np.ndarray, class_names) -> list[tuple[str, str]]:
    """One caption per candidate (pure): ``(key, "given → proposal (confidence)")``, two lines under its picture."""
    return [(str(keys[i]), f"{class_names[given[i]]} → {class_names[refined[i]]} ({confidence[i]:.2f})")
            for i in rows]


def caption_markdown(caption: tuple[str, str]) -> str:
    """A caption's two lines as Markdown text (each escaped, one line each: names are text)."""
    return "\n".join(md(line) for line in caption)


def bulk_accept(path: str, rows: tuple, proposals: tuple, step: int, num_classes: int) -> None:
    if not require("review"):
        return
    events = [dict(sample=i, decision="accept", reviewer=current_reviewer(), label=p, proposal=p, step=step)
              for i, p in zip(rows, proposals)]
    try:
        ReviewStore(path, num_classes=num_classes).record_many(events, once=True, batch=True)
    except UserError as exc:
        st.session_state[DONE_KEY] = ("error", f"Nothing was accepted: {md(exc)}")
        return
    st.session_state[DONE_KEY] = ("success", f"Accepted {len(events)} proposals in one action: Z on the card "
                                             "undoes all of them.")


def next_set() -> None:
    st.session_state.pop(DONE_KEY, None)


def _done() -> bool:
    """The outcome of the last bulk accept, where the button was, and the way on (``False``: none to show)."""
    outcome = st.session_state.get(DONE_KEY)
    if outcome is None:
        return False
    kind, text = outcome
    with st.container(key="review_bulk_outcome"):
        (st.error if kind == "error" else st.success)(text, icon=":material/error:" if kind == "error" else
                                                       ":material/check_circle:")
        st.button("Show the next candidates", key="review_bulk_next", on_click=next_set)
    return True


def bulk_section(ctx: ReviewContext) -> None:
    names, snap, opts = ctx.class_names, ctx.snapshot, ctx.opts
    if "lp_confidence" not in snap:
        st.caption("This step did not propagate labels: choose a propagation or refinery step.")
        return
    cols = st.columns(2)
    threshold = cols[0].slider("Minimum propagation confidence", 0.0, 1.0, 0.5, 0.05, key="review_bulk_conf",
                               on_change=next_set)
    limit = cols[1].number_input("At most", 1, 100_000, 20, key="review_bulk_limit", on_change=next_set)
    if _done():
        return
    reviewed = np.zeros(ctx.num_samples, bool)
    reviewed[list(ctx.mine)] = True
    rows = bulk_candidates(snap, ctx.given, reviewed, threshold, limit)
    captions = preview_captions(rows, ctx.keys, ctx.given, snap["refined"], snap["lp_confidence"], names)
    if ctx.dataset.kind == "image" and len(rows):
        shown = rows[:THUMBNAILS]
        with st.container(key="review_bulk_preview"):
            st.html(f"<style>{CAPTION_CSS}</style>", unsafe_allow_javascript=False)
            pictures = original_pictures(ctx.dataset, shown, 128) or \
                [figs.thumbnail(ctx.dataset.train_x[i], scale=5) for i in shown]
            st.image(pictures, caption=[caption_markdown(c) for c in captions[:len(shown)]], width=THUMB_PX)
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

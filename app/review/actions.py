"""Decision buttons and their keys, bound to the card they were shown for.

Why a press could land twice (the root cause of issue 10's four accepts on one
card): a button's ``on_click`` arguments are those of the script run that last
drew it. A key pressed while the page redraws after a decision reaches the
server before the new card's buttons are drawn, so its callback still carries
the *old* card's sample, and recorded a second decision on it. Now every card
view gets a token (:class:`CardViews`); the buttons carry the sample and the
token of the card they were drawn for (and their keys name the sample); a
press for a card that is no longer on screen, or that this reviewer already
decided in this view, is dropped. The store drops a decision equal to the
reviewer's current one too (``once=True``: a second tab, a resent click).
Navigation moves along the queue as it is when the press arrives, not as it
was drawn.

Keys (Streamlit button shortcuts): A accept the proposal, K keep the given
label, 0-9 choose that class, U unsure, O outlier, Z undo my last action (a
bulk accept as a whole), J / Left previous, L / Right next. Streamlit ignores
shortcuts while a text field or select box has the focus: Enter (in the
reviewer field) or Escape hands the keys back to the review.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import streamlit as st

from app.review.context import ReviewContext, flash, md
from app.keys import RELEASE_FOCUS_SCRIPT  # the keys back to the page after a toggle
from app.review.queue import QUEUE_KEY
from engine.errors import UserError
from engine.rundir import ReviewStore

VIEWS_KEY = "review_views"
BULK_ORIGIN_KEY = "review_bulk_origin"  # batch number -> the sample on screen when it was made


@dataclass
class CardViews:
    """Which card is on screen and whether it was decided (pure; lives in the session).

    Each time a different sample comes on screen it gets a new token; a press
    counts only for the current token, once.
    """

    sample: int | None = None
    token: int = 0
    decided: bool = False
    history: list = field(default_factory=list)

    def show(self, sample: int) -> int:
        """The card drawn now; returns its token (the same while the same sample stays)."""
        if sample != self.sample:
            self.sample, self.token, self.decided = int(sample), self.token + 1, False
        return self.token

    def press(self, sample: int, token: int) -> bool:
        """Whether a press for ``sample`` shown as ``token`` counts (and mark it decided if so)."""
        if token != self.token or sample != self.sample or self.decided:
            return False
        self.decided = True
        return True

    def reopen(self) -> None:
        """After an undo: the card may be decided again."""
        self.decided = False
        self.sample = None


def views() -> CardViews:
    if VIEWS_KEY not in st.session_state:
        st.session_state[VIEWS_KEY] = CardViews()
    return st.session_state[VIEWS_KEY]


def neighbour_in_queue(queue: tuple, sample: int | None, offset: int) -> int | None:
    """The sample ``offset`` places from ``sample`` in ``queue`` (pure); ``None`` past either end.

    A sample no longer in the queue (hidden once decided) moves to the one that
    took its place.
    """
    if not queue:
        return None
    if sample is None or sample not in queue:
        return queue[0] if offset >= 0 else None
    position = queue.index(sample) + offset
    return queue[position] if 0 <= position < len(queue) else None


def go(sample: int | None) -> None:
    if sample is not None:
        st.query_params["sample"] = str(int(sample))


def _current() -> int | None:
    raw = st.query_params.get("sample", "")
    return int(raw) if raw.isdigit() else views().sample


def move(offset: int) -> None:
    go(neighbour_in_queue(st.session_state.get(QUEUE_KEY, ()), _current(), offset))


def decide(path: str, sample: int, token: int, decision: str, label, proposal: int, step: int, blind: bool,
           num_classes: int, class_names: tuple) -> None:
    """A decision button's callback: record it for the card it was drawn for, once, then move on."""
    from app.common import current_reviewer

    if not views().press(sample, token):
        return  # a press for a card no longer on screen, or one already decided in this view
    try:
        d = ReviewStore(path, num_classes=num_classes).record(sample, decision, current_reviewer(), label, step=step,
                                                              proposal=proposal, blind=blind, once=True)
    except UserError as exc:
        views().decided = False
        flash("error", str(exc))
        return
    what = d.decision if d.label is None else f"{d.decision} → {class_names[d.label]}"
    flash("success", f"Saved: {md(d.key or d.sample)}: {md(what)} (by {md(d.reviewer)}).")
    go(neighbour_in_queue(st.session_state.get(QUEUE_KEY, ()), sample, 1))


def undo(path: str, step: int) -> None:
    """Z: undo my last action (one decision, or a whole bulk accept) and go back to where it was made."""
    from app.common import current_reviewer

    try:
        undone = ReviewStore(path).undo_last(current_reviewer(), step=step)
    except UserError as exc:
        flash("error", str(exc))
        return
    views().reopen()
    if len(undone) > 1 or undone[0].batch is not None:
        flash("success", f"Undone: your bulk accept of {len(undone)} samples.")
        go(st.session_state.get(BULK_ORIGIN_KEY, {}).get(undone[0].batch, _current()))
    else:
        flash("success", f"Undone: your last decision on {md(undone[0].key or undone[0].sample)}.")
        go(undone[0].sample)


def actions(ctx: ReviewContext, sample: int, revealed: bool, has_prev: bool, has_next: bool) -> None:
    names, opts = ctx.class_names, ctx.opts
    token = views().show(sample)
    proposal, given = ctx.proposal(sample), int(ctx.given[sample])
    blind = opts.blind and not revealed
    disabled = not opts.reviewer
    common = dict(proposal=proposal, step=opts.step, blind=blind, num_classes=len(names), class_names=names)

    def button(label, shortcut, decision, label_id=None, key=None, **kw):
        st.button(label, shortcut=shortcut, key=f"{key or 'review_' + decision}_{sample}", disabled=disabled,
                  on_click=decide, args=(ctx.path, sample, token, decision, label_id), kwargs=common, **kw)

    with st.container(horizontal=True, key="review_actions"):
        if not blind:
            button(f"Accept {names[proposal]}", "A", "accept", proposal, type="primary", icon=":material/check:")
        button(f"Keep given {names[given]}", "K", "keep", given, icon=":material/undo:")
        button("Unsure", "U", "unsure", icon=":material/help:")
        button("Outlier", "O", "outlier", icon=":material/block:")
        st.button("Undo", shortcut="Z", key="review_undo", disabled=disabled, on_click=undo,
                  args=(ctx.path, opts.step), icon=":material/history:", help="Z: undo my last action")
    with st.container(horizontal=True, key="review_classes_row"):
        for c, name in enumerate(names[:10]):
            button(name, str(c), "keep" if c == given else "relabel", c, key=f"review_class_{c}")
        if len(names) > 10:
            pick = st.selectbox("Other class", range(len(names)), format_func=lambda c: names[c],
                                key="review_pick", label_visibility="collapsed")
            button("Relabel to chosen", None, "relabel", pick, key="review_pick_apply")
    with st.container(horizontal=True, key="review_nav"):
        st.button("Previous", shortcut="J", key="review_prev", on_click=move, args=(-1,), disabled=not has_prev,
                  icon=":material/arrow_back:", help="J or ←")
        st.button("Next", shortcut="L", key="review_next", on_click=move, args=(1,), disabled=not has_next,
                  icon=":material/arrow_forward:", help="L or →")
    with st.container(key="review_arrows"):  # the arrow keys: same actions, buttons not shown
        st.html("<style>.st-key-review_arrows {display: none;}</style>" + RELEASE_FOCUS_SCRIPT,
                unsafe_allow_javascript=True)
        st.button("Previous (arrow)", shortcut="Left", key="review_left", on_click=move, args=(-1,),
                  disabled=not has_prev)
        st.button("Next (arrow)", shortcut="Right", key="review_right", on_click=move, args=(1,),
                  disabled=not has_next)
    if disabled:
        st.info("Enter your name in the sidebar (Reviewer) to record decisions.", icon=":material/person:")

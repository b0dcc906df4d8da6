"""Review: decide, one sample at a time, on what the method relabels or doubts.

Decisions go straight to the run's ``reviews.sqlite`` (see
:mod:`engine.rundir.review`); a decision shown as saved is committed and synced.
Every reviewer's decisions count; the consensus of several is what the next
propagation clamps. The page keeps no state of its own beyond widgets: the
open run, the reviewer and the sample on screen are also in the URL
(``?run=NAME&reviewer=ME&sample=I``), so a reload comes back to the same place.

The queue, by default, holds the samples a review is most likely to change, at
most 20% of them (:func:`engine.readers.triage.build_queue`). Keys: see
:mod:`app.review.live_card`. The sections live in :mod:`app.review`.

The Queue choice "Audit: a random sample" (``?queue=audit``) walks the run's random audit instead
(:mod:`app.review.audit_card`): blind to the method, into ``audit.sqlite``, training nothing.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app.common import open_run, require_store, runs_root, sync_reviewer_with_url
from app.review import agreement, bulk, card, exports, live_card, ripple
from app.review.audit_card import AUDIT, audit_view
from app.review.context import load_context, md, show_flash
from app.review.queue import compute_queue, controls, queue_table
from engine.errors import UserError
from engine.rundir import run_class_names
from engine.rundir import RunStore


def open_store() -> RunStore:
    """The open run; ``?run=NAME`` (a folder under the runs root) opens one."""
    name = st.query_params.get("run")
    if name and Path(name).name == name and not st.session_state.get("run_dir"):
        if RunStore(runs_root() / name).exists():
            open_run(runs_root() / name)
            st.rerun()  # once, so that the sidebar (drawn before this page) shows the run too
        else:
            st.warning(f"Run {md(name)} was not found under {md(runs_root())}.")
    store = require_store()
    if store.path.parent.resolve() == runs_root().resolve():
        st.query_params["run"] = store.path.name
    return store


def section(label: str, key: str, draw, *args) -> None:
    """An expander whose content is drawn only while it is open (a redraw after a decision stays short)."""
    box = st.expander(label, key=key, on_change="rerun")
    if box.open:
        with box:
            draw(*args)


def main() -> None:
    sync_reviewer_with_url()
    store = open_store()
    steps = store.steps()
    st.title("Review")
    if not steps:
        st.info("This run has no steps yet: train it first (Train page), then review what it relabels. The "
                "random audit (Queue: Audit) opens after the first step; one made while the teacher trains is "
                "used by stage 0.")
        st.stop()
    class_names = run_class_names(store)
    opts = controls(steps, class_names)
    if opts.which == AUDIT:  # the random audit: nothing of the method's queue or its step is read
        audit_view(store, class_names, opts.reviewer)
        return
    try:
        ctx = load_context(store, class_names, steps, opts)
        queue, exact, estimate = compute_queue(ctx)
    except UserError as exc:  # a review log of other samples, a damaged file: say so, change nothing
        st.error(md(exc), icon=":material/error:")
        st.stop()
    show_flash()
    disputed = sum(v.disputed for v in ctx.verdicts.values())
    st.caption(f"{len(queue)} samples in the queue ({100 * opts.fraction:.0f}% at most) · {len(ctx.verdicts)} "
               f"reviewed in this run · {disputed} disputed · step {opts.step}"
               + (f" · reviewing as {md(opts.reviewer)}" if opts.reviewer else ""))

    if not len(queue):
        st.info("Nothing to review with these filters: widen the queue or choose another in the sidebar.")
    else:
        sample = live_card.review_card(ctx, queue)  # keys handled in the browser; the details follow the card
        section("Details of the sample on the card", "review_details_section", card.details, ctx, sample,
                not opts.blind or sample in ctx.mine)
        if opts.blind:
            agreement.blind_agreement(ctx)
        section("Queue", "review_queue_section", queue_table, ctx, queue, exact, estimate)
    section("Reviewers", "review_reviewers_section", agreement.reviewers_section, ctx)
    section("Bulk accept", "review_bulk_section", bulk.bulk_section, ctx)
    section("Apply and re-propagate", "review_ripple_section", ripple.ripple_section, ctx)
    section("Export and import", "review_export_section", exports.export_section, ctx)

main()

"""The sidebar's controls and the review queue: which samples, in which order, how many; its table."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import streamlit as st

from app.access import shared
from app.common import current_reviewer, set_reviewer
from app.review.context import Options, ReviewContext
from engine.readers.triage import (FLAGS, ORDERS, QUEUE_FILTERS, QUEUE_FRACTION, build_queue, expected_change, impact_scores,
                           review_flags)
from engine.errors import UserError
from engine.rundir import RunStore

ORDER_NAMES = {"change": "largest expected change first", "ambiguity": "most ambiguous first",
               "confidence": "least confident first", "impact": "largest expected impact first"}
QUEUE_NAMES = {"worth reviewing": "worth reviewing (default)", "relabelled": "relabelled by the method",
               "ambiguous": "most ambiguous 10%", "low confidence": "least confident 10%",
               "disputed": "disputed between reviewers", "reviewed": "reviewed by anyone", "all": "all samples",
               "audit": "Audit: a random sample"}
#: The Queue choices: the method's queues, then the random audit (app.review.audit_card: blind, its own log).
QUEUE_CHOICES = QUEUE_FILTERS + ("audit",)
TABLE_ROWS = 500
REVIEWER_WIDGET = "review_reviewer"
QUEUE_KEY = "review_queue_ids"  # the queue on screen: callbacks move along it


def _reviewer_changed() -> None:
    set_reviewer(st.session_state.get(REVIEWER_WIDGET, ""))


#: Address parameter of each queue control (``?queue=all&size=100&hide=1``): a reload or a shared link keeps them.
ADDRESS = {"review_blind": "blind", "review_step": "step", "review_which": "queue", "review_order": "order",
           "review_size": "size", "review_classes": "classes", "review_hide": "hide"}


def from_address(steps: list[int], num_classes: int) -> dict:
    """Widget values named by the address (pure of widgets: reads ``st.query_params``); bad values are left out."""
    q, values = st.query_params, {}
    flag = {"1": True, "0": False}
    if q.get("blind") in flag:
        values["review_blind"] = flag[q["blind"]]
    if q.get("hide") in flag:
        values["review_hide"] = flag[q["hide"]]
    if q.get("step", "").isdigit() and int(q["step"]) in steps:
        values["review_step"] = int(q["step"])
    if q.get("queue") in QUEUE_CHOICES:
        values["review_which"] = q["queue"]
    if q.get("order") in ORDERS:
        values["review_order"] = q["order"]
    if q.get("size", "").isdigit() and 1 <= int(q["size"]) <= 100:
        values["review_size"] = int(q["size"])
    if "classes" in q:
        picked = [int(c) for c in q["classes"].split(",") if c.isdigit() and int(c) < num_classes]
        values["review_classes"] = sorted(set(picked))
    return values


def to_address(defaults: dict) -> None:
    """Write the controls that differ from their defaults into the address; drop the others."""
    for key, name in ADDRESS.items():
        value = st.session_state.get(key)
        text = None
        if isinstance(value, bool):
            text = "1" if value else None
        elif isinstance(value, list):
            text = ",".join(str(int(v)) for v in value) or None
        elif value is not None and value != defaults.get(key):
            text = str(value)
        if text is None:
            if name in st.query_params:
                del st.query_params[name]
        elif st.query_params.get(name) != text:
            st.query_params[name] = text


def controls(steps: list[int], class_names) -> Options:
    """The sidebar: reviewer, blind mode, step, queue, order, size, classes, hide reviewed (all kept in the
    address too)."""
    if REVIEWER_WIDGET not in st.session_state:  # widget state is dropped on other pages: the session keeps the name
        st.session_state[REVIEWER_WIDGET] = current_reviewer()
    for key, value in from_address(steps, len(class_names)).items():
        if key not in st.session_state:  # a new session (or a reload): the address decides
            st.session_state[key] = value
    with st.sidebar:
        if not shared():  # with accounts the reviewer is the signed-in user
            st.text_input("Reviewer", key=REVIEWER_WIDGET, on_change=_reviewer_changed, max_chars=64,
                          placeholder="your name (required)")
        blind = st.toggle("Blind mode", key="review_blind",
                          help="Label each sample before the method's proposal and the other reviewers' votes show.")
        step = st.selectbox("Step", steps[::-1], key="review_step", help="Whose snapshot to review (default: last).")
        which = st.selectbox("Queue", QUEUE_CHOICES, key="review_which", format_func=QUEUE_NAMES.get,
                             help="The method's queues, or an audit: a random sample, blind to the method, that "
                                  "measures the labels (its own log; no audited label becomes a training label).")
        order = st.selectbox("Order", ORDERS, key="review_order", format_func=ORDER_NAMES.get)
        percent = st.slider("Queue size (% of samples)", 1, 100,
                            None if "review_size" in st.session_state else int(QUEUE_FRACTION * 100), key="review_size",
                            help="The default queue holds at most 20% of the samples: widen it here.")
        classes = st.multiselect("Classes", range(len(class_names)), format_func=lambda c: class_names[c],
                                 key="review_classes", help="Given or refined label among these (empty: all).")
        hide = st.toggle("Hide samples I decided", key="review_hide")
    to_address({"review_step": steps[-1], "review_which": QUEUE_FILTERS[0], "review_order": ORDERS[0],
                "review_size": int(QUEUE_FRACTION * 100)})
    return Options(reviewer=current_reviewer(), blind=blind, step=int(step), which=which, order=order,
                   fraction=percent / 100, classes=tuple(classes) or None, hide=hide)


@st.cache_data(show_spinner="Estimating the impact of each fix…", max_entries=8)
def _impact(path: str, step: int, stamp: int, queue: tuple) -> tuple[np.ndarray, dict, np.ndarray]:
    """(impact scores (N,), exact counts, neighbour estimate (N,)) of a propagating step; NaN/empty/-1 otherwise."""
    from engine.rundir import step_seeds
    from engine.readers.triage import impact_fix_labels, impact_proxy, step_replay

    store = RunStore(path)
    n = len(store.dataset_arrays()["given"])
    try:
        scores, exact = impact_scores(store, step, np.asarray(queue, np.int64))
        replay = step_replay(store, step)
        labels = step_seeds(replay.snapshot, replay.phase, replay.num_classes).labels
        fix = impact_fix_labels(replay.snapshot, replay.given, labels)
        estimate = impact_proxy(np.asarray(replay.snapshot["neighbor_idx"], np.int64), labels, fix)
    except UserError:  # the step ran no propagation: no impact to estimate
        return np.full(n, np.nan), {}, np.full(n, -1)
    return scores, exact, estimate


def disputed_mask(ctx: ReviewContext) -> np.ndarray:
    mask = np.zeros(ctx.num_samples, bool)
    mask[[s for s, v in ctx.verdicts.items() if v.disputed]] = True
    return mask


def compute_queue(ctx: ReviewContext) -> tuple[np.ndarray, dict, np.ndarray]:
    """(queue (M,), exact impact counts, neighbour estimate of the impact (N,), -1 where unknown).

    Order 'impact' on a step that ran no propagation falls back to expected change.

    The impact (replays of the step's whole propagation) is estimated only for
    the 'impact' order (else when the Queue table is opened), once per step on
    the queue before 'hide' (it does not depend on the decisions, so a decision
    never waits for it).
    """
    opts = ctx.opts
    reviewed = np.zeros(ctx.num_samples, bool)
    reviewed[list(ctx.verdicts)] = True
    args = dict(which=opts.which, fraction=opts.fraction, classes=opts.classes, disputed=disputed_mask(ctx),
                reviewed=reviewed)
    queue = build_queue(ctx.snapshot, ctx.given, order="change", **args)
    impact, exact, estimate = np.full(ctx.num_samples, np.nan), {}, np.full(ctx.num_samples, -1)
    if opts.order == "impact" and len(queue) and "neighbor_idx" in ctx.snapshot:  # replays the step: on request
        impact, exact, estimate = _impact(ctx.path, opts.step, ctx.stamp, tuple(int(i) for i in queue))
    if opts.order != "change":
        queue = build_queue(ctx.snapshot, ctx.given, order=opts.order, impact=impact, **args)
    if opts.hide:
        queue = queue[~np.isin(queue, list(ctx.mine))]
    st.session_state[QUEUE_KEY] = tuple(int(i) for i in queue)
    return queue, exact, estimate


def queue_frame(rows: np.ndarray, keys: np.ndarray, given: np.ndarray, refined: np.ndarray | None,
                change: np.ndarray, flags: dict, verdicts: dict, class_names, exact: dict,
                estimate: np.ndarray) -> pd.DataFrame:
    """The Queue table (pure): one row per queued sample.

    ``impact``: other samples whose label changes when it is fixed (exact
    where computed, else the neighbour estimate, marked ``≈``); ``decided``:
    the consensus label (or ``outlier`` / ``unsure`` / ``disputed``) and who
    decided; ``refined`` ``None`` hides the proposals (blind mode).
    """
    def decided(i: int) -> str:
        v = verdicts.get(int(i))
        if v is None:
            return ""
        what = "outlier" if v.outlier else class_names[v.label] if v.label is not None else \
            ("disputed" if v.disputed else "unsure")
        return f"{what} ({', '.join(v.reviewers)})" + (" · disputed" if v.disputed and v.resolved else "")

    impact = [str(exact[int(i)]) if int(i) in exact else (f"≈{int(e)}" if e >= 0 else "")
              for i, e in zip(rows, estimate)]
    return pd.DataFrame({
        "sample": keys[rows], "given": [class_names[given[i]] for i in rows],
        "proposal": [class_names[refined[i]] for i in rows] if refined is not None else [""] * len(rows),
        "expected change": np.round(change[rows].astype(np.float64), 2),
        "flags": [", ".join(f for f in FLAGS if flags[f][i]) for i in rows],
        "impact": impact, "decided": [decided(i) for i in rows]})


def _pick(rows: tuple) -> None:
    selected = st.session_state["review_queue_table"]["selection"]["rows"]
    if selected:
        st.query_params["sample"] = str(rows[selected[0]])


def queue_table(ctx: ReviewContext, queue: np.ndarray, exact: dict, estimate: np.ndarray) -> None:
    if not exact and len(queue) and "neighbor_idx" in ctx.snapshot:  # opened: the impact column asks for them
        _, exact, estimate = _impact(ctx.path, ctx.opts.step, ctx.stamp, tuple(int(i) for i in queue))
    rows = queue[:TABLE_ROWS]
    table = queue_frame(rows, ctx.keys, ctx.given, None if ctx.opts.blind else ctx.snapshot["refined"],
                        expected_change(ctx.snapshot, ctx.given), review_flags(ctx.snapshot, ctx.given),
                        ctx.verdicts, ctx.class_names, exact, estimate[rows])
    st.dataframe(table, hide_index=True, on_select=partial(_pick, tuple(int(i) for i in rows)),
                 selection_mode="single-row", key="review_queue_table", height=260,
                 column_config={"impact": st.column_config.TextColumn(
                     help="Other samples whose label changes when this one is fixed and the step re-propagated: "
                          "exact for the 40 with the most neighbours that could flip, ≈ an estimate from them")})
    if len(queue) > TABLE_ROWS:
        st.caption(f"The first {TABLE_ROWS} of {len(queue)} shown.")

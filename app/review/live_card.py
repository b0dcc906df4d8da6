"""The review card as a custom component: keys handled in the browser, decisions acknowledged by the server.

Why: with a Streamlit button per key, every press was a server round trip and a
rerun of the page, and a press that arrived during a rerun had no card to land
on (issue 20: 20 fast presses gave 8 decisions). Now the card
(``card_component.js``, Streamlit Custom Components v2: inline JS, no iframe)
holds a window of the queue (:data:`WINDOW` cards from the one on screen, with
their images), handles the keys itself, draws the next card at once, and sends
every press with its sample id and a client id; the whole unacknowledged outbox
goes to the server on each send (one trigger value), so a send lost to a rerun
is carried by the next. :func:`process_outbox` records the items in order, once
per client id (:meth:`engine.rundir.ReviewStore.submit`), and the next redraw
tells the card what became of each (saved, duplicate, conflict, undone).

Keys: A accept the proposal, K keep the given label, 0-9 that class, U unsure,
O outlier, Z undo my last action (pending ones included), J / ← previous,
L / → next. Keys typed in a text field are left alone.
"""

from __future__ import annotations

import base64
import hashlib
import io
from functools import partial
from pathlib import Path

import numpy as np
import streamlit as st

from app.access import can
from app.common import current_reviewer
from app.figures import review as figs
from app.review.card import kept_line, verdict_text, vote_lines
from app.review.context import ReviewContext
from app.samples import original_pictures
from engine.errors import UserError
from engine.readers.triage import FLAGS, review_flags
from engine.rundir import ReviewStore

HERE = Path(__file__).parent
COMPONENT_KEY = "review_card"
ACKS_KEY = "review_card_acks"  # client id -> what became of it (this session)
LAST_OUTBOX_KEY = "review_card_outbox"  # client ids of the newest outbox received
SAMPLE_KEY = "review_card_sample"  # the sample the card shows (the server's idea of it)
WINDOW = 150  # cards sent ahead of the one on screen (with their images)
BEHIND = 10  # and behind it
MAX_ACKS = 2000
SOURCES = (("propagation", "lp_top_classes", "lp_top_scores"), ("teacher", "teacher_top", "teacher_prob"),
           ("student", "student_top", "student_prob"))

card_component = st.components.v2.component("amlkd_review_card", html="",
                                            css=(HERE / "card_component.css").read_text(),
                                            js=(HERE / "card_component.js").read_text())


@st.cache_resource(max_entries=8, show_spinner=False)
def image_cache(path: str, stamp: int) -> dict:
    return {}


def image_url(pixels: np.ndarray) -> str:
    """A sample's pixels as a PNG ``data:`` URL (its own size: the browser enlarges it without smoothing);
    ``pixels``: a training input ``(C, H, W)`` in [0, 1], or an original's thumbnail, uint8 ``(h, w, 3)``."""
    from PIL import Image

    image = pixels if pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3 else \
        figs.thumbnail(pixels, scale=1)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def sample_image_url(dataset, sample: int) -> str:
    """The card's picture: the sample's original file at display size (a photo folder's), else its input."""
    originals = original_pictures(dataset, [sample])
    return image_url(originals[0] if originals else dataset.train_x[sample])


def evidence_lines(snapshot: dict, sample: int, class_names) -> list[str]:
    """What the sources say about the sample (pure): weight, confidence, each source's top classes."""
    lines = []
    details = []
    if "weight" in snapshot and np.isfinite(snapshot["weight"][sample]):
        details.append(f"AWE weight {float(snapshot['weight'][sample]):.2f}")
    if "lp_confidence" in snapshot:
        details.append(f"propagation confidence {float(snapshot['lp_confidence'][sample]):.2f}")
    if details:
        lines.append(" · ".join(details))
    for name, top, prob in SOURCES:
        if top in snapshot:
            pairs = [(int(c), float(p)) for c, p in zip(np.atleast_1d(snapshot[top][sample]),
                                                         np.atleast_1d(snapshot[prob][sample]))][:3]
            lines.append(f"{name}: " + ", ".join(f"{class_names[c]} {p:.2f}" for c, p in pairs if 0 <= c < len(class_names)))
    return lines


def mine_of(decision) -> dict | None:
    return None if decision is None else {"id": int(decision.id), "decision": decision.decision,
                                          "label": None if decision.label is None else int(decision.label)}


def card_payload(ctx: ReviewContext, samples, flags: dict, images: dict | None) -> list[dict]:
    """The cards of ``samples`` as the component reads them (names as plain strings; the JS sets text only)."""
    names, snap, me = ctx.class_names, ctx.snapshot, ctx.opts.reviewer
    cards = []
    for i in (int(s) for s in samples):
        verdict = ctx.verdicts.get(i)
        votes = vote_lines(verdict, names, me)
        card = {"sample": i, "key": str(ctx.keys[i]), "given": int(ctx.given[i]), "proposal": int(snap["refined"][i]),
                "evidence": [line for line in [kept_line(ctx, i)] if line] + evidence_lines(snap, i, names),
                "votes": votes,
                "consensus": verdict_text(verdict, names) if verdict is not None else "",
                "disputed": bool(verdict is not None and verdict.disputed),
                "flags": ", ".join(f for f in FLAGS if flags[f][i]), "mine": mine_of(ctx.mine.get(i)),
                "mine_id": int(ctx.mine[i].id) if i in ctx.mine else 0, "image": None, "point": None}
        if images is not None:
            if i not in images:
                images[i] = sample_image_url(ctx.dataset, i)
            card["image"] = images[i]
        elif ctx.dataset.kind == "points":  # vectors: neither image nor point, the card shows the key
            card["point"] = [float(v) for v in np.asarray(ctx.dataset.train_x[i]).ravel()[:2]]
        cards.append(card)
    return cards


def queue_id(ctx: ReviewContext, queue: np.ndarray) -> str:
    """Names the queue as filtered and ordered: the card keeps its own order until this changes."""
    o = ctx.opts
    text = f"{ctx.path}|{o.step}|{o.which}|{o.order}|{o.fraction}|{o.classes}|{o.hide}|{o.blind}|{o.reviewer}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _ack(status: str, current=None, message: str = "") -> dict:
    return {"status": status, "current": mine_of(current), "message": message}


def process_outbox(path: str, step: int | None, num_classes: int, value, log=ReviewStore) -> dict:
    """Record an outbox from the card, in order, once per client id; returns client id -> ack (pure of Streamlit
    except the reviewer and the role, which the callers pass in ``value``: ``reviewer``, ``allowed``).

    ``log``: the log class the decisions go to (:class:`engine.rundir.AuditStore` for the audit card)."""
    acks: dict = {}
    reviews = log(path, num_classes=num_classes)
    reviewer = value.get("reviewer", "")
    for item in value.get("outbox") or []:
        cid = str(item.get("cid", ""))
        if not cid or cid in acks:
            continue
        if not value.get("allowed"):
            acks[cid] = _ack("denied", message="Your role may not record review decisions; nothing was recorded.")
            continue
        try:
            sample = int(item.get("sample"))
            if item.get("kind") == "decide":
                label = item.get("label")
                status, decision = reviews.submit(sample, str(item.get("decision")), reviewer,
                                                  None if label is None else int(label), client_id=cid,
                                                  seen=item.get("seen"), step=step,
                                                  proposal=None if item.get("proposal") is None else int(item["proposal"]))
                acks[cid] = _ack(status, decision)  # saved/duplicate: this decision; conflict: the current one
            elif item.get("kind") == "undo":
                status, current = reviews.undo_client(reviewer, str(item.get("target", "")), cid, step=step)
                acks[cid] = _ack(status, current)
            elif item.get("kind") == "undo_last":
                status, current = reviews.undo_last_client(reviewer, cid, step=step)
                acks[cid] = _ack(status, current)
        except (UserError, TypeError, ValueError) as exc:
            acks[cid] = _ack("error", message=f"Not recorded: {exc}")
    return acks


def _on_sync(path: str, step: int, num_classes: int) -> None:
    value = st.session_state[COMPONENT_KEY]["sync"] or {}
    known = st.session_state.setdefault(ACKS_KEY, {})
    outbox = [item for item in value.get("outbox") or [] if str(item.get("cid", "")) not in known]
    fresh = process_outbox(path, step, num_classes, {"outbox": outbox, "reviewer": current_reviewer(),
                                                     "allowed": can("review") and bool(current_reviewer())})
    known.update(fresh)
    for old in list(known)[:-MAX_ACKS]:
        del known[old]
    st.session_state[LAST_OUTBOX_KEY] = [str(item.get("cid", "")) for item in value.get("outbox") or []]
    if value.get("sample") is not None:
        st.session_state[SAMPLE_KEY] = int(value["sample"])


def shown_sample(queue: np.ndarray) -> tuple[int, int]:
    """(position, sample) the card shows: the card's own, else the address's ``?sample=``, else the first."""
    wanted = st.session_state.get(SAMPLE_KEY)
    raw = st.query_params.get("sample", "")
    if wanted is None and raw.isdigit():
        wanted = int(raw)
    hits = np.flatnonzero(queue == wanted) if wanted is not None else []
    position = int(hits[0]) if len(hits) else 0
    return position, int(queue[position])


def review_card(ctx: ReviewContext, queue: np.ndarray) -> int:
    """Mount the card over ``queue`` (M,); returns the sample it shows (the details below follow it)."""
    position, sample = shown_sample(queue)
    st.query_params["sample"] = str(sample)
    start = max(0, position - BEHIND)
    window = queue[start:position + WINDOW]
    images = image_cache(ctx.path, ctx.stamp) if ctx.dataset.kind == "image" else None
    flags = review_flags(ctx.snapshot, ctx.given)
    known = st.session_state.get(ACKS_KEY, {})
    acks = {cid: known[cid] for cid in st.session_state.get(LAST_OUTBOX_KEY, []) if cid in known}
    reviewer = ctx.opts.reviewer
    why_not = ("Enter your name in the sidebar (Reviewer) to record decisions." if not reviewer else
               "Your role may not record review decisions.")
    data = {"queue_id": queue_id(ctx, queue), "start_sample": sample, "total": int(len(queue)),
            "class_names": list(ctx.class_names), "blind": bool(ctx.opts.blind),
            "can_decide": bool(reviewer) and can("review"), "why_not": why_not,
            "cards": [{**c, "position": start + n} for n, c in enumerate(card_payload(ctx, window, flags, images))],
            "acks": acks}
    card_component(key=COMPONENT_KEY, data=data, on_sync_change=partial(_on_sync, ctx.path, ctx.opts.step,
                                                                        len(ctx.class_names)))
    return sample

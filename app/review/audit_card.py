"""The Review page's audit mode: a random sample of the training samples, one card at a time, blind to the method.

The card is the review card's component (``card_component.js``, ``data.mode = "audit"``): keys queued in the
browser, each sent with a client id, recorded in order once per id, here into the run's audit log
(:class:`engine.rundir.AuditStore`, ``audit.sqlite``) instead of the review log. It walks
:func:`engine.readers.audit.next_to_audit` for the signed-in reviewer: the run's seeded audit order, less what
they audited. A card holds the image and the given label only: no proposal, no step data, no other reviewer's
vote, so the audit cannot favour the method. Keys: K the given label is right, 0-9 that class, U unsure,
O outlier, Z undo, J / L previous / next.

Above the card: the progress toward ``+-0.03`` and the running numbers (:mod:`app.audit_text`).
"""

from __future__ import annotations

import hashlib
from functools import partial

import numpy as np
import streamlit as st

from app.access import can
from app.audit_text import NOT_TRAINING, audit_lines, progress_line
from app.common import current_reviewer
from app.review.context import md
from app.review.live_card import (MAX_ACKS, WINDOW, card_component, image_cache, mine_of, process_outbox,
                                  sample_image_url)
from app.samples import load_dataset
from engine.errors import UserError
from engine.readers.audit import audit_report, next_to_audit
from engine.rundir import AuditStore, RunStore

AUDIT = "audit"  # the Queue choice (and ``?queue=audit``) of the audit mode
COMPONENT_KEY = "audit_card"
ACKS_KEY = "audit_card_acks"
LAST_OUTBOX_KEY = "audit_card_outbox"


def audit_cards(samples, first_position: int, keys, given, dataset, images: dict | None) -> list[dict]:
    """The cards of ``samples`` as the component reads them: key, given label, picture; nothing of the method
    (pure of Streamlit but for the image cache it is handed)."""
    cards = []
    for n, i in enumerate(int(s) for s in samples):
        card = {"sample": i, "key": str(keys[i]), "given": int(given[i]), "position": first_position + n,
                "evidence": [], "votes": [], "consensus": "", "disputed": False, "flags": "", "mine": None,
                "mine_id": 0, "image": None, "point": None}
        if images is not None:
            if i not in images:
                images[i] = sample_image_url(dataset, i)
            card["image"] = images[i]
        elif dataset.kind == "points":
            card["point"] = [float(v) for v in np.asarray(dataset.train_x[i]).ravel()[:2]]
        cards.append(card)
    return cards


def record_outbox(path: str, num_classes: int, value) -> dict:
    """Record an outbox from the audit card into the audit log, in order, once per client id (the review card's
    :func:`app.review.live_card.process_outbox`, with :class:`engine.rundir.AuditStore` and no step)."""
    return process_outbox(path, None, num_classes, value, log=AuditStore)


def _on_sync(path: str, num_classes: int) -> None:
    value = st.session_state[COMPONENT_KEY]["sync"] or {}
    known = st.session_state.setdefault(ACKS_KEY, {})
    outbox = [item for item in value.get("outbox") or [] if str(item.get("cid", "")) not in known]
    known.update(record_outbox(path, num_classes, {"outbox": outbox, "reviewer": current_reviewer(),
                                                   "allowed": can("review") and bool(current_reviewer())}))
    for old in list(known)[:-MAX_ACKS]:
        del known[old]
    st.session_state[LAST_OUTBOX_KEY] = [str(item.get("cid", "")) for item in value.get("outbox") or []]


def audit_card(store: RunStore, class_names, reviewer: str, mine: int) -> None:
    """Mount the card over the reviewer's next samples of the audit order (``mine``: how many they audited)."""
    path = str(store.path)
    arrays = store.dataset_arrays()
    window = next_to_audit(path, reviewer, WINDOW)
    dataset = load_dataset(path)
    images = image_cache(path, 0) if dataset.kind == "image" else None
    known = st.session_state.get(ACKS_KEY, {})
    acks = {cid: known[cid] for cid in st.session_state.get(LAST_OUTBOX_KEY, []) if cid in known}
    why_not = ("Enter your name in the sidebar (Reviewer) to record audit decisions." if not reviewer else
               "Your role may not record review decisions.")
    data = {"mode": AUDIT, "queue_id": hashlib.sha256(f"{path}|audit|{reviewer}".encode()).hexdigest()[:16],
            "start_sample": int(window[0]) if len(window) else -1, "total": int(len(arrays["given"])),
            "class_names": list(class_names), "blind": True, "can_decide": bool(reviewer) and can("review"),
            "why_not": why_not, "acks": acks,
            "cards": audit_cards(window, mine, arrays["keys"], arrays["given"], dataset, images)}
    card_component(key=COMPONENT_KEY, data=data, on_sync_change=partial(_on_sync, path, len(class_names)))


def audit_view(store: RunStore, class_names, reviewer: str) -> None:
    """The audit mode: the progress and the running numbers (compact: the card stays in view at 1024x768), what
    an audit is for, then the card."""
    try:
        report = audit_report(store.path)
        mine = sum(d.reviewer == reviewer for d in AuditStore(store.path).effective()) if reviewer else 0
    except UserError as exc:  # an audit log of other samples, a damaged file: say so, change nothing
        st.error(md(exc), icon=":material/error:")
        return
    with st.container(key="audit_numbers"):
        st.markdown(f"**{progress_line(report, mine if reviewer else None)}**")
        if report is not None:
            st.caption("  \n".join(audit_lines(report)))
        st.caption(f"{NOT_TRAINING} The card shows the given label only, never the method's proposal: K if it is "
                   "right, else the class (0-9), U unsure, O outlier, Z undo.")
    audit_card(store, class_names, reviewer, mine)

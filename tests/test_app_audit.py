"""The Review page's audit mode in Streamlit's AppTest: the card walks the seeded audit order blind to the
method, its decisions land in audit.sqlite (never reviews.sqlite), and the numbers above it follow."""

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from engine.method.audit import audit_order
from engine.rundir import AuditStore, RunStore

PAGE = str(Path(__file__).resolve().parents[1] / "app" / "views" / "review.py")


@pytest.fixture
def run_dir(moons_copy):
    """conftest's copy of the finished tiny moons run (the tests write reviews and audits into it)."""
    return moons_copy


def open_audit(run_dir, reviewer: str | None = "ann") -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["run_dir"] = str(run_dir)
    at.query_params["queue"] = "audit"
    at.run()
    assert not at.exception, at.exception
    if reviewer is not None:
        at.sidebar.text_input(key="review_reviewer").input(reviewer).run()
        assert not at.exception, at.exception
    return at


def card_data(at: AppTest) -> dict:
    found = at.get("bidi_component")
    assert found, "no card on the page"
    proto = found[0].proto
    return json.loads(proto.json if proto.json else proto.mixed.json)


def send(at: AppTest, run_dir, reviewer: str, items: list[dict]) -> dict:
    """Record presses as the audit card sends them (app.review.audit_card._on_sync's call), then redraw."""
    from app.review.audit_card import record_outbox

    outbox = [{"cid": f"a-{reviewer}-{n}-{len(AuditStore(run_dir).history())}", **item} for n, item in enumerate(items)]
    acks = record_outbox(str(run_dir), len(card_data(at)["class_names"]),
                         {"outbox": outbox, "reviewer": reviewer, "allowed": True})
    at.run()
    assert not at.exception, at.exception
    return acks


def decide(sample: int, decision: str, label=None) -> dict:
    return {"kind": "decide", "sample": sample, "decision": decision, "label": label, "seen": 0, "proposal": None}


def texts(at: AppTest) -> str:
    return "\n".join([m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info])


def test_the_card_walks_the_seeded_order_and_shows_no_proposal(run_dir):
    at = open_audit(run_dir)
    data = card_data(at)
    store = RunStore(run_dir)
    n, seed = len(store.dataset_arrays()["given"]), store.config().seed
    assert data["mode"] == "audit" and data["blind"] is True
    assert [c["sample"] for c in data["cards"]] == audit_order(n, seed)[:len(data["cards"])].tolist()
    for card in data["cards"]:
        assert "proposal" not in card and card["evidence"] == [] and card["votes"] == [] and card["flags"] == ""
    assert "none becomes a training label" in texts(at) and "Nothing audited yet" in texts(at)
    assert "Noise rate" not in texts(at)


def test_decisions_land_in_the_audit_log_and_the_numbers_follow(run_dir):
    at = open_audit(run_dir)
    cards = card_data(at)["cards"][:4]
    first = [c["sample"] for c in cards]
    other = [(c["given"] + 1) % 2 for c in cards]
    acks = send(at, run_dir, "ann", [decide(first[0], "keep"), decide(first[1], "relabel", other[1]),
                                     decide(first[2], "outlier"), decide(first[3], "unsure")])
    assert [a["status"] for a in acks.values()] == ["saved"] * 4
    assert (run_dir / "audit.sqlite").exists() and not (run_dir / "reviews.sqlite").exists()
    latest = AuditStore(run_dir).latest()
    assert [latest[s].decision for s in first] == ["keep", "relabel", "outlier", "unsure"]
    assert all(d.proposal is None and d.blind for d in latest.values())
    shown = texts(at)
    assert "Audited 3 of about" in shown and "1 left out" in shown and "you: 4" in shown
    assert "Noise rate: 0.667" in shown and "2 of 3)" in shown  # the relabelled one and the outlier
    store = RunStore(run_dir)
    order = audit_order(len(store.dataset_arrays()["given"]), store.config().seed)
    assert [c["sample"] for c in card_data(at)["cards"]][:2] == [s for s in order if s not in first][:2]
    assert card_data(at)["cards"][0]["position"] == 4  # the fifth of the reviewer's audit


def test_accept_is_refused_and_nothing_is_recorded_without_a_reviewer(run_dir):
    at = open_audit(run_dir)
    sample = card_data(at)["cards"][0]["sample"]
    acks = send(at, run_dir, "ann", [{**decide(sample, "accept", 1)}])
    assert [a["status"] for a in acks.values()] == ["error"] and "does not accept" in list(acks.values())[0]["message"]
    nobody = open_audit(run_dir, reviewer=None)
    data = card_data(nobody)
    assert not data["can_decide"] and data["why_not"].startswith("Enter your name")
    assert not AuditStore(run_dir).history()


def test_a_second_reviewer_starts_at_the_top_of_the_order(run_dir):
    at = open_audit(run_dir, "ann")
    first = card_data(at)["cards"][0]["sample"]
    send(at, run_dir, "ann", [decide(first, "keep")])
    bob = open_audit(run_dir, "bob")
    assert card_data(bob)["cards"][0]["sample"] == first  # ann's audit does not skip bob's
    assert "Audited 1 of about" in texts(bob) and "you: 0" in texts(bob)


def test_the_review_queue_is_untouched(run_dir):
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["run_dir"] = str(run_dir)
    at.run()
    data = card_data(at)
    assert data.get("mode") is None and "proposal" in data["cards"][0]  # the review card as before
    assert "audit" in at.sidebar.selectbox(key="review_which").options or \
        "Audit: a random sample" in at.sidebar.selectbox(key="review_which").options
    assert np.all([c["sample"] >= 0 for c in data["cards"]])

"""The Review page in Streamlit's AppTest: decisions recorded, kept across a reload, blind mode, ripple."""

import json
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine.rundir.review import ReviewStore

PAGE = str(Path(__file__).resolve().parents[1] / "app" / "views" / "review.py")


@pytest.fixture
def run_dir(moons_copy):
    """conftest's copy of the finished tiny moons run (the tests write reviews and audits into it)."""
    return moons_copy


def open_page(run_dir, reviewer: str | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["run_dir"] = str(run_dir)
    at.run()
    assert not at.exception, at.exception
    if reviewer is not None:
        at.sidebar.text_input(key="review_reviewer").input(reviewer).run()
    return at


def open_section(at: AppTest, key: str) -> AppTest:
    """Open one of the page's lazy expanders (their content is drawn only while open)."""
    at.session_state[key] = True
    at.run()
    assert not at.exception, at.exception
    return at


def card_data(at: AppTest) -> dict:
    """What the page handed the review card (the component's data)."""
    found = at.get("bidi_component")
    assert found, "no review card on the page"
    proto = found[0].proto
    if proto.json:
        return json.loads(proto.json)
    return json.loads(proto.mixed.json)


def first_samples(at: AppTest, count: int) -> list[int]:
    return [c["sample"] for c in card_data(at)["cards"][:count]]


def send(at: AppTest, run_dir, reviewer: str, items: list[dict], allowed: bool = True) -> dict:
    """Record presses as the card sends them (client ids, in order), then redraw; returns the acks."""
    from app.review.live_card import process_outbox

    data = card_data(at)
    outbox = [{"cid": f"t-{reviewer}-{n}-{len(ReviewStore(run_dir).history())}", **item} for n, item in enumerate(items)]
    acks = process_outbox(str(run_dir), int(at.session_state["review_step"]), len(data["class_names"]),
                          {"outbox": outbox, "reviewer": reviewer, "allowed": allowed})
    at.run()
    assert not at.exception, at.exception
    return acks


def decide(sample: int, decision: str, label=None, seen=None, proposal=None) -> dict:
    return {"kind": "decide", "sample": sample, "decision": decision, "label": label, "seen": seen,
            "proposal": proposal}


def test_review_five_samples_then_reload(run_dir):
    at = open_page(run_dir, "ann")
    samples = first_samples(at, 5)
    cards = {c["sample"]: c for c in card_data(at)["cards"]}
    acks = send(at, run_dir, "ann", [decide(samples[0], "accept", cards[samples[0]]["proposal"], 0),
                                     decide(samples[1], "keep", None, 0), decide(samples[2], "relabel", 1, 0),
                                     decide(samples[3], "unsure", None, 0), decide(samples[4], "outlier", None, 0)])
    assert [a["status"] for a in acks.values()] == ["saved"] * 5
    latest = ReviewStore(run_dir).latest()
    assert [latest[s].decision for s in samples] == ["accept", "keep", "relabel", "unsure", "outlier"]
    again = open_page(run_dir, "ann")  # a new session on the same run directory
    assert any("5 reviewed in this run" in c.value for c in again.caption)
    mine = {c["sample"]: c["mine"] for c in card_data(again)["cards"]}
    assert [mine[s]["decision"] for s in samples] == ["accept", "keep", "relabel", "unsure", "outlier"]


def test_a_resent_press_is_recorded_once_and_undo_cancels(run_dir):
    at = open_page(run_dir, "undoer")
    first = first_samples(at, 1)[0]
    item = {"cid": "undoer-1", **decide(first, "unsure", None, 0)}
    from app.review.live_card import process_outbox

    args = (str(run_dir), int(at.session_state["review_step"]), 2)
    assert process_outbox(*args, {"outbox": [item], "reviewer": "undoer", "allowed": True})["undoer-1"]["status"] == "saved"
    assert process_outbox(*args, {"outbox": [item], "reviewer": "undoer", "allowed": True})["undoer-1"]["status"] == "duplicate"
    undo = {"cid": "undoer-2", "kind": "undo", "target": "undoer-1", "sample": first}
    acks = process_outbox(*args, {"outbox": [item, undo], "reviewer": "undoer", "allowed": True})
    assert acks["undoer-2"]["status"] == "undone" and acks["undoer-2"]["current"] is None
    assert not any(d.reviewer == "undoer" for d in ReviewStore(run_dir).latest().values())
    assert len([d for d in ReviewStore(run_dir).history() if d.reviewer == "undoer"]) == 2


def test_no_reviewer_no_decision(run_dir):
    at = open_page(run_dir)
    data = card_data(at)
    assert not data["can_decide"] and data["why_not"].startswith("Enter your name")
    acks = send(at, run_dir, "", [decide(first_samples(at, 1)[0], "keep")], allowed=False)
    assert [a["status"] for a in acks.values()] == ["denied"] and not ReviewStore(run_dir).history()


def test_blind_mode_tells_the_card(run_dir):
    at = open_page(run_dir, "blindy")
    at.sidebar.toggle(key="review_blind").set_value(True).run()
    assert card_data(at)["blind"] is True
    assert at.query_params["blind"] in ("1", ["1"])  # kept in the address


def test_ripple_and_impact_order(run_dir):
    at = open_page(run_dir, "ripple")
    at.sidebar.selectbox(key="review_order").set_value("impact").run()
    assert not at.exception, at.exception
    card = card_data(at)["cards"][0]
    send(at, run_dir, "ripple", [decide(card["sample"], "accept", card["proposal"], 0)])
    open_section(at, "review_ripple_section")
    at.button(key="review_apply").click().run()
    assert not at.exception, at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Reviewed labels clamped"]) >= 1
    assert int(metrics["Other samples changed"]) >= 0


# ---------------------------------------------------------------- the page's figures (pure functions)
def test_thumbnail_enlarges_and_inverts_grey():
    import numpy as np

    from app.figures.review import thumbnail

    grey = thumbnail(np.array([[[0.0, 1.0], [0.5, 0.0]]]), scale=2)
    assert grey.shape == (4, 4) and grey.dtype == np.uint8
    np.testing.assert_array_equal(grey[::2, ::2], [[255, 0], [128, 255]])  # ink (1) dark
    rgb = thumbnail(np.zeros((3, 2, 5)), scale=3)
    assert rgb.shape == (6, 15, 3) and rgb.max() == 0


def test_sample_card_figures():
    import numpy as np

    from app.figures import review as figs

    names = ["a", "b", "c"]
    points = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], float)
    fig = figs.points_figure(points, np.array([0, 0, 1, 2]), names, focus=1, neighbors=np.array([0, 3]))
    by_name = {t.name: t for t in fig.data}
    assert [len(by_name[n].x) for n in names] == [2, 1, 1]
    assert list(by_name["neighbours"].x) == [1, 0, None, 1, 1, None]
    assert (by_name["this sample"].x[0], by_name["this sample"].marker.symbol) == (1, "star")
    bars = figs.top3_figure({"teacher": (np.array([2, 0, -1]), np.array([0.7, 0.2, 0.1]))}, names)
    assert list(bars.data[0].y) == ["teacher: a", "teacher: c"] and list(bars.data[0].x) == [0.2, 0.7]
    history = figs.history_figure(np.array([1, 2, 3]), np.array([0, 1, 1]), np.array([np.nan, 0.4, 0.9]),
                                  np.array([2.0, 1.0, 0.5]), names, given=0, decisions=[(3, "accept")])
    assert list(history.data[0].y) == ["a", "b", "b"] and list(history.data[1].y) == ["a", "a"]
    assert history.layout.annotations[0].text == "accept"
    assert list(history.layout.yaxis.categoryarray) == ["a", "b"]  # the classes it visited, in class order


def test_ripple_figure_marks_changed_and_clamped():
    import numpy as np

    from app.figures.review import ripple_figure

    coords = np.arange(10.0).reshape(5, 2)
    fig = ripple_figure(coords, np.array([0, 0, 1, 1, 0]), np.array([0, 1, 1, 0, 0]), np.array([1, 3]),
                        np.array([2]), ["x", "y"])
    by_name = {t.name: t for t in fig.data}
    assert list(by_name["changed by the clamps"].text) == ["sample 1: x → y", "sample 3: y → x"]
    assert list(by_name["reviewed (clamped)"].x) == [4.0]
    assert len(by_name["x"].x) == 3 and len(by_name["y"].x) == 2  # coloured by the new labels


# ---------------------------------------------------------------- several reviewers, bulk, reviewer, bad logs
def test_two_reviewers_on_one_sample_are_disputed_on_both_screens(run_dir):
    ann = open_page(run_dir, "d-ann")
    sample = first_samples(ann, 1)[0]
    send(ann, run_dir, "d-ann", [decide(sample, "relabel", 0, 0)])
    bob = open_page(run_dir, "d-bob")
    assert first_samples(bob, 1)[0] == sample  # the same first card
    send(bob, run_dir, "d-bob", [decide(sample, "relabel", 1, 0)])
    for at, you in ((bob, "d-bob"), (ann, "d-ann")):
        at.run()
        card = next(c for c in card_data(at)["cards"] if c["sample"] == sample)
        assert card["disputed"] is True
        expected = ["d-ann: relabel → class 0", "d-bob: relabel → class 1"]
        assert card["votes"] == [v.replace(you + ":", you + " (you):") for v in expected]
    ann.sidebar.selectbox(key="review_which").set_value("disputed").run()
    assert first_samples(ann, 5) == [sample] and ann.query_params["queue"] in ("disputed", ["disputed"])
    open_section(ann, "review_reviewers_section")
    reviewers = next(d.value for d in ann.dataframe if "agreement with consensus" in d.value.columns).set_index("reviewer")
    assert reviewers.loc["d-ann", "decisions"] == 1 and reviewers.loc["d-ann", "disputed"] == 1


def test_reviewer_comes_from_the_address_and_stays_in_the_session(run_dir):
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["run_dir"] = str(run_dir)
    at.query_params["reviewer"] = "from-url"
    at.run()
    assert at.sidebar.text_input(key="review_reviewer").value == "from-url"
    assert card_data(at)["can_decide"] is True
    again = AppTest.from_file(PAGE, default_timeout=120)  # the session after another page or run: the name is
    again.session_state["run_dir"] = str(run_dir)  # in the session, no longer in a widget nor in the address
    again.session_state["reviewer"] = "from-session"
    again.run()
    assert again.sidebar.text_input(key="review_reviewer").value == "from-session"
    assert again.query_params["reviewer"] in ("from-session", ["from-session"])
    again.sidebar.text_input(key="review_reviewer").input("renamed").run()
    assert again.session_state["reviewer"] == "renamed"
    assert again.query_params["reviewer"] in ("renamed", ["renamed"])


def test_bulk_accept_is_one_action_and_z_undoes_it_whole(run_dir):
    at = open_page(run_dir, "bulky")
    assert "review_bulk_accept" not in [b.key for b in at.button]  # a closed section draws nothing
    open_section(at, "review_bulk_section")
    at.number_input(key="review_bulk_limit").set_value(5).run()
    at.slider(key="review_bulk_conf").set_value(0.0).run()
    at.button(key="review_bulk_accept").click().run()
    mine = [d for d in ReviewStore(run_dir).effective() if d.reviewer == "bulky"]
    assert len(mine) == 5 and len({d.batch for d in mine}) == 1
    # the outcome where the button was, and no new set under it until asked
    assert [m.value for m in at.success] == ["Accepted 5 proposals in one action: Z on the card undoes all of them."]
    assert "review_bulk_accept" not in [b.key for b in at.button]
    at.button(key="review_bulk_next").click().run()
    assert not at.success and at.button(key="review_bulk_accept").label == "Accept these 5 proposals"
    acks = send(at, run_dir, "bulky", [{"kind": "undo_last", "sample": mine[0].sample}])  # Z with nothing pending
    assert [a["status"] for a in acks.values()] == ["undone"]
    assert not [d for d in ReviewStore(run_dir).effective() if d.reviewer == "bulky"]


def test_reviewer_name_with_markup_goes_to_the_card_as_plain_text(run_dir):
    name = '<b>Zoë</b> "Q" *x*'
    at = open_page(run_dir, name)
    sample = first_samples(at, 1)[0]
    send(at, run_dir, name, [decide(sample, "unsure", None, 0)])
    card = next(c for c in card_data(at)["cards"] if c["sample"] == sample)
    assert card["votes"] == [f"{name} (you): unsure"]  # the card sets it as text (textContent), never as HTML
    assert [d.reviewer for d in ReviewStore(run_dir).effective() if d.reviewer.startswith("<b>")] == [name]
    assert any("reviewing as \\<b\\>Zoë\\</b\\> \"Q\" \\*x\\*" in c.value for c in at.caption)  # markdown with the markup escaped


def test_a_log_of_other_samples_is_refused_in_one_line(tmp_path, tiny_moons_run):
    path = tmp_path / "moons"
    shutil.copytree(tiny_moons_run, path)
    ReviewStore(path).record(0, "keep", "ann")
    import numpy as np

    from engine.rundir.store import RunStore

    arrays = RunStore(path).dataset_arrays()
    arrays["given"] = 1 - arrays["given"]  # another dataset's given labels
    np.savez(path / "dataset.npz", **arrays)
    at = open_page(path)
    assert [e.value for e in at.error] and "was written for other samples" in at.error[0].value
    assert "\n" not in at.error[0].value
    (path / "reviews.sqlite").write_bytes(b"garbage" * 100)
    for extra in ("reviews.sqlite-wal", "reviews.sqlite-shm"):
        (path / extra).unlink(missing_ok=True)
    at = open_page(path)
    assert "is damaged" in at.error[0].value and "reviews.sqlite" in at.error[0].value


# ---------------------------------------------------------------- pure helpers of the page
def test_queue_frame_shows_impact_and_decided_label():
    import numpy as np

    from app.review.queue import queue_frame
    from engine.rundir.review import Decision, consensus_of

    def d(i, sample, who, label):
        return Decision(i, sample, None, "relabel", label, who, 0.0)

    verdicts = consensus_of([d(1, 0, "ann", 1), d(2, 2, "ann", 0), d(3, 2, "bob", 1)])
    flags = {"relabelled": np.array([True, False, False]), "ambiguous": np.array([False, True, False]),
             "low confidence": np.zeros(3, bool)}
    table = queue_frame(np.array([0, 2, 1]), np.array(["a", "b", "c"]), np.array([0, 0, 1]), np.array([1, 0, 1]),
                        np.array([0.9, 0.1, 0.5]), flags, verdicts, ["x", "y"], {0: 4}, np.array([3, 0, 2]))
    assert table["impact"].tolist() == ["4", "≈0", "≈2"]
    assert table["decided"].tolist() == ["y (ann)", "disputed (ann, bob)", ""]
    assert table["proposal"].tolist() == ["y", "y", "x"] and table["flags"].tolist() == ["relabelled", "", "ambiguous"]
    assert table["expected change"].tolist() == [0.9, 0.5, 0.1]
    hidden = queue_frame(np.array([0]), np.array(["a"]), np.array([0]), None, np.array([0.9]), flags, {}, ["x", "y"],
                         {}, np.array([-1]))
    assert hidden["proposal"].tolist() == [""] and hidden["impact"].tolist() == [""]


def test_votes_reviewers_and_text_helpers():
    import numpy as np

    from app.review.agreement import reviewers_frame
    from app.review.bulk import caption_markdown, preview_captions
    from app.review.card import verdict_text, vote_lines
    from app.review.context import md
    from engine.rundir.review import Decision, consensus_of, reviewer_agreement

    votes = [Decision(1, 0, None, "relabel", 1, "ann", 0.0, proposal=0), Decision(2, 0, None, "keep", 0, "bob", 0.0)]
    verdict = consensus_of(votes)[0]
    assert vote_lines(verdict, ["x", "y"], me="bob") == ["ann: relabel → y", "bob (you): keep → x"]
    assert verdict_text(verdict, ["x", "y"]) == "x (tie broken by the method's proposal) · 2 reviewers"
    assert verdict_text(None, ["x"]) == "not reviewed yet"
    frame = reviewers_frame(reviewer_agreement(votes, np.array([1])))
    assert frame.values.tolist() == [["ann", 1, 1, "0% of 1", "100% of 1"], ["bob", 1, 1, "100% of 1", "0% of 1"]]
    assert md('<i>a*b</i> "q" ![x](http://h/y)') == '\\<i\\>a\\*b\\</i\\> "q" \\!\\[x\\](`http://h/y)`'
    assert preview_captions(np.array([1]), np.array(["k0", "k1"]), np.array([0, 0]), np.array([0, 1]),
                            np.array([0.5, 0.875]), ["x", "y"]) == [("k1", "x → y (0.88)")]
    assert caption_markdown(("a*b/c", "x → y (0.88)")) == "a\\*b/c\nx → y (0.88)"  # two lines, each escaped


def test_queue_table_shows_impact_and_every_step_opens(run_dir):
    at = open_section(open_page(run_dir, "tabler"), "review_queue_section")
    table = next(d.value for d in at.dataframe if "impact" in d.value.columns)
    assert len(table) and (table["impact"] != "").all()  # exact counts or ≈ estimates, never empty
    assert table["impact"].str.fullmatch(r"\d+").any()  # some exact
    send(at, run_dir, "tabler", [decide(first_samples(at, 1)[0], "relabel", 1, 0)])
    table = next(d.value for d in at.dataframe if "impact" in d.value.columns)
    assert any("tabler" in v and v.startswith("class ") for v in table["decided"]), table["decided"].tolist()
    at.sidebar.selectbox(key="review_order").set_value("impact").run()
    for step in at.sidebar.selectbox(key="review_step").options:  # teacher, propagate, warm-up, refine, mutual
        at.sidebar.selectbox(key="review_step").set_value(step).run()
        assert not at.exception, (step, at.exception)
        assert not at.error, (step, [e.value for e in at.error])


def test_the_card_says_why_the_calibrated_rule_kept_a_given_label(run_dir):
    """Where the step's calibrated rule kept the given label while the propagation favoured another class, the
    card's first evidence line says so with the step's posterior of both; on no other card."""
    from engine.readers.explain import kept_given
    from engine.rundir.store import RunStore

    at = open_page(run_dir, "kim")
    data, store = card_data(at), RunStore(run_dir)
    step = int(at.session_state["review_step"])
    phase = next(m["phase"] for m in store.metrics() if m["step"] == step)
    snapshot, given, names = store.snapshot(step), store.dataset_arrays()["given"], data["class_names"]
    kept = 0
    for card in data["cards"]:
        i = card["sample"]
        found = kept_given(snapshot, i, given[i], store.config(), phase)
        if found is None:
            assert not any(line.startswith("kept:") for line in card["evidence"]), card
            continue
        kept += 1
        other, p_given, p_other = found
        assert card["proposal"] == given[i] != other and snapshot["lp_top_classes"][i][0] == other
        assert card["evidence"][0] == (f"kept: the evidence does not favour a change (P given {names[given[i]]} "
                                       f"{p_given:.2f} vs {names[other]} {p_other:.2f})")
        assert p_given >= p_other == float(snapshot["posterior"][i][other])
    assert kept > 0, "the fixture must hold a sample the calibrated rule kept"

"""The Review page in Streamlit's AppTest: decisions recorded, kept across a reload, blind mode, ripple."""

import re
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from engine.review import ReviewStore

PAGE = str(Path(__file__).resolve().parents[1] / "app" / "views" / "review.py")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_moons_run):
    """A copy of the session's finished tiny moons run (the tests write reviews into it)."""
    path = tmp_path_factory.mktemp("review_app") / "moons"
    shutil.copytree(tiny_moons_run, path)
    return path


def open_page(run_dir, reviewer: str | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["run_dir"] = str(run_dir)
    at.run()
    assert not at.exception, at.exception
    if reviewer is not None:
        at.sidebar.text_input(key="review_reviewer").input(reviewer).run()
    return at


def heading(at: AppTest) -> str:
    return at.subheader[0].value


def card_button(at: AppTest, key: str):
    """A button by key; a decision button's key ends in the sample it was drawn for (``review_accept_12``)."""
    found = [b for b in at.button if b.key == key or re.fullmatch(re.escape(key) + r"_\d+", b.key or "")]
    assert found, f"no button {key!r} among {[b.key for b in at.button]}"
    return found[0]


def press(at: AppTest, key: str) -> str:
    """Click a button by key; return the flash message it left."""
    card_button(at, key).click().run()
    assert not at.exception, at.exception
    messages = [m.value for m in at.success] + [m.value for m in at.error]
    return messages[0] if messages else ""


def test_review_five_samples_then_reload(run_dir):
    at = open_page(run_dir, "ann")
    seen = []
    for key in ("review_accept", "review_keep", "review_class_1", "review_unsure", "review_outlier"):
        seen.append(heading(at).split(" · ")[0].removeprefix("Sample "))
        assert press(at, key).startswith(f"Saved: {seen[-1]}:")
    assert len(set(seen)) == 5  # each decision moved on to the next sample
    latest = ReviewStore(run_dir).latest()
    assert len(latest) == 5 and {d.reviewer for d in latest.values()} == {"ann"}
    assert sorted(d.decision for d in latest.values())[-2:] == ["outlier", "unsure"]

    again = open_page(run_dir)  # a new session on the same run directory
    assert any("5 reviewed in this run" in c.value for c in again.caption)
    assert [d.key for d in sorted(ReviewStore(run_dir).latest().values(), key=lambda d: d.id)] == seen


def test_undo_goes_back_and_cancels(run_dir):
    at = open_page(run_dir, "undoer")
    first = heading(at)
    press(at, "review_unsure")
    assert heading(at) != first
    assert press(at, "review_undo").startswith("Undone: your last decision")
    assert heading(at) == first
    assert not any(d.reviewer == "undoer" for d in ReviewStore(run_dir).latest().values())


def test_no_reviewer_no_decision(run_dir):
    at = open_page(run_dir)
    assert card_button(at, "review_accept").disabled
    assert any("Enter your name" in i.value for i in at.info)


def test_blind_mode_hides_the_proposal_until_decided(run_dir):
    at = open_page(run_dir, "blindy")
    at.sidebar.toggle(key="review_blind").set_value(True).run()
    assert not any((b.key or "").startswith("review_accept") for b in at.button)
    assert any("hidden until you decide" in m.value for m in at.markdown)
    sample = heading(at)
    press(at, "review_class_0")
    at.button(key="review_prev").click().run()  # back to it: now revealed
    assert heading(at) == sample
    assert any(m.value.startswith("**Proposal (refined):**") for m in at.markdown)
    assert any("agreement with the method" in c.value for c in at.caption)
    decision = [d for d in ReviewStore(run_dir).latest().values() if d.reviewer == "blindy"][0]
    assert decision.blind and decision.proposal is not None


def test_ripple_and_impact_order(run_dir):
    at = open_page(run_dir, "ripple")
    at.sidebar.selectbox(key="review_order").set_value("impact").run()
    assert not at.exception, at.exception
    press(at, "review_accept")
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
    image = figs.sample_image_figure(np.arange(4.0).reshape(1, 2, 2) / 3)
    np.testing.assert_allclose(image.data[0].z, [[2 / 3, 1.0], [0.0, 1 / 3]])  # row 0 drawn on top
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

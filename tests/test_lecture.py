"""Lecture mode's pure helpers: the animations, the graph page's story order and what-if start, the takeaway
and the honest labels, the key binding, the presentation flag."""

from dataclasses import replace

import numpy as np
import pytest

from app.figures import animation, palette
from app.graph_story import relabelled_in_step, story_order, walk
from app.keys import bound_to_step
from app.present import from_query
from app.takeaway import (comparison_runs, early_stop_note, instructive_samples, noise_outcome, precision_label,
                          takeaway_lines)
from engine.method.config import RunConfig


# ---------------------------------------------------------------- animations
def test_steps_animation_of_raw_inputs_keeps_the_points_and_moves_the_colours():
    coords = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = [np.array([0, 0, 1]), np.array([0, 1, 1]), np.array([1, 1, 1])]
    styles = [animation.point_styles(v, "category", ["a", "b"])[:2] for v in labels]
    fig = animation.steps_animation([coords] * 3, styles, ["1 · teacher", "2 · refine", "3 · refine"],
                                    legend=[("a", palette.class_color(0), "circle")], start=1)
    assert len(fig.frames) == 3 and [f.name for f in fig.frames] == ["step-0", "step-1", "step-2"]
    for frame in fig.frames:
        assert np.allclose(frame.data[0].x, coords[:, 0]) and np.allclose(frame.data[0].y, coords[:, 1])
    assert list(fig.frames[0].data[0].marker.color) == [palette.class_color(c) for c in labels[0]]
    assert list(fig.frames[2].data[0].marker.color) == [palette.class_color(1)] * 3
    assert list(fig.data[0].marker.color) == [palette.class_color(c) for c in labels[1]]  # starts at `start`
    slider = fig.layout.sliders[0]
    assert slider.active == 1 and [s.label for s in slider.steps] == ["1 · teacher", "2 · refine", "3 · refine"]
    assert list(slider.steps[2].args[0]) == ["step-2"]
    play, pause = fig.layout.updatemenus[0].buttons
    assert play.args[1]["frame"]["duration"] == animation.SPEEDS["normal"] and list(pause.args[0]) == [None]


def test_point_styles_of_flags_give_shape_and_colour():
    colors, symbols, legend = animation.point_styles(np.array([True, False]), "flag", ("wrong", "correct"), "correct")
    assert list(colors) == [palette.BLUE, palette.VERMILLION] and list(symbols) == ["circle", "x"]
    assert legend == [("wrong", palette.VERMILLION, "x"), ("correct", palette.BLUE, "circle")]
    values, _, legend = animation.point_styles(np.array([np.nan, 0.5, 1.0]), "continuous")
    assert list(values) == [0.5, 0.5, 1.0] and legend == []
    with pytest.raises(ValueError, match="kind='bad'"):
        animation.point_styles(np.zeros(2), "bad")


def test_propagation_animation_has_a_frame_per_iteration_from_the_seeds():
    history = {0: np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]), 3: np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])}
    xy = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])
    fig = animation.propagation_animation(xy, np.array([7, 8, 9]), history, np.array([[0, 1], [1, 2]]),
                                          np.array([0.5, 1.0]), ["a", "b"], background_xy=xy, center=1)
    assert [f.name for f in fig.frames] == ["iteration-0", "iteration-3"]
    nodes0, centre0 = fig.frames[0].data
    assert list(nodes0.marker.color) == [palette.class_color(0), palette.UNKNOWN_COLOR, palette.class_color(1)]
    assert list(fig.frames[1].data[0].marker.color) == [palette.class_color(0)] * 2 + [palette.class_color(1)]
    assert centre0.name == "sample #8" and centre0.marker.symbol == "star"
    background = fig.data[0]
    assert list(np.asarray(background.customdata).ravel()) == [0, 1, 2]  # a click on any point picks it
    assert fig.layout.sliders[0].active == 1


# ---------------------------------------------------------------- graph page story
def test_story_order_puts_contested_neighbourhoods_first_and_walk_wraps():
    refined = np.array([0, 0, 1, 1, 0])
    before = np.array([0, 1, 0, 1, 1])
    changed = relabelled_in_step(refined, before)
    assert changed.tolist() == [1, 2, 4]
    seeds = np.array([0, 1, 1, 1, -1])
    neighbor_idx = np.array([[1, 2], [0, 4], [1, 3], [2, 0], [0, 1]])
    # sample 1 (ends 0): neighbours 0 (seed 0), 4 (no seed) -> 0 contested; sample 2 (ends 1): 1, 3 seeds 1 -> 0;
    # sample 4 (ends 0): 0 (seed 0), 1 (seed 1) -> 1 contested
    order = story_order(changed, neighbor_idx, seeds, refined, confidence=np.array([0, 0.2, 0.9, 0, 0.1]))
    assert order.tolist() == [4, 2, 1]
    assert walk(order, 4, 1) == 2 and walk(order, 1, 1) == 4 and walk(order, 4, -1) == 1
    assert walk(order, 99, 1) == 4 and walk(order, 99, -1) == 1 and walk(np.array([]), 0, 1) is None


# ---------------------------------------------------------------- takeaway and honest labels
def _metrics(phases, early=None, best=None):
    out = []
    for i, phase in enumerate(phases, start=1):
        m = {"step": i, "phase": phase, "given_label_precision": 0.6, "refined_label_precision": 0.6}
        if phase == "teacher":
            m.update(teacher_early_stopped=early == i, teacher_best_epoch=best)
        out.append(m)
    return out


def test_precision_label_is_the_given_one_until_a_step_propagated():
    assert precision_label(_metrics(["teacher"] * 3)) == ("given_label_precision", "Given-label precision")
    assert precision_label([]) == ("given_label_precision", "Given-label precision")
    assert precision_label(_metrics(["teacher", "propagate"]))[1] == "Refined-label precision"


def test_early_stop_note_says_when_why_and_how_many_steps_fewer():
    config = RunConfig()
    planned = config.schedule.teacher_epochs
    note = early_stop_note(_metrics(["teacher"] * 11, early=11, best=6), config)
    assert note == (f"The teacher stopped at epoch 11 of {planned}: held-out accuracy stopped improving (best at "
                    f"epoch 6, patience {config.schedule.teacher_patience}); {planned - 11} steps fewer than planned.")
    assert early_stop_note(_metrics(["teacher"] * 11), config) is None  # still training, or ran to the end
    assert early_stop_note(_metrics(["teacher"] * planned, early=planned, best=3), config) is None


def test_noise_outcome_and_instructive_samples():
    given = np.array([0, 1, 1, 0, 2, 2, 0])
    true = np.array([0, 0, 0, 0, 1, 2, -1])
    refined = np.array([0, 0, 2, 1, 2, 2, 1])
    out = noise_outcome(given, refined, true)  # noisy: 1, 2, 4; fixed 1; moved to wrong 2; missed 4; broken 3
    assert (out.noisy, out.fixed, out.moved_wrong, out.missed, out.broken) == (3, 1, 1, 1, 1)
    assert noise_outcome(given, refined, np.full(7, -1)) is None
    given2, true2, refined2 = np.array([1, 1, 1, 0]), np.array([0, 0, 0, 0]), np.array([0, 0, 0, 0])
    assert instructive_samples(given2, refined2, true2, np.array([0.2, 0.9, 0.5, 1.0])) == [1, 2, 0]
    assert instructive_samples(given2, refined2, true2, None, count=2) == [0, 1]


def test_comparison_runs_find_finished_baselines_on_the_same_data(tmp_path):
    from engine.rundir.store import RunStore

    base = RunConfig(dataset="moons?n=60", noise="symmetric:0.2", seed=3)
    for name, method, dataset, phase, acc in (("ce", "ce", base.dataset, "done", 0.7),
                                              ("kd", "kd", base.dataset, "done", 0.75),
                                              ("kd-running", "kd", base.dataset, "refine", 0.9),
                                              ("other-data", "ce", "moons?n=80", "done", 0.1)):
        store = RunStore(tmp_path / name)
        store.create(replace(base, method=method, dataset=dataset))
        store.write_status(phase=phase, step=1)
        store.write_step(1, {}, {"step": 1, "phase": "warmup", "student_test_accuracy": acc})
    found = comparison_runs(tmp_path, base)
    assert {k: v["student_test_accuracy"] for k, v in found.items()} == {"ce": 0.7, "kd": 0.75}
    lines = takeaway_lines([{"given_label_precision": 0.6, "student_test_accuracy": None},
                            {"refined_label_precision": 0.9, "student_test_accuracy": 0.8}],
                           noise_outcome(np.array([1, 0]), np.array([0, 0]), np.array([0, 0])), "aml-kd", found)
    assert lines[0] == "**Label precision** 60.0% given → **90.0%** refined (+30.0 points)."
    assert lines[1].startswith("**Noise:** 1 of 1 wrong labels fixed (100%)")
    assert lines[2] == "**Student test accuracy** 80.0% against CE 70.0% (+10.0), KD 75.0% (+5.0) on the same data."
    ce = takeaway_lines([{"given_label_precision": 0.6, "refined_label_precision": 0.6, "student_test_accuracy": 0.7}],
                        noise_outcome(np.array([1, 0]), np.array([1, 0]), np.array([0, 0])), "ce", found)
    assert ce[0] == "**Given-label precision** 60.0%: CE trains on the given labels as they are (AML-KD would refine them)."
    assert not any(line.startswith(("**Noise", "**Label precision")) for line in ce)  # CE refines nothing
    assert ce[1] == "**Student test accuracy** 70.0% against KD 75.0% (-5.0) on the same data."


# ---------------------------------------------------------------- keys and presentation flag
def test_a_press_is_bound_to_the_step_on_screen():
    assert bound_to_step(4, 4) and not bound_to_step(4, 5) and not bound_to_step(4, None)


@pytest.mark.parametrize("value, on", [("1", True), ("true", True), ("ON", True), ("0", False), (None, False),
                                       ("", False), ("no", False)])
def test_present_flag_from_the_address(value, on):
    assert from_query(value) is on


def test_instructive_points_are_spread_over_the_data():
    # eight fixed samples: six in one corner (the surest), two far away
    positions = np.array([[0, 0], [0.1, 0], [0, 0.1], [0.1, 0.1], [0.05, 0.05], [0.02, 0.0], [5, 5], [5, -5]], float)
    given, true = np.ones(8, int), np.zeros(8, int)
    refined = true.copy()
    confidence = np.array([1.0, 0.99, 0.98, 0.97, 0.96, 0.95, 0.5, 0.4])
    assert instructive_samples(given, refined, true, confidence, count=3) == [0, 1, 2]  # no positions: surest
    assert instructive_samples(given, refined, true, confidence, count=3, positions=positions) == [0, 6, 7]


def test_a_point_thumbnail_rings_its_sample():
    from app.samples import point_map, point_thumbnail

    points = np.random.default_rng(0).normal(size=(200, 2))
    base = point_map(points, size=64)
    pic = point_thumbnail(points, 5, base)
    assert int(np.sum(np.all(pic == 0, axis=-1))) > 20  # a black ring around the red dot
    assert int(np.sum(np.all(pic == (214, 39, 40), axis=-1))) == 25


def test_replay_controls_sit_above_the_chart_and_fit_a_768_px_screen():
    from app.figures.animation import replay_controls, steps_animation

    coords = [np.random.default_rng(i).normal(size=(20, 2)) for i in range(3)]
    styles = [(np.array(["#000000"] * 20), np.array(["circle"] * 20)) for _ in coords]
    fig = steps_animation(coords, styles, ["1", "2", "3"], title="replay")
    menu, slider = fig.layout.updatemenus[0], fig.layout.sliders[0]
    assert menu.y >= 1 and menu.yanchor == "bottom" and slider.y >= 1 and slider.yanchor == "bottom"
    assert fig.layout.margin.t >= 100 and fig.layout.height <= 560  # controls, then the plot, in one screen
    menus, sliders = replay_controls(["a", "b"], ["a", "b"], 600, "step ", 0)
    assert sliders[0]["x"] >= 0.4  # the scrubber starts right of Play / Pause: no overlap


def test_the_estimate_line_says_the_estimate_its_interval_and_the_truth_where_known():
    from app.takeaway import precision_estimate_line

    step = {"refined_precision_estimate": 0.9331, "refined_precision_low": 0.929, "refined_precision_high": 0.939,
            "given_precision_estimate": 0.643, "refined_label_precision": 0.985, "given_label_precision": 0.64}
    assert precision_estimate_line(step) == ("Estimated without the truth: refined labels 0.933 (90% interval "
                                             "0.929–0.939), given labels 0.643. True: 0.985 and 0.640.")
    no_truth = {k: v for k, v in step.items() if "label_precision" not in k}
    assert precision_estimate_line(no_truth).endswith("given labels 0.643.")
    assert precision_estimate_line({"refined_label_precision": 0.9}) is None


def test_the_noise_rate_line_gives_stage_0s_estimate_its_interval_the_truth_and_whether_it_found_noise():
    from app.takeaway import noise_rate_line

    teacher = {"phase": "teacher", "step": 1, "given_label_precision": 0.6}
    stage0 = {"phase": "propagate", "step": 2, "noise_rate_estimate": 0.3984, "noise_rate_low": 0.371,
              "noise_rate_high": 0.42, "given_label_precision": 0.6, "noise_found": True}
    later = {"phase": "refine", "step": 3, "noise_rate_estimate": 0.3984, "noise_found": False}  # a later step's own
    assert noise_rate_line([teacher]) is None
    assert noise_rate_line([teacher, stage0, later]) == ("Noise rate estimated at stage 0: 0.398 (90% interval "
                                                         "0.371–0.420); true 0.400.")
    clean = {**stage0, "noise_rate_estimate": 0.012, "noise_rate_low": 0.0, "noise_found": False,
             "given_label_precision": None}
    assert noise_rate_line([teacher, clean, later]) == ("Noise rate estimated at stage 0: 0.012 (90% interval "
                                                        "0.000–0.420) · **no evidence of noise: labels kept**.")
    no_stage0 = [teacher, {"phase": "warmup", "step": 2, "noise_rate_estimate": 0.25}]  # --without stage0
    assert noise_rate_line(no_stage0) == "Noise rate estimated from the teacher: 0.250."
    vague = {**stage0, "noise_rate_estimate": 0.308, "noise_rate_low": 0.0, "noise_rate_high": 0.616,
             "noise_found": False, "estimate_informative": False, "estimate_ambiguity": 0.178}
    assert noise_rate_line([teacher, vague, later]) == (
        "Noise rate at stage 0: **cannot be told** from the teacher's votes (the teacher leaves the class of 18% of "
        "the samples open): between 0 and 0.616; true 0.400 · **labels kept**. An audit of random samples can tell "
        "instead (Review page, Queue: Audit): from 50 on, a run's later steps take the changes it shows fixing "
        "more than they break.")  # no point estimate is shown; what lets the method act is
    audited = {**vague, "audit_size": 720, "audit_rate": 0.3527}
    assert noise_rate_line([teacher, audited, later]).endswith(
        "true 0.400 · the random audit (720 samples, rate 0.353) decided which changes to take.")
    # informative, but no more disagreement than the teacher's own confusion explains: only the bound is said
    confused = {**stage0, "noise_rate_estimate": 0.0195, "noise_rate_low": 0.0, "noise_rate_high": 0.039,
                "noise_found": False, "estimate_informative": True, "estimate_confused": True,
                "estimate_ambiguity": 0.073, "given_label_precision": 1.0}
    assert noise_rate_line([teacher, confused, later]) == (
        "Noise rate at stage 0: between 0 and 0.039: the votes disagree with no more labels than the teacher's own "
        "confusion explains (it leaves the class of 7.3% of the samples open); true 0.000 · **no evidence of noise: "
        "labels kept**.")
    assert noise_rate_line([teacher, {**confused, "audit_size": 720, "audit_rate": 0.0}, later]).endswith(
        "· no evidence of noise beyond it; the random audit (720 samples, rate 0.000) decided which changes to take.")


def test_the_estimate_line_gives_only_the_bound_when_the_votes_cannot_tell():
    from app.takeaway import precision_estimate_line

    vague = {"refined_precision_estimate": 0.692, "refined_precision_low": 0.384, "refined_precision_high": 1.0,
             "given_precision_estimate": 0.692, "refined_label_precision": 0.638, "given_label_precision": 0.638,
             "estimate_informative": False}
    assert precision_estimate_line(vague) == ("Estimated without the truth: refined labels between 0.384 and 1.000 "
                                              "(the votes cannot tell more). True: 0.638 and 0.638.")
    assert "0.692" not in precision_estimate_line(vague)
    confused = {**vague, "estimate_informative": True, "estimate_confused": True, "refined_precision_low": 0.961,
                "refined_precision_estimate": 0.981, "given_precision_estimate": 0.981}
    assert precision_estimate_line(confused).startswith("Estimated without the truth: refined labels between 0.961 "
                                                        "and 1.000 (the votes cannot tell more).")

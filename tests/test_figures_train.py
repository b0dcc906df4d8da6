"""Charts of the Train page on hand-made metrics: traces, points, phases."""

import numpy as np
import pytest

from app.figures.train import (CHARTS, accuracy_figure, detection_figure, label_precision_figure, loss_figure,
                               metric_series, phase_spans, phase_timeline_figure, relabel_figure, weight_figure)

# Five steps as a tiny AML-KD run writes them: two teacher epochs, the
# propagation, a warm-up epoch, a refine epoch. None = not measured then.
METRICS = [
    {"step": 1, "phase": "teacher", "given_label_precision": 0.6, "refined_label_precision": 0.6,
     "detection_precision": None, "detection_recall": 0.0, "teacher_test_accuracy": 0.5,
     "wrong_to_right": 0, "right_to_wrong": 0, "teacher_loss": 2.0},
    {"step": 2, "phase": "teacher", "given_label_precision": 0.6, "refined_label_precision": 0.6,
     "detection_precision": None, "detection_recall": 0.0, "teacher_test_accuracy": 0.7,
     "wrong_to_right": 0, "right_to_wrong": 0, "teacher_loss": 1.5},
    {"step": 3, "phase": "propagate", "given_label_precision": 0.6, "refined_label_precision": 0.9,
     "detection_precision": 0.8, "detection_recall": 0.75, "teacher_test_accuracy": 0.7,
     "wrong_to_right": 300, "right_to_wrong": 12},
    {"step": 4, "phase": "warmup", "given_label_precision": 0.6, "refined_label_precision": 0.9,
     "detection_precision": 0.8, "detection_recall": 0.75, "teacher_test_accuracy": 0.7,
     "student_test_accuracy": 0.4, "wrong_to_right": 300, "right_to_wrong": 12,
     "loss_ce": 1.9, "loss_mixup": 2.0, "loss_kd": 0.5},
    {"step": 5, "phase": "refine", "given_label_precision": 0.6, "refined_label_precision": 0.93,
     "detection_precision": 0.85, "detection_recall": 0.8, "teacher_test_accuracy": 0.7,
     "student_test_accuracy": 0.6, "wrong_to_right": 320, "right_to_wrong": 10, "awe_auroc": 0.91,
     "selection_precision": 0.97,
     "loss_ce": 1.2, "loss_mixup": 1.6, "loss_kd": 0.4, "loss_rel": 0.05},
]


def _points(fig) -> dict[str, list]:
    return {trace.name: list(trace.y) for trace in fig.data}


def test_metric_series_leaves_out_unknown_values():
    steps, values = metric_series(METRICS, "detection_precision")
    assert steps.tolist() == [3, 4, 5]
    np.testing.assert_allclose(values, [0.8, 0.8, 0.85])
    steps, values = metric_series(METRICS, "not_a_metric")
    assert steps.shape == (0,) and values.shape == (0,)


def test_phase_spans_group_consecutive_steps():
    assert phase_spans(METRICS) == [("teacher", 1, 2), ("propagate", 3, 3), ("warmup", 4, 4), ("refine", 5, 5)]
    assert phase_spans([]) == []


def test_label_precision_has_one_point_per_step_for_both_label_sets():
    fig = label_precision_figure(METRICS)
    assert _points(fig) == {"refined labels": [0.6, 0.6, 0.9, 0.9, 0.93], "given labels": [0.6] * 5,
                            "refined, estimated": []}  # no estimate in these steps
    estimated = [dict(m, refined_precision_estimate=v) for m, v in zip(METRICS[2:], (0.82, 0.83, 0.84))]
    fig = label_precision_figure(METRICS[:2] + estimated)
    assert _points(fig)["refined, estimated"] == [0.82, 0.83, 0.84] and list(fig.data[2].x) == [3, 4, 5]
    assert fig.data[2].line.dash == "dot" and fig.data[2].line.color == fig.data[2].marker.color != "#ffffff"
    assert fig.data[2].error_y.array is None  # no interval recorded: no bars
    with_interval = [dict(m, refined_precision_low=v - 0.02, refined_precision_high=v + 0.01)
                     for m, v in zip(estimated, (0.82, 0.83, 0.84))]
    with_interval[1] = {k: v for k, v in with_interval[1].items() if k != "refined_precision_low"}
    bars = label_precision_figure(METRICS[:2] + with_interval).data[2].error_y  # the 90% interval at each point
    np.testing.assert_allclose(bars.array, [0.01, 0.01, 0.01])
    np.testing.assert_allclose(bars.arrayminus, [0.02, 0.0, 0.02])  # a step without its lower end: none drawn
    assert bars.visible is not False and bars.thickness > 0 and bars.symmetric is False
    assert list(fig.data[0].x) == [1, 2, 3, 4, 5]
    assert len(fig.layout.shapes) == 4  # one shaded band per phase span
    assert len(fig.data) == 3  # no step used an audit: no audited line in the legend


def test_label_precision_draws_the_audits_count_with_its_interval():
    audited = [dict(m, audit_precision=v, audit_precision_low=v - 0.03, audit_precision_high=v + 0.02)
               for m, v in zip(METRICS[2:], (0.70, 0.71, 0.73))]
    fig = label_precision_figure(METRICS[:2] + audited)
    trace = fig.data[3]
    assert trace.name == "refined, audited" and list(trace.x) == [3, 4, 5] and list(trace.y) == [0.70, 0.71, 0.73]
    assert trace.line.dash == "dashdot" and trace.line.color == trace.marker.color
    assert trace.line.color not in {t.line.color for t in fig.data[:3]} and trace.line.color != "#ffffff"
    np.testing.assert_allclose(trace.error_y.array, [0.02] * 3)
    np.testing.assert_allclose(trace.error_y.arrayminus, [0.03] * 3)
    assert trace.error_y.visible is not False and trace.error_y.thickness > 0


def test_detection_precision_starts_when_labels_first_change():
    fig = detection_figure(METRICS)
    assert _points(fig) == {"precision": [0.8, 0.8, 0.85], "recall": [0.0, 0.0, 0.75, 0.75, 0.8]}


def test_accuracy_student_appears_with_the_student():
    fig = accuracy_figure(METRICS)
    assert _points(fig) == {"teacher": [0.5, 0.7, 0.7, 0.7, 0.7], "student": [0.4, 0.6]}
    assert list(fig.data[1].x) == [4, 5]


def test_relabel_counts_per_step():
    assert _points(relabel_figure(METRICS)) == {"wrong → right": [0, 0, 300, 300, 320],
                                                "right → wrong": [0, 0, 12, 12, 10]}


def test_weights_and_selection_start_with_the_refinery():
    fig = weight_figure(METRICS)
    assert _points(fig) == {"AWE weight AUROC": [0.91], "easy-set precision": [0.97]}
    assert list(fig.data[0].x) == [5]


def test_losses_one_trace_per_term_with_the_epochs_that_have_it():
    points = _points(loss_figure(METRICS))
    assert points == {"teacher CE": [2.0, 1.5], "student CE": [1.9, 1.2], "mixup CE": [2.0, 1.6],
                      "KD": [0.5, 0.4], "relational": [0.05]}


def test_losses_show_the_unmixed_kd_term_only_for_runs_that_have_it():
    with_term = [{**m, "loss_kd_clean": 0.3} if m.get("loss_kd") is not None else m for m in METRICS]
    points = _points(loss_figure(with_term))
    assert points["KD, un-mixed images"] == [0.3, 0.3] and points["KD"] == [0.5, 0.4]


@pytest.mark.parametrize("key,build", CHARTS)
def test_every_chart_shows_a_hint_and_no_points_before_the_first_step(key, build):
    fig = build([])
    assert fig.data and all(len(trace.y) == 0 for trace in fig.data)
    assert any("press Step" in a.text for a in fig.layout.annotations)


def test_phase_timeline_stacks_done_and_to_do_per_phase():
    plan = [{"phase": "teacher", "planned": 2, "done": 2}, {"phase": "propagate", "planned": 1, "done": 1},
            {"phase": "warmup", "planned": 4, "done": 1}, {"phase": "refine", "planned": 32, "done": 0},
            {"phase": "mutual", "planned": 12, "done": 0}]
    fig = phase_timeline_figure(plan, "warmup")
    assert len(fig.data) == 10
    done = [t.x[0] for t in fig.data[0::2]]
    to_do = [t.x[0] for t in fig.data[1::2]]
    assert done == [2, 1, 1, 0, 0] and to_do == [0, 0, 3, 32, 12]
    assert sum(done) + sum(to_do) == 51
    widths = [t.marker.line.width for t in fig.data[0::2]]
    assert widths == [1, 1, 3, 1, 1]  # the current phase is outlined
    assert fig.layout.barmode == "stack"


def test_phase_bands_are_labelled_only_when_wide_enough():
    long_run = [{"step": i, "phase": "teacher", "refined_label_precision": 0.5} for i in range(1, 15)]
    long_run += [{"step": 15, "phase": "propagate", "refined_label_precision": 0.9},
                 {"step": 16, "phase": "warmup", "refined_label_precision": 0.9}]
    fig = label_precision_figure(long_run)
    assert len(fig.layout.shapes) == 3
    assert [a.text for a in fig.layout.annotations] == ["teacher"]  # 1 of 16 steps is too narrow for a name
    assert fig.layout.shapes[0].x0 == 0.5 and fig.layout.shapes[0].x1 == 14.5

"""Figures of the Embeddings, Propagation graph and Losses pages, and the
sample thumbnails: hand-made inputs, exact traces, points and colours."""

import numpy as np
import plotly.graph_objects as go
import pytest

from app.figures.embedding import (CLASS_COLORS, FLAG_COLORS, UNKNOWN_COLOR, class_color, embedding_figure,
                                   first_customdata, scale_sizes, selected_samples)
from app.figures.graph import (class_scores_figure, confidence_figure, edge_traces, reached,
                               zoom_ranges)
from app.figures.losses import GROUP_COLORS, loss_groups, loss_histogram_figure, trajectory_figure
from app.samples import image_thumbnail, point_map, point_thumbnail, sample_caption, thumbnails

COORDS = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [2, 2]], dtype=np.float32)


def _points(trace) -> int:
    return len(trace.x)


def _is_note(fig: go.Figure) -> bool:
    return len(fig.data) == 0 and len(fig.layout.annotations) == 1


# ---------------------------------------------------------------- embedding


def test_category_colouring_one_trace_per_class_with_index_customdata():
    labels = np.array([2, 0, 2, -1, 0])
    fig = embedding_figure(COORDS, labels, "category", category_names=["zero", "one", "two"])
    assert [t.name for t in fig.data] == ["unknown", "zero", "two"]
    assert all(isinstance(t, go.Scattergl) for t in fig.data)
    assert sum(_points(t) for t in fig.data) == 5
    by_name = {t.name: t for t in fig.data}
    assert by_name["two"].marker.color == CLASS_COLORS[2]
    assert by_name["unknown"].marker.color == UNKNOWN_COLOR
    assert [int(c[0]) for c in by_name["two"].customdata] == [0, 2]
    assert list(by_name["two"].x) == [0.0, 0.0] and list(by_name["two"].y) == [0.0, 1.0]


def test_flag_colouring_and_highlight_trace():
    flags = np.array([True, False, True, True, False])
    fig = embedding_figure(COORDS, flags, "flag", category_names=("wrong", "correct"), highlight=np.array([4]))
    assert [t.name for t in fig.data] == ["wrong", "correct", "selected"]
    assert fig.data[0].marker.color == FLAG_COLORS[0] and _points(fig.data[0]) == 2
    assert fig.data[1].marker.color == FLAG_COLORS[1] and _points(fig.data[1]) == 3
    assert list(fig.data[2].x) == [2.0] and int(fig.data[2].customdata[0][0]) == 4


def test_continuous_colouring_puts_nan_in_a_grey_trace():
    values = np.array([0.1, np.nan, 0.5, 0.9, np.nan])
    fig = embedding_figure(COORDS, values, "continuous", color_title="AWE weight")
    assert len(fig.data) == 2
    grey, scale = fig.data
    assert grey.marker.color == UNKNOWN_COLOR and _points(grey) == 2
    assert np.allclose(scale.marker.color, [0.1, 0.5, 0.9]) and scale.marker.showscale


def test_sizes_map_linearly_and_nan_gets_the_smallest():
    sizes = scale_sizes(np.array([0.0, 1.0, np.nan, 0.5]), 4)
    assert np.allclose(sizes, [4.0, 14.0, 4.0, 9.0])
    assert scale_sizes(None, 4) == 6.0
    assert np.allclose(scale_sizes(np.array([3.0, 3.0]), 2), [9.0, 9.0])
    fig = embedding_figure(COORDS, np.zeros(5, int), "category", sizes=np.arange(5.0))
    assert np.allclose(fig.data[0].marker.size, [4.0, 6.5, 9.0, 11.5, 14.0])


def test_empty_embedding_is_a_note_not_an_empty_chart():
    assert _is_note(embedding_figure(np.zeros((0, 2)), np.zeros(0), "category"))


def test_bad_kind_and_shapes_are_refused():
    with pytest.raises(ValueError, match="kind"):
        embedding_figure(COORDS, np.zeros(5), "colourful")
    with pytest.raises(ValueError, match="coords"):
        embedding_figure(COORDS, np.zeros(4), "category")


def test_ten_thousand_points_stay_webgl_and_complete():
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(10_000, 2))
    labels = rng.integers(0, 10, 10_000)
    fig = embedding_figure(coords, labels, "category", sizes=rng.random(10_000))
    assert len(fig.data) == 10 and all(isinstance(t, go.Scattergl) for t in fig.data)
    assert sum(_points(t) for t in fig.data) == 10_000


def test_selection_points_map_back_to_samples():
    browser_points = [{"curve_number": 1, "point_index": 0, "customdata": {"0": 11}},
                      {"curve_number": 0, "point_index": 3, "customdata": [7]},
                      {"curve_number": 0, "point_index": 1, "customdata": 7}]
    assert selected_samples(browser_points) == [7, 11]
    rows = [np.array([5, 6]), np.array([9])]
    assert selected_samples([{"curve_number": 0, "point_index": 1}, {"curve_number": 1, "point_index": 0}],
                            rows) == [6, 9]
    assert first_customdata(None) is None and first_customdata({"1": 3, "0": 2}) == 2


# ---------------------------------------------------------------- graph


def test_reached_is_false_for_uniform_rows():
    scores = np.array([[0.5, 0.5], [0.9, 0.1], [0.5, 0.5]])
    assert list(reached(scores)) == [False, True, False]


def test_edge_traces_bin_each_edge_once_by_relative_weight():
    xy = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=float)
    edges = np.array([[0, 1], [0, 2], [1, 3], [2, 3]])
    weights = np.array([0.1, 0.2, 0.5, 0.9])  # relative: 0, 0.125, 0.5, 1
    traces = edge_traces(xy, edges, weights)
    segments = [int(np.sum(~np.isnan(np.asarray(t.x, dtype=float))) // 2) for t in traces]
    assert segments == [2, 1, 1]
    widths = [t.line.width for t in traces]
    assert widths == sorted(widths)
    assert edge_traces(xy, np.zeros((0, 2), int), np.zeros(0)) == []


def test_zoom_ranges_frame_the_nodes_padded():
    background = np.array([[0, 0], [10, 10], [4, 4], [5, 5]], dtype=float)
    x_range, y_range = zoom_ranges(background[[2, 3]], background)
    assert x_range == pytest.approx([3.85, 5.15]) and y_range == pytest.approx(x_range)  # side 1 * 1.3
    lone = zoom_ranges(background[[2]], background)  # one node: 5% of the extent 10, padded
    assert lone == (pytest.approx([3.675, 4.325]), pytest.approx([3.675, 4.325]))
    assert zoom_ranges(background[[2, 3]], None) == (None, None)


def test_class_scores_figure_has_one_bar_per_class_on_a_category_axis():
    fig = class_scores_figure(np.array([0.1, 0.7, 0.2]), ["0", "1", "2"], given=0, refined=1)
    assert len(fig.data) == 1 and list(fig.data[0].y) == [0.1, 0.7, 0.2]
    assert fig.layout.xaxis.type == "category"
    assert fig.data[0].x[0].endswith("(given)") and fig.data[0].x[1].endswith("(refined)")
    assert _is_note(class_scores_figure(np.array([np.nan, np.nan]), ["a", "b"]))


def test_confidence_figure_counts_every_sample_and_draws_the_cut_offs():
    conf = np.array([0.05, 0.1, 0.5, 0.52, 0.99, np.nan])
    fig = confidence_figure(conf, sample_confidence=0.5, cutoff=0.1, new_cutoff=0.3, nbins=10)
    assert int(np.sum(fig.data[0].y)) == 5
    assert sorted(s.x0 for s in fig.layout.shapes) == [0.1, 0.3, 0.5]
    assert _is_note(confidence_figure(np.full(3, np.nan)))


# ---------------------------------------------------------------- losses


def test_loss_groups_split_clean_noisy_and_easy():
    noisy = np.array([False, True, False, True])
    easy = np.array([True, True, False, False])
    groups = dict(loss_groups(noisy, easy, 4))
    assert list(groups) == ["clean · easy", "clean · not easy", "noisy · easy", "noisy · not easy"]
    assert [list(np.flatnonzero(m)) for m in groups.values()] == [[0], [2], [1], [3]]
    assert [name for name, _ in loss_groups(None, None, 4)] == ["all"]
    assert [name for name, _ in loss_groups(noisy, np.zeros(4, bool), 4)] == ["clean", "noisy"]


def test_loss_histogram_counts_and_cut_off_lines():
    losses = np.array([0.1, 0.2, 2.0, 3.0, np.nan])
    noisy = np.array([False, False, True, True, True])
    easy = np.array([True, True, False, False, False])
    fig = loss_histogram_figure(losses, noisy, easy, cutoff=0.2, new_cutoff=1.0, nbins=4)
    assert [t.name for t in fig.data] == ["clean · easy", "noisy · not easy"]
    assert [int(np.sum(t.y)) for t in fig.data] == [2, 2]
    assert fig.data[0].marker.color == GROUP_COLORS[("clean", "easy")]
    assert sorted(s.x0 for s in fig.layout.shapes) == [0.2, 1.0]
    assert _is_note(loss_histogram_figure(np.full(3, np.nan)))


def test_trajectories_two_or_three_traces_per_sample_with_gaps():
    steps = np.array([1, 2, 3])
    losses = np.array([[1.0, 0.5, 0.2], [2.0, np.nan, 3.0]])
    weights = np.array([[np.nan, 0.4, 0.8], [np.nan, 0.9, 0.1]])
    fig = trajectory_figure(steps, losses, weights, [4, 9], phases=["teacher", "refine", "refine"])
    assert len(fig.data) == 4
    assert list(fig.data[0].y) == [1.0, 0.5, 0.2] and np.isnan(fig.data[2].y[1])
    assert fig.data[0].line.color == fig.data[1].line.color != fig.data[2].line.color
    assert len(fig.layout.shapes) == 4  # 2 phase spans x 2 rows
    # phases named once, in the top row; no text-less annotation (plotly would show it as "new text")
    assert [a.text for a in fig.layout.annotations if a.yref != "paper"] == ["teacher", "refine"]
    assert all(a.text for a in fig.layout.annotations)
    fig = trajectory_figure(steps, losses, weights, [4, 9], weights_given=weights / 2)
    assert len(fig.data) == 6 and fig.data[2].line.dash == "dot"
    assert _is_note(trajectory_figure(steps, losses[:0], weights[:0], []))


# ---------------------------------------------------------------- thumbnails


def test_image_thumbnail_scales_up_and_draws_ink_dark():
    x = np.array([[[0.0, 1.0], [0.5, 0.0]]], dtype=np.float32)  # (1, 2, 2)
    pic = image_thumbnail(x, size=8)
    assert pic.shape == (8, 8, 3) and pic.dtype == np.uint8
    assert tuple(pic[0, 0]) == (255, 255, 255) and tuple(pic[0, 7]) == (0, 0, 0) and pic[7, 0, 0] == 128
    rgb = image_thumbnail(np.ones((3, 4, 4), np.float32), size=4)
    assert rgb.shape == (4, 4, 3) and rgb.min() == 255
    with pytest.raises(ValueError):
        image_thumbnail(np.zeros((2, 4, 4)))


def test_point_thumbnail_marks_the_sample_on_the_map():
    points = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    base = point_map(points, size=11)
    assert base[10, 0, 0] < base[5, 5, 0]  # (0, 0) is bottom-left
    pic = point_thumbnail(points, 1, base, radius=1, ring=0)
    assert tuple(pic[0, 10]) == (214, 39, 40) and tuple(pic[1, 9]) == (214, 39, 40)
    assert tuple(pic[10, 0]) == tuple(base[10, 0])
    assert (base == point_map(points, size=11)).all()  # the background is not changed
    assert len(thumbnails("points", points, [0, 2])) == 2


def test_sample_caption():
    assert sample_caption(12, 3, 5, 0.4234, [str(i) for i in range(10)]) == "#12 · 3 → 5 · w 0.42"
    assert sample_caption(1, 0, 1, float("nan"), ["a", "b"]) == "#1 · a → b"

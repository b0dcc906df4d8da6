"""The Embeddings page at a million samples (pure parts): the density of all samples, the drawn sample, the
selection computed from the full layout; the Train page's disk line."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from app.embedding_view import SAMPLE_POINTS, chart_selection, drawn_rows
from app.figures.embedding import (DENSITY_SCALE, density_counts, density_image, density_pixels, embedding_figure,
                                   point_sample, samples_in_regions, with_density)
from app.figures.train import disk_line


def _layout(n=50_000, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal((0, 0), 1, (n // 2, 2)), rng.normal((10, 4), 1, (n - n // 2, 2))])


def _png(image: dict) -> np.ndarray:
    import base64
    import io

    from PIL import Image

    head, data = image["source"].split(",", 1)
    assert head == "data:image/png;base64"
    picture = Image.open(io.BytesIO(base64.b64decode(data)))
    assert picture.mode == "LA"
    return np.asarray(picture)


def test_the_density_counts_every_sample_in_its_cell_and_leaves_empty_cells_clear():
    coords = _layout()
    counts, x_edges, y_edges = density_counts(coords, bins=40)
    assert counts.shape == (40, 40) and counts.sum() == len(coords)
    reference, _, _ = np.histogram2d(coords[:, 0], coords[:, 1], bins=[x_edges, y_edges])
    assert np.abs(counts - reference.T).sum() <= 0.001 * len(coords)  # same cells (float32 at the edges)
    assert (counts == 0).any()  # between the two clusters: nothing
    # rows are y: the cluster at y = 4 lies in the upper rows, at x = 10 in the right columns
    row, col = np.unravel_index(np.argmax(counts), counts.shape)
    assert (y_edges[row] < 2) == (x_edges[col] < 5)
    assert np.allclose([x_edges[0], x_edges[-1]], [coords[:, 0].min(), coords[:, 0].max()])


def test_the_density_image_is_grey_where_samples_are_clear_where_none_and_upright():
    coords = np.array([[0.0, 0.0]] * 9 + [[0.0, 10.0], [10.0, 10.0], [10.0, 0.0]])  # 9 bottom left, 1 elsewhere
    pixels = density_pixels(density_counts(coords, bins=4)[0])
    grey, alpha = pixels[..., 0].astype(int), pixels[..., 1]
    assert alpha.sum() == 4 * 255  # the four corners, nothing between
    assert alpha[-1, 0] == 255 and grey[-1, 0] == int(DENSITY_SCALE[1][1][1:3], 16)  # most samples: darkest, bottom
    assert grey[0, 0] == grey[0, -1] == grey[-1, -1] == int(DENSITY_SCALE[0][1][1:3], 16)  # one sample: lightest
    assert 0 < grey[-1, 0] < grey[0, 0] < 255  # both visible on white, the denser darker
    image = density_image(_layout(), bins=50)
    decoded = _png(image)
    assert decoded.shape == (50, 50, 2) and (decoded[..., 1] == 0).any() and (decoded[..., 1] == 255).sum() > 100
    assert decoded[..., 0][decoded[..., 1] == 255].max() < 0xF3  # every drawn cell darker than white
    assert image["layer"] == "below" and (image["xref"], image["yref"]) == ("x", "y")
    assert len(image["source"]) < 20_000  # a picture of a few kB, not 2,500 values per axis


def test_the_points_go_over_the_density_and_the_legend_says_how_many_are_drawn():
    coords = _layout(2_000)
    rows = point_sample(len(coords), 500, always=[3, 1999])
    fig = embedding_figure(coords[rows], np.zeros(len(rows), int), "category", sample_ids=rows, color_title="label")
    fig = with_density(fig, density_image(coords), len(coords), len(rows))
    assert all(isinstance(t, go.Scattergl) for t in fig.data) and len(fig.layout.images) == 1
    svg = embedding_figure(coords[rows], np.zeros(len(rows), int), "category", sample_ids=rows, webgl=False)
    assert all(isinstance(t, go.Scatter) for t in svg.data) and sum(len(t.x) for t in svg.data) == len(rows)
    assert sum(len(t.x) for t in fig.data) == len(rows) and np.isin([3, 1999], fig.data[0].customdata[:, 0]).all()
    assert f"{len(rows):,} of 2,000 drawn" in fig.layout.legend.title.text and "label" in fig.layout.legend.title.text
    assert all(t.marker.opacity == 0.55 and t.marker.size == 4.0 for t in fig.data)  # the density shows through
    # the axes span every sample, not only the drawn ones: the image is not cut at the sample's edge
    assert np.allclose(fig.layout.xaxis.range, [coords[:, 0].min(), coords[:, 0].max()])
    assert np.allclose(fig.layout.yaxis.range, [coords[:, 1].min(), coords[:, 1].max()])
    assert all(t.text is None and t.hovertemplate == "#%{customdata[0]}" for t in fig.data)  # no text per point


def test_point_sample_is_everything_when_small_and_a_seeded_sample_with_the_asked_rows_when_large():
    assert point_sample(100, 500).tolist() == list(range(100))
    a, b = point_sample(10_000, 500, always=[9_999]), point_sample(10_000, 500, always=[9_999])
    assert np.array_equal(a, b) and 9_999 in a and len(a) in (500, 501) and np.all(np.diff(a) > 0)


def test_a_box_or_lasso_selects_every_sample_inside_not_only_the_drawn_points():
    coords = _layout()
    box = {"x": [12.0, 8.0], "y": [2.0, 6.0]}  # corners in any order
    inside = samples_in_regions(coords, boxes=[box])
    expected = np.flatnonzero((coords[:, 0] >= 8) & (coords[:, 0] <= 12) & (coords[:, 1] >= 2) & (coords[:, 1] <= 6))
    assert np.array_equal(inside, expected) and len(inside) > 20_000
    triangle = {"x": [-5, 5, -5], "y": [-5, -5, 5]}  # the half of the first cluster below x + y = 0
    lassoed = samples_in_regions(coords, lassos=[triangle])
    first = coords[: len(coords) // 2]
    assert abs(len(lassoed) - np.sum(first.sum(1) < 0)) <= 5
    drawn = point_sample(len(coords), 1_000)
    assert chart_selection({"box": [box], "points": [{"customdata": [int(drawn[0])]}]}, coords,
                           sampled=True) == inside.tolist()
    assert chart_selection({"points": [{"customdata": [7]}], "box": []}, coords, sampled=False) == [7]


def test_drawn_rows_read_only_the_drawn_rows_of_a_large_snapshot():
    n = 30_000
    snap = {"refined": np.arange(n) % 10, "weight": np.linspace(0, 1, n, dtype=np.float32),
            "features": np.zeros((n, 4), np.float16)}
    rows, shown = drawn_rows(snap, n, [29_999])
    assert 29_999 in rows and len(rows) in (SAMPLE_POINTS, SAMPLE_POINTS + 1) and set(shown) == {"refined", "weight"}
    assert np.array_equal(rows, point_sample(n, SAMPLE_POINTS, [29_999]))  # the seeded sample and the chosen row
    assert np.array_equal(shown["refined"], rows % 10)
    small_rows, small = drawn_rows(snap, 100, [])
    assert small is snap and len(small_rows) == 100


def test_disk_line_names_the_last_step_and_the_total():
    assert disk_line({1: 20_000_000, 2: 6_500_000}) == ("Snapshots on disk: 6.5 MB the last step, 26.5 MB in all "
                                                       "(2 steps)")
    assert disk_line({3: 40_000}) == "Snapshots on disk: 40 kB the last step, 40 kB in all (1 step)"
    assert disk_line({}) == ""


def test_the_graphs_background_is_a_sample_that_still_picks_the_right_sample():
    from app.figures import animation

    xy = _layout(30_000)
    history = {0: np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])}
    fig = animation.propagation_animation(xy[:3], np.array([0, 1, 2]), history, np.array([[0, 1], [1, 2]]),
                                          np.array([0.5, 1.0]), ["a", "b"], background_xy=xy)
    background = next(t for t in fig.data if t.name == "other samples (click to pick)")
    ids = np.asarray(background.customdata)[:, 0]
    assert len(ids) == animation.BACKGROUND_MAX and len(set(ids.tolist())) == len(ids)
    np.testing.assert_array_equal(np.column_stack([background.x, background.y]), xy[ids])

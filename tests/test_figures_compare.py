"""The Compare page's figures: ablation curves told apart, captions that never overlap in the PNG."""

from __future__ import annotations

import numpy as np

from app.figures.compare import curve_figure, curve_styles
from app.figures.compare_png import grid_figure


def _points(methods):
    return [{"run": f"r{i}", "method": m, "epoch": e, "student_test_accuracy": 0.5 + 0.01 * e + 0.02 * i}
            for i, m in enumerate(methods) for e in (1, 2, 3)]


def test_every_method_has_its_own_colour_and_dash_pair():
    methods = ["AML-KD", "CE", "KD", "AML-KD w/o AWE", "AML-KD w/o mutual", "AML-KD w/o stage 0"]
    styles = curve_styles(_points(methods), "student_test_accuracy")
    pairs = [(color, dash) for _, _, _, _, color, dash in styles]
    assert len(set(pairs)) == len(methods)
    ablations = pairs[3:]
    assert len({c for c, _ in ablations}) == 3 and len({d for _, d in ablations}) == 3  # colour AND dash differ
    assert all(d != "solid" for _, d in ablations)
    # a second seed of a method: the same colour, another dash
    two_seeds = curve_styles(_points(["AML-KD", "AML-KD"]), "student_test_accuracy")
    assert two_seeds[0][4] == two_seeds[1][4] and two_seeds[0][5] != two_seeds[1][5]


def test_the_legend_sits_below_the_axis_title():
    layout = curve_figure(_points(["AML-KD", "CE"]), "student_test_accuracy").layout
    assert layout.legend.yanchor == "top" and layout.legend.y < -0.2


def test_grid_captions_stay_in_their_own_band():
    picture = np.zeros((20, 20, 3), np.uint8)
    long = " · ".join(["#12", "given 3", "true 5"] + [f"run-number-{i}: {i}" for i in range(6)])
    fig = grid_figure([picture] * 8, [long] * 8, "8 samples")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    axes = [ax.get_window_extent(renderer) for ax in fig.axes]
    texts = [t.get_window_extent(renderer) for ax in fig.axes for t in ax.texts]
    assert len(texts) == 8
    for i, box in enumerate(texts):
        assert box.height > 40  # several lines
        for j, other in enumerate(axes):
            assert not box.overlaps(other) or j == i and box.y1 <= other.y0 + 1, (i, j)
        for j, other in enumerate(texts):
            assert j == i or not box.overlaps(other), (i, j)
        assert box.y0 >= 0  # inside the picture

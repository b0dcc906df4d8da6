"""Every figure of the app draws with the colours of app.figures.palette, gives each trace an explicit
colour (never plotly's default cycle, which is not colour-blind safe), and draws highlights as rings with
a visible dark outline."""

import functools
import re
from pathlib import Path

import numpy as np
import pytest

from app.figures import embedding, graph, losses, palette, review, train

FIGURES = Path(__file__).resolve().parents[1] / "app" / "figures"
COLOR_KEYS = {"color", "fillcolor", "bgcolor", "plot_bgcolor", "paper_bgcolor", "fgcolor", "bordercolor"}
NAMED_OK = {"VIRIDIS"}  # a colour scale's name
LITERAL = re.compile(r"""["'](#[0-9a-fA-F]{3,8}|rgba?\([^)]*\))["']|["'](white|black|red|green|blue|grey|gray)["']""")


def _metrics():
    out = []
    for step, phase in enumerate(["teacher"] * 3 + ["propagate"] + ["warmup"] * 2 + ["refine"] * 4, start=1):
        out.append({"step": step, "phase": phase, "given_label_precision": 0.6, "refined_label_precision": 0.7,
                    "detection_precision": 0.5, "detection_recall": 0.4, "teacher_test_accuracy": 0.8,
                    "student_test_accuracy": 0.7 if step > 4 else None, "wrong_to_right": 10, "right_to_wrong": 2,
                    "teacher_loss": 1.0, "loss_ce": 0.5, "loss_mixup": 0.4, "loss_kd": 0.3, "loss_rel": 0.1,
                    "loss_kd_clean": 0.2, "awe_auroc": 0.8, "selection_precision": 0.9})
    return out


@functools.lru_cache(maxsize=1)
def _figures():
    rng = np.random.default_rng(0)
    n, c = 30, 3
    coords = rng.normal(size=(n, 2))
    labels = rng.integers(0, c, n)
    names = ["a", "b", "c"]
    metrics = _metrics()
    figs = {f"train.{key}": build(metrics) for key, build in train.CHARTS}
    figs["train.timeline"] = train.phase_timeline_figure(
        [{"phase": "teacher", "planned": 3, "done": 3}, {"phase": "propagate", "planned": 1, "done": 1},
         {"phase": "refine", "planned": 6, "done": 2}], "refine")
    figs["embedding.category"] = embedding.embedding_figure(coords, labels, "category", category_names=names,
                                                            highlight=np.array([1, 2]))
    for field in ("correct", "easy", "relabelled", None):
        figs[f"embedding.flag.{field}"] = embedding.embedding_figure(coords, labels == 0, "flag", flag_field=field)
    figs["embedding.continuous"] = embedding.embedding_figure(coords, np.r_[np.nan, rng.random(n - 1)], "continuous")
    figs["embedding.note"] = embedding.note_figure("nothing")
    scores = rng.dirichlet(np.ones(c), size=6)
    scores[5] = 1 / c
    figs["graph.scores"] = graph.class_scores_figure(scores[0], names, given=0, refined=1)
    figs["graph.confidence"] = graph.confidence_figure(rng.random(n), 0.5, 0.2, 0.3)
    noisy, easy = labels == 1, labels == 2
    figs["losses.histogram"] = losses.loss_histogram_figure(rng.random(n), noisy, easy, 0.4, 0.6)
    figs["losses.trajectory"] = losses.trajectory_figure(np.arange(5), rng.random((2, 5)), rng.random((2, 5)), [3, 4],
                                                         phases=["teacher"] * 2 + ["refine"] * 3,
                                                         weights_given=rng.random((2, 5)))
    figs["review.points"] = review.points_figure(coords, labels, names, 0, neighbors=np.array([1, 2]))
    figs["review.top3"] = review.top3_figure({"propagation": (np.array([0, 1, -1]), np.array([0.7, 0.2, 0.0]))},
                                             names)
    figs["review.history"] = review.history_figure(np.arange(4), np.array([0, 0, 1, 1]), rng.random(4),
                                                   rng.random(4), names, 0, decisions=[(2, "accepted")])
    figs["review.ripple"] = review.ripple_figure(coords, labels, (labels + 1) % c, np.array([1, 2]), np.array([3]),
                                                 names)
    for extra in EXTRA_FIGURES:
        figs.update(extra())
    return figs


def _animations():
    from app.figures import animation

    rng = np.random.default_rng(2)
    coords = rng.normal(size=(12, 2))
    out = {}
    for kind, values, field in (("category", rng.integers(0, 3, 12), None), ("flag", rng.random(12) > 0.5, "easy"),
                                ("continuous", rng.random(12), None)):
        colors, symbols, legend = animation.point_styles(values, kind, ["a", "b", "c"] if kind == "category" else None,
                                                         field)
        out[f"animation.steps.{kind}"] = animation.steps_animation(
            [coords, coords + 1], [(colors, symbols)] * 2, ["1", "2"], legend=legend,
            continuous_range=(0.0, 1.0) if kind == "continuous" else None)
    history = {0: np.eye(3)[[0, 1, 2, 0]] * 0 + 1 / 3, 1: rng.dirichlet(np.ones(3), size=4)}
    out["animation.propagation"] = animation.propagation_animation(
        coords[:4], np.arange(4), history, np.array([[0, 1], [1, 2], [2, 3]]), np.array([0.2, 0.5, 0.9]),
        ["a", "b", "c"], background_xy=coords)
    return out


#: Figure builders added later register here: () -> {name: figure}.
EXTRA_FIGURES = [_animations]


def _colors(node, path=""):
    """(path, value) of every colour-valued entry of a figure's JSON."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in COLOR_KEYS and value is not None:
                values = value if isinstance(value, (list, tuple)) else [value]
                for v in values:
                    if isinstance(v, str):
                        yield f"{path}.{key}", v
            else:
                yield from _colors(value, f"{path}.{key}")
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _colors(value, f"{path}[{i}]")


def palette_colors() -> set[str]:
    """Every colour app/figures/palette.py defines, upper-cased."""
    names = vars(palette)
    out = {v for v in names.values() if isinstance(v, str) and (v.startswith("#") or v.startswith("rgba"))}
    for table in (palette.PHASE_COLORS, palette.PHASE_SHADES, palette.SERIES_COLORS):
        out |= set(table.values())
    out |= set(palette.CLASS_COLORS) | set(palette.EDGE_COLORS) | set(palette.FLAG_COLORS)
    for pair in palette.FLAG_STYLES.values():
        out |= {color for color, _ in pair}
    return {c.upper().replace(" ", "") for c in out}


def _frames_and_data(fig):
    spec = fig.to_plotly_json()
    return spec.get("data", []) + [t for f in spec.get("frames", []) or [] for t in f.get("data", [])], spec


@pytest.mark.parametrize("name", sorted(_figures()))
def test_every_colour_a_figure_uses_comes_from_the_palette(name):
    fig = _figures()[name]
    allowed = palette_colors()
    spec = fig.to_plotly_json()
    spec.pop("layout", {}).pop("template", None)
    bad = [(p, v) for p, v in _colors(spec) if v.upper().replace(" ", "") not in allowed | NAMED_OK]
    assert not bad, f"{name}: colours not from the palette: {bad[:5]}"


@pytest.mark.parametrize("name", sorted(_figures()))
def test_every_trace_has_an_explicit_colour(name):
    data, _ = _frames_and_data(_figures()[name])
    for trace in data:
        if trace["type"] in ("heatmap", "image"):
            continue
        marker, line = trace.get("marker") or {}, trace.get("line") or {}
        mode = trace.get("mode", "")
        if trace["type"] == "bar" or "markers" in mode:  # markers take the line's colour when they have none
            assert marker.get("color") is not None or ("lines" in mode and line.get("color") is not None), f"{name}: trace {trace.get('name')!r} has no marker colour"
        if "lines" in mode:
            assert line.get("color") is not None, f"{name}: trace {trace.get('name')!r} has no line colour"


def test_no_colour_literal_outside_the_palette_module():
    for path in sorted(FIGURES.glob("*.py")):
        if path.name == "palette.py":
            continue
        found = LITERAL.findall(path.read_text())
        assert not found, f"{path.name} has colour literals {found[:5]}: take them from app.figures.palette"


def test_highlight_traces_are_rings_with_a_visible_dark_outline():
    rng = np.random.default_rng(1)
    coords, labels = rng.normal(size=(20, 2)), rng.integers(0, 3, 20)
    fig = embedding.embedding_figure(coords, labels, "category", highlight=np.array([0, 5, 7]),
                                     highlight_name="would change")
    ring = fig.data[-1]
    assert ring.name == "would change" and len(ring.x) == 3
    assert not ring.marker.symbol.endswith("-open")  # an open symbol draws in marker.color: here transparent
    assert ring.marker.line.color == palette.BLACK and ring.marker.line.width >= 2
    assert ring.marker.size > 10


def test_flags_differ_in_shape_as_well_as_colour():
    for field in ("correct", "easy", "relabelled", None):
        (c0, s0), (c1, s1) = palette.flag_style(field, False), palette.flag_style(field, True)
        assert c0 != c1 and s0 != s1
    fig = embedding.embedding_figure(np.zeros((4, 2)), np.array([True, False, True, True]), "flag",
                                     category_names=("wrong", "correct"), flag_field="correct")
    by_name = {t.name: t for t in fig.data}
    assert by_name["wrong"].marker.symbol == "x" and by_name["correct"].marker.symbol == "circle"
    assert by_name["wrong"].marker.color == palette.VERMILLION and by_name["correct"].marker.color == palette.BLUE


def test_classes_are_distinct_and_text_on_phase_colours_reads():
    assert len(set(palette.CLASS_COLORS)) == len(palette.CLASS_COLORS) >= 10
    assert palette.text_on(palette.YELLOW) == palette.BLACK and palette.text_on(palette.INDIGO) == palette.WHITE
    assert palette.class_color(-1) == palette.UNKNOWN_COLOR
    assert palette.class_color(len(palette.CLASS_COLORS)) == palette.CLASS_COLORS[0]

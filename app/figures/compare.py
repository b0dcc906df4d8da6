"""Charts of the Compare page: one line per run over the student's epochs.

:func:`curve_figure` takes the points of :func:`engine.readers.compare.curves` (one
dict per run and student epoch) and draws one metric, each run a line in its
method's colour (a second run of the same method dashed). A point whose value
is ``None`` is left out, so a trace has one marker per epoch that measured it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import plotly.graph_objects as go

from . import palette

#: One colour per method, from the app's colour-blind-safe palette; other methods (the ablations) take
#: OTHER_COLORS in order of appearance, each with its own dash as well (DASHES from the second on).
METHOD_COLORS = {"AML-KD": palette.BLUE, "CE": palette.GREY, "KD": palette.ORANGE}
OTHER_COLORS = (palette.REDDISH_PURPLE, palette.BLUISH_GREEN, palette.VERMILLION, palette.SKY_BLUE, palette.WINE,
                palette.OLIVE)
OTHER_COLOR = OTHER_COLORS[0]
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
HEIGHT = 380
METRICS = {"student_test_accuracy": "Student test accuracy", "label_precision": "Label precision (refined labels)"}


def _method(point: Mapping) -> str:
    return str(point.get("method", "")).split(" (")[0]


def curve_series(points: Sequence[Mapping], key: str) -> dict[str, tuple[list[int], list[float]]]:
    """Per run (in order of first appearance): epochs and values of ``key``, unknown values left out."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for p in points:
        xs, ys = series.setdefault(str(p["run"]), ([], []))
        if p.get(key) is not None:
            xs.append(int(p["epoch"]))
            ys.append(float(p[key]))
    return series


def curve_styles(points: Sequence[Mapping], key: str) -> list[tuple[str, str, list[int], list[float], str, str]]:
    """Per run (:func:`curve_series` order): ``(run, method, epochs, values, colour, dash)`` (the same for
    the chart and its PNG). AML-KD, CE and KD have their colours; every other method (an ablation) its own
    colour *and* dash, so that no two methods share both; a second run of a method (another seed) the
    next dash."""
    methods = {str(p["run"]): _method(p) for p in points}
    others = list(dict.fromkeys(m for m in methods.values() if m not in METHOD_COLORS))
    seen: dict[str, int] = {}
    styles = []
    for run, (xs, ys) in curve_series(points, key).items():
        method = methods[run]
        nth = seen[method] = seen.get(method, -1) + 1
        if method in METHOD_COLORS:
            color, first_dash = METHOD_COLORS[method], 0
        else:
            index = others.index(method)
            color, first_dash = OTHER_COLORS[index % len(OTHER_COLORS)], 1 + index
        styles.append((run, method, xs, ys, color, DASHES[(first_dash + nth) % len(DASHES)]))
    return styles


def curve_figure(points: Sequence[Mapping], key: str, title: str | None = None) -> go.Figure:
    """One metric of several runs over student epochs.

    Parameters
    ----------
    points : sequence of dict
        :func:`engine.readers.compare.curves` output.
    key : {'student_test_accuracy', 'label_precision'}
    """
    traces = [go.Scatter(x=xs, y=ys, name=f"{method} · {run}", mode="lines+markers", marker={"size": 6},
                         line={"color": color, "dash": dash, "width": 2},
                         hovertemplate=f"{run}<br>epoch %{{x}}<br>%{{y:.3f}}<extra></extra>")
              for run, method, xs, ys, color, dash in curve_styles(points, key)]
    return go.Figure(traces, layout={
        "title": {"text": title or METRICS.get(key, key)}, "height": HEIGHT,
        "margin": {"l": 50, "r": 10, "t": 40, "b": 40},  # plotly widens the bottom for the legend
        "xaxis": {"title": {"text": "student epoch", "standoff": 4},
                  "dtick": 1 if _max_epoch(points) <= 12 else None},
        "yaxis": {"title": {"text": METRICS.get(key, key).split(" (")[0].lower()}, "tickformat": ".2f"},
        # the legend under the x-axis title, anchored by its top edge so that no number of rows reaches up
        "legend": {"orientation": "h", "x": 0, "xanchor": "left", "y": -0.32, "yanchor": "top"},
        "hovermode": "closest"})


def _max_epoch(points: Sequence[Mapping]) -> int:
    return max((int(p["epoch"]) for p in points), default=0)

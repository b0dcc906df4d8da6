"""Animated replays, played in the browser (plotly frames): the steps of a run on the
Embeddings page, the iterations of one propagation on the Propagation graph page.

Each figure holds every frame, so Play, Pause and the scrubber answer without
a round trip to the server. The trace structure is the same in every frame
(one trace of points whose colours, shapes, sizes and, for features that
change, positions move), so plotly redraws a frame in place.

Pure functions: arrays in, a ``go.Figure`` out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from . import palette
from .graph import _node_hover, edge_traces, reached, zoom_ranges
from .palette import CONTINUOUS_SCALE, UNKNOWN_COLOR, class_color, class_name, flag_style

#: Frame durations (ms) offered as replay speeds.
SPEEDS = {"slow": 1200, "normal": 600, "fast": 250}
HEIGHT = 520  # with the controls above the plot: chart and Play fit a 1024x768 screen together
#: Room above the plot: the title, then Play / Pause and the scrubber (px).
TOP_MARGIN = 118


def replay_controls(frame_names: Sequence[str], labels: Sequence[str], duration_ms: int, prefix: str,
                    active: int) -> tuple[list[dict], list[dict]]:
    """Plotly's Play / Pause buttons and a scrubber over the frames.

    Returns
    -------
    (updatemenus, sliders)
        Layout entries; the slider's ``active`` is the frame shown first.
    """
    play = {"frame": {"duration": int(duration_ms), "redraw": True}, "fromcurrent": True,
            "transition": {"duration": 0}, "mode": "immediate"}
    pause = {"frame": {"duration": 0, "redraw": False}, "mode": "immediate", "transition": {"duration": 0}}
    # Above the plot, under the title: whoever sees the chart's top sees its controls (no scrolling between).
    menus = [{"type": "buttons", "direction": "left", "showactive": False, "x": 0.0, "xanchor": "left",
              "y": 1.0, "yanchor": "bottom", "pad": {"r": 8, "b": 6},
              "buttons": [{"label": "▶ Play", "method": "animate", "args": [None, play]},
                          {"label": "❚❚ Pause", "method": "animate", "args": [[None], pause]}]}]
    steps = [{"label": str(label), "method": "animate",
              "args": [[name], {"frame": {"duration": 0, "redraw": True}, "mode": "immediate",
                                "transition": {"duration": 0}}]}
             for name, label in zip(frame_names, labels)]
    sliders = [{"active": int(active), "steps": steps, "x": 0.42, "len": 0.58, "y": 1.0, "yanchor": "bottom",
                "pad": {"t": 0, "b": 4}, "currentvalue": {"prefix": prefix, "visible": True, "xanchor": "left",
                                                          "offset": 4},
                "transition": {"duration": 0}}]
    return menus, sliders


def point_styles(values: np.ndarray, kind: str, names: Mapping[int, str] | Sequence[str] | None = None,
                 flag_field: str | None = None) -> tuple[object, np.ndarray, list[tuple[str, str, str]]]:
    """Per-point colours and marker symbols of one colour field, for a single trace.

    Returns
    -------
    colors : np.ndarray of str, shape (N,), or np.ndarray of float (``kind='continuous'``, NaN as the minimum)
    symbols : np.ndarray of str, shape (N,)
    legend : list of (name, colour, symbol)
        One entry per value present (categories, flags); empty for continuous.
    """
    n = len(values)
    symbols = np.full(n, "circle", dtype=object)
    if kind == "continuous":
        values = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(values)
        filled = np.where(finite, values, values[finite].min() if finite.any() else 0.0)
        return filled, symbols, []
    if kind == "flag":
        flags = np.asarray(values, dtype=bool)
        pair = tuple(names) if names is not None else ("no", "yes")
        colors = np.empty(n, dtype=object)
        legend = []
        for flag in (False, True):
            color, symbol = flag_style(flag_field, flag)
            colors[flags == flag], symbols[flags == flag] = color, symbol
            legend.append((pair[int(flag)], color, symbol))
        return colors, symbols, legend
    if kind != "category":
        raise ValueError(f"kind={kind!r} is unknown; valid: category, flag, continuous")
    codes = np.asarray(values, dtype=np.int64)
    colors = np.array([class_color(int(c)) for c in codes], dtype=object)
    legend = []
    for code in np.unique(codes):
        legend.append((class_name(int(code), names), class_color(int(code)), "circle"))
    return colors, symbols, legend


def _legend_traces(entries: Sequence[tuple[str, str, str]]) -> list[go.Scattergl]:
    """Empty traces that only show a legend entry each (the points are one trace)."""
    return [go.Scattergl(x=[None], y=[None], mode="markers", name=name, hoverinfo="skip",
                         marker={"size": 9, "color": color, "symbol": symbol, "line": {"width": 0}})
            for name, color, symbol in entries]


def steps_animation(coords: Sequence[np.ndarray], styles: Sequence[tuple[object, np.ndarray]],
                    step_labels: Sequence[str], *, legend: Sequence[tuple[str, str, str]] = (),
                    hover: Sequence[Sequence[str]] | None = None, duration_ms: int = SPEEDS["normal"],
                    start: int | None = None, title: str | None = None, continuous_range: tuple | None = None,
                    color_title: str | None = None) -> go.Figure:
    """The run's steps as frames of one scatter.

    Parameters
    ----------
    coords : sequence of np.ndarray, each (N, 2)
        The layout of each step (the same array for raw 2-D inputs: points stay, colours move).
    styles : sequence of (colors, symbols)
        Per step, from :func:`point_styles`.
    step_labels : sequence of str
        Scrubber label of each step.
    legend : sequence of (name, colour, symbol)
        Legend entries (the union over the steps).
    hover : sequence of sequence of str, optional
        Per step, one hover text per point.
    start : int, optional
        Frame shown first (default: the last).
    continuous_range : (lo, hi), optional
        Fixed colour range for numeric colours, the same in every frame.

    Returns
    -------
    go.Figure
        ``data[0]``: the points; then the legend traces. One frame per step.
    """
    if not coords:
        raise ValueError("steps_animation needs at least one step")
    start = len(coords) - 1 if start is None else int(start)
    names = [f"step-{i}" for i in range(len(coords))]
    numeric = continuous_range is not None

    def points(i: int) -> go.Scattergl:
        colors, symbols = styles[i]
        marker = {"size": 6, "color": np.asarray(colors), "symbol": list(symbols), "opacity": 0.85,
                  "line": {"width": 0}}
        if numeric:
            marker.update(colorscale=CONTINUOUS_SCALE, cmin=continuous_range[0], cmax=continuous_range[1],
                          showscale=True, colorbar={"title": {"text": color_title or ""}, "thickness": 12})
        text = None if hover is None else list(hover[i])
        xy = np.asarray(coords[i], dtype=np.float32)
        return go.Scattergl(x=xy[:, 0], y=xy[:, 1], mode="markers", name="samples", showlegend=False,
                            customdata=np.arange(len(xy))[:, None], text=text,
                            hovertemplate="%{text}<extra></extra>" if text else "#%{customdata[0]}<extra></extra>",
                            marker=marker)

    fig = go.Figure(data=[points(start)] + _legend_traces(legend),
                    frames=[go.Frame(data=[points(i)], traces=[0], name=names[i]) for i in range(len(coords))])
    menus, sliders = replay_controls(names, step_labels, duration_ms, "step ", start)
    xy = np.concatenate([np.asarray(c, dtype=np.float64) for c in coords])
    pad = 0.05 * np.ptp(xy, axis=0).clip(min=1e-6)
    fig.update_layout(
        title={"text": title, "x": 0.0, "y": 0.99, "yanchor": "top", "font": {"size": 14}} if title else None,
        height=HEIGHT, margin={"l": 10, "r": 10, "t": TOP_MARGIN, "b": 10}, plot_bgcolor=palette.WHITE,
        updatemenus=menus, sliders=sliders, legend={"itemsizing": "constant"},
        xaxis={"showticklabels": False, "zeroline": False, "range": [xy[:, 0].min() - pad[0], xy[:, 0].max() + pad[0]]},
        yaxis={"showticklabels": False, "zeroline": False, "scaleanchor": "x",
               "range": [xy[:, 1].min() - pad[1], xy[:, 1].max() + pad[1]]})
    return fig


#: Background points drawn at most (a million would be the slow part of the page).
BACKGROUND_MAX = 20_000


def propagation_animation(node_xy: np.ndarray, node_ids: np.ndarray, history: Mapping[int, np.ndarray],
                          edges: np.ndarray, edge_weights: np.ndarray, class_names: Sequence[str], *,
                          seed_labels: np.ndarray | None = None, center: int = 0,
                          background_xy: np.ndarray | None = None, duration_ms: int = SPEEDS["normal"],
                          start: int | None = None, title: str | None = None) -> go.Figure:
    """One propagation, iteration by iteration: label mass spreading from the seeds over a neighbourhood.

    Parameters
    ----------
    node_xy : np.ndarray, shape (M, 2)
    node_ids : np.ndarray, shape (M,)
        Sample index of each node.
    history : mapping iteration -> np.ndarray, shape (M, C)
        Class scores of the nodes after each recorded iteration (0 = the seeds).
    edges, edge_weights : np.ndarray, shapes (E, 2) (positions in ``node_xy``) and (E,)
    center : int
        Position of the picked sample (a star).
    background_xy : np.ndarray, shape (N, 2), optional
        Every sample, faint (a seeded sample of BACKGROUND_MAX of them above that); clicking one picks it
        (its ``customdata`` is its index).

    Returns
    -------
    go.Figure
        Traces: the background (when given), the edge bins, the nodes, the centre, then one legend entry
        per class. One frame per iteration, updating the nodes and the centre.
    """
    iterations = sorted(int(i) for i in history)
    start_it = iterations[-1] if start is None else int(start)
    node_ids = np.asarray(node_ids)
    fig = go.Figure()
    if background_xy is not None:  # above BACKGROUND_MAX samples a seeded sample of them, each with its index
        from .embedding import point_sample

        shown = point_sample(len(background_xy), BACKGROUND_MAX)
        fig.add_trace(go.Scattergl(x=background_xy[shown, 0], y=background_xy[shown, 1], mode="markers",
                                   name="other samples (click to pick)", customdata=shown[:, None],
                                   hovertemplate="#%{customdata[0]}<extra>click to pick</extra>",
                                   marker={"size": 5, "color": palette.BACKGROUND_POINTS}))
    fig.add_traces(edge_traces(node_xy, np.asarray(edges), edge_weights))
    first_node_trace = len(fig.data)

    def node_traces(it: int) -> list[go.Scattergl]:
        scores = np.asarray(history[it], dtype=np.float64)
        top, mass = scores.argmax(axis=1), reached(scores)
        colors = [class_color(int(c)) if m else UNKNOWN_COLOR for c, m in zip(top, mass)]
        hover = [_node_hover(int(node_ids[i]), scores[i], class_names,
                             None if seed_labels is None else int(seed_labels[i])) for i in range(len(node_ids))]
        nodes = go.Scattergl(x=node_xy[:, 0], y=node_xy[:, 1], mode="markers", name="nodes", showlegend=False,
                             marker={"size": 7 + 16 * scores.max(axis=1), "color": colors,
                                     "line": {"width": 0.5, "color": palette.DARK}},
                             customdata=node_ids[:, None], text=hover, hovertemplate="%{text}<extra></extra>")
        centre = go.Scattergl(x=node_xy[[center], 0], y=node_xy[[center], 1], mode="markers",
                              name=f"sample #{int(node_ids[center])}",
                              marker={"size": 22, "symbol": "star", "color": colors[center], "line": palette.FOCUS_LINE},
                              customdata=node_ids[[center], None], text=[hover[center]],
                              hovertemplate="%{text}<extra></extra>")
        return [nodes, centre]

    fig.add_traces(node_traces(start_it))
    present = sorted({int(c) for it in iterations for c, m in zip(np.asarray(history[it]).argmax(axis=1),
                                                                    reached(history[it])) if m})
    fig.add_traces(_legend_traces([(class_names[c], class_color(c), "circle") for c in present]
                                  + [("no mass yet", UNKNOWN_COLOR, "circle")]))
    names = [f"iteration-{it}" for it in iterations]
    fig.frames = [go.Frame(data=node_traces(it), traces=[first_node_trace, first_node_trace + 1], name=name)
                  for it, name in zip(iterations, names)]
    menus, sliders = replay_controls(names, [str(it) for it in iterations], duration_ms, "iteration ",
                                     iterations.index(start_it))
    zoom = zoom_ranges(np.asarray(node_xy, dtype=np.float64), background_xy)
    fig.update_layout(title={"text": title, "x": 0.0, "y": 0.99, "yanchor": "top", "font": {"size": 14}}
                      if title else None, height=HEIGHT,
                      margin={"l": 10, "r": 10, "t": TOP_MARGIN, "b": 10}, plot_bgcolor=palette.WHITE,
                      updatemenus=menus, sliders=sliders, legend={"itemsizing": "constant"},
                      xaxis={"showticklabels": False, "zeroline": False, "range": zoom[0]},
                      yaxis={"showticklabels": False, "zeroline": False, "scaleanchor": "x", "range": zoom[1]},
                      uirevision="neighbourhood")
    return fig

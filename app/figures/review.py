"""Figures of the Review page: one sample's card, and the ripple of a re-propagation.

Pure functions: arrays in, a plotly ``Figure`` (or an image array) out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import palette

FOCUS_COLOR = palette.BLACK


def class_colors(num_classes: int) -> list[str]:
    """A distinct colour per class, from the app's colour-blind-safe palette."""
    return [palette.class_color(i) for i in range(num_classes)]


def _bare_axes(fig: go.Figure) -> go.Figure:
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def thumbnail(pixels: np.ndarray, scale: int = 6) -> np.ndarray:
    """An image as uint8 for ``st.image``, enlarged ``scale`` times without smoothing.

    Parameters
    ----------
    pixels : np.ndarray, shape (H, W), (1, H, W) or (3, H, W), values in [0, 1]

    Returns
    -------
    np.ndarray, shape (H*scale, W*scale) (grey: ink dark on white) or (H*scale, W*scale, 3)
    """
    pixels = np.asarray(pixels, dtype=np.float32)
    if pixels.ndim == 3 and pixels.shape[0] == 1:
        pixels = pixels[0]
    if pixels.ndim == 3:
        pixels = np.transpose(pixels, (1, 2, 0))  # (H, W, 3)
    else:
        pixels = 1.0 - pixels  # digits: 1 = ink; show ink dark
    image = (np.clip(pixels, 0, 1) * 255).round().astype(np.uint8)
    return np.repeat(np.repeat(image, scale, axis=0), scale, axis=1)


def points_figure(points: np.ndarray, labels: np.ndarray, class_names: Sequence[str], focus: int,
                  neighbors: np.ndarray | None = None, size: int = 420) -> go.Figure:
    """A 2-D dataset coloured by label, one sample ringed and its neighbours linked.

    Parameters
    ----------
    points : np.ndarray, shape (N, 2)
    labels : np.ndarray, shape (N,)
        Colour of each point (e.g. refined labels).
    focus : int
        The sample under review.
    neighbors : np.ndarray, shape (k,), optional
        Its nearest neighbours, drawn as edges.
    """
    colors = class_colors(len(class_names))
    fig = go.Figure()
    for c, name in enumerate(class_names):
        rows = np.flatnonzero(labels == c)
        fig.add_trace(go.Scattergl(x=points[rows, 0], y=points[rows, 1], mode="markers", name=name,
                                   marker=dict(size=5, color=colors[c], opacity=0.45),
                                   customdata=rows, hovertemplate="sample %{customdata}<extra>" + name + "</extra>"))
    if neighbors is not None and len(neighbors):
        xs, ys = [], []
        for j in neighbors:
            xs += [points[focus, 0], points[j, 0], None]
            ys += [points[focus, 1], points[j, 1], None]
        fig.add_trace(go.Scattergl(x=xs, y=ys, mode="lines", name="neighbours", hoverinfo="skip",
                                   line=dict(color=palette.NEIGHBOUR_LINKS, width=1)))
    fig.add_trace(go.Scattergl(x=[points[focus, 0]], y=[points[focus, 1]], mode="markers", name="this sample",
                               marker=dict(size=16, symbol="star", color=colors[int(labels[focus])],
                                           line=dict(color=FOCUS_COLOR, width=2))))
    fig.update_layout(width=size, height=size, margin=dict(l=0, r=0, t=10, b=0),
                      legend=dict(orientation="h", y=-0.05))
    return _bare_axes(fig)


def top3_figure(sources: Mapping[str, tuple[np.ndarray, np.ndarray]], class_names: Sequence[str]) -> go.Figure:
    """Top-3 classes of several sources (propagation, teacher, student) as grouped bars.

    Parameters
    ----------
    sources : mapping of name -> (classes (3,), scores (3,))
        Class ids (-1 = none) and their probabilities / scores in [0, 1].
    """
    fig = go.Figure()
    for name, (classes, scores) in sources.items():
        keep = np.asarray(classes) >= 0
        labels = [class_names[int(c)] for c in np.asarray(classes)[keep]]
        values = np.asarray(scores, dtype=np.float64)[keep]
        fig.add_trace(go.Bar(y=[f"{name}: {lab}" for lab in labels][::-1], x=values[::-1], orientation="h",
                             name=name, text=[f"{v:.2f}" for v in values][::-1], textposition="auto",
                             marker=dict(color=palette.CLASS_COLORS[len(fig.data) % len(palette.CLASS_COLORS)])))
    fig.update_layout(height=60 + 26 * 3 * max(len(sources), 1), margin=dict(l=0, r=0, t=24, b=0),
                      xaxis=dict(range=[0, 1], title="probability"), showlegend=False,
                      title=dict(text="Top-3 classes", font=dict(size=14)))
    return fig


def history_figure(steps: np.ndarray, labels: np.ndarray, weights: np.ndarray, losses: np.ndarray,
                   class_names: Sequence[str], given: int, decisions: Sequence[tuple[int, str]] = ()) -> go.Figure:
    """A sample over the steps: its label (top), its AWE weight and loss (bottom).

    Parameters
    ----------
    steps : np.ndarray, shape (S,)
    labels : np.ndarray, shape (S,)
        Refined label at each step.
    weights, losses : np.ndarray, shape (S,)
        AWE weight and student loss (NaN where the step has none).
    given : int
        The given label, drawn as a dashed line.
    decisions : sequence of (step, text)
        Review decisions to mark.
    """
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        specs=[[{}], [{"secondary_y": True}]], row_heights=[0.45, 0.55])
    names = [class_names[int(c)] if c >= 0 else "" for c in labels]
    fig.add_trace(go.Scatter(x=steps, y=names, mode="lines+markers", name="refined label",
                             line=dict(shape="hv", color=palette.BLUE)), row=1, col=1)
    fig.add_trace(go.Scatter(x=[steps.min(), steps.max()] if len(steps) else [], y=[class_names[given]] * 2,
                             mode="lines", name="given label", line=dict(dash="dash", color=palette.GREY)), row=1, col=1)
    fig.add_trace(go.Scatter(x=steps, y=weights, mode="lines+markers", name="AWE weight",
                             line=dict(color=palette.BLUISH_GREEN)), row=2, col=1)
    fig.add_trace(go.Scatter(x=steps, y=losses, mode="lines+markers", name="student loss",
                             line=dict(color=palette.VERMILLION)), row=2, col=1, secondary_y=True)
    for step, text in decisions:
        fig.add_vline(x=step, line=dict(color=palette.GREY, dash="dot"), annotation_text=text,
                      annotation_position="top left", row=1, col=1)
    shown = sorted({int(c) for c in labels if c >= 0} | {int(given)})  # only the classes it visited
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=[class_names[c] for c in shown],
                     row=1, col=1)
    fig.update_yaxes(title_text="weight", range=[0, 1.05], row=2, col=1, secondary_y=False)
    fig.update_yaxes(title_text="loss", row=2, col=1, secondary_y=True)
    fig.update_xaxes(title_text="step", row=2, col=1)
    fig.update_layout(height=360, margin=dict(l=0, r=0, t=10, b=0), legend=dict(orientation="h", y=-0.2))
    return fig


def ripple_figure(coords: np.ndarray, before: np.ndarray, after: np.ndarray, changed: np.ndarray,
                  clamped: np.ndarray, class_names: Sequence[str], size: int = 560) -> go.Figure:
    """The ripple of a re-propagation on a 2-D layout.

    Parameters
    ----------
    coords : np.ndarray, shape (N, 2)
    before, after : np.ndarray, shape (N,)
        Labels without and with the reviewers' clamps.
    changed : np.ndarray, shape (M,)
        Samples whose label the clamps changed: drawn large, coloured by their
        new label, ringed in black.
    clamped : np.ndarray
        Reviewed samples: drawn as stars.
    """
    colors = class_colors(len(class_names))
    fig = go.Figure()
    for c, name in enumerate(class_names):
        rows = np.flatnonzero(after == c)
        fig.add_trace(go.Scattergl(x=coords[rows, 0], y=coords[rows, 1], mode="markers", name=name,
                                   marker=dict(size=4, color=colors[c], opacity=0.4), customdata=rows,
                                   hovertemplate="sample %{customdata}<extra>" + name + "</extra>"))
    for rows, label, symbol, size_ in ((clamped, "reviewed (clamped)", "star", 13),
                                       (changed, "changed by the clamps", "circle", 11)):
        rows = np.asarray(rows, dtype=np.int64)
        text = [f"sample {i}: {class_names[before[i]]} → {class_names[after[i]]}" for i in rows]
        fig.add_trace(go.Scattergl(x=coords[rows, 0], y=coords[rows, 1], mode="markers", name=label,
                                   text=text, hovertemplate="%{text}<extra></extra>",
                                   marker=dict(size=size_, symbol=symbol, color=[colors[after[i]] for i in rows],
                                               line=dict(color=FOCUS_COLOR, width=1.5))))
    fig.update_layout(width=size, height=size, margin=dict(l=0, r=0, t=10, b=0),
                      legend=dict(orientation="h", y=-0.05))
    return _bare_axes(fig)

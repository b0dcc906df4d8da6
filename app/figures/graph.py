"""The Propagation graph page's charts: a sample's kNN neighbourhood with
label mass on its nodes, the class scores of one sample, and the spread of
propagation confidences with the relabelling cut-off.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from . import palette
from .embedding import note_figure
from .palette import UNKNOWN_COLOR, class_color

HEIGHT = 520
#: Edge-weight bins (fractions of the neighbourhood's weight range) drawn as separate line traces.
EDGE_BINS = (0.0, 1 / 3, 2 / 3)
EDGE_STYLE = tuple({"width": width, "color": color} for width, color in zip((0.5, 1.2, 2.2), palette.EDGE_COLORS))


def reached(scores: np.ndarray) -> np.ndarray:
    """Rows that hold label mass: not uniform (normalised zero rows are uniform).

    Parameters
    ----------
    scores : np.ndarray, shape (M, C), rows summing to 1

    Returns
    -------
    np.ndarray, shape (M,), bool
    """
    scores = np.asarray(scores, dtype=np.float64)
    c = scores.shape[1]
    return scores.max(axis=1) > 1.0 / c + 1e-6 if c > 1 else np.ones(len(scores), bool)


def edge_traces(node_xy: np.ndarray, edges: np.ndarray, weights: np.ndarray) -> list[go.Scattergl]:
    """Edges as line traces, one per weight bin (thicker = heavier, relative to
    the lightest and heaviest edge drawn).

    Parameters
    ----------
    node_xy : np.ndarray, shape (M, 2)
    edges : np.ndarray, shape (E, 2), positions in ``node_xy``
    weights : np.ndarray, shape (E,)

    Returns
    -------
    list of go.Scattergl
        At most ``len(EDGE_BINS)`` traces, each edge in exactly one.
    """
    if len(edges) == 0:
        return []
    weights = np.asarray(weights, dtype=np.float64)
    lo, span = weights.min(), np.ptp(weights)
    relative = (weights - lo) / span if span > 0 else np.ones_like(weights)  # (E,) in [0, 1]
    which = np.searchsorted(np.asarray(EDGE_BINS), relative, side="right") - 1  # (E,)
    traces = []
    for b, style in enumerate(EDGE_STYLE):
        rows = np.flatnonzero(which == b)
        if not rows.size:
            continue
        xs = np.full(3 * rows.size, np.nan)
        ys = np.full(3 * rows.size, np.nan)
        xs[0::3], xs[1::3] = node_xy[edges[rows, 0], 0], node_xy[edges[rows, 1], 0]
        ys[0::3], ys[1::3] = node_xy[edges[rows, 0], 1], node_xy[edges[rows, 1], 1]
        w = weights[rows]
        traces.append(go.Scattergl(x=xs, y=ys, mode="lines", line=style, hoverinfo="skip",
                                   name=f"edge weight {w.min():.3f}–{w.max():.3f}", legendgroup="edges",
                                   showlegend=True))
    return traces


def zoom_ranges(node_xy: np.ndarray, background_xy: np.ndarray | None, pad: float = 0.15):
    """Axis ranges around the nodes (padded), or ``(None, None)`` to autoscale.

    Parameters
    ----------
    node_xy : np.ndarray, shape (M, 2)
    background_xy : np.ndarray, shape (N, 2) or None
        Without a background there is nothing to zoom past.
    pad : float
        Margin as a fraction of the larger side; a side is at least 5% of the
        background's extent, so that one node does not fill the view.

    Returns
    -------
    (list of 2 float, list of 2 float) or (None, None)
    """
    if background_xy is None or len(node_xy) == 0:
        return None, None
    lo, hi = node_xy.min(axis=0), node_xy.max(axis=0)
    extent = np.ptp(background_xy, axis=0)
    side = max(float((hi - lo).max()), 0.05 * float(extent.max()), 1e-6) * (1 + 2 * pad)
    centre = (lo + hi) / 2
    return ([float(centre[0] - side / 2), float(centre[0] + side / 2)],
            [float(centre[1] - side / 2), float(centre[1] + side / 2)])


def _node_hover(sample: int, scores: np.ndarray, class_names: Sequence[str], seed: int | None) -> str:
    order = np.argsort(-scores)[:3]
    parts = [f"#{sample}"]
    if seed is not None:
        parts.append(f"seed: {class_names[seed] if seed >= 0 else 'none'}")
    parts.append(", ".join(f"{class_names[c]} {scores[c]:.2f}" for c in order))
    return "<br>".join(parts)


def class_scores_figure(scores: np.ndarray, class_names: Sequence[str], given: int | None = None,
                        refined: int | None = None, title: str | None = None) -> go.Figure:
    """Bar chart of one sample's propagation class scores.

    Parameters
    ----------
    scores : np.ndarray, shape (C,)
        NaN where unknown (classes outside a snapshot's top few).
    class_names : sequence of str, length C
    given, refined : int, optional
        Classes marked under the bars (``given`` / ``refined``).

    Returns
    -------
    go.Figure
        One bar trace with C bars.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0 or not np.isfinite(scores).any():
        return note_figure("This step has no propagation scores for the sample.")
    labels = []
    for c, name in enumerate(class_names):
        tags = [t for t, cls in (("given", given), ("refined", refined)) if cls == c]
        labels.append(f"{name}<br>({', '.join(tags)})" if tags else str(name))
    fig = go.Figure(go.Bar(x=labels, y=np.nan_to_num(scores), marker={"color": [class_color(c) for c in
                                                                                 range(len(scores))]},
                           hovertemplate="%{x}: %{y:.3f}<extra></extra>", name="class score"))
    fig.update_layout(title={"text": title, "x": 0.0, "font": {"size": 14}} if title else None, height=280,
                      margin={"l": 40, "r": 10, "t": 40 if title else 10, "b": 40},
                      xaxis={"type": "category", "tickmode": "array", "tickvals": labels, "tickangle": 0},
                      yaxis={"range": [0, 1], "title": "score"}, showlegend=False)
    return fig


def confidence_figure(confidence: np.ndarray, sample_confidence: float | None = None,
                      cutoff: float | None = None, new_cutoff: float | None = None, nbins: int = 40) -> go.Figure:
    """Histogram of the step's propagation confidences with the cut-off.

    Parameters
    ----------
    confidence : np.ndarray, shape (N,)
        ``1 - H / log C`` per sample; NaN ignored.
    sample_confidence : float, optional
        The picked sample's, drawn as a marker line.
    cutoff : float, optional
        Confidence at or below which a sample keeps its label (stage 0).
    new_cutoff : float, optional
        The what-if cut-off, dashed.

    Returns
    -------
    go.Figure
        One bar trace (counts per bin); lines as layout shapes.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    conf = conf[np.isfinite(conf)]
    if conf.size == 0:
        return note_figure("This step has no propagation confidences.")
    counts, edges = np.histogram(conf, bins=nbins, range=(0.0, 1.0))
    fig = go.Figure(go.Bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges),
                           marker={"color": palette.HISTOGRAM}, name="samples",
                           hovertemplate="confidence %{x:.3f}: %{y} samples<extra></extra>"))
    for value, label, style in ((cutoff, "cut-off", "solid"), (new_cutoff, "what-if cut-off", "dash"),
                                (sample_confidence, "this sample", "dot")):
        if value is not None and np.isfinite(value):
            color = palette.VERMILLION if label != "this sample" else palette.BLACK
            fig.add_vline(x=value, line={"color": color, "dash": style, "width": 2},
                          annotation_text=f"{label} {value:.3f}", annotation_position="top")
    fig.update_layout(height=260, margin={"l": 40, "r": 10, "t": 30, "b": 40}, bargap=0,
                      xaxis={"title": "propagation confidence", "range": [0, 1]}, yaxis={"title": "samples"},
                      showlegend=False)
    return fig

"""The Losses page's charts: the per-sample loss histogram of a step, split by
clean/noisy and easy/not, with the small-loss cut-off; and the loss and AWE
weight trajectories of a few samples over the steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import palette
from .embedding import note_figure
from .palette import CLASS_COLORS, OTHER_SHADE, PHASE_SHADES
from .train import phase_spans

#: Histogram groups: (clean/noisy/all, easy/not easy/None) -> colour. Clean blue, noisy vermillion (told apart
#: by colour-blind viewers too); easy dark, not easy light.
GROUP_COLORS = {
    ("clean", "easy"): palette.BLUE, ("clean", "not easy"): palette.SKY_BLUE,
    ("noisy", "easy"): palette.VERMILLION, ("noisy", "not easy"): palette.ORANGE,
    ("all", "easy"): palette.DARK, ("all", "not easy"): palette.LIGHT_GREY,
    ("clean", None): palette.BLUE, ("noisy", None): palette.VERMILLION, ("all", None): palette.GREY,
}
#: Not easy bars are hatched as well, a cue that does not depend on colour (white lines over the bar's colour).
GROUP_PATTERNS = {"not easy": "/"}


def loss_groups(noisy: np.ndarray | None, easy: np.ndarray | None, n: int) -> list[tuple[str, np.ndarray]]:
    """Names and masks of the histogram groups that have samples.

    Parameters
    ----------
    noisy : np.ndarray, shape (N,), bool, or None
        True where the given label is wrong; ``None`` when the truth is unknown.
    easy : np.ndarray, shape (N,), bool, or None
        Small-loss flags; ``None`` (or all false) when the step selected none.
    n : int

    Returns
    -------
    list of (name, mask)
        ``name`` like ``"noisy · not easy"``; masks are disjoint and cover N.
    """
    purity = [("all", np.ones(n, bool))] if noisy is None else [
        ("clean", ~np.asarray(noisy, bool)), ("noisy", np.asarray(noisy, bool))]
    split = easy is not None and np.asarray(easy, bool).any()
    hardness = [(None, np.ones(n, bool))] if not split else [
        ("easy", np.asarray(easy, bool)), ("not easy", ~np.asarray(easy, bool))]
    groups = []
    for p_name, p_mask in purity:
        for h_name, h_mask in hardness:
            mask = p_mask & h_mask
            if mask.any():
                groups.append((p_name if h_name is None else f"{p_name} · {h_name}", mask))
    return groups


def _group_color(name: str) -> str:
    parts = name.split(" · ")
    return GROUP_COLORS.get((parts[0], parts[1] if len(parts) > 1 else None), palette.GREY)


def loss_histogram_figure(losses: np.ndarray, noisy: np.ndarray | None = None, easy: np.ndarray | None = None,
                          cutoff: float | None = None, new_cutoff: float | None = None, nbins: int = 40,
                          loss_name: str = "loss") -> go.Figure:
    """Stacked histogram of per-sample losses by group, with cut-off lines.

    Parameters
    ----------
    losses : np.ndarray, shape (N,)
        NaN losses are left out.
    noisy, easy : np.ndarray, shape (N,), bool, optional
        See :func:`loss_groups`.
    cutoff : float, optional
        The step's small-loss cut-off (solid line).
    new_cutoff : float, optional
        A moved cut-off (dashed line).
    nbins : int
    loss_name : str
        Axis title.

    Returns
    -------
    go.Figure
        One bar trace per non-empty group, all on the same bins; the counts of
        all traces sum to the number of finite losses.
    """
    losses = np.asarray(losses, dtype=np.float64)
    finite = np.isfinite(losses)
    if not finite.any():
        return note_figure("This step has no per-sample losses.")
    lo, hi = float(losses[finite].min()), float(losses[finite].max())
    edges = np.linspace(lo, hi if hi > lo else lo + 1.0, nbins + 1)
    centres, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    fig = go.Figure()
    for name, mask in loss_groups(noisy, easy, len(losses)):
        counts, _ = np.histogram(losses[mask & finite], bins=edges)
        pattern = GROUP_PATTERNS.get(name.split(" · ")[-1])
        marker = {"color": _group_color(name), "line": {"width": 0}}
        if pattern:  # white hatching *over* the group's colour (overlay): the bar and its legend swatch keep it
            marker["pattern"] = {"shape": pattern, "fillmode": "overlay", "fgcolor": palette.WHITE,
                                 "fgopacity": 0.9, "size": 6, "solidity": 0.25}
        fig.add_trace(go.Bar(x=centres, y=counts, width=widths, name=name, marker=marker,
                             hovertemplate=f"{name}<br>{loss_name} %{{x:.3f}}: %{{y}}<extra></extra>"))
    for value, label, dash in ((cutoff, "small-loss cut-off", "solid"), (new_cutoff, "moved cut-off", "dash")):
        if value is not None and np.isfinite(value):
            fig.add_vline(x=value, line={"color": palette.BLACK, "dash": dash, "width": 2},
                          annotation_text=f"{label} {value:.3f}", annotation_position="top right")
    fig.update_layout(barmode="stack", bargap=0, height=360, margin={"l": 50, "r": 10, "t": 40, "b": 40},
                      xaxis={"title": loss_name}, yaxis={"title": "samples"},
                      legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0})
    return fig


def trajectory_figure(steps: np.ndarray, losses: np.ndarray, weights: np.ndarray, sample_ids: Sequence[int],
                      phases: Sequence[str] | None = None, labels: Sequence[str] | None = None,
                      weights_given: np.ndarray | None = None) -> go.Figure:
    """Loss (top) and AWE weight (bottom) of a few samples over the steps.

    Parameters
    ----------
    steps : np.ndarray, shape (T,)
    losses, weights : np.ndarray, shape (S, T)
        NaN where a step has no value (a gap in the line). ``weights``: the
        weight of the label trained on (solid).
    sample_ids : sequence of int, length S
    phases : sequence of str, length T, optional
        Phase of each step, shaded behind the lines.
    labels : sequence of str, length S, optional
        Legend text per sample (default ``#index``).
    weights_given : np.ndarray, shape (S, T), optional
        The weight of the given label (dotted): low when AWE doubts it.

    Returns
    -------
    go.Figure
        Per sample, in order: its loss trace, its weight trace, and its
        given-label weight trace when ``weights_given`` is passed.
    """
    steps = np.asarray(steps)
    if len(sample_ids) == 0 or steps.size == 0:
        return note_figure("Pick samples to follow across steps.")
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("loss against the given label",
                                        "AWE weight: of the label trained on (solid), of the given label (dotted)"))
    for s, sample in enumerate(sample_ids):
        color = CLASS_COLORS[s % len(CLASS_COLORS)]
        name = labels[s] if labels is not None else f"#{sample}"
        series = [(1, losses[s], "solid", "loss"), (2, weights[s], "solid", "weight")]
        if weights_given is not None:
            series.append((2, weights_given[s], "dot", "weight of the given label"))
        for row, values, dash, what in series:
            fig.add_trace(go.Scattergl(x=steps, y=values, mode="lines+markers", name=name, legendgroup=str(sample),
                                       showlegend=what == "loss", line={"color": color, "width": 2, "dash": dash},
                                       marker={"size": 5, "color": color}, connectgaps=False,
                                       hovertemplate=f"{name} {what}<br>step %{{x}}: %{{y:.3f}}<extra></extra>"),
                          row=row, col=1)
    if phases is not None:
        _shade(fig, steps, phases)
    fig.update_yaxes(range=[0, 1.02], row=2, col=1)
    fig.update_xaxes(title_text="step", row=2, col=1)
    fig.update_layout(height=500, margin={"l": 50, "r": 10, "t": 40, "b": 40},
                      legend={"orientation": "h", "y": -0.15, "x": 0})
    return fig


def _shade(fig: go.Figure, steps: np.ndarray, phases: Sequence[str]) -> None:
    """Phases shaded behind both rows, named in the top one."""
    spans = phase_spans([{"step": int(t), "phase": p} for t, p in zip(steps, phases)])
    for phase, first, last in spans:
        shade = PHASE_SHADES.get(phase, OTHER_SHADE)
        for row in (1, 2):  # a label only on top: an annotation without text would read "new text"
            label = {"annotation_text": phase, "annotation_position": "top left"} if row == 1 else {}
            fig.add_vrect(x0=first - 0.5, x1=last + 0.5, fillcolor=shade, line_width=0, layer="below",
                          row=row, col=1, **label)

"""Charts of the Train page: scalar metrics over steps, and the phase timeline.

Every chart function takes ``metrics``, the run's per-step metric dicts in
step order (``RunStore.metrics()``), and returns a plotly ``Figure``. A value
that is ``None`` (unknown at that step, e.g. the student's accuracy during
the teacher phase) is left out, so a trace has one point per step that
measured it. Phases are shaded in the background so a jump can be read
against what the step did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from . import palette
from .palette import PHASE_COLORS, PHASE_SHADES, SERIES_COLORS as COLORS  # noqa: F401

Metrics = Sequence[Mapping]

HEIGHT = 330
SERIES_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "cross", "star")
#: A band is named only when it spans this fraction of the chart's width per character of its name (about
#: 40 characters of 10 px type fit across a chart a third of a 1024-px screen wide), so names never overlap.
BAND_CHAR_FRACTION = 1 / 30


def metric_series(metrics: Metrics, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and values of one metric, steps where it is unknown left out.

    Returns
    -------
    steps : np.ndarray, shape (M,), int
    values : np.ndarray, shape (M,), float
    """
    pairs = [(m["step"], m[key]) for m in metrics if m.get(key) is not None and m.get("step") is not None]
    if not pairs:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=float)
    steps, values = zip(*pairs)
    return np.asarray(steps, dtype=int), np.asarray(values, dtype=float)


def phase_spans(metrics: Metrics) -> list[tuple[str, int, int]]:
    """Consecutive runs of steps in one phase: ``(phase, first_step, last_step)``."""
    spans: list[list] = []
    for m in metrics:
        phase, step = m.get("phase"), m.get("step")
        if phase is None or step is None:
            continue
        if spans and spans[-1][0] == phase:
            spans[-1][2] = step
        else:
            spans.append([phase, step, step])
    return [tuple(s) for s in spans]


def interval_bars(metrics: Metrics, key: str, low: str, high: str) -> dict | None:
    """Plotly ``error_y`` of ``key``'s points (:func:`metric_series`): up to ``high``, down to ``low`` (0 at a
    step without them); None where no step has both."""
    rows = [m for m in metrics if m.get(key) is not None and m.get("step") is not None]
    if not any(m.get(low) is not None and m.get(high) is not None for m in rows):
        return None
    up = [max(m[high] - m[key], 0.0) if m.get(high) is not None else 0.0 for m in rows]
    down = [max(m[key] - m[low], 0.0) if m.get(low) is not None else 0.0 for m in rows]
    return {"type": "data", "symmetric": False, "array": up, "arrayminus": down, "thickness": 1.5, "width": 3}


def _line_chart(metrics: Metrics, series: Sequence[tuple[str, str]], title: str, y_title: str,
                y_range: tuple[float, float] | None = None, dash: Mapping[str, str] | None = None,
                intervals: Mapping[str, tuple[str, str]] | None = None) -> go.Figure:
    """One line per ``(metric key, legend label)``, over steps, phases shaded; a key of ``intervals``
    (``key: (low key, high key)``) draws its interval as bars at each point.

    Built in one go (traces, shapes and annotations as plain dicts): plotly's
    ``add_vrect`` re-validates the layout on every call and would cost most
    of a page refresh.
    """
    traces = []
    for i, (key, label) in enumerate(series):  # each line its own marker shape too: not colour alone
        steps, values = metric_series(metrics, key)
        traces.append(go.Scatter(
            x=steps, y=values, name=label, mode="lines+markers",
            marker={"size": 6, "color": COLORS.get(key, palette.DARK), "symbol": SERIES_SYMBOLS[i % len(SERIES_SYMBOLS)]},
            line={"color": COLORS.get(key, palette.DARK), "dash": (dash or {}).get(key, "solid"), "width": 2},
            error_y=interval_bars(metrics, key, *intervals[key]) if key in (intervals or {}) else None,
            hovertemplate=f"{label}<br>step %{{x}}: %{{y:.3f}}<extra></extra>"))
    shapes, annotations = _phase_bands(metrics)
    if not metrics:
        annotations.append({"text": "No steps yet: press Step", "showarrow": False, "xref": "paper",
                            "yref": "paper", "x": 0.5, "y": 0.5, "font": {"size": 13, "color": palette.MID_GREY}})
    yaxis = {"title": {"text": y_title}}
    if y_range is not None:
        yaxis["range"] = list(y_range)
    layout = {"title": {"text": title, "x": 0.0, "y": 0.98, "yanchor": "top", "font": {"size": 14}},
              "height": HEIGHT, "margin": {"l": 50, "r": 10, "t": 58, "b": 10},
              "legend": {"orientation": "h", "y": -0.3, "yanchor": "top", "x": 0, "xanchor": "left"},
              "xaxis": {"title": {"text": "step"}, "rangemode": "tozero"}, "yaxis": yaxis,
              "hovermode": "x unified", "shapes": shapes, "annotations": annotations,
              "showlegend": True}  # also while a series has no points yet: the legend says what is to come
    return go.Figure(data=traces, layout=layout)


def _phase_bands(metrics: Metrics) -> tuple[list[dict], list[dict]]:
    """A shaded band per phase span (x in steps, y across the plot), labelled
    when it is wide enough for its name to fit (:data:`BAND_CHAR_FRACTION`):
    no two names overlap, whatever the phases' lengths."""
    shapes, annotations = [], []
    spans = phase_spans(metrics)
    steps_shown = sum(last - first + 1 for _, first, last in spans)
    for phase, first, last in spans:
        shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": first - 0.5, "x1": last + 0.5,
                       "y0": 0, "y1": 1, "fillcolor": PHASE_SHADES.get(phase, palette.OTHER_SHADE),
                       "line": {"width": 0}, "layer": "below"})
        if not band_fits(phase, last - first + 1, steps_shown):
            continue
        # above the plot area (in the top margin, under the title): never on a curve near 1.0
        annotations.append({"text": phase, "xref": "x", "yref": "paper", "x": first - 0.5, "y": 1,
                            "xanchor": "left", "yanchor": "bottom", "showarrow": False,
                            "font": {"size": 10, "color": palette.MID_GREY}})
    return shapes, annotations


def band_fits(name: str, steps_in_band: int, steps_shown: int) -> bool:
    """Whether a band of ``steps_in_band`` of ``steps_shown`` steps is wide enough to carry ``name``."""
    return steps_shown > 0 and steps_in_band / steps_shown >= (len(name) + 1) * BAND_CHAR_FRACTION


def label_precision_figure(metrics: Metrics) -> go.Figure:
    """Refined-label precision against the given labels' precision (higher is better), the refined labels'
    precision estimated without the truth (dotted, with its 90% interval as bars; the one line a run without a
    truth has), and, where steps used a random audit, its count of their labels (dash-dot, Wilson bars)."""
    series = [("refined_label_precision", "refined labels"), ("given_label_precision", "given labels"),
              ("refined_precision_estimate", "refined, estimated")]
    if any(m.get("audit_precision") is not None for m in metrics):
        series.append(("audit_precision", "refined, audited"))
    return _line_chart(metrics, series, "Label precision", "fraction correct", (0, 1.02),
                       dash={"given_label_precision": "dash", "refined_precision_estimate": "dot",
                             "audit_precision": "dashdot"},
                       intervals={"refined_precision_estimate": ("refined_precision_low", "refined_precision_high"),
                                  "audit_precision": ("audit_precision_low", "audit_precision_high")})


def detection_figure(metrics: Metrics) -> go.Figure:
    """Noise detection: of the relabelled samples, how many had a wrong label
    (precision), and of the wrong labels, how many were relabelled (recall)."""
    return _line_chart(metrics, [("detection_precision", "precision"), ("detection_recall", "recall")],
                       "Noise detection", "fraction", (0, 1.02))


def accuracy_figure(metrics: Metrics) -> go.Figure:
    """Test accuracy of the teacher and the student (higher is better)."""
    return _line_chart(metrics, [("teacher_test_accuracy", "teacher"), ("student_test_accuracy", "student")],
                       "Test accuracy", "accuracy", (0, 1.02))


def relabel_figure(metrics: Metrics) -> go.Figure:
    """Refined labels that fixed a wrong given label, and that broke a right one."""
    return _line_chart(metrics, [("wrong_to_right", "wrong → right"), ("right_to_wrong", "right → wrong")],
                       "Relabels", "samples")


def weight_figure(metrics: Metrics) -> go.Figure:
    """How well the refinery tells right given labels from wrong ones: the AUROC
    of the AWE weight of the given label (0.5 = no better than chance) and the
    precision of the small-loss 'easy' set (higher is better for both)."""
    return _line_chart(metrics, [("awe_auroc", "AWE weight AUROC"), ("selection_precision", "easy-set precision")],
                       "Clean vs noisy", "score", (0, 1.02))


LOSS_SERIES = (("teacher_loss", "teacher CE"), ("loss_ce", "student CE"), ("loss_mixup", "mixup CE"),
               ("loss_kd", "KD"), ("loss_rel", "relational"))
#: Terms only some runs have (``clean_kd_weight`` > 0): drawn only when present.
OPTIONAL_LOSS_SERIES = (("loss_kd_clean", "KD, un-mixed images"),)


def loss_figure(metrics: Metrics) -> go.Figure:
    """Training losses per epoch: the teacher's CE, then the student's terms."""
    optional = [(key, label) for key, label in OPTIONAL_LOSS_SERIES if any(m.get(key) is not None for m in metrics)]
    return _line_chart(metrics, LOSS_SERIES + tuple(optional), "Training losses", "mean loss per sample",
                       dash={"loss_kd_clean": "dash"})  # often on top of KD on mixed images: keep both visible


#: The Train page's charts, in display order: (key, builder).
CHARTS = (("labels", label_precision_figure), ("detection", detection_figure), ("accuracy", accuracy_figure),
          ("relabels", relabel_figure), ("weights", weight_figure), ("losses", loss_figure))


def phase_timeline_figure(plan: Sequence[Mapping], current_phase: str | None) -> go.Figure:
    """The run's phases as one bar of segments, the steps done filled in.

    Parameters
    ----------
    plan : sequence of dict
        ``{"phase", "planned", "done"}`` per phase in order (see
        ``app.settings.phase_plan``).
    current_phase : str or None
        Its segment is outlined.

    Returns
    -------
    go.Figure
        Two bar traces per phase (done, still to do), stacked horizontally.
    """
    fig = go.Figure()
    for item in plan:
        phase, planned, done = item["phase"], int(item["planned"]), int(item["done"])
        color = PHASE_COLORS.get(phase, palette.GREY)
        current = phase == current_phase
        outline = {"color": palette.BLACK, "width": 3} if current else {"color": palette.WHITE, "width": 1}
        label = f"{phase} {done}/{planned}"
        on_done = done >= max(planned - done, 1)  # the label goes on the longer part
        fig.add_trace(go.Bar(y=["run"], x=[done], orientation="h", name=phase, marker={"color": color,
                             "line": outline}, text=[label if on_done else ""],
                             textposition="inside", insidetextanchor="middle", textangle=0,
                             insidetextfont={"color": palette.text_on(color)}, showlegend=False,
                             hovertemplate=f"{phase}: {done} of {planned} steps done<extra></extra>"))
        fig.add_trace(go.Bar(y=["run"], x=[max(planned - done, 0)], orientation="h", name=f"{phase} (to do)",
                             marker={"color": color, "opacity": 0.25, "line": outline},
                             text=[label if not on_done else ""], textposition="inside",
                             insidetextanchor="middle", textangle=0, insidetextfont={"color": palette.BLACK},
                             showlegend=False,
                             hovertemplate=f"{phase}: {planned - done} of {planned} steps to do<extra></extra>"))
    # A name that does not fit its segment at a readable size is hidden (never shrunk or turned on its side):
    # timeline_caption lists every phase under the bar.
    fig.update_layout(barmode="stack", height=70, margin={"l": 10, "r": 10, "t": 6, "b": 22},
                      uniformtext={"minsize": 12, "mode": "hide"},
                      xaxis={"title": None, "rangemode": "tozero"}, yaxis={"visible": False}, bargap=0.1)
    return fig


def disk_line(sizes: Mapping[int, int]) -> str:
    """How much disk the run's snapshots take: ``"Snapshots on disk: 26.1 MB the last step, 104.4 MB in all
    (4 steps)"``; empty without steps. ``sizes``: step -> bytes."""
    if not sizes:
        return ""
    last, total = sizes[max(sizes)], sum(sizes.values())
    return (f"Snapshots on disk: {_megabytes(last)} the last step, {_megabytes(total)} in all "
            f"({len(sizes)} step{'s' if len(sizes) != 1 else ''})")


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 1e5 else f"{size / 1e3:.0f} kB"


def timeline_caption(plan: Sequence[Mapping], current_phase: str | None) -> str:
    """Every phase with its steps done and planned, the current one in bold (Markdown), e.g.
    ``teacher 5/5 · **propagate 0/1** · warmup 0/2``."""
    parts = []
    for item in plan:
        text = f"{item['phase']} {int(item['done'])}/{int(item['planned'])}"
        parts.append(f"**{text}**" if item["phase"] == current_phase else text)
    return " · ".join(parts)

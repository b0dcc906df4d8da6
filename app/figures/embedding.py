"""The Embeddings page's scatter: a 2-D layout of the training samples,
coloured by a label, a flag or a number, sized by a number.

Points are drawn with WebGL (``go.Scattergl``) so that 10,000 of them stay
responsive; every point carries its sample index as ``customdata[0]`` so that
a box or lasso selection maps back to samples whatever trace it hit
(:func:`selected_samples`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from . import palette
from .palette import CLASS_COLORS, CONTINUOUS_SCALE, FLAG_COLORS, UNKNOWN_COLOR, class_color, class_name, flag_style  # noqa: F401

HEIGHT = 560
SIZE_RANGE = (4.0, 14.0)


def scale_sizes(values: np.ndarray | None, n: int, size_range: tuple[float, float] = SIZE_RANGE) -> np.ndarray | float:
    """Marker sizes from a numeric field, linearly onto ``size_range``.

    Parameters
    ----------
    values : np.ndarray, shape (N,), or None
        NaN values get the smallest size; ``None`` gives one fixed size.
    n : int

    Returns
    -------
    np.ndarray, shape (N,), or float
    """
    lo, hi = size_range
    if values is None:
        return 6.0
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    sizes = np.full(n, lo)
    if finite.any():
        vmin, vmax = values[finite].min(), values[finite].max()
        span = vmax - vmin
        sizes[finite] = (lo + hi) / 2 if span == 0 else lo + (values[finite] - vmin) / span * (hi - lo)
    return sizes


def note_figure(text: str, height: int = 200) -> go.Figure:
    """A chart-sized note, for a view with nothing to draw."""
    fig = go.Figure()
    fig.add_annotation(text=text, x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False,
                       font={"size": 14, "color": palette.MID_GREY})
    fig.update_layout(height=height, xaxis={"visible": False}, yaxis={"visible": False},
                      margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return fig


def _marker(sizes, rows: np.ndarray, color, **extra) -> dict:
    size = sizes[rows] if isinstance(sizes, np.ndarray) else sizes
    return {"size": size, "color": color, "line": {"width": 0}, "opacity": 0.85, **extra}


def _scatter(coords: np.ndarray, rows: np.ndarray, name: str, marker: dict, hover: Sequence[str] | None,
             sample_ids: np.ndarray, webgl: bool = True, **extra) -> go.Scattergl | go.Scatter:
    text = None if hover is None else [hover[i] for i in rows]
    return (go.Scattergl if webgl else go.Scatter)(
        x=coords[rows, 0], y=coords[rows, 1], mode="markers", name=name, marker=marker,
        customdata=sample_ids[rows, None], text=text,
        hovertemplate="%{text}<extra></extra>" if text is not None else "#%{customdata[0]}",  # + the trace's name
        **extra)


def embedding_figure(
    coords: np.ndarray,
    values: np.ndarray,
    kind: str,
    *,
    category_names: Mapping[int, str] | Sequence[str] | None = None,
    sizes: np.ndarray | None = None,
    hover: Sequence[str] | None = None,
    highlight: np.ndarray | None = None,
    highlight_name: str = "selected",
    flag_field: str | None = None,
    title: str | None = None,
    color_title: str | None = None,
    sample_ids: np.ndarray | None = None,
    webgl: bool = True,
) -> go.Figure:
    """Scatter of a 2-D layout.

    Parameters
    ----------
    coords : np.ndarray, shape (N, 2)
    values : np.ndarray, shape (N,)
        What the colour shows. ``kind='category'``: integer codes, -1 =
        unknown (grey), one trace (and legend entry) per code present;
        ``kind='flag'``: booleans, two traces, each with its own colour and
        marker symbol (:func:`app.figures.palette.flag_style`);
        ``kind='continuous'``: numbers on a colour scale, NaN drawn grey in a
        trace of its own.
    kind : {'category', 'flag', 'continuous'}
    category_names : mapping or sequence, optional
        Legend name of each code (for flags: ``(name of False, name of True)``).
    sizes : np.ndarray, shape (N,), optional
        Numeric field mapped onto marker size (:func:`scale_sizes`).
    hover : sequence of str, optional
        One hover text per sample; without, a point's hover is its sample index and its trace's name (the
        colour group): what a sample of 20,000 points over a density sends (texts would be 60% of the chart).
    highlight : np.ndarray of int, optional
        Samples ringed (dark outline, no fill) by an extra trace drawn on top.
    flag_field : {'correct', 'easy', 'relabelled'}, optional
        Which two-valued field a flag is, for its colours and shapes.
    title, color_title : str, optional
    sample_ids : np.ndarray, shape (N,), optional
        Sample index of each row (default ``0..N-1``), put in ``customdata``.
    webgl : bool
        Points drawn with WebGL (``go.Scattergl``: many points stay responsive) or as SVG (``go.Scatter``:
        a few thousand points drawn at once, with no WebGL context to start: the sample over a density).

    Returns
    -------
    go.Figure
        Traces: the colour groups, then the highlight trace when given.
    """
    coords = np.asarray(coords, dtype=np.float32)
    n = coords.shape[0]
    if n == 0:
        return note_figure("No samples to draw.")
    if coords.shape != (n, 2) or len(values) != n:
        raise ValueError(f"coords must be (N, 2) and values (N,), got {coords.shape} and {np.shape(values)}")
    sample_ids = np.arange(n) if sample_ids is None else np.asarray(sample_ids)
    marker_sizes = scale_sizes(sizes, n)
    fig = go.Figure()
    if kind == "category":
        _add_categories(fig, coords, np.asarray(values, dtype=np.int64), category_names, marker_sizes, hover,
                        sample_ids, webgl)
    elif kind == "flag":
        names = tuple(category_names) if category_names is not None else ("no", "yes")
        flags = np.asarray(values, dtype=bool)
        for flag in (False, True):
            rows = np.flatnonzero(flags == flag)
            if rows.size:
                color, symbol = flag_style(flag_field, flag)
                fig.add_trace(_scatter(coords, rows, names[int(flag)],
                                       _marker(marker_sizes, rows, color, symbol=symbol), hover, sample_ids, webgl))
    elif kind == "continuous":
        _add_continuous(fig, coords, np.asarray(values, dtype=np.float64), marker_sizes, hover, sample_ids,
                        color_title, webgl)
    else:
        raise ValueError(f"kind={kind!r} is unknown; valid: category, flag, continuous")
    if highlight is not None and len(highlight):
        rows = np.asarray(highlight, dtype=np.int64)
        fig.add_trace(_scatter(coords, rows, highlight_name, dict(palette.HIGHLIGHT_MARKER), hover, sample_ids,
                               webgl))
    fig.update_layout(
        title={"text": title, "x": 0.0, "font": {"size": 14}} if title else None, height=HEIGHT,
        margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10}, dragmode="lasso",
        legend={"itemsizing": "constant", "title": {"text": color_title} if color_title else None},
        xaxis={"showticklabels": False, "title": None, "zeroline": False},
        yaxis={"showticklabels": False, "title": None, "zeroline": False, "scaleanchor": "x"},
        plot_bgcolor=palette.WHITE, uirevision="embedding")
    return fig


def _add_categories(fig, coords, codes, names, sizes, hover, sample_ids, webgl=True) -> None:
    for code in np.unique(codes):
        rows = np.flatnonzero(codes == code)
        fig.add_trace(_scatter(coords, rows, class_name(int(code), names),
                               _marker(sizes, rows, class_color(int(code))), hover, sample_ids, webgl))


def _add_continuous(fig, coords, values, sizes, hover, sample_ids, color_title, webgl=True) -> None:
    finite = np.isfinite(values)
    missing = np.flatnonzero(~finite)
    if missing.size:
        fig.add_trace(_scatter(coords, missing, "no value", _marker(sizes, missing, UNKNOWN_COLOR), hover,
                               sample_ids, webgl))
    rows = np.flatnonzero(finite)
    if rows.size:
        marker = _marker(sizes, rows, values[rows], colorscale=CONTINUOUS_SCALE, showscale=True,
                         colorbar={"title": {"text": color_title or ""}, "thickness": 12})
        fig.add_trace(_scatter(coords, rows, color_title or "value", marker, hover, sample_ids, webgl,
                               showlegend=False))


def selected_samples(points: Sequence[Mapping], trace_rows: Sequence[np.ndarray] | None = None) -> list[int]:
    """Sample indices of a plotly selection event's points.

    Parameters
    ----------
    points : sequence of dict
        ``event.selection["points"]`` of ``st.plotly_chart``.
    trace_rows : sequence of np.ndarray, optional
        Sample indices of each trace's points, for events whose points carry
        no ``customdata``.

    Returns
    -------
    list of int
        Unique, in ascending order.
    """
    out = set()
    for p in points:
        sample = first_customdata(p.get("customdata"))
        if sample is not None:
            out.add(sample)
        elif trace_rows is not None and p.get("curve_number") is not None:
            out.add(int(trace_rows[p["curve_number"]][p.get("point_index", p.get("point_number"))]))
    return sorted(out)


def first_customdata(data) -> int | None:
    """The first ``customdata`` value of a selected point as an int.

    The browser sends a row of a typed ``customdata`` array as ``{"0": 12}``,
    a plain one as ``[12]`` or ``12``; ``None`` when there is none.
    """
    if isinstance(data, Mapping):
        data = [data[k] for k in sorted(data, key=lambda k: int(k) if str(k).isdigit() else 0)]
    values = np.atleast_1d(np.asarray(data, dtype=object)) if data is not None else np.zeros(0)
    if not values.size or values[0] is None:
        return None
    return int(values[0])


# ---------------------------------------------------------------------- a million samples
SAMPLE_OPACITY = 0.55  # points over a density
SAMPLE_SIZE = 4.0  # their size when no field sizes them
DENSITY_BINS = 200  # cells per axis of the density image: about one cell per 4 px of the chart at 1024 px
DENSITY_SCALE = [[0.0, palette.DENSITY_LOW], [1.0, palette.DENSITY_HIGH]]  # light to mid grey, on white
DENSITY_NAME = "all samples (density)"  # the layout image's name


def density_counts(coords: np.ndarray, bins: int = DENSITY_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How many samples fall in each cell of a ``bins x bins`` grid over the layout's extent.

    One pass of integer arithmetic and ``np.bincount``: 70 ms of CPU at a million points (``np.histogram2d``
    of the same points: 90 ms).

    Parameters
    ----------
    coords : np.ndarray, shape (N, 2)

    Returns
    -------
    counts : np.ndarray, shape (bins, bins), int64
        ``counts[row, col]``: samples with y in row ``row`` (from the bottom) and x in column ``col``.
    x_edges, y_edges : np.ndarray, shape (bins + 1,)
    """
    coords = np.asarray(coords, dtype=np.float32)
    lo, hi = coords.min(axis=0).astype(np.float64), coords.max(axis=0).astype(np.float64)
    span = np.where(hi > lo, hi - lo, 1.0)
    cell = np.clip(((coords - lo) * (bins / span)).astype(np.int64), 0, bins - 1)  # (N, 2): column, row
    counts = np.bincount(cell[:, 1] * bins + cell[:, 0], minlength=bins * bins).reshape(bins, bins)
    return counts, np.linspace(lo[0], lo[0] + span[0], bins + 1), np.linspace(lo[1], lo[1] + span[1], bins + 1)


def density_pixels(counts: np.ndarray) -> np.ndarray:
    """The density as grey pixels with alpha, top row first (an image's order).

    Parameters
    ----------
    counts : np.ndarray, shape (R, C)
        Row 0 at the bottom of the layout (:func:`density_counts`).

    Returns
    -------
    np.ndarray, shape (R, C, 2), uint8
        Grey level (``log(1 + count)`` from :data:`palette.DENSITY_LOW` at one sample to
        :data:`palette.DENSITY_HIGH` at the most) and alpha (255 where any sample is, 0 where none).
    """
    low, high = (int(palette.DENSITY_LOW[1:3], 16), int(palette.DENSITY_HIGH[1:3], 16))
    level = np.log1p(counts.astype(np.float64))
    top = level.max()
    shade = (level - np.log1p(1.0)) / (top - np.log1p(1.0)) if top > np.log1p(1.0) else np.zeros_like(level)
    grey = np.round(low + np.clip(shade, 0, 1) * (high - low)).astype(np.uint8)
    alpha = np.where(counts > 0, 255, 0).astype(np.uint8)
    return np.stack([grey, alpha], axis=-1)[::-1]


def density_image(coords: np.ndarray, bins: int = DENSITY_BINS) -> dict:
    """The density of every sample as one layout image under the points (a PNG of ``bins x bins`` cells).

    An image costs the browser one picture to draw, where a heatmap trace of the same cells cost it
    ``bins^2`` values to parse and colour: 4 kB at a million samples instead of 270 kB of JSON.

    Returns
    -------
    dict
        A plotly ``layout.images`` entry in data coordinates (``xref='x'``, ``yref='y'``), drawn below the
        traces, stretched over the layout's extent.
    """
    import base64
    import io

    from PIL import Image

    counts, x_edges, y_edges = density_counts(coords, bins)
    buffer = io.BytesIO()
    Image.fromarray(density_pixels(counts), mode="LA").save(buffer, format="PNG", optimize=True)
    return {"source": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii"),
            "xref": "x", "yref": "y", "x": float(x_edges[0]), "y": float(y_edges[-1]),
            "sizex": float(x_edges[-1] - x_edges[0]), "sizey": float(y_edges[-1] - y_edges[0]),
            "sizing": "stretch", "layer": "below", "xanchor": "left", "yanchor": "top", "name": DENSITY_NAME}


def with_density(fig: go.Figure, image: dict, total: int, drawn: int) -> go.Figure:
    """``fig`` (points of a sample of the layout) over ``image`` (:func:`density_image` of all samples);
    the axes span the whole layout (not only the drawn points), and the legend's title says how many points
    are drawn of how many samples. ``fig`` is changed and returned."""
    for trace in fig.data:  # lighter, smaller points: the density shows between and under them
        if trace.name != "selected":
            trace.marker.opacity = SAMPLE_OPACITY
            if not isinstance(trace.marker.size, (tuple, list, np.ndarray)):
                trace.marker.size = SAMPLE_SIZE
    head = f"{fig.layout.legend.title.text}<br>" if fig.layout.legend.title.text else ""
    x0, y1 = image["x"], image["y"]
    fig.update_layout(images=[image], xaxis={"range": [x0, x0 + image["sizex"]], "showgrid": False},
                      yaxis={"range": [y1 - image["sizey"], y1], "showgrid": False},  # no lines across the density
                      legend={"title": {"text": f"{head}<sup>{drawn:,} of {total:,} drawn; grey: density of "
                                                "all</sup>"}})
    return fig


def point_sample(n: int, limit: int, always: Sequence[int] = (), seed: int = 0) -> np.ndarray:
    """Rows to draw as points: all when ``n <= limit``, else ``limit`` seeded random rows and ``always``.

    Returns
    -------
    np.ndarray of int, ascending, unique
    """
    if n <= limit:
        return np.arange(n)
    rows = np.random.default_rng(seed).choice(n, size=limit, replace=False)
    extra = np.asarray([i for i in always if 0 <= i < n], dtype=np.int64)
    return np.unique(np.concatenate([rows.astype(np.int64), extra]))


def samples_in_regions(coords: np.ndarray, boxes: Sequence[Mapping] = (), lassos: Sequence[Mapping] = ()
                       ) -> np.ndarray:
    """Every sample inside the drawn boxes or lassos, from the full layout (not only the drawn points).

    Parameters
    ----------
    coords : np.ndarray, shape (N, 2)
    boxes : sequence of dict
        ``event.selection["box"]`` of ``st.plotly_chart``: ``{"x": [x0, x1], "y": [y0, y1]}``.
    lassos : sequence of dict
        ``event.selection["lasso"]``: ``{"x": [...], "y": [...]}``, the polygon's corners.

    Returns
    -------
    np.ndarray of int, ascending
    """
    from matplotlib.path import Path

    coords = np.asarray(coords, dtype=np.float64)
    inside = np.zeros(len(coords), dtype=bool)
    for box in boxes:
        (x0, x1), (y0, y1) = sorted(box["x"][:2]), sorted(box["y"][:2])
        inside |= (coords[:, 0] >= x0) & (coords[:, 0] <= x1) & (coords[:, 1] >= y0) & (coords[:, 1] <= y1)
    for lasso in lassos:
        corners = np.column_stack([np.asarray(lasso["x"], float), np.asarray(lasso["y"], float)])
        if len(corners) >= 3:
            inside |= Path(corners).contains_points(coords)
    return np.flatnonzero(inside)

"""The Embeddings page's replay: every step of the run as one animated scatter.

The layouts come from :func:`engine.readers.embed.embedding` (cached in the run
directory, each step starting from its neighbour's layout, so points move
rather than jump); raw 2-D inputs are their own layout, the same at every
step, so only the colours move. :func:`missing_layouts` says which steps
still need a projection; the page offers to compute them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from app.figures.animation import point_styles, steps_animation
from engine.readers import embed
from engine.rundir import RunStore


def missing_layouts(store: RunStore, steps: Sequence[int], source: str) -> list[int]:
    """Steps whose ``source`` layout is not cached yet (none for raw inputs)."""
    if source == "input":
        return []
    cached = set(embed.cached_steps(store, source))
    return [s for s in steps if s not in cached]


def replay_figure(store: RunStore, steps: Sequence[int], source: str, field: Callable[[int], tuple],
                  labels: Sequence[str], *, inputs: np.ndarray | None = None, hover: Callable[[int], list] | None = None,
                  duration_ms: int, start_step: int | None = None, title: str | None = None,
                  color_title: str | None = None):
    """The animation over ``steps`` that have a layout.

    Parameters
    ----------
    field : callable step -> (values (N,), kind, names, flag_field)
        The colour field at a step.
    labels : sequence of str
        Scrubber label of each step (same order as ``steps``).
    inputs : np.ndarray, shape (N, 2), optional
        Raw 2-D inputs (``source='input'``).

    Returns
    -------
    (go.Figure or None, list of int)
        The figure (``None`` when no step has a layout) and the steps it holds.
    """
    coords, styles, shown, shown_labels, legend, hovers, numeric = [], [], [], [], {}, [], []
    fixed = embed.input_coordinates(inputs) if source == "input" else None
    cached = set(embed.cached_steps(store, source)) if source != "input" else set(steps)
    for step, label in zip(steps, labels):
        if step not in cached:
            continue
        xy = fixed if fixed is not None else embed.embedding(store, step, source)
        if xy is None:
            continue
        values, kind, names, flag_field = field(step)
        colors, symbols, entries = point_styles(values, kind, names, flag_field)
        if kind == "continuous":
            finite = np.asarray(values, dtype=np.float64)
            finite = finite[np.isfinite(finite)]
            if finite.size:
                numeric.append((float(finite.min()), float(finite.max())))
        for name, color, symbol in entries:
            legend.setdefault(name, (name, color, symbol))
        coords.append(xy)
        styles.append((colors, symbols))
        shown.append(step)
        shown_labels.append(label)
        if hover is not None:
            hovers.append(hover(step))
    if not shown:
        return None, []
    start = shown.index(start_step) if start_step in shown else len(shown) - 1
    value_range = (min(lo for lo, _ in numeric), max(hi for _, hi in numeric)) if numeric else None
    fig = steps_animation(coords, styles, shown_labels, legend=sorted(legend.values(), key=_legend_order),
                          hover=hovers or None, duration_ms=duration_ms, start=start, title=title,
                          continuous_range=value_range, color_title=color_title)
    return fig, shown


def _legend_order(entry: tuple) -> tuple:
    name = entry[0]
    return (0, int(name)) if name.isdigit() else (1, name)

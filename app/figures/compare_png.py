"""The Compare page's downloads as PNG: the curves, the results table and the
per-sample grid, drawn with matplotlib (Agg, the same as the run report) so
that a PNG needs neither a browser nor kaleido.

Each function returns the PNG's bytes. The curves use the page's colours and
dashes (:mod:`app.figures.compare`), so the picture reads like the chart on
screen; the table and the grid show the cells and captions the page shows.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence

import numpy as np

from . import palette
from .compare import METRICS, curve_styles

DPI = 120
MPL_DASHES = {"solid": "-", "dash": "--", "dot": ":", "dashdot": "-.", "longdash": (0, (8, 3)),
              "longdashdot": (0, (8, 3, 1, 3))}


def _figure(width: float, height: float):
    from matplotlib.figure import Figure  # no pyplot: no global state, safe in Streamlit's threads

    return Figure(figsize=(width, height), dpi=DPI)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight", facecolor=palette.WHITE)
    return buffer.getvalue()


def curves_png(points: Sequence[Mapping], key: str, title: str | None = None) -> bytes:
    """One metric of several runs over student epochs (:func:`app.figures.compare.curve_figure` as PNG).

    Raises
    ------
    ValueError
        When no run measured ``key`` (an empty chart is never drawn).
    """
    styles = [style for style in curve_styles(points, key) if style[2]]
    if not styles:
        raise ValueError(f"no run measured {METRICS.get(key, key).lower()}")
    fig = _figure(7.0, 3.8)
    ax = fig.add_subplot()
    for run, method, xs, ys, color, dash in styles:
        ax.plot(xs, ys, marker="o", markersize=4, linewidth=2, label=f"{method} · {run}", color=color,
                linestyle=MPL_DASHES[dash])
    ax.set_title(title or METRICS.get(key, key))
    ax.set_xlabel("student epoch")
    ax.set_ylabel(METRICS.get(key, key).split(" (")[0].lower())
    ax.grid(True, color=palette.LIGHT_GREY, linewidth=0.6)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8, frameon=False,
              handlelength=4)  # long enough handles to tell the dashes apart
    return _png(fig)


def table_png(header: Sequence[str], rows: Sequence[Sequence], title: str = "", note: str = "") -> bytes:
    """A table of text cells (the comparison table as shown), with an optional title and note under it."""
    if not rows:
        raise ValueError("the table has no rows")
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[j]) for r in cells)) + 2 for j, h in enumerate(header)]
    fig = _figure(max(3.0, 0.075 * sum(widths)), 0.28 * (len(cells) + 1) + (0.35 if title else 0.0))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0 - (0.35 / fig.get_figheight() if title else 0.0)))
    ax.axis("off")
    table = ax.table(cellText=cells, colLabels=[str(h) for h in header], cellLoc="left", colLoc="left",
                     colWidths=[w / sum(widths) for w in widths], bbox=(0.0, 0.0, 1.0, 1.0))
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    for (r, _), cell in table.get_celld().items():
        cell.set_edgecolor(palette.LIGHT_GREY)
        if r == 0:
            cell.set_text_props(weight="bold", color=palette.DARK)
    if title:
        fig.text(0.0, 1.0, title, fontsize=11, va="top")
    if note:
        fig.text(0.0, -0.02, "\n".join(textwrap.wrap(note, 150)), fontsize=7, color=palette.MID_GREY, va="top")
    return _png(fig)


def grid_png(images: Sequence[np.ndarray], captions: Sequence[str], title: str = "", columns: int = 6) -> bytes:
    """Thumbnails (uint8 RGB) in a grid, each with its caption under it (the per-sample view as shown)."""
    return _png(grid_figure(images, captions, title, columns))


def grid_figure(images: Sequence[np.ndarray], captions: Sequence[str], title: str = "", columns: int = 6):
    """The matplotlib figure of :func:`grid_png`."""
    if not len(images):
        raise ValueError("no samples to draw")
    rows = int(np.ceil(len(images) / columns))
    lines = [textwrap.wrap(caption.replace(" · ", "; "), CAPTION_WIDTH) for caption in captions]
    # every row as tall as its picture plus the longest caption, in its own band: captions never reach the next row
    caption_inches = CAPTION_LINE * max((len(wrapped) for wrapped in lines), default=1) + 0.15
    picture, top = 1.9, (0.45 if title else 0.1)
    fig = _figure(2.1 * columns, rows * (picture + caption_inches) + top)
    height = fig.get_figheight()
    for k, (image, wrapped) in enumerate(zip(images, lines)):
        row, col = divmod(k, columns)
        bottom = height - top - (row + 1) * (picture + caption_inches) + caption_inches
        ax = fig.add_axes((col / columns + 0.01, bottom / height, 1 / columns - 0.02, picture / height))
        ax.imshow(np.asarray(image), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.5, -0.04, "\n".join(wrapped), transform=ax.transAxes, ha="center", va="top", fontsize=6.5)
    if title:
        fig.text(0.01, 1 - 0.1 / height, title, fontsize=11, va="top")
    return fig


CAPTION_WIDTH = 30  # characters per caption line under a thumbnail
CAPTION_LINE = 0.13  # inches per caption line at 6.5 points

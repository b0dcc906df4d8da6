"""Names from data as text: a class, file, run or reviewer name, or a label value, is never markup.

Streamlit's text elements (``st.markdown``, ``st.caption``, ``st.error``, …)
render Markdown and some HTML, and Markdown images (``![c](https://host/x)``)
make the browser fetch their URL just by being shown. Every name that comes
from data goes through :func:`md` before it reaches such an element (or through
an element that shows plain text: ``st.text``, a table cell, the review card,
which sets ``textContent``); figures go through :func:`plain` (plotly reads
a few HTML tags in labels).
"""

from __future__ import annotations

from engine.readers.report import markdown_text


def md(text) -> str:
    """``text`` for a Markdown element, shown exactly as typed (the rule ``report.md`` uses too)."""
    return markdown_text(text)


def text_table(frame):
    """A copy of a table for ``st.table`` (whose cells are Markdown) with every text cell and label escaped."""
    out = frame.copy()
    for column in out.columns:
        if out[column].map(lambda v: isinstance(v, str)).any():  # object or pandas' str columns
            out[column] = out[column].map(lambda v: md(v) if isinstance(v, str) else v).astype(object)
    out.index = out.index.map(lambda v: md(v) if isinstance(v, str) else v)
    out.columns = [md(c) if isinstance(c, str) else c for c in out.columns]
    return out


def code_span(text) -> str:
    """``text`` as a Markdown code span (shown as typed); escaped text when it holds a backtick."""
    text = str(text)
    return f"`{text}`" if "`" not in text and "\n" not in text else md(text)


def plain(text) -> str:
    """``text`` for a plotly label (legend, hover, title): its HTML characters as entities."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

"""Presentation mode: the app on a projector (1024x768 or 1280x720).

On with the sidebar toggle or the address ``?present=1`` (kept in the address
while on, so a reload or a second tab presents too). It enlarges the type,
collapses the sidebar at load, shortens titles, lets labels wrap instead of
being cut, and gives figures larger fonts (:func:`style_figure`).

Session state: ``st.session_state["present"]`` (bool), the toggle's value.
"""

from __future__ import annotations

import streamlit as st

PRESENT_KEY = "present"
QUERY_KEY = "present"
#: Fonts of figures in presentation mode (px).
FIGURE_FONT = 16
FIGURE_TITLE_FONT = 20

#: Type larger (Streamlit sizes in rem), less padding, and no label cut with an ellipsis: metric labels,
#: button labels and headings wrap inside their box.
PRESENT_CSS = """<style>
html { font-size: 19px; }
.block-container, [data-testid="stMainBlockContainer"] { padding-top: 3.2rem; padding-left: 1.2rem;
  padding-right: 1.2rem; max-width: 100%; }
h1 { font-size: 1.9rem !important; padding-top: 0.2rem !important; }
h2, h3 { font-size: 1.35rem !important; }
[data-testid="stMetricLabel"], [data-testid="stMetricLabel"] * { white-space: normal !important;
  overflow: visible !important; text-overflow: clip !important; }
[data-testid="stMetricValue"] { font-size: 1.7rem !important; }
[data-testid="stMetricValue"] * { overflow: visible !important; text-overflow: clip !important; }
button p, button div { white-space: normal !important; overflow: visible !important;
  text-overflow: clip !important; }
</style>"""
#: Outside presentation mode, too: a metric label wraps instead of being cut at narrow widths.
BASE_CSS = """<style>
[data-testid="stMetricLabel"], [data-testid="stMetricLabel"] * { white-space: normal !important;
  overflow: visible !important; text-overflow: clip !important; }
</style>"""


def from_query(value) -> bool:
    """``?present=`` as a flag: 1/true/yes/on (any case) turn it on."""
    return str(value or "").strip().lower() in {"1", "true", "yes", "on"}


def init() -> bool:
    """Read ``?present=1`` into the session once; return whether presentation mode is on."""
    if PRESENT_KEY not in st.session_state:
        st.session_state[PRESENT_KEY] = from_query(st.query_params.get(QUERY_KEY))
    return bool(st.session_state[PRESENT_KEY])


def is_on() -> bool:
    return bool(st.session_state.get(PRESENT_KEY, False))


def sync_url() -> None:
    """Keep ``?present=1`` in the address while presentation mode is on, and out of it otherwise."""
    if is_on():
        if st.query_params.get(QUERY_KEY) != "1":
            st.query_params[QUERY_KEY] = "1"
    elif QUERY_KEY in st.query_params:
        del st.query_params[QUERY_KEY]


def sidebar_toggle() -> None:
    st.toggle("Presentation mode", key=PRESENT_KEY,
              help="Large type and short titles for a projector; the address gets ?present=1. Train page keys: "
                   "PageDown or → Step, P Play/Pause, E run to the end of the phase.")


def apply_css() -> None:
    st.html(PRESENT_CSS if is_on() else BASE_CSS)


def title(full: str, short: str) -> str:
    """The page title: ``short`` in presentation mode."""
    return short if is_on() else full


def style_figure(fig, present: bool | None = None):
    """Larger fonts in presentation mode (the figure is changed in place and returned)."""
    if present if present is not None else is_on():
        fig.update_layout(font={"size": FIGURE_FONT}, title_font_size=FIGURE_TITLE_FONT,
                          hoverlabel={"font_size": FIGURE_FONT})
    return fig

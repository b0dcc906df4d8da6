"""Presentation mode: the app on a projector (1024x768 or 1280x720).

On with the sidebar toggle or the address ``?present=1`` (kept in the address
while on, so a reload or a second tab presents too). It enlarges the type,
collapses the sidebar at load, shortens titles, lets labels wrap instead of
being cut, and gives figures larger fonts (:func:`style_figure`).

Session state: ``st.session_state["present"]`` (bool), kept apart from the
toggle's own widget state (``"present-toggle"``): Streamlit drops a widget's
state on a run that does not draw it (a page switch after Create, a Reset), and
the flag must survive every one of those; :func:`sync_url` puts it back into
the address on every run, so a page change that clears the address keeps it too.
"""

from __future__ import annotations

import streamlit as st

PRESENT_KEY = "present"
TOGGLE_KEY = "present-toggle"
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
/* No grey frame on containers after a key press (a clicker's keys); buttons and fields keep theirs. */
[tabindex="-1"]:focus, [tabindex="-1"]:focus-visible, [data-testid="stMain"]:focus,
[data-testid="stMainBlockContainer"]:focus, .stPlotlyChart:focus, .js-plotly-plot:focus { outline: none !important;
  box-shadow: none !important; }
</style>"""
#: Outside presentation mode, too: a metric label wraps instead of being cut at narrow widths.
BASE_CSS = """<style>
[data-testid="stMetricLabel"], [data-testid="stMetricLabel"] * { white-space: normal !important;
  overflow: visible !important; text-overflow: clip !important; }
[data-testid="stWidgetLabel"] p { white-space: normal !important; overflow: visible !important;
  text-overflow: clip !important; }
/* A metric's value fits its column at 1024 px ("mutual", "0.885") instead of being cut. */
@media (max-width: 1180px) { [data-testid="stMetricValue"] { font-size: 1.6rem !important; } }
/* No grey frame on containers after a key press; buttons and fields keep theirs. */
[tabindex="-1"]:focus, [tabindex="-1"]:focus-visible, [data-testid="stMain"]:focus,
[data-testid="stMainBlockContainer"]:focus, .stPlotlyChart:focus, .js-plotly-plot:focus { outline: none !important;
  box-shadow: none !important; }
</style>"""


def from_query(value) -> bool:
    """``?present=`` as a flag: 1/true/yes/on (any case) turn it on."""
    return str(value or "").strip().lower() in {"1", "true", "yes", "on"}


def init() -> bool:
    """Read ``?present=1`` into the session once; return whether presentation mode is on."""
    if PRESENT_KEY not in st.session_state:
        st.session_state[PRESENT_KEY] = from_query(st.query_params.get(QUERY_KEY))
    return bool(st.session_state[PRESENT_KEY])


def query() -> dict[str, str]:
    """The address parameters a page change must keep: ``present=1`` while on (``st.switch_page`` and
    ``st.page_link`` take them)."""
    return {QUERY_KEY: "1"} if is_on() else {}


def is_on() -> bool:
    return bool(st.session_state.get(PRESENT_KEY, False))


def sync_url() -> None:
    """Keep ``?present=1`` in the address while presentation mode is on, and out of it otherwise."""
    if is_on():
        if st.query_params.get(QUERY_KEY) != "1":
            st.query_params[QUERY_KEY] = "1"
    elif QUERY_KEY in st.query_params:
        del st.query_params[QUERY_KEY]


def _toggled() -> None:
    st.session_state[PRESENT_KEY] = bool(st.session_state.get(TOGGLE_KEY, False))


def sidebar_toggle() -> None:
    st.session_state[TOGGLE_KEY] = is_on()  # the widget shows the session's flag, whatever it last drew
    st.toggle("Presentation mode", key=TOGGLE_KEY, on_change=_toggled,
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

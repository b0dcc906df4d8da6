"""Keyboard shortcuts shared by the pages: a clicker or a keyboard drives them.

Streamlit gives a button one shortcut (``st.button(..., shortcut="P")``) and
shows it on the button. A second key for the same action (a presentation
clicker sends PageDown *or* Right arrow) is a second button with the same
callback in a hidden container (:func:`hidden_buttons`): its shortcut works,
it takes no room.

Streamlit ignores shortcuts while an ``<input>`` has the focus; a toggle or a
checkbox keeps it after a click. :func:`release_focus` hands the keys back to
the page after such a click, after Enter in a text field and on Escape.

A press is bound to what is on screen: the callback gets the step shown when
the button was drawn (:func:`bound_to_step`), so a second press that arrives
before the screen caught up with the first one does nothing instead of
acting twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import streamlit as st

RELEASE_FOCUS_SCRIPT = """<script>
(() => {
  if (window.__amlkdKeysShared) return;
  window.__amlkdKeysShared = true;
  const isInput = (t) => t && t.tagName === "INPUT";
  const release = () => setTimeout(() => {
    const t = document.activeElement;
    if (isInput(t) && ["checkbox", "radio"].includes(t.type)) t.blur();
  }, 50);
  document.addEventListener("click", release, true);
  document.addEventListener("change", release, true);
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (!isInput(t)) return;
    if (e.key === "Escape" || (e.key === "Enter" && t.type === "text" && !t.getAttribute("role"))) {
      setTimeout(() => t.blur(), 0);
    }
  }, true);
})();
</script>"""


@dataclass(frozen=True)
class HiddenButton:
    """A shortcut without a visible button: ``label`` (for tests and screen readers), ``shortcut``, callback."""

    label: str
    shortcut: str
    key: str
    on_click: Callable
    args: tuple = ()
    disabled: bool = False


def hidden_buttons(container_key: str, buttons: Sequence[HiddenButton]) -> None:
    """Buttons that only their shortcut reaches, in a container hidden by CSS."""
    with st.container(key=container_key):
        st.html(f"<style>.st-key-{container_key} {{display: none;}}</style>", unsafe_allow_javascript=False)
        for b in buttons:
            st.button(b.label, shortcut=b.shortcut, key=b.key, on_click=b.on_click, args=b.args,
                      disabled=b.disabled)


def release_focus() -> None:
    """Give the keys back to the page after a toggle, Enter in a text field, or Escape (once per page)."""
    st.html(RELEASE_FOCUS_SCRIPT, unsafe_allow_javascript=True)


def bound_to_step(shown_step: int, current_step: int | None) -> bool:
    """Whether a press made while ``shown_step`` was on screen still applies now that the run is at
    ``current_step`` (``None``: unknown, e.g. the status file is being rewritten)."""
    return current_step is not None and int(current_step) == int(shown_step)

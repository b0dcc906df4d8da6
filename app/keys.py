"""Keyboard shortcuts shared by the pages: a clicker or a keyboard drives them.

Streamlit gives a button one shortcut (``st.button(..., shortcut="P")``) and
shows it on the button. A second key for the same action (a presentation
clicker sends PageDown *or* Right arrow) is a second button with the same
callback in a hidden container (:func:`hidden_buttons`): its shortcut works,
it takes no room.

Streamlit ignores shortcuts while an ``<input>`` has the focus; a toggle or a
checkbox keeps it after a click. :func:`release_focus` hands the keys back to
the page after such a click, after Enter in a text field and on Escape.

A press is bound to what is on screen, twice over:

- in the browser (:func:`guard_repeats`): a press of a guarded key or button
  made while the screen still shows what it showed at the previous press
  (the ``screen`` element's text, e.g. the Train page's "7 / 26"), within
  three times ``GUARD_MS`` of it, is dropped, so a clicker's double press (or
  a double click) steps once; a press after the screen changed always goes
  through, however soon (without a ``screen``: within ``GUARD_MS``, or three
  times that while the app still answers);
- on the server: the callback gets the step shown when the button was drawn
  (:func:`bound_to_step`) and does nothing once the run has moved past it or
  is busy with it.
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
  // The main area takes the focus after a key press and Chrome frames it in grey (no CSS outline to
  // remove): hand the focus back to the page; the keys listen on the document and still arrive.
  document.addEventListener("focusin", (e) => {
    const t = e.target;
    if (t && t.getAttribute && t.getAttribute("data-testid") === "stMain") setTimeout(() => t.blur(), 0);
  }, true);
  document.addEventListener("keydown", (e) => {
    const t = e.target;
    if (!isInput(t)) return;
    if (e.key === "Escape" || (e.key === "Enter" && t.type === "text" && !t.getAttribute("role"))) {
      setTimeout(() => t.blur(), 0);
    }
  }, true);
})();
</script>"""


GUARD_MS = 700  # a clicker's bounce or a double click; a deliberate second press comes later
GUARD_SCRIPT = """<script>
(() => {
  const guard = window.__amlkdGuard = window.__amlkdGuard || {keys: new Set(), selectors: new Set(), last: 0};
  for (const k of %(keys)s) guard.keys.add(k);
  for (const s of %(selectors)s) guard.selectors.add(s);
  guard.screen = %(screen)s;
  if (guard.installed) return;
  guard.installed = true;
  const app = () => document.querySelector('[data-testid="stApp"]');
  const busy = () => { const a = app(); return a && a.getAttribute('data-test-script-state') !== 'notRunning'; };
  const shown = () => { const el = guard.screen && document.querySelector(guard.screen); return el ? el.innerText : null; };
  const drop = (e) => {
    const now = performance.now();
    const since = now - guard.last;  // the app marks itself busy only once the server answers: debounce first
    const screen = shown();
    const same = screen === null ? (since < %(ms)d || (since < 3 * %(ms)d && busy())) :
      (screen === guard.lastShown && since < 3 * %(ms)d);  // nothing new on screen since the last press
    if (same) {
      e.preventDefault(); e.stopImmediatePropagation(); return true;
    }
    guard.last = now;
    guard.lastShown = screen;
    return false;
  };
  window.addEventListener('keydown', (e) => {
    const t = e.target;
    if (e.repeat && guard.keys.has(e.key)) { e.preventDefault(); e.stopImmediatePropagation(); return; }
    if (t && ['INPUT', 'TEXTAREA'].includes(t.tagName)) return;
    if (guard.keys.has(e.key)) drop(e);
  }, true);
  window.addEventListener('click', (e) => {
    const hit = Array.from(guard.selectors).some(s => e.target.closest && e.target.closest(s));
    if (hit) drop(e);
  }, true);
})();
</script>"""


def guard_repeats(keys: Sequence[str], selectors: Sequence[str] = (), ms: int = GUARD_MS,
                  screen: str | None = None) -> None:
    """Drop a second press of ``keys`` (``KeyboardEvent.key`` values, e.g. ``"ArrowRight"``) or a second
    click inside ``selectors`` made before the screen changed: while the element ``screen`` (a CSS
    selector) shows the same text as at the first press, within ``3 * ms`` of it. Without ``screen``:
    within ``ms`` of the first (``3 * ms`` while the app is still answering it)."""
    import json

    st.html(GUARD_SCRIPT % {"keys": json.dumps(list(keys)), "selectors": json.dumps(list(selectors)), "ms": ms,
                            "screen": json.dumps(screen)},
            unsafe_allow_javascript=True)


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

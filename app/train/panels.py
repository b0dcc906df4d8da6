"""Train page: the live and idle panels (two fragments, see the page's main) and the skipped-files list."""

from __future__ import annotations

import streamlit as st

from app.train.controls import _in_fragment_rerun, controls, error_box, progress, settle
from app.train.results import results_panel
from app.worker import get_worker, is_live, trained_elsewhere
from engine.rundir import RunStore

SKIPPED_SHOWN = 200  # lines of the skipped-files list shown on the page


def status_panel(store: RunStore, status: dict, live: bool) -> None:
    """Commands, errors, the next step and the progress bar.

    ``live`` is whether the app's last full run saw the run training; when that changed since, the whole
    app reruns (its layout and refresh rate follow the state). Only called from inside a fragment.
    """
    path = store.path
    busy = get_worker(path).busy
    elsewhere = trained_elsewhere(status, path)
    if live != (busy or elsewhere) and _in_fragment_rerun():
        st.rerun()  # the run started or stopped since the app last ran: rerun it whole
    error_box(status)
    if elsewhere:
        st.warning("Another process (the CLI?) is training this run: the page follows it live; the buttons "
                   "wait until it stops.")
    controls(store, status, busy, elsewhere)
    if status.get("phase") != "done":
        st.markdown(f"**Next step:** {status.get('next') or '—'}")
    progress(store, status)


def _panel(path: str, live: bool) -> None:
    settle(path)  # after a press: wait here for a short step, so this very redraw shows it
    store = RunStore(path)
    status = store.status()  # read once per redraw, for both halves
    status_panel(store, status, live)
    results_panel(store, status)


def live_panel(path: str) -> None:
    """While the run trains: status and results, redrawn every second."""
    _panel(path, live=True)


def idle_panel(path: str, drawn_step: int | None = None) -> None:
    """While the run is idle: the same panel, redrawn only when the app reruns or a button is pressed.

    ``drawn_step`` is the step the whole app last drew (the sidebar says it): once a Step drawn here in
    place has moved the run past it, the whole app reruns after this panel is on screen, so that the
    sidebar follows without delaying the panel.
    """
    _panel(path, live=False)
    if drawn_step is not None and _in_fragment_rerun() and RunStore(path).status().get("step") != drawn_step:
        st.rerun()


def idle_watch(path: str) -> None:
    """While the run is idle: every few seconds, rerun the app if the run started training (the CLI)."""
    if is_live(path):
        st.rerun()


def skipped_files(skipped: list[str]) -> None:
    """The input files the dataset left out when the run was made (corrupt, not images)."""
    if not skipped:
        return
    with st.expander(f"⚠️ {len(skipped)} input file(s) were skipped when this run was made", expanded=False):
        st.caption("They are not part of the run. Fix or remove them and create the run again to include them.")
        shown = skipped[:SKIPPED_SHOWN]
        more = f"\n... and {len(skipped) - SKIPPED_SHOWN} more (see skipped.txt in the run folder)" \
            if len(skipped) > SKIPPED_SHOWN else ""
        st.code("\n".join(shown) + more, language=None)



"""The app's session: where runs live, which one is open, and who reviews.

A page never holds state the run directory does not also hold; the session
state is the path of the open run (``st.session_state["run_dir"]``) and the
reviewer's name (``st.session_state["reviewer"]``). Both are also kept in the
address (``?run=NAME``, a folder under the runs root, and ``?reviewer=NAME``)
on every page, so a reload, a reopened tab, another page or another run
keeps them (:func:`sync_run_with_url`, which the entry script calls before
every page).
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from engine.rundir import RunStore

RUN_DIR_KEY = "run_dir"
RUN_QUERY_KEY = "run"
#: Session key and address parameter of the reviewer's name (not a widget key: widget
#: state is dropped on pages that do not draw the widget).
REVIEWER_KEY = "reviewer"
REVIEWER_QUERY_KEY = "reviewer"
#: Session flag: the most recent run was opened for a session that came without ``?run=`` (once).
AUTO_OPENED_KEY = "run-auto-opened"


def runs_root() -> Path:
    """Folder holding the app's runs: ``$AMLKD_RUNS_DIR`` or ``./runs``."""
    root = Path(os.environ.get("AMLKD_RUNS_DIR", "runs"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def current_store() -> RunStore | None:
    """The open run's store, or ``None`` when no run is open."""
    path = st.session_state.get(RUN_DIR_KEY)
    if not path:
        return None
    store = RunStore(path)
    return store if store.exists() else None


def open_run(path: str | Path) -> None:
    st.session_state[RUN_DIR_KEY] = str(path)


def require_store() -> RunStore:
    """The open run's store; otherwise a hint and ``st.stop()``."""
    store = current_store()
    if store is None:
        st.info("No run is open. Create or open one on the Setup page.")
        st.page_link("views/setup.py", label="Go to Setup", icon=":material/tune:")
        st.stop()
    return store


def current_reviewer() -> str:
    """The reviewer's name in this session ('' when none): the signed-in user when the app has accounts
    (:mod:`app.access`), else the name typed in the sidebar or given in the address."""
    from app.access import shared, signed_in

    if shared():
        user = signed_in()
        return user[0] if user else ""
    return str(st.session_state.get(REVIEWER_KEY, "") or "")


def set_reviewer(name: str) -> None:
    """Remember the reviewer in the session and the address (empty: forget)."""
    name = str(name or "").strip()
    st.session_state[REVIEWER_KEY] = name
    if name:
        if st.query_params.get(REVIEWER_QUERY_KEY) != name:
            st.query_params[REVIEWER_QUERY_KEY] = name
    elif REVIEWER_QUERY_KEY in st.query_params:
        del st.query_params[REVIEWER_QUERY_KEY]


def sync_reviewer_with_url() -> str:
    """Take the reviewer from ``?reviewer=NAME`` in a new session; keep the
    address naming the session's reviewer. Returns the name. With accounts
    the address names nobody: the reviewer is the signed-in user."""
    from app.access import shared

    if shared():
        if REVIEWER_QUERY_KEY in st.query_params:
            del st.query_params[REVIEWER_QUERY_KEY]
        return current_reviewer()
    if REVIEWER_KEY not in st.session_state:
        st.session_state[REVIEWER_KEY] = str(st.query_params.get(REVIEWER_QUERY_KEY, "") or "").strip()
    name = current_reviewer()
    if name and st.query_params.get(REVIEWER_QUERY_KEY) != name:
        st.query_params[REVIEWER_QUERY_KEY] = name
    return name


def sync_run_with_url() -> None:
    """Open the run named by ``?run=NAME`` in a new session; keep the address
    naming the open run and the reviewer (the entry script calls this before
    every page)."""
    sync_reviewer_with_url()
    name = st.query_params.get(RUN_QUERY_KEY)
    if name and not st.session_state.get(RUN_DIR_KEY) and Path(name).name == name:
        if RunStore(runs_root() / name).exists():
            open_run(runs_root() / name)
    if AUTO_OPENED_KEY not in st.session_state:  # a new session: decided once (closing or deleting a run holds)
        st.session_state[AUTO_OPENED_KEY] = True
        recent = None if name or st.session_state.get(RUN_DIR_KEY) else most_recent_run(runs_root())
        if recent is not None:
            open_run(recent)
    store = current_store()
    if store is not None and store.path.parent.resolve() == runs_root().resolve():
        if st.query_params.get(RUN_QUERY_KEY) != store.path.name:
            st.query_params[RUN_QUERY_KEY] = store.path.name
    elif not st.session_state.get(RUN_DIR_KEY) and RUN_QUERY_KEY in st.query_params:
        del st.query_params[RUN_QUERY_KEY]


def most_recent_run(root: Path) -> Path | None:
    """The run of ``root`` whose files changed last (a page opened without ``?run=`` opens it), or ``None``."""
    from engine.rundir import list_runs

    runs = list_runs(root)  # newest first
    return runs[0] if runs else None


def require_steps(store: RunStore, hint: str = "press Step on the Train page, then come back") -> list[int]:
    """The run's snapshot steps; otherwise a note saying what to do and ``st.stop()``."""
    steps = store.steps()
    if not steps:
        st.info(f"This run has no steps yet: {hint}.")
        st.stop()
    return steps

"""Shared helpers of the pages: where runs live and which one is open.

A page never holds state the run directory does not also hold; the only
session state is the path of the open run (``st.session_state["run_dir"]``).
The open run's name is also kept in the address (``?run=NAME``, a folder
under the runs root), so a reload or a reopened tab shows the same run.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from engine.store import RunStore

RUN_DIR_KEY = "run_dir"
RUN_QUERY_KEY = "run"


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


def sync_run_with_url() -> None:
    """Open the run named by ``?run=NAME`` in a new session; keep the address
    naming the open run (the entry script calls this before every page)."""
    name = st.query_params.get(RUN_QUERY_KEY)
    if name and not st.session_state.get(RUN_DIR_KEY) and Path(name).name == name:
        if RunStore(runs_root() / name).exists():
            open_run(runs_root() / name)
    store = current_store()
    if store is not None and store.path.parent.resolve() == runs_root().resolve():
        if st.query_params.get(RUN_QUERY_KEY) != store.path.name:
            st.query_params[RUN_QUERY_KEY] = store.path.name
    elif not st.session_state.get(RUN_DIR_KEY) and RUN_QUERY_KEY in st.query_params:
        del st.query_params[RUN_QUERY_KEY]


def require_steps(store: RunStore, hint: str = "press Step on the Train page, then come back") -> list[int]:
    """The run's snapshot steps; otherwise a note saying what to do and ``st.stop()``."""
    steps = store.steps()
    if not steps:
        st.info(f"This run has no steps yet: {hint}.")
        st.stop()
    return steps

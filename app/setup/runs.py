"""Setup, the runs folder: a table of every run; open, rename and delete."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app.text import md, text_table

from app.access import can, require
from app.common import RUN_DIR_KEY, current_store, open_run, runs_root
from app.settings import delete_run, rename_run, run_rows
from app.worker import forget_worker, is_live
from engine.method import METHOD_NAMES
from engine.errors import UserError


def run_table(rows: list[dict]) -> None:
    """Every run in a table that wraps rather than scrolls sideways (every column readable at 1280 px)."""
    def number(value) -> str:
        return "–" if value is None else f"{value:.3f}"

    def progress(r) -> str:
        if r["state"] in ("done", "unreadable") or r["step"] is None:
            return r["state"]
        return f"{r['state']} · {r['phase']}\u00a0{r['step']}/{r['total_steps']}"

    table = pd.DataFrame([{
        "run": r["name"], "dataset": r["dataset"], "method": METHOD_NAMES.get(r["method"], r["method"]),
        "noise": r["noise"], "seed": "" if r["seed"] is None else r["seed"], "progress": progress(r),
        "student acc": number(r["student_test_accuracy"]), "refined prec": number(r["refined_label_precision"]),
    } for r in rows])
    with st.container(height=480 if len(table) > 8 else "content", border=False):  # many runs: scroll down, not across
        st.table(text_table(table.set_index("run")))  # st.table renders Markdown: names escaped


def manage_runs() -> None:
    st.subheader("Runs")
    root = runs_root()
    rows = run_rows(root)
    st.caption(f"Runs in {md(root)} (made here or with `python -m engine run --out RUNS/NAME`).")
    if not rows:
        st.info("No runs yet. The default run is one click away: **Create “Digits, 40% symmetric”** above.")
        return
    run_table(rows)
    store = current_store()
    names = [r["name"] for r in rows]
    index = names.index(store.path.name) if store is not None and store.path.name in names else 0
    chosen = st.selectbox("Run", names, index=index, key="setup-chosen-run")
    path = Path(next(r["path"] for r in rows if r["name"] == chosen))
    busy = is_live(path)
    if not can("manage"):  # with accounts, a viewer or reviewer opens runs only
        if st.button("Open", key="setup-open", type="primary"):
            open_run(path)
            st.switch_page("views/train.py")
        return
    open_col, rename_col, delete_col = st.columns(3)
    with open_col:
        if st.button("Open", key="setup-open", type="primary"):
            open_run(path)
            st.switch_page("views/train.py")
    with rename_col:
        new_name = st.text_input("New name", chosen, key=f"setup-rename-name-{chosen}")
        if st.button("Rename", key="setup-rename", disabled=busy or new_name == chosen):
            _rename(path, new_name)
    with delete_col:
        sure = st.checkbox("Yes, delete it with all its steps", key=f"setup-delete-sure-{chosen}")
        if st.button("Delete", key="setup-delete", disabled=busy or not sure):
            _delete(path)
    if busy:
        st.caption("This run is training: pause it (Train page) before renaming or deleting it.")


def _is_open(path: Path) -> bool:
    open_path = st.session_state.get(RUN_DIR_KEY)
    return bool(open_path) and Path(open_path).resolve() == path.resolve()


def _rename(path: Path, new_name: str) -> None:
    if not require("manage"):
        return
    try:
        forget_worker(path)
        target = rename_run(path, new_name)
    except UserError as exc:
        st.error(f"Not renamed: {md(exc)}")
        return
    if _is_open(path):
        open_run(target)
    st.rerun()


def _delete(path: Path) -> None:
    if not require("manage"):
        return
    try:
        forget_worker(path)
        was_open = _is_open(path)
        delete_run(path)
    except UserError as exc:
        st.error(f"Not deleted: {md(exc)}")
        return
    if was_open:
        st.session_state.pop(RUN_DIR_KEY, None)
    st.rerun()



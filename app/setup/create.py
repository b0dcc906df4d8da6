"""Setup: create a run (from a preset or the custom form), open it, go to Train."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app.text import md

from app.common import open_run, runs_root
from app.settings import delete_run, load_presets, suggest_run_name, validate_run_name
from app.worker import get_worker, torch_threads
from engine.steps import load_teacher
from engine.method import RunConfig
from engine.errors import UserError
from engine.steps import Run


def create_run(config: RunConfig, name: str, processes: int = 1) -> bool:
    """Create the run ``name`` under the runs folder, open it and go to Train; ``processes`` train it
    together (more than 1: each step runs in torchrun's processes, app/worker.py)."""
    root = runs_root()
    try:
        path = validate_run_name(name, root)
        fetching = ", downloading it" if "download=1" in config.dataset else ""
        with st.spinner(f"Creating run {name} (loading the data{fetching}, building the networks)..."):
            run = Run.create(path, config, threads=torch_threads(), processes=processes)
    except UserError as exc:
        st.error(f"The run was not created: {md(exc)}")
        return False
    if not _teacher_checkpoint_fits(run, path):
        return False
    get_worker(path).adopt(run)
    open_run(path)
    st.switch_page("views/train.py")
    return True


def _teacher_checkpoint_fits(run: Run, path: Path) -> bool:
    """Load the config's teacher checkpoint into the new run's teacher; if it
    does not fit, remove the run just made and say why."""
    checkpoint = run.config.teacher_checkpoint
    if not checkpoint or run.config.method == "ce":
        return True
    try:
        load_teacher(run.teacher, checkpoint)
    except UserError as exc:
        delete_run(path)
        st.error(f"The run was not created: {md(exc)}")
        return False
    return True


def quick_start() -> None:
    st.subheader("Quick start")
    presets, default_id = load_presets()
    presets = sorted(presets, key=lambda p: p.id != default_id)
    for column, preset in zip(st.columns(len(presets)), presets):
        with column, st.container(border=True):
            default = preset.id == default_id
            st.markdown(f"**{preset.name}**" + (" · default" if default else ""))
            st.caption(preset.description)
            if st.button(f"Create “{preset.name}”", key=f"preset-create-{preset.id}",
                         type="primary" if default else "secondary"):
                create_run(preset.config, suggest_run_name(preset.config, runs_root()))



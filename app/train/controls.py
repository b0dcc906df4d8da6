"""Train page: its buttons and keys (each press bound to the step on screen), the error box, the progress."""

from __future__ import annotations

import time

import streamlit as st

from app.text import md

from app.access import can, require
from app.common import open_run, runs_root
from app.keys import HiddenButton, bound_to_step, hidden_buttons
from app.settings import default_preset, suggest_run_name
from app.worker import get_worker, torch_threads
from engine.errors import UserError
from engine.steps import Run
from engine.rundir import RunStore, list_runs

QUICK_WAIT = 8.0  # a Step waits this long in place (its progress shown) for its step to end; then the page goes live
PENDING_KEY = "_train_pending"  # the command this session just started (its redraw waits for it)

COMMAND_TEXT = {"step": "Training one step", "play": "Playing to the end", "phase": "Running to the end of the phase",
                "reset": "Resetting the run", "reset-keep": "Resetting the run (keeping the decisions)"}


def no_run_open() -> None:
    st.title("Train")
    st.info("No run is open.")
    preset = default_preset()
    if can("manage") and st.button(f"Create the default run ({preset.name})", key="train-create-default",
                                   type="primary"):
        root = runs_root()
        path = root / suggest_run_name(preset.config, root)
        try:
            with st.spinner("Creating the default run (loading the data, building the networks)..."):
                run = Run.create(path, preset.config, threads=torch_threads())
        except UserError as exc:
            st.error(f"The default run was not created: {md(exc)}")
            st.stop()
        get_worker(path).adopt(run)
        open_run(path)
        st.rerun()
    runs = list_runs(runs_root())
    if runs and st.button(f"Open the latest run ({runs[0].name})", key="train-open-latest"):
        open_run(runs[0])
        st.rerun()
    st.page_link("views/setup.py", label="Other settings, presets and runs: Setup")
    st.stop()


PAUSE_NOTE_KEY = "train-pause-note"


def press(path: str, command: str, shown_step: int) -> None:
    """A button's or a key's callback: start ``command`` unless the press is stale.

    ``shown_step`` is the step on screen when the button was drawn: a press made before the screen
    caught up with an earlier one (the run moved on, or is still busy with it) is dropped.
    """
    if not require("manage" if command.startswith("reset") else "train"):
        return
    worker = get_worker(path)
    if command == "pause":
        if worker.submit("pause"):  # said beside the buttons (a toast would cover the run's description)
            st.session_state[PAUSE_NOTE_KEY] = "Pausing after the step in progress."
        return
    if worker.busy or not bound_to_step(shown_step, RunStore(path).status().get("step")):
        return  # this press's step is already on its way
    if worker.submit(command):
        st.session_state[PENDING_KEY] = command


def settle(path: str) -> None:
    """After a press: let a Step end right here, its progress shown in place, and draw it in this very redraw;
    after ``QUICK_WAIT`` (or for Play and the phase) rerun the whole app so that the live panel takes over."""
    command = st.session_state.pop(PENDING_KEY, None)
    if command is None:
        return
    worker = get_worker(path)
    if command == "step":
        bar = st.empty()
        deadline = time.monotonic() + QUICK_WAIT
        while not worker.wait(0.05):  # returns the moment the step ends
            if time.monotonic() > deadline:
                break
            done, total = worker.progress
            bar.progress(min(done / total, 1.0) if total else 0.0,  # an st call: a newer press can stop this run
                         text=f"{COMMAND_TEXT['step']}: {done}/{total} samples" if total else COMMAND_TEXT["step"])
        bar.empty()
        if not worker.busy:
            return
    if worker.busy and _in_fragment_rerun():
        st.rerun()


def controls(store: RunStore, status: dict, busy: bool, elsewhere: bool) -> None:
    done = status.get("state") == "done" or status.get("phase") == "done"
    blocked = busy or elsewhere or not can("train")  # with accounts: admins only
    path, shown = str(store.path), int(status.get("step", 0))
    row = st.container(horizontal=True, key="train-controls")
    row.button("Step", key="train-step", type="primary", disabled=blocked or done, shortcut="Right",
               on_click=press, args=(path, "step", shown),
               help="Do the next step (shown below). Keys: → or PageDown (a presentation clicker).")
    row.button("Play", key="train-play", disabled=blocked or done, shortcut=None if busy else "P",
               on_click=press, args=(path, "play", shown),
               help="Step on until the run is done or you press Pause. Key: P.")
    row.button("Pause", key="train-pause", disabled=not busy, shortcut="P" if busy else None,
               on_click=press, args=(path, "pause", shown), help="Stop after the step in progress. Key: P.")
    row.button("Run to end of phase", key="train-phase", disabled=blocked or done, shortcut="E",
               on_click=press, args=(path, "phase", shown),
               help=f"Step on until the {status.get('phase', 'current')} phase ends. Key: E.")
    with row.popover("Reset", disabled=blocked):
        st.markdown("Recreate the run from its own settings: **every step is lost**.")
        if store.reviews_path.exists():
            st.markdown("Its review decisions: keep them (they clamp the new run's labels), or start clean "
                        "(they are set aside as `reviews-old-N.sqlite` in the run folder).")
            st.button("Reset, keep the decisions", key="train-reset-keep", on_click=press,
                      args=(path, "reset-keep", shown))
            st.button("Reset, start clean", key="train-reset", type="primary", on_click=press,
                      args=(path, "reset", shown))
        else:
            st.button("Reset the run", key="train-reset", type="primary", on_click=press, args=(path, "reset", shown))
    note = st.session_state.pop(PAUSE_NOTE_KEY, None)
    if note and busy:
        row.caption(note)
    hidden_buttons("train-keys", [HiddenButton("Step (PageDown)", "PageDown", "train-step-pagedown", press,
                                               (path, "step", shown), disabled=blocked or done)])


def error_box(status: dict) -> None:
    message = status.get("error")
    if status.get("state") != "error" or not message:
        return
    st.error(f"**{md(message[:1].upper() + message[1:])}**  \n"
             f"The run is kept at step {status.get('step', 0)}, its last good step, and nothing after it was "
             "saved. Press **Step** to try again; if it fails again, change the settings on the Setup page "
             "(or **Reset** the run to start over from its settings).", icon="⚠️")


def progress(store: RunStore, status: dict) -> None:
    worker = get_worker(store.path)
    if not worker.busy:
        return
    done, total = worker.progress
    started = worker.step_started
    elapsed = f", {time.time() - started:.0f} s" if started else ""
    doing = f"{done}/{total} samples" if total else "selecting, propagating or evaluating"
    text = (f"{COMMAND_TEXT.get(worker.command, 'Working')}: step {status.get('step', 0) + 1} "
            f"({status.get('phase', '?')}), {doing}{elapsed}")
    st.progress(min(done / total, 1.0) if total else 0.0, text=text)


def _in_fragment_rerun() -> bool:
    """Whether this script run only reruns a fragment (not the whole app)."""
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
        return bool(ctx and ctx.fragment_ids_this_run)
    except Exception:  # noqa: BLE001 - internals moved: fall back to a plain refresh
        return False

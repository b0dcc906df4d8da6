"""Train: drive the open run step by step and watch its metrics move.

The buttons send commands to the run's background worker (``app.worker``);
everything shown is read from the run directory (``status.json`` and
``metrics.jsonl``, both small), so the page answers at once while a step
trains, and it follows a run that the CLI trains too.
"""

from __future__ import annotations

import time

import streamlit as st

from app.common import RUN_DIR_KEY, current_store, open_run, runs_root
from app.figures.train import CHARTS, phase_timeline_figure
from app.settings import config_summary, default_preset, phase_plan, suggest_run_name
from app.worker import get_worker, is_live, is_training, trained_elsewhere
from engine.errors import UserError
from engine.run import Run
from engine.store import RunStore, list_runs

FAST_SECONDS = 1.0  # refresh of status and charts while a step trains
SLOW_SECONDS = 5.0  # while idle, look this often for a run the CLI starts
SKIPPED_SHOWN = 200  # lines of the skipped-files list shown on the page
COMMAND_TEXT = {"step": "Training one step", "play": "Playing to the end", "phase": "Running to the end of the phase",
                "reset": "Resetting the run"}
CHART_HELP = {
    "labels": "Fraction of training labels that are right: the given (noisy) ones, dashed, and the refined ones.",
    "detection": "Precision: of the samples relabelled away from their given label, the fraction whose given "
                 "label was wrong. Recall: of the wrong given labels, the fraction relabelled.",
    "accuracy": "Accuracy on the clean test set.",
    "relabels": "Refined labels that fixed a wrong given label, and refined labels that broke a right one.",
    "weights": "AUROC of the ambiguity weight (AWE) of each given label as a sign that it is right (0.5: no "
               "better than chance), and the fraction of small-loss 'easy' samples whose given label is right.",
    "losses": "Mean training loss of each epoch: the teacher's CE, then the student's terms.",
}


def no_run_open() -> None:
    st.title("Train")
    st.info("No run is open.")
    preset = default_preset()
    if st.button(f"Create the default run ({preset.name})", key="train-create-default", type="primary"):
        root = runs_root()
        path = root / suggest_run_name(preset.config, root)
        try:
            with st.spinner("Creating the default run (loading the data, building the networks)..."):
                run = Run.create(path, preset.config)
        except UserError as exc:
            st.error(f"The default run was not created: {exc}")
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


def send(store: RunStore, command: str) -> None:
    """Hand a command to the worker, then rerun the app so the refresh rate follows."""
    if not get_worker(store.path).submit(command):
        st.toast("A command is still running: pause it or wait for its step to end.")
        return
    st.rerun()


def controls(store: RunStore, status: dict, busy: bool, elsewhere: bool) -> None:
    done = status.get("state") == "done" or status.get("phase") == "done"
    blocked = busy or elsewhere
    step, play, pause, phase, reset = st.columns(5)
    if step.button("Step", key="train-step", type="primary", disabled=blocked or done, width="stretch",
                   help="Do the next step (shown below)."):
        send(store, "step")
    if play.button("Play", key="train-play", disabled=blocked or done, width="stretch",
                   help="Step on until the run is done or you press Pause."):
        send(store, "play")
    if pause.button("Pause", key="train-pause", disabled=not busy, width="stretch",
                    help="Stop after the step in progress."):
        get_worker(store.path).submit("pause")
        st.toast("Pausing after the step in progress.")
    if phase.button("Run to end of phase", key="train-phase", disabled=blocked or done, width="stretch",
                    help=f"Step on until the {status.get('phase', 'current')} phase ends."):
        send(store, "phase")
    with reset.popover("Reset", disabled=blocked, width="stretch"):
        st.markdown("Recreate the run from its own settings: **every step is lost**.")
        if store.reviews_path.exists():
            st.markdown("Its review decisions: keep them (they clamp the new run's labels), or start clean "
                        "(they are set aside as `reviews-old-N.sqlite` in the run folder).")
            if st.button("Reset, keep the decisions", key="train-reset-keep"):
                send(store, "reset-keep")
            if st.button("Reset, start clean", key="train-reset", type="primary"):
                send(store, "reset")
        elif st.button("Reset the run", key="train-reset", type="primary"):
            send(store, "reset")


def error_box(status: dict) -> None:
    message = status.get("error")
    if status.get("state") != "error" or not message:
        return
    st.error(f"**{message[:1].upper() + message[1:]}**  \n"
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


def headline(metrics: list[dict], status: dict) -> None:
    last = metrics[-1] if metrics else {}
    cols = st.columns(5)
    cols[0].metric("Step", f"{status.get('step', 0)} / {status.get('total_steps', '?')}")
    cols[1].metric("Phase", status.get("phase", "?"))
    for col, (key, label) in zip(cols[2:], (("refined_label_precision", "Refined-label precision"),
                                            ("student_test_accuracy", "Student test accuracy"),
                                            ("teacher_test_accuracy", "Teacher test accuracy"))):
        value = last.get(key)
        col.metric(label, "–" if value is None else f"{value:.3f}")


def charts(metrics: list[dict]) -> None:
    for row in (CHARTS[:3], CHARTS[3:]):
        for col, (key, build) in zip(st.columns(3), row):
            with col:
                st.plotly_chart(build(metrics), key=f"train-chart-{key}", config={"displaylogo": False})
                st.caption(CHART_HELP[key])


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
    st.markdown(f"**Next step:** {status.get('next') or '—'}")
    progress(store, status)


def _panel(path: str, live: bool) -> None:
    store = RunStore(path)
    status = store.status()  # read once per redraw, for both halves
    status_panel(store, status, live)
    results_panel(store, status)


def live_panel(path: str) -> None:
    """While the run trains: status and results, redrawn every second."""
    _panel(path, live=True)


def idle_panel(path: str) -> None:
    """While the run is idle: the same panel, redrawn only when the app reruns or a button is pressed."""
    _panel(path, live=False)


def idle_watch(path: str) -> None:
    """While the run is idle: every few seconds, rerun the app if the run started training (the CLI)."""
    if is_live(path):
        st.rerun()


def results_panel(store: RunStore, status: dict) -> None:
    """The phase timeline, the latest numbers and the charts over steps."""
    try:
        config = store.config()
    except UserError:  # a reset is rewriting the directory this very moment
        st.info("The run is being recreated from its settings...")
        return
    metrics = store.metrics()
    timeline = phase_plan(config, metrics, status.get("phase"))
    st.plotly_chart(phase_timeline_figure(timeline, status.get("phase")), key="train-timeline",
                    config={"displayModeBar": False})
    headline(metrics, status)
    charts(metrics)


def _in_fragment_rerun() -> bool:
    """Whether this script run only reruns a fragment (not the whole app)."""
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx()
        return bool(ctx and ctx.fragment_ids_this_run)
    except Exception:  # noqa: BLE001 - internals moved: fall back to a plain refresh
        return False


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


def main() -> None:
    store = current_store()
    pending = st.session_state.get(RUN_DIR_KEY)
    if store is None and pending and is_training(pending):  # a reset is rewriting the run right now
        with st.spinner("Recreating the run from its settings..."):
            get_worker(pending).wait(5.0)
        st.rerun()
    if store is None:
        no_run_open()
    try:
        config = store.config()
    except UserError as exc:
        st.error(f"This run cannot be shown: {exc}")
        st.stop()
    st.title(f"Train · {store.path.name}")
    st.caption(config_summary(config))
    with st.expander("All settings of this run", expanded=False):
        st.caption(f"As saved in `{store.path / 'config.json'}`.")
        st.json(config.to_json(), expanded=2)
    skipped_files(store.skipped())
    live = is_live(store.path)
    # The live and the idle panel are the same elements in the same places, drawn by two fragments (a
    # fragment's id comes from its function): a refresh tick that the browser still sends for the live
    # fragment after the run stopped finds no fragment and is dropped, and switching moves nothing on screen.
    # (With one fragment whose refresh rate changed, such a late tick once wiped the page's charts.)
    if live:
        st.fragment(live_panel, run_every=FAST_SECONDS, key="train-live")(str(store.path))
    else:
        st.fragment(idle_panel, key="train-idle")(str(store.path))
        st.fragment(idle_watch, run_every=SLOW_SECONDS, key="train-watch")(str(store.path))


main()

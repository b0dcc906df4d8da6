"""Train: drive the open run step by step and watch its metrics move.

The buttons send commands to the run's background worker (``app.worker``);
everything shown is read from the run directory (``status.json`` and
``metrics.jsonl``, both small), so the page answers at once while a step
trains, and it follows a run that the CLI trains too.

Keys (a presentation clicker sends the first two): PageDown or Right arrow =
Step, P = Play / Pause, E = run to the end of the phase. Each press is bound
to the step on screen (:func:`app.keys.bound_to_step`): a second press that
arrives before the first one's step is drawn does nothing.

A Step answers at once: the page waits for a short step right where the
button was pressed (``QUICK_WAIT``) and draws its results in the same
redraw; a longer one hands over to the live panel.
"""

from __future__ import annotations

import time

import numpy as np
import streamlit as st

from app import present
from app.common import RUN_DIR_KEY, current_store, open_run, runs_root
from app.figures.train import CHARTS, phase_timeline_figure, timeline_caption
from app.keys import HiddenButton, bound_to_step, guard_repeats, hidden_buttons, release_focus
from app.samples import load_dataset, load_snapshot, render_sample_grid
from app.settings import config_summary, default_preset, phase_plan, suggest_run_name
from app.takeaway import (comparison_runs, early_stop_note, instructive_samples, noise_outcome, precision_label,
                          takeaway_lines)
from app.worker import get_worker, is_live, is_training, trained_elsewhere
from engine.errors import UserError
from engine.run import Run
from engine.store import RunStore, list_runs

FAST_SECONDS = 1.0  # refresh of status and charts while a step trains
SLOW_SECONDS = 5.0  # while idle, look this often for a run the CLI starts
SKIPPED_SHOWN = 200  # lines of the skipped-files list shown on the page
QUICK_WAIT = 8.0  # a Step waits this long in place (its progress shown) for its step to end; then the page goes live
PENDING_KEY = "_train_pending"  # the command this session just started (its redraw waits for it)
#: Charts shown at once in presentation mode (one row on a projector); the others in an expander.
PRESENT_CHARTS = ("labels", "detection", "accuracy")
COMMAND_TEXT = {"step": "Training one step", "play": "Playing to the end", "phase": "Running to the end of the phase",
                "reset": "Resetting the run", "reset-keep": "Resetting the run (keeping the decisions)"}
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


def press(path: str, command: str, shown_step: int) -> None:
    """A button's or a key's callback: start ``command`` unless the press is stale.

    ``shown_step`` is the step on screen when the button was drawn: a press made before the screen
    caught up with an earlier one (the run moved on, or is still busy with it) is dropped.
    """
    worker = get_worker(path)
    if command == "pause":
        if worker.submit("pause"):
            st.toast("Pausing after the step in progress.")
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
    blocked = busy or elsewhere
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
    hidden_buttons("train-keys", [HiddenButton("Step (PageDown)", "PageDown", "train-step-pagedown", press,
                                               (path, "step", shown), disabled=blocked or done)])


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
    precision = precision_label(metrics)  # the given labels' until a step has propagated labels
    for col, (key, label) in zip(cols[2:], (precision, ("student_test_accuracy", "Student test accuracy"),
                                            ("teacher_test_accuracy", "Teacher test accuracy"))):
        value = last.get(key)
        col.metric(label, "–" if value is None else f"{value:.3f}")


_FIGURES: dict = {}  # (run, chart, presenting) -> (metrics digest, figure): the live panel redraws every second


def cached_figure(path: str, key: str, build, metrics: list[dict], presenting: bool):
    """A chart's figure, rebuilt only when the run's metrics changed (a new step), not on every redraw."""
    digest = hash(tuple((m.get("step"), m.get("phase"), m.get("step_seconds")) for m in metrics))
    cached = _FIGURES.get((path, key, presenting))
    if cached is not None and cached[0] == digest:
        return cached[1]
    fig = present.style_figure(build(metrics), presenting)
    if len(_FIGURES) > 64:
        _FIGURES.clear()
    _FIGURES[(path, key, presenting)] = (digest, fig)
    return fig


def charts(path: str, metrics: list[dict]) -> None:
    presenting = present.is_on()
    shown = [c for c in CHARTS if c[0] in PRESENT_CHARTS] if presenting else list(CHARTS)
    rest = [c for c in CHARTS if c not in shown]
    for row in (shown[:3], shown[3:]):
        _chart_row(path, row, metrics, presenting)
    if rest and st.toggle("More charts", key="train-more-charts", help="Relabels, weights and losses."):
        _chart_row(path, rest, metrics, presenting)


def _chart_row(path: str, row, metrics: list[dict], presenting: bool) -> None:
    if not row:
        return
    for col, (key, build) in zip(st.columns(3), row):
        with col:
            fig = cached_figure(path, key, build, metrics, presenting)
            st.plotly_chart(fig, key=f"train-chart-{key}", config={"displaylogo": False})
            if not presenting:
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


def results_panel(store: RunStore, status: dict) -> None:
    """The phase timeline, the latest numbers and the charts over steps."""
    try:
        config = store.config()
    except UserError:  # a reset is rewriting the directory this very moment
        st.info("The run is being recreated from its settings...")
        return
    metrics = store.metrics()
    timeline = phase_plan(config, metrics, status.get("phase"))
    st.plotly_chart(present.style_figure(phase_timeline_figure(timeline, status.get("phase"))), key="train-timeline",
                    config={"displayModeBar": False})
    note = early_stop_note(metrics, config)
    st.caption(timeline_caption(timeline, status.get("phase")) + (f"  \n{note}" if note else ""))
    if status.get("phase") == "done":
        takeaway(store, config, metrics)
    headline(metrics, status)
    charts(str(store.path), metrics)


def takeaway(store: RunStore, config, metrics: list[dict]) -> None:
    """The end of the lecture: what the refinery did to the labels, and the student against the baselines."""
    steps = store.steps()
    if not steps:
        return
    arrays = store.dataset_arrays()
    given, true = arrays["given"].astype(np.int64), arrays["true"].astype(np.int64)
    snapshot = load_snapshot(str(store.path), steps[-1])
    refined = snapshot["refined"].astype(np.int64)
    outcome = noise_outcome(given, refined, true)
    comparisons = comparison_runs(store.path.parent, config, exclude=store.path)
    with st.container(border=True, key="train-takeaway"):
        st.markdown("#### Takeaway")
        for line in takeaway_lines(metrics, outcome, config.method, comparisons):
            st.markdown(line)
        fixed = instructive_samples(given, refined, true, snapshot.get("lp_confidence"))
        if fixed:
            st.caption("Five labels the method fixed (given → refined · AWE weight), the propagation surest:")
            try:
                dataset = load_dataset(str(store.path))
            except UserError:
                return
            render_sample_grid(fixed, dataset.kind, dataset.train_x, given, refined, snapshot["weight"],
                               dataset.class_names, columns=len(fixed))


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
    st.title(present.title(f"Train · {store.path.name}", "Train"))
    st.caption((f"`{store.path.name}` · " if present.is_on() else "") + config_summary(config))
    release_focus()
    guard_repeats(["ArrowRight", "PageDown"], [".st-key-train-step"])  # a double press steps once
    if not present.is_on():
        with st.expander("All settings of this run", expanded=False):
            st.caption(f"As saved in `{store.path / 'config.json'}`.")
            st.json(config.to_json(), expanded=2)
    skipped_files(store.skipped())
    live = is_live(store.path)
    if not live:
        get_worker(store.path).prepare()  # open the run now, so that the first Step costs only its step
    # The live and the idle panel are the same elements in the same places, drawn by two fragments (a
    # fragment's id comes from its function): a refresh tick that the browser still sends for the live
    # fragment after the run stopped finds no fragment and is dropped, and switching moves nothing on screen.
    # (With one fragment whose refresh rate changed, such a late tick once wiped the page's charts.)
    if live:
        st.fragment(live_panel, run_every=FAST_SECONDS, key="train-live")(str(store.path))
    else:
        st.fragment(idle_panel, key="train-idle")(str(store.path), store.status().get("step"))
        st.fragment(idle_watch, run_every=SLOW_SECONDS, key="train-watch")(str(store.path))


main()

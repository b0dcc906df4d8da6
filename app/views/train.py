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
button was pressed (``app.train.controls.QUICK_WAIT``) and draws its results in the same
redraw; a longer one hands over to the live panel.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app.text import code_span, md

from app import present
from app.common import RUN_DIR_KEY, current_store
from app.keys import guard_repeats, release_focus
from app.settings import config_summary
from app.train.controls import no_run_open
from app.train.panels import idle_panel, idle_watch, live_panel, skipped_files
from app.worker import get_worker, is_live, is_training
from engine.errors import UserError

FAST_SECONDS = 1.0  # refresh of status and charts while a step trains
SLOW_SECONDS = 5.0  # while idle, look this often for a run the CLI starts
STEP_SHOWN = '[data-testid="stMetricValue"]'  # the headline's first metric: "step / total", what the screen shows



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
        st.error(f"This run cannot be shown: {md(exc)}")
        st.stop()
    st.title(present.title(f"Train · {md(store.path.name)}", "Train"))
    features = f" · graph and stage 0 from the features in {code_span(Path(config.teacher_features).name)}" \
        if config.teacher_features else ""  # a run on features from elsewhere says so in its header
    st.caption((f"{md(store.path.name)} · " if present.is_on() else "") + config_summary(config) + features)
    release_focus()
    # A double press steps once: a press is dropped while the step shown is the one of the previous press.
    guard_repeats(["ArrowRight", "PageDown"], [".st-key-train-step"], screen=STEP_SHOWN)
    if not present.is_on():
        with st.expander("All settings of this run", expanded=False):
            st.caption(f"As saved in {md(store.config_path)}.")
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

"""Setup, the custom run: start from a preset or an existing run, fill in every setting,
see what cannot run, create."""

from __future__ import annotations

from dataclasses import replace

import streamlit as st

from app.text import md

from app.common import runs_root
from app.settings import (
    METHOD_LABELS,
    SetupValues,
    load_presets,
    settings_problems,
    suggest_run_name,
    validate_run_name,
)
from app.setup.create import create_run
from app.worker import max_processes
from app.setup.data_inputs import DataChoice, data_section
from app.setup.label_inputs import label_section
from app.setup.method_inputs import knob_inputs, loss_weight_inputs, method_inputs, noise_inputs, schedule_inputs
from app.setup.teacher_mode import teacher_mode_inputs
from engine.method import RunConfig, defaults_for_teacher, with_teacher_defaults
from engine.errors import UserError
from engine.rundir import RunStore, list_runs


def _dataset_spec(start: SetupValues, data: DataChoice) -> str | None:
    try:
        return replace(start, **data.values).dataset_spec()
    except UserError:
        return None


def start_choices(root) -> dict[str, tuple[str, RunConfig]]:
    """What the form can start from: every preset, then every run in the runs folder (its own settings:
    data, label file, schedule, knobs), newest first. id -> (label, config)."""
    presets, _ = load_presets()
    choices = {p.id: (p.name, p.config) for p in presets}
    for path in list_runs(root):
        try:
            config = RunStore(path).config()
        except UserError:
            continue  # a damaged run is listed (with its problem) in the runs table, not offered here
        choices[f"run-{path.name}"] = (f"Run {path.name} ({METHOD_LABELS.get(config.method, config.method)})", config)
    return choices


def start_from() -> tuple[str, RunConfig]:
    """The 'Start from' choice: a preset, or a run whose settings prefill the form (another method on the
    same data is then: pick the method, Create)."""
    choices = start_choices(runs_root())
    _, default_id = load_presets()
    ids = list(choices)
    base_id = st.selectbox("Start from", ids, index=ids.index(default_id), format_func=lambda i: choices[i][0],
                           key="setup-base", help="A preset, or one of your runs: its data, label file, "
                           "noise, schedule and knobs prefill the form.")
    return base_id, choices[base_id][1]


def custom_run() -> None:
    st.subheader("Custom run")
    base_id, base = start_from()
    start = SetupValues.from_config(base)
    key = f"setup-{base_id}-"  # widgets keyed per start: choosing another one resets them to its values
    with st.container(border=True):
        st.markdown("**Data**")
        data = data_section(start, key)
        spec = _dataset_spec(start, data)
        label_values, report, label_problems = label_section(start, key, spec, data)
    noise, method, schedule, knobs = st.columns(4)
    with noise:
        st.markdown("**Noise**")
        noise_values, noise_problems = noise_inputs(start, key, data.facts, report, bool(label_values["labels"]))
    with method:
        st.markdown("**Method and networks**")
        method_values, method_problems = method_inputs(start, key, data.facts, (base.teacher, base.student))
        mode_values, mode_problems = teacher_mode_inputs(start.teacher_weights, start.teacher_mode, key, spec,
                                                         method_values["teacher"], method_values["method"])
        method_values |= mode_values
        method_problems += mode_problems
    base = with_teacher_defaults(base, method_values["teacher"])  # the pair's schedule where base keeps the general one
    with schedule:
        st.markdown("**Schedule**")
        s = base.schedule
        own = defaults_for_teacher(method_values["teacher"]) != defaults_for_teacher(None)
        pair_key = f"{key}{method_values['teacher']}-" if own else key  # a pair with its own defaults: own widgets
        schedule_values = schedule_inputs(
            replace(start, teacher_epochs=s.teacher_epochs, warmup_epochs=s.warmup_epochs,
                    refine_epochs=s.refine_epochs, mutual_epochs=s.mutual_epochs),
            pair_key)
    with knobs:
        st.markdown("**The method's knobs**")
        knob_values = knob_inputs(start, key, method_values["method"])
        t = base.train
        knob_values |= loss_weight_inputs(  # like the schedule: the small pair has its own weights
            replace(start, kd_weight=t.kd_weight, clean_kd_weight=t.clean_kd_weight,
                    relational_weight=t.relational_weight),
            pair_key, method_values["method"])
    values = data.values | label_values | noise_values | method_values | schedule_values | knob_values
    form = SetupValues(**{**start.__dict__, **values})
    shown = data.problems + label_problems + noise_problems + method_problems  # already on the page
    problems, config = [], None
    try:
        config = form.to_config(base)
        problems = settings_problems(config, data.facts.num_train if data.facts else None)
    except UserError as exc:
        problems = [str(exc)]
    name = st.text_input("Run name", suggest_run_name(config, runs_root()) if config else "run",
                         key=f"{key}name-{config.dataset if config else ''}-{bool(form.labels)}-{form.method}-"
                             f"{form.seed}")  # a new suggestion when these change
    processes = st.number_input(
        "Processes", 1, max_processes(), 1, 1, key=f"{key}processes",
        help="Processes that train the run together (DistributedDataParallel), each on its part of every batch; "
             "the batch the method sees stays the batch size. 1 trains in the app itself; more start torchrun "
             "for each step. A run keeps its count when resumed.")
    try:
        validate_run_name(name, runs_root())
    except UserError as exc:
        problems.append(str(exc))
    for problem in problems:
        st.error(md(problem))
    if shown:
        st.caption(":red[**Create run** waits until the messages above are resolved.]")
    if st.button("Create run", key="setup-create", type="primary", disabled=bool(problems or shown)):
        create_run(config, name, int(processes))



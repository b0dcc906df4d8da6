"""Setup: create a run from a preset or from custom settings; open, rename
and delete runs. Settings that cannot run are explained inline and the
Create button stays disabled; an engine :class:`UserError` becomes a message.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from app.common import RUN_DIR_KEY, current_store, open_run, runs_root
from app.settings import (DATASETS, METHOD_LABELS, NOISE_KINDS, NOISE_RATE_MODES, SetupValues, dataset_size,
                          default_models, delete_run, load_presets, model_choices, rename_run, run_rows,
                          settings_problems, suggest_run_name, validate_run_name)
from app.worker import forget_worker, get_worker, is_training, trained_elsewhere
from engine.config import RunConfig
from engine.errors import UserError
from engine.run import Run
from engine.store import RunStore

NOISE_RATE_HELP = {"estimate": "estimate it after stage 0 (disagreement with the propagated labels)",
                   "known": "use the synthetic noise rate above", "custom": "use the value given here"}


def create_run(config: RunConfig, name: str) -> bool:
    """Create the run ``name`` under the runs folder, open it and go to Train."""
    root = runs_root()
    try:
        path = validate_run_name(name, root)
        with st.spinner(f"Creating run {name} (loading the data, building the networks)..."):
            run = Run.create(path, config)
    except UserError as exc:
        st.error(f"The run was not created: {exc}")
        return False
    get_worker(path).adopt(run)
    open_run(path)
    st.switch_page("views/train.py")
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


def _data_inputs(v: SetupValues, key: str) -> dict:
    out = {"dataset": st.selectbox("Dataset", DATASETS, index=DATASETS.index(v.dataset), key=f"{key}dataset",
                                   help="digits: 1,437 real 8x8 handwritten digits; the others are 2-D toys")}
    if out["dataset"] != "digits":
        out["toy_size"] = st.number_input("Training points", 20, 200_000, int(v.toy_size), step=100,
                                          key=f"{key}toy_size")
        out["toy_spread"] = st.slider("Spread (noise of the points)", 0.0, 3.0, float(v.toy_spread), 0.01,
                                      key=f"{key}toy_spread")
        if out["dataset"] == "blobs":
            out["blob_classes"] = st.number_input("Classes", 2, 20, int(v.blob_classes), key=f"{key}blob_classes")
    out["noise_kind"] = st.selectbox("Noise type", NOISE_KINDS, index=NOISE_KINDS.index(v.noise_kind),
                                     key=f"{key}noise_kind",
                                     help="symmetric: a fraction draws a label from all classes; "
                                          "pairflip: a fraction flips class c to c+1")
    out["noise_rate"] = st.slider("Noise rate", 0.0, 0.95, float(v.noise_rate), 0.05, key=f"{key}noise_rate",
                                  disabled=out["noise_kind"] == "none")
    return out


def _method_inputs(v: SetupValues, key: str, dataset: str) -> dict:
    methods = list(METHOD_LABELS)
    out = {"method": st.radio("Method", methods, index=methods.index(v.method), key=f"{key}method",
                              format_func=METHOD_LABELS.get, horizontal=True)}
    models = model_choices(dataset)
    for role, fallback in zip(("teacher", "student"), default_models(dataset)):
        current = getattr(v, role) if getattr(v, role) in models else fallback
        out[role] = st.selectbox(f"{role.capitalize()} model", models,
                                 index=models.index(current) if current in models else 0,
                                 key=f"{key}{role}-{dataset == 'digits'}",
                                 disabled=role == "teacher" and out["method"] == "ce",
                                 help="CE trains the student alone" if role == "teacher" else None)
    out["seed"] = st.number_input("Seed", 0, 2**31 - 1, int(v.seed), key=f"{key}seed")
    return out


def _schedule_inputs(v: SetupValues, key: str) -> dict:
    st.caption("Epochs per phase (CE and KD train the student for warm-up + refine + mutual epochs).")
    fields = (("teacher_epochs", "Teacher (upper bound, early-stopped)"), ("warmup_epochs", "Warm-up"),
              ("refine_epochs", "Refine (stage 1)"), ("mutual_epochs", "Mutual (stage 2)"))
    return {name: st.number_input(label, 0, 1000, int(getattr(v, name)), key=f"{key}{name}")
            for name, label in fields}


def _knob_inputs(v: SetupValues, key: str, noise_kind: str) -> dict:
    out = {"k": st.number_input("k neighbours in the graph", 1, 10_000, int(v.k), key=f"{key}k"),
           "alpha": st.slider("Propagation alpha", 0.50, 0.999, float(v.alpha), 0.001, format="%.3f",
                              key=f"{key}alpha"),
           "edge_power": st.slider("Edge power (weight = similarity^p)", 1.0, 6.0, float(v.edge_power), 0.5,
                                   key=f"{key}edge_power"),
           "temperature": st.slider("KD temperature", 1.0, 10.0, float(v.temperature), 0.5,
                                    key=f"{key}temperature")}
    modes = list(NOISE_RATE_MODES)
    out["noise_rate_mode"] = st.radio("Noise rate for small-loss selection", modes,
                                      index=modes.index(v.noise_rate_mode), key=f"{key}noise_rate_mode",
                                      format_func=lambda m: f"{m}: {NOISE_RATE_HELP[m]}")
    out["noise_rate_value"] = st.number_input("Custom noise rate", 0.0, 0.99, float(v.noise_rate_value), 0.05,
                                              key=f"{key}noise_rate_value",
                                              disabled=out["noise_rate_mode"] != "custom")
    return out


def custom_run() -> None:
    st.subheader("Custom run")
    presets, default_id = load_presets()
    names = {p.id: p.name for p in presets}
    base_id = st.selectbox("Start from", list(names), index=list(names).index(default_id),
                           format_func=names.get, key="setup-base")
    base = next(p for p in presets if p.id == base_id).config
    start = SetupValues.from_config(base)
    key = f"setup-{base_id}-"  # widgets keyed per preset: choosing another one resets them to its values
    data, method, schedule, knobs = st.columns(4)
    with data:
        st.markdown("**Data and noise**")
        values = _data_inputs(start, key)
    with method:
        st.markdown("**Method and networks**")
        values |= _method_inputs(start, key, values["dataset"])
    with schedule:
        st.markdown("**Schedule**")
        values |= _schedule_inputs(start, key)
    with knobs:
        st.markdown("**The method's knobs**")
        values |= _knob_inputs(start, key, values["noise_kind"])
    form = SetupValues(**{**start.__dict__, **values})
    problems, config = [], None
    try:
        config = form.to_config(base)
        problems = settings_problems(config, dataset_size(config.dataset))
    except UserError as exc:
        problems = [str(exc)]
    name = st.text_input("Run name", suggest_run_name(config, runs_root()) if config else "run",
                         key=f"{key}name-{config.dataset if config else ''}-{form.method}-{form.seed}")
    try:
        validate_run_name(name, runs_root())
    except UserError as exc:
        problems.append(str(exc))
    for problem in problems:
        st.error(problem)
    if st.button("Create run", key="setup-create", type="primary", disabled=bool(problems)):
        create_run(config, name)


def _run_table(rows: list[dict]) -> None:
    def number(value) -> str:
        return "–" if value is None else f"{value:.3f}"

    table = pd.DataFrame([{
        "run": r["name"], "dataset": r["dataset"], "method": r["method"], "noise": r["noise"], "seed": r["seed"],
        "state": r["state"], "phase": r["phase"],
        "step": f"{r['step']}/{r['total_steps']}" if r["step"] is not None else "",
        "student acc": number(r["student_test_accuracy"]),
        "refined precision": number(r["refined_label_precision"]),
    } for r in rows])
    st.dataframe(table, hide_index=True, width="stretch")


def manage_runs() -> None:
    st.subheader("Runs")
    root = runs_root()
    rows = run_rows(root)
    st.caption(f"Runs in `{root}` (made here or with `python -m engine run --out {root}/NAME`).")
    if not rows:
        st.info("No runs yet. The default run is one click away: **Create “Digits, 40% symmetric”** above.")
        return
    _run_table(rows)
    store = current_store()
    names = [r["name"] for r in rows]
    index = names.index(store.path.name) if store is not None and store.path.name in names else 0
    chosen = st.selectbox("Run", names, index=index, key="setup-chosen-run")
    path = Path(next(r["path"] for r in rows if r["name"] == chosen))
    busy = is_training(path) or trained_elsewhere(RunStore(path).status(), path)
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
    try:
        forget_worker(path)
        target = rename_run(path, new_name)
    except UserError as exc:
        st.error(f"Not renamed: {exc}")
        return
    if _is_open(path):
        open_run(target)
    st.rerun()


def _delete(path: Path) -> None:
    try:
        forget_worker(path)
        was_open = _is_open(path)
        delete_run(path)
    except UserError as exc:
        st.error(f"Not deleted: {exc}")
        return
    if was_open:
        st.session_state.pop(RUN_DIR_KEY, None)
    st.rerun()


st.title("Setup")
quick_start()
st.divider()
custom_run()
st.divider()
manage_runs()

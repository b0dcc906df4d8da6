"""Setup, the custom run's noise, method and networks, schedule and knobs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import streamlit as st

from app.text import md

from app.byod import DataFacts, default_models_for, known_noise_rate, model_choices_for, noise_problem
from app.settings import LABELS, METHOD_LABELS, NOISE_KINDS, NOISE_RATE_MODES, SetupValues
from engine.method import declared, widget_limits

NOISE_RATE_HELP = {"estimate": "estimate it after stage 0 (disagreement with the propagated labels)",
                   "known": "the rate of the noise above (a label file's: measured against the truth)",
                   "custom": "use the value given here"}


NOISE_NAMES = {"symmetric": "symmetric", "pairflip": "pairflip", "instance": "instance-dependent",
               "asym": "asymmetric (CIFAR-10 classes)", "matrix": "transition matrix (file)", "none": "none"}
NOISE_HELP = {"symmetric": "a fraction R draws a label uniformly from all classes",
              "pairflip": "a fraction R of class c becomes c+1",
              "instance": "each sample's flip rate and wrong label depend on its pixels (Xia et al. 2020)",
              "asym": "a fraction R of truck→automobile, bird→airplane, deer→horse, cat↔dog; about R/2 of a "
                      "balanced set ends up wrong",
              "matrix": "T[i, j] = P(given j | true i) from a C x C file", "none": "the given labels are the truth"}


def noise_inputs(v: SetupValues, key: str, facts: DataFacts | None, report: dict | None,
                  labelled: bool) -> tuple[dict, list[str]]:
    if labelled:
        st.info("**No synthetic noise**: the label file's labels are the given labels.")
        rate = None if report is None else report["noise_rate"]
        return {"known_noise_rate": rate}, []
    out = {"noise_kind": st.selectbox("Noise type", NOISE_KINDS, index=NOISE_KINDS.index(v.noise_kind),
                                      key=f"{key}noise_kind", format_func=NOISE_NAMES.get,
                                      help="; ".join(f"{NOISE_NAMES[k]}: {text}" for k, text in NOISE_HELP.items()))}
    out["noise_rate"] = st.slider("Noise rate", 0.0, 0.95, float(v.noise_rate), 0.05, key=f"{key}noise_rate",
                                  disabled=out["noise_kind"] in ("none", "matrix"))
    problems = []
    if out["noise_kind"] == "matrix":
        out["matrix_path"] = st.text_input("Transition matrix file", v.matrix_path, key=f"{key}matrix_path",
                                           placeholder="/data/T.csv", help="T[i, j] = P(given j | true i): "
                                           "C x C, rows summing to 1, as CSV or .npy")
        if not out["matrix_path"].strip():
            problems.append("Noise 'matrix' needs a matrix file: type its path.")
            st.info(md(problems[-1]))
    noise = replace(v, **out).noise_spec()
    problem = None if problems else noise_problem(noise, facts)
    if problem:
        st.error(md(problem))
        problems.append(problem)
    elif out["noise_kind"] in ("instance", "asym", "matrix"):
        text = NOISE_HELP[out["noise_kind"]]
        st.caption(text[0].upper() + text[1:] + ".")
    out["known_noise_rate"] = None if problems else known_noise_rate(noise, facts)
    if out["noise_kind"] in ("asym", "matrix") and out["known_noise_rate"] is not None:
        st.caption(f"Expected share of wrong labels on this data: {out['known_noise_rate']:.3f} "
                   "(the 'known' noise rate).")
    return out, problems


def method_inputs(v: SetupValues, key: str, facts: DataFacts | None,
                   preferred: tuple[str | None, str | None]) -> tuple[dict, list[str]]:
    """Method, networks (the data's default pair unless the preset names its own), checkpoint, seed."""
    methods = list(METHOD_LABELS)
    out = {"method": st.radio(LABELS["method"], methods, index=methods.index(v.method), key=f"{key}method",
                              format_func=METHOD_LABELS.get, horizontal=True)}
    kind, shape = (facts.kind, facts.input_shape) if facts else ("image", (1, 8, 8))
    models = model_choices_for(kind)
    shape_key = "x".join(str(s) for s in shape)
    for role, wanted, fallback in zip(("teacher", "student"), preferred, default_models_for(kind, shape)):
        current = wanted if wanted in models else fallback
        out[role] = st.selectbox(f"{role.capitalize()} model", models,
                                 index=models.index(current) if current in models else 0,
                                 key=f"{key}{role}-{kind}-{shape_key}",  # other data: its default pair again
                                 disabled=role == "teacher" and out["method"] == "ce",
                                 help="CE trains the student alone" if role == "teacher" else None)
    out["teacher_checkpoint"] = st.text_input(
        LABELS["teacher_checkpoint"], v.teacher_checkpoint, key=f"{key}teacher_checkpoint",
        disabled=out["method"] == "ce", placeholder="runs/NAME/checkpoint.pt",
        help="A run's checkpoint.pt or a bare state_dict of the teacher model above: the teacher is loaded "
             "instead of trained. Checked on Create.")
    problems = []
    if out["method"] == "ce":
        out["teacher_checkpoint"] = ""
    elif out["teacher_checkpoint"].strip() and not Path(out["teacher_checkpoint"].strip()).expanduser().is_file():
        problems.append(f"Teacher checkpoint {out['teacher_checkpoint'].strip()!r} is not a file; valid: a run's "
                        "checkpoint.pt or a saved state_dict, or leave it empty to train the teacher.")
        st.error(md(problems[-1]))
    out["teacher_features"] = st.text_input(
        "Features from elsewhere (optional)", v.teacher_features, key=f"{key}teacher_features",
        disabled=out["method"] != "aml-kd", placeholder="/data/pets/clip_features.npz",
        help="Embeddings of the training samples from a stronger model (CLIP, DINOv2, an ImageNet ResNet): "
             ".npy (N, D) in sample order, .npz (features, optional keys and pred) or a CSV with a key column. "
             "They build the kNN graph and seed stage 0; the teacher network still trains for distillation. "
             "Checked on Create (README: how to compute them).")
    if out["method"] == "aml-kd" and out["teacher_features"].strip() and \
            not Path(out["teacher_features"].strip()).expanduser().is_file():
        problems.append(f"Features file {out['teacher_features'].strip()[:200]!r} is not a file; valid: a .npy, "
                        ".npz or .csv of the training samples' features, or leave it empty.")
        st.error(md(problems[-1]))
    out["seed"] = st.number_input("Seed", *widget_limits("seed")[:2], int(v.seed), key=f"{key}seed")
    return out, problems


def _number(widget: str, label: str, setting: str, value, key: str, field: str | None = None, **options):
    """A number input or slider of a declared run setting: min, max and step from its declaration
    (:func:`engine.method.widget_limits`), keyed ``{key}{field}`` (``field`` defaults to ``setting``)."""
    low, high, step = widget_limits(setting)
    kind = type(low)
    return getattr(st, widget)(label, low, high, kind(value), step, key=f"{key}{field or setting}", **options)


def _choice(label: str, setting: str, value: str, key: str, **options) -> str:
    """A select box of a declared choice setting: its choices and its help from the declaration
    (:func:`engine.method.declared`), keyed ``{key}{setting}``."""
    meta = declared()[setting].setting
    choices = list(meta.choices)
    return st.selectbox(label, choices, index=choices.index(value) if value in choices else 0, key=f"{key}{setting}",
                        help=meta.help, **options)


def schedule_inputs(v: SetupValues, key: str) -> dict:
    st.caption("Epochs per phase (CE and KD train the student for warm-up + refine + mutual epochs).")
    fields = ("teacher_epochs", "warmup_epochs", "refine_epochs", "mutual_epochs")
    return {name: _number("number_input", LABELS[name], name, getattr(v, name), key) for name in fields}


#: Why a knob is greyed out for a method (the method has no such part).
UNUSED_KNOBS = {
    "ce": "CE trains the student alone on the given labels: no graph, no propagation, no teacher to distil "
          "from, so these knobs do nothing.",
    "kd": "KD distils from the teacher on the given labels: no graph and no propagation, so only the "
          "temperature applies.",
}


def knob_inputs(v: SetupValues, key: str, method: str = "aml-kd") -> dict:
    graph_off, kd_off = method != "aml-kd", method == "ce"
    if method in UNUSED_KNOBS:
        st.caption(UNUSED_KNOBS[method])
    out = {"k": _number("number_input", LABELS["k"], "k", v.k, key, disabled=graph_off),
           "alpha": _number("slider", "Propagation alpha", "alpha", v.alpha, key, format="%.3f", disabled=graph_off),
           "edge_power": _number("slider", "Edge power (weight = similarity^p)", "edge_power", v.edge_power, key,
                                 disabled=graph_off),
           "knn": _choice(LABELS["knn"], "knn", v.knn, key, disabled=graph_off),
           "temperature": _number("slider", "KD temperature", "temperature", v.temperature, key, disabled=kd_off)}
    modes = list(NOISE_RATE_MODES)
    out["noise_rate_mode"] = st.radio("Noise rate for small-loss selection", modes,
                                      index=modes.index(v.noise_rate_mode), key=f"{key}noise_rate_mode",
                                      format_func=lambda m: f"{m}: {NOISE_RATE_HELP[m]}", disabled=graph_off)
    out["noise_rate_value"] = _number("number_input", "Custom noise rate", "noise_rate", v.noise_rate_value, key,
                                      field="noise_rate_value",
                                      disabled=graph_off or out["noise_rate_mode"] != "custom")
    return out


def loss_weight_inputs(v: SetupValues, key: str, method: str) -> dict:
    """The student's loss weights (the KD term for KD and AML-KD; the rest for AML-KD only)."""
    with st.expander("Loss weights", expanded=False):
        if method == "ce":
            st.caption("CE trains the student on the given labels alone: no weights to set.")
        elif method == "kd":
            st.caption("KD: loss = (1 - w) CE + w τ² KL(teacher ‖ student).")
        else:
            st.caption("AML-KD: the terms on mixed images, plus the optional KD term on the un-mixed images "
                       "and the relational term (docs/ALGORITHM.md).")
        return {
            "kd_weight": _number("slider", "KD weight", "kd_weight", v.kd_weight, key, disabled=method == "ce",
                                 help="Weight of the distillation term."),
            "clean_kd_weight": _number(
                "slider", "KD weight on un-mixed images", "clean_kd_weight", v.clean_kd_weight, key,
                disabled=method != "aml-kd",
                help="A second KD term on the images before mixup (0: the authors' objective; the small "
                     "32x32 pair uses 0.9)."),
            "relational_weight": _number(
                "slider", "Relational weight", "relational_weight", v.relational_weight, key,
                disabled=method != "aml-kd",
                help="Weight of the MSE between the student's and the teacher's batch similarity matrices "
                     "(refine stage)."),
        }



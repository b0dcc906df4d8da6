"""Setup: create a run from a preset or from custom settings; open, rename
and delete runs. Settings that cannot run are explained inline and the
Create button stays disabled; an engine :class:`UserError` becomes a message.

The custom run's data is built in, an image folder on disk, an uploaded zip
(unpacked under the runs folder) or a torchvision set from a local folder
(downloaded on Create only when asked); a label CSV may bring the given
labels. The Streamlit-free parts live in :mod:`app.byod`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import streamlit as st

from app.byod import (AUGMENTS, IMAGE_MODES, IMAGE_SIZES, LABEL_UPLOAD_LIMIT_MB, SOURCES, TORCHVISION_SETS,
                      UNPACK_LIMIT_TEXT, UPLOAD_LIMIT_MB, DataFacts, dataset_facts, default_models_for, folder_facts,
                      known_noise_rate, label_report, model_choices_for, noise_problem, save_label_upload,
                      scan_summary, torchvision_pending_facts, torchvision_spec, unpack_upload, uploads_dir)
from app.common import RUN_DIR_KEY, current_store, open_run, runs_root
from app.settings import (DATASETS, METHOD_LABELS, NOISE_KINDS, NOISE_RATE_MODES, SetupValues, delete_run,
                          load_presets, rename_run, run_rows, settings_problems, suggest_run_name, validate_run_name)
from app.worker import forget_worker, get_worker, is_live
from engine.checkpoint import load_teacher
from engine.compare import METHOD_NAMES
from engine.config import RunConfig, ScheduleConfig, TrainConfig, defaults_for_teacher
from engine.data.folder import VALID_LAYOUT
from engine.data.labels import guess_columns, preview_label_file
from engine.errors import UserError
from engine.run import Run

NOISE_RATE_HELP = {"estimate": "estimate it after stage 0 (disagreement with the propagated labels)",
                   "known": "the rate of the noise above (a label file's: measured against the truth)",
                   "custom": "use the value given here"}


def create_run(config: RunConfig, name: str) -> bool:
    """Create the run ``name`` under the runs folder, open it and go to Train."""
    root = runs_root()
    try:
        path = validate_run_name(name, root)
        fetching = ", downloading it" if "download=1" in config.dataset else ""
        with st.spinner(f"Creating run {name} (loading the data{fetching}, building the networks)..."):
            run = Run.create(path, config)
    except UserError as exc:
        st.error(f"The run was not created: {exc}")
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
        st.error(f"The run was not created: {exc}")
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


@dataclass
class DataChoice:
    """The data part of the form: field values, what the data holds, and the
    reasons it cannot be used (already shown inline; they keep Create disabled)."""

    values: dict
    facts: DataFacts | None = None
    problems: list[str] = field(default_factory=list)
    signature: str = ""  # changes when the data does (label-file checks are cached on it)


def _refuse(message: str, values: dict | None = None) -> DataChoice:
    st.error(message)
    return DataChoice(values or {}, None, [message])


def _data_section(v: SetupValues, key: str) -> DataChoice:
    sources = list(SOURCES)
    source = st.radio("Data source", sources, index=sources.index(v.source if v.source in SOURCES else "builtin"),
                      format_func=SOURCES.get, horizontal=True, key=f"{key}source")
    handler = {"builtin": _builtin_data, "folder": _folder_data, "upload": _upload_data,
               "torchvision": _torchvision_data}[source]
    choice = handler(v, key)
    choice.values["source"] = source
    return choice


def _builtin_data(v: SetupValues, key: str) -> DataChoice:
    columns = st.columns(4)
    with columns[0]:
        values = {"dataset": st.selectbox("Dataset", DATASETS, index=DATASETS.index(v.dataset), key=f"{key}dataset",
                                          help="digits: 1,437 real 8x8 handwritten digits; the others are 2-D toys")}
    if values["dataset"] != "digits":
        with columns[1]:
            values["toy_size"] = st.number_input("Training points", 20, 200_000, int(v.toy_size), step=100,
                                                 key=f"{key}toy_size")
        with columns[2]:
            values["toy_spread"] = st.slider("Spread (noise of the points)", 0.0, 3.0, float(v.toy_spread), 0.01,
                                             key=f"{key}toy_spread")
        if values["dataset"] == "blobs":
            with columns[3]:
                values["blob_classes"] = st.number_input("Classes", 2, 20, int(v.blob_classes),
                                                         key=f"{key}blob_classes")
    spec = replace(v, source="builtin", **values).dataset_spec()
    try:
        facts = dataset_facts(spec)
    except UserError as exc:
        return _refuse(str(exc), values)
    return DataChoice(values, facts, signature=spec)


def _folder_data(v: SetupValues, key: str) -> DataChoice:
    path = st.text_input("Image folder", v.folder_path, key=f"{key}folder_path",
                         placeholder="/data/pets  (holds train/<class>/<images>, or one folder per class)",
                         help=f"A folder on the machine running this app: {VALID_LAYOUT}. "
                              "A folder holding only class folders is the training set itself.")
    if not path.strip():
        message = "Type the path of an image folder (train/<class>/<images>, optional test/<class>/<images>)."
        st.info(message)
        return DataChoice({"folder_path": ""}, None, [message])
    return _folder_choice(path, v, key)


def _upload_data(v: SetupValues, key: str) -> DataChoice:
    st.caption(f"A .zip of an image folder (train/<class>/<images>, optional test/), at most "
               f"{UPLOAD_LIMIT_MB} MB; {UNPACK_LIMIT_TEXT}. It is unpacked under `{uploads_dir(runs_root())}` "
               "on this machine: nothing leaves it.")
    upload = st.file_uploader(f"Zip of an image folder (at most {UPLOAD_LIMIT_MB} MB)", type=["zip"],
                              key=f"{key}upload", max_upload_size=UPLOAD_LIMIT_MB)
    if upload is None:
        return DataChoice({}, None, ["Upload a zip of an image folder."])
    try:
        with st.spinner(f"Unpacking {upload.name}..."):
            root = unpack_upload(upload.name, upload.getvalue(), runs_root(), upload_id=upload.file_id)
    except UserError as exc:
        return _refuse(str(exc))
    st.caption(f"Unpacked into `{root}`.")
    return _folder_choice(str(root), v, key)


def _folder_choice(path: str, v: SetupValues, key: str) -> DataChoice:
    try:
        summary = scan_summary(path)
    except UserError as exc:
        return _refuse(str(exc), {"folder_path": path})
    options = _image_options(v, key, summary)
    facts = folder_facts(summary, options["image_size"], options["image_mode"], options["test_fraction"])
    _show_folder_summary(summary, facts)
    signature = json.dumps([summary["root"], summary["train_counts"], summary["test_counts"], summary["skipped"]])
    return DataChoice({"folder_path": summary["root"], **options}, facts, signature=signature)


def _image_options(v: SetupValues, key: str, summary: dict) -> dict:
    size_col, mode_col, test_col, augment_col = st.columns(4)
    mode_names = {"auto": f"as the files ({summary['default_mode']})", "L": "grayscale (L)", "RGB": "colour (RGB)"}
    with size_col:
        size = st.selectbox("Image size", IMAGE_SIZES, index=IMAGE_SIZES.index(v.image_size)
                            if v.image_size in IMAGE_SIZES else 0, key=f"{key}image_size-{summary['default_size']}",
                            format_func=lambda s: f"auto ({summary['default_size']})" if s == 0 else f"{s}x{s}",
                            help="Every image is resized to this (the aspect ratio is not kept). Auto: the images' "
                                 "common size when they share one up to 32, else 32x32.")
    with mode_col:
        mode = st.selectbox("Colour", IMAGE_MODES, index=IMAGE_MODES.index(v.image_mode)
                            if v.image_mode in IMAGE_MODES else 0, format_func=mode_names.get,
                            key=f"{key}image_mode-{summary['default_mode']}")  # 'auto' names the folder's own
    with test_col:
        has_test = summary["test_counts"] is not None
        test = st.slider("Held-out test fraction", 0.05, 0.5, float(v.test_fraction), 0.05, key=f"{key}test_fraction",
                         disabled=has_test, help="The folder's test/ is the test set" if has_test else
                         "A stratified, seeded fraction of train/ held out for test accuracy")
    with augment_col:
        augment = st.selectbox("Augmentation", AUGMENTS, index=AUGMENTS.index(v.augment)
                               if v.augment in AUGMENTS else 0, key=f"{key}augment",
                               format_func=lambda a: {"auto": "auto (crop + flip for 24-64 px)",
                                                      "crop_flip": "random crop + flip"}.get(a, a))
    return {"image_size": int(size), "image_mode": mode, "test_fraction": float(test), "augment": augment}


def _show_folder_summary(summary: dict, facts: DataFacts) -> None:
    test = summary["test_counts"]
    channels, height, width = facts.input_shape
    sizes = ", ".join(f"{size} ({n})" for size, n in list(summary["sizes"].items())[:4])
    more = f" and {len(summary['sizes']) - 4} more" if len(summary["sizes"]) > 4 else ""
    modes = ", ".join(f"{'grayscale' if m == 'L' else 'colour'} ({n})" for m, n in summary["modes"].items())
    if test is not None:
        split = f"{facts.num_train:,} training images · {sum(test.values()):,} test images (test/)"
    else:
        files = sum(summary["train_counts"].values())
        split = f"{files:,} images: {facts.num_train:,} for training, {files - facts.num_train:,} held out for testing"
    st.success(f"**{len(summary['classes'])} classes** · {split} · file sizes {sizes}{more} · {modes} → the "
               f"networks see {channels}x{height}x{width}")
    table = pd.DataFrame({"class": summary["classes"],
                          "train/ images": [summary["train_counts"][c] for c in summary["classes"]]})
    if test is not None:
        table["test/ images"] = [test[c] for c in summary["classes"]]
    with st.expander(f"Images per class ({len(summary['classes'])} classes)"):
        st.dataframe(table, hide_index=True, width="stretch", height=min(400, 38 + 35 * len(table)))
    skipped = summary["skipped"]
    if skipped:
        st.warning(f"{len(skipped)} file(s) skipped: they are left out of the run.")
        with st.expander("Skipped files and why"):
            st.code("\n".join(skipped[:200]) + (f"\n... and {len(skipped) - 200} more" if len(skipped) > 200 else ""),
                    language=None)


def _torchvision_data(v: SetupValues, key: str) -> DataChoice:
    name_col, root_col, n_col, test_col = st.columns([2, 3, 2, 2])
    names = list(TORCHVISION_SETS)
    with name_col:
        name = st.selectbox("torchvision dataset", names, index=names.index(v.tv_name) if v.tv_name in names else 0,
                            format_func=TORCHVISION_SETS.get, key=f"{key}tv_name")
    with root_col:
        root = st.text_input("Root folder", v.tv_root or os.environ.get("AMLKD_DATA_DIR", "data"),
                             key=f"{key}tv_root", help="torchvision's layout: ROOT/MNIST/raw/..., "
                             "ROOT/FashionMNIST/raw/..., ROOT/cifar-10-batches-py/, ROOT/cifar-100-python/")
    with n_col:
        n = st.number_input("Training subset (0 = all)", 0, 1_000_000, int(v.tv_n), step=1000, key=f"{key}tv_n",
                            help="A stratified, seeded subset keeps CPU runs short")
    with test_col:
        test_n = st.number_input("Test subset (0 = all)", 0, 1_000_000, int(v.tv_test_n), step=1000,
                                 key=f"{key}tv_test_n")
    download = st.checkbox("Download if missing (needs internet; only when the files are not there)",
                           bool(v.tv_download), key=f"{key}tv_download")
    values = {"tv_name": name, "tv_root": root.strip(), "tv_n": int(n), "tv_test_n": int(test_n), "tv_download": False}
    small = [label for label, value in (("training subset", n), ("test subset", test_n)) if 0 < value < 10]
    if small:
        return _refuse(f"The {' and '.join(small)} must be 0 (all) or at least 10 samples.", values)
    spec = torchvision_spec(name, root.strip(), int(n), int(test_n))
    try:
        with st.spinner(f"Reading {TORCHVISION_SETS[name]} from {root}..."):
            facts = dataset_facts(spec)
    except UserError as exc:
        if not download:
            refused = _refuse(f"{exc}. Or tick 'Download if missing'.", values)
            return replace(refused, facts=torchvision_pending_facts(name))  # models still fit the set
        st.info(f"{TORCHVISION_SETS[name]} is not under `{root}` yet: it is downloaded when you press "
                "**Create run** (needs internet; offline, Create answers within seconds and makes nothing).")
        return DataChoice({**values, "tv_download": True}, torchvision_pending_facts(name), signature=spec)
    channels, height, width = facts.input_shape
    st.success(f"**{TORCHVISION_SETS[name]}** · {facts.num_classes} classes · {facts.num_train:,} training images "
               f"of {channels}x{height}x{width}")
    return DataChoice(values, facts, signature=spec)


# ---------------------------------------------------------------- label file
LABEL_SOURCES = {"none": "No label file: add synthetic noise", "upload": "Upload a CSV",
                 "path": "A CSV on this machine"}


def _label_section(v: SetupValues, key: str, spec: str | None, data: DataChoice) -> tuple[dict, dict | None, list]:
    """Label file inputs, preview and check; returns (values, report or None, problems)."""
    sources = list(LABEL_SOURCES)
    choice = st.radio("Label file (optional)", sources, index=2 if v.labels else 0, format_func=LABEL_SOURCES.get,
                      horizontal=True, key=f"{key}labels_source",
                      help="A CSV with one row per training sample: a key column (an image's path such as "
                           "train/cat/0042.jpg, or a sample's index) and a label column (class name or id); "
                           "optionally a truth column. Its labels replace the synthetic noise.")
    if choice == "none":
        return {"labels": ""}, None, []
    path = _label_path(v, key, choice)
    if path is None:
        return {"labels": ""}, None, ["Choose a label CSV, or 'No label file'."]
    try:
        columns, head = preview_label_file(path, rows=8)
    except (UserError, OSError) as exc:
        st.error(str(exc))
        return {"labels": str(path)}, None, [str(exc)]
    values = {"labels": str(path), **_column_inputs(key, columns)}
    st.dataframe(head, hide_index=True, width="stretch", height=min(320, 38 + 35 * len(head)))
    report, problems = _label_check(spec, data, values)
    return values, report, problems


def _label_path(v: SetupValues, key: str, choice: str) -> Path | None:
    if choice == "upload":
        upload = st.file_uploader(f"Label CSV (at most {LABEL_UPLOAD_LIMIT_MB} MB; kept under "
                                  f"{uploads_dir(runs_root())})", type=["csv"], key=f"{key}labels_upload",
                                  max_upload_size=LABEL_UPLOAD_LIMIT_MB)
        return None if upload is None else save_label_upload(upload.name, upload.getvalue(), runs_root())
    text = st.text_input("Label CSV path", v.labels, key=f"{key}labels_path", placeholder="/data/pets/labels.csv")
    return Path(text.strip()).expanduser().absolute() if text.strip() else None


def _column_inputs(key: str, columns: list[str]) -> dict:
    guesses = guess_columns(columns)
    suffix = hashlib.sha1("\x1f".join(columns).encode()).hexdigest()[:8]  # another file: the guesses again
    key_col, label_col, truth_col = st.columns(3)

    def index_of(name, fallback):
        return columns.index(name) if name in columns else min(fallback, len(columns) - 1)

    with key_col:
        key_column = st.selectbox("Key column", columns, index=index_of(guesses["key"], 0),
                                  key=f"{key}key_column-{suffix}")
    with label_col:
        label_column = st.selectbox("Label column (the given labels)", columns, index=index_of(guesses["label"], 1),
                                    key=f"{key}label_column-{suffix}")
    with truth_col:
        options = ["(none)", *columns]
        truth = st.selectbox("Truth column (optional)", options,
                             index=options.index(guesses["truth"]) if guesses["truth"] else 0,
                             key=f"{key}truth_column-{suffix}",
                             help="None: the dataset's own labels (an image folder's class folders) are the truth")
    return {"key_column": key_column, "label_column": label_column,
            "truth_column": "" if truth == "(none)" else truth}


def _label_check(spec: str | None, data: DataChoice, values: dict) -> tuple[dict | None, list[str]]:
    if spec is None or data.problems:
        st.caption("The label file is checked against the data once the data above is usable.")
        return None, []
    if data.facts is None or data.facts.num_train is None:
        st.info("The label file is checked on **Create run**, once the dataset's files are there.")
        return None, []
    with st.spinner("Checking the label file against the data..."):
        report = label_report(spec, values["labels"], values["key_column"], values["label_column"],
                              values["truth_column"] or None, data.signature)
    if not report["ok"]:
        st.error(report["error"])
        return report, [report["error"]]
    if report["noise_rate"] is None:
        st.success(f"All {report['rows']:,} training samples have exactly one row. Their truth is unknown, so "
                   "the label file's noise rate is too.")
    else:
        st.success(f"All {report['rows']:,} training samples have exactly one row; {report['changed']:,} of "
                   f"{report['truth_known']:,} labels differ from the truth: **{report['noise_rate']:.1%} noise**.")
    return report, []


# ---------------------------------------------------------------- noise, method, schedule, knobs
NOISE_NAMES = {"symmetric": "symmetric", "pairflip": "pairflip", "instance": "instance-dependent",
               "asym": "asymmetric (CIFAR-10 classes)", "matrix": "transition matrix (file)", "none": "none"}
NOISE_HELP = {"symmetric": "a fraction R draws a label uniformly from all classes",
              "pairflip": "a fraction R of class c becomes c+1",
              "instance": "each sample's flip rate and wrong label depend on its pixels (Xia et al. 2020)",
              "asym": "a fraction R of truck→automobile, bird→airplane, deer→horse, cat↔dog; about R/2 of a "
                      "balanced set ends up wrong",
              "matrix": "T[i, j] = P(given j | true i) from a C x C file", "none": "the given labels are the truth"}


def _noise_inputs(v: SetupValues, key: str, facts: DataFacts | None, report: dict | None,
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
            st.info(problems[-1])
    noise = replace(v, **out).noise_spec()
    problem = None if problems else noise_problem(noise, facts)
    if problem:
        st.error(problem)
        problems.append(problem)
    elif out["noise_kind"] in ("instance", "asym", "matrix"):
        text = NOISE_HELP[out["noise_kind"]]
        st.caption(text[0].upper() + text[1:] + ".")
    out["known_noise_rate"] = None if problems else known_noise_rate(noise, facts)
    if out["noise_kind"] in ("asym", "matrix") and out["known_noise_rate"] is not None:
        st.caption(f"Expected share of wrong labels on this data: {out['known_noise_rate']:.3f} "
                   "(the 'known' noise rate).")
    return out, problems


def _method_inputs(v: SetupValues, key: str, facts: DataFacts | None,
                   preferred: tuple[str | None, str | None]) -> tuple[dict, list[str]]:
    """Method, networks (the data's default pair unless the preset names its own), checkpoint, seed."""
    methods = list(METHOD_LABELS)
    out = {"method": st.radio("Method", methods, index=methods.index(v.method), key=f"{key}method",
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
        "Teacher checkpoint (optional)", v.teacher_checkpoint, key=f"{key}teacher_checkpoint",
        disabled=out["method"] == "ce", placeholder="runs/NAME/checkpoint.pt",
        help="A run's checkpoint.pt or a bare state_dict of the teacher model above: the teacher is loaded "
             "instead of trained. Checked on Create.")
    problems = []
    if out["method"] == "ce":
        out["teacher_checkpoint"] = ""
    elif out["teacher_checkpoint"].strip() and not Path(out["teacher_checkpoint"].strip()).expanduser().is_file():
        problems.append(f"Teacher checkpoint {out['teacher_checkpoint'].strip()!r} is not a file; valid: a run's "
                        "checkpoint.pt or a saved state_dict, or leave it empty to train the teacher.")
        st.error(problems[-1])
    out["seed"] = st.number_input("Seed", 0, 2**31 - 1, int(v.seed), key=f"{key}seed")
    return out, problems


def _schedule_inputs(v: SetupValues, key: str) -> dict:
    st.caption("Epochs per phase (CE and KD train the student for warm-up + refine + mutual epochs).")
    fields = (("teacher_epochs", "Teacher (upper bound, early-stopped)"), ("warmup_epochs", "Warm-up"),
              ("refine_epochs", "Refine (stage 1)"), ("mutual_epochs", "Mutual (stage 2)"))
    return {name: st.number_input(label, 0, 1000, int(getattr(v, name)), key=f"{key}{name}")
            for name, label in fields}


def _knob_inputs(v: SetupValues, key: str) -> dict:
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


def _loss_weight_inputs(v: SetupValues, key: str, method: str) -> dict:
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
            "kd_weight": st.slider("KD weight", 0.0, 1.0, float(v.kd_weight), 0.05, key=f"{key}kd_weight",
                                   disabled=method == "ce", help="Weight of the distillation term."),
            "clean_kd_weight": st.slider(
                "KD weight on un-mixed images", 0.0, 1.0, float(v.clean_kd_weight), 0.05,
                key=f"{key}clean_kd_weight", disabled=method != "aml-kd",
                help="A second KD term on the images before mixup (0: the authors' objective; the small "
                     "32x32 pair uses 0.9)."),
            "relational_weight": st.slider(
                "Relational weight", 0.0, 5.0, float(v.relational_weight), 0.05,
                key=f"{key}relational_weight", disabled=method != "aml-kd",
                help="Weight of the MSE between the student's and the teacher's batch similarity matrices "
                     "(refine stage)."),
        }


def _dataset_spec(start: SetupValues, data: DataChoice) -> str | None:
    try:
        return replace(start, **data.values).dataset_spec()
    except UserError:
        return None


def defaults_for_networks(base: RunConfig, teacher: str) -> RunConfig:
    """The preset's config with the chosen teacher's default schedule and training knobs
    (the small 32x32 CPU pair has its own) wherever the preset keeps the general defaults."""
    schedule, train = defaults_for_teacher(teacher)
    if base.schedule == ScheduleConfig():
        base = replace(base, schedule=schedule)
    if base.train == TrainConfig():
        base = replace(base, train=train)
    return base


def custom_run() -> None:
    st.subheader("Custom run")
    presets, default_id = load_presets()
    names = {p.id: p.name for p in presets}
    base_id = st.selectbox("Start from", list(names), index=list(names).index(default_id),
                           format_func=names.get, key="setup-base")
    base = next(p for p in presets if p.id == base_id).config
    start = SetupValues.from_config(base)
    key = f"setup-{base_id}-"  # widgets keyed per preset: choosing another one resets them to its values
    with st.container(border=True):
        st.markdown("**Data**")
        data = _data_section(start, key)
        spec = _dataset_spec(start, data)
        label_values, report, label_problems = _label_section(start, key, spec, data)
    noise, method, schedule, knobs = st.columns(4)
    with noise:
        st.markdown("**Noise**")
        noise_values, noise_problems = _noise_inputs(start, key, data.facts, report, bool(label_values["labels"]))
    with method:
        st.markdown("**Method and networks**")
        method_values, method_problems = _method_inputs(start, key, data.facts, (base.teacher, base.student))
    base = defaults_for_networks(base, method_values["teacher"])
    with schedule:
        st.markdown("**Schedule**")
        s = base.schedule
        own = defaults_for_teacher(method_values["teacher"]) != defaults_for_teacher(None)
        pair_key = f"{key}{method_values['teacher']}-" if own else key  # a pair with its own defaults: own widgets
        schedule_values = _schedule_inputs(
            replace(start, teacher_epochs=s.teacher_epochs, warmup_epochs=s.warmup_epochs,
                    refine_epochs=s.refine_epochs, mutual_epochs=s.mutual_epochs),
            pair_key)
    with knobs:
        st.markdown("**The method's knobs**")
        knob_values = _knob_inputs(start, key)
        t = base.train
        knob_values |= _loss_weight_inputs(  # like the schedule: the small pair has its own weights
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
    try:
        validate_run_name(name, runs_root())
    except UserError as exc:
        problems.append(str(exc))
    for problem in problems:
        st.error(problem)
    if shown:
        st.caption(":red[**Create run** waits until the messages above are resolved.]")
    if st.button("Create run", key="setup-create", type="primary", disabled=bool(problems or shown)):
        create_run(config, name)


def _run_table(rows: list[dict]) -> None:
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
        st.table(table.set_index("run"))


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
    busy = is_live(path)
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

"""Setup, the custom run's label file: choose, map its columns, check it against the data."""

from __future__ import annotations

import hashlib
from pathlib import Path

import streamlit as st

from app.text import md

from app.byod import (LABEL_UPLOAD_LIMIT_MB, default_label_columns, label_preview, label_report, save_label_upload,
                      uploads_dir)
from app.common import runs_root
from app.settings import SetupValues
from app.setup.data_inputs import DataChoice
from engine.data import guess_columns

LABEL_SOURCES = {"none": "No label file: add synthetic noise", "upload": "Upload a CSV",
                 "path": "A CSV on this machine"}


def label_section(v: SetupValues, key: str, spec: str | None, data: DataChoice) -> tuple[dict, dict | None, list]:
    """Label file inputs, preview and check; returns (values, report or None, problems)."""
    sources = list(LABEL_SOURCES)
    choice = st.radio("Label file (optional)", sources, index=2 if v.labels else 0, format_func=LABEL_SOURCES.get,
                      horizontal=True, key=f"{key}labels_source",
                      help="A CSV with one row per training sample: a key column (an image's path such as "
                           "train/cat/0042.jpg, or a sample's index) and a label column (class name or id); "
                           "optionally a truth column. Its labels replace the synthetic noise.")
    if choice == "none":
        if data.facts is not None and data.facts.class_names is None and data.facts.kind == "vectors":
            message = ("This vectors file holds no labels: choose its label file (a CSV of key and label columns; "
                       "the keys are the file's keys, or the row numbers of an .npy), or store labels (N,) in an .npz.")
            st.error(md(message))
            return {"labels": ""}, None, [message]
        return {"labels": ""}, None, []
    path = _label_path(v, key, choice)
    if path is None:
        return {"labels": ""}, None, ["Choose a label CSV, or 'No label file'."]
    if spec is None or data.problems or data.facts is None or data.facts.num_train is None:
        columns, error = default_label_columns(path)  # no rows until the file is a label table of the data
        if error:
            st.error(md(error))
            return {"labels": str(path)}, None, [error]
        values = {"labels": str(path), **columns}
        return (values, *_label_check(spec, data, values))
    preview = label_preview(spec, path, data.signature)
    if not preview["ok"]:
        st.error(md(preview["error"]))
        return {"labels": str(path)}, None, [preview["error"]]
    values = {"labels": str(path), **_column_inputs(key, preview["columns"], preview["key_columns"], v)}
    head = preview["head"]
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


def _column_inputs(key: str, columns: list[str], key_columns: list[str], v: SetupValues) -> dict:
    guesses = guess_columns(columns)
    if v.labels:  # started from a run with a label file: its own columns, where this file has them
        for role, chosen in (("key", v.key_column), ("label", v.label_column), ("truth", v.truth_column)):
            if chosen in columns:
                guesses[role] = chosen
    guesses["key"] = guesses["key"] if guesses["key"] in key_columns else key_columns[0]  # one holding keys
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
        st.error(md(report["error"]))
        return report, [report["error"]]
    if report["noise_rate"] is None:
        st.success(f"All {report['rows']:,} training samples have exactly one row. Their truth is unknown, so "
                   "the label file's noise rate is too.")
    else:
        st.success(f"All {report['rows']:,} training samples have exactly one row; {report['changed']:,} of "
                   f"{report['truth_known']:,} labels differ from the truth: **{report['noise_rate']:.1%} noise**.")
    return report, []


# ---------------------------------------------------------------- noise, method, schedule, knobs

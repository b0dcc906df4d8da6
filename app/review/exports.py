"""Downloads of the run's exports, and the import of a decisions file."""

from __future__ import annotations

import io
import tempfile
import zipfile
from pathlib import Path

import streamlit as st

from app.access import can, denied_note, require
from app.common import current_reviewer
from app.review.context import ReviewContext, flash, md
from engine.errors import UserError
from engine.readers.export import (clean_labels_table, decisions_table, import_decisions, parse_decisions, read_decision_file,
                                   safe_csv, samples_json, samples_table, student_weights)
from engine.rundir import ReviewStore
from engine.rundir import RunStore


def _report_zip(path: str, step: int | None) -> bytes:
    from engine.readers.report import write_report

    store = RunStore(path)
    with tempfile.TemporaryDirectory() as tmp:
        write_report(store, tmp, samples=samples_table(store, step))
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(Path(tmp).iterdir()):
                archive.write(file, arcname=f"report/{file.name}")
        return buffer.getvalue()


def _import(path: str, data: bytes, name: str) -> None:
    if not require("export"):
        return
    try:
        events = import_decisions(RunStore(path), data, current_reviewer() or None, name=name)
    except UserError as exc:
        flash("error", md(exc))
        return
    flash("success", f"Imported {len(events)} new decisions from {md(name)} (rows already recorded are skipped).")


def export_section(ctx: ReviewContext) -> None:
    step, names, path = ctx.opts.step, ctx.class_names, ctx.path
    if not can("export"):
        denied_note("export")
        return

    def table():
        return samples_table(RunStore(path), step, class_names=names)

    downloads = [
        ("samples.csv", lambda: safe_csv(table()), "text/csv"),
        ("samples.json", lambda: samples_json(RunStore(path), table(), step, names), "application/json"),
        ("decisions.csv", lambda: safe_csv(decisions_table(ReviewStore(path).effective(), names)),
         "text/csv"),
        ("clean_labels.csv", lambda: safe_csv(clean_labels_table(table())), "text/csv"),
        ("report.zip", lambda: _report_zip(path, step), "application/zip"),
    ]
    if ctx.store.checkpoint_path.is_file():
        downloads.append(("student.pt", lambda: student_weights(RunStore(path)), "application/octet-stream"))
    with st.container(horizontal=True):
        for name, data, mime in downloads:
            st.download_button(name, data, file_name=name, mime=mime, on_click="ignore",
                               key=f"review_download_{name}", icon=":material/download:")
    st.caption("decisions.csv: one row per reviewer decision, then one consensus row per sample (kind, disputed).")
    upload = st.file_uploader("Import decisions (decisions.csv, samples.csv or .json)", type=["csv", "json"],
                              key="review_upload")
    if upload is not None:
        data = upload.getvalue()
        try:
            frame = read_decision_file(data, upload.name)
            events = parse_decisions(frame, ctx.keys, names, ctx.given, ctx.opts.reviewer or None,
                                     source=f"decisions file {upload.name!r}")
        except UserError as exc:
            st.error(md(exc), icon=":material/error:")
            return
        st.button(f"Import {len(events)} decisions", key="review_import", on_click=_import,
                  args=(path, data, upload.name), disabled=not events)

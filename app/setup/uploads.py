"""Setup, the uploads: every unpacked zip and kept label file with its size, the budget, and (admins) delete."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app.access import can, require
from app.byod import delete_upload, list_uploads, upload_budgets
from app.common import runs_root
from app.text import md
from engine.errors import UserError


def _delete(name: str) -> None:
    if not require("manage"):
        return
    try:
        delete_upload(runs_root(), name)
    except UserError as exc:
        st.session_state["_setup_upload_error"] = str(exc)
        return
    st.session_state.pop("_setup_upload_error", None)
    st.toast(f"Deleted the upload {name}.")


def manage_uploads() -> None:
    entries = list_uploads(runs_root())
    per_upload, total = upload_budgets()
    used = sum(e["bytes"] for e in entries)
    with st.expander(f"Uploaded data: {used / 2**20:,.1f} MiB of {total / 2**20:,.0f} MiB", key="setup-uploads"):
        st.caption(f"Each upload may unpack to {per_upload / 2**20:,.0f} MiB, all of them together to "
                   f"{total / 2**20:,.0f} MiB (AMLKD_UPLOAD_MAX_MB, AMLKD_UPLOADS_TOTAL_MB).")
        if not entries:
            st.caption("No uploads.")
            return
        st.dataframe(pd.DataFrame({"upload": [e["name"] for e in entries],
                                   "MiB": [round(e["bytes"] / 2**20, 2) for e in entries],
                                   "files": [e["files"] for e in entries],
                                   "used by runs": [", ".join(e["used_by"]) for e in entries]}),
                     hide_index=True, key="setup-uploads-table")
        if not can("manage"):
            return
        chosen = st.selectbox("Upload", [e["name"] for e in entries], key="setup-upload-chosen")
        sure = st.checkbox("Yes, delete it", key=f"setup-upload-sure-{chosen}")
        st.button("Delete upload", key="setup-upload-delete", disabled=not sure, on_click=_delete, args=(chosen,))
        error = st.session_state.pop("_setup_upload_error", None)
        if error:
            st.error(md(error))

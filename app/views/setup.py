"""Setup: create a run from a preset or from custom settings; open, rename
and delete runs. Settings that cannot run are explained inline and the
Create button stays disabled; an engine :class:`UserError` becomes a message.

The widget groups live in :mod:`app.setup` (create, data, labels, method and
knobs, the custom form, the runs table); the Streamlit-free parts in
:mod:`app.byod` and :mod:`app.settings`.
"""

from __future__ import annotations

import streamlit as st

from app.access import can, denied_note
from app.setup.create import quick_start
from app.setup.custom import custom_run
from app.setup.runs import manage_runs
from app.setup.uploads import manage_uploads

st.title("Setup")
if can("manage"):  # with accounts: admins only
    quick_start()
    st.divider()
    custom_run()
    st.divider()
else:
    denied_note("manage")
manage_runs()
manage_uploads()
